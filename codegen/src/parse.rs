//! YAML -> [`ast::File`](crate::ast::File).
//!
//! The YAML is read into a position-keeping tree (`yaml`), then walked here.
//! Shape errors (unknown keys and actions, wrong value kinds, syntax of
//! conditions and templates) are collected, never stopping at the first;
//! what can be parsed is still returned so `check` sees as much as possible.

use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::yaml::{Node, Value};
use crate::{expr, suggest, template};

mod media;
mod registrar;
mod security;
mod transport;

const TOP_KEYS: &[&str] = &[
    "listen",
    "advertise",
    "auth",
    "destinations",
    "dns",
    "limits",
    "registrar",
    "rtpengine",
    "max_branches",
    "strict_response_source",
    "tls",
    "workers",
    "request",
    "reply",
    "failure",
    "routes",
];
const ACTIONS: &[&str] = &[
    "log",
    "append_header",
    "remove_header",
    "set",
    "reply",
    "forward",
    "relay",
    "record_route",
    "route",
    "authenticate",
    "save",
    "lookup",
    "fix_contact",
    "drop",
    "exit",
    "if",
    "switch",
];

pub struct Parser<'a> {
    text: &'a str,
    pub diags: Vec<Diagnostic>,
}

/// Parse a whole file. YAML syntax errors give no tree.
pub fn parse(text: &str) -> (Option<File>, Vec<Diagnostic>) {
    let root = match crate::yaml::load(text) {
        Ok(n) => n,
        Err(e) => {
            let message = strip_location(&e.message);
            let pos = Pos {
                line: e.line,
                col: e.col,
                offset: 0,
            };
            let d = Diagnostic::error(pos, 1, format!("YAML syntax error: {message}"))
                .label("the YAML parser stopped here")
                .hint("check the indentation and the quotes; a value that starts with `!`, `[`, `{`, `*`, `&` or `\"` must be quoted as a whole");
            return (None, vec![d]);
        }
    };
    let mut p = Parser {
        text,
        diags: Vec::new(),
    };
    let file = p.file(&root);
    (Some(file), p.diags)
}

/// serde-saphyr's plain messages end in " at line L, column C".
fn strip_location(m: &str) -> String {
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}

impl<'a> Parser<'a> {
    fn err(
        &mut self,
        pos: Pos,
        len: usize,
        message: impl Into<String>,
        label: &str,
        hint: impl Into<String>,
    ) {
        let mut d = Diagnostic::error(pos, len as u32, message).hint(hint);
        if !label.is_empty() {
            d = d.label(label);
        }
        self.diags.push(d);
    }

    /// Length in characters of a node's text, for the caret.
    fn len(&self, n: &Node) -> usize {
        let src = self.text.get(n.pos.offset..).unwrap_or("");
        // The rest of the node's line: up to LF, CRLF or a lone CR.
        let line = src.split(['\r', '\n']).next().unwrap_or("");
        match &n.value {
            Value::Str(s) => {
                let quoted = line.starts_with('"') || line.starts_with('\'');
                let want = s.chars().count() + if quoted { 2 } else { 0 };
                want.min(line.chars().count()).max(1)
            }
            Value::Seq(_) | Value::Map(_) | Value::Null => 1,
            _ => line
                .find(|c: char| c.is_whitespace() || ",]}#".contains(c))
                .unwrap_or(line.len())
                .max(1),
        }
    }

    /// Position of the first character of a string's content (after a quote).
    fn content_pos(&self, n: &Node) -> Pos {
        let src = self.text.get(n.pos.offset..).unwrap_or("");
        if src.starts_with('"') || src.starts_with('\'') {
            n.pos.advance(1, 1)
        } else {
            n.pos
        }
    }

    /// Whether a string node's value is the file's own text at its content
    /// position, on one line: then a character of the value is as many
    /// columns further as it is characters in. Not so for a scalar folded
    /// over lines, a block scalar or one with escapes; positions inside
    /// those are given as the scalar's start.
    fn verbatim(&self, n: &Node, s: &str) -> bool {
        let at = self.content_pos(n).offset;
        !s.contains(['\r', '\n']) && self.text.get(at..).is_some_and(|t| t.starts_with(s))
    }

