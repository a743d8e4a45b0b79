//! The stateless proxy path (RFC 3261 §16.3–§16.7, §16.11, §18): request
//! sanity checks, Max-Forwards, Route processing, the `request` route, our
//! Via, `received`/`rport`, Record-Route; responses checked against our Via,
//! run through the `reply` route and sent to the next Via.

use std::net::SocketAddr;
use std::ops::Range;

use super::branch::{OUR_PREFIX, stateless_branch};
use super::received::{response_destination, top_via_edit};
use super::{Core, Outgoing, reply, route_set};
use crate::api::{RelayTo, Target};
use crate::ctx::{Ctx, Decision, Edits};
use crate::sip::{HeaderName, Message, Splice, names_equal};
use crate::target::NextHop;

/// Max-Forwards written into a request that has none (§16.6 step 3).
const DEFAULT_MAX_FORWARDS: &[u8] = b"Max-Forwards: 70\r\n";

pub(super) fn handle(
    core: &Core,
    datagram: &[u8],
    source: SocketAddr,
    socket: usize,
    out: &mut Vec<Outgoing>,
) {
    // RFC 5626 keep-alives (CRLF or CRLFCRLF) are not messages.
    if datagram.iter().all(|b| b.is_ascii_whitespace()) {
        return;
    }
    let msg = match Message::parse(datagram) {
        Ok(msg) => msg,
        Err(e) => {
            tracing::warn!(%source, len = datagram.len(), "dropped unparsable datagram: {}", e.reason);
            return;
        }
    };
    if msg.is_request() {
        on_request(core, &msg, source, socket, out);
    } else {
        on_response(core, &msg, source, socket, out);
    }
}

