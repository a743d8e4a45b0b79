//! The INVITE server transaction: RFC 3261 §17.2.1 with the `Accepted`
//! state and Timer L of RFC 6026 §7.1 (figure 7 as corrected by RFC 6026).
//!
//! ```text
//!  Proceeding --2xx from TU--> Accepted --Timer L--> Terminated
//!      |                        (INVITE absorbed, 2xx passed through)
//!      +--300-699 from TU--> Completed --ACK--> Confirmed --Timer I--> Terminated
//!                               +--Timer H / transport error--> Terminated
//! ```
//!
//! RFC 3261 asks the transaction to send a 100 Trying if the TU does not
//! answer within 200 ms. The proxy core sends 100 Trying at once through
//! [`ServerInvite::send_response`], so the machine has no timer for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Action, Class, Machine, Timers, after, classify, due, earliest};

/// States of [`ServerInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// An INVITE server transaction, created when a new INVITE arrives (the
/// caller passes the INVITE to the TU itself).
///
/// No timer runs in `Proceeding`: the TU must eventually send a final
/// response (a proxy does, at the latest when its client transactions end).
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    reliable: bool,
    timers: Timers,
    /// Last provisional response in `Proceeding`; the 300-699 response in
    /// `Completed`.
    response: Option<Arc<[u8]>>,
    /// Timer G.
    retransmit_at: Option<Instant>,
    retransmit_interval: Duration,
    /// Timer H in `Completed`, I in `Confirmed`, L in `Accepted`.
    timeout_at: Option<Instant>,
}

impl ServerInvite {
    /// A new transaction in `Proceeding`. No timer runs until the TU sends
    /// a final response.
    pub fn new(_now: Instant, timers: Timers, reliable: bool) -> Self {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            reliable,
            timers,
            response: None,
            retransmit_at: None,
            retransmit_interval: timers.g(),
            timeout_at: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// Whether the transport is reliable (no Timer G, Timer I = 0).
    pub fn reliable(&self) -> bool {
        self.reliable
    }

    /// The TU sends a response through the transaction. `status` outside
    /// 100..=699 is ignored.
    ///
    /// * `Proceeding`: 1xx → transmitted and kept; 2xx → transmitted,
    ///   `Accepted`, Timer L; 300-699 → transmitted and kept, `Completed`,
    ///   Timers G (unreliable only) and H.
    /// * `Accepted`: 2xx (retransmissions by the TU, or 2xx of other
    ///   forked branches) are transmitted; others dropped.
    /// * other states: dropped (RFC 3261 allows one final response).
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
        match (self.state, class) {
            (ServerInviteState::Proceeding, Class::Provisional) => {
                let bytes = bytes.into();
                out.push(Action::Transmit(Arc::clone(&bytes)));
                self.response = Some(bytes);
            }
            (ServerInviteState::Proceeding, Class::Success) => {
                out.push(Action::Transmit(bytes.into()));
                self.state = ServerInviteState::Accepted;
                self.response = None;
                self.timeout_at = after(now, self.timers.l());
            }
            (ServerInviteState::Proceeding, Class::Failure) => {
                let bytes = bytes.into();
                out.push(Action::Transmit(Arc::clone(&bytes)));
                self.response = Some(bytes);
                self.state = ServerInviteState::Completed;
                self.retransmit_interval = self.timers.g();
                self.retransmit_at = if self.reliable {
                    None
                } else {
                    after(now, self.retransmit_interval)
                };
                self.timeout_at = after(now, self.timers.h());
            }
            (ServerInviteState::Accepted, Class::Success) => {
                out.push(Action::Transmit(bytes.into()));
            }
            _ => {}
        }
    }

    /// A retransmission of the INVITE matched this transaction.
    ///
    /// * `Proceeding`: the last provisional response is resent (nothing if
    ///   the TU sent none yet).
    /// * `Completed`: the final response is resent.
    /// * `Accepted`, `Confirmed`: absorbed.
    pub fn on_request_retransmission(&mut self, _now: Instant, out: &mut Vec<Action>) {
        match self.state {
            ServerInviteState::Proceeding | ServerInviteState::Completed => {
                if let Some(response) = &self.response {
                    out.push(Action::Transmit(Arc::clone(response)));
                }
            }
            ServerInviteState::Accepted
            | ServerInviteState::Confirmed
            | ServerInviteState::Terminated => {}
        }
    }

