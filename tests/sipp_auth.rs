//! Digest authentication with a real client: sipp (scenarios in
//! tests/sipp/auth_*.xml) registering and calling through an in-process
//! proxy that runs tests/routes/sipp_auth*.yaml, to a sipp UAS behind it.
//!
//! What tests/auth.rs already covers with hand-made answers (stale nonces,
//! replayed nonce counts, forged nonces, realms, the 403 matrix) is not
//! repeated; here a client that computes its own answers must get through,
//! and must not with a wrong password or another user's credentials.
//!
//! Not here, and why:
//! - stale nonces: sipp answers each challenge at once with the nonce it
//!   just got, and computes every `[authentication]` from the last
//!   challenge received, so it cannot be made to answer with an expired
//!   nonce (a `<pause>` before the answer only delays a fresh one whose
//!   age the test cannot tell apart from timing); tests/auth.rs covers
//!   `stale=true` with a nonce kept past `nonce_ttl`;
//! - replayed nonce counts: sipp counts `nc` up by itself; tests/auth.rs.
//!
//! The proxy's authenticator is built from the fixture's own `auth:`
//! settings (algorithms, nonce lifetime), as the binary builds it; only the
//! credentials come from the test. SIGHUP reloading with the real binary
//! is tests/sighup_reload.rs (the same flows, the real command line in a
//! process of its own); here the credentials are swapped in-process
//! during calls, through the same `Authenticator::replace_credentials` the
//! SIGHUP handler calls.
//!
//! Without sipp the tests print SKIPPED and pass, except on CI (`CI=true`),
//! where they fail. `SIPP=/path/to/sipp` picks another binary.

mod common;

#[path = "sipp/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use harness::{Outcome, Sipp, free_udp_port, message_log, sipp_or_skip, work_dir};
use md5::{Digest, Md5};
use sipforge_runtime::api::Routes;
use sipforge_runtime::auth::{AuthConfig, Authenticator, Credentials, NonceKey};

const REALM: &str = "sipforge.test";
const ALICE_PASSWORD: &str = "alice-secret";
const BOB_PASSWORD: &str = "bob-secret";

/// Calls per run and their rate: small and quick.
const CALLS: u64 = 5;
const RATE: u32 = 10;
const UAC_LIMIT: Duration = Duration::from_secs(22);
const UAS_LIMIT: Duration = Duration::from_secs(5);

