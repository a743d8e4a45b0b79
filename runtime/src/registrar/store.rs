//! Where bindings live, behind traits so that Redis or SQL backends can be
//! added without touching the rules of [`super::binding`].
//!
//! - [`Store`]: the synchronous interface, for stores that never wait
//!   (the in-memory [`MemoryStore`]).
//! - [`AsyncStore`]: the interface the network layer drives for a store
//!   the core does not hold (Redis): real futures, run while the request
//!   waits (see [`crate::proxy::suspend`]); [`MemoryStore`] implements it
//!   with futures that are ready at once.
//!
//! Updates are atomic per AoR: [`Store::register`] / [`AsyncStore::save`]
//! read the AoR's bindings, [`apply`] the REGISTER and write the result as
//! one step, so two REGISTERs for one AoR never both see the old bindings.
//! [`MemoryStore`] does it under the AoR's shard lock.
//!
//! The Redis backend is [`super::redis_store`].

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::binding::{Binding, apply};
use super::request::RegisterRequest;
use super::{Config, Refusal};

/// Seconds a UA is asked to wait before registering again when the store
/// could not be reached (RFC 3261 §20.33 allows Retry-After on a 500).
pub const RETRY_AFTER: u32 = 5;

/// Seconds a UA is asked to wait when the memory store is full
/// ([`Config::max_bindings`]): bindings have to expire first.
pub const FULL_RETRY_AFTER: u32 = 60;

/// The reason phrase of the 503 for a full memory store.
pub const TABLE_FULL: &str = "Location Table Full";

/// The answer to a REGISTER that would add bindings to a full store.
pub fn table_full() -> Refusal {
    Refusal {
        code: 503,
        reason: TABLE_FULL,
        headers: format!("Retry-After: {FULL_RETRY_AFTER}\r\n"),
    }
}

