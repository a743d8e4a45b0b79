//! The routes file as a syntax tree that keeps source positions.
//!
//! Produced by `parse`, read by `check` and `emit`. Every node that a build
//! error can point at carries a [`Pos`] (and a length for the caret).

/// A position in the routes file: 1-based line and column (in characters)
/// and the byte offset from the start of the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
}

impl Pos {
    /// The position `chars` characters (and `bytes` bytes) further on the
    /// same line.
    pub fn advance(self, chars: usize, bytes: usize) -> Pos {
        Pos {
            line: self.line,
            col: self.col + chars as u32,
            offset: self.offset + bytes,
        }
    }
}

/// A value with the position and length (in characters) of its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    pub node: T,
    pub pos: Pos,
    pub len: u32,
}

impl<T> Sp<T> {
    pub fn new(node: T, pos: Pos, len: usize) -> Sp<T> {
        Sp {
            node,
            pos,
            len: len.max(1) as u32,
        }
    }
}

/// The whole routes file.
#[derive(Debug, Default)]
pub struct File {
    pub listen: Vec<Sp<String>>,
    pub advertise: Option<Sp<String>>,
    /// `workers:` (None: one per core).
    pub workers: Option<u32>,
    /// `max_branches:` (None: the default).
    pub max_branches: Option<u32>,
    /// `strict_response_source:` (None: the default, true).
    pub strict_response_source: Option<bool>,
    pub destinations: Vec<DestSet>,
    /// `auth:` (digest authentication settings).
    pub auth: Option<AuthSpec>,
    /// `limits:` (per-source rate limit, trusted networks).
    pub limits: Option<LimitsSpec>,
    /// `tls:` (certificates for tls:/wss: sockets and outgoing TLS).
    pub tls: Option<TlsSpec>,
    /// `dns:` (the servers RFC 3263 lookups ask).
    pub dns: Option<DnsSpec>,
    /// `registrar:` (the location service `save` and `lookup` use).
    pub registrar: Option<RegistrarSpec>,
    /// `rtpengine:` (the media relays `rtp_manage` controls), `udp:IP:PORT`.
    pub rtpengine: Vec<Sp<String>>,
    pub sections: Vec<Section>,
    pub routes: Vec<NamedRoute>,
}

impl File {
    /// `max_branches` when the file does not say (Kamailio's default).
    pub const DEFAULT_MAX_BRANCHES: u32 = 12;
    /// The largest `max_branches` accepted.
    pub const MAX_BRANCHES_LIMIT: i64 = 64;

