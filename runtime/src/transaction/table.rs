//! A bounded store of live transactions keyed by [`TransactionKey`], with a
//! deadline index so a driver can sleep until [`TransactionTable::next_deadline`]
//! and then call [`TransactionTable::expire`]. Sans-IO like the machines:
//! the caller supplies `now` and performs the returned actions.
//!
//! Storage is a slab (vector of slots plus a free list) addressed by
//! [`TransactionId`] (index + generation, so a stale id never reaches a
//! newer entry), a `HashMap` from key to id, and a binary min-heap of
//! `(deadline, id)` with lazy invalidation: each entry remembers the one
//! deadline it is scheduled at, heap items that disagree are skipped when
//! they surface, and the heap is compacted when stale items outnumber live
//! entries. Insert, lookup, reschedule and each expiry are O(log n).
//! Entries whose machine reached `Terminated` are removed at once, after an
//! event or a timeout, so their memory is freed.
//!
//! Timer slack ([`TransactionTable::with_timeout_slack`]): a machine's
//! retransmission deadline is scheduled exactly, its other deadlines (the
//! timeouts that only end a wait: B, D, F, H, I, J, K, L, M) are rounded up
//! to a grid of the slack, so the timeouts of the many transactions that
//! linger after they ended (RFC 6026: 32 s each) come due together, a
//! batch per grid step, instead of waking the driver every few milliseconds.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use super::{Action, Machine, TransactionKey};

/// Handle of an entry of a [`TransactionTable`]. Stays valid until the
/// entry is removed; afterwards it finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransactionId {
    index: u32,
    generation: u32,
}

impl TransactionId {
    /// The id as two numbers (e.g. to carry it inside a Via branch).
    pub fn to_parts(self) -> (u32, u32) {
        (self.index, self.generation)
    }

    /// An id from [`TransactionId::to_parts`]; a stale or forged one finds nothing.
    pub fn from_parts(index: u32, generation: u32) -> TransactionId {
        TransactionId { index, generation }
    }
}

/// Why [`TransactionTable::insert`] refused an entry; the key and machine
/// are handed back.
#[derive(Debug)]
pub enum InsertError<T> {
    /// The table holds `capacity` transactions already: the proxy answers
    /// 503 with Retry-After (or drops a retransmission-prone request).
    Full(TransactionKey, T),
    /// A transaction with this key exists (the request is a
    /// retransmission and should have been matched).
    Duplicate(TransactionKey, T),
}

impl<T> fmt::Display for InsertError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::Full(..) => f.write_str("transaction table is full"),
            InsertError::Duplicate(..) => f.write_str("transaction already exists"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for InsertError<T> {}

struct Entry<T> {
    key: TransactionKey,
    value: T,
    /// The deadline this entry has a valid heap item for.
    scheduled: Option<Instant>,
}

struct Slot<T> {
    generation: u32,
    entry: Option<Entry<T>>,
}

type HeapItem = Reverse<(Instant, u32, u32)>;

/// A bounded table of transaction machines; see the module documentation.
pub struct TransactionTable<T> {
    capacity: usize,
    len: usize,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    by_key: HashMap<TransactionKey, TransactionId>,
    deadlines: BinaryHeap<HeapItem>,
    /// Reused output buffer for `on_timeout`.
    scratch: Vec<Action>,
    /// How late a timeout may fire (zero: exactly), and the origin of its grid.
    slack: Duration,
    grid_origin: Option<Instant>,
}

impl<T: fmt::Debug> fmt::Debug for TransactionTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransactionTable")
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .field("heap", &self.deadlines.len())
            .finish()
    }
}

/// When the heap wakes machine `m`: at its retransmission deadline, or at
/// its earliest deadline rounded up to the `slack` grid, whichever is first.
fn wake_time<T: Machine>(m: &T, slack: Duration, origin: &mut Option<Instant>) -> Option<Instant> {
    let next = m.next_deadline()?;
    if slack.is_zero() {
        return Some(next);
    }
    let origin = *origin.get_or_insert(next);
    // The first grid point at or after `next`, on either side of the origin.
    let step = slack.as_nanos();
    let nanos = |n: u128| Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX));
    let rounded = if next >= origin {
        let since = (next - origin).as_nanos();
        origin.checked_add(nanos(since.div_ceil(step) * step))
    } else {
        let before = (origin - next).as_nanos();
        origin.checked_sub(nanos(before / step * step))
    };
    let rounded = rounded.unwrap_or(next).max(next);
    Some(match m.retransmit_deadline() {
        Some(r) if r < rounded => r.max(next),
        _ => rounded,
    })
}

