//! `Ctx`: what a route sees and does while it runs on one message.
//!
//! Generated code reads variables and calls actions through these methods
//! only (see [`crate::api`]). Actions do not touch the message: they record
//! edits and a decision, which the proxy core carries out after the route
//! returns, splicing the edits into the received bytes.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::ops::Range;

use crate::api::{Flow, Level, RelayTo, Target, Template, Var};
use crate::sip::{Message, NameAddr, Uri};

mod authenticate;
pub(crate) use authenticate::AuthEnv;
mod media;
mod nat;
pub(crate) use nat::NatEnv;

/// Which section of the routes file is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Request,
    Reply,
    Failure,
}

/// What the route decided to do with the message.
#[derive(Debug, Default)]
pub enum Decision {
    /// The route ended without an ending action.
    #[default]
    Undecided,
    Forward(Option<&'static Target>),
    Relay(RelayTo),
    /// `save`: the core handles the REGISTER and answers it.
    Save,
    Reply {
        code: u16,
        reason: Option<&'static str>,
        /// Extra header lines, each ending in CRLF, already checked for CR/LF.
        headers: Vec<u8>,
    },
    Drop,
}

/// The changes a route asked for, applied by the core when it sends.
#[derive(Debug, Default)]
pub struct Edits {
    /// Header lines to append, each `Name: value\r\n`.
    pub appended: Vec<u8>,
    /// Names of headers to remove (every header of the name).
    pub removed: Vec<&'static str>,
    /// Single header lines to remove (byte ranges of the received
    /// message): the credentials `authenticate` consumed.
    pub removed_lines: Vec<Range<usize>>,
    /// A new Request-URI.
    pub ruri: Option<String>,
    /// `$du`: the next hop override.
    pub du: Option<String>,
    /// `record_route` was called.
    pub record_route: bool,
    /// `$ds`: the destination set `relay` chose from.
    pub ds: Option<&'static str>,
    /// Branches to fork to (set by `lookup`): groups tried one after the
    /// other, the branches of a group in parallel (RFC 3261 §16.6, q-values).
    pub fork: Vec<Vec<BranchTarget>>,
    /// `fix_contact`: the Contact URI rewritten (see [`crate::nat`]).
    pub contact: Option<crate::nat::ContactFix>,
    /// `rtp_manage`: the new SDP body (Content-Length follows it).
    pub body: Option<Vec<u8>>,
    /// `rtp_manage` made this offer for an initial INVITE (with the SDP as
    /// received and no via-branch): when the transaction forks, each fork
    /// gets it again with its own via-branch (see `proxy::stateful`).
    pub media_offer: Option<Box<crate::proxy::suspend::MediaAsk>>,
    /// Not set by a route: the request came from another instance of the
    /// pool for a phone registered here (see [`crate::proxy::flow`]); the
    /// routes do not run on it nor on its responses, whose Contact is
    /// marked as `fix_contact` would.
    pub pool_hop: bool,
}

/// What `lookup` and `registered` ask of the location service.
pub trait Location {
    /// The fork to the contacts of `uri`'s address-of-record (groups by
    /// q-value, highest first); None when it has none (or on an error).
    fn fork(&self, uri: &str) -> Located<Option<Vec<Vec<BranchTarget>>>>;
    /// Whether `uri`'s address-of-record has a binding.
    fn has(&self, uri: &str) -> Located<bool>;
}

/// A location service's answer: known now, or to be asked of the store
/// that holds it (then the route run is suspended, see
/// [`crate::proxy::suspend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located<T> {
    Ready(T),
    /// The canonical AoR whose bindings are needed.
    Ask(String),
}

/// One branch of a fork: its Request-URI, next hop and Route entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchTarget {
    pub ruri: String,
    /// Where to send it instead of the Request-URI (a NAT binding).
    pub du: Option<String>,
    /// Route entries to put first (a registration's Path, RFC 3327).
    pub route: Vec<String>,
}

