//! Prometheus metrics: process-wide counters that the proxy core bumps on
//! the hot path, and their OpenMetrics text exposition (served over HTTP
//! by [`http`] when `--metrics ADDR` is given).
//!
//! Every series exists from the start (labels come from fixed sets, the
//! method label falls back to `other`), so recording is one relaxed atomic
//! add on a counter picked by index: no lock, no hashing, no allocation.
//! The add goes to the calling thread's own slot of the counter
//! ([`per_thread`]), summed when the metrics are encoded, so that workers
//! on different cores do not write one cache line in turn.
//! The counters are process-wide, like Kamailio's statistics: one proxy
//! core per process in production; tests that run several cores in one
//! process compare deltas.

pub mod http;
mod per_thread;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The hot-path counters: each thread adds in its own cache line.
type Counter = prometheus_client::metrics::counter::Counter<u64, per_thread::PerThread>;
/// A counter that one thread writes (a worker's own).
type OwnCounter = prometheus_client::metrics::counter::Counter;

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Methods that get their own `method` label; anything else counts as `other`.
pub const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// Status classes; index = status / 100 - 1, anything else is `other`.
const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "other"];

/// Why a message was dropped (the `reason` label of `sipforge_drops_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A `drop` step in the routes.
    Route,
    /// The request route ended without forward, relay, reply or drop.
    Undecided,
    /// Parsed, but failed validation (and could not be answered).
    Malformed,
    /// A response whose top Via is not ours (§18.1.2).
    NotOurs,
    /// No next hop: no host in the target, or an unknown destination set.
    NoRoute,
    /// A request with no Via to answer to, or a response with no usable second Via.
    NoVia,
    /// A response carrying one of our branch prefixes whose branch we never
    /// made (forged or corrupted): its keyed check failed.
    ForgedBranch,
    /// A response to one of our branches from an address other than the
    /// one the branch was sent to (`strict_response_source`).
    WrongSource,
    /// A request whose next hop is one of our own sockets (answered 482
    /// unless it is an ACK), or whose answer would go to one (dropped).
    SelfLoop,
    /// A message larger than a UDP datagram can carry (answered 513 when a request).
    TooLarge,
    /// The next hop's name did not resolve (or not to an address of the
    /// socket's family).
    Unresolved,
    /// Over the bounds of name resolution (lookups running, messages waiting).
    ResolverBusy,
    /// A datagram on the sibling link that is not a passed-on response for
    /// one of our transactions.
    Sibling,
    /// A request from a source over `limits.per_source`, or banned.
    RateLimited,
    /// A message for a connection (TCP) that could not be sent: its
    /// queue was full, the connect failed, or too many connections were open.
    Unsent,
}

impl DropReason {
    const ALL: [DropReason; 15] = [
        DropReason::Route,
        DropReason::Undecided,
        DropReason::Malformed,
        DropReason::NotOurs,
        DropReason::NoRoute,
        DropReason::NoVia,
        DropReason::ForgedBranch,
        DropReason::WrongSource,
        DropReason::SelfLoop,
        DropReason::TooLarge,
        DropReason::Unresolved,
        DropReason::ResolverBusy,
        DropReason::Sibling,
        DropReason::RateLimited,
        DropReason::Unsent,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::Route => "route",
            DropReason::Undecided => "undecided",
            DropReason::Malformed => "malformed",
            DropReason::NotOurs => "not_ours",
            DropReason::NoRoute => "no_route",
            DropReason::NoVia => "no_via",
            DropReason::ForgedBranch => "forged_branch",
            DropReason::WrongSource => "wrong_source",
            DropReason::SelfLoop => "self_loop",
            DropReason::TooLarge => "too_large",
            DropReason::Unresolved => "unresolved",
            DropReason::ResolverBusy => "resolver_busy",
            DropReason::Sibling => "sibling",
            DropReason::RateLimited => "rate_limited",
            DropReason::Unsent => "unsent",
        }
    }
}

