//! SIP over TCP through an in-process proxy with a `tcp:127.0.0.1:0`
//! listener: requests relayed (stateless and stateful) to a UAS reached
//! over TCP and the responses back over the caller's connection, framing
//! (pipelined and split messages, keep-alive pings), and hostile peers
//! (endless headers, a huge Content-Length, a byte per second, too many
//! connections, idle ones), each followed by a request that still works.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Sip;
use sipforge_runtime::net::connections::Limits;
use sipforge_runtime::net::framing::{Frame, Framer};
use sipforge_runtime::transport::ListenAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Start a proxy running `routes` with a TCP listener only.
async fn start(
    routes: &'static dyn sipforge_runtime::api::Routes,
    limits: Limits,
) -> (sipforge_runtime::net::Server, SocketAddr) {
    let mut options = common::options();
    options.listen = vec![ListenAddr::parse("tcp:127.0.0.1:0").unwrap()];
    options.streams = limits;
    let server = sipforge_runtime::net::start(routes, options)
        .await
        .expect("proxy starts");
    let addr = server.local_addrs()[0];
    (server, addr)
}

/// A proxy (proxy_core routes) whose header timeout is 1 s, for the
/// tests of the limits that follow from it.
async fn start_with_one_second_header_timeout() -> (sipforge_runtime::net::Server, SocketAddr) {
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    start(&common::proxy_core::ROUTES, limits).await
}

/// A TCP connection that speaks SIP as text.
struct Conn {
    stream: TcpStream,
    framer: Framer,
    local: SocketAddr,
}

impl Conn {
    async fn connect(to: SocketAddr) -> Conn {
        Conn::from(TcpStream::connect(to).await.expect("connect"))
    }

    fn from(stream: TcpStream) -> Conn {
        let local = stream.local_addr().unwrap();
        Conn {
            stream,
            framer: Framer::new(1 << 20),
            local,
        }
    }

    /// A Via for requests sent on this connection.
    fn via(&self) -> String {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        format!(
            "SIP/2.0/TCP {};branch=z9hG4bKtcp{}",
            self.local,
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next frame within `ms`.
    async fn frame(&mut self, ms: u64, what: &str) -> Frame {
        let deadline = Instant::now() + Duration::from_millis(ms);
        let mut buf = vec![0u8; 65_536];
        loop {
            if let Some(frame) = self.framer.next_frame().expect("framing") {
                return frame;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) => panic!("{what}: connection closed"),
                Ok(Ok(n)) => self.framer.push(&buf[..n]),
                Ok(Err(e)) => panic!("{what}: {e}"),
                Err(_) => panic!("{what}: nothing within {ms} ms"),
            }
        }
    }

    /// The next message within 2 s.
    async fn recv(&mut self, what: &str) -> Sip {
        match self.frame(2000, what).await {
            Frame::Message(m) => Sip(String::from_utf8_lossy(&m).into_owned()),
            Frame::Ping => panic!("{what}: a ping instead of a message"),
        }
    }

    /// The next message that is not a 100 Trying.
    async fn recv_final(&mut self, what: &str) -> Sip {
        loop {
            let m = self.recv(what).await;
            if !m.start_line().starts_with("SIP/2.0 100") {
                return m;
            }
        }
    }

    /// Send a keep-alive ping and read its pong (nothing else may be pending).
    async fn ping(&mut self) {
        self.send("\r\n\r\n").await;
        let mut pong = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(2), self.stream.read(&mut pong))
            .await
            .expect("a pong")
            .unwrap();
        assert_eq!(&pong[..n], b"\r\n");
    }