    pub fn section(&self, kind: SectionKind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SectionKind {
    Request,
    Reply,
    Failure,
}

impl SectionKind {
    pub const ALL: [SectionKind; 3] = [
        SectionKind::Request,
        SectionKind::Reply,
        SectionKind::Failure,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Request => "request",
            SectionKind::Reply => "reply",
            SectionKind::Failure => "failure",
        }
    }
}

/// `request:`, `reply:` or `failure:`.
#[derive(Debug)]
pub struct Section {
    pub kind: SectionKind,
    pub pos: Pos,
    pub body: Block,
}

/// A block under `routes:`.
#[derive(Debug)]
pub struct NamedRoute {
    pub name: Sp<String>,
    pub body: Block,
}

/// `auth:`.
#[derive(Debug)]
pub struct AuthSpec {
    /// Where `auth:` is written.
    pub pos: Pos,
    /// `realm:` (None: the From domain).
    pub realm: Option<Template>,
    /// `credentials:` path (None: `--credentials` must give it).
    pub credentials: Option<Sp<String>>,
    /// `algorithms:` as written (None: SHA-256 then MD5).
    pub algorithms: Option<Vec<Sp<String>>>,
    /// `nonce_ttl:` in milliseconds (None: the default).
    pub nonce_ttl_ms: Option<u64>,
    /// `secret:` path of the nonce key (None: random per process).
    pub secret: Option<Sp<String>>,
}

impl AuthSpec {
    /// How long a nonce is good for when `nonce_ttl:` is not given.
    pub const DEFAULT_NONCE_TTL_MS: u64 = 300_000;
    /// What `algorithms:` may name, in the default order.
    pub const ALGORITHMS: [&'static str; 2] = ["SHA-256", "MD5"];
}

/// `tls:`.
#[derive(Debug)]
pub struct TlsSpec {
    /// Where `tls:` is written.
    pub pos: Pos,
    /// PEM certificate chain (read at start, not at build time).
    pub certificate: Sp<String>,
    /// PEM private key.
    pub key: Sp<String>,
    /// PEM trust anchors for outgoing TLS (None: the system's roots).
    pub ca: Option<Sp<String>>,
    /// Require and verify client certificates.
    pub verify_client: bool,
}

/// `registrar:`.
#[derive(Debug)]
pub struct RegistrarSpec {
    pub pos: Pos,
    /// `store:` as written: `memory` or `redis://...`.
    pub store: Option<Sp<String>>,
    pub min_expires: Option<Sp<i64>>,
    pub max_expires: Option<Sp<i64>>,
    pub default_expires: Option<Sp<i64>>,
    pub max_contacts: Option<Sp<i64>>,
    /// Longest Contact URI kept, in bytes (Kamailio's `contact_max_size`).
    pub contact_max_size: Option<Sp<i64>>,
    /// Most bindings the memory store keeps in all.
    pub max_bindings: Option<Sp<i64>>,
    /// `keepalive: { interval: 30s }`: OPTIONS to contacts behind NAT,
    /// every this many milliseconds.
    pub keepalive_ms: Option<u64>,
}

impl RegistrarSpec {
    pub const DEFAULT_MIN_EXPIRES: u32 = 60;
    pub const DEFAULT_MAX_EXPIRES: u32 = 3600;
    pub const DEFAULT_EXPIRES: u32 = 3600;
    pub const DEFAULT_MAX_CONTACTS: u32 = 10;
    pub const DEFAULT_CONTACT_MAX_SIZE: u32 = 512;
    pub const DEFAULT_MAX_BINDINGS: u32 = 1_000_000;
}

/// `dns:`.
#[derive(Debug, Default)]
pub struct DnsSpec {
    /// `servers:` as written (`IP` or `IP:PORT`).
    pub servers: Vec<Sp<String>>,
}

/// `limits:`.
#[derive(Debug, Default)]
pub struct LimitsSpec {
    /// `per_source: { requests, per, ban }`.
    pub per_source: Option<PerSourceSpec>,
    /// `trusted:` networks as written.
    pub trusted: Vec<Sp<String>>,
}

/// `limits.per_source`.
#[derive(Debug, Clone, Copy)]
pub struct PerSourceSpec {
    pub requests: u32,
    pub per_ms: u64,
    pub ban_ms: u64,
    /// `ipv6_prefix:` (None: the runtime's default, /64).
    pub ipv6_prefix: Option<u8>,
}

/// A `destinations:` entry.
#[derive(Debug)]
pub struct DestSet {
    pub name: Sp<String>,
    pub algorithm: Algorithm,
    pub targets: Vec<DestTarget>,
    pub probe: Option<ProbeSpec>,
}

/// `probe:` of a destination set.
#[derive(Debug)]
pub struct ProbeSpec {
    pub interval_ms: u64,
    /// `timeout:` as written (checked against the interval); None: the interval.
    pub timeout_ms: Option<Sp<u64>>,
    /// Consecutive failures that take a target down.
    pub failures: u32,
    /// Consecutive answered probes that bring it back.
    pub successes: u32,
}

impl ProbeSpec {
    /// Failures that take a target down when `failures:` is not given.
    pub const DEFAULT_FAILURES: u32 = 3;
    /// Answered probes that bring a target back when `successes:` is not given.
    pub const DEFAULT_SUCCESSES: u32 = 2;
    /// Largest `failures:` / `successes:` accepted.
    pub const MAX_COUNT: i64 = 1000;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    HashCallId,
    Weighted,
    Priority,
}

#[derive(Debug)]
pub struct DestTarget {
    pub uri: Sp<String>,
    pub weight: u32,
}

pub type Block = Vec<Step>;

/// One step; `pos`/`len` point at the action word (or `if`/`switch`).
#[derive(Debug)]
pub struct Step {
    pub pos: Pos,
    pub len: u32,
    pub kind: StepKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug)]
pub enum RelayTo {
    Default,
    Uri(Sp<String>),
    Set(Sp<String>),
    /// `relay: [uri, uri]`: forked in parallel.
    List(Vec<Sp<String>>),
}

#[derive(Debug)]
pub struct Header {
    pub name: Sp<String>,
    pub value: Template,
}

#[derive(Debug)]
pub enum StepKind {
    Log {
        level: LogLevel,
        message: Template,
    },
    AppendHeader(Header),
    RemoveHeader(Sp<String>),
    Set(Vec<(Sp<Var>, Template)>),
    Reply {
        code: Sp<i64>,
        reason: Option<Sp<String>>,
        headers: Vec<Header>,
    },
    Forward(Option<Sp<String>>),
    Relay(RelayTo),
    RecordRoute,
    Route(Sp<String>),
    /// `authenticate`: digest credentials checked, or a challenge sent.
    Authenticate,
    /// `save`: the REGISTER handled and answered.
    Save,
    /// `lookup`: the Request-URI's contacts become the targets; when it
    /// has none, `not_found` runs (then 404 unless it ended the route).
    Lookup {
        not_found: Option<Block>,
    },
    /// `fix_contact`: the Contact rewritten to where the message came
    /// from, with a marker (NAT traversal).
    FixContact,
    /// `rtp_manage` / `rtp_manage: "flags"`: rtpengine offer, answer or
    /// delete as the message calls for, its SDP replaced.
    RtpManage(Option<Sp<String>>),
    Drop,
    Exit,
    If {
        cond: Expr,
        then: Block,
        otherwise: Option<Block>,
    },
    Switch {
        on: Sp<Var>,
        cases: Vec<Case>,
        default: Option<Block>,
    },
}

impl StepKind {
    /// The action word, for messages.
    pub fn word(&self) -> &'static str {
        match self {
            StepKind::Log { .. } => "log",
            StepKind::AppendHeader(_) => "append_header",
            StepKind::RemoveHeader(_) => "remove_header",
            StepKind::Set(_) => "set",
            StepKind::Reply { .. } => "reply",
            StepKind::Forward(_) => "forward",
            StepKind::Relay(_) => "relay",
            StepKind::RecordRoute => "record_route",
            StepKind::Route(_) => "route",
            StepKind::Authenticate => "authenticate",
            StepKind::Save => "save",
            StepKind::Lookup { .. } => "lookup",
            StepKind::FixContact => "fix_contact",
            StepKind::RtpManage(_) => "rtp_manage",
            StepKind::Drop => "drop",
            StepKind::Exit => "exit",
            StepKind::If { .. } => "if",
            StepKind::Switch { .. } => "switch",
        }
    }
}

