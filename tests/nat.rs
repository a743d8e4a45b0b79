//! NAT traversal through a running proxy (tests/routes/nat.yaml): a phone
//! that believes it is 192.168.1.10:5060 registers from 127.0.0.1:PORT (a
//! NAT binding, as far as the proxy can tell); a call to it reaches the
//! binding, the Contact of its answer is fixed toward the caller, and the
//! caller's in-dialog requests to that Contact reach the binding with the
//! Request-URI the phone wrote. And the other way round: a caller behind
//! NAT has the Contact of its INVITE fixed, and the callee's BYE finds it.
//!
//! The peers are plain UDP sockets writing SIP by hand.

mod common;

use std::net::SocketAddr;

use common::{Peer, Sip};

async fn proxy() -> (sipforge_runtime::net::Server, SocketAddr) {
    common::start_proxy(&common::nat::ROUTES).await
}

/// A REGISTER of `user`@example.com from `phone`, whose Via and Contact
/// name `host_port` (its private address, or its real one).
fn register(phone: &Peer, user: &str, host_port: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {host_port};rport;branch=z9hG4bK-reg-{user}-{port}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@example.com>;tag=r-{user}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: reg-{user}-{port}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@{host_port}>\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n",
        port = phone.port()
    )
}

/// An INVITE to `user`@example.com from `caller`, whose Via and Contact
/// name `host_port`.
fn invite(user: &str, host_port: &str, call_id: &str) -> String {
    format!(
        "INVITE sip:{user}@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {host_port};rport;branch=z9hG4bK-{call_id}-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:carol@example.com>;tag=c-{call_id}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:carol@{host_port}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// An in-dialog request of the dialog a 2xx (`ok`, as the sender of the
/// request received it) set up: Request-URI the remote Contact, Route the
/// Record-Route set (in order for the caller, reversed for the callee).
fn in_dialog(
    method: &str,
    ok: &Sip,
    from_callee: bool,
    via_host_port: &str,
    cseq: u32,
    branch: &str,
) -> String {
    let contact = ok.header("Contact").expect("the 2xx has a Contact");
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let mut routes = ok.headers("Record-Route");
    if from_callee {
        routes.reverse();
    }
    let (from, to) = if from_callee {
        (ok.header("To").unwrap(), ok.header("From").unwrap())
    } else {
        (ok.header("From").unwrap(), ok.header("To").unwrap())
    };
    let route_lines: String = routes.iter().map(|r| format!("Route: {r}\r\n")).collect();
    format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via_host_port};rport;branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\n\
         {route_lines}\
         From: {from}\r\n\
         To: {to}\r\n\
         Call-ID: {}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        ok.header("Call-ID").unwrap()
    )
}

/// The next message that is not a provisional response.
async fn next_final(peer: &Peer, what: &str) -> Sip {
    loop {
        let (msg, _) = peer.recv(what).await;
        if !msg.start_line().starts_with("SIP/2.0 1") {
            return msg;
        }
    }
}

/// The answer of a UAS to `req`: `status`, the Record-Route copied
/// (RFC 3261 §12.1.1), and `contact` when given.
fn answer(req: &Sip, status: &str, contact: Option<&str>) -> String {
    let mut extra: String = req
        .headers("Record-Route")
        .iter()
        .map(|r| format!("Record-Route: {r}\r\n"))
        .collect();
    if let Some(c) = contact {
        extra.push_str(&format!("Contact: {c}\r\n"));
    }
    common::response_to(req, status, &extra)
}

