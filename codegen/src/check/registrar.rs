//! Checks of `registrar:`, `save`, `lookup` and `registered`.

use super::{Checker, Ctx, show};
use crate::ast::*;

impl Checker<'_> {
    pub(super) fn registrar_settings(&mut self) {
        let Some(r) = &self.file.registrar else {
            return;
        };
        if let Some(store) = &r.store
            && store.node != "memory"
            && !(store.node.starts_with("redis://") || store.node.starts_with("rediss://"))
        {
            self.err(
                store.pos,
                store.len,
                format!("unknown registrar store `{}`", store.node),
                "",
                "`memory` (the default) or a Redis URL such as `redis://127.0.0.1:6379/0`",
            );
        }
        let get = |v: &Option<Sp<i64>>, d: u32| v.as_ref().map_or(i64::from(d), |s| s.node);
        let (min, max, def) = (
            get(&r.min_expires, RegistrarSpec::DEFAULT_MIN_EXPIRES),
            get(&r.max_expires, RegistrarSpec::DEFAULT_MAX_EXPIRES),
            get(&r.default_expires, RegistrarSpec::DEFAULT_EXPIRES),
        );
        for (name, v) in [
            ("min_expires", &r.min_expires),
            ("max_expires", &r.max_expires),
            ("default_expires", &r.default_expires),
            ("max_contacts", &r.max_contacts),
            ("contact_max_size", &r.contact_max_size),
            ("max_bindings", &r.max_bindings),
        ] {
            if let Some(v) = v
                && !(1..=u32::MAX as i64).contains(&v.node)
            {
                self.err(
                    v.pos,
                    v.len,
                    format!("`{name}` must be a positive whole number"),
                    "",
                    "expires are seconds, e.g. `min_expires: 60`; `max_contacts: 10`; `contact_max_size: 512`",
                );
            }
        }
        let shared = r.store.as_ref().is_some_and(|s| s.node != "memory");
        if shared && let Some(m) = &r.max_bindings {
            self.err(
                m.pos,
                m.len,
                "`max_bindings` bounds the `memory` store only",
                "a shared store keeps its bindings in its server, which bounds them itself",
                "remove `max_bindings` and set `maxmemory` on the Redis server, or use `store: memory`",
            );
        }
        if min > max {
            let at = r
                .min_expires
                .as_ref()
                .or(r.max_expires.as_ref())
                .map_or((r.pos, 9), |s| (s.pos, s.len));
            self.err(
                at.0,
                at.1,
                format!("`min_expires` ({min}) is larger than `max_expires` ({max})"),
                "",
                "a registration must be able to last between the two",
            );
        }
        if !(min..=max).contains(&def)
            && let Some(d) = r.default_expires.as_ref()
        {
            self.err(
                d.pos,
                d.len,
                format!(
                    "`default_expires` ({def}) is outside min_expires..max_expires ({min}..{max})"
                ),
                "",
                "the expiry of a REGISTER that asks none must itself be allowed",
            );
        }
    }

    /// A step that only has a meaning on a request (`save`, `lookup`).
    pub(super) fn request_only(&mut self, s: &Step, ctx: Ctx, at: &str, what: &str) {
        if matches!(ctx, Some(SectionKind::Reply | SectionKind::Failure)) {
            let word = s.kind.word();
            self.err(
                s.pos,
                s.len,
                format!("`{word}` cannot be used in {at}"),
                format!("`{word}` {what}"),
                format!("use `{word}` in `request` (or a route it calls)"),
            );
        }
    }

    /// `registered` / `registered("$fu")` / `registered("sip:alice@example.com")`.
    pub(super) fn registered(
        &mut self,
        at: (Pos, u32),
        arg: Option<&Sp<Operand>>,
        ctx: Ctx,
        route: Option<&str>,
    ) {
        let shared = self
            .file
            .registrar
            .as_ref()
            .and_then(|r| r.store.as_ref())
            .is_some_and(|s| s.node != "memory");
        if shared && matches!(ctx, Some(SectionKind::Reply | SectionKind::Failure)) {
            self.err(
                at.0,
                at.1,
                "`registered` cannot read a shared location store in `reply` or `failure`",
                "a shared store is asked while the request waits, which only the `request` section does",
                "test `registered` in `request` (or a route it calls), or use `store: memory`",
            );
        }
        let Some(arg) = arg else {
            return;
        };
        match &arg.node {
            Operand::Var(v) if !v.is_int() => self.operand(arg, ctx, route),
            Operand::Str(s) if s.starts_with("sip:") || s.starts_with("sips:") => {
                if let Err(m) = super::check_uri(s) {
                    self.err(arg.pos, arg.len, format!("invalid address-of-record: {m}"), "", "e.g. `registered(\"sip:alice@example.com\")`");
                }
            }
            Operand::Str(s) if registered_var(s).is_some() => {}
            o => self.err(arg.pos, arg.len, format!("`registered` takes an address-of-record, not {}", show(o)), "", "write `registered` (the Request-URI), `registered(\"$fu\")` or `registered(\"sip:alice@example.com\")`"),
        }
    }
}

/// The variable a `registered("$fu")` argument names, if it is one.
pub fn registered_var(text: &str) -> Option<Var> {
    let name = text.strip_prefix('$')?;
    match crate::template::read_var(name) {
        Some(Ok((v, used))) if used == name.len() && !v.is_int() => Some(v),
        _ => None,
    }
}