    /// Whether the peer closes the connection within `ms` (what it sends
    /// meanwhile is read and thrown away).
    async fn closed_within(&mut self, ms: u64) -> bool {
        let deadline = Instant::now() + Duration::from_millis(ms);
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// A UAS listening on TCP.
struct Uas {
    listener: TcpListener,
}

impl Uas {
    async fn bind() -> Uas {
        Uas {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    async fn accept(&self, what: &str) -> Conn {
        match tokio::time::timeout(Duration::from_secs(2), self.listener.accept()).await {
            Ok(Ok((stream, _))) => Conn::from(stream),
            _ => panic!("{what}: the proxy did not connect"),
        }
    }
}

fn invite(ruri: &str, via: &str, call_id: &str, body: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
         Via: {via}\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1;transport=tcp>\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn metric(series: &str) -> f64 {
    sipforge_runtime::metrics::sample(&sipforge_runtime::metrics::encode(), series).unwrap_or(0.0)
}

fn closed(reason: &str) -> f64 {
    metric(&format!(
        "sipforge_connections_closed_total{{reason=\"{reason}\"}}"
    ))
}

/// A request over a new connection is answered: the proxy still serves.
async fn still_works(proxy: SocketAddr) {
    served(&mut Conn::connect(proxy).await, "still-works").await;
}

/// An OPTIONS sent over `caller` is relayed to a UAS over TCP and its 200
/// comes back.
async fn served(caller: &mut Conn, call_id: &str) {
    let uas = Uas::bind().await;
    let ruri = format!("sip:bob@127.0.0.1:{};transport=tcp", uas.port());
    let via = caller.via();
    caller
        .send(&common::request("OPTIONS", &ruri, &via, call_id, ""))
        .await;
    let mut callee = uas.accept(call_id).await;
    let req = callee.recv("the OPTIONS at the UAS").await;
    callee.send(&common::response_to(&req, "200 OK", "")).await;
    let resp = caller.recv_final("the 200 to the OPTIONS").await;
    assert_eq!(resp.start_line(), "SIP/2.0 200 OK", "{call_id}");
}

/// Stateless `forward`: a 3,000-byte INVITE over TCP reaches the UAS over
/// TCP intact, with our TCP Via and Record-Route; the response comes back
/// over the caller's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_over_tcp_both_ways() {
    let (_server, proxy) = start(&common::proxy_core::ROUTES, Limits::default()).await;
    let uas = Uas::bind().await;
    let mut caller = Conn::connect(proxy).await;
    let body = "v=0\r\n".to_string() + &"a=x-filler:0123456789abcdef\r\n".repeat(105);
    assert!(body.len() > 3000 - 300);
    let ruri = format!("sip:bob@127.0.0.1:{};transport=tcp", uas.port());
    let text = invite(&ruri, &caller.via(), "tcp-forward", &body);
    assert!(text.len() >= 3000, "{}", text.len());
    caller.send(&text).await;

    let mut callee = uas.accept("the forwarded INVITE").await;
    let req = callee.recv("the INVITE at the UAS").await;
    assert!(req.start_line().starts_with("INVITE "), "{}", req.0);
    let top = req.header("Via").unwrap();
    assert!(
        top.starts_with(&format!("SIP/2.0/TCP {proxy}")),
        "our Via: {top}"
    );
    let rr = req.header("Record-Route").unwrap();
    assert!(rr.contains("transport=tcp"), "{rr}");
    assert_eq!(req.body(), body);
    assert_eq!(
        req.header("Content-Length").unwrap(),
        body.len().to_string()
    );

    let reply = common::response_to(&req, "200 OK", "X-Callee: tcp\r\n");
    callee.send(&reply).await;
    let resp = caller
        .recv_final("the 200 over the caller's connection")
        .await;
    assert_eq!(resp.start_line(), "SIP/2.0 200 OK");
    assert_eq!(resp.header("X-Proxied").unwrap(), "For the reply");
    assert_eq!(resp.headers("Via").len(), 1, "{}", resp.0);
}

/// Stateful `relay`: the proxy's 100 Trying, then the UAS's 180 and 200,
/// over the caller's connection; the transaction's request reaches the
/// UAS over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_tcp_both_ways() {
    let (server, proxy) = start(&common::relay::ROUTES, Limits::default()).await;
    let uas = Uas::bind().await;
    let mut caller = Conn::connect(proxy).await;
    let ruri = format!("sip:bob@127.0.0.1:{};transport=tcp", uas.port());
    caller
        .send(&invite(&ruri, &caller.via(), "tcp-relay", "v=0\r\n"))
        .await;
    let trying = caller.recv("the proxy's 100").await;
    assert_eq!(trying.start_line(), "SIP/2.0 100 Trying");
    let mut callee = uas.accept("the relayed INVITE").await;
    let req = callee.recv("the INVITE at the UAS").await;
    assert!(req.header("Via").unwrap().starts_with("SIP/2.0/TCP "));
    assert_eq!(req.body(), "v=0\r\n");
    callee
        .send(&common::response_to(&req, "180 Ringing", ""))
        .await;
    callee.send(&common::response_to(&req, "200 OK", "")).await;
    let ringing = caller.recv("the 180").await;
    assert_eq!(ringing.start_line(), "SIP/2.0 180 Ringing");
    let ok = caller.recv("the 200").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.header("X-Request").unwrap(), "INVITE bob");
    assert!(server.connections() >= 2);
}

/// Two requests in one write, and one request in 7-byte writes, all arrive
/// whole; the UAS's responses, also pipelined, come back in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_split_messages() {
    let (_server, proxy) = start(&common::proxy_core::ROUTES, Limits::default()).await;
    let uas = Uas::bind().await;
    let mut caller = Conn::connect(proxy).await;
    let ruri = format!("sip:bob@127.0.0.1:{};transport=tcp", uas.port());
    let one = common::request("OPTIONS", &ruri, &caller.via(), "pipe-1", "");
    let two = common::request("OPTIONS", &ruri, &caller.via(), "pipe-2", "");
    caller.send(&format!("{one}{two}")).await;
    let mut callee = uas.accept("the pipelined requests").await;
    let a = callee.recv("the first").await;
    let b = callee.recv("the second").await;
    assert_eq!(a.header("Call-ID").unwrap(), "pipe-1");
    assert_eq!(b.header("Call-ID").unwrap(), "pipe-2");
    let replies =
        common::response_to(&a, "200 OK", "") + &common::response_to(&b, "202 Accepted", "");
    callee.send(&replies).await;
    assert_eq!(caller.recv("200").await.start_line(), "SIP/2.0 200 OK");
    assert_eq!(
        caller.recv("202").await.start_line(),
        "SIP/2.0 202 Accepted"
    );

    let three = invite(
        &ruri,
        &caller.via(),
        "split",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n",
    );
    for piece in three.as_bytes().chunks(7) {
        caller.stream.write_all(piece).await.unwrap();
        caller.stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let c = callee.recv("the split INVITE").await;
    assert_eq!(c.header("Call-ID").unwrap(), "split");
    assert_eq!(c.body(), "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n");
}

/// A double-CRLF ping gets a single-CRLF pong (RFC 5626 §3.5.1), and the
/// pings keep an otherwise idle connection open past the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_and_idle_timeout() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(800),
        ..Limits::default()
    };
    let (_server, proxy) = start(&common::proxy_core::ROUTES, limits).await;
    let mut conn = Conn::connect(proxy).await;
    for round in 0..4 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        conn.ping().await;
    }
    let idle = closed("idle");
    let started = Instant::now();
    assert!(conn.closed_within(3000).await, "idle connection not closed");
    assert!(started.elapsed() >= Duration::from_millis(600));
    let deadline = Instant::now() + Duration::from_secs(2);
    while closed("idle") <= idle {
        assert!(Instant::now() < deadline, "not counted as idle");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    still_works(proxy).await;
}

