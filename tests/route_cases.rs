//! Offline route tests: the cases in `routes.test.yaml` (next to the routes
//! file the binary is built from) run against the compiled routes through
//! the sans-IO proxy core: no socket, no network, no clock.
//!
//! `cargo test --test route_cases` runs them; with `SIPFORGE_ROUTES=x.yaml`
//! the build compiles `x.yaml` and the cases come from `x.test.yaml`
//! (`SIPFORGE_ROUTE_TESTS=FILE` names another file). The file format is
//! described in `docs/operations.md` ("Offline route tests") and shown by
//! the repository's own `routes.test.yaml`.
//!
//! A case sends one SIP message to the proxy and checks what comes out:
//! forwarded to where, with which headers added or removed, replied with
//! which status, dropped, and which `log` lines were written. A case can
//! then let the next hop answer the forwarded request and check what the
//! proxy does with the answer. A failure names the case (and its line in
//! the cases file), the routes lines the message went through, and the
//! expected and actual values.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sipforge_runtime::api::Routes;
use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener, Outgoing};
use sipforge_runtime::target::NextHop;

/// The routes the `sipforge` binary is built from (`routes.yaml` or `SIPFORGE_ROUTES`).
mod built {
    include!(concat!(env!("OUT_DIR"), "/routes.rs"));
}

