//! Regression tests for issue 11 ("hostile-input defects") over real UDP
//! sockets on 127.0.0.1: requests that loop back to the proxy (itself, or
//! through a second proxy), endless serial rerouting, an unmatched CANCEL,
//! `received`/`rport` values chosen by the client, forged responses, and a
//! request too large for UDP. Each test fails on the behaviour before the
//! fix. Fixtures: `tests/routes/loops.yaml`, `loops_lax_source.yaml`,
//! `reroute_loop.yaml` and `reroute_max_branches.yaml` (plus `seed.yaml` and
//! `hostile_input.yaml` as second proxies).
//!
//! Metrics are process-wide and tests run in parallel, so metric checks
//! only ever say "increased by at least N".

mod common;

use common::branch_of;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Peer, Sip, fast_timers, request, response_to, start_proxy, start_proxy_with};
use tokio::net::UdpSocket;
use tokio::time::Instant;

type Routes = &'static dyn sipforge_runtime::api::Routes;

fn loops() -> Routes {
    &common::loops::ROUTES
}

// ---- helpers -------------------------------------------------------------------

/// A counter of the process-wide metrics (0 when the series is absent).
fn metric(series: &str) -> f64 {
    sipforge_runtime::metrics::sample(&sipforge_runtime::metrics::encode(), series).unwrap_or(0.0)
}

const LOOPS_DETECTED: &str = "sipforge_loops_detected_total";

fn drops(reason: &str) -> String {
    format!("sipforge_drops_total{{reason=\"{reason}\"}}")
}

fn refused(reason: &str) -> String {
    format!("sipforge_branches_refused_total{{reason=\"{reason}\"}}")
}

/// Assert that `series` grew by at least `by` since `before` (waiting a
/// little: the net layer may count after the datagram was handled).
async fn assert_grew(series: &str, before: f64, by: f64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = metric(series);
        if now >= before + by {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series}: expected at least {} (was {before}), got {now}",
            before + by
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn via_of(peer: &Peer, branch: &str) -> String {
    format!(
        "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-{branch}",
        peer.port()
    )
}

fn uri_of(peer: &Peer) -> String {
    format!("sip:bob@127.0.0.1:{}", peer.port())
}

/// An INVITE from `uac` to `ruri` with `extra` header lines (Max-Forwards 70).
fn invite(uac: &Peer, ruri: &str, call_id: &str, extra: &str) -> String {
    request(
        "INVITE",
        ruri,
        &via_of(uac, call_id),
        call_id,
        &format!("Max-Forwards: 70\r\n{extra}"),
    )
}

/// The UAC's ACK for a non-2xx final response to `invite(uac, ruri, call_id, _)`.
fn ack_for(uac: &Peer, ruri: &str, call_id: &str, final_response: &Sip) -> String {
    let to = final_response.header("To").unwrap();
    request(
        "ACK",
        ruri,
        &via_of(uac, call_id),
        call_id,
        &format!("To: {to}\r\nMax-Forwards: 70\r\n"),
    )
}

/// The next message at `peer` that is not a 100 Trying.
async fn next_non_trying(peer: &Peer, what: &str) -> Sip {
    loop {
        let (m, _) = peer.recv(what).await;
        if !m.start_line().starts_with("SIP/2.0 100 ") {
            return m;
        }
    }
}

/// Every datagram `peer` receives until `quiet_ms` pass without one (or
/// `cap` arrived, or 10 s passed: the old behaviour never went quiet).
async fn collect(peer: &Peer, quiet_ms: u64, cap: usize) -> Vec<Sip> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_535];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < cap && Instant::now() < deadline {
        match tokio::time::timeout(
            Duration::from_millis(quiet_ms),
            peer.socket.recv_from(&mut buf),
        )
        .await
        {
            Ok(Ok((n, _))) => got.push(Sip(String::from_utf8_lossy(&buf[..n]).into_owned())),
            _ => break,
        }
    }
    got
}

/// Every datagram `peer` receives during `ms` milliseconds.
async fn collect_for(peer: &Peer, ms: u64) -> Vec<Sip> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_535];
    let deadline = Instant::now() + Duration::from_millis(ms);
    while let Ok(Ok((n, _))) =
        tokio::time::timeout_at(deadline, peer.socket.recv_from(&mut buf)).await
    {
        got.push(Sip(String::from_utf8_lossy(&buf[..n]).into_owned()));
    }
    got
}

/// After `final_response` was received and ACKed: what came next holds
/// nothing but retransmissions of it (sent before the ACK arrived).
fn assert_one_final(final_response: &Sip, after: &[Sip]) {
    for m in after {
        assert_eq!(
            m.0, final_response.0,
            "only retransmissions of the one final response may follow it"
        );
    }
}

fn start_lines(msgs: &[Sip]) -> Vec<&str> {
    msgs.iter().map(Sip::start_line).collect()
}

fn count_starting(msgs: &[Sip], prefix: &str) -> usize {
    msgs.iter()
        .filter(|m| m.start_line().starts_with(prefix))
        .count()
}

// ---- 1. self-loops and loops -------------------------------------------------------

