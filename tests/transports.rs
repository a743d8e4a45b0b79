//! The core's transport choices, sans-IO (a `Core` fed plain values; the
//! sockets are `tests/tcp.rs`'s business): the socket a request leaves
//! from (`;transport=`, `sips:`, UDP by default, TCP over 1,300 bytes),
//! Via and Record-Route naming it, two Record-Route entries when the
//! transport changes and in-dialog requests finding the right side, and
//! responses to a request that came over a connection going back to the
//! connection's far end.

mod common;

use std::time::Instant;

use common::text::header;
use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener, Outgoing};
use sipforge_runtime::target::NextHop;
use sipforge_runtime::transport::Transport;

const UDP: usize = 0;
const TCP: usize = 1;

fn core() -> Core {
    let addr = "127.0.0.1:5060".parse().unwrap();
    let listeners = vec![
        Listener::with_transport(addr, Transport::Udp, None).unwrap(),
        Listener::with_transport(addr, Transport::Tcp, None).unwrap(),
    ];
    Core::new(
        &common::transports::ROUTES,
        Identity::new(listeners),
        CoreConfig::default(),
    )
}

struct Sent {
    socket: usize,
    to: String,
    text: String,
}

fn feed(core: &Core, text: &str, from: &str, socket: usize) -> Vec<Sent> {
    let mut out: Vec<Outgoing> = Vec::new();
    core.handle(
        Instant::now(),
        text.as_bytes(),
        from.parse().unwrap(),
        socket,
        &mut out,
    );
    out.into_iter()
        .map(|o| Sent {
            socket: o.socket,
            to: match o.to {
                NextHop::Addr(a) => a.to_string(),
                NextHop::Name { host, port, .. } => format!("{host}:{port}"),
                NextHop::Found { addr, name } => format!("{addr} for {name}"),
                NextHop::Flow(a) => format!("{a} (connection)"),
            },
            text: String::from_utf8_lossy(o.bytes.as_ref()).into_owned(),
        })
        .collect()
}

