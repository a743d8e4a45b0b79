//! The rtpengine control pieces against a real rtpengine (Debian's
//! `rtpengine-daemon`), started by each test in user space only
//! (`--table=-1`, no kernel module), on the loopback interface, with its
//! ng port free and a private range of media ports derived from it, no
//! config file and no deletion delay; never the system service. The
//! requests are built from SIP messages by `manage::decide`, carried by the
//! sans-IO `client::Client` over a UDP socket of the test, and the
//! rewritten SDP spliced back with `sdp::replace`.
//!
//! rtpengine missing: the tests say so loudly and pass; under CI=true they
//! fail (`.ci/run` installs rtpengine-daemon).

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sipforge_runtime::rtpengine::bencode::{self, Value};
use sipforge_runtime::rtpengine::client::{Client, Config, Event, Failure, RequestId};
use sipforge_runtime::rtpengine::manage::{self, Context};
use sipforge_runtime::rtpengine::ng::{
    self, Command as Ng, Cookies, Flags, Outcome, Reply, Request,
};
use sipforge_runtime::rtpengine::sdp;
use sipforge_runtime::sip::Message;

/// An rtpengine of the test's own.
struct Rtpengine {
    child: Child,
    ng: SocketAddr,
    ports: (u16, u16),
    log: PathBuf,
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn rtpengine_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("rtpengine"))
        .find(|p| p.is_file())
}

impl Rtpengine {
    /// Start rtpengine on a free loopback ng port; None (after a loud
    /// message) when it is not installed, outside CI.
    fn start() -> Option<Rtpengine> {
        let Some(binary) = rtpengine_binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("rtpengine is not installed (CI=true): apt-get install rtpengine-daemon");
            }
            eprintln!(
                "\n==== SKIPPED: rtpengine is not installed (apt-get install rtpengine-daemon); \
                 the rtpengine ng tests did not run ====\n"
            );
            return None;
        };
        let ng = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap();
        // 100 media ports of its own below the ephemeral range, chosen by
        // the ng port so that tests running at once do not share them.
        let min = 20_000 + (ng.port() % 100) * 100;
        let ports = (min, min + 99);
        let log = std::env::temp_dir().join(format!(
            "sipforge-rtpengine-{}-{}.log",
            std::process::id(),
            ng.port()
        ));
        let child = Command::new(binary)
            .args([
                "--config-file=none",
                "--foreground",
                "--table=-1",
                "--interface=127.0.0.1",
                "--log-stderr",
                "--log-level=6",
                "--delete-delay=0",
            ])
            .arg(format!("--listen-ng={ng}"))
            .arg(format!("--port-min={}", ports.0))
            .arg(format!("--port-max={}", ports.1))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("rtpengine starts");
        let rtpengine = Rtpengine {
            child,
            ng,
            ports,
            log,
        };
        rtpengine.wait_until_it_answers();
        Some(rtpengine)
    }

    fn wait_until_it_answers(&self) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 512];
        loop {
            socket
                .send_to(&Request::ping().encode("start"), self.ng)
                .unwrap();
            if let Ok((n, _)) = socket.recv_from(&mut buf)
                && Reply::parse(&buf[..n]).is_ok_and(|r| r.outcome == Outcome::Pong)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rtpengine at {} never answered a ping; its log:\n{}",
                self.ng,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// A client and its socket, driven with real time.
struct Driver {
    client: Client,
    socket: UdpSocket,
    /// Events that came while waiting for another request's.
    events: Vec<Event>,
}

impl Driver {
    fn new(instances: &[SocketAddr], config: Config) -> Driver {
        Driver {
            client: Client::new(instances, config),
            socket: UdpSocket::bind("127.0.0.1:0").unwrap(),
            events: Vec::new(),
        }
    }

    fn flush(&mut self) {
        while let Some(t) = self.client.poll_transmit() {
            self.socket.send_to(&t.datagram, t.to).unwrap();
        }
    }

    /// Send `request` and run the client until its reply or failure.
    fn ask(&mut self, request: &Request<'_>) -> Result<Reply, Failure> {
        let id = self.client.request(Instant::now(), request);
        self.wait(id)
    }

    fn wait(&mut self, id: RequestId) -> Result<Reply, Failure> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 65_536];
        loop {
            self.flush();
            while let Some(e) = self.client.poll_event() {
                match e {
                    Event::Reply { id: got, reply, .. } if got == id => return Ok(reply),
                    Event::Failed {
                        id: got, failure, ..
                    } if got == id => return Err(failure),
                    other => self.events.push(other),
                }
            }
            assert!(Instant::now() < deadline, "no reply nor failure");
            let now = Instant::now();
            let wait = self
                .client
                .next_timeout()
                .map_or(Duration::from_millis(100), |t| {
                    t.saturating_duration_since(now)
                })
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            self.socket.set_read_timeout(Some(wait)).unwrap();
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.client.on_datagram(Instant::now(), from, &buf[..n]),
                Err(_) => self.client.on_timeout(Instant::now()),
            }
        }
    }

    /// `rtp_manage` on one message: decide, ask rtpengine, splice its SDP
    /// (None when the message calls for nothing).
    fn manage(&mut self, message: &[u8], ctx: Context<'_>, flags: &Flags) -> Option<Managed> {
        let msg = Message::parse(message).unwrap();
        let decision = manage::decide(&msg, &ctx).unwrap()?;
        let request = decision
            .request(flags)
            .with_received_from("127.0.0.1".parse().unwrap());
        let reply = self.ask(&request).expect("rtpengine answers");
        let spliced = match (&decision.sdp, &reply.sdp) {
            (Some(at), Some(new)) => Some(sdp::replace(&msg, at, new).unwrap()),
            _ => None,
        };
        let said = Said {
            command: decision.command,
            from_tag: decision.from_tag.to_string(),
            to_tag: decision.to_tag.map(str::to_string),
            via_branch: decision.via_branch.map(str::to_string),
        };
        Some((said, reply, spliced))
    }
}