/// The context of one route run. It is large (the stored request's
/// parse has room in it), so it is built in place and given its
/// environment through the `set_*` methods, not moved through builders.
pub struct Ctx<'a> {
    section: Section,
    /// The message the route runs on (a request, or a response in `reply`).
    msg: &'a Message<'a>,
    /// The request a stateful reply's request variables read, parsed only
    /// when a variable reads it (most reply routes read none). Only its
    /// request line once a 2xx went upstream (`stateful::keep_request_line`):
    /// request variables must read nothing else of it.
    stored: Option<&'a [u8]>,
    stored_parsed: std::cell::OnceCell<Option<Message<'a>>>,
    /// `$rs` / `$rr` in `failure` (the best response, or 408 on timeout).
    status: Option<(u16, &'a str)>,
    source: SocketAddr,
    /// What `authenticate` needs (requests only, when the routes use it).
    auth: Option<AuthEnv<'a>>,
    /// `$au` once `authenticate` accepted the request.
    au: Option<String>,
    /// `$pr`: what the message came over.
    transport: crate::transport::Transport,
    /// The location service `lookup` and `registered` read.
    location: Option<&'a dyn Location>,
    /// What `behind_nat` and `fix_contact` need besides the message.
    nat: NatEnv<'a>,
    /// Location queries made so far in this run.
    queries: usize,
    /// Log lines are not written before this many queries: an earlier run
    /// of the route on this message wrote them (see `crate::proxy::suspend`).
    replay_until: usize,
    /// What earlier runs' `authenticate` accepted, in order, and how many
    /// `authenticate` steps ran in this one.
    accepted_before: &'a [(String, usize)],
    auth_steps: usize,
    /// What this run's `authenticate` accepted (kept for a later run).
    pub(crate) accepted_now: Vec<(String, usize)>,
    /// What this run must ask another server (the bindings of an AoR,
    /// an rtpengine offer or answer): the run is then suspended and its
    /// decision means nothing.
    pub(crate) asked: Option<crate::proxy::suspend::Query>,
    /// What earlier runs' `rtp_manage` steps got from rtpengine, in
    /// order, and how many such steps ran in this one.
    media_before: &'a [Result<Vec<u8>, String>],
    media_steps: usize,
    /// `reply`: the branch of the fork the response came back on, when
    /// that fork's offer named it (rtpengine's via-branch).
    media_branch: Option<&'a str>,
    /// rtpengine deletes to send, nobody waiting for their answers.
    pub(crate) tells: Vec<crate::proxy::suspend::MediaAsk>,
    pub(crate) edits: Edits,
    pub(crate) decision: Decision,
}