/// Headers that never end: closed at the size limit, after at most the
/// limit was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_headers_are_closed_at_the_size_limit() {
    let (_server, proxy) = start(&common::proxy_core::ROUTES, Limits::default()).await;
    let before = closed("oversize");
    let mut conn = Conn::connect(proxy).await;
    conn.send("INVITE sip:bob@127.0.0.1 SIP/2.0\r\n").await;
    let line = "X-Filler: ".to_string() + &"a".repeat(1000) + "\r\n";
    let mut sent = 0usize;
    let mut refused = false;
    for _ in 0..1000 {
        if conn.stream.write_all(line.as_bytes()).await.is_err() {
            refused = true;
            break;
        }
        sent += line.len();
        if sent > 200 * 1024 {
            break;
        }
    }
    assert!(refused || conn.closed_within(2000).await, "still open");
    let deadline = Instant::now() + Duration::from_secs(2);
    while closed("oversize") <= before {
        assert!(Instant::now() < deadline, "not counted as oversize");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    still_works(proxy).await;
}

/// A Content-Length of 10 MB: closed as soon as the header section is
/// read, without waiting for (or buffering) the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_content_length_is_refused_at_once() {
    let (_server, proxy) = start(&common::proxy_core::ROUTES, Limits::default()).await;
    let mut conn = Conn::connect(proxy).await;
    let via = conn.via();
    let text = common::request("MESSAGE", "sip:bob@127.0.0.1", &via, "huge", "")
        .replace("Content-Length: 0", "Content-Length: 10000000");
    conn.send(&text).await;
    conn.send("only the start of the body").await;
    assert!(conn.closed_within(1000).await, "not closed at once");
    still_works(proxy).await;
}

