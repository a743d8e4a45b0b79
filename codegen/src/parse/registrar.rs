//! The `registrar:` block, `lookup`'s options and `relay`'s list of
//! targets (registration, location and forking).

use super::Parser;
use crate::ast::*;
use crate::yaml::{Node, Value};

const REGISTRAR_KEYS: &[&str] = &[
    "store",
    "min_expires",
    "max_expires",
    "default_expires",
    "max_contacts",
    "contact_max_size",
    "max_bindings",
    "keepalive",
];

impl Parser<'_> {
    /// `registrar: { store, min_expires, max_expires, default_expires,
    /// max_contacts, contact_max_size, max_bindings, keepalive }`
    pub(super) fn registrar(&mut self, k: &Node, v: &Node) -> Option<RegistrarSpec> {
        let mut spec = RegistrarSpec {
            pos: k.pos,
            store: None,
            min_expires: None,
            max_expires: None,
            default_expires: None,
            max_contacts: None,
            contact_max_size: None,
            max_bindings: None,
            keepalive_ms: None,
        };
        match &v.value {
            Value::Map(_) => {}
            Value::Null => return Some(spec),
            _ => {
                self.expected(
                    v,
                    "a map such as `{ store: memory }`",
                    "e.g. `registrar: { store: memory, max_contacts: 10 }`",
                );
                return None;
            }
        }
        for (name, kn, val) in self.entries(v) {
            match name.as_str() {
                "store" => match &val.value {
                    Value::Str(s) => spec.store = Some(self.sp_str(val, s.trim())),
                    _ => self.expected(
                        val,
                        "`memory` or a `redis://` URL",
                        "e.g. `store: redis://127.0.0.1:6379/0`",
                    ),
                },
                "min_expires" | "max_expires" | "default_expires" | "max_contacts"
                | "contact_max_size" | "max_bindings" => {
                    let n = match val.value {
                        Value::Int(n) => Some(Sp::new(n, val.pos, self.len(val))),
                        _ => {
                            self.expected(
                                val,
                                "a whole number",
                                "expires are seconds, e.g. `min_expires: 60`; sizes are bytes, e.g. `contact_max_size: 1024`",
                            );
                            None
                        }
                    };
                    match name.as_str() {
                        "min_expires" => spec.min_expires = n,
                        "max_expires" => spec.max_expires = n,
                        "default_expires" => spec.default_expires = n,
                        "contact_max_size" => spec.contact_max_size = n,
                        "max_bindings" => spec.max_bindings = n,
                        _ => spec.max_contacts = n,
                    }
                }
                "keepalive" => spec.keepalive_ms = self.keepalive(val),
                _ => self.unknown_key(&name, kn, REGISTRAR_KEYS, "`registrar` keys"),
            }
        }
        Some(spec)
    }

    /// `keepalive: { interval: 30s }`
    fn keepalive(&mut self, v: &Node) -> Option<u64> {
        const EXAMPLE: &str = "e.g. `keepalive: { interval: 30s }`";
        if !matches!(v.value, Value::Map(_)) {
            self.expected(v, "a map with `interval:`", EXAMPLE);
            return None;
        }
        let mut interval = None;
        for (name, kn, val) in self.entries(v) {
            match name.as_str() {
                "interval" => interval = self.duration(val),
                _ => self.unknown_key(&name, kn, &["interval"], "`keepalive` keys"),
            }
        }
        if interval.is_none() {
            self.expected(v, "`interval:`", EXAMPLE);
        }
        interval
    }

    /// `lookup: { not_found: [steps] }`
    pub(super) fn lookup_options(&mut self, v: &Node) -> Option<Block> {
        if !matches!(v.value, Value::Map(_)) {
            self.expected(
                v,
                "a map with `not_found:`",
                "e.g. `- lookup: { not_found: [ { reply: 480 } ] }`",
            );
            return None;
        }
        let mut not_found = None;
        for (name, kn, val) in self.entries(v) {
            match name.as_str() {
                "not_found" => not_found = Some(self.block(val)),
                _ => self.unknown_key(&name, kn, &["not_found"], "`lookup` keys"),
            }
        }
        not_found
    }

    /// `relay: [sip:a@x, sip:b@y]`
    pub(super) fn uri_list(&mut self, v: &Node) -> Vec<Sp<String>> {
        let Value::Seq(items) = &v.value else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| self.uri_value(item))
            .collect()
    }
}