    fn sp_str(&self, n: &Node, s: &str) -> Sp<String> {
        let quoted = self.content_pos(n) != n.pos;
        let pos = self.content_pos(n);
        let len = if quoted {
            s.chars().count()
        } else {
            self.len(n)
        };
        Sp::new(s.to_string(), pos, len)
    }

    fn expected(&mut self, n: &Node, what: &str, hint: &str) {
        let len = self.len(n);
        self.err(
            n.pos,
            len,
            format!("expected {what}, found {}", n.value.kind()),
            "",
            hint,
        );
    }

    /// Entries of a map, reporting duplicate keys (at the second one).
    fn entries<'n>(&mut self, n: &'n Node) -> Vec<(String, &'n Node, &'n Node)> {
        let Value::Map(entries) = &n.value else {
            return Vec::new();
        };
        let mut seen: Vec<(String, u32)> = Vec::new();
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.scalar_text() else {
                let len = self.len(k);
                self.err(
                    k.pos,
                    len,
                    "a map key must be a plain word",
                    "",
                    "use a word or a number as key",
                );
                continue;
            };
            if let Some((_, line)) = seen.iter().find(|(s, _)| *s == key) {
                let len = self.len(k);
                let line = *line;
                self.err(
                    k.pos,
                    len,
                    format!("duplicate key `{key}`"),
                    "defined again here",
                    format!("`{key}` is first defined on line {line}; keep one"),
                );
                continue;
            }
            seen.push((key.clone(), k.pos.line));
            out.push((key, k, v));
        }
        out
    }

    fn unknown_key(&mut self, key: &str, k: &Node, known: &[&str], what: &str) {
        let hint = match suggest::closest(key, known) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("{what} are: {}", known.join(", ")),
        };
        let len = self.len(k);
        self.err(k.pos, len, format!("unknown key `{key}`"), "", hint);
    }

    fn file(&mut self, root: &Node) -> File {
        let mut file = File::default();
        match &root.value {
            Value::Map(_) => {}
            Value::Null => return file,
            _ => {
                self.expected(
                    root,
                    "a map with `request:` and other sections",
                    "a routes file starts with keys such as `listen:` and `request:`",
                );
                return file;
            }
        }
        for (key, k, v) in self.entries(root) {
            match key.as_str() {
                "listen" => file.listen = self.listen(v),
                "advertise" => match &v.value {
                    Value::Str(s) => file.advertise = Some(self.sp_str(v, s)),
                    _ => self.expected(
                        v,
                        "`host` or `host:port`",
                        "e.g. `advertise: proxy.example.com:5060`",
                    ),
                },
                "max_branches" => match v.value {
                    Value::Int(n) if (1..=File::MAX_BRANCHES_LIMIT).contains(&n) => {
                        file.max_branches = Some(n as u32)
                    }
                    _ => {
                        let len = self.len(v);
                        self.err(
                            v.pos,
                            len,
                            format!(
                                "`max_branches` must be a whole number from 1 to {}",
                                File::MAX_BRANCHES_LIMIT
                            ),
                            "",
                            "the most branches one relayed transaction may make, e.g. `max_branches: 12` (Kamailio's default)",
                        );
                    }
                },
                "workers" => match v.value {
                    Value::Int(n) if (1..=1024).contains(&n) => file.workers = Some(n as u32),
                    _ => {
                        let len = self.len(v);
                        self.err(
                            v.pos,
                            len,
                            "`workers` must be a whole number from 1 to 1024",
                            "",
                            "threads handling messages per socket, e.g. `workers: 4`; leave it out for one per core",
                        );
                    }
                },
                "strict_response_source" => match v.value {
                    Value::Bool(b) => file.strict_response_source = Some(b),
                    _ => self.expected(
                        v,
                        "`true` or `false`",
                        "`strict_response_source: false` accepts responses from any address (peers that answer from another address than the one requests go to)",
                    ),
                },
                "destinations" => file.destinations = self.destinations(v),
                "auth" => file.auth = self.auth(k, v),
                "limits" => file.limits = self.limits(v),
                "tls" => file.tls = self.tls(k, v),
                "dns" => file.dns = self.dns(v),
                "registrar" => file.registrar = self.registrar(k, v),
                "rtpengine" => file.rtpengine = self.rtpengine(v),
                "request" | "reply" | "failure" => {
                    let kind = match key.as_str() {
                        "request" => SectionKind::Request,
                        "reply" => SectionKind::Reply,
                        _ => SectionKind::Failure,
                    };
                    let body = self.block(v);
                    file.sections.push(Section {
                        kind,
                        pos: k.pos,
                        body,
                    });
                }
                "routes" => {
                    if !matches!(v.value, Value::Map(_)) {
                        self.expected(
                            v,
                            "a map of named routes",
                            "e.g. `routes: { auth: [ ... ] }`",
                        );
                    }
                    for (name, nk, body) in self.entries(v) {
                        let name = Sp::new(name, nk.pos, self.len(nk));
                        let body = self.block(body);
                        file.routes.push(NamedRoute { name, body });
                    }
                }
                _ => self.unknown_key(&key, k, TOP_KEYS, "top-level keys"),
            }
        }
        file
    }

    fn listen(&mut self, v: &Node) -> Vec<Sp<String>> {
        self.socket_list(
            v,
            "a list of sockets",
            "e.g. `listen: [ \"udp:127.0.0.1:5060\" ]`",
            "a socket such as `udp:127.0.0.1:5060`",
            "quote it: \"udp:127.0.0.1:5060\"",
        )
    }

    /// A list of socket strings (or one string): `listen:`, `rtpengine:`.
    /// `what`/`example` name the list, `item`/`item_hint` one entry.
    pub(super) fn socket_list(
        &mut self,
        v: &Node,
        what: &str,
        example: &str,
        item: &str,
        item_hint: &str,
    ) -> Vec<Sp<String>> {
        let items: Vec<&Node> = match &v.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Str(_) => vec![v],
            _ => {
                self.expected(v, what, example);
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for entry in items {
            match &entry.value {
                Value::Str(s) => out.push(self.sp_str(entry, s)),
                _ => self.expected(entry, item, item_hint),
            }
        }
        out
    }

    fn destinations(&mut self, v: &Node) -> Vec<DestSet> {
        if !matches!(v.value, Value::Map(_)) {
            self.expected(
                v,
                "a map of destination sets",
                "e.g. `destinations: { backends: { algorithm: round_robin, targets: [ ... ] } }`",
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for (name, nk, body) in self.entries(v) {
            let name = Sp::new(name, nk.pos, self.len(nk));
            if !matches!(body.value, Value::Map(_)) {
                self.expected(
                    body,
                    "a map with `algorithm:` and `targets:`",
                    "e.g. `{ algorithm: round_robin, targets: [ sip:10.0.0.1 ] }`",
                );
                continue;
            }
            let mut set = DestSet {
                name,
                algorithm: Algorithm::RoundRobin,
                targets: Vec::new(),
                probe: None,
            };
            let mut saw_targets = false;
            for (key, k, val) in self.entries(body) {
                match key.as_str() {
                    "algorithm" => {
                        let a = val.as_str().unwrap_or("");
                        set.algorithm = match a {
                            "round_robin" => Algorithm::RoundRobin,
                            "hash_call_id" => Algorithm::HashCallId,
                            "weighted" => Algorithm::Weighted,
                            "priority" => Algorithm::Priority,
                            _ => {
                                let len = self.len(val);
                                self.err(
                                    val.pos,
                                    len,
                                    format!(
                                        "unknown algorithm `{}`",
                                        val.scalar_text().unwrap_or_default()
                                    ),
                                    "",
                                    "algorithms are round_robin, hash_call_id, weighted, priority",
                                );
                                Algorithm::RoundRobin
                            }
                        };
                    }
                    "targets" => {
                        saw_targets = true;
                        let Value::Seq(items) = &val.value else {
                            self.expected(val, "a list of targets", "e.g. `targets: [ sip:10.0.0.1:5060, { uri: sip:10.0.0.2, weight: 2 } ]`");
                            continue;
                        };
                        if items.is_empty() {
                            self.err(
                                val.pos,
                                1,
                                format!("destination set `{}` has no targets", set.name.node),
                                "",
                                "list at least one target URI",
                            );
                        }
                        for item in items {
                            if let Some(t) = self.target(item) {
                                set.targets.push(t);
                            }
                        }
                    }
                    "probe" => set.probe = self.probe(val),
                    _ => self.unknown_key(
                        &key,
                        k,
                        &["algorithm", "targets", "probe"],
                        "destination set keys",
                    ),
                }
            }
            if !saw_targets {
                let (pos, len) = (set.name.pos, set.name.len as usize);
                self.err(
                    pos,
                    len,
                    format!("destination set `{}` has no `targets`", set.name.node),
                    "",
                    "add `targets: [ sip:HOST:PORT ]`",
                );
            }
            out.push(set);
        }
        out
    }

    /// `probe: { interval: 10s, timeout: 2s, failures: 3, successes: 2 }`
    fn probe(&mut self, val: &Node) -> Option<ProbeSpec> {
        const KEYS: &[&str] = &["interval", "timeout", "failures", "successes"];
        if !matches!(val.value, Value::Map(_)) {
            self.expected(
                val,
                "a map such as `{ interval: 10s }`",
                "e.g. `probe: { interval: 10s }`",
            );
            return None;
        }
        let mut interval = None;
        let mut spec = ProbeSpec {
            interval_ms: 0,
            timeout_ms: None,
            failures: ProbeSpec::DEFAULT_FAILURES,
            successes: ProbeSpec::DEFAULT_SUCCESSES,
        };
        let mut ok = true;
        for (pk, pkn, pv) in self.entries(val) {
            match pk.as_str() {
                "interval" => interval = Some(self.duration(pv)),
                "timeout" => match self.duration(pv) {
                    Some(ms) => spec.timeout_ms = Some(Sp::new(ms, pv.pos, self.len(pv))),
                    None => ok = false,
                },
                "failures" | "successes" => match pv.value {
                    Value::Int(n) if (1..=ProbeSpec::MAX_COUNT).contains(&n) => {
                        let n = n as u32;
                        if pk == "failures" {
                            spec.failures = n;
                        } else {
                            spec.successes = n;
                        }
                    }
                    _ => {
                        ok = false;
                        let len = self.len(pv);
                        self.err(
                            pv.pos,
                            len,
                            format!(
                                "`{pk}` must be a whole number from 1 to {}",
                                ProbeSpec::MAX_COUNT
                            ),
                            "",
                            format!(
                                "e.g. `{pk}: {}`",
                                if pk == "failures" {
                                    ProbeSpec::DEFAULT_FAILURES
                                } else {
                                    ProbeSpec::DEFAULT_SUCCESSES
                                }
                            ),
                        );
                    }
                },
                _ => self.unknown_key(&pk, pkn, KEYS, "probe keys"),
            }
        }
        match interval {
            Some(Some(ms)) if ok => {
                spec.interval_ms = ms;
                Some(spec)
            }
            Some(_) => None,
            None => {
                self.err(
                    val.pos,
                    1,
                    "`probe` needs an `interval`",
                    "",
                    "e.g. `probe: { interval: 10s }`",
                );
                None
            }
        }
    }

    fn target(&mut self, item: &Node) -> Option<DestTarget> {
        match &item.value {
            Value::Str(s) => Some(DestTarget {
                uri: self.sp_str(item, s),
                weight: 1,
            }),
            Value::Map(_) => {
                let mut uri = None;
                let mut weight = 1;
                for (key, k, v) in self.entries(item) {
                    match key.as_str() {
                        "uri" => match &v.value {
                            Value::Str(s) => uri = Some(self.sp_str(v, s)),
                            _ => self.expected(v, "a SIP URI", "e.g. `uri: \"sip:10.0.0.1:5060\"`"),
                        },
                        "weight" => match v.value {
                            Value::Int(w) if w > 0 && w <= i64::from(u32::MAX) => weight = w as u32,
                            _ => {
                                let len = self.len(v);
                                self.err(
                                    v.pos,
                                    len,
                                    "a weight must be a positive integer",
                                    "",
                                    "e.g. `weight: 2`",
                                );
                            }
                        },
                        _ => self.unknown_key(&key, k, &["uri", "weight"], "target keys"),
                    }
                }
                match uri {
                    Some(uri) => Some(DestTarget { uri, weight }),
                    None => {
                        self.err(
                            item.pos,
                            1,
                            "a target needs a `uri`",
                            "",
                            "e.g. `{ uri: \"sip:10.0.0.1:5060\", weight: 2 }`",
                        );
                        None
                    }
                }
            }
            _ => {
                self.expected(
                    item,
                    "a SIP URI or `{ uri: ..., weight: N }`",
                    "e.g. `sip:10.0.0.1:5060`",
                );
                None
            }
        }
    }

    /// `10s`, `500ms`, `2m` -> milliseconds.
    pub(super) fn duration(&mut self, v: &Node) -> Option<u64> {
        let text = v.scalar_text().unwrap_or_default();
        let (num, mult) = if let Some(n) = text.strip_suffix("ms") {
            (n, 1)
        } else if let Some(n) = text.strip_suffix('s') {
            (n, 1000)
        } else if let Some(n) = text.strip_suffix('m') {
            (n, 60_000)
        } else {
            ("", 0)
        };
        match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
            Some(ms) if ms > 0 => Some(ms),
            _ => {
                let len = self.len(v);
                self.err(
                    v.pos,
                    len,
                    format!("invalid interval `{text}`"),
                    "",
                    "write a positive duration with a unit: `500ms`, `10s` or `1m`",
                );
                None
            }
        }
    }

    fn block(&mut self, v: &Node) -> Block {
        let Value::Seq(items) = &v.value else {
            self.expected(v, "a list of steps", "write steps as a list: `- log: \"...\"` on their own lines, or `[ record_route, forward ]`");
            return Vec::new();
        };
        items.iter().filter_map(|n| self.step(n)).collect()
    }

    fn step(&mut self, n: &Node) -> Option<Step> {
        match &n.value {
            Value::Str(word) => self.action(word, n, None),
            Value::Map(entries) => {
                let has = |w: &str| entries.iter().any(|(k, _)| k.as_str() == Some(w));
                if has("if") {
                    return self.if_step(n);
                }
                if has("switch") {
                    return self.switch_step(n);
                }
                let entries = self.entries(n);
                if entries.len() > 1 {
                    let (_, k, _) = &entries[1];
                    let len = self.len(k);
                    self.err(
                        k.pos,
                        len,
                        "a step has one action",
                        "second action in the same step",
                        "start a new step with `- ` for each action",
                    );
                }
                let (word, k, v) = entries.into_iter().next()?;
                self.action(&word, k, Some(v))
            }
            _ => {
                self.expected(
                    n,
                    "a step (an action, `if` or `switch`)",
                    "e.g. `- forward` or `- log: \"text\"`",
                );
                None
            }
        }
    }

    fn action(&mut self, word: &str, k: &Node, v: Option<&Node>) -> Option<Step> {
        let pos = k.pos;
        let len = word.chars().count() as u32;
        let v = v.filter(|v| !matches!(v.value, Value::Null));
        let kind = match word {
            "forward" => StepKind::Forward(match v {
                None => None,
                Some(v) => Some(self.uri_value(v)?),
            }),
            "relay" => StepKind::Relay(match v {
                None => RelayTo::Default,
                Some(v) if matches!(v.value, Value::Seq(_)) => RelayTo::List(self.uri_list(v)),
                Some(v) => {
                    let s = self.uri_value(v)?;
                    if s.node.contains(':') {
                        RelayTo::Uri(s)
                    } else {
                        RelayTo::Set(s)
                    }
                }
            }),
            "rtp_manage" => StepKind::RtpManage(match v {
                None => None,
                Some(v) => Some(self.rtp_flags(v)?),
            }),
            "lookup" => StepKind::Lookup {
                not_found: match v {
                    None => None,
                    Some(v) => self.lookup_options(v),
                },
            },
            "record_route" | "drop" | "exit" | "authenticate" | "save" | "fix_contact" => {
                if let Some(v) = v {
                    let l = self.len(v);
                    self.err(
                        v.pos,
                        l,
                        format!("`{word}` takes no value"),
                        "",
                        format!("write `- {word}`"),
                    );
                }
                match word {
                    "record_route" => StepKind::RecordRoute,
                    "authenticate" => StepKind::Authenticate,
                    "save" => StepKind::Save,
                    "fix_contact" => StepKind::FixContact,
                    "drop" => StepKind::Drop,
                    _ => StepKind::Exit,
                }
            }
            "log" | "append_header" | "remove_header" | "set" | "reply" | "route" => {
                let Some(v) = v else {
                    let example = match word {
                        "log" => "- log: \"Received $rm\"",
                        "append_header" => "- append_header: \"X-Name: value\"",
                        "remove_header" => "- remove_header: X-Name",
                        "set" => "- set: { $du: \"sip:10.0.0.1\" }",
                        "reply" => "- reply: 404",
                        _ => "- route: NAME",
                    };
                    self.err(
                        pos,
                        len as usize,
                        format!("`{word}` needs a value"),
                        "",
                        format!("e.g. `{example}`"),
                    );
                    return None;
                };
                match word {
                    "log" => self.log(v)?,
                    "append_header" => StepKind::AppendHeader(self.header_line(v)?),
                    "remove_header" => match &v.value {
                        Value::Str(s) => StepKind::RemoveHeader(self.sp_str(v, s.trim())),
                        _ => {
                            self.expected(v, "a header name", "e.g. `- remove_header: X-Secret`");
                            return None;
                        }
                    },
                    "set" => self.set(v)?,
                    "reply" => self.reply(v)?,
                    _ => match &v.value {
                        Value::Str(s) => StepKind::Route(self.sp_str(v, s)),
                        _ => {
                            self.expected(v, "a route name", "e.g. `- route: auth`");
                            return None;
                        }
                    },
                }
            }
            "if" | "switch" => {
                self.err(
                    pos,
                    len as usize,
                    format!("`{word}` must be written as a map"),
                    "",
                    if word == "if" {
                        "e.g. `- if: $rs == 404` with `then:` on the next line"
                    } else {
                        "e.g. `- switch: $rm` with `cases:` on the next line"
                    },
                );
                return None;
            }
            _ => {
                let hint = match suggest::closest(word, ACTIONS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("actions are: {}", ACTIONS.join(", ")),
                };
                let l = self.len(k);
                self.err(pos, l, format!("unknown action `{word}`"), "", hint);
                return None;
            }
        };
        Some(Step { pos, len, kind })
    }

    fn uri_value(&mut self, v: &Node) -> Option<Sp<String>> {
        match &v.value {
            Value::Str(s) => Some(self.sp_str(v, s.trim())),
            _ => {
                self.expected(
                    v,
                    "a SIP URI or a destination set name",
                    "e.g. `sip:127.0.0.1:5080`",
                );
                None
            }
        }
    }

    fn template(&mut self, v: &Node, s: &str) -> Template {
        let base = self.content_pos(v);
        let exact = self.verbatim(v, s);
        template::parse_scalar(s, base, exact, &mut self.diags)
    }

    fn log(&mut self, v: &Node) -> Option<StepKind> {
        match &v.value {
            Value::Str(s) => Some(StepKind::Log {
                level: LogLevel::Info,
                message: self.template(v, s),
            }),
            Value::Map(_) => {
                let mut level = LogLevel::Info;
                let mut message = None;
                for (key, k, val) in self.entries(v) {
                    match key.as_str() {
                        "level" => {
                            level = match val.as_str().unwrap_or("") {
                                "error" => LogLevel::Error,
                                "warn" | "warning" => LogLevel::Warn,
                                "info" => LogLevel::Info,
                                "debug" => LogLevel::Debug,
                                _ => {
                                    let len = self.len(val);
                                    self.err(
                                        val.pos,
                                        len,
                                        "unknown log level",
                                        "",
                                        "levels are error, warn, info, debug",
                                    );
                                    LogLevel::Info
                                }
                            }
                        }
                        "message" => match &val.value {
                            Value::Str(s) => message = Some(self.template(val, s)),
                            _ => self.expected(val, "a text", "e.g. `message: \"Received $rm\"`"),
                        },
                        _ => self.unknown_key(&key, k, &["level", "message"], "log keys"),
                    }
                }
                match message {
                    Some(message) => Some(StepKind::Log { level, message }),
                    None => {
                        self.err(
                            v.pos,
                            1,
                            "`log` needs a `message`",
                            "",
                            "e.g. `- log: { level: warn, message: \"...\" }`",
                        );
                        None
                    }
                }
            }
            _ => {
                self.expected(
                    v,
                    "a text or `{ level: ..., message: ... }`",
                    "e.g. `- log: \"Received $rm\"`",
                );
                None
            }
        }
    }

    /// `"Name: value"`
    fn header_line(&mut self, v: &Node) -> Option<Header> {
        let Value::Str(s) = &v.value else {
            self.expected(
                v,
                "a header line `Name: value`",
                "e.g. `\"X-Proxied: yes\"`",
            );
            return None;
        };
        let base = self.content_pos(v);
        let Some(colon) = s.find(':') else {
            let len = self.len(v);
            self.err(
                v.pos,
                len,
                "a header needs a name and a value: `Name: value`",
                "no `:` here",
                "e.g. `\"X-Proxied: yes\"`",
            );
            return None;
        };
        let exact = self.verbatim(v, s);
        let at = |i: usize| {
            if exact {
                base.advance(s[..i].chars().count(), i)
            } else {
                base
            }
        };
        let raw_name = &s[..colon];
        let lead = raw_name.len() - raw_name.trim_start().len();
        let name_pos = at(lead);
        let name = raw_name.trim().to_string();
        let name_len = name.chars().count();
        let rest = &s[colon + 1..];
        let skip = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let value_start = colon + 1 + skip;
        let value_pos = at(value_start);
        let value = template::parse_scalar(&s[value_start..], value_pos, exact, &mut self.diags);
        Some(Header {
            name: Sp::new(name, name_pos, name_len),
            value,
        })
    }

    fn set(&mut self, v: &Node) -> Option<StepKind> {
        if !matches!(v.value, Value::Map(_)) {
            self.expected(
                v,
                "a map of variables to values",
                "e.g. `- set: { $rU: \"+1$rU\" }`",
            );
            return None;
        }
        let mut out = Vec::new();
        for (key, k, val) in self.entries(v) {
            let kpos = self.content_pos(k);
            let klen = key.chars().count();
            let var = match key.strip_prefix('$').map(template::read_var) {
                Some(Some(Ok((var, used)))) if used + 1 == key.len() => var,
                Some(Some(Err((msg, hint, _)))) => {
                    self.err(kpos, klen, msg, "", hint);
                    continue;
                }
                _ => {
                    self.err(
                        kpos,
                        klen,
                        format!("`{key}` is not a variable"),
                        "",
                        "keys of `set` are variables such as `$rU` or `$du`",
                    );
                    continue;
                }
            };
            let template = match &val.value {
                Value::Str(s) => self.template(val, s),
                Value::Int(_) | Value::Bool(_) | Value::Float(_) => Template {
                    pieces: vec![TPiece::Lit(val.scalar_text().unwrap_or_default())],
                },
                _ => {
                    self.expected(val, "a text value", "e.g. `$du: \"sip:10.0.0.1:5060\"`");
                    continue;
                }
            };
            out.push((Sp::new(var, kpos, klen), template));
        }
        Some(StepKind::Set(out))
    }

    fn reply(&mut self, v: &Node) -> Option<StepKind> {
        let code_of = |n: &Node, p: &Self| match n.value {
            Value::Int(c) => Some(Sp::new(c, n.pos, p.len(n))),
            _ => None,
        };
        match &v.value {
            Value::Int(_) => Some(StepKind::Reply {
                code: code_of(v, self)?,
                reason: None,
                headers: Vec::new(),
            }),
            Value::Map(_) => {
                let mut code = None;
                let mut reason = None;
                let mut headers = Vec::new();
                for (key, k, val) in self.entries(v) {
                    match key.as_str() {
                        "code" => match code_of(val, self) {
                            Some(c) => code = Some(c),
                            None => self.expected(val, "a status code", "e.g. `code: 404`"),
                        },
                        "reason" => match &val.value {
                            Value::Str(s) => reason = Some(self.sp_str(val, s)),
                            _ => self.expected(
                                val,
                                "a reason phrase",
                                "e.g. `reason: \"Not Found\"`",
                            ),
                        },
                        "headers" => match &val.value {
                            Value::Seq(items) => {
                                for item in items {
                                    if let Some(h) = self.header_line(item) {
                                        headers.push(h);
                                    }
                                }
                            }
                            _ => self.expected(
                                val,
                                "a list of header lines",
                                "e.g. `headers: [\"Retry-After: 30\"]`",
                            ),
                        },
                        _ => {
                            self.unknown_key(&key, k, &["code", "reason", "headers"], "reply keys")
                        }
                    }
                }
                match code {
                    Some(code) => Some(StepKind::Reply {
                        code,
                        reason,
                        headers,
                    }),
                    None => {
                        self.err(
                            v.pos,
                            1,
                            "`reply` needs a `code`",
                            "",
                            "e.g. `- reply: { code: 404, reason: \"Not Found\" }`",
                        );
                        None
                    }
                }
            }
            _ => {
                self.expected(
                    v,
                    "a status code or `{ code: ..., reason: ..., headers: [...] }`",
                    "e.g. `- reply: 404`",
                );
                None
            }
        }
    }

    fn if_step(&mut self, n: &Node) -> Option<Step> {
        let mut cond = None;
        let mut then = None;
        let mut otherwise = None;
        let mut pos = n.pos;
        for (key, k, v) in self.entries(n) {
            match key.as_str() {
                "if" => {
                    pos = k.pos;
                    match &v.value {
                        Value::Str(s) => {
                            let base = self.content_pos(v);
                            let exact = self.verbatim(v, s);
                            cond = Some(expr::parse_scalar(s, base, exact, &mut self.diags));
                        }
                        _ => {
                            self.expected(
                                v,
                                "a condition",
                                "e.g. `- if: $rs == 404`; quote a condition that starts with `!`",
                            );
                            cond = Some(None);
                        }
                    }
                }
                "then" => then = Some(self.block(v)),
                "else" => otherwise = Some(self.block(v)),
                _ => self.unknown_key(&key, k, &["if", "then", "else"], "keys of an `if` step"),
            }
        }
        let Some(then) = then else {
            self.err(
                pos,
                2,
                "`if` without `then`",
                "",
                "add `then:` with a list of steps, aligned with `if:`",
            );
            return None;
        };
        let cond = cond.flatten()?;
        Some(Step {
            pos,
            len: 2,
            kind: StepKind::If {
                cond,
                then,
                otherwise,
            },
        })
    }

    fn switch_step(&mut self, n: &Node) -> Option<Step> {
        let mut on = None;
        let mut cases = Vec::new();
        let mut saw_cases = false;
        let mut default = None;
        let mut pos = n.pos;
        for (key, k, v) in self.entries(n) {
            match key.as_str() {
                "switch" => {
                    pos = k.pos;
                    let text = v.as_str().unwrap_or("").trim().to_string();
                    let vpos = self.content_pos(v);
                    let len = text.chars().count();
                    match text.strip_prefix('$').map(template::read_var) {
                        Some(Some(Ok((var, used)))) if used + 1 == text.len() => {
                            on = Some(Sp::new(var, vpos, len))
                        }
                        Some(Some(Err((msg, hint, _)))) => self.err(vpos, len, msg, "", hint),
                        _ => {
                            let l = self.len(v);
                            self.err(
                                v.pos,
                                l,
                                "`switch` takes one variable",
                                "",
                                "e.g. `- switch: $rm` or `- switch: $rs`",
                            );
                        }
                    }
                }
                "cases" => {
                    saw_cases = true;
                    if !matches!(v.value, Value::Map(_)) {
                        self.expected(
                            v,
                            "a map of cases",
                            "e.g. `cases: { INVITE: [ relay ], 404: [ drop ] }`",
                        );
                    }
                    for (label, lk, body) in self.entries(v) {
                        let lpos = self.content_pos(lk);
                        let llen = label.chars().count();
                        let node = match &lk.value {
                            Value::Int(i) => CaseLabel::Int(*i),
                            _ => {
                                let b = label.as_bytes();
                                if b.len() == 3
                                    && (b'1'..=b'6').contains(&b[0])
                                    && label[1..].eq_ignore_ascii_case("xx")
                                {
                                    CaseLabel::Class(i64::from(b[0] - b'0'))
                                } else {
                                    CaseLabel::Text(label.clone())
                                }
                            }
                        };
                        let body = self.block(body);
                        cases.push(Case {
                            label: Sp::new(node, lpos, llen),
                            body,
                        });
                    }
                }
                "default" => default = Some(self.block(v)),
                _ => self.unknown_key(
                    &key,
                    k,
                    &["switch", "cases", "default"],
                    "keys of a `switch` step",
                ),
            }
        }
        if !saw_cases {
            self.err(
                pos,
                6,
                "`switch` without `cases`",
                "",
                "add `cases:` mapping values to lists of steps",
            );
        }
        let on = on?;
        Some(Step {
            pos,
            len: 6,
            kind: StepKind::Switch { on, cases, default },
        })
    }
}
