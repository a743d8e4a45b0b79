//! IPv6 over real sockets on `::1`: a proxy listening on an IPv6 and an
//! IPv4 address relays between the two families, as a dual-stack edge in
//! front of IPv4 carriers does.
//!
//! - Our Via names the socket a request leaves from (`[::1]:PORT` with
//!   brackets, RFC 5118 §4.1), and the `received` we add for an IPv6
//!   source is the bare address (RFC 5118 §4.5).
//! - When the family changes, the request carries two Record-Route
//!   entries (RFC 5658), one per side, and in-dialog requests coming back
//!   either way leave from the socket of the family of the next hop.
//! - The same across transports: UDP over IPv4 in, TCP over IPv6 out.
//! - A stateless forward to an IPv6 target and the response back.
//! - A phone registered over IPv6 from behind an address translator is
//!   reached at the address its REGISTER came from, from the IPv6 socket.
//!
//! Without an IPv6 loopback (a container started with IPv6 off) the tests
//! print SKIPPED and pass, except on CI (`CI=true`), where they fail.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Peer, Sip, response_to};
use sipforge_runtime::transport::ListenAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

/// A UDP peer on `[::1]:0`; None (after a loud line) when this machine has
/// no IPv6 loopback, outside CI.
async fn v6_peer(test: &str) -> Option<Peer> {
    match UdpSocket::bind("[::1]:0").await {
        Ok(socket) => {
            let addr = socket.local_addr().unwrap();
            Some(Peer { socket, addr })
        }
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: no IPv6 loopback to bind [::1]:0 ({e}); CI=true needs one"
            );
            eprintln!("\n==== SKIPPED {test}: no IPv6 loopback ([::1]:0: {e}) ====\n");
            None
        }
    }
}

/// A proxy running the transports fixture (record-route, then relay to
/// the Request-URI, or forward when X-Stateless is present) on `listen`.
async fn proxy(listen: &[&str]) -> (sipforge_runtime::net::Server, Vec<SocketAddr>) {
    let mut options = common::options();
    options.listen = listen
        .iter()
        .map(|l| ListenAddr::parse(l).unwrap())
        .collect();
    let server = sipforge_runtime::net::start(&common::transports::ROUTES, options)
        .await
        .expect("proxy starts");
    let addrs = server.local_addrs().to_vec();
    (server, addrs)
}

/// The next request at `peer` (responses and retransmissions skipped: a
/// 100 Trying for a request of ours is not what the test waits for).
async fn next_request(peer: &Peer, what: &str) -> (Sip, SocketAddr) {
    loop {
        let (msg, from) = peer.recv(what).await;
        if !msg.start_line().starts_with("SIP/2.0") {
            return (msg, from);
        }
    }
}

/// The next response at `peer` other than a 100 Trying.
async fn next_response(peer: &Peer, what: &str) -> (Sip, SocketAddr) {
    loop {
        let (msg, from) = peer.recv(what).await;
        if msg.start_line().starts_with("SIP/2.0") && !msg.start_line().starts_with("SIP/2.0 100") {
            return (msg, from);
        }
    }
}