impl<'a> Ctx<'a> {
    /// A context for the `request` section.
    pub(crate) fn for_request(msg: &'a Message<'a>, source: SocketAddr) -> Ctx<'a> {
        Ctx::new(Section::Request, msg, None, source)
    }

    /// A context for the `reply` section; `stored` is the bytes of the
    /// relayed request when stateful.
    pub(crate) fn for_reply(
        msg: &'a Message<'a>,
        stored: Option<&'a [u8]>,
        source: SocketAddr,
    ) -> Ctx<'a> {
        let mut cx = Ctx::new(Section::Reply, msg, None, source);
        cx.stored = stored;
        cx
    }

    /// A context for the `failure` section, on the stored request (which
    /// the request variables then read, being the message).
    pub(crate) fn for_failure(
        request: &'a Message<'a>,
        status: u16,
        reason: &'a str,
        source: SocketAddr,
    ) -> Ctx<'a> {
        Ctx::new(Section::Failure, request, Some((status, reason)), source)
    }

    fn new(
        section: Section,
        msg: &'a Message<'a>,
        status: Option<(u16, &'a str)>,
        source: SocketAddr,
    ) -> Ctx<'a> {
        Ctx {
            section,
            msg,
            stored: None,
            stored_parsed: std::cell::OnceCell::new(),
            status,
            source,
            auth: None,
            au: None,
            transport: crate::transport::Transport::Udp,
            location: None,
            nat: NatEnv::default(),
            queries: 0,
            replay_until: 0,
            accepted_before: &[],
            auth_steps: 0,
            accepted_now: Vec::new(),
            asked: None,
            media_before: &[],
            media_steps: 0,
            media_branch: None,
            tells: Vec::new(),
            edits: Edits::default(),
            decision: Decision::Undecided,
        }
    }

    /// Give `authenticate` what it needs.
    pub(crate) fn set_auth(&mut self, env: Option<AuthEnv<'a>>) -> &mut Ctx<'a> {
        self.auth = env;
        self
    }

    /// Give `lookup` and `registered` the location service.
    pub(crate) fn set_location(&mut self, location: Option<&'a dyn Location>) -> &mut Ctx<'a> {
        self.location = location;
        self
    }

    /// Run again after a suspension, with what the earlier runs learned.
    pub(crate) fn set_memo(&mut self, memo: &'a crate::proxy::suspend::Memo) -> &mut Ctx<'a> {
        self.replay_until = memo.replay_until;
        self.accepted_before = &memo.accepted;
        self.media_before = &memo.media;
        self
    }

    /// Whether this run's side effects (log lines) must not happen: an
    /// earlier run did them, or this run is suspended.
    fn quiet(&self) -> bool {
        self.asked.is_some() || self.queries < self.replay_until
    }

    /// Location queries this run made.
    pub(crate) fn queries(&self) -> usize {
        self.queries
    }

    /// Say what the message came over (`$pr`; UDP when not said).
    pub(crate) fn set_transport(&mut self, transport: crate::transport::Transport) -> &mut Ctx<'a> {
        self.transport = transport;
        self
    }

    pub fn section(&self) -> Section {
        self.section
    }

    /// Take what the route decided and asked for.
    pub(crate) fn finish(self) -> (Decision, Edits) {
        (self.decision, self.edits)
    }

    // ---- variables -------------------------------------------------------

    /// The message that request variables read ($ru, $rU, ...): the request
    /// itself, the stored request, or None in a stateless reply.
    fn request_msg(&self) -> Option<&Message<'a>> {
        if self.msg.is_request() {
            return Some(self.msg);
        }
        let stored = self.stored?;
        self.stored_parsed
            .get_or_init(|| Message::parse(stored).ok())
            .as_ref()
    }

    /// The current Request-URI (after `set`), or in a stateless reply the To URI.
    fn ruri(&self) -> Option<Cow<'_, str>> {
        if let Some(ruri) = &self.edits.ruri {
            return Some(Cow::Borrowed(ruri));
        }
        match self.request_msg() {
            Some(req) => req.request_uri().map(Cow::Borrowed),
            None => self.msg.to().map(|to| Cow::Borrowed(to.uri)),
        }
    }

    /// Value of a variable as text; empty when the message has none.
    pub fn get(&self, v: Var) -> Cow<'_, str> {
        let empty = Cow::Borrowed("");
        match v {
            Var::Rm => match self.request_msg().and_then(|r| r.method()) {
                Some(m) => Cow::Borrowed(m),
                None => self.msg.cseq().map_or(empty, |(_, m)| Cow::Borrowed(m)),
            },
            Var::Ru => self.ruri().unwrap_or(empty),
            Var::RUser | Var::Rd | Var::Rp => {
                let Some(ruri) = self.ruri() else {
                    return empty;
                };
                let part = match Uri::parse(&ruri) {
                    Some(uri) => match v {
                        Var::RUser => uri.user.unwrap_or("").to_string(),
                        Var::Rd => uri.host.to_string(),
                        _ => uri.port.map(|p| p.to_string()).unwrap_or_default(),
                    },
                    None => String::new(),
                };
                // Borrowing from a possibly owned R-URI: return owned text.
                match ruri {
                    Cow::Borrowed(s) => borrow_part(s, &part).unwrap_or(Cow::Owned(part)),
                    Cow::Owned(_) => Cow::Owned(part),
                }
            }
            Var::Du => self.edits.du.as_deref().map_or(empty, Cow::Borrowed),
            Var::Rs => self
                .int(Var::Rs)
                .map_or(empty, |s| Cow::Owned(s.to_string())),
            Var::Rr => match self.status {
                Some((_, reason)) => Cow::Borrowed(reason),
                None => self.msg.reason().map_or(empty, Cow::Borrowed),
            },
            Var::Fu | Var::FUser | Var::Fd | Var::Ft => {
                name_addr_part(self.msg.from(), v).map_or(empty, Cow::Borrowed)
            }
            Var::Tu | Var::TUser | Var::Td | Var::Tt => {
                name_addr_part(self.msg.to(), v).map_or(empty, Cow::Borrowed)
            }
            Var::Ci => self.msg.call_id().map_or(empty, Cow::Borrowed),
            Var::Cs => self
                .msg
                .cseq()
                .map_or(empty, |(n, _)| Cow::Owned(n.to_string())),
            Var::Si => Cow::Owned(self.source.ip().to_string()),
            Var::Sp => Cow::Owned(self.source.port().to_string()),
            Var::Pr => Cow::Borrowed(self.transport.name()),
            Var::Ua => self.header_value("User-Agent").unwrap_or(empty),
            Var::Ds => self.edits.ds.map_or(empty, Cow::Borrowed),
            Var::Au => match &self.au {
                Some(user) => Cow::Borrowed(user),
                None => self.credentials_user().map_or(empty, Cow::Owned),
            },
            Var::Hdr(name) => self.header_value(name).unwrap_or(empty),
        }
    }

    /// Value of an integer variable (`$rs`, `$cs`, `$sp`, `$rp`).
    pub fn int(&self, v: Var) -> Option<i64> {
        match v {
            Var::Rs => match self.status {
                Some((code, _)) => Some(i64::from(code)),
                None => self.msg.status().map(i64::from),
            },
            Var::Cs => self.msg.cseq().map(|(n, _)| i64::from(n)),
            Var::Sp => Some(i64::from(self.source.port())),
            Var::Rp => {
                let ruri = self.ruri()?;
                let uri = Uri::parse(&ruri)?;
                Some(i64::from(uri.port.unwrap_or(crate::target::DEFAULT_PORT)))
            }
            other => self.get(other).trim().parse().ok(),
        }
    }

    /// First value of a header, folding turned into single spaces.
    fn header_value(&self, name: &str) -> Option<Cow<'_, str>> {
        let h = self.msg.find(name).next()?;
        Some(unfold(self.msg.value(h)))
    }

    /// `exists($hdr(Name))`
    pub fn has_header(&self, name: &str) -> bool {
        self.msg.find(name).next().is_some()
    }

    /// `$var in [networks]`: the variable's text is an address in one of them.
    pub fn ip_in(&self, v: Var, nets: &crate::api::NetList) -> bool {
        match v {
            Var::Si => nets.contains(self.source.ip()),
            _ => nets.contains_text(self.get(v).trim()),
        }
    }

    /// `in_dialog`: the To header has a tag.
    pub fn in_dialog(&self) -> bool {
        self.msg.to().is_some_and(|to| to.tag.is_some())
    }

    // ---- actions ---------------------------------------------------------

    /// Append a variable's text to `out` (numbers without an allocation).
    fn push_var(&self, v: Var, out: &mut Vec<u8>) {
        match v {
            Var::Rs | Var::Cs | Var::Sp => {
                if let Some(n) = self.int(v).and_then(|n| u32::try_from(n).ok()) {
                    crate::digits::push_padded(out, n, 1);
                }
            }
            _ => out.extend_from_slice(self.get(v).as_bytes()),
        }
    }

    /// Append a template's expansion to `out`.
    fn push_template(&self, template: &Template, out: &mut Vec<u8>) {
        for piece in template {
            match piece {
                crate::api::Piece::Lit(s) => out.extend_from_slice(s.as_bytes()),
                crate::api::Piece::Var(v) => self.push_var(*v, out),
            }
        }
    }

    /// Append a template's expansion to `out`; false (with an error logged
    /// and `out` as it was) when the result would carry CR, LF or NUL into
    /// a header.
    fn expand_into(&self, line: u32, what: &str, template: &Template, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        self.push_template(template, out);
        if out[start..].iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            out.truncate(start);
            if self.quiet() {
                return false;
            }
            crate::metrics::route_step_error();
            tracing::error!(
                target: "sipforge::routes",
                line,
                "{what}: the value would contain CR, LF or NUL; step skipped"
            );
            return false;
        }
        true
    }

    /// Expand a template; None (with an error logged) when the result would
    /// carry CR or LF into a header.
    fn expand(&self, line: u32, what: &str, template: &Template) -> Option<String> {
        let mut out = Vec::new();
        if !self.expand_into(line, what, template, &mut out) {
            return None;
        }
        // Pieces are UTF-8 text, so is their concatenation.
        String::from_utf8(out).ok()
    }

    /// A `Name: value\r\n` line appended to `out`, unless the value would
    /// carry CR, LF or NUL (then nothing, and an error logged).
    fn push_header_line(
        &self,
        line: u32,
        what: &str,
        name: &str,
        value: &Template,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        if self.expand_into(line, what, value, out) {
            out.extend_from_slice(b"\r\n");
        } else {
            out.truncate(start);
        }
    }

    /// `log`
    pub fn log(&mut self, line: u32, level: Level, msg: &Template) {
        if self.quiet() {
            return;
        }
        let enabled = match level {
            Level::Error => tracing::enabled!(target: "sipforge::routes", tracing::Level::ERROR),
            Level::Warn => tracing::enabled!(target: "sipforge::routes", tracing::Level::WARN),
            Level::Info => tracing::enabled!(target: "sipforge::routes", tracing::Level::INFO),
            Level::Debug => tracing::enabled!(target: "sipforge::routes", tracing::Level::DEBUG),
        };
        if !enabled {
            return;
        }
        let call_id = self.msg.call_id().unwrap_or("");
        if crate::logbuf::fast_text() {
            let name = match level {
                Level::Error => "ERROR",
                Level::Warn => "WARN",
                Level::Info => "INFO",
                Level::Debug => "DEBUG",
            };
            crate::logbuf::write_route_line(name, line, call_id, |out| {
                self.push_template(msg, out)
            });
            return;
        }
        let mut text = Vec::new();
        self.push_template(msg, &mut text);
        // Log lines are data, not headers: keep them on one line.
        for b in &mut text {
            if matches!(*b, b'\r' | b'\n') {
                *b = b' ';
            }
        }
        let text = String::from_utf8_lossy(&text);
        match level {
            Level::Error => tracing::error!(target: "sipforge::routes", line, call_id, "{text}"),
            Level::Warn => tracing::warn!(target: "sipforge::routes", line, call_id, "{text}"),
            Level::Info => tracing::info!(target: "sipforge::routes", line, call_id, "{text}"),
            Level::Debug => tracing::debug!(target: "sipforge::routes", line, call_id, "{text}"),
        }
    }

    /// `append_header: "Name: value"` (name checked at build time)
    pub fn append_header(&mut self, line: u32, name: &'static str, value: &Template) {
        let mut out = std::mem::take(&mut self.edits.appended);
        if out.capacity() == 0 {
            out.reserve(128);
        }
        self.push_header_line(line, "append_header", name, value, &mut out);
        self.edits.appended = out;
    }

    /// `remove_header: Name`
    pub fn remove_header(&mut self, _line: u32, name: &'static str) {
        self.edits.removed.push(name);
    }

    /// `set: { $var: template }`. What may be written where (docs/language.md,
    /// "set"): `$rU` is escaped as a URI user part; a `$rd` that is not a
    /// host, a `$rp` that is not a port, and a `$ru` or `$du` that is not a
    /// sip:/sips: URI without `?headers` are refused: the step logs an
    /// error, counts in `sipforge_route_step_errors_total` and is skipped.
    pub fn set(&mut self, line: u32, var: Var, value: &Template) {
        let Some(value) = self.expand(line, "set", value) else {
            return;
        };
        if let Err(why) = self.assign(var, &value)
            && !self.quiet()
        {
            crate::metrics::route_step_error();
            tracing::error!(
                target: "sipforge::routes",
                line,
                "set {}: `{value}` refused: {why}; step skipped",
                var_name(var)
            );
        }
    }

    /// The checks and the assignment of [`Ctx::set`].
    fn assign(&mut self, var: Var, value: &str) -> Result<(), &'static str> {
        match var {
            Var::Du if value.is_empty() => self.edits.du = None,
            Var::Du => {
                Uri::parse_target(value)?;
                self.edits.du = Some(value.to_owned());
            }
            Var::Ru => {
                Uri::parse_target(value)?;
                self.edits.ruri = Some(value.to_owned());
            }
            Var::RUser | Var::Rd | Var::Rp => {
                let current = self.ruri().ok_or("the message has no Request-URI")?;
                let ruri = replace_uri_part(&current, var, value)?;
                self.edits.ruri = Some(ruri);
            }
            _ => return Err("the variable is read-only"),
        }
        Ok(())
    }

    /// `record_route`
    pub fn record_route(&mut self, _line: u32) {
        if self.section == Section::Request {
            self.edits.record_route = true;
        }
    }

    /// `reply` (ends the route)
    pub fn reply(
        &mut self,
        line: u32,
        code: u16,
        reason: Option<&'static str>,
        headers: &[(&'static str, &'static Template)],
    ) -> Flow {
        let mut lines = Vec::new();
        for (name, value) in headers {
            self.push_header_line(line, "reply header", name, value, &mut lines);
        }
        self.decision = Decision::Reply {
            code,
            reason,
            headers: lines,
        };
        decided(line, "reply");
        Flow::Stop
    }

    /// `forward` (ends the route)
    pub fn forward(&mut self, line: u32, to: Option<&'static Target>) -> Flow {
        self.decision = Decision::Forward(to);
        decided(line, "forward");
        Flow::Stop
    }

    /// `relay` (ends the route)
    pub fn relay(&mut self, line: u32, to: RelayTo) -> Flow {
        decided(line, "relay");
        if let RelayTo::Set(name) = to {
            self.edits.ds = Some(name);
        }
        self.decision = Decision::Relay(to);
        Flow::Stop
    }

    /// `save` (ends the route): the REGISTER is handled by the core.
    pub fn save(&mut self, line: u32) -> Flow {
        self.decision = Decision::Save;
        decided(line, "save");
        Flow::Stop
    }

    /// `lookup`: true when the Request-URI's address-of-record has
    /// contacts (they become the fork `relay` makes), false otherwise.
    pub fn lookup(&mut self, line: u32) -> bool {
        if self.asked.is_some() {
            return false;
        }
        let Some(ruri) = self.ruri().map(Cow::into_owned) else {
            return false;
        };
        let Some(location) = self.location else {
            tracing::error!(target: "sipforge::routes", line, "lookup: no location service");
            return false;
        };
        self.queries += 1;
        match location.fork(&ruri) {
            Located::Ready(Some(groups)) if !groups.is_empty() => {
                self.edits.fork = groups;
                true
            }
            Located::Ready(_) => false,
            Located::Ask(aor) => {
                self.asked = Some(crate::proxy::suspend::Query::Bindings { aor });
                false
            }
        }
    }

    /// `registered` (the Request-URI) / `registered("$fu")`: whether the
    /// address-of-record has a binding.
    pub fn registered(&mut self, aor: Option<&Template>) -> bool {
        let uri = match aor {
            Some(t) => {
                let mut out = Vec::new();
                self.push_template(t, &mut out);
                String::from_utf8_lossy(&out).into_owned()
            }
            None => match self.ruri() {
                Some(r) => r.into_owned(),
                None => return false,
            },
        };
        if self.asked.is_some() {
            return false;
        }
        let Some(location) = self.location else {
            return false;
        };
        self.queries += 1;
        match location.has(&uri) {
            Located::Ready(has) => has,
            Located::Ask(aor) => {
                self.asked = Some(crate::proxy::suspend::Query::Bindings { aor });
                false
            }
        }
    }

    /// `drop` (ends the route)
    pub fn drop_message(&mut self, line: u32) -> Flow {
        self.decision = Decision::Drop;
        decided(line, "drop");
        Flow::Stop
    }
}

