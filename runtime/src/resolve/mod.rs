//! Name resolution of next hops, sans IO: a cache of answers and the bounds
//! on lookups and on the messages waiting for them. The network layer
//! (`net::resolver`) runs the lookups and sends; this module decides, with
//! plain values and a clock passed in, so it is tested without a resolver.
//!
//! - An answer (the ordered [`rfc3263::Target`]s of a lookup, keyed by
//!   [`rfc3263::Query::key`]) is kept for the TTL the resolver passes to
//!   [`Cache::answer`] (the records' TTLs), else [`Limits::positive_ttl`]
//!   (30 s); a failure (no target, an error, a timeout)
//!   [`Limits::negative_ttl`] (5 s).
//! - At most [`Limits::max_in_flight`] lookups run at once (16). A message
//!   for a name being looked up waits for that lookup instead of starting
//!   another; at most [`Limits::max_waiting_per_name`] (32) per name and
//!   [`Limits::max_waiting`] (1,024) in all wait. Over a bound the message
//!   is refused at once ([`Lookup::Busy`]): the caller drops it.
//! - At most [`Limits::max_names`] (4,096) names are kept; when full, the
//!   expired answers go first (at most once a second), else any answer.

pub mod rfc3263;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use rfc3263::Target;

/// The bounds and lifetimes of a [`Cache`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
    pub max_in_flight: usize,
    pub max_waiting_per_name: usize,
    pub max_waiting: usize,
    pub max_names: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            positive_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            max_in_flight: 16,
            max_waiting_per_name: 32,
            max_waiting: 1024,
            max_names: 4096,
        }
    }
}

/// Which bound refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The name needs a lookup and [`Limits::max_in_flight`] are running.
    Lookups,
    /// The name's queue or the overall queue of waiting messages is full.
    Waiting,
}

/// What to do with a message for a name.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a, W> {
    /// A cached answer: the targets in order (empty: the name did not
    /// resolve), and the message back.
    Known(&'a [Target], W),
    /// The message waits; the caller starts a lookup of the name and calls
    /// [`Cache::answer`] and [`Cache::release`] when it ends.
    Start,
    /// The message waits for the lookup already running.
    Joined,
    /// Over a bound: the message back, to drop.
    Busy(Busy, W),
}

enum Entry<W> {
    Known {
        targets: Vec<Target>,
        expires: Instant,
    },
    Pending {
        waiters: Vec<W>,
    },
}

/// Answers by name, and the messages (`W`) waiting for a lookup.
pub struct Cache<W> {
    limits: Limits,
    names: HashMap<String, Entry<W>>,
    in_flight: usize,
    waiting: usize,
    /// When expired answers were last removed to make room.
    purged: Option<Instant>,
}

impl<W> Cache<W> {
    /// Whether the answer under `key` (kept in the cache, expired or not)
    /// has a target at `addr`: how a response to a request sent to a name
    /// is checked for its source.
    pub fn has_address(&self, key: &str, addr: SocketAddr) -> bool {
        matches!(self.names.get(key), Some(Entry::Known { targets, .. }) if targets.iter().any(|t| t.addr == addr))
    }

    /// The fresh answer under `key` at `now`, if any (None: unknown,
    /// expired, or being looked up).
    pub fn get(&self, now: Instant, key: &str) -> Option<&[Target]> {
        match self.names.get(key) {
            Some(Entry::Known { targets, expires }) if now < *expires => Some(targets),
            _ => None,
        }
    }

    pub fn new(limits: Limits) -> Cache<W> {
        Cache {
            limits,
            names: HashMap::new(),
            in_flight: 0,
            waiting: 0,
            purged: None,
        }
    }

