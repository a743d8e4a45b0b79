//! The stateless proxy path (RFC 3261 §16.3–§16.7, §16.11, §18): request
//! sanity checks, Max-Forwards, Route processing, the `request` route, our
//! Via, `received`/`rport`, Record-Route; responses checked against our Via,
//! run through the `reply` route and sent to the next Via.

use std::net::SocketAddr;
use std::time::Instant;

use super::branch::{self, OUR_PREFIX, StatelessCheck, check_stateless, stateless_branch};
use super::drain::{NewRelay, REJECT_HEADERS, new_relay};
use super::keepalive::KEEPALIVE_PREFIX;
use super::location::Saving;
use super::probe::PROBE_PREFIX;
use super::received::{reply_destination, response_destination, top_via_edit};
use super::stateful::{Matched, ResponseMatch, branch_shard, server_key};
use super::suspend::{self, Answer, AskId, Memo, Query, Resume, Suspended};
use super::{Core, Outgoing, Payload, Touched, forward, reply, route_set};
use crate::api::RelayTo;
use crate::ctx::{Ctx, Decision, NatEnv};
use crate::metrics::{self, DropReason};
use crate::registrar::{RegisterRequest, StoreError};
use crate::sip::{HeaderName, Message};
use crate::target::NextHop;
use crate::transaction::TransactionKey;

/// Whether a request from `source` is within `limits.per_source`; the
/// first one over it logs a line, the rest of the ban is silent.
fn limits_pass(limiter: &crate::limits::Limiter, source: SocketAddr, now: Instant) -> bool {
    match limiter.check(source.ip(), now) {
        crate::limits::Verdict::Pass => true,
        crate::limits::Verdict::BanStarted => {
            metrics::source_banned();
            metrics::dropped(DropReason::RateLimited);
            tracing::warn!("{}", limiter.per_source().ban_message(source.ip()));
            false
        }
        crate::limits::Verdict::Banned => {
            metrics::dropped(DropReason::RateLimited);
            false
        }
    }
}

pub(super) fn handle(
    core: &Core,
    now: Instant,
    datagram: &[u8],
    source: SocketAddr,
    socket: usize,
    out: &mut Vec<Outgoing>,
) -> Option<Touched> {
    // RFC 5626 keep-alives (CRLF or CRLFCRLF) are not messages.
    if datagram.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    // `limits.per_source`: one lookup for every request datagram, before
    // any parsing (responses are not limited: they answer our requests).
    if let Some(limiter) = &core.limiter
        && !datagram.starts_with(b"SIP/")
        && !limits_pass(limiter, source, now)
    {
        return None;
    }
    let normalised;
    let mut msg = match Message::parse(datagram) {
        Ok(msg) => msg,
        Err(e) => {
            metrics::parse_error();
            crate::warn_limited!(%source, len = datagram.len(), "dropped unparsable datagram: {}", e.reason);
            return None;
        }
    };
    // RFC 3261 §7: CRLF ends every line. A header section with lines
    // ending in LF alone is handled (and so forwarded) as its CRLF copy:
    // nothing leaves with mixed line ends. A bare CR is refused later.
    if msg.has_bare_lf() {
        normalised = crate::sip::crlf_normalised(datagram);
        if let Some(copy) = normalised.as_deref()
            && let Ok(again) = Message::parse(copy)
        {
            msg = again;
        }
    }
    let mut touched = None;
    if msg.is_request() {
        on_request(core, now, &msg, source, socket, out, &mut touched, None);
    } else {
        on_response(core, now, &msg, source, socket, out, &mut touched, None);
    }
    touched
}

/// Whether an ACK's To tag is the one our stateless replies to its
/// INVITE carry (same Call-ID, From tag, branch and CSeq number).
fn is_ack_to_own_reply(msg: &Message<'_>) -> bool {
    let Some(tag) = msg.to().and_then(|to| to.tag) else {
        return false;
    };
    if !tag.starts_with("sf") {
        return false;
    }
    let mut ours = String::with_capacity(20);
    branch::stateless_to_tag(msg, &mut ours);
    ours == tag
}