#[tokio::test]
async fn a_call_to_a_phone_behind_nat_and_its_dialog_reach_the_nat_binding() {
    let (_server, proxy) = proxy().await;
    let phone = Peer::bind().await;
    phone
        .send(proxy, &register(&phone, "phone", "192.168.1.10:5060"))
        .await;
    let (ok, _) = phone.recv("the REGISTER's answer").await;
    assert!(ok.start_line().starts_with("SIP/2.0 200"), "{}", ok.0);

    // The caller is not behind NAT: its INVITE goes on as it is.
    let caller = Peer::bind().await;
    caller
        .send(
            proxy,
            &invite("phone", &caller.addr.to_string(), "nat-in-1"),
        )
        .await;
    let (inv, from) = phone.recv("the INVITE at the NAT binding").await;
    assert_eq!(from, proxy);
    assert!(
        inv.start_line()
            .starts_with("INVITE sip:phone@192.168.1.10:5060 SIP/2.0"),
        "{}",
        inv.0
    );
    assert_eq!(inv.header("X-Nat"), None, "{}", inv.0);
    assert_eq!(
        inv.header("Contact").as_deref(),
        Some(format!("<sip:carol@{}>", caller.addr).as_str())
    );
    assert!(inv.header("Record-Route").is_some(), "{}", inv.0);

    // The phone answers with its private Contact: the caller sees the
    // binding, with the marker.
    let private = Some("<sip:phone@192.168.1.10:5060>");
    // (The 200 waits for the 180 to be through: two workers may handle
    // back-to-back datagrams in either order.)
    phone
        .send(proxy, &answer(&inv, "180 Ringing", private))
        .await;
    let fixed = format!(
        "<sip:phone@127.0.0.1:{};sfnat=192.168.1.10~5060~udp>",
        phone.port()
    );
    let ringing = loop {
        let (msg, _) = caller.recv("the 180 at the caller").await;
        if !msg.start_line().starts_with("SIP/2.0 100") {
            break msg;
        }
    };
    assert!(
        ringing.start_line().starts_with("SIP/2.0 180"),
        "{}",
        ringing.0
    );
    assert_eq!(ringing.header("Contact").as_deref(), Some(fixed.as_str()));
    phone.send(proxy, &answer(&inv, "200 OK", private)).await;
    let ok = next_final(&caller, "the 200 at the caller").await;
    assert!(ok.start_line().starts_with("SIP/2.0 200"), "{}", ok.0);
    assert_eq!(ok.header("Contact").as_deref(), Some(fixed.as_str()));
    assert_eq!(ok.header("X-Nat-Reply").as_deref(), Some("200"));

    // The caller's ACK and BYE go to the fixed Contact along our
    // Record-Route: they reach the binding with the phone's own URI.
    let me = caller.addr.to_string();
    caller
        .send(proxy, &in_dialog("ACK", &ok, false, &me, 1, "nat-ack"))
        .await;
    let (ack, from) = phone.recv("the ACK at the NAT binding").await;
    assert_eq!(from, proxy);
    assert_eq!(
        ack.start_line(),
        "ACK sip:phone@192.168.1.10:5060 SIP/2.0",
        "{}",
        ack.0
    );
    caller
        .send(proxy, &in_dialog("BYE", &ok, false, &me, 2, "nat-bye"))
        .await;
    let (bye, from) = phone.recv("the BYE at the NAT binding").await;
    assert_eq!(from, proxy);
    assert_eq!(
        bye.start_line(),
        "BYE sip:phone@192.168.1.10:5060 SIP/2.0",
        "{}",
        bye.0
    );
    assert!(!bye.0.contains("sfnat"), "{}", bye.0);
    assert_eq!(bye.header("Route"), None, "{}", bye.0);
    phone.send(proxy, &answer(&bye, "200 OK", None)).await;
    let done = next_final(&caller, "the BYE's answer").await;
    assert!(done.start_line().starts_with("SIP/2.0 200"), "{}", done.0);
    assert!(done.0.contains("CSeq: 2 BYE"), "{}", done.0);
}

#[tokio::test]
async fn a_caller_behind_nat_has_its_contact_fixed_and_the_callees_bye_finds_it() {
    let (_server, proxy) = proxy().await;
    let callee = Peer::bind().await;
    let me = callee.addr.to_string();
    callee.send(proxy, &register(&callee, "bob", &me)).await;
    let (ok, _) = callee.recv("the REGISTER's answer").await;
    assert!(ok.start_line().starts_with("SIP/2.0 200"), "{}", ok.0);

    // The caller writes its private address into its Via and Contact.
    let caller = Peer::bind().await;
    caller
        .send(proxy, &invite("bob", "10.0.0.5:5060", "nat-out-1"))
        .await;
    let (inv, _) = callee.recv("the INVITE at the callee").await;
    let fixed = format!(
        "<sip:carol@127.0.0.1:{};sfnat=10.0.0.5~5060~udp>",
        caller.port()
    );
    assert_eq!(inv.header("Contact").as_deref(), Some(fixed.as_str()));
    assert_eq!(
        inv.header("X-Nat"),
        Some(format!("127.0.0.1:{}", caller.port())),
        "{}",
        inv.0
    );

    // The callee is not behind NAT: its answer's Contact stays.
    let own = format!("<sip:bob@{me}>");
    callee
        .send(proxy, &answer(&inv, "200 OK", Some(&own)))
        .await;
    let ok = next_final(&caller, "the 200 at the caller").await;
    assert!(ok.start_line().starts_with("SIP/2.0 200"), "{}", ok.0);
    assert_eq!(ok.header("Contact").as_deref(), Some(own.as_str()));
    assert_eq!(ok.header("X-Nat-Reply"), None, "{}", ok.0);

    // The callee hangs up: its BYE, to the fixed Contact, reaches the
    // caller's binding with the caller's own URI.
    callee
        .send(
            proxy,
            &in_dialog("BYE", &callee_view(&inv), true, &me, 1, "out-bye"),
        )
        .await;
    let (bye, from) = caller.recv("the BYE at the caller's binding").await;
    assert_eq!(from, proxy);
    assert_eq!(
        bye.start_line(),
        "BYE sip:carol@10.0.0.5:5060 SIP/2.0",
        "{}",
        bye.0
    );
}

/// The dialog as the callee knows it, in the shape of a 2xx: the
/// INVITE's Contact and Record-Route, the callee's To tag (what
/// `in_dialog` reads for a callee).
fn callee_view(inv: &Sip) -> Sip {
    Sip(common::response_to(
        inv,
        "200 OK",
        &format!(
            "{}Contact: {}\r\n",
            inv.headers("Record-Route")
                .iter()
                .map(|r| format!("Record-Route: {r}\r\n"))
                .collect::<String>(),
            inv.header("Contact").unwrap()
        ),
    ))
}
