//! The non-INVITE client transaction: RFC 3261 §17.1.2 (figure 6), with
//! the RFC 4320 reading of Timer F.
//!
//! ```text
//!  Trying --1xx--> Proceeding --200-699--> Completed --Timer K--> Terminated
//!     \------200-699-------------------/
//!  Trying/Proceeding --Timer F / transport error--> Terminated
//! ```
//!
//! On Timer F the machine reports [`Action::Timeout`]. RFC 4320 §4.2: a
//! transaction-stateful element must not send a 408 upstream for a
//! non-INVITE request; by the time Timer F fires the upstream client has
//! given up too. The proxy core decides what to do (typically: treat it as
//! the branch's final answer for forking, and send nothing upstream unless
//! another branch answered).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Action, Class, Machine, Timers, after, classify, due, earliest};

/// States of [`ClientNonInvite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A non-INVITE client transaction.
///
/// Transmits the request at once; on unreliable transports retransmits it
/// on Timer E (T1, doubling up to T2 in `Trying`; every T2 in
/// `Proceeding`). Timer F (64*T1) ends it with [`Action::Timeout`].
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    reliable: bool,
    timers: Timers,
    request: Arc<[u8]>,
    /// Timer E.
    retransmit_at: Option<Instant>,
    retransmit_interval: Duration,
    /// Timer F in `Trying`/`Proceeding`, K in `Completed`.
    timeout_at: Option<Instant>,
}

impl ClientNonInvite {
    /// Starts the transaction: appends the first [`Action::Transmit`] of
    /// `request` and starts Timers E (unreliable only) and F.
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
            after(now, timers.e())
        };
        ClientNonInvite {
            state: ClientNonInviteState::Trying,
            reliable,
            timers,
            request,
            retransmit_at,
            retransmit_interval: timers.e(),
            timeout_at: after(now, timers.f()),
        }
    }

    /// Current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// Whether the transport is reliable (no retransmissions, Timer K = 0).
    pub fn reliable(&self) -> bool {
        self.reliable
    }

    /// The request this transaction sends; empty once a final response
    /// made it `Completed`.
    pub fn request(&self) -> &Arc<[u8]> {
        &self.request
    }

    /// A response matched this transaction (§17.1.3). `status` outside
    /// 100..=699 is ignored.
    ///
    /// * `Trying`/`Proceeding`: 1xx → `Proceeding`, delivered (Timer E keeps
    ///   running, from now on at T2); 200-699 → delivered, `Completed`,
    ///   Timer K.
    /// * `Completed`: retransmitted responses are absorbed.
    pub fn on_response(&mut self, now: Instant, status: u16, out: &mut Vec<Action>) {
        let Some(class) = classify(status) else {
            return;
        };
        match self.state {
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding => {
                out.push(Action::DeliverResponse { status });
                if class == Class::Provisional {
                    self.state = ClientNonInviteState::Proceeding;
                } else {
                    self.state = ClientNonInviteState::Completed;
                    self.retransmit_at = None;
                    self.timeout_at = after(now, self.timers.k(self.reliable));
                    // Never sent again (`Completed` only absorbs
                    // retransmitted responses): free it for Timer K's
                    // lingering (5 s over UDP).
                    self.request = Arc::from(&[][..]);
                }
            }
            ClientNonInviteState::Completed | ClientNonInviteState::Terminated => {}
        }
    }

    /// The transport failed to send the request: the TU is informed and the
    /// transaction ends (§17.1.4).
    pub fn on_transport_error(&mut self, _now: Instant, out: &mut Vec<Action>) {
        if self.state == ClientNonInviteState::Terminated {
            return;
        }
        out.push(Action::TransportError);
        self.terminate(out);
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.state = ClientNonInviteState::Terminated;
        self.retransmit_at = None;
        self.timeout_at = None;
        out.push(Action::Terminated);
    }
}

impl Machine for ClientNonInvite {
    fn next_deadline(&self) -> Option<Instant> {
        earliest(self.retransmit_at, self.timeout_at)
    }

    fn retransmit_deadline(&self) -> Option<Instant> {
        self.retransmit_at
    }

