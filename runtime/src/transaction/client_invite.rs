//! The INVITE client transaction: RFC 3261 §17.1.1 with the `Accepted`
//! state and Timer M of RFC 6026 §7.2 (figure 5 as corrected by RFC 6026).
//!
//! ```text
//!  Calling --1xx--> Proceeding --2xx--> Accepted --Timer M--> Terminated
//!     |  \---2xx-----------------------/  ^ 2xx: deliver again
//!     |  \--300-699--> Completed --Timer D--> Terminated
//!     +--Timer B / transport error--> Terminated
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Action, Class, Machine, Timers, after, classify, due, earliest};

/// States of [`ClientInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Accepted,
    Completed,
    Terminated,
}

/// An INVITE client transaction.
///
/// Created with the INVITE bytes, which it transmits at once. On unreliable
/// transports it retransmits them on Timer A (T1, then doubling after every
/// retransmission with no cap, §17.1.1.2) until a response arrives or
/// Timer B (64*T1) reports [`Action::Timeout`]. Once a provisional response
/// arrived (`Proceeding`) no timer runs: a proxy bounds that phase with its
/// own Timer C (§16.8) and then CANCELs.
#[derive(Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    reliable: bool,
    timers: Timers,
    request: Arc<[u8]>,
    /// The ACK for a 300-699 response, once the caller built it.
    ack: Option<Arc<[u8]>>,
    /// Timer A.
    retransmit_at: Option<Instant>,
    retransmit_interval: Duration,
    /// Timer B in `Calling`, D in `Completed`, M in `Accepted`.
    timeout_at: Option<Instant>,
}

impl ClientInvite {
    /// Starts the transaction: appends the first [`Action::Transmit`] of
    /// `request` and starts Timers A (unreliable only) and B.
    pub fn new(
        now: Instant,
        timers: Timers,
        reliable: bool,
        request: impl Into<Arc<[u8]>>,
        out: &mut Vec<Action>,
    ) -> Self {
        let request = request.into();
        out.push(Action::Transmit(Arc::clone(&request)));
        let retransmit_at = if reliable {
            None
        } else {
            after(now, timers.a())
        };
        ClientInvite {
            state: ClientInviteState::Calling,
            reliable,
            timers,
            request,
            ack: None,
            retransmit_at,
            retransmit_interval: timers.a(),
            timeout_at: after(now, timers.b()),
        }
    }

    /// Current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// Whether the transport is reliable (no retransmissions, Timer D = 0).
    pub fn reliable(&self) -> bool {
        self.reliable
    }

    /// The INVITE this transaction sends (e.g. to build a CANCEL or an ACK
    /// from it); empty once a 2xx made it `Accepted`.
    pub fn request(&self) -> &Arc<[u8]> {
        &self.request
    }