#[tokio::test]
async fn a_stateless_request_whose_next_hop_is_the_proxy_gets_482_and_nothing_else() {
    let (_server, proxy) = start_proxy(loops()).await;
    let uac = Peer::bind().await;
    let loops_before = metric(LOOPS_DETECTED);
    let self_before = metric(&drops("self_loop"));
    let me = format!("127.0.0.1:{}", proxy.port());
    // The Request-URI, $du, and a Route entry left after our own two were
    // removed, all naming this proxy; and 0.0.0.0 at our port.
    let cases = [
        (format!("sip:bob@{me}"), String::new()),
        (format!("sip:bob@0.0.0.0:{}", proxy.port()), String::new()),
        (
            "sip:bob@192.0.2.1:5060".to_string(),
            format!("X-Du: sip:{me}\r\n"),
        ),
        (
            "sip:bob@192.0.2.1:5060".to_string(),
            format!("Route: <sip:{me};lr>, <sip:{me};lr>\r\nRoute: <sip:{me};lr>\r\n"),
        ),
    ];
    for (i, (ruri, extra)) in cases.iter().enumerate() {
        uac.send(proxy, &invite(&uac, ruri, &format!("self-{i}"), extra))
            .await;
        // Old: the request went round through the proxy until Max-Forwards
        // ran out (141 datagrams for one) and a 483 came back.
        let got = collect(&uac, 300, 50).await;
        assert_eq!(
            start_lines(&got),
            ["SIP/2.0 482 Loop Detected"],
            "case {i} ({ruri}, {extra:?}): one 482 for one request, nothing more"
        );
        assert_eq!(
            got[0].header("Call-ID").unwrap(),
            format!("self-{i}"),
            "case {i}"
        );
    }
    // An ACK looping to us is dropped without an answer.
    let ack = request(
        "ACK",
        &format!("sip:bob@{me}"),
        &via_of(&uac, "self-ack"),
        "self-ack",
        "To: <sip:bob@example.com>;tag=b1\r\n",
    );
    uac.send(proxy, &ack).await;
    let got = collect(&uac, 300, 50).await;
    assert!(got.is_empty(), "ACK: {:?}", start_lines(&got));
    let n = cases.len() as f64 + 1.0;
    assert_grew(LOOPS_DETECTED, loops_before, n).await;
    assert_grew(&drops("self_loop"), self_before, n).await;
}

#[tokio::test]
async fn a_relayed_request_whose_next_hop_is_the_proxy_gets_482_from_its_transaction() {
    let (server, proxy) = start_proxy_with(loops(), fast_timers()).await;
    let uac = Peer::bind().await;
    let loops_before = metric(LOOPS_DETECTED);
    let me = format!("127.0.0.1:{}", proxy.port());
    let elsewhere = "sip:bob@192.0.2.1:5060".to_string();
    let cases = [
        (format!("sip:bob@{me}"), String::new()),
        (elsewhere.clone(), format!("X-Du: sip:{me}\r\n")),
        (
            elsewhere,
            format!("Route: <sip:{me};lr>, <sip:{me};lr>, <sip:{me};lr>\r\n"),
        ),
    ];
    for (i, (ruri, extra)) in cases.iter().enumerate() {
        let call_id = format!("self-relay-{i}");
        let extra = format!("X-Mode: relay\r\n{extra}");
        uac.send(proxy, &invite(&uac, ruri, &call_id, &extra)).await;
        let (trying, _) = uac.recv("100 Trying").await;
        assert_eq!(trying.start_line(), "SIP/2.0 100 Trying", "case {i}");
        let got = uac.recv("482 through the transaction").await.0;
        assert_eq!(got.start_line(), "SIP/2.0 482 Loop Detected", "case {i}");
        assert!(got.header("To").unwrap().contains("tag="), "{got:?}");
        assert!(server.transactions() >= 1, "answered through a transaction");
        uac.send(proxy, &ack_for(&uac, ruri, &call_id, &got)).await;
        // The ACK is absorbed (no 482 retransmission, no 482 for the ACK).
        let more = collect(&uac, 300, 50).await;
        assert!(
            more.is_empty(),
            "case {i} after the ACK: {:?}",
            start_lines(&more)
        );
    }
    // A non-INVITE: the same, through a non-INVITE transaction.
    let options = request(
        "OPTIONS",
        &format!("sip:bob@{me}"),
        &via_of(&uac, "self-relay-options"),
        "self-relay-options",
        "X-Mode: relay\r\n",
    );
    uac.send(proxy, &options).await;
    let got = collect(&uac, 300, 50).await;
    assert_eq!(start_lines(&got), ["SIP/2.0 482 Loop Detected"]);
    assert_grew(LOOPS_DETECTED, loops_before, cases.len() as f64 + 1.0).await;
}

#[tokio::test]
async fn a_next_hop_name_that_resolves_to_the_proxy_is_not_sent_to() {
    let (_server, proxy) = start_proxy(loops()).await;
    let uac = Peer::bind().await;
    let loops_before = metric(LOOPS_DETECTED);
    let self_before = metric(&drops("self_loop"));
    let ruri = format!("sip:bob@localhost:{}", proxy.port());
    uac.send(proxy, &invite(&uac, &ruri, "self-name", "")).await;
    // Dropped in the net layer after resolution: no 482 (the core let it
    // go), and above all not the 483 that a loop to the end would bring.
    let got = collect(&uac, 500, 50).await;
    assert!(got.is_empty(), "{:?}", start_lines(&got));
    assert_grew(LOOPS_DETECTED, loops_before, 1.0).await;
    assert_grew(&drops("self_loop"), self_before, 1.0).await;
}

