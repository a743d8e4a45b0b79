//! Building what the proxy sends on: a request with our Via, the route's
//! edits and Max-Forwards decremented (§16.6), and a response with our Via
//! popped and the reply route's edits (§16.7 step 9). Shared by the
//! stateless and the stateful paths.

use std::ops::Range;

use super::identity::Listener;
use super::route_set::RouteSet;
use crate::api::Target;
use crate::ctx::Edits;
use crate::sip::{HeaderName, Message, Splice, names_equal};
use crate::target::NextHop;
use crate::transport::Transport;

/// Max-Forwards written into a request that has none (§16.6 step 3).
const DEFAULT_MAX_FORWARDS: &[u8] = b"Max-Forwards: 70\r\n";

/// Where a forwarded request goes: the action's target, else `$du`, else
/// the first Route entry left, else the Request-URI (after any change).
pub fn next_hop(
    msg: &Message<'_>,
    target: Option<&'static Target>,
    edits: &Edits,
    route_hop: Option<&str>,
) -> Option<NextHop> {
    if let Some(target) = target {
        return target.next_hop().cloned();
    }
    NextHop::from_uri(hop_uri(msg, None, edits, route_hop)?)
}

/// The transport the next hop's URI asks for (the URI `next_hop` reads),
/// if it names one (see [`crate::target::uri_transport`]).
pub fn next_hop_transport(
    msg: &Message<'_>,
    target: Option<&'static Target>,
    edits: &Edits,
    route_hop: Option<&str>,
) -> Option<Transport> {
    crate::target::uri_transport(hop_uri(msg, target, edits, route_hop)?)
}

/// The URI the next hop comes from: the target, `$du`, the first Route
/// entry left, the (new) Request-URI, in that order.
fn hop_uri<'a>(
    msg: &'a Message<'_>,
    target: Option<&'static Target>,
    edits: &'a Edits,
    route_hop: Option<&'a str>,
) -> Option<&'a str> {
    if let Some(target) = target {
        return Some(target.as_str());
    }
    if let Some(du) = &edits.du {
        return Some(du);
    }
    if let Some(route) = route_hop {
        return Some(route);
    }
    match &edits.ruri {
        Some(ruri) => Some(ruri),
        None => msg.request_uri(),
    }
}

/// The request to send downstream: `msg` with our Via on top (carrying
/// `branch`), `received`/`rport` on the Via we got (`via_edit`), the new
/// Request-URI, Record-Route, Max-Forwards, our Route entries removed, and
/// the route's removed and appended headers. `listener` sends it; the
/// request came in on `arrival`: when they differ (another transport or
/// address), `record_route` writes one entry for each side (RFC 5658).
pub fn request(
    msg: &Message<'_>,
    listener: &Listener,
    arrival: &Listener,
    branch: &str,
    via_edit: Option<&super::received::ViaEdit>,
    edits: &Edits,
    routes: &RouteSet<'_>,
) -> Option<Vec<u8>> {
    let first_via = msg.first(HeaderName::Via)?;
    let mut splice = Splice::with_capacity(8, 256 + edits.appended.len());
    let mut owned: Vec<Range<usize>> = Vec::with_capacity(8);
    if let Some(ruri) = &edits.ruri
        && let Some(range) = msg.request_uri_range()
    {
        splice.replace(range.clone(), ruri.as_bytes());
        owned.push(range);
    }
    owned.extend(super::nat::splice_contact(edits, &mut splice));
    // Our Via goes on top (§16.6 step 8).
    // Inserts at one offset keep their order: prefix, branch, line end.
    splice.insert(first_via.line_range.start, listener.via_prefix.as_bytes());
    splice.insert(first_via.line_range.start, branch.as_bytes());
    splice.insert(first_via.line_range.start, b"\r\n");
    if let Some(edit) = via_edit {
        splice.replace(edit.range.clone(), edit.text.as_bytes());
        if let Some(remove) = &edit.remove {
            splice.replace(remove.clone(), b"");
        }
        owned.push(first_via.line_range.clone());
    }
    // Record-Route before any existing one (§16.6 step 4).
    if edits.record_route {
        let at = msg
            .first(HeaderName::RecordRoute)
            .map_or(first_via.line_range.start, |h| h.line_range.start);
        splice.insert(at, listener.record_route.as_bytes());
        if listener.record_route != arrival.record_route {
            splice.insert(at, arrival.record_route.as_bytes());
        }
    }
    match (msg.max_forwards(), msg.first(HeaderName::MaxForwards)) {
        (Some(n), Some(h)) => {
            let mut decremented = [0u8; 10];
            splice.replace(
                h.value_range.clone(),
                crate::digits::decimal(n.saturating_sub(1), &mut decremented),
            );
            owned.push(h.line_range.clone());
        }
        _ => splice.insert(msg.headers_end(), DEFAULT_MAX_FORWARDS),
    }
    for range in &routes.removals {
        splice.delete(range.clone());
        owned.push(range.clone());
    }
    remove_headers(msg, edits, &owned, &mut splice);
    splice.insert(msg.headers_end(), &edits.appended);
    frame(msg, edits.body.as_deref(), &mut splice);
    let mut bytes = Vec::with_capacity(msg.len() + 256);
    splice.apply(&msg.buf()[..msg.len()], &mut bytes);
    Some(bytes)
}

