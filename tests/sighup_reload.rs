//! SIGHUP reloads the credentials file during calls, in a real proxy
//! process: the `sipforge` command line (`sipforge_runtime::cli::main`,
//! exactly what src/main.rs runs: flags, `--credentials`, the SIGHUP
//! handler, SIGTERM draining) with the routes of
//! tests/routes/sipp_auth.yaml, and sipp peers.
//!
//! How the process gets those routes: the `sipforge` binary is compiled
//! from routes.yaml (no `auth:`), and building a second one with
//! `SIPFORGE_ROUTES` would take minutes. This test target has no libtest
//! harness (`harness = false` in Cargo.toml): its `main` runs the command
//! line with the fixture's routes when `SIPFORGE_TEST_AS_PROXY` is set, so
//! the test starts its own executable as the proxy, with sipforge's flags
//! as its arguments. Signals are process-wide, which is why this cannot be
//! an in-process test (tests/sipp_auth.rs swaps credentials in-process
//! through the same `Authenticator::replace_credentials`).
//!
//! The flow: alice's calls with the old password are established and
//! holding; the file is rewritten with a new password and the proxy gets
//! SIGHUP ("credentials reloaded" in its log). Then: the held calls end
//! cleanly; new calls with the old password get a second 407; new calls
//! with the new password get through. Then a broken file and SIGHUP
//! ("not reloaded"): the new password still works. SIGTERM: exit 0.
//!
//! Without sipp the test prints SKIPPED and passes, except on CI
//! (`CI=true`), where it fails. Prints `1 passed, 0 failed` (or
//! `0 passed, 1 failed`), or `0 passed, 0 failed` when a name filter given
//! to `cargo test` does not match "sighup".

mod common;

#[path = "sipp/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use harness::{Sipp, assert_refused, free_udp_port, message_log, sipp_or_skip, work_dir};
use md5::{Digest, Md5};

const AS_PROXY: &str = "SIPFORGE_TEST_AS_PROXY";
const TEST: &str = "sighup_reloads_credentials_during_calls";
const REALM: &str = "sipforge.test";
const OLD: &str = "alice-old-secret";
const NEW: &str = "alice-new-secret";
const CALLS: u64 = 5;
const RATE: u32 = 10;
const UAC_LIMIT: Duration = Duration::from_secs(22);