// ---- the cases file -------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// Default source address of the messages sent.
    #[serde(default)]
    source: Option<String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Where the message comes from (IP:PORT); else the file's `source`, else 192.0.2.10:5060.
    #[serde(default)]
    source: Option<String>,
    /// The SIP message, one header per line (CRLF and Content-Length are added).
    send: String,
    expect: Expect,
    /// The next hop answers the forwarded request with this response...
    #[serde(default)]
    answer: Option<Answer>,
    /// ...and the proxy does this with it.
    #[serde(default)]
    expect_answer: Option<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    /// `404 Not Found`, or just `404`.
    status: String,
    #[serde(default)]
    headers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The message was sent on (a request downstream, a response upstream).
    #[serde(default)]
    forward: Option<ExpectForward>,
    /// The proxy answered the request itself.
    #[serde(default)]
    reply: Option<ExpectReply>,
    /// Nothing at all was sent.
    #[serde(default)]
    drop: bool,
    /// Route `log` lines written, in order (each a substring of a line, or `{text, line, level}`).
    #[serde(default)]
    logs: Vec<ExpectLog>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectForward {
    /// Next hop, `IP:PORT` or `host:port`.
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    request_uri: Option<String>,
    #[serde(flatten)]
    headers: HeaderChecks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectReply {
    status: u16,
    #[serde(default)]
    reason: Option<String>,
    #[serde(flatten)]
    headers: HeaderChecks,
}

#[derive(Debug, Default, Deserialize)]
struct HeaderChecks {
    /// `Name: value` lines in the message sent that were not in the one received.
    #[serde(default)]
    added: Vec<String>,
    /// Header names in the message received that are gone from the one sent.
    #[serde(default)]
    removed: Vec<String>,
    /// `Name: value` lines (or bare names) the message sent has.
    #[serde(default)]
    headers: Vec<String>,
    /// Header names the message sent does not have.
    #[serde(default)]
    absent: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ExpectLog {
    Text(String),
    Full {
        text: String,
        #[serde(default)]
        line: Option<u64>,
        #[serde(default)]
        level: Option<String>,
    },
}

// ---- what the routes logged ----------------------------------------------

/// One event: a route `log` (target `sipforge::routes`, with `line`), an
/// ending action (TRACE, with `line` and `action`), or a core message.
#[derive(Clone, Debug)]
struct Event {
    level: tracing::Level,
    routes: bool,
    line: Option<u64>,
    action: Option<String>,
    message: String,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Event>>>);

impl Capture {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let mut e = Event {
            level: *meta.level(),
            routes: meta.target() == "sipforge::routes",
            line: None,
            action: None,
            message: String::new(),
        };
        event.record(&mut e);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }
}

impl tracing::field::Visit for Event {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "line" {
            self.line = Some(value);
        } else {
            self.record_debug(field, &value);
        }
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        match u64::try_from(value) {
            Ok(v) => self.record_u64(field, v),
            Err(_) => self.record_debug(field, &value),
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "action" {
            self.action = Some(value.to_string());
        } else {
            self.record_debug(field, &value);
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else if !matches!(field.name(), "line" | "action") {
            let _ = write!(self.message, " {}={value:?}", field.name());
        }
    }
}

// ---- running a case --------------------------------------------------------

/// What one message did.
struct Outcome {
    sent: Vec<Sent>,
    events: Vec<Event>,
}

struct Sent {
    to: String,
    hop: NextHop,
    text: String,
}

impl Sent {
    fn is_response(&self) -> bool {
        self.text.starts_with("SIP/2.0 ")
    }
}

fn hop_text(hop: &NextHop) -> String {
    match hop {
        NextHop::Addr(a) | NextHop::Found { addr: a, .. } | NextHop::Flow(a) => a.to_string(),
        NextHop::Name { host, port, .. } => format!("{host}:{port}"),
    }
}

/// A YAML block as a SIP message: CRLF line ends, Content-Length added when missing.
fn sip_text(block: &str) -> String {
    let block = block.trim_start_matches(['\n', '\r']);
    let (head, body) = match block.find("\n\n") {
        Some(at) => (&block[..at], &block[at + 2..]),
        None => (block.trim_end(), ""),
    };
    let body = body.trim_end_matches(['\n', '\r']);
    let body = if body.is_empty() {
        String::new()
    } else {
        format!("{}\r\n", body.lines().collect::<Vec<_>>().join("\r\n"))
    };
    let mut out = String::new();
    let mut has_length = false;
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        let name = line.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("Content-Length") || name == "l" {
            has_length = true;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !has_length {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out
}

/// Header lines of a message as (name, value), names as written.
fn header_lines(text: &str) -> Vec<(String, String)> {
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n").skip(1) {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((n, v)) = line.split_once(':') {
            out.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// Compact header names (RFC 3261 §7.3.3) that a case may write in full.
fn same_name(a: &str, b: &str) -> bool {
    const COMPACT: [(&str, &str); 11] = [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("o", "Event"),
    ];
    let full = |n: &str| {
        COMPACT
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(n))
            .map_or(n.to_string(), |(_, f)| f.to_string())
    };
    full(a).eq_ignore_ascii_case(&full(b))
}

fn has_line(lines: &[(String, String)], want: &str) -> bool {
    match want.split_once(':') {
        Some((n, v)) => lines
            .iter()
            .any(|(ln, lv)| same_name(ln, n.trim()) && lv == v.trim()),
        None => lines.iter().any(|(ln, _)| same_name(ln, want.trim())),
    }
}

/// The routes lines a message went through, as `routes.yaml:3 log, :5 forward`.
fn path_text(routes_file: &str, events: &[Event]) -> String {
    let steps: Vec<String> = events
        .iter()
        .filter(|e| e.routes)
        .filter_map(|e| {
            let line = e.line?;
            let what = e.action.clone().unwrap_or_else(|| {
                if e.level <= tracing::Level::WARN && e.message.contains("skipped") {
                    "error".to_string()
                } else {
                    "log".to_string()
                }
            });
            Some(format!("{routes_file}:{line} {what}"))
        })
        .collect();
    if steps.is_empty() {
        "no routes line ran an ending action or a log".to_string()
    } else {
        steps.join(" → ")
    }
}

struct Runner {
    core: Core,
    now: Instant,
    capture: Capture,
    dispatch: tracing::Dispatch,
}

impl Runner {
    fn new(routes: &'static dyn Routes) -> Runner {
        let settings = routes.settings();
        let addr: SocketAddr = settings
            .listen
            .first()
            .and_then(|l| sipforge_runtime::cli::parse_listen(l).ok())
            .map(|l| l.addr)
            .unwrap_or_else(|| "127.0.0.1:5060".parse().expect("an address"));
        let listener = Listener::new(addr, settings.advertise)
            .expect("the routes' listen and advertise are valid");
        let core = Core::new(routes, Identity::new(vec![listener]), CoreConfig::default());
        let capture = Capture::default();
        use tracing_subscriber::layer::SubscriberExt;
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(capture.clone()));
        Runner {
            core,
            now: Instant::now(),
            capture,
            dispatch,
        }
    }

    fn handle(&mut self, text: &str, source: SocketAddr) -> Outcome {
        self.now += Duration::from_millis(10);
        let mut out: Vec<Outgoing> = Vec::new();
        let (core, now) = (&mut self.core, self.now);
        tracing::dispatcher::with_default(&self.dispatch, || {
            core.handle(now, text.as_bytes(), source, 0, &mut out);
        });
        let sent = out
            .into_iter()
            .map(|o| Sent {
                to: hop_text(&o.to),
                hop: o.to,
                text: String::from_utf8_lossy(o.bytes.as_ref()).into_owned(),
            })
            .collect();
        Outcome {
            sent,
            events: self.capture.take(),
        }
    }
}

/// Check one outcome; problems are pushed onto `errors`.
fn check(expect: &Expect, input: &str, got: &Outcome, errors: &mut Vec<String>) {
    let input_lines = header_lines(input);
    let input_is_request = !input.starts_with("SIP/2.0 ");
    // Sent on: for a request, the requests sent (the responses are the
    // proxy's own replies); for a response, the response passed up or a
    // new request of the failure route, but not the proxy's hop-by-hop
    // ACK or CANCEL.
    let forwarded: Vec<&Sent> = got
        .sent
        .iter()
        .filter(|s| {
            if input_is_request {
                !s.is_response()
            } else {
                !(s.text.starts_with("ACK ") || s.text.starts_with("CANCEL "))
            }
        })
        .collect();
    let made: Vec<&Sent> = got
        .sent
        .iter()
        .filter(|s| input_is_request && s.is_response())
        .collect();
    if expect.drop && !got.sent.is_empty() {
        errors.push(format!(
            "drop: expected nothing sent, got {} message(s)",
            got.sent.len()
        ));
    }
    if expect.forward.is_none() && expect.reply.is_none() && !expect.drop {
        errors.push("the case expects nothing: give forward, reply or drop".to_string());
    }
    if let Some(fwd) = &expect.forward {
        match forwarded.as_slice() {
            [] => errors
                .push("forward: expected the message to be sent on, but it was not".to_string()),
            [sent] => {
                if let Some(to) = &fwd.to
                    && &sent.to != to
                {
                    errors.push(format!("forward.to: expected {to}, got {}", sent.to));
                }
                if let Some(ruri) = &fwd.request_uri {
                    let got_ruri = sent.text.split(' ').nth(1).unwrap_or("");
                    if got_ruri != ruri {
                        errors.push(format!(
                            "forward.request_uri: expected {ruri}, got {got_ruri}"
                        ));
                    }
                }
                check_headers("forward", &fwd.headers, &input_lines, &sent.text, errors);
            }
            many => errors.push(format!(
                "forward: expected one message sent on, got {}: {}",
                many.len(),
                many.iter()
                    .map(|s| format!("`{}` to {}", first_line(&s.text), s.to))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    } else if !expect.drop && expect.reply.is_some() && !forwarded.is_empty() {
        errors.push(format!(
            "expected no message sent on, got `{}` to {}",
            first_line(&forwarded[0].text),
            forwarded[0].to
        ));
    }
    if let Some(reply) = &expect.reply {
        match made.last() {
            None => errors.push(format!(
                "reply: expected {} from the proxy, but it sent no response",
                reply.status
            )),
            Some(sent) => {
                let status_line = first_line(&sent.text);
                let mut parts = status_line.splitn(3, ' ');
                let _ = parts.next();
                let status: u16 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let reason = parts.next().unwrap_or("");
                if status != reply.status {
                    errors.push(format!(
                        "reply.status: expected {}, got {status} (`{status_line}`)",
                        reply.status
                    ));
                }
                if let Some(want) = &reply.reason
                    && want != reason
                {
                    errors.push(format!("reply.reason: expected `{want}`, got `{reason}`"));
                }
                check_headers("reply", &reply.headers, &input_lines, &sent.text, errors);
                if sent.hop.addr().is_none() {
                    errors.push(format!("reply: sent to a name, {}", sent.to));
                }
            }
        }
    }
    check_logs(&expect.logs, &got.events, errors);
}

fn first_line(text: &str) -> &str {
    text.split("\r\n").next().unwrap_or("")
}

fn check_headers(
    what: &str,
    checks: &HeaderChecks,
    input: &[(String, String)],
    sent: &str,
    errors: &mut Vec<String>,
) {
    let lines = header_lines(sent);
    for want in &checks.added {
        if !has_line(&lines, want) {
            errors.push(format!(
                "{what}.added: expected `{want}` in the message sent; it has {}",
                names_of(&lines)
            ));
        } else if has_line(input, want) {
            errors.push(format!(
                "{what}.added: `{want}` was already in the message received"
            ));
        }
    }
    for name in &checks.removed {
        if !has_line(input, name) {
            errors.push(format!(
                "{what}.removed: `{name}` is not in the message received, so the case proves nothing"
            ));
        } else if has_line(&lines, name) {
            errors.push(format!(
                "{what}.removed: expected no `{name}`, but it is still there"
            ));
        }
    }
    for want in &checks.headers {
        if !has_line(&lines, want) {
            let name = want.split(':').next().unwrap_or(want).trim();
            let values: Vec<&str> = lines
                .iter()
                .filter(|(n, _)| same_name(n, name))
                .map(|(_, v)| v.as_str())
                .collect();
            errors.push(format!(
                "{what}.headers: expected `{want}`, got {}",
                if values.is_empty() {
                    format!("no {name}")
                } else {
                    format!("{name}: {}", values.join(" | "))
                }
            ));
        }
    }
    for name in &checks.absent {
        if has_line(&lines, name) {
            errors.push(format!(
                "{what}.absent: expected no `{name}`, but it is there"
            ));
        }
    }
}

fn names_of(lines: &[(String, String)]) -> String {
    let names: Vec<&str> = lines.iter().map(|(n, _)| n.as_str()).collect();
    names.join(", ")
}

fn check_logs(want: &[ExpectLog], events: &[Event], errors: &mut Vec<String>) {
    let logs: Vec<&Event> = events
        .iter()
        .filter(|e| e.routes && e.action.is_none())
        .collect();
    let mut from = 0;
    for w in want {
        let (text, line, level) = match w {
            ExpectLog::Text(t) => (t.as_str(), None, None),
            ExpectLog::Full { text, line, level } => (text.as_str(), *line, level.as_deref()),
        };
        let found = logs[from..].iter().position(|e| {
            e.message.contains(text)
                && line.is_none_or(|l| e.line == Some(l))
                && level.is_none_or(|l| e.level.as_str().eq_ignore_ascii_case(l))
        });
        match found {
            Some(i) => from += i + 1,
            None => errors.push(format!(
                "logs: expected `{text}`{}{} (in order), got: {}",
                line.map(|l| format!(" at line {l}")).unwrap_or_default(),
                level.map(|l| format!(" at level {l}")).unwrap_or_default(),
                if logs.is_empty() {
                    "no log line".to_string()
                } else {
                    logs.iter()
                        .map(|e| {
                            format!("[line {} {}] {}", e.line.unwrap_or(0), e.level, e.message)
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            )),
        }
    }
}

/// The response a next hop sends to a request it received.
fn answer_to(request: &str, answer: &Answer) -> String {
    let status = answer.status.trim();
    let status = if status.contains(' ') {
        status.to_string()
    } else {
        let code: u16 = status.parse().unwrap_or(500);
        format!("{code} {}", default_reason(code))
    };
    let mut out = format!("SIP/2.0 {status}\r\n");
    let lines = header_lines(request);
    for (name, value) in &lines {
        let copied = ["Via", "From", "Call-ID", "CSeq"]
            .iter()
            .any(|n| same_name(name, n));
        if copied {
            let _ = write!(out, "{name}: {value}\r\n");
        }
    }
    if let Some((name, value)) = lines.iter().find(|(n, _)| same_name(n, "To")) {
        let tag = if value.contains("tag=") {
            ""
        } else {
            ";tag=answer"
        };
        let _ = write!(out, "{name}: {value}{tag}\r\n");
    }
    for h in &answer.headers {
        let _ = write!(out, "{h}\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        302 => "Moved Temporarily",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Reason",
    }
}

/// Run every case of `text` (the cases file `file`) against `routes`;
/// returns one report per failed case.
fn run_cases(
    routes: &'static dyn Routes,
    file: &str,
    text: &str,
) -> Result<(usize, Vec<String>), String> {
    let cases: CaseFile = serde_saphyr::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let routes_file = routes.settings().source_path;
    let mut failures = Vec::new();
    let mut seen = BTreeMap::new();
    for case in &cases.cases {
        let at = text
            .lines()
            .position(|l| {
                l.trim_start().trim_start_matches("- ").starts_with("name:")
                    && l.contains(case.name.as_str())
            })
            .map_or(0, |i| i + 1);
        if let Some(first) = seen.insert(case.name.clone(), at) {
            failures.push(format!(
                "{file}:{at}: case `{}` has the name of the case at line {first}",
                case.name
            ));
        }
        let source_text = case
            .source
            .as_deref()
            .or(cases.source.as_deref())
            .unwrap_or("192.0.2.10:5060");
        let Ok(source) = source_text.parse::<SocketAddr>() else {
            failures.push(format!(
                "{file}:{at}: case `{}`: source `{source_text}` is not IP:PORT",
                case.name
            ));
            continue;
        };
        // A fresh core per case: no transaction leaks from one case to the next.
        let mut runner = Runner::new(routes);
        let input = sip_text(&case.send);
        let got = runner.handle(&input, source);
        let mut errors = Vec::new();
        check(&case.expect, &input, &got, &mut errors);
        let mut report = String::new();
        if !errors.is_empty() {
            report_failure(&mut report, "", &errors, routes_file, &got);
        }
        match (&case.answer, &case.expect_answer) {
            (Some(answer), Some(expect)) => {
                let request_sent = got.sent.iter().find(|s| !s.is_response());
                match request_sent {
                    None => report.push_str(
                        "  answer: no request was sent on, so there is nothing to answer\n",
                    ),
                    Some(sent) => {
                        let from = sent
                            .hop
                            .addr()
                            .unwrap_or_else(|| "192.0.2.99:5060".parse().expect("an address"));
                        let response = answer_to(&sent.text, answer);
                        let got2 = runner.handle(&response, from);
                        let mut errors = Vec::new();
                        check(expect, &response, &got2, &mut errors);
                        if !errors.is_empty() {
                            report_failure(
                                &mut report,
                                &format!("after the answer `{}`: ", first_line(&response)),
                                &errors,
                                routes_file,
                                &got2,
                            );
                        }
                    }
                }
            }
            (None, None) => {}
            _ => report.push_str("  `answer` and `expect_answer` go together\n"),
        }
        if !report.is_empty() {
            failures.push(format!(
                "{file}:{at}: case `{}` failed:\n{report}",
                case.name
            ));
        }
    }
    Ok((cases.cases.len(), failures))
}

fn report_failure(
    report: &mut String,
    step: &str,
    errors: &[String],
    routes_file: &str,
    got: &Outcome,
) {
    for e in errors {
        let _ = writeln!(report, "  {step}{e}");
    }
    let _ = writeln!(
        report,
        "    routes path: {}",
        path_text(routes_file, &got.events)
    );
    for s in &got.sent {
        let _ = writeln!(report, "    sent to {}: {}", s.to, first_line(&s.text));
    }
    for e in got.events.iter().filter(|e| !e.routes) {
        let _ = writeln!(report, "    proxy: {} {}", e.level, e.message);
    }
}

/// The cases file for the built routes: `SIPFORGE_ROUTE_TESTS`, else the
/// routes file's name with `.test.yaml` for `.yaml`.
fn cases_path(routes: &dyn Routes) -> PathBuf {
    if let Some(p) = std::env::var_os("SIPFORGE_ROUTE_TESTS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let source = routes.settings().source_path;
    let stem = source
        .strip_suffix(".yaml")
        .or_else(|| source.strip_suffix(".yml"))
        .unwrap_or(source);
    let path = PathBuf::from(format!("{stem}.test.yaml"));
    if path.is_absolute() {
        path
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }
}

#[test]
fn route_cases_pass() {
    let routes: &'static dyn Routes = &built::ROUTES;
    let path = cases_path(routes);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            // The repository's own routes must have cases; a user's may not yet.
            assert_ne!(
                routes.settings().source_path,
                "routes.yaml",
                "{}: {e}",
                path.display()
            );
            println!("no route cases: {} ({e})", path.display());
            return;
        }
    };
    let shown = path.display().to_string();
    let (count, failures) = run_cases(routes, &shown, &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(count > 0, "{shown}: no cases");
    assert!(
        failures.is_empty(),
        "{} of {count} route case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{count} route case(s) passed ({shown})");
}

/// The harness's own failure reports, on the repository's routes.yaml:
/// they name the case, its line, the routes lines, expected and actual.
#[test]
fn failures_name_the_case_the_routes_line_and_both_values() {
    let routes: &'static dyn Routes = &built::ROUTES;
    if routes.settings().source_path != "routes.yaml" {
        return; // written for the repository's routes.yaml
    }
    let text = r#"
cases:
  - name: wrong next hop
    send: |
      OPTIONS sip:bob@example.com SIP/2.0
      Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-w1
      From: <sip:alice@example.com>;tag=1
      To: <sip:bob@example.com>
      Call-ID: w1
      CSeq: 1 OPTIONS
    expect:
      forward:
        to: 127.0.0.1:9999
        added: ["X-Proxied: nope"]
      logs: ["never logged"]
"#;
    let (count, failures) = run_cases(routes, "inline.yaml", text).expect("parses");
    assert_eq!(count, 1);
    let report = failures.join("\n");
    for want in [
        "inline.yaml:3: case `wrong next hop` failed",
        "forward.to: expected 127.0.0.1:9999, got 127.0.0.1:5080",
        "forward.added: expected `X-Proxied: nope`",
        "routes.yaml:4 log → routes.yaml:6 forward",
        "logs: expected `never logged`",
        "Received OPTIONS to sip:bob@example.com - Forwarding",
    ] {
        assert!(report.contains(want), "missing `{want}` in:\n{report}");
    }
    let bad = run_cases(routes, "bad.yaml", "cases:\n  - name: x\n    sendd: y\n");
    assert!(bad.is_err(), "unknown keys are refused");
}

#[test]
fn messages_are_written_as_plain_lines() {
    let text = sip_text("OPTIONS sip:a@b SIP/2.0\nVia: x\n\nbody line\n");
    assert_eq!(
        text,
        "OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\nContent-Length: 11\r\n\r\nbody line\r\n"
    );
    assert!(same_name("i", "Call-ID") && same_name("call-id", "Call-ID"));
}

/// Every `tests/routes/*.yaml` fixture, for the harness's own tests.
#[allow(dead_code)]
mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

/// Stateful routes work offline too: `relay` answers 100 and sends the
/// request on; a 404 runs the `failure` route, which relays again.
#[test]
fn relay_and_failure_routes_run_offline() {
    let text = r#"
cases:
  - name: a 404 is rerouted to X-Second by the failure route
    send: |
      INVITE sip:bob@192.0.2.20:5060 SIP/2.0
      Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-r1
      From: <sip:alice@example.com>;tag=r1
      To: <sip:bob@example.com>
      Call-ID: r1
      CSeq: 1 INVITE
      Max-Forwards: 70
      X-Second: sip:192.0.2.30:5070
    expect:
      reply: { status: 100 }
      forward:
        to: 192.0.2.20:5060
        added: ["X-Proxied: You betcha"]
        headers: [Record-Route]
    answer: { status: 404 Not Found }
    expect_answer:
      forward:
        to: 192.0.2.30:5070
        added: ["X-Rerouted: 404"]
"#;
    let (count, failures) =
        run_cases(&fixtures::relay::ROUTES, "relay-cases.yaml", text).expect("parses");
    assert_eq!(count, 1);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