    /// An ACK matched this transaction.
    ///
    /// * `Completed`: → `Confirmed`: retransmissions stop, Timer H is
    ///   cancelled, Timer I starts.
    /// * `Confirmed`: absorbed.
    /// * `Accepted`: it acknowledges the 2xx: [`Action::DeliverAck`].
    /// * `Proceeding`: no final response was sent; dropped.
    pub fn on_ack(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            ServerInviteState::Completed => {
                self.state = ServerInviteState::Confirmed;
                self.retransmit_at = None;
                self.response = None;
                self.timeout_at = after(now, self.timers.i(self.reliable));
            }
            ServerInviteState::Accepted => out.push(Action::DeliverAck),
            ServerInviteState::Proceeding
            | ServerInviteState::Confirmed
            | ServerInviteState::Terminated => {}
        }
    }

    /// The transport failed to send a response. The TU is informed; per
    /// RFC 6026 figure 7 the transaction stays in `Proceeding` and
    /// `Accepted` (the TU may still answer; Timer L ends `Accepted`) and
    /// ends in `Completed`. In `Confirmed` nothing is sent, so nothing
    /// happens.
    pub fn on_transport_error(&mut self, _now: Instant, out: &mut Vec<Action>) {
        match self.state {
            ServerInviteState::Proceeding | ServerInviteState::Accepted => {
                out.push(Action::TransportError);
            }
            ServerInviteState::Completed => {
                out.push(Action::TransportError);
                self.terminate(out);
            }
            ServerInviteState::Confirmed | ServerInviteState::Terminated => {}
        }
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.state = ServerInviteState::Terminated;
        self.retransmit_at = None;
        self.timeout_at = None;
        self.response = None;
        out.push(Action::Terminated);
    }
}

impl Machine for ServerInvite {
    fn next_deadline(&self) -> Option<Instant> {
        earliest(self.retransmit_at, self.timeout_at)
    }

    fn retransmit_deadline(&self) -> Option<Instant> {
        self.retransmit_at
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        if due(self.timeout_at, now) {
            // H in Completed, I in Confirmed, L in Accepted.
            if self.state == ServerInviteState::Completed {
                out.push(Action::NoAck);
            }
            self.terminate(out);
            return;
        }
        if self.state == ServerInviteState::Completed && due(self.retransmit_at, now) {
            if let Some(response) = &self.response {
                out.push(Action::Transmit(Arc::clone(response)));
            }
            self.retransmit_interval = self
                .retransmit_interval
                .saturating_mul(2)
                .min(self.timers.t2);
            self.retransmit_at = after(now, self.retransmit_interval);
        }
    }

    fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Clock, tx};
    use super::*;

    const TRYING: &[u8] = b"SIP/2.0 100 Trying\r\n\r\n";
    const RINGING: &[u8] = b"SIP/2.0 180 Ringing\r\n\r\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\n\r\n";
    const BUSY: &[u8] = b"SIP/2.0 486 Busy Here\r\n\r\n";

    fn start(clock: &Clock, reliable: bool) -> ServerInvite {
        let mut s = ServerInvite::new(clock.at(0), Timers::default(), reliable);
        let mut out = Vec::new();
        s.send_response(clock.at(0), 100, TRYING, &mut out);
        assert_eq!(out, vec![tx(TRYING)]);
        s
    }

    fn fire(s: &mut ServerInvite, at: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        s.on_timeout(at, &mut out);
        out
    }

    #[test]
    fn proceeding_resends_last_provisional_on_retransmission() {
        let clock = Clock::new();
        let mut s = ServerInvite::new(clock.at(0), Timers::default(), false);
        let mut out = Vec::new();
        // Nothing sent yet: nothing to resend.
        s.on_request_retransmission(clock.at(0), &mut out);
        assert!(out.is_empty());
        s.send_response(clock.at(0), 100, TRYING, &mut out);
        out.clear();
        s.on_request_retransmission(clock.at(500), &mut out);
        assert_eq!(out, vec![tx(TRYING)]);
        out.clear();
        s.send_response(clock.at(600), 180, RINGING, &mut out);
        assert_eq!(out, vec![tx(RINGING)]);
        out.clear();
        s.on_request_retransmission(clock.at(1_500), &mut out);
        assert_eq!(out, vec![tx(RINGING)]);
        assert_eq!(s.state(), ServerInviteState::Proceeding);
        assert_eq!(s.next_deadline(), None);
        // ACK in Proceeding is dropped.
        out.clear();
        s.on_ack(clock.at(1_600), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.state(), ServerInviteState::Proceeding);
    }

    #[test]
    fn success_goes_to_accepted_absorbs_invites_until_timer_l() {
        let clock = Clock::new();
        let mut s = start(&clock, false);
        let mut out = Vec::new();
        s.send_response(clock.at(1_000), 200, OK, &mut out);
        assert_eq!(out, vec![tx(OK)]);
        assert_eq!(s.state(), ServerInviteState::Accepted);
        // INVITE retransmissions absorbed.
        out.clear();
        s.on_request_retransmission(clock.at(1_500), &mut out);
        assert!(out.is_empty());
        // 2xx retransmissions from the TU are passed through.
        s.send_response(clock.at(1_500), 200, OK, &mut out);
        assert_eq!(out, vec![tx(OK)]);
        // Non-2xx dropped.
        out.clear();
        s.send_response(clock.at(1_500), 486, BUSY, &mut out);
        s.send_response(clock.at(1_500), 180, RINGING, &mut out);
        assert!(out.is_empty());
        // ACK for the 2xx goes to the TU.
        s.on_ack(clock.at(1_600), &mut out);
        assert_eq!(out, vec![Action::DeliverAck]);
        assert_eq!(s.state(), ServerInviteState::Accepted);
        // Timer L = 64*T1, on reliable transports too.
        assert_eq!(s.next_deadline(), Some(clock.at(33_000)));
        assert!(fire(&mut s, clock.at(32_999)).is_empty());
        assert_eq!(fire(&mut s, clock.at(33_000)), vec![Action::Terminated]);
        let mut r = start(&clock, true);
        r.send_response(clock.at(0), 200, OK, &mut out);
        assert_eq!(r.next_deadline(), Some(clock.at(32_000)));
    }

    #[test]
    fn failure_retransmits_on_timer_g_capped_at_t2_until_timer_h() {
        let clock = Clock::new();
        let mut s = start(&clock, false);
        let mut out = Vec::new();
        s.send_response(clock.at(0), 486, BUSY, &mut out);
        assert_eq!(out, vec![tx(BUSY)]);
        assert_eq!(s.state(), ServerInviteState::Completed);
        // G: 0.5, 1, 2, 4, 4, ... → fires at 0.5, 1.5, 3.5, 7.5, 11.5, ...
        let mut expected = vec![500u64, 1_500, 3_500];
        let mut t = 3_500;
        while t + 4_000 < 32_000 {
            t += 4_000;
            expected.push(t);
        }
        for t in expected {
            assert_eq!(s.next_deadline(), Some(clock.at(t)));
            assert!(fire(&mut s, clock.at(t - 1)).is_empty());
            assert_eq!(fire(&mut s, clock.at(t)), vec![tx(BUSY)]);
        }
        // INVITE retransmission in Completed: final response again.
        out.clear();
        s.on_request_retransmission(clock.at(30_000), &mut out);
        assert_eq!(out, vec![tx(BUSY)]);
        // Timer H at 64*T1 = 32 s: the TU learns no ACK came.
        assert_eq!(s.next_deadline(), Some(clock.at(32_000)));
        assert!(fire(&mut s, clock.at(31_999)).is_empty());
        assert_eq!(
            fire(&mut s, clock.at(32_000)),
            vec![Action::NoAck, Action::Terminated]
        );
        assert!(s.is_terminated());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn ack_in_completed_confirms_and_stops_retransmissions() {
        let clock = Clock::new();
        let mut s = start(&clock, false);
        let mut out = Vec::new();
        s.send_response(clock.at(0), 404, BUSY, &mut out);
        assert_eq!(fire(&mut s, clock.at(500)), vec![tx(BUSY)]);
        out.clear();
        s.on_ack(clock.at(700), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.state(), ServerInviteState::Confirmed);
        // Absorbs further ACKs and INVITEs; no retransmissions.
        s.on_ack(clock.at(800), &mut out);
        s.on_request_retransmission(clock.at(800), &mut out);
        s.send_response(clock.at(800), 500, BUSY, &mut out);
        assert!(out.is_empty());
        // Timer I = T4 = 5 s.
        assert_eq!(s.next_deadline(), Some(clock.at(5_700)));
        assert!(fire(&mut s, clock.at(5_699)).is_empty());
        assert_eq!(fire(&mut s, clock.at(5_700)), vec![Action::Terminated]);
    }

    #[test]
    fn reliable_no_timer_g_and_zero_timer_i() {
        let clock = Clock::new();
        let mut s = start(&clock, true);
        let mut out = Vec::new();
        s.send_response(clock.at(0), 603, BUSY, &mut out);
        // Only Timer H.
        assert_eq!(s.next_deadline(), Some(clock.at(32_000)));
        s.on_ack(clock.at(100), &mut out);
        assert_eq!(s.next_deadline(), Some(clock.at(100)));
        assert_eq!(fire(&mut s, clock.at(100)), vec![Action::Terminated]);
    }

    #[test]
    fn transport_errors() {
        let clock = Clock::new();
        let mut out = Vec::new();
        // Proceeding: inform, stay.
        let mut s = start(&clock, false);
        s.on_transport_error(clock.at(1), &mut out);
        assert_eq!(out, vec![Action::TransportError]);
        assert_eq!(s.state(), ServerInviteState::Proceeding);
        // Accepted: inform, stay.
        out.clear();
        s.send_response(clock.at(2), 200, OK, &mut out);
        out.clear();
        s.on_transport_error(clock.at(3), &mut out);
        assert_eq!(out, vec![Action::TransportError]);
        assert_eq!(s.state(), ServerInviteState::Accepted);
        // Completed: inform, terminate.
        let mut s = start(&clock, false);
        s.send_response(clock.at(2), 480, BUSY, &mut out);
        out.clear();
        s.on_transport_error(clock.at(3), &mut out);
        assert_eq!(out, vec![Action::TransportError, Action::Terminated]);
        assert!(s.is_terminated());
    }
}
