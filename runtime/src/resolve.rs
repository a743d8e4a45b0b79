//! Name resolution of next hops, sans IO: a cache of answers and the bounds
//! on lookups and on the messages waiting for them. The network layer
//! (`net::resolver`) runs the lookups and sends; this module decides, with
//! plain values and a clock passed in, so it is tested without a resolver.
//!
//! - An answer is kept [`Limits::positive_ttl`] (30 s), a failure (no
//!   address, an error, a timeout) [`Limits::negative_ttl`] (5 s): the
//!   system resolver behind `getaddrinfo` reports no TTL, so these are
//!   fixed; a resolver that knows the record's TTL passes it to
//!   [`Cache::answer`].
//! - At most [`Limits::max_in_flight`] lookups run at once (16). A message
//!   for a name being looked up waits for that lookup instead of starting
//!   another; at most [`Limits::max_waiting_per_name`] (32) per name and
//!   [`Limits::max_waiting`] (1,024) in all wait. Over a bound the message
//!   is refused at once ([`Lookup::Busy`]): the caller drops it.
//! - At most [`Limits::max_names`] (4,096) names are kept; when full, the
//!   expired answers go first (at most once a second), else any answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

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
    /// A cached answer: the addresses (empty: the name did not resolve),
    /// and the message back.
    Known(&'a [IpAddr], W),
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
        addrs: Vec<IpAddr>,
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
    /// Whether `host` has resolved to `ip` (an answer kept in the cache,
    /// expired or not): how a response to a request sent to a name is
    /// checked for its source.
    pub fn has_address(&self, host: &str, ip: IpAddr) -> bool {
        matches!(self.names.get(host), Some(Entry::Known { addrs, .. }) if addrs.contains(&ip))
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
            let addrs = match self.names.get(host) {
                Some(Entry::Known { addrs, .. }) => addrs.as_slice(),
                _ => &[],
            };
            return Lookup::Known(addrs, waiter);
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

    /// The lookup of `host` ended at `now` with these addresses (empty: it
    /// failed), valid for `ttl` (None: the fixed TTLs). Returns the messages
    /// that waited for it. The lookup's slot is freed by [`Cache::release`].
    pub fn answer(
        &mut self,
        now: Instant,
        host: &str,
        addrs: Vec<IpAddr>,
        ttl: Option<Duration>,
    ) -> Vec<W> {
        let ttl = ttl.unwrap_or(if addrs.is_empty() {
            self.limits.negative_ttl
        } else {
            self.limits.positive_ttl
        });
        let known = Entry::Known {
            addrs,
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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
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
