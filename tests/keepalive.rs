//! `registrar: { keepalive: { interval } }`, sans-IO with a clock of the
//! test's own: a phone registered from behind NAT gets an OPTIONS every
//! interval at the address its REGISTER came from; its answer is consumed;
//! an unanswered one is counted and the binding stays; a phone whose
//! Contact is its own address is not pinged; unregistering ends the pings.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener};

const PHONE: &str = "127.0.0.1:5081";
const PLAIN: &str = "127.0.0.1:5082";

fn core() -> Core {
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    Core::new(
        &common::registrar_keepalive::ROUTES,
        Identity::new(vec![listener]),
        CoreConfig::default(),
    )
}

fn feed(core: &Core, now: Instant, text: &str, from: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let source: SocketAddr = from.parse().unwrap();
    core.handle(now, text.as_bytes(), source, 0, &mut out);
    common::sent_texts(out)
}

fn tick(core: &Core, now: Instant) -> Vec<(String, String)> {
    let mut out = Vec::new();
    core.on_timeout(now, &mut out);
    common::sent_texts(out)
}

fn register(user: &str, from: &str, contact: &str, cseq: u32, expires: u32) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-ka-{user}-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=k-{user}\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: ka-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\n\
         Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A 200 answering a keep-alive OPTIONS.
fn answer(options: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in options.split("\r\n").skip(1) {
        let name = line.split(':').next().unwrap_or("");
        if ["Via", "From", "To", "Call-ID", "CSeq"].contains(&name) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[test]
fn a_phone_behind_nat_is_pinged_and_a_silent_one_keeps_its_binding() {
    let core = core();
    let t0 = Instant::now();
    let reg = feed(
        &core,
        t0,
        &register("alice", PHONE, "sip:alice@192.168.1.10:5060", 1, 600),
        PHONE,
    );
    assert!(reg[0].1.starts_with("SIP/2.0 200"), "{reg:?}");
    let plain = format!("sip:bob@{PLAIN}");
    let reg = feed(&core, t0, &register("bob", PLAIN, &plain, 1, 600), PLAIN);
    assert!(reg[0].1.starts_with("SIP/2.0 200"), "{reg:?}");

    assert!(
        tick(&core, t0 + Duration::from_millis(500)).is_empty(),
        "not before the interval"
    );
    let pings = tick(&core, t0 + Duration::from_millis(1100));
    assert_eq!(pings.len(), 1, "only the phone behind NAT: {pings:?}");
    let (to, options) = &pings[0];
    assert_eq!(to, PHONE, "to where the REGISTER came from");
    assert!(
        options.starts_with("OPTIONS sip:alice@192.168.1.10:5060 SIP/2.0\r\n"),
        "{options}"
    );
    // Its answer is consumed: nothing goes anywhere.
    assert!(
        feed(
            &core,
            t0 + Duration::from_millis(1150),
            &answer(options),
            PHONE
        )
        .is_empty()
    );

    // The next one goes unanswered; the one after it still goes, and a
    // call still reaches the phone.
    let second = tick(&core, t0 + Duration::from_millis(2200));
    assert_eq!(second.len(), 1);
    let third = tick(&core, t0 + Duration::from_millis(3300));
    assert_eq!(
        third.len(),
        1,
        "pinged again though the last one went unanswered"
    );
    let invite = "INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-ka-call\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carol@example.com>;tag=c1\r\nTo: <sip:alice@example.com>\r\n\
         Call-ID: ka-call\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let sent = feed(
        &core,
        t0 + Duration::from_millis(3400),
        invite,
        "127.0.0.1:5070",
    );
    assert!(
        sent.iter()
            .any(|(to, t)| to == PHONE && t.starts_with("INVITE ")),
        "the binding stays: {sent:?}"
    );

    // Unregistered: no more pings.
    let unreg = feed(
        &core,
        t0 + Duration::from_millis(3500),
        &register("alice", PHONE, "sip:alice@192.168.1.10:5060", 2, 0),
        PHONE,
    );
    assert!(unreg[0].1.starts_with("SIP/2.0 200"), "{unreg:?}");
    let later = tick(&core, t0 + Duration::from_millis(5000));
    assert!(
        later
            .iter()
            .all(|(to, t)| !(to == PHONE && t.starts_with("OPTIONS "))),
        "no pings after unregistering: {later:?}"
    );
}