/// Why a transaction made no new branch (`sipforge_branches_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BranchRefusal {
    /// The same next hop and Request-URI were tried before in this transaction.
    AlreadyTried,
    /// The transaction has `max_branches` branches already.
    MaxBranches,
    /// Timer C ended the transaction: no new branch after it.
    TimerC,
}

impl BranchRefusal {
    const ALL: [BranchRefusal; 3] = [
        BranchRefusal::AlreadyTried,
        BranchRefusal::MaxBranches,
        BranchRefusal::TimerC,
    ];

    fn label(self) -> &'static str {
        match self {
            BranchRefusal::AlreadyTried => "already_tried",
            BranchRefusal::MaxBranches => "max_branches",
            BranchRefusal::TimerC => "timer_c",
        }
    }
}

/// Why `authenticate` did not accept a request
/// (`sipforge_auth_failures_total{reason}`); the labels of
/// `auth::Failure::label`.
pub const AUTH_FAILURES: [&str; 11] = [
    "no_credentials",
    "malformed",
    "unknown_user",
    "wrong_password",
    "stale_nonce",
    "forged_nonce",
    "replayed",
    "wrong_realm",
    "unsupported_algorithm",
    "user_mismatch",
    "unavailable",
];

/// The transports carried over connections (the `transport` label of the
/// connection metrics), in [`crate::transport::Transport`] order after udp.
pub const STREAM_TRANSPORTS: [&str; 4] = ["tcp", "tls", "ws", "wss"];

/// Why a connection closed (`sipforge_connections_closed_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// No traffic in either direction for the idle timeout.
    Idle,
    /// Refused at accept (or not opened): too many connections.
    Limit,
    /// A read or write error, a write that timed out, a failed connect.
    Error,
    /// The peer closed it.
    Peer,
    /// A message over the size limit (or a Content-Length announcing one).
    Oversize,
    /// A message that did not complete within the header timeout.
    SlowHeader,
    /// An invalid Content-Length: the stream cannot be framed further.
    Malformed,
    /// A TLS handshake that failed or did not finish in time.
    Handshake,
    /// Refused at accept: its source has the most connections one source
    /// may have open.
    SourceLimit,
    /// An accepted connection that sent no complete message within the
    /// header timeout of being set up (keep-alives do not count).
    Silent,
    /// Its source is banned by `limits.per_source` (refused at accept, or
    /// closed when the ban starts).
    Banned,
}

impl CloseReason {
    const ALL: [CloseReason; 11] = [
        CloseReason::Idle,
        CloseReason::Limit,
        CloseReason::Error,
        CloseReason::Peer,
        CloseReason::Oversize,
        CloseReason::SlowHeader,
        CloseReason::Malformed,
        CloseReason::Handshake,
        CloseReason::SourceLimit,
        CloseReason::Silent,
        CloseReason::Banned,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Limit => "limit",
            CloseReason::Error => "error",
            CloseReason::Peer => "peer",
            CloseReason::Oversize => "oversize",
            CloseReason::SlowHeader => "slow_header",
            CloseReason::Malformed => "malformed",
            CloseReason::Handshake => "handshake",
            CloseReason::SourceLimit => "source_limit",
            CloseReason::Silent => "silent",
            CloseReason::Banned => "banned",
        }
    }
}

/// Answers to REGISTER counted by code (`other` for the rest).
const REGISTER_CODES: [&str; 8] = ["200", "400", "403", "423", "500", "503", "401", "other"];

type Label = [(&'static str, &'static str); 1];

