//! Checks of the NAT step `fix_contact` (the `behind_nat` condition is
//! valid in every section: it tests the message the section runs on).

use super::{Checker, Ctx};
use crate::ast::*;

impl Checker<'_> {
    /// `fix_contact` rewrites the Contact of the message being sent on: a
    /// request in `request`, a response in `reply`. In `failure` the
    /// request was sent already, with the Contact `request` fixed (kept
    /// for every branch `failure` makes).
    pub(super) fn fix_contact(&mut self, s: &Step, ctx: Ctx, at: &str) {
        if ctx == Some(SectionKind::Failure) {
            self.err(
                s.pos,
                s.len,
                format!("`fix_contact` cannot be used in {at}"),
                "the request was sent on before `failure` runs",
                "use `fix_contact` in `request` (the Contact fixed there stays in every branch, those `failure` makes too) or in `reply` for the Contact of a response",
            );
        }
    }
}