fn in_dialog(
    method: &str,
    ruri: &str,
    via: &str,
    routes: &str,
    call_id: &str,
    cseq: u32,
) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: {via}\r\nRoute: {routes}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn a_call_between_an_ipv6_caller_and_an_ipv4_callee_both_ways() {
    let Some(caller) = v6_peer("a_call_between_an_ipv6_caller_and_an_ipv4_callee_both_ways").await
    else {
        return;
    };
    let callee = Peer::bind().await;
    let (server, addrs) = proxy(&["udp:[::1]:0", "udp:127.0.0.1:0"]).await;
    let (v6, v4) = (addrs[0], addrs[1]);
    let (p6, p4) = (v6.port(), v4.port());
    let cport = caller.port();

    // The caller writes a sent-by that is not where it sends from (behind
    // a NAT, say), and asks for rport.
    let invite = format!(
        "INVITE sip:bob@127.0.0.1:{} SIP/2.0\r\n\
         Via: SIP/2.0/UDP [2001:db8::9]:5070;rport;branch=z9hG4bK-v6call\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\nCall-ID: v6-call\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@[::1]:{cport}>\r\nContent-Length: 0\r\n\r\n",
        callee.port()
    );
    caller.send(v6, &invite).await;
    let (trying, from) = caller.recv("the 100 Trying").await;
    assert!(
        trying.start_line().starts_with("SIP/2.0 100"),
        "{}",
        trying.0
    );
    assert_eq!(from, v6, "answered from the socket the INVITE came to");

    let (got, from) = next_request(&callee, "the INVITE over IPv4").await;
    assert_eq!(from, v4, "relayed from the IPv4 socket");
    let vias = got.headers("Via");
    assert!(
        vias[0].starts_with(&format!("SIP/2.0/UDP 127.0.0.1:{p4};branch=z9hG4bK")),
        "our Via names the IPv4 socket: {vias:?}"
    );
    assert_eq!(
        vias[1],
        format!("SIP/2.0/UDP [2001:db8::9]:5070;rport={cport};received=::1;branch=z9hG4bK-v6call"),
        "rport filled, received a bare IPv6 address (RFC 5118 §4.5)"
    );
    assert_eq!(
        got.headers("Record-Route"),
        vec![
            format!("<sip:127.0.0.1:{p4};lr>"),
            format!("<sip:[::1]:{p6};lr>")
        ],
        "two entries when the family changes, the callee's side on top"
    );
    assert_eq!(got.header("X-Pr").as_deref(), Some("udp"));

    let ok = response_to(
        &got,
        "200 OK",
        &format!(
            "Record-Route: <sip:127.0.0.1:{p4};lr>\r\nRecord-Route: <sip:[::1]:{p6};lr>\r\n\
             Contact: <sip:bob@127.0.0.1:{}>\r\n",
            callee.port()
        ),
    );
    callee.send(from, &ok).await;
    let (answer, from) = next_response(&caller, "the 200 over IPv6").await;
    assert_eq!(from, v6);
    assert!(
        answer.start_line().starts_with("SIP/2.0 200"),
        "{}",
        answer.0
    );
    assert_eq!(
        answer.headers("Via"),
        vec![format!(
            "SIP/2.0/UDP [2001:db8::9]:5070;rport={cport};received=::1;branch=z9hG4bK-v6call"
        )],
        "our Via removed, the caller's as received"
    );

    // The caller's ACK follows the route set (reversed by the caller).
    let ack = in_dialog(
        "ACK",
        &format!("sip:bob@127.0.0.1:{}", callee.port()),
        &format!("SIP/2.0/UDP [::1]:{cport};branch=z9hG4bK-v6ack"),
        &format!("<sip:[::1]:{p6};lr>, <sip:127.0.0.1:{p4};lr>"),
        "v6-call",
        1,
    );
    caller.send(v6, &ack).await;
    let (got, from) = next_request(&callee, "the ACK over IPv4").await;
    assert!(got.start_line().starts_with("ACK "), "{}", got.0);
    assert_eq!(from, v4);
    assert!(
        got.headers("Route").is_empty(),
        "both of our entries taken: {}",
        got.0
    );

    // The callee hangs up: the BYE crosses back to IPv6.
    let bye = in_dialog(
        "BYE",
        &format!("sip:alice@[::1]:{cport}"),
        &format!(
            "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-v6bye",
            callee.port()
        ),
        &format!("<sip:127.0.0.1:{p4};lr>, <sip:[::1]:{p6};lr>"),
        "v6-call",
        2,
    );
    callee.send(v4, &bye).await;
    let (got, from) = next_request(&caller, "the BYE over IPv6").await;
    assert!(
        got.start_line().starts_with("BYE sip:alice@[::1]"),
        "{}",
        got.0
    );
    assert_eq!(from, v6, "sent from the IPv6 socket");
    assert!(
        got.headers("Via")[0].starts_with(&format!("SIP/2.0/UDP [::1]:{p6};branch=z9hG4bK")),
        "our Via names the IPv6 socket in brackets: {:?}",
        got.headers("Via")
    );
    assert!(got.headers("Route").is_empty(), "{}", got.0);
    caller.send(v6, &response_to(&got, "200 OK", "")).await;
    let (answer, from) = next_response(&callee, "the 200 to the BYE over IPv4").await;
    assert!(
        answer.start_line().starts_with("SIP/2.0 200"),
        "{}",
        answer.0
    );
    assert!(answer.0.contains("CSeq: 2 BYE"), "{}", answer.0);
    assert_eq!(from, v4);
    server.shutdown().await;
}

