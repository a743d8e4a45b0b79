//! The transaction-stateful proxy (RFC 3261 §16 on top of the §17
//! transactions, RFC 6026): what `relay` does.
//!
//! One [`ProxyTxn`] per relayed request: a server transaction towards the
//! caller and one client transaction per branch (serial forking through the
//! `failure` route). Responses find their branch through the ids carried in
//! our Via branch (`z9hG4bKsfT<index>.<generation>.<branch>.<instance>.<loop
//! key><check>`, see `branch`), so no second index is needed. 1xx (but 100) and 2xx go up at once; final responses
//! of 300 and more are held and the best one (§16.7) goes up once every branch has
//! ended, after the `failure` route had its chance to relay again. The
//! caller's ACK for a non-2xx is absorbed and the downstream hop gets its
//! own; CANCEL is answered at once and sent down each branch that has seen
//! a provisional response.
//!
//! Bounds (so no request makes endless work): a transaction never sends to
//! a next hop + Request-URI it already tried, makes at most `max_branches`
//! branches, and Timer C, started with the first branch, bounds it whole:
//! once it fires no new branch is made. A response to a branch must carry
//! the branch's keyed check and, with `strict_response_source`, come from
//! the address the branch was sent to.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::branch::{STATEFUL_CHECK_HEX, STATEFUL_LOOP_HEX, push_hex, stateful_check};
use super::destinations::{Destinations, Pick, Report, TargetId};
use super::fork_media::{self, ForkMedia};
use super::identity::Identity;
use super::received::{reply_destination, top_via_edit};
use super::route_set::{self, RouteSet};
use super::suspend::HeldReply;
use super::{Capacity, Outgoing, Payload, forward, reply};
use crate::api::{RelayTo, Routes, Target};
use crate::ctx::{BranchTarget, Ctx, Decision, Edits};
use crate::metrics::{self, BranchRefusal, DropReason};
use crate::sip::{HeaderName, Message};
use crate::target::NextHop;
use crate::transaction::{
    Action, ClientInvite, ClientNonInvite, ClientNonInviteState, Machine, RequestKeyFields,
    ServerInvite, ServerNonInvite, Timers, TransactionId, TransactionKey, TransactionTable,
    has_magic_cookie,
};
use crate::transport::Transport;

/// Branch prefix of stateful branches (stateless ones are hex after `sf`).
pub const STATEFUL_PREFIX: &str = "z9hG4bKsfT";

/// Most shards a core may have (the shard number is in our branches).
pub const MAX_SHARDS: usize = 4096;

/// Timer C (§16.6 step 11): longer than three minutes.
const TIMER_C: Duration = Duration::from_secs(181);

/// Everything the stateful path needs besides the transaction table.
pub struct Env<'a> {
    pub routes: &'static dyn Routes,
    pub identity: &'a Identity,
    pub timers: Timers,
    /// Destination sets: balancing and health.
    pub destinations: &'a Destinations,
    /// Most branches per transaction (`max_branches`).
    pub max_branches: usize,
    /// Responses to a branch sent to an address must come from it.
    pub strict_response_source: bool,
    /// The bound on transactions, across shards.
    pub capacity: &'a Capacity,
    /// What next hop names resolved to, when known (see `Core::set_name_check`).
    pub names: Option<&'a super::NameCheck>,
    /// The RFC 3263 targets of names, when known (see `Core::set_name_targets`).
    pub name_targets: Option<&'a super::NameTargets>,
    /// Where a response whose `reply` route asked rtpengine waits (None:
    /// the core asks nobody), and an instant with its wall-clock second.
    pub suspended: Option<&'a super::suspend::Suspended>,
    pub wall_clock: (Instant, u64),
}

impl<'a> Env<'a> {
    /// The environment of one call into the stateful core; the bounds come
    /// from the routes' settings.
    pub fn new(
        routes: &'static dyn Routes,
        identity: &'a Identity,
        timers: Timers,
        destinations: &'a Destinations,
        capacity: &'a Capacity,
        names: Option<&'a super::NameCheck>,
        name_targets: Option<&'a super::NameTargets>,
    ) -> Env<'a> {
        let settings = routes.settings();
        Env {
            routes,
            identity,
            timers,
            destinations,
            capacity,
            names,
            name_targets,
            max_branches: settings.max_branches as usize,
            strict_response_source: settings.strict_response_source,
            suspended: None,
            wall_clock: (Instant::now(), 0),
        }
    }
}

impl Env<'_> {
    /// The wall-clock second at `now`.
    pub(super) fn unix_time(&self, now: Instant) -> u64 {
        let (at, secs) = self.wall_clock;
        match now.checked_duration_since(at) {
            Some(d) => secs + d.as_secs(),
            None => secs.saturating_sub(at.duration_since(now).as_secs()),
        }
    }
}

/// The transaction table and its scratch space.
pub struct Stateful {
    table: TransactionTable<ProxyTxn>,
    actions: Vec<Action>,
    /// This shard's number, written into its branches.
    shard: u16,
}

enum Server {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

enum Client {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
    /// A fork of an INVITE not sent yet: it waits for its own rtpengine
    /// offer (see [`fork_media`]).
    Unsent(fork_media::Unsent),
}

/// A final response a branch ended with, held until the best one is chosen.
struct Held {
    status: u16,
    /// The response to send upstream (our Via popped, reply route applied);
    /// None when the proxy made the status up (408 on timeout).
    bytes: Option<Vec<u8>>,
}

struct Branch {
    id: String,
    to: NextHop,
    /// The socket the branch went out on (its transport and address).
    socket: usize,
    /// When the next hop was a name: what to try next if this branch
    /// times out or gets 503 (RFC 3263 §4.3).
    srv: Option<Box<SrvNext>>,
    /// Hash of the next hop and Request-URI: a transaction never sends to
    /// the same one twice.
    target: u64,
    /// The destination set target this branch went to (`relay: SET`).
    dest: Option<TargetId>,
    client: Client,
    provisional: bool,
    cancel_pending: bool,
    /// The CANCEL sent down this branch (boxed: few branches have one).
    cancel: Option<Box<ClientNonInvite>>,
    /// 64*T1 after a CANCEL went down this branch: if the INVITE has no
    /// final response by then, the branch is given up as if it had got a
    /// 487 (§9.1), so the caller gets a final response and the transaction
    /// ends even when the callee never answers.
    give_up_at: Option<Instant>,
    /// `give_up_at` passed without a final response: the branch's client
    /// transaction is no longer waited for.
    given_up: bool,
    held: Option<Held>,
    /// A response of this branch waits for rtpengine (its ask): other
    /// responses of the branch wait behind it (dropped; the UAS
    /// retransmits final ones).
    waiting: Option<super::suspend::AskId>,
    /// The via-branch rtpengine knows this fork's media by (its offer
    /// named it), for the `reply` route's `rtp_manage`.
    media_via: Option<String>,
}

/// The name a branch's next hop came from and the target to try next.
#[derive(Debug, Clone)]
struct SrvNext {
    host: String,
    port: Option<u16>,
    transport: Option<Transport>,
    /// Index of the next target in the name's list.
    next: usize,
    /// The branch's Request-URI edit (kept for the retry).
    ruri: Option<String>,
}

/// One relayed request: the server side and its branches.
pub struct ProxyTxn {
    request: Arc<[u8]>,
    source: SocketAddr,
    socket: usize,
    /// The transport of `socket`: over a connection, responses go back on it.
    transport: Transport,
    /// Groups of a fork not tried yet (`lookup` with several q-values):
    /// the next starts when every branch of the last one failed.
    groups: Vec<Vec<BranchTarget>>,
    upstream: SocketAddr,
    server: Server,
    branches: Vec<Branch>,
    /// The request route's edits, applied again to branches made later
    /// (by the failure route, the next fork group or an SRV retry). Kept
    /// only when the transaction may make such branches (see
    /// [`keeps_edits`]): most relays never do, and the transaction is
    /// smaller without them.
    saved: Option<Box<Edits>>,
    /// The request came from another instance of the pool
    /// ([`Edits::pool_hop`]): no reply or failure route runs on it.
    pool_hop: bool,
    timer_c: Option<Instant>,
    final_sent: bool,
    cancelled: bool,
    /// A non-INVITE whose branches all timed out: nothing goes upstream
    /// (RFC 4320) and the server side is given up.
    abandoned: bool,
    /// `relay: SET` found every target of the set down before any branch
    /// was made: the transaction ends with 503 (after the failure route).
    unavailable: bool,
    /// The request's loop key (`branch::loop_key`), carried into the branches.
    loop_key: u32,
    /// Timer C fired: no new branch.
    timer_c_fired: bool,
    /// A branch could not be sent: the request is too large for UDP (513).
    too_large: bool,
    /// A branch was not made because its next hop is this proxy (482).
    self_loop: bool,
    /// The table shard the transaction lives in, written into its branches.
    shard: u16,
}

impl Machine for ProxyTxn {
    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.timer_c;
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n: Instant| n.min(d)));
            }
        };
        if !self.abandoned {
            consider(self.server.machine().next_deadline());
        }
        for b in &self.branches {
            consider(b.client.machine().next_deadline());
            if let Some(c) = &b.cancel {
                consider(c.next_deadline());
            }
            if b.held.is_none() {
                consider(b.give_up_at);
            }
        }
        next
    }

    fn retransmit_deadline(&self) -> Option<Instant> {
        let server = (!self.abandoned)
            .then(|| self.server.machine().retransmit_deadline())
            .flatten();
        let branches = self.branches.iter().flat_map(|b| {
            let cancel = b.cancel.as_ref().and_then(|c| c.retransmit_deadline());
            [b.client.machine().retransmit_deadline(), cancel]
        });
        server.into_iter().chain(branches.flatten()).min()
    }

    /// The core drives the parts itself (see [`Stateful::on_timeout`]).
    fn on_timeout(&mut self, _now: Instant, _out: &mut Vec<Action>) {}

    fn is_terminated(&self) -> bool {
        (self.abandoned || self.server.machine().is_terminated())
            && self.branches.iter().all(|b| {
                (b.client.machine().is_terminated() || b.given_up)
                    && b.cancel.as_ref().is_none_or(|c| c.is_terminated())
            })
    }
}