/// The ending action a route took, at TRACE level (`RUST_LOG=sipforge::routes=trace`
/// shows each message's path through the routes; the route-case tests
/// name the line in their failures).
fn decided(line: u32, action: &'static str) {
    tracing::trace!(target: "sipforge::routes", line, action, "{action}");
}

/// A part of a From/To header.
fn name_addr_part<'a>(na: Option<NameAddr<'a>>, v: Var) -> Option<&'a str> {
    let na = na?;
    match v {
        Var::Fu | Var::Tu => Some(na.uri),
        Var::Ft | Var::Tt => na.tag,
        Var::FUser | Var::TUser => Uri::parse(na.uri).and_then(|u| u.user),
        Var::Fd | Var::Td => Uri::parse(na.uri).map(|u| u.host),
        _ => None,
    }
}

/// Borrow `part` from `whole` when it is a sub-slice's text (avoids an allocation).
fn borrow_part<'s>(whole: &'s str, part: &str) -> Option<Cow<'s, str>> {
    if part.is_empty() {
        return Some(Cow::Borrowed(""));
    }
    whole
        .find(part)
        .map(|at| Cow::Borrowed(&whole[at..at + part.len()]))
}

/// Folded header values read as one line.
fn unfold(value: &str) -> Cow<'_, str> {
    if memchr::memchr2(b'\r', b'\n', value.as_bytes()).is_none() {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut in_fold = false;
    for c in value.chars() {
        if c == '\r' || c == '\n' || (in_fold && (c == ' ' || c == '\t')) {
            if !in_fold {
                out.push(' ');
            }
            in_fold = c == '\r' || c == '\n' || in_fold;
            continue;
        }
        in_fold = false;
        out.push(c);
    }
    Cow::Owned(out)
}

