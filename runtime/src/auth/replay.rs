//! Nonce-count replay protection (RFC 7616 §3.3, §5.3): remembers, per
//! nonce this instance has accepted, which `nc` values were used, so a
//! captured request cannot be sent again while its nonce is still fresh.
//!
//! Per nonce: the highest nc seen and a 64-bit window of the ones below it,
//! so a client's requests may arrive slightly out of order. The table is
//! bounded (shards × entries): entries of expired nonces are dropped first;
//! when a shard is still full, its oldest nonce is evicted and the shard's
//! `floor` rises to that nonce's issue time, so from then on any unknown
//! nonce issued no later than the floor is refused (the caller answers
//! with stale=true and the client simply retries with a fresh nonce)
//! rather than evicted nonces becoming replayable.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

const SHARDS: usize = 64;

/// Default capacity of the whole table, in nonces.
pub const DEFAULT_CAPACITY: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Entry {
    issued: u64,
    highest: u32,
    /// Bit k set: nc `highest - k` was seen.
    window: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<[u8; 16], Entry>,
    floor: u64,
}

/// The nonce-count table of one instance.
#[derive(Debug)]
pub struct ReplayTable {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl ReplayTable {
    /// A table for about `capacity` nonces (at least one per shard).
    pub fn new(capacity: usize) -> ReplayTable {
        ReplayTable {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Record nc `nc` for the nonce with MAC `tag` issued at `issued`;
    /// `false` when it was already used (or can no longer be told, see the
    /// module doc). `ttl` and `now` let expired entries go.
    pub fn check_and_record(
        &self,
        tag: [u8; 16],
        issued: u64,
        nc: u32,
        now: u64,
        ttl: u64,
    ) -> bool {
        let shard = &self.shards[usize::from(tag[0]) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = shard.map.get_mut(&tag) {
            return record(e, nc);
        }
        if issued <= shard.floor {
            return false;
        }
        if shard.map.len() >= self.per_shard {
            shard.map.retain(|_, e| now.saturating_sub(e.issued) <= ttl);
        }
        if shard.map.len() >= self.per_shard {
            let oldest = shard
                .map
                .iter()
                .min_by_key(|(_, e)| e.issued)
                .map(|(k, e)| (*k, e.issued));
            if let Some((key, oldest_issued)) = oldest {
                if oldest_issued >= issued {
                    // The newcomer would be the oldest: refuse it instead.
                    shard.floor = shard.floor.max(issued);
                    return false;
                }
                shard.map.remove(&key);
                shard.floor = shard.floor.max(oldest_issued);
            }
        }
        shard.map.insert(
            tag,
            Entry {
                issued,
                highest: nc,
                window: 1,
            },
        );
        true
    }

    /// Nonces currently remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn record(e: &mut Entry, nc: u32) -> bool {
    if nc > e.highest {
        let shift = nc - e.highest;
        e.window = if shift >= 64 { 0 } else { e.window << shift };
        e.window |= 1;
        e.highest = nc;
        return true;
    }
    let back = e.highest - nc;
    if back >= 64 {
        return false;
    }
    let bit = 1u64 << back;
    if e.window & bit != 0 {
        return false;
    }
    e.window |= bit;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(n: u8, shard: u8) -> [u8; 16] {
        let mut t = [n; 16];
        t[0] = shard;
        t
    }

    #[test]
    fn window() {
        let t = ReplayTable::new(DEFAULT_CAPACITY);
        let k = tag(1, 0);
        assert!(t.check_and_record(k, 100, 1, 100, 300));
        assert!(!t.check_and_record(k, 100, 1, 100, 300));
        assert!(t.check_and_record(k, 100, 2, 100, 300));
        assert!(t.check_and_record(k, 100, 5, 100, 300));
        assert!(t.check_and_record(k, 100, 4, 100, 300)); // late, in window
        assert!(!t.check_and_record(k, 100, 4, 100, 300));
        assert!(!t.check_and_record(k, 100, 5, 100, 300));
        assert!(t.check_and_record(k, 100, 3, 100, 300));
        assert!(t.check_and_record(k, 100, 100, 100, 300));
        assert!(!t.check_and_record(k, 100, 36, 100, 300)); // below the window
        assert!(t.check_and_record(k, 100, 37, 100, 300));
        assert!(t.check_and_record(k, 100, u32::MAX, 100, 300));
        assert!(!t.check_and_record(k, 100, u32::MAX, 100, 300));
        // Another nonce is independent.
        assert!(t.check_and_record(tag(2, 0), 100, 1, 100, 300));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn bounded_without_reopening_replays() {
        let t = ReplayTable::new(SHARDS * 2); // two per shard
        assert!(t.check_and_record(tag(1, 3), 10, 1, 10, 300));
        assert!(t.check_and_record(tag(2, 3), 20, 1, 20, 300));
        // Full: the oldest (issued 10) goes, the floor rises to 10.
        assert!(t.check_and_record(tag(3, 3), 30, 1, 30, 300));
        assert_eq!(t.len(), 2);
        assert!(!t.check_and_record(tag(1, 3), 10, 1, 30, 300)); // no replay
        assert!(!t.check_and_record(tag(1, 3), 10, 2, 30, 300));
        assert!(!t.check_and_record(tag(2, 3), 20, 1, 30, 300));
        assert!(t.check_and_record(tag(2, 3), 20, 2, 30, 300));
        // A newcomer older than everything kept is refused, not kept.
        assert!(!t.check_and_record(tag(4, 3), 15, 1, 30, 300));
        // Expired entries make room first, without raising the floor.
        assert!(t.check_and_record(tag(5, 3), 400, 1, 400, 300));
        assert!(t.check_and_record(tag(6, 3), 401, 1, 401, 300));
        assert_eq!(t.len(), 2);
        // Other shards are unaffected.
        assert!(t.check_and_record(tag(1, 4), 10, 1, 30, 300));
    }
}