impl Server {
    fn machine(&self) -> &dyn Machine {
        match self {
            Server::Invite(m) => m,
            Server::NonInvite(m) => m,
        }
    }

    fn send_response(&mut self, now: Instant, status: u16, bytes: Vec<u8>, out: &mut Vec<Action>) {
        match self {
            Server::Invite(m) => m.send_response(now, status, bytes, out),
            Server::NonInvite(m) => m.send_response(now, status, bytes, out),
        }
    }
}

impl Client {
    fn machine(&self) -> &dyn Machine {
        match self {
            Client::Invite(m) => m,
            Client::NonInvite(m) => m,
            Client::Unsent(m) => m,
        }
    }

    fn machine_mut(&mut self) -> &mut dyn Machine {
        match self {
            Client::Invite(m) => m,
            Client::NonInvite(m) => m,
            Client::Unsent(m) => m,
        }
    }

    fn request(&self) -> &Arc<[u8]> {
        match self {
            Client::Invite(m) => m.request(),
            Client::NonInvite(m) => m.request(),
            Client::Unsent(m) => m.request(),
        }
    }
}

/// The server transaction key of a request.
pub fn server_key(msg: &Message<'_>) -> Option<TransactionKey> {
    let via = msg.top_via()?;
    // RFC 3261 branches need only the Via and the method: no To/From parse.
    if let Some(branch) = via.branch.filter(|b| has_magic_cookie(b)) {
        return Some(TransactionKey::server_rfc3261(
            branch,
            via.host,
            via.port,
            msg.method()?,
        ));
    }
    let (cseq, _) = msg.cseq()?;
    let fields = RequestKeyFields {
        method: msg.method()?,
        branch: via.branch,
        sent_by_host: via.host,
        sent_by_port: via.port,
        request_uri: msg.request_uri()?,
        to_tag: msg.to().and_then(|t| t.tag),
        from_tag: msg.from().and_then(|f| f.tag),
        call_id: msg.call_id()?,
        cseq,
        top_via: msg
            .buf()
            .get(via.range.clone())
            .and_then(|b| std::str::from_utf8(b).ok())?,
    };
    Some(TransactionKey::server(&fields))
}

/// What `Stateful::on_request` did with a request.
pub enum Matched {
    /// Part of an existing transaction (retransmission, ACK, CANCEL): done.
    Absorbed,
    /// Not part of a transaction: run the request route.
    New,
}

impl Stateful {
    pub fn new(capacity: usize, timers: Timers, shard: u16) -> Stateful {
        Stateful {
            shard,
            // Timeouts fire up to 2*T1 (1 s) late: under 4% of the 64*T1
            // waits (B, F, H, J, L, M, D), 1 s more absorbing of
            // retransmissions after Timer K or I (T4).
            table: TransactionTable::new(capacity).with_timeout_slack(timers.t1 * 2),
            actions: Vec::with_capacity(8),
        }
    }

    /// Transactions that have not sent their final response yet.
    pub fn pending(&self) -> usize {
        self.table
            .values()
            .filter(|t| !t.final_sent && !t.abandoned)
            .count()
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.table.next_deadline()
    }

    /// Match a request against the server transactions: retransmissions
    /// are answered by their transaction, a non-2xx ACK is absorbed, a
    /// CANCEL of a pending INVITE is answered and sent down the branches.
    pub fn on_request(
        &mut self,
        env: &Env<'_>,
        now: Instant,
        msg: &Message<'_>,
        key: &TransactionKey,
        source: SocketAddr,
        out: &mut Vec<Outgoing>,
    ) -> Matched {
        if self.table.is_empty() {
            return Matched::New;
        }
        let method = msg.method().unwrap_or("");
        if method == "CANCEL" {
            let Some(id) = key.invite_key().and_then(|k| self.table.find(&k)) else {
                return Matched::New;
            };
            self.on_cancel(env, now, id, msg, source, out);
            return Matched::Absorbed;
        }
        let Some(id) = self.table.find(key) else {
            return Matched::New;
        };
        let actions = &mut self.actions;
        let timers = env.timers;
        let pass_on = self
            .table
            .update(id, |txn| {
                actions.clear();
                match (&mut txn.server, method) {
                    (Server::Invite(s), "ACK") => s.on_ack(now, actions),
                    (Server::Invite(s), _) => s.on_request_retransmission(now, actions),
                    (Server::NonInvite(s), _) => s.on_request_retransmission(now, actions),
                }
                let _ = timers;
                let mut pass_on = false;
                for action in actions.drain(..) {
                    match action {
                        Action::Transmit(bytes) => out.push(Outgoing {
                            socket: txn.socket,
                            to: NextHop::Addr(txn.upstream),
                            bytes: Payload::Shared(bytes),
                        }),
                        Action::DeliverAck => pass_on = true,
                        _ => {}
                    }
                }
                pass_on
            })
            .unwrap_or(true);
        if pass_on {
            Matched::New
        } else {
            if method != "ACK" {
                metrics::retransmission_received();
            }
            tracing::debug!(
                call_id = msg.call_id().unwrap_or(""),
                method,
                %source,
                "absorbed by its transaction"
            );
            Matched::Absorbed
        }
    }

    /// The branch `branch` was sent to a name before it was looked up,
    /// and the name's first target is over `transport` (see
    /// `Core::retarget`): the branch moves to a socket of `transport`,
    /// its request rebuilt for it and its client transaction started
    /// again there (nothing was sent from the old socket). Nothing when
    /// the branch is gone, has been answered, already uses `transport`,
    /// or there is no such socket.
    pub fn retarget(
        &mut self,
        env: &Env<'_>,
        now: Instant,
        branch: &str,
        transport: Transport,
        out: &mut Vec<Outgoing>,
    ) {
        let Some(parts) = parse_branch(branch) else {
            return;
        };
        let actions = &mut self.actions;
        self.table.update(parts.id, |txn| {
            let arrival = txn.socket;
            let Some(b) = txn.branches.get_mut(parts.n).filter(|b| b.id == branch) else {
                return;
            };
            if b.provisional
                || b.held.is_some()
                || b.cancel.is_some()
                || env.identity.transport_of(b.socket) == transport
            {
                return;
            }
            let Some(socket) = env.identity.sending_socket(arrival, Some(transport), &b.to)
            else {
                return;
            };
            let Some(bytes) = forward::move_request(
                env.identity,
                b.client.request(),
                b.socket,
                socket,
                Some(arrival),
            ) else {
                return;
            };
            tracing::debug!(
                branch,
                to = %b.to,
                %transport,
                "relay: the next hop name's first target is over another transport; the branch leaves from a socket of it"
            );
            actions.clear();
            // Over a stream the transport retransmits, not the transaction.
            let reliable = transport.is_stream();
            b.client = match b.client {
                Client::Invite(_) => {
                    Client::Invite(ClientInvite::new(now, env.timers, reliable, bytes, actions))
                }
                Client::NonInvite(_) => Client::NonInvite(ClientNonInvite::new(
                    now,
                    env.timers,
                    reliable,
                    bytes,
                    actions,
                )),
                // Waiting for its offer: it leaves from the new socket.
                Client::Unsent(_) => Client::Unsent(fork_media::Unsent::new(bytes.to_vec())),
            };
            b.socket = socket;
            transmit(actions, socket, &b.to, out);
        });
    }

