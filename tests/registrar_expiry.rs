//! Expired bindings leave the `memory` location store on the core's
//! timer, whether or not REGISTERs come (sans-IO, with a clock of the
//! test's own; tests/routes/sipp_registrar_short.yaml, `min_expires: 1`).
//! Every phone gone at once (a site's link down) must not leave the table
//! and the `sipforge_registered_*` gauges full until the next REGISTER.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener};

const PHONE: &str = "127.0.0.1:5081";

fn core(now: Instant) -> Core {
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    let mut core = Core::new(
        &common::sipp_registrar_short::ROUTES,
        Identity::new(vec![listener]),
        CoreConfig::default(),
    );
    core.set_wall_clock(now, 1_800_000_000);
    core
}

fn register(user: &str, expires: u32) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-exp-{user}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=e-{user}\r\nTo: <sip:{user}@example.com>\r\n\
         Call-ID: exp-{user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{PHONE}>\r\n\
         Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn expired_bindings_are_swept_by_the_timer_when_no_register_comes() {
    let t0 = Instant::now();
    let core = core(t0);
    let sweeps = core.lanes() - 1;
    assert_eq!(core.registrations(), Some((0, 0)));
    assert_eq!(core.next_deadline_in(sweeps), None, "nothing to sweep");

    // Three phones for 2 s, one for an hour.
    let source: SocketAddr = PHONE.parse().unwrap();
    for (user, expires) in [("a", 2), ("b", 2), ("c", 2), ("d", 3600)] {
        let mut out = Vec::new();
        core.handle(t0, register(user, expires).as_bytes(), source, 0, &mut out);
        let sent = common::sent_texts(out);
        assert!(sent[0].1.starts_with("SIP/2.0 200"), "{sent:?}");
    }
    assert_eq!(core.registrations(), Some((4, 4)));
    let first = core.next_deadline_in(sweeps).expect("a sweep is due");
    assert!(first <= t0 + Duration::from_secs(1), "every second");

    // No REGISTER comes any more; the timer lanes run as the network
    // layer runs them, once a second.
    let mut out = Vec::new();
    let mut gone_at = None;
    for s in 1..=30 {
        let now = t0 + Duration::from_secs(s);
        core.on_timeout(now, &mut out);
        assert!(out.is_empty(), "a sweep sends nothing: {out:?}");
        if s < 2 {
            assert_eq!(core.registrations(), Some((4, 4)), "not expired yet");
        }
        if gone_at.is_none() && core.registrations() == Some((1, 1)) {
            gone_at = Some(s);
        }
    }
    // A shard is swept at most every 10 s, and each second a tenth of
    // them in turn: within 10-20 s of the REGISTERs.
    let gone_at = gone_at.expect("the expired bindings were swept");
    assert!((10..=21).contains(&gone_at), "swept at +{gone_at} s");
    assert_eq!(core.registrations(), Some((1, 1)), "the live one stays");
    assert!(core.next_deadline_in(sweeps).is_some(), "still a binding");

    // The last one unregisters: nothing left, no more sweeps.
    let mut out = Vec::new();
    let now = t0 + Duration::from_secs(31);
    let bye = register("d", 0)
        .replace("CSeq: 1 ", "CSeq: 2 ")
        .replace("exp-d\r\n", "exp-d2\r\n");
    core.handle(now, bye.as_bytes(), source, 0, &mut out);
    assert!(common::sent_texts(out)[0].1.starts_with("SIP/2.0 200"));
    assert_eq!(core.registrations(), Some((0, 0)));
    assert_eq!(
        core.next_deadline_in(sweeps),
        None,
        "an empty store is not swept"
    );
}