/// The counters and gauges, each series created up front.
struct Metrics {
    registry: Registry,
    requests: [Counter; METHODS.len() + 1],
    responses: [Counter; CLASSES.len()],
    stateless_replies: [Counter; CLASSES.len()],
    forwarded_requests: Counter,
    forwarded_responses: Counter,
    relayed: Counter,
    rejected: Counter,
    drops: [Counter; DropReason::ALL.len()],
    parse_errors: Counter,
    retransmissions_received: Counter,
    retransmissions_sent: Counter,
    failure_routes: Counter,
    sibling: [Counter; 2],
    route_step_errors: Counter,
    loops: Counter,
    pool_hops: Counter,
    branches_refused: [Counter; BranchRefusal::ALL.len()],
    log_lines_suppressed: Counter,
    name_lookups: [Counter; 2],
    auth_successes: Counter,
    auth_challenges: Counter,
    auth_failures: [Counter; AUTH_FAILURES.len()],
    bans: Counter,
    register_replies: [Counter; REGISTER_CODES.len()],
    lookups: [Counter; 2],
    store_errors: Counter,
    store_seconds: [Histogram; 2],
    rtpengine_requests: [Counter; 6],
    rtpengine_seconds: Histogram,
    rtpengines_up: Gauge,
    keepalives: [Counter; 2],
    aors: Gauge,
    contacts: Gauge,
    transactions: Gauge,
    draining: Gauge,
    connections_open: [Gauge; STREAM_TRANSPORTS.len()],
    connections_accepted: [Counter; STREAM_TRANSPORTS.len()],
    connections_opened: [Counter; STREAM_TRANSPORTS.len()],
    connections_closed: [Counter; CloseReason::ALL.len()],
    stream_messages: [Counter; STREAM_TRANSPORTS.len()],
    tls_handshake_failures: Counter,
    transport_errors: Counter,
    /// Per worker thread: a series is made when the worker starts.
    workers: Family<Vec<(&'static str, String)>, OwnCounter>,
}

/// A labelled counter family with one series per label value, registered
/// under `name`; returns the series in label order.
fn family<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    key: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Label, Counter>::default();
    let series = values.map(|v| family.get_or_create(&[(key, v)]).clone());
    registry.register(name, help, family);
    series
}