/// A byte per 300 ms: closed by the header timeout (1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sender_is_closed_by_the_header_timeout() {
    let (_server, proxy) = start_with_one_second_header_timeout().await;
    let before = closed("slow_header");
    let mut conn = Conn::connect(proxy).await;
    let started = Instant::now();
    let mut closed_early = false;
    for byte in b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n" {
        if conn.stream.write_all(&[*byte]).await.is_err() {
            closed_early = true;
            break;
        }
        if started.elapsed() > Duration::from_millis(1500) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(closed_early || conn.closed_within(1500).await, "not closed");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "closed too late: {took:?}");
    assert!(closed("slow_header") > before);
    still_works(proxy).await;
}

/// 5,000 connections against a limit of 200: those over it are closed at
/// once; once they are gone, a request still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed() {
    let limits = Limits {
        max_connections: 200,
        ..Limits::default()
    };
    let (server, proxy) = start(&common::proxy_core::ROUTES, limits).await;
    let before = closed("limit");
    let mut conns = Vec::new();
    for _ in 0..5000 {
        match TcpStream::connect(proxy).await {
            Ok(c) => conns.push(c),
            Err(e) => panic!("connect: {e}"),
        }
    }
    // The refused ones see their connection closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed("limit") < before + 4800.0 {
        assert!(
            Instant::now() < deadline,
            "refused: {}",
            closed("limit") - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.connections() <= 200);
    let mut open = 0;
    let mut buf = [0u8; 1];
    for c in &mut conns {
        if tokio::time::timeout(Duration::from_millis(1), c.read(&mut buf))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    assert!(open <= 200, "{open} connections still open");
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} still open",
            server.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    still_works(proxy).await;
}

/// A next hop given by name goes through the resolver, then over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_hop_by_name_is_reached_over_tcp() {
    let (_server, proxy) = start(&common::proxy_core::ROUTES, Limits::default()).await;
    let uas = Uas::bind().await;
    let mut caller = Conn::connect(proxy).await;
    let ruri = format!("sip:bob@localhost:{};transport=tcp", uas.port());
    let via = caller.via();
    caller
        .send(&common::request("OPTIONS", &ruri, &via, "by-name", ""))
        .await;
    let mut callee = uas.accept("the request to localhost").await;
    let req = callee.recv("the OPTIONS").await;
    assert_eq!(req.header("Call-ID").unwrap(), "by-name");
    callee.send(&common::response_to(&req, "200 OK", "")).await;
    assert_eq!(caller.recv("200").await.start_line(), "SIP/2.0 200 OK");
}

/// A UDP and a TCP listener side by side: both serve, in listen order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_listeners_side_by_side() {
    let mut options = common::options();
    options.listen = vec![
        ListenAddr::parse("udp:127.0.0.1:0").unwrap(),
        ListenAddr::parse("tcp:127.0.0.1:0").unwrap(),
    ];
    let server = sipforge_runtime::net::start(&common::proxy_core::ROUTES, options)
        .await
        .unwrap();
    let [udp, tcp] = server.local_addrs() else {
        panic!("two addresses")
    };
    let peer = common::Peer::bind().await;
    let via = format!("SIP/2.0/UDP {};branch=z9hG4bKside", peer.addr);
    peer.send(
        *udp,
        &common::request("REGISTER", "sip:example.com", &via, "reg-udp", ""),
    )
    .await;
    let (resp, _) = peer.recv("the 403 over UDP").await;
    assert!(resp.start_line().starts_with("SIP/2.0 403"));
    let mut conn = Conn::connect(*tcp).await;
    let via = conn.via();
    conn.send(&common::request(
        "REGISTER",
        "sip:example.com",
        &via,
        "reg-tcp",
        "",
    ))
    .await;
    assert!(
        conn.recv("the 403 over TCP")
            .await
            .start_line()
            .starts_with("SIP/2.0 403")
    );
}

/// A connection a client opened to us carries our requests to the
/// client's address (RFC 5923 style): the client has no listener at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_connection_carries_requests_to_it() {
    let (_server, proxy) = start(&common::proxy_core::ROUTES, Limits::default()).await;
    let mut alice = Conn::connect(proxy).await;
    // Alice's connection is registered when accepted: give the accept a moment.
    alice.ping().await;
    let mut bob = Conn::connect(proxy).await;
    let ruri = format!("sip:alice@{};transport=tcp", alice.local);
    let via = bob.via();
    bob.send(&common::request("MESSAGE", &ruri, &via, "to-alice", ""))
        .await;
    let req = alice.recv("the MESSAGE over alice's own connection").await;
    assert_eq!(req.header("Call-ID").unwrap(), "to-alice");
    alice.send(&common::response_to(&req, "200 OK", "")).await;
    assert_eq!(bob.recv("200").await.start_line(), "SIP/2.0 200 OK");
}

