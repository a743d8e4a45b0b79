//! The registrar with real phones: sipp (scenarios tests/sipp/reg_*.xml)
//! registering through an in-process proxy that runs
//! tests/routes/sipp_registrar*.yaml, and a sipp caller reaching them by
//! their address-of-record, sip:USER@example.com.
//!
//! tests/registrar.rs covers the same rules with hand-made UDP peers
//! (bindings listed in the 200, NAT, Path, q-value groups, CSeq order);
//! here the messages come from and go to a real SIP stack.
//!
//! How a phone registers and then takes a call: the proxy sends a call to
//! the address the REGISTER came from, so the phone's REGISTER must leave
//! from the socket that takes the call. A reg_uas_*.xml phone is a sipp
//! *client* (it sends the REGISTER first) that then waits for the INVITE;
//! sipp gives an incoming request to the call of its Call-ID, so the phone
//! and the caller run with the same `-cid_str` (one call each: both are
//! call 1) and the forked INVITE, which keeps the caller's Call-ID, lands
//! in the phone's call. The registrar keys bindings by Contact, so two
//! phones of one AoR may register with that Call-ID too. A phone writes
//! `<scenario>.registered` into its working directory once its REGISTER
//! got its 200; the caller starts when every phone's file is there.
//!
//! Without sipp the tests print SKIPPED and pass, except on CI (`CI=true`),
//! where they fail. `SIPP=/path/to/sipp` picks another binary.

mod common;

#[path = "sipp/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use harness::{Outcome, Sipp, sipp_or_skip, wait_registered, work_dir};
use sipforge_runtime::api::Routes;

const UAC_LIMIT: Duration = Duration::from_secs(22);

