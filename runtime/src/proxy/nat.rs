//! The core's side of NAT traversal ([`crate::nat`]): the Contact edit of
//! `fix_contact` spliced into what is sent, and in-dialog requests to a
//! fixed Contact sent to the NAT binding with the Request-URI the phone
//! wrote (automatic, like Kamailio's `handle_ruri_alias` after
//! `loose_route`).

use std::ops::Range;

use super::route_set::RouteSet;
use crate::ctx::Edits;
use crate::sip::{Message, Splice};

/// Before the request route runs on an in-dialog request (a To tag) that
/// has no Route entry left once ours are removed: when its Request-URI
/// (after a strict router's fix) carries the `fix_contact` marker, the
/// Request-URI goes back to what the phone wrote and `$du` names the NAT
/// binding. The route still runs and may change either.
pub(crate) fn restore_marked_ruri(msg: &Message<'_>, routes: &RouteSet<'_>, edits: &mut Edits) {
    if routes.next_hop.is_some() || !msg.to().is_some_and(|to| to.tag.is_some()) {
        return;
    }
    let Some(ruri) = edits.ruri.as_deref().or(msg.request_uri()) else {
        return;
    };
    let Some(restored) = crate::nat::restore(ruri) else {
        return;
    };
    tracing::debug!(
        call_id = msg.call_id().unwrap_or(""),
        binding = restored.du,
        ruri = restored.ruri,
        "in-dialog request to a fixed Contact: sent to its NAT binding"
    );
    edits.ruri = Some(restored.ruri);
    edits.du = Some(restored.du);
}

/// Splice `fix_contact`'s edit, if any; the Contact line it touches comes
/// back, for the lines the core owns (`remove_header` keeps them).
pub(crate) fn splice_contact(edits: &Edits, splice: &mut Splice) -> Option<Range<usize>> {
    let fix = edits.contact.as_ref()?;
    splice.replace(fix.range.clone(), fix.text.as_bytes());
    Some(fix.line.clone())
}