fn md5_ha1(user: &str, password: &str) -> String {
    Md5::digest(format!("{user}:{REALM}:{password}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha256_ha1(user: &str, password: &str) -> String {
    sha2::Sha256::digest(format!("{user}:{REALM}:{password}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A credentials file: alice (MD5 and SHA-256) with `alice_password`, bob
/// (MD5) with BOB_PASSWORD.
fn users(alice_password: &str) -> Credentials {
    let text = format!(
        "alice:{REALM}:{}\nalice:{REALM}:{}\nbob:{REALM}:{}\n",
        md5_ha1("alice", alice_password),
        sha256_ha1("alice", alice_password),
        md5_ha1("bob", BOB_PASSWORD),
    );
    Credentials::parse(&text, "users").expect("the test credentials parse")
}

/// An authenticator with the fixture's `auth:` settings.
fn authenticator(routes: &'static dyn Routes) -> Arc<Authenticator> {
    let settings = routes
        .settings()
        .auth
        .as_ref()
        .expect("the fixture has auth:");
    Arc::new(Authenticator::new(
        AuthConfig::from_settings(settings),
        NonceKey::random(),
        users(ALICE_PASSWORD),
    ))
}

async fn proxy(
    routes: &'static dyn Routes,
) -> (
    sipforge_runtime::net::Server,
    SocketAddr,
    Arc<Authenticator>,
) {
    let auth = authenticator(routes);
    let (server, addr) =
        common::start_proxy_auth(routes, Default::default(), Some(Arc::clone(&auth))).await;
    (server, addr, auth)
}

fn reports(outcomes: &[&Outcome]) -> String {
    outcomes
        .iter()
        .map(|o| o.report())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A sipp REGISTER run (auth_register.xml) as `user` with credentials
/// `auth_user`/`password`.
fn register(
    dir: &Path,
    role: &str,
    proxy: SocketAddr,
    user: &str,
    auth_user: &str,
    password: &str,
) -> Sipp {
    Sipp::uac_with(
        dir,
        role,
        "auth_register.xml",
        proxy,
        CALLS,
        RATE,
        &[("user", user.to_string())],
        &["-au", auth_user, "-ap", password, "-trace_msg"],
    )
}

/// A sipp caller (auth_invite_uac.xml) as `user` with credentials
/// `auth_user`/`password`, to the callee on `uas_port`, holding each call
/// `hold_ms` before the BYE.
#[allow(clippy::too_many_arguments)]
fn call(
    dir: &Path,
    role: &str,
    proxy: SocketAddr,
    uas_port: u16,
    user: &str,
    auth_user: &str,
    password: &str,
    hold_ms: u64,
) -> Sipp {
    let hold = hold_ms.to_string();
    Sipp::uac_with(
        dir,
        role,
        "auth_invite_uac.xml",
        proxy,
        CALLS,
        RATE,
        &[
            ("user", user.to_string()),
            ("uas_port", uas_port.to_string()),
        ],
        &["-au", auth_user, "-ap", password, "-d", &hold, "-trace_msg"],
    )
}

/// [`harness::assert_refused`] for CALLS calls.
#[track_caller]
fn assert_each_refused_with(
    outcome: &Outcome,
    dir: &Path,
    scenario: &str,
    status: &str,
    per_call: usize,
    all: &str,
) {
    harness::assert_refused(outcome, CALLS, dir, scenario, status, per_call, all);
}

/// The right password: REGISTER (401, then 200 with `X-AU: alice`) and
/// calls (407, ACK, INVITE with credentials, 180, 200, ACK, BYE, 200) all
/// succeed; the callee sees `X-AU: alice` and no Proxy-Authorization.
/// `CALLS` calls from alice with the right password, through the proxy
/// to a sipp UAS: every one completes on both sides.
async fn alice_calls_succeed(dir: &Path, proxy: SocketAddr) {
    let uas = Sipp::uas(dir, "uas", "auth_uas.xml", CALLS).await;
    let uac = call(
        dir,
        "uac",
        proxy,
        uas.port,
        "alice",
        "alice",
        ALICE_PASSWORD,
        0,
    );
    let uac = uac.finish(UAC_LIMIT).await;
    let uas = uas.finish(UAS_LIMIT).await;
    let all = reports(&[&uac, &uas]);
    uac.assert_clean(CALLS, "OutgoingCall", &all);
    uas.assert_clean(CALLS, "IncomingCall", &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_call_with_the_right_password() {
    if !sipp_or_skip("register_and_call_with_the_right_password") {
        return;
    }
    let (_server, proxy, _auth) = proxy(&common::sipp_auth::ROUTES).await;
    let dir = work_dir("auth_ok");

    let reg = register(&dir, "register", proxy, "alice", "alice", ALICE_PASSWORD);
    let reg = reg.finish(UAC_LIMIT).await;
    reg.assert_clean(CALLS, "OutgoingCall", &reports(&[&reg]));

    alice_calls_succeed(&dir, proxy).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two challenges in one 401/407, MD5 first (`algorithms: [MD5,
/// SHA-256]`): sipp answers the first one, MD5, and gets in. The
/// REGISTER's 200 echoes the Authorization the proxy accepted: MD5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_challenges_md5_first_sipp_answers_md5() {
    if !sipp_or_skip("two_challenges_md5_first_sipp_answers_md5") {
        return;
    }
    let (_server, proxy, _auth) = proxy(&common::sipp_auth_md5_first::ROUTES).await;
    let dir = work_dir("auth_md5_first");

    let reg = register(&dir, "register", proxy, "alice", "alice", ALICE_PASSWORD);
    let reg = reg.finish(UAC_LIMIT).await;
    reg.assert_clean(CALLS, "OutgoingCall", &reports(&[&reg]));
    let messages = message_log(&dir, "auth_register");
    let challenges: Vec<&str> = messages
        .lines()
        .filter(|l| l.starts_with("WWW-Authenticate:"))
        .collect();
    assert_eq!(
        challenges.len() as u64,
        2 * CALLS,
        "two challenges per 401:\n{messages}"
    );
    let seen: Vec<&str> = messages
        .lines()
        .filter(|l| l.starts_with("X-Auth-Seen:"))
        .collect();
    assert_eq!(
        seen.len() as u64,
        CALLS,
        "one 200 per REGISTER:\n{messages}"
    );
    for line in seen {
        assert!(
            line.contains("algorithm=MD5"),
            "sipp answered with MD5: {line}"
        );
    }

    alice_calls_succeed(&dir, proxy).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// SHA-256 first (`algorithms: [SHA-256, MD5]`, the default): sipp 3.6
/// answers the first challenge only, cannot compute SHA-256, and stops
/// with a fatal error: a client like it needs MD5 first in `algorithms`
/// (docs/language.md, "Authentication"). This pins the finding: when a
/// sipp release picks the MD5 challenge instead, this test fails and the
/// docs should say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_challenges_sha256_first_sipp_gives_up() {
    if !sipp_or_skip("two_challenges_sha256_first_sipp_gives_up") {
        return;
    }
    let (_server, proxy, _auth) = proxy(&common::sipp_auth_sha_first::ROUTES).await;
    let dir = work_dir("auth_sha_first");

    let reg = register(&dir, "register", proxy, "alice", "alice", ALICE_PASSWORD);
    let reg = reg.finish(UAC_LIMIT).await;
    let all = reports(&[&reg]);
    assert_eq!(reg.count("SuccessfulCall"), 0, "{all}");
    assert!(
        reg.errors.contains("must use MD5"),
        "sipp refuses to answer the SHA-256 challenge:\n{all}"
    );
    let messages = message_log(&dir, "auth_register");
    let first = messages
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:"))
        .unwrap_or_default();
    assert!(
        first.contains("algorithm=SHA-256"),
        "the first challenge is SHA-256: {first}\n{messages}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A wrong password: each REGISTER gets a second 401, each INVITE a second
/// 407; no call reaches the callee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_challenged_again() {
    if !sipp_or_skip("a_wrong_password_is_challenged_again") {
        return;
    }
    let (_server, proxy, _auth) = proxy(&common::sipp_auth::ROUTES).await;
    let dir = work_dir("auth_wrong");

    let reg = register(&dir, "register", proxy, "alice", "alice", "not-it");
    let reg = reg.finish(UAC_LIMIT).await;
    assert_each_refused_with(&reg, &dir, "auth_register", "401", 2, &reports(&[&reg]));

    // Nothing listens on the callee's port: a call let through would end
    // on a timeout or an error from the relay, not on a 407.
    let uac = call(
        &dir,
        "uac",
        proxy,
        free_udp_port(),
        "alice",
        "alice",
        "not-it",
        0,
    );
    let uac = uac.finish(UAC_LIMIT).await;
    assert_each_refused_with(&uac, &dir, "auth_invite_uac", "407", 2, &reports(&[&uac]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// bob's valid credentials on alice's requests: 403, for REGISTER (To
/// alice) and INVITE (From alice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_credentials_are_forbidden() {
    if !sipp_or_skip("another_users_credentials_are_forbidden") {
        return;
    }
    let (_server, proxy, _auth) = proxy(&common::sipp_auth::ROUTES).await;
    let dir = work_dir("auth_403");

    let reg = register(&dir, "register", proxy, "alice", "bob", BOB_PASSWORD);
    let reg = reg.finish(UAC_LIMIT).await;
    assert_each_refused_with(&reg, &dir, "auth_register", "403", 1, &reports(&[&reg]));

    let uac = call(
        &dir,
        "uac",
        proxy,
        free_udp_port(),
        "alice",
        "bob",
        BOB_PASSWORD,
        0,
    );
    let uac = uac.finish(UAC_LIMIT).await;
    assert_each_refused_with(&uac, &dir, "auth_invite_uac", "403", 1, &reports(&[&uac]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Credentials replaced while calls are up (what SIGHUP does, through the
/// same `Authenticator::replace_credentials`): alice's password changes
/// from the old to a new one while CALLS calls authenticated with the old
/// one are established and holding. Those calls end cleanly (their ACK and
/// BYE are in-dialog and not challenged again); new calls with the old
/// password are refused with a second 407; new calls with the new password
/// get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_replaced_during_calls() {
    if !sipp_or_skip("credentials_replaced_during_calls") {
        return;
    }
    let (_server, proxy, auth) = proxy(&common::sipp_auth::ROUTES).await;
    let dir = work_dir("auth_swap");
    let first_dir = dir.join("first");
    std::fs::create_dir_all(&first_dir).unwrap();

    // The callee takes the held calls and the ones after the swap.
    let uas = Sipp::uas(&dir, "uas", "auth_uas.xml", 2 * CALLS).await;
    let held = call(
        &first_dir,
        "held",
        proxy,
        uas.port,
        "alice",
        "alice",
        ALICE_PASSWORD,
        3000,
    );
    // Every held call is established once its in-dialog ACK (to the
    // callee's Contact) is in sipp's message log.
    let mut established = 0;
    for _ in 0..200 {
        let log = message_log(&first_dir, "auth_invite_uac");
        established = log.matches("\nACK sip:callee@").count();
        if established as u64 >= CALLS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        established as u64,
        CALLS,
        "the held calls were not all established:\n{}",
        message_log(&first_dir, "auth_invite_uac")
    );

    auth.replace_credentials(users("alice-new-secret"));
    let byes_before = message_log(&first_dir, "auth_invite_uac")
        .matches("\nBYE sip:callee@")
        .count();
    if byes_before > 0 {
        eprintln!(
            "note: {byes_before} held call(s) had already sent their BYE when the \
             credentials were replaced (a very slow machine): they were not in flight"
        );
    }

    let old_dir = dir.join("old");
    std::fs::create_dir_all(&old_dir).unwrap();
    let old = call(
        &old_dir,
        "old_password",
        proxy,
        free_udp_port(),
        "alice",
        "alice",
        ALICE_PASSWORD,
        0,
    );
    let old = old.finish(UAC_LIMIT).await;
    assert_each_refused_with(
        &old,
        &old_dir,
        "auth_invite_uac",
        "407",
        2,
        &reports(&[&old]),
    );

    let new_dir = dir.join("new");
    std::fs::create_dir_all(&new_dir).unwrap();
    let new = call(
        &new_dir,
        "new_password",
        proxy,
        uas.port,
        "alice",
        "alice",
        "alice-new-secret",
        0,
    );
    let new = new.finish(UAC_LIMIT).await;
    let held = held.finish(UAC_LIMIT).await;
    let uas = uas.finish(UAS_LIMIT).await;
    let all = reports(&[&held, &new, &uas]);
    held.assert_clean(CALLS, "OutgoingCall", &all);
    new.assert_clean(CALLS, "OutgoingCall", &all);
    uas.assert_clean(2 * CALLS, "IncomingCall", &all);
    let _ = std::fs::remove_dir_all(&dir);
}