/// A minimal stateless proxy as a test peer: it sends every request it
/// receives back to `proxy` with a Via of its own on top, and every
/// response back to `proxy` with its Via popped, counting both. It stops
/// reflecting after `cap` requests so the old behaviour ends too.
struct Reflected {
    requests: usize,
    responses: usize,
    sent: usize,
}

async fn reflect(peer: &Peer, proxy: SocketAddr, quiet_ms: u64, cap: usize) -> Reflected {
    let mut seen = Reflected {
        requests: 0,
        responses: 0,
        sent: 0,
    };
    let mut buf = vec![0u8; 65_535];
    while let Ok(Ok((n, _))) = tokio::time::timeout(
        Duration::from_millis(quiet_ms),
        peer.socket.recv_from(&mut buf),
    )
    .await
    {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (first, rest) = text.split_once("\r\n").unwrap();
        if first.starts_with("SIP/2.0 ") {
            seen.responses += 1;
            // Pop our Via (the first header line).
            let (_, after) = rest.split_once("\r\n").unwrap();
            peer.send(proxy, &format!("{first}\r\n{after}")).await;
        } else {
            seen.requests += 1;
            if seen.requests > cap {
                continue;
            }
            let via = format!(
                "Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-refl-{}",
                peer.port(),
                seen.requests
            );
            peer.send(proxy, &format!("{first}\r\n{via}\r\n{rest}"))
                .await;
        }
        seen.sent += 1;
    }
    seen
}

#[tokio::test]
async fn a_request_that_comes_back_unchanged_gets_482_and_no_amplification() {
    let (_server, proxy) = start_proxy(loops()).await;
    let (uac, mirror) = (Peer::bind().await, Peer::bind().await);
    let loops_before = metric(LOOPS_DETECTED);
    // The proxy forwards to the mirror ($du), the mirror sends it back
    // unchanged but for its Via: RFC 3261 §16.3 step 4 sees our own Via
    // with the same loop key. Old: ping-pong until Max-Forwards ran out.
    let extra = format!("X-Du: sip:127.0.0.1:{}\r\n", mirror.port());
    uac.send(
        proxy,
        &invite(&uac, "sip:bob@192.0.2.1:5060", "loop-mirror", &extra),
    )
    .await;
    let seen = reflect(&mirror, proxy, 300, 100).await;
    let at_uac = collect(&uac, 100, 50).await;
    assert_eq!(seen.requests, 1, "the mirror saw the request once");
    assert_eq!(seen.responses, 1, "and the 482 for its copy");
    assert_eq!(start_lines(&at_uac), ["SIP/2.0 482 Loop Detected"]);
    // At most one datagram out of the proxy per datagram in.
    let into_proxy = 1 + seen.sent;
    let out_of_proxy = seen.requests + seen.responses + at_uac.len();
    assert!(
        out_of_proxy <= into_proxy,
        "{out_of_proxy} datagrams out for {into_proxy} in"
    );
    assert_grew(LOOPS_DETECTED, loops_before, 1.0).await;
}

#[tokio::test]
async fn two_proxies_forwarding_to_each_other_end_with_one_482_and_a_spiral_still_passes() {
    // A forwards to its Request-URI (seed.yaml); B forwards to X-Du, after
    // setting the Request-URI from X-Ruri when given (hostile_input.yaml).
    let (_a, proxy_a) = start_proxy(&common::seed::ROUTES).await;
    let (_b, proxy_b) = start_proxy(&common::hostile_input::ROUTES).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let loops_before = metric(LOOPS_DETECTED);
    let to_b = format!("sip:bob@127.0.0.1:{}", proxy_b.port());
    let back_to_a = format!("X-Du: sip:127.0.0.1:{}\r\n", proxy_a.port());
    // A loop: A -> B -> A with the same Request-URI.
    uac.send(proxy_a, &invite(&uac, &to_b, "loop-ab", &back_to_a))
        .await;
    let got = collect(&uac, 300, 50).await;
    assert_eq!(
        start_lines(&got),
        ["SIP/2.0 482 Loop Detected"],
        "old: the request went round until Max-Forwards ran out"
    );
    assert_eq!(got[0].headers("Via").len(), 1, "{:?}", got[0]);
    assert_grew(LOOPS_DETECTED, loops_before, 1.0).await;

    // A spiral: B changes the Request-URI before sending it back to A,
    // which then forwards it on to the UAS (§16.3: not a loop).
    let spiral = format!("{back_to_a}X-Ruri: {}\r\n", uri_of(&uas));
    uac.send(proxy_a, &invite(&uac, &to_b, "spiral-ab", &spiral))
        .await;
    let (at_uas, _) = uas.recv("the spiralled INVITE").await;
    assert_eq!(
        at_uas.start_line(),
        format!("INVITE {} SIP/2.0", uri_of(&uas))
    );
    assert_eq!(at_uas.headers("Via").len(), 4, "A, B, A, the UAC");
    uas.send(proxy_a, &response_to(&at_uas, "200 OK", "")).await;
    let (ok, _) = uac.recv("the 200 back through A, B and A").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.headers("Via").len(), 1);
}

