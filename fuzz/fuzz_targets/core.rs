//! The sans-IO proxy core fed a sequence of operations: datagrams from a
//! few sources (built from parts, or raw bytes), answers to the requests it
//! sent (a response with a status from the input), its own outputs sent
//! back to it verbatim (as a loop would), clock jumps and timer runs.
//!
//! After every step:
//! - no panic;
//! - no more transactions than `max_transactions`;
//! - the timers progress: after `on_timeout(now)` the next deadline is
//!   later than `now` (a few rounds at one instant are allowed);
//! - nothing is sent to one of the core's own listening addresses;
//! - a bounded number of datagrams and bytes per datagram received;
//! - every output parses as SIP, is framed by CRLF, has no bytes after its
//!   Content-Length, and carries only header names that were in some input
//!   or that the proxy or the fuzz routes add;
//! - at the end, running the timers ends every transaction.
#![no_main]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sipforge_runtime::api::Routes;
use sipforge_runtime::auth::{Algorithm, AuthConfig, Authenticator, Credentials, NonceKey, digest};
use sipforge_runtime::proxy::{Core, CoreConfig, DrainMode, Identity, Listener, Outgoing};
use sipforge_runtime::sip::{Message, expand_compact};
use sipforge_runtime::transaction::Timers;

mod stateless {
    include!(concat!(env!("OUT_DIR"), "/routes_stateless.rs"));
}
mod stateful {
    include!(concat!(env!("OUT_DIR"), "/routes_stateful.rs"));
}
mod registrar {
    include!(concat!(env!("OUT_DIR"), "/routes_registrar.rs"));
}

const MAX_TRANSACTIONS: usize = 8;
/// The core's own sockets (as in `routes/*.yaml`).
const LISTEN: [&str; 2] = ["127.0.0.1:5060", "[::1]:5060"];
/// Where datagrams come from (never one of our own addresses: only a
/// datagram we sent ourselves comes from there, see `Op::Echo`).
const SOURCES: [&str; 5] = [
    "192.0.2.10:5060",
    "192.0.2.20:5080",
    "[2001:db8::1]:5060",
    "127.0.0.1:5080",
    "[::1]:5070",
];
const METHODS: [&str; 9] = [
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "PRACK", "INFO",
];
const URIS: [&str; 11] = [
    "sip:bob@192.0.2.20:5080",
    "sip:bob@192.0.2.20:5080;transport=udp",
    "sip:bob@[2001:db8::2]:5062",
    "sip:ping@192.0.2.30",
    "sip:alice@example.com",
    "sip:bob@127.0.0.1:5060",
    "sip:[::1]:5060",
    "sip:127.0.0.1;lr",
    "tel:+15551234567",
    "sip:bob@example.com",
    "sip:fork@example.com",
];
const BRANCHES: [&str; 5] = [
    "z9hG4bK-a1",
    "z9hG4bK-b2",
    "z9hG4bKsfT0.0.0.beef",
    "1234",
    "z9hG4bK-a1;received=192.0.2.99;rport",
];
const HEADER_NAMES: [&str; 20] = [
    "Route",
    "Record-Route",
    "X-Second",
    "X-Secret",
    "Contact",
    "Server",
    "Proxy-Require",
    "Require",
    "Supported",
    "Via",
    "v",
    "i",
    "l",
    "m",
    "Max-Forwards",
    "CSeq",
    "X-Other",
    "Reason",
    "Expires",
    "Path",
];
const HEADER_VALUES: [&str; 16] = [
    "<sip:127.0.0.1:5060;lr>",
    "<sip:[::1]:5060;lr>",
    "<sip:192.0.2.20:5080;lr>",
    "<sip:bob@192.0.2.40:5090>",
    "sip:192.0.2.40:5090",
    "sip:127.0.0.1:5060",
    "100rel",
    "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-v",
    "0",
    "70",
    "",
    "1 INVITE",
    "<sip:bob@192.0.2.41:5091>;q=0.5;expires=30",
    "<sip:bob@192.0.2.42:5092>;+sip.instance=\"<urn:uuid:1>\";reg-id=1, <sip:bob@[2001:db8::3]>;q=1",
    "*",
    "<sip:bob@192.0.2.43:5093;transport=tcp>;expires=0",
];
/// Invariants to leave unchecked while a known defect is being fixed
/// elsewhere, so that the fuzzer can look further: a comma-separated list
/// in `FUZZ_CORE_SKIP` (`self_send`, `amplification`, `leak`). Empty by
/// default.
static SKIP: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| std::env::var("FUZZ_CORE_SKIP").unwrap_or_default());

