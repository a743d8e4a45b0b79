//! Running one test of a test binary inside a private network namespace
//! (`unshare --net`, the binary re-executed for that one test), so that it
//! may use fixed, well-known ports (5060, 6379) and addresses of its own
//! without touching anything else on the machine. Without `unshare` the
//! test prints SKIPPED and passes, except on CI (`CI=true`), where it
//! fails.

use std::process::{Command, Stdio};

/// Whether this process is the re-run inside the namespace.
pub fn inside_netns() -> bool {
    std::env::var_os("SIPFORGE_TEST_NETNS").is_some()
}

/// Run test `name` of this binary again inside a new network namespace
/// with the loopback up. Returns true when the caller is that re-run (and
/// must run the test body), false when the re-run was made (and passed) or
/// skipped.
pub fn in_private_netns(name: &str) -> bool {
    if inside_netns() {
        return true;
    }
    let probe = Command::new("unshare")
        .args(["--net", "--", "ip", "link", "set", "lo", "up"])
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{name}: needs `unshare --net` and `ip` (util-linux, iproute2) as root: {why}"
            );
            println!("SKIPPED {name}: no private network namespace ({why})");
            return false;
        }
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
        ])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SIPFORGE_TEST_NETNS", "1")
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} (in a private network namespace) failed:\n{stdout}\n{stderr}"
    );
    println!("{name}: passed in a private network namespace");
    false
}

/// The runtime a test that runs in a namespace drives itself with (a
/// plain `#[test]`: the re-run must not start inside a tokio runtime).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