/// A `switch` case label.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseLabel {
    Text(String),
    Int(i64),
    /// `5xx`: the digit.
    Class(i64),
}

#[derive(Debug)]
pub struct Case {
    pub label: Sp<CaseLabel>,
    pub body: Block,
}

/// Variables of the language.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Var {
    Rm,
    Ru,
    RUser,
    Rd,
    Rp,
    Du,
    Rs,
    Rr,
    Fu,
    FUser,
    Fd,
    Ft,
    Tu,
    TUser,
    Td,
    Tt,
    Ci,
    Cs,
    Si,
    Sp,
    Pr,
    Ua,
    Ds,
    Au,
    Hdr(String),
}

/// Name, variant of `api::Var` and whether the variable is an integer.
const VARS: &[(&str, Var, &str, bool)] = &[
    ("rm", Var::Rm, "Rm", false),
    ("ru", Var::Ru, "Ru", false),
    ("rU", Var::RUser, "RUser", false),
    ("rd", Var::Rd, "Rd", false),
    ("rp", Var::Rp, "Rp", true),
    ("du", Var::Du, "Du", false),
    ("rs", Var::Rs, "Rs", true),
    ("rr", Var::Rr, "Rr", false),
    ("fu", Var::Fu, "Fu", false),
    ("fU", Var::FUser, "FUser", false),
    ("fd", Var::Fd, "Fd", false),
    ("ft", Var::Ft, "Ft", false),
    ("tu", Var::Tu, "Tu", false),
    ("tU", Var::TUser, "TUser", false),
    ("td", Var::Td, "Td", false),
    ("tt", Var::Tt, "Tt", false),
    ("ci", Var::Ci, "Ci", false),
    ("cs", Var::Cs, "Cs", true),
    ("si", Var::Si, "Si", false),
    ("sp", Var::Sp, "Sp", true),
    ("pr", Var::Pr, "Pr", false),
    ("ua", Var::Ua, "Ua", false),
    ("ds", Var::Ds, "Ds", false),
    ("au", Var::Au, "Au", false),
];