fn request(method: &str, ruri: &str, via: &str, id: &str, extra: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: {via};branch=z9hG4bK-{id}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a-{id}\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: {id}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn record_routes(text: &str) -> Vec<&str> {
    text.split("\r\n")
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect()
}

/// The request the core relayed (skipping the 100 Trying it sent back).
fn relayed(sent: &[Sent]) -> &Sent {
    sent.iter()
        .find(|s| !s.text.starts_with("SIP/2.0"))
        .unwrap_or_else(|| {
            panic!(
                "nothing relayed: {:?}",
                sent.iter().map(|s| &s.text).collect::<Vec<_>>()
            )
        })
}

#[test]
fn a_transport_parameter_picks_the_socket_and_two_record_routes_join_the_sides() {
    let core = core();
    let req = request(
        "INVITE",
        "sip:bob@127.0.0.1:5070;transport=tcp",
        "SIP/2.0/UDP 127.0.0.1:5062;rport",
        "t1",
        "",
    );
    let sent = feed(&core, &req, "127.0.0.1:5062", UDP);
    let out = relayed(&sent);
    assert_eq!(out.socket, TCP, "sent from the TCP socket");
    assert_eq!(out.to, "127.0.0.1:5070");
    assert!(
        header(&out.text, "Via")
            .unwrap()
            .starts_with("SIP/2.0/TCP 127.0.0.1:5060;branch="),
        "{}",
        out.text
    );
    assert_eq!(header(&out.text, "X-Pr"), Some("udp"));
    assert_eq!(
        record_routes(&out.text),
        vec![
            "<sip:127.0.0.1:5060;transport=tcp;lr>",
            "<sip:127.0.0.1:5060;lr>"
        ],
        "the entry facing the next hop on top (RFC 5658)"
    );
}

#[test]
fn in_dialog_requests_leave_on_the_side_their_route_names() {
    let core = core();
    // The callee (over TCP) sends BYE along the route set [tcp, udp].
    let bye = request(
        "BYE",
        "sip:alice@127.0.0.1:5062",
        "SIP/2.0/TCP 127.0.0.1:5070",
        "d1",
        "To: <sip:bob@example.com>;tag=b\r\nRoute: <sip:127.0.0.1:5060;transport=tcp;lr>, <sip:127.0.0.1:5060;lr>\r\n",
    );
    let bye = bye.replace("To: <sip:bob@example.com>\r\n", "");
    let sent = feed(&core, &bye, "127.0.0.1:40001", TCP);
    let out = relayed(&sent);
    assert_eq!(out.socket, UDP, "towards the caller's side: UDP");
    assert!(
        header(&out.text, "Route").is_none(),
        "both of our entries removed"
    );
    assert_eq!(header(&out.text, "X-Pr"), Some("tcp"));
    // The caller (over UDP) sends BYE along [udp, tcp].
    let bye = request(
        "BYE",
        "sip:bob@127.0.0.1:5070",
        "SIP/2.0/UDP 127.0.0.1:5062",
        "d2",
        "Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5060;transport=tcp;lr>\r\n",
    );
    let sent = feed(&core, &bye, "127.0.0.1:5062", UDP);
    assert_eq!(relayed(&sent).socket, TCP, "towards the callee's side: TCP");
}

#[test]
fn udp_by_default_and_tcp_for_large_requests() {
    let core = core();
    let small = request(
        "OPTIONS",
        "sip:bob@127.0.0.1:5070",
        "SIP/2.0/TCP 127.0.0.1:5090",
        "s1",
        "",
    );
    let sent = feed(&core, &small, "127.0.0.1:40002", TCP);
    let out = relayed(&sent);
    assert_eq!(
        out.socket, UDP,
        "an IP literal without transport: UDP (RFC 3263)"
    );
    assert!(header(&out.text, "Via").unwrap().starts_with("SIP/2.0/UDP"));
    let pad = format!("X-Pad: {}\r\n", "x".repeat(1400));
    let large = request(
        "OPTIONS",
        "sip:bob@127.0.0.1:5070",
        "SIP/2.0/UDP 127.0.0.1:5062",
        "s2",
        &pad,
    );
    let sent = feed(&core, &large, "127.0.0.1:5062", UDP);
    let out = relayed(&sent);
    assert_eq!(out.socket, TCP, "over 1,300 bytes: TCP (RFC 3261 §18.1.1)");
    assert!(header(&out.text, "Via").unwrap().starts_with("SIP/2.0/TCP"));
    assert!(out.text.len() > 1300);
}

#[test]
fn responses_to_a_request_over_a_connection_go_back_to_its_far_end() {
    let core = core();
    // Sent-by port 5090, but the connection comes from port 40003.
    let req = request(
        "OPTIONS",
        "sip:bob@127.0.0.1:5070;transport=tcp",
        "SIP/2.0/TCP 127.0.0.1:5090",
        "r1",
        "",
    );
    let sent = feed(&core, &req, "127.0.0.1:40003", TCP);
    let out = relayed(&sent);
    let vias: Vec<&str> = out
        .text
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Via: "))
        .collect();
    assert_eq!(vias.len(), 2);
    assert!(
        vias[1].contains(";rport=40003") && vias[1].contains("received=127.0.0.1"),
        "rport forced on a connection's Via: {}",
        vias[1]
    );
    // The answer comes back over TCP from the callee; it goes to 40003.
    let resp = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nVia: {}\r\nFrom: <sip:alice@example.com>;tag=a-r1\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: r1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        vias[0], vias[1]
    );
    let back = feed(&core, &resp, "127.0.0.1:5070", TCP);
    assert_eq!(
        back.len(),
        1,
        "{:?}",
        back.iter().map(|s| &s.text).collect::<Vec<_>>()
    );
    assert_eq!(back[0].to, "127.0.0.1:40003");
    assert_eq!(back[0].socket, TCP);
    // A stateless reply (here: Max-Forwards 0 gets 483) goes there too.
    let dead = request(
        "OPTIONS",
        "sip:bob@127.0.0.1:5070",
        "SIP/2.0/TCP 127.0.0.1:5090",
        "r2",
        "",
    )
    .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let sent = feed(&core, &dead, "127.0.0.1:40004", TCP);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].text.starts_with("SIP/2.0 483"));
    assert_eq!(sent[0].to, "127.0.0.1:40004");
}