fn is_live<T>(slots: &[Slot<T>], item: &HeapItem) -> bool {
    let Reverse((at, index, generation)) = *item;
    slots.get(index as usize).is_some_and(|slot| {
        slot.generation == generation
            && slot.entry.as_ref().is_some_and(|e| e.scheduled == Some(at))
    })
}

impl<T: Machine> TransactionTable<T> {
    /// An empty table holding at most `capacity` transactions (clamped to
    /// `u32::MAX`). Nothing is allocated up front beyond what `HashMap`
    /// and `Vec` do for an empty collection.
    pub fn new(capacity: usize) -> Self {
        TransactionTable {
            capacity: capacity.min(u32::MAX as usize),
            len: 0,
            slots: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            deadlines: BinaryHeap::new(),
            scratch: Vec::new(),
            slack: Duration::ZERO,
            grid_origin: None,
        }
    }

    /// Lets timeouts fire up to `slack` late (see the module documentation);
    /// retransmissions still fire on time.
    pub fn with_timeout_slack(mut self, slack: Duration) -> Self {
        self.slack = slack;
        self
    }

    /// The maximum number of live transactions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of live transactions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `insert` would fail with [`InsertError::Full`].
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Stores a machine under `key` and schedules its next deadline. A
    /// machine that is already terminated is still stored (and removed by
    /// the next `update`/`remove`).
    pub fn insert(
        &mut self,
        key: TransactionKey,
        value: T,
    ) -> Result<TransactionId, InsertError<T>> {
        if self.is_full() {
            return Err(InsertError::Full(key, value));
        }
        if self.by_key.contains_key(&key) {
            return Err(InsertError::Duplicate(key, value));
        }
        let entry = Entry {
            key: key.clone(),
            value,
            scheduled: None,
        };
        let id = match self.free.pop() {
            Some(index) => {
                let Some(slot) = self.slots.get_mut(index as usize) else {
                    return Err(InsertError::Full(key, entry.value));
                };
                slot.entry = Some(entry);
                TransactionId {
                    index,
                    generation: slot.generation,
                }
            }
            None => {
                let Ok(index) = u32::try_from(self.slots.len()) else {
                    return Err(InsertError::Full(key, entry.value));
                };
                self.slots.push(Slot {
                    generation: 0,
                    entry: Some(entry),
                });
                TransactionId {
                    index,
                    generation: 0,
                }
            }
        };
        self.by_key.insert(key, id);
        self.len += 1;
        self.reschedule(id);
        Ok(id)
    }

    /// The transaction stored under `key`.
    pub fn find(&self, key: &TransactionKey) -> Option<TransactionId> {
        self.by_key.get(key).copied()
    }