fn main() -> ExitCode {
    if std::env::var_os(AS_PROXY).is_some() {
        return sipforge_runtime::cli::main(&common::sipp_auth::ROUTES);
    }
    // `cargo test NAME`: a filter that does not match skips the test.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST.contains(f.as_str())) {
        println!("0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = std::panic::catch_unwind(|| runtime.block_on(sighup_reloads_credentials()));
    drop(runtime);
    match result {
        Ok(()) => {
            println!("test {TEST} ... ok\n1 passed, 0 failed");
            ExitCode::SUCCESS
        }
        Err(_) => {
            println!("test {TEST} ... FAILED\n0 passed, 1 failed");
            ExitCode::FAILURE
        }
    }
}

fn credentials(password: &str) -> String {
    let ha1: String = Md5::digest(format!("alice:{REALM}:{password}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("alice:{REALM}:{ha1}\n")
}

/// The proxy process, killed when dropped; its log (stdout and stderr) in a file.
struct Proxy {
    child: tokio::process::Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Proxy {
    async fn start(dir: &Path, users: &Path) -> Proxy {
        let port = free_udp_port();
        let log = dir.join("proxy.log");
        let out = std::fs::File::create(&log).expect("create the proxy log");
        let child = tokio::process::Command::new(std::env::current_exe().expect("own executable"))
            .env(AS_PROXY, "1")
            .env_remove("RUST_LOG")
            .arg("--listen")
            .arg(format!("udp:127.0.0.1:{port}"))
            .arg("--credentials")
            .arg(users)
            .args(["--workers", "2", "--shutdown-timeout", "5"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start the proxy process");
        let mut proxy = Proxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        proxy.wait_log("started", 1).await;
        proxy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (at most 10 s) until `needle` is in the log `count` times.
    async fn wait_log(&mut self, needle: &str, count: usize) {
        for _ in 0..500 {
            if self.log().matches(needle).count() >= count {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the proxy exited with {status}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "`{needle}` (x{count}) not in the proxy log:\n{}",
            self.log()
        );
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("the proxy runs") as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }
}

/// A sipp caller (auth_invite_uac.xml) as alice with `password`, each call
/// held `hold_ms` before its BYE, its message log in `dir`.
fn call(
    dir: &Path,
    role: &str,
    proxy: SocketAddr,
    uas_port: u16,
    password: &str,
    hold_ms: u64,
) -> Sipp {
    std::fs::create_dir_all(dir).unwrap();
    let hold = hold_ms.to_string();
    Sipp::uac_with(
        dir,
        role,
        "auth_invite_uac.xml",
        proxy,
        CALLS,
        RATE,
        &[
            ("user", "alice".to_string()),
            ("uas_port", uas_port.to_string()),
        ],
        &["-au", "alice", "-ap", password, "-d", &hold, "-trace_msg"],
    )
}

async fn sighup_reloads_credentials() {
    if !sipp_or_skip(TEST) {
        return;
    }
    let dir = work_dir("sighup");
    let users = dir.join("users");
    std::fs::write(&users, credentials(OLD)).unwrap();
    let mut proxy = Proxy::start(&dir, &users).await;
    let reports = |outcomes: &[&harness::Outcome], proxy: &Proxy| {
        let mut text: Vec<String> = outcomes.iter().map(|o| o.report()).collect();
        text.push(format!("--- proxy log ---\n{}", proxy.log()));
        text.join("\n")
    };

    // Held calls, the old password: all established before the reload.
    let uas = Sipp::uas(&dir, "uas", "auth_uas.xml", 3 * CALLS).await;
    let held_dir = dir.join("held");
    let held = call(&held_dir, "held", proxy.addr, uas.port, OLD, 3000);
    let mut established = 0;
    for _ in 0..200 {
        established = message_log(&held_dir, "auth_invite_uac")
            .matches("\nACK sip:callee@")
            .count();
        if established as u64 >= CALLS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        established as u64,
        CALLS,
        "the held calls were not all established:\n{}\n{}",
        message_log(&held_dir, "auth_invite_uac"),
        proxy.log()
    );

    // The new password, SIGHUP.
    std::fs::write(&users, credentials(NEW)).unwrap();
    proxy.signal(libc::SIGHUP);
    proxy.wait_log("credentials reloaded", 1).await;
    let byes = message_log(&held_dir, "auth_invite_uac")
        .matches("\nBYE sip:callee@")
        .count();
    if byes > 0 {
        eprintln!("note: {byes} held call(s) had sent their BYE before the reload (slow machine)");
    }

    let old_dir = dir.join("old");
    let old = call(
        &old_dir,
        "old_password",
        proxy.addr,
        free_udp_port(),
        OLD,
        0,
    );
    let old = old.finish(UAC_LIMIT).await;
    assert_refused(
        &old,
        CALLS,
        &old_dir,
        "auth_invite_uac",
        "407",
        2,
        &reports(&[&old], &proxy),
    );

    let new = call(
        &dir.join("new"),
        "new_password",
        proxy.addr,
        uas.port,
        NEW,
        0,
    );
    let new = new.finish(UAC_LIMIT).await;
    let held = held.finish(UAC_LIMIT).await;
    let all = reports(&[&held, &new], &proxy);
    held.assert_clean(CALLS, "OutgoingCall", &all);
    new.assert_clean(CALLS, "OutgoingCall", &all);

    // A broken file: SIGHUP keeps the users loaded before.
    std::fs::write(&users, "alice:sipforge.test:not-a-digest\n").unwrap();
    proxy.signal(libc::SIGHUP);
    proxy.wait_log("credentials not reloaded", 1).await;
    assert!(
        !proxy.log().contains("not-a-digest"),
        "the log never echoes an HA1:\n{}",
        proxy.log()
    );
    let kept = call(&dir.join("kept"), "kept", proxy.addr, uas.port, NEW, 0);
    let kept = kept.finish(UAC_LIMIT).await;
    let uas = uas.finish(Duration::from_secs(5)).await;
    let all = reports(&[&kept, &uas], &proxy);
    kept.assert_clean(CALLS, "OutgoingCall", &all);
    uas.assert_clean(3 * CALLS, "IncomingCall", &all);

    proxy.signal(libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(10), proxy.child.wait())
        .await
        .expect("the proxy exits after SIGTERM")
        .expect("wait for the proxy");
    assert_eq!(status.code(), Some(0), "{}", proxy.log());
    let _ = std::fs::remove_dir_all(&dir);
}