    /// `relay` in the request route: make the transaction and its first branch.
    #[allow(clippy::too_many_arguments)]
    pub fn relay(
        &mut self,
        env: &Env<'_>,
        now: Instant,
        msg: &Message<'_>,
        source: SocketAddr,
        socket: usize,
        routes: &RouteSet<'_>,
        key: TransactionKey,
        loop_key: u32,
        to: RelayTo,
        edits: Edits,
        out: &mut Vec<Outgoing>,
    ) {
        let Some(top) = msg.top_via() else {
            return;
        };
        let call_id = msg.call_id().unwrap_or("");
        if env.capacity.is_full() || self.table.is_full() {
            crate::warn_limited!(
                call_id,
                capacity = env.capacity.max(),
                "transaction table full: 503 with Retry-After"
            );
            metrics::transaction_rejected();
            let transport = env.identity.transport_of(socket);
            let to = (source, socket, transport);
            reply_upstream_stateless(msg, to, 503, b"Retry-After: 5\r\n", out);
            return;
        }
        let is_invite = msg.method() == Some("INVITE");
        let transport = env.identity.transport_of(socket);
        let upstream = reply_destination(&top, source, transport);
        self.actions.clear();
        let server = if is_invite {
            let mut server = ServerInvite::new(now, env.timers, transport.is_stream());
            let mut trying = Vec::with_capacity(256);
            if reply::build(msg, source, transport, 100, None, b"", &mut trying).is_some() {
                server.send_response(now, 100, trying, &mut self.actions);
            }
            Server::Invite(server)
        } else {
            Server::NonInvite(ServerNonInvite::new(now, env.timers, transport.is_stream()))
        };
        transmit(&mut self.actions, socket, &NextHop::Addr(upstream), out);
        let mut saved = edits;
        let pool_hop = saved.pool_hop;
        let txn = ProxyTxn {
            request: Arc::from(&msg.buf()[..msg.len()]),
            source,
            socket,
            transport,
            groups: Vec::new(),
            upstream,
            server,
            branches: Vec::with_capacity(1),
            saved: None,
            pool_hop,
            timer_c: None,
            final_sent: false,
            cancelled: false,
            abandoned: false,
            unavailable: false,
            loop_key,
            timer_c_fired: false,
            too_large: false,
            self_loop: false,
            shard: self.shard,
        };
        let id = match self.table.insert(key, txn) {
            Ok(id) => id,
            Err(e) => {
                crate::warn_limited!(call_id, "transaction not created: {e}");
                return;
            }
        };
        metrics::relayed();
        let actions = &mut self.actions;
        // The stored request holds the same bytes as `msg`: no second parse.
        let request = Request { msg, routes };
        self.table.update(id, |txn| {
            relay_to(env, now, id, txn, request, to, &saved, actions, out);
            if keeps_edits(env, txn, &saved) {
                // Later branches take their next hop from their own target.
                saved.du = None;
                saved.fork = Vec::new();
                txn.saved = Some(Box::new(saved));
            }
            maybe_complete(env, now, id, txn, actions, out);
        });
    }

    /// A response whose top Via carries a stateful branch (`branch`) of
    /// ours, from `source`; `upstream` is where its next Via sends it.
    #[allow(clippy::too_many_arguments)]
    pub fn on_response(
        &mut self,
        env: &Env<'_>,
        now: Instant,
        msg: &Message<'_>,
        branch: &str,
        source: SocketAddr,
        upstream: Option<SocketAddr>,
        out: &mut Vec<Outgoing>,
    ) -> ResponseMatch {
        let Some(parts) = parse_branch(branch) else {
            return ResponseMatch::Forged;
        };
        let (id, index) = (parts.id, parts.n);
        let sent_to = self
            .table
            .get(id)
            .and_then(|t| t.branches.get(index))
            .filter(|b| b.id == branch)
            .map(|b| b.to.clone());
        match sent_to {
            None => {
                // No transaction has it (any more). A branch we made for
                // the transaction whose responses go to `upstream` is
                // forwarded statelessly (§16.7); anything else is forged.
                // (Made by this process or, with a shared secret, by another
                // instance of the pool whose transaction we cannot see.)
                let (index, generation) = id.to_parts();
                let ours = upstream.is_some_and(|up| {
                    stateful_check(env.identity, parts.shard, index, generation, parts.n, up)
                        == parts.check
                });
                return if ours {
                    ResponseMatch::NoTransaction
                } else {
                    ResponseMatch::Forged
                };
            }
            Some(NextHop::Name { host, .. })
                if env.strict_response_source
                    && env.names.is_some_and(|known| !known(&host, source)) =>
            {
                metrics::dropped(DropReason::WrongSource);
                tracing::debug!(
                    call_id = msg.call_id().unwrap_or(""),
                    status = msg.status().unwrap_or(0),
                    %source,
                    sent_to = %host,
                    "response to a branch from an address its next hop name did not resolve to: dropped"
                );
                return ResponseMatch::Done;
            }
            Some(NextHop::Addr(to) | NextHop::Found { addr: to, .. } | NextHop::Flow(to))
                if env.strict_response_source && to != source =>
            {
                metrics::dropped(DropReason::WrongSource);
                tracing::debug!(
                    call_id = msg.call_id().unwrap_or(""),
                    status = msg.status().unwrap_or(0),
                    %source,
                    sent_to = %to,
                    "response to a branch from another address than the branch was sent to: dropped"
                );
                return ResponseMatch::Done;
            }
            Some(_) => {}
        }
        let status = msg.status().unwrap_or(0);
        let is_cancel = msg.cseq().is_some_and(|(_, m)| m == "CANCEL");
        let actions = &mut self.actions;
        self.table.update(id, |txn| {
            actions.clear();
            let Some(b) = txn.branches.get_mut(index) else {
                return;
            };
            if is_cancel {
                if let Some(cancel) = &mut b.cancel {
                    cancel.on_response(now, status, actions);
                }
                return;
            }
            match &mut b.client {
                Client::Invite(c) => c.on_response(now, status, actions),
                Client::NonInvite(c) => c.on_response(now, status, actions),
                // Nothing was sent down this fork yet.
                Client::Unsent(_) => return,
            }
            let mut pending: Vec<Action> = std::mem::take(actions);
            for action in pending.drain(..) {
                match action {
                    Action::Transmit(bytes) => {
                        let to = txn.branches[index].to.clone();
                        out.push(Outgoing {
                            socket: txn.branches[index].socket,
                            to,
                            bytes: Payload::Shared(bytes),
                        });
                    }
                    Action::BuildAck { .. } => {
                        let b = &mut txn.branches[index];
                        if let Some(ack) = build_ack(b.client.request(), msg)
                            && let Client::Invite(c) = &mut b.client
                        {
                            c.send_ack(now, ack, actions);
                            transmit(actions, b.socket, &b.to, out);
                        }
                    }
                    Action::DeliverResponse { status } => {
                        deliver(env, now, id, txn, index, msg, source, status, actions, out);
                    }
                    _ => {}
                }
            }
            release_settled_request(txn);
        });
        ResponseMatch::Done
    }

    /// rtpengine answered for the response of branch `index` of
    /// transaction `id` that waits (`ask`): it goes on, its `reply` route
    /// running again with `memo`. Nothing when the transaction or the
    /// wait is gone.
    #[allow(clippy::too_many_arguments)]
    pub fn resume_reply(
        &mut self,
        env: &Env<'_>,
        now: Instant,
        ask: super::suspend::AskId,
        held: super::suspend::HeldReply,
        msg: &Message<'_>,
        source: SocketAddr,
        memo: &super::suspend::Memo,
        out: &mut Vec<Outgoing>,
    ) {
        let status = msg.status().unwrap_or(0);
        let actions = &mut self.actions;
        let super::suspend::HeldReply { id, index } = held;
        self.table.update(id, |txn| {
            let Some(b) = txn.branches.get_mut(index) else {
                return;
            };
            if b.waiting != Some(ask) {
                return;
            }
            b.waiting = None;
            actions.clear();
            deliver_with(
                env,
                now,
                id,
                txn,
                index,
                msg,
                source,
                status,
                actions,
                out,
                Some(memo),
            );
        });
    }

    /// rtpengine answered the offer of fork `held` (its ask `ask`): the
    /// fork is sent, with its own SDP or, when there is none, the first
    /// fork's. Nothing when the fork ended meanwhile (a CANCEL, a 2xx or
    /// 6xx of another fork, Timer C).
    #[allow(clippy::too_many_arguments)]
    pub fn resume_fork(
        &mut self,
        env: &Env<'_>,
        now: Instant,
        ask: super::suspend::AskId,
        held: HeldReply,
        answer: Result<Vec<u8>, String>,
        out: &mut Vec<Outgoing>,
    ) {
        let actions = &mut self.actions;
        let HeldReply { id, index } = held;
        self.table.update(id, |txn| {
            let shared_via = txn
                .saved
                .as_ref()
                .and_then(|s| s.media_offer.as_ref())
                .and_then(|o| o.via_branch.clone());
            let Some(b) = txn.branches.get_mut(index) else {
                return;
            };
            if b.waiting != Some(ask) {
                return;
            }
            b.waiting = None;
            let Client::Unsent(unsent) = &b.client else {
                return;
            };
            if b.held.is_some() {
                return;
            }
            if answer.is_err() {
                b.media_via = shared_via;
            }
            let bytes = fork_media::with_own_sdp(unsent.request(), answer);
            actions.clear();
            let reliable = env.identity.transport_of(b.socket).is_stream();
            b.client = Client::Invite(ClientInvite::new(now, env.timers, reliable, bytes, actions));
            transmit(actions, b.socket, &b.to, out);
        });
    }

    fn on_cancel(
        &mut self,
        env: &Env<'_>,
        now: Instant,
        id: TransactionId,
        cancel: &Message<'_>,
        source: SocketAddr,
        out: &mut Vec<Outgoing>,
    ) {
        let actions = &mut self.actions;
        self.table.update(id, |txn| {
            // §16.10: the CANCEL is answered at once.
            let to = (source, txn.socket, txn.transport);
            reply_upstream_stateless(cancel, to, 200, b"", out);
            if txn.final_sent || txn.cancelled {
                return;
            }
            txn.cancelled = true;
            txn.groups.clear();
            cancel_branches(env, now, txn, None, actions, out);
            // Forks that were never sent ended at once.
            maybe_complete(env, now, id, txn, actions, out);
            tracing::debug!(
                call_id = cancel.call_id().unwrap_or(""),
                "CANCEL sent down the pending branches"
            );
        });
    }

