//! Destination sets at run time (Kamailio's dispatcher): which target of a
//! set a new transaction goes to, which one a failed transaction tries
//! next, and whether each target is up.
//!
//! Sans-IO and clock-free: the stateful core asks for a target
//! ([`Destinations::select`]) and reports what became of it
//! ([`Destinations::report`]); the prober (`probe.rs`) reports the fate of
//! its OPTIONS the same way. The state is shared by every worker thread
//! without a lock on the hot path: health is one atomic word per target,
//! the round-robin cursor an atomic; only `weighted` sets take a small lock
//! of their own per pick (smooth weighted round robin updates every
//! target's current weight together).
//!
//! Algorithms, for a new transaction (targets that are down are skipped):
//!
//! - `round_robin`: a cursor walks the list; each pick takes the next
//!   target that is up, so targets that are up share the load exactly.
//! - `hash_call_id`: rendezvous (highest random weight) hashing of the
//!   Call-ID with each target's URI, scaled by the weight: a call always
//!   lands on the same target, and when a target goes down only its calls
//!   move (to the target with the next highest score).
//! - `weighted`: smooth weighted round robin (nginx's): deterministic, in
//!   exact proportion to the weights over every cycle of `sum(weights)`
//!   picks, and spread out (2:1 gives A B A, not A A B).
//! - `priority`: the first target in list order that is up.
//!
//! Failover (`relay: SET` in `failure`) takes a target that is up and that
//! this transaction has not tried, without disturbing the shared state:
//! `round_robin` the next one after the last tried, `priority` the first,
//! `hash_call_id` and `weighted` the highest rendezvous score (so the order
//! of retries is a function of the Call-ID, weighted for `weighted`).
//!
//! Health: every target starts up. A failure (an unanswered probe, or a
//! relayed request that ended with 408, 503 or no answer) counts against
//! it; `failures` of them in a row take it down. Only answered probes
//! bring it back: `successes` in a row. Sets without `probe:` are never
//! marked down (nothing would bring a target back); their failed
//! transactions still fail over.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::api::{Algorithm, DestinationSet, Probe, Target};

/// One target of one set: indexes into `Settings::destinations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TargetId {
    pub set: usize,
    pub index: usize,
}

