//! Several rtpengines: which one a call goes to, which are dead, and
//! when to probe a dead one again. Sans-IO: the time is passed in.
//!
//! A call goes to an instance chosen by a hash of its Call-ID
//! (rendezvous hashing: every instance gets a score from the hash of the
//! Call-ID and the instance's address, and the highest score wins), so
//! every message of a call, through any sipforge sharing the same list,
//! reaches the same rtpengine without any state. When that instance is
//! dead the call goes to the one with the next score: the calls of a dead
//! instance spread over all the others, the calls of the live ones do not
//! move, and when it comes back its calls come back to it.
//!
//! An instance is marked dead when a request to it went unanswered after
//! all its retransmissions ([`super::client`]), and alive again when
//! anything from it is answered; a dead one is probed with `ping` every
//! `probe_every` ([`Instances::due_probes`]).
//!
//! What hashing cannot do: a call whose instance died mid-call finds its
//! answer or delete on another instance, which does not know the call
//! (rtpengine answers "Unknown call-id"), and a re-INVITE's offer sets the
//! media up anew there.

use std::hash::Hasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use siphasher::sip::SipHasher13;

/// Fixed hash keys: every sipforge must choose the same instance for a
/// call.
const KEYS: (u64, u64) = (0x7369_7066_6f72_6765, 0x7274_7065_6e67_696e);

/// An `rtpengine:` list entry: `udp:IP:PORT` (IPv6 in brackets).
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let Some(rest) = text.strip_prefix("udp:") else {
        return Err(format!(
            "rtpengine `{text}`: expected udp:IP:PORT (the ng protocol over UDP)"
        ));
    };
    rest.parse::<SocketAddr>().map_err(|_| {
        format!(
            "rtpengine `{text}`: expected udp:IP:PORT, e.g. udp:127.0.0.1:2223 or udp:[::1]:2223"
        )
    })
}

#[derive(Clone, Debug)]
struct Instance {
    addr: SocketAddr,
    /// The address as hashed (`udp:IP:PORT`): the score does not depend
    /// on the position in the list.
    name: String,
    /// Dead since, and when to probe it next.
    down: Option<(Instant, Instant)>,
}

/// The rtpengines of the configuration, in its order; indices name them.
#[derive(Clone, Debug)]
pub struct Instances {
    list: Vec<Instance>,
    probe_every: Duration,
}

impl Instances {
    /// All alive to begin with.
    pub fn new(addrs: &[SocketAddr], probe_every: Duration) -> Instances {
        Instances {
            list: addrs
                .iter()
                .map(|&addr| Instance {
                    addr,
                    name: format!("udp:{addr}"),
                    down: None,
                })
                .collect(),
            probe_every,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.list[i].addr
    }

    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.list.iter().position(|x| x.addr == addr)
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.list.get(i).is_some_and(|x| x.down.is_none())
    }

    /// How many are alive (the metrics' gauge).
    pub fn up_count(&self) -> usize {
        self.list.iter().filter(|x| x.down.is_none()).count()
    }

    fn score(&self, i: usize, call_id: &str) -> u64 {
        let mut h = SipHasher13::new_with_keys(KEYS.0, KEYS.1);
        h.write(self.list[i].name.as_bytes());
        h.write_u8(0xff);
        h.write(call_id.as_bytes());
        h.finish()
    }

    /// Every instance, the call's first choice first, dead or alive.
    pub fn order(&self, call_id: &str) -> Vec<usize> {
        let mut order: Vec<(u64, usize)> = (0..self.list.len())
            .map(|i| (self.score(i, call_id), i))
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        order.into_iter().map(|(_, i)| i).collect()
    }

    /// The live instance for a call, not one of `tried`; None when every
    /// instance is dead or tried.
    pub fn pick(&self, call_id: &str, tried: &[usize]) -> Option<usize> {
        (0..self.list.len())
            .filter(|&i| self.is_up(i) && !tried.contains(&i))
            .max_by_key(|&i| (self.score(i, call_id), i))
    }

    /// Mark instance `i` dead at `now` (first probe one interval later);
    /// true when it was alive.
    pub fn mark_down(&mut self, i: usize, now: Instant) -> bool {
        let probe_every = self.probe_every;
        match self.list.get_mut(i) {
            Some(x) if x.down.is_none() => {
                x.down = Some((now, now + probe_every));
                true
            }
            _ => false,
        }
    }

    /// Mark instance `i` alive; true when it was dead.
    pub fn mark_up(&mut self, i: usize) -> bool {
        self.list
            .get_mut(i)
            .is_some_and(|x| x.down.take().is_some())
    }

    /// Since when instance `i` is dead.
    pub fn down_since(&self, i: usize) -> Option<Instant> {
        self.list.get(i)?.down.map(|(since, _)| since)
    }