fn checked(invariant: &str) -> bool {
    !SKIP.split(',').any(|s| s.trim() == invariant)
}

/// Header names the proxy writes itself, or the fuzz routes add.
const ADDED: [&str; 20] = [
    "server",
    "via",
    "record-route",
    "max-forwards",
    "content-length",
    "to",
    "from",
    "call-id",
    "cseq",
    "retry-after",
    "unsupported",
    "x-fuzz-why",
    "x-fuzz-request",
    "x-fuzz-reply",
    "x-fuzz-rerouted",
    "date",
    "min-expires",
    "www-authenticate",
    "proxy-authenticate",
    // A binding's Path (RFC 3327), stored from a REGISTER's `Path`, is
    // the Route set of requests to it.
    "route",
];

#[derive(Arbitrary, Debug)]
struct Input {
    /// The routes: stateless, stateful or registrar (modulo 3).
    routes: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A request built from parts, from one of `SOURCES`.
    Request {
        source: u8,
        socket: bool,
        request: Request,
    },
    /// A request built from parts with credentials for the last challenge
    /// the core sent (right, or spoiled as `tweak` says).
    Authorized {
        source: u8,
        socket: bool,
        request: Request,
        tweak: u8,
    },
    /// Raw bytes from one of `SOURCES`.
    Raw {
        source: u8,
        socket: bool,
        bytes: Vec<u8>,
    },
    /// The next hop answers one of the requests we sent.
    Answer {
        output: u8,
        answer: Answer,
    },
    /// One of our outputs comes back verbatim from where it was sent.
    Echo {
        output: u8,
    },
    /// Time passes without timers running.
    Advance {
        millis: u16,
        seconds: u8,
    },
    /// Run the timers at the next deadline.
    Fire,
    Drain {
        mode: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Request {
    method: u8,
    uri: u8,
    branch: u8,
    more_vias: bool,
    max_forwards: Option<u8>,
    call: u8,
    cseq: u8,
    to_tag: bool,
    headers: Vec<(u8, u8)>,
    body: Vec<u8>,
    content_length: Option<u16>,
}

#[derive(Arbitrary, Debug)]
struct Answer {
    status: u16,
    to_tag: bool,
    record_route: bool,
    header: Option<(u8, u8)>,
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[usize::from(i) % list.len()]
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

fn build_request(r: &Request, source: SocketAddr) -> Vec<u8> {
    build_request_with(r, source, "")
}

/// The realm, users and password of `routes/registrar.yaml`'s `auth:`.
const REALM: &str = "fuzz.example";
const PASSWORD: &str = "secret";

/// The credentials file of the registrar routes: alice and bob, both
/// algorithms.
fn credentials() -> Credentials {
    let mut text = String::new();
    for user in ["alice", "bob"] {
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            text += &format!(
                "{user}:{REALM}:{}\n",
                digest::ha1(alg, user, REALM, PASSWORD)
            );
        }
    }
    Credentials::parse(&text, "fuzz").expect("the fuzz credentials")
}

/// A parameter of a challenge (`name="value"` or `name=value`).
fn challenge_param<'a>(challenge: &'a str, name: &str) -> Option<&'a str> {
    let at = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[at..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split([',', ' ']).next(),
    }
}