    /// Fire every timer due at `now`.
    pub fn on_timeout(&mut self, env: &Env<'_>, now: Instant, out: &mut Vec<Outgoing>) {
        let mut actions = std::mem::take(&mut self.actions);
        self.table.expire(now, |id, _key, txn, _| {
            on_timer(env, now, id, txn, &mut actions, out);
        });
        self.actions = actions;
    }
}

/// Whether a new transaction keeps the request route's edits: only when
/// it may make branches after the first ones (a failure route, fork groups
/// still to try, a branch to a name whose next target may be tried) or
/// must make the media offer again for each fork.
fn keeps_edits(env: &Env<'_>, txn: &ProxyTxn, edits: &Edits) -> bool {
    env.routes.has_failure()
        || !txn.groups.is_empty()
        || edits.media_offer.is_some()
        || txn.branches.iter().any(|b| b.srv.is_some())
}

/// A copy of the saved edits for a new branch (none saved: no edits).
fn saved_edits(txn: &ProxyTxn) -> Edits {
    txn.saved.as_deref().map(clone_edits).unwrap_or_default()
}

fn clone_edits(e: &Edits) -> Edits {
    Edits {
        appended: e.appended.clone(),
        removed: e.removed.clone(),
        removed_lines: e.removed_lines.clone(),
        ruri: e.ruri.clone(),
        du: e.du.clone(),
        record_route: e.record_route,
        ds: e.ds,
        fork: Vec::new(),
        contact: e.contact.clone(),
        body: e.body.clone(),
        media_offer: e.media_offer.clone(),
        pool_hop: e.pool_hop,
    }
}

/// What became of a response carrying a stateful branch of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMatch {
    /// Handled by its transaction (or dropped for its source address).
    Done,
    /// A branch this process made, whose transaction is gone: the response
    /// is forwarded statelessly (§16.7).
    NoTransaction,
    /// Not a branch this process made (forged, altered, or another
    /// instance's that reached us): dropped.
    Forged,
}

/// Our stateful branch for branch number `n` of transaction `id`: the
/// instance tag, the request's loop key and the keyed check (bound to the
/// upstream address) end it.
fn make_branch(
    identity: &Identity,
    shard: u16,
    id: TransactionId,
    n: usize,
    upstream: SocketAddr,
    loop_key: u32,
) -> String {
    let (index, generation) = id.to_parts();
    let instance = identity.instance();
    let check = stateful_check(identity, shard, index, generation, n, upstream);
    let mut s = String::with_capacity(64);
    // As `{:x}` writes them, without the formatter.
    s.push_str(STATEFUL_PREFIX);
    for v in [
        u64::from(shard),
        u64::from(index),
        u64::from(generation),
        n as u64,
        u64::from(instance),
    ] {
        push_hex(&mut s, v, hex_digits(v));
        s.push('.');
    }
    push_hex(&mut s, u64::from(loop_key), STATEFUL_LOOP_HEX);
    push_hex(&mut s, check, STATEFUL_CHECK_HEX);
    s
}

/// Hex digits of `v` without leading zeros (one for zero).
fn hex_digits(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).div_ceil(4).max(1)
}

/// The shard a stateful branch of ours names (None if it is not one).
pub fn branch_shard(branch: &str) -> Option<usize> {
    parse_branch(branch).map(|p| usize::from(p.shard))
}

/// The parts of a stateful branch.
#[derive(Debug, PartialEq, Eq)]
struct BranchParts {
    shard: u16,
    id: TransactionId,
    n: usize,
    #[cfg_attr(not(test), allow(dead_code))]
    instance: u32,
    check: u64,
}

/// The parts of one of our stateful branches (whether we made it is
/// checked by comparing it with the branch stored, or its check).
fn parse_branch(branch: &str) -> Option<BranchParts> {
    use super::branch::parse_hex;
    let rest = branch.strip_prefix(STATEFUL_PREFIX)?;
    // Split on bytes and hex digits read by hand: this runs for every
    // response (from_str_radix and the str pattern searcher cost ~1k
    // instructions per branch).
    let mut parts = rest.as_bytes().split(|&b| b == b'.');
    let shard = parse_hex(parts.next()?, u64::from(u16::MAX))? as u16;
    let index = parse_hex(parts.next()?, u64::from(u32::MAX))? as u32;
    let generation = parse_hex(parts.next()?, u64::from(u32::MAX))? as u32;
    let n = parse_hex(parts.next()?, usize::MAX as u64)? as usize;
    let instance = parse_hex(parts.next()?, u64::from(u32::MAX))? as u32;
    let tail = parts.next()?;
    if parts.next().is_some() || tail.len() != STATEFUL_LOOP_HEX + STATEFUL_CHECK_HEX {
        return None;
    }
    let check = parse_hex(tail.get(STATEFUL_LOOP_HEX..)?, u64::MAX)?;
    Some(BranchParts {
        shard,
        id: TransactionId::from_parts(index, generation),
        n,
        instance,
        check,
    })
}

/// The request a branch is made for (the received one, or the stored copy
/// in `failure`) and its Route processing (§16.4).
#[derive(Clone, Copy)]
struct Request<'r, 'm> {
    msg: &'r Message<'m>,
    routes: &'r RouteSet<'m>,
}

/// `relay`: one branch towards `to`, or a fork (`relay: [..]`, or the
/// contacts `lookup` found): the first group's branches at once, the
/// other groups kept for when they all fail. True when a branch started.
#[allow(clippy::too_many_arguments)]
fn relay_to(
    env: &Env<'_>,
    now: Instant,
    id: TransactionId,
    txn: &mut ProxyTxn,
    request: Request<'_, '_>,
    to: RelayTo,
    edits: &Edits,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) -> bool {
    let groups = match to {
        RelayTo::List(targets) => vec![
            targets
                .iter()
                .map(|t| BranchTarget {
                    ruri: t.as_str().to_string(),
                    du: None,
                    route: Vec::new(),
                })
                .collect(),
        ],
        RelayTo::Default if !edits.fork.is_empty() => edits.fork.clone(),
        _ => return add_branch(env, now, id, txn, request, to, edits, None, actions, out),
    };
    txn.groups = groups;
    start_group(env, now, id, txn, request, edits, actions, out)
}

/// Start the next group of the fork that has a branch that can start.
#[allow(clippy::too_many_arguments)]
fn start_group(
    env: &Env<'_>,
    now: Instant,
    id: TransactionId,
    txn: &mut ProxyTxn,
    request: Request<'_, '_>,
    edits: &Edits,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) -> bool {
    while !txn.groups.is_empty() {
        let group = txn.groups.remove(0);
        let mut started = false;
        for target in group {
            let mut branch_edits = clone_edits(edits);
            // A Path (RFC 3327) is the route to the contact: its first
            // entry is the next hop unless a NAT binding says otherwise.
            branch_edits.du = target
                .du
                .or_else(|| target.route.first().map(|r| route_uri(r).to_string()));
            for route in &target.route {
                branch_edits.appended.extend_from_slice(b"Route: ");
                branch_edits.appended.extend_from_slice(route.as_bytes());
                branch_edits.appended.extend_from_slice(b"\r\n");
            }
            branch_edits.ruri = Some(target.ruri);
            started |= add_branch(
                env,
                now,
                id,
                txn,
                request,
                RelayTo::Default,
                &branch_edits,
                None,
                actions,
                out,
            );
        }
        if started {
            return true;
        }
    }
    false
}

/// The next group of a fork, when every branch of the last one failed.
fn next_group(
    env: &Env<'_>,
    now: Instant,
    id: TransactionId,
    txn: &mut ProxyTxn,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) -> bool {
    let request = Arc::clone(&txn.request);
    let Ok(stored) = Message::parse(&request) else {
        return false;
    };
    let routes = route_set::process(&stored, env.identity);
    let request = Request {
        msg: &stored,
        routes: &routes,
    };
    let edits = saved_edits(txn);
    start_group(env, now, id, txn, request, &edits, actions, out)
}

/// RFC 3263 §4.3: a branch to a name that timed out or got 503 is tried
/// again on the name's next target, before the failure route runs. True
/// when such a branch started.
fn next_target(
    env: &Env<'_>,
    now: Instant,
    id: TransactionId,
    txn: &mut ProxyTxn,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) -> bool {
    let Some(lookup) = env.name_targets else {
        return false;
    };
    let retry = |b: &Branch| {
        b.srv.is_some()
            && b.held
                .as_ref()
                .is_some_and(|h| matches!(h.status, 408 | 503))
    };
    // Parse the stored request only when some branch can be retried.
    if !txn.branches.iter().any(retry) {
        return false;
    }
    let request = Arc::clone(&txn.request);
    let Ok(stored) = Message::parse(&request) else {
        return false;
    };
    let routes = route_set::process(&stored, env.identity);
    let request = Request {
        msg: &stored,
        routes: &routes,
    };
    for index in 0..txn.branches.len() {
        if !retry(&txn.branches[index]) {
            continue;
        }
        let Some(srv) = txn.branches[index].srv.take() else {
            continue;
        };
        let Some(targets) = lookup(&srv.host, srv.port, srv.transport) else {
            continue;
        };
        for (i, target) in targets.iter().enumerate().skip(srv.next) {
            let mut edits = saved_edits(txn);
            edits.ruri = srv.ruri.clone();
            edits.du = Some(crate::target::uri_of(target.addr, target.transport));
            tracing::debug!(
                host = srv.host,
                to = %target.addr,
                "relay: the name's previous target failed; trying the next (RFC 3263 §4.3)"
            );
            if add_branch(
                env,
                now,
                id,
                txn,
                request,
                RelayTo::Default,
                &edits,
                Some(&srv.host),
                actions,
                out,
            ) {
                if let Some(last) = txn.branches.last_mut() {
                    last.srv = Some(Box::new(SrvNext {
                        next: i + 1,
                        ..(*srv).clone()
                    }));
                }
                return true;
            }
        }
    }
    false
}