fn reports(outcomes: &[&Outcome]) -> String {
    outcomes
        .iter()
        .map(|o| o.report())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `-cid_str` shared by the phones and the caller of one test.
fn call_ids(test: &str) -> String {
    format!("sfreg-{test}-{}-%u", std::process::id())
}

/// A phone (`scenario`, one of reg_uas_*.xml) registering `user` from its
/// own port, then answering one call; `delay_ms` is its `<pause/>`.
fn phone(
    dir: &Path,
    role: &str,
    scenario: &str,
    proxy: SocketAddr,
    user: &str,
    cid: &str,
    delay_ms: u64,
) -> Sipp {
    let delay = delay_ms.to_string();
    Sipp::uac_with(
        dir,
        role,
        scenario,
        proxy,
        1,
        1,
        &[],
        &["-s", user, "-cid_str", cid, "-d", &delay, "-trace_msg"],
    )
}

/// A caller (`scenario`, one of reg_call_*.xml) calling `user` once.
fn caller(
    dir: &Path,
    role: &str,
    scenario: &str,
    proxy: SocketAddr,
    user: &str,
    cid: &str,
) -> Sipp {
    Sipp::uac_with(
        dir,
        role,
        scenario,
        proxy,
        1,
        1,
        &[],
        &["-s", user, "-cid_str", cid, "-trace_msg"],
    )
}

/// One REGISTER run (`scenario`, one of reg_register*.xml) of `user` with
/// Contact `sip:CONTACT` and Expires `expires`; asserts it went as the
/// scenario expects.
async fn register(
    dir: &Path,
    role: &str,
    scenario: &str,
    proxy: SocketAddr,
    user: &str,
    contact: &str,
    expires: u32,
) {
    let reg = Sipp::uac_with(
        dir,
        role,
        scenario,
        proxy,
        1,
        1,
        &[
            ("contact", contact.to_string()),
            ("expires", expires.to_string()),
        ],
        &["-s", user, "-trace_msg"],
    );
    let reg = reg.finish(UAC_LIMIT).await;
    reg.assert_clean(1, "OutgoingCall", &reports(&[&reg]));
}

/// A call to `user` answered 404 by the proxy (no binding).
async fn call_gets_404(dir: &Path, role: &str, proxy: SocketAddr, user: &str) {
    let uac = caller(dir, role, "reg_call_404.xml", proxy, user, "sf404-%u-%p");
    let uac = uac.finish(UAC_LIMIT).await;
    uac.assert_clean(1, "OutgoingCall", &reports(&[&uac]));
}

async fn proxy(routes: &'static dyn Routes) -> (sipforge_runtime::net::Server, SocketAddr) {
    common::start_proxy(routes).await
}

/// A phone registers itself and takes a call to its AoR (INVITE, 180,
/// 200, record-routed ACK and BYE, both sides clean); removed with
/// `Expires: 0`, a call to the AoR gets the proxy's 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_phone_takes_the_call_then_unregistered_404() {
    let test = "a_registered_phone_takes_the_call_then_unregistered_404";
    if !sipp_or_skip(test) {
        return;
    }
    let (_server, proxy) = proxy(&common::sipp_registrar::ROUTES).await;
    let dir = work_dir("reg_call");
    let cid = call_ids("call");

    // 200 ms between the 180 and the 200: two workers could swap them.
    let uas = phone(&dir, "phone", "reg_uas_ok.xml", proxy, "bob", &cid, 200);
    wait_registered(&dir, "reg_uas_ok.xml").await;
    let uas_port = uas.port;
    let uac = caller(&dir, "caller", "reg_call_uac.xml", proxy, "bob", &cid);
    let uac = uac.finish(UAC_LIMIT).await;
    let uas = uas.finish(Duration::from_secs(5)).await;
    let all = reports(&[&uac, &uas]);
    uac.assert_clean(1, "OutgoingCall", &all);
    uas.assert_clean(1, "OutgoingCall", &all);

    register(
        &dir,
        "unregister",
        "reg_register.xml",
        proxy,
        "bob",
        &format!("bob@127.0.0.1:{uas_port}"),
        0,
    )
    .await;
    call_gets_404(&dir, "caller_after", proxy, "bob").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Expires below min_expires (60): 423 with `Min-Expires: 60`, and nothing
/// is saved (a call gets 404); a user nobody registered gets 404 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_brief_gets_423_and_saves_nothing() {
    if !sipp_or_skip("too_brief_gets_423_and_saves_nothing") {
        return;
    }
    let (_server, proxy) = proxy(&common::sipp_registrar::ROUTES).await;
    let dir = work_dir("reg_423");
    register(
        &dir,
        "brief",
        "reg_register_423.xml",
        proxy,
        "dave",
        "dave@127.0.0.1:9",
        30,
    )
    .await;
    call_gets_404(&dir, "caller", proxy, "dave").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `max_contacts: 1`: a second contact for the AoR gets 403, a refresh of
/// the first one still gets 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_contacts_gets_403() {
    if !sipp_or_skip("over_max_contacts_gets_403") {
        return;
    }
    let (_server, proxy) = proxy(&common::sipp_registrar_one::ROUTES).await;
    let dir = work_dir("reg_403");
    let first = "erin@127.0.0.1:9";
    register(&dir, "first", "reg_register.xml", proxy, "erin", first, 120).await;
    register(
        &dir,
        "second",
        "reg_register_403.xml",
        proxy,
        "erin",
        "erin@127.0.0.1:11",
        120,
    )
    .await;
    register(
        &dir,
        "refresh",
        "reg_register.xml",
        proxy,
        "erin",
        first,
        120,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `min_expires: 1`: a binding of 2 s is gone 3 s later, and a call to its
/// AoR gets 404 (had the binding stayed, the call would go to the
/// REGISTER's source, a sipp that has exited, and never get a 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_binding_gets_404() {
    if !sipp_or_skip("an_expired_binding_gets_404") {
        return;
    }
    let (_server, proxy) = proxy(&common::sipp_registrar_short::ROUTES).await;
    let dir = work_dir("reg_expiry");
    register(
        &dir,
        "brief",
        "reg_register.xml",
        proxy,
        "fred",
        "fred@127.0.0.1:9",
        2,
    )
    .await;
    // Setup, not a timing assertion: the binding lasts 2 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    call_gets_404(&dir, "caller", proxy, "fred").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run a fork: phones `a` and `b` (scenario, `<pause/>` ms) register as
/// `user`, then the caller runs `call_scenario`; every sipp must end
/// clean (each scenario checks its own side: which final answer the
/// caller gets, which phone gets a CANCEL).
async fn fork(test: &str, a: (&str, u64), b: (&str, u64), call_scenario: &str) {
    let (_server, proxy) = proxy(&common::sipp_registrar::ROUTES).await;
    let dir = work_dir(test);
    let cid = call_ids(test);
    let pa = phone(&dir, "phone_a", a.0, proxy, "carl", &cid, a.1);
    let pb = phone(&dir, "phone_b", b.0, proxy, "carl", &cid, b.1);
    wait_registered(&dir, a.0).await;
    wait_registered(&dir, b.0).await;
    let uac = caller(&dir, "caller", call_scenario, proxy, "carl", &cid);
    let uac = uac.finish(UAC_LIMIT).await;
    let pa = pa.finish(Duration::from_secs(8)).await;
    let pb = pb.finish(Duration::from_secs(8)).await;
    let all = reports(&[&uac, &pa, &pb]);
    uac.assert_clean(1, "OutgoingCall", &all);
    pa.assert_clean(1, "OutgoingCall", &all);
    pb.assert_clean(1, "OutgoingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two phones of one AoR: one answers 486 at once, the other rings and
/// answers 200 a second later; the caller gets the 200 and completes the
/// call with that phone; the 486 phone gets the proxy's ACK and no CANCEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_486_and_200_the_caller_gets_the_200() {
    if !sipp_or_skip("fork_486_and_200_the_caller_gets_the_200") {
        return;
    }
    fork(
        "reg_fork_486",
        ("reg_uas_486.xml", 0),
        ("reg_uas_ok.xml", 1000),
        "reg_call_uac.xml",
    )
    .await;
}

/// Both phones ring; one answers 200 after a second: the caller gets it
/// and completes the call, the other phone gets a CANCEL (200 to it, 487
/// to its INVITE, ACK from the proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_200_cancels_the_phone_still_ringing() {
    if !sipp_or_skip("fork_200_cancels_the_phone_still_ringing") {
        return;
    }
    fork(
        "reg_fork_cancel",
        ("reg_uas_ok.xml", 1000),
        ("reg_uas_ring_cancel.xml", 0),
        "reg_call_uac.xml",
    )
    .await;
}

/// One phone rings, the other declines (603) half a second later: the
/// ringing one gets a CANCEL and the caller gets the 603.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_603_cancels_the_rest_and_is_the_answer() {
    if !sipp_or_skip("fork_603_cancels_the_rest_and_is_the_answer") {
        return;
    }
    fork(
        "reg_fork_603",
        ("reg_uas_603.xml", 500),
        ("reg_uas_ring_cancel.xml", 0),
        "reg_call_603.xml",
    )
    .await;
}
