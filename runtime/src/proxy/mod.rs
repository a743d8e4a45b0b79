//! The proxy core, sans-IO: a datagram, its source and the time go in, the
//! datagrams to send come out; timers are driven by `next_deadline` /
//! `on_timeout`. No sockets, no clocks, no tokio: the network layer
//! (`crate::net`) owns those. Tests drive it with plain values.
//!
//! - `stateless`: the request/response paths and `forward` (§16.11).
//! - `stateful`: `relay`, transactions, `failure` (§16 with §17).
//! - `destinations`: destination sets: balancing, failover, health;
//!   `probe`: their OPTIONS health checks.
//! - `forward`: building the messages sent on; `reply`: our own replies.
//! - `route_set`, `received`, `branch`, `identity`: the pieces of §16/§18.
//! - `nat`: the Contact `fix_contact` rewrites, and in-dialog requests to it.

pub mod branch;
pub mod destinations;
pub mod drain;
pub mod flow;
mod fork_media;
pub mod forward;
pub mod identity;
pub mod keepalive;
pub mod location;
pub(crate) mod nat;
pub mod probe;
pub mod received;
pub mod reply;
pub mod route_set;
pub mod stateful;
mod stateless;
pub mod suspend;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::api::Routes;
use crate::target::NextHop;
use crate::transaction::Timers;
pub use destinations::DestinationState;
pub use drain::DrainMode;
pub use identity::{Identity, Listener};

/// The largest UDP payload (IPv4: 65,535 - 8 - 20): a request we would
/// have to send larger than this is answered 513 (RFC 3261 §18.1.1 wants
/// TCP above 1,300 bytes; UDP is all there is so far).
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Bytes to send: built for this send, or shared with a transaction that
/// keeps them for retransmission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        match self {
            Payload::Owned(v) => v,
            Payload::Shared(a) => a,
        }
    }
}

/// A datagram the core wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Index of the listening socket to send from.
    pub socket: usize,
    /// Where to.
    pub to: NextHop,
    pub bytes: Payload,
}

/// Why the network layer could not send a request (see [`Core::unsent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// A connection could not be opened, or its TLS handshake failed: 503.
    Failed,
    /// A next hop that is a phone's connection only
    /// ([`NextHop::Flow`](crate::target::NextHop::Flow)), and the
    /// connection is gone: 430 Flow Failed.
    FlowFailed,
}

impl Unsent {
    fn code(self) -> u16 {
        match self {
            Unsent::Failed => 503,
            Unsent::FlowFailed => 430,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Unsent::Failed => "Transport Error",
            Unsent::FlowFailed => "Flow Failed",
        }
    }
}

/// Settings of the core that are not in the routes file.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    /// T1, T2, T4 (RFC 3261 §17); tests shorten them.
    pub timers: Timers,
    /// Most transactions kept at once; over it a new request gets 503.
    pub max_transactions: usize,
    /// Shards of the transaction table: each has its own lock and timers,
    /// so workers handling different transactions never wait for each
    /// other. The network layer sets it from the worker count.
    pub shards: usize,
    /// Most requests waiting for another server's answer at once (see
    /// [`suspend`]); over it a request is handled as if the server failed.
    pub max_waiting: usize,
    /// How long a request waits for another server's answer: the network
    /// layer answers a question it could not get answered in time with an
    /// error after this long.
    pub ask_timeout: std::time::Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            timers: Timers::default(),
            max_transactions: 200_000,
            shards: 16,
            max_waiting: 10_000,
            ask_timeout: std::time::Duration::from_secs(2),
        }
    }
}

/// The transactions, counted across shards (the bound is on the total).
/// The `sipforge_transactions_active` gauge reads the count when the
/// metrics are scraped ([`crate::metrics::count_transactions_from`]): a
/// gauge stored on every message would be one more cache line that every
/// worker writes.
pub struct Capacity {
    live: Arc<AtomicUsize>,
    max: usize,
}