/// The URI of a Route/Path value (`<sip:p1.example.com;lr>` or a bare URI).
fn route_uri(value: &str) -> &str {
    crate::sip::NameAddr::parse(value).map_or(value, |na| na.uri)
}

/// Cancel every branch still waiting for a final response, but `except`:
/// a CANCEL down those that answered provisionally, the others when they do.
fn cancel_branches(
    env: &Env<'_>,
    now: Instant,
    txn: &mut ProxyTxn,
    except: Option<usize>,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) {
    for index in 0..txn.branches.len() {
        let b = &mut txn.branches[index];
        if Some(index) == except || b.held.is_some() {
            continue;
        }
        if matches!(b.client, Client::Unsent(_)) {
            // Never sent: it ends here, as if cancelled.
            b.held = Some(Held {
                status: 487,
                bytes: None,
            });
            b.given_up = true;
            continue;
        }
        if b.provisional {
            send_cancel(env, now, b.socket, b, actions, out);
        } else {
            b.cancel_pending = true;
        }
    }
}

/// Start a new branch towards `to` for the request. `found_for`: the
/// name whose RFC 3263 target the edits' `du` address is (what a TLS
/// connection to it is verified against).
#[allow(clippy::too_many_arguments)]
fn add_branch(
    env: &Env<'_>,
    now: Instant,
    id: TransactionId,
    txn: &mut ProxyTxn,
    request: Request<'_, '_>,
    to: RelayTo,
    edits: &Edits,
    found_for: Option<&str>,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) -> bool {
    let (stored, routes) = (request.msg, request.routes);
    let call_id = stored.call_id().unwrap_or("");
    if txn.timer_c_fired {
        metrics::branch_refused(BranchRefusal::TimerC);
        tracing::debug!(
            call_id,
            "relay: Timer C ended the transaction; no new branch"
        );
        return false;
    }
    if txn.branches.len() >= env.max_branches {
        metrics::branch_refused(BranchRefusal::MaxBranches);
        tracing::warn!(
            call_id,
            max_branches = env.max_branches,
            "relay: the transaction has max_branches branches; no new branch"
        );
        return false;
    }
    let mut dest = None;
    let target: Option<&'static Target> = match to {
        RelayTo::Default | RelayTo::List(_) => None,
        RelayTo::Uri(t) => Some(t),
        RelayTo::Set(name) => {
            let tried: Vec<TargetId> = txn.branches.iter().filter_map(|b| b.dest).collect();
            let call_id = stored.call_id().unwrap_or("");
            match env.destinations.select(name, call_id, &tried) {
                Pick::Target(id, uri) => {
                    dest = Some(id);
                    Some(uri)
                }
                Pick::AllDown => {
                    crate::warn_limited!(
                        call_id,
                        set = name,
                        "relay: every target of the set is down"
                    );
                    txn.unavailable |= txn.branches.is_empty();
                    return false;
                }
                Pick::Exhausted => {
                    tracing::debug!(
                        call_id,
                        set = name,
                        "relay: every target of the set that is up has been tried"
                    );
                    return false;
                }
                Pick::UnknownSet => {
                    metrics::route_step_error();
                    tracing::error!(set = name, "relay: unknown destination set");
                    return false;
                }
            }
        }
    };
    let Some(hop) = forward::next_hop(stored, target, edits, routes.next_hop) else {
        crate::warn_limited!(
            call_id = stored.call_id().unwrap_or(""),
            "relay: no next hop"
        );
        return false;
    };
    let hop = match (hop, found_for) {
        (NextHop::Addr(addr), Some(name)) => NextHop::Found {
            addr,
            name: name.to_owned(),
        },
        (hop, _) => hop,
    };
    let target_key = {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = crate::hashbuf::Buffered::new(DefaultHasher::new());
        hop.hash(&mut h);
        match &edits.ruri {
            Some(ruri) => ruri.as_str().hash(&mut h),
            None => routes
                .new_request_uri
                .or(stored.request_uri())
                .unwrap_or("")
                .hash(&mut h),
        }
        h.finish()
    };
    if txn.branches.iter().any(|b| b.target == target_key) {
        metrics::branch_refused(BranchRefusal::AlreadyTried);
        tracing::debug!(
            call_id,
            to = %hop,
            "relay: this transaction already tried that next hop and Request-URI; no new branch"
        );
        return false;
    }
    if let Some(addr) = hop.addr()
        && env.identity.is_own_socket(addr)
    {
        metrics::loop_detected();
        metrics::dropped(DropReason::SelfLoop);
        tracing::debug!(call_id, to = %hop, "relay: the next hop is this proxy; no branch (482)");
        txn.self_loop = true;
        return false;
    }
    let branch = make_branch(
        env.identity,
        txn.shard,
        id,
        txn.branches.len(),
        txn.upstream,
        txn.loop_key,
    );
    let via_edit = stored
        .top_via()
        .and_then(|v| top_via_edit(&v, txn.source, txn.transport));
    // A name the URI gives no port nor transport for: the transport of
    // its first target we can send to (RFC 3263 §4.1), when known; the
    // next one to try after it (§4.3) is the one after that.
    let by_name = forward::name_transport(env.identity, env.name_targets, &hop);
    let want = forward::next_hop_transport(stored, target, edits, routes.next_hop)
        .or(routes.side)
        .or(by_name.map(|(t, _)| t));
    let built = forward::request_for_hop(
        env.identity,
        stored,
        txn.socket,
        want,
        &hop,
        &branch,
        via_edit.as_ref(),
        edits,
        routes,
    );
    let (socket, bytes) = match built {
        Ok(built) => (built.socket, built.bytes),
        Err(forward::Unsent::TooLarge) => {
            metrics::dropped(DropReason::TooLarge);
            tracing::debug!(
                call_id,
                "relay: the request is too large for a UDP datagram; no branch (513)"
            );
            txn.too_large = true;
            return false;
        }
        Err(forward::Unsent::NoSocket(transport)) => {
            metrics::dropped(DropReason::NoRoute);
            crate::warn_limited!(
                call_id,
                to = %hop,
                "relay: the next hop asks for {transport} and no {transport} socket is listed; no branch"
            );
            return false;
        }
        Err(forward::Unsent::Malformed) => return false,
    };
    actions.clear();
    // Over a stream the transport retransmits, not the transaction (§17.1.1.2).
    let reliable = env.identity.transport_of(socket).is_stream();
    let index = txn.branches.len();
    let media = fork_media::for_branch(
        env,
        now,
        HeldReply { id, index },
        usize::from(txn.shard),
        txn.source,
        txn.socket,
        edits,
        &branch,
    );
    let (client, waiting, media_via) = if stored.method() == Some("INVITE") {
        // Timer C bounds the whole transaction: started with the first
        // branch, not again for the branches `failure` adds.
        if txn.timer_c.is_none() && !txn.final_sent {
            txn.timer_c = Some(now + TIMER_C);
        }
        match media {
            ForkMedia::Shared(via) => {
                let client = ClientInvite::new(now, env.timers, reliable, bytes, actions);
                (Client::Invite(client), None, via)
            }
            ForkMedia::Own(ask) => (
                Client::Unsent(fork_media::Unsent::new(bytes)),
                Some(ask),
                Some(branch.clone()),
            ),
        }
    } else {
        let client = ClientNonInvite::new(now, env.timers, reliable, bytes, actions);
        (Client::NonInvite(client), None, None)
    };
    transmit(actions, socket, &hop, out);
    tracing::debug!(
        call_id = stored.call_id().unwrap_or(""),
        method = stored.method().unwrap_or(""),
        source = %txn.source,
        branch,
        to = %hop,
        "relayed"
    );
    let srv = match &hop {
        NextHop::Name {
            host,
            port,
            port_given,
            transport,
        } if env.name_targets.is_some() => Some(Box::new(SrvNext {
            host: host.clone(),
            port: port_given.then_some(*port),
            transport: *transport,
            next: by_name.map_or(1, |(_, i)| i + 1),
            ruri: edits.ruri.clone(),
        })),
        _ => None,
    };
    txn.branches.push(Branch {
        id: branch,
        to: hop,
        socket,
        srv,
        target: target_key,
        dest,
        client,
        provisional: false,
        cancel_pending: false,
        cancel: None,
        give_up_at: None,
        given_up: false,
        held: None,
        waiting,
        media_via,
    });
    true
}

/// A response the branch's client transaction passed up (§16.7).
#[allow(clippy::too_many_arguments)]
fn deliver(
    env: &Env<'_>,
    now: Instant,
    id: TransactionId,
    txn: &mut ProxyTxn,
    index: usize,
    msg: &Message<'_>,
    source: SocketAddr,
    status: u16,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) {
    deliver_with(
        env, now, id, txn, index, msg, source, status, actions, out, None,
    );
}