    fn on_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        if due(self.timeout_at, now) {
            // F in Trying/Proceeding, K in Completed.
            if self.state != ClientNonInviteState::Completed {
                out.push(Action::Timeout);
            }
            self.terminate(out);
            return;
        }
        let retransmitting = matches!(
            self.state,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
        );
        if retransmitting && due(self.retransmit_at, now) {
            out.push(Action::Transmit(Arc::clone(&self.request)));
            self.retransmit_interval = if self.state == ClientNonInviteState::Proceeding {
                self.timers.t2
            } else {
                self.retransmit_interval
                    .saturating_mul(2)
                    .min(self.timers.t2)
            };
            self.retransmit_at = after(now, self.retransmit_interval);
        }
    }

    fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{Clock, tx};
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\r\n";

    fn start(clock: &Clock, reliable: bool) -> ClientNonInvite {
        let mut out = Vec::new();
        let c = ClientNonInvite::new(clock.at(0), Timers::default(), reliable, OPTIONS, &mut out);
        assert_eq!(out, vec![tx(OPTIONS)]);
        c
    }

    fn fire(c: &mut ClientNonInvite, at: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        c.on_timeout(at, &mut out);
        out
    }

    /// Runs the retransmission schedule, checking each expected instant
    /// (ms offsets) fires and nothing fires 1 ms earlier.
    fn expect_retransmits(clock: &Clock, c: &mut ClientNonInvite, at: &[u64]) {
        for &t in at {
            assert_eq!(c.next_deadline(), Some(clock.at(t)), "deadline {t}");
            assert!(fire(c, clock.at(t - 1)).is_empty(), "not before {t}");
            assert_eq!(fire(c, clock.at(t)), vec![tx(OPTIONS)], "at {t}");
        }
    }

    #[test]
    fn timer_e_doubles_capped_at_t2_then_timer_f() {
        let clock = Clock::new();
        let mut c = start(&clock, false);
        // Intervals 0.5, 1, 2, 4, 4, 4, ... (T2 = 4 s).
        expect_retransmits(
            &clock,
            &mut c,
            &[
                500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
            ],
        );
        assert_eq!(c.next_deadline(), Some(clock.at(32_000)));
        assert!(fire(&mut c, clock.at(31_999)).is_empty());
        assert_eq!(
            fire(&mut c, clock.at(32_000)),
            vec![Action::Timeout, Action::Terminated]
        );
        assert!(c.is_terminated());
    }

    #[test]
    fn proceeding_retransmits_at_t2() {
        let clock = Clock::new();
        let mut c = start(&clock, false);
        expect_retransmits(&clock, &mut c, &[500]);
        let mut out = Vec::new();
        c.on_response(clock.at(600), 100, &mut out);
        assert_eq!(out, vec![Action::DeliverResponse { status: 100 }]);
        assert_eq!(c.state(), ClientNonInviteState::Proceeding);
        // Timer E already running (due at 1.5 s) fires, then every T2.
        expect_retransmits(&clock, &mut c, &[1_500, 5_500, 9_500]);
        // Timer F still runs in Proceeding.
        assert_eq!(
            fire(&mut c, clock.at(32_000)),
            vec![Action::Timeout, Action::Terminated]
        );
    }

    #[test]
    fn final_response_completes_and_timer_k_terminates() {
        let clock = Clock::new();
        let mut c = start(&clock, false);
        let mut out = Vec::new();
        c.on_response(clock.at(100), 200, &mut out);
        assert_eq!(out, vec![Action::DeliverResponse { status: 200 }]);
        assert_eq!(c.state(), ClientNonInviteState::Completed);
        assert!(c.request().is_empty(), "the request is freed for Timer K");
        // Retransmissions absorbed; no request retransmission.
        out.clear();
        c.on_response(clock.at(200), 200, &mut out);
        c.on_response(clock.at(200), 100, &mut out);
        assert!(out.is_empty());
        // Timer K = T4 = 5 s.
        assert_eq!(c.next_deadline(), Some(clock.at(5_100)));
        assert!(fire(&mut c, clock.at(5_099)).is_empty());
        assert_eq!(fire(&mut c, clock.at(5_100)), vec![Action::Terminated]);
    }

    #[test]
    fn final_response_from_proceeding() {
        let clock = Clock::new();
        let mut c = start(&clock, false);
        let mut out = Vec::new();
        c.on_response(clock.at(100), 180, &mut out);
        c.on_response(clock.at(200), 404, &mut out);
        assert_eq!(
            out,
            vec![
                Action::DeliverResponse { status: 180 },
                Action::DeliverResponse { status: 404 }
            ]
        );
        assert_eq!(c.state(), ClientNonInviteState::Completed);
    }

    #[test]
    fn reliable_no_timer_e_and_zero_timer_k() {
        let clock = Clock::new();
        let mut c = start(&clock, true);
        assert_eq!(c.next_deadline(), Some(clock.at(32_000)));
        let mut out = Vec::new();
        c.on_response(clock.at(100), 200, &mut out);
        assert_eq!(c.next_deadline(), Some(clock.at(100)));
        assert_eq!(fire(&mut c, clock.at(100)), vec![Action::Terminated]);
    }

    #[test]
    fn transport_error_terminates() {
        let clock = Clock::new();
        let mut c = start(&clock, false);
        let mut out = Vec::new();
        c.on_transport_error(clock.at(10), &mut out);
        assert_eq!(out, vec![Action::TransportError, Action::Terminated]);
        assert_eq!(c.next_deadline(), None);
    }
}