/// Whether an answer to this datagram request would be sent to one of our
/// own sockets: it came from an address of ours, and its top Via names one
/// of our sockets there without `rport` (§18.2.2 sends to the sent-by
/// port). We never send a request to ourselves, so that is our own
/// request bounced back by something that added no Via (or a forgery):
/// answering it would only talk to ourselves. Cheap for the usual request
/// from elsewhere: the source address decides first.
fn answer_comes_back(
    core: &Core,
    msg: &Message<'_>,
    (source, _, transport): (SocketAddr, usize, crate::transport::Transport),
) -> bool {
    !transport.is_stream()
        && core.identity.is_own_ip(source.ip())
        && msg.top_via().is_some_and(|top| {
            core.identity
                .is_own_socket(reply_destination(&top, source, transport))
        })
}

/// `touched` gets the transaction shard the request went to, if any.
/// `replay`: the request waited for a shared store (see `suspend`), with
/// what its route runs learned so far and how many ran.
#[allow(clippy::too_many_arguments)]
fn on_request(
    core: &Core,
    now: Instant,
    msg: &Message<'_>,
    source: SocketAddr,
    socket: usize,
    out: &mut Vec<Outgoing>,
    touched: &mut Option<Touched>,
    replay: Option<(&Memo, u8)>,
) {
    let method = msg.method().unwrap_or("");
    let is_ack = method == "ACK";
    // Where our own replies go: the source, over the socket it came on.
    let at = (source, socket, core.identity.transport_of(socket));
    // An ACK never makes a transaction, nor does a CANCEL that matched
    // none (§16.10): both are forwarded statelessly.
    let never_stateful = is_ack || method == "CANCEL";
    metrics::request_received(method);
    if answer_comes_back(core, msg, at) {
        metrics::dropped(DropReason::SelfLoop);
        crate::warn_limited!(
            %source,
            call_id = msg.call_id().unwrap_or(""),
            "request whose answer would go to our own socket (its top Via names it, without rport): dropped"
        );
        return;
    }
    if let Err(invalid) = msg.validate() {
        if is_ack {
            metrics::dropped(DropReason::Malformed);
            crate::warn_limited!(%source, "dropped malformed ACK: {}", invalid.reason);
        } else {
            send_reply(msg, at, invalid.code, Some(invalid.reason), b"", out);
        }
        return;
    }
    // §16.3 step 3 / §16.6 step 3: Max-Forwards.
    let max_forwards = msg.max_forwards();
    if max_forwards == Some(0) {
        if !is_ack {
            send_reply(msg, at, 483, None, b"", out);
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
        send_reply(msg, at, 420, None, &unsupported, out);
        return;
    }
    // Retransmissions, non-2xx ACKs and CANCELs of relayed requests: only
    // when there are transactions (a stateless proxy takes no lock).
    // (The key is built only when needed: a proxy that only forwards
    // never allocates one.)
    let mut key = None;
    if core.capacity.live() > 0
        && let Some(k) = key.insert(server_key(msg)).as_ref()
    {
        let shard = core.shard_of(k);
        let (matched, t) =
            core.with_shard(shard, |s, env| s.on_request(env, now, msg, k, source, out));
        if let Matched::Absorbed = matched {
            *touched = Some(t);
            return;
        }
    }
    // A request waiting for a shared store's answer: its retransmissions
    // are absorbed, and a CANCEL of it ends it (see `suspend`).
    if replay.is_none()
        && let Some(waiting) = core.suspended.as_ref().filter(|w| !w.is_empty())
        && let Some(k) = key.get_or_insert_with(|| server_key(msg)).as_ref()
        && absorbed_while_waiting(core, waiting, msg, k, at, out)
    {
        return;
    }
    let routes = route_set::process(msg, &core.identity);
    // §16.3 step 4: a request that went through us before, unchanged.
    // The key itself only when a branch of ours is in the message, or
    // when the request is forwarded (below).
    let loop_key = || branch::loop_key(msg, routes.next_hop);
    if branch::has_looped_with(msg, &core.identity, loop_key) {
        metrics::loop_detected();
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            method,
            %source,
            "request came back with a Via of ours for the same request: loop"
        );
        if !is_ack {
            send_reply(msg, at, 482, None, b"", out);
        }
        return;
    }
    // An ACK to a reply we made ourselves (a 407 challenge, a 404 of the
    // routes) ends there: it carries the To tag we made (Kamailio's sl
    // module filters these the same way).
    if is_ack && is_ack_to_own_reply(msg) {
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            "ACK to a reply of ours: absorbed"
        );
        return;
    }
    // A request from the pool for a phone registered here (over one of
    // our connections, or behind a NAT that lets in only us): the
    // instance that sent it ran the routes (see `flow`).
    let pool_hop = routes.flow.filter(|_| {
        !never_stateful && routes.next_hop.is_none() && routes.new_request_uri.is_none()
    });
    let (decision, edits) = if let Some(flow) = pool_hop {
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            method,
            %source,
            phone = %flow.addr,
            "request from the pool for a phone registered here: relayed to it"
        );
        metrics::pool_hop();
        super::flow::pool_hop(msg, flow)
    } else {
        let memo = replay.map(|(m, _)| m);
        let location = core.location(now, memo);
        let mut cx = Ctx::for_request(msg, source);
        cx.set_auth(core.auth_env(now))
            .set_location(location.as_ref().map(|l| l as &dyn crate::ctx::Location))
            .set_transport(at.2);
        if let Some(memo) = memo {
            cx.set_memo(memo);
        }
        if let Some(ruri) = routes.new_request_uri {
            cx.edits.ruri = Some(ruri.to_string());
        }
        super::nat::restore_marked_ruri(msg, &routes, &mut cx.edits);
        // An ACK or CANCEL from the pool that matched no transaction
        // of ours goes to the phone too (the routes still run).
        if let Some(flow) = routes.flow.filter(|_| routes.next_hop.is_none()) {
            cx.edits.du = Some(flow.uri());
        }
        let _ = core.routes.request(&mut cx);
        core.tell_media(now, &mut cx.tells);
        if let Some(query) = cx.asked.take() {
            // The route needs another server's answer: this run is thrown
            // away and the request waits (see `suspend`).
            let mut next = memo.cloned().unwrap_or_default();
            next.accepted.append(&mut cx.accepted_now);
            next.replay_until = cx.queries();
            drop(cx);
            let rounds = replay.map_or(0, |(_, r)| r) + 1;
            let key = key.unwrap_or_else(|| server_key(msg));
            suspend_route(core, now, msg, at, key, next, rounds, query, out, touched);
            return;
        }
        cx.finish()
    };
    let target = match decision {
        Decision::Forward(target) => target,
        // An ACK or unmatched CANCEL never makes a transaction: relayed
        // statelessly (§16.11, §16.10); a draining instance may forward or
        // refuse new ones (see `drain`).
        Decision::Relay(to)
            if !never_stateful && new_relay(core.draining()) == NewRelay::Stateful =>
        {
            let Some(key) = key.unwrap_or_else(|| server_key(msg)) else {
                return;
            };
            let shard = core.shard_of(&key);
            let ((), t) = core.with_shard(shard, |s, env| {
                s.relay(
                    env,
                    now,
                    msg,
                    source,
                    socket,
                    &routes,
                    key,
                    loop_key(),
                    to,
                    edits,
                    out,
                )
            });
            *touched = Some(t);
            return;
        }
        Decision::Relay(_) if !never_stateful && new_relay(core.draining()) == NewRelay::Reject => {
            metrics::transaction_rejected();
            send_reply(msg, at, 503, None, REJECT_HEADERS, out);
            return;
        }
        Decision::Relay(RelayTo::Default) => None,
        // No transaction, no fork: the first target only.
        Decision::Relay(RelayTo::List(targets)) => targets.first().copied(),
        Decision::Relay(RelayTo::Uri(target)) => Some(target),
        // No transaction, so no failover: a target that is up, the same
        // one for every ACK of a call (see `Destinations::peek`).
        Decision::Relay(RelayTo::Set(name)) => {
            match core.destinations.peek(name, msg.call_id().unwrap_or("")) {
                Some(target) => Some(target),
                None => {
                    metrics::dropped(DropReason::NoRoute);
                    crate::warn_limited!(
                        set = name,
                        method,
                        "stateless relay (an ACK, or draining): no target of the set is up; dropped"
                    );
                    return;
                }
            }
        }
        Decision::Reply {
            code,
            reason,
            headers,
        } => {
            if is_ack {
                tracing::debug!("reply to an ACK suppressed (an ACK is never answered)");
            } else {
                send_reply(msg, at, code, reason, &headers, out);
            }
            return;
        }
        Decision::Save => {
            if !is_ack {
                match core.save(msg, source, at.2, now) {
                    Saving::Answer(code, reason, headers) => {
                        send_reply(msg, at, code, reason, &headers, out);
                    }
                    Saving::Ask(request) => {
                        let key = key.unwrap_or_else(|| server_key(msg));
                        suspend_save(core, now, msg, at, key, request, out);
                    }
                }
            }
            return;
        }
        Decision::Drop => {
            metrics::dropped(DropReason::Route);
            tracing::debug!(
                call_id = msg.call_id().unwrap_or(""),
                method,
                %source,
                "request dropped by the routes"
            );
            return;
        }
        Decision::Undecided => {
            metrics::dropped(DropReason::Undecided);
            crate::warn_limited!(
                call_id = msg.call_id().unwrap_or(""),
                method,
                %source,
                "the request route ended without forward, relay, reply or drop: request dropped"
            );
            return;
        }
    };
    let Some(hop) = forward::next_hop(msg, target, &edits, routes.next_hop) else {
        metrics::dropped(DropReason::NoRoute);
        crate::warn_limited!(
            call_id = msg.call_id().unwrap_or(""),
            method,
            %source,
            "no next hop (the target URI has no host): request dropped"
        );
        return;
    };
    if is_self(&core.identity, &hop) {
        // Never send to ourselves: the request would come back until
        // Max-Forwards ends (routes-language "Abuse and loops").
        metrics::loop_detected();
        metrics::dropped(DropReason::SelfLoop);
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            method,
            %source,
            to = %hop,
            "the next hop is this proxy: not sent (482)"
        );
        if !is_ack {
            send_reply(msg, at, 482, None, b"", out);
        }
        return;
    }
    let Some(top) = msg.top_via() else {
        return;
    };
    let mut branch = String::with_capacity(56);
    let transport = core.identity.transport_of(socket);
    let responses_to = reply_destination(&top, source, transport);
    stateless_branch(msg, &core.identity, loop_key(), responses_to, &mut branch);
    let via_edit = top_via_edit(&top, source, transport);
    let want = forward::next_hop_transport(msg, target, &edits, routes.next_hop)
        .or(routes.side)
        .or_else(|| {
            forward::name_transport(&core.identity, core.name_targets.get(), &hop).map(|(t, _)| t)
        });
    let built = forward::request_for_hop(
        &core.identity,
        msg,
        socket,
        want,
        &hop,
        &branch,
        via_edit.as_ref(),
        &edits,
        &routes,
    );
    let (from, bytes) = match built {
        Ok(built) => (built.socket, built.bytes),
        Err(unsent) => {
            not_sent(msg, at, &hop, unsent, out);
            return;
        }
    };
    tracing::debug!(
        call_id = msg.call_id().unwrap_or(""),
        method,
        %source,
        to = %hop,
        "request forwarded"
    );
    metrics::request_forwarded();
    out.push(Outgoing {
        socket: from,
        to: hop,
        bytes: Payload::Owned(bytes),
    });
}

