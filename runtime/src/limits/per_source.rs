//! `limits.per_source`: the pike. A token bucket per source address; a
//! source over the rate is ignored for the ban time.
//!
//! The [`Limiter`] is one table shared by every worker (`&self`): a fixed
//! number of entries ([`DEFAULT_CAPACITY`]) allocated up front, split into
//! [`SHARDS`] shards, each behind its own `Mutex`. Within a shard a source
//! hashes (keyed SipHash, `std` [`RandomState`]) to one set of [`WAYS`]
//! slots, so a check is one hash, one lock and at most [`WAYS`] key
//! compares, and never allocates.
//!
//! Eviction: memory never grows; a new source takes a slot of its set:
//! an empty one, else the entry whose loss matters least:
//! 1. one that carries no information: a full bucket or a ban that is over
//!    (a new entry would be identical);
//! 2. else an unbanned one, fewest missing tokens first, then the least
//!    recently seen: forgetting it gives its source a full bucket early,
//!    so the ones closest to a ban are kept longest;
//! 3. only if all [`WAYS`] slots hold running bans, the ban that ends
//!    first (its source gets a full bucket again, and is banned again
//!    after `requests` more).
//!
//! So a flood of distinct (spoofed) sources, one or a few requests each,
//! recycles the slots of other such sources and of idle ones: a banned
//! source stays banned unless its whole set is banned sources, and a
//! source close to its limit is among the last to go.
//!
//! An IPv4 source is its address (and `::ffff:1.2.3.4` is `1.2.3.4`). An
//! IPv6 source is its network of `ipv6_prefix` bits, /64 by default: a
//! host is given a /64 (or more) and may send from any address in it, so
//! limits per /128 would be no limits at all. Phones behind one home
//! router share a /64 as they share an IPv4 address behind NAT.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::bucket::{Entry, MAX_BAN_MS, Rule};
use super::net_list::{MAPPED_PREFIX, NetList, ip_key};

/// Shards of the table (each with its own lock).
pub const SHARDS: usize = 64;
/// Slots a source can be in (the set its hash picks).
pub const WAYS: usize = 8;
/// Entries of [`Limiter::new`]'s table (about 4 MiB).
pub const DEFAULT_CAPACITY: usize = 65_536;
/// The most entries [`Limiter::with_capacity`] allocates.
pub const MAX_CAPACITY: usize = 1 << 24;

/// `limits.per_source`: `requests` per `per_ms`, else ignored for `ban_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerSource {
    /// Requests allowed per `per_ms` (and in one burst).
    pub requests: u32,
    /// The period of `requests`, in milliseconds.
    pub per_ms: u64,
    /// How long a source over the rate is ignored, in milliseconds.
    pub ban_ms: u64,
    /// The prefix length that makes one IPv6 source (1 to 128; 64 by
    /// default): a host given a /64 picks any of its addresses, so
    /// counting each /128 alone would let it pass any rate.
    pub ipv6_prefix: u8,
}

/// The IPv6 prefix length of one source unless `ipv6_prefix` says otherwise.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

impl PerSource {
    /// For the generator: whether the values make sense (each at least 1,
    /// the ban at most a year). The [`Limiter`] clamps values that do not.
    pub fn validate(&self) -> Result<(), String> {
        if self.requests == 0 {
            return Err("limits.per_source: `requests` must be at least 1".into());
        }
        if self.per_ms == 0 {
            return Err("limits.per_source: `per` must be at least 1ms".into());
        }
        if self.ban_ms == 0 {
            return Err("limits.per_source: `ban` must be at least 1ms".into());
        }
        if self.ban_ms > MAX_BAN_MS {
            return Err("limits.per_source: `ban` must be at most 366 days".into());
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err("limits.per_source: `ipv6_prefix` must be from 1 to 128".into());
        }
        Ok(())
    }

    /// The line to log when a ban starts, e.g.
    /// `source 192.0.2.7 over 50 requests per 1s: ignored for 60s`, or
    /// `source 2001:db8:0:7::/64 ...` for an IPv6 address (its network).
    pub fn ban_message(&self, ip: IpAddr) -> BanMessage {
        BanMessage { ip, rule: *self }
    }
}

/// See [`PerSource::ban_message`]; formatting does not allocate.
#[derive(Clone, Copy, Debug)]
pub struct BanMessage {
    ip: IpAddr,
    rule: PerSource,
}

impl fmt::Display for BanMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.rule;
        match self.ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() && r.ipv6_prefix < 128 => {
                let bits = u128::from(v6) & prefix_mask(r.ipv6_prefix);
                let net = std::net::Ipv6Addr::from(bits);
                write!(f, "source {net}/{}", r.ipv6_prefix)?;
            }
            ip => write!(f, "source {ip}")?,
        }
        write!(f, " over {} requests per ", r.requests)?;
        secs(f, r.per_ms)?;
        f.write_str(": ignored for ")?;
        secs(f, r.ban_ms)
    }
}

/// Milliseconds as seconds: `60s`, `1.5s`, `0.25s`.
fn secs(f: &mut fmt::Formatter<'_>, ms: u64) -> fmt::Result {
    let (s, mut frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return write!(f, "{s}s");
    }
    let mut digits = 3;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    write!(f, "{s}.{frac:0digits$}s")
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate (or trusted): handle it.
    Pass,
    /// Over the rate just now: the caller logs ONE line
    /// ([`PerSource::ban_message`]) and drops the request.
    BanStarted,
    /// Banned: drop silently (no log). The ban is not extended by these.
    Banned,
}

/// A shard, alone on its cache lines (workers lock different shards).
#[repr(align(128))]
struct Shard(Mutex<Box<[Option<Entry>]>>);

