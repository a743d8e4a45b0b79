//! SIP over WebSocket (RFC 7118) through an in-process proxy with a
//! `ws:127.0.0.1:0` listener (and a UDP one): a tokio-tungstenite client
//! with the `sip` subprotocol gets OPTIONS answered, places a call to a UDP
//! peer with an `.invalid` Via and Contact and gets the responses and the
//! callee's in-dialog BYE over its connection; an upgrade without `sip` is
//! refused, a garbage message is dropped, an oversized one closes the
//! connection, each followed by a client that still works.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Peer, Sip};
use futures_util::{SinkExt, StreamExt};
use sipforge_runtime::net::connections::Limits;
use sipforge_runtime::transport::ListenAddr;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

/// Start a proxy running the ws fixture with a WebSocket listener (first)
/// and a UDP one; their addresses.
async fn start(limits: Limits) -> (sipforge_runtime::net::Server, SocketAddr, SocketAddr) {
    let mut options = common::options();
    options.listen = vec![
        ListenAddr::parse("ws:127.0.0.1:0").unwrap(),
        ListenAddr::parse("udp:127.0.0.1:0").unwrap(),
    ];
    options.streams = limits;
    let server = sipforge_runtime::net::start(&common::ws::ROUTES, options)
        .await
        .expect("proxy starts");
    let (ws, udp) = (server.local_addrs()[0], server.local_addrs()[1]);
    (server, ws, udp)
}

/// The upgrade request to `to`, offering `protocol` (None: no subprotocol).
async fn upgrade(
    to: SocketAddr,
    protocol: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, tungstenite::Error> {
    let mut request = format!("ws://{to}/").into_client_request().unwrap();
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let tcp = TcpStream::connect(to).await.expect("connect");
    tokio_tungstenite::client_async(request, tcp)
        .await
        .map(|(ws, _)| ws)
}

/// A WebSocket client speaking SIP, named `host` (an `.invalid` name).
struct Client {
    ws: WebSocketStream<TcpStream>,
    host: String,
}

impl Client {
    async fn connect(to: SocketAddr, host: &str) -> Client {
        let ws = upgrade(to, Some("sip")).await.expect("upgrade with sip");
        Client {
            ws,
            host: host.to_string(),
        }
    }

    fn via(&self) -> String {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        format!(
            "SIP/2.0/WS {};branch=z9hG4bKws{}",
            self.host,
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("ws send");
    }

    /// The next SIP message within 2 s.
    async fn recv(&mut self, what: &str) -> Sip {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(2), self.ws.next()).await;
            match next {
                Ok(Some(Ok(Message::Text(t)))) => return Sip(t.to_string()),
                Ok(Some(Ok(Message::Binary(b)))) => {
                    return Sip(String::from_utf8_lossy(&b).into_owned());
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("{what}: {e}"),
                Ok(None) => panic!("{what}: connection closed"),
                Err(_) => panic!("{what}: nothing within 2 s"),
            }
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

    /// OPTIONS, answered 200 by the routes.
    async fn options_answered(&mut self, call_id: &str) {
        let via = self.via();
        self.send(&common::request(
            "OPTIONS",
            "sip:proxy@127.0.0.1",
            &via,
            call_id,
            "",
        ))
        .await;
        let ok = self.recv_final("the OPTIONS answer").await;
        assert_eq!(ok.start_line(), "SIP/2.0 200 OK", "{}", ok.0);
        assert_eq!(ok.header("Call-ID").unwrap(), call_id);
    }

    /// Whether the proxy closes the connection within `ms`.
    async fn closed_within(&mut self, ms: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// OPTIONS over WebSocket is answered by the routes over the connection;
/// the message carries no Content-Length (the frame delimits it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_answered_over_ws() {
    let (server, ws, _) = start(Limits::default()).await;
    let mut client = Client::connect(ws, "a1b2c3.invalid").await;
    client.options_answered("ws-options").await;
    let via = client.via();
    let bare = format!(
        "OPTIONS sip:proxy@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@x>;tag=1\r\n\
         To: <sip:b@x>\r\nCall-ID: ws-no-length\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n"
    );
    client.send(&bare).await;
    let ok = client.recv_final("the answer without Content-Length").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.header("Call-ID").unwrap(), "ws-no-length");
    // The answer's top Via is the client's, with where it came from.
    let top = ok.header("Via").unwrap();
    assert!(top.starts_with("SIP/2.0/WS a1b2c3.invalid"), "{top}");
    assert!(
        top.contains(";rport=") && top.contains(";received=127.0.0.1"),
        "{top}"
    );
    assert_eq!(server.connections(), 1);
}

/// A call from a WebSocket client with an `.invalid` Via and Contact to a
/// UDP callee: record-routed on both sides, the 180/200 back over the
/// connection (by received/rport, no lookup), and the callee's BYE along
/// the Route set to the client's Contact over the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_between_ws_and_udp_with_in_dialog_bye() {
    let (server, ws, udp) = start(Limits::default()).await;
    let callee = Peer::bind().await;
    let mut client = Client::connect(ws, "df7jal23ls0d.invalid").await;
    let via = client.via();
    let ruri = format!("sip:bob@127.0.0.1:{}", callee.port());
    let contact = "Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>\r\nMax-Forwards: 70\r\n";
    client
        .send(&common::request("INVITE", &ruri, &via, "ws-call", contact))
        .await;
    let (invite, from) = callee.recv("the INVITE at the UDP callee").await;
    assert_eq!(from, udp);
    let rr = invite.headers("Record-Route");
    assert_eq!(rr.len(), 2, "{}", invite.0);
    assert!(rr[0].contains(&udp.to_string()), "{rr:?}");
    assert!(rr[1].contains("transport=ws"), "{rr:?}");
    let top = invite.header("Via").unwrap();
    assert!(top.starts_with("SIP/2.0/UDP "), "{top}");
    let rr_lines: String = rr
        .iter()
        .map(|r| format!("Record-Route: {r}\r\n"))
        .collect();
    let answer = format!(
        "{rr_lines}Contact: <sip:bob@127.0.0.1:{}>\r\n",
        callee.port()
    );
    // One at a time: two workers share the UDP socket, so back-to-back
    // datagrams may be handled in either order (as with Kamailio's children).
    callee
        .send(udp, &common::response_to(&invite, "180 Ringing", &answer))
        .await;
    let ringing = client.recv_final("the 180 over ws").await;
    assert_eq!(ringing.start_line(), "SIP/2.0 180 Ringing");
    callee
        .send(udp, &common::response_to(&invite, "200 OK", &answer))
        .await;
    let ok = client.recv_final("the 200 over ws").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.header("Call-ID").unwrap(), "ws-call");
    assert_eq!(ok.headers("Record-Route").len(), 2);

    // The callee's BYE: to the client's Contact, along the Route set (the
    // Record-Route entries in order, for the callee).
    let routes: String = rr.iter().map(|r| format!("Route: {r}\r\n")).collect();
    let bye = format!(
        "BYE sip:alice@df7jal23ls0d.invalid;transport=ws SIP/2.0\r\n\
         Via: SIP/2.0/UDP {};branch=z9hG4bKbye1\r\n\
         From: <sip:bob@example.com>;tag=b1\r\n\
         To: <sip:alice@example.com>;tag=a1\r\n\
         Call-ID: ws-call\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n{routes}\
         Content-Length: 0\r\n\r\n",
        callee.addr
    );
    callee.send(udp, &bye).await;
    let got = client.recv("the BYE over ws").await;
    assert!(
        got.start_line()
            .starts_with("BYE sip:alice@df7jal23ls0d.invalid"),
        "{}",
        got.0
    );
    let top = got.header("Via").unwrap();
    assert!(top.starts_with("SIP/2.0/WS "), "{top}");
    client.send(&common::response_to(&got, "200 OK", "")).await;
    let (bye_ok, _) = callee.recv("the 200 to the BYE at the callee").await;
    assert_eq!(bye_ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(bye_ok.header("CSeq").unwrap(), "1 BYE");
    // The `.invalid` name was never looked up (RFC 6761 §6.4).
    for port in [None, Some(5060)] {
        let ws = Some(sipforge_runtime::transport::Transport::Ws);
        assert!(
            server
                .name_targets("df7jal23ls0d.invalid", port, ws)
                .is_none()
        );
    }
}

/// An upgrade that does not offer the `sip` subprotocol is refused (400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_without_sip_is_refused() {
    let (_server, ws, _) = start(Limits::default()).await;
    for offer in [None, Some("chat")] {
        match upgrade(ws, offer).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
            Err(e) => panic!("{offer:?}: refused, but not with 400: {e}"),
            Ok(_) => panic!("{offer:?}: an upgrade without sip was accepted"),
        }
    }
    let mut client = Client::connect(ws, "after.invalid").await;
    client.options_answered("ws-after-refusal").await;
}