/// The answer to question `id` of a waiting request came: the request
/// goes on (its route runs again, or its REGISTER is answered).
pub(super) fn resume(
    core: &Core,
    now: Instant,
    id: AskId,
    answer: Answer,
    out: &mut Vec<Outgoing>,
) -> Option<Touched> {
    let w = core.suspended.as_ref()?.take(id)?;
    if let Resume::Fork { held, shard } = w.resume {
        // A fork waits in its transaction: nothing of the request was kept.
        let shard = shard % core.shards.len();
        let answer = media_answer(answer);
        let ((), t) = core.with_shard(shard, |s, env| {
            s.resume_fork(env, now, id, held, answer, out)
        });
        return Some(t);
    }
    let msg = match Message::parse(&w.datagram) {
        Ok(msg) => msg,
        // It parsed when it arrived: cannot happen.
        Err(_) => return None,
    };
    let at = (w.source, w.socket, core.identity.transport_of(w.socket));
    let mut touched = None;
    let mut memo = w.memo;
    match w.resume {
        Resume::Save { request } => {
            let registrar = core.registrar.as_ref()?;
            let now_unix = core.unix_time(now);
            let (code, reason, headers) = match answer {
                Answer::Saved(result) => registrar.saved(&request, result, now, now_unix),
                _ => registrar.unavailable(StoreError::new("another answer to a save"), now_unix),
            };
            send_reply(&msg, at, code, reason, &headers, out);
        }
        Resume::Route { aor } => {
            let result = match answer {
                Answer::Bindings(result) => result,
                _ => Err(StoreError::new("another answer to a lookup")),
            };
            match &result {
                Ok(bindings) => metrics::lookup_done(!bindings.is_empty()),
                Err(_) => metrics::registrar_store_error(),
            }
            memo.bindings.push((aor, result));
            let replay = Some((&memo, w.rounds));
            on_request(
                core,
                now,
                &msg,
                w.source,
                w.socket,
                out,
                &mut touched,
                replay,
            );
        }
        // Handled above.
        Resume::Fork { .. } => {}
        Resume::MediaRoute | Resume::Reply { .. } => {
            memo.media.push(media_answer(answer));
            let replay = Some((&memo, w.rounds));
            match w.resume {
                Resume::Reply {
                    held: Some(held), ..
                } => {
                    let branch = msg.top_via().and_then(|v| v.branch).unwrap_or("");
                    let shard = branch_shard(branch)? % core.shards.len();
                    let ((), t) = core.with_shard(shard, |s, env| {
                        s.resume_reply(env, now, id, held, &msg, w.source, &memo, out)
                    });
                    touched = Some(t);
                }
                Resume::Reply { held: None } => {
                    on_response(
                        core,
                        now,
                        &msg,
                        w.source,
                        w.socket,
                        out,
                        &mut touched,
                        replay,
                    );
                }
                _ => on_request(
                    core,
                    now,
                    &msg,
                    w.source,
                    w.socket,
                    out,
                    &mut touched,
                    replay,
                ),
            }
        }
    }
    touched
}

