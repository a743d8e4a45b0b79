//! Parallel forking in the stateful core, sans-IO (RFC 3261 §16.7):
//! `relay: [a, b]` sends both branches at once; the first 2xx goes up and
//! the other branch is cancelled; a 6xx cancels the rest; when every
//! branch fails, the failure route runs once with the best response.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::text::header;
use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener, Outgoing};
use sipforge_runtime::target::NextHop;

const CALLER: &str = "127.0.0.1:5062";
const A: &str = "127.0.0.1:5081";
const B: &str = "127.0.0.1:5082";

fn core() -> Core {
    core_of(&common::fork::ROUTES)
}

fn core_of(routes: &'static dyn sipforge_runtime::api::Routes) -> Core {
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    Core::new(routes, Identity::new(vec![listener]), CoreConfig::default())
}

/// (destination, text) of what the core sent.
fn feed(core: &Core, text: &str, from: &str) -> Vec<(String, String)> {
    let mut out: Vec<Outgoing> = Vec::new();
    let source: SocketAddr = from.parse().unwrap();
    core.handle(Instant::now(), text.as_bytes(), source, 0, &mut out);
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

fn invite(id: &str) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bK-{id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a-{id}\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{CALLER}>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A response to a request the core sent (every Via copied, a To tag).
fn answer(req: &str, status: &str, tag: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in req.split("\r\n").skip(1) {
        let name = line.split(':').next().unwrap_or("");
        if ["Via", "From", "Call-ID", "CSeq", "Record-Route"].contains(&name) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    let to = header(req, "To").unwrap();
    out.push_str(&format!("To: {to};tag={tag}\r\nContent-Length: 0\r\n\r\n"));
    out
}

/// Start a forked call: the two INVITEs, by destination.
fn start(core: &Core, id: &str) -> (String, String) {
    let sent = feed(core, &invite(id), CALLER);
    let invites: Vec<&(String, String)> = sent
        .iter()
        .filter(|(_, t)| t.starts_with("INVITE"))
        .collect();
    assert_eq!(invites.len(), 2, "two branches at once: {sent:?}");
    let to_a = invites
        .iter()
        .find(|(to, _)| to == A)
        .expect("a branch to A");
    let to_b = invites
        .iter()
        .find(|(to, _)| to == B)
        .expect("a branch to B");
    assert!(
        to_a.1.starts_with("INVITE sip:bob@127.0.0.1:5081 SIP/2.0"),
        "{}",
        to_a.1
    );
    assert!(
        to_b.1.starts_with("INVITE sip:bob@127.0.0.1:5082 SIP/2.0"),
        "{}",
        to_b.1
    );
    assert_ne!(top_branch(&to_a.1), top_branch(&to_b.1));
    (to_a.1.clone(), to_b.1.clone())
}

fn top_branch(msg: &str) -> String {
    common::branch_of(header(msg, "Via").unwrap())
}

fn statuses_to_caller(sent: &[(String, String)]) -> Vec<String> {
    sent.iter()
        .filter(|(to, t)| to == CALLER && t.starts_with("SIP/2.0"))
        .map(|(_, t)| t.lines().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_first_2xx_goes_up_and_the_ringing_branch_is_cancelled() {
    let core = core();
    let (a, b) = start(&core, "f1");
    assert_eq!(
        statuses_to_caller(&feed(&core, &answer(&a, "180 Ringing", "ta"), A)),
        ["SIP/2.0 180 Ringing"]
    );
    assert_eq!(
        statuses_to_caller(&feed(&core, &answer(&b, "180 Ringing", "tb"), B)),
        ["SIP/2.0 180 Ringing"]
    );
    let sent = feed(&core, &answer(&a, "200 OK", "ta"), A);
    assert_eq!(statuses_to_caller(&sent), ["SIP/2.0 200 OK"]);
    let cancels: Vec<&(String, String)> = sent
        .iter()
        .filter(|(_, t)| t.starts_with("CANCEL"))
        .collect();
    assert_eq!(cancels.len(), 1, "{sent:?}");
    assert_eq!(cancels[0].0, B, "the other branch is cancelled");
    assert_eq!(top_branch(&cancels[0].1), top_branch(&b));
    // B ends with 487: acknowledged, nothing more goes up.
    let sent = feed(&core, &answer(&b, "487 Request Terminated", "tb"), B);
    assert!(statuses_to_caller(&sent).is_empty(), "{sent:?}");
    assert!(sent.iter().any(|(to, t)| to == B && t.starts_with("ACK")));
}

#[test]
fn a_failure_on_one_branch_waits_for_the_other_which_answers() {
    let core = core();
    let (a, b) = start(&core, "f2");
    let sent = feed(&core, &answer(&a, "486 Busy Here", "ta"), A);
    assert!(
        statuses_to_caller(&sent).is_empty(),
        "a 486 waits for the other branch: {sent:?}"
    );
    let sent = feed(&core, &answer(&b, "200 OK", "tb"), B);
    assert_eq!(statuses_to_caller(&sent), ["SIP/2.0 200 OK"]);
}

#[test]
fn a_2xx_before_any_provisional_cancels_the_other_when_it_rings() {
    let core = core();
    let (a, b) = start(&core, "f3");
    let sent = feed(&core, &answer(&a, "200 OK", "ta"), A);
    assert_eq!(statuses_to_caller(&sent), ["SIP/2.0 200 OK"]);
    assert!(
        !sent.iter().any(|(_, t)| t.starts_with("CANCEL")),
        "no CANCEL before a provisional (§9.1)"
    );
    let sent = feed(&core, &answer(&b, "180 Ringing", "tb"), B);
    assert!(
        sent.iter()
            .any(|(to, t)| to == B && t.starts_with("CANCEL")),
        "{sent:?}"
    );
}

#[test]
fn a_6xx_cancels_the_rest_and_is_the_answer() {
    let core = core();
    let (a, b) = start(&core, "f4");
    feed(&core, &answer(&b, "180 Ringing", "tb"), B);
    let sent = feed(&core, &answer(&a, "603 Decline", "ta"), A);
    assert!(
        sent.iter()
            .any(|(to, t)| to == B && t.starts_with("CANCEL")),
        "{sent:?}"
    );
    let sent = feed(&core, &answer(&b, "487 Request Terminated", "tb"), B);
    let up = statuses_to_caller(&sent);
    assert_eq!(up.len(), 1, "{sent:?}");
    assert!(
        up[0].starts_with("SIP/2.0 480"),
        "the failure route ran: {up:?}"
    );
    let reply = &sent.iter().find(|(to, _)| to == CALLER).unwrap().1;
    assert_eq!(
        header(reply, "X-Best"),
        Some("603"),
        "with the 6xx as the best response"
    );
}

#[test]
fn when_every_branch_fails_the_failure_route_runs_once_with_the_best() {
    let core = core();
    let (a, b) = start(&core, "f5");
    assert!(statuses_to_caller(&feed(&core, &answer(&a, "404 Not Found", "ta"), A)).is_empty());
    let sent = feed(&core, &answer(&b, "486 Busy Here", "tb"), B);
    let up = statuses_to_caller(&sent);
    assert_eq!(up.len(), 1, "{sent:?}");
    let reply = &sent.iter().find(|(to, _)| to == CALLER).unwrap().1;
    // Both 4xx: the lowest class wins (§16.7 step 6); within it, the
    // branch that answered first.
    assert_eq!(header(reply, "X-Best"), Some("404"));
}

/// The fork core, told that `carrier.test` resolves to two targets,
/// 127.0.0.1:5091 then 127.0.0.1:5092 (RFC 3263).
fn core_with_carrier() -> Core {
    with_carrier(core())
}

fn with_carrier(core: Core) -> Core {
    core.set_name_targets(Box::new(|host, port, transport| {
        (host == "carrier.test" && port.is_none() && transport.is_none()).then(|| {
            [5091, 5092]
                .into_iter()
                .map(|port| sipforge_runtime::resolve::Target {
                    transport: sipforge_runtime::transport::Transport::Udp,
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    ttl: std::time::Duration::from_secs(60),
                })
                .collect()
        })
    }));
    core
}

/// An INVITE to carol, whom the routes fork to `carrier.test` and to B:
/// (the branch to the name, the branch to B).
fn start_carol(core: &Core, id: &str) -> (String, String) {
    let sent = feed(core, &invite(id).replace("sip:bob@", "sip:carol@"), CALLER);
    let to = |dest: &str| {
        sent.iter()
            .find(|(to, t)| to == dest && t.starts_with("INVITE"))
            .unwrap_or_else(|| panic!("an INVITE to {dest}: {sent:?}"))
            .1
            .clone()
    };
    (to("carrier.test:5060"), to(B))
}

/// The name's first target (127.0.0.1:5091) answers `invite` with 503:
/// what the core sent then.
fn first_target_503(core: &Core, invite: &str) -> Vec<(String, String)> {
    feed(
        core,
        &answer(invite, "503 Service Unavailable", "t1"),
        "127.0.0.1:5091",
    )
}

/// RFC 3263 §4.3 inside a fork: the branch to a name whose first target
/// answers 503 moves on to the name's next target at once, while the
/// other branch still rings (not when that one ends); the new branch's
/// 200 goes up and the ringing branch is cancelled.
#[test]
fn a_forked_branch_to_a_name_moves_to_its_next_target_while_the_other_rings() {
    let core = core_with_carrier();
    let (name, b) = start_carol(&core, "f6");
    assert_eq!(
        statuses_to_caller(&feed(&core, &answer(&b, "180 Ringing", "tb"), B)),
        ["SIP/2.0 180 Ringing"]
    );
    let sent = first_target_503(&core, &name);
    assert!(statuses_to_caller(&sent).is_empty(), "{sent:?}");
    let (_, next) = sent
        .iter()
        .find(|(to, t)| to == "127.0.0.1:5092" && t.starts_with("INVITE"))
        .unwrap_or_else(|| panic!("the name's next target at once: {sent:?}"));
    assert!(next.starts_with("INVITE sip:carol@carrier.test SIP/2.0"));
    assert_ne!(top_branch(next), top_branch(&name));
    let sent = feed(&core, &answer(next, "200 OK", "t2"), "127.0.0.1:5092");
    assert_eq!(statuses_to_caller(&sent), ["SIP/2.0 200 OK"]);
    assert!(
        sent.iter()
            .any(|(to, t)| to == B && t.starts_with("CANCEL ")),
        "the ringing branch is cancelled: {sent:?}"
    );
}

/// After a 6xx no branch starts (§16.7 step 5), not even the next target
/// of a name whose branch then fails.
#[test]
fn after_a_6xx_a_failed_name_does_not_move_on() {
    let core = core_with_carrier();
    let (name, b) = start_carol(&core, "f7");
    let sent = feed(&core, &answer(&b, "603 Decline", "tb"), B);
    assert!(statuses_to_caller(&sent).is_empty(), "{sent:?}");
    let sent = first_target_503(&core, &name);
    assert!(
        !sent.iter().any(|(_, t)| t.starts_with("INVITE")),
        "no new branch after the 603: {sent:?}"
    );
    let reply = &sent
        .iter()
        .find(|(to, t)| to == CALLER && t.starts_with("SIP/2.0"))
        .unwrap_or_else(|| panic!("a final response upstream: {sent:?}"))
        .1;
    assert_eq!(header(reply, "X-Best"), Some("603"));
}

/// Without a failure route the transaction keeps no copy of the request
/// route's edits unless it may need them: a branch to a name may, so the
/// branch to the name's next target still carries the Record-Route and
/// the appended header, as the first one did; when every branch has
/// failed, the best response goes up.
#[test]
fn a_retried_name_keeps_the_request_route_edits_without_a_failure_route() {
    let core = with_carrier(core_of(&common::fork_no_failure::ROUTES));
    let (name, b) = start_carol(&core, "f8");
    for first in [&name, &b] {
        assert!(header(first, "Record-Route").is_some(), "{first}");
        assert_eq!(header(first, "X-Edited"), Some("by the request route"));
    }
    let sent = feed(&core, &answer(&b, "486 Busy Here", "tb"), B);
    assert!(statuses_to_caller(&sent).is_empty(), "{sent:?}");
    let sent = first_target_503(&core, &name);
    let (_, next) = sent
        .iter()
        .find(|(to, t)| to == "127.0.0.1:5092" && t.starts_with("INVITE"))
        .unwrap_or_else(|| panic!("the name's next target: {sent:?}"));
    assert_eq!(header(next, "Record-Route"), header(&name, "Record-Route"));
    assert_eq!(header(next, "X-Edited"), Some("by the request route"));
    let sent = feed(
        &core,
        &answer(next, "404 Not Found", "t2"),
        "127.0.0.1:5092",
    );
    assert_eq!(statuses_to_caller(&sent), ["SIP/2.0 486 Busy Here"]);
}