/// [`deliver`], the `reply` route running with what earlier runs of it on
/// this response learned from rtpengine (`memo`; see `suspend`).
#[allow(clippy::too_many_arguments)]
fn deliver_with(
    env: &Env<'_>,
    now: Instant,
    id: TransactionId,
    txn: &mut ProxyTxn,
    index: usize,
    msg: &Message<'_>,
    source: SocketAddr,
    status: u16,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
    memo: Option<&super::suspend::Memo>,
) {
    if txn.branches[index].waiting.is_some() && memo.is_none() {
        // An earlier response of this branch waits for rtpengine: this
        // one may not overtake it (a final one comes again).
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            status,
            "response while an earlier one waits for rtpengine: dropped"
        );
        return;
    }
    if status < 200 && memo.is_none() {
        let b = &mut txn.branches[index];
        b.provisional = true;
        if txn.timer_c.is_some() {
            txn.timer_c = Some(now + TIMER_C);
        }
        if b.cancel_pending && b.cancel.is_none() {
            b.cancel_pending = false;
            send_cancel(env, now, b.socket, b, actions, out);
        }
        if status == 100 {
            return; // §16.7 step 5: a 100 is not forwarded
        }
    }
    if status >= 200
        && memo.is_none()
        && let Some(dest) = txn.branches[index].dest
    {
        env.destinations.report(dest, Report::Replied(status));
    }
    let request = Arc::clone(&txn.request);
    let mut cx = Ctx::for_reply(msg, Some(&request), msg_source(txn));
    cx.set_transport(env.identity.transport_of(txn.branches[index].socket))
        .set_media_branch(txn.branches[index].media_via.as_deref())
        .set_nat(crate::ctx::NatEnv {
            peer: Some(source),
            identity: Some(env.identity),
        });
    set_destination_vars(env, txn.branches[index].dest, &mut cx.edits);
    if let Some(memo) = memo {
        cx.set_memo(memo);
    }
    if txn.pool_hop {
        // The instance that ran the routes runs its reply route; we only
        // mark the phone's Contact with its connection (see `flow`).
        let transport = env.identity.transport_of(txn.branches[index].socket);
        cx.edits.contact = crate::nat::fix_contact(msg, source, transport).ok();
    } else {
        let _ = env.routes.reply(&mut cx);
    }
    let now_unix = env.unix_time(now);
    if let Some(waiting) = env.suspended {
        for t in cx.tells.drain(..) {
            waiting.tell(super::suspend::Query::Media(Box::new(t)), now_unix);
        }
    }
    if let Some(query) = cx.asked.take() {
        let mut next = memo.cloned().unwrap_or_default();
        next.replay_until = cx.queries();
        drop(cx);
        let Some(waiting) = env.suspended else {
            return;
        };
        let resume = super::suspend::Resume::Reply {
            held: Some(super::suspend::HeldReply { id, index }),
        };
        let socket = txn.branches[index].socket;
        match waiting.suspend(
            now,
            now_unix,
            None,
            msg.buf().to_vec(),
            source,
            socket,
            next,
            resume,
            1,
            query,
        ) {
            Ok(ask) => txn.branches[index].waiting = Some(ask),
            Err(mut memo) => {
                // Too many requests wait: on without rtpengine.
                memo.media
                    .push(Err("too many messages wait for rtpengine".into()));
                deliver_with(
                    env,
                    now,
                    id,
                    txn,
                    index,
                    msg,
                    source,
                    status,
                    actions,
                    out,
                    Some(&memo),
                );
            }
        }
        return;
    }
    let (decision, edits) = cx.finish();
    let dropped = matches!(decision, Decision::Drop);
    let Some(bytes) = forward::response(msg, &edits, None) else {
        return;
    };
    if status < 300 {
        if dropped {
            metrics::dropped(metrics::DropReason::Route);
            tracing::debug!(
                call_id = msg.call_id().unwrap_or(""),
                status,
                "response dropped by the reply route"
            );
            return;
        }
        if status >= 200 {
            txn.branches[index].held = Some(Held {
                status,
                bytes: None,
            });
            txn.final_sent = true;
            txn.timer_c = None;
        }
        send_upstream(txn, now, status, bytes, actions, out);
        if status >= 200 {
            // §16.7 step 10: the call is answered; the other branches go.
            txn.groups.clear();
            cancel_branches(env, now, txn, Some(index), actions, out);
            keep_request_line(txn);
        }
        return;
    }
    txn.branches[index].held = Some(Held {
        status,
        bytes: Some(bytes),
    });
    if status >= 600 {
        // §16.7 step 5: a 6xx ends the search; the other branches go.
        txn.groups.clear();
        cancel_branches(env, now, txn, Some(index), actions, out);
    }
    maybe_complete(env, now, id, txn, actions, out);
}

/// A 2xx went upstream: from now on the stored request is read only by
/// the `reply` route's request variables (`$rm`, `$ru`, `$rU`, `$rd`,
/// `$rp`: the request line) for the responses still to come (2xx
/// retransmissions during Timer M, the answers of cancelled forks). No
/// branch, CANCEL, failure route or local final response is made after a
/// final response went upstream. So only the request line is kept, not
/// the whole request and its body, for the 32 s the transaction lingers.
fn keep_request_line(txn: &mut ProxyTxn) {
    if let Some(line) = request_line_only(&txn.request) {
        txn.request = Arc::from(line);
    }
}

/// The request line of `request` as a message of its own (the line and
/// an empty line), or None when that would not be shorter.
fn request_line_only(request: &[u8]) -> Option<Vec<u8>> {
    let end = memchr::memchr(b'\n', request)?;
    if end + 3 >= request.len() {
        return None;
    }
    let mut line = Vec::with_capacity(end + 3);
    line.extend_from_slice(&request[..=end]);
    line.extend_from_slice(b"\r\n");
    Some(line)
}

/// Frees the stored request of a non-INVITE that is settled: its final
/// response went upstream and every branch has its own final response.
/// Nothing reads the request again (no route runs on the transaction, no
/// branch or CANCEL is made from it), while the server transaction keeps
/// the transaction for Timer J (32 s over UDP) to answer retransmissions
/// with the response it holds. An INVITE keeps its request line
/// ([`keep_request_line`]): a 2xx retransmitted during Timer M still runs
/// the `reply` route, whose request variables read it.
fn release_settled_request(txn: &mut ProxyTxn) {
    let settled = matches!(txn.server, Server::NonInvite(_))
        && txn.final_sent
        && txn.groups.is_empty()
        && !txn.request.is_empty()
        && txn.branches.iter().all(|b| {
            b.waiting.is_none()
                && matches!(&b.client, Client::NonInvite(c) if matches!(
                    c.state(),
                    ClientNonInviteState::Completed | ClientNonInviteState::Terminated
                ))
        });
    if settled {
        txn.request = Arc::from(&[][..]);
    }
}

/// The Call-ID of a stored request (for log lines: only evaluated when enabled).
fn call_id_of(request: &[u8]) -> String {
    Message::parse(request)
        .ok()
        .and_then(|m| m.call_id().map(str::to_string))
        .unwrap_or_default()
}

/// `$du` and `$ds` after `relay: SET`: the branch's target and its set
/// (a branch relayed otherwise leaves them as they are).
fn set_destination_vars(env: &Env<'_>, dest: Option<TargetId>, edits: &mut Edits) {
    let Some(dest) = dest else {
        return;
    };
    if let Some(target) = env.destinations.target(dest) {
        edits.du = Some(target.as_str().to_string());
    }
    if let Some(set) = env.destinations.set(dest.set) {
        edits.ds = Some(set.name);
    }
}

fn msg_source(txn: &ProxyTxn) -> SocketAddr {
    txn.source
}

/// Send a response upstream through the server transaction.
fn send_upstream(
    txn: &mut ProxyTxn,
    now: Instant,
    status: u16,
    bytes: Vec<u8>,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) {
    tracing::debug!(
        call_id = call_id_of(&txn.request),
        status,
        to = %txn.upstream,
        "response relayed upstream"
    );
    actions.clear();
    txn.server.send_response(now, status, bytes, actions);
    transmit(actions, txn.socket, &NextHop::Addr(txn.upstream), out);
}