impl Var {
    /// A variable by its name without `$` (not `hdr`).
    pub fn by_name(name: &str) -> Option<Var> {
        VARS.iter().find(|v| v.0 == name).map(|v| v.1.clone())
    }

    /// All plain variable names, with `$`.
    pub fn names() -> impl Iterator<Item = String> {
        VARS.iter().map(|v| format!("${}", v.0))
    }

    fn entry(&self) -> Option<&'static (&'static str, Var, &'static str, bool)> {
        VARS.iter().find(|v| v.1 == *self)
    }

    /// How the variable is written in the file.
    pub fn display(&self) -> String {
        match self {
            Var::Hdr(h) => format!("$hdr({h})"),
            v => format!("${}", v.entry().map_or("?", |e| e.0)),
        }
    }

    /// The `api::Var` variant name (not for `Hdr`).
    pub fn variant(&self) -> &'static str {
        match self {
            Var::Hdr(_) => "Hdr",
            v => v.entry().map_or("?", |e| e.2),
        }
    }

    pub fn is_int(&self) -> bool {
        !matches!(self, Var::Hdr(_)) && self.entry().is_some_and(|e| e.3)
    }

    /// Can `set:` write it?
    pub fn writable(&self) -> bool {
        matches!(self, Var::Ru | Var::RUser | Var::Rd | Var::Rp | Var::Du)
    }

    /// Only meaningful where there is a reply (`reply`, `failure`).
    pub fn needs_reply(&self) -> bool {
        matches!(self, Var::Rs | Var::Rr)
    }
}

/// A template: literal text and variables, split at build time.
#[derive(Clone, Debug, Default)]
pub struct Template {
    pub pieces: Vec<TPiece>,
}

#[derive(Clone, Debug)]
pub enum TPiece {
    Lit(String),
    Var(Sp<Var>),
}

impl Template {
    /// The text when the template has no variables.
    pub fn literal(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.pieces {
            match p {
                TPiece::Lit(l) => s.push_str(l),
                TPiece::Var(_) => return None,
            }
        }
        Some(s)
    }

    pub fn vars(&self) -> impl Iterator<Item = &Sp<Var>> {
        self.pieces.iter().filter_map(|p| match p {
            TPiece::Var(v) => Some(v),
            TPiece::Lit(_) => None,
        })
    }
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn text(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// An operand of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Var(Var),
    Str(String),
    Int(i64),
    /// A bare word such as `INVITE`.
    Word(String),
    /// An address or network written bare in a list: `10.0.0.0/8`, `::1`.
    Net(String),
}

/// A condition.
#[derive(Clone, Debug)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp {
        lhs: Sp<Operand>,
        op: Sp<CmpOp>,
        rhs: Sp<Operand>,
    },
    /// `=~` (or `!~` when `negate`)
    Match {
        lhs: Sp<Operand>,
        negate: bool,
        op: Pos,
        regex: Sp<Operand>,
    },
    InList {
        lhs: Sp<Operand>,
        items: Vec<Sp<Operand>>,
    },
    /// `in lo..hi`, both ends included.
    InRange {
        lhs: Sp<Operand>,
        lo: Sp<i64>,
        hi: Sp<i64>,
    },
    Exists(Sp<String>),
    InDialog,
    /// `registered` (the Request-URI) or `registered("$fu")`.
    Registered(Option<Sp<Operand>>),
    /// `behind_nat`: the sender of the message looks to be behind a NAT.
    BehindNat,
    /// `rtp_manage` / `rtp_manage("flags")` as a condition: the step,
    /// true unless rtpengine could not be used.
    RtpManage(Option<Sp<String>>, Pos),
    /// A lone operand where a condition was expected (an error in `check`).
    Bare(Sp<Operand>),
}