#[test]
fn a_transport_we_do_not_listen_on_gets_503() {
    let core = core();
    let req = request(
        "OPTIONS",
        "sips:bob@127.0.0.1:5071",
        "SIP/2.0/UDP 127.0.0.1:5062",
        "n1",
        "X-Stateless: yes\r\n",
    );
    let sent = feed(&core, &req, "127.0.0.1:5062", UDP);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].text.starts_with("SIP/2.0 503"), "{}", sent[0].text);
}

/// The core of [`core`], told that `carrier.test` (no port, no transport
/// in the URI: a NAPTR lookup) resolved to `targets`, in order, or that it
/// was not looked up yet (None).
fn core_with_name(targets: Option<Vec<(Transport, u16)>>) -> Core {
    let core = core();
    core.set_name_targets(Box::new(move |host, port, transport| {
        assert_eq!((host, port, transport), ("carrier.test", None, None));
        targets.as_ref().map(|list| {
            list.iter()
                .map(|&(transport, port)| sipforge_runtime::resolve::Target {
                    transport,
                    addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    ttl: std::time::Duration::from_secs(60),
                })
                .collect()
        })
    }));
    core
}

fn top_via(text: &str) -> &str {
    header(text, "Via").unwrap()
}

#[test]
fn a_name_whose_naptr_records_name_tcp_is_sent_from_the_tcp_socket() {
    // SIP+D2T first, then SIP+D2U.
    let core = core_with_name(Some(vec![(Transport::Tcp, 5080), (Transport::Udp, 5090)]));
    for (id, extra) in [("nt1", ""), ("nt2", "X-Stateless: yes\r\n")] {
        let req = request(
            "OPTIONS",
            "sip:x@carrier.test",
            "SIP/2.0/UDP 127.0.0.1:5062",
            id,
            extra,
        );
        let sent = feed(&core, &req, "127.0.0.1:5062", UDP);
        let out = relayed(&sent);
        assert_eq!(out.socket, TCP, "{id}: the first target's transport");
        assert_eq!(out.to, "carrier.test:5060", "{id}: still the name");
        assert!(
            top_via(&out.text).starts_with("SIP/2.0/TCP 127.0.0.1:5060;branch="),
            "{id}: {}",
            out.text
        );
        assert_eq!(
            record_routes(&out.text),
            vec![
                "<sip:127.0.0.1:5060;transport=tcp;lr>",
                "<sip:127.0.0.1:5060;lr>"
            ],
            "{id}: one entry per side"
        );
    }
    // A target of a transport we have no socket of is passed over (the
    // network layer's lookup leaves those out already).
    let core = core_with_name(Some(vec![(Transport::Tls, 5061), (Transport::Tcp, 5080)]));
    let req = request(
        "OPTIONS",
        "sip:x@carrier.test",
        "SIP/2.0/UDP 127.0.0.1:5062",
        "nt3",
        "",
    );
    let sent = feed(&core, &req, "127.0.0.1:5062", UDP);
    assert_eq!(relayed(&sent).socket, TCP);
}

