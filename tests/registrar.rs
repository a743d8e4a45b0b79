//! The registrar through a running proxy (tests/routes/registrar.yaml):
//! REGISTER saved and answered with the bindings, 423 and 403, a call
//! reaching the registered phone at the address its REGISTER came from
//! (behind NAT too), unregistering, and forking to two phones (parallel
//! within a q-value, serial across q-values).

mod common;

use std::net::SocketAddr;

use common::{Peer, Sip};

async fn proxy() -> (sipforge_runtime::net::Server, SocketAddr) {
    common::start_proxy(&common::registrar::ROUTES).await
}

/// A REGISTER of `user`'s AoR from `phone` with `contact` and `extra` lines.
fn register(phone: &Peer, user: &str, contact: &str, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {};rport;branch=z9hG4bK-reg-{user}-{}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@example.com>;tag=r-{user}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: reg-{user}-{}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: {contact}\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n",
        phone.addr,
        phone.port(),
        phone.port()
    )
}

fn invite(caller: &Peer, user: &str, id: &str) -> String {
    format!(
        "INVITE sip:{user}@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:carol@example.com>;tag=c-{id}\r\n\
         To: <sip:{user}@example.com>\r\n\
         Call-ID: {id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:carol@{}>\r\n\
         Content-Length: 0\r\n\r\n",
        caller.addr, caller.addr
    )
}

async fn registered(
    proxy: SocketAddr,
    phone: &Peer,
    user: &str,
    contact: &str,
    extra: &str,
) -> Sip {
    phone
        .send(proxy, &register(phone, user, contact, 1, extra))
        .await;
    let (resp, _) = phone.recv("the REGISTER's answer").await;
    resp
}

/// Skip provisional answers: the next final response the caller gets.
async fn final_response(caller: &Peer) -> Sip {
    loop {
        let (resp, _) = caller.recv("a final response").await;
        let line = resp.start_line().to_string();
        if !line.starts_with("SIP/2.0 1") {
            return resp;
        }
    }
}

#[tokio::test]
async fn a_registered_phone_gets_its_calls_and_loses_them_when_unregistered() {
    let (_server, proxy) = proxy().await;
    let phone = Peer::bind().await;
    let contact = format!("<sip:alice@{}>", phone.addr);
    let resp = registered(proxy, &phone, "alice", &contact, "Expires: 600\r\n").await;
    assert!(resp.start_line().starts_with("SIP/2.0 200"), "{}", resp.0);
    let bound = resp.headers("Contact");
    assert_eq!(bound.len(), 1, "{bound:?}");
    assert!(
        bound[0].contains(&format!("sip:alice@{}", phone.addr)) && bound[0].contains("expires=600"),
        "{bound:?}"
    );
    assert!(resp.header("Date").is_some());

    let caller = Peer::bind().await;
    caller
        .send(proxy, &invite(&caller, "alice", "reg-call-1"))
        .await;
    let (inv, _) = phone.recv("the INVITE at the phone").await;
    assert!(
        inv.start_line()
            .starts_with(&format!("INVITE sip:alice@{} SIP/2.0", phone.addr)),
        "{}",
        inv.0
    );
    assert!(inv.header("Record-Route").is_some());

    // Unregister (Expires: 0): the next call gets 404.
    phone
        .send(
            proxy,
            &register(&phone, "alice", &contact, 2, "Expires: 0\r\n"),
        )
        .await;
    let (resp, _) = phone.recv("the unregister's answer").await;
    assert!(resp.start_line().starts_with("SIP/2.0 200"), "{}", resp.0);
    assert!(
        resp.header("Contact").is_none(),
        "no binding left: {}",
        resp.0
    );
    caller
        .send(proxy, &invite(&caller, "alice", "reg-call-2"))
        .await;
    let resp = final_response(&caller).await;
    assert!(resp.start_line().starts_with("SIP/2.0 404"), "{}", resp.0);
}

#[tokio::test]
async fn too_brief_and_too_many_registrations_are_refused() {
    let (_server, proxy) = proxy().await;
    let phone = Peer::bind().await;
    let contact = format!("<sip:bob@{}>", phone.addr);
    let resp = registered(proxy, &phone, "bob", &contact, "Expires: 30\r\n").await;
    assert!(resp.start_line().starts_with("SIP/2.0 423"), "{}", resp.0);
    assert_eq!(resp.header("Min-Expires").as_deref(), Some("60"));
    // max_contacts is 2: three at once get 403.
    let three = format!("<sip:bob@127.0.0.1:7001>, <sip:bob@127.0.0.1:7002>, {contact}");
    let resp = registered(proxy, &phone, "bob", &three, "").await;
    assert!(resp.start_line().starts_with("SIP/2.0 403"), "{}", resp.0);
}

#[tokio::test]
async fn a_phone_behind_nat_is_reached_where_its_register_came_from() {
    let (_server, proxy) = proxy().await;
    let phone = Peer::bind().await;
    // The phone thinks it is 192.168.1.10:5060; its REGISTER comes from 127.0.0.1:port.
    let resp = registered(proxy, &phone, "dave", "<sip:dave@192.168.1.10:5060>", "").await;
    assert!(resp.start_line().starts_with("SIP/2.0 200"), "{}", resp.0);
    let caller = Peer::bind().await;
    caller
        .send(proxy, &invite(&caller, "dave", "reg-nat"))
        .await;
    let (inv, _) = phone.recv("the INVITE at the NAT binding").await;
    assert!(
        inv.start_line()
            .starts_with("INVITE sip:dave@192.168.1.10:5060 SIP/2.0"),
        "{}",
        inv.0
    );
}