/// What one `rtp_manage` asked rtpengine, the reply, and the message with
/// rtpengine's SDP.
type Managed = (Said, Reply, Option<Vec<u8>>);

/// The request a decision made.
struct Said {
    command: Ng,
    from_tag: String,
    to_tag: Option<String>,
    via_branch: Option<String>,
}

impl Said {
    /// Command, from-tag, to-tag, via-branch.
    fn all(&self) -> (Ng, &str, Option<&str>, Option<&str>) {
        (
            self.command,
            &self.from_tag,
            self.to_tag.as_deref(),
            self.via_branch.as_deref(),
        )
    }
}

fn sdp_of(host: &str, port: u16, user: &str) -> String {
    format!(
        "v=0\r\no={user} 2890844526 2890844526 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\n\
         t=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

fn invite(call_id: &str, sdp: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKuac1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=alice-tag\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@192.0.2.10:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

/// The callee's response through this proxy (its Via on top).
fn response(status: &str, call_id: &str, to_tag: &str, branch: &str, sdp: &str) -> Vec<u8> {
    let ct = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKuac1;rport=5060\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=alice-tag\r\n\
         To: <sip:bob@example.com>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:bob@192.0.2.20:5060>\r\n\
         {ct}Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn bye(call_id: &str, to_tag: &str) -> Vec<u8> {
    format!(
        "BYE sip:bob@192.0.2.20:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKuac2;rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=alice-tag\r\n\
         To: <sip:bob@example.com>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The media port of a spliced message's SDP, after checking the message
/// frames right and its SDP points at rtpengine on the loopback.
fn media_port(message: &[u8], range: (u16, u16)) -> u16 {
    let msg = Message::parse(message).unwrap();
    assert_eq!(msg.content_length(), Some(msg.body().len() as u64));
    let body = std::str::from_utf8(msg.body()).unwrap();
    assert!(body.contains("c=IN IP4 127.0.0.1\r\n"), "{body}");
    let port: u16 = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio port in {body}"));
    assert!(
        (range.0..=range.1).contains(&port),
        "{port} outside {range:?}"
    );
    port
}

/// The call's tags as rtpengine knows them (None: it does not know it).
fn query_tags(driver: &mut Driver, call_id: &str) -> Option<Vec<String>> {
    // The query goes through the client like every request ...
    let reply = driver.ask(&Request::query(call_id)).unwrap();
    if reply.outcome == Outcome::Error {
        assert_eq!(reply.error_reason.as_deref(), Some("Unknown call-id"));
        return None;
    }
    assert_eq!(reply.outcome, Outcome::Ok);
    // ... and again by hand for the statistics the client does not keep.
    Some(raw_query_tags(driver, call_id))
}

/// The tags of a query's reply that have media (a stream with a local
/// port: a deleted fork keeps its tag, but its ports are closed). The
/// client's [`Reply`] keeps only what `rtp_manage` needs, so this query is
/// sent and decoded here.
fn raw_query_tags(driver: &mut Driver, call_id: &str) -> Vec<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let ng = driver.client.instances().addr(0);
    let cookie = Cookies::new().next_cookie();
    socket
        .send_to(&Request::query(call_id).encode(&cookie), ng)
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    let (got, body) = ng::split_cookie(&buf[..n]).unwrap();
    assert_eq!(got, cookie.as_bytes());
    let value = bencode::decode(body).unwrap();
    let tags = value.get("tags").and_then(Value::as_dict).unwrap_or(&[]);
    let has_ports = |tag: &Value<'_>| {
        let medias = tag.get("medias").and_then(Value::as_list).unwrap_or(&[]);
        medias.iter().any(|m| {
            let streams = m.get("streams").and_then(Value::as_list).unwrap_or(&[]);
            streams.iter().any(|s| s.get("local port").is_some())
        })
    };
    let mut names: Vec<String> = tags
        .iter()
        .filter(|(_, t)| has_ports(t))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn offer_answer_delete_through_manage_and_the_client() {
    let Some(rtpengine) = Rtpengine::start() else {
        return;
    };
    let mut driver = Driver::new(&[rtpengine.ng], Config::default());
    let flags = Flags::parse("replace-origin replace-session-connection trust-address").unwrap();

    let pong = driver.ask(&Request::ping()).unwrap();
    assert_eq!(pong.outcome, Outcome::Pong);
    eprintln!("ping: {pong:?}");

    let call = "real-1@example.com";
    let (d, reply, spliced) = driver
        .manage(
            &invite(call, &sdp_of("192.0.2.10", 49170, "alice")),
            Context::default(),
            &flags,
        )
        .unwrap();
    assert_eq!(d.command, Ng::Offer);
    assert_eq!(reply.outcome, Outcome::Ok, "{reply:?}");
    eprintln!(
        "offer reply SDP:\n{}",
        String::from_utf8_lossy(reply.sdp.as_deref().unwrap())
    );
    let offer = spliced.unwrap();
    let offer_port = media_port(&offer, rtpengine.ports);
    let text = String::from_utf8(offer.clone()).unwrap();
    assert!(
        text.contains("o=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\n"),
        "{text}"
    );
    assert!(text.starts_with("INVITE sip:bob@example.com SIP/2.0\r\n"));
    assert!(text.contains("\r\nContent-Type: application/sdp\r\n"));

    let (d, reply, spliced) = driver
        .manage(
            &response(
                "200 OK",
                call,
                "bob-tag",
                "z9hG4bKsf-branch-1",
                &sdp_of("192.0.2.20", 51372, "bob"),
            ),
            Context::default(),
            &flags,
        )
        .unwrap();
    assert_eq!(
        d.all(),
        (
            Ng::Answer,
            "alice-tag",
            Some("bob-tag"),
            Some("z9hG4bKsf-branch-1")
        )
    );
    assert_eq!(reply.outcome, Outcome::Ok, "{reply:?}");
    let answer_port = media_port(&spliced.unwrap(), rtpengine.ports);
    assert_ne!(answer_port, offer_port, "a port on each side");

    assert_eq!(raw_query_tags(&mut driver, call), ["alice-tag", "bob-tag"]);

    let (d, reply, spliced) = driver
        .manage(&bye(call, "bob-tag"), Context::default(), &flags)
        .unwrap();
    assert_eq!(d.command, Ng::Delete);
    assert_eq!(reply.outcome, Outcome::Ok, "{reply:?}");
    assert_eq!(reply.warning, None);
    assert!(spliced.is_none());
    assert_eq!(query_tags(&mut driver, call), None, "the call is gone");

    // A delete of a call rtpengine does not know is ok with a warning.
    let (_, reply, _) = driver
        .manage(&bye(call, "bob-tag"), Context::default(), &flags)
        .unwrap();
    assert_eq!(reply.outcome, Outcome::Ok);
    assert_eq!(
        reply.warning.as_deref(),
        Some("Call-ID not found or tags didn't match")
    );
    assert!(driver.events.is_empty(), "{:?}", driver.events);
}

#[test]
fn forks_get_media_of_their_own_and_a_failed_fork_is_deleted_alone() {
    let Some(rtpengine) = Rtpengine::start() else {
        return;
    };
    let mut driver = Driver::new(&[rtpengine.ng], Config::default());
    let flags = Flags::parse("replace-origin").unwrap();
    let call = "forked-1@example.com";
    let offer_sdp = sdp_of("192.0.2.10", 49170, "alice");
    let invite = invite(call, &offer_sdp);

    // rtp_manage per fork: each fork's offer names the branch it is sent
    // with, and gets ports of its own.
    let mut ports = Vec::new();
    for branch in ["z9hG4bKsf-fork-1", "z9hG4bKsf-fork-2"] {
        let ctx = Context {
            branch: Some(branch),
            request: None,
        };
        let (d, reply, spliced) = driver.manage(&invite, ctx, &flags).unwrap();
        assert_eq!(d.all(), (Ng::Offer, "alice-tag", None, Some(branch)));
        assert_eq!(reply.outcome, Outcome::Ok, "{reply:?}");
        ports.push(media_port(&spliced.unwrap(), rtpengine.ports));
    }
    assert_ne!(ports[0], ports[1], "each fork its own media");

    // Each fork's early media answer comes back on its own branch.
    for (tag, branch, port) in [
        ("bob-1", "z9hG4bKsf-fork-1", 51372),
        ("bob-2", "z9hG4bKsf-fork-2", 51400),
    ] {
        let (d, reply, spliced) = driver
            .manage(
                &response(
                    "183 Session Progress",
                    call,
                    tag,
                    branch,
                    &sdp_of("192.0.2.20", port, "bob"),
                ),
                Context::default(),
                &flags,
            )
            .unwrap();
        assert_eq!(d.all(), (Ng::Answer, "alice-tag", Some(tag), Some(branch)));
        assert_eq!(reply.outcome, Outcome::Ok, "{reply:?}");
        media_port(&spliced.unwrap(), rtpengine.ports);
    }
    assert_eq!(
        raw_query_tags(&mut driver, call),
        ["alice-tag", "bob-1", "bob-2"]
    );

    // Fork 2 fails: its branch goes, the call and fork 1 stay.
    let (d, reply, _) = driver
        .manage(
            &response("486 Busy Here", call, "bob-2", "z9hG4bKsf-fork-2", ""),
            Context::default(),
            &flags,
        )
        .unwrap();
    assert_eq!(
        d.all(),
        (
            Ng::Delete,
            "alice-tag",
            Some("bob-2"),
            Some("z9hG4bKsf-fork-2")
        )
    );
    assert_eq!((reply.outcome, reply.warning), (Outcome::Ok, None));
    assert_eq!(raw_query_tags(&mut driver, call), ["alice-tag", "bob-1"]);

    let (_, reply, _) = driver
        .manage(&bye(call, "bob-1"), Context::default(), &flags)
        .unwrap();
    assert_eq!(reply.outcome, Outcome::Ok);
    assert_eq!(query_tags(&mut driver, call), None);
}

#[test]
fn late_offer_the_200_offers_and_the_ack_answers() {
    let Some(rtpengine) = Rtpengine::start() else {
        return;
    };
    let mut driver = Driver::new(&[rtpengine.ng], Config::default());
    let flags = Flags::parse("replace-origin").unwrap();
    let call = "late-1@example.com";
    let invite = String::from_utf8(invite(call, ""))
        .unwrap()
        .replace("Content-Type: application/sdp\r\n", "")
        .into_bytes();
    assert!(driver.manage(&invite, Context::default(), &flags).is_none());
    let facts = manage::RequestFacts::of(&Message::parse(&invite).unwrap());
    let ctx = Context {
        branch: None,
        request: Some(facts),
    };
    let (d, reply, spliced) = driver
        .manage(
            &response(
                "200 OK",
                call,
                "bob-tag",
                "z9hG4bKsf-1",
                &sdp_of("192.0.2.20", 51372, "bob"),
            ),
            ctx,
            &flags,
        )
        .unwrap();
    assert_eq!(
        d.all(),
        (Ng::Offer, "bob-tag", Some("alice-tag"), Some("z9hG4bKsf-1"))
    );
    assert_eq!(reply.outcome, Outcome::Ok, "{reply:?}");
    media_port(&spliced.unwrap(), rtpengine.ports);
    let sdp = sdp_of("192.0.2.10", 49170, "alice");
    let ack = format!(
        "ACK sip:bob@192.0.2.20:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKuac3;rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=alice-tag\r\n\
         To: <sip:bob@example.com>;tag=bob-tag\r\n\
         Call-ID: {call}\r\nCSeq: 1 ACK\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let (d, reply, spliced) = driver
        .manage(ack.as_bytes(), Context::default(), &flags)
        .unwrap();
    assert_eq!(d.all(), (Ng::Answer, "bob-tag", Some("alice-tag"), None));
    assert_eq!(reply.outcome, Outcome::Ok, "{reply:?}");
    media_port(&spliced.unwrap(), rtpengine.ports);
    assert_eq!(raw_query_tags(&mut driver, call), ["alice-tag", "bob-tag"]);
    let (_, reply, _) = driver
        .manage(&bye(call, "bob-tag"), Context::default(), &flags)
        .unwrap();
    assert_eq!((reply.outcome, reply.warning), (Outcome::Ok, None));
}

#[test]
fn a_retransmission_with_the_same_cookie_gets_the_same_reply() {
    let Some(rtpengine) = Rtpengine::start() else {
        return;
    };
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let flags = Flags::default();
    let sdp = sdp_of("192.0.2.10", 49170, "alice");
    let request = Request::offer("cookie-1", "a", None, sdp.as_bytes(), &flags);
    let mut buf = vec![0u8; 65_536];
    let mut send = |datagram: &[u8]| {
        socket.send_to(datagram, rtpengine.ng).unwrap();
        let (n, _) = socket.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    let datagram = request.encode("same_1");
    let first = send(&datagram);
    assert_eq!(
        send(&datagram),
        first,
        "rtpengine answers a cookie it knows"
    );
    // A new cookie is a new command (a re-offer): rtpengine runs it.
    let other = send(&request.encode("same_2"));
    assert!(other.starts_with(b"same_2 "));
    let log = std::fs::read_to_string(&rtpengine.log).unwrap_or_default();
    assert_eq!(log.matches("as a duplicate").count(), 1, "{log}");
}

#[test]
fn a_dead_instance_is_skipped_then_probed_back() {
    let Some(rtpengine) = Rtpengine::start() else {
        return;
    };
    // A second "instance" that answers nothing until the test says so.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let config = Config {
        retransmit_after: Duration::from_millis(100),
        retransmissions: 2,
        probe_every: Duration::from_millis(300),
    };
    let mut driver = Driver::new(&[rtpengine.ng, silent_addr], config);
    let silent_index = driver.client.instances().index_of(silent_addr).unwrap();
    // A call whose first choice is the silent one.
    let call = (0..)
        .map(|n| format!("dead-{n}@example.com"))
        .find(|c| driver.client.instances().order(c)[0] == silent_index)
        .unwrap();
    let flags = Flags::default();
    let sdp = sdp_of("192.0.2.10", 49170, "alice");
    let started = Instant::now();
    let reply = driver
        .ask(&Request::offer(&call, "a", None, sdp.as_bytes(), &flags))
        .unwrap();
    assert_eq!(reply.outcome, Outcome::Ok, "the offer went to the live one");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(driver.events, [Event::InstanceDown(silent_addr)]);
    driver.events.clear();
    // The silent one got the offer three times, with one cookie.
    silent
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut cookies = Vec::new();
    for _ in 0..3 {
        let (n, _) = silent.recv_from(&mut buf).unwrap();
        cookies.push(ng::split_cookie(&buf[..n]).unwrap().0.to_vec());
    }
    assert!(cookies.iter().all(|c| *c == cookies[0]));
    // While it is dead, its calls go to the live one without waiting.
    let started = Instant::now();
    let delete = Request::delete(&call, "a", None, &flags);
    let reply = driver.ask(&delete).unwrap();
    assert_eq!(reply.outcome, Outcome::Ok);
    assert_eq!(reply.warning, None, "the live one has the call");
    assert!(started.elapsed() < Duration::from_millis(100));

    // It is probed with ping; once it answers a probe, it is alive.
    let (client_socket, client) = (&driver.socket, &mut driver.client);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut revived = false;
    while !revived {
        assert!(Instant::now() < deadline, "never revived");
        client.on_timeout(Instant::now());
        while let Some(t) = client.poll_transmit() {
            client_socket.send_to(&t.datagram, t.to).unwrap();
        }
        if let Ok((n, from)) = silent.recv_from(&mut buf) {
            let (cookie, body) = ng::split_cookie(&buf[..n]).unwrap();
            assert_eq!(body, b"d7:command4:pinge");
            let mut pong = cookie.to_vec();
            pong.extend_from_slice(b" d6:result4:ponge");
            silent.send_to(&pong, from).unwrap();
            client_socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let (n, from) = client_socket.recv_from(&mut buf).unwrap();
            client.on_datagram(Instant::now(), from, &buf[..n]);
            while let Some(e) = client.poll_event() {
                assert_eq!(e, Event::InstanceUp(silent_addr));
                revived = true;
            }
        }
    }
    assert_eq!(client.instances().up_count(), 2);
}