#[tokio::test]
async fn udp_over_ipv4_in_and_tcp_over_ipv6_out() {
    let test = "udp_over_ipv4_in_and_tcp_over_ipv6_out";
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: no IPv6 loopback; CI=true needs one"
        );
        eprintln!("\n==== SKIPPED {test}: no IPv6 loopback ====\n");
        return;
    };
    let callee = listener.local_addr().unwrap();
    let caller = Peer::bind().await;
    let (server, addrs) = proxy(&["udp:127.0.0.1:0", "tcp:[::1]:0"]).await;
    let (v4, tcp6) = (addrs[0], addrs[1]);

    let invite = common::request(
        "INVITE",
        &format!("sip:bob@[::1]:{};transport=tcp", callee.port()),
        &format!(
            "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-v6tcp",
            caller.port()
        ),
        "v6-tcp",
        "Max-Forwards: 70\r\n",
    );
    caller.send(v4, &invite).await;
    let (mut conn, from) = tokio::time::timeout(Duration::from_secs(3), listener.accept())
        .await
        .expect("the proxy connects over IPv6")
        .unwrap();
    assert_eq!(from.ip(), tcp6.ip(), "from the listener's address");
    let mut pending = Vec::new();
    let got = common::read_message(&mut conn, &mut pending).await;
    assert!(
        got.start_line().starts_with("INVITE sip:bob@[::1]"),
        "{}",
        got.0
    );
    assert!(
        got.headers("Via")[0]
            .starts_with(&format!("SIP/2.0/TCP [::1]:{};branch=z9hG4bK", tcp6.port())),
        "{:?}",
        got.headers("Via")
    );
    assert_eq!(
        got.headers("Record-Route"),
        vec![
            format!("<sip:[::1]:{};transport=tcp;lr>", tcp6.port()),
            format!("<sip:127.0.0.1:{};lr>", v4.port())
        ]
    );
    conn.write_all(response_to(&got, "200 OK", "").as_bytes())
        .await
        .unwrap();
    let (answer, from) = next_response(&caller, "the 200 back over UDP/IPv4").await;
    assert!(
        answer.start_line().starts_with("SIP/2.0 200"),
        "{}",
        answer.0
    );
    assert_eq!(from, v4);
    assert_eq!(answer.headers("Via").len(), 1, "{}", answer.0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_stateless_forward_to_an_ipv6_target_and_its_response() {
    let Some(callee) = v6_peer("a_stateless_forward_to_an_ipv6_target_and_its_response").await
    else {
        return;
    };
    let caller = Peer::bind().await;
    let (server, addrs) = proxy(&["udp:127.0.0.1:0", "udp:[::1]:0"]).await;
    let (v4, v6) = (addrs[0], addrs[1]);
    let options = common::request(
        "OPTIONS",
        &format!("sip:bob@[::1]:{}", callee.port()),
        &format!(
            "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-v6sl",
            caller.port()
        ),
        "v6-stateless",
        "Max-Forwards: 70\r\nX-Stateless: yes\r\n",
    );
    caller.send(v4, &options).await;
    let (got, from) = next_request(&callee, "the forwarded OPTIONS over IPv6").await;
    assert_eq!(from, v6, "forwarded from the IPv6 socket");
    assert!(
        got.headers("Via")[0]
            .starts_with(&format!("SIP/2.0/UDP [::1]:{};branch=z9hG4bK", v6.port())),
        "{:?}",
        got.headers("Via")
    );
    callee.send(v6, &response_to(&got, "200 OK", "")).await;
    let (answer, from) = next_response(&caller, "the 200 forwarded back").await;
    assert!(
        answer.start_line().starts_with("SIP/2.0 200"),
        "{}",
        answer.0
    );
    assert_eq!(from, v4, "back from the IPv4 socket");
    assert_eq!(answer.headers("Via").len(), 1, "{}", answer.0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_phone_registered_over_ipv6_is_called_from_ipv4() {
    let Some(phone) = v6_peer("a_phone_registered_over_ipv6_is_called_from_ipv4").await else {
        return;
    };
    let caller = Peer::bind().await;
    let mut options = common::options();
    options.listen = vec![
        ListenAddr::parse("udp:[::1]:0").unwrap(),
        ListenAddr::parse("udp:127.0.0.1:0").unwrap(),
    ];
    let server = sipforge_runtime::net::start(&common::registrar::ROUTES, options)
        .await
        .expect("proxy starts");
    let (v6, v4) = (server.local_addrs()[0], server.local_addrs()[1]);

    // The phone writes an address it is not reached at (behind a NAT66 or
    // a firewall): the registrar keeps where the REGISTER came from.
    let register = "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP [2001:db8::99]:5060;rport;branch=z9hG4bK-v6reg\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r1\r\n\
         To: <sip:alice@example.com>\r\nCall-ID: v6-reg\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@[2001:db8::99]:5060>;expires=600\r\nContent-Length: 0\r\n\r\n";
    phone.send(v6, register).await;
    let (ok, from) = next_response(&phone, "the 200 to the REGISTER").await;
    assert_eq!(from, v6);
    assert!(ok.start_line().starts_with("SIP/2.0 200"), "{}", ok.0);
    let contact = ok.header("Contact").unwrap_or_default();
    assert!(
        contact.starts_with("<sip:alice@[2001:db8::99]:5060>") && contact.contains("expires="),
        "the binding as written: {contact}"
    );

    let invite = common::request(
        "INVITE",
        "sip:alice@example.com",
        &format!(
            "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-v6inv",
            caller.port()
        ),
        "v6-reg-call",
        "Max-Forwards: 70\r\n",
    );
    caller.send(v4, &invite).await;
    let (got, from) = next_request(&phone, "the INVITE at the phone's IPv6 binding").await;
    assert_eq!(from, v6, "sent from the IPv6 socket");
    assert!(
        got.start_line()
            .starts_with("INVITE sip:alice@[2001:db8::99]:5060 SIP/2.0"),
        "the Request-URI is the registered contact: {}",
        got.0
    );
    assert_eq!(
        got.headers("Record-Route"),
        vec![
            format!("<sip:[::1]:{};lr>", v6.port()),
            format!("<sip:127.0.0.1:{};lr>", v4.port())
        ]
    );
    phone.send(v6, &response_to(&got, "200 OK", "")).await;
    let (answer, from) = next_response(&caller, "the 200 over IPv4").await;
    assert!(
        answer.start_line().starts_with("SIP/2.0 200"),
        "{}",
        answer.0
    );
    assert_eq!(from, v4);
    server.shutdown().await;
}

#[tokio::test]
async fn wildcard_ipv6_and_ipv4_listeners_share_a_port_each_for_its_family() {
    let test = "wildcard_ipv6_and_ipv4_listeners_share_a_port_each_for_its_family";
    let Some(v6_callee) = v6_peer(test).await else {
        return;
    };
    let v4_callee = Peer::bind().await;
    let (v4_caller, v6_caller) = (Peer::bind().await, v6_peer(test).await.unwrap());
    // Ports free for both families now (a race with other tests' binds
    // is retried).
    let (server, udp, tcp) = {
        let mut tries = 0;
        loop {
            let udp = std::net::UdpSocket::bind("[::]:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let tcp = std::net::TcpListener::bind("[::]:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut options = common::options();
            options.advertise = Some("proxy.example.com".into());
            options.listen = [
                format!("udp:0.0.0.0:{udp}"),
                format!("udp:[::]:{udp}"),
                format!("tcp:0.0.0.0:{tcp}"),
                format!("tcp:[::]:{tcp}"),
            ]
            .iter()
            .map(|l| ListenAddr::parse(l).unwrap())
            .collect();
            match sipforge_runtime::net::start(&common::transports::ROUTES, options).await {
                Ok(server) => break (server, udp, tcp),
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("ports {udp}/{tcp} taken meanwhile ({e}); again");
                }
                Err(e) => panic!("an IPv6 and an IPv4 listener on one port: {e}"),
            }
        }
    };
    assert_eq!(server.local_addrs().len(), 4);

    // Each family's datagrams reach its own socket, and are relayed from
    // the socket of the next hop's family (seen here as the loopback
    // address of the family, the wildcard's port).
    for (caller, to, callee, id) in [
        (&v4_caller, format!("127.0.0.1:{udp}"), &v4_callee, "wild-4"),
        (&v6_caller, format!("[::1]:{udp}"), &v6_callee, "wild-6"),
        (
            &v4_caller,
            format!("127.0.0.1:{udp}"),
            &v6_callee,
            "wild-46",
        ),
    ] {
        let via = if caller.addr.is_ipv6() {
            format!("SIP/2.0/UDP [::1]:{};branch=z9hG4bK-{id}", caller.port())
        } else {
            format!(
                "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-{id}",
                caller.port()
            )
        };
        let ruri = match callee.addr {
            SocketAddr::V6(a) => format!("sip:x@[::1]:{}", a.port()),
            SocketAddr::V4(a) => format!("sip:x@127.0.0.1:{}", a.port()),
        };
        let req = common::request("OPTIONS", &ruri, &via, id, "Max-Forwards: 70\r\n");
        caller.send(to.parse().unwrap(), &req).await;
        let (got, from) = next_request(callee, id).await;
        assert_eq!(from.port(), udp, "{id}");
        assert_eq!(from.is_ipv6(), callee.addr.is_ipv6(), "{id}: from {from}");
        let top = got.headers("Via")[0].clone();
        assert!(
            top.starts_with(&format!("SIP/2.0/UDP proxy.example.com:{udp};branch=")),
            "{id}: {top}"
        );
        let theirs = got.headers("Via")[1].clone();
        assert!(
            !theirs.contains("::ffff:"),
            "{id}: no IPv4-mapped address: {theirs}"
        );
        callee.send(from, &response_to(&got, "200 OK", "")).await;
        let (answer, from) = next_response(caller, id).await;
        assert!(
            answer.start_line().starts_with("SIP/2.0 200"),
            "{id}: {}",
            answer.0
        );
        assert_eq!(
            from,
            to.parse().unwrap(),
            "{id}: answered from where it was sent"
        );
    }

    // The TCP listeners: one connection over each family.
    for to in [format!("127.0.0.1:{tcp}"), format!("[::1]:{tcp}")] {
        let mut conn = tokio::net::TcpStream::connect(&to).await.unwrap();
        let local = conn.local_addr().unwrap();
        let via = match local {
            SocketAddr::V6(a) => format!(
                "SIP/2.0/TCP [::1]:{};branch=z9hG4bK-t{}",
                a.port(),
                a.port()
            ),
            SocketAddr::V4(a) => format!(
                "SIP/2.0/TCP 127.0.0.1:{};branch=z9hG4bK-t{}",
                a.port(),
                a.port()
            ),
        };
        let req = common::request(
            "OPTIONS",
            &format!("sip:x@127.0.0.1:{}", v4_callee.port()),
            &via,
            "wild-tcp",
            "Max-Forwards: 70\r\n",
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let (got, _) = next_request(&v4_callee, "the OPTIONS from TCP").await;
        assert!(
            !got.headers("Via")[1].contains("::ffff:"),
            "{to}: {:?}",
            got.headers("Via")
        );
        v4_callee
            .send(
                format!("127.0.0.1:{udp}").parse().unwrap(),
                &response_to(&got, "200 OK", ""),
            )
            .await;
        let answer = common::read_message(&mut conn, &mut Vec::new()).await;
        assert!(
            answer.start_line().starts_with("SIP/2.0 200"),
            "{to}: {}",
            answer.0
        );
    }
    server.shutdown().await;
}