#[test]
fn a_name_looked_up_after_the_request_was_built_moves_it_to_the_targets_transport() {
    // Not looked up yet: the branch is built for UDP (the default) ...
    let core = core_with_name(None);
    let req = request(
        "INVITE",
        "sip:x@carrier.test",
        "SIP/2.0/UDP 127.0.0.1:5062",
        "mv1",
        "",
    );
    let sent = feed(&core, &req, "127.0.0.1:5062", UDP);
    let first = relayed(&sent);
    assert_eq!(first.socket, UDP);
    assert!(top_via(&first.text).starts_with("SIP/2.0/UDP"));
    let branch = top_via(&first.text).split("branch=").nth(1).unwrap();
    // ... and the lookup says TCP: the network layer hands it back.
    let to = NextHop::Name {
        host: "carrier.test".into(),
        port: 5060,
        port_given: false,
        transport: None,
    };
    let retarget = |bytes: &str| {
        let mut out: Vec<Outgoing> = Vec::new();
        core.retarget(
            Instant::now(),
            bytes.as_bytes(),
            UDP,
            Transport::Tcp,
            &to,
            &mut out,
        );
        out
    };
    let moved = retarget(&first.text);
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].socket, TCP);
    assert_eq!(moved[0].to, to);
    let text = String::from_utf8_lossy(moved[0].bytes.as_ref()).into_owned();
    assert_eq!(
        top_via(&text),
        format!("SIP/2.0/TCP 127.0.0.1:5060;branch={branch}"),
        "the same branch, from the TCP socket"
    );
    assert_eq!(
        record_routes(&text),
        vec![
            "<sip:127.0.0.1:5060;transport=tcp;lr>",
            "<sip:127.0.0.1:5060;lr>"
        ]
    );
    assert_eq!(
        text.replace("SIP/2.0/TCP", "SIP/2.0/UDP").replace(
            "Record-Route: <sip:127.0.0.1:5060;transport=tcp;lr>\r\n",
            ""
        ),
        first.text,
        "nothing else changes"
    );
    // A retransmission that waited for the same lookup: the branch moved.
    assert!(retarget(&first.text).is_empty());
    // The branch's CANCEL follows it (after a provisional response).
    let ringing = common::text::response(&text, "180 Ringing", "b");
    feed(&core, &ringing, "127.0.0.1:5080", TCP);
    let cancel = request(
        "CANCEL",
        "sip:x@carrier.test",
        "SIP/2.0/UDP 127.0.0.1:5062",
        "mv1",
        "",
    );
    let sent = feed(&core, &cancel, "127.0.0.1:5062", UDP);
    let down = sent
        .iter()
        .find(|s| s.text.starts_with("CANCEL"))
        .expect("the CANCEL goes down the branch");
    assert_eq!(down.socket, TCP);
    assert_eq!(
        top_via(&down.text),
        format!("SIP/2.0/TCP 127.0.0.1:5060;branch={branch}")
    );

    // Forwarded statelessly: rebuilt and sent on the same way.
    let req = request(
        "OPTIONS",
        "sip:x@carrier.test",
        "SIP/2.0/UDP 127.0.0.1:5062",
        "mv2",
        "X-Stateless: yes\r\n",
    );
    let sent = feed(&core, &req, "127.0.0.1:5062", UDP);
    let first = relayed(&sent);
    assert_eq!(first.socket, UDP);
    let moved = retarget(&first.text);
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].socket, TCP);
    let text = String::from_utf8_lossy(moved[0].bytes.as_ref()).into_owned();
    assert!(top_via(&text).starts_with("SIP/2.0/TCP 127.0.0.1:5060;branch="));
    assert_eq!(
        record_routes(&text),
        vec![
            "<sip:127.0.0.1:5060;transport=tcp;lr>",
            "<sip:127.0.0.1:5060;lr>"
        ]
    );
    // Came over TCP, built for UDP (two entries), moved to TCP: one entry.
    let req = request(
        "OPTIONS",
        "sip:x@carrier.test",
        "SIP/2.0/TCP 127.0.0.1:5090",
        "mv3",
        "X-Stateless: yes\r\n",
    );
    let sent = feed(&core, &req, "127.0.0.1:40005", TCP);
    let first = relayed(&sent);
    assert_eq!(first.socket, UDP);
    assert_eq!(record_routes(&first.text).len(), 2);
    let moved = retarget(&first.text);
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].socket, TCP);
    let text = String::from_utf8_lossy(moved[0].bytes.as_ref()).into_owned();
    assert!(top_via(&text).starts_with("SIP/2.0/TCP 127.0.0.1:5060;branch="));
    assert_eq!(
        record_routes(&text),
        vec!["<sip:127.0.0.1:5060;transport=tcp;lr>"],
        "no transport change any more: one entry"
    );
}

