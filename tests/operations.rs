//! Running sipforge in production: the real `sipforge` binary's flags and
//! exit codes, its `--metrics` endpoint and JSON logs, port sharing only
//! on request (`--takeover`: a second instance without it fails with
//! "address in use") and a zero-downtime rollout (a second process takes
//! the port over during calls, the first drains and exits by itself, no
//! call fails); plus the draining core, sans-IO.
//!
//! The binary carries the repository's routes.yaml, which forwards every
//! request to 127.0.0.1:5080. The tests that send it traffic therefore run
//! in a private network namespace (`unshare --net`, this test binary
//! re-executed for that one test), so fixed ports touch nothing else on
//! the machine. Without `unshare` they print SKIPPED and pass, except on
//! CI (`CI=true`), where they fail.

mod common;

use common::netns::in_private_netns;
use common::text::{header, response};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

use sipforge_runtime::proxy::{Core, CoreConfig, DrainMode, Identity, Listener, Outgoing};

const BIN: &str = env!("CARGO_BIN_EXE_sipforge");

// ---- flags and exit codes ---------------------------------------------------

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("the sipforge binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn version_names_the_commit_and_the_routes_hash() {
    let (code, out, err) = run(&["--version"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], format!("sipforge {}", env!("CARGO_PKG_VERSION")));
    assert!(
        lines[3].starts_with("workers ") && lines[3].contains(" per socket"),
        "{out}"
    );
    let (_, out, _) = run(&["--version", "--workers", "3"]);
    assert_eq!(out.lines().nth(3), Some("workers 3 per socket"), "{out}");
    let commit = lines[1].strip_prefix("commit ").expect("a commit line");
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output();
    if let Ok(head) = head
        && head.status.success()
        && std::env::var_os("SIPFORGE_GIT_COMMIT").is_none()
    {
        assert_eq!(
            commit,
            String::from_utf8_lossy(&head.stdout).trim(),
            "the build's commit is HEAD"
        );
    }
    let routes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.yaml")).unwrap();
    if std::env::var_os("SIPFORGE_ROUTES").is_none() {
        assert_eq!(
            lines[2],
            format!("routes routes.yaml sha256:{}", sha256_hex(&routes))
        );
    }
}

#[test]
fn check_validates_settings_without_binding_anything() {
    // Hold a UDP port and a TCP port exclusively: binding either would fail.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = format!("udp:{}", udp.local_addr().unwrap());
    let metrics = tcp.local_addr().unwrap().to_string();
    let (code, out, err) = run(&["--check", "--listen", &listen, "--metrics", &metrics]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("sipforge: settings ok"), "{out}");
    for (args, what) in [
        (&["--check", "--metrics", "nope"][..], "--metrics `nope`"),
        (
            &["--check", "--max-transactions", "0"],
            "--max-transactions",
        ),
        (
            &["--check", "--max-connections-per-source", "0"],
            "--max-connections-per-source",
        ),
        (
            &["--check", "--listen", "tls:127.0.0.1:5061"],
            "needs the routes file's `tls:` block",
        ),
        (&["--check", "--advertise", "example.com:port"], "advertise"),
        (&["--check", "--log-level", "a=b=c"], "--log-level"),
        (
            &["--check", "--shutdown-timeout", "100000"],
            "--shutdown-timeout",
        ),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(
            err.starts_with("sipforge: ") && err.contains(what),
            "{args:?}: {err}"
        );
    }
}