/// A labelled gauge family with one series per label value.
fn gauge_family<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    key: &'static str,
    values: [&'static str; N],
) -> [Gauge; N] {
    let family = Family::<Label, Gauge>::default();
    let series = values.map(|v| family.get_or_create(&[(key, v)]).clone());
    registry.register(name, help, family);
    series
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help, c.clone());
    c
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::default();
        let mut methods = [""; METHODS.len() + 1];
        methods[..METHODS.len()].copy_from_slice(&METHODS);
        methods[METHODS.len()] = "other";
        let drop_labels = DropReason::ALL.map(DropReason::label);
        Metrics {
            requests: family(
                &mut r,
                "sipforge_requests_received",
                "SIP requests received and parsed, by method",
                "method",
                methods,
            ),
            responses: family(
                &mut r,
                "sipforge_replies_received",
                "SIP responses received and parsed, by status class",
                "class",
                CLASSES,
            ),
            stateless_replies: family(
                &mut r,
                "sipforge_stateless_replies_sent",
                "Responses the proxy made itself without a transaction (reply steps, 4xx for bad requests, 483, 420, 503 when full, 200 to CANCEL), by status class",
                "class",
                CLASSES,
            ),
            forwarded_requests: counter(
                &mut r,
                "sipforge_forwarded_requests",
                "Requests forwarded statelessly (forward, or relay of an ACK or while draining)",
            ),
            forwarded_responses: counter(
                &mut r,
                "sipforge_forwarded_replies",
                "Responses forwarded statelessly to the next Via",
            ),
            relayed: counter(
                &mut r,
                "sipforge_relayed_requests",
                "Requests relayed statefully (transactions created)",
            ),
            rejected: counter(
                &mut r,
                "sipforge_transactions_rejected",
                "Requests answered 503 because the transaction table was full (or by a draining instance in reject mode)",
            ),
            drops: family(
                &mut r,
                "sipforge_drops",
                "Messages dropped, by reason",
                "reason",
                drop_labels,
            ),
            parse_errors: counter(
                &mut r,
                "sipforge_parse_errors",
                "Datagrams that were not a SIP message",
            ),
            retransmissions_received: counter(
                &mut r,
                "sipforge_retransmissions_received",
                "Request retransmissions absorbed by their transaction",
            ),
            retransmissions_sent: counter(
                &mut r,
                "sipforge_retransmissions_sent",
                "Requests and responses retransmitted by the transaction timers",
            ),
            failure_routes: counter(
                &mut r,
                "sipforge_failure_route_runs",
                "Runs of the failure route",
            ),
            sibling: family(
                &mut r,
                "sipforge_sibling_replies",
                "Responses for another instance's transaction passed to it over the sibling link (passed), and received from a sibling (received)",
                "direction",
                ["passed", "received"],
            ),
            route_step_errors: counter(
                &mut r,
                "sipforge_route_step_errors",
                "Route steps skipped at run time (a value with CR/LF/NUL, an invalid URI, an unknown destination set)",
            ),
            loops: counter(
                &mut r,
                "sipforge_loops_detected",
                "Requests answered 482 Loop Detected: they came back carrying a Via of ours for the same request (RFC 3261 §16.3 step 4), or their next hop was one of our own sockets",
            ),
            pool_hops: counter(
                &mut r,
                "sipforge_pool_hops",
                "Requests another instance of the pool sent us for a phone registered here (a valid flow token), relayed to it without running the routes",
            ),
            branches_refused: family(
                &mut r,
                "sipforge_branches_refused",
                "New branches a transaction refused to make: a target it already tried, more than max_branches, or after Timer C ended it",
                "reason",
                BranchRefusal::ALL.map(BranchRefusal::label),
            ),
            log_lines_suppressed: counter(
                &mut r,
                "sipforge_log_lines_suppressed",
                "Log lines left out by the per-call-site rate limit (WARN lines a sender can trigger, such as malformed datagrams)",
            ),
            name_lookups: family(
                &mut r,
                "sipforge_name_lookups",
                "Lookups of next hop names (answers are cached: 30 s, failures 5 s), by result",
                "result",
                ["resolved", "failed"],
            ),
            auth_successes: counter(
                &mut r,
                "sipforge_auth_successes",
                "Requests `authenticate` accepted (valid credentials of the expected user)",
            ),
            auth_challenges: counter(
                &mut r,
                "sipforge_auth_challenges",
                "401/407 challenges sent by `authenticate`",
            ),
            auth_failures: family(
                &mut r,
                "sipforge_auth_failures",
                "Requests `authenticate` did not accept, by reason (no_credentials is the normal first request of a client; user_mismatch got 403, unavailable 500, the rest a new challenge)",
                "reason",
                AUTH_FAILURES,
            ),
            bans: counter(
                &mut r,
                "sipforge_sources_banned",
                "Sources banned for going over limits.per_source (their requests are then dropped for `ban`, counted in sipforge_drops_total{reason=\"rate_limited\"})",
            ),
            register_replies: family(
                &mut r,
                "sipforge_register_replies",
                "Answers `save` gave to REGISTER requests, by code",
                "code",
                REGISTER_CODES,
            ),
            lookups: family(
                &mut r,
                "sipforge_lookups",
                "`lookup` results: hit (the address-of-record has contacts) or miss",
                "result",
                ["hit", "miss"],
            ),
            store_errors: counter(
                &mut r,
                "sipforge_registrar_store_errors",
                "Location store operations that failed (REGISTER answered 500, lookup taken as not found)",
            ),
            store_seconds: {
                let f =
                    Family::<[(&'static str, &'static str); 1], Histogram>::new_with_constructor(
                        || Histogram::new(exponential_buckets(0.000_1, 4.0, 9)),
                    );
                r.register(
                    "sipforge_registrar_store_seconds",
                    "Time a shared location store took to answer, by operation (timeouts included)",
                    f.clone(),
                );
                // One label set at a time: `get_or_create` holds the
                // family's lock until its guard is dropped.
                let lookup = f.get_or_create(&[("op", "lookup")]).clone();
                let save = f.get_or_create(&[("op", "save")]).clone();
                [lookup, save]
            },
            rtpengine_requests: family(
                &mut r,
                "sipforge_rtpengine_requests",
                "ng requests rtp_manage sent to rtpengine, by command and result (error: an error reply, or no rtpengine answered)",
                "request",
                [
                    "offer_ok",
                    "offer_error",
                    "answer_ok",
                    "answer_error",
                    "delete_ok",
                    "delete_error",
                ],
            ),
            rtpengine_seconds: {
                let h = Histogram::new(exponential_buckets(0.000_1, 4.0, 9));
                r.register(
                    "sipforge_rtpengine_seconds",
                    "Time rtpengine took to answer an ng request (retries and failover included)",
                    h.clone(),
                );
                h
            },
            keepalives: family(
                &mut r,
                "sipforge_keepalives",
                "Keep-alives to phones registered from behind NAT (registrar.keepalive): sent, and OPTIONS not answered by the next one",
                "event",
                ["sent", "unanswered"],
            ),
            rtpengines_up: gauge(
                &mut r,
                "sipforge_rtpengines_up",
                "rtpengine instances answering (a dead one is pinged until it answers)",
            ),
            aors: gauge(
                &mut r,
                "sipforge_registered_aors",
                "Addresses-of-record with bindings (expired ones count until swept, within 20 s)",
            ),
            contacts: gauge(
                &mut r,
                "sipforge_registered_contacts",
                "Bindings in the location store (expired ones count until swept, within 20 s)",
            ),
            transactions: gauge(
                &mut r,
                "sipforge_transactions_active",
                "Transactions in the table",
            ),
            draining: gauge(
                &mut r,
                "sipforge_draining",
                "1 once SIGTERM was received and the instance is draining",
            ),
            connections_open: gauge_family(
                &mut r,
                "sipforge_connections_open",
                "Connections open (accepted, and opened by the proxy), by transport",
                "transport",
                STREAM_TRANSPORTS,
            ),
            connections_accepted: family(
                &mut r,
                "sipforge_connections_accepted",
                "Connections accepted on the listeners (including those closed at once for the connection limit), by transport",
                "transport",
                STREAM_TRANSPORTS,
            ),
            connections_opened: family(
                &mut r,
                "sipforge_connections_opened",
                "Connections the proxy opened to send a message (connect attempts), by transport",
                "transport",
                STREAM_TRANSPORTS,
            ),
            connections_closed: family(
                &mut r,
                "sipforge_connections_closed",
                "Connections closed (or refused, or failed to connect), by reason",
                "reason",
                CloseReason::ALL.map(CloseReason::label),
            ),
            stream_messages: family(
                &mut r,
                "sipforge_messages_received",
                "SIP messages received over connections, by transport (UDP datagrams: sipforge_worker_messages_total)",
                "transport",
                STREAM_TRANSPORTS,
            ),
            tls_handshake_failures: counter(
                &mut r,
                "sipforge_tls_handshake_failures",
                "TLS handshakes that failed or timed out (accepted and opened connections)",
            ),
            transport_errors: counter(
                &mut r,
                "sipforge_transport_errors",
                "Relayed requests that could not be sent (no connection, failed TLS handshake), handled as a 503 from the next hop (RFC 3261 §8.1.3.1)",
            ),
            workers: {
                let family = Family::<Vec<(&'static str, String)>, OwnCounter>::default();
                r.register(
                    "sipforge_worker_messages",
                    "Datagrams received by each worker thread (workers share a socket; the kernel hands each datagram to one of them)",
                    family.clone(),
                );
                family
            },
            registry: r,
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// `authenticate` accepted a request.
pub fn auth_success() {
    METRICS.auth_successes.inc();
}

/// `authenticate` did not accept a request (`reason`: a label of
/// [`AUTH_FAILURES`]); `challenged`: a 401/407 was sent.
pub fn auth_failure(reason: &str, challenged: bool) {
    if challenged {
        METRICS.auth_challenges.inc();
    }
    if let Some(i) = AUTH_FAILURES.iter().position(|r| *r == reason) {
        METRICS.auth_failures[i].inc();
    }
}

/// `save` answered a REGISTER with `code`.
pub fn register_answered(code: u16) {
    let label = code.to_string();
    let i = REGISTER_CODES
        .iter()
        .position(|c| *c == label)
        .unwrap_or(REGISTER_CODES.len() - 1);
    METRICS.register_replies[i].inc();
}

/// A `lookup` found contacts (`hit`) or none.
pub fn lookup_done(hit: bool) {
    METRICS.lookups[usize::from(!hit)].inc();
}

/// A location store operation failed.
pub fn registrar_store_error() {
    METRICS.store_errors.inc();
}

/// A shared location store answered `op` (`lookup`, `save`) in `took`.
pub fn store_latency(op: &str, took: std::time::Duration) {
    let i = usize::from(op != "lookup");
    METRICS.store_seconds[i].observe(took.as_secs_f64());
}

/// An ng request `command` (`offer`, `answer`, `delete`) ended, `ok` or
/// not, after `took`.
pub fn rtpengine_request(command: &str, ok: bool, took: std::time::Duration) {
    let base = match command {
        "offer" => 0,
        "answer" => 2,
        _ => 4,
    };
    METRICS.rtpengine_requests[base + usize::from(!ok)].inc();
    METRICS.rtpengine_seconds.observe(took.as_secs_f64());
}

/// A keep-alive went to a phone behind NAT.
pub fn keepalive_sent() {
    METRICS.keepalives[0].inc();
}

/// A keep-alive OPTIONS was not answered before the next one was due.
pub fn keepalive_unanswered() {
    METRICS.keepalives[1].inc();
}

/// rtpengine instances answering.
pub fn set_rtpengines_up(n: usize) {
    METRICS.rtpengines_up.set(n as i64);
}

/// Addresses-of-record and bindings in the location store.
pub fn set_registrations(aors: usize, contacts: usize) {
    METRICS.aors.set(aors as i64);
    METRICS.contacts.set(contacts as i64);
}

/// A source went over `limits.per_source` and is banned.
pub fn source_banned() {
    METRICS.bans.inc();
}

/// The index of a stream transport in [`STREAM_TRANSPORTS`] (udp: none).
fn stream_index(transport: crate::transport::Transport) -> Option<usize> {
    use crate::transport::Transport;
    // In the order of STREAM_TRANSPORTS (a unit test holds them together).
    match transport {
        Transport::Udp => None,
        Transport::Tcp => Some(0),
        Transport::Tls => Some(1),
        Transport::Ws => Some(2),
        Transport::Wss => Some(3),
    }
}

/// A connection was accepted (`accepted`) or opened by us; it is open now
/// (until [`connection_closed`]), unless it is refused at once.
pub fn connection_started(transport: crate::transport::Transport, accepted: bool) {
    if let Some(i) = stream_index(transport) {
        if accepted {
            METRICS.connections_accepted[i].inc();
        } else {
            METRICS.connections_opened[i].inc();
        }
    }
}

/// The number of open connections of `transport` changed by `delta`.
pub fn connections_open(transport: crate::transport::Transport, delta: i64) {
    if let Some(i) = stream_index(transport) {
        METRICS.connections_open[i].inc_by(delta);
    }
}

/// A connection closed (or was refused) for `reason`.
pub fn connection_closed(reason: CloseReason) {
    METRICS.connections_closed[reason as usize].inc();
}

/// A relayed request could not be sent (handled as a 503).
pub fn transport_error() {
    METRICS.transport_errors.inc();
}

/// A TLS handshake failed or timed out.
pub fn tls_handshake_failed() {
    METRICS.tls_handshake_failures.inc();
}

/// A message arrived over a connection of `transport`.
pub fn stream_message(transport: crate::transport::Transport) {
    if let Some(i) = stream_index(transport) {
        METRICS.stream_messages[i].inc();
    }
}

/// `sipforge_build_info`: set once at start by the binary.
static BUILD_INFO: OnceLock<Registry> = OnceLock::new();

/// Index of a method in [`METHODS`], or the `other` slot.
fn method_index(method: &str) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len())
}