/// What [`Destinations::select`] found.
#[derive(Clone, Copy, Debug)]
pub enum Pick {
    /// Send to this target.
    Target(TargetId, &'static Target),
    /// Every target of the set is down.
    AllDown,
    /// Every target that is up has been tried by this transaction.
    Exhausted,
    /// No set has that name (the generator checks names; kept for safety).
    UnknownSet,
}

impl PartialEq for Pick {
    fn eq(&self, other: &Pick) -> bool {
        match (self, other) {
            // The URI is a function of the id.
            (Pick::Target(a, _), Pick::Target(b, _)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for Pick {}

/// What happened to a target, as evidence for its health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// A probe was answered (any status: the target is alive).
    ProbeAnswered(u16),
    /// A probe got no answer within its timeout.
    ProbeUnanswered,
    /// A relayed request got this final response.
    Replied(u16),
    /// A relayed request got no final response (timeout or transport error).
    TimedOut,
}

impl Report {
    /// Whether this counts against the target.
    fn is_failure(self) -> bool {
        match self {
            Report::ProbeAnswered(_) => false,
            Report::ProbeUnanswered | Report::TimedOut => true,
            Report::Replied(status) => matches!(status, 408 | 503),
        }
    }

    fn describe(self) -> String {
        match self {
            Report::ProbeAnswered(s) => format!("probe answered {s}"),
            Report::ProbeUnanswered => "probe unanswered".into(),
            Report::Replied(s) => format!("relayed request answered {s}"),
            Report::TimedOut => "relayed request timed out".into(),
        }
    }
}

/// A target's health as the metrics layer reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationState {
    /// The set's name.
    pub set: &'static str,
    /// The target URI as written in the routes file.
    pub uri: &'static str,
    /// Whether `relay` may choose it.
    pub up: bool,
}

/// A health change, as returned by [`Destinations::report`] (also logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Down,
    Up,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Health {
    up: bool,
    /// Failures in a row.
    failures: u32,
    /// Answered probes in a row.
    successes: u32,
}

/// A target's [`Health`] in one atomic word: `up` in the top bit,
/// failures in a row in the next 31 bits, answered probes in a row in
/// the low 32.
struct AtomicHealth(AtomicU64);

impl AtomicHealth {
    fn new(h: Health) -> AtomicHealth {
        AtomicHealth(AtomicU64::new(Self::pack(h)))
    }

    fn pack(h: Health) -> u64 {
        (u64::from(h.up) << 63)
            | (u64::from(h.failures.min(0x7fff_ffff)) << 32)
            | u64::from(h.successes)
    }

    fn unpack(v: u64) -> Health {
        Health {
            up: v >> 63 == 1,
            failures: ((v >> 32) & 0x7fff_ffff) as u32,
            successes: v as u32,
        }
    }

    fn get(&self) -> Health {
        Self::unpack(self.0.load(Ordering::Relaxed))
    }

    /// Apply `f` atomically; the health before and after.
    fn update(&self, f: impl Fn(Health) -> Health) -> (Health, Health) {
        let before = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(Self::pack(f(Self::unpack(v))))
            })
            .unwrap_or_else(|v| v);
        let before = Self::unpack(before);
        (before, f(before))
    }
}

struct TargetState {
    health: AtomicHealth,
    /// Hash of the URI text, the target's side of the rendezvous score.
    key: u64,
}

struct SetState {
    def: &'static DestinationSet,
    /// Round robin: the index the next pick starts from.
    cursor: AtomicUsize,
    /// Smooth weighted round robin: each target's current weight.
    current: Mutex<Box<[i64]>>,
    targets: Box<[TargetState]>,
}

/// The destination sets of a routes file and their run-time state.
pub struct Destinations {
    sets: Box<[SetState]>,
}

impl Destinations {
    pub fn new(sets: &'static [DestinationSet]) -> Destinations {
        let sets = sets
            .iter()
            .map(|def| SetState {
                def,
                cursor: AtomicUsize::new(0),
                current: Mutex::new(vec![0; def.targets.len()].into()),
                targets: def
                    .targets
                    .iter()
                    .map(|t| TargetState {
                        health: AtomicHealth::new(Health {
                            up: true,
                            failures: 0,
                            successes: 0,
                        }),
                        key: mix(fnv1a(t.uri.as_str().as_bytes())),
                    })
                    .collect(),
            })
            .collect();
        Destinations { sets }
    }

    /// The index of the set named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.sets.iter().position(|s| s.def.name == name)
    }