    fn entry(&self, id: TransactionId) -> Option<&Entry<T>> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    fn entry_mut(&mut self, id: TransactionId) -> Option<&mut Entry<T>> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_mut()
    }

    /// Shared access to a machine. To change it use [`Self::update`], which
    /// keeps the deadline index right.
    pub fn get(&self, id: TransactionId) -> Option<&T> {
        self.entry(id).map(|e| &e.value)
    }

    /// The key an entry was stored under.
    pub fn key(&self, id: TransactionId) -> Option<&TransactionKey> {
        self.entry(id).map(|e| &e.key)
    }

    /// Runs `f` on a machine (feed it an event there), then reschedules its
    /// deadline, or removes it if it terminated. `None` if `id` is stale.
    pub fn update<R>(&mut self, id: TransactionId, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let entry = self.entry_mut(id)?;
        let result = f(&mut entry.value);
        if entry.value.is_terminated() {
            self.remove(id);
        } else {
            self.reschedule(id);
        }
        Some(result)
    }

    /// Removes an entry, returning its key and machine.
    pub fn remove(&mut self, id: TransactionId) -> Option<(TransactionKey, T)> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.by_key.remove(&entry.key);
        self.len = self.len.saturating_sub(1);
        // Its heap item, if any, is now stale.
        self.maybe_compact();
        Some((entry.key, entry.value))
    }

    /// The live machines, in slot order.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.entry.as_ref().map(|e| &e.value))
    }

    /// The earliest deadline of any live machine. Takes `&mut self` to drop
    /// stale heap items on the way.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(top) = self.deadlines.peek() {
            if is_live(&self.slots, top) {
                let Reverse((at, _, _)) = *top;
                return Some(at);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Fires every timer due at `now`. For each machine with a due deadline
    /// it calls `on_timeout` and then `f(id, key, machine, actions)` so the
    /// caller can carry the actions out; machines that terminated are
    /// removed afterwards. Returns the number of machines visited.
    pub fn expire<F>(&mut self, now: Instant, mut f: F) -> usize
    where
        F: FnMut(TransactionId, &TransactionKey, &mut T, &[Action]),
    {
        let mut visited = 0;
        // Machines whose new deadline is still not after `now` are
        // rescheduled after the loop, so a machine that makes no progress
        // cannot keep this loop spinning.
        let mut again: Vec<TransactionId> = Vec::new();
        while let Some(&top) = self.deadlines.peek() {
            let Reverse((at, index, generation)) = top;
            if at > now {
                break;
            }
            self.deadlines.pop();
            if !is_live(&self.slots, &top) {
                continue;
            }
            let id = TransactionId { index, generation };
            let Some(entry) = self
                .slots
                .get_mut(index as usize)
                .and_then(|s| s.entry.as_mut())
            else {
                continue;
            };
            entry.scheduled = None;
            self.scratch.clear();
            entry.value.on_timeout(now, &mut self.scratch);
            f(id, &entry.key, &mut entry.value, &self.scratch);
            visited += 1;
            if entry.value.is_terminated() {
                self.remove(id);
            } else if entry.value.next_deadline().is_some_and(|d| d <= now) {
                again.push(id);
            } else {
                self.reschedule(id);
            }
        }
        for id in again {
            self.reschedule(id);
        }
        visited
    }

    /// Makes the heap agree with the machine's current deadline.
    fn reschedule(&mut self, id: TransactionId) {
        let Some(entry) = self
            .slots
            .get_mut(id.index as usize)
            .filter(|slot| slot.generation == id.generation)
            .and_then(|slot| slot.entry.as_mut())
        else {
            return;
        };
        let deadline = wake_time(&entry.value, self.slack, &mut self.grid_origin);
        if deadline == entry.scheduled {
            return;
        }
        entry.scheduled = deadline;
        if let Some(at) = deadline {
            self.deadlines.push(Reverse((at, id.index, id.generation)));
            self.maybe_compact();
        }
    }

    /// Drops stale heap items once they outnumber live entries.
    fn maybe_compact(&mut self) {
        if self.deadlines.len() > self.len.saturating_mul(2).saturating_add(64) {
            let slots = &self.slots;
            self.deadlines.retain(|item| is_live(slots, item));
        }
    }

    /// Number of items in the deadline heap, stale ones included (for
    /// tests and metrics).
    pub fn heap_len(&self) -> usize {
        self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::Clock;
    use super::super::{
        ClientNonInvite, RequestKeyFields, ServerInvite, ServerNonInvite, Timers, Transaction,
    };
    use super::*;

    fn server_key(branch: &str, method: &str) -> TransactionKey {
        TransactionKey::server_rfc3261(branch, "client.example.com", Some(5060), method)
    }

    fn server(clock: &Clock) -> ServerNonInvite {
        ServerNonInvite::new(clock.at(0), Timers::default(), false)
    }

    #[test]
    fn capacity_bound_and_reuse() {
        let clock = Clock::new();
        let mut table = TransactionTable::new(2);
        let a = table.insert(server_key("z9hG4bKa", "OPTIONS"), server(&clock));
        let b = table.insert(server_key("z9hG4bKb", "OPTIONS"), server(&clock));
        assert!(a.is_ok() && b.is_ok());
        assert!(table.is_full());
        match table.insert(server_key("z9hG4bKc", "OPTIONS"), server(&clock)) {
            Err(e @ InsertError::Full(..)) => {
                assert_eq!(e.to_string(), "transaction table is full")
            }
            other => panic!("expected Full, got {other:?}"),
        }
        let Ok(a) = a else { return };
        assert!(table.remove(a).is_some());
        assert!(table.remove(a).is_none());
        assert!(table.get(a).is_none(), "stale id finds nothing");
        let c = table.insert(server_key("z9hG4bKc", "OPTIONS"), server(&clock));
        let Ok(c) = c else {
            panic!("slot should be free")
        };
        assert_ne!(c, a);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn duplicate_key_is_refused() {
        let clock = Clock::new();
        let mut table = TransactionTable::new(10);
        assert!(
            table
                .insert(server_key("z9hG4bKa", "INVITE"), server(&clock))
                .is_ok()
        );
        assert!(matches!(
            table.insert(server_key("z9hG4bKa", "ACK"), server(&clock)),
            Err(InsertError::Duplicate(..))
        ));
    }

    #[test]
    fn terminated_entries_are_freed() {
        let clock = Clock::new();
        let mut table = TransactionTable::new(10);
        let key = server_key("z9hG4bKa", "OPTIONS");
        let Ok(id) = table.insert(key.clone(), server(&clock)) else {
            panic!()
        };
        let mut out = Vec::new();
        // Reliable-like end: transport error terminates at once.
        let r = table.update(id, |s| {
            s.on_transport_error(clock.at(1), &mut out);
            7
        });
        assert_eq!(r, Some(7));
        assert!(table.is_empty());
        assert_eq!(table.find(&key), None);
        assert_eq!(table.update(id, |_| ()), None);
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn expire_drives_timers_and_removes_finished_machines() {
        let clock = Clock::new();
        let mut table = TransactionTable::new(10);
        let mut out = Vec::new();
        let client = ClientNonInvite::new(
            clock.at(0),
            Timers::default(),
            false,
            b"OPTIONS".as_slice(),
            &mut out,
        );
        let Ok(cid) = table.insert(
            TransactionKey::client("z9hG4bKc", "OPTIONS"),
            Transaction::ClientNonInvite(client),
        ) else {
            panic!()
        };
        let Ok(sid) = table.insert(
            server_key("z9hG4bKs", "OPTIONS"),
            Transaction::ServerNonInvite(server(&clock)),
        ) else {
            panic!()
        };
        // Server: final response at 100 ms → Timer J at 32.1 s.
        table.update(sid, |t| {
            if let Transaction::ServerNonInvite(s) = t {
                s.send_response(clock.at(100), 200, b"OK".as_slice(), &mut out);
            }
        });
        assert_eq!(table.next_deadline(), Some(clock.at(500)));
        assert_eq!(table.expire(clock.at(499), |_, _, _, _| {}), 0);
        let mut seen = Vec::new();
        let n = table.expire(clock.at(500), |id, _, _, actions| {
            seen.push((id, actions.to_vec()));
        });
        assert_eq!(n, 1);
        assert_eq!(
            seen,
            vec![(cid, vec![Action::Transmit(b"OPTIONS".as_slice().into())])]
        );
        assert_eq!(table.next_deadline(), Some(clock.at(1_500)));
        // Drive everything to 33 s: client times out (F at 32 s), server
        // ends (J at 32.1 s).
        let mut timeouts = 0;
        let mut t = clock.at(500);
        while let Some(next) = table.next_deadline() {
            assert!(next > t, "deadlines move forward");
            t = next;
            table.expire(t, |_, _, _, actions| {
                timeouts += actions.iter().filter(|a| **a == Action::Timeout).count();
            });
        }
        assert_eq!(timeouts, 1);
        assert!(table.is_empty());
        assert!(t <= clock.at(32_100));
    }

    #[test]
    fn stale_heap_items_are_ignored_and_compacted() {
        let clock = Clock::new();
        let mut table = TransactionTable::new(10);
        let mut out = Vec::new();
        let c = ClientNonInvite::new(
            clock.at(0),
            Timers::default(),
            false,
            b"R".as_slice(),
            &mut out,
        );
        let Ok(id) = table.insert(TransactionKey::client("z9hG4bK1", "BYE"), c) else {
            panic!()
        };
        // Final response: E and F replaced by K (5 s).
        table.update(id, |c| c.on_response(clock.at(10), 200, &mut out));
        assert_eq!(table.next_deadline(), Some(clock.at(5_010)));
        let mut calls = 0;
        table.expire(clock.at(5_009), |_, _, _, _| calls += 1);
        assert_eq!(calls, 0);
        // Many updates without deadline change do not grow the heap.
        for _ in 0..1_000 {
            table.update(id, |c| c.on_response(clock.at(20), 200, &mut out));
        }
        assert!(table.heap_len() <= 66);
        table.expire(clock.at(5_010), |_, _, _, _| calls += 1);
        assert_eq!(calls, 1);
        assert!(table.is_empty());
    }

    /// A BYE client transaction started at `ms` over UDP.
    fn bye_sent_at(clock: &Clock, ms: u64, out: &mut Vec<Action>) -> ClientNonInvite {
        ClientNonInvite::new(
            clock.at(ms),
            Timers::default(),
            false,
            b"BYE".as_slice(),
            out,
        )
    }

    #[test]
    fn timeouts_come_due_together_retransmissions_on_time() {
        let clock = Clock::new();
        let slack = Duration::from_secs(1);
        let mut table = TransactionTable::new(1_000).with_timeout_slack(slack);
        let mut out = Vec::new();
        // 100 BYEs answered 10 ms apart: each client lingers for Timer K
        // (T4 = 5 s) after its 200, so the deadlines are spread over 1 s.
        for i in 0..100u64 {
            let c = bye_sent_at(&clock, i * 10, &mut out);
            let Ok(id) = table.insert(TransactionKey::client(&format!("z9hG4bK{i}"), "BYE"), c)
            else {
                panic!()
            };
            // Before its answer a BYE's next deadline is Timer E, exact and
            // off the 1 s grid (which starts at the first deadline, 500 ms).
            if i == 1 {
                assert_eq!(table.next_deadline(), Some(clock.at(510)));
            }
            table.update(id, |c| c.on_response(clock.at(i * 10 + 1), 200, &mut out));
        }
        let exact: Vec<Instant> = (0..100u64).map(|i| clock.at(i * 10 + 1 + 5_000)).collect();
        // Every Timer K fires within the slack of its deadline, and all of
        // them in at most two batches instead of 100 wake-ups.
        let mut wakes = 0;
        let mut fired = 0;
        while let Some(at) = table.next_deadline() {
            assert!(at >= exact[fired] && at <= exact[fired] + slack, "{at:?}");
            wakes += 1;
            fired += table.expire(at, |_, _, _, _| {});
        }
        assert_eq!(fired, 100);
        assert!(wakes <= 2, "{wakes} wake-ups");
        assert!(table.is_empty());
    }

    #[test]
    fn slack_rounds_deadlines_before_the_grid_origin_within_one_step() {
        let clock = Clock::new();
        let slack = Duration::from_secs(1);
        let mut table = TransactionTable::new(10).with_timeout_slack(slack);
        let mut out = Vec::new();
        // The first deadline the table sees is Timer J, 32 s ahead: the
        // grid starts there.
        let mut s = server(&clock);
        s.send_response(clock.at(0), 200, b"OK".as_slice(), &mut out);
        let Ok(_) = table.insert(
            server_key("z9hG4bKj", "OPTIONS"),
            Transaction::ServerNonInvite(s),
        ) else {
            panic!()
        };
        // A BYE answered at 20 ms lingers for Timer K until 5.02 s: that
        // is before the origin, and still fires within a step of it.
        let mut c = bye_sent_at(&clock, 10, &mut out);
        c.on_response(clock.at(20), 200, &mut out);
        let Ok(_) = table.insert(
            TransactionKey::client("z9hG4bKk", "BYE"),
            Transaction::ClientNonInvite(c),
        ) else {
            panic!()
        };
        let at = table.next_deadline().unwrap();
        assert!(
            at >= clock.at(5_020) && at <= clock.at(5_020) + slack,
            "{at:?}"
        );
    }

    #[test]
    fn heap_stays_bounded_under_churn() {
        let clock = Clock::new();
        let mut table = TransactionTable::new(100);
        let mut out = Vec::new();
        for i in 0..10_000u32 {
            let branch = format!("z9hG4bK{i}");
            let c = ClientNonInvite::new(
                clock.at(0),
                Timers::default(),
                false,
                b"R".as_slice(),
                &mut out,
            );
            let Ok(id) = table.insert(TransactionKey::client(&branch, "BYE"), c) else {
                panic!()
            };
            table.update(id, |c| c.on_response(clock.at(1), 200, &mut out));
            table.remove(id);
        }
        assert!(table.heap_len() <= 2 * table.len() + 65);
        assert!(table.is_empty());
    }

    #[test]
    fn cancel_finds_invite_transaction() {
        let clock = Clock::new();
        let mut table = TransactionTable::new(10);
        let fields = RequestKeyFields {
            method: "INVITE",
            branch: Some("z9hG4bKinv"),
            sent_by_host: "a.example.com",
            sent_by_port: Some(5060),
            ..RequestKeyFields::default()
        };
        let invite_key = TransactionKey::server(&fields);
        let Ok(inv) = table.insert(
            invite_key,
            ServerInvite::new(clock.at(0), Timers::default(), false),
        ) else {
            panic!()
        };
        let cancel = RequestKeyFields {
            method: "CANCEL",
            ..fields
        };
        let cancel_key = TransactionKey::server(&cancel);
        assert_eq!(table.find(&cancel_key), None);
        let found = cancel_key.invite_key().and_then(|k| table.find(&k));
        assert_eq!(found, Some(inv));
        // And the ACK for a non-2xx finds it too.
        let ack = RequestKeyFields {
            method: "ACK",
            ..fields
        };
        assert_eq!(table.find(&TransactionKey::server(&ack)), Some(inv));
    }

    #[test]
    fn server_invite_through_table_until_timer_i() {
        let clock = Clock::new();
        let mut table = TransactionTable::new(4);
        let key = server_key("z9hG4bKinv", "INVITE");
        let Ok(id) = table.insert(
            key,
            ServerInvite::new(clock.at(0), Timers::default(), false),
        ) else {
            panic!()
        };
        assert_eq!(table.next_deadline(), None);
        let mut out = Vec::new();
        table.update(id, |s| {
            s.send_response(clock.at(0), 100, b"100".as_slice(), &mut out);
            s.send_response(clock.at(10), 404, b"404".as_slice(), &mut out);
        });
        assert_eq!(table.next_deadline(), Some(clock.at(510)));
        let mut sent = 0;
        table.expire(clock.at(510), |_, _, _, a| sent += a.len());
        assert_eq!(sent, 1);
        // The ACK finds the INVITE transaction.
        let ack = table.find(&server_key("z9hG4bKinv", "ACK"));
        assert_eq!(ack, Some(id));
        table.update(id, |s| s.on_ack(clock.at(600), &mut out));
        assert_eq!(table.next_deadline(), Some(clock.at(5_600)));
        table.expire(clock.at(5_600), |_, _, _, a| {
            assert_eq!(a, [Action::Terminated]);
        });
        assert!(table.is_empty());
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn invite_transaction_memory_is_small() {
        // Per live INVITE transaction: the table slot (machine + key),
        // the key's heap block twice (map and slot), a map entry, a heap
        // item, and the kept messages. With a 1.5 KB INVITE, a 600-byte
        // ACK (client) or final response (server) this stays far below
        // 4 KiB.
        let key = server_key("z9hG4bK-a-rather-long-branch-value-1234567890", "INVITE");
        let key_heap = 1 + 4 + "INVITE".len() + 4 + 45 + 4 + 18 + 3;
        let overhead =
            2 * key_heap + size_of::<(TransactionKey, TransactionId)>() + size_of::<HeapItem>();
        let client = size_of::<Slot<super::super::ClientInvite>>() + overhead + 1_500 + 600;
        let server = size_of::<Slot<ServerInvite>>() + overhead + 600;
        assert!(client < 2_600, "{client}");
        assert!(server < 1_100, "{server}");
        // Table holds it with the key as given.
        let clock = Clock::new();
        let mut table = TransactionTable::new(1);
        let s = ServerInvite::new(clock.at(0), Timers::default(), false);
        assert!(table.insert(key.clone(), s).is_ok());
        assert!(table.find(&key).is_some());
    }
}