/// A relayed request whose TCP connection cannot be opened is a 503 from
/// that hop (RFC 3261 §8.1.3.1): the transaction ends at once (the
/// fixture's failure route does nothing for a 503), not after Timer B, and
/// the caller gets 500 (§16.7 step 6: a 503 is not passed upstream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_503_at_once() {
    let (_server, proxy) = start(&common::relay::ROUTES, Limits::default()).await;
    // A port nobody listens on (bound, then closed).
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut caller = Conn::connect(proxy).await;
    let ruri = format!("sip:bob@127.0.0.1:{closed};transport=tcp");
    let started = std::time::Instant::now();
    caller
        .send(&invite(&ruri, &caller.via(), "tcp-refused", ""))
        .await;
    let trying = caller.recv("the proxy's 100").await;
    assert_eq!(trying.start_line(), "SIP/2.0 100 Trying");
    let answer = caller.recv("the final answer").await;
    assert_eq!(
        answer.start_line(),
        "SIP/2.0 500 Server Internal Error",
        "{}",
        answer.0
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "not after a timeout: {:?}",
        started.elapsed()
    );
}

/// A connection from `from` (a 127.0.0.x address) to `to`.
async fn connect_from(from: &str, to: SocketAddr) -> Conn {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    Conn::from(socket.connect(to).await.expect("connect"))
}

/// An accepted connection must bring a complete message within the
/// header timeout (1 s here): one that only pings is closed (`silent`),
/// as is one that says nothing; one that sent a request stays open past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_a_message_is_closed() {
    let (_server, proxy) = start_with_one_second_header_timeout().await;
    let before = closed("silent");
    let mut mute = Conn::connect(proxy).await;
    let mut pinging = Conn::connect(proxy).await;
    let mut talking = Conn::connect(proxy).await;
    served(&mut talking, "talks").await;
    let started = Instant::now();
    // Keep-alives are answered, but they are not a message; nor is a
    // header section that is not SIP.
    for _ in 0..3 {
        pinging.ping().await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    mute.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(pinging.closed_within(2000).await, "the pinging one stays");
    assert!(mute.closed_within(500).await, "the mute one stays");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed late: {:?}",
        started.elapsed()
    );
    assert!(closed("silent") >= before + 2.0);
    // The one that spoke is still open after its first second.
    served(&mut talking, "talks-again").await;
}

/// One source holding its share of connections cannot lock others out:
/// over `max_per_source` its new connections are closed at once
/// (`source_limit`), while another source still gets in and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_take_every_connection() {
    let limits = Limits {
        max_connections: 40,
        max_per_source: 10,
        ..Limits::default()
    };
    let (server, proxy) = start(&common::proxy_core::ROUTES, limits).await;
    let before = closed("source_limit");
    let mut held = Vec::new();
    for _ in 0..30 {
        held.push(connect_from("127.0.0.3", proxy).await);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while closed("source_limit") < before + 20.0 {
        assert!(
            Instant::now() < deadline,
            "refused: {}",
            closed("source_limit") - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.connections(), 10, "the source's share, no more");
    // Another source is served while the first holds its ten.
    served(&mut connect_from("127.0.0.4", proxy).await, "other-source").await;
    // Once the first source lets go, it gets in again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} still open",
            server.connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served(&mut connect_from("127.0.0.3", proxy).await, "again").await;
}

/// `limits.per_source` over TCP: the request that starts a ban closes
/// the connection (`banned`), and the banned source's new connections are
/// closed at once until the ban ends; a trusted source is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_source_loses_its_connection_and_cannot_connect() {
    let (_server, proxy) = start(&common::limits::ROUTES, Limits::default()).await;
    let before = closed("banned");
    let mut flood = connect_from("127.0.0.5", proxy).await;
    let mut text = String::new();
    for i in 0..30 {
        let via = format!("SIP/2.0/TCP 127.0.0.5:5060;branch=z9hG4bK-flood{i}");
        text.push_str(&common::request(
            "OPTIONS",
            "sip:127.0.0.1",
            &via,
            &format!("flood-{i}"),
            "",
        ));
    }
    flood.send(&text).await;
    assert!(
        flood.closed_within(2000).await,
        "the flooding connection stays"
    );
    assert!(closed("banned") > before);
    let mut again = connect_from("127.0.0.5", proxy).await;
    assert!(again.closed_within(1000).await, "a banned source connects");
    // The fixture answers every request it lets through.
    let passes = |from: &'static str, call_id: &'static str| async move {
        let mut conn = connect_from(from, proxy).await;
        let via = conn.via();
        conn.send(&common::request(
            "OPTIONS",
            "sip:127.0.0.1",
            &via,
            call_id,
            "",
        ))
        .await;
        let answer = conn.recv_final(call_id).await;
        assert_eq!(answer.start_line(), "SIP/2.0 200 Passed", "{call_id}");
    };
    // 127.0.0.2 is trusted: served.
    passes("127.0.0.2", "trusted").await;
    // The ban (2 s) ends: the source is served again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    passes("127.0.0.5", "after-ban").await;
}