fn on_request(
    core: &Core,
    msg: &Message<'_>,
    source: SocketAddr,
    socket: usize,
    out: &mut Vec<Outgoing>,
) {
    let method = msg.method().unwrap_or("");
    let is_ack = method == "ACK";
    if let Err(invalid) = msg.validate() {
        if is_ack {
            tracing::warn!(%source, "dropped malformed ACK: {}", invalid.reason);
        } else {
            send_reply(
                msg,
                source,
                socket,
                invalid.code,
                Some(invalid.reason),
                b"",
                out,
            );
        }
        return;
    }
    // §16.3 step 3 / §16.6 step 3: Max-Forwards.
    let max_forwards = msg.max_forwards();
    if max_forwards == Some(0) {
        if !is_ack {
            send_reply(msg, source, socket, 483, None, b"", out);
        }
        return;
    }
    // §16.3 step 5: we support no extension a proxy must understand.
    if !is_ack
        && method != "CANCEL"
        && let Some(h) = msg.first(HeaderName::ProxyRequire)
    {
        let mut unsupported = b"Unsupported: ".to_vec();
        unsupported.extend_from_slice(msg.value(h).as_bytes());
        unsupported.extend_from_slice(b"\r\n");
        send_reply(msg, source, socket, 420, None, &unsupported, out);
        return;
    }
    let routes = route_set::process(msg, core.identity());
    let mut cx = Ctx::for_request(msg, source);
    if let Some(ruri) = routes.new_request_uri {
        cx.edits.ruri = Some(ruri.to_string());
    }
    let _ = core.routes.request(&mut cx);
    let (decision, edits) = cx.finish();
    let target = match decision {
        Decision::Forward(target) => target,
        Decision::Relay(RelayTo::Default) => None,
        Decision::Relay(RelayTo::Uri(target)) => Some(target),
        Decision::Relay(RelayTo::Set(name)) => match first_target_of(core, name) {
            Some(target) => Some(target),
            None => {
                tracing::error!(
                    set = name,
                    "relay: unknown destination set; request dropped"
                );
                return;
            }
        },
        Decision::Reply {
            code,
            reason,
            headers,
        } => {
            if is_ack {
                tracing::debug!("reply to an ACK suppressed (an ACK is never answered)");
            } else {
                send_reply(msg, source, socket, code, reason, &headers, out);
            }
            return;
        }
        Decision::Drop => {
            tracing::debug!(
                call_id = msg.call_id().unwrap_or(""),
                method,
                "request dropped by the routes"
            );
            return;
        }
        Decision::Undecided => {
            tracing::warn!(
                call_id = msg.call_id().unwrap_or(""),
                method,
                "the request route ended without forward, relay, reply or drop: request dropped"
            );
            return;
        }
    };
    let Some(hop) = next_hop(msg, target, &edits, routes.next_hop) else {
        tracing::warn!(
            call_id = msg.call_id().unwrap_or(""),
            method,
            "no next hop (the target URI has no host): request dropped"
        );
        return;
    };
    let Some(listener) = core.identity().listener(socket) else {
        return;
    };
    let mut splice = Splice::new();
    let mut owned: Vec<Range<usize>> = Vec::with_capacity(8);
    if let Some(ruri) = &edits.ruri
        && let Some(range) = msg.request_uri_range()
    {
        splice.replace(range.clone(), ruri.as_bytes());
        owned.push(range);
    }
    // Our Via goes on top (§16.6 step 8), with a branch derived from the request.
    let Some(first_via) = msg.first(HeaderName::Via) else {
        return;
    };
    let mut via = String::with_capacity(listener.via_prefix.len() + 32);
    via.push_str(&listener.via_prefix);
    stateless_branch(msg, &mut via);
    via.push_str("\r\n");
    splice.insert(first_via.line_range.start, via.as_bytes());
    if let Some(top) = msg.top_via()
        && let Some(edit) = top_via_edit(&top, source)
    {
        splice.replace(edit.range.clone(), edit.text.as_bytes());
        owned.push(first_via.line_range.clone());
    }
    // Record-Route before any existing one (§16.6 step 4).
    if edits.record_route {
        let at = msg
            .first(HeaderName::RecordRoute)
            .map_or(first_via.line_range.start, |h| h.line_range.start);
        splice.insert(at, listener.record_route.as_bytes());
    }
    let decremented;
    match (max_forwards, msg.first(HeaderName::MaxForwards)) {
        (Some(n), Some(h)) => {
            decremented = (n - 1).to_string();
            splice.replace(h.value_range.clone(), decremented.as_bytes());
            owned.push(h.line_range.clone());
        }
        _ => splice.insert(msg.headers_end(), DEFAULT_MAX_FORWARDS),
    }
    for range in &routes.removals {
        splice.delete(range.clone());
        owned.push(range.clone());
    }
    remove_headers(msg, &edits, &owned, &mut splice);
    splice.insert(msg.headers_end(), &edits.appended);
    let mut bytes = Vec::with_capacity(msg.len() + 256);
    splice.apply(&msg.buf()[..msg.len()], &mut bytes);
    tracing::debug!(
        call_id = msg.call_id().unwrap_or(""),
        method,
        %source,
        to = ?hop,
        "request forwarded"
    );
    out.push(Outgoing {
        socket,
        to: hop,
        bytes,
    });
}

/// Where a forwarded request goes: the action's target, else `$du`, else
/// the first Route entry left, else the Request-URI (after any change).
fn next_hop(
    msg: &Message<'_>,
    target: Option<&'static Target>,
    edits: &Edits,
    route_hop: Option<&str>,
) -> Option<NextHop> {
    if let Some(target) = target {
        return target.next_hop().cloned();
    }
    if let Some(du) = &edits.du {
        return NextHop::from_uri(du);
    }
    if let Some(route) = route_hop {
        return NextHop::from_uri(route);
    }
    match &edits.ruri {
        Some(ruri) => NextHop::from_uri(ruri),
        None => NextHop::from_uri(msg.request_uri()?),
    }
}

