//! The runtime API that generated routes code calls.
//!
//! This module is the whole contract between `sipforge-codegen` and the run
//! time: the generator emits code that names only the items below (the
//! actions and variables of the routes language). Everything else in this
//! crate may change freely; changing anything here means changing the
//! emitter in the same commit.
//!
//! Shape of the generated code (see `codegen/src/emit.rs`):
//!
//! ```ignore
//! pub struct CompiledRoutes;
//! pub static ROUTES: CompiledRoutes = CompiledRoutes;
//! impl ::sipforge_runtime::api::Routes for CompiledRoutes {
//!     fn settings(&self) -> &'static Settings { &SETTINGS }
//!     fn request(&self, cx: &mut Ctx<'_>) -> Flow { request_main(cx) }
//!     // reply / failure when the file has those sections
//! }
//! ```
//!
//! Each action is a method on [`Ctx`]; actions that end a route
//! (`forward`, `relay`, `reply`, `drop`) return [`Flow::Stop`] and the
//! generated code returns that value at once. The decision is recorded in
//! the context and carried out by the proxy core after the route returns.

use std::sync::OnceLock;

pub use crate::ctx::Ctx;
pub use crate::limits::{DEFAULT_IPV6_PREFIX, NetList, NetRange, PerSource};

/// What a block of steps did: ran to its end, or stopped the processing
/// (an ending action or `exit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    Continue,
    Stop,
}

impl Flow {
    pub fn is_stop(self) -> bool {
        self == Flow::Stop
    }
}

/// A compiled routes file. Generated code implements it on a unit struct.
pub trait Routes: Send + Sync + 'static {
    /// Settings of the routes file (listen, advertise, destination sets, source).
    fn settings(&self) -> &'static Settings;
    /// The `request:` section, run for every request received.
    fn request(&self, cx: &mut Ctx<'_>) -> Flow;
    /// The `reply:` section, run for every response received.
    fn reply(&self, _cx: &mut Ctx<'_>) -> Flow {
        Flow::Continue
    }
    /// The `failure:` section, run when a relayed transaction ends >= 300.
    fn failure(&self, _cx: &mut Ctx<'_>) -> Flow {
        Flow::Continue
    }
    /// Whether the file has a `failure:` section.
    fn has_failure(&self) -> bool {
        false
    }
}

/// Everything in a routes file that is not a route.
#[derive(Debug)]
pub struct Settings {
    /// `listen:` entries as written, e.g. `udp:127.0.0.1:5060`.
    pub listen: &'static [&'static str],
    /// `advertise:` as written (`host` or `host:port`).
    pub advertise: Option<&'static str>,
    /// `destinations:` sets, in file order.
    pub destinations: &'static [DestinationSet],
    /// `workers:`: receive threads per socket; 0 when not given (one per
    /// core the process may use). `--workers` wins.
    pub workers: u32,
    /// `max_branches:`: most branches one relayed transaction may make
    /// (the first relay and every relay in `failure`), 12 when not given.
    pub max_branches: u32,
    /// `strict_response_source:`: a response to a stateful branch sent to an
    /// IP address must come from that address and port (true when not given).
    pub strict_response_source: bool,
    /// `auth:` (present when the file has the block or uses `authenticate`).
    pub auth: Option<AuthSettings>,
    /// `limits:`.
    pub limits: Option<LimitSettings>,
    /// `tls:`: certificates for `tls:`/`wss:` sockets and outgoing TLS.
    pub tls: Option<TlsSettings>,
    /// `dns:`: the servers RFC 3263 lookups ask (None: the system's).
    pub dns: Option<DnsSettings>,
    /// `registrar:` (present when the file has it or uses `save`,
    /// `lookup` or `registered`).
    pub registrar: Option<RegistrarSettings>,
    /// `rtpengine:`: the ng control sockets of the media relays
    /// `rtp_manage` uses, `IP:PORT` (empty: none).
    pub rtpengine: &'static [&'static str],
    /// The routes file path as given to the build.
    pub source_path: &'static str,
    /// The routes file's text (for `--print-routes`).
    pub source_text: &'static str,
    /// SHA-256 of the routes file, lowercase hex.
    pub source_sha256: &'static str,
}

/// `auth:`: digest authentication (see `crate::auth`).
#[derive(Debug)]
pub struct AuthSettings {
    /// `realm:` (None: the From domain).
    pub realm: Option<&'static Template>,
    /// `credentials:` path (`--credentials` wins).
    pub credentials: Option<&'static str>,
    /// `algorithms:`: one challenge per algorithm, in this order.
    pub algorithms: &'static [DigestAlgorithm],
    /// `nonce_ttl:` in milliseconds.
    pub nonce_ttl_ms: u64,
    /// `secret:`: the file holding the nonce key (None: random per process).
    pub secret: Option<&'static str>,
}

/// `tls:`. The files are read when the proxy starts, never at build time.
#[derive(Debug)]
pub struct TlsSettings {
    /// PEM certificate chain presented by `tls:`/`wss:` sockets.
    pub certificate: &'static str,
    /// Its PEM private key.
    pub key: &'static str,
    /// PEM trust anchors for the peers we connect to (None: the system's roots).
    pub ca: Option<&'static str>,
    /// Require client certificates (verified against `ca`).
    pub verify_client: bool,
}