/// A store that could not answer (connection lost, timeout, bad data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    pub message: String,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
        }
    }

    /// The answer to a REGISTER whose update could not be stored.
    pub fn refusal(&self) -> Refusal {
        Refusal {
            code: 500,
            reason: "Location Store Unavailable",
            headers: format!("Retry-After: {RETRY_AFTER}\r\n"),
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "location store: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// Synchronous storage of the bindings of every AoR (keys are canonical
/// AoRs, [`super::aor_of`]).
pub trait Store: Send + Sync {
    /// The AoR's live bindings at `now` (expired ones left out).
    fn get(&self, aor: &str, now: u64) -> Result<Vec<Binding>, StoreError>;
    /// Replaces the AoR's bindings (expired ones at `now` dropped; none
    /// left removes the AoR). Not atomic with a previous `get`: updates
    /// from REGISTERs go through [`Store::register`].
    fn put(&self, aor: &str, bindings: Vec<Binding>, now: u64) -> Result<(), StoreError>;
    /// AoRs stored (including ones whose bindings expired but were not
    /// swept yet).
    fn aors(&self) -> usize;
    /// Bindings stored (the same caveat).
    fn contacts(&self) -> usize;
    /// Removes the bindings expired at `now` and the AoRs left empty;
    /// returns how many bindings it removed.
    fn sweep(&self, now: u64) -> usize;
    /// [`Store::sweep`] of a part of the store, for a timer that calls it
    /// every second: called [`SHARD_SWEEP_EVERY`] times, it sweeps every
    /// part not swept (by a REGISTER or by it) in that long, so a store
    /// that no REGISTER comes to still frees its expired bindings. Returns
    /// how many bindings it removed.
    fn sweep_some(&self, now: u64) -> usize;
    /// Atomically: the bindings of `req.aor`, [`apply`] `req` to them,
    /// store the result. Ok(Err) is the refusal to answer (nothing stored),
    /// Ok(Ok) the bindings now registered, for the 200.
    fn register(
        &self,
        req: &RegisterRequest,
        now: u64,
        config: &Config,
    ) -> Result<Result<Vec<Binding>, Refusal>, StoreError>;
    /// [`Store::get`], handing the AoR's bindings to `then` instead of
    /// returning copies (expired ones may be among them: check
    /// [`Binding::is_live`]). `then` is called once, with nothing when the
    /// AoR has no binding.
    fn get_with(
        &self,
        aor: &str,
        now: u64,
        then: &mut dyn FnMut(&[Binding]),
    ) -> Result<(), StoreError> {
        then(&self.get(aor, now)?);
        Ok(())
    }
    /// [`Store::register`], handing the bindings now registered to `then`
    /// instead of returning them (a store may then skip copying them).
    fn register_with(
        &self,
        req: &RegisterRequest,
        now: u64,
        config: &Config,
        then: &mut dyn FnMut(&[Binding]),
    ) -> Result<Result<(), Refusal>, StoreError> {
        Ok(self.register(req, now, config)?.map(|b| then(&b)))
    }
}

/// A boxed future of a store operation (dyn-compatible, `Send`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The interface the proxy core drives: the [`Store`] operations as
/// futures, so a network store can wait for its server without blocking a
/// worker. Named apart from [`Store`]'s so both can be in scope.
pub trait AsyncStore: Send + Sync {
    /// [`Store::get`].
    fn lookup<'a>(&'a self, aor: &'a str, now: u64) -> StoreFuture<'a, Vec<Binding>>;
    /// [`Store::register`].
    fn save<'a>(
        &'a self,
        req: &'a RegisterRequest,
        now: u64,
        config: &'a Config,
    ) -> StoreFuture<'a, Result<Vec<Binding>, Refusal>>;
    /// [`Store::sweep`].
    fn expire(&self, now: u64) -> StoreFuture<'_, usize>;
    /// ([`Store::aors`], [`Store::contacts`]), for metrics.
    fn counts(&self) -> StoreFuture<'_, (usize, usize)>;
}

type Shard = Mutex<HashMap<String, Vec<Binding>>>;

/// The in-memory store: AoRs spread over shards by a keyed hash, each a
/// `Mutex<HashMap<aor, bindings>>`, so REGISTERs for different AoRs rarely
/// wait for each other. Expired bindings are invisible at once and freed
/// a shard at a time: on the way of REGISTERs, and by
/// [`Store::sweep_some`] from the core's timers.
pub struct MemoryStore {
    shards: Box<[Shard]>,
    hasher: RandomState,
    /// AoRs and bindings stored, kept as the maps change (read for the
    /// metrics after every REGISTER: counting the maps would cost a walk
    /// of every shard each time).
    aors: AtomicUsize,
    contacts: AtomicUsize,
    /// When each shard was last swept of expired bindings (unix seconds):
    /// a REGISTER sweeps its own shard and the next one in turn when
    /// [`SHARD_SWEEP_EVERY`] passed, so expiry costs one or two
    /// sixty-fourths of the table at a time, never a walk of every shard
    /// on one request.
    swept: Box<[AtomicU64]>,
    /// The next shard in turn (round robin) that a REGISTER sweeps besides
    /// its own, or the timer's [`Store::sweep_some`] sweeps, so that shards
    /// no REGISTER lands in are swept too.
    cursor: AtomicUsize,
}

/// How often (seconds) a shard of the memory store is swept: on the way
/// of a REGISTER to one of its AoRs, or by the timer's
/// [`Store::sweep_some`].
pub const SHARD_SWEEP_EVERY: u64 = 10;

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("aors", &self.aors())
            .finish()
    }
}

/// `counter += added - removed`.
fn adjust(counter: &AtomicUsize, added: usize, removed: usize) {
    if added > removed {
        counter.fetch_add(added - removed, Ordering::Relaxed);
    } else if removed > added {
        counter.fetch_sub(removed - added, Ordering::Relaxed);
    }
}

