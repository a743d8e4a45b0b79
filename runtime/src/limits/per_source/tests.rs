//! Tests of [`Limiter`], on a fake clock (a base `Instant` plus durations).

use std::time::Duration;

use super::*;
use crate::limits::NetRange;

const RULE: PerSource = PerSource {
    requests: 50,
    per_ms: 1000,
    ban_ms: 60_000,
    ipv6_prefix: DEFAULT_IPV6_PREFIX,
};

static NONE: NetList = NetList::EMPTY;
/// 10.0.0.0/8 and 192.0.2.1.
static TRUSTED: NetList = NetList::new(&[
    NetRange::v4(0x0a00_0000, 0x0aff_ffff),
    NetRange::v4(0xc000_0201, 0xc000_0201),
]);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` requests at `at`, counted by verdict: (pass, ban started, banned).
fn burst(l: &Limiter, src: IpAddr, at: Instant, n: usize) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for _ in 0..n {
        match l.check(src, at) {
            Verdict::Pass => counts.0 += 1,
            Verdict::BanStarted => counts.1 += 1,
            Verdict::Banned => counts.2 += 1,
        }
    }
    counts
}

#[test]
fn burst_then_ban_without_extension_then_full_bucket() {
    let l = Limiter::new(RULE, &NONE);
    let (t0, src) = (Instant::now(), ip("192.0.2.7"));
    for i in 0..50 {
        assert_eq!(l.check(src, t0), Verdict::Pass, "request {i}");
    }
    assert!(!l.is_banned(src, t0));
    assert_eq!(l.check(src, t0), Verdict::BanStarted);
    assert!(l.is_banned(src, t0));
    assert_eq!(l.banned(t0), 1);
    // Banned for 60 s from t0, whatever arrives meanwhile.
    assert_eq!(l.check(src, t0), Verdict::Banned);
    assert_eq!(burst(&l, src, t0 + ms(30_000), 1000), (0, 0, 1000));
    assert_eq!(l.check(src, t0 + ms(59_999)), Verdict::Banned);
    assert!(l.is_banned(src, t0 + ms(59_999)));
    // Not extended: over at t0 + 60 s, with a full bucket.
    let end = t0 + ms(60_000);
    assert!(!l.is_banned(src, end));
    assert_eq!(l.banned(end), 0);
    assert_eq!(burst(&l, src, end, 50), (50, 0, 0));
    assert_eq!(l.check(src, end), Verdict::BanStarted);
    assert_eq!(l.check(src, end + ms(59_999)), Verdict::Banned);
}

#[test]
fn tokens_refill_continuously() {
    let l = Limiter::new(RULE, &NONE);
    let (t0, src) = (Instant::now(), ip("2001:db8::7"));
    assert_eq!(burst(&l, src, t0, 50), (50, 0, 0));
    // 50 per second: one token every 20 ms, none before.
    assert_eq!(l.check(src, t0 + ms(19)), Verdict::BanStarted);

    let l = Limiter::new(RULE, &NONE);
    assert_eq!(burst(&l, src, t0, 50), (50, 0, 0));
    assert_eq!(burst(&l, src, t0 + ms(20), 1), (1, 0, 0));
    assert_eq!(burst(&l, src, t0 + ms(100), 4), (4, 0, 0));
    assert_eq!(l.check(src, t0 + ms(100)), Verdict::BanStarted);

    // Refill stops at a full bucket, however long the pause.
    let l = Limiter::new(RULE, &NONE);
    assert_eq!(burst(&l, src, t0, 10), (10, 0, 0));
    assert_eq!(burst(&l, src, t0 + ms(3_600_000), 51), (50, 1, 0));
}

#[test]
fn steady_rate_at_the_limit_never_bans() {
    for (rule, step) in [
        (RULE, 20), // exactly 50/s
        (
            PerSource {
                requests: 3,
                per_ms: 1000,
                ban_ms: 1000,
                ipv6_prefix: DEFAULT_IPV6_PREFIX,
            },
            334,
        ), // just under 3/s
        (
            PerSource {
                requests: 1,
                per_ms: 1,
                ban_ms: 1,
                ipv6_prefix: DEFAULT_IPV6_PREFIX,
            },
            1,
        ), // 1/ms
        (
            PerSource {
                requests: 7,
                per_ms: 10_000,
                ban_ms: 5000,
                ipv6_prefix: DEFAULT_IPV6_PREFIX,
            },
            10_000 / 7 + 1,
        ),
    ] {
        let l = Limiter::new(rule, &NONE);
        let (t0, src) = (Instant::now(), ip("198.51.100.1"));
        // A full burst first, then the steady rate.
        assert_eq!(
            burst(&l, src, t0, rule.requests as usize).0,
            rule.requests as usize
        );
        for i in 1..=10_000u64 {
            assert_eq!(
                l.check(src, t0 + ms(i * step)),
                Verdict::Pass,
                "{rule:?} request {i}"
            );
        }
    }
}

#[test]
fn steady_rate_over_the_limit_bans() {
    let l = Limiter::new(RULE, &NONE);
    let (t0, src) = (Instant::now(), ip("198.51.100.1"));
    // 19 ms apart: 52.6/s, one token short every 20 requests or so.
    let first_ban =
        (0..10_000u64).position(|i| l.check(src, t0 + ms(i * 19)) == Verdict::BanStarted);
    assert!(
        first_ban.is_some_and(|i| i > 50 && i < 2000),
        "{first_ban:?}"
    );
}

#[test]
fn other_sources_unaffected() {
    let l = Limiter::new(RULE, &NONE);
    let t0 = Instant::now();
    let (bad, good) = (ip("203.0.113.66"), ip("203.0.113.67"));
    assert_eq!(burst(&l, bad, t0, 1000), (50, 1, 949));
    assert_eq!(burst(&l, good, t0, 50), (50, 0, 0));
    assert!(!l.is_banned(good, t0));
    assert!(!l.is_banned(ip("203.0.113.68"), t0), "unknown source");
    assert_eq!(l.banned(t0), 1);
}

#[test]
fn ipv4_and_mapped_are_one_source() {
    let l = Limiter::new(RULE, &NONE);
    let t0 = Instant::now();
    assert_eq!(burst(&l, ip("192.0.2.9"), t0, 50), (50, 0, 0));
    assert_eq!(l.check(ip("::ffff:192.0.2.9"), t0), Verdict::BanStarted);
    assert!(l.is_banned(ip("192.0.2.9"), t0));
    // The IPv6 address with the same low bits is another source.
    assert!(!l.is_banned(ip("::c000:209"), t0));
}

#[test]
fn trusted_never_limited() {
    let l = Limiter::new(RULE, &TRUSTED);
    let t0 = Instant::now();
    for src in ["10.1.2.3", "192.0.2.1", "::ffff:10.9.9.9"] {
        assert_eq!(burst(&l, ip(src), t0, 10_000), (10_000, 0, 0), "{src}");
        assert!(!l.is_banned(ip(src), t0));
    }
    assert!(l.is_empty(), "trusted sources are not in the table");
    assert_eq!(burst(&l, ip("192.0.2.2"), t0, 51), (50, 1, 0));
}

#[test]
fn bounded_under_a_flood_of_distinct_sources() {
    let l = Limiter::new(RULE, &NONE);
    assert_eq!(l.capacity(), DEFAULT_CAPACITY);
    let t0 = Instant::now();
    let (banned_src, busy_src) = (ip("203.0.113.66"), ip("2001:db8::66"));
    assert_eq!(burst(&l, banned_src, t0, 51), (50, 1, 0));
    // A source a few tokens from its limit.
    assert_eq!(burst(&l, busy_src, t0, 45), (45, 0, 0));
    for i in 0..1_000_000u32 {
        // Spoofed IPv4 sources and IPv6 networks (a /64 each), 100 ns
        // apart (a million in 0.1 s).
        let at = t0 + Duration::from_nanos(100 * u64::from(i));
        let spoofed = if i % 2 == 0 {
            IpAddr::from((0x0100_0000 + i).to_be_bytes())
        } else {
            IpAddr::from(((0x2001_0db8_u128 << 96) | (u128::from(i) << 64) | 1).to_be_bytes())
        };
        assert_eq!(l.check(spoofed, at), Verdict::Pass);
        if i % 1000 == 0 {
            assert_eq!(
                l.check(banned_src, at),
                Verdict::Banned,
                "after {i} spoofed sources"
            );
        }
    }
    let end = t0 + ms(100);
    assert!(l.len() <= l.capacity());
    assert!(
        l.len() > l.capacity() / 2,
        "the table is in use: {}",
        l.len()
    );
    assert!(l.is_banned(banned_src, end));
    assert_eq!(l.banned(end), 1);
    // Still tracked: 5 tokens left plus 0.1 s of refill (5), not a full bucket.
    assert_eq!(burst(&l, busy_src, end, 11), (10, 1, 0));
}

#[test]
fn tracked_source_survives_a_flood() {
    // A source close to its limit over a slow period is kept while a flood
    // of one-request sources recycles the other slots.
    let slow = PerSource {
        requests: 50,
        per_ms: 3_600_000,
        ban_ms: 60_000,
        ipv6_prefix: DEFAULT_IPV6_PREFIX,
    };
    let l = Limiter::with_capacity(slow, &NONE, 512);
    assert_eq!(l.capacity(), 512);
    let t0 = Instant::now();
    let src = ip("203.0.113.5");
    assert_eq!(burst(&l, src, t0, 45), (45, 0, 0));
    for i in 0..100_000u32 {
        let spoofed = IpAddr::from((0x0100_0000 + i).to_be_bytes());
        assert_eq!(l.check(spoofed, t0 + ms(u64::from(i))), Verdict::Pass);
    }
    assert!(l.len() <= 512);
    // 5 tokens left plus 100 s of refill at 50 an hour (1.39).
    assert_eq!(burst(&l, src, t0 + ms(100_000), 7), (6, 1, 0));
}

#[test]
fn banned_entries_go_last_and_soonest_ending_first() {
    // One set only: 64 shards of one set each, but pick sources until eight
    // land in the same set.
    let l = Limiter::with_capacity(RULE, &NONE, 1);
    assert_eq!(l.capacity(), SHARDS * WAYS);
    let t0 = Instant::now();
    let place = |s: IpAddr| l.place(source_key(s, RULE.ipv6_prefix));
    let first = ip("203.0.113.0");
    let same: Vec<IpAddr> = (0..u32::MAX)
        .map(|i| IpAddr::from(0xcb00_7100_u32.wrapping_add(i).to_be_bytes()))
        .filter(|s| place(*s) == place(first))
        .take(WAYS + 1)
        .collect();
    // Ban all eight ways, a millisecond apart.
    for (k, s) in same[..WAYS].iter().enumerate() {
        assert_eq!(burst(&l, *s, t0 + ms(k as u64), 51), (50, 1, 0));
    }
    // A newcomer takes the slot of the ban that ends first.
    let at = t0 + ms(100);
    assert_eq!(l.check(same[WAYS], at), Verdict::Pass);
    assert!(!l.is_banned(same[0], at), "evicted");
    assert!(same[1..WAYS].iter().all(|s| l.is_banned(*s, at)));
    assert_eq!(l.banned(at), WAYS - 1);
}

#[test]
fn concurrent_workers_share_one_bucket() {
    let l = Limiter::new(RULE, &NONE);
    let (t0, src) = (Instant::now(), ip("192.0.2.77"));
    let passed: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| s.spawn(|| burst(&l, src, t0, 100).0))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(passed, 50);
    assert_eq!(l.banned(t0), 1);
}

#[test]
fn out_of_range_rules_are_clamped_and_rejected() {
    let zero = PerSource {
        requests: 0,
        per_ms: 0,
        ban_ms: 0,
        ipv6_prefix: DEFAULT_IPV6_PREFIX,
    };
    assert!(zero.validate().is_err());
    assert!(
        PerSource {
            ban_ms: MAX_BAN_MS + 1,
            ..RULE
        }
        .validate()
        .is_err()
    );
    assert!(RULE.validate().is_ok());
    let l = Limiter::new(zero, &NONE);
    assert_eq!(
        l.per_source(),
        PerSource {
            requests: 1,
            per_ms: 1,
            ban_ms: 1,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    );
    let (t0, src) = (Instant::now(), ip("192.0.2.8"));
    assert_eq!(burst(&l, src, t0, 2), (1, 1, 0));
    assert_eq!(l.check(src, t0 + ms(1)), Verdict::Pass);

    // Extremes do not overflow.
    let huge = PerSource {
        requests: u32::MAX,
        per_ms: u64::MAX,
        ban_ms: u64::MAX,
        ipv6_prefix: DEFAULT_IPV6_PREFIX,
    };
    let l = Limiter::new(huge, &NONE);
    assert_eq!(l.check(src, t0), Verdict::Pass);
    assert_eq!(
        l.check(src, t0 + Duration::from_secs(1 << 40)),
        Verdict::Pass
    );
    let l = Limiter::new(
        PerSource {
            requests: 1,
            ..huge
        },
        &NONE,
    );
    assert_eq!(burst(&l, src, t0, 2), (1, 1, 0));
    assert!(l.is_banned(src, t0 + ms(MAX_BAN_MS - 1)));
}

#[test]
fn time_going_backwards_is_harmless() {
    let l = Limiter::new(RULE, &NONE);
    let (t0, src) = (Instant::now(), ip("192.0.2.10"));
    let later = t0 + ms(1000);
    assert_eq!(burst(&l, src, later, 50), (50, 0, 0));
    // An earlier `now` from a slower worker refills nothing.
    assert_eq!(l.check(src, t0), Verdict::BanStarted);
    assert!(l.is_banned(src, t0 + ms(59_999)));
}

#[test]
fn ban_message() {
    let m = RULE.ban_message(ip("192.0.2.7")).to_string();
    assert_eq!(
        m,
        "source 192.0.2.7 over 50 requests per 1s: ignored for 60s"
    );
    let r = PerSource {
        requests: 5,
        per_ms: 1500,
        ban_ms: 250,
        ipv6_prefix: DEFAULT_IPV6_PREFIX,
    };
    assert_eq!(
        r.ban_message(ip("2001:db8:0:7:a::1")).to_string(),
        "source 2001:db8:0:7::/64 over 5 requests per 1.5s: ignored for 0.25s",
        "an IPv6 source is its network"
    );
    let r = PerSource {
        requests: 5,
        per_ms: 1,
        ban_ms: 10_001,
        ipv6_prefix: 128,
    };
    assert_eq!(
        r.ban_message(ip("::1")).to_string(),
        "source ::1 over 5 requests per 0.001s: ignored for 10.001s"
    );
}

#[test]
fn send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Limiter>();
    both::<NetList>();
    both::<Verdict>();
}

#[test]
fn an_ipv6_source_is_its_network_of_ipv6_prefix_bits() {
    let l = Limiter::new(RULE, &NONE);
    let t0 = Instant::now();
    // 50 requests from 50 addresses of one /64: the 51st, from yet
    // another address of it, starts the ban of the whole network.
    for i in 1..=50u16 {
        let src = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, i, 0, 0, 1));
        assert_eq!(l.check(src, t0), Verdict::Pass, "address {i}");
    }
    assert_eq!(l.check(ip("2001:db8:1:2:ffff::9"), t0), Verdict::BanStarted);
    assert!(l.is_banned(ip("2001:db8:1:2::77"), t0));
    assert_eq!(l.check(ip("2001:db8:1:2::77"), t0), Verdict::Banned);
    assert_eq!(l.banned(t0), 1, "one entry for the network");
    // The next /64 is another source.
    assert_eq!(l.check(ip("2001:db8:1:3::1"), t0), Verdict::Pass);
    assert!(!l.is_banned(ip("2001:db8:1:3::1"), t0));

    // ipv6_prefix: 128 counts every address alone.
    let each = Limiter::new(
        PerSource {
            ipv6_prefix: 128,
            ..RULE
        },
        &NONE,
    );
    for i in 1..=200u16 {
        let src = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, i));
        assert_eq!(each.check(src, t0), Verdict::Pass, "address {i}");
    }

    // IPv4 (and IPv4-mapped IPv6) sources are addresses whatever the prefix.
    let short = Limiter::new(
        PerSource {
            requests: 1,
            ipv6_prefix: 1,
            ..RULE
        },
        &NONE,
    );
    assert_eq!(short.check(ip("192.0.2.7"), t0), Verdict::Pass);
    assert_eq!(short.check(ip("::ffff:192.0.2.8"), t0), Verdict::Pass);
    assert_eq!(short.check(ip("::ffff:192.0.2.7"), t0), Verdict::BanStarted);
    // /1: every IPv6 address from 2001:: to 7fff:... is one source.
    assert_eq!(short.check(ip("2001:db8::1"), t0), Verdict::Pass);
    assert_eq!(short.check(ip("2a00::1"), t0), Verdict::BanStarted);
    assert_eq!(short.check(ip("8000::1"), t0), Verdict::Pass);
}

#[test]
fn ipv6_prefix_out_of_range_is_rejected_and_clamped() {
    for bad in [0u8, 129, 255] {
        let rule = PerSource {
            ipv6_prefix: bad,
            ..RULE
        };
        assert!(rule.validate().is_err(), "{bad}");
        let l = Limiter::new(rule, &NONE);
        assert!((1..=128).contains(&l.per_source().ipv6_prefix), "{bad}");
    }
    for good in [1u8, 48, 64, 128] {
        let rule = PerSource {
            ipv6_prefix: good,
            ..RULE
        };
        assert!(rule.validate().is_ok(), "{good}");
    }
}