#[tokio::test]
async fn a_relayed_request_looping_through_a_second_proxy_gets_one_482() {
    // A relays to X-Du (loops.yaml, stateful); B forwards to the
    // Request-URI, which names A (seed.yaml).
    let (_a, proxy_a) = start_proxy_with(loops(), fast_timers()).await;
    let (_b, proxy_b) = start_proxy(&common::seed::ROUTES).await;
    let uac = Peer::bind().await;
    let ruri = format!("sip:bob@127.0.0.1:{}", proxy_a.port());
    let extra = format!(
        "X-Mode: relay\r\nX-Du: sip:127.0.0.1:{}\r\n",
        proxy_b.port()
    );
    uac.send(proxy_a, &invite(&uac, &ruri, "loop-relay", &extra))
        .await;
    let first = next_non_trying(&uac, "the 482").await;
    assert_eq!(first.start_line(), "SIP/2.0 482 Loop Detected");
    uac.send(proxy_a, &ack_for(&uac, &ruri, "loop-relay", &first))
        .await;
    let more = collect(&uac, 300, 50).await;
    assert!(
        more.is_empty(),
        "nothing after the 482: {:?}",
        start_lines(&more)
    );
}

// ---- 2. endless serial reroute --------------------------------------------------------

#[tokio::test]
async fn a_reroute_to_a_target_that_also_fails_sends_the_404_up_once() {
    let (_server, proxy) = start_proxy_with(&common::reroute_loop::ROUTES, fast_timers()).await;
    let refused_before = metric(&refused("already_tried"));
    let (uac, first, second) = (Peer::bind().await, Peer::bind().await, Peer::bind().await);
    let ruri = uri_of(&first);
    let extra = format!("X-Fallback: sip:127.0.0.1:{}\r\n", second.port());
    uac.send(proxy, &invite(&uac, &ruri, "reroute-twice", &extra))
        .await;
    let (inv1, _) = first.recv("INVITE at the first UAS").await;
    first
        .send(proxy, &response_to(&inv1, "404 Not Found", ""))
        .await;
    let (inv2, _) = second.recv("INVITE at the fallback").await;
    assert_eq!(inv2.header("X-Rerouted").as_deref(), Some("404"));
    second
        .send(proxy, &response_to(&inv2, "404 Not Found", ""))
        .await;
    // Old: the failure route relayed to the fallback again, forever, and
    // the caller never got a final response.
    let final_response = next_non_trying(&uac, "the 404").await;
    assert_eq!(final_response.start_line(), "SIP/2.0 404 Not Found");
    uac.send(
        proxy,
        &ack_for(&uac, &ruri, "reroute-twice", &final_response),
    )
    .await;
    assert_one_final(&final_response, &collect(&uac, 300, 50).await);
    // Each UAS: its INVITE (answered at once: no retransmission) and the
    // hop-by-hop ACK with that INVITE's branch; nothing else.
    for (uas, inv, name) in [(&first, &inv1, "first"), (&second, &inv2, "fallback")] {
        let rest = collect(uas, 300, 50).await;
        assert_eq!(
            start_lines(&rest).len(),
            1,
            "{name} UAS after its INVITE: {:?}",
            start_lines(&rest)
        );
        assert!(rest[0].start_line().starts_with("ACK "), "{name}");
        assert_eq!(rest[0].top_branch(), inv.top_branch(), "{name}");
    }
    assert_grew(&refused("already_tried"), refused_before, 1.0).await;
}

#[tokio::test]
async fn a_reroute_back_to_the_first_target_is_refused() {
    let (_server, proxy) = start_proxy_with(&common::reroute_loop::ROUTES, fast_timers()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let ruri = uri_of(&uas);
    // The fallback is the Request-URI's own next hop: already tried.
    let extra = format!("X-Fallback: sip:127.0.0.1:{}\r\n", uas.port());
    uac.send(proxy, &invite(&uac, &ruri, "reroute-same", &extra))
        .await;
    let (inv, _) = uas.recv("INVITE").await;
    uas.send(proxy, &response_to(&inv, "404 Not Found", ""))
        .await;
    let final_response = next_non_trying(&uac, "the 404").await;
    assert_eq!(final_response.start_line(), "SIP/2.0 404 Not Found");
    uac.send(
        proxy,
        &ack_for(&uac, &ruri, "reroute-same", &final_response),
    )
    .await;
    let rest = collect(&uas, 300, 50).await;
    assert_eq!(
        start_lines(&rest).len(),
        1,
        "only the ACK: {:?}",
        start_lines(&rest)
    );
    assert!(rest[0].start_line().starts_with("ACK "));
}

/// A UAS on `ip:5060` answering every INVITE with 404 at once; keeps what
/// it received.
async fn backend_404(ip: &str) -> (Arc<Mutex<Vec<Sip>>>, tokio::task::JoinHandle<()>) {
    let addr: SocketAddr = format!("{ip}:5060").parse().unwrap();
    let socket = UdpSocket::bind(addr).await.unwrap_or_else(|e| {
        panic!("cannot bind {addr}: {e} (reserved for tests/routes/reroute_max_branches.yaml)")
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let m = Sip(String::from_utf8_lossy(&buf[..n]).into_owned());
            if m.start_line().starts_with("INVITE ") {
                let reply = response_to(&m, "404 Not Found", "");
                let _ = socket.send_to(reply.as_bytes(), from).await;
            }
            log.lock().unwrap().push(m);
        }
    });
    (seen, task)
}

