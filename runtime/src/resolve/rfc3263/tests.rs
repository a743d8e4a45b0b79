//! Unit tests of the RFC 3263 ordering, with a seeded random source.

use super::*;

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
    Srv {
        priority,
        weight,
        port,
        target: target.into(),
        ttl: 60,
    }
}

fn naptr(order: u16, preference: u16, service: &str, replacement: &str) -> Naptr {
    Naptr {
        order,
        preference,
        flags: "s".into(),
        service: service.into(),
        replacement: replacement.into(),
        ttl: 300,
    }
}

fn addrs(ip: &str, ttl: u32) -> Addrs {
    Addrs {
        ips: vec![ip.parse().unwrap()],
        ttl,
    }
}

const ALL: [Transport; 5] = Transport::ALL;

#[test]
fn what_a_uri_asks_to_look_up() {
    assert_eq!(
        Query::new("Example.COM.", Some(5080), None),
        Query::Address {
            host: "example.com".into(),
            port: 5080,
            transport: Transport::Udp
        }
    );
    assert_eq!(
        Query::new("example.com", None, Some(Transport::Tls)),
        Query::Srv {
            host: "example.com".into(),
            transport: Transport::Tls
        }
    );
    assert_eq!(
        Query::new("example.com", None, None),
        Query::Naptr {
            host: "example.com".into()
        }
    );
    // An IP literal: no lookup, UDP unless the URI says otherwise.
    let literal = Query::new("192.0.2.1", None, None);
    assert_eq!(
        literal.literal().map(|t| (t.transport, t.addr)),
        Some((Transport::Udp, "192.0.2.1:5060".parse().unwrap()))
    );
    let tls = Query::new("[2001:db8::1]", None, Some(Transport::Tls));
    assert_eq!(
        tls.literal().map(|t| t.addr),
        Some("[2001:db8::1]:5061".parse().unwrap())
    );
    assert_eq!(Query::new("example.com", None, None).literal(), None);
    // Keys: one per kind of lookup; a response's source is checked against all.
    let keys: Vec<String> = Query::keys_of("a.example", 5070).collect();
    for q in [
        Query::new("a.example", Some(5070), Some(Transport::Tcp)),
        Query::new("a.example", None, Some(Transport::Tcp)),
        Query::new("a.example", None, None),
    ] {
        assert!(keys.contains(&q.key()), "{q:?}");
    }
}

#[test]
fn srv_records_go_by_priority() {
    let records = [
        srv(20, 0, 5062, "c.example"),
        srv(10, 5, 5060, "a.example"),
        srv(30, 1, 5063, "d.example"),
        srv(10, 5, 5061, "b.example"),
    ];
    let mut rng = Rng::new(7);
    for _ in 0..100 {
        let order: Vec<u16> = order_srv(&records, &mut |n| rng.up_to(n))
            .iter()
            .map(|r| r.priority)
            .collect();
        assert_eq!(order, [10, 10, 20, 30]);
    }
}

#[test]
fn weights_spread_the_first_choice_in_proportion() {
    let records = [
        srv(10, 60, 1, "a.example"),
        srv(10, 30, 2, "b.example"),
        srv(10, 10, 3, "c.example"),
    ];
    let mut rng = Rng::new(42);
    let mut first = [0u32; 4];
    const DRAWS: u32 = 10_000;
    for _ in 0..DRAWS {
        let ordered = order_srv(&records, &mut |n| rng.up_to(n));
        assert_eq!(ordered.len(), 3);
        first[usize::from(ordered[0].port)] += 1;
    }
    for (port, share) in [(1, 0.6), (2, 0.3), (3, 0.1)] {
        let got = f64::from(first[port]) / f64::from(DRAWS);
        assert!(
            (got - share).abs() < 0.03,
            "port {port}: {got:.3} of the first choices, expected about {share}"
        );
    }
}

