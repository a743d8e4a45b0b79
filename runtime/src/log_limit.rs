//! Rate-limited log lines for what a sender controls: a flood of malformed
//! datagrams must not become a flood of log lines.
//!
//! [`crate::warn_limited!`] takes the arguments of `tracing::warn!`. Each
//! call site has a [`Limiter`] of its own (a `static` in the expansion) that
//! lets the first [`PER_INTERVAL`] lines of each [`INTERVAL`] through and
//! counts the rest (`sipforge_log_lines_suppressed_total`). When the
//! interval is over, one WARN line `suppressed K similar lines` (target
//! `sipforge_runtime::log_limit`, fields `site` = file:line of the call
//! site and `suppressed` = K) says how many were left out: written by the
//! site's next line, or by [`sweep`] (run every interval by the server), whichever comes
//! first.
//!
//! The hot path is lock-free: one atomic load of the site's state and one
//! compare-and-swap while lines still go through, or one atomic add when
//! they are suppressed. Only the first line of a site takes a lock, once,
//! to register it for [`sweep`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Lines written per call site and interval.
pub const PER_INTERVAL: u32 = 10;
/// The interval.
pub const INTERVAL: Duration = Duration::from_secs(1);
const INTERVAL_MS: u64 = INTERVAL.as_millis() as u64;

/// The limit of one call site.
#[derive(Debug)]
pub struct Limiter {
    /// `file:line` of the call site.
    site: &'static str,
    /// The current interval's number (high 32 bits) and the lines written
    /// in it (low 32 bits).
    state: AtomicU64,
    /// Lines suppressed and not yet reported.
    suppressed: AtomicU64,
    /// Whether the site is in [`SITES`].
    registered: AtomicBool,
}

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it; first report `suppressed` lines left out before (if not 0).
    Write { suppressed: u64 },
    /// Leave it out (counted).
    Suppress,
}

fn pack(interval: u32, count: u32) -> u64 {
    (u64::from(interval) << 32) | u64::from(count)
}

fn unpack(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, state as u32)
}

/// Whether interval `a` comes after `b` (wrapping).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Limiter {
    pub const fn new(site: &'static str) -> Limiter {
        Limiter {
            site,
            state: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            registered: AtomicBool::new(false),
        }
    }

    /// The decision for a line at `now_ms` (milliseconds on any monotonic
    /// clock; the clock of [`Limiter::admit`] starts at the first use).
    pub fn admit_at(&self, now_ms: u64) -> Admit {
        let mut interval = (now_ms / INTERVAL_MS) as u32;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (seen, count) = unpack(current);
            let next = if seen == interval || !after(interval, seen) {
                // A line of the current interval (or from a thread whose
                // clock reading is older than the interval another
                // thread started: it counts in the newer one).
                interval = seen;
                if count >= PER_INTERVAL {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return Admit::Suppress;
                }
                pack(seen, count + 1)
            } else {
                pack(interval, 1)
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) if seen == interval => return Admit::Write { suppressed: 0 },
                // This line opened a new interval: it reports the old one's.
                Ok(_) => {
                    return Admit::Write {
                        suppressed: self.suppressed.swap(0, Ordering::Relaxed),
                    };
                }
                Err(now) => current = now,
            }
        }
    }

    /// Lines suppressed in intervals that ended before `now_ms` and not yet
    /// reported (0 if none); the caller reports them.
    pub fn sweep_at(&self, now_ms: u64) -> u64 {
        let interval = (now_ms / INTERVAL_MS) as u32;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (seen, _) = unpack(current);
            if !after(interval, seen) || self.suppressed.load(Ordering::Relaxed) == 0 {
                return 0;
            }
            // Start the new interval with no line written yet.
            match self.state.compare_exchange_weak(
                current,
                pack(interval, 0),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return self.suppressed.swap(0, Ordering::Relaxed),
                Err(now) => current = now,
            }
        }
    }

    /// Whether to write a line now; writes the summary of the previous
    /// interval first when due, counts a suppressed line in the metrics.
    pub fn admit(&'static self) -> bool {
        self.register();
        match self.admit_at(now_ms()) {
            Admit::Write { suppressed } => {
                if suppressed > 0 {
                    summary(self.site, suppressed);
                }
                true
            }
            Admit::Suppress => {
                crate::metrics::log_line_suppressed();
                false
            }
        }
    }

    fn register(&'static self) {
        if !self.registered.load(Ordering::Relaxed) && !self.registered.swap(true, Ordering::AcqRel)
        {
            SITES.lock().unwrap_or_else(|e| e.into_inner()).push(self);
        }
    }
}