#[tokio::test]
async fn a_failure_route_that_always_reroutes_stops_at_max_branches() {
    let (_server, proxy) =
        start_proxy_with(&common::reroute_max_branches::ROUTES, fast_timers()).await;
    let refused_before = metric(&refused("max_branches"));
    let mut backends = Vec::new();
    for i in 1..=5 {
        backends.push(backend_404(&format!("127.0.111.{i}")).await);
    }
    let uac = Peer::bind().await;
    let ruri = "sip:bob@example.com";
    uac.send(proxy, &invite(&uac, ruri, "max-branches", ""))
        .await;
    let final_response = next_non_trying(&uac, "the final response").await;
    assert_eq!(final_response.start_line(), "SIP/2.0 404 Not Found");
    uac.send(proxy, &ack_for(&uac, ruri, "max-branches", &final_response))
        .await;
    assert_one_final(&final_response, &collect(&uac, 300, 50).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let invites: Vec<usize> = backends
        .iter()
        .map(|(seen, _)| count_starting(&seen.lock().unwrap(), "INVITE "))
        .collect();
    for (_, task) in &backends {
        task.abort();
    }
    assert_eq!(
        invites.iter().sum::<usize>(),
        3,
        "max_branches: 3 INVITEs in all, per target: {invites:?}"
    );
    assert_eq!(invites, [1, 1, 1, 0, 0], "priority order, each tried once");
    assert_grew(&refused("max_branches"), refused_before, 1.0).await;
}

// ---- 3. unmatched CANCEL ------------------------------------------------------------

#[tokio::test]
async fn a_cancel_matching_no_transaction_is_forwarded_once_statelessly() {
    let (_server, proxy) = start_proxy_with(loops(), fast_timers()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let cancel = request(
        "CANCEL",
        &uri_of(&uas),
        &via_of(&uac, "lost-cancel"),
        "lost-cancel",
        "Max-Forwards: 70\r\nX-Mode: relay\r\n",
    );
    uac.send(proxy, &cancel).await;
    // T1 is 50 ms: a client transaction would have retransmitted it about
    // five times within this window (old behaviour: 10 times in all).
    let got = collect_for(&uas, 1500).await;
    assert_eq!(start_lines(&got).len(), 1, "{:?}", start_lines(&got));
    let fwd = &got[0];
    assert!(fwd.start_line().starts_with("CANCEL "), "{fwd:?}");
    let branch = fwd.top_branch();
    assert!(
        branch.starts_with("z9hG4bKsf") && !branch.starts_with("z9hG4bKsfT"),
        "a stateless branch: {branch}"
    );
    assert!(
        collect(&uac, 50, 10).await.is_empty(),
        "no 200 from the proxy"
    );
    // Its response goes back statelessly.
    uas.send(
        proxy,
        &response_to(fwd, "481 Call/Transaction Does Not Exist", ""),
    )
    .await;
    let (resp, _) = uac.recv("the 481 back").await;
    assert_eq!(
        resp.start_line(),
        "SIP/2.0 481 Call/Transaction Does Not Exist"
    );
}

// ---- 4. received / rport chosen by the client -------------------------------------------

#[tokio::test]
async fn received_and_rport_written_by_the_client_are_replaced_by_the_source() {
    let (_server, proxy) = start_proxy_with(loops(), fast_timers()).await;
    let (uac, uas, victim) = (Peer::bind().await, Peer::bind().await, Peer::bind().await);
    for mode in ["forward", "relay"] {
        let call_id = format!("rport-{mode}");
        // The values name the victim: old (stateless) code sent the
        // responses there.
        let via = format!(
            "SIP/2.0/UDP 10.9.9.9:5060;received=127.0.0.1;rport={};branch=z9hG4bK-{call_id}",
            victim.port()
        );
        let extra = format!("Max-Forwards: 70\r\nX-Mode: {mode}\r\n");
        uac.send(
            proxy,
            &request("INVITE", &uri_of(&uas), &via, &call_id, &extra),
        )
        .await;
        let (got, _) = uas.recv("INVITE").await;
        let vias = got.headers("Via");
        assert_eq!(
            vias[1],
            format!(
                "SIP/2.0/UDP 10.9.9.9:5060;rport={};received=127.0.0.1;branch=z9hG4bK-{call_id}",
                uac.port()
            ),
            "{mode}"
        );
        uas.send(proxy, &response_to(&got, "200 OK", "")).await;
        let ok = next_non_trying(&uac, "the 200 at the real source").await;
        assert_eq!(ok.start_line(), "SIP/2.0 200 OK", "{mode}");
        victim
            .expect_silence(200, &format!("{mode}: nothing for the named address"))
            .await;
    }
    // The example of the issue: an address nobody listens on.
    let via = "SIP/2.0/UDP 10.9.9.9:5060;received=127.0.0.99;rport=9;branch=z9hG4bK-rport-99";
    uac.send(
        proxy,
        &request("OPTIONS", &uri_of(&uas), via, "rport-99", ""),
    )
    .await;
    let (got, _) = uas.recv("OPTIONS").await;
    assert!(
        got.headers("Via")[1].contains(&format!(";rport={};received=127.0.0.1;", uac.port())),
        "{:?}",
        got.headers("Via")
    );
    assert!(!got.0.contains("127.0.0.99"), "{:?}", got.0);
    uas.send(proxy, &response_to(&got, "200 OK", "")).await;
    let (ok, _) = uac
        .recv("the 200 at the real source, not 127.0.0.99:9")
        .await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
}

// ---- 5. forged responses -------------------------------------------------------------

/// A caller's INVITE relayed to `uas`, answered 180 and passed up.
async fn ringing_call(proxy: SocketAddr, uac: &Peer, uas: &Peer, call_id: &str) -> Sip {
    uac.send(
        proxy,
        &invite(uac, &uri_of(uas), call_id, "X-Mode: relay\r\n"),
    )
    .await;
    let (inv, _) = uas.recv("INVITE").await;
    assert!(inv.top_branch().starts_with("z9hG4bKsfT"), "{inv:?}");
    uas.send(proxy, &response_to(&inv, "180 Ringing", "")).await;
    let ringing = next_non_trying(uac, "180").await;
    assert_eq!(ringing.start_line(), "SIP/2.0 180 Ringing");
    inv
}

#[tokio::test]
async fn a_603_for_a_real_branch_from_another_address_is_dropped() {
    let (_server, proxy) = start_proxy_with(loops(), fast_timers()).await;
    let (uac, uas, attacker) = (Peer::bind().await, Peer::bind().await, Peer::bind().await);
    let before = metric(&drops("wrong_source"));
    let inv = ringing_call(proxy, &uac, &uas, "forged-source").await;
    // The attacker copied the INVITE exactly (branch included).
    for _ in 0..3 {
        attacker
            .send(proxy, &response_to(&inv, "603 Decline", ""))
            .await;
    }
    let got = collect(&uac, 300, 50).await;
    assert!(
        got.is_empty(),
        "old: the forged 603 ended the call: {:?}",
        start_lines(&got)
    );
    attacker
        .expect_silence(100, "no ACK for a dropped 603")
        .await;
    uas.send(proxy, &response_to(&inv, "200 OK", "")).await;
    let ok = next_non_trying(&uac, "the real 200").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert_grew(&drops("wrong_source"), before, 3.0).await;
}

/// Core bug found by this suite: the source check covers only branches
/// sent to an address. A branch whose next hop is a name (here `localhost`,
/// resolved by the net layer, as any DNS target would be) takes a response
/// from any address: `stateful::on_response` compares the source only for
/// `NextHop::Addr`, not for `NextHop::Name` (not the resolved address).
#[tokio::test]
async fn a_603_for_a_branch_sent_to_a_name_from_another_address_is_dropped() {
    let (_server, proxy) = start_proxy_with(loops(), fast_timers()).await;
    let (uac, uas, attacker) = (Peer::bind().await, Peer::bind().await, Peer::bind().await);
    let ruri = format!("sip:bob@localhost:{}", uas.port());
    uac.send(
        proxy,
        &invite(&uac, &ruri, "forged-name", "X-Mode: relay\r\n"),
    )
    .await;
    let (inv, _) = uas.recv("INVITE sent to the resolved name").await;
    uas.send(proxy, &response_to(&inv, "180 Ringing", "")).await;
    let ringing = next_non_trying(&uac, "180").await;
    assert_eq!(ringing.start_line(), "SIP/2.0 180 Ringing");
    attacker
        .send(proxy, &response_to(&inv, "603 Decline", ""))
        .await;
    let got = collect(&uac, 300, 50).await;
    assert!(
        got.is_empty(),
        "a 603 from another address than the branch went to ended the call: {:?}",
        start_lines(&got)
    );
    uas.send(proxy, &response_to(&inv, "200 OK", "")).await;
    let ok = next_non_trying(&uac, "the real 200").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
}

#[tokio::test]
async fn with_strict_response_source_off_a_response_from_another_address_is_taken() {
    let (_server, proxy) = start_proxy_with(&common::loops_lax_source::ROUTES, fast_timers()).await;
    let (uac, uas, other) = (Peer::bind().await, Peer::bind().await, Peer::bind().await);
    let inv = ringing_call(proxy, &uac, &uas, "lax-source").await;
    other
        .send(proxy, &response_to(&inv, "603 Decline", ""))
        .await;
    let got = next_non_trying(&uac, "the 603 from the other address").await;
    assert_eq!(got.start_line(), "SIP/2.0 603 Decline");
    // The hop-by-hop ACK goes where the branch went, not to the sender.
    let (ack, _) = uas.recv("ACK for the 603").await;
    assert!(ack.start_line().starts_with("ACK "));
    assert_eq!(ack.top_branch(), inv.top_branch());
    other.expect_silence(100, "no ACK to the sender").await;
}

#[tokio::test]
async fn guessed_stateful_branches_are_dropped_even_from_the_right_source() {
    let (_server, proxy) = start_proxy_with(loops(), fast_timers()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let forged_before = metric(&drops("forged_branch"));
    let victim_inv = ringing_call(proxy, &uac, &uas, "victim").await;
    // The attacker makes a call of its own through the proxy and sees its
    // branch: `z9hG4bKsfT<shard>.<slot>.<generation>.<n>.<instance>.<key+check>`.
    let (a_uac, a_uas) = (Peer::bind().await, Peer::bind().await);
    let own = ringing_call(proxy, &a_uac, &a_uas, "attacker")
        .await
        .top_branch();
    let parts: Vec<&str> = own.strip_prefix("z9hG4bKsfT").unwrap().split('.').collect();
    assert!(parts.len() >= 5, "{own}");
    let (instance, tail) = (parts[4], parts.get(5));
    // Without the check, `<shard>.<slot>.<generation>.<n>.<instance>` is
    // guessed with a few shards, slots and generations. Also the form with
    // the attacker's own key and check, and the victim's real branch with
    // its last digit changed.
    let mut guesses = Vec::new();
    for shard in 0..16u32 {
        for slot in 0..4u32 {
            for generation in 0..2u32 {
                let old_form = format!("z9hG4bKsfT{shard:x}.{slot:x}.{generation:x}.0.{instance}");
                if let Some(tail) = tail {
                    guesses.push(format!("{old_form}.{tail}"));
                }
                guesses.push(old_form);
            }
        }
    }
    guesses.retain(|g| *g != own);
    let real = victim_inv.top_branch();
    let old_form = real.split('.').take(5).collect::<Vec<_>>().join(".");
    assert!(
        guesses.contains(&old_form),
        "the guesses cover the victim's shard and slot: {real}"
    );
    let last = real.chars().last().unwrap();
    let changed = if last == '0' { '1' } else { '0' };
    guesses.push(format!("{}{changed}", &real[..real.len() - 1]));
    let real_vias = victim_inv.headers("Via");
    for guess in &guesses {
        let forged = response_to(&victim_inv, "603 Decline", "").replacen(
            &real_vias[0],
            &real_vias[0].replace(&real, guess),
            1,
        );
        assert!(forged.contains(guess.as_str()));
        // Sent from the UAS's own address (a spoofed source).
        uas.send(proxy, &forged).await;
    }
    let got = collect(&uac, 300, 50).await;
    assert!(
        got.is_empty(),
        "old: a guessed branch ended the victim's call: {:?}",
        start_lines(&got)
    );
    let attacker_got = collect(&a_uac, 100, 50).await;
    assert!(
        attacker_got.is_empty(),
        "the attacker's own call is not ended either: {:?}",
        start_lines(&attacker_got)
    );
    uas.send(proxy, &response_to(&victim_inv, "200 OK", ""))
        .await;
    let ok = next_non_trying(&uac, "the real 200").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    // The old-form guesses do not even parse as a stateful branch of ours
    // (no key+check): they may be dropped before the check is counted.
    assert_grew(&drops("forged_branch"), forged_before, 1.0).await;
}

#[tokio::test]
async fn a_stateless_response_whose_next_via_was_changed_is_not_reflected() {
    let (_server, proxy) = start_proxy(loops()).await;
    let (uac, uas, victim, attacker) = (
        Peer::bind().await,
        Peer::bind().await,
        Peer::bind().await,
        Peer::bind().await,
    );
    let forged_before = metric(&drops("forged_branch"));
    uac.send(proxy, &invite(&uac, &uri_of(&uas), "reflect", ""))
        .await;
    let (inv, _) = uas.recv("INVITE").await;
    let vias = inv.headers("Via");
    assert!(branch_of(&vias[0]).starts_with("z9hG4bKsf"), "{}", vias[0]);
    // A response with our real branch, its second Via naming the victim:
    // from the UAS and from a third party.
    let victim_via = format!(
        "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-to-victim",
        victim.port()
    );
    let forged =
        response_to(&inv, "200 OK", "X-Forged: yes\r\n").replacen(&vias[1], &victim_via, 1);
    assert!(forged.contains(&victim_via));
    uas.send(proxy, &forged).await;
    attacker.send(proxy, &forged).await;
    // A made-up stateless branch of ours, from the third party.
    let made_up = forged.replacen(
        &branch_of(&vias[0]),
        &format!("z9hG4bKsf{}", "0123456789abcdef".repeat(3)),
        1,
    );
    attacker.send(proxy, &made_up).await;
    victim
        .expect_silence(
            300,
            "old: the proxy reflected the forged response to the victim",
        )
        .await;
    assert!(collect(&uac, 50, 10).await.is_empty());
    // The genuine response, second Via untouched, reaches the caller.
    uas.send(proxy, &response_to(&inv, "200 OK", "")).await;
    let (ok, _) = uac.recv("the genuine 200").await;
    assert_eq!(ok.start_line(), "SIP/2.0 200 OK");
    assert!(ok.header("X-Forged").is_none());
    assert_grew(&drops("forged_branch"), forged_before, 3.0).await;
}

// ---- 11. a request too large for UDP ---------------------------------------------------

/// An INVITE of exactly `size` bytes (a text body fills it up).
fn sized_invite(uac: &Peer, uas: &Peer, call_id: &str, extra: &str, size: usize) -> String {
    let head = |body_len: usize| {
        format!(
            "INVITE {} SIP/2.0\r\n\
             Via: {}\r\n\
             From: <sip:alice@example.com>;tag=a1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Max-Forwards: 70\r\n\
             {extra}\
             Content-Type: text/plain\r\n\
             Content-Length: {body_len}\r\n\r\n",
            uri_of(uas),
            via_of(uac, call_id),
        )
    };
    // Both `size` and the body length have five digits.
    let body_len = size - head(size).len();
    assert!((10_000..100_000).contains(&body_len));
    let msg = head(body_len) + &"x".repeat(body_len);
    assert_eq!(msg.len(), size);
    msg
}

#[tokio::test]
async fn a_request_that_our_headers_would_push_past_a_udp_datagram_gets_513() {
    let (_server, proxy) = start_proxy_with(loops(), fast_timers()).await;
    let (uac, uas) = (Peer::bind().await, Peer::bind().await);
    let before = metric(&drops("too_large"));
    // A control: large, but room left for our Via; it goes through (this
    // also shows such datagrams pass on this loopback).
    let fits = sized_invite(&uac, &uas, "big-fits", "", 65_300);
    uac.send(proxy, &fits).await;
    let (got, _) = uas.recv("a 65,300-byte INVITE").await;
    assert!(
        got.0.len() > 65_300 && got.0.len() <= 65_507,
        "{}",
        got.0.len()
    );

    // What the proxy adds to this INVITE (our Via; a stateless branch has a
    // fixed length): the largest one it may send is exactly 65,507 bytes.
    let overhead = got.0.len() - fits.len();
    let at_limit = sized_invite(&uac, &uas, "big-fits", "", 65_507 - overhead);
    uac.send(proxy, &at_limit).await;
    let (got, _) = uas
        .recv("an INVITE forwarded at exactly 65,507 bytes")
        .await;
    assert_eq!(got.0.len(), 65_507);
    let one_more = sized_invite(&uac, &uas, "big-fits", "", 65_508 - overhead);
    uac.send(proxy, &one_more).await;
    let (reply, _) = uac.recv("513 one byte over").await;
    assert_eq!(reply.start_line(), "SIP/2.0 513 Message Too Large");
    uas.expect_silence(100, "one byte over: not sent").await;

    for (mode, extra) in [("forward", ""), ("relay", "X-Mode: relay\r\n")] {
        // Received: 65,450 bytes (a valid UDP datagram); with our Via on
        // top it would be more than 65,507. Old: dropped without a word.
        let call_id = format!("big-{mode}");
        let msg = sized_invite(&uac, &uas, &call_id, extra, 65_450);
        uac.send(proxy, &msg).await;
        let reply = next_non_trying(&uac, "513").await;
        assert_eq!(
            reply.start_line(),
            "SIP/2.0 513 Message Too Large",
            "{mode}"
        );
        assert_eq!(reply.header("Call-ID").unwrap(), call_id);
        if mode == "relay" {
            let ruri = uri_of(&uas);
            uac.send(proxy, &ack_for(&uac, &ruri, &call_id, &reply))
                .await;
        }
        uas.expect_silence(200, &format!("{mode}: nothing sent on"))
            .await;
    }
    assert_grew(&drops("too_large"), before, 3.0).await;
}

/// A peer on the proxy's own address that sends a request back verbatim,
/// adding no Via (a broken element, or a forgery): the request's top Via
/// is ours and, without `rport`, an answer would go to the sent-by port,
/// our own socket. Old: the proxy answered itself (its 482 arrived as a
/// response, and a stateless proxy passed it on). Now the bounced request
/// is dropped with one log line (`drops{reason="self_loop"}`), in both
/// modes, and nothing is sent for it.
#[tokio::test]
async fn a_request_bounced_back_without_a_via_is_dropped_not_answered_to_ourselves() {
    let (_server, proxy) = start_proxy(loops()).await;
    let (uac, mirror) = (Peer::bind().await, Peer::bind().await);
    for mode in ["", "X-Mode: relay\r\n"] {
        let self_before = metric(&drops("self_loop"));
        let call_id = format!("bounce-{}", mode.len());
        let extra = format!("{mode}X-Du: sip:127.0.0.1:{}\r\n", mirror.port());
        uac.send(
            proxy,
            &invite(&uac, "sip:bob@192.0.2.1:5060", &call_id, &extra),
        )
        .await;
        let (at_mirror, _) = mirror.recv("the forwarded INVITE").await;
        assert!(
            at_mirror
                .header("Via")
                .is_some_and(|v| v.contains(&format!("127.0.0.1:{}", proxy.port()))),
            "{}",
            at_mirror.0
        );
        mirror.send(proxy, &at_mirror.0).await;
        assert_grew(&drops("self_loop"), self_before, 1.0).await;
        let at_uac: Vec<Sip> = collect(&uac, 300, 10)
            .await
            .into_iter()
            .filter(|m| !m.start_line().starts_with("SIP/2.0 100"))
            .collect();
        assert!(
            at_uac.is_empty(),
            "{mode:?}: nothing answers the bounce: {:?}",
            start_lines(&at_uac)
        );
        let more = collect(&mirror, 100, 10).await;
        assert!(more.is_empty(), "{mode:?}: {:?}", start_lines(&more));
    }
}