/// rtpengine's answer to a media question (another kind of answer to it
/// is an error).
fn media_answer(answer: Answer) -> Result<Vec<u8>, String> {
    match answer {
        Answer::Media(result) => result,
        _ => Err("a store answer to an rtpengine question".to_string()),
    }
}

/// Where our own replies to a request go: its source, over its socket.
type ReplyAt = (SocketAddr, usize, crate::transport::Transport);

/// A request that matches one waiting for a shared store: a
/// retransmission (absorbed; an INVITE's gets the 100 again) or a CANCEL
/// of a waiting INVITE (the INVITE ends with 487, the CANCEL gets 200,
/// RFC 3261 §16.10). False: neither.
fn absorbed_while_waiting(
    core: &Core,
    waiting: &Suspended,
    msg: &Message<'_>,
    key: &TransactionKey,
    at: ReplyAt,
    out: &mut Vec<Outgoing>,
) -> bool {
    if waiting.is_waiting(key) {
        if msg.method() == Some("INVITE") {
            send_reply(msg, at, 100, None, b"", out);
        }
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            "retransmission of a request waiting for the location store: absorbed"
        );
        return true;
    }
    let Some(invite) = key.invite_key() else {
        return false;
    };
    let Some(w) = waiting.take_by_key(&invite) else {
        return false;
    };
    send_reply(msg, at, 200, None, b"", out);
    if let Ok(invite) = Message::parse(&w.datagram) {
        let to = (w.source, w.socket, core.identity.transport_of(w.socket));
        send_reply(&invite, to, 487, None, b"", out);
    }
    true
}