fn class_index(status: u16) -> usize {
    match status {
        100..=699 => usize::from(status / 100 - 1),
        _ => CLASSES.len() - 1,
    }
}

/// A request was received and parsed.
pub fn request_received(method: &str) {
    METRICS.requests[method_index(method)].inc();
}

/// A response was received and parsed.
pub fn reply_received(status: u16) {
    METRICS.responses[class_index(status)].inc();
}

/// The proxy answered a request itself, statelessly.
pub fn stateless_reply_sent(status: u16) {
    METRICS.stateless_replies[class_index(status)].inc();
}

/// A request was forwarded statelessly.
pub fn request_forwarded() {
    METRICS.forwarded_requests.inc();
}

/// A response was forwarded statelessly.
pub fn reply_forwarded() {
    METRICS.forwarded_responses.inc();
}

/// A transaction was created by `relay`.
pub fn relayed() {
    METRICS.relayed.inc();
}

/// A request got 503 instead of a transaction.
pub fn transaction_rejected() {
    METRICS.rejected.inc();
}

/// A message was dropped.
pub fn dropped(reason: DropReason) {
    METRICS.drops[reason as usize].inc();
}

/// A datagram did not parse as SIP.
pub fn parse_error() {
    METRICS.parse_errors.inc();
}

/// A request retransmission was absorbed by its transaction.
pub fn retransmission_received() {
    METRICS.retransmissions_received.inc();
}

