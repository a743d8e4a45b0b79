//! Destination sets over real UDP sockets: distribution of each algorithm,
//! Call-ID stickiness, failover to untried targets, OPTIONS health probes,
//! and every target down (503 into `failure`). Fixtures:
//! `tests/routes/dest_*.yaml`, with timers 10x shorter than RFC 3261's.
//!
//! Target addresses: a fixture is compiled at build time, so its target
//! URIs are fixed, while tests must not depend on a port being free. The
//! backends therefore listen on port 5060 of loopback addresses that
//! nothing else uses: all of 127.0.0.0/8 is loopback on Linux, and each
//! test owns its addresses (127.0.61.0/24 upwards, listed in each fixture),
//! so tests running in parallel never bind the same address. The proxy
//! itself still listens on 127.0.0.1 with an ephemeral port. (Another
//! process using one of these exact addresses, say the same suite run
//! twice at once, makes the binding test fail with a clear message.)

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Peer, Sip, fast_timers, response_to, start_proxy_with};
use tokio::net::UdpSocket;
use tokio::task::{JoinHandle, JoinSet};

/// What a backend received.
#[derive(Default)]
struct Seen {
    /// (Call-ID, our top Via branch) of every INVITE transaction, once
    /// (retransmissions are not counted again).
    invites: Vec<(String, String)>,
    /// The INVITEs themselves, in order.
    invite_msgs: Vec<Sip>,
    /// OPTIONS received (health probes) and where they came from.
    options: Vec<(Sip, SocketAddr)>,
    /// Call-IDs of the ACKs received.
    acks: Vec<String>,
}

/// A UAS on `IP:5060` that answers INVITEs with a fixed status (or not at
/// all) and health probes with 200 while `answer_probes` is set.
struct Backend {
    uri: String,
    answer_probes: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// `invite_status`: e.g. "200 OK"; None never answers INVITEs.
    async fn start(ip: &str, invite_status: Option<&'static str>) -> Backend {
        let addr: SocketAddr = format!("{ip}:5060").parse().unwrap();
        let socket = UdpSocket::bind(addr).await.unwrap_or_else(|e| {
            panic!(
                "cannot bind the test backend {addr}: {e} (these loopback addresses are \
                 reserved for tests/destinations.rs; is the suite running twice?)"
            )
        });
        let uri = format!("sip:{addr}");
        let answer_probes = Arc::new(AtomicBool::new(true));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(serve(
            socket,
            uri.clone(),
            invite_status,
            Arc::clone(&answer_probes),
            Arc::clone(&seen),
        ));
        Backend {
            uri,
            answer_probes,
            seen,
            task,
        }
    }

    fn answer_probes(&self, on: bool) {
        self.answer_probes.store(on, Ordering::SeqCst);
    }

    /// INVITE transactions received.
    fn invites(&self) -> usize {
        self.seen.lock().unwrap().invites.len()
    }

    fn invite_call_ids(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.invites.iter().map(|(c, _)| c.clone()).collect()
    }

    /// The INVITEs received, in order (retransmissions once).
    fn invite_msgs(&self) -> Vec<Sip> {
        self.seen.lock().unwrap().invite_msgs.clone()
    }

    fn probes(&self) -> usize {
        self.seen.lock().unwrap().options.len()
    }
}

async fn serve(
    socket: UdpSocket,
    uri: String,
    invite_status: Option<&'static str>,
    answer_probes: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let msg = Sip(String::from_utf8_lossy(&buf[..n]).into_owned());
        let method = msg.start_line().split(' ').next().unwrap_or("").to_string();
        let reply = match method.as_str() {
            "OPTIONS" => {
                seen.lock().unwrap().options.push((msg.clone(), from));
                answer_probes
                    .load(Ordering::SeqCst)
                    .then(|| response_to(&msg, "200 OK", ""))
            }
            "INVITE" => {
                let key = (msg.header("Call-ID").unwrap_or_default(), msg.top_branch());
                {
                    let mut seen = seen.lock().unwrap();
                    if !seen.invites.contains(&key) {
                        seen.invites.push(key);
                        seen.invite_msgs.push(msg.clone());
                    }
                }
                invite_status.map(|s| response_to(&msg, s, &format!("X-Backend: {uri}\r\n")))
            }
            "ACK" => {
                let call_id = msg.header("Call-ID").unwrap_or_default();
                seen.lock().unwrap().acks.push(call_id);
                None
            }
            _ if msg.start_line().starts_with("SIP/2.0") => None,
            _ => Some(response_to(&msg, "200 OK", "")),
        };
        if let Some(reply) = reply {
            let _ = socket.send_to(reply.as_bytes(), from).await;
        }
    }
}