/// The request route of `msg` needs `query` answered (the bindings of an
/// AoR from the shared store, or rtpengine's SDP): keep the request and
/// ask (an INVITE gets 100 Trying meanwhile). Too many questions for one
/// request, or too many requests waiting: the route runs again at once
/// with a failure as the answer.
#[allow(clippy::too_many_arguments)]
fn suspend_route(
    core: &Core,
    now: Instant,
    msg: &Message<'_>,
    at: ReplyAt,
    key: Option<TransactionKey>,
    memo: Memo,
    rounds: u8,
    query: Query,
    out: &mut Vec<Outgoing>,
    touched: &mut Option<Touched>,
) {
    let Some(waiting) = &core.suspended else {
        return;
    };
    let failed = |mut memo: Memo, why: &str| {
        match &query {
            Query::Bindings { aor } => memo.bindings.push((aor.clone(), Err(StoreError::new(why)))),
            Query::Media(_) => memo.media.push(Err(why.to_string())),
            Query::Save { .. } => {}
        }
        memo
    };
    let (memo, why) = if rounds > suspend::MAX_ROUNDS {
        (memo, "the route asked too many questions")
    } else {
        let resume = match &query {
            Query::Bindings { aor } => Resume::Route { aor: aor.clone() },
            _ => Resume::MediaRoute,
        };
        let query = query.clone();
        let (source, socket, _) = at;
        let datagram = msg.buf().to_vec();
        match waiting.suspend(
            now,
            core.unix_time(now),
            key,
            datagram,
            source,
            socket,
            memo,
            resume,
            rounds,
            query,
        ) {
            Ok(_) => {
                if msg.method() == Some("INVITE") {
                    send_reply(msg, at, 100, None, b"", out);
                }
                return;
            }
            Err(memo) => (memo, "too many requests wait for another server"),
        }
    };
    let memo = failed(memo, why);
    on_request(
        core,
        now,
        msg,
        at.0,
        at.1,
        out,
        touched,
        Some((&memo, rounds)),
    );
}

