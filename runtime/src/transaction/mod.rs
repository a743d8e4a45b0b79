//! The SIP transaction layer (RFC 3261 §17, updated by RFC 6026 and aware of
//! RFC 4320) as sans-IO state machines.
//!
//! Nothing in here owns a socket, reads a clock or spawns a task. Each
//! machine is a small struct driven by three kinds of input, all carrying the
//! current time `now` supplied by the caller:
//!
//! * typed events the caller derives after parsing a message
//!   (`on_response(now, status, ..)`, `on_request_retransmission(now, ..)`,
//!   `on_ack(now, ..)`, `send_response(now, status, bytes, ..)`,
//!   `on_transport_error(now, ..)`);
//! * timer expiry: the caller asks [`Machine::next_deadline`] and calls
//!   [`Machine::on_timeout`] once that instant has passed;
//! * construction (a client machine transmits its request at once).
//!
//! Every input appends [`Action`]s to a caller-provided `Vec<Action>` (reuse
//! it across calls: the machines never allocate per event). Messages are
//! opaque bytes: the machines never parse SIP. What must be retransmitted is
//! kept as an `Arc<[u8]>`, so a retransmission is a reference-count bump and
//! not a copy.
//!
//! Layout:
//! * [`ClientInvite`], [`ClientNonInvite`], [`ServerInvite`],
//!   [`ServerNonInvite`]: the four machines of RFC 3261 figures 5-8 (with the
//!   RFC 6026 `Accepted` state for INVITE);
//! * [`TransactionKey`] (`key.rs`): matching of requests and responses to
//!   transactions (§17.1.3, §17.2.3 and the RFC 2543 fallback);
//! * [`TransactionTable`] (`table.rs`): a bounded store keyed by
//!   [`TransactionKey`] with a deadline index for the driver.

mod client_invite;
mod client_non_invite;
mod key;
mod server_invite;
mod server_non_invite;
mod table;
mod timers;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use key::{MAGIC_COOKIE, RequestKeyFields, TransactionKey, has_magic_cookie};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use table::{InsertError, TransactionId, TransactionTable};
pub use timers::Timers;

/// What a machine asks its caller to do. Appended, in order, to the
/// caller's `Vec<Action>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put these bytes on the wire towards the transaction's peer: the
    /// request (client) or a response (server), first copy or
    /// retransmission.
    Transmit(Arc<[u8]>),
    /// Pass the response just given to `on_response` up to the TU.
    DeliverResponse { status: u16 },
    /// Client INVITE only: a 300-699 response arrived and the ACK must be
    /// sent. The caller builds it (same branch and Request-URI as the
    /// INVITE, To with the tag of the response, CSeq method ACK, ...) and
    /// hands it to [`ClientInvite::send_ack`], which transmits it and keeps
    /// it to answer retransmitted final responses.
    BuildAck { status: u16 },
    /// Server INVITE only: an ACK arrived in the `Accepted` state. It
    /// acknowledges a 2xx and is not part of the transaction: pass it to the
    /// TU (a proxy forwards it like any ACK for a 2xx).
    DeliverAck,
    /// Client transactions: Timer B (INVITE) or Timer F (non-INVITE) fired
    /// before a final response arrived. The TU treats this like a 408 from
    /// the downstream side; for a non-INVITE request RFC 4320 §4.2 forbids a
    /// transaction-stateful element to send a 408 upstream, so a proxy
    /// must not turn this into a 408 response.
    Timeout,
    /// Server INVITE only: Timer H fired, no ACK came for the final
    /// response. The transaction ends right after.
    NoAck,
    /// The transport reported a failure for this transaction.
    TransportError,
    /// The machine reached the `Terminated` state; it may be dropped.
    Terminated,
}

/// What every machine offers the [`TransactionTable`] and the driver.
pub trait Machine {
    /// The earliest instant at which [`Machine::on_timeout`] has work to do,
    /// or `None` when no timer runs.
    fn next_deadline(&self) -> Option<Instant>;
    /// The earliest retransmission timer (A, E, G): what must fire on time
    /// because something is sent then. The other timers only end a wait and
    /// may fire a little late (see [`TransactionTable::with_timeout_slack`]).
    /// By default every deadline counts as a retransmission.
    fn retransmit_deadline(&self) -> Option<Instant> {
        self.next_deadline()
    }
    /// Handles every timer due at `now`.
    fn on_timeout(&mut self, now: Instant, out: &mut Vec<Action>);
    /// Whether the machine reached `Terminated`.
    fn is_terminated(&self) -> bool;
}

/// Any of the four machines, for a table that holds them all (the proxy
/// core may instead wrap the machines in its own enum with its state).
#[derive(Debug)]
pub enum Transaction {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

impl Machine for Transaction {
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Transaction::ClientInvite(m) => m.next_deadline(),
            Transaction::ClientNonInvite(m) => m.next_deadline(),
            Transaction::ServerInvite(m) => m.next_deadline(),
            Transaction::ServerNonInvite(m) => m.next_deadline(),
        }
    }

    fn retransmit_deadline(&self) -> Option<Instant> {
        match self {
            Transaction::ClientInvite(m) => m.retransmit_deadline(),
            Transaction::ClientNonInvite(m) => m.retransmit_deadline(),
            Transaction::ServerInvite(m) => m.retransmit_deadline(),
            Transaction::ServerNonInvite(m) => m.retransmit_deadline(),
        }
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self {
            Transaction::ClientInvite(m) => m.on_timeout(now, out),
            Transaction::ClientNonInvite(m) => m.on_timeout(now, out),
            Transaction::ServerInvite(m) => m.on_timeout(now, out),
            Transaction::ServerNonInvite(m) => m.on_timeout(now, out),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Transaction::ClientInvite(m) => m.is_terminated(),
            Transaction::ClientNonInvite(m) => m.is_terminated(),
            Transaction::ServerInvite(m) => m.is_terminated(),
            Transaction::ServerNonInvite(m) => m.is_terminated(),
        }
    }
}

/// `now + d`, or `None` (a timer that never fires) if that overflows.
fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// Whether a timer set to `at` is due at `now`.
fn due(at: Option<Instant>, now: Instant) -> bool {
    matches!(at, Some(at) if at <= now)
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Response classes as the machines see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Provisional,
    Success,
    Failure,
}

fn classify(status: u16) -> Option<Class> {
    match status {
        100..=199 => Some(Class::Provisional),
        200..=299 => Some(Class::Success),
        300..=699 => Some(Class::Failure),
        _ => None,
    }
}

#[cfg(test)]
mod test_util {
    //! Shared test helpers: a fake clock and action filters.
    use super::Action;
    use std::time::{Duration, Instant};

    pub fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A fake clock: a fixed base plus offsets in milliseconds.
    pub struct Clock(pub Instant);
    impl Clock {
        pub fn new() -> Self {
            Clock(Instant::now())
        }
        pub fn at(&self, offset_ms: u64) -> Instant {
            self.0 + ms(offset_ms)
        }
    }

    pub fn transmits(out: &[Action]) -> usize {
        out.iter()
            .filter(|a| matches!(a, Action::Transmit(_)))
            .count()
    }

    pub fn tx(bytes: &[u8]) -> Action {
        Action::Transmit(bytes.into())
    }
}