/// `registrar:`: the location service of `save`, `lookup`, `registered`.
#[derive(Debug, Clone, Copy)]
pub struct RegistrarSettings {
    /// `memory` or a `redis://` URL.
    pub store: &'static str,
    /// Shorter registrations get 423 with Min-Expires.
    pub min_expires: u32,
    /// Longer ones are cut to this.
    pub max_expires: u32,
    /// A REGISTER that asks for none gets this.
    pub default_expires: u32,
    /// Most bindings per address-of-record; more get 403.
    pub max_contacts: u32,
    /// Longest Contact URI a binding keeps (bytes); longer get 400.
    pub contact_max_size: u32,
    /// Most bindings the memory store keeps; a REGISTER adding more gets
    /// 503 with Retry-After.
    pub max_bindings: u32,
    /// `keepalive.interval`: OPTIONS (or a CRLF ping over a connection)
    /// to contacts registered from behind NAT this often; 0: none.
    pub keepalive_ms: u64,
}

/// `dns:`.
#[derive(Debug)]
pub struct DnsSettings {
    /// `IP:PORT` of each server, in order.
    pub servers: &'static [&'static str],
}

/// Digest algorithms (RFC 7616).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

/// `limits:`: the per-source rate limit and the networks it spares.
#[derive(Debug)]
pub struct LimitSettings {
    /// `per_source:` (None: no rate limit).
    pub per_source: Option<PerSource>,
    /// `trusted:` networks, never limited.
    pub trusted: &'static NetList,
}

/// A named destination set (`destinations:`).
#[derive(Debug)]
pub struct DestinationSet {
    pub name: &'static str,
    pub algorithm: Algorithm,
    pub targets: &'static [Destination],
    /// OPTIONS health checks, when `probe:` is given.
    pub probe: Option<Probe>,
}

/// `probe:` of a destination set: OPTIONS sent to every target at an
/// interval; the defaults (timeout = interval, 3 failures, 2 successes)
/// are filled in by the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Time between two probes of a target, in milliseconds.
    pub interval_ms: u64,
    /// How long a probe waits for an answer, in milliseconds (at most the interval).
    pub timeout_ms: u64,
    /// Consecutive failures (unanswered probes, or relayed requests that
    /// ended with 408, 503 or a timeout) that take an up target down.
    pub failures: u32,
    /// Consecutive answered probes that bring a down target back up.
    pub successes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    HashCallId,
    Weighted,
    Priority,
}

#[derive(Debug)]
pub struct Destination {
    pub uri: &'static Target,
    pub weight: u32,
}

/// Variables of the language (Kamailio pseudo-variable names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// `$rm` method (in replies the CSeq method)
    Rm,
    /// `$ru` Request-URI
    Ru,
    /// `$rU` Request-URI user
    RUser,
    /// `$rd` Request-URI host
    Rd,
    /// `$rp` Request-URI port (integer)
    Rp,
    /// `$du` destination URI
    Du,
    /// `$rs` reply status (integer)
    Rs,
    /// `$rr` reply reason
    Rr,
    /// `$fu` From URI
    Fu,
    /// `$fU` From user
    FUser,
    /// `$fd` From host
    Fd,
    /// `$ft` From tag
    Ft,
    /// `$tu` To URI
    Tu,
    /// `$tU` To user
    TUser,
    /// `$td` To host
    Td,
    /// `$tt` To tag
    Tt,
    /// `$ci` Call-ID
    Ci,
    /// `$cs` CSeq number (integer)
    Cs,
    /// `$si` source IP
    Si,
    /// `$sp` source port (integer)
    Sp,
    /// `$pr` transport (udp/tcp/tls)
    Pr,
    /// `$ua` User-Agent
    Ua,
    /// `$ds` destination set chosen by `relay: SET`
    Ds,
    /// `$au` the user `authenticate` accepted (before it: the username of
    /// the request's credentials)
    Au,
    /// `$hdr(Name)` first value of a header
    Hdr(&'static str),
}

/// A piece of a template: literal text or a variable. Templates are split
/// at build time; `$$` has already become `Lit("$")`.
#[derive(Clone, Copy, Debug)]
pub enum Piece {
    Lit(&'static str),
    Var(Var),
}

/// A template: the pieces in order.
pub type Template = [Piece];

/// Log levels of the `log` action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// A SIP URI validated at build time, parsed once at run time.
#[derive(Debug)]
pub struct Target {
    text: &'static str,
    parsed: OnceLock<Option<crate::target::NextHop>>,
}

impl Target {
    pub const fn new(text: &'static str) -> Target {
        Target {
            text,
            parsed: OnceLock::new(),
        }
    }
    pub fn as_str(&self) -> &'static str {
        self.text
    }
    /// The next hop this URI names (host, port, transport), parsed once.
    pub(crate) fn next_hop(&self) -> Option<&crate::target::NextHop> {
        self.parsed
            .get_or_init(|| crate::target::NextHop::from_uri(self.text))
            .as_ref()
    }
}

/// Where `relay` sends: the default next hop, a URI, or a destination set.
#[derive(Clone, Copy, Debug)]
pub enum RelayTo {
    Default,
    Uri(&'static Target),
    Set(&'static str),
    /// `relay: [uri, uri]`: one branch per URI, in parallel, each URI the
    /// branch's Request-URI (Kamailio's `append_branch` + `t_relay`).
    List(&'static [&'static Target]),
}

/// A regular expression validated at build time, compiled once at run time.
#[derive(Debug)]
pub struct Pattern {
    source: &'static str,
    compiled: OnceLock<regex::Regex>,
}

impl Pattern {
    pub const fn new(source: &'static str) -> Pattern {
        Pattern {
            source,
            compiled: OnceLock::new(),
        }
    }
    pub fn is_match(&self, text: &str) -> bool {
        self.compiled
            .get_or_init(|| {
                // The generator has compiled the same source with the same
                // crate at build time, so this cannot fail; a pattern that
                // somehow does matches nothing rather than panicking.
                regex::Regex::new(self.source).unwrap_or_else(|_| {
                    regex::Regex::new("[^\\s\\S]").expect("the empty class is a valid regex")
                })
            })
            .is_match(text)
    }
}