/// When every branch has ended with a final response >= 300 (or none),
/// give the failure route its chance, then send the best response up.
fn maybe_complete(
    env: &Env<'_>,
    now: Instant,
    id: TransactionId,
    txn: &mut ProxyTxn,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) {
    if txn.final_sent {
        return;
    }
    // A branch to a name that failed goes on to the name's next target at
    // once, while a fork's other branches still run (RFC 3263 §4.3); not
    // after a CANCEL or a 6xx (§16.7 step 5: no new branches).
    let search_over = txn.cancelled
        || txn
            .branches
            .iter()
            .any(|b| b.held.as_ref().is_some_and(|h| h.status >= 600));
    let mut moved_on = false;
    while !search_over && next_target(env, now, id, txn, actions, out) {
        moved_on = true;
    }
    if moved_on || txn.branches.iter().any(|b| b.held.is_none()) {
        return;
    }
    if !txn.groups.is_empty() && !txn.cancelled && next_group(env, now, id, txn, actions, out) {
        return;
    }
    let best = best_response(&txn.branches);
    let (status, has_bytes) = match best {
        Some(best) => {
            let b = &txn.branches[best];
            let held = b.held.as_ref().map(|h| (h.status, h.bytes.is_some()));
            held.unwrap_or((500, false))
        }
        // Every target of the set is down: a 503 of our own.
        None if txn.unavailable => (503, false),
        None => {
            // No branch could be started: answer for them.
            let (code, reason) = if txn.too_large {
                (513, None)
            } else if txn.self_loop {
                (482, None)
            } else {
                (500, Some("No Route To Destination"))
            };
            local_final(txn, now, code, reason, b"", actions, out);
            return;
        }
    };
    let request = Arc::clone(&txn.request);
    let Ok(stored) = Message::parse(&request) else {
        return;
    };
    if env.routes.has_failure() && !txn.cancelled && !txn.pool_hop {
        let held_bytes = best
            .and_then(|best| txn.branches[best].held.as_ref())
            .and_then(|h| h.bytes.as_deref());
        let reason = match held_bytes {
            Some(bytes) => status_line_reason(bytes),
            None => reply::default_reason(status),
        };
        metrics::failure_route_run();
        let mut cx = Ctx::for_failure(&stored, status, reason, txn.source);
        cx.set_transport(txn.transport);
        cx.edits = saved_edits(txn);
        // The last branch's target: a bare `relay` retries it (t_relay).
        let last = txn.branches.last().and_then(|b| b.dest);
        set_destination_vars(env, last, &mut cx.edits);
        let _ = env.routes.failure(&mut cx);
        let (decision, edits) = cx.finish();
        match decision {
            Decision::Relay(to) => {
                let routes = route_set::process(&stored, env.identity);
                let request = Request {
                    msg: &stored,
                    routes: &routes,
                };
                if relay_to(env, now, id, txn, request, to, &edits, actions, out) {
                    return;
                }
            }
            Decision::Reply {
                code,
                reason,
                headers,
            } => {
                local_final(txn, now, code, reason, &headers, actions, out);
                return;
            }
            Decision::Forward(_) => {
                crate::warn_limited!("forward in failure: not allowed; the best response goes up");
            }
            // `save` in failure is refused at build time.
            Decision::Drop | Decision::Undecided | Decision::Save => {}
        }
    }
    if has_bytes {
        let held = best
            .and_then(|best| txn.branches[best].held.as_mut())
            .and_then(|h| h.bytes.take());
        let Some(mut bytes) = held else {
            return;
        };
        let status = match status {
            // §16.7 step 6: a 503 goes upstream as 500.
            503 => {
                bytes = rewrite_status_line(&bytes, "SIP/2.0 500 Server Internal Error");
                500
            }
            // RFC 5626 §11.5: a UA never gets a 430 (a phone's connection
            // was gone): it is unavailable for now.
            430 => {
                bytes = rewrite_status_line(&bytes, "SIP/2.0 480 Temporarily Unavailable");
                480
            }
            s => s,
        };
        txn.final_sent = true;
        txn.timer_c = None;
        send_upstream(txn, now, status, bytes, actions, out);
    } else if stored.method() == Some("INVITE") || status != 408 {
        local_final(txn, now, status, None, b"", actions, out);
    } else {
        // RFC 4320: no 408 upstream for a non-INVITE; give the server side up.
        txn.final_sent = true;
        txn.abandoned = true;
    }
}

/// The reason phrase of a response's status line (`SIP/2.0 404 Not Found`),
/// read without parsing the rest of the message.
fn status_line_reason(response: &[u8]) -> &str {
    let line = response.split(|&c| c == b'\r').next().unwrap_or_default();
    let reason = line.splitn(3, |&c| c == b' ').nth(2).unwrap_or_default();
    std::str::from_utf8(reason).unwrap_or("")
}

/// A final response the proxy makes itself, sent through the server transaction.
fn local_final(
    txn: &mut ProxyTxn,
    now: Instant,
    code: u16,
    reason: Option<&str>,
    headers: &[u8],
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) {
    let request = Arc::clone(&txn.request);
    let Ok(stored) = Message::parse(&request) else {
        return;
    };
    let mut bytes = Vec::with_capacity(512);
    if reply::build(
        &stored,
        txn.source,
        txn.transport,
        code,
        reason,
        headers,
        &mut bytes,
    )
    .is_none()
    {
        return;
    }
    txn.final_sent = true;
    txn.timer_c = None;
    send_upstream(txn, now, code, bytes, actions, out);
}

/// §16.7 step 6: a 6xx wins; else the lowest class, preferring
/// 401/407/415/420/484 in the 4xx class; ties go to the first branch.
fn best_response(branches: &[Branch]) -> Option<usize> {
    let rank = |status: u16| -> (u16, u16) {
        let class = status / 100;
        let class_rank = if class == 6 { 0 } else { class };
        let preferred = matches!(status, 401 | 407 | 415 | 420 | 484);
        (class_rank, if preferred { 0 } else { 1 })
    };
    branches
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.held.as_ref().map(|h| (i, h.status)))
        .filter(|(_, s)| *s >= 300)
        .min_by_key(|(_, s)| rank(*s))
        .map(|(i, _)| i)
}

fn rewrite_status_line(bytes: &[u8], line: &str) -> Vec<u8> {
    let end = bytes
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(bytes.len());
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(&bytes[end..]);
    out
}