/// The credentials header for request `r` answering the newest challenge
/// in `history`, spoiled by the bits of `tweak`: 1 a wrong password, 2 the
/// other user, 4 the last challenge of several instead of the first, 8
/// the other header name, 16 no qop, 32 a digest URI that is not the
/// Request-URI, 64 nonce-count 1 whatever was used before. Empty when no
/// challenge was sent yet.
fn credentials_for(history: &[Outgoing], r: &Request, tweak: u8, nc: u32) -> String {
    let Some(challenge) = history.iter().rev().find_map(|o| {
        let text = String::from_utf8_lossy(o.bytes.as_ref()).into_owned();
        (text.starts_with("SIP/2.0 401") || text.starts_with("SIP/2.0 407")).then_some(text)
    }) else {
        return String::new();
    };
    let mut offers = challenge
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().ends_with("-Authenticate"))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()));
    let offer = if tweak & 4 != 0 {
        offers.last()
    } else {
        offers.next()
    };
    let Some((name, value)) = offer else {
        return String::new();
    };
    let (Some(nonce), Some(realm)) = (
        challenge_param(&value, "nonce"),
        challenge_param(&value, "realm"),
    ) else {
        return String::new();
    };
    let alg = challenge_param(&value, "algorithm")
        .and_then(Algorithm::parse)
        .unwrap_or(Algorithm::Md5);
    let method = pick(&METHODS, r.method);
    let user = match (method == "REGISTER") ^ (tweak & 2 != 0) {
        true => "bob",
        false => "alice",
    };
    let password = if tweak & 1 != 0 { "wrong" } else { PASSWORD };
    let uri = if tweak & 32 != 0 {
        "sip:other@example.com"
    } else {
        pick(&URIS, r.uri)
    };
    let ha1 = digest::ha1(alg, user, realm, password);
    let nc = format!("{:08x}", if tweak & 64 != 0 { 1 } else { nc });
    let qop = (tweak & 16 == 0).then_some(("auth", nc.as_str(), "c0ffee"));
    let response = digest::response(alg, ha1.as_bytes(), nonce, qop, method, uri);
    let header = match (name.starts_with("Proxy"), tweak & 8 != 0) {
        (true, false) | (false, true) => "Proxy-Authorization",
        _ => "Authorization",
    };
    let mut line = format!(
        "{header}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
        alg.name()
    );
    if let Some(opaque) = challenge_param(&value, "opaque") {
        line += &format!(", opaque=\"{opaque}\"");
    }
    if qop.is_some() {
        line += &format!(", qop=auth, nc={nc}, cnonce=\"c0ffee\"");
    }
    line + "\r\n"
}

/// [`build_request`] with `extra` header lines before Content-Length.
fn build_request_with(r: &Request, source: SocketAddr, extra: &str) -> Vec<u8> {
    let method = pick(&METHODS, r.method);
    let mut m = format!("{method} {} SIP/2.0\r\n", pick(&URIS, r.uri));
    let host = match source {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => a.to_string(),
    };
    m += &format!(
        "Via: SIP/2.0/UDP {host};branch={}\r\n",
        pick(&BRANCHES, r.branch)
    );
    if r.more_vias {
        m += "Via: SIP/2.0/UDP 192.0.2.8:5060;branch=z9hG4bK-up\r\n";
    }
    if let Some(mf) = r.max_forwards {
        m += &format!("Max-Forwards: {}\r\n", mf % 72);
    }
    m += "From: <sip:alice@example.com>;tag=f1\r\n";
    m += "To: <sip:bob@example.com>";
    if r.to_tag {
        m += ";tag=t1";
    }
    m += "\r\n";
    m += &format!("Call-ID: call-{}\r\n", r.call % 4);
    let cseq_method = if method == "ACK" || method == "CANCEL" {
        "INVITE"
    } else {
        method
    };
    let cseq_method = if r.cseq & 0x80 != 0 {
        method
    } else {
        cseq_method
    };
    m += &format!("CSeq: {} {cseq_method}\r\n", 1 + r.cseq % 3);
    for &(n, v) in r.headers.iter().take(6) {
        m += &format!(
            "{}: {}\r\n",
            pick(&HEADER_NAMES, n),
            pick(&HEADER_VALUES, v)
        );
    }
    m += extra;
    let length = r.content_length.map_or(r.body.len(), usize::from);
    m += &format!("Content-Length: {length}\r\n\r\n");
    let mut bytes = m.into_bytes();
    bytes.extend_from_slice(&r.body[..r.body.len().min(512)]);
    bytes
}

