//! A counter value that every thread adds to in a cache line of its own,
//! summed when it is read: the hot-path counters of [`super`] are written
//! by every worker on every message, and one shared atomic would move its
//! cache line between the cores each time (the cost that shows when
//! several workers share one core under load, `bench/core-throughput`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::metrics::counter::Atomic;

/// Slots per counter. Threads beyond this many share slots (the adds stay
/// atomic, so the sum stays exact).
const SLOTS: usize = 16;

/// One slot, alone in its cache line and the next (adjacent-line
/// prefetching pairs lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

/// The value of a per-thread counter: `Counter<u64, PerThread>`.
#[derive(Debug, Default)]
pub struct PerThread {
    slots: [Slot; SLOTS],
}

/// The slot of the calling thread: given out in turn as threads first count.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

impl Atomic<u64> for PerThread {
    fn inc(&self) -> u64 {
        self.inc_by(1)
    }

    /// Adds `v` to this thread's slot; returns that slot's previous value
    /// (not the total: nothing here reads it).
    fn inc_by(&self, v: u64) -> u64 {
        self.slots
            .get(slot())
            .map_or(0, |s| s.0.fetch_add(v, Ordering::Relaxed))
    }

    fn get(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use std::sync::Arc;

    #[test]
    fn adds_from_many_threads_sum_exactly() {
        let counter: Arc<Counter<u64, PerThread>> = Arc::new(Counter::default());
        // More threads than slots: some share one.
        let threads: Vec<_> = (0..SLOTS + 5)
            .map(|_| {
                let c = Arc::clone(&counter);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                    }
                    c.inc_by(7);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.get(), (SLOTS as u64 + 5) * 1007);
    }

    #[test]
    fn slots_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<Slot>(), 128);
        assert_eq!(std::mem::size_of::<PerThread>(), SLOTS * 128);
    }
}