fn invite(uac: &Peer, call_id: &str, cseq: u32, set: &str) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call_id}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a-{call_id}\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} INVITE\r\n\
         X-Set: {set}\r\n\
         Content-Length: 0\r\n\r\n",
        port = uac.port()
    )
}

/// One INVITE transaction through the proxy: the final response. The
/// INVITE is retransmitted every 500 ms (the proxy absorbs copies), so a
/// lost datagram does not fail the test.
async fn call(uac: &Peer, proxy: SocketAddr, call_id: &str, cseq: u32, set: &str) -> Sip {
    let text = invite(uac, call_id, cseq, set);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut buf = vec![0u8; 65_535];
    loop {
        uac.send(proxy, &text).await;
        let resend = Instant::now() + Duration::from_millis(500);
        while Instant::now() < resend {
            assert!(Instant::now() < deadline, "{call_id}: no final response");
            let wait = resend.saturating_duration_since(Instant::now());
            let Ok(Ok((n, _))) = tokio::time::timeout(wait, uac.socket.recv_from(&mut buf)).await
            else {
                break;
            };
            let m = Sip(String::from_utf8_lossy(&buf[..n]).into_owned());
            let status: u16 = m
                .start_line()
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let ours = m.header("Call-ID").as_deref() == Some(call_id)
                && m.header("CSeq")
                    .is_some_and(|c| c.starts_with(&format!("{cseq} ")));
            if ours && status >= 200 {
                return m;
            }
        }
    }
}

/// `calls` calls with distinct Call-IDs `{prefix}-{k}`, eight at a time;
/// the final response of each, by Call-ID.
async fn many_calls(
    proxy: SocketAddr,
    prefix: &str,
    calls: usize,
    set: &'static str,
) -> HashMap<String, Sip> {
    const WORKERS: usize = 8;
    let mut tasks = JoinSet::new();
    for w in 0..WORKERS {
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            let uac = Peer::bind().await;
            let mut got = Vec::new();
            for k in (w..calls).step_by(WORKERS) {
                let call_id = format!("{prefix}-{k}");
                let m = call(&uac, proxy, &call_id, 1, set).await;
                got.push((call_id, m));
            }
            got
        });
    }
    let mut all = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.unwrap());
    }
    assert_eq!(all.len(), calls);
    all
}

fn status_of(m: &Sip) -> &str {
    m.start_line().split(' ').nth(1).unwrap_or("")
}

/// Poll `cond` every 10 ms for up to `limit`; how long it took.
async fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn is_up(server: &sipforge_runtime::net::Server, uri: &str) -> bool {
    server
        .destination_states()
        .iter()
        .find(|s| s.uri == uri)
        .is_some_and(|s| s.up)
}

#[tokio::test]
async fn round_robin_is_exactly_even() {
    let b: Vec<Backend> = vec![
        Backend::start("127.0.61.1", Some("200 OK")).await,
        Backend::start("127.0.61.2", Some("200 OK")).await,
        Backend::start("127.0.61.3", Some("200 OK")).await,
    ];
    let (server, proxy) = start_proxy_with(&common::dest_balance::ROUTES, fast_timers()).await;
    let finals = many_calls(proxy, "rr", 1000, "rr").await;
    assert!(finals.values().all(|m| status_of(m) == "200"));
    let counts: Vec<usize> = b.iter().map(Backend::invites).collect();
    assert_eq!(counts.iter().sum::<usize>(), 1000, "{counts:?}");
    // 1000 = 334 + 333 + 333: a rotation is off by at most one.
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 1, "round robin uneven: {counts:?}");
    // The reply route reads the chosen target and set.
    let m = finals.values().next().unwrap();
    assert_eq!(m.header("X-Target"), m.header("X-Backend"));
    assert_eq!(m.header("X-Set").as_deref(), Some("rr"));
    server.shutdown().await;
}