/// The response a next hop would send to `request` (None when it is not a
/// request, or an ACK).
fn build_answer(request: &[u8], a: &Answer) -> Option<Vec<u8>> {
    let msg = Message::parse(request).ok()?;
    if !msg.is_request() || msg.method() == Some("ACK") {
        return None;
    }
    let status = 100 + a.status % 600;
    let mut out = format!("SIP/2.0 {status} Fuzz\r\n").into_bytes();
    for h in msg.headers() {
        let name = canonical(msg.name_text(h));
        let copy = matches!(name.as_str(), "via" | "from" | "call-id" | "cseq")
            || (a.record_route && name == "record-route");
        if copy {
            out.extend_from_slice(&request[h.line_range.clone()]);
        } else if name == "to" {
            let line = &request[h.line_range.clone()];
            let text = String::from_utf8_lossy(line);
            let text = text.trim_end_matches(['\r', '\n']);
            out.extend_from_slice(text.as_bytes());
            if a.to_tag && status > 100 && !text.contains(";tag=") {
                out.extend_from_slice(b";tag=fz");
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some((n, v)) = a.header {
        out.extend_from_slice(
            format!(
                "{}: {}\r\n",
                pick(&HEADER_NAMES, n),
                pick(&HEADER_VALUES, v)
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(out)
}

/// A header name lowercased, compact forms expanded.
fn canonical(name: &str) -> String {
    match name.as_bytes() {
        [c] => expand_compact(*c).unwrap_or(name).to_ascii_lowercase(),
        _ => name.to_ascii_lowercase(),
    }
}

struct Run {
    core: Core,
    now: Instant,
    listen: [SocketAddr; 2],
    /// Header names of every datagram given to the core.
    seen: BTreeSet<String>,
    /// The latest outputs, for `Answer` and `Echo`.
    history: Vec<Outgoing>,
    out: Vec<Outgoing>,
    /// The nonce-count of the next `Authorized` request.
    nc: u32,
}

impl Run {
    fn receive(&mut self, datagram: &[u8], source: SocketAddr, socket: usize) {
        if let Ok(msg) = Message::parse(datagram) {
            for h in msg.headers() {
                self.seen.insert(canonical(msg.name_text(h)));
            }
        }
        self.out.clear();
        self.core
            .handle(self.now, datagram, source, socket, &mut self.out);
        assert!(
            !checked("amplification") || self.out.len() <= 4,
            "{} datagrams sent for one received",
            self.out.len()
        );
        let sent: usize = self.out.iter().map(|o| o.bytes.as_ref().len()).sum();
        assert!(
            !checked("amplification") || sent <= 4 * (datagram.len() + 1024),
            "{sent} bytes sent for {} received",
            datagram.len()
        );
        self.check_outputs("handle");
    }

    fn fire(&mut self) {
        let Some(deadline) = self.core.next_deadline() else {
            return;
        };
        self.now = self.now.max(deadline);
        for round in 0.. {
            self.out.clear();
            self.core.on_timeout(self.now, &mut self.out);
            assert!(
                self.out.len() <= 4 * (MAX_TRANSACTIONS + 1),
                "{} datagrams sent by one timer run",
                self.out.len()
            );
            self.check_outputs("on_timeout");
            match self.core.next_deadline() {
                Some(next) if next <= self.now => assert!(
                    round < 16,
                    "timers do not progress: a deadline {:?} at or before now after {round} runs",
                    self.now - next
                ),
                _ => break,
            }
        }
    }

    fn check_outputs(&mut self, phase: &str) {
        assert!(
            self.core.transactions() <= MAX_TRANSACTIONS,
            "{} transactions, max {MAX_TRANSACTIONS}",
            self.core.transactions()
        );
        for o in &self.out {
            let bytes = o.bytes.as_ref();
            let shown = String::from_utf8_lossy(bytes);
            assert!(
                o.socket < self.listen.len(),
                "{phase}: socket {} of 2",
                o.socket
            );
            if let Some(to) = &o.to.addr()
                && checked("self_send")
            {
                assert!(
                    !self.listen.contains(to),
                    "{phase}: sent to our own socket {to}:\n{shown}"
                );
            }
            let msg = Message::parse(bytes)
                .unwrap_or_else(|e| panic!("{phase}: an output does not parse ({e}):\n{shown}"));
            assert_eq!(
                msg.len(),
                bytes.len(),
                "{phase}: bytes after the message:\n{shown}"
            );
            let head = &bytes[..msg.body_start()];
            assert!(
                head.ends_with(b"\r\n\r\n"),
                "{phase}: header block not ended by CRLF CRLF:\n{shown}"
            );
            for (i, &b) in head.iter().enumerate() {
                assert!(
                    b != b'\n' || (i > 0 && head[i - 1] == b'\r'),
                    "{phase}: bare LF at {i}:\n{shown}"
                );
            }
            if let Some(length) = msg.content_length() {
                assert_eq!(
                    length,
                    msg.body().len() as u64,
                    "{phase}: Content-Length disagrees with the body:\n{shown}"
                );
            }
            for h in msg.headers() {
                let name = canonical(msg.name_text(h));
                assert!(
                    self.seen.contains(&name) || ADDED.contains(&name.as_str()),
                    "{phase}: header `{name}` in an output was in no input:\n{shown}"
                );
            }
        }
        self.history.extend(self.out.iter().cloned());
        let excess = self.history.len().saturating_sub(16);
        self.history.drain(..excess);
    }
}

fuzz_target!(|input: Input| {
    let routes: &'static dyn Routes = match input.routes % 3 {
        0 => &stateless::ROUTES,
        1 => &stateful::ROUTES,
        _ => &registrar::ROUTES,
    };
    let listen = LISTEN.map(addr);
    let listeners = listen
        .iter()
        .map(|a| Listener::new(*a, None).expect("a listener"))
        .collect();
    let config = CoreConfig {
        timers: Timers::default(),
        max_transactions: MAX_TRANSACTIONS,
        // A few shards: transactions of one input spread over several.
        shards: 4,
        ..CoreConfig::default()
    };
    let core = Core::new(routes, Identity::new(listeners), config);
    if routes.settings().auth.is_some() {
        core.set_authenticator(std::sync::Arc::new(Authenticator::new(
            AuthConfig::from_settings(routes.settings().auth.as_ref().expect("auth settings")),
            NonceKey::from_bytes(b"a fixed key for the fuzz target").expect("a nonce key"),
            credentials(),
        )));
    }
    let now = Instant::now();
    core.start(now);
    let mut run = Run {
        core,
        now,
        listen,
        seen: BTreeSet::new(),
        history: Vec::new(),
        out: Vec::new(),
        nc: 1,
    };
    for op in input.ops.iter().take(64) {
        match op {
            Op::Request {
                source,
                socket,
                request,
            } => {
                let source = addr(pick(&SOURCES, *source));
                let bytes = build_request(request, source);
                run.receive(&bytes, source, usize::from(*socket));
            }
            Op::Authorized {
                source,
                socket,
                request,
                tweak,
            } => {
                let source = addr(pick(&SOURCES, *source));
                let extra = credentials_for(&run.history, request, *tweak, run.nc);
                run.nc += 1;
                let bytes = build_request_with(request, source, &extra);
                run.receive(&bytes, source, usize::from(*socket));
            }
            Op::Raw {
                source,
                socket,
                bytes,
            } => {
                let source = addr(pick(&SOURCES, *source));
                run.receive(bytes, source, usize::from(*socket));
            }
            Op::Answer { output, answer } => {
                let Some(o) = run
                    .history
                    .get(usize::from(*output) % run.history.len().max(1))
                else {
                    continue;
                };
                let (Some(from), socket) = (o.to.addr(), o.socket) else {
                    continue;
                };
                if let Some(bytes) = build_answer(o.bytes.as_ref(), answer) {
                    run.receive(&bytes, from, socket);
                }
            }
            Op::Echo { output } => {
                let Some(o) = run
                    .history
                    .get(usize::from(*output) % run.history.len().max(1))
                else {
                    continue;
                };
                let (Some(from), socket) = (o.to.addr(), o.socket) else {
                    continue;
                };
                let bytes = o.bytes.as_ref().to_vec();
                run.receive(&bytes, from, socket);
            }
            Op::Advance { millis, seconds } => {
                run.now += Duration::from_millis(u64::from(*millis))
                    + Duration::from_secs(u64::from(*seconds));
            }
            Op::Fire => run.fire(),
            Op::Drain { mode } => {
                let mode = match mode % 3 {
                    0 => DrainMode::Stateless,
                    1 => DrainMode::Reject,
                    _ => DrainMode::Relay,
                };
                run.core.start_draining(mode);
            }
        }
    }
    // Whatever happened, the timers end every transaction: one without a
    // deadline left would never go.
    for _ in 0..2000 {
        if run.core.next_deadline().is_none() {
            break;
        }
        run.fire();
    }
    if run.core.next_deadline().is_none() && checked("leak") {
        let last: Vec<String> = run
            .history
            .iter()
            .map(|o| {
                let text = String::from_utf8_lossy(o.bytes.as_ref());
                format!("to {}: {}", o.to, text.lines().next().unwrap_or(""))
            })
            .collect();
        assert_eq!(
            run.core.transactions(),
            0,
            "transactions left with no timer to end them; the last outputs:\n{}",
            last.join("\n")
        );
    }
});
