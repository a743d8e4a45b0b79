//! Running sipp from cargo tests: free ports, sipp processes with time
//! limits, their statistics and error logs. Included by `tests/sipp_interop.rs`,
//! `tests/sipp_auth.rs` and `tests/pjsua_auth.rs` with `#[path]`; uses nothing from `tests/common`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The scenarios, next to this file.
pub const SCENARIO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp");

/// The sipp binary: `$SIPP` or `sipp` on PATH.
pub fn sipp_bin() -> String {
    std::env::var("SIPP").unwrap_or_else(|_| "sipp".to_string())
}

/// Whether sipp can run. When it cannot: on CI (`CI=true`) panic, since CI
/// installs sipp; elsewhere print a loud SKIPPED line and return false.
pub fn sipp_or_skip(test: &str) -> bool {
    match std::process::Command::new(sipp_bin())
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{test}: sipp is required on CI but cannot run `{}`: {e}",
                    sipp_bin()
                );
            }
            eprintln!(
                "\n******** SKIPPED {test}: sipp not installed \
                 (apt-get install -y sip-tester) ({e}) ********\n"
            );
            false
        }
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago (bound to :0, read, dropped).
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    socket.local_addr().unwrap().port()
}

/// Whether something listens on UDP 127.0.0.1:`port`, read from
/// /proc/net/udp (probing by binding would race with sipp's own bind).
/// `None` when /proc/net/udp cannot be read (not Linux).
pub fn udp_port_bound(port: u16) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let wanted = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    Some(table.lines().skip(1).any(|line| {
        let local = line.split_whitespace().nth(1).unwrap_or("");
        local.eq_ignore_ascii_case(&wanted) || local.eq_ignore_ascii_case(&any)
    }))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// Whether something listens on TCP 127.0.0.1:`port`, read from
/// /proc/net/tcp (state 0A). `None` when it cannot be read.
fn tcp_port_listening(port: u16) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let wanted = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    Some(table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or("");
        let state = fields.nth(1).unwrap_or("");
        state == "0A" && (local.eq_ignore_ascii_case(&wanted) || local.eq_ignore_ascii_case(&any))
    }))
}

/// The transport sipp runs over: UDP (one socket), or TCP with one
/// connection (`-t t1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Udp,
    Tcp,
}

impl Over {
    fn args(self) -> Vec<String> {
        match self {
            Over::Udp => Vec::new(),
            Over::Tcp => vec!["-t".into(), "t1".into()],
        }
    }

    fn free_port(self) -> u16 {
        match self {
            Over::Udp => free_udp_port(),
            Over::Tcp => free_tcp_port(),
        }
    }
}