#[test]
fn weight_zero_records_are_last_resorts_but_never_lost() {
    let records = [srv(10, 0, 1, "zero.example"), srv(10, 100, 2, "w.example")];
    let mut rng = Rng::new(3);
    let mut zero_first = 0;
    for _ in 0..10_000 {
        let ordered = order_srv(&records, &mut |n| rng.up_to(n));
        assert_eq!(ordered.len(), 2);
        if ordered[0].port == 1 {
            zero_first += 1;
        }
    }
    // Only a draw of exactly 0 (1 in 101) picks it first.
    assert!(zero_first < 300, "{zero_first}");
    // All weights 0: the order is kept.
    let zeros = [srv(10, 0, 1, "a.example"), srv(10, 0, 2, "b.example")];
    let ordered = order_srv(&zeros, &mut |n| rng.up_to(n));
    assert_eq!(ordered.iter().map(|r| r.port).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn naptr_records_go_by_order_then_preference() {
    let query = Query::new("example.com", None, None);
    let records = [
        naptr(20, 10, "SIP+D2U", "_sip._udp.example.com."),
        naptr(10, 50, "SIP+D2T", "_sip._tcp.example.com."),
        naptr(10, 20, "SIPS+D2T", "_sips._tcp.example.com."),
    ];
    let sets = srv_queries(&query, &records, &ALL);
    let got: Vec<(Transport, &str)> = sets
        .iter()
        .map(|s| (s.transport, s.name.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Transport::Tls, "_sips._tcp.example.com"),
            (Transport::Tcp, "_sip._tcp.example.com"),
            (Transport::Udp, "_sip._udp.example.com"),
        ]
    );
    assert_eq!(sets[0].naptr_ttl, Some(300));
}

#[test]
fn unsupported_services_are_skipped() {
    let query = Query::new("example.com", None, None);
    let mut regexp = naptr(1, 1, "SIP+D2U", "");
    regexp.flags = "u".into();
    let records = [
        naptr(5, 10, "SIPS+D2T", "_sips._tcp.example.com"),
        naptr(6, 10, "E2U+sip", "_x.example.com"),
        naptr(7, 10, "SIP+D2S", "_sip._sctp.example.com"),
        naptr(8, 10, "SIP+D2U", "_sip._udp.example.com"),
        regexp,
    ];
    let sets = srv_queries(&query, &records, &[Transport::Udp, Transport::Tcp]);
    assert_eq!(sets.len(), 1);
    assert_eq!(
        (sets[0].transport, sets[0].name.as_str()),
        (Transport::Udp, "_sip._udp.example.com")
    );
    // Nothing usable: SRV for each supported transport, as without NAPTR.
    let sets = srv_queries(&query, &records[..3], &[Transport::Udp, Transport::Tcp]);
    let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["_sip._udp.example.com", "_sip._tcp.example.com"]);
    // A transport in the URI: its SRV name only.
    let sets = srv_queries(
        &Query::new("example.com", None, Some(Transport::Tls)),
        &records,
        &ALL,
    );
    let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["_sips._tcp.example.com"]);
    // A port in the URI: no SRV at all.
    assert!(srv_queries(&Query::new("example.com", Some(5060), None), &records, &ALL).is_empty());
}

#[test]
fn targets_follow_the_srv_order_with_the_smallest_ttl() {
    let query = Query::new("example.com", None, None);
    let mut sets = srv_queries(&query, &[], &[Transport::Udp]);
    sets[0].records = vec![
        srv(20, 0, 5072, "backup.example.com."),
        srv(10, 0, 5070, "main.example.com."),
        srv(15, 0, 5071, "gone.example.com."),
    ];
    assert_eq!(
        srv_hosts(&sets),
        ["backup.example.com", "main.example.com", "gone.example.com"]
    );
    let mut found = HashMap::new();
    found.insert("main.example.com".to_owned(), addrs("192.0.2.10", 30));
    found.insert("backup.example.com".to_owned(), addrs("192.0.2.20", 7200));
    let mut rng = Rng::new(1);
    let targets = srv_targets(&sets, &found, &mut |n| rng.up_to(n));
    // The host without an address is left out.
    assert_eq!(
        targets,
        [
            Target {
                transport: Transport::Udp,
                addr: "192.0.2.10:5070".parse().unwrap(),
                ttl: Duration::from_secs(30),
            },
            Target {
                transport: Transport::Udp,
                addr: "192.0.2.20:5072".parse().unwrap(),
                ttl: Duration::from_secs(60),
            },
        ]
    );
    assert_eq!(answer_ttl(&targets), Some(Duration::from_secs(30)));
    assert!(!needs_fallback(&query, &sets));
}

#[test]
fn a_dot_target_means_no_service() {
    let query = Query::new("example.com", None, Some(Transport::Udp));
    let mut sets = srv_queries(&query, &[], &ALL);
    sets[0].records = vec![srv(0, 0, 0, ".")];
    assert!(srv_hosts(&sets).is_empty());
    let mut rng = Rng::new(1);
    assert!(srv_targets(&sets, &HashMap::new(), &mut |n| rng.up_to(n)).is_empty());
    // An SRV answer was found, so the host's own addresses are not used.
    assert!(!needs_fallback(&query, &sets));
}

#[test]
fn no_srv_record_falls_back_to_the_hosts_addresses() {
    let query = Query::new("example.com", None, None);
    let sets = srv_queries(&query, &[], &[Transport::Udp]);
    assert!(needs_fallback(&query, &sets));
    let targets = address_targets(&query, &[Transport::Udp], &addrs("192.0.2.5", 0));
    assert_eq!(
        targets,
        [Target {
            transport: Transport::Udp,
            addr: "192.0.2.5:5060".parse().unwrap(),
            ttl: MIN_TTL,
        }]
    );
    let tls = Query::new("example.com", None, Some(Transport::Tls));
    assert_eq!(fallback(&tls, &ALL), (Transport::Tls, 5061));
    let port = Query::new("example.com", Some(5099), Some(Transport::Tcp));
    assert_eq!(fallback(&port, &ALL), (Transport::Tcp, 5099));
    assert_eq!(clamp_ttl(86_400 * 7), MAX_TTL);
}
