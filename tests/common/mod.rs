//! Test helpers: compiled fixture routes, an in-process proxy on an
//! ephemeral port, and a small UDP test UA that speaks SIP as plain text.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));

pub mod netns;
pub mod pki;
pub mod redis;

/// What a sans-IO core sent, as (destination, text) pairs.
pub fn sent_texts(out: Vec<sipforge_runtime::proxy::Outgoing>) -> Vec<(String, String)> {
    use sipforge_runtime::target::NextHop;
    out.into_iter()
        .map(|o| {
            let to = match o.to {
                NextHop::Addr(a) | NextHop::Found { addr: a, .. } | NextHop::Flow(a) => {
                    a.to_string()
                }
                NextHop::Name { host, port, .. } => format!("{host}:{port}"),
            };
            (to, String::from_utf8_lossy(o.bytes.as_ref()).into_owned())
        })
        .collect()
}

/// Start a proxy running `routes` on 127.0.0.1:0.
pub async fn start_proxy(
    routes: &'static dyn sipforge_runtime::api::Routes,
) -> (sipforge_runtime::net::Server, SocketAddr) {
    start_proxy_with(routes, Default::default()).await
}

/// Timers 10x shorter than RFC 3261's (T1 50 ms: Timer B/F 3.2 s), so
/// timeout tests finish quickly.
pub fn fast_timers() -> sipforge_runtime::proxy::CoreConfig {
    sipforge_runtime::proxy::CoreConfig {
        timers: sipforge_runtime::transaction::Timers {
            t1: Duration::from_millis(50),
            t2: Duration::from_millis(400),
            t4: Duration::from_millis(500),
        },
        ..Default::default()
    }
}

/// Start a proxy running `routes` on 127.0.0.1:0 with the given core settings.
pub async fn start_proxy_with(
    routes: &'static dyn sipforge_runtime::api::Routes,
    core: sipforge_runtime::proxy::CoreConfig,
) -> (sipforge_runtime::net::Server, SocketAddr) {
    start_proxy_auth(routes, core, None).await
}

/// Start a proxy running `routes` on 127.0.0.1:0 whose `authenticate`
/// checks against `authenticator`.
pub async fn start_proxy_auth(
    routes: &'static dyn sipforge_runtime::api::Routes,
    core: sipforge_runtime::proxy::CoreConfig,
    authenticator: Option<std::sync::Arc<sipforge_runtime::auth::Authenticator>>,
) -> (sipforge_runtime::net::Server, SocketAddr) {
    start_proxy_options(routes, core, authenticator, None).await
}

/// Start a proxy running `routes` on 127.0.0.1:0 that looks next hop names
/// up with the DNS servers `dns_servers` (None: the routes', else the system's).
pub async fn start_proxy_options(
    routes: &'static dyn sipforge_runtime::api::Routes,
    core: sipforge_runtime::proxy::CoreConfig,
    authenticator: Option<std::sync::Arc<sipforge_runtime::auth::Authenticator>>,
    dns_servers: Option<Vec<SocketAddr>>,
) -> (sipforge_runtime::net::Server, SocketAddr) {
    let mut options = options();
    options.core = core;
    options.authenticator = authenticator;
    options.dns_servers = dns_servers;
    let server = sipforge_runtime::net::start(routes, options)
        .await
        .expect("proxy starts");
    let addr = server.local_addrs()[0];
    (server, addr)
}

/// The options tests start proxies with: one UDP socket on 127.0.0.1:0,
/// two workers, default core settings and stream limits.
pub fn options() -> sipforge_runtime::net::Options {
    // RUST_LOG=debug shows the proxy's log lines under `cargo test -- --nocapture`.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    sipforge_runtime::net::Options {
        listen: vec![sipforge_runtime::transport::ListenAddr::udp(
            "127.0.0.1:0".parse().unwrap(),
        )],
        advertise: None,
        core: Default::default(),
        // Two receive threads per socket (and two timer threads) in every
        // test: the multi-worker paths are the ones exercised.
        workers: 2,
        secret: None,
        authenticator: None,
        takeover: false,
        streams: Default::default(),
        dns_servers: None,
        registrar_store: None,
        rtpengine: None,
        tls: None,
    }
}

/// A SIP peer on an ephemeral loopback port.
pub struct Peer {
    pub socket: UdpSocket,
    pub addr: SocketAddr,
}

impl Peer {
    pub async fn bind() -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        Peer { socket, addr }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub async fn send(&self, to: SocketAddr, text: &str) {
        self.socket.send_to(text.as_bytes(), to).await.unwrap();
    }

    pub async fn send_bytes(&self, to: SocketAddr, bytes: &[u8]) {
        self.socket.send_to(bytes, to).await.unwrap();
    }