/// `save` with a shared store: keep the REGISTER and ask the store to
/// apply it; with too many requests waiting, answer 500 at once.
fn suspend_save(
    core: &Core,
    now: Instant,
    msg: &Message<'_>,
    at: ReplyAt,
    key: Option<TransactionKey>,
    request: Box<RegisterRequest>,
    out: &mut Vec<Outgoing>,
) {
    let (Some(waiting), Some(registrar)) = (&core.suspended, &core.registrar) else {
        return;
    };
    let (source, socket, _) = at;
    let query = Query::Save {
        request: request.clone(),
    };
    let now_unix = core.unix_time(now);
    let resume = Resume::Save { request };
    let datagram = msg.buf().to_vec();
    let suspended = waiting.suspend(
        now,
        now_unix,
        key,
        datagram,
        source,
        socket,
        Memo::default(),
        resume,
        1,
        query,
    );
    if suspended.is_err() {
        let busy = StoreError::new("too many requests wait for the location store");
        let (code, reason, headers) = registrar.unavailable(busy, now_unix);
        send_reply(msg, at, code, reason, &headers, out);
    }
}

/// A request that could not be built for its next hop: 513 when too large
/// for UDP, 503 when we have no socket of the transport it asks for.
fn not_sent(
    msg: &Message<'_>,
    at: (SocketAddr, usize, crate::transport::Transport),
    hop: &NextHop,
    unsent: forward::Unsent,
    out: &mut Vec<Outgoing>,
) {
    let is_ack = msg.method() == Some("ACK");
    let code = match unsent {
        forward::Unsent::TooLarge => {
            metrics::dropped(DropReason::TooLarge);
            tracing::debug!(
                call_id = msg.call_id().unwrap_or(""),
                to = %hop,
                "request too large for a UDP datagram: not forwarded (513)"
            );
            513
        }
        forward::Unsent::NoSocket(transport) => {
            metrics::dropped(DropReason::NoRoute);
            crate::warn_limited!(
                call_id = msg.call_id().unwrap_or(""),
                to = %hop,
                "the next hop asks for {transport} and no {transport} socket is listed: not forwarded (503)"
            );
            503
        }
        forward::Unsent::Malformed => return,
    };
    if !is_ack {
        send_reply(msg, at, code, None, b"", out);
    }
}