impl Capacity {
    fn new(max: usize) -> Capacity {
        let live = Arc::new(AtomicUsize::new(0));
        crate::metrics::count_transactions_from(&live);
        Capacity { live, max }
    }

    /// Live transactions in every shard.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether a new transaction would go over the bound.
    pub fn is_full(&self) -> bool {
        self.live() >= self.max
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A shard went from `before` to `after` transactions.
    fn changed(&self, before: usize, after: usize) {
        if after > before {
            self.live.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.live.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

/// A timer lane the network layer drives: a shard of the transaction
/// table, or (the last lane) the health probes, the registrar's
/// keep-alives and the sweep of its memory store. What a message touched,
/// with that lane's next deadline, is returned by [`Core::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touched {
    pub lane: usize,
    pub next_deadline: Option<Instant>,
}

/// The proxy core: the compiled routes, who we are, the transactions.
///
/// Shared by every worker thread (`&self` everywhere): the stateless path
/// reads only immutable or atomic state; a transaction lives in one shard
/// of the table, chosen by a hash of its server key (so a retransmission,
/// ACK or CANCEL finds it whichever worker receives it) and named in its
/// branches (so responses do); only that shard's lock is taken.
pub struct Core {
    routes: &'static dyn Routes,
    identity: Identity,
    timers: Timers,
    shards: Box<[Mutex<stateful::Stateful>]>,
    capacity: Capacity,
    /// 0 until the instance drains, then 1 + the [`DrainMode`] (see [`drain`]).
    draining: AtomicU8,
    destinations: destinations::Destinations,
    probes: Mutex<probe::Prober>,
    /// What names next hops resolved to (the network layer resolves them):
    /// responses to a branch sent to a name must come from one of them.
    names: std::sync::OnceLock<NameCheck>,
    /// The targets next hop names resolved to (RFC 3263 §4.3 failover).
    name_targets: std::sync::OnceLock<NameTargets>,
    /// `authenticate`'s credentials and nonce key (loaded by the network
    /// layer, which keeps a handle to reload the credentials on SIGHUP).
    authenticator: std::sync::OnceLock<Arc<crate::auth::Authenticator>>,
    /// `limits.per_source`: the token buckets of the sources.
    limiter: Option<crate::limits::Limiter>,
    /// The registrar of `save`, `lookup` and `registered`.
    registrar: Option<location::Registrar>,
    /// Requests waiting for a shared store's answer (only with one).
    suspended: Option<suspend::Suspended>,
    /// An instant and the wall-clock second it was (nonces carry wall
    /// time so that every instance sharing the key can check them).
    wall_clock: (Instant, u64),
}

/// Seconds since the Unix epoch, read once per core (see `Core::wall_clock`).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `(host, port given in the URI, transport asked for)`: the RFC 3263
/// targets of a next hop name in the order to try them, from the network
/// layer's cache (None: not looked up yet).
pub type NameTargets = Box<
    dyn Fn(
            &str,
            Option<u16>,
            Option<crate::transport::Transport>,
        ) -> Option<Vec<crate::resolve::Target>>
        + Send
        + Sync,
>;

/// `(host, addr)`: whether the name `host` resolved to `addr` (an address
/// and port of one of its RFC 3263 targets).
pub type NameCheck = Box<dyn Fn(&str, std::net::SocketAddr) -> bool + Send + Sync>;

/// Lock a mutex whether or not a panic poisoned it: a panic loses one
/// message (the network layer catches it), never a shard.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    pub fn new(routes: &'static dyn Routes, identity: Identity, config: CoreConfig) -> Core {
        let shards = config.shards.clamp(1, stateful::MAX_SHARDS);
        let registrar = routes
            .settings()
            .registrar
            .as_ref()
            .map(location::Registrar::from_settings)
            .transpose();
        let shared_store = matches!(&registrar, Ok(Some(r)) if r.is_shared());
        let suspended = (shared_store || !routes.settings().rtpengine.is_empty())
            .then(|| suspend::Suspended::new(config.max_waiting, config.ask_timeout));
        Core {
            routes,
            identity,
            timers: config.timers,
            shards: (0..shards)
                .map(|i| {
                    Mutex::new(stateful::Stateful::new(
                        config.max_transactions,
                        config.timers,
                        i as u16,
                    ))
                })
                .collect(),
            capacity: Capacity::new(config.max_transactions),
            draining: AtomicU8::new(0),
            destinations: destinations::Destinations::new(routes.settings().destinations),
            probes: Mutex::new(probe::Prober::new(routes.settings().destinations)),
            names: std::sync::OnceLock::new(),
            name_targets: std::sync::OnceLock::new(),
            authenticator: std::sync::OnceLock::new(),
            limiter: routes.settings().limits.as_ref().and_then(|l| {
                l.per_source
                    .map(|p| crate::limits::Limiter::new(p, l.trusted))
            }),
            wall_clock: (Instant::now(), unix_now()),
            // A store that cannot be used is refused at start (`net::start`).
            registrar: registrar.ok().flatten(),
            suspended,
        }
    }

    /// The location service at `now`, when the routes use a registrar
    /// (`memo`: what earlier runs of the route learned from a shared store).
    pub(crate) fn location<'a>(
        &'a self,
        now: Instant,
        memo: Option<&'a suspend::Memo>,
    ) -> Option<location::LocationAt<'a>> {
        let registrar = self.registrar.as_ref()?;
        Some(registrar.at(&self.identity, self.unix_time(now), memo))
    }

    /// `save`: the answer to a REGISTER received from `source` over
    /// `transport` at `now`, or what to ask a shared store.
    pub(crate) fn save(
        &self,
        msg: &crate::sip::Message<'_>,
        source: SocketAddr,
        transport: crate::transport::Transport,
        now: Instant,
    ) -> location::Saving {
        match &self.registrar {
            Some(r) => r.save(
                msg,
                source,
                transport,
                &self.identity,
                now,
                self.unix_time(now),
            ),
            None => location::Saving::Answer(500, Some("No Registrar"), Vec::new()),
        }
    }

    /// The next question for another server (a shared location store):
    /// the network layer takes them after each message it handed over,
    /// carries them out and gives each answer to [`Core::answer`].
    pub fn poll_ask(&self) -> Option<suspend::Ask> {
        self.suspended.as_ref()?.poll_ask()
    }

    /// The registrar's rules (defaults without a registrar), for a shared
    /// store applying a REGISTER.
    pub fn registrar_config(&self) -> crate::registrar::Config {
        self.registrar
            .as_ref()
            .map(|r| r.config().clone())
            .unwrap_or_default()
    }

    /// Send rtpengine the deletes a route run asked for (nobody waits for
    /// their answers).
    pub(crate) fn tell_media(&self, now: Instant, tells: &mut Vec<suspend::MediaAsk>) {
        if tells.is_empty() {
            return;
        }
        let Some(waiting) = &self.suspended else {
            tells.clear();
            return;
        };
        let now_unix = self.unix_time(now);
        for t in tells.drain(..) {
            waiting.tell(suspend::Query::Media(Box::new(t)), now_unix);
        }
    }

    /// Requests waiting for another server's answer.
    pub fn waiting(&self) -> usize {
        self.suspended.as_ref().map_or(0, suspend::Suspended::len)
    }

    /// Whether the core may ask other servers (a shared location store,
    /// rtpengine) that the network layer must reach (see [`Core::poll_ask`]).
    pub fn asks_others(&self) -> bool {
        self.suspended.is_some()
    }

    /// How long the network layer lets a question run before it answers
    /// it with an error.
    pub fn ask_timeout(&self) -> std::time::Duration {
        self.suspended.as_ref().map_or(
            std::time::Duration::from_secs(2),
            suspend::Suspended::timeout,
        )
    }

    /// The answer to question `id` arrived at `now`: the request waiting
    /// for it goes on (what must be sent is pushed onto `out`). An answer
    /// for a request that no longer waits (ended by a CANCEL, or dropped
    /// after its deadline) is ignored.
    pub fn answer(
        &self,
        now: Instant,
        id: suspend::AskId,
        answer: suspend::Answer,
        out: &mut Vec<Outgoing>,
    ) -> Option<Touched> {
        stateless::resume(self, now, id, answer, out)
    }

    /// The credentials and nonce key `authenticate` checks against (set
    /// once by the network layer; without it `authenticate` answers 500).
    pub fn set_authenticator(&self, authenticator: Arc<crate::auth::Authenticator>) {
        let _ = self.authenticator.set(authenticator);
    }

    /// Say which wall-clock second `at` is (tests move the clock; the
    /// network layer leaves the one read at `Core::new`).
    pub fn set_wall_clock(&mut self, at: Instant, unix_secs: u64) {
        self.wall_clock = (at, unix_secs);
    }

    /// The wall-clock second at `now`.
    fn unix_time(&self, now: Instant) -> u64 {
        let (at, secs) = self.wall_clock;
        match now.checked_duration_since(at) {
            Some(d) => secs + d.as_secs(),
            None => secs.saturating_sub(at.duration_since(now).as_secs()),
        }
    }

    /// What `authenticate` needs for a request handled at `now`.
    fn auth_env(&self, now: Instant) -> Option<crate::ctx::AuthEnv<'_>> {
        let authenticator = self.authenticator.get()?;
        Some(crate::ctx::AuthEnv {
            authenticator,
            realm: self.routes.settings().auth.as_ref().and_then(|a| a.realm),
            now_unix: self.unix_time(now),
        })
    }

    /// How to tell what a next hop name resolved to (set once by the
    /// network layer; without it, responses to branches sent to names are
    /// not checked for their source).
    pub fn set_name_check(&self, check: NameCheck) {
        let _ = self.names.set(check);
    }

    /// How to get the RFC 3263 targets of a next hop name (set once by the
    /// network layer; without it, a branch to a name is not retried on the
    /// name's next target).
    pub fn set_name_targets(&self, targets: NameTargets) {
        let _ = self.name_targets.set(targets);
    }

    /// Start the periodic work that needs no message: the health probes of
    /// destination sets (the first ones are due at `now`). The network
    /// layer calls it once its sockets are bound.
    pub fn start(&self, now: Instant) {
        lock(&self.probes).start(now);
    }

    /// Every target of every destination set and whether it is up.
    pub fn destination_states(&self) -> Vec<DestinationState> {
        self.destinations.states()
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.capacity.live()
    }

    /// The random tag of this instance, carried in its branches (see
    /// `net::sibling`).
    pub fn instance(&self) -> u32 {
        self.identity.instance()
    }

    /// Transactions still waiting for their final response: the ones a
    /// draining instance waits for (the rest only absorb retransmissions).
    pub fn pending_transactions(&self) -> usize {
        self.shards.iter().map(|s| lock(s).pending()).sum()
    }

    /// Start draining: requests that would open a transaction are handled
    /// as `mode` says; everything else goes on as before.
    pub fn start_draining(&self, mode: DrainMode) {
        let code = match mode {
            DrainMode::Stateless => 1,
            DrainMode::Reject => 2,
            DrainMode::Relay => 3,
        };
        self.draining.store(code, Ordering::Relaxed);
    }

    /// The drain mode, once draining.
    pub fn draining(&self) -> Option<DrainMode> {
        match self.draining.load(Ordering::Relaxed) {
            1 => Some(DrainMode::Stateless),
            2 => Some(DrainMode::Reject),
            3 => Some(DrainMode::Relay),
            _ => None,
        }
    }

    /// Whether `limits.per_source` bans `ip` at `now` (false without
    /// `limits:`): for the stream layer, which refuses such a source's
    /// connections and closes the one whose message started the ban.
    pub fn is_banned(&self, ip: std::net::IpAddr, now: Instant) -> bool {
        self.limiter.as_ref().is_some_and(|l| l.is_banned(ip, now))
    }

    /// AoRs and bindings in the `memory` location store (expired ones
    /// count until they are swept); None without one.
    pub fn registrations(&self) -> Option<(usize, usize)> {
        let store = self.registrar.as_ref()?.memory_store()?;
        Some((store.aors(), store.contacts()))
    }

    /// The number of timer lanes: one per shard, then the probes'
    /// (health probes, keep-alives and the location store's sweep).
    pub fn lanes(&self) -> usize {
        self.shards.len() + 1
    }

    /// Handle one received datagram that arrived on socket `socket` from
    /// `source` at `now`; what must be sent is pushed onto `out`. Returns
    /// the timer lane the message touched, if any, and its next deadline.
    pub fn handle(
        &self,
        now: Instant,
        datagram: &[u8],
        source: SocketAddr,
        socket: usize,
        out: &mut Vec<Outgoing>,
    ) -> Option<Touched> {
        stateless::handle(self, now, datagram, source, socket, out)
    }

    /// A request the network layer could not send to `to` from socket
    /// `socket` (`why`). For a branch of a relayed request this is a 503
    /// from that next hop (RFC 3261 §8.1.3.1), or a 430 for a phone's
    /// connection that is gone (RFC 5626 §5.3), so its transaction goes
    /// on at once (the next RFC 3263 target, the next branch, `failure`)
    /// instead of waiting for its timeout. Anything else is left alone
    /// (lost, as a lost datagram would be).
    pub fn unsent(
        &self,
        now: Instant,
        bytes: &[u8],
        to: SocketAddr,
        socket: usize,
        why: Unsent,
        out: &mut Vec<Outgoing>,
    ) -> Option<Touched> {
        let msg = crate::sip::Message::parse(bytes).ok()?;
        if !msg.is_request() || msg.method() == Some("ACK") {
            return None;
        }
        let branch = msg.top_via()?.branch?;
        stateful::branch_shard(branch)?;
        let mut response = Vec::with_capacity(bytes.len().min(1024));
        let transport = self.identity.transport_of(socket);
        reply::build(
            &msg,
            to,
            transport,
            why.code(),
            Some(why.reason()),
            b"",
            &mut response,
        )?;
        crate::metrics::transport_error();
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            %to,
            "request could not be sent: handled as a {} from its next hop",
            why.code()
        );
        self.handle(now, &response, to, socket, out)
    }

    /// A request the core sent to next hop name `to` from socket `socket`
    /// before the name was looked up (its bytes built for that socket's
    /// transport), whose first target (RFC 3263 §4.1: NAPTR, then SRV)
    /// the network layer found to be over `transport`: the request leaves
    /// over a socket of `transport` instead, with our Via and
    /// Record-Route entries naming it. A branch of a relayed request
    /// changes socket (its client transaction starts again from there:
    /// nothing was sent yet); a request forwarded statelessly is rebuilt
    /// and sent on. Nothing when there is no socket of `transport` (the
    /// network layer only names transports we listen on), or when the
    /// branch already moved (a retransmission that waited for the same
    /// lookup).
    pub fn retarget(
        &self,
        now: Instant,
        bytes: &[u8],
        socket: usize,
        transport: crate::transport::Transport,
        to: &NextHop,
        out: &mut Vec<Outgoing>,
    ) -> Option<Touched> {
        let msg = crate::sip::Message::parse(bytes).ok()?;
        let branch = msg.top_via()?.branch?;
        if msg.method() != Some("ACK")
            && let Some(shard) = stateful::branch_shard(branch)
        {
            let index = shard % self.shards.len();
            let (_, touched) = self.with_shard(index, |s, env| {
                s.retarget(env, now, branch, transport, out);
            });
            return Some(touched);
        }
        let moved = self.identity.sending_socket(socket, Some(transport), to)?;
        let bytes = forward::move_request(&self.identity, bytes, socket, moved, None)?;
        tracing::debug!(
            call_id = msg.call_id().unwrap_or(""),
            to = %to,
            %transport,
            "the next hop's first target is over another transport: forwarded from a socket of it"
        );
        out.push(Outgoing {
            socket: moved,
            to: to.clone(),
            bytes: Payload::Owned(bytes),
        });
        None
    }

    /// The environment the stateful code runs in.
    fn env(&self) -> stateful::Env<'_> {
        let mut env = stateful::Env::new(
            self.routes,
            &self.identity,
            self.timers,
            &self.destinations,
            &self.capacity,
            self.names.get(),
            self.name_targets.get(),
        );
        env.suspended = self.suspended.as_ref();
        env.wall_clock = self.wall_clock;
        env
    }

    /// Run `f` on shard `index` under its lock, keeping the count of live
    /// transactions; the shard's next deadline comes back with `f`'s result.
    fn with_shard<R>(
        &self,
        index: usize,
        f: impl FnOnce(&mut stateful::Stateful, &stateful::Env<'_>) -> R,
    ) -> (R, Touched) {
        let env = self.env();
        let mut shard = lock(&self.shards[index]);
        let before = shard.len();
        let result = f(&mut shard, &env);
        self.capacity.changed(before, shard.len());
        let touched = Touched {
            lane: index,
            next_deadline: shard.next_deadline(),
        };
        (result, touched)
    }

    /// The shard a server transaction key lives in.
    fn shard_of(&self, key: &crate::transaction::TransactionKey) -> usize {
        (key.shard_hash() % self.shards.len() as u64) as usize
    }

    /// When `on_timeout_in(lane, ..)` must next be called.
    pub fn next_deadline_in(&self, lane: usize) -> Option<Instant> {
        match self.shards.get(lane) {
            Some(shard) => lock(shard).next_deadline(),
            None => {
                let probes = lock(&self.probes).next_deadline();
                let pings = self.keepalives().and_then(|k| lock(k).next_deadline());
                let sweep = self.registrar.as_ref().and_then(|r| r.next_sweep());
                [probes, pings, sweep].into_iter().flatten().min()
            }
        }
    }

    /// The keep-alives of the registrar, when `keepalive:` asks for them.
    fn keepalives(&self) -> Option<&Mutex<keepalive::Keepalives>> {
        self.registrar.as_ref()?.keepalives.as_ref()
    }

    /// Fire the timers of one lane due at `now`.
    pub fn on_timeout_in(&self, lane: usize, now: Instant, out: &mut Vec<Outgoing>) {
        if lane < self.shards.len() {
            self.with_shard(lane, |shard, env| shard.on_timeout(env, now, out));
        } else {
            lock(&self.probes).on_timeout(
                now,
                &self.identity,
                self.timers,
                &self.destinations,
                out,
            );
            if let Some(k) = self.keepalives() {
                lock(k).on_timeout(now, self.unix_time(now), &self.identity, out);
            }
            if let Some(r) = &self.registrar {
                r.on_sweep_timer(now, self.unix_time(now));
            }
        }
    }

    /// When `on_timeout` must next be called (the earliest of every lane).
    pub fn next_deadline(&self) -> Option<Instant> {
        (0..self.lanes())
            .filter_map(|lane| self.next_deadline_in(lane))
            .min()
    }

    /// Fire the timers of every lane due at `now`.
    pub fn on_timeout(&self, now: Instant, out: &mut Vec<Outgoing>) {
        for lane in 0..self.lanes() {
            if self.next_deadline_in(lane).is_some_and(|d| d <= now) {
                self.on_timeout_in(lane, now, out);
            }
        }
    }
}
