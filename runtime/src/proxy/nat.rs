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
    if routes.next_hop.is_some() {
        return;
    }
    let Some(ruri) = edits.ruri.as_deref().or(msg.request_uri()) else {
        return;
    };
    // The marker first (one search; most Request-URIs have none), the To
    // tag (a parse of the To header) only then.
    let Some(restored) = crate::nat::restore(ruri) else {
        return;
    };
    if msg.to().is_none_or(|to| to.tag.is_none()) {
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Identity, Listener, route_set};

    fn us() -> Identity {
        Identity::new(vec![
            Listener::new("198.51.100.1:5060".parse().unwrap(), None).unwrap(),
        ])
    }

    /// What the core does before the request route: Route processing,
    /// a strict router's Request-URI, then the marker.
    fn edits_for(text: &str) -> Edits {
        let msg = Message::parse(text.as_bytes()).unwrap();
        let identity = us();
        let routes = route_set::process(&msg, &identity);
        let mut edits = Edits::default();
        if let Some(ruri) = routes.new_request_uri {
            edits.ruri = Some(ruri.to_string());
        }
        restore_marked_ruri(&msg, &routes, &mut edits);
        edits
    }

    fn bye(ruri: &str, routes: &str, to_tag: &str) -> String {
        format!(
            "BYE {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-b\r\n\
             {routes}\
             From: <sip:carol@example.com>;tag=c\r\n\
             To: <sip:phone@example.com>{to_tag}\r\n\
             Call-ID: x\r\n\
             CSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    const FIXED: &str = "sip:phone@203.0.113.7:40312;sfnat=192.168.1.10~5060~udp";

    #[test]
    fn an_in_dialog_request_to_a_fixed_contact_goes_to_the_binding() {
        let e = edits_for(&bye(FIXED, "Route: <sip:198.51.100.1;lr>\r\n", ";tag=p"));
        assert_eq!(e.ruri.as_deref(), Some("sip:phone@192.168.1.10:5060"));
        assert_eq!(e.du.as_deref(), Some("sip:203.0.113.7:40312;transport=udp"));
        // Without any Route (we were the outbound proxy): the same.
        let e = edits_for(&bye(FIXED, "", ";tag=p"));
        assert_eq!(e.ruri.as_deref(), Some("sip:phone@192.168.1.10:5060"));
        // A strict router upstream put our URI in the Request-URI and the
        // fixed Contact last in the Route set.
        let strict = format!("Route: <{FIXED}>\r\n");
        let e = edits_for(&bye("sip:198.51.100.1", &strict, ";tag=p"));
        assert_eq!(e.ruri.as_deref(), Some("sip:phone@192.168.1.10:5060"));
        assert_eq!(e.du.as_deref(), Some("sip:203.0.113.7:40312;transport=udp"));
    }

    #[test]
    fn the_marker_is_left_alone_when_the_request_goes_elsewhere_first() {
        // Another Route entry is left: the request goes there as it is.
        let routes = "Route: <sip:198.51.100.1;lr>, <sip:198.51.100.99;lr>\r\n";
        let e = edits_for(&bye(FIXED, routes, ";tag=p"));
        assert_eq!((e.ruri, e.du), (None, None));
        // Not in a dialog (no To tag).
        let e = edits_for(&bye(FIXED, "", ""));
        assert_eq!((e.ruri, e.du), (None, None));
        // No marker.
        let e = edits_for(&bye("sip:phone@203.0.113.7:40312", "", ";tag=p"));
        assert_eq!((e.ruri, e.du), (None, None));
    }
}