/// A shard's map, also after a panic in another holder of the lock (the
/// map is only ever replaced whole per AoR, so it stays consistent).
fn lock(shard: &Shard) -> MutexGuard<'_, HashMap<String, Vec<Binding>>> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// A store with 64 shards.
    pub fn new() -> MemoryStore {
        MemoryStore::with_shards(64)
    }

    /// A store with `n` shards (at least 1).
    pub fn with_shards(n: usize) -> MemoryStore {
        MemoryStore {
            shards: (0..n.max(1)).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            aors: AtomicUsize::new(0),
            contacts: AtomicUsize::new(0),
            swept: (0..n.max(1)).map(|_| AtomicU64::new(0)).collect(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Put `next` as the AoR's bindings in its shard's map (none: remove
    /// the AoR), keeping the counts.
    fn replace(&self, map: &mut HashMap<String, Vec<Binding>>, aor: &str, next: Vec<Binding>) {
        let (added_aor, added) = (usize::from(!next.is_empty()), next.len());
        let old = if next.is_empty() {
            map.remove(aor)
        } else {
            match map.get_mut(aor) {
                Some(slot) => Some(std::mem::replace(slot, next)),
                None => {
                    map.insert(aor.to_owned(), next);
                    None
                }
            }
        };
        let (removed_aor, removed) = old.map_or((0, 0), |o| (1, o.len()));
        adjust(&self.aors, added_aor, removed_aor);
        adjust(&self.contacts, added, removed);
    }

    /// [`apply`], refused with [`table_full`] when it would add bindings
    /// past `config.max_bindings` (counting expired ones not swept yet).
    /// The count is read outside the other shards' locks, so concurrent
    /// REGISTERs may pass the bound by a few bindings.
    fn bounded_apply(
        &self,
        current: &[Binding],
        req: &RegisterRequest,
        now: u64,
        config: &Config,
    ) -> Result<Vec<Binding>, Refusal> {
        let next = apply(current, req, now, config)?;
        let growth = next.len().saturating_sub(current.len());
        let most = usize::try_from(config.max_bindings).unwrap_or(usize::MAX);
        if growth > 0 && self.contacts().saturating_add(growth) > most {
            return Err(table_full());
        }
        Ok(next)
    }

    fn shard(&self, aor: &str) -> &Shard {
        &self.shards[self.shard_index(aor)]
    }

    fn shard_index(&self, aor: &str) -> usize {
        // In range: the modulo of the (non-zero) length.
        self.hasher.hash_one(aor) as usize % self.shards.len()
    }

    /// Drop the expired bindings (and the AoRs left empty) of one shard's
    /// map, keeping the counts; how many bindings went.
    fn sweep_map(&self, map: &mut HashMap<String, Vec<Binding>>, now: u64) -> usize {
        let mut removed = 0;
        let aors_before = map.len();
        map.retain(|_, bindings| {
            let before = bindings.len();
            bindings.retain(|b| b.is_live(now));
            removed += before - bindings.len();
            !bindings.is_empty()
        });
        adjust(&self.aors, 0, aors_before - map.len());
        adjust(&self.contacts, 0, removed);
        removed
    }

    /// Whether shard `i` is due for a sweep at `now`; if so it counts as
    /// swept from now on (the caller sweeps it).
    fn sweep_due(&self, i: usize, now: u64) -> bool {
        let last = self.swept[i].load(Ordering::Relaxed);
        now >= last.saturating_add(SHARD_SWEEP_EVERY)
            && self.swept[i]
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// [`MemoryStore::update_with`] for a REGISTER at `now`: first sweeps
    /// the next shard in turn and the AoR's own, each when it was not
    /// swept for [`SHARD_SWEEP_EVERY`].
    fn register_at<R>(
        &self,
        req: &RegisterRequest,
        now: u64,
        config: &Config,
        then: impl FnOnce(&[Binding]) -> R,
    ) -> Result<Result<R, Refusal>, StoreError> {
        let i = self.shard_index(&req.aor);
        // The next shard in turn, under its own lock and before this
        // REGISTER's (never two locks at once).
        let j = self.cursor.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        if j != i && self.sweep_due(j, now) {
            self.sweep_map(&mut lock(&self.shards[j]), now);
        }
        let mut map = lock(&self.shards[i]);
        if self.sweep_due(i, now) {
            self.sweep_map(&mut map, now);
        }
        Ok(Self::update_map(
            &mut map,
            &req.aor,
            (&self.aors, &self.contacts),
            |current| self.bounded_apply(current, req, now, config),
            then,
        ))
    }

    /// Atomically reads the AoR's bindings (expired ones possibly
    /// included), lets `f` compute the new ones, and stores them unless
    /// `f` refuses; nothing else touches the AoR meanwhile. An empty
    /// result removes the AoR.
    pub fn update(
        &self,
        aor: &str,
        f: impl FnOnce(&[Binding]) -> Result<Vec<Binding>, Refusal>,
    ) -> Result<Result<Vec<Binding>, Refusal>, StoreError> {
        self.update_with(aor, f, <[Binding]>::to_vec)
    }

    /// [`MemoryStore::update`], giving `then` the new bindings (still
    /// under the AoR's lock) instead of a copy of them: what `then`
    /// returns, or the refusal of `f`.
    pub fn update_with<R>(
        &self,
        aor: &str,
        f: impl FnOnce(&[Binding]) -> Result<Vec<Binding>, Refusal>,
        then: impl FnOnce(&[Binding]) -> R,
    ) -> Result<Result<R, Refusal>, StoreError> {
        let mut map = lock(self.shard(aor));
        Ok(Self::update_map(
            &mut map,
            aor,
            (&self.aors, &self.contacts),
            f,
            then,
        ))
    }

    /// The body of [`MemoryStore::update_with`] on a locked shard map
    /// (`counts`: the store's AoR and binding counters).
    fn update_map<R>(
        map: &mut HashMap<String, Vec<Binding>>,
        aor: &str,
        (aors, contacts): (&AtomicUsize, &AtomicUsize),
        f: impl FnOnce(&[Binding]) -> Result<Vec<Binding>, Refusal>,
        then: impl FnOnce(&[Binding]) -> R,
    ) -> Result<R, Refusal> {
        // One lookup for an AoR stored, one more to insert a new one.
        if let Some(slot) = map.get_mut(aor) {
            let next = f(slot)?;
            let out = then(&next);
            adjust(contacts, next.len(), slot.len());
            if next.is_empty() {
                map.remove(aor);
                adjust(aors, 0, 1);
            } else {
                *slot = next;
            }
            return Ok(out);
        }
        let next = f(&[])?;
        let out = then(&next);
        if !next.is_empty() {
            adjust(contacts, next.len(), 0);
            adjust(aors, 1, 0);
            map.insert(aor.to_owned(), next);
        }
        Ok(out)
    }
}

impl Store for MemoryStore {
    fn get(&self, aor: &str, now: u64) -> Result<Vec<Binding>, StoreError> {
        let map = lock(self.shard(aor));
        Ok(map.get(aor).map_or_else(Vec::new, |bindings| {
            bindings
                .iter()
                .filter(|b| b.is_live(now))
                .cloned()
                .collect()
        }))
    }

    fn get_with(
        &self,
        aor: &str,
        _now: u64,
        then: &mut dyn FnMut(&[Binding]),
    ) -> Result<(), StoreError> {
        let map = lock(self.shard(aor));
        then(map.get(aor).map_or(&[], Vec::as_slice));
        Ok(())
    }

    fn put(&self, aor: &str, mut bindings: Vec<Binding>, now: u64) -> Result<(), StoreError> {
        bindings.retain(|b| b.is_live(now));
        let mut map = lock(self.shard(aor));
        self.replace(&mut map, aor, bindings);
        Ok(())
    }

    fn aors(&self) -> usize {
        self.aors.load(Ordering::Relaxed)
    }

    fn contacts(&self) -> usize {
        self.contacts.load(Ordering::Relaxed)
    }

    fn sweep(&self, now: u64) -> usize {
        let mut removed = 0;
        for (shard, swept) in self.shards.iter().zip(self.swept.iter()) {
            let mut map = lock(shard);
            removed += self.sweep_map(&mut map, now);
            swept.store(now, Ordering::Relaxed);
        }
        removed
    }

    fn sweep_some(&self, now: u64) -> usize {
        // A tenth of the shards per call (rounded up), each when due: ten
        // calls, one a second, come round every shard.
        let n = self.shards.len();
        let per_call = n.div_ceil(SHARD_SWEEP_EVERY as usize);
        let mut removed = 0;
        for _ in 0..per_call {
            let j = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            if self.sweep_due(j, now) {
                removed += self.sweep_map(&mut lock(&self.shards[j]), now);
            }
        }
        removed
    }

    fn register(
        &self,
        req: &RegisterRequest,
        now: u64,
        config: &Config,
    ) -> Result<Result<Vec<Binding>, Refusal>, StoreError> {
        self.register_at(req, now, config, <[Binding]>::to_vec)
    }

    fn register_with(
        &self,
        req: &RegisterRequest,
        now: u64,
        config: &Config,
        then: &mut dyn FnMut(&[Binding]),
    ) -> Result<Result<(), Refusal>, StoreError> {
        self.register_at(req, now, config, then)
    }
}

impl AsyncStore for MemoryStore {
    fn lookup<'a>(&'a self, aor: &'a str, now: u64) -> StoreFuture<'a, Vec<Binding>> {
        Box::pin(std::future::ready(Store::get(self, aor, now)))
    }

    fn save<'a>(
        &'a self,
        req: &'a RegisterRequest,
        now: u64,
        config: &'a Config,
    ) -> StoreFuture<'a, Result<Vec<Binding>, Refusal>> {
        Box::pin(std::future::ready(Store::register(self, req, now, config)))
    }

    fn expire(&self, now: u64) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(Ok(Store::sweep(self, now))))
    }

    fn counts(&self) -> StoreFuture<'_, (usize, usize)> {
        Box::pin(std::future::ready(Ok((self.aors(), self.contacts()))))
    }
}