/// The table of sources; see the module documentation.
pub struct Limiter {
    rule: Rule,
    per_source: PerSource,
    trusted: &'static NetList,
    hasher: RandomState,
    shards: Box<[Shard]>,
    sets_per_shard: usize,
}

impl Limiter {
    /// A limiter of [`DEFAULT_CAPACITY`] entries. Values of `per_source`
    /// out of range are clamped: `requests`, `per` and `ban` at least 1 (ms),
    /// `ban` at most 366 days ([`PerSource::validate`] rejects them).
    pub fn new(per_source: PerSource, trusted: &'static NetList) -> Limiter {
        Limiter::with_capacity(per_source, trusted, DEFAULT_CAPACITY)
    }

    /// A limiter of about `entries` entries: rounded up to a multiple of
    /// `SHARDS * WAYS` (512), at most [`MAX_CAPACITY`].
    pub fn with_capacity(
        per_source: PerSource,
        trusted: &'static NetList,
        entries: usize,
    ) -> Limiter {
        let sets_per_shard = entries.min(MAX_CAPACITY).div_ceil(SHARDS * WAYS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Shard(Mutex::new(
                    vec![None; sets_per_shard * WAYS].into_boxed_slice(),
                ))
            })
            .collect();
        let per_source = PerSource {
            requests: per_source.requests.max(1),
            per_ms: per_source.per_ms.max(1),
            ban_ms: per_source.ban_ms.clamp(1, MAX_BAN_MS),
            ipv6_prefix: per_source.ipv6_prefix.clamp(1, 128),
        };
        Limiter {
            rule: Rule::new(per_source),
            per_source,
            trusted,
            hasher: RandomState::new(),
            shards,
            sets_per_shard,
        }
    }

    /// The rule in force (after clamping), e.g. for [`PerSource::ban_message`].
    pub fn per_source(&self) -> PerSource {
        self.per_source
    }

    /// Called for every received request datagram at `now`: a trusted
    /// source passes without touching the table; any other takes a token,
    /// or starts a ban, or is banned.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        if self.trusted.contains(ip) {
            return Verdict::Pass;
        }
        let key = source_key(ip, self.per_source.ipv6_prefix);
        let (shard, set) = self.place(key);
        let mut slots = self.lock(shard);
        let set = set_of(&mut slots, set);
        if let Some(entry) = set.iter_mut().flatten().find(|e| e.key == key) {
            return entry.take(&self.rule, now);
        }
        let mut entry = Entry::new(key, &self.rule, now);
        let verdict = entry.take(&self.rule, now);
        let slot = self.victim(set, now);
        set[slot] = Some(entry);
        verdict
    }

    /// Whether `ip` is banned at `now`: a read-only look (no token taken,
    /// nothing inserted), for the network layer to drop a banned source's
    /// datagrams before parsing them. One hash and one lock, like
    /// [`Limiter::check`]; trusted sources are never in the table.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        let key = source_key(ip, self.per_source.ipv6_prefix);
        let (shard, set) = self.place(key);
        let mut slots = self.lock(shard);
        set_of(&mut slots, set)
            .iter()
            .flatten()
            .any(|e| e.key == key && e.is_banned(now))
    }

    /// Sources banned at `now` (for a metric gauge). Looks at every entry,
    /// one shard locked at a time: call it for a scrape, not per request.
    pub fn banned(&self, now: Instant) -> usize {
        self.count(|e| e.is_banned(now))
    }

    /// Entries in use (at most [`Limiter::capacity`]).
    pub fn len(&self) -> usize {
        self.count(|_| true)
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most sources the table tracks at once.
    pub fn capacity(&self) -> usize {
        SHARDS * WAYS * self.sets_per_shard
    }

    fn count(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        (0..SHARDS)
            .map(|s| self.lock(s).iter().flatten().filter(|e| pred(e)).count())
            .sum()
    }

    /// The shard and the set within it of `key`.
    fn place(&self, key: u128) -> (usize, usize) {
        let h = self.hasher.hash_one(key);
        let shard = (h as usize) % SHARDS;
        let set = ((h >> 32) as usize) % self.sets_per_shard;
        (shard, set)
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Box<[Option<Entry>]>> {
        // Nothing panics while holding the lock; a poisoned one is still fine.
        self.shards[shard % SHARDS]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of `set` a new source takes (see the module documentation).
    fn victim(&self, set: &[Option<Entry>], now: Instant) -> usize {
        if let Some(empty) = set.iter().position(Option::is_none) {
            return empty;
        }
        set.iter()
            .enumerate()
            .filter_map(|(i, slot)| slot.as_ref().map(|e| (e.eviction_rank(&self.rule, now), i)))
            .min()
            .map_or(0, |(_, i)| i)
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("per_source", &self.per_source)
            .field("trusted", &self.trusted.ranges().len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// The slots of set number `set` (`set < sets_per_shard`).
fn set_of(slots: &mut [Option<Entry>], set: usize) -> &mut [Option<Entry>] {
    let start = (set * WAYS).min(slots.len().saturating_sub(WAYS));
    &mut slots[start..start + WAYS]
}

/// The key of a source: an IPv6 address's first `ipv6_prefix` bits (the
/// rest zero), IPv4 (and mapped IPv4) as `::ffff:a.b.c.d`. Also what the
/// connection table counts connections per source by.
pub fn source_key(ip: IpAddr, ipv6_prefix: u8) -> u128 {
    match ip_key(ip) {
        (true, v6) => v6 & prefix_mask(ipv6_prefix),
        (false, v4) => (MAPPED_PREFIX << 32) | v4,
    }
}

/// The first `len` bits of 128 set (`len` from 1 to 128).
fn prefix_mask(len: u8) -> u128 {
    u128::MAX << (128 - u32::from(len.clamp(1, 128)))
}

#[cfg(test)]
mod tests;