/// `n` messages were retransmitted by timers.
pub fn retransmissions_sent(n: u64) {
    if n > 0 {
        METRICS.retransmissions_sent.inc_by(n);
    }
}

/// The failure route ran.
pub fn failure_route_run() {
    METRICS.failure_routes.inc();
}

/// A response was passed to a sibling instance (true) or received from one.
pub fn sibling_passed(sent: bool) {
    METRICS.sibling[usize::from(!sent)].inc();
}

/// A route step was skipped because of a run-time error.
pub fn route_step_error() {
    METRICS.route_step_errors.inc();
}

/// A request was answered 482 Loop Detected.
pub fn loop_detected() {
    METRICS.loops.inc();
}

/// A request from the pool for a phone registered here was relayed to it.
pub fn pool_hop() {
    METRICS.pool_hops.inc();
}

/// A transaction refused to make a new branch.
pub fn branch_refused(reason: BranchRefusal) {
    METRICS.branches_refused[reason as usize].inc();
}

/// A log line was left out by its call site's rate limit.
pub fn log_line_suppressed() {
    METRICS.log_lines_suppressed.inc();
}

/// A next hop name was looked up: resolved to at least one address, or not.
pub fn name_lookup(resolved: bool) {
    METRICS.name_lookups[usize::from(!resolved)].inc();
}

