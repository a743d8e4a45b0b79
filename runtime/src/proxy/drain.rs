//! Draining: what an instance does between SIGTERM and its exit.
//!
//! The sockets stay open and are still read: with SO_REUSEPORT the kernel
//! keeps hashing some flows to this process, and a datagram queued on a
//! socket nobody reads is lost. Whatever belongs to an open transaction
//! (responses, retransmissions, ACK, CANCEL) is handled as before, so
//! those calls finish here, failure routes included. A request that would
//! open a new transaction (`relay` of a request no transaction knows) is
//! handled according to the [`DrainMode`]; everything else (`forward`,
//! `reply`, `drop`, responses) is stateless and unchanged.

/// What a draining instance does with a request its route relays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DrainMode {
    /// Forward it statelessly (like `forward` to the same target): the call
    /// goes through and leaves no state here, so any instance can carry
    /// its responses, ACK and CANCEL. The failure route does not run for it.
    #[default]
    Stateless,
    /// Answer 503 with `Retry-After`, so that an upstream with other
    /// targets (DNS SRV, a dispatcher) fails over at once.
    Reject,
    /// Keep relaying statefully: the instance drains only when traffic
    /// stops, or at the shutdown deadline.
    Relay,
}

/// The header sent with the 503 of [`DrainMode::Reject`].
pub const REJECT_HEADERS: &[u8] = b"Retry-After: 1\r\n";

/// How a relayed request that matches no transaction is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NewRelay {
    /// As usual: a new transaction.
    Stateful,
    /// Forwarded statelessly.
    Stateless,
    /// Answered 503.
    Reject,
}

pub(crate) fn new_relay(draining: Option<DrainMode>) -> NewRelay {
    match draining {
        None | Some(DrainMode::Relay) => NewRelay::Stateful,
        Some(DrainMode::Stateless) => NewRelay::Stateless,
        Some(DrainMode::Reject) => NewRelay::Reject,
    }
}