/// Offset of `part` (a sub-slice of `whole`) within `whole`.
fn offset_in(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

/// How a writable variable is written in a routes file (for log lines).
fn var_name(v: Var) -> &'static str {
    match v {
        Var::Ru => "$ru",
        Var::RUser => "$rU",
        Var::Rd => "$rd",
        Var::Rp => "$rp",
        Var::Du => "$du",
        _ => "a read-only variable",
    }
}

/// A Request-URI with its user, host or port replaced (an empty value removes
/// the user or the port). The user is escaped ([`crate::sip::escape_user`]);
/// a host must be a host name or address ([`crate::sip::is_host`]) and a
/// port a number from 1 to 65535; the URI must be a sip:/sips: one. Err says
/// why not. The result is checked to parse back with exactly the part set
/// and the rest as it was, so no value can move the request elsewhere.
fn replace_uri_part(current: &str, var: Var, value: &str) -> Result<String, &'static str> {
    let uri = Uri::parse(current).ok_or("the Request-URI does not parse")?;
    if !uri.is_sip() {
        return Err("the Request-URI is not a sip: or sips: URI");
    }
    let host_at = offset_in(current, uri.host);
    let host_end = host_at + uri.host.len();
    let mut out = String::with_capacity(current.len() + value.len() * 3);
    let (mut user, mut password) = (uri.user.map(str::to_owned), uri.password);
    let (mut host, mut port) = (uri.host, uri.port);
    match var {
        Var::RUser => {
            let scheme_end = uri.scheme.len() + 1;
            out.push_str(&current[..scheme_end]);
            if value.is_empty() {
                (user, password) = (None, None);
            } else {
                let start = out.len();
                crate::sip::escape_user(value, &mut out);
                user = Some(out[start..].to_owned());
                // keep a password if there was one
                match uri.user {
                    Some(old) => {
                        let user_end = offset_in(current, old) + old.len();
                        let at = current[user_end..]
                            .find('@')
                            .map(|i| user_end + i)
                            .ok_or("the Request-URI does not parse")?;
                        out.push_str(&current[user_end..at]);
                        out.push('@');
                    }
                    None => out.push('@'),
                }
            }
            out.push_str(&current[host_at..]);
        }
        Var::Rd => {
            if !crate::sip::is_host(value) {
                return Err("not a host name, IPv4 address or [IPv6] reference");
            }
            host = value;
            out.push_str(&current[..host_at]);
            out.push_str(value);
            out.push_str(&current[host_end..]);
        }
        Var::Rp => {
            let after_port = match uri.port {
                Some(_) => {
                    let rest = &current[host_end..];
                    let digits = rest[1..].bytes().take_while(u8::is_ascii_digit).count();
                    host_end + 1 + digits
                }
                None => host_end,
            };
            out.push_str(&current[..host_end]);
            let digits = value.trim();
            if digits.is_empty() {
                port = None;
            } else {
                let n: u16 = digits
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| digits.parse().ok())
                    .flatten()
                    .filter(|&n| n != 0)
                    .ok_or("not a port (1 to 65535)")?;
                port = Some(n);
                out.push(':');
                out.push_str(&n.to_string());
            }
            out.push_str(&current[after_port..]);
        }
        _ => return Err("the variable is read-only"),
    }
    let new = Uri::parse(&out).ok_or("the result does not parse as a URI")?;
    let same = new.user == user.as_deref()
        && new.password == password
        && new.host == host
        && new.port == port
        && new.params == uri.params
        && new.headers == uri.headers;
    if !same {
        return Err("the result would change more than that part of the URI");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parts_are_replaced() {
        let u = "sip:alice@example.com:5070;transport=udp";
        assert_eq!(
            replace_uri_part(u, Var::RUser, "+1555").unwrap(),
            "sip:+1555@example.com:5070;transport=udp"
        );
        assert_eq!(
            replace_uri_part(u, Var::Rd, "10.0.0.1").unwrap(),
            "sip:alice@10.0.0.1:5070;transport=udp"
        );
        assert_eq!(
            replace_uri_part(u, Var::Rp, "5080").unwrap(),
            "sip:alice@example.com:5080;transport=udp"
        );
        assert_eq!(
            replace_uri_part(u, Var::Rp, "").unwrap(),
            "sip:alice@example.com;transport=udp"
        );
        assert_eq!(
            replace_uri_part("sip:example.com", Var::RUser, "bob").unwrap(),
            "sip:bob@example.com"
        );
        assert_eq!(
            replace_uri_part("sip:bob:pw@example.com", Var::RUser, "carol").unwrap(),
            "sip:carol:pw@example.com"
        );
        assert_eq!(
            replace_uri_part("sip:bob@example.com", Var::RUser, "").unwrap(),
            "sip:example.com"
        );
        assert_eq!(
            replace_uri_part("sip:example.com", Var::Rp, "5062").unwrap(),
            "sip:example.com:5062"
        );
    }

    #[test]
    fn a_user_value_is_escaped_and_cannot_move_the_request() {
        let u = "sip:alice@example.com:5070;transport=udp";
        assert_eq!(
            replace_uri_part(u, Var::RUser, "evil@127.0.0.9:9999;x=").unwrap(),
            "sip:evil%40127.0.0.9%3A9999;x=@example.com:5070;transport=udp"
        );
        assert_eq!(
            replace_uri_part("sip:example.com", Var::RUser, "+1 (555) 123#4").unwrap(),
            "sip:+1%20(555)%20123%234@example.com"
        );
        // An escape read from the Request-URI (`+1$rU`) is not escaped twice.
        assert_eq!(
            replace_uri_part("sip:a%40b@example.com", Var::RUser, "+1a%40b").unwrap(),
            "sip:+1a%40b@example.com"
        );
        // Removing the user removes its password too.
        assert_eq!(
            replace_uri_part("sip:bob:pw@example.com", Var::RUser, "").unwrap(),
            "sip:example.com"
        );
    }

    #[test]
    fn a_bad_host_or_port_is_refused() {
        let u = "sip:alice@example.com:5070;transport=udp";
        for host in [
            "",
            "evil@127.0.0.9",
            "127.0.0.9:9999",
            "127.0.0.9;maddr=10.0.0.1",
            "h>",
            "h x",
            "h?Route=x",
            "2001:db8::1",
        ] {
            assert!(replace_uri_part(u, Var::Rd, host).is_err(), "{host:?}");
        }
        assert_eq!(
            replace_uri_part(u, Var::Rd, "[2001:db8::1]").unwrap(),
            "sip:alice@[2001:db8::1]:5070;transport=udp"
        );
        for port in ["abc", "0", "65536", "+5060", "50 60", "5060;x=y", "-1"] {
            assert!(replace_uri_part(u, Var::Rp, port).is_err(), "{port:?}");
        }
        assert_eq!(
            replace_uri_part(u, Var::Rp, " 5080 ").unwrap(),
            "sip:alice@example.com:5080;transport=udp"
        );
        // Parts of a URI that has none (a tel: or unknown scheme) are refused.
        for var in [Var::RUser, Var::Rd, Var::Rp] {
            assert!(replace_uri_part("tel:+15551234", var, "5060").is_err());
            assert!(replace_uri_part("urn:service:sos", var, "x").is_err());
        }
    }

    #[test]
    fn set_refuses_what_is_not_a_request_uri_or_next_hop() {
        use crate::api::Piece;
        let raw = b"INVITE sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
X-Num: evil@127.0.0.9:9999;x=\r\n\
Content-Length: 0\r\n\r\n";
        let msg = Message::parse(raw).unwrap();
        let mut cx = Ctx::for_request(&msg, "192.0.2.1:5060".parse().unwrap());
        for value in [
            "sip:bob@example.com?Route=%3Csip:evil.example.com%3E",
            "tel:+15551234",
            "bob@example.com",
            "sip:evil@127.0.0.9:9999;x=@gw.example.com",
            "",
        ] {
            cx.set(1, Var::Ru, &[Piece::Lit(value)]);
            assert_eq!(cx.edits.ruri, None, "$ru {value:?}");
            if !value.is_empty() {
                cx.set(1, Var::Du, &[Piece::Lit(value)]);
                assert_eq!(cx.edits.du, None, "$du {value:?}");
            }
        }
        cx.set(1, Var::Rd, &[Piece::Lit("evil.example.com>")]);
        assert_eq!(cx.edits.ruri, None);
        cx.set(1, Var::Rp, &[Piece::Lit("5060;x")]);
        assert_eq!(cx.edits.ruri, None);
        // A header value into $rU: escaped, the host stays.
        cx.set(1, Var::RUser, &[Piece::Var(Var::Hdr("X-Num"))]);
        assert_eq!(
            cx.edits.ruri.as_deref(),
            Some("sip:evil%40127.0.0.9%3A9999;x=@example.com")
        );
        assert_eq!(cx.get(Var::Rd), "example.com");
        assert_eq!(cx.get(Var::RUser), "evil%40127.0.0.9%3A9999;x=");
        cx.set(
            1,
            Var::Ru,
            &[Piece::Lit("sips:bob@example.net;transport=tls")],
        );
        assert_eq!(
            cx.edits.ruri.as_deref(),
            Some("sips:bob@example.net;transport=tls")
        );
        cx.set(1, Var::Du, &[Piece::Lit("sip:10.0.0.9:5060;lr")]);
        assert_eq!(cx.edits.du.as_deref(), Some("sip:10.0.0.9:5060;lr"));
    }

    #[test]
    fn folded_values_read_as_one_line() {
        assert_eq!(unfold("a,\r\n  b"), "a, b");
        assert_eq!(unfold("plain"), "plain");
    }
}
