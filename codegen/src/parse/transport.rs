//! The `tls:` and `dns:` blocks: certificate paths (read at start, not at
//! build time) and the DNS servers RFC 3263 lookups ask.

use super::Parser;
use crate::ast::*;
use crate::yaml::{Node, Value};

const TLS_KEYS: &[&str] = &["certificate", "key", "ca", "verify_client"];
const DNS_KEYS: &[&str] = &["servers"];

impl Parser<'_> {
    /// `tls: { certificate, key, ca, verify_client }`
    pub(super) fn tls(&mut self, k: &Node, v: &Node) -> Option<TlsSpec> {
        const EXAMPLE: &str =
            "e.g. `tls: { certificate: /etc/sipforge/cert.pem, key: /etc/sipforge/key.pem }`";
        if !matches!(v.value, Value::Map(_)) {
            self.expected(v, "a map with `certificate:` and `key:`", EXAMPLE);
            return None;
        }
        let (mut certificate, mut key, mut ca, mut verify_client) = (None, None, None, false);
        for (name, kn, val) in self.entries(v) {
            match name.as_str() {
                "certificate" | "key" | "ca" => match &val.value {
                    Value::Str(s) if !s.trim().is_empty() => {
                        let path = Some(self.sp_str(val, s.trim()));
                        match name.as_str() {
                            "certificate" => certificate = path,
                            "key" => key = path,
                            _ => ca = path,
                        }
                    }
                    _ => self.expected(val, "a file path", EXAMPLE),
                },
                "verify_client" => match val.value {
                    Value::Bool(b) => verify_client = b,
                    _ => self.expected(
                        val,
                        "`true` or `false`",
                        "`verify_client: true` requires client certificates signed by `ca`",
                    ),
                },
                _ => self.unknown_key(&name, kn, TLS_KEYS, "`tls` keys"),
            }
        }
        match (certificate, key) {
            (Some(certificate), Some(key)) => Some(TlsSpec {
                pos: k.pos,
                certificate,
                key,
                ca,
                verify_client,
            }),
            _ => {
                self.err(k.pos, 3, "`tls` needs `certificate` and `key`", "", EXAMPLE);
                None
            }
        }
    }

    /// `dns: { servers: ["127.0.0.1:53"] }`
    pub(super) fn dns(&mut self, v: &Node) -> Option<DnsSpec> {
        const EXAMPLE: &str = "e.g. `dns: { servers: [\"127.0.0.1:53\"] }`";
        if !matches!(v.value, Value::Map(_)) {
            self.expected(v, "a map with `servers:`", EXAMPLE);
            return None;
        }
        let mut spec = DnsSpec::default();
        for (name, kn, val) in self.entries(v) {
            match name.as_str() {
                "servers" => {
                    let items: Vec<&Node> = match &val.value {
                        Value::Seq(items) => items.iter().collect(),
                        Value::Str(_) => vec![val],
                        _ => {
                            self.expected(val, "a list of servers", EXAMPLE);
                            continue;
                        }
                    };
                    for item in items {
                        match item.scalar_text() {
                            Some(s) => spec.servers.push(self.sp_str(item, s.trim())),
                            None => self.expected(item, "a server `IP` or `IP:PORT`", EXAMPLE),
                        }
                    }
                }
                _ => self.unknown_key(&name, kn, DNS_KEYS, "`dns` keys"),
            }
        }
        Some(spec)
    }
}
