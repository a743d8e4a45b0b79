//! Interoperability with sipp (Debian/Ubuntu: `apt-get install -y sip-tester`):
//! sipp callers and callees (scenarios in tests/sipp/) around an in-process
//! proxy on an ephemeral port.
//!
//! Each test starts the proxy, starts the sipp UAS(es) on free ports, runs a
//! sipp UAC for `CALLS` calls through the proxy, and asserts that both sides
//! exit 0 (sipp: every call succeeded), that each side counted exactly
//! `CALLS` calls, all successful, none failed. The scenarios fail a call on
//! any missing check (headers the routes must add, branches, reordering
//! limits), see the comment at the top of each XML file. Each sipp process
//! is time-limited and killed past that, so a hang fails the test in < 30 s.
//!
//! Without sipp the tests print SKIPPED and pass, except on CI (`CI=true`),
//! where they fail. `SIPP=/path/to/sipp` picks another binary.

mod common;

#[path = "sipp/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{Outcome, Over, Sipp, sipp_or_skip, work_dir};

/// Calls per test and their rate (calls per second): small and quick.
const CALLS: u64 = 20;
const RATE: u32 = 20;

/// How long the UAC may run (its own `-timeout` is 20 s), and how long a UAS
/// may take to finish its last call once the UAC is done.
const UAC_LIMIT: Duration = Duration::from_secs(22);
const UAS_LIMIT: Duration = Duration::from_secs(5);

