//! Whole calls of the bench scenarios through the sans-IO core, for
//! counting instructions per call with callgrind (deterministic, unlike
//! wall-clock times on a shared machine). See bench/README.md, "CPU per
//! call, callgrind".
//!
//! `core_calls SCENARIO [CALLS]`, SCENARIO one of
//! - `stateless`: bench (a), tests/routes/profile_seed_stateless.yaml:
//!   INVITE, 180, 200, ACK, BYE, 200 forwarded statelessly;
//! - `stateful`: bench (b), profile_stateful.yaml: the same relayed
//!   statefully (100 Trying, record-routed), and the transactions' timers
//!   fired past RFC 6026's 32 s so the table empties;
//! - `auth`: bench (d), profile_auth.yaml: the first INVITE is answered
//!   407, its ACK absorbed, the second INVITE (Proxy-Authorization, MD5,
//!   qop=auth) relayed, then as `stateful`;
//! - `registered`: profile_registrar.yaml: 100 users REGISTER once
//!   (before the calls), then every call goes to one of them through
//!   `lookup` + `relay`, then as `stateful`;
//! - `register`: bench (f), profile_registrar.yaml: one REGISTER per call
//!   (one Contact, Expires 3600, a User-Agent, as the bench's sipp
//!   `uac_register.xml`), each for a new AoR (`sip:userN@bench.test`), so
//!   the memory store grows by one AoR per call, answered 200;
//! - `refresh`: the same routes, 100 users REGISTER once (before the
//!   calls), then every call refreshes one of them (its Call-ID, the next
//!   CSeq, the same Contact), answered 200.
//!
//! Every call has its own Call-ID, tags and branches; the datagrams the
//! core receives are built by the driver outside the measured functions.
//! Only [`measured_handle`] (drop the previous output, `Core::handle`) and
//! [`measured_timers`] (fire the due timer lanes) do the core's work;
//! count them alone with
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='core_calls::measured_*' ...`
//! and take the difference of two call counts (the first calls warm
//! tables and buffers up). Logging is on as in the binary (text, info,
//! through the same per-thread buffer), written to stderr after every
//! call: send stderr to /dev/null. `--no-logs` leaves the subscriber out.

#[allow(dead_code, clippy::needless_return)]
mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipforge_runtime::api::Routes;
use sipforge_runtime::auth::{Algorithm, AuthConfig, Authenticator, Credentials, NonceKey, digest};
use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener, Outgoing};
use sipforge_runtime::target::NextHop;

const UAC: &str = "127.0.0.1:5070";
const UAS: &str = "127.0.0.1:5080";
const REALM: &str = "sipforge.bench";
const PASSWORD: &str = "bench";
const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
/// Calls between two timer firings (the clock jumps 40 s each time).
const BATCH: usize = 100;
/// Registered users of `registered`.
const USERS: usize = 100;
const USAGE: &str =
    "usage: core_calls stateless|stateful|auth|registered|register|refresh [CALLS] [--no-logs]";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Stateless,
    Stateful,
    Auth,
    Registered,
    Register,
    Refresh,
}

/// The core's work on one datagram, with dropping what it sent for the
/// previous one (the network layer frees it after sending).
#[inline(never)]
fn measured_handle(
    core: &Core,
    now: Instant,
    datagram: &[u8],
    source: SocketAddr,
    out: &mut Vec<Outgoing>,
) {
    out.clear();
    core.handle(now, datagram, source, 0, out);
    sipforge_runtime::logbuf::flush();
}

/// Fire every timer lane due at `now`, as the timer threads do.
#[inline(never)]
fn measured_timers(core: &Core, now: Instant, out: &mut Vec<Outgoing>) {
    out.clear();
    for lane in 0..core.lanes() {
        if core.next_deadline_in(lane).is_some_and(|d| d <= now) {
            core.on_timeout_in(lane, now, out);
        }
    }
    out.clear();
    sipforge_runtime::logbuf::flush();
}

fn text(o: &Outgoing) -> &str {
    std::str::from_utf8(o.bytes.as_ref()).expect("UTF-8")
}

fn addr(hop: &NextHop) -> SocketAddr {
    hop.addr().expect("the fixtures forward to IP literals")
}

/// Header lines named `name` (long or compact form) of `message`.
fn header_lines<'a>(message: &'a str, names: &[&str]) -> Vec<&'a str> {
    let head = message.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .skip(1)
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(n, _)| names.iter().any(|w| n.trim().eq_ignore_ascii_case(w)))
        })
        .collect()
}

fn header_value<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    header_lines(message, &[name])
        .first()
        .and_then(|l| l.split_once(':').map(|(_, v)| v.trim()))
}

/// The UAS's response to `request` as the proxy forwarded it.
fn response(request: &str, status: &str, to_tag: &str, body: bool) -> Vec<u8> {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for line in header_lines(request, &["Via", "v", "Record-Route"]) {
        r.push_str(line);
        r.push_str("\r\n");
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        let v = header_value(request, name).expect("request header");
        if name == "To" {
            r.push_str(&format!("To: {v};tag={to_tag}\r\n"));
        } else {
            r.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    r.push_str(&format!("Contact: <sip:{}>\r\n", contact_of(request)));
    if body {
        r.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ));
    } else {
        r.push_str("Content-Length: 0\r\n\r\n");
    }
    r.into_bytes()
}

/// The UAS's contact: the forwarded request's Request-URI host part.
fn contact_of(request: &str) -> String {
    let ruri = request.split(' ').nth(1).expect("request line");
    ruri.trim_start_matches("sip:").to_string()
}

struct Call {
    id: String,
    ruri: String,
    to: String,
}

impl Call {
    fn invite(&self, cseq: u32, branch: u32, extra: &str) -> Vec<u8> {
        let Call { id, ruri, to } = self;
        format!(
            "INVITE {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{id}-{branch}\r\n\
             From: sipp <sip:sipp@{UAC}>;tag={id}\r\n\
             To: {to}\r\n\
             Call-ID: {id}@127.0.0.1\r\n\
             CSeq: {cseq} INVITE\r\n\
             Contact: <sip:sipp@{UAC}>\r\n\
             {extra}\
             Max-Forwards: 70\r\n\
             Subject: Performance Test\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        )
        .into_bytes()
    }

    /// An in-dialog request or the ACK of a non-2xx.
    fn request(
        &self,
        method: &str,
        ruri: &str,
        branch: u32,
        cseq: u32,
        to_tag: &str,
        routes: &[&str],
    ) -> Vec<u8> {
        let Call { id, to, .. } = self;
        let mut r = format!(
            "{method} {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{id}-{branch}\r\n\
             From: sipp <sip:sipp@{UAC}>;tag={id}\r\n\
             To: {to};tag={to_tag}\r\n\
             Call-ID: {id}@127.0.0.1\r\n\
             CSeq: {cseq} {method}\r\n"
        );
        for route in routes {
            r.push_str(&format!("Route: {route}\r\n"));
        }
        r.push_str("Max-Forwards: 70\r\nSubject: Performance Test\r\nContent-Length: 0\r\n\r\n");
        r.into_bytes()
    }
}

/// The one datagram of `out` that went to `to`, or the only one.
fn sent_to(out: &[Outgoing], to: SocketAddr) -> &Outgoing {
    out.iter()
        .find(|o| o.to == NextHop::Addr(to))
        .unwrap_or_else(|| {
            let seen: Vec<String> = out
                .iter()
                .map(|o| format!("{:?}: {}", o.to, text(o)))
                .collect();
            panic!("nothing sent to {to}: {seen:#?}")
        })
}

struct Driver {
    core: Core,
    scenario: Scenario,
    out: Vec<Outgoing>,
    now: Instant,
    uac: SocketAddr,
    uas: SocketAddr,
}

impl Driver {
    fn handle(&mut self, datagram: &[u8], source: SocketAddr) {
        measured_handle(&self.core, self.now, datagram, source, &mut self.out);
    }

    /// The digest answer to the challenge in `challenge` (a 407).
    fn authorization(&self, challenge: &str, ruri: &str, id: &str) -> String {
        let value = header_value(challenge, "Proxy-Authenticate").expect("a 407 challenge");
        let nonce = value
            .split("nonce=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a nonce");
        let ha1 = digest::ha1(Algorithm::Md5, "sipp", REALM, PASSWORD);
        let cnonce = format!("c{id}");
        let response = digest::response(
            Algorithm::Md5,
            ha1.as_bytes(),
            nonce,
            Some(("auth", "00000001", &cnonce)),
            "INVITE",
            ruri,
        );
        format!(
            "Proxy-Authorization: Digest username=\"sipp\", realm=\"{REALM}\", \
             nonce=\"{nonce}\", uri=\"{ruri}\", response=\"{response}\", \
             algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, nc=00000001\r\n"
        )
    }

    /// A REGISTER of `sip:user{user}@bench.test` (its Call-ID `reg{user}`,
    /// CSeq `cseq`, branch `reg{user}-{cseq}`), answered 200.
    fn register(&mut self, user: usize, cseq: u32) {
        // From the UAS's address: the binding keeps the source.
        let uas = self.uas;
        let datagram = format!(
            "REGISTER sip:bench.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP {UAS};branch=z9hG4bK-reg{user}-{cseq}\r\n\
             From: <sip:user{user}@bench.test>;tag=reg{user}-{cseq}\r\n\
             To: <sip:user{user}@bench.test>\r\n\
             Call-ID: reg{user}@127.0.0.1\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:user{user}@{UAS}>\r\n\
             Expires: 3600\r\n\
             Max-Forwards: 70\r\n\
             User-Agent: sipforge bench\r\n\
             Content-Length: 0\r\n\r\n"
        );
        self.handle(datagram.as_bytes(), uas);
        let reply = text(&self.out[0]);
        assert!(reply.starts_with("SIP/2.0 200"), "REGISTER: {reply}");
        assert!(
            reply.contains(&format!("Contact: <sip:user{user}@{UAS}>;expires=")),
            "REGISTER: {reply}"
        );
    }

    fn call(&mut self, n: usize) {
        match self.scenario {
            // Users from USERS on: the ones below are `refresh`'s.
            Scenario::Register => return self.register(USERS + n, 1),
            Scenario::Refresh => return self.register(n % USERS, 2 + (n / USERS) as u32),
            _ => {}
        }
        let (uac, uas) = (self.uac, self.uas);
        let id = format!("c{n}");
        let call = match self.scenario {
            Scenario::Registered => {
                let user = n % USERS;
                Call {
                    ruri: format!("sip:user{user}@bench.test"),
                    to: format!("<sip:user{user}@bench.test>"),
                    id,
                }
            }
            _ => Call {
                ruri: format!("sip:service@{UAS}"),
                to: format!("service <sip:service@{UAS}>"),
                id,
            },
        };
        let mut cseq = 1;
        let mut branch = 1;
        let invite = if self.scenario == Scenario::Auth {
            self.handle(&call.invite(1, 1, ""), uac);
            let challenge = text(sent_to(&self.out, uac)).to_string();
            assert!(challenge.starts_with("SIP/2.0 407"), "{challenge}");
            let to = header_value(&challenge, "To").expect("To");
            let tag = to.split(";tag=").nth(1).expect("a To tag").to_string();
            // The ACK of the 407: the first INVITE's branch, hop by hop.
            let ack = call.request("ACK", &call.ruri, 1, 1, &tag, &[]);
            self.handle(&ack, uac);
            assert!(self.out.is_empty(), "the ACK of the 407 is absorbed");
            cseq = 2;
            branch = 2;
            let auth = self.authorization(&challenge, &call.ruri, &call.id);
            call.invite(2, 2, &auth)
        } else {
            call.invite(1, 1, "")
        };
        self.handle(&invite, uac);
        let forwarded = sent_to(&self.out, uas);
        let invite_from = addr(&forwarded.to);
        let fwd = text(forwarded).to_string();
        let tag = format!("u{}", call.id);
        let ringing = response(&fwd, "180 Ringing", &tag, false);
        let ok = response(&fwd, "200 OK", &tag, true);
        let routes: Vec<&str> = header_lines(&fwd, &["Record-Route"])
            .into_iter()
            .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim()))
            .collect();
        let target = format!("sip:{}", contact_of(&fwd));
        let ack = call.request("ACK", &target, branch + 1, cseq, &tag, &routes);
        let bye = call.request("BYE", &target, branch + 2, cseq + 1, &tag, &routes);
        self.handle(&ringing, invite_from);
        self.handle(&ok, invite_from);
        self.handle(&ack, uac);
        sent_to(&self.out, uas);
        self.handle(&bye, uac);
        let forwarded = sent_to(&self.out, uas);
        let bye_from = addr(&forwarded.to);
        let bye_ok = response(text(forwarded), "200 OK", &tag, false);
        self.handle(&bye_ok, bye_from);
        sent_to(&self.out, uac);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = match args.next().as_deref() {
        Some("stateless") => Scenario::Stateless,
        Some("stateful") => Scenario::Stateful,
        Some("auth") => Scenario::Auth,
        Some("registered") => Scenario::Registered,
        Some("register") => Scenario::Register,
        Some("refresh") => Scenario::Refresh,
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2)
        }
    };
    let mut calls = 2_000;
    let mut logs = true;
    for a in args {
        match a.as_str() {
            "--no-logs" => logs = false,
            n => {
                calls = n.parse().unwrap_or_else(|_| {
                    eprintln!("{USAGE}");
                    std::process::exit(2)
                })
            }
        }
    }
    let _guard = logs.then(|| {
        sipforge_runtime::logbuf::batch();
        sipforge_runtime::log::init("info", sipforge_runtime::log::Format::Text).expect("logging")
    });
    let routes: &'static dyn Routes = match scenario {
        Scenario::Stateless => &fixtures::profile_seed_stateless::ROUTES,
        Scenario::Stateful => &fixtures::profile_stateful::ROUTES,
        Scenario::Auth => &fixtures::profile_auth::ROUTES,
        Scenario::Registered | Scenario::Register | Scenario::Refresh => {
            &fixtures::profile_registrar::ROUTES
        }
    };
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    let core = Core::new(routes, Identity::new(vec![listener]), CoreConfig::default());
    if scenario == Scenario::Auth {
        let ha1 = digest::ha1(Algorithm::Md5, "sipp", REALM, PASSWORD);
        let credentials =
            Credentials::parse(&format!("sipp:{REALM}:{ha1}\n"), "bench").expect("credentials");
        core.set_authenticator(Arc::new(Authenticator::new(
            AuthConfig {
                algorithms: vec![Algorithm::Md5],
                nonce_ttl_secs: 300,
            },
            NonceKey::from_bytes(b"a fixed key for the profile driver").unwrap(),
            credentials,
        )));
    }
    let start = Instant::now();
    core.start(start);
    let mut d = Driver {
        core,
        scenario,
        out: Vec::with_capacity(8),
        now: start,
        uac: UAC.parse().unwrap(),
        uas: UAS.parse().unwrap(),
    };
    if matches!(scenario, Scenario::Registered | Scenario::Refresh) {
        for user in 0..USERS {
            d.register(user, 1);
        }
    }
    for n in 0..calls {
        d.call(n);
        if n % BATCH == BATCH - 1 {
            d.now += Duration::from_secs(40);
            measured_timers(&d.core, d.now, &mut d.out);
        }
    }
    d.now += Duration::from_secs(40);
    measured_timers(&d.core, d.now, &mut d.out);
    assert_eq!(d.core.transactions(), 0, "the table empties");
    eprintln!("{calls} calls");
}
