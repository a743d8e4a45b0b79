//! Timer values of RFC 3261 §17 (table 4 in appendix A) and RFC 6026,
//! derived from the three base values T1, T2 and T4.

use std::time::Duration;

/// The base timer values. Every transaction timer is derived from these;
/// the ones that are 0 on reliable transports (D, I, J, K) take the
/// transport's reliability as an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE
    /// responses, 4 s by default.
    pub t2: Duration,
    /// Maximum time a message stays in the network, 5 s by default.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers::RFC3261
    }
}

impl Timers {
    /// The values recommended by RFC 3261: 500 ms, 4 s, 5 s.
    pub const RFC3261: Timers = Timers {
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        t4: Duration::from_secs(5),
    };

    /// 64*T1: Timers B, F, H, J (unreliable), L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Timer A: first INVITE retransmission interval (T1), doubled after
    /// each retransmission; unreliable transports only.
    pub fn a(&self) -> Duration {
        self.t1
    }

    /// Timer B: INVITE transaction timeout (64*T1).
    pub fn b(&self) -> Duration {
        self.t1x64()
    }

    /// Timer D: wait time for response retransmissions in the client INVITE
    /// `Completed` state: 0 on reliable transports, otherwise at least 32 s
    /// (and at least 64*T1, so that it outlasts the server's Timer H when
    /// T1 is configured above 500 ms).
    pub fn d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            Duration::from_secs(32).max(self.t1x64())
        }
    }

    /// Timer E: first non-INVITE retransmission interval (T1); doubles up
    /// to T2.
    pub fn e(&self) -> Duration {
        self.t1
    }

    /// Timer F: non-INVITE transaction timeout (64*T1).
    pub fn f(&self) -> Duration {
        self.t1x64()
    }

    /// Timer G: first INVITE response retransmission interval (T1);
    /// doubles up to T2.
    pub fn g(&self) -> Duration {
        self.t1
    }

    /// Timer H: wait time for the ACK (64*T1).
    pub fn h(&self) -> Duration {
        self.t1x64()
    }

    /// Timer I: wait time for ACK retransmissions: T4, 0 on reliable
    /// transports.
    pub fn i(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J: wait time for non-INVITE request retransmissions: 64*T1, 0
    /// on reliable transports.
    pub fn j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }

    /// Timer K: wait time for non-INVITE response retransmissions: T4, 0 on
    /// reliable transports.
    pub fn k(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer L (RFC 6026): wait time for INVITE retransmissions after a 2xx
    /// was sent (64*T1).
    pub fn l(&self) -> Duration {
        self.t1x64()
    }

    /// Timer M (RFC 6026): wait time for 2xx retransmissions in the client
    /// `Accepted` state (64*T1).
    pub fn m(&self) -> Duration {
        self.t1x64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rfc3261() {
        let t = Timers::default();
        assert_eq!(t.t1, Duration::from_millis(500));
        assert_eq!(t.t2, Duration::from_secs(4));
        assert_eq!(t.t4, Duration::from_secs(5));
        assert_eq!(t.b(), Duration::from_secs(32));
        assert_eq!(t.d(false), Duration::from_secs(32));
        assert_eq!(t.d(true), Duration::ZERO);
        assert_eq!(t.i(true), Duration::ZERO);
        assert_eq!(t.j(true), Duration::ZERO);
        assert_eq!(t.k(true), Duration::ZERO);
        assert_eq!(t.k(false), Duration::from_secs(5));
        assert_eq!(t.l(), t.m());
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let t = Timers {
            t1: Duration::MAX,
            t2: Duration::MAX,
            t4: Duration::MAX,
        };
        assert_eq!(t.b(), Duration::MAX);
        assert_eq!(t.d(false), Duration::MAX);
    }
}