    /// A response matched this transaction (§17.1.3). `status` outside
    /// 100..=699 is ignored.
    ///
    /// * `Calling`/`Proceeding`: 1xx → `Proceeding` (retransmissions and
    ///   Timer B stop), delivered; 2xx → delivered, `Accepted`, Timer M;
    ///   300-699 → delivered, [`Action::BuildAck`], `Completed`, Timer D.
    /// * `Accepted`: every 2xx is delivered again (RFC 6026 §7.2), other
    ///   responses are dropped.
    /// * `Completed`: a retransmitted 300-699 is answered with the same ACK
    ///   ([`Action::Transmit`], or [`Action::BuildAck`] again if the caller
    ///   has not provided it yet) and is not delivered; others are dropped.
    pub fn on_response(&mut self, now: Instant, status: u16, out: &mut Vec<Action>) {
        let Some(class) = classify(status) else {
            return;
        };
        match self.state {
            ClientInviteState::Calling | ClientInviteState::Proceeding => match class {
                Class::Provisional => {
                    self.state = ClientInviteState::Proceeding;
                    self.retransmit_at = None;
                    self.timeout_at = None;
                    out.push(Action::DeliverResponse { status });
                }
                Class::Success => {
                    self.state = ClientInviteState::Accepted;
                    self.retransmit_at = None;
                    self.timeout_at = after(now, self.timers.m());
                    // Never sent again (the 2xx's ACK is end to end, no
                    // CANCEL after a final response): free it for Timer M's
                    // 32 s of lingering.
                    self.request = Arc::from(&[][..]);
                    out.push(Action::DeliverResponse { status });
                }
                Class::Failure => {
                    self.state = ClientInviteState::Completed;
                    self.retransmit_at = None;
                    // With a reliable transport Timer D is 0: it is due at
                    // `now`, leaving the caller the chance to send the ACK
                    // before the driver's next `on_timeout`.
                    self.timeout_at = after(now, self.timers.d(self.reliable));
                    out.push(Action::DeliverResponse { status });
                    out.push(Action::BuildAck { status });
                }
            },
            ClientInviteState::Accepted => {
                if class == Class::Success {
                    out.push(Action::DeliverResponse { status });
                }
            }
            ClientInviteState::Completed => {
                if class == Class::Failure {
                    match &self.ack {
                        Some(ack) => out.push(Action::Transmit(Arc::clone(ack))),
                        None => out.push(Action::BuildAck { status }),
                    }
                }
            }
            ClientInviteState::Terminated => {}
        }
    }

    /// The caller's answer to [`Action::BuildAck`]: keeps the ACK and
    /// transmits it. Ignored outside `Completed`, and when an ACK was
    /// already given (the first one is kept and resent).
    pub fn send_ack(&mut self, _now: Instant, ack: impl Into<Arc<[u8]>>, out: &mut Vec<Action>) {
        if self.state != ClientInviteState::Completed || self.ack.is_some() {
            return;
        }
        let ack = ack.into();
        out.push(Action::Transmit(Arc::clone(&ack)));
        self.ack = Some(ack);
    }

    /// The transport failed to send the INVITE or the ACK: the TU is
    /// informed and the transaction ends (§17.1.4).
    pub fn on_transport_error(&mut self, _now: Instant, out: &mut Vec<Action>) {
        if self.state == ClientInviteState::Terminated {
            return;
        }
        out.push(Action::TransportError);
        self.terminate(out);
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.state = ClientInviteState::Terminated;
        self.retransmit_at = None;
        self.timeout_at = None;
        self.ack = None;
        out.push(Action::Terminated);
    }
}

impl Machine for ClientInvite {
    fn next_deadline(&self) -> Option<Instant> {
        earliest(self.retransmit_at, self.timeout_at)
    }

    fn retransmit_deadline(&self) -> Option<Instant> {
        self.retransmit_at
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        if due(self.timeout_at, now) {
            // B in Calling, D in Completed, M in Accepted.
            if self.state == ClientInviteState::Calling {
                out.push(Action::Timeout);
            }
            self.terminate(out);
            return;
        }
        if self.state == ClientInviteState::Calling && due(self.retransmit_at, now) {
            out.push(Action::Transmit(Arc::clone(&self.request)));
            self.retransmit_interval = self.retransmit_interval.saturating_mul(2);
            self.retransmit_at = after(now, self.retransmit_interval);
        }
    }

    fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Clock, ms, transmits, tx};
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n";
    const ACK: &[u8] = b"ACK sip:bob@example.com SIP/2.0\r\n\r\n";

    fn start(clock: &Clock, reliable: bool) -> (ClientInvite, Vec<Action>) {
        let mut out = Vec::new();
        let c = ClientInvite::new(clock.at(0), Timers::default(), reliable, INVITE, &mut out);
        (c, out)
    }

    /// Fires timers at `at` and returns what came out.
    fn fire(c: &mut ClientInvite, at: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        c.on_timeout(at, &mut out);
        out
    }

    #[test]
    fn transmits_invite_at_once() {
        let clock = Clock::new();
        let (c, out) = start(&clock, false);
        assert_eq!(out, vec![tx(INVITE)]);
        assert_eq!(c.state(), ClientInviteState::Calling);
        assert_eq!(c.next_deadline(), Some(clock.at(500)));
    }

    #[test]
    fn timer_a_doubles_without_cap_until_timer_b() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, false);
        // Retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: intervals
        // 0.5, 1, 2, 4, 8, 16 (beyond T2 = 4 s: no cap for INVITE).
        let mut t = 0;
        let mut interval = 500;
        for _ in 0..6 {
            t += interval;
            assert_eq!(c.next_deadline(), Some(clock.at(t)));
            assert!(fire(&mut c, clock.at(t - 1)).is_empty(), "not before {t}");
            assert_eq!(fire(&mut c, clock.at(t)), vec![tx(INVITE)]);
            interval *= 2;
        }
        // Next A would be at 63.5 s, but B fires at 32 s.
        assert_eq!(c.next_deadline(), Some(clock.at(32_000)));
        assert!(fire(&mut c, clock.at(31_999)).is_empty());
        assert_eq!(
            fire(&mut c, clock.at(32_000)),
            vec![Action::Timeout, Action::Terminated]
        );
        assert!(c.is_terminated());
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn reliable_has_no_timer_a_but_timer_b() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, true);
        assert_eq!(c.next_deadline(), Some(clock.at(32_000)));
        assert_eq!(
            fire(&mut c, clock.at(32_000)),
            vec![Action::Timeout, Action::Terminated]
        );
    }

    #[test]
    fn provisional_moves_to_proceeding_and_stops_timers() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, false);
        let mut out = Vec::new();
        c.on_response(clock.at(100), 100, &mut out);
        assert_eq!(out, vec![Action::DeliverResponse { status: 100 }]);
        assert_eq!(c.state(), ClientInviteState::Proceeding);
        assert_eq!(c.next_deadline(), None);
        assert!(fire(&mut c, clock.at(60_000)).is_empty());
        out.clear();
        c.on_response(clock.at(200), 180, &mut out);
        assert_eq!(out, vec![Action::DeliverResponse { status: 180 }]);
        assert_eq!(c.state(), ClientInviteState::Proceeding);
    }

    #[test]
    fn success_goes_to_accepted_and_redelivers_2xx_until_timer_m() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, false);
        let mut out = Vec::new();
        c.on_response(clock.at(100), 180, &mut out);
        out.clear();
        assert!(!c.request().is_empty());
        c.on_response(clock.at(1_000), 200, &mut out);
        assert_eq!(out, vec![Action::DeliverResponse { status: 200 }]);
        assert_eq!(c.state(), ClientInviteState::Accepted);
        assert!(
            c.request().is_empty(),
            "the INVITE is not kept while lingering"
        );
        assert_eq!(c.next_deadline(), Some(clock.at(33_000)));
        // RFC 6026: retransmitted (or forked) 2xx are delivered again.
        out.clear();
        c.on_response(clock.at(2_000), 200, &mut out);
        assert_eq!(out, vec![Action::DeliverResponse { status: 200 }]);
        // Non-2xx in Accepted are dropped.
        out.clear();
        c.on_response(clock.at(2_000), 486, &mut out);
        c.on_response(clock.at(2_000), 180, &mut out);
        assert!(out.is_empty());
        assert!(fire(&mut c, clock.at(32_999)).is_empty());
        assert_eq!(fire(&mut c, clock.at(33_000)), vec![Action::Terminated]);
    }

    #[test]
    fn success_from_calling_goes_to_accepted() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, false);
        let mut out = Vec::new();
        c.on_response(clock.at(10), 200, &mut out);
        assert_eq!(c.state(), ClientInviteState::Accepted);
        // Timer A stopped: only M remains.
        assert_eq!(c.next_deadline(), Some(clock.at(32_010)));
        // Timer M runs on reliable transports too.
        let (mut r, _) = start(&clock, true);
        r.on_response(clock.at(10), 200, &mut out);
        assert_eq!(r.next_deadline(), Some(clock.at(32_010)));
    }

    #[test]
    fn failure_asks_for_ack_and_reacks_retransmissions_without_delivering() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, false);
        let mut out = Vec::new();
        c.on_response(clock.at(100), 486, &mut out);
        assert_eq!(
            out,
            vec![
                Action::DeliverResponse { status: 486 },
                Action::BuildAck { status: 486 }
            ]
        );
        assert_eq!(c.state(), ClientInviteState::Completed);
        // Retransmission before the ACK was provided: asked again.
        out.clear();
        c.on_response(clock.at(150), 486, &mut out);
        assert_eq!(out, vec![Action::BuildAck { status: 486 }]);
        out.clear();
        c.send_ack(clock.at(160), ACK, &mut out);
        assert_eq!(out, vec![tx(ACK)]);
        // Retransmitted final response: same ACK, no delivery.
        out.clear();
        c.on_response(clock.at(600), 486, &mut out);
        assert_eq!(out, vec![tx(ACK)]);
        // A second send_ack is ignored.
        out.clear();
        c.send_ack(clock.at(700), b"other".as_slice(), &mut out);
        assert!(out.is_empty());
        // 1xx and 2xx in Completed are dropped.
        c.on_response(clock.at(700), 180, &mut out);
        c.on_response(clock.at(700), 200, &mut out);
        assert!(out.is_empty());
        // No more INVITE retransmissions; Timer D = 32 s.
        assert_eq!(c.next_deadline(), Some(clock.at(32_100)));
        assert!(fire(&mut c, clock.at(32_099)).is_empty());
        assert_eq!(fire(&mut c, clock.at(32_100)), vec![Action::Terminated]);
        assert_eq!(c.state(), ClientInviteState::Terminated);
    }

    #[test]
    fn failure_from_proceeding_goes_to_completed() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, false);
        let mut out = Vec::new();
        c.on_response(clock.at(100), 183, &mut out);
        out.clear();
        c.on_response(clock.at(5_000), 603, &mut out);
        assert_eq!(c.state(), ClientInviteState::Completed);
        assert!(out.contains(&Action::BuildAck { status: 603 }));
    }

    #[test]
    fn reliable_timer_d_is_zero() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, true);
        let mut out = Vec::new();
        c.on_response(clock.at(100), 500, &mut out);
        assert_eq!(c.next_deadline(), Some(clock.at(100)));
        out.clear();
        c.send_ack(clock.at(100), ACK, &mut out);
        assert_eq!(out, vec![tx(ACK)]);
        assert_eq!(fire(&mut c, clock.at(100)), vec![Action::Terminated]);
    }

    #[test]
    fn transport_error_terminates() {
        let clock = Clock::new();
        for setup in [None, Some(180u16), Some(404), Some(200)] {
            let (mut c, _) = start(&clock, false);
            let mut out = Vec::new();
            if let Some(status) = setup {
                c.on_response(clock.at(10), status, &mut out);
            }
            out.clear();
            c.on_transport_error(clock.at(20), &mut out);
            assert_eq!(out, vec![Action::TransportError, Action::Terminated]);
            assert!(c.is_terminated());
            assert_eq!(c.next_deadline(), None);
            out.clear();
            c.on_transport_error(clock.at(30), &mut out);
            c.on_response(clock.at(30), 200, &mut out);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn invalid_status_is_ignored() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, false);
        let mut out = Vec::new();
        c.on_response(clock.at(10), 99, &mut out);
        c.on_response(clock.at(10), 700, &mut out);
        assert!(out.is_empty());
        assert_eq!(c.state(), ClientInviteState::Calling);
    }

    #[test]
    fn late_driver_retransmits_once_per_call() {
        let clock = Clock::new();
        let (mut c, _) = start(&clock, false);
        let out = fire(&mut c, clock.at(3_000));
        assert_eq!(transmits(&out), 1);
        // Rescheduled relative to the call: 3 s + 1 s.
        assert_eq!(c.next_deadline(), Some(clock.at(3_000) + ms(1_000)));
    }

    #[test]
    fn stays_small() {
        assert!(std::mem::size_of::<ClientInvite>() <= 160);
    }
}