    /// The set's definition.
    pub fn set(&self, set: usize) -> Option<&'static DestinationSet> {
        self.sets.get(set).map(|s| s.def)
    }

    /// The URI of a target.
    pub fn target(&self, id: TargetId) -> Option<&'static Target> {
        let set = self.sets.get(id.set)?;
        set.def.targets.get(id.index).map(|d| d.uri)
    }

    /// Whether a target is up (false for an unknown id).
    pub fn is_up(&self, id: TargetId) -> bool {
        self.state(id).is_some_and(|t| t.health.get().up)
    }

    fn state(&self, id: TargetId) -> Option<&TargetState> {
        self.sets.get(id.set)?.targets.get(id.index)
    }

    /// Pick a target of the set `name` for a transaction of `call_id` that
    /// has already tried `tried` (empty for a new transaction).
    pub fn select(&self, name: &str, call_id: &str, tried: &[TargetId]) -> Pick {
        let Some(set_index) = self.find(name) else {
            return Pick::UnknownSet;
        };
        let set = &self.sets[set_index];
        let up = |i: usize| set.targets[i].health.get().up;
        let n = set.targets.len();
        if !(0..n).any(up) {
            return Pick::AllDown;
        }
        let untried = |i: usize| {
            !tried.contains(&TargetId {
                set: set_index,
                index: i,
            })
        };
        let eligible = |i: usize| up(i) && untried(i);
        let chosen = if tried.is_empty() {
            match set.def.algorithm {
                Algorithm::RoundRobin => {
                    // Lock-free and exact: a pick that lost the race to
                    // another worker picks again from the new cursor.
                    let mut cursor = set.cursor.load(Ordering::Relaxed);
                    loop {
                        let start = cursor % n.max(1);
                        let Some(i) = (0..n).map(|k| (start + k) % n).find(|&i| eligible(i)) else {
                            break None;
                        };
                        match set.cursor.compare_exchange_weak(
                            cursor,
                            (i + 1) % n,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => break Some(i),
                            Err(now) => cursor = now,
                        }
                    }
                }
                Algorithm::HashCallId => rendezvous(set, call_id, eligible),
                Algorithm::Weighted => smooth_weighted(set, eligible),
                Algorithm::Priority => (0..n).find(|&i| eligible(i)),
            }
        } else {
            match set.def.algorithm {
                Algorithm::RoundRobin => {
                    let last = tried
                        .iter()
                        .rev()
                        .find(|t| t.set == set_index)
                        .map_or(0, |t| t.index + 1);
                    (0..n).map(|k| (last + k) % n).find(|&i| eligible(i))
                }
                Algorithm::HashCallId | Algorithm::Weighted => rendezvous(set, call_id, eligible),
                Algorithm::Priority => (0..n).find(|&i| eligible(i)),
            }
        };
        match chosen {
            Some(index) => Pick::Target(
                TargetId {
                    set: set_index,
                    index,
                },
                set.def.targets[index].uri,
            ),
            None => Pick::Exhausted,
        }
    }

    /// A target for a request that makes no transaction (a stateless ACK):
    /// no state changes. `priority` gives the first target that is up, the
    /// others the rendezvous choice for the Call-ID (so a call's requests
    /// stay together; for `hash_call_id` that is the INVITE's target).
    pub fn peek(&self, name: &str, call_id: &str) -> Option<&'static Target> {
        let set = &self.sets[self.find(name)?];
        let up = |i: usize| set.targets[i].health.get().up;
        let i = match set.def.algorithm {
            Algorithm::Priority => (0..set.targets.len()).find(|&i| up(i)),
            _ => rendezvous(set, call_id, up),
        }?;
        Some(set.def.targets[i].uri)
    }

    /// Feed what happened to a target into its health. Returns the change
    /// it caused, which is also logged (one line).
    pub fn report(&self, id: TargetId, report: Report) -> Option<Change> {
        let set = self.sets.get(id.set)?;
        let target = set.targets.get(id.index)?;
        // Without probes nothing could bring a target back: not marked down.
        let probe: Probe = set.def.probe?;
        let (before, h) = target.health.update(|mut h| {
            if report.is_failure() {
                h.successes = 0;
                h.failures = h.failures.saturating_add(1);
                if h.up && h.failures >= probe.failures {
                    h.up = false;
                }
            } else {
                h.failures = 0;
                if matches!(report, Report::ProbeAnswered(_)) {
                    h.successes = h.successes.saturating_add(1);
                    if !h.up && h.successes >= probe.successes {
                        h.up = true;
                    }
                }
            }
            h
        });
        let change = match (before.up, h.up) {
            (true, false) => Some(Change::Down),
            (false, true) => Some(Change::Up),
            _ => None,
        };
        let uri = set.def.targets[id.index].uri.as_str();
        match change {
            Some(Change::Down) => tracing::warn!(
                target: "sipforge::destinations",
                set = set.def.name,
                uri,
                "destination down: {} failures in a row (last: {})",
                h.failures,
                report.describe()
            ),
            Some(Change::Up) => tracing::info!(
                target: "sipforge::destinations",
                set = set.def.name,
                uri,
                "destination up: answered {} probes in a row",
                h.successes
            ),
            None => tracing::trace!(
                target: "sipforge::destinations",
                set = set.def.name,
                uri,
                up = h.up,
                "{}",
                report.describe()
            ),
        }
        change
    }

    /// Every target of every set, in file order, with its health.
    pub fn states(&self) -> Vec<DestinationState> {
        self.sets
            .iter()
            .flat_map(|s| {
                s.def
                    .targets
                    .iter()
                    .zip(s.targets.iter())
                    .map(|(d, t)| DestinationState {
                        set: s.def.name,
                        uri: d.uri.as_str(),
                        up: t.health.get().up,
                    })
            })
            .collect()
    }
}

