//! The threads the stream connections (TCP, TLS, WebSocket) run on: one
//! current-thread tokio runtime per thread (`sf-tcp0`, `sf-tcp1`, ...),
//! and every connection on one of them for its whole life, as each of
//! Kamailio's `tcp_children` owns the connections handed to it.
//!
//! Why not one multi-thread runtime: SIP over a stream is one small
//! message per read, each read a wake-up of the thread that owns the
//! socket. tokio's work-stealing scheduler pays for its bookkeeping on
//! every one of those turns (waking a second worker to steal, its
//! poll-time statistics), and a thread that sleeps between two messages
//! pays a wake-up that a thread still busy with the first does not.
//! `bench/README.md` (2026-12-05) measured the same TCP calls at ~7% less
//! CPU per call with both connections on one current-thread runtime, and
//! ~7% more with them dealt over two.
//!
//! So new connections (accepted, or opened by us) are packed, not dealt
//! round-robin ([`Pool::next`]): each goes to the first thread that was
//! busy less than [`SPILL_AT`] of the last second, else to the least busy
//! one. A lightly loaded proxy runs every connection on `sf-tcp0`; as it
//! fills, new connections spill over to the next threads. A connection
//! never moves: a few connections that carry everything (two carriers'
//! trunks) can end up on one thread, and one thread is then their ceiling.
//! A message read on one thread and sent over a connection of another is
//! written there directly (`connections::Direct`), without waking it.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A thread busy more than this share of the last second takes no new
/// connection while another is under it.
pub const SPILL_AT: f64 = 0.5;
/// How often the threads' busy shares are measured again.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How long one thread has been busy (running tasks, not parked).
#[derive(Default)]
struct Busy {
    /// Nanoseconds busy, summed over every wake-up that ended.
    total_ns: AtomicU64,
    /// When the current wake-up began (ns since `epoch`; 0: parked).
    since_ns: AtomicU64,
}

impl Busy {
    fn unparked(&self, epoch: Instant) {
        let now = ns_since(epoch);
        self.since_ns.store(now.max(1), Ordering::Relaxed);
    }