/// Why a request was not built for its next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// The next hop asks for a transport we have no socket of.
    NoSocket(Transport),
    /// Over 65,507 bytes and only UDP to send it on (513).
    TooLarge,
    /// The request could not be rebuilt (it has no Via).
    Malformed,
}

/// A request built for its next hop, and the socket it leaves from.
pub struct Built {
    pub socket: usize,
    pub bytes: Vec<u8>,
}

/// Choose the socket a request to `hop` leaves from and build the request
/// for it (see [`request`]): the transport the next hop asks for (`want`),
/// else UDP; TCP instead when the request is over 1,300 bytes, nothing
/// asked for UDP and we listen on TCP (RFC 3261 §18.1.1).
#[allow(clippy::too_many_arguments)]
pub fn request_for_hop(
    identity: &super::Identity,
    msg: &Message<'_>,
    arrival: usize,
    want: Option<Transport>,
    hop: &NextHop,
    branch: &str,
    via_edit: Option<&super::received::ViaEdit>,
    edits: &Edits,
    routes: &RouteSet<'_>,
) -> Result<Built, Unsent> {
    let wanted = want.unwrap_or(Transport::Udp);
    let socket = identity
        .sending_socket(arrival, want, hop)
        .ok_or(Unsent::NoSocket(wanted))?;
    let came_on = identity.listener(arrival).ok_or(Unsent::Malformed)?;
    let build = |socket: usize| {
        let listener = identity.listener(socket).ok_or(Unsent::Malformed)?;
        let bytes = request(msg, listener, came_on, branch, via_edit, edits, routes)
            .ok_or(Unsent::Malformed)?;
        Ok::<_, Unsent>((listener.transport, bytes))
    };
    let (transport, bytes) = build(socket)?;
    if transport != Transport::Udp || bytes.len() <= MTU_LIMIT {
        return Ok(Built { socket, bytes });
    }
    if want.is_none()
        && let Some(tcp) = identity.sending_socket(arrival, Some(Transport::Tcp), hop)
    {
        let (_, bytes) = build(tcp)?;
        return Ok(Built { socket: tcp, bytes });
    }
    if bytes.len() > super::MAX_UDP_PAYLOAD {
        return Err(Unsent::TooLarge);
    }
    Ok(Built { socket, bytes })
}