/// Highest random weight: the eligible target with the best score for
/// this Call-ID (ties to the earlier target).
fn rendezvous(set: &SetState, call_id: &str, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let call = fnv1a(call_id.as_bytes());
    let mut best: Option<(usize, f64)> = None;
    for (i, t) in set.targets.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let weight = set.def.targets[i].weight.max(1);
        let score = weighted_score(mix(call ^ t.key), weight);
        if best.is_none_or(|(_, b)| score.total_cmp(&b).is_gt()) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// Weighted rendezvous score: `w / -ln(u)` with `u` uniform in (0, 1) from
/// the hash; the target with the highest score wins, and each wins in
/// proportion to its weight.
fn weighted_score(hash: u64, weight: u32) -> f64 {
    // 52 random bits, shifted half a step off 0 and 1 (exactly
    // representable), so the logarithm is finite and negative.
    let u = ((hash >> 12) as f64 + 0.5) / (1u64 << 52) as f64;
    f64::from(weight) / -u.ln()
}

/// Smooth weighted round robin among the eligible targets.
fn smooth_weighted(set: &SetState, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let mut currents = set.current.lock().unwrap_or_else(|e| e.into_inner());
    let mut total: i64 = 0;
    let mut best: Option<(usize, i64)> = None;
    for (i, current) in currents.iter_mut().enumerate() {
        if !eligible(i) {
            continue;
        }
        let weight = i64::from(set.def.targets[i].weight);
        *current = current.saturating_add(weight);
        total = total.saturating_add(weight);
        if best.is_none_or(|(_, b)| *current > b) {
            best = Some((i, *current));
        }
    }
    let (i, current) = best?;
    currents[i] = current.saturating_sub(total);
    Some(i)
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike std's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: spreads every input bit over the whole word.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Destination;

    static T: [Target; 4] = [
        Target::new("sip:10.0.0.1:5060"),
        Target::new("sip:10.0.0.2:5060"),
        Target::new("sip:10.0.0.3:5060"),
        Target::new("sip:10.0.0.4:5060"),
    ];
    const PROBE: Option<Probe> = Some(Probe {
        interval_ms: 1000,
        timeout_ms: 1000,
        failures: 3,
        successes: 2,
    });

    static SETS: [DestinationSet; 5] = [
        DestinationSet {
            name: "rr",
            algorithm: Algorithm::RoundRobin,
            targets: &[
                Destination {
                    uri: &T[0],
                    weight: 1,
                },
                Destination {
                    uri: &T[1],
                    weight: 1,
                },
                Destination {
                    uri: &T[2],
                    weight: 1,
                },
            ],
            probe: PROBE,
        },
        DestinationSet {
            name: "hash",
            algorithm: Algorithm::HashCallId,
            targets: &[
                Destination {
                    uri: &T[0],
                    weight: 1,
                },
                Destination {
                    uri: &T[1],
                    weight: 1,
                },
                Destination {
                    uri: &T[2],
                    weight: 1,
                },
                Destination {
                    uri: &T[3],
                    weight: 1,
                },
            ],
            probe: PROBE,
        },
        DestinationSet {
            name: "weighted",
            algorithm: Algorithm::Weighted,
            targets: &[
                Destination {
                    uri: &T[0],
                    weight: 1,
                },
                Destination {
                    uri: &T[1],
                    weight: 2,
                },
                Destination {
                    uri: &T[2],
                    weight: 5,
                },
            ],
            probe: PROBE,
        },
        DestinationSet {
            name: "prio",
            algorithm: Algorithm::Priority,
            targets: &[
                Destination {
                    uri: &T[0],
                    weight: 1,
                },
                Destination {
                    uri: &T[1],
                    weight: 1,
                },
                Destination {
                    uri: &T[2],
                    weight: 1,
                },
            ],
            probe: PROBE,
        },
        DestinationSet {
            name: "noprobe",
            algorithm: Algorithm::RoundRobin,
            targets: &[
                Destination {
                    uri: &T[0],
                    weight: 1,
                },
                Destination {
                    uri: &T[1],
                    weight: 1,
                },
            ],
            probe: None,
        },
    ];

    fn pick(d: &Destinations, set: &str, call_id: &str, tried: &[TargetId]) -> Option<usize> {
        match d.select(set, call_id, tried) {
            Pick::Target(id, uri) => {
                assert_eq!(d.target(id).map(Target::as_str), Some(uri.as_str()));
                Some(id.index)
            }
            _ => None,
        }
    }

    fn id(d: &Destinations, set: &str, index: usize) -> TargetId {
        TargetId {
            set: d.find(set).unwrap(),
            index,
        }
    }

    fn take_down(d: &Destinations, id: TargetId) {
        for _ in 0..3 {
            d.report(id, Report::ProbeUnanswered);
        }
        assert!(!d.is_up(id));
    }

    fn counts(d: &Destinations, set: &str, calls: usize) -> Vec<usize> {
        let n = d.set(d.find(set).unwrap()).unwrap().targets.len();
        let mut c = vec![0; n];
        for k in 0..calls {
            c[pick(d, set, &format!("call-{k}@host"), &[]).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_exactly_even_and_skips_down_targets() {
        let d = Destinations::new(&SETS);
        let seq: Vec<_> = (0..6).map(|_| pick(&d, "rr", "x", &[]).unwrap()).collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
        assert_eq!(counts(&d, "rr", 999), [333, 333, 333]);
        take_down(&d, id(&d, "rr", 1));
        assert_eq!(counts(&d, "rr", 1000), [500, 0, 500]);
    }

    #[test]
    fn weighted_is_smooth_and_exact() {
        let d = Destinations::new(&SETS);
        let seq: Vec<_> = (0..8)
            .map(|_| pick(&d, "weighted", "x", &[]).unwrap())
            .collect();
        // 1:2:5 over one cycle, spread out rather than in runs.
        assert_eq!(seq.iter().filter(|&&i| i == 0).count(), 1);
        assert_eq!(seq.iter().filter(|&&i| i == 1).count(), 2);
        assert_eq!(seq.iter().filter(|&&i| i == 2).count(), 5);
        assert!(
            !seq.windows(3).any(|w| w.iter().all(|&i| i == 2)),
            "{seq:?}"
        );
        assert_eq!(counts(&d, "weighted", 8000), [1000, 2000, 5000]);
        take_down(&d, id(&d, "weighted", 2));
        assert_eq!(counts(&d, "weighted", 3000), [1000, 2000, 0]);
    }

    #[test]
    fn hash_is_sticky_spread_and_minimally_disruptive() {
        let d = Destinations::new(&SETS);
        let before: Vec<usize> = (0..4000)
            .map(|k| pick(&d, "hash", &format!("c{k}"), &[]).unwrap())
            .collect();
        // Same Call-ID, same target, every time.
        for (k, target) in before.iter().enumerate().take(200) {
            assert_eq!(pick(&d, "hash", &format!("c{k}"), &[]), Some(*target));
        }
        // Spread: 1000 expected per target; sigma is about 27.
        for t in 0..4 {
            let n = before.iter().filter(|&&i| i == t).count();
            assert!((850..=1150).contains(&n), "target {t}: {n}");
        }
        // Target 2 goes down: only its calls move, and they spread.
        take_down(&d, id(&d, "hash", 2));
        let mut moved_to = [0usize; 4];
        for (k, was) in before.iter().enumerate() {
            let now = pick(&d, "hash", &format!("c{k}"), &[]).unwrap();
            if *was == 2 {
                assert_ne!(now, 2);
                moved_to[now] += 1;
            } else {
                assert_eq!(now, *was, "call c{k} moved although its target is up");
            }
        }
        assert!(
            moved_to[0] > 200 && moved_to[1] > 200 && moved_to[3] > 200,
            "{moved_to:?}"
        );
    }

    #[test]
    fn weighted_rendezvous_follows_weights() {
        // Failover on `weighted` uses the weighted score: 1:2:5 in expectation.
        let d = Destinations::new(&SETS);
        let mut c = [0usize; 3];
        let other = id(&d, "rr", 0); // a tried target of another set changes nothing
        for k in 0..8000 {
            c[pick(&d, "weighted", &format!("w{k}"), &[other]).unwrap()] += 1;
        }
        assert!((850..=1150).contains(&c[0]), "{c:?}");
        assert!((1800..=2200).contains(&c[1]), "{c:?}");
        assert!((4700..=5300).contains(&c[2]), "{c:?}");
    }

    #[test]
    fn failover_takes_untried_targets_then_is_exhausted() {
        let d = Destinations::new(&SETS);
        for set in ["rr", "hash", "weighted", "prio"] {
            let mut tried = Vec::new();
            let n = d.set(d.find(set).unwrap()).unwrap().targets.len();
            for _ in 0..n {
                let i = pick(&d, set, "call-x", &tried).unwrap();
                let t = id(&d, set, i);
                assert!(!tried.contains(&t), "{set}: {i} tried twice");
                tried.push(t);
            }
            assert_eq!(d.select(set, "call-x", &tried), Pick::Exhausted, "{set}");
        }
        // Round robin fails over to the next one after the last tried.
        let rr = |i| id(&d, "rr", i);
        assert_eq!(pick(&d, "rr", "y", &[rr(1)]), Some(2));
        assert_eq!(pick(&d, "rr", "y", &[rr(2)]), Some(0));
        // Failover does not disturb the rotation of new transactions.
        let d = Destinations::new(&SETS);
        assert_eq!(pick(&d, "rr", "y", &[]), Some(0));
        assert_eq!(pick(&d, "rr", "y", &[rr(0)]), Some(1));
        assert_eq!(pick(&d, "rr", "z", &[]), Some(1));
    }

    #[test]
    fn priority_takes_the_first_up_target() {
        let d = Destinations::new(&SETS);
        assert_eq!(counts(&d, "prio", 10), [10, 0, 0]);
        let p0 = id(&d, "prio", 0);
        assert_eq!(pick(&d, "prio", "a", &[p0]), Some(1));
        take_down(&d, p0);
        assert_eq!(counts(&d, "prio", 10), [0, 10, 0]);
        assert_eq!(pick(&d, "prio", "a", &[id(&d, "prio", 1)]), Some(2));
        assert_eq!(d.peek("prio", "a").map(Target::as_str), Some(T[1].as_str()));
    }

    #[test]
    fn all_down_and_unknown() {
        let d = Destinations::new(&SETS);
        for i in 0..3 {
            take_down(&d, id(&d, "prio", i));
        }
        assert_eq!(d.select("prio", "a", &[]), Pick::AllDown);
        assert!(d.peek("prio", "a").is_none());
        assert_eq!(d.select("nope", "a", &[]), Pick::UnknownSet);
        assert!(d.peek("nope", "a").is_none());
    }

    #[test]
    fn health_needs_failures_in_a_row_and_probes_to_come_back() {
        let d = Destinations::new(&SETS);
        let t = id(&d, "rr", 0);
        // Two failures, then a success: the count starts over.
        assert_eq!(d.report(t, Report::ProbeUnanswered), None);
        assert_eq!(d.report(t, Report::Replied(503)), None);
        assert_eq!(d.report(t, Report::Replied(486)), None);
        assert_eq!(d.report(t, Report::TimedOut), None);
        assert_eq!(d.report(t, Report::Replied(408)), None);
        assert!(d.is_up(t));
        assert_eq!(d.report(t, Report::ProbeUnanswered), Some(Change::Down));
        assert!(!d.is_up(t));
        assert_eq!(d.report(t, Report::ProbeUnanswered), None);
        // Relayed successes do not bring it back; answered probes do (2 in a row).
        assert_eq!(d.report(t, Report::Replied(200)), None);
        assert_eq!(d.report(t, Report::ProbeAnswered(404)), None);
        assert_eq!(d.report(t, Report::ProbeUnanswered), None);
        assert_eq!(d.report(t, Report::ProbeAnswered(200)), None);
        assert!(!d.is_up(t));
        assert_eq!(d.report(t, Report::ProbeAnswered(501)), Some(Change::Up));
        assert!(d.is_up(t));
        let states = d.states();
        assert_eq!(states.len(), 3 + 4 + 3 + 3 + 2);
        assert_eq!(
            states[0],
            DestinationState {
                set: "rr",
                uri: "sip:10.0.0.1:5060",
                up: true
            }
        );
    }

    #[test]
    fn sets_without_probes_are_never_marked_down() {
        let d = Destinations::new(&SETS);
        let t = id(&d, "noprobe", 0);
        for _ in 0..10 {
            assert_eq!(d.report(t, Report::TimedOut), None);
        }
        assert!(d.is_up(t));
        assert_eq!(counts(&d, "noprobe", 10), [5, 5]);
    }

    #[test]
    fn hashes_are_stable() {
        // Pinned so a change of hash (which would move every call) is noticed.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let s = weighted_score(0, 1);
        assert!(s.is_finite() && s > 0.0);
        let s = weighted_score(u64::MAX, 1);
        assert!(s.is_finite() && s > 0.0);
    }
}
