//! One source's state in the [`super::Limiter`] table: a token bucket, or a
//! ban. Pure arithmetic on times passed in; no I/O, no clock, no allocation.
//!
//! Tokens are counted in exact integers: one token is `per_ns` units, a
//! full bucket `requests * per_ns`, and `elapsed_ns * requests` units flow
//! back in over `elapsed_ns` nanoseconds, which is `requests` tokens per
//! `per`. No rounding, so a sender at exactly the rate is never banned.
//! u128 holds every product for any u32 `requests` and u64 `per_ms`.

use std::time::{Duration, Instant};

use super::{PerSource, Verdict};

/// The longest ban, so that `now + ban` cannot overflow: a year.
pub const MAX_BAN_MS: u64 = 366 * 24 * 3600 * 1000;

/// [`PerSource`] in the units the bucket counts in.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rule {
    /// Tokens a full bucket holds (at least 1).
    requests: u128,
    /// Units of one token: the refill period in nanoseconds (at least 1 ms).
    per_ns: u128,
    /// Units of a full bucket.
    full: u128,
    /// The ban (1 ms to [`MAX_BAN_MS`]).
    ban: Duration,
}

impl Rule {
    /// The rule of `p`, values out of range clamped ([`PerSource::validate`]
    /// says which are).
    pub(super) fn new(p: PerSource) -> Rule {
        let requests = u128::from(p.requests.max(1));
        let per_ns = u128::from(p.per_ms.max(1)) * 1_000_000;
        let ban = Duration::from_millis(p.ban_ms.clamp(1, MAX_BAN_MS));
        Rule {
            requests,
            per_ns,
            full: requests * per_ns,
            ban,
        }
    }

    /// The units in a bucket that held `tokens` at `last`, at `now`.
    fn refill(&self, tokens: u128, last: Instant, now: Instant) -> u128 {
        // Past one period the bucket is full whatever it held: capping the
        // time keeps the product small.
        let elapsed = now
            .saturating_duration_since(last)
            .as_nanos()
            .min(self.per_ns);
        (tokens + elapsed * self.requests).min(self.full)
    }
}

/// What a source is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not banned: `tokens` units at `last` (the latest request seen).
    Bucket { tokens: u128, last: Instant },
    /// Banned until `until` (exclusive); a full bucket from then on.
    Banned { until: Instant },
}

/// One source in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// The source: its address, or its IPv6 network (see `super::per_source`).
    pub key: u128,
    state: State,
}

/// How willing the table is to forget an entry, smallest first: see
/// [`Entry::eviction_rank`].
pub(super) type Rank = (u8, u128, Instant);

impl Entry {
    /// A source seen for the first time at `now`: a full bucket.
    pub(super) fn new(key: u128, rule: &Rule, now: Instant) -> Entry {
        Entry {
            key,
            state: State::Bucket {
                tokens: rule.full,
                last: now,
            },
        }
    }

    /// One request at `now`.
    pub(super) fn take(&mut self, rule: &Rule, now: Instant) -> Verdict {
        let (tokens, last) = match self.state {
            State::Banned { until } if now < until => return Verdict::Banned,
            // The ban is over: a full bucket.
            State::Banned { .. } => (rule.full, now),
            State::Bucket { tokens, last } => (rule.refill(tokens, last, now), last.max(now)),
        };
        if tokens >= rule.per_ns {
            self.state = State::Bucket {
                tokens: tokens - rule.per_ns,
                last,
            };
            return Verdict::Pass;
        }
        // `now + ban` fits (the ban is at most a year); if it somehow did
        // not, the ban would end at once rather than panic.
        let until = now.checked_add(rule.ban).unwrap_or(now);
        self.state = State::Banned { until };
        Verdict::BanStarted
    }

    /// Whether the source is banned at `now`.
    pub(super) fn is_banned(&self, now: Instant) -> bool {
        matches!(self.state, State::Banned { until } if now < until)
    }

    /// The eviction order, smallest first:
    /// 0. entries that carry no information: a full bucket, or a ban that
    ///    is over (either way a new entry would be the same);
    /// 1. other unbanned entries, fewest missing tokens first (forgetting
    ///    one gives its source back only what it is missing), then the
    ///    least recently seen;
    /// 2. banned entries, the ban that ends first first.
    pub(super) fn eviction_rank(&self, rule: &Rule, now: Instant) -> Rank {
        match self.state {
            State::Banned { until } if now < until => (2, 0, until),
            State::Banned { until } => (0, 0, until),
            State::Bucket { tokens, last } => {
                let missing = rule.full - rule.refill(tokens, last, now);
                (u8::from(missing > 0), missing, last)
            }
        }
    }
}
