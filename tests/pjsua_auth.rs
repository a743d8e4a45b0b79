//! Digest authentication with a real user agent: pjsua2 (PyPI
//! `pjsua2-python`, run by tests/pjsua/register_call.py with `python3`)
//! registers and calls a sipp UAS (tests/sipp/auth_uas.xml) through an
//! in-process proxy running tests/routes/sipp_auth_*.yaml.
//!
//! The proxy offers two challenges per 401/407, one per algorithm of the
//! fixture's `auth.algorithms`; the REGISTER's 200 echoes the Authorization
//! the proxy accepted (`X-Auth-Seen`), so the test sees which one pjsua2
//! answered. Found with pjsua2-python 2.15.1: pjsua2 answers the FIRST
//! challenge it can compute, SHA-256 with `[SHA-256, MD5]` and MD5 with
//! `[MD5, SHA-256]` (docs/language.md, "Authentication").
//!
//! Without pjsua2 (`import pjsua2` fails) or sipp the tests print SKIPPED
//! and pass, except on CI (`CI=true`, where .ci/run installs both), where
//! they fail. `PYTHON=/path/to/python3` picks another interpreter.

mod common;

#[path = "sipp/harness.rs"]
mod harness;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use harness::{Sipp, sipp_or_skip, work_dir};
use md5::{Digest, Md5};
use sipforge_runtime::api::Routes;
use sipforge_runtime::auth::{AuthConfig, Authenticator, Credentials, NonceKey};

const REALM: &str = "sipforge.test";
const PASSWORD: &str = "alice-pjsua-secret";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pjsua/register_call.py");

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether `import pjsua2` works. When it does not: on CI panic (CI
/// installs it), elsewhere print a loud SKIPPED line and return false.
fn pjsua2_or_skip(test: &str) -> bool {
    let out = std::process::Command::new(python())
        .args(["-c", "import pjsua2"])
        .stdin(Stdio::null())
        .output();
    let why = match out {
        Ok(out) if out.status.success() => return true,
        Ok(out) => String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_string(),
        Err(e) => format!("cannot run {}: {e}", python()),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: pjsua2 is required on CI but `import pjsua2` fails: {why}");
    }
    eprintln!(
        "\n******** SKIPPED {test}: pjsua2 not importable \
         (python3 -m pip install pjsua2-python) ({why}) ********\n"
    );
    false
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// alice with both algorithms, the fixture's other `auth:` settings.
fn authenticator(routes: &'static dyn Routes) -> Arc<Authenticator> {
    let text = format!(
        "alice:{REALM}:{}\nalice:{REALM}:{}\n",
        hex(&Md5::digest(format!("alice:{REALM}:{PASSWORD}").as_bytes())),
        hex(&sha2::Sha256::digest(
            format!("alice:{REALM}:{PASSWORD}").as_bytes()
        )),
    );
    let settings = routes
        .settings()
        .auth
        .as_ref()
        .expect("the fixture has auth:");
    Arc::new(Authenticator::new(
        AuthConfig::from_settings(settings),
        NonceKey::random(),
        Credentials::parse(&text, "users").expect("the test credentials parse"),
    ))
}

/// Run register_call.py through a proxy running `routes`, to a sipp UAS;
/// assert it registered, called and hung up, and return the algorithm of
/// the Authorization the proxy accepted for the REGISTER.
async fn register_and_call(test: &str, routes: &'static dyn Routes) -> String {
    let (_server, proxy) =
        common::start_proxy_auth(routes, Default::default(), Some(authenticator(routes))).await;
    let dir = work_dir(test);
    let uas = Sipp::uas(&dir, "uas", "auth_uas.xml", 1).await;
    let log = dir.join("pjsip.log");
    let child = tokio::process::Command::new(python())
        .arg(SCRIPT)
        .arg("--proxy")
        .arg(proxy.to_string())
        .arg("--uas-port")
        .arg(uas.port.to_string())
        .arg("--password")
        .arg(PASSWORD)
        .arg("--log")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {} {SCRIPT}: {e}", python()));
    // A backstop only: each step of the script has its own 10 s limit.
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("register_call.py did not finish within 60 s")
        .expect("wait for register_call.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let uas = uas.finish(Duration::from_secs(5)).await;
    let pjsip_log = std::fs::read_to_string(&log).unwrap_or_default();
    let start = pjsip_log.len().saturating_sub(6000);
    let start = (start..=pjsip_log.len())
        .find(|&i| pjsip_log.is_char_boundary(i))
        .unwrap_or(pjsip_log.len());
    let all = format!(
        "exit status: {}\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}\npjsip log (end):\n{}",
        out.status,
        uas.report(),
        &pjsip_log[start..]
    );
    assert!(out.status.success(), "register_call.py failed\n{all}");
    for step in [
        "REGISTERED code=200",
        "CALL CONFIRMED",
        "CALL DISCONNECTED code=200",
        "OK",
    ] {
        assert!(stdout.contains(step), "missing step `{step}`\n{all}");
    }
    uas.assert_clean(1, "IncomingCall", &all);
    let seen = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REGISTERED code=200 auth="))
        .unwrap_or("");
    assert!(
        seen.starts_with("Digest") && seen.contains("username=\"alice\""),
        "the proxy echoes the Authorization it accepted: {seen:?}\n{all}"
    );
    let algorithm = seen
        .split(',')
        .find_map(|p| p.trim().strip_prefix("algorithm="))
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let _ = std::fs::remove_dir_all(&dir);
    algorithm
}

/// `algorithms: [SHA-256, MD5]`: pjsua2 registers with SHA-256 and calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsua2_sha256_first() {
    let test = "pjsua2_sha256_first";
    if !pjsua2_or_skip(test) || !sipp_or_skip(test) {
        return;
    }
    let algorithm = register_and_call(test, &common::sipp_auth_sha_first::ROUTES).await;
    assert_eq!(algorithm, "SHA-256", "the algorithm pjsua2 answered with");
}

/// `algorithms: [MD5, SHA-256]`: pjsua2 registers with MD5 and calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjsua2_md5_first() {
    let test = "pjsua2_md5_first";
    if !pjsua2_or_skip(test) || !sipp_or_skip(test) {
        return;
    }
    let algorithm = register_and_call(test, &common::sipp_auth_md5_first::ROUTES).await;
    assert_eq!(algorithm, "MD5", "the algorithm pjsua2 answered with");
}