    fn parked(&self, epoch: Instant) {
        let since = self.since_ns.swap(0, Ordering::Relaxed);
        if since != 0 {
            let now = ns_since(epoch);
            self.total_ns
                .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// Busy time up to `now` (ns since `epoch`), the wake-up under way included.
    fn at(&self, now: u64) -> u64 {
        let since = self.since_ns.load(Ordering::Relaxed);
        let running = if since == 0 {
            0
        } else {
            now.saturating_sub(since)
        };
        self.total_ns.load(Ordering::Relaxed) + running
    }
}

fn ns_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The busy shares of the threads, measured at most every [`SAMPLE_EVERY`].
struct Sample {
    at: Instant,
    busy_ns: Vec<u64>,
    share: Vec<f64>,
}

/// The runtimes of the stream threads, to spawn connections on.
#[derive(Clone)]
pub(crate) struct Pool {
    handles: Arc<[Handle]>,
    busy: Arc<[Busy]>,
    epoch: Instant,
    sample: Arc<Mutex<Sample>>,
}

impl Pool {
    /// The runtime of a new connection: the first thread busy less than
    /// [`SPILL_AT`] of the last second, else the least busy one.
    pub fn next(&self) -> &Handle {
        &self.handles[self.pick(Instant::now())]
    }

    /// Run `serve` on the thread a connection just accepted is dealt to,
    /// with the socket moved there (taken out of the accepting thread's
    /// event loop and registered with its own); an error to move it is
    /// `serve`'s to handle.
    pub fn adopt<F, Fut>(&self, stream: tokio::net::TcpStream, serve: F)
    where
        F: FnOnce(io::Result<tokio::net::TcpStream>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let moved = stream.into_std();
        self.next().spawn(async move {
            serve(moved.and_then(tokio::net::TcpStream::from_std)).await;
        });
    }

    /// The runtime the accept loops run on.
    pub fn first(&self) -> &Handle {
        &self.handles[0]
    }

    fn pick(&self, now: Instant) -> usize {
        let mut sample = self.sample.lock().unwrap_or_else(|e| e.into_inner());
        let wall = now.saturating_duration_since(sample.at);
        if wall >= SAMPLE_EVERY {
            let now_ns = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos())
                .unwrap_or(u64::MAX);
            let wall_ns = wall.as_nanos() as f64;
            let Sample { busy_ns, share, .. } = &mut *sample;
            for ((b, before), share) in self.busy.iter().zip(busy_ns.iter_mut()).zip(share) {
                let busy = b.at(now_ns);
                *share = busy.saturating_sub(*before) as f64 / wall_ns;
                *before = busy;
            }
            sample.at = now;
        }
        choose(&sample.share)
    }
}

/// The thread a new connection goes to, given each one's busy share.
fn choose(share: &[f64]) -> usize {
    if let Some(i) = share.iter().position(|s| *s < SPILL_AT) {
        return i;
    }
    share
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// The running stream threads; stopped when dropped (their tasks are
/// dropped without being waited for: they only close connections).
pub(crate) struct StreamThreads {
    pool: Pool,
    stops: Vec<oneshot::Sender<()>>,
}

impl StreamThreads {
    /// Start `n` threads (at least one), each with its runtime.
    pub fn start(n: usize) -> io::Result<StreamThreads> {
        let n = n.max(1);
        let epoch = Instant::now();
        let busy: Arc<[Busy]> = (0..n).map(|_| Busy::default()).collect();
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n {
            let (on_park, on_unpark) = (Arc::clone(&busy), Arc::clone(&busy));
            let runtime = tokio::runtime::Builder::new_current_thread()
                // The thread's log lines are handed over when it runs out
                // of work and written at most every few milliseconds (one
                // write for many messages, as the UDP receive loops do).
                .on_thread_unpark(move || {
                    on_unpark[i].unparked(epoch);
                    crate::logbuf::batch();
                })
                .on_thread_park(move || {
                    crate::logbuf::flush_when_due();
                    on_park[i].parked(epoch);
                })
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("sf-tcp{i}"))
                .spawn(move || {
                    crate::logbuf::batch();
                    let _ = runtime.block_on(stopped);
                    crate::logbuf::flush();
                    runtime.shutdown_background();
                })?;
            stops.push(stop);
        }
        Ok(StreamThreads {
            pool: Pool {
                handles: handles.into(),
                busy,
                epoch,
                sample: Arc::new(Mutex::new(Sample {
                    at: epoch,
                    busy_ns: vec![0; n],
                    share: vec![0.0; n],
                })),
            },
            stops,
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Tell every thread to stop (idempotent).
    pub fn stop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

impl Drop for StreamThreads {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_of(pool: &Pool) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        pool.next().spawn(async move {
            let name = std::thread::current().name().unwrap_or("").to_string();
            let _ = tx.send(name);
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn connections_are_packed_on_the_first_thread_under_the_spill_share() {
        assert_eq!(choose(&[0.0, 0.0, 0.0]), 0);
        assert_eq!(choose(&[0.49, 0.0]), 0);
        assert_eq!(choose(&[0.5, 0.2, 0.0]), 1);
        assert_eq!(choose(&[0.9, 0.7, 0.6]), 2);
        assert_eq!(choose(&[0.9, 0.6, 0.7]), 1);
        assert_eq!(choose(&[]), 0);
    }

    #[test]
    fn busy_time_counts_wake_ups_and_the_one_under_way() {
        let epoch = Instant::now() - Duration::from_secs(10);
        let b = Busy::default();
        assert_eq!(b.at(ns_since(epoch)), 0);
        b.unparked(epoch);
        std::thread::sleep(Duration::from_millis(20));
        let running = b.at(ns_since(epoch));
        assert!(running >= 20_000_000, "{running}");
        b.parked(epoch);
        let done = b.total_ns.load(Ordering::Relaxed);
        assert!(done >= running);
        std::thread::sleep(Duration::from_millis(20));
        // Parked time is not busy time.
        assert_eq!(b.at(ns_since(epoch)), done);
    }

    #[test]
    fn a_busy_first_thread_makes_new_connections_spill_over_and_the_threads_stop() {
        let mut threads = StreamThreads::start(2).unwrap();
        let pool = threads.pool().clone();
        // Idle: everything on the first thread.
        assert_eq!(thread_of(&pool), "sf-tcp0");
        assert_eq!(thread_of(&pool), "sf-tcp0");
        // Keep the first thread busy for over a sampling period.
        pool.first().spawn(async {
            std::thread::sleep(SAMPLE_EVERY + Duration::from_millis(300));
        });
        std::thread::sleep(SAMPLE_EVERY + Duration::from_millis(100));
        assert_eq!(thread_of(&pool), "sf-tcp1");
        threads.stop();
        // A stopped thread runs nothing more.
        std::thread::sleep(Duration::from_millis(500));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        drop(pool.first().spawn(async move {
            let _ = tx.send(());
        }));
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }
}