/// RFC 3263 §4.1 for a next hop name whose URI gives neither a port nor a
/// transport: the transport of the first of its targets (NAPTR, SRV, as
/// the network layer's cache has them, see `Core::set_name_targets`) that
/// a socket of ours can send to (of its transport and address family),
/// and that target's index in the list. None for any other next hop, or a
/// name not looked up yet (the network layer then hands the request back
/// once it is: see `Core::retarget`).
pub fn name_transport(
    identity: &super::Identity,
    names: Option<&super::NameTargets>,
    hop: &NextHop,
) -> Option<(Transport, usize)> {
    let NextHop::Name {
        host,
        port_given: false,
        transport: None,
        ..
    } = hop
    else {
        return None;
    };
    let targets = names?(host, None, None)?;
    targets
        .iter()
        .position(|t| {
            identity
                .listeners
                .iter()
                .any(|l| l.transport == t.transport && l.addr.is_ipv4() == t.addr.is_ipv4())
        })
        .map(|i| (targets[i].transport, i))
}

/// A request [`request`] built to leave from socket `from`, rebuilt to
/// leave from socket `to` instead (its next hop's name resolved to a
/// target of `to`'s transport only after it was built): our Via (the top
/// one) names `to`, and so do our Record-Route entries, one per side as
/// [`request`] writes them. `arrival`: the socket the request came in on
/// when known; else our second Record-Route entry, if there is one, says
/// it. None when `bytes` is not a request `from` sent, or when it would be
/// too large for `to` (UDP).
pub fn move_request(
    identity: &super::Identity,
    bytes: &[u8],
    from: usize,
    to: usize,
    arrival: Option<usize>,
) -> Option<Vec<u8>> {
    let (from, to) = (identity.listener(from)?, identity.listener(to)?);
    let arrival = match arrival {
        Some(i) => Some(identity.listener(i)?),
        None => None,
    };
    let msg = Message::parse(bytes).ok()?;
    if !msg.is_request() {
        return None;
    }
    let via = msg.first(HeaderName::Via)?;
    let line = &bytes[via.line_range.clone()];
    if !line.starts_with(from.via_prefix.as_bytes()) {
        return None;
    }
    let mut splice = Splice::with_capacity(4, 256);
    splice.replace(
        via.line_range.start..via.line_range.start + from.via_prefix.len(),
        to.via_prefix.as_bytes(),
    );
    let headers = msg.headers();
    if let Some(first) = headers
        .iter()
        .position(|h| h.name == HeaderName::RecordRoute)
        .filter(|&i| bytes[headers[i].line_range.clone()] == *from.record_route.as_bytes())
    {
        // The entry of the arrival side follows ours when the sides differ.
        let next = headers
            .get(first + 1)
            .filter(|h| h.name == HeaderName::RecordRoute)
            .map(|h| h.line_range.clone());
        let is_line = |l: &Listener, range: &std::ops::Range<usize>| {
            bytes[range.clone()] == *l.record_route.as_bytes()
        };
        let arrival = match arrival {
            Some(a) => a,
            None => next
                .as_ref()
                .and_then(|r| {
                    identity
                        .listeners
                        .iter()
                        .find(|l| l.record_route != from.record_route && is_line(l, r))
                })
                .unwrap_or(from),
        };
        let mut ours = headers[first].line_range.clone();
        if arrival.record_route != from.record_route {
            match next {
                Some(r) if is_line(arrival, &r) => ours.end = r.end,
                // Not the entries `request` writes: leave them alone.
                _ => return None,
            }
        }
        let mut lines = to.record_route.clone();
        if arrival.record_route != to.record_route {
            lines.push_str(&arrival.record_route);
        }
        splice.replace(ours, lines.as_bytes());
    }
    let mut out = Vec::with_capacity(bytes.len() + 64);
    splice.apply(bytes, &mut out);
    if to.transport == Transport::Udp && out.len() > super::MAX_UDP_PAYLOAD {
        return None;
    }
    Some(out)
}