/// `touched` gets the transaction shard the response went to, if any.
/// `replay`: the response waited for rtpengine after its stateless
/// `reply` route asked (see `suspend`), with what the route learned.
#[allow(clippy::too_many_arguments)]
fn on_response(
    core: &Core,
    now: Instant,
    msg: &Message<'_>,
    source: SocketAddr,
    socket: usize,
    out: &mut Vec<Outgoing>,
    touched: &mut Option<Touched>,
    replay: Option<(&Memo, u8)>,
) {
    let next = match msg.validate_response() {
        Ok(next) => next,
        Err(invalid) => {
            metrics::dropped(DropReason::Malformed);
            crate::warn_limited!(%source, "dropped malformed response: {}", invalid.reason);
            return;
        }
    };
    metrics::reply_received(msg.status().unwrap_or(0));
    let Some(top) = msg.top_via() else {
        return;
    };
    let ours = core.identity.is_us(top.host, top.port)
        && top.branch.is_some_and(|b| b.starts_with(OUR_PREFIX));
    if !ours {
        // §18.1.2: a response whose top Via is not ours is discarded.
        metrics::dropped(DropReason::NotOurs);
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            status = msg.status().unwrap_or(0),
            %source,
            via_host = top.host,
            "response whose top Via is not ours: dropped"
        );
        return;
    }
    if let Some(branch) = top.branch.filter(|b| b.starts_with(PROBE_PREFIX)) {
        // An answer to one of our health probes: consumed here.
        let status = msg.status().unwrap_or(0);
        let answered =
            super::lock(&core.probes).on_response(branch, status, source, &core.destinations);
        if !answered {
            tracing::debug!(%source, branch, "late or unknown probe answer: consumed");
        }
        return;
    }
    if let Some(branch) = top.branch.filter(|b| b.starts_with(KEEPALIVE_PREFIX)) {
        // An answer to a keep-alive of a phone behind NAT: consumed here.
        if let Some(k) = core.keepalives() {
            super::lock(k).on_response(&core.identity, branch, source);
        }
        return;
    }
    let upstream = next
        .as_ref()
        .and_then(|n| response_destination(n).and_then(|hop| hop.addr()));
    let branch = top.branch.unwrap_or("");
    // A shard we do not have (another instance's branch): any shard looks
    // it up in vain (the whole branch is compared), then its check decides.
    let shard = branch_shard(branch).map(|s| s % core.shards.len());
    let verdict = if let Some(shard) = shard {
        let (matched, t) = core.with_shard(shard, |s, env| {
            s.on_response(env, now, msg, branch, source, upstream, out)
        });
        match matched {
            ResponseMatch::Done => {
                *touched = Some(t);
                return;
            }
            // §16.7: no transaction (any more): forwarded statelessly.
            ResponseMatch::NoTransaction => StatelessCheck::Valid,
            ResponseMatch::Forged => StatelessCheck::Invalid,
        }
    } else {
        match upstream {
            Some(to) => check_stateless(branch, &core.identity, to),
            None => StatelessCheck::Invalid,
        }
    };
    if verdict != StatelessCheck::Valid {
        // A branch we did not make for that next hop: forged or altered
        // (or another instance's that the sibling link could not take).
        metrics::dropped(DropReason::ForgedBranch);
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            status = msg.status().unwrap_or(0),
            %source,
            branch,
            "response with a branch we did not make for its next Via: dropped"
        );
        return;
    }
    let Some(next) = next else {
        tracing::debug!(%source, "response to a request this proxy sent itself: consumed");
        return;
    };
    let mut cx = Ctx::for_reply(msg, None, source);
    cx.set_transport(core.identity.transport_of(socket))
        .set_nat(NatEnv {
            peer: None,
            identity: Some(&core.identity),
        });
    if let Some((memo, _)) = replay {
        cx.set_memo(memo);
    }
    let _ = core.routes.reply(&mut cx);
    core.tell_media(now, &mut cx.tells);
    if let Some(query) = cx.asked.take() {
        // rtpengine's SDP is needed first: the response waits.
        let mut next = replay.map(|(m, _)| m.clone()).unwrap_or_default();
        next.replay_until = cx.queries();
        drop(cx);
        let Some(waiting) = &core.suspended else {
            return;
        };
        let rounds = replay.map_or(0, |(_, r)| r) + 1;
        let resume = Resume::Reply { held: None };
        let suspended = if rounds > suspend::MAX_ROUNDS {
            Err(next)
        } else {
            waiting.suspend(
                now,
                core.unix_time(now),
                None,
                msg.buf().to_vec(),
                source,
                socket,
                next,
                resume,
                rounds,
                query,
            )
        };
        if let Err(mut memo) = suspended {
            memo.media
                .push(Err("too many messages wait for rtpengine".into()));
            on_response(
                core,
                now,
                msg,
                source,
                socket,
                out,
                touched,
                Some((&memo, rounds)),
            );
        }
        return;
    }
    let (decision, edits) = cx.finish();
    if matches!(decision, Decision::Drop) {
        metrics::dropped(DropReason::Route);
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            status = msg.status().unwrap_or(0),
            %source,
            "response dropped by the reply route"
        );
        return;
    }
    let Some(hop) = response_destination(&next) else {
        metrics::dropped(DropReason::NoVia);
        crate::warn_limited!(%source, "response with an unusable second Via: dropped");
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
    // §18.2.2: the response goes back over the transport of the request
    // (the next Via's), which need not be the one it was relayed over,
    // and from a socket of the address family of where it goes: a
    // request from IPv4 forwarded to IPv6 has our IPv6 socket in its Via.
    let transport = crate::transport::Transport::parse(next.transport)
        .unwrap_or_else(|| core.identity().transport_of(from_socket));
    let from_socket = core
        .identity()
        .sending_socket(from_socket, Some(transport), &hop)
        .unwrap_or(from_socket);
    let Some(bytes) = forward::response(msg, &edits, None) else {
        return;
    };
    tracing::debug!(
        call_id = msg.call_id().unwrap_or(""),
        status = msg.status().unwrap_or(0),
        %source,
        to = %hop,
        "response forwarded"
    );
    metrics::reply_forwarded();
    out.push(Outgoing {
        socket: from_socket,
        to: hop,
        bytes: Payload::Owned(bytes),
    });
}