/// The message counter of worker `id` (its series appears now): the
/// worker keeps it and adds one per datagram, an atomic add.
pub fn worker_counter(id: usize) -> OwnCounter {
    METRICS
        .workers
        .get_or_create(&vec![("worker", id.to_string())])
        .clone()
}

/// The live transaction counts of every core in the process, read when
/// the metrics are encoded (a core that is gone drops out).
static TRANSACTION_COUNTS: Mutex<Vec<Weak<AtomicUsize>>> = Mutex::new(Vec::new());

/// Let `sipforge_transactions_active` count the transactions in `live`
/// (a core's count; the gauge is the sum over the cores alive).
pub fn count_transactions_from(live: &Arc<AtomicUsize>) {
    let mut counts = TRANSACTION_COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    counts.retain(|c| c.strong_count() > 0);
    counts.push(Arc::downgrade(live));
}

/// Set the transactions gauge from the cores' counts.
fn refresh_transactions() {
    let mut counts = TRANSACTION_COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    counts.retain(|c| c.strong_count() > 0);
    let live: usize = counts
        .iter()
        .filter_map(Weak::upgrade)
        .map(|c| c.load(Ordering::Relaxed))
        .sum();
    METRICS
        .transactions
        .set(i64::try_from(live).unwrap_or(i64::MAX));
}

/// The instance started (true) or stopped (false) draining.
pub fn set_draining(on: bool) {
    METRICS.draining.set(i64::from(on));
}

