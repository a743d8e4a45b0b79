//! Every relayed transaction ends (issue 11, "endless serial reroute"):
//! the sans-IO core driven with plain datagrams and a fake clock. A
//! failure route that relays again on every failure makes at most
//! `max_branches` branches, never sends to a target it already tried, and
//! makes none after Timer C ended the transaction.

use std::time::{Duration, Instant};

use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener, Outgoing};
use sipforge_runtime::target::NextHop;

mod common;

use common::text::response;

const UAC: &str = "192.0.2.10:5060";

fn core() -> Core {
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    Core::new(
        &common::bounds::ROUTES,
        Identity::new(vec![listener]),
        CoreConfig::default(),
    )
}

fn invite(id: &str, extra: &str) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{id}\r\n\
         From: <sip:alice@example.com>;tag={id}\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: {id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}
/// A response to `req` as a UAS writes it.
/// What the core sent, as (to, text).
fn sent(out: Vec<Outgoing>) -> Vec<(String, String)> {
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

fn feed(core: &mut Core, now: Instant, text: &str, from: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    core.handle(now, text.as_bytes(), from.parse().unwrap(), 0, &mut out);
    sent(out)
}

fn invites(sent: &[(String, String)]) -> Vec<(String, String)> {
    sent.iter()
        .filter(|(_, m)| m.starts_with("INVITE "))
        .cloned()
        .collect()
}

/// Answer every INVITE in `sent` with `status` from where it went, until
/// the proxy stops making branches; everything sent on the way.
fn answer_every_branch(
    core: &mut Core,
    now: Instant,
    mut sent: Vec<(String, String)>,
    status: &str,
) -> Vec<(String, String)> {
    let mut all = sent.clone();
    for _ in 0..20 {
        let Some((to, inv)) = invites(&sent).into_iter().next() else {
            break;
        };
        sent = feed(core, now, &response(&inv, status, "uas"), &to);
        all.extend(sent.iter().cloned());
    }
    all
}

#[test]
fn a_failure_route_that_always_relays_stops_at_max_branches() {
    let mut core = core();
    let now = Instant::now();
    let first = feed(&mut core, now, &invite("mb1", ""), UAC);
    let all = answer_every_branch(&mut core, now, first, "500 Server Error");
    let invites = invites(&all);
    // max_branches: 3 in the fixture; the set has 5 targets.
    assert_eq!(invites.len(), 3, "{invites:?}");
    let targets: std::collections::HashSet<&str> =
        invites.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(targets.len(), 3, "three different targets: {targets:?}");
    let finals: Vec<&(String, String)> = all
        .iter()
        .filter(|(to, m)| to == UAC && m.starts_with("SIP/2.0 5"))
        .collect();
    assert_eq!(finals.len(), 1, "one final response upstream: {all:?}");
    assert!(finals[0].1.starts_with("SIP/2.0 500"), "{}", finals[0].1);
    assert_eq!(core.pending_transactions(), 0);
}

#[test]
fn a_target_already_tried_is_not_tried_again() {
    let mut core = core();
    let now = Instant::now();
    let first = feed(&mut core, now, &invite("same1", "X-Same: yes\r\n"), UAC);
    let all = answer_every_branch(&mut core, now, first, "404 Not Found");
    assert_eq!(invites(&all).len(), 1, "{all:?}");
    let finals: Vec<&(String, String)> = all
        .iter()
        .filter(|(to, m)| to == UAC && m.starts_with("SIP/2.0 404"))
        .collect();
    assert_eq!(finals.len(), 1, "the 404 goes up once: {all:?}");
    assert_eq!(core.pending_transactions(), 0);
}

#[test]
fn timer_c_bounds_the_whole_transaction() {
    let mut core = core();
    let start = Instant::now();
    let first = feed(&mut core, start, &invite("tc1", ""), UAC);
    let (to, inv) = invites(&first).remove(0);
    // The branch rings, then nothing: Timer C (181 s after the 180) fires.
    let ringing = response(&inv, "180 Ringing", "uas");
    let up = feed(&mut core, start, &ringing, &to);
    assert!(
        up.iter()
            .any(|(t, m)| t == UAC && m.starts_with("SIP/2.0 180"))
    );
    let mut now = start;
    let mut cancel = None;
    while now < start + Duration::from_secs(200) && cancel.is_none() {
        now = core.next_deadline().expect("Timer C is pending").max(now);
        let mut out = Vec::new();
        core.on_timeout(now, &mut out);
        cancel = sent(out)
            .into_iter()
            .find(|(t, m)| *t == to && m.starts_with("CANCEL "));
    }
    let (_, cancel) = cancel.expect("Timer C sent a CANCEL down the ringing branch");
    assert!(
        now >= start + Duration::from_secs(181),
        "not before Timer C"
    );
    // The branch answers the CANCEL and ends with 487; `failure` relays
    // to the next target of the set, which Timer C's end refuses.
    let _ = feed(&mut core, now, &response(&cancel, "200 OK", "uas"), &to);
    let after = feed(
        &mut core,
        now,
        &response(&inv, "487 Request Terminated", "uas"),
        &to,
    );
    assert!(
        invites(&after).is_empty(),
        "no branch after Timer C: {after:?}"
    );
    assert!(
        after
            .iter()
            .any(|(t, m)| t == UAC && m.starts_with("SIP/2.0 487")),
        "the best response goes up: {after:?}"
    );
    assert_eq!(core.pending_transactions(), 0);
}

/// Found by fuzzing: a callee that rings and then never answers, not even
/// the CANCEL Timer C sends. 64*T1 after the CANCEL the branch counts as
/// cancelled (§9.1): the caller gets a final response and the transaction
/// ends, instead of staying in the table for ever.
#[test]
fn a_callee_that_never_answers_the_cancel_does_not_keep_the_transaction() {
    let mut core = core();
    let start = Instant::now();
    let first = feed(&mut core, start, &invite("gone1", ""), UAC);
    let (to, inv) = invites(&first).remove(0);
    let _ = feed(&mut core, start, &response(&inv, "180 Ringing", "uas"), &to);
    let mut now = start;
    let mut upstream = Vec::new();
    let mut cancels = 0;
    while core.transactions() > 0 {
        let Some(next) = core.next_deadline() else {
            panic!(
                "a transaction with nothing left to wait for: {} live, sent up {upstream:?}",
                core.transactions()
            );
        };
        now = next.max(now);
        assert!(now < start + Duration::from_secs(600), "never ended");
        let mut out = Vec::new();
        core.on_timeout(now, &mut out);
        for (t, m) in sent(out) {
            if t == UAC {
                upstream.push(m.lines().next().unwrap_or("").to_string());
            } else if m.starts_with("CANCEL ") {
                cancels += 1;
            }
        }
    }
    assert!(cancels >= 1, "Timer C sent a CANCEL");
    assert!(
        upstream.iter().any(|l| l.starts_with("SIP/2.0 487")),
        "the caller got a final response: {upstream:?}"
    );
}