    /// Lookups running.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Messages waiting for a lookup.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Where a message `waiter` for `host` goes at `now`.
    pub fn lookup(&mut self, now: Instant, host: &str, waiter: W) -> Lookup<'_, W> {
        let limits = self.limits;
        let fresh = match self.names.get(host) {
            Some(Entry::Known { expires, .. }) => now < *expires,
            Some(Entry::Pending { waiters }) => {
                if waiters.len() >= limits.max_waiting_per_name
                    || self.waiting >= limits.max_waiting
                {
                    return Lookup::Busy(Busy::Waiting, waiter);
                }
                false
            }
            None => false,
        };
        if fresh {
            // (Looked up again: returning the first borrow conditionally is
            // beyond the borrow checker.)
            let targets = match self.names.get(host) {
                Some(Entry::Known { targets, .. }) => targets.as_slice(),
                _ => &[],
            };
            return Lookup::Known(targets, waiter);
        }
        if let Some(Entry::Pending { waiters }) = self.names.get_mut(host) {
            waiters.push(waiter);
            self.waiting += 1;
            return Lookup::Joined;
        }
        // Unknown or expired: a new lookup.
        if self.in_flight >= limits.max_in_flight {
            return Lookup::Busy(Busy::Lookups, waiter);
        }
        if self.waiting >= limits.max_waiting {
            return Lookup::Busy(Busy::Waiting, waiter);
        }
        if !self.names.contains_key(host) && self.names.len() >= limits.max_names {
            self.make_room(now);
        }
        self.names.insert(
            host.to_owned(),
            Entry::Pending {
                waiters: vec![waiter],
            },
        );
        self.waiting += 1;
        self.in_flight += 1;
        Lookup::Start
    }

    /// The lookup of `host` ended at `now` with these targets (empty: it
    /// failed), valid for `ttl` (None: the fixed TTLs; a failure always
    /// gets the negative TTL). Returns the messages that waited for it. The
    /// lookup's slot is freed by [`Cache::release`].
    pub fn answer(
        &mut self,
        now: Instant,
        host: &str,
        targets: Vec<Target>,
        ttl: Option<Duration>,
    ) -> Vec<W> {
        let ttl = if targets.is_empty() {
            Some(self.limits.negative_ttl)
        } else {
            ttl
        };
        let ttl = ttl.unwrap_or(if targets.is_empty() {
            self.limits.negative_ttl
        } else {
            self.limits.positive_ttl
        });
        let known = Entry::Known {
            targets,
            expires: now + ttl,
        };
        match self.names.get_mut(host) {
            Some(entry) => match std::mem::replace(entry, known) {
                Entry::Pending { waiters } => {
                    self.waiting -= waiters.len();
                    waiters
                }
                Entry::Known { .. } => Vec::new(),
            },
            None => {
                if self.names.len() >= self.limits.max_names {
                    self.make_room(now);
                }
                self.names.insert(host.to_owned(), known);
                Vec::new()
            }
        }
    }

    /// A lookup started by [`Lookup::Start`] is over (answered or not).
    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Remove expired answers (at most once a second), else any answer.
    fn make_room(&mut self, now: Instant) {
        if self
            .purged
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1))
        {
            self.purged = Some(now);
            self.names.retain(|_, entry| match entry {
                Entry::Known { expires, .. } => now < *expires,
                Entry::Pending { .. } => true,
            });
        }
        if self.names.len() >= self.limits.max_names {
            let victim = self.names.iter().find_map(|(name, entry)| match entry {
                Entry::Known { .. } => Some(name.clone()),
                Entry::Pending { .. } => None,
            });
            if let Some(victim) = victim {
                self.names.remove(&victim);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Target {
        Target {
            transport: crate::transport::Transport::Udp,
            addr: SocketAddr::new(text.parse().unwrap(), 5060),
            ttl: Duration::from_secs(30),
        }
    }

    fn small() -> Limits {
        Limits {
            max_in_flight: 2,
            max_waiting_per_name: 3,
            max_waiting: 5,
            max_names: 4,
            ..Limits::default()
        }
    }

    #[test]
    fn one_lookup_per_name_and_waiters_get_its_answer() {
        let t0 = Instant::now();
        let mut cache = Cache::new(small());
        assert_eq!(cache.lookup(t0, "a.example", 1), Lookup::Start);
        assert_eq!(cache.lookup(t0, "a.example", 2), Lookup::Joined);
        assert_eq!(cache.lookup(t0, "a.example", 3), Lookup::Joined);
        assert_eq!((cache.in_flight(), cache.waiting()), (1, 3));
        let waiters = cache.answer(t0, "a.example", vec![ip("192.0.2.1")], None);
        cache.release();
        assert_eq!(waiters, [1, 2, 3]);
        assert_eq!((cache.in_flight(), cache.waiting()), (0, 0));
        assert_eq!(
            cache.lookup(t0 + Duration::from_secs(29), "a.example", 4),
            Lookup::Known(&[ip("192.0.2.1")][..], 4)
        );
    }

    #[test]
    fn answers_expire_after_their_ttl() {
        let t0 = Instant::now();
        let mut cache = Cache::new(Limits::default());
        assert_eq!(cache.lookup(t0, "a", 1), Lookup::Start);
        cache.answer(t0, "a", vec![ip("192.0.2.1")], None);
        cache.release();
        assert_eq!(
            cache.lookup(t0 + Duration::from_secs(30), "a", 2),
            Lookup::Start
        );
        // A failure is remembered for 5 s.
        cache.answer(t0 + Duration::from_secs(30), "a", Vec::new(), None);
        cache.release();
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(
            cache.lookup(t1 + Duration::from_millis(4_999), "a", 3),
            Lookup::Known(&[][..], 3)
        );
        assert_eq!(
            cache.lookup(t1 + Duration::from_secs(5), "a", 4),
            Lookup::Start
        );
        // A resolver that knows the record's TTL overrides the fixed one.
        cache.answer(t1, "a", vec![ip("192.0.2.2")], Some(Duration::from_secs(2)));
        cache.release();
        assert_eq!(
            cache.lookup(t1 + Duration::from_secs(2), "a", 5),
            Lookup::Start
        );
    }

    #[test]
    fn lookups_and_waiters_are_bounded() {
        let t0 = Instant::now();
        let mut cache = Cache::new(small());
        assert_eq!(cache.lookup(t0, "a", 1), Lookup::Start);
        assert_eq!(cache.lookup(t0, "b", 2), Lookup::Start);
        // Two lookups running: a third name is refused, known names still wait.
        assert_eq!(cache.lookup(t0, "c", 3), Lookup::Busy(Busy::Lookups, 3));
        assert_eq!(cache.lookup(t0, "a", 4), Lookup::Joined);
        assert_eq!(cache.lookup(t0, "a", 5), Lookup::Joined);
        // Three wait for `a`: its queue is full.
        assert_eq!(cache.lookup(t0, "a", 6), Lookup::Busy(Busy::Waiting, 6));
        assert_eq!(cache.lookup(t0, "b", 7), Lookup::Joined);
        // Five wait in all: every queue is full.
        assert_eq!(cache.lookup(t0, "b", 8), Lookup::Busy(Busy::Waiting, 8));
        assert_eq!(cache.answer(t0, "b", Vec::new(), None), [2, 7]);
        cache.release();
        assert_eq!(cache.lookup(t0, "c", 9), Lookup::Start);
        // A failed name answers at once from the cache, without a lookup.
        assert_eq!(cache.lookup(t0, "b", 10), Lookup::Known(&[][..], 10));
    }

    #[test]
    fn a_timed_out_lookup_keeps_its_slot_until_it_ends() {
        let t0 = Instant::now();
        let mut cache = Cache::new(small());
        assert_eq!(cache.lookup(t0, "slow", 1), Lookup::Start);
        // Timed out: the waiters are dropped, the failure cached...
        assert_eq!(cache.answer(t0, "slow", Vec::new(), None), [1]);
        assert_eq!(cache.in_flight(), 1, "the lookup itself still runs");
        cache.release();
        assert_eq!(cache.in_flight(), 0);
    }

    #[test]
    fn the_number_of_names_is_bounded() {
        let t0 = Instant::now();
        let mut cache = Cache::new(Limits {
            max_names: 3,
            ..Limits::default()
        });
        for (i, name) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(10 * i as u64);
            assert_eq!(cache.lookup(at, name, i), Lookup::Start, "{name}");
            cache.answer(at, name, Vec::new(), None);
            cache.release();
            assert!(cache.names.len() <= 3);
        }
        // Expired failures went first; the newest answer stays.
        assert_eq!(
            cache.lookup(t0 + Duration::from_secs(41), "e", 9),
            Lookup::Known(&[][..], 9)
        );
        // Nothing expired: some answer makes room, a running lookup never.
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(cache.lookup(t1, "p", 0), Lookup::Start);
        for (i, name) in ["f", "g", "h"].into_iter().enumerate() {
            assert_eq!(cache.lookup(t1, name, i), Lookup::Start, "{name}");
            cache.answer(t1, name, vec![ip("192.0.2.3")], None);
            cache.release();
            assert!(cache.names.len() <= 3);
        }
        assert_eq!(cache.answer(t1, "p", Vec::new(), None), [0]);
    }
}