/// A peer that stops reading: what is sent to it waits in a queue bounded
/// in bytes (256 KiB) beyond the kernel's buffers, the rest is dropped
/// (`unsent`), and the write timeout (1 s here) closes the connection; the
/// proxy serves others meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_costs_a_bounded_queue_then_its_connection() {
    let limits = Limits {
        write_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (server, proxy) = start(&common::proxy_core::ROUTES, limits).await;
    let unsent = || metric("sipforge_drops_total{reason=\"unsent\"}");
    let before = (unsent(), closed("error"));
    let deaf = Uas::bind().await;
    let mut caller = Conn::connect(proxy).await;
    let ruri = format!("sip:bob@127.0.0.1:{};transport=tcp", deaf.port());
    let body = "x".repeat(60 * 1024);
    // 24 MB toward a peer that reads nothing: far more than the kernel
    // buffers plus the queue.
    let mut accepted = None;
    for i in 0..400 {
        let via = caller.via();
        let text = common::request("MESSAGE", &ruri, &via, &format!("deaf-{i}"), "").replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
        );
        caller.send(&text).await;
        if accepted.is_none() {
            // Hold the proxy's connection, and never read from it.
            accepted = Some(deaf.accept("the proxy's connection").await);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    while unsent() <= before.0 || closed("error") <= before.1 {
        assert!(
            Instant::now() < deadline,
            "unsent +{}, closed(error) +{}",
            unsent() - before.0,
            closed("error") - before.1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only the caller's connection is left.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.connections() > 1 {
        assert!(Instant::now() < deadline, "{} open", server.connections());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(accepted);
    still_works(proxy).await;
}

/// Requests routed to hosts that accept a connection and never answer
/// (held until the transaction gives up) cannot take every slot: the
/// connections we open stop at three quarters of `max_connections`, and a
/// phone that connects next still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_we_open_leave_room_for_phones() {
    let limits = Limits {
        max_connections: 8,
        ..Limits::default()
    };
    let (server, proxy) = start(&common::relay::ROUTES, limits).await;
    // Listeners that never accept: the kernel completes each connect, and
    // nothing is ever said on it.
    let mut silent = Vec::new();
    for _ in 0..7 {
        silent.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let mut caller = Conn::connect(proxy).await;
    for (i, l) in silent.iter().enumerate() {
        let ruri = format!(
            "sip:bob@127.0.0.1:{};transport=tcp",
            l.local_addr().unwrap().port()
        );
        let via = caller.via();
        caller
            .send(&common::request(
                "OPTIONS",
                &ruri,
                &via,
                &format!("lure-{i}"),
                "",
            ))
            .await;
    }
    // Six open (three quarters of eight); the seventh is not sent, which
    // ends its transaction at once (a 503 from that hop, 500 upstream).
    let answer = caller.recv_final("the answer to the seventh").await;
    assert!(answer.0.contains("lure-6"), "{}", answer.0);
    assert_eq!(answer.start_line(), "SIP/2.0 500 Server Internal Error");
    assert_eq!(server.connections(), 7, "the caller's and six opened");
    // A phone connects: the eighth slot is its.
    let before = closed("limit");
    let mut phone = Conn::connect(proxy).await;
    assert!(!phone.closed_within(300).await, "the phone was refused");
    assert_eq!(server.connections(), 8);
    // The table is full now: the next one is closed at once.
    let mut late = Conn::connect(proxy).await;
    assert!(late.closed_within(2000).await, "over the limit but kept");
    assert!(closed("limit") > before);
    drop(silent);
}