/// RFC 3261 §18.1.1: larger requests go over a congestion-controlled
/// transport when one is available (200 bytes under a 1,500-byte MTU).
pub const MTU_LIMIT: usize = 1300;

/// The response to send upstream: `msg` with its top Via (ours) removed,
/// the status line replaced when `status_line` is given (503 → 500), and
/// the reply route's edits.
pub fn response(msg: &Message<'_>, edits: &Edits, status_line: Option<&str>) -> Option<Vec<u8>> {
    let removal = msg.top_via_removal()?;
    let mut splice = Splice::with_capacity(4, 64 + edits.appended.len());
    if let Some(line) = status_line {
        let start = msg.start_line_range();
        // Keep the line ending that the original start line had.
        let text_end = msg.buf()[start.clone()]
            .iter()
            .position(|b| *b == b'\r' || *b == b'\n')
            .map_or(start.end, |p| start.start + p);
        splice.replace(start.start..text_end, line.as_bytes());
    }
    splice.delete(removal.clone());
    let contact = super::nat::splice_contact(edits, &mut splice);
    let owned: Vec<Range<usize>> = std::iter::once(removal).chain(contact).collect();
    remove_headers(msg, edits, &owned, &mut splice);
    splice.insert(msg.headers_end(), &edits.appended);
    frame(msg, edits.body.as_deref(), &mut splice);
    let mut bytes = Vec::with_capacity(msg.len() + 128);
    splice.apply(&msg.buf()[..msg.len()], &mut bytes);
    Some(bytes)
}

/// What makes the message sent framed by its own header (RFC 3261 §18.3,
/// §20.14): the CR/LF keep-alive bytes a datagram may start with (§7.5) are
/// not sent on, and a message without Content-Length (optional on UDP,
/// where the body is the rest of the datagram) gets one with its body's
/// length. (Bytes after the body that Content-Length frames are never
/// copied, and a Content-Length larger than the datagram is refused by
/// `validate`.)
///
/// `body`: a new body in place of the message's (`rtp_manage`'s SDP):
/// Content-Length then says its length.
fn frame(msg: &Message<'_>, body: Option<&[u8]>, splice: &mut Splice) {
    let start = msg.start_line_range().start;
    if start > 0 {
        splice.delete(0..start);
    }
    let mut digits = [0u8; 10];
    let length = body.map_or(msg.body().len(), <[u8]>::len);
    let length = crate::digits::decimal(u32::try_from(length).unwrap_or(u32::MAX), &mut digits);
    match msg.first(HeaderName::ContentLength) {
        None => {
            splice.insert(msg.headers_end(), b"Content-Length: ");
            splice.insert(msg.headers_end(), length);
            splice.insert(msg.headers_end(), b"\r\n");
        }
        Some(h) if body.is_some() => splice.replace(h.value_range.clone(), length),
        Some(_) => {}
    }
    if let Some(body) = body {
        let from = msg.body_start();
        splice.replace(from..from + msg.body().len(), body);
    }
}

/// Delete the header lines `remove_header` named, except lines the core
/// itself edits (Via, Max-Forwards, Route entries): those stay consistent.
fn remove_headers(msg: &Message<'_>, edits: &Edits, owned: &[Range<usize>], splice: &mut Splice) {
    if edits.removed.is_empty() && edits.removed_lines.is_empty() {
        return;
    }
    for h in msg.headers() {
        let name = msg.name_text(h);
        if !edits.removed.iter().any(|r| names_equal(r, name))
            && !edits.removed_lines.contains(&h.line_range)
        {
            continue;
        }
        let overlaps = owned
            .iter()
            .any(|o| o.start < h.line_range.end && h.line_range.start < o.end);
        if overlaps || h.name == HeaderName::Via {
            tracing::debug!(
                header = name,
                "remove_header: the core owns this header; kept"
            );
            continue;
        }
        splice.delete(h.line_range.clone());
    }
}