#[test]
fn the_next_target_of_a_name_is_tried_over_its_own_transport() {
    // SIP+D2U first, then SIP+D2T (RFC 3263 §4.3 on a 503).
    let core = core_with_name(Some(vec![(Transport::Udp, 5090), (Transport::Tcp, 5080)]));
    let req = request(
        "OPTIONS",
        "sip:x@carrier.test",
        "SIP/2.0/UDP 127.0.0.1:5062",
        "fo1",
        "",
    );
    let sent = feed(&core, &req, "127.0.0.1:5062", UDP);
    let first = relayed(&sent);
    assert_eq!(first.socket, UDP);
    let busy = common::text::response(&first.text, "503 Service Unavailable", "b");
    let sent = feed(&core, &busy, "127.0.0.1:5090", UDP);
    let next = relayed(&sent);
    assert_eq!(next.socket, TCP, "the second target is over TCP");
    // An address the core picked, sent as found for the name: a TLS
    // connection opened to it verifies the name's certificate, not the
    // address (RFC 5922 §4; `tests/dns.rs` does it over real TLS).
    assert_eq!(next.to, "127.0.0.1:5080 for carrier.test");
    assert!(
        top_via(&next.text).starts_with("SIP/2.0/TCP 127.0.0.1:5060;branch="),
        "{}",
        next.text
    );
    assert_eq!(
        record_routes(&next.text),
        vec![
            "<sip:127.0.0.1:5060;transport=tcp;lr>",
            "<sip:127.0.0.1:5060;lr>"
        ]
    );
    // Hostile: a 200 for that branch from another address than the
    // target's is dropped (strict_response_source, as for an IP target);
    // the target's own 200 goes up.
    let ok = common::text::response(&next.text, "200 OK", "t2");
    let sent = feed(&core, &ok, "127.0.0.1:6666", TCP);
    assert!(sent.is_empty(), "a forged 200 is dropped: {:?}", sent.len());
    let sent = feed(&core, &ok, "127.0.0.1:5080", TCP);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].text.starts_with("SIP/2.0 200"), "{}", sent[0].text);
    assert_eq!(sent[0].to, "127.0.0.1:5062");
}

#[test]
fn over_a_connection_the_transaction_does_not_retransmit() {
    // RFC 3261 §17.1.1.2 and §17.2.1: Timers A and G run on unreliable
    // transports only; over TCP the transport delivers or fails.
    let core = core();
    let start = Instant::now();
    let req = request(
        "INVITE",
        "sip:bob@127.0.0.1:5070;transport=tcp",
        "SIP/2.0/UDP 127.0.0.1:5062;rport",
        "r1",
        "",
    );
    let mut out = Vec::new();
    core.handle(
        start,
        req.as_bytes(),
        "127.0.0.1:5062".parse().unwrap(),
        UDP,
        &mut out,
    );
    assert!(out.iter().any(|o| o.socket == TCP), "relayed over TCP");
    // Over UDP, the same INVITE is sent again after T1 (Timer A) ...
    let udp = request(
        "INVITE",
        "sip:bob@127.0.0.1:5070",
        "SIP/2.0/UDP 127.0.0.1:5062;rport",
        "r2",
        "",
    );
    core.handle(
        start,
        udp.as_bytes(),
        "127.0.0.1:5062".parse().unwrap(),
        UDP,
        &mut out,
    );
    let mut resent = Vec::new();
    for ms in [600, 1600, 3600] {
        core.on_timeout(start + std::time::Duration::from_millis(ms), &mut resent);
    }
    let sockets: Vec<usize> = resent
        .iter()
        .filter(|o| o.bytes.as_ref().starts_with(b"INVITE "))
        .map(|o| o.socket)
        .collect();
    assert!(sockets.contains(&UDP), "Timer A over UDP: {sockets:?}");
    // ... but never over TCP.
    assert!(!sockets.contains(&TCP), "no Timer A over TCP: {sockets:?}");
}