/// The first target of a destination set (until destination sets are
/// balanced by the stateful core, `relay: SET` goes to the first target).
fn first_target_of(core: &Core, name: &str) -> Option<&'static Target> {
    let settings = core.routes.settings();
    let set = settings.destinations.iter().find(|s| s.name == name)?;
    set.targets.first().map(|d| d.uri)
}

/// Delete the header lines `remove_header` named, except lines the core
/// itself edits (Via, Max-Forwards, Route entries): those stay consistent.
fn remove_headers(msg: &Message<'_>, edits: &Edits, owned: &[Range<usize>], splice: &mut Splice) {
    if edits.removed.is_empty() {
        return;
    }
    let buf = msg.buf();
    for h in msg.headers() {
        let name = std::str::from_utf8(buf.get(h.name_range.clone()).unwrap_or(b"")).unwrap_or("");
        if !edits.removed.iter().any(|r| names_equal(r, name)) {
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

fn on_response(
    core: &Core,
    msg: &Message<'_>,
    source: SocketAddr,
    socket: usize,
    out: &mut Vec<Outgoing>,
) {
    if let Err(invalid) = msg.validate() {
        tracing::warn!(%source, "dropped malformed response: {}", invalid.reason);
        return;
    }
    let Some(top) = msg.top_via() else {
        return;
    };
    let ours = core.identity().is_us(top.host, top.port)
        && top.branch.is_some_and(|b| b.starts_with(OUR_PREFIX));
    if !ours {
        // §18.1.2: a response whose top Via is not ours is discarded.
        tracing::debug!(%source, via_host = top.host, "response whose top Via is not ours: dropped");
        return;
    }
    let Some(next) = msg.vias().nth(1) else {
        tracing::debug!(%source, "response to a request this proxy sent itself: consumed");
        return;
    };
    let Some(removal) = msg.top_via_removal() else {
        return;
    };
    let mut cx = Ctx::for_reply(msg, None, source);
    let _ = core.routes.reply(&mut cx);
    let (decision, edits) = cx.finish();
    if matches!(decision, Decision::Drop) {
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            "response dropped by the reply route"
        );
        return;
    }
    let Some(hop) = response_destination(&next) else {
        tracing::warn!(%source, "response with an unusable second Via: dropped");
        return;
    };
    let from_socket = core
        .identity()
        .listeners
        .iter()
        .position(|l| {
            l.port == top.port.unwrap_or(crate::target::DEFAULT_PORT)
                && l.host.eq_ignore_ascii_case(top.host)
        })
        .unwrap_or(socket);
    let mut splice = Splice::new();
    splice.delete(removal.clone());
    remove_headers(msg, &edits, &[removal], &mut splice);
    splice.insert(msg.headers_end(), &edits.appended);
    let mut bytes = Vec::with_capacity(msg.len() + 128);
    splice.apply(&msg.buf()[..msg.len()], &mut bytes);
    tracing::debug!(
        call_id = msg.call_id().unwrap_or(""),
        status = msg.status().unwrap_or(0),
        %source,
        to = ?hop,
        "response forwarded"
    );
    out.push(Outgoing {
        socket: from_socket,
        to: hop,
        bytes,
    });
}

/// Answer a request statelessly; drop with one log line when it has no Via
/// to answer to.
fn send_reply(
    msg: &Message<'_>,
    source: SocketAddr,
    socket: usize,
    code: u16,
    reason: Option<&str>,
    headers: &[u8],
    out: &mut Vec<Outgoing>,
) {
    let mut bytes = Vec::with_capacity(512);
    match reply::build(msg, source, code, reason, headers, &mut bytes) {
        Some(to) => {
            tracing::debug!(
                call_id = msg.call_id().unwrap_or(""),
                code,
                %source,
                "stateless reply sent"
            );
            out.push(Outgoing {
                socket,
                to: NextHop::Addr(to),
                bytes,
            })
        }
        None => {
            tracing::warn!(%source, code, "request without a usable Via: dropped instead of answering {code}")
        }
    }
}