    /// The next datagram within 2 s, as text; panics with `what` when none comes.
    pub async fn recv(&self, what: &str) -> (Sip, SocketAddr) {
        self.recv_within(2000, what).await
    }

    /// The next datagram within `ms` milliseconds; panics with `what` when none comes.
    pub async fn recv_within(&self, ms: u64, what: &str) -> (Sip, SocketAddr) {
        let mut buf = vec![0u8; 65_535];
        match tokio::time::timeout(Duration::from_millis(ms), self.socket.recv_from(&mut buf)).await
        {
            Ok(Ok((n, from))) => (Sip(String::from_utf8_lossy(&buf[..n]).into_owned()), from),
            _ => panic!("{what}: nothing received within {ms} ms"),
        }
    }

    /// The next final response (provisional ones skipped), each within 2 s.
    pub async fn recv_final(&self, what: &str) -> Sip {
        loop {
            let (resp, _) = self.recv(what).await;
            if !resp.start_line().starts_with("SIP/2.0 1") {
                return resp;
            }
        }
    }

    /// Assert that nothing arrives within `ms` milliseconds.
    pub async fn expect_silence(&self, ms: u64, what: &str) {
        let mut buf = vec![0u8; 65_535];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(ms), self.socket.recv_from(&mut buf)).await
        {
            panic!(
                "{what}: expected nothing, got:\n{}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    }
}

/// The `branch` parameter of a Via value ("" when there is none).
pub fn branch_of(via: &str) -> String {
    via.split(";branch=")
        .nth(1)
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .to_string()
}

/// A received SIP message as text, with simple accessors for assertions.
#[derive(Debug, Clone)]
pub struct Sip(pub String);

impl Sip {
    pub fn start_line(&self) -> &str {
        self.0.lines().next().unwrap_or("")
    }

    /// Values of every header line named `name` (case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let head = self.0.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n")
            .skip(1)
            // continuation lines (folding) belong to the header above
            .filter(|line| !line.starts_with([' ', '\t']))
            .filter_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The branch of the top Via ("" when there is none).
    pub fn top_branch(&self) -> String {
        branch_of(&self.header("Via").unwrap_or_default())
    }

    pub fn body(&self) -> &str {
        self.0.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

/// One SIP message without a body read from a TCP or TLS stream (`pending`
/// keeps what came after it).
pub async fn read_message<S: tokio::io::AsyncRead + Unpin>(
    conn: &mut S,
    pending: &mut Vec<u8>,
) -> Sip {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let message: Vec<u8> = pending.drain(..end + 4).collect();
            return Sip(String::from_utf8_lossy(&message).into_owned());
        }
        let n = tokio::time::timeout(Duration::from_secs(6), conn.read(&mut chunk))
            .await
            .expect("a request over TCP")
            .unwrap();
        assert!(n > 0, "connection closed");
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// A request as text. `extra` lines end with CRLF each.
pub fn request(method: &str, ruri: &str, via: &str, call_id: &str, extra: &str) -> String {
    let to_tag = if extra.starts_with("To:") || extra.contains("\nTo:") {
        ""
    } else {
        "To: <sip:bob@example.com>\r\n"
    };
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: {via}\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         {to_tag}\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
}

/// A response to `req` (as received by a UAS) with `status`, copying Vias.
pub fn response_to(req: &Sip, status: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for via in req.headers("Via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    for name in ["From", "Call-ID", "CSeq"] {
        if let Some(v) = req.header(name) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    let to = req.header("To").unwrap_or_default();
    let to = if to.contains("tag=") {
        to
    } else {
        format!("{to};tag=b1")
    };
    out.push_str(&format!("To: {to}\r\n{extra}Content-Length: 0\r\n\r\n"));
    out
}

/// Plain-text helpers for tests that handle SIP as `&str`.
pub mod text {
    /// The value of the first header line named `name` (case-insensitive).
    pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
        msg.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// A response to `req` with `status`, copying what a UAS copies (every
    /// Via, From, Call-ID, CSeq; To with `to_tag` added when it has none).
    pub fn response(req: &str, status: &str, to_tag: &str) -> String {
        let mut out = format!("SIP/2.0 {status}\r\n");
        for line in req.split("\r\n").skip(1) {
            let name = line.split(':').next().unwrap_or("").trim();
            if ["Via", "From", "Call-ID", "CSeq"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
            {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        let to = header(req, "To").unwrap_or("");
        if to.contains("tag=") {
            out.push_str(&format!("To: {to}\r\n"));
        } else {
            out.push_str(&format!("To: {to};tag={to_tag}\r\n"));
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }
}