/// Timers of one transaction: server retransmissions, Timer C, branch
/// retransmissions and timeouts, CANCEL retransmissions.
fn on_timer(
    env: &Env<'_>,
    now: Instant,
    id: TransactionId,
    txn: &mut ProxyTxn,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) {
    actions.clear();
    // Every Transmit a timer makes is a retransmission.
    let mut resent = 0;
    if !txn.abandoned
        && txn
            .server
            .machine()
            .next_deadline()
            .is_some_and(|d| d <= now)
    {
        match &mut txn.server {
            Server::Invite(m) => m.on_timeout(now, actions),
            Server::NonInvite(m) => m.on_timeout(now, actions),
        }
        resent += transmit(actions, txn.socket, &NextHop::Addr(txn.upstream), out);
    }
    if txn.timer_c.is_some_and(|c| c <= now) {
        // §16.8: Timer C fired; it bounds the whole transaction.
        txn.timer_c = None;
        txn.timer_c_fired = true;
        for b in txn.branches.iter_mut().filter(|b| b.held.is_none()) {
            if b.provisional {
                send_cancel(env, now, b.socket, b, actions, out);
            } else {
                b.held = Some(Held {
                    status: 408,
                    bytes: None,
                });
            }
        }
    }
    let mut ended = false;
    for b in txn.branches.iter_mut() {
        if b.client.machine().next_deadline().is_some_and(|d| d <= now) {
            actions.clear();
            b.client.machine_mut().on_timeout(now, actions);
            for action in actions.drain(..) {
                match action {
                    Action::Transmit(bytes) => {
                        resent += 1;
                        out.push(Outgoing {
                            socket: b.socket,
                            to: b.to.clone(),
                            bytes: Payload::Shared(bytes),
                        })
                    }
                    Action::Timeout | Action::TransportError if b.held.is_none() => {
                        // No final response: a 408 as far as the choice goes.
                        b.held = Some(Held {
                            status: 408,
                            bytes: None,
                        });
                        ended = true;
                        if let Some(dest) = b.dest {
                            env.destinations.report(dest, Report::TimedOut);
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(cancel) = &mut b.cancel
            && cancel.next_deadline().is_some_and(|d| d <= now)
        {
            actions.clear();
            cancel.on_timeout(now, actions);
            resent += transmit(actions, b.socket, &b.to, out);
        }
        if b.held.is_none() && b.give_up_at.is_some_and(|d| d <= now) {
            // §9.1: no final response 64*T1 after the CANCEL: the INVITE
            // counts as cancelled.
            b.held = Some(Held {
                status: 487,
                bytes: None,
            });
            b.given_up = true;
            ended = true;
        }
    }
    metrics::retransmissions_sent(resent as u64);
    if ended || txn.branches.iter().all(|b| b.held.is_some()) {
        maybe_complete(env, now, id, txn, actions, out);
    }
}

/// Send a CANCEL down a branch (§9.1, §16.10).
fn send_cancel(
    env: &Env<'_>,
    now: Instant,
    socket: usize,
    b: &mut Branch,
    actions: &mut Vec<Action>,
    out: &mut Vec<Outgoing>,
) {
    if b.cancel.is_some() {
        return;
    }
    let Some(cancel) = build_hop_request(b.client.request(), "CANCEL", None) else {
        return;
    };
    actions.clear();
    let reliable = env.identity.transport_of(socket).is_stream();
    b.cancel = Some(Box::new(ClientNonInvite::new(
        now, env.timers, reliable, cancel, actions,
    )));
    b.give_up_at = Some(now + env.timers.t1 * 64);
    transmit(actions, socket, &b.to, out);
}

/// The ACK for a non-2xx final response (§17.1.1.3): the INVITE's
/// Request-URI, top Via, Route, From, Call-ID and CSeq number, the To of
/// the response.
fn build_ack(invite: &[u8], response: &Message<'_>) -> Option<Vec<u8>> {
    let to = response.first(HeaderName::To)?;
    let to_line = response.buf().get(to.line_range.clone())?;
    build_hop_request(invite, "ACK", Some(to_line))
}

/// A CANCEL or ACK made from the request we sent on a branch.
fn build_hop_request(sent: &[u8], method: &str, to_line: Option<&[u8]>) -> Option<Vec<u8>> {
    let req = Message::parse(sent).ok()?;
    let buf = req.buf();
    let via = req.top_via()?;
    let (cseq, _) = req.cseq()?;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.request_uri()?.as_bytes());
    out.extend_from_slice(b" SIP/2.0\r\nVia: ");
    out.extend_from_slice(buf.get(via.range.clone())?);
    out.extend_from_slice(b"\r\n");
    for h in req.headers() {
        let line = buf.get(h.line_range.clone())?;
        let copy = match h.name {
            HeaderName::Route | HeaderName::From | HeaderName::CallId => true,
            HeaderName::To => to_line.is_none(),
            _ => false,
        };
        if copy {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if let Some(to) = to_line {
        out.extend_from_slice(to);
        if !to.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    let _ = write!(
        ByteWriter(&mut out),
        "CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    Some(out)
}

/// Answer a request statelessly (CANCEL's 200, 503 when full).
fn reply_upstream_stateless(
    msg: &Message<'_>,
    (source, socket, transport): (SocketAddr, usize, Transport),
    code: u16,
    headers: &[u8],
    out: &mut Vec<Outgoing>,
) {
    let mut bytes = Vec::with_capacity(512);
    if let Some(to) = reply::build(msg, source, transport, code, None, headers, &mut bytes) {
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
        });
    }
}

/// Queue every `Transmit` in `actions` (the machines' other actions are
/// not needed here) towards `to` from `socket`; how many were queued.
fn transmit(
    actions: &mut Vec<Action>,
    socket: usize,
    to: &NextHop,
    out: &mut Vec<Outgoing>,
) -> usize {
    let before = out.len();
    for action in actions.drain(..) {
        if let Action::Transmit(bytes) = action {
            out.push(Outgoing {
                socket,
                to: to.clone(),
                bytes: Payload::Shared(bytes),
            });
        }
    }
    out.len() - before
}

struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_ids_round_trip() {
        use crate::proxy::branch::{branch_instance, loop_key_of};
        use crate::proxy::identity::Listener;
        let identity = Identity::new(vec![
            Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap(),
        ]);
        let up: SocketAddr = "192.0.2.1:5070".parse().unwrap();
        let id = TransactionId::from_parts(42, 7);
        let b = make_branch(&identity, 5, id, 3, up, 0xfeed);
        assert!(b.starts_with("z9hG4bKsfT"));
        let parts = parse_branch(&b).unwrap();
        assert_eq!((parts.shard, parts.id, parts.n), (5, id, 3));
        assert_eq!(branch_shard(&b), Some(5));
        assert_eq!(parts.instance, identity.instance());
        assert_eq!(parts.check, stateful_check(&identity, 5, 42, 7, 3, up));
        assert_eq!(branch_instance(&b), Some(identity.instance()));
        assert_eq!(loop_key_of(&b), Some(0xfeed));
        // Unguessable: another process (another key) makes another branch
        // for the same slot, and so does another upstream.
        let other = Identity::new(vec![
            Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap(),
        ]);
        assert_ne!(b, make_branch(&other, 5, id, 3, up, 0xfeed));
        assert_ne!(
            parts.check,
            stateful_check(&identity, 5, 42, 7, 3, "192.0.2.1:5071".parse().unwrap())
        );
        assert_eq!(branch_instance("z9hG4bKsfT1.1.0"), None);
        assert_eq!(parse_branch("z9hG4bKsf0123456789abcdef"), None);
        assert_eq!(parse_branch("z9hG4bKsfTzz.1.0.1"), None);
        assert_eq!(parse_branch("z9hG4bKsfT1.1.0"), None);
        assert_eq!(parse_branch("z9hG4bKsfT1.1.0.1"), None);
        assert_eq!(parse_branch("z9hG4bKsfT1.1.0.1.00"), None);
        assert_eq!(parse_branch("z9hG4bKsfT0.1.1.0.1.00"), None);
        // The fields as `{:x}` writes them, and read back whatever they are.
        for (shard, index, generation, n) in [
            (0u16, 0u32, 0u32, 0usize),
            (0xffff, u32::MAX, u32::MAX, usize::MAX),
            (0x10, 0x100, 0x1000, 0x10000),
        ] {
            let id = TransactionId::from_parts(index, generation);
            let b = make_branch(&identity, shard, id, n, up, 0xfeed);
            let want = format!(
                "z9hG4bKsfT{shard:x}.{index:x}.{generation:x}.{n:x}.{:x}.0000feed",
                identity.instance()
            );
            assert!(b.starts_with(&want), "{b} / {want}");
            let parts = parse_branch(&b).unwrap();
            assert_eq!((parts.shard, parts.id, parts.n), (shard, id, n));
        }
        // What from_str_radix takes: a leading +, leading zeros; not an
        // overflow, a -, an empty field.
        assert!(parse_branch("z9hG4bKsfT+1.001.0.0.0.0000beef123456789abc").is_some());
        assert_eq!(
            parse_branch("z9hG4bKsfT10000.1.0.0.0.0000beef123456789abc"),
            None
        );
        assert_eq!(
            parse_branch("z9hG4bKsfT-1.1.0.0.0.0000beef123456789abc"),
            None
        );
        assert_eq!(
            parse_branch("z9hG4bKsfT+.1.0.0.0.0000beef123456789abc"),
            None
        );
        assert_eq!(
            parse_branch("z9hG4bKsfT.1.0.0.0.0000beef123456789abc"),
            None
        );
    }

    #[test]
    fn ack_and_cancel_copy_what_they_must() {
        let invite = b"INVITE sip:bob@10.0.0.2 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsfT1.0.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKup\r\n\
            Route: <sip:10.0.0.5;lr>\r\n\
            From: <sip:a@x>;tag=1\r\nTo: <sip:bob@x>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n\
            Max-Forwards: 69\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0";
        let cancel = build_hop_request(invite, "CANCEL", None).unwrap();
        let text = String::from_utf8(cancel).unwrap();
        assert!(text.starts_with("CANCEL sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsfT1.0.0\r\n"));
        assert!(!text.contains("z9hG4bKup"), "only the top Via");
        assert!(text.contains("Route: <sip:10.0.0.5;lr>\r\n"));
        assert!(text.contains("To: <sip:bob@x>\r\n"));
        assert!(text.contains("CSeq: 7 CANCEL\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        let resp = b"SIP/2.0 404 Not Found\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsfT1.0.0\r\n\
            From: <sip:a@x>;tag=1\r\nTo: <sip:bob@x>;tag=99\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";
        let resp = Message::parse(resp).unwrap();
        let ack = String::from_utf8(build_ack(invite, &resp).unwrap()).unwrap();
        assert!(ack.starts_with("ACK sip:bob@10.0.0.2 SIP/2.0\r\n"));
        assert!(ack.contains("To: <sip:bob@x>;tag=99\r\n"));
        assert!(ack.contains("CSeq: 7 ACK\r\n"));
    }

    #[test]
    fn after_a_2xx_only_the_request_line_is_kept() {
        let invite = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1\r\n\
                       Call-ID: c1\r\nContent-Length: 4\r\n\r\nbody";
        let kept = request_line_only(invite).expect("shorter");
        assert_eq!(kept, b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n");
        // What the reply route's request variables read is still there.
        let msg = Message::parse(&kept).expect("a message of its own");
        assert_eq!(msg.method(), Some("INVITE"));
        assert_eq!(msg.request_uri(), Some("sip:bob@example.com"));
        // Already only a request line: left as it is.
        assert!(request_line_only(&kept).is_none());
        assert!(request_line_only(b"no line end").is_none());
    }

    #[test]
    fn reason_phrase_from_the_status_line() {
        let response = b"SIP/2.0 404 Not Found Here\r\nVia: SIP/2.0/UDP a\r\n\r\n";
        assert_eq!(status_line_reason(response), "Not Found Here");
        assert_eq!(status_line_reason(b"SIP/2.0 486 \r\n\r\n"), "");
        assert_eq!(status_line_reason(b"SIP/2.0 500\r\n\r\n"), "");
        assert_eq!(status_line_reason(b""), "");
    }

    #[test]
    fn best_response_rules() {
        let branch = |status: u16| Branch {
            id: String::new(),
            to: NextHop::Name {
                host: "x".into(),
                port: 5060,
                port_given: true,
                transport: None,
            },
            socket: 0,
            srv: None,
            target: 0,
            dest: None,
            client: Client::NonInvite(ClientNonInvite::new(
                Instant::now(),
                Timers::default(),
                false,
                b"x".to_vec(),
                &mut Vec::new(),
            )),
            provisional: false,
            cancel_pending: false,
            cancel: None,
            give_up_at: None,
            given_up: false,
            held: Some(Held {
                status,
                bytes: None,
            }),
            waiting: None,
            media_via: None,
        };
        let pick = |codes: &[u16]| {
            let bs: Vec<Branch> = codes.iter().map(|c| branch(*c)).collect();
            best_response(&bs).map(|i| codes[i])
        };
        assert_eq!(pick(&[404, 503]), Some(404));
        assert_eq!(pick(&[503, 302]), Some(302));
        assert_eq!(pick(&[486, 603, 302]), Some(603));
        assert_eq!(pick(&[404, 407]), Some(407));
        assert_eq!(pick(&[408, 404]), Some(408));
    }
}