/// A message that is not SIP is dropped; the connection still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_dropped_and_the_connection_stays() {
    let (_server, ws, _) = start(Limits::default()).await;
    let mut client = Client::connect(ws, "garbage.invalid").await;
    client.send("hello, this is not SIP").await;
    client
        .ws
        .send(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .unwrap();
    client.send("\r\n\r\n").await;
    client.options_answered("ws-after-garbage").await;
}

/// A message over the size limit closes the connection; a new client
/// still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_the_connection() {
    let (server, ws, _) = start(Limits::default()).await;
    let mut client = Client::connect(ws, "big.invalid").await;
    let via = client.via();
    let big = format!(
        "{}{}",
        common::request("MESSAGE", "sip:b@127.0.0.1", &via, "ws-big", ""),
        "x".repeat(70 * 1024)
    );
    // The proxy may close before the whole frame is written.
    let _ = client.ws.send(Message::text(big)).await;
    assert!(client.closed_within(2000).await, "still open after 70 KiB");
    let mut next = Client::connect(ws, "next.invalid").await;
    next.options_answered("ws-after-big").await;
    for _ in 0..50 {
        if server.connections() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.connections(), 1);
}

/// After the upgrade, the first SIP message must come within the header
/// timeout (1 s here); WebSocket pings and frames that are not SIP do not
/// count. A client that has sent one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_no_sip_is_closed() {
    let (_server, ws, _) = start(Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut quiet = Client::connect(ws, "quiet.invalid").await;
    let mut talking = Client::connect(ws, "talking.invalid").await;
    talking.options_answered("ws-talks").await;
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let _ = quiet.ws.send(Message::Ping(vec![1, 2, 3].into())).await;
        // Nor do text frames that are no SIP message.
        let _ = quiet.ws.send(Message::text("not SIP")).await;
        let _ = quiet.ws.send(Message::text("GET / HTTP/1.1\r\n\r\n")).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(quiet.closed_within(2000).await, "the quiet client stays");
    assert!(started.elapsed() < Duration::from_secs(3));
    talking.options_answered("ws-talks-again").await;
}
