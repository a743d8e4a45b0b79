//! Every build-time check of the language that is not about the YAML shape:
//! where variables and actions are allowed, types, references to routes and
//! destination sets, regexes, URIs, sockets, header names, unreachable
//! steps and loops between named routes. All findings are collected.

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::suggest;

mod media;
mod nat;
mod registrar;
mod security;
pub use registrar::registered_var;
mod transport;
pub use media::rtpengine_socket;
pub use transport::dns_server;

/// Where a block runs: a section, or nowhere (an unused named route).
type Ctx = Option<SectionKind>;

pub fn check(file: &File, diags: &mut Vec<Diagnostic>) {
    let mut c = Checker {
        file,
        diags: Vec::new(),
        walked: BTreeSet::new(),
    };
    c.run();
    diags.extend(c.diags);
}

struct Checker<'f> {
    file: &'f File,
    diags: Vec<Diagnostic>,
    /// (route, context) pairs already checked.
    walked: BTreeSet<(String, Ctx)>,
}

/// Whether a step always ends the route.
pub fn step_ends(s: &Step) -> bool {
    match &s.kind {
        StepKind::Forward(_)
        | StepKind::Relay(_)
        | StepKind::Reply { .. }
        | StepKind::Save
        | StepKind::Drop
        | StepKind::Exit => true,
        StepKind::If {
            then,
            otherwise: Some(e),
            ..
        } => block_ends(then) && block_ends(e),
        StepKind::Switch {
            cases,
            default: Some(d),
            ..
        } => cases.iter().all(|c| block_ends(&c.body)) && block_ends(d),
        _ => false,
    }
}

pub fn block_ends(b: &Block) -> bool {
    b.iter().any(step_ends)
}

/// Named routes that some section calls, directly or through other routes.
pub fn used_routes(file: &File) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for s in &file.sections {
        calls(&s.body, &mut |n| todo.push(n.to_string()));
    }
    while let Some(n) = todo.pop() {
        if used.insert(n.clone())
            && let Some(r) = file.routes.iter().find(|r| r.name.node == n)
        {
            calls(&r.body, &mut |n| todo.push(n.to_string()));
        }
    }
    used
}

/// Every `route:` step of a block, nested ones included.
fn calls<'b>(b: &'b Block, f: &mut dyn FnMut(&'b str)) {
    for s in b {
        match &s.kind {
            StepKind::Route(n) => f(&n.node),
            StepKind::If {
                then, otherwise, ..
            } => {
                calls(then, f);
                if let Some(e) = otherwise {
                    calls(e, f);
                }
            }
            StepKind::Switch { cases, default, .. } => {
                for c in cases {
                    calls(&c.body, f);
                }
                if let Some(d) = default {
                    calls(d, f);
                }
            }
            StepKind::Lookup { not_found: Some(b) } => calls(b, f),
            _ => {}
        }
    }
}

fn route_calls(b: &Block) -> Vec<&Sp<String>> {
    let mut out = Vec::new();
    fn walk<'b>(b: &'b Block, out: &mut Vec<&'b Sp<String>>) {
        for s in b {
            match &s.kind {
                StepKind::Route(n) => out.push(n),
                StepKind::If {
                    then, otherwise, ..
                } => {
                    walk(then, out);
                    if let Some(e) = otherwise {
                        walk(e, out);
                    }
                }
                StepKind::Switch { cases, default, .. } => {
                    for c in cases {
                        walk(&c.body, out);
                    }
                    if let Some(d) = default {
                        walk(d, out);
                    }
                }
                StepKind::Lookup { not_found: Some(b) } => walk(b, out),
                _ => {}
            }
        }
    }
    walk(b, &mut out);
    out
}

/// The Rust name of a named route's function.
pub fn route_fn_name(name: &str) -> String {
    format!("route_{}", name.to_ascii_lowercase().replace('-', "_"))
}