#[tokio::test]
async fn weighted_follows_the_weights() {
    let b: Vec<Backend> = vec![
        Backend::start("127.0.63.1", Some("200 OK")).await,
        Backend::start("127.0.63.2", Some("200 OK")).await,
    ];
    let (server, proxy) = start_proxy_with(&common::dest_balance::ROUTES, fast_timers()).await;
    many_calls(proxy, "w", 1000, "weighted").await;
    let counts: Vec<usize> = b.iter().map(Backend::invites).collect();
    assert_eq!(counts.iter().sum::<usize>(), 1000, "{counts:?}");
    // Weights 1:2, smooth weighted round robin: exact to within one call
    // (333 or 334). Far inside the ±5% a 1:2 split may vary by; an even
    // split (500) or a weight-blind algorithm misses it by a mile.
    assert!(
        (332..=335).contains(&counts[0]),
        "weighted 1:2 gave {counts:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn hash_call_id_spreads_and_sticks_to_the_call() {
    let b: Vec<Backend> = vec![
        Backend::start("127.0.62.1", Some("200 OK")).await,
        Backend::start("127.0.62.2", Some("200 OK")).await,
        Backend::start("127.0.62.3", Some("200 OK")).await,
    ];
    let (server, proxy) = start_proxy_with(&common::dest_balance::ROUTES, fast_timers()).await;
    let finals = many_calls(proxy, "h", 1000, "hash").await;
    let counts: Vec<usize> = b.iter().map(Backend::invites).collect();
    assert_eq!(counts.iter().sum::<usize>(), 1000, "{counts:?}");
    // 333 expected per target, standard deviation about 15: ±25% is more
    // than 5 sigma, while a hash that sends everything to one or two
    // targets misses it.
    for (i, n) in counts.iter().enumerate() {
        assert!((250..=417).contains(n), "target {i}: {counts:?}");
    }
    // Stickiness: later transactions of the same calls (a re-INVITE each,
    // new branch and CSeq) go to the target of the first one.
    let first: HashMap<String, String> = finals
        .iter()
        .map(|(c, m)| (c.clone(), m.header("X-Backend").unwrap()))
        .collect();
    let uac = Peer::bind().await;
    for k in 0..100 {
        let call_id = format!("h-{k}");
        for cseq in 2..4 {
            let m = call(&uac, proxy, &call_id, cseq, "hash").await;
            assert_eq!(
                m.header("X-Backend").as_ref(),
                first.get(&call_id),
                "{call_id} moved"
            );
        }
    }
    // And the backends saw each Call-ID at one of them only.
    let mut owners: HashMap<String, usize> = HashMap::new();
    for (i, backend) in b.iter().enumerate() {
        for c in backend.invite_call_ids() {
            assert_eq!(
                *owners.entry(c.clone()).or_insert(i),
                i,
                "{c} on two targets"
            );
        }
    }
    // The ACK of a 2xx makes no transaction; relayed statelessly to the
    // set, it still follows its Call-ID to the INVITE's target.
    for k in 0..20 {
        let call_id = format!("h-{k}");
        let ack = invite(&uac, &call_id, 1, "hash")
            .replace("INVITE sip:", "ACK sip:")
            .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
            .replace(&format!("-{call_id}-1\r\n"), &format!("-{call_id}-ack\r\n"));
        uac.send(proxy, &ack).await;
    }
    let acks = |b: &Backend| b.seen.lock().unwrap().acks.clone();
    wait_for(Duration::from_secs(2), "ACKs", || {
        b.iter().map(|x| acks(x).len()).sum::<usize>() == 20
    })
    .await;
    for (i, backend) in b.iter().enumerate() {
        for c in acks(backend) {
            assert_eq!(owners.get(&c), Some(&i), "the ACK of {c} went elsewhere");
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn priority_uses_the_first_target() {
    let b: Vec<Backend> = vec![
        Backend::start("127.0.64.1", Some("200 OK")).await,
        Backend::start("127.0.64.2", Some("200 OK")).await,
    ];
    let (server, proxy) = start_proxy_with(&common::dest_balance::ROUTES, fast_timers()).await;
    many_calls(proxy, "p", 100, "prio").await;
    assert_eq!((b[0].invites(), b[1].invites()), (100, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn failover_tries_each_untried_target_once() {
    // Two of three answer 503; every call must end at the third.
    let b: Vec<Backend> = vec![
        Backend::start("127.0.65.1", Some("503 Service Unavailable")).await,
        Backend::start("127.0.65.2", Some("503 Service Unavailable")).await,
        Backend::start("127.0.65.3", Some("200 OK")).await,
    ];
    let (server, proxy) = start_proxy_with(&common::dest_failover::ROUTES, fast_timers()).await;
    let finals = many_calls(proxy, "f", 30, "pstn").await;
    for (c, m) in &finals {
        assert_eq!(status_of(m), "200", "{c}: {}", m.start_line());
        assert_eq!(m.header("X-Backend").as_deref(), Some(b[2].uri.as_str()));
        // In the reply route $du reads the target that answered.
        assert_eq!(m.header("X-Target").as_deref(), Some(b[2].uri.as_str()));
    }
    // Round robin starts the calls in turn at each target; a failed call
    // goes on with the next untried one: A -> B -> C, B -> C, C.
    let counts: Vec<usize> = b.iter().map(Backend::invites).collect();
    assert_eq!(counts, [10, 20, 30]);
    // Never the same target twice in one transaction.
    for backend in &b {
        let ids = backend.invite_call_ids();
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{} tried twice", backend.uri);
    }
    // In `failure`, $du is the target that just failed, $ds the set; the
    // failover INVITE carries what the failure route appended.
    let failed: Vec<Option<String>> = b[2]
        .invite_msgs()
        .iter()
        .map(|m| m.header("X-Failed"))
        .collect();
    assert_eq!(failed.iter().filter(|f| f.is_none()).count(), 10);
    for f in failed.iter().flatten() {
        assert_eq!(f, &format!("{} in pstn", b[1].uri));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn when_every_target_failed_the_best_response_goes_up() {
    let b: Vec<Backend> = vec![
        Backend::start("127.0.65.11", Some("503 Service Unavailable")).await,
        Backend::start("127.0.65.12", Some("503 Service Unavailable")).await,
        Backend::start("127.0.65.13", Some("503 Service Unavailable")).await,
    ];
    let (server, proxy) = start_proxy_with(&common::dest_failover::ROUTES, fast_timers()).await;
    let uac = Peer::bind().await;
    let m = call(&uac, proxy, "exhaust-1", 1, "exhaust").await;
    // §16.7 step 6: a 503 goes upstream as 500.
    assert_eq!(status_of(&m), "500", "{}", m.0);
    let counts: Vec<usize> = b.iter().map(Backend::invites).collect();
    assert_eq!(counts, [1, 1, 1]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_timeout_fails_over_too() {
    // The first (priority) target never answers: Timer B (64*T1 = 3.2 s with
    // the fast timers) ends its branch with 408 and the call moves on.
    let silent = Backend::start("127.0.65.21", None).await;
    let good = Backend::start("127.0.65.22", Some("200 OK")).await;
    let (server, proxy) = start_proxy_with(&common::dest_failover::ROUTES, fast_timers()).await;
    let uac = Peer::bind().await;
    let m = call(&uac, proxy, "slow-1", 1, "slow").await;
    assert_eq!(status_of(&m), "200");
    assert_eq!((silent.invites(), good.invites()), (1, 1));
    assert_eq!(
        good.invite_msgs()[0].header("X-Failed"),
        Some(format!("{} in slow", silent.uri))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn probes_take_a_silent_target_out_and_bring_it_back() {
    const INTERVAL: Duration = Duration::from_millis(200);
    const FAILURES: u32 = 3; // the defaults of `probe:`
    const SUCCESSES: u32 = 2;
    let a = Backend::start("127.0.67.1", Some("200 OK")).await;
    let b = Backend::start("127.0.67.2", Some("200 OK")).await;
    let (server, proxy) = start_proxy_with(&common::dest_probe::ROUTES, fast_timers()).await;

    // Probes arrive at once and then every interval.
    wait_for(Duration::from_secs(2), "probes", || {
        a.probes() >= 3 && b.probes() >= 3
    })
    .await;
    {
        let seen = a.seen.lock().unwrap();
        let (probe, from) = &seen.options[0];
        assert_eq!(*from, proxy, "probes leave from the listening socket");
        assert_eq!(probe.start_line(), format!("OPTIONS {} SIP/2.0", a.uri));
        let via = probe.headers("Via");
        assert_eq!(via.len(), 1);
        assert!(via[0].starts_with(&format!("SIP/2.0/UDP {proxy};branch=z9hG4bKsfP")));
        assert!(probe.header("CSeq").unwrap().ends_with(" OPTIONS"));
    }
    assert!(is_up(&server, &a.uri) && is_up(&server, &b.uri));
    let uac = Peer::bind().await;
    let mut to_a = 0;
    for k in 0..10 {
        let m = call(&uac, proxy, &format!("pr-a-{k}"), 1, "probed").await;
        to_a += usize::from(m.header("X-Target").as_deref() == Some(a.uri.as_str()));
    }
    assert_eq!(to_a, 5, "round robin over two targets that are up");

    // A stops answering probes. The first probe sent after that is at
    // most one interval away; N unanswered probes later (each waits one
    // interval, the default timeout) A is down: between N and N+1
    // intervals after it fell silent. The upper bound has slack for a
    // loaded machine.
    a.answer_probes(false);
    let took = wait_for(Duration::from_secs(5), "A down", || !is_up(&server, &a.uri)).await;
    assert!(
        took >= INTERVAL * FAILURES - Duration::from_millis(50),
        "down after {took:?}: before {FAILURES} probes could fail"
    );
    assert!(
        took <= INTERVAL * (FAILURES + 1) + Duration::from_millis(700),
        "down only after {took:?}"
    );
    assert!(is_up(&server, &b.uri));
    let before = a.invites();
    for k in 0..10 {
        let m = call(&uac, proxy, &format!("pr-b-{k}"), 1, "probed").await;
        assert_eq!(m.header("X-Target").as_deref(), Some(b.uri.as_str()));
    }
    assert_eq!(a.invites(), before, "a down target is skipped");

    // A answers again: up after M answered probes, the first of which is
    // at most one interval away.
    a.answer_probes(true);
    let took = wait_for(Duration::from_secs(5), "A up", || is_up(&server, &a.uri)).await;
    assert!(
        took <= INTERVAL * SUCCESSES + Duration::from_millis(700),
        "up only after {took:?}"
    );
    let mut to_a = 0;
    for k in 0..10 {
        let m = call(&uac, proxy, &format!("pr-c-{k}"), 1, "probed").await;
        to_a += usize::from(m.header("X-Target").as_deref() == Some(a.uri.as_str()));
    }
    assert_eq!(to_a, 5, "A is back in the rotation");
    server.shutdown().await;
}

#[tokio::test]
async fn every_target_down_fails_into_the_failure_route_with_503() {
    // Probes every 100 ms, 50 ms timeout, down after 2, up after 1.
    let a = Backend::start("127.0.68.1", Some("200 OK")).await;
    let b = Backend::start("127.0.68.2", Some("200 OK")).await;
    a.answer_probes(false);
    b.answer_probes(false);
    let (server, proxy) = start_proxy_with(&common::dest_down::ROUTES, fast_timers()).await;
    wait_for(Duration::from_secs(3), "both down", || {
        server.destination_states().iter().all(|s| !s.up)
    })
    .await;
    let uac = Peer::bind().await;
    // The failure route ran with $rs 503 and answered itself.
    let m = call(&uac, proxy, "down-1", 1, "dead").await;
    assert_eq!(m.start_line(), "SIP/2.0 503 All Backends Down");
    assert_eq!(m.header("X-Failure-Route").as_deref(), Some("503 dead"));
    // A non-INVITE falls through the failure route: our 503 goes up.
    let message = format!(
        "MESSAGE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-down-2\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a2\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: down-2\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Length: 0\r\n\r\n",
        uac.port()
    );
    uac.send(proxy, &message).await;
    let (m, _) = uac.recv("503 for the MESSAGE").await;
    assert_eq!(m.start_line(), "SIP/2.0 503 Service Unavailable");
    assert_eq!((a.invites(), b.invites()), (0, 0), "nothing relayed");

    // B answers a probe: up again (successes: 1), and takes the calls.
    b.answer_probes(true);
    wait_for(Duration::from_secs(3), "B up", || is_up(&server, &b.uri)).await;
    let m = call(&uac, proxy, "down-3", 1, "dead").await;
    assert_eq!(status_of(&m), "200");
    assert_eq!(m.header("X-Backend").as_deref(), Some(b.uri.as_str()));
    server.shutdown().await;
}
