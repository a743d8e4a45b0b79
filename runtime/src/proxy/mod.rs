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

pub mod branch;
pub mod destinations;
pub mod drain;
pub mod forward;
pub mod identity;
pub mod probe;
pub mod received;
pub mod reply;
pub mod route_set;
pub mod stateful;
mod stateless;

use std::net::SocketAddr;
use std::sync::Arc;
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

/// Settings of the core that are not in the routes file.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    /// T1, T2, T4 (RFC 3261 §17); tests shorten them.
    pub timers: Timers,
    /// Most transactions kept at once; over it a new request gets 503.
    pub max_transactions: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            timers: Timers::default(),
            max_transactions: 200_000,
        }
    }
}

/// The proxy core: the compiled routes, who we are, the transactions.
pub struct Core {
    routes: &'static dyn Routes,
    identity: Identity,
    timers: Timers,
    stateful: stateful::Stateful,
    /// Set once the instance drains (see [`drain`]).
    draining: Option<DrainMode>,
    destinations: destinations::Destinations,
    probes: probe::Prober,
}

impl Core {
    pub fn new(routes: &'static dyn Routes, identity: Identity, config: CoreConfig) -> Core {
        Core {
            routes,
            identity,
            timers: config.timers,
            stateful: stateful::Stateful::new(config.max_transactions, config.timers),
            draining: None,
            destinations: destinations::Destinations::new(routes.settings().destinations),
            probes: probe::Prober::new(routes.settings().destinations),
        }
    }

    /// Start the periodic work that needs no message: the health probes of
    /// destination sets (the first ones are due at `now`). The network
    /// layer calls it once its sockets are bound.
    pub fn start(&mut self, now: Instant) {
        self.probes.start(now);
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
        self.stateful.len()
    }

    /// The random tag of this instance, the last part of its stateful
    /// branches (see `net::sibling`).
    pub fn instance(&self) -> u32 {
        self.identity.instance()
    }

    /// Transactions still waiting for their final response: the ones a
    /// draining instance waits for (the rest only absorb retransmissions).
    pub fn pending_transactions(&self) -> usize {
        self.stateful.pending()
    }

    /// Start draining: requests that would open a transaction are handled
    /// as `mode` says; everything else goes on as before.
    pub fn start_draining(&mut self, mode: DrainMode) {
        self.draining = Some(mode);
    }

    /// The drain mode, once draining.
    pub fn draining(&self) -> Option<DrainMode> {
        self.draining
    }

    /// Handle one received datagram that arrived on socket `socket` from
    /// `source` at `now`; what must be sent is pushed onto `out`.
    pub fn handle(
        &mut self,
        now: Instant,
        datagram: &[u8],
        source: SocketAddr,
        socket: usize,
        out: &mut Vec<Outgoing>,
    ) {
        // RFC 3261 §7: CRLF ends every line. A header section with lines
        // ending in LF alone is handled (and so forwarded) as its CRLF copy:
        // nothing leaves with mixed line ends. A bare CR is refused later.
        let normalised = crate::sip::crlf_normalised(datagram);
        let datagram = normalised.as_deref().unwrap_or(datagram);
        stateless::handle(self, now, datagram, source, socket, out);
        crate::metrics::set_active_transactions(self.stateful.len());
    }

    /// When `on_timeout` must next be called.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let txn = self.stateful.next_deadline();
        match (txn, self.probes.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fire the timers due at `now`.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        let env = stateful::Env::new(self.routes, &self.identity, self.timers, &self.destinations);
        self.stateful.on_timeout(&env, now, out);
        crate::metrics::set_active_transactions(self.stateful.len());
        self.probes
            .on_timeout(now, &self.identity, self.timers, &self.destinations, out);
    }
}