/// A SIP token (RFC 3261), as header names are.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; port 1..=65535.
pub fn check_hostport(s: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err("unclosed `[` in an IPv6 address".into());
        };
        let v6 = &rest[..end];
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{v6}` is not an IPv6 address"));
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (None, Some(p)),
            None if after.is_empty() => (None, None),
            None => return Err(format!("unexpected `{after}` after the address")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(s), None),
        }
    };
    if let Some(h) = host {
        if h.is_empty() {
            return Err("the host is missing".into());
        }
        let ok_label = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !h.trim_end_matches('.').split('.').all(ok_label) {
            return Err(format!("`{h}` is not a host name or IPv4 address"));
        }
        if h.chars().all(|c| c.is_ascii_digit() || c == '.')
            && h.parse::<std::net::Ipv4Addr>().is_err()
        {
            return Err(format!("`{h}` is not an IPv4 address"));
        }
    }
    if let Some(p) = port {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && !p.starts_with('+') => {}
            _ => return Err(format!("`{p}` is not a port (1 to 65535)")),
        }
    }
    Ok(())
}

/// `sip:` or `sips:`, optional `user@`, a host, an optional port, then
/// `;params` and `?headers`.
pub fn check_uri(s: &str) -> Result<(), String> {
    let rest = if let Some(r) = s.strip_prefix("sip:") {
        r
    } else if let Some(r) = s.strip_prefix("sips:") {
        r
    } else {
        return Err("a URI starts with `sip:` or `sips:`".into());
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URI cannot contain spaces or control characters".into());
    }
    let rest = match rest.rfind('@') {
        Some(i) => &rest[i + 1..],
        None => rest,
    };
    let end = rest.find([';', '?']).unwrap_or(rest.len());
    check_hostport(&rest[..end])
}

/// A literal `$rd`: what the run time accepts (a host name or IPv4 address
/// of letters, digits, `-`, `.` and `_`, or a bracketed IPv6 address), so
/// a value it would refuse on every message is a build error instead.
pub fn check_set_host(h: &str) -> Result<(), String> {
    if let Some(v6) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("`{v6}` is not an IPv6 address")),
        };
    }
    let ok = h.starts_with(|c: char| c.is_ascii_alphanumeric())
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && !h.contains("..");
    if !ok {
        return Err(format!(
            "`{h}` is not a host name or IP address (a port goes into `$rp`)"
        ));
    }
    Ok(())
}

/// `udp:`, `tcp:`, `tls:`, `ws:` or `wss:IP:PORT`
pub fn check_listen(s: &str) -> Result<(), (String, String)> {
    let Some((proto, addr)) = s.split_once(':') else {
        return Err((
            "a socket looks like `udp:IP:PORT`".into(),
            "e.g. `udp:127.0.0.1:5060`".into(),
        ));
    };
    match proto {
        "udp" | "tcp" | "tls" | "ws" | "wss" => {}
        _ => {
            return Err((
                format!("unknown transport `{proto}`"),
                "a socket looks like `udp:IP:PORT`".into(),
            ));
        }
    }
    match addr.parse::<std::net::SocketAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err((
            format!("`{addr}` is not an IP address and port"),
            "write `udp:IP:PORT` with a numeric IP, e.g. `udp:0.0.0.0:5060` or `udp:[::1]:5060`"
                .into(),
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
    Int,
    Text,
    Word,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Int => "an integer",
            Ty::Text => "text",
            Ty::Word => "a bare word",
        }
    }
}

fn ty(o: &Operand) -> Ty {
    match o {
        Operand::Var(v) if v.is_int() => Ty::Int,
        Operand::Var(_) | Operand::Str(_) => Ty::Text,
        Operand::Int(_) => Ty::Int,
        Operand::Word(_) => Ty::Word,
        Operand::Net(_) => Ty::Text,
    }
}

fn show(o: &Operand) -> String {
    match o {
        Operand::Var(v) => format!("`{}`", v.display()),
        Operand::Str(s) => format!("\"{s}\""),
        Operand::Int(n) => format!("`{n}`"),
        Operand::Word(w) => format!("`{w}`"),
        Operand::Net(n) => format!("`{n}`"),
    }
}

impl<'f> Checker<'f> {
    fn err(
        &mut self,
        pos: Pos,
        len: u32,
        message: impl Into<String>,
        label: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(pos, len, message).label(label).hint(hint));
    }

    fn run(&mut self) {
        let file = self.file;
        if file.section(SectionKind::Request).is_none() {
            self.err(Pos { line: 1, col: 1, offset: 0 }, 1, "the routes file has no `request:` section", "", "add `request:` with the steps to run for every request, e.g. `request: [ forward ]`");
        }
        for l in &file.listen {
            if let Err((m, h)) = check_listen(&l.node) {
                self.err(l.pos, l.len, format!("invalid listen socket: {m}"), "", h);
            }
        }
        if let Some(a) = &file.advertise
            && let Err(m) = check_hostport(&a.node)
        {
            self.err(
                a.pos,
                a.len,
                format!("invalid advertise address: {m}"),
                "",
                "write `host` or `host:port`, e.g. `proxy.example.com:5060`",
            );
        }
        for set in &file.destinations {
            if set.name.node.contains(':') || set.name.node.trim().is_empty() {
                self.err(
                    set.name.pos,
                    set.name.len,
                    "invalid destination set name",
                    "",
                    "use a name such as `backends` (no `:`)",
                );
            }
            for (i, t) in set.targets.iter().enumerate() {
                if let Err(m) = check_uri(&t.uri.node) {
                    self.err(
                        t.uri.pos,
                        t.uri.len,
                        format!("invalid target URI: {m}"),
                        "",
                        "e.g. `sip:127.0.0.1:5080` or `sip:backend.example.com;transport=udp`",
                    );
                } else if let Some(first) = set.targets[..i]
                    .iter()
                    .find(|o| o.uri.node.eq_ignore_ascii_case(&t.uri.node))
                {
                    self.err(
                        t.uri.pos,
                        t.uri.len,
                        format!(
                            "target `{}` is listed twice in destination set `{}`",
                            t.uri.node, set.name.node
                        ),
                        "listed again here",
                        format!(
                            "it is first listed on line {}; keep one and give it a `weight` instead",
                            first.uri.pos.line
                        ),
                    );
                }
            }
            if let Some(probe) = &set.probe
                && let Some(timeout) = &probe.timeout_ms
                && timeout.node > probe.interval_ms
            {
                self.err(
                    timeout.pos,
                    timeout.len,
                    "the probe timeout is longer than the probe interval",
                    "",
                    format!(
                        "a target is probed every {} ms and a probe waits for its answer at most until the next one; \
                         use a timeout of at most the interval, or leave it out (it defaults to the interval)",
                        probe.interval_ms
                    ),
                );
            }
        }
        self.security_settings();
        self.transport_settings();
        self.registrar_settings();
        self.media_settings();
        // Route names and their function names.
        let mut fns: BTreeMap<String, &Sp<String>> = BTreeMap::new();
        for r in &file.routes {
            let n = &r.name;
            if n.node.is_empty()
                || !n
                    .node
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                || n.node.starts_with(|c: char| c.is_ascii_digit())
            {
                self.err(
                    n.pos,
                    n.len,
                    format!("invalid route name `{}`", n.node),
                    "",
                    "route names use letters, digits, `_` and `-`, and start with a letter",
                );
                continue;
            }
            let f = route_fn_name(&n.node);
            if let Some(first) = fns.get(&f) {
                let line = first.pos.line;
                self.err(n.pos, n.len, format!("route name `{}` clashes with `{}`", n.node, first.node), "", format!("names that differ only in case or `-`/`_` are the same route (line {line}); rename one"));
            } else {
                fns.insert(f, n);
            }
        }
        self.cycles();
        for s in &file.sections {
            self.block(&s.body, Some(s.kind), None);
        }
        let used = used_routes(file);
        for r in &file.routes {
            if !used.contains(&r.name.node) {
                self.diags.push(
                    Diagnostic::warning(
                        r.name.pos,
                        r.name.len,
                        format!("route `{}` is never used", r.name.node),
                    )
                    .label("defined here")
                    .hint(format!(
                        "call it with `- route: {}`, or remove it",
                        r.name.node
                    )),
                );
                self.route(&r.name.node, None);
            }
        }
    }

    fn route(&mut self, name: &str, ctx: Ctx) {
        if !self.walked.insert((name.to_string(), ctx)) {
            return;
        }
        if let Some(r) = self.file.routes.iter().find(|r| r.name.node == name) {
            self.block(&r.body, ctx, Some(name));
        }
    }

    /// Loops between named routes, each reported once at the call that
    /// closes it.
    fn cycles(&mut self) {
        let file = self.file;
        let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
        for r in &file.routes {
            // Depth-first search from r back to r.
            let mut stack: Vec<(String, Vec<String>)> =
                vec![(r.name.node.clone(), vec![r.name.node.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((n, path)) = stack.pop() {
                let Some(route) = file.routes.iter().find(|x| x.name.node == n) else {
                    continue;
                };
                for call in route_calls(&route.body) {
                    if call.node == r.name.node {
                        let mut key = path.clone();
                        key.sort();
                        if reported.insert(key) {
                            let mut cycle = path.clone();
                            cycle.push(call.node.clone());
                            let shown = cycle
                                .iter()
                                .map(|c| format!("`{c}`"))
                                .collect::<Vec<_>>()
                                .join(" -> ");
                            self.err(call.pos, call.len, format!("named routes call each other in a loop: {shown}"), "this call closes the loop", "a route cannot call itself, directly or through other routes; break the loop");
                        }
                    } else if seen.insert(call.node.clone()) {
                        let mut p = path.clone();
                        p.push(call.node.clone());
                        stack.push((call.node.clone(), p));
                    }
                }
            }
        }
    }

    fn block(&mut self, b: &Block, ctx: Ctx, route: Option<&str>) {
        let mut ended: Option<&Step> = None;
        let mut reported = false;
        for s in b {
            if let Some(e) = ended
                && !reported
            {
                reported = true;
                let why = match &e.kind {
                    StepKind::If { .. } => format!(
                        "every branch of the `if` on line {} ends the route",
                        e.pos.line
                    ),
                    StepKind::Switch { .. } => format!(
                        "every case of the `switch` on line {} ends the route",
                        e.pos.line
                    ),
                    k => format!("`{}` on line {} ends the route", k.word(), e.pos.line),
                };
                self.err(
                    s.pos,
                    s.len,
                    "unreachable step",
                    "this step never runs",
                    format!("{why}; remove this step or move it before"),
                );
            }
            self.step(s, ctx, route);
            if ended.is_none() && step_ends(s) {
                ended = Some(s);
            }
        }
    }

    fn where_(ctx: Ctx, route: Option<&str>) -> String {
        match (ctx, route) {
            (Some(c), None) => format!("`{}`", c.name()),
            (Some(c), Some(r)) => format!("route `{r}` (called from `{}`)", c.name()),
            (None, _) => "this route".into(),
        }
    }

    fn step(&mut self, s: &Step, ctx: Ctx, route: Option<&str>) {
        let at = Self::where_(ctx, route);
        match &s.kind {
            StepKind::Log { message, .. } => self.template(message, ctx, route),
            StepKind::AppendHeader(h) => self.header(h, ctx, route),
            StepKind::RemoveHeader(n) => self.header_name(n),
            StepKind::Set(items) => {
                if ctx == Some(SectionKind::Reply) {
                    self.err(
                        s.pos,
                        s.len,
                        format!("`set` cannot be used in {at}"),
                        "",
                        "request variables can be written in `request` and `failure` only",
                    );
                }
                for (v, t) in items {
                    if let Var::Hdr(_) = v.node {
                        self.err(
                            v.pos,
                            v.len,
                            format!("`{}` is read-only", v.node.display()),
                            "",
                            "change headers with `remove_header` and `append_header`",
                        );
                    } else if !v.node.writable() {
                        self.err(
                            v.pos,
                            v.len,
                            format!("`{}` is read-only", v.node.display()),
                            "",
                            "writable variables are $ru $rU $rd $rp $du",
                        );
                    }
                    self.template(t, ctx, route);
                    self.crlf(t, v.pos, v.len);
                    if let Some(lit) = t.literal() {
                        let bad = match v.node {
                            Var::Du | Var::Ru => check_uri(&lit).err().or_else(|| {
                                let tail = lit.rsplit_once('@').map_or(lit.as_str(), |(_, t)| t);
                                tail.contains('?').then(|| {
                                    "a Request-URI or next hop cannot carry `?headers`".to_string()
                                })
                            }),
                            Var::Rd => check_set_host(&lit).err(),
                            Var::Rp => match lit.parse::<u32>() {
                                Ok(1..=65535) => None,
                                _ => Some(format!("`{lit}` is not a port (1 to 65535)")),
                            },
                            _ => None,
                        };
                        if let Some(m) = bad {
                            self.err(
                                v.pos,
                                v.len,
                                format!("invalid value for `{}`: {m}", v.node.display()),
                                "",
                                "e.g. `$du: \"sip:10.0.0.9:5060\"`",
                            );
                        }
                    }
                }
            }
            StepKind::Reply {
                code,
                reason,
                headers,
            } => {
                if ctx == Some(SectionKind::Reply) {
                    self.err(s.pos, s.len, format!("`reply` cannot be used in {at}"), "a response cannot be answered", "to answer after a relayed request fails, use `failure:` (which may `reply` or `relay` again)");
                }
                let c = code.node;
                if c == 100 {
                    self.err(code.pos, code.len, "`reply: 100` is not allowed", "", "100 Trying is sent automatically by the transaction layer; use 180-199 for provisional replies or >= 200");
                } else if !(100..=699).contains(&c) || (101..180).contains(&c) {
                    self.err(
                        code.pos,
                        code.len,
                        format!("invalid reply code {c}"),
                        "",
                        "reply codes are 180-199 (provisional) or 200-699",
                    );
                }
                if let Some(r) = reason
                    && r.node.contains(['\r', '\n'])
                {
                    self.err(
                        r.pos,
                        r.len,
                        "a reason phrase cannot contain CR or LF",
                        "",
                        "write the reason on one line",
                    );
                }
                for h in headers {
                    self.header(h, ctx, route);
                }
            }
            StepKind::Forward(t) => {
                match ctx {
                    Some(SectionKind::Reply) => self.err(s.pos, s.len, format!("`forward` cannot be used in {at}"), "a response cannot be re-routed", "responses follow the Via path back; to try another target after a failure, use `failure:` with `relay`"),
                    Some(SectionKind::Failure) => self.err(s.pos, s.len, format!("`forward` cannot be used in {at}"), "stateless forward in a transaction", "use `relay` to send the request to another target from `failure`"),
                    _ => {}
                }
                if let Some(t) = t {
                    self.uri(t);
                }
            }
            StepKind::Relay(to) => {
                if ctx == Some(SectionKind::Reply) {
                    self.err(s.pos, s.len, format!("`relay` cannot be used in {at}"), "a response cannot be re-routed", "to try another target when a relayed request fails, use `failure:` with `relay`");
                }
                match to {
                    RelayTo::Default => {}
                    RelayTo::List(uris) => {
                        if uris.is_empty() {
                            self.err(s.pos, s.len, "`relay: []` has no target", "", "list at least one URI, e.g. `relay: [sip:a@10.0.0.1, sip:b@10.0.0.2]`");
                        }
                        for u in uris {
                            self.uri(u);
                        }
                    }
                    RelayTo::Uri(u) => self.uri(u),
                    RelayTo::Set(n) => {
                        if !self.file.destinations.iter().any(|d| d.name.node == n.node) {
                            let names: Vec<&str> = self
                                .file
                                .destinations
                                .iter()
                                .map(|d| d.name.node.as_str())
                                .collect();
                            let hint = match suggest::closest(&n.node, &names) {
                                Some(x) => format!("did you mean `{x}`?"),
                                None if names.is_empty() => "define it under `destinations:`, or write a URI such as `sip:10.0.0.1:5060`".into(),
                                None => format!("destination sets are: {}", names.join(", ")),
                            };
                            self.err(
                                n.pos,
                                n.len,
                                format!("unknown destination set `{}`", n.node),
                                "",
                                hint,
                            );
                        }
                    }
                }
            }
            StepKind::Authenticate => self.authenticate(s, ctx, &at),
            StepKind::Save => self.request_only(s, ctx, &at, "handles a REGISTER"),
            StepKind::Lookup { not_found } => {
                self.request_only(s, ctx, &at, "finds the contacts of the Request-URI");
                if let Some(b) = not_found {
                    self.block(b, ctx, route);
                }
            }
            StepKind::FixContact => self.fix_contact(s, ctx, &at),
            StepKind::RtpManage(flags) => self.rtp_manage((s.pos, s.len), flags.as_ref(), ctx),
            StepKind::RecordRoute => {
                if ctx == Some(SectionKind::Reply) {
                    self.err(
                        s.pos,
                        s.len,
                        format!("`record_route` cannot be used in {at}"),
                        "",
                        "add `record_route` in `request`, before the request is sent on",
                    );
                }
            }
            StepKind::Route(n) => {
                if self.file.routes.iter().any(|r| r.name.node == n.node) {
                    self.route(&n.node, ctx);
                } else {
                    let names: Vec<&str> = self
                        .file
                        .routes
                        .iter()
                        .map(|r| r.name.node.as_str())
                        .collect();
                    let hint = match suggest::closest(&n.node, &names) {
                        Some(x) => format!("did you mean `{x}`?"),
                        None if names.is_empty() => "define it under `routes:`".into(),
                        None => format!("named routes are: {}", names.join(", ")),
                    };
                    self.err(
                        n.pos,
                        n.len,
                        format!("unknown route `{}`", n.node),
                        "",
                        hint,
                    );
                }
            }
            StepKind::Drop | StepKind::Exit => {}
            StepKind::If {
                cond,
                then,
                otherwise,
            } => {
                self.expr(cond, (s.pos, s.len), ctx, route);
                self.block(then, ctx, route);
                if let Some(e) = otherwise {
                    self.block(e, ctx, route);
                }
            }
            StepKind::Switch { on, cases, default } => {
                self.var(on, ctx, route);
                let int = on.node.is_int();
                let mut seen: Vec<(&CaseLabel, u32)> = Vec::new();
                for c in cases {
                    let l = &c.label;
                    match (&l.node, int) {
                        (CaseLabel::Text(t), true) => self.err(l.pos, l.len, format!("case `{t}` is text but `{}` is an integer", on.node.display()), "", "cases of an integer switch are numbers such as `404` or classes such as `5xx`"),
                        (CaseLabel::Class(_), false) => self.err(l.pos, l.len, format!("status class cases need an integer variable, and `{}` is text", on.node.display()), "", "classes such as `5xx` are for `switch: $rs`"),
                        _ => {}
                    }
                    let covered = seen.iter().find(|(x, _)| match (x, &l.node) {
                        (a, b) if *a == b => true,
                        (CaseLabel::Class(k), CaseLabel::Int(n)) => n / 100 == *k,
                        (CaseLabel::Int(a), CaseLabel::Text(b))
                        | (CaseLabel::Text(b), CaseLabel::Int(a)) => a.to_string() == *b,
                        _ => false,
                    });
                    if let Some((_, line)) = covered {
                        let line = *line;
                        self.err(l.pos, l.len, "unreachable case", "already matched by an earlier case", format!("the case on line {line} matches this value first; remove one or put the specific case first"));
                    }
                    seen.push((&l.node, l.pos.line));
                    self.block(&c.body, ctx, route);
                }
                if let Some(d) = default {
                    self.block(d, ctx, route);
                }
            }
        }
    }

    fn uri(&mut self, u: &Sp<String>) {
        if let Err(m) = check_uri(&u.node) {
            self.err(
                u.pos,
                u.len,
                format!("invalid URI `{}`: {m}", u.node),
                "",
                "e.g. `sip:127.0.0.1:5080` or `sip:proxy.example.com;transport=udp`",
            );
        }
    }

    fn header_name(&mut self, n: &Sp<String>) {
        if !is_token(&n.node) {
            self.err(
                n.pos,
                n.len,
                format!("`{}` is not a valid header name", n.node),
                "",
                "header names are SIP tokens: letters, digits and - . ! % * _ + ` ' ~",
            );
        }
    }

    fn header(&mut self, h: &Header, ctx: Ctx, route: Option<&str>) {
        self.header_name(&h.name);
        self.template(&h.value, ctx, route);
        self.crlf(&h.value, h.name.pos, h.name.len);
    }

    /// Variables of a template.
    fn template(&mut self, t: &Template, ctx: Ctx, route: Option<&str>) {
        for v in t.vars() {
            self.var(v, ctx, route);
        }
    }

    /// A literal CR or LF in a value that may end up in a header.
    fn crlf(&mut self, t: &Template, pos: Pos, len: u32) {
        let has = t
            .pieces
            .iter()
            .any(|p| matches!(p, TPiece::Lit(l) if l.contains(['\r', '\n'])));
        if has {
            self.diags.push(
                Diagnostic::error(pos, len, "a header value cannot contain CR or LF")
                    .label("this value has a line break")
                    .hint("write the value on one line; to add several headers use several steps"),
            );
        }
    }

    fn var(&mut self, v: &Sp<Var>, ctx: Ctx, route: Option<&str>) {
        if let Var::Hdr(name) = &v.node {
            if !is_token(name) {
                self.err(
                    v.pos,
                    v.len,
                    format!("`{name}` is not a valid header name"),
                    "",
                    "header names are SIP tokens: letters, digits and - . ! % * _ + ` ' ~",
                );
            }
            return;
        }
        if v.node.needs_reply() && ctx == Some(SectionKind::Request) {
            let at = Self::where_(ctx, route);
            self.err(
                v.pos,
                v.len,
                format!("`{}` has no meaning in {at}", v.node.display()),
                "there is no reply here",
                "reply status and reason ($rs, $rr) exist in `reply` and `failure`",
            );
        }
    }

    fn operand(&mut self, o: &Sp<Operand>, ctx: Ctx, route: Option<&str>) {
        if let Operand::Var(v) = &o.node {
            self.var(
                &Sp {
                    node: v.clone(),
                    pos: o.pos,
                    len: o.len,
                },
                ctx,
                route,
            );
        }
    }

    /// A condition; `at` is the span of its step (for errors about parts
    /// that have no span of their own).
    fn expr(&mut self, e: &Expr, at: (Pos, u32), ctx: Ctx, route: Option<&str>) {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.expr(a, at, ctx, route);
                self.expr(b, at, ctx, route);
            }
            Expr::Not(a) => self.expr(a, at, ctx, route),
            Expr::InDialog | Expr::BehindNat => {}
            Expr::Registered(arg) => self.registered(at, arg.as_ref(), ctx, route),
            Expr::RtpManage(flags, _) => self.rtp_manage(at, flags.as_ref(), ctx),
            Expr::Exists(h) => self.header_name(h),
            Expr::Bare(o) => {
                self.operand(o, ctx, route);
                self.err(o.pos, o.len, format!("{} is not a condition", show(&o.node)), "", "compare it, e.g. `$rm == \"INVITE\"`, or test a header with `exists($hdr(Name))`");
            }
            Expr::Cmp { lhs, op, rhs } => {
                self.operand(lhs, ctx, route);
                self.operand(rhs, ctx, route);
                self.compare(lhs, op, rhs);
            }
            Expr::Match { lhs, regex, .. } => {
                self.operand(lhs, ctx, route);
                match &lhs.node {
                    Operand::Var(v) if !v.is_int() => {}
                    o => self.err(
                        lhs.pos,
                        lhs.len,
                        format!("a regular expression matches text, not {}", show(o)),
                        "",
                        "match a text variable, e.g. `$ru =~ \"^sip:\\\\+1\"`",
                    ),
                }
                match &regex.node {
                    Operand::Str(re) => {
                        if let Err(err) = regex::Regex::new(re) {
                            let text = err.to_string();
                            let last = text
                                .lines()
                                .rev()
                                .find(|l| !l.trim().is_empty())
                                .unwrap_or("")
                                .trim();
                            let last = last.strip_prefix("error: ").unwrap_or(last);
                            self.err(
                                regex.pos,
                                regex.len,
                                format!("invalid regular expression: {last}"),
                                "",
                                format!("the regex crate says:\n{text}"),
                            );
                        }
                    }
                    o => self.err(
                        regex.pos,
                        regex.len,
                        format!(
                            "expected a regular expression in double quotes, found {}",
                            show(o)
                        ),
                        "",
                        "e.g. `$rU =~ \"^\\\\+?[0-9]+$\"`",
                    ),
                }
            }
            Expr::InList { lhs, items } => {
                self.operand(lhs, ctx, route);
                if self.net_list(lhs, items) {
                    return;
                }
                let lt = ty(&lhs.node);
                if !matches!(lhs.node, Operand::Var(_)) {
                    self.err(
                        lhs.pos,
                        lhs.len,
                        "the left side of `in` must be a variable",
                        "",
                        "e.g. `$rs in [404, 486]`",
                    );
                }
                if items.is_empty() {
                    self.err(
                        lhs.pos,
                        lhs.len,
                        "`in []` never matches",
                        "",
                        "list at least one value",
                    );
                }
                for it in items {
                    self.operand(it, ctx, route);
                    let it_ty = ty(&it.node);
                    if matches!(it.node, Operand::Var(_)) {
                        self.err(
                            it.pos,
                            it.len,
                            "list items must be constants",
                            "",
                            "compare variables with `==`",
                        );
                    } else if it_ty == Ty::Word && lhs.node == Operand::Var(Var::Rm) {
                    } else if it_ty == Ty::Word {
                        self.err(
                            it.pos,
                            it.len,
                            format!("bare word {}", show(&it.node)),
                            "",
                            "quote text values; bare method names are allowed only with `$rm`",
                        );
                    } else if it_ty != lt {
                        self.err(
                            it.pos,
                            it.len,
                            format!(
                                "type mismatch: {} is {} but {} is {}",
                                show(&lhs.node),
                                lt.name(),
                                show(&it.node),
                                it_ty.name()
                            ),
                            "",
                            if lt == Ty::Int {
                                "write a number, e.g. 404"
                            } else {
                                "quote the value, e.g. \"404\""
                            },
                        );
                    }
                }
            }
            Expr::InRange { lhs, lo, hi } => {
                self.operand(lhs, ctx, route);
                if ty(&lhs.node) != Ty::Int || !matches!(lhs.node, Operand::Var(_)) {
                    self.err(
                        lhs.pos,
                        lhs.len,
                        format!(
                            "a range needs an integer variable, and {} is {}",
                            show(&lhs.node),
                            ty(&lhs.node).name()
                        ),
                        "",
                        "integer variables are $rs $cs $sp $rp",
                    );
                }
                if lo.node > hi.node {
                    self.err(
                        lo.pos,
                        lo.len,
                        format!("empty range {}..{}", lo.node, hi.node),
                        "",
                        "ranges include both ends and go up, e.g. `500..599`",
                    );
                }
            }
        }
    }

    fn compare(&mut self, lhs: &Sp<Operand>, op: &Sp<CmpOp>, rhs: &Sp<Operand>) {
        let (lt, rt) = (ty(&lhs.node), ty(&rhs.node));
        let is_var = |o: &Operand| matches!(o, Operand::Var(_));
        if !is_var(&lhs.node) && !is_var(&rhs.node) {
            self.err(
                lhs.pos,
                lhs.len,
                "this comparison has no variable",
                "",
                "compare a variable with a value, e.g. `$rs == 404`",
            );
            return;
        }
        let rm = Operand::Var(Var::Rm);
        for (o, other) in [(lhs, rhs), (rhs, lhs)] {
            if ty(&o.node) == Ty::Word {
                if other.node == rm && matches!(op.node, CmpOp::Eq | CmpOp::Ne) {
                    continue;
                }
                self.err(
                    o.pos,
                    o.len,
                    format!("bare word {}", show(&o.node)),
                    "",
                    "quote text values; bare method names are allowed only in `$rm == NAME`",
                );
                return;
            }
        }
        let lt = if lt == Ty::Word { Ty::Text } else { lt };
        let rt = if rt == Ty::Word { Ty::Text } else { rt };
        if lt != rt {
            let (var, val) = if is_var(&lhs.node) {
                (lhs, rhs)
            } else {
                (rhs, lhs)
            };
            let hint = if ty(&var.node) == Ty::Int {
                format!(
                    "{} is a number; compare it with a number, e.g. `{} == 404`",
                    show(&var.node),
                    show(&var.node).trim_matches('`')
                )
            } else {
                format!(
                    "{} is text; compare it with a quoted string",
                    show(&var.node)
                )
            };
            self.err(
                val.pos,
                val.len,
                format!(
                    "type mismatch: {} is {} but {} is {}",
                    show(&var.node),
                    ty(&var.node).name(),
                    show(&val.node),
                    ty(&val.node).name()
                ),
                "",
                hint,
            );
            return;
        }
        if lt == Ty::Text && !matches!(op.node, CmpOp::Eq | CmpOp::Ne) {
            self.err(
                op.pos,
                op.len,
                format!(
                    "`{}` compares integers, and {} is text",
                    op.node.text(),
                    show(&lhs.node)
                ),
                "",
                "text is compared with `==`, `!=`, `=~` or `!~`",
            );
        }
    }
}