/// `--credentials` with routes that never `authenticate` (the root
/// routes.yaml has no `auth:`): `--check` fails with one line saying so
/// rather than ignoring the file. (A bad credentials file, `path:line`, is
/// checked by runtime/src/cli/auth.rs's unit tests: the binary built from
/// routes.yaml never reads one.)
#[test]
fn check_refuses_credentials_for_routes_without_auth() {
    if std::env::var_os("SIPFORGE_ROUTES").is_some() {
        eprintln!("skipped: SIPFORGE_ROUTES names other routes, which may have `auth:`");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sipforge-ops-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users");
    std::fs::write(
        &users,
        "alice:example.com:0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let (code, out, err) = run(&["--check", "--credentials", users.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("sipforge: --credentials ")
            && err.contains(&users.display().to_string())
            && err.contains("the routes have no `auth:`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_and_settings_exit_2_with_one_line() {
    for args in [
        &["--nope"][..],
        &["--log-format", "xml"],
        &["--shutdown-timeout", "soon"],
        &["--drain-mode", "maybe"],
        &["--max-transactions", "-1"],
        &["--listen", "udp:localhost:5060"],
        &["--metrics", "9090"],
        &["--listen"],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.starts_with("sipforge: "), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--metrics",
        "--shutdown-timeout",
        "--drain-mode",
        "--check",
        "--version",
        "--takeover",
    ] {
        assert!(out.contains(flag), "--help lists {flag}");
    }
    let (code, out, _) = run(&["--print-routes"]);
    assert_eq!(code, 0);
    assert!(out.contains("forward:"));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---- a sipforge process --------------------------------------------------------

/// A running `sipforge` with its stderr collected.
struct Proxy {
    name: &'static str,
    child: tokio::process::Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start(name: &'static str, args: &[&str]) -> Proxy {
        let mut child = tokio::process::Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sipforge starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let proxy = Proxy { name, child, log };
        proxy.wait_log("started", Duration::from_secs(10)).await;
        proxy
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    async fn wait_log(&self, needle: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < until,
                "{}: no log line with `{needle}` within {within:?}:\n{}",
                self.name,
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success());
    }

    /// Wait for the exit; its code.
    async fn exit_code(&mut self, within: Duration) -> i32 {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => status.code().unwrap_or(-1),
            _ => panic!(
                "{}: still running after {within:?}:\n{}",
                self.name,
                self.lines().join("\n")
            ),
        }
    }
}

/// GET `path` from `addr`; (status, body).
async fn http_get(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("metrics endpoint");
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

async fn scrape(addr: &str) -> String {
    let (status, body) = http_get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200, "{body}");
    body
}

fn sample(text: &str, series: &str) -> f64 {
    sipforge_runtime::metrics::sample(text, series)
        .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
}

// ---- SIP peers -------------------------------------------------------------------
/// A response to `req` with `status`, copying what a UAS copies.
/// The callee at 127.0.0.1:5080 (where routes.yaml forwards): 180 and 200
/// to each INVITE, the 200 retransmitted until the ACK; 200 to BYE.
async fn uas(stop: Arc<AtomicBool>) {
    let socket = UdpSocket::bind("127.0.0.1:5080")
        .await
        .expect("5080 is free in the namespace");
    let mut buf = vec![0u8; 65_535];
    // Call-ID -> (200 OK, where to, acked, next retransmission, interval)
    let mut calls: HashMap<String, (String, SocketAddr, bool, Instant, Duration)> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let received =
            tokio::time::timeout(Duration::from_millis(50), socket.recv_from(&mut buf)).await;
        if let Ok(Ok((n, from))) = received {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let call_id = header(&msg, "Call-ID").unwrap_or("").to_string();
            let method = msg.split(' ').next().unwrap_or("");
            match method {
                "INVITE" => {
                    let ok = response(&msg, "200 OK", "uas");
                    let _ = socket
                        .send_to(response(&msg, "180 Ringing", "uas").as_bytes(), from)
                        .await;
                    let _ = socket.send_to(ok.as_bytes(), from).await;
                    let acked = calls.get(&call_id).is_some_and(|c| c.2);
                    let retry = Duration::from_millis(200);
                    calls.insert(call_id, (ok, from, acked, Instant::now() + retry, retry));
                }
                "ACK" => {
                    if let Some(c) = calls.get_mut(&call_id) {
                        c.2 = true;
                    }
                }
                "BYE" => {
                    let _ = socket
                        .send_to(response(&msg, "200 OK", "uas").as_bytes(), from)
                        .await;
                }
                _ => {}
            }
        }
        let now = Instant::now();
        for (ok, to, acked, next, interval) in calls.values_mut() {
            if !*acked && *next <= now && *interval < Duration::from_secs(4) {
                let _ = socket.send_to(ok.as_bytes(), *to).await;
                *interval *= 2;
                *next = now + *interval;
            }
        }
    }
}

/// One call through the proxy: INVITE (retransmitted until answered), ACK,
/// BYE (retransmitted until answered). Err says what went wrong.
async fn call(proxy: SocketAddr, id: &str) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let me = socket.local_addr().map_err(|e| e.to_string())?;
    let base = |method: &str, branch: &str, cseq: u32, to: &str| {
        format!(
            "{method} sip:bob@127.0.0.1:5080 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-{branch};rport\r\n\
             From: <sip:alice@127.0.0.1>;tag={id}\r\n\
             To: {to}\r\n\
             Call-ID: {id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:alice@{me}>\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let invite = base("INVITE", &format!("{id}-1"), 1, "<sip:bob@127.0.0.1>");
    let mut buf = vec![0u8; 65_535];
    let mut ringing = false;
    let mut sends = 0;
    let started = Instant::now();
    let to = loop {
        if !ringing && sends < 12 {
            socket
                .send_to(invite.as_bytes(), proxy)
                .await
                .map_err(|e| e.to_string())?;
            sends += 1;
        }
        if started.elapsed() > Duration::from_secs(8) {
            return Err(format!(
                "{id}: no final response to the INVITE (ringing: {ringing})"
            ));
        }
        let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(250), socket.recv_from(&mut buf)).await
        else {
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !header(&msg, "CSeq").is_some_and(|c| c.ends_with("INVITE")) {
            continue;
        }
        let status = msg.split(' ').nth(1).unwrap_or("");
        match status {
            s if s.starts_with('1') => ringing = true,
            "200" => break header(&msg, "To").unwrap_or("").to_string(),
            other => return Err(format!("{id}: INVITE answered {other}")),
        }
    };
    let ack = base("ACK", &format!("{id}-2"), 1, &to);
    socket
        .send_to(ack.as_bytes(), proxy)
        .await
        .map_err(|e| e.to_string())?;
    let bye = base("BYE", &format!("{id}-3"), 2, &to);
    for _ in 0..20 {
        socket
            .send_to(bye.as_bytes(), proxy)
            .await
            .map_err(|e| e.to_string())?;
        let until = Instant::now() + Duration::from_millis(250);
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(until.into(), socket.recv_from(&mut buf)).await
        {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            match header(&msg, "CSeq") {
                Some(c) if c.ends_with("BYE") && msg.starts_with("SIP/2.0 200") => return Ok(()),
                Some(c) if c.ends_with("BYE") && !msg.starts_with("SIP/2.0 1") => {
                    return Err(format!(
                        "{id}: BYE answered `{}`",
                        msg.lines().next().unwrap_or("")
                    ));
                }
                // A retransmitted 200 for the INVITE: our ACK was lost. (A
                // 180 may arrive after the 200: workers handle the two
                // responses in parallel, as Kamailio's children do.)
                Some(c) if c.ends_with("INVITE") && msg.starts_with("SIP/2.0 200") => {
                    let _ = socket.send_to(ack.as_bytes(), proxy).await;
                }
                _ => {}
            }
        }
    }
    Err(format!("{id}: no 200 to the BYE"))
}

// ---- metrics and logs ------------------------------------------------------------

#[test]
fn metrics_count_a_call_and_survive_bad_scrapes() {
    if !in_private_netns("metrics_count_a_call_and_survive_bad_scrapes") {
        return;
    }
    runtime().block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let callee = tokio::spawn(uas(Arc::clone(&stop)));
        let mut proxy = Proxy::start(
            "proxy",
            &[
                "--listen",
                "udp:127.0.0.1:5060",
                "--metrics",
                "127.0.0.1:9464",
                "--log-format",
                "json",
                "--log-level",
                "debug",
            ],
        )
        .await;
        let addr: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let before = scrape("127.0.0.1:9464").await;
        assert_eq!(
            sample(
                &before,
                "sipforge_requests_received_total{method=\"INVITE\"}"
            ),
            0.0
        );
        call(addr, "m1").await.expect("the call goes through");
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        peer.send_to(b"this is not SIP", addr).await.unwrap();
        let hops = format!(
            "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-mf0\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: m2\r\nCSeq: 1 OPTIONS\r\n\
             Max-Forwards: 0\r\nContent-Length: 0\r\n\r\n",
            peer.local_addr().unwrap()
        );
        peer.send_to(hops.as_bytes(), addr).await.unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), peer.recv_from(&mut buf))
            .await
            .expect("483 comes back")
            .unwrap();
        assert!(buf[..n].starts_with(b"SIP/2.0 483"));
        tokio::time::sleep(Duration::from_millis(100)).await;

        let after = scrape("127.0.0.1:9464").await;
        for (series, want) in [
            ("sipforge_requests_received_total{method=\"INVITE\"}", 1.0),
            ("sipforge_requests_received_total{method=\"ACK\"}", 1.0),
            ("sipforge_requests_received_total{method=\"BYE\"}", 1.0),
            ("sipforge_requests_received_total{method=\"OPTIONS\"}", 1.0),
            ("sipforge_parse_errors_total", 1.0),
            ("sipforge_stateless_replies_sent_total{class=\"4xx\"}", 1.0),
            ("sipforge_transactions_active", 0.0),
            ("sipforge_draining", 0.0),
        ] {
            assert_eq!(
                sample(&after, series),
                want,
                "{series}\n{}",
                proxy.lines().join("\n")
            );
        }
        // INVITE, ACK, BYE forwarded; 180, 200 and the BYE's 200 came back.
        assert_eq!(sample(&after, "sipforge_forwarded_requests_total"), 3.0);
        assert!(sample(&after, "sipforge_replies_received_total{class=\"2xx\"}") >= 2.0);
        assert!(sample(&after, "sipforge_replies_received_total{class=\"1xx\"}") >= 1.0);
        assert!(sample(&after, "sipforge_forwarded_replies_total") >= 3.0);
        assert!(after.contains("sipforge_build_info{version=\""), "{after}");
        assert!(after.ends_with("# EOF\n"));

        // Concurrent scrapes and bad requests: answered, and the proxy lives on.
        let mut tasks = Vec::new();
        for i in 0..24 {
            tasks.push(tokio::spawn(async move {
                let request: &[u8] = match i % 6 {
                    0 => b"GET /metrics HTTP/1.0\r\n\r\n",
                    1 => b"POST /metrics HTTP/1.1\r\n\r\n",
                    2 => b"\x16\x03\x01garbage\r\n\r\n",
                    3 => b"GET /healthz HTTP/1.1\r\n\r\n",
                    4 => b"GET /ready HTTP/1.1\r\n\r\n",
                    _ => b"GET /elsewhere HTTP/1.1\r\n\r\n",
                };
                http_get("127.0.0.1:9464", request).await.0
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        for (i, status) in statuses.iter().enumerate() {
            let want = [200, 405, 400, 200, 200, 404][i % 6];
            assert_eq!(*status, want, "request {i}");
        }
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert_eq!(http_get("127.0.0.1:9464", huge.as_bytes()).await.0, 431);
        let (status, body) = http_get("127.0.0.1:9464", b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, 200);
        assert!(body.contains("sipforge_requests_received_total"));

        // JSON log lines: one object each; the route's log step carries its line.
        let lines = proxy.lines();
        let mut route_log = None;
        for line in &lines {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            // Workers write their lines in batches of their own: the
            // INVITE's line is not always the first of the call.
            if value["target"] == "sipforge::routes"
                && value["call_id"] == "m1"
                && value["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Received INVITE"))
            {
                route_log.get_or_insert(value);
            }
        }
        let route_log = route_log.expect("a route log line for the call");
        assert_eq!(route_log["line"], 4, "{route_log}");
        assert_eq!(route_log["level"], "INFO");
        assert!(
            route_log["message"]
                .as_str()
                .unwrap()
                .starts_with("Received INVITE to sip:bob@127.0.0.1:5080")
        );
        let forwarded = lines
            .iter()
            .find(|l| l.contains("\"request forwarded\"") && l.contains("\"m1\""))
            .expect("a debug line per forwarded request");
        for field in ["\"call_id\"", "\"method\"", "\"source\"", "\"to\""] {
            assert!(forwarded.contains(field), "{field} in {forwarded}");
        }

        proxy.signal("-TERM");
        assert_eq!(proxy.exit_code(Duration::from_secs(5)).await, 0);
        stop.store(true, Ordering::Relaxed);
        let _ = callee.await;
    });
}

// ---- an idle proxy --------------------------------------------------------------

/// Context switches (voluntary and not) of each thread of process `pid`
/// whose name starts with `prefix`, by thread name.
fn switches(pid: u32, prefix: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc") {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = name.trim();
        if !name.starts_with(prefix) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let total: u64 = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        out.insert(name.to_string(), total);
    }
    out
}

/// An idle proxy leaves the machine alone: its UDP receive threads sleep
/// (before, each woke 40 times a second to look for a stop; with one
/// thread per core on a big machine that is thousands of wake-ups a
/// second for nothing), and a SIGTERM still stops it at once.
#[test]
fn an_idle_proxy_sleeps_and_still_stops_at_once() {
    runtime().block_on(async {
        let mut proxy =
            Proxy::start("idle", &["--listen", "udp:127.0.0.1:0", "--workers", "2"]).await;
        let pid = proxy.child.id().expect("running");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = switches(pid, "sf-udp");
        assert_eq!(before.len(), 2, "two receive threads: {before:?}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = switches(pid, "sf-udp");
        for (name, n) in &after {
            let woke = n - before.get(name).copied().unwrap_or(0);
            // One wake-up a second (the backstop), with room for a stray one.
            assert!(woke <= 8, "{name} woke {woke} times in 3 s of idleness");
        }
        proxy.signal("-TERM");
        assert_eq!(proxy.exit_code(Duration::from_secs(5)).await, 0);
        let lines = proxy.lines();
        assert!(
            lines.iter().any(|l| l.contains("socket handed over")),
            "the receive thread saw the stop and handed over:\n{}",
            lines.join("\n")
        );
    });
}

// ---- port sharing and zero-downtime rollout --------------------------------------

/// Run the binary and wait (at most `within`) for it to exit by itself:
/// its exit code and stderr.
async fn run_to_exit(args: &[&str], within: Duration) -> (i32, String) {
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipforge starts");
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sipforge {args:?} still runs after {within:?}"))
        .expect("its output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The error of a start on a port somebody holds: exit 1, one line
/// naming the address.
fn assert_address_in_use(code: i32, err: &str, listen: &str) {
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("sipforge: cannot listen: ")
            && err.contains("address in use")
            && err.contains(listen),
        "{err}"
    );
}

/// A second instance on the port of a running one, without `--takeover`,
/// exits 1 with one "address in use" line; the first keeps serving.
#[test]
fn a_second_instance_without_takeover_fails_and_the_first_keeps_serving() {
    if !in_private_netns("a_second_instance_without_takeover_fails_and_the_first_keeps_serving") {
        return;
    }
    runtime().block_on(async {
        let stop_uas = Arc::new(AtomicBool::new(false));
        let callee = tokio::spawn(uas(Arc::clone(&stop_uas)));
        let listen = "udp:127.0.0.1:5060";
        let mut first = Proxy::start("first", &["--listen", listen]).await;
        let proxy: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        call(proxy, "before").await.expect("a call to the first");

        let (code, err) = run_to_exit(&["--listen", listen], Duration::from_secs(10)).await;
        assert_address_in_use(code, &err, listen);
        assert!(err.contains("--takeover"), "says how to share: {err}");

        assert!(
            first.child.try_wait().unwrap().is_none(),
            "the first still runs"
        );
        for n in 0..5 {
            call(proxy, &format!("after-{n}"))
                .await
                .expect("the first instance still answers every call");
        }
        assert!(
            !first.lines().iter().any(|l| l.contains("taken over")),
            "{}",
            first.lines().join("\n")
        );
        first.signal("-TERM");
        assert_eq!(first.exit_code(Duration::from_secs(5)).await, 0);
        stop_uas.store(true, Ordering::Relaxed);
        let _ = callee.await;
    });
}

/// A port held by a socket that is not sipforge's (no SO_REUSEPORT) cannot
/// be shared, with `--takeover` or without: "address in use", naming it.
/// Once the port is free, `--takeover` just starts.
#[test]
fn a_port_held_by_another_program_is_in_use_even_with_takeover() {
    runtime().block_on(async {
        let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let listen = format!("udp:{}", holder.local_addr().unwrap());
        for takeover in [false, true] {
            let mut args = vec!["--listen", listen.as_str(), "--workers", "1"];
            if takeover {
                args.push("--takeover");
            }
            let (code, err) = run_to_exit(&args, Duration::from_secs(10)).await;
            assert_address_in_use(code, &err, &listen);
        }
        drop(holder);
        let mut alone = Proxy::start(
            "alone",
            &["--listen", &listen, "--workers", "1", "--takeover"],
        )
        .await;
        alone
            .wait_log("nothing to take over", Duration::from_secs(1))
            .await;
        alone.signal("-TERM");
        assert_eq!(alone.exit_code(Duration::from_secs(5)).await, 0);
    });
}

/// A rollout: callers keep calling while a second sipforge process starts
/// on the same port with `--takeover`; the first is asked over the sibling
/// link to leave, drains, hands its socket over and exits 0 by itself
/// (no signal). Every call completes.
#[test]
fn rollout_takeover_during_calls_fails_no_call() {
    if !in_private_netns("rollout_takeover_during_calls_fails_no_call") {
        return;
    }
    runtime().block_on(async {
        let stop_uas = Arc::new(AtomicBool::new(false));
        let callee = tokio::spawn(uas(Arc::clone(&stop_uas)));
        // Three workers each, whatever the machine's core count: the
        // hand-over runs with several threads reading each socket.
        let common = [
            "--listen",
            "udp:127.0.0.1:5060",
            "--shutdown-timeout",
            "10",
            "--workers",
            "3",
        ];
        let mut old = Proxy::start(
            "old",
            &[&common[..], &["--metrics", "127.0.0.1:9101"]].concat(),
        )
        .await;
        let proxy: SocketAddr = "127.0.0.1:5060".parse().unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let mut callers = Vec::new();
        for worker in 0..6 {
            let (stop, results) = (Arc::clone(&stop), Arc::clone(&results));
            callers.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("roll-{worker}-{n}");
                    let outcome = call(proxy, &id).await;
                    results.lock().unwrap().push((id, outcome, Instant::now()));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The old instance carried calls before the new one came.
        let old_stats = scrape("127.0.0.1:9101").await;
        assert!(
            sample(
                &old_stats,
                "sipforge_requests_received_total{method=\"INVITE\"}"
            ) > 0.0
        );
        let takeover_at = Instant::now();
        let mut new = Proxy::start(
            "new",
            &[&common[..], &["--metrics", "127.0.0.1:9102", "--takeover"]].concat(),
        )
        .await;
        new.wait_log("taking over udp:127.0.0.1:5060", Duration::from_secs(1))
            .await;
        assert_eq!(
            old.exit_code(Duration::from_secs(15)).await,
            0,
            "the old instance exits 0 by itself"
        );
        let left_at = Instant::now();
        old.wait_log("taken over: draining", Duration::from_secs(1))
            .await;
        old.wait_log("socket handed over", Duration::from_secs(1))
            .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        stop.store(true, Ordering::Relaxed);
        for c in callers {
            c.await.unwrap();
        }

        let results = std::mem::take(&mut *results.lock().unwrap());
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(id, r, _)| r.as_ref().err().map(|e| format!("{id}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} calls failed:\n{}\n--- old:\n{}\n--- new:\n{}",
            failed.len(),
            results.len(),
            failed.join("\n"),
            old.lines().join("\n"),
            new.lines().join("\n")
        );
        let after = results
            .iter()
            .filter(|(_, _, at)| *at > takeover_at)
            .count();
        assert!(
            results.len() >= 30 && after >= 6,
            "{} calls, {after} after the takeover (the old one left {:?} after it)",
            results.len(),
            left_at - takeover_at
        );
        let new_stats = scrape("127.0.0.1:9102").await;
        assert!(
            sample(
                &new_stats,
                "sipforge_requests_received_total{method=\"INVITE\"}"
            ) > 0.0
        );

        new.signal("-TERM");
        assert_eq!(new.exit_code(Duration::from_secs(12)).await, 0);
        stop_uas.store(true, Ordering::Relaxed);
        let _ = callee.await;
    });
}

// ---- the draining core, sans-IO ---------------------------------------------------

const UAC: &str = "192.0.2.10:5060";
const UAS: &str = "192.0.2.20:5060";

fn relay_core() -> Core {
    let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
    Core::new(
        &common::relay::ROUTES,
        Identity::new(vec![listener]),
        CoreConfig::default(),
    )
}

fn invite(id: &str) -> String {
    format!(
        "INVITE sip:bob@{UAS} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-{id}\r\n\
         From: <sip:alice@example.com>;tag={id}\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: {id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Feed one datagram; what the core sent, as (to, text).
fn feed(core: &mut Core, text: &str, from: &str) -> Vec<(String, String)> {
    let mut out: Vec<Outgoing> = Vec::new();
    core.handle(
        Instant::now(),
        text.as_bytes(),
        from.parse().unwrap(),
        0,
        &mut out,
    );
    out.into_iter()
        .map(|o| {
            let to = match o.to {
                sipforge_runtime::target::NextHop::Addr(a)
                | sipforge_runtime::target::NextHop::Found { addr: a, .. }
                | sipforge_runtime::target::NextHop::Flow(a) => a.to_string(),
                sipforge_runtime::target::NextHop::Name { host, port, .. } => {
                    format!("{host}:{port}")
                }
            };
            (to, String::from_utf8_lossy(o.bytes.as_ref()).into_owned())
        })
        .collect()
}

fn top_branch(msg: &str) -> &str {
    header(msg, "Via")
        .and_then(|v| v.split(";branch=").nth(1))
        .map_or("", |b| b.split(';').next().unwrap_or(""))
}

#[test]
fn draining_finishes_open_transactions_and_forwards_new_ones_statelessly() {
    let mut core = relay_core();
    let sent = feed(&mut core, &invite("d1"), UAC);
    assert!(sent[0].1.starts_with("SIP/2.0 100 Trying"), "{sent:?}");
    let relayed = sent[1].1.clone();
    assert!(top_branch(&relayed).starts_with("z9hG4bKsfT"));
    assert_eq!(core.pending_transactions(), 1);

    core.start_draining(DrainMode::Stateless);
    // A new INVITE: no transaction, no 100 Trying, a stateless branch.
    let sent = feed(&mut core, &invite("d2"), UAC);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, UAS);
    assert!(sent[0].1.starts_with("INVITE "));
    let branch = top_branch(&sent[0].1);
    assert!(
        branch.starts_with("z9hG4bKsf") && !branch.starts_with("z9hG4bKsfT"),
        "{branch}"
    );
    assert_eq!(core.transactions(), 1);

    // The open transaction still runs statefully: 180 then CANCEL goes down.
    let sent = feed(&mut core, &response(&relayed, "180 Ringing", "b1"), UAS);
    assert!(sent[0].1.starts_with("SIP/2.0 180"), "{sent:?}");
    let cancel = format!(
        "CANCEL sip:bob@{UAS} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK-d1\r\n\
         From: <sip:alice@example.com>;tag=d1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: d1\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let sent = feed(&mut core, &cancel, UAC);
    assert!(
        sent.iter()
            .any(|(to, m)| to == UAC && m.starts_with("SIP/2.0 200")),
        "{sent:?}"
    );
    let down = sent
        .iter()
        .find(|(to, m)| to == UAS && m.starts_with("CANCEL "))
        .expect("CANCEL sent down the branch");
    assert_eq!(top_branch(&down.1), top_branch(&relayed));
    let sent = feed(
        &mut core,
        &response(&relayed, "487 Request Terminated", "b1"),
        UAS,
    );
    assert!(
        sent.iter()
            .any(|(to, m)| to == UAC && m.starts_with("SIP/2.0 487")),
        "{sent:?}"
    );
    assert_eq!(core.pending_transactions(), 0, "the drain is done");
}

#[test]
fn draining_in_reject_mode_answers_503_and_in_relay_mode_keeps_relaying() {
    let mut core = relay_core();
    core.start_draining(DrainMode::Reject);
    let sent = feed(&mut core, &invite("r1"), UAC);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, UAC);
    assert!(sent[0].1.starts_with("SIP/2.0 503"), "{}", sent[0].1);
    assert!(header(&sent[0].1, "Retry-After").is_some());
    assert_eq!(core.transactions(), 0);

    let mut core = relay_core();
    core.start_draining(DrainMode::Relay);
    let sent = feed(&mut core, &invite("r2"), UAC);
    assert!(sent[0].1.starts_with("SIP/2.0 100"), "{sent:?}");
    assert!(top_branch(&sent[1].1).starts_with("z9hG4bKsfT"));
    assert_eq!(core.pending_transactions(), 1);
}

/// Two instances on one port: a response for the other's transaction
/// (which the sibling link did not take) is never taken into a local
/// transaction that happens to have the same slot, and never forwarded
/// on: this instance cannot check the other's branch, and forwarding what
/// it cannot check would let anyone reflect forged responses.
#[test]
fn an_instance_never_takes_another_instances_response_for_its_own() {
    let (mut a, mut b) = (relay_core(), relay_core());
    let to_a = feed(&mut a, &invite("x1"), UAC)[1].1.clone();
    let uac2 = "192.0.2.11:5060";
    let other = invite("x2").replace(UAC, uac2);
    let to_b = feed(&mut b, &other, uac2)[1].1.clone();
    assert_ne!(
        top_branch(&to_a),
        top_branch(&to_b),
        "branches carry the instance"
    );
    // A's callee answers, and the kernel hands the answer to B.
    let sent = feed(&mut b, &response(&to_a, "200 OK", "b1"), UAS);
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(
        b.pending_transactions(),
        1,
        "B's own transaction is untouched"
    );
    // A itself takes it.
    let sent = feed(&mut a, &response(&to_a, "200 OK", "b1"), UAS);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, UAC);
}

// ---- two instances, one port, stateful routes ----------------------------------------

/// Two instances share a port and relay statefully. The callee's 404 often
/// lands on the instance that does not hold the transaction; it passes the
/// response to its sibling, whose failure route reroutes the call, so
/// every caller gets the 200 of the second callee, never the 404. Then
/// the first instance drains and stops while the second goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_pass_each_other_their_responses() {
    use common::{Peer, Sip, request, response_to};
    let routes: &'static dyn sipforge_runtime::api::Routes = &common::relay::ROUTES;
    let (first, proxy) = common::start_proxy_with(routes, common::fast_timers()).await;
    let options = sipforge_runtime::net::Options {
        listen: vec![sipforge_runtime::transport::ListenAddr::udp(proxy)],
        advertise: None,
        core: common::fast_timers(),
        workers: 2,
        secret: None,
        authenticator: None,
        // The port is the first instance's: shared only when asked.
        takeover: true,
        streams: Default::default(),
        dns_servers: None,
        registrar_store: None,
        rtpengine: None,
        tls: None,
    };
    let second = sipforge_runtime::net::start(routes, options)
        .await
        .expect("a second instance on the same port");
    let passed = || {
        let text = sipforge_runtime::metrics::encode();
        sample(
            &text,
            "sipforge_sibling_replies_total{direction=\"passed\"}",
        )
    };
    let passed_before = passed();

    async fn one_call(proxy: SocketAddr, n: usize) -> Result<(), String> {
        let (uac, busy, ok) = (Peer::bind().await, Peer::bind().await, Peer::bind().await);
        let call_id = format!("sib-{n}");
        let via = format!(
            "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-{call_id}",
            uac.port()
        );
        let invite = request(
            "INVITE",
            &format!("sip:bob@127.0.0.1:{}", busy.port()),
            &via,
            &call_id,
            &format!(
                "Max-Forwards: 70\r\nX-Second: sip:127.0.0.1:{}\r\n",
                ok.port()
            ),
        );
        uac.send(proxy, &invite).await;
        let (first_try, _) = busy.recv_within(3000, "INVITE at the first callee").await;
        busy.send(proxy, &response_to(&first_try, "404 Not Found", ""))
            .await;
        let (second_try, _) = ok
            .recv_within(3000, "INVITE rerouted to the second callee")
            .await;
        ok.send(proxy, &response_to(&second_try, "200 OK", ""))
            .await;
        loop {
            let (m, _): (Sip, _) = uac.recv_within(3000, "the caller's final response").await;
            match m.start_line() {
                l if l.starts_with("SIP/2.0 1") => continue,
                "SIP/2.0 200 OK" => return Ok(()),
                other => return Err(format!("{call_id}: the caller got `{other}`")),
            }
        }
    }

    let calls: Vec<_> = (0..16).map(|n| tokio::spawn(one_call(proxy, n))).collect();
    let mut failed = Vec::new();
    for c in calls {
        if let Err(e) = c.await.expect("the call task") {
            failed.push(e);
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(
        passed() > passed_before,
        "with 16 callees, some 404s must have landed on the other instance"
    );

    first.start_draining(DrainMode::Stateless);
    assert_eq!(first.pending_transactions(), 0);
    first.shutdown().await;
    // The second instance now gets everything.
    one_call(proxy, 99)
        .await
        .expect("a call after the first instance left");
    second.shutdown().await;
}