/// What is built into the binary, exposed as `sipforge_build_info`.
/// Only the first call counts.
pub fn set_build_info(version: &str, commit: Option<&str>, routes: &str, routes_sha256: &str) {
    let mut r = Registry::default();
    let info = Info::new(vec![
        ("version", version.to_string()),
        ("commit", commit.unwrap_or("unknown").to_string()),
        ("routes", routes.to_string()),
        ("routes_sha256", routes_sha256.to_string()),
    ]);
    r.register(
        "sipforge_build",
        "The sipforge version, git commit and routes file built into this binary",
        info,
    );
    let _ = BUILD_INFO.set(r);
}

/// The whole exposition in the OpenMetrics text format ([`CONTENT_TYPE`]).
pub fn encode() -> String {
    refresh_transactions();
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = encode_registry(&mut out, &METRICS.registry);
    if let Some(info) = BUILD_INFO.get() {
        let _ = encode_registry(&mut out, info);
    }
    let _ = encode_eof(&mut out);
    out
}

/// The value of one sample in an exposition, e.g.
/// `sample(&text, "sipforge_requests_received_total{method=\"INVITE\"}")`
/// (for tests and tools).
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_indexes_follow_the_stream_transport_labels() {
        for t in crate::transport::Transport::ALL {
            let by_name = STREAM_TRANSPORTS.iter().position(|n| *n == t.name());
            assert_eq!(stream_index(t), by_name, "{}", t.name());
        }
    }

    #[test]
    fn the_transactions_gauge_sums_the_live_cores_when_scraped() {
        // Other tests' cores may hold a few transactions meanwhile (far
        // fewer than OTHERS): counts of millions tell ours apart.
        const OTHERS: f64 = 1e5;
        let scraped = || sample(&encode(), "sipforge_transactions_active").unwrap_or(-1.0);
        let a = Arc::new(AtomicUsize::new(1_000_000));
        let b = Arc::new(AtomicUsize::new(1_000_000));
        count_transactions_from(&a);
        count_transactions_from(&b);
        let both = scraped();
        assert!((2e6..2e6 + OTHERS).contains(&both), "{both}");
        a.store(2_000_000, Ordering::Relaxed);
        let more = scraped();
        assert!(
            (3e6..3e6 + OTHERS).contains(&more),
            "read at scrape time: {more}"
        );
        drop(b);
        let one = scraped();
        assert!(
            (2e6..2e6 + OTHERS).contains(&one),
            "a core that is gone drops out: {one}"
        );
        drop(a);
        let none = scraped();
        assert!((0.0..OTHERS).contains(&none), "{none}");
    }

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(method_index("INVITE"), 0);
        assert_eq!(method_index("PUBLISH"), METHODS.len() - 1);
        assert_eq!(method_index("FOO"), METHODS.len());
        assert_eq!(
            method_index("invite"),
            METHODS.len(),
            "methods are case-sensitive"
        );
        assert_eq!(class_index(100), 0);
        assert_eq!(class_index(299), 1);
        assert_eq!(class_index(699), 5);
        assert_eq!(class_index(99), 6);
        assert_eq!(class_index(700), 6);
    }

    #[test]
    fn exposition_has_every_series_and_moves() {
        let before = encode();
        let series = "sipforge_requests_received_total{method=\"SUBSCRIBE\"}";
        let n0 = sample(&before, series).expect("series exists before any request");
        request_received("SUBSCRIBE");
        request_received("SUBSCRIBE");
        dropped(DropReason::NoVia);
        reply_received(486);
        let after = encode();
        assert!(sample(&after, series).unwrap() >= n0 + 2.0);
        assert!(sample(&after, "sipforge_drops_total{reason=\"no_via\"}").unwrap() >= 1.0);
        assert!(sample(&after, "sipforge_replies_received_total{class=\"4xx\"}").unwrap() >= 1.0);
        assert!(after.contains("# TYPE sipforge_transactions_active gauge"));
        assert!(after.contains("sipforge_requests_received_total{method=\"other\"}"));
        assert!(after.ends_with("# EOF\n"));
    }
}