/// Call sites that wrote a line at least once.
static SITES: Mutex<Vec<&'static Limiter>> = Mutex::new(Vec::new());

/// The origin of [`Limiter::admit`]'s clock.
static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    BASE.elapsed().as_millis() as u64
}

fn summary(site: &'static str, suppressed: u64) {
    tracing::warn!(site, suppressed, "suppressed {suppressed} similar lines");
}

/// Write the summary of every call site whose interval ended with lines
/// suppressed (run every [`INTERVAL`], so a flood that stops is reported
/// within an interval or two).
pub fn sweep() {
    let now = now_ms();
    let sites: Vec<&'static Limiter> = SITES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for site in sites {
        let suppressed = site.sweep_at(now);
        if suppressed > 0 {
            summary(site.site, suppressed);
        }
    }
}

/// `tracing::warn!`, limited to [`PER_INTERVAL`](crate::log_limit::PER_INTERVAL)
/// lines per call site and [`INTERVAL`](crate::log_limit::INTERVAL), for
/// lines a sender can trigger at will (see [`crate::log_limit`]).
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMITER: $crate::log_limit::Limiter =
            $crate::log_limit::Limiter::new(concat!(file!(), ":", line!()));
        if ::tracing::enabled!(::tracing::Level::WARN) && LIMITER.admit() {
            ::tracing::warn!($($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_of_each_interval_pass_then_one_summary() {
        let limit = Limiter::new("here:1");
        for i in 0..PER_INTERVAL {
            let at = 5_000 + u64::from(i) * 10;
            assert_eq!(limit.admit_at(at), Admit::Write { suppressed: 0 });
        }
        for i in 0..25 {
            assert_eq!(limit.admit_at(5_500 + i), Admit::Suppress);
        }
        // The next interval: its first line reports the 25 left out.
        assert_eq!(limit.admit_at(6_000), Admit::Write { suppressed: 25 });
        assert_eq!(limit.admit_at(6_001), Admit::Write { suppressed: 0 });
        // A quiet interval in between changes nothing.
        for _ in 2..PER_INTERVAL {
            limit.admit_at(6_002);
        }
        assert_eq!(limit.admit_at(6_999), Admit::Suppress);
        assert_eq!(limit.admit_at(9_000), Admit::Write { suppressed: 1 });
    }

    #[test]
    fn a_stale_clock_reading_counts_in_the_current_interval() {
        let limit = Limiter::new("here:2");
        for _ in 0..PER_INTERVAL {
            limit.admit_at(2_000);
        }
        // Read before another thread opened interval 2: still suppressed.
        assert_eq!(limit.admit_at(1_999), Admit::Suppress);
        assert_eq!(limit.admit_at(3_000), Admit::Write { suppressed: 1 });
    }

    #[test]
    fn sweep_reports_once_when_the_flood_stops() {
        let limit = Limiter::new("here:3");
        assert_eq!(limit.sweep_at(100), 0);
        for _ in 0..PER_INTERVAL + 7 {
            limit.admit_at(100);
        }
        assert_eq!(limit.sweep_at(900), 0, "the interval is not over");
        assert_eq!(limit.sweep_at(1_100), 7);
        assert_eq!(limit.sweep_at(2_100), 0, "reported once");
        // The sweep opened interval 1 with no line written: lines pass.
        assert_eq!(limit.admit_at(1_200), Admit::Write { suppressed: 0 });
        // Nothing suppressed: no summary, and nothing for the next line either.
        assert_eq!(limit.sweep_at(5_000), 0);
        assert_eq!(limit.admit_at(5_000), Admit::Write { suppressed: 0 });
    }

    #[test]
    fn threads_share_the_limit_exactly() {
        static LIMIT: Limiter = Limiter::new("here:4");
        let written = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        if let Admit::Write { .. } = LIMIT.admit_at(42) {
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(written.load(Ordering::Relaxed), PER_INTERVAL);
        assert_eq!(
            LIMIT.admit_at(1_042),
            Admit::Write {
                suppressed: 4_000 - u64::from(PER_INTERVAL)
            }
        );
    }

    #[test]
    fn the_macro_counts_what_it_suppresses() {
        let before = crate::metrics::sample(
            &crate::metrics::encode(),
            "sipforge_log_lines_suppressed_total",
        )
        .unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..PER_INTERVAL * 3 {
                crate::warn_limited!(i, "flood");
            }
        });
        let after = crate::metrics::sample(
            &crate::metrics::encode(),
            "sipforge_log_lines_suppressed_total",
        )
        .unwrap();
        // At least PER_INTERVAL (fewer if an interval ended during the loop).
        assert!(after - before >= 1.0, "{before} -> {after}");
    }
}
