//! The `auth:` and `limits:` blocks (digest authentication; per-source
//! limits and trusted networks). Shapes only: values such as networks and
//! algorithm names are checked in `check`.

use super::Parser;
use crate::ast::*;
use crate::yaml::{Node, Value};

const AUTH_KEYS: &[&str] = &["realm", "credentials", "algorithms", "nonce_ttl", "secret"];
const LIMITS_KEYS: &[&str] = &["per_source", "trusted"];
const PER_SOURCE_KEYS: &[&str] = &["requests", "per", "ban", "ipv6_prefix"];

impl Parser<'_> {
    /// `auth: { realm, credentials, algorithms, nonce_ttl, secret }`
    pub(super) fn auth(&mut self, k: &Node, v: &Node) -> Option<AuthSpec> {
        let mut spec = AuthSpec {
            pos: k.pos,
            realm: None,
            credentials: None,
            algorithms: None,
            nonce_ttl_ms: None,
            secret: None,
        };
        match &v.value {
            Value::Map(_) => {}
            Value::Null => return Some(spec),
            _ => {
                self.expected(
                    v,
                    "a map such as `{ credentials: /etc/sipforge/users }`",
                    "e.g. `auth: { realm: \"$fd\", credentials: /etc/sipforge/users }`",
                );
                return None;
            }
        }
        for (key, kn, val) in self.entries(v) {
            match key.as_str() {
                "realm" => match &val.value {
                    Value::Str(s) => spec.realm = Some(self.template(val, s)),
                    _ => self.expected(val, "a realm (text, may use variables)", "e.g. `realm: \"$fd\"` or `realm: sip.example.com`"),
                },
                "credentials" | "secret" => match &val.value {
                    Value::Str(s) if !s.trim().is_empty() => {
                        let path = Some(self.sp_str(val, s.trim()));
                        if key == "credentials" {
                            spec.credentials = path;
                        } else {
                            spec.secret = path;
                        }
                    }
                    _ => self.expected(
                        val,
                        "a file path",
                        if key == "credentials" {
                            "e.g. `credentials: /etc/sipforge/users` (lines `user:realm:HA1`)"
                        } else {
                            "e.g. `secret: /etc/sipforge/nonce.key` (16 bytes or more, the same file on every instance)"
                        },
                    ),
                },
                "algorithms" => {
                    let items: Vec<&Node> = match &val.value {
                        Value::Seq(items) => items.iter().collect(),
                        Value::Str(_) => vec![val],
                        _ => {
                            self.expected(val, "a list of algorithms", "e.g. `algorithms: [SHA-256, MD5]`");
                            continue;
                        }
                    };
                    let mut names = Vec::new();
                    for item in items {
                        match item.scalar_text() {
                            Some(s) => names.push(self.sp_str(item, &s)),
                            None => self.expected(item, "an algorithm name", "algorithms are SHA-256 and MD5"),
                        }
                    }
                    spec.algorithms = Some(names);
                }
                "nonce_ttl" => spec.nonce_ttl_ms = self.duration(val),
                _ => self.unknown_key(&key, kn, AUTH_KEYS, "`auth` keys"),
            }
        }
        Some(spec)
    }

    /// `limits: { per_source: { requests, per, ban }, trusted: [networks] }`
    pub(super) fn limits(&mut self, v: &Node) -> Option<LimitsSpec> {
        if !matches!(v.value, Value::Map(_)) {
            self.expected(
                v,
                "a map with `per_source:` and/or `trusted:`",
                "e.g. `limits: { per_source: { requests: 50, per: 1s, ban: 60s } }`",
            );
            return None;
        }
        let mut spec = LimitsSpec::default();
        for (key, kn, val) in self.entries(v) {
            match key.as_str() {
                "per_source" => spec.per_source = self.per_source(val),
                "trusted" => {
                    let items: Vec<&Node> = match &val.value {
                        Value::Seq(items) => items.iter().collect(),
                        Value::Str(_) => vec![val],
                        _ => {
                            self.expected(
                                val,
                                "a list of networks",
                                "e.g. `trusted: [ 10.0.0.0/8, \"192.0.2.1\" ]`",
                            );
                            continue;
                        }
                    };
                    for item in items {
                        match item.scalar_text() {
                            Some(s) => spec.trusted.push(self.sp_str(item, s.trim())),
                            None => self.expected(
                                item,
                                "an address or network",
                                "e.g. `10.0.0.0/8` or `\"192.0.2.1\"`",
                            ),
                        }
                    }
                }
                _ => self.unknown_key(&key, kn, LIMITS_KEYS, "`limits` keys"),
            }
        }
        Some(spec)
    }

    /// `per_source: { requests: 50, per: 1s, ban: 60s }` (all three needed;
    /// `ipv6_prefix: 64` optional).
    fn per_source(&mut self, v: &Node) -> Option<PerSourceSpec> {
        const EXAMPLE: &str = "e.g. `per_source: { requests: 50, per: 1s, ban: 60s }`";
        if !matches!(v.value, Value::Map(_)) {
            self.expected(v, "a map `{ requests, per, ban }`", EXAMPLE);
            return None;
        }
        let (mut requests, mut per, mut ban) = (None, None, None);
        let mut ipv6_prefix = None;
        let mut ok = true;
        for (key, kn, val) in self.entries(v) {
            match key.as_str() {
                "requests" => match val.value {
                    Value::Int(n) if (1..=1_000_000).contains(&n) => requests = Some(n as u32),
                    _ => {
                        ok = false;
                        let len = self.len(val);
                        self.err(
                            val.pos,
                            len,
                            "`requests` must be a whole number from 1 to 1000000",
                            "",
                            EXAMPLE,
                        );
                    }
                },
                "per" => match self.duration(val) {
                    Some(ms) => per = Some(ms),
                    None => ok = false,
                },
                "ban" => match self.duration(val) {
                    Some(ms) => ban = Some(ms),
                    None => ok = false,
                },
                "ipv6_prefix" => match val.value {
                    Value::Int(n) if (1..=128).contains(&n) => ipv6_prefix = Some(n as u8),
                    _ => {
                        let len = self.len(val);
                        self.err(
                            val.pos,
                            len,
                            "`ipv6_prefix` must be a prefix length from 1 to 128",
                            "the bits of an IPv6 address that make one source; 64 when not given",
                            "e.g. `per_source: { requests: 50, per: 1s, ban: 60s, ipv6_prefix: 56 }`",
                        );
                    }
                },
                _ => self.unknown_key(&key, kn, PER_SOURCE_KEYS, "`per_source` keys"),
            }
        }
        match (requests, per, ban) {
            (Some(requests), Some(per_ms), Some(ban_ms)) => Some(PerSourceSpec {
                requests,
                per_ms,
                ban_ms,
                ipv6_prefix,
            }),
            _ => {
                if ok {
                    self.err(
                        v.pos,
                        1,
                        "`per_source` needs `requests`, `per` and `ban`",
                        "",
                        EXAMPLE,
                    );
                }
                None
            }
        }
    }
}
