//! Checks of `auth:`, `limits:`, the `authenticate` step and network lists
//! in conditions (`$si in [10.0.0.0/8]`).

use super::{Checker, Ctx, show};
use crate::ast::*;
use crate::nets;

impl Checker<'_> {
    /// `auth:` and `limits:`.
    pub(super) fn security_settings(&mut self) {
        let file = self.file;
        if let Some(auth) = &file.auth {
            if let Some(realm) = &auth.realm {
                self.template(realm, Some(SectionKind::Request), None);
                self.crlf(realm, auth.pos, 4);
                if realm.literal().is_some_and(|r| r.trim().is_empty()) {
                    self.err(auth.pos, 4, "the `auth` realm is empty", "", "leave `realm` out to use the From domain, or name the realm, e.g. `realm: sip.example.com`");
                }
            }
            if let Some(algs) = &auth.algorithms {
                if algs.is_empty() {
                    self.err(
                        auth.pos,
                        4,
                        "`auth.algorithms` is empty",
                        "",
                        "list at least one of SHA-256, MD5 (or leave it out for `[SHA-256, MD5]`)",
                    );
                }
                for (i, a) in algs.iter().enumerate() {
                    if !AuthSpec::ALGORITHMS
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(&a.node))
                    {
                        self.err(
                            a.pos,
                            a.len,
                            format!("unknown digest algorithm `{}`", a.node),
                            "",
                            "algorithms are SHA-256 and MD5 (RFC 7616)",
                        );
                    } else if algs[..i]
                        .iter()
                        .any(|b| b.node.eq_ignore_ascii_case(&a.node))
                    {
                        self.err(
                            a.pos,
                            a.len,
                            format!("`{}` is listed twice", a.node),
                            "",
                            "list each algorithm once, in the order clients should prefer them",
                        );
                    }
                }
            }
        }
        if let Some(limits) = &file.limits {
            let entries = limits.trusted.iter().map(|t| t.node.as_str());
            if let Err((i, m)) = nets::ranges(entries) {
                let t = &limits.trusted[i];
                self.err(
                    t.pos,
                    t.len,
                    format!("invalid trusted network: {m}"),
                    "",
                    "write an address (`192.0.2.1`) or a network (`10.0.0.0/8`, `2001:db8::/32`)",
                );
            }
        }
    }

    /// The `authenticate` step: requests only.
    pub(super) fn authenticate(&mut self, s: &Step, ctx: Ctx, at: &str) {
        if matches!(ctx, Some(SectionKind::Reply | SectionKind::Failure)) {
            self.err(
                s.pos,
                s.len,
                format!("`authenticate` cannot be used in {at}"),
                "credentials are checked on requests",
                "call `authenticate` in `request` (or a route it calls), before `relay` or `save`",
            );
        }
    }

    /// `in [...]` with networks: every item must be an address or network
    /// and the subject text. True when the list is a network list (the
    /// caller then skips its own item checks).
    pub(super) fn net_list(&mut self, lhs: &Sp<Operand>, items: &[Sp<Operand>]) -> bool {
        if !nets::is_net_list(&lhs.node, items) {
            return false;
        }
        if matches!(&lhs.node, Operand::Var(v) if v.is_int())
            || !matches!(lhs.node, Operand::Var(_))
        {
            self.err(
                lhs.pos,
                lhs.len,
                format!(
                    "a network list tests an address, and {} is not one",
                    show(&lhs.node)
                ),
                "",
                "e.g. `$si in [10.0.0.0/8, 192.168.0.0/16]`",
            );
        }
        for it in items {
            let bad = match nets::item_text(&it.node) {
                Some(t) => nets::parse(t).err(),
                None => Some(format!("{} is not an address or network", show(&it.node))),
            };
            if let Some(m) = bad {
                self.err(it.pos, it.len, format!("invalid network in the list: {m}"), "", "every item of a network list is an address (`192.0.2.1`) or a network (`10.0.0.0/8`)");
            }
        }
        true
    }
}