/// Wait until the phone running `scenario` in `dir` got the 200 for its
/// REGISTER (the registrar scenarios leave `<scenario stem>.registered`).
pub async fn wait_registered(dir: &Path, scenario: &str) {
    let marker = dir.join(scenario.replace(".xml", ".registered"));
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{scenario} did not register within 10 s (no {})",
            marker.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A directory for one test's sipp files, under cargo's target tmp dir.
pub fn work_dir(test: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("sipp")
        .join(format!(
            "{test}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the sipp work dir");
    dir
}

/// One sipp process; killed when dropped (a hang must not outlive the test).
pub struct Sipp {
    pub role: String,
    pub port: u16,
    over: Over,
    child: Child,
    stat_file: PathBuf,
    error_file: PathBuf,
    screen_file: PathBuf,
}

/// What a finished sipp reported.
#[derive(Debug)]
pub struct Outcome {
    pub role: String,
    /// None: it did not exit in time and was killed.
    pub status: Option<ExitStatus>,
    /// The last line of its `-trace_stat` file, by column name.
    pub stats: HashMap<String, String>,
    /// Its `-trace_err` log (unexpected messages, failed checks, timeouts).
    pub errors: String,
    /// The end of its screen (stdout and stderr).
    pub screen_tail: String,
}

impl Outcome {
    /// A cumulative counter, e.g. `count("SuccessfulCall")` reads `SuccessfulCall(C)`.
    pub fn count(&self, name: &str) -> u64 {
        self.stats
            .get(&format!("{name}(C)"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Every non-zero cumulative counter, for failure messages.
    pub fn summary(&self) -> String {
        let mut keys: Vec<_> = self
            .stats
            .iter()
            .filter(|(k, v)| {
                k.ends_with("(C)")
                    && !k.contains("Time")
                    && !k.contains("Length")
                    && !k.contains("Rate")
                    && !v.is_empty()
                    && v.as_str() != "0"
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        keys.sort();
        keys.join(" ")
    }

    /// Everything useful to read when an assertion fails.
    pub fn report(&self) -> String {
        let errors: String = self.errors.chars().take(4000).collect();
        format!(
            "--- sipp {} ---\nexit status: {}\ncounters: {}\nerror log (start):\n{}\nscreen (end):\n{}\n",
            self.role,
            match self.status {
                Some(s) => s.to_string(),
                None => "did not exit in time (killed)".to_string(),
            },
            self.summary(),
            errors,
            self.screen_tail
        )
    }

    /// Assert a clean run of exactly `calls` calls in `direction`
    /// ("OutgoingCall" for a UAC, "IncomingCall" for a UAS); `all` is the
    /// report of every sipp of the test, printed on failure.
    #[track_caller]
    pub fn assert_clean(&self, calls: u64, direction: &str, all: &str) {
        let status = self
            .status
            .unwrap_or_else(|| panic!("sipp {} did not finish in time\n{all}", self.role));
        assert!(
            status.success(),
            "sipp {} exited with {status} (0 means every call succeeded; 1: some \
             failed; 255: fatal error or -timeout reached)\n{all}",
            self.role
        );
        assert_eq!(
            self.count(direction),
            calls,
            "sipp {}: {direction} count\n{all}",
            self.role
        );
        assert_eq!(
            self.count("SuccessfulCall"),
            calls,
            "sipp {}: successful calls\n{all}",
            self.role
        );
        assert_eq!(
            self.count("FailedCall"),
            0,
            "sipp {}: failed calls\n{all}",
            self.role
        );
    }
}

/// Start sipp with `scenario` (a file of tests/sipp) in `dir`, bound to
/// 127.0.0.1:`port`; `args` come after the common ones. Files land in `dir`.
fn spawn(dir: &Path, role: &str, scenario: &str, port: u16, args: &[String]) -> Sipp {
    spawn_at(dir, role, scenario, "127.0.0.1", port, args)
}

fn spawn_at(dir: &Path, role: &str, scenario: &str, ip: &str, port: u16, args: &[String]) -> Sipp {
    let stat_file = dir.join(format!("{role}_stat.csv"));
    let error_file = dir.join(format!("{role}_errors.log"));
    let screen_file = dir.join(format!("{role}_screen.log"));
    let screen = std::fs::File::create(&screen_file).expect("create the screen log");
    let mut command = Command::new(sipp_bin());
    command
        .current_dir(dir)
        .arg("-sf")
        .arg(Path::new(SCENARIO_DIR).join(scenario))
        .args(["-i", ip, "-p", &port.to_string()])
        .arg("-nostdin")
        // Abort a call on an unexpected message, but send no BYE for it: a
        // stray BYE to a buggy proxy only adds noise (it may loop).
        .args(["-default_behaviors", "all,-bye"])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(&error_file)
        .arg("-trace_stat")
        .arg("-stf")
        .arg(&stat_file)
        .args(args)
        .stdin(Stdio::null())
        .stdout(screen.try_clone().expect("dup the screen log"))
        .stderr(screen)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} for {role}: {e}", sipp_bin()));
    Sipp {
        role: role.to_string(),
        port,
        over: Over::Udp,
        child,
        stat_file,
        error_file,
        screen_file,
    }
}

impl Sipp {
    /// Start a sipp UAS running `scenario` for `calls` calls on a free port,
    /// and wait until it listens. Picks another port once if sipp could not
    /// bind (the free port was taken in between).
    pub async fn uas(dir: &Path, role: &str, scenario: &str, calls: u64) -> Sipp {
        Sipp::uas_over(dir, role, scenario, calls, Over::Udp).await
    }

    /// [`Sipp::uas`] over `over`.
    pub async fn uas_over(dir: &Path, role: &str, scenario: &str, calls: u64, over: Over) -> Sipp {
        let mut args: Vec<String> = vec![
            "-m".into(),
            calls.to_string(),
            // A backstop only: the test waits for it much less.
            "-timeout".into(),
            "25s".into(),
            "-timeout_error".into(),
        ];
        args.extend(over.args());
        let mut last_failure = String::new();
        for _attempt in 0..2 {
            let port = over.free_port();
            let mut uas = spawn(dir, role, scenario, port, &args);
            uas.over = over;
            match uas.wait_listening(Duration::from_secs(5)).await {
                Ok(()) => return uas,
                Err(why) => last_failure = why,
            }
        }
        panic!("sipp {role} did not start: {last_failure}");
    }

    /// Start a sipp UAS on a given loopback address and port (for routes
    /// compiled with fixed target URIs: each test uses addresses of its
    /// own, so parallel tests do not collide).
    pub async fn uas_at(
        dir: &Path,
        role: &str,
        scenario: &str,
        calls: u64,
        ip: &str,
        port: u16,
    ) -> Sipp {
        let args: Vec<String> = vec![
            "-m".into(),
            calls.to_string(),
            "-timeout".into(),
            "25s".into(),
            "-timeout_error".into(),
        ];
        let mut uas = spawn_at(dir, role, scenario, ip, port, &args);
        // The port check cannot tell addresses apart: give sipp a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(Some(status)) = uas.child.try_wait() {
            let screen = std::fs::read_to_string(&uas.screen_file).unwrap_or_default();
            panic!(
                "sipp {role} on {ip}:{port} exited with {status}: {}",
                tail(&screen, 1500)
            );
        }
        uas
    }

    /// Start a sipp UAC running `scenario`: `calls` calls at `rate` per
    /// second to `proxy`, with `-key NAME VALUE` for each of `keys`.
    pub fn uac(
        dir: &Path,
        role: &str,
        scenario: &str,
        proxy: SocketAddr,
        calls: u64,
        rate: u32,
        keys: &[(&str, String)],
    ) -> Sipp {
        Sipp::uac_full(
            dir,
            role,
            scenario,
            proxy,
            calls,
            rate,
            keys,
            &[],
            Over::Udp,
        )
    }

    /// [`Sipp::uac`] with more sipp options (`extra`, e.g. `-au alice`),
    /// given before the remote address.
    #[allow(clippy::too_many_arguments)]
    pub fn uac_with(
        dir: &Path,
        role: &str,
        scenario: &str,
        proxy: SocketAddr,
        calls: u64,
        rate: u32,
        keys: &[(&str, String)],
        extra: &[&str],
    ) -> Sipp {
        Sipp::uac_full(
            dir,
            role,
            scenario,
            proxy,
            calls,
            rate,
            keys,
            extra,
            Over::Udp,
        )
    }

    /// [`Sipp::uac`] over `over`.
    #[allow(clippy::too_many_arguments)]
    pub fn uac_over(
        dir: &Path,
        role: &str,
        scenario: &str,
        proxy: SocketAddr,
        calls: u64,
        rate: u32,
        keys: &[(&str, String)],
        over: Over,
    ) -> Sipp {
        Sipp::uac_full(dir, role, scenario, proxy, calls, rate, keys, &[], over)
    }

    /// A UAC with more sipp options (`extra`, before the remote address), over `over`.
    #[allow(clippy::too_many_arguments)]
    pub fn uac_full(
        dir: &Path,
        role: &str,
        scenario: &str,
        proxy: SocketAddr,
        calls: u64,
        rate: u32,
        keys: &[(&str, String)],
        extra: &[&str],
        over: Over,
    ) -> Sipp {
        let mut args: Vec<String> = vec![
            "-m".into(),
            calls.to_string(),
            "-r".into(),
            rate.to_string(),
            "-timeout".into(),
            "20s".into(),
            "-timeout_error".into(),
        ];
        for (name, value) in keys {
            args.extend(["-key".to_string(), name.to_string(), value.clone()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(over.args());
        args.push(proxy.to_string());
        let mut uac = spawn(dir, role, scenario, over.free_port(), &args);
        uac.over = over;
        uac
    }

    async fn wait_listening(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let screen = std::fs::read_to_string(&self.screen_file).unwrap_or_default();
                return Err(format!(
                    "exited with {status} on port {}: {}",
                    self.port,
                    tail(&screen, 1500)
                ));
            }
            let bound = match self.over {
                Over::Udp => udp_port_bound(self.port),
                Over::Tcp => tcp_port_listening(self.port),
            };
            match bound {
                Some(true) => return Ok(()),
                Some(false) => {}
                // No /proc: give it time to bind.
                None if start.elapsed() >= Duration::from_millis(500) => return Ok(()),
                None => {}
            }
            if start.elapsed() >= limit {
                return Err(format!(
                    "not listening on port {} after {limit:?}",
                    self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait up to `limit` for sipp to exit (kill it past that), then collect
    /// what it reported.
    pub async fn finish(mut self, limit: Duration) -> Outcome {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => panic!("waiting for sipp {}: {e}", self.role),
            Err(_) => {
                let _ = self.child.kill().await;
                None
            }
        };
        let stats = read_stats(&self.stat_file);
        let errors = std::fs::read_to_string(&self.error_file).unwrap_or_default();
        let screen = std::fs::read_to_string(&self.screen_file).unwrap_or_default();
        Outcome {
            role: self.role.clone(),
            status,
            stats,
            errors,
            screen_tail: tail(&screen, 2500),
        }
    }
}

/// The last line of a sipp `-trace_stat` file (`;`-separated, a header line
/// first), by column name. Empty when the file is missing.
fn read_stats(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return HashMap::new();
    };
    let Some(last) = lines.next_back() else {
        return HashMap::new();
    };
    header
        .split(';')
        .zip(last.split(';'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// The text of the sipp `-trace_msg` logs in `dir` for `scenario` (files
/// `<scenario>_<pid>_messages.log`), "" while there is none.
pub fn message_log(dir: &Path, scenario: &str) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return String::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!("{scenario}_")) && name.ends_with("_messages.log")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// Assert that each of the `calls` calls of `outcome` (a sipp UAC that ran
/// `scenario` in `dir` with `-trace_msg`) failed, that no 200 came, and
/// that at least `per_call` responses `status` came per call (a UAC sends
/// only requests, so every status line in its message log is one it got).
#[track_caller]
pub fn assert_refused(
    outcome: &Outcome,
    calls: u64,
    dir: &Path,
    scenario: &str,
    status: &str,
    per_call: usize,
    all: &str,
) {
    assert_eq!(
        outcome.count("SuccessfulCall"),
        0,
        "sipp {}: no call may succeed\n{all}",
        outcome.role
    );
    assert_eq!(
        outcome.count("FailedCall"),
        calls,
        "sipp {}: every call fails (none hangs)\n{all}",
        outcome.role
    );
    let log = message_log(dir, scenario);
    let got = |code: &str| {
        log.lines()
            .filter(|l| l.starts_with(&format!("SIP/2.0 {code} ")))
            .count()
    };
    assert_eq!(
        got("200"),
        0,
        "sipp {}: no 200 may come\n{all}\n{log}",
        outcome.role
    );
    assert!(
        got(status) >= per_call * calls as usize,
        "sipp {}: {per_call} {status} per call expected, got {} for {calls} calls\n{all}\n{log}",
        outcome.role,
        got(status)
    );
}