    /// The dead instances due for a probe at `now`; each one's next probe
    /// is then one interval later.
    pub fn due_probes(&mut self, now: Instant) -> Vec<usize> {
        let probe_every = self.probe_every;
        let mut due = Vec::new();
        for (i, x) in self.list.iter_mut().enumerate() {
            if let Some((_, next)) = &mut x.down
                && *next <= now
            {
                *next = now + probe_every;
                due.push(i);
            }
        }
        due
    }

    /// When the next probe is due.
    pub fn next_probe(&self) -> Option<Instant> {
        self.list
            .iter()
            .filter_map(|x| x.down.map(|(_, n)| n))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 2223 + i)))
            .collect()
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("udp:127.0.0.1:2223"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 2223)))
        );
        assert_eq!(
            parse_address("udp:[::1]:2223").unwrap(),
            "[::1]:2223".parse().unwrap()
        );
        for bad in [
            "127.0.0.1:2223",
            "tcp:127.0.0.1:2223",
            "udp:127.0.0.1",
            "udp:host:1",
            "udp:",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_call_always_goes_to_the_same_instance_and_calls_spread() {
        let set = Instances::new(&addrs(3), Duration::from_secs(5));
        let mut per = [0usize; 3];
        for n in 0..3000 {
            let call = format!("call-{n}@example.com");
            let i = set.pick(&call, &[]).unwrap();
            assert_eq!(set.pick(&call, &[]), Some(i));
            assert_eq!(set.order(&call)[0], i);
            per[i] += 1;
        }
        for count in per {
            assert!((800..1200).contains(&count), "{per:?}");
        }
        // The choice does not depend on the order of the list.
        let mut reversed = addrs(3);
        reversed.reverse();
        let other = Instances::new(&reversed, Duration::from_secs(5));
        for n in 0..100 {
            let call = format!("c{n}");
            let a = set.addr(set.pick(&call, &[]).unwrap());
            let b = other.addr(other.pick(&call, &[]).unwrap());
            assert_eq!(a, b);
        }
    }

    #[test]
    fn a_dead_instance_is_skipped_for_the_next_by_hash_order() {
        let t0 = Instant::now();
        let mut set = Instances::new(&addrs(3), Duration::from_secs(5));
        let calls: Vec<String> = (0..300).map(|n| format!("call-{n}")).collect();
        let before: Vec<usize> = calls.iter().map(|c| set.pick(c, &[]).unwrap()).collect();
        assert!(set.mark_down(1, t0));
        assert!(!set.mark_down(1, t0), "already dead");
        assert_eq!(set.up_count(), 2);
        assert_eq!(set.down_since(1), Some(t0));
        let mut moved_to = [0usize; 3];
        for (call, &was) in calls.iter().zip(&before) {
            let now = set.pick(call, &[]).unwrap();
            if was == 1 {
                // To its second choice.
                assert_eq!(now, set.order(call)[1]);
                moved_to[now] += 1;
            } else {
                assert_eq!(now, was, "calls of live instances stay");
            }
        }
        assert!(moved_to[0] > 10 && moved_to[2] > 10, "{moved_to:?}");
        // Back alive: its calls come back.
        assert!(set.mark_up(1));
        assert!(!set.mark_up(1));
        let after: Vec<usize> = calls.iter().map(|c| set.pick(c, &[]).unwrap()).collect();
        assert_eq!(after, before);
        // Tried ones are skipped too; all dead or tried: none.
        let first = set.pick("x", &[]).unwrap();
        let second = set.pick("x", &[first]).unwrap();
        assert_ne!(first, second);
        assert_eq!(set.pick("x", &[0, 1, 2]), None);
        for i in 0..3 {
            set.mark_down(i, t0);
        }
        assert_eq!(set.pick("x", &[]), None);
        assert_eq!(set.up_count(), 0);
    }

    #[test]
    fn dead_instances_are_probed_every_interval() {
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let mut set = Instances::new(&addrs(2), every);
        assert_eq!(set.next_probe(), None);
        assert!(set.due_probes(t0 + every * 10).is_empty());
        set.mark_down(0, t0);
        assert_eq!(set.next_probe(), Some(t0 + every));
        assert!(
            set.due_probes(t0 + every - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(set.due_probes(t0 + every), [0]);
        assert!(set.due_probes(t0 + every).is_empty(), "once per interval");
        assert_eq!(set.next_probe(), Some(t0 + every * 2));
        set.mark_down(1, t0 + every);
        assert_eq!(set.due_probes(t0 + every * 3), [0, 1]);
        set.mark_up(0);
        set.mark_up(1);
        assert_eq!(set.next_probe(), None);
    }

    #[test]
    fn empty_and_single() {
        let set = Instances::new(&[], Duration::from_secs(1));
        assert!(set.is_empty());
        assert_eq!(set.pick("x", &[]), None);
        assert!(set.order("x").is_empty());
        let one = Instances::new(&addrs(1), Duration::from_secs(1));
        assert_eq!(one.pick("anything", &[]), Some(0));
        assert_eq!(one.index_of(one.addr(0)), Some(0));
        assert_eq!(one.index_of("127.0.0.1:1".parse().unwrap()), None);
    }
}