#[tokio::test]
async fn two_phones_ring_at_once_and_the_answer_cancels_the_other() {
    let (_server, proxy) = proxy().await;
    let (desk, mobile) = (Peer::bind().await, Peer::bind().await);
    registered(
        proxy,
        &desk,
        "erin",
        &format!("<sip:erin@{}>", desk.addr),
        "",
    )
    .await;
    registered(
        proxy,
        &mobile,
        "erin",
        &format!("<sip:erin@{}>", mobile.addr),
        "",
    )
    .await;
    let caller = Peer::bind().await;
    caller
        .send(proxy, &invite(&caller, "erin", "reg-fork"))
        .await;
    let (at_desk, _) = desk.recv("the desk phone rings").await;
    let (at_mobile, _) = mobile.recv("the mobile rings").await;
    mobile
        .send(proxy, &common::response_to(&at_mobile, "180 Ringing", ""))
        .await;
    desk.send(proxy, &common::response_to(&at_desk, "486 Busy Here", ""))
        .await;
    mobile
        .send(proxy, &common::response_to(&at_mobile, "200 OK", ""))
        .await;
    let resp = final_response(&caller).await;
    assert!(resp.start_line().starts_with("SIP/2.0 200"), "{}", resp.0);
}

#[tokio::test]
async fn a_higher_q_contact_is_tried_first_then_the_next() {
    let (_server, proxy) = proxy().await;
    let (first, second) = (Peer::bind().await, Peer::bind().await);
    registered(
        proxy,
        &first,
        "fay",
        &format!("<sip:fay@{}>;q=1.0", first.addr),
        "",
    )
    .await;
    registered(
        proxy,
        &second,
        "fay",
        &format!("<sip:fay@{}>;q=0.5", second.addr),
        "",
    )
    .await;
    let caller = Peer::bind().await;
    caller.send(proxy, &invite(&caller, "fay", "reg-q")).await;
    let (inv, _) = first.recv("q=1.0 first").await;
    second.expect_silence(200, "q=0.5 waits").await;
    first
        .send(proxy, &common::response_to(&inv, "486 Busy Here", ""))
        .await;
    let (inv2, _) = second.recv("then q=0.5").await;
    assert!(
        inv2.start_line()
            .starts_with(&format!("INVITE sip:fay@{}", second.addr))
    );
}

#[tokio::test]
async fn registered_tells_whether_an_aor_has_a_binding() {
    let (_server, proxy) = proxy().await;
    let phone = Peer::bind().await;
    let caller = Peer::bind().await;
    // Not registered: the route's `registered` check is false, lookup 404s.
    caller
        .send(proxy, &invite(&caller, "nobody", "reg-none"))
        .await;
    assert!(
        final_response(&caller)
            .await
            .start_line()
            .starts_with("SIP/2.0 404")
    );
    registered(
        proxy,
        &phone,
        "nobody",
        &format!("<sip:nobody@{}>", phone.addr),
        "",
    )
    .await;
    caller
        .send(proxy, &invite(&caller, "nobody", "reg-some"))
        .await;
    let resp = final_response(&caller).await;
    assert!(
        resp.start_line()
            .starts_with("SIP/2.0 500 Nobody Is Registered"),
        "{}",
        resp.0
    );
}

/// What a binding may hold is bounded (tests/routes/registrar_bounds.yaml:
/// Contact URIs of at most 64 bytes, 2 bindings in all): a long Contact
/// URI gets 400; once the table is full a REGISTER that adds a binding
/// gets 503 with Retry-After while refreshes and removals still pass, and
/// a removal makes room again.
#[tokio::test]
async fn the_location_table_and_its_bindings_are_bounded() {
    let (_server, proxy) = common::start_proxy(&common::registrar_bounds::ROUTES).await;
    let phone = Peer::bind().await;
    let answer = |resp: &Sip| resp.start_line().to_string();
    // 65 bytes of Contact URI: refused, nothing stored.
    let long = format!(
        "<sip:{}@{}>",
        "a".repeat(65 - "sip:@".len() - phone.addr.to_string().len()),
        phone.addr
    );
    assert_eq!(long.len(), 65 + 2);
    let resp = registered(proxy, &phone, "long", &long, "").await;
    assert_eq!(answer(&resp), "SIP/2.0 400 Contact URI Too Long");
    let contact = |user: &str| format!("<sip:{user}@{}>", phone.addr);
    for user in ["alice", "bob"] {
        let resp = registered(proxy, &phone, user, &contact(user), "").await;
        assert!(answer(&resp).starts_with("SIP/2.0 200"), "{}", resp.0);
    }
    let resp = registered(proxy, &phone, "carol", &contact("carol"), "").await;
    assert_eq!(answer(&resp), "SIP/2.0 503 Location Table Full");
    assert_eq!(resp.header("Retry-After").as_deref(), Some("60"));
    // A refresh adds nothing: it passes.
    phone
        .send(
            proxy,
            &register(&phone, "alice", &contact("alice"), 2, "Expires: 600\r\n"),
        )
        .await;
    let (resp, _) = phone.recv("the refresh's answer").await;
    assert!(answer(&resp).starts_with("SIP/2.0 200"), "{}", resp.0);
    // Removing bob's binding makes room for carol's.
    phone
        .send(proxy, &register(&phone, "bob", "*", 2, "Expires: 0\r\n"))
        .await;
    let (resp, _) = phone.recv("the removal's answer").await;
    assert!(answer(&resp).starts_with("SIP/2.0 200"), "{}", resp.0);
    let resp = registered(proxy, &phone, "carol", &contact("carol"), "").await;
    assert!(answer(&resp).starts_with("SIP/2.0 200"), "{}", resp.0);
}