fn reports(outcomes: &[&Outcome]) -> String {
    outcomes
        .iter()
        .map(|o| o.report())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The seed example (tests/routes/sipp_seed.yaml): INVITE, 180, 200, ACK,
/// BYE, 200 through a stateless proxy that marks requests and replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_calls_pass_with_the_seed_headers() {
    if !sipp_or_skip("seed_calls_pass_with_the_seed_headers") {
        return;
    }
    let (_server, proxy) = common::start_proxy(&common::sipp_seed::ROUTES).await;
    let dir = work_dir("seed");

    let uas = Sipp::uas(&dir, "uas", "seed_uas.xml", CALLS).await;
    let uas_port = uas.port.to_string();
    let uac = Sipp::uac(
        &dir,
        "uac",
        "seed_uac.xml",
        proxy,
        CALLS,
        RATE,
        &[("uas_port", uas_port)],
    );

    let uac = uac.finish(UAC_LIMIT).await;
    let uas = uas.finish(UAS_LIMIT).await;
    let all = reports(&[&uac, &uas]);
    uac.assert_clean(CALLS, "OutgoingCall", &all);
    uas.assert_clean(CALLS, "IncomingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rerouting on 404, statefully (tests/routes/sipp_stateful.yaml): the first
/// UAS answers 404 and gets the proxy's hop-by-hop ACK; the failure route
/// relays to the second UAS (named by the caller's X-Second header), which
/// answers 200; the caller never sees the 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn reroute_on_404() {
    if !sipp_or_skip("reroute_on_404") {
        return;
    }
    let (_server, proxy) = common::start_proxy(&common::sipp_stateful::ROUTES).await;
    let dir = work_dir("reroute");

    let first = Sipp::uas(&dir, "uas_404", "uas_404.xml", CALLS).await;
    let second = Sipp::uas(&dir, "uas_ok", "uas_ok.xml", CALLS).await;
    let keys = [
        ("uas_port", first.port.to_string()),
        ("second_port", second.port.to_string()),
    ];
    let uac = Sipp::uac(&dir, "uac", "reroute_uac.xml", proxy, CALLS, RATE, &keys);

    let uac = uac.finish(UAC_LIMIT).await;
    let first = first.finish(UAS_LIMIT).await;
    let second = second.finish(UAS_LIMIT).await;
    let all = reports(&[&uac, &first, &second]);
    uac.assert_clean(CALLS, "OutgoingCall", &all);
    first.assert_clean(CALLS, "IncomingCall", &all);
    second.assert_clean(CALLS, "IncomingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}

/// CANCEL through the stateful proxy: INVITE, 180, CANCEL, 200 (CANCEL),
/// 487, ACK; the UAS checks the proxy's CANCEL and ACK carry the branch of
/// the proxy's INVITE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn cancel() {
    if !sipp_or_skip("cancel") {
        return;
    }
    let (_server, proxy) = common::start_proxy(&common::sipp_stateful::ROUTES).await;
    let dir = work_dir("cancel");

    let uas = Sipp::uas(&dir, "uas", "uas_ring_then_487.xml", CALLS).await;
    let uas_port = uas.port.to_string();
    let uac = Sipp::uac(
        &dir,
        "uac",
        "cancel_uac.xml",
        proxy,
        CALLS,
        RATE,
        &[("uas_port", uas_port)],
    );

    let uac = uac.finish(UAC_LIMIT).await;
    let uas = uas.finish(UAS_LIMIT).await;
    let all = reports(&[&uac, &uas]);
    uac.assert_clean(CALLS, "OutgoingCall", &all);
    uas.assert_clean(CALLS, "IncomingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Destination sets under sipp: 20 calls through `relay: pair` (round
/// robin over two sipp UAS on 127.0.71.1 and 127.0.71.2, port 5060); each
/// UAS must complete exactly half of them, with the seed headers checked
/// by the scenarios, ACK and BYE following the record-routed dialog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_set_round_robin() {
    if !sipp_or_skip("destination_set_round_robin") {
        return;
    }
    let (_server, proxy) = common::start_proxy(&common::sipp_dest::ROUTES).await;
    let dir = work_dir("dest");
    let half = CALLS / 2;
    let first = Sipp::uas_at(&dir, "uas_a", "seed_uas.xml", half, "127.0.71.1", 5060).await;
    let second = Sipp::uas_at(&dir, "uas_b", "seed_uas.xml", half, "127.0.71.2", 5060).await;
    let keys = [("uas_port", "5060".to_string())];
    let uac = Sipp::uac(&dir, "uac", "seed_uac.xml", proxy, CALLS, RATE, &keys);

    let uac = uac.finish(UAC_LIMIT).await;
    let first = first.finish(UAS_LIMIT).await;
    let second = second.finish(UAS_LIMIT).await;
    let all = reports(&[&uac, &first, &second]);
    uac.assert_clean(CALLS, "OutgoingCall", &all);
    first.assert_clean(half, "IncomingCall", &all);
    second.assert_clean(half, "IncomingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A proxy running `routes` with one TCP listener on 127.0.0.1:0.
async fn start_tcp_proxy(
    routes: &'static dyn sipforge_runtime::api::Routes,
) -> (sipforge_runtime::net::Server, std::net::SocketAddr) {
    let mut options = common::options();
    options.listen =
        vec![sipforge_runtime::transport::ListenAddr::parse("tcp:127.0.0.1:0").unwrap()];
    let server = sipforge_runtime::net::start(routes, options)
        .await
        .expect("proxy starts");
    let addr = server.local_addrs()[0];
    (server, addr)
}

/// The seed calls over TCP (`-t t1`: one connection per sipp): the UAC's
/// connection to the proxy's TCP listener, the proxy's to the UAS; the
/// ACK and BYE follow the Record-Route (`;transport=tcp`) through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_calls_over_tcp() {
    if !sipp_or_skip("seed_calls_over_tcp") {
        return;
    }
    let (_server, proxy) = start_tcp_proxy(&common::sipp_seed::ROUTES).await;
    let dir = work_dir("seed-tcp");

    let uas = Sipp::uas_over(&dir, "uas", "seed_uas.xml", CALLS, Over::Tcp).await;
    let uas_port = uas.port.to_string();
    let uac = Sipp::uac_over(
        &dir,
        "uac",
        "seed_uac.xml",
        proxy,
        CALLS,
        RATE,
        &[("uas_port", uas_port)],
        Over::Tcp,
    );

    let uac = uac.finish(UAC_LIMIT).await;
    let uas = uas.finish(UAS_LIMIT).await;
    let all = reports(&[&uac, &uas]);
    uac.assert_clean(CALLS, "OutgoingCall", &all);
    uas.assert_clean(CALLS, "IncomingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stateful over TCP: rerouting on 404 (the proxy's ACK to the first UAS
/// and the relay to the second one over connections of their own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reroute_on_404_over_tcp() {
    if !sipp_or_skip("reroute_on_404_over_tcp") {
        return;
    }
    let (_server, proxy) = start_tcp_proxy(&common::sipp_stateful::ROUTES).await;
    let dir = work_dir("reroute-tcp");

    let first = Sipp::uas_over(&dir, "uas_404", "uas_404.xml", CALLS, Over::Tcp).await;
    let second = Sipp::uas_over(&dir, "uas_ok", "uas_ok.xml", CALLS, Over::Tcp).await;
    let keys = [
        ("uas_port", first.port.to_string()),
        ("second_port", second.port.to_string()),
    ];
    let uac = Sipp::uac_over(
        &dir,
        "uac",
        "reroute_uac.xml",
        proxy,
        CALLS,
        RATE,
        &keys,
        Over::Tcp,
    );

    let uac = uac.finish(UAC_LIMIT).await;
    let first = first.finish(UAS_LIMIT).await;
    let second = second.finish(UAS_LIMIT).await;
    let all = reports(&[&uac, &first, &second]);
    uac.assert_clean(CALLS, "OutgoingCall", &all);
    first.assert_clean(CALLS, "IncomingCall", &all);
    second.assert_clean(CALLS, "IncomingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}
