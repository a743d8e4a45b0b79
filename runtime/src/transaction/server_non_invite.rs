//! The non-INVITE server transaction: RFC 3261 §17.2.2 (figure 8).
//!
//! ```text
//!  Trying --1xx from TU--> Proceeding --200-699 from TU--> Completed --Timer J--> Terminated
//!     \----200-699 from TU-----------------------------/
//!  Proceeding/Completed --transport error--> Terminated
//! ```
//!
//! RFC 4320 reminders for the TU (not enforced here): send no provisional
//! response other than 100 to a non-INVITE request, and no 100 before the
//! client's Timer E reached T2.

use std::sync::Arc;
use std::time::Instant;

use super::{Action, Class, Machine, Timers, after, classify, due};

/// States of [`ServerNonInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A non-INVITE server transaction, created when a new non-INVITE request
/// (other than ACK) arrives.
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reliable: bool,
    timers: Timers,
    /// The last response sent.
    response: Option<Arc<[u8]>>,
    /// Timer J.
    timeout_at: Option<Instant>,
}

impl ServerNonInvite {
    /// A new transaction in `Trying`.
    pub fn new(_now: Instant, timers: Timers, reliable: bool) -> Self {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            reliable,
            timers,
            response: None,
            timeout_at: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// Whether the transport is reliable (Timer J = 0).
    pub fn reliable(&self) -> bool {
        self.reliable
    }

    /// The TU sends a response. `status` outside 100..=699 is ignored.
    ///
    /// * `Trying`/`Proceeding`: 1xx → transmitted and kept, `Proceeding`;
    ///   200-699 → transmitted and kept, `Completed`, Timer J.
    /// * `Completed`: dropped (one final response only).
    pub fn send_response(
        &mut self,
        now: Instant,
        status: u16,
        bytes: impl Into<Arc<[u8]>>,
        out: &mut Vec<Action>,
    ) {
        let Some(class) = classify(status) else {
            return;
        };
        if !matches!(
            self.state,
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding
        ) {
            return;
        }
        let bytes = bytes.into();
        out.push(Action::Transmit(Arc::clone(&bytes)));
        self.response = Some(bytes);
        if class == Class::Provisional {
            self.state = ServerNonInviteState::Proceeding;
        } else {
            self.state = ServerNonInviteState::Completed;
            self.timeout_at = after(now, self.timers.j(self.reliable));
        }
    }

    /// A retransmission of the request matched this transaction: resend the
    /// last response (`Proceeding`, `Completed`); nothing in `Trying`.
    pub fn on_request_retransmission(&mut self, _now: Instant, out: &mut Vec<Action>) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) && let Some(response) = &self.response
        {
            out.push(Action::Transmit(Arc::clone(response)));
        }
    }

    /// The transport failed to send a response: the TU is informed and the
    /// transaction ends (§17.2.4).
    pub fn on_transport_error(&mut self, _now: Instant, out: &mut Vec<Action>) {
        if self.state == ServerNonInviteState::Terminated {
            return;
        }
        out.push(Action::TransportError);
        self.terminate(out);
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.state = ServerNonInviteState::Terminated;
        self.timeout_at = None;
        self.response = None;
        out.push(Action::Terminated);
    }
}

impl Machine for ServerNonInvite {
    fn next_deadline(&self) -> Option<Instant> {
        self.timeout_at
    }

    /// A non-INVITE server transaction resends its response only when the
    /// request comes again: no timer of it sends anything.
    fn retransmit_deadline(&self) -> Option<Instant> {
        None
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == ServerNonInviteState::Completed && due(self.timeout_at, now) {
            self.terminate(out);
        }
    }

    fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Clock, tx};
    use super::*;

    const TRYING: &[u8] = b"SIP/2.0 100 Trying\r\n\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\n\r\n";
    const NOT_FOUND: &[u8] = b"SIP/2.0 404 Not Found\r\n\r\n";

    fn fire(s: &mut ServerNonInvite, at: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        s.on_timeout(at, &mut out);
        out
    }

    #[test]
    fn trying_absorbs_retransmissions() {
        let clock = Clock::new();
        let mut s = ServerNonInvite::new(clock.at(0), Timers::default(), false);
        let mut out = Vec::new();
        s.on_request_retransmission(clock.at(500), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.state(), ServerNonInviteState::Trying);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn proceeding_resends_provisional_then_completed_resends_final_until_timer_j() {
        let clock = Clock::new();
        let mut s = ServerNonInvite::new(clock.at(0), Timers::default(), false);
        let mut out = Vec::new();
        s.send_response(clock.at(0), 100, TRYING, &mut out);
        assert_eq!(s.state(), ServerNonInviteState::Proceeding);
        out.clear();
        s.on_request_retransmission(clock.at(500), &mut out);
        assert_eq!(out, vec![tx(TRYING)]);
        // A further provisional replaces the kept one.
        out.clear();
        s.send_response(clock.at(600), 100, b"100 again".as_slice(), &mut out);
        assert_eq!(s.state(), ServerNonInviteState::Proceeding);
        out.clear();
        s.on_request_retransmission(clock.at(700), &mut out);
        assert_eq!(out, vec![tx(b"100 again")]);
        assert_eq!(s.next_deadline(), None);
        out.clear();
        s.send_response(clock.at(1_000), 200, OK, &mut out);
        assert_eq!(out, vec![tx(OK)]);
        assert_eq!(s.state(), ServerNonInviteState::Completed);
        out.clear();
        s.on_request_retransmission(clock.at(2_000), &mut out);
        assert_eq!(out, vec![tx(OK)]);
        // Other final responses are dropped.
        out.clear();
        s.send_response(clock.at(2_000), 404, NOT_FOUND, &mut out);
        assert!(out.is_empty());
        // Timer J = 64*T1.
        assert_eq!(s.next_deadline(), Some(clock.at(33_000)));
        assert!(fire(&mut s, clock.at(32_999)).is_empty());
        assert_eq!(fire(&mut s, clock.at(33_000)), vec![Action::Terminated]);
    }

    #[test]
    fn final_from_trying_and_reliable_timer_j_zero() {
        let clock = Clock::new();
        let mut s = ServerNonInvite::new(clock.at(0), Timers::default(), true);
        let mut out = Vec::new();
        s.send_response(clock.at(10), 404, NOT_FOUND, &mut out);
        assert_eq!(out, vec![tx(NOT_FOUND)]);
        assert_eq!(s.state(), ServerNonInviteState::Completed);
        assert_eq!(s.next_deadline(), Some(clock.at(10)));
        assert_eq!(fire(&mut s, clock.at(10)), vec![Action::Terminated]);
    }

    #[test]
    fn transport_error_terminates() {
        let clock = Clock::new();
        let mut s = ServerNonInvite::new(clock.at(0), Timers::default(), false);
        let mut out = Vec::new();
        s.send_response(clock.at(0), 200, OK, &mut out);
        out.clear();
        s.on_transport_error(clock.at(1), &mut out);
        assert_eq!(out, vec![Action::TransportError, Action::Terminated]);
        assert_eq!(s.next_deadline(), None);
    }
}