/// Whether sending to `hop` would send to one of our own sockets (by
/// address, or by the name we advertise; a name that resolves to us is
/// caught by the network layer after resolution).
fn is_self(identity: &super::Identity, hop: &NextHop) -> bool {
    match hop {
        NextHop::Addr(addr) | NextHop::Found { addr, .. } | NextHop::Flow(addr) => {
            identity.is_own_socket(*addr)
        }
        NextHop::Name { host, port, .. } => identity.is_us(host, Some(*port)),
    }
}

/// Answer a request statelessly; drop with one log line when it has no Via
/// to answer to.
fn send_reply(
    msg: &Message<'_>,
    (source, socket, transport): (SocketAddr, usize, crate::transport::Transport),
    code: u16,
    reason: Option<&str>,
    headers: &[u8],
    out: &mut Vec<Outgoing>,
) {
    let mut bytes = Vec::with_capacity(512);
    match reply::build(msg, source, transport, code, reason, headers, &mut bytes) {
        Some(to) => {
            metrics::stateless_reply_sent(code);
            tracing::debug!(
                call_id = msg.call_id().unwrap_or(""),
                method = msg.method().unwrap_or(""),
                code,
                %source,
                %to,
                "stateless reply sent"
            );
            out.push(Outgoing {
                socket,
                to: NextHop::Addr(to),
                bytes: Payload::Owned(bytes),
            })
        }
        None => {
            metrics::dropped(DropReason::NoVia);
            crate::warn_limited!(%source, code, "request without a usable Via: dropped instead of answering {code}")
        }
    }
}
