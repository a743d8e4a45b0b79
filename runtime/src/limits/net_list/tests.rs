//! Tests of [`Net`], [`NetRange`] and [`NetList`].

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> Net {
    Net::parse(s).unwrap()
}

/// A list built the way generated code builds it (leaked for `'static`).
fn list(entries: &[&str]) -> NetList {
    let ranges = NetList::ranges_of(entries).unwrap();
    NetList::new(Box::leak(ranges.into_boxed_slice()))
}

#[test]
fn parse_forms() {
    let n = net("10.0.0.0/8");
    assert!(n.is_v4());
    assert_eq!(n.prefix_len(), 8);
    assert_eq!(n.addr(), ip("10.0.0.0"));
    assert_eq!(n.to_string(), "10.0.0.0/8");

    assert_eq!(net("192.0.2.1").prefix_len(), 32);
    assert_eq!(net(" 192.0.2.1/32 "), net("192.0.2.1"));
    assert_eq!(net("0.0.0.0/0").range(), NetRange::v4(0, u32::MAX));

    let v6 = net("2001:db8::/32");
    assert!(!v6.is_v4());
    assert_eq!(v6.to_string(), "2001:db8::/32");
    assert_eq!(net("::1").prefix_len(), 128);
    assert_eq!(net("[::1]"), net("::1"));
    assert_eq!(net("[2001:db8::]/32"), v6);
    assert_eq!(net("::/0").range(), NetRange::v6(0, u128::MAX));
}

#[test]
fn parse_mapped_networks_as_ipv4() {
    assert_eq!(net("::ffff:10.0.0.0/104"), net("10.0.0.0/8"));
    assert_eq!(net("::ffff:192.0.2.1"), net("192.0.2.1"));
    assert_eq!(net("::ffff:0:0/96"), net("0.0.0.0/0"));
    // Shorter than /96: an IPv6 network.
    assert!(!net("::fffe:0:0/95").is_v4());
    assert!(!net("::fffe:0:0/95").contains(ip("::ffff:1.2.3.4")));
}

#[test]
fn parse_errors() {
    let e = Net::parse("10.1.2.3/8").unwrap_err();
    assert!(e.contains("host bits") && e.contains("10.0.0.0/8"), "{e}");
    let e = Net::parse("2001:db8::1/32").unwrap_err();
    assert!(e.contains("2001:db8::/32"), "{e}");

    let e = Net::parse("10.0.0.0/33").unwrap_err();
    assert!(e.contains("too long") && e.contains("/32"), "{e}");
    let e = Net::parse("::/129").unwrap_err();
    assert!(e.contains("too long") && e.contains("/128"), "{e}");
    assert!(Net::parse("::/999").is_err());
    assert!(Net::parse("::/1000").is_err());

    for bad in [
        "",
        " ",
        "garbage",
        "10.0.0",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "10.0.0.0 /8",
        "[10.0.0.1]",
        "[::1",
        "::1]",
        "[::1]]",
        "[[::1]]",
        "fe80::1%eth0",
        "1.2.3.4.5",
        "10.0.0.0/a",
        "/8",
        "256.0.0.0",
        "::g",
    ] {
        assert!(Net::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn net_contains() {
    let n = net("10.0.0.0/8");
    assert!(n.contains(ip("10.0.0.0")));
    assert!(n.contains(ip("10.255.255.255")));
    assert!(!n.contains(ip("9.255.255.255")));
    assert!(!n.contains(ip("11.0.0.0")));
    assert!(n.contains(ip("::ffff:10.1.2.3")), "mapped counts as IPv4");
    assert!(!n.contains(ip("::a01:203")), "IPv4-compatible is IPv6");

    let v6 = net("2001:db8::/32");
    assert!(v6.contains(ip("2001:db8::")));
    assert!(v6.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!v6.contains(ip("2001:db9::")));
    assert!(!v6.contains(ip("10.0.0.1")));

    assert!(net("::/0").contains(ip("::1")));
    assert!(!net("::/0").contains(ip("::ffff:1.2.3.4")));
    assert!(!net("::/0").contains(ip("1.2.3.4")));
    assert!(net("0.0.0.0/0").contains(ip("::ffff:1.2.3.4")));
}

#[test]
fn ranges_of_sorts_and_merges() {
    assert_eq!(
        NetList::ranges_of(&["10.128.0.0/9", "10.0.0.0/9"]).unwrap(),
        vec![NetRange::v4(0x0a00_0000, 0x0aff_ffff)]
    );
    // Overlap, containment, adjacency, duplicates, and families kept apart.
    let r = NetList::ranges_of(&[
        "2001:db8::/32",
        "192.168.1.0/24",
        "10.0.0.0/8",
        "10.1.0.0/16",
        "192.168.0.0/24",
        "::1",
        "192.168.0.0/24",
        "0.0.0.1",
    ])
    .unwrap();
    assert_eq!(
        r,
        vec![
            NetRange::v4(1, 1),
            NetRange::v4(0x0a00_0000, 0x0aff_ffff),
            NetRange::v4(0xc0a8_0000, 0xc0a8_01ff),
            NetRange::v6(1, 1),
            NetRange::v6(0x2001_0db8 << 96, (0x2001_0db8 << 96) | ((1u128 << 96) - 1)),
        ]
    );
    // The last IPv4 address and the first IPv6 one are not adjacent.
    let r = NetList::ranges_of(&["255.255.255.255", "::"]).unwrap();
    assert_eq!(
        r,
        vec![NetRange::v4(u32::MAX, u32::MAX), NetRange::v6(0, 0)]
    );
    // Merging up to the last address does not overflow.
    let r = NetList::ranges_of(&["::/0", "ffff::/16", "::/1"]).unwrap();
    assert_eq!(r, vec![NetRange::v6(0, u128::MAX)]);
    assert_eq!(NetList::ranges_of(&[]).unwrap(), vec![]);
}

#[test]
fn ranges_of_names_the_bad_entry() {
    let e = NetList::ranges_of(&["10.0.0.0/8", "10.1.2.3/8"]).unwrap_err();
    assert!(
        e.contains("\"10.1.2.3/8\"") && e.contains("10.0.0.0/8"),
        "{e}"
    );
}

#[test]
fn contains_at_edges() {
    let l = list(&[
        "10.0.0.0/8",
        "192.168.0.0/16",
        "192.0.2.1",
        "2001:db8::/32",
        "::1",
    ]);
    for (a, inside) in [
        ("9.255.255.255", false),
        ("10.0.0.0", true),
        ("10.255.255.255", true),
        ("11.0.0.0", false),
        ("192.0.2.0", false),
        ("192.0.2.1", true),
        ("192.0.2.2", false),
        ("192.167.255.255", false),
        ("192.168.0.0", true),
        ("192.168.255.255", true),
        ("192.169.0.0", false),
        ("0.0.0.0", false),
        ("255.255.255.255", false),
        ("::", false),
        ("::1", true),
        ("::2", false),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:db8::", true),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("2001:db9::", false),
        ("::ffff:10.0.0.1", true),
        ("::ffff:11.0.0.1", false),
        // The v4 numbers of 10/8 as IPv6 addresses are not in it.
        ("::a00:1", false),
    ] {
        assert_eq!(l.contains(ip(a)), inside, "{a}");
        assert_eq!(l.contains_text(a), inside, "{a}");
    }
    assert!(l.contains_text("[::1]"));
    assert!(!l.contains_text("10.0.0.1:5060"));
    assert!(!l.contains_text(" 10.0.0.1"));
    assert!(!l.contains_text(""));
    assert!(!l.contains_text("example.com"));
}

#[test]
fn empty_list_contains_nothing() {
    let l = NetList::EMPTY;
    assert!(l.is_empty());
    assert!(!l.contains(ip("0.0.0.0")));
    assert!(!l.contains(ip("::")));
    assert!(!l.contains_text("10.0.0.1"));
    assert!(list(&[]).is_empty());
}

#[test]
fn whole_families() {
    let v4 = list(&["0.0.0.0/0"]);
    assert!(v4.contains(ip("0.0.0.0")));
    assert!(v4.contains(ip("255.255.255.255")));
    assert!(v4.contains(ip("::ffff:1.2.3.4")));
    assert!(!v4.contains(ip("::")));
    assert!(!v4.contains(ip("2001:db8::1")));

    // ::/0 is every IPv6 source; IPv4 senders, mapped or not, are not in it.
    let v6 = list(&["::/0"]);
    assert!(v6.contains(ip("::")));
    assert!(v6.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!v6.contains(ip("::ffff:1.2.3.4")));
    assert!(!v6.contains(ip("1.2.3.4")));
}

#[test]
fn static_list_and_constructor_text() {
    static NETS: NetList = NetList::new(&[
        NetRange::v4(0x0a00_0000, 0x0aff_ffff),
        NetRange::v6(
            0x2001_0db8_0000_0000_0000_0000_0000_0000,
            0x2001_0db8_ffff_ffff_ffff_ffff_ffff_ffff,
        ),
    ]);
    assert!(NETS.sorted);
    assert!(NETS.contains(ip("10.9.8.7")));
    assert!(NETS.contains(ip("2001:db8::7")));
    assert!(!NETS.contains(ip("2001:db9::7")));
    let r = NetList::ranges_of(&["10.0.0.0/8", "2001:db8::/32"]).unwrap();
    assert_eq!(r, NETS.ranges());
    assert_eq!(r[0].constructor(), "NetRange::v4(0x0a000000, 0x0affffff)");
    assert_eq!(
        r[1].constructor(),
        "NetRange::v6(0x20010db8000000000000000000000000, 0x20010db8ffffffffffffffffffffffff)"
    );
    assert!(r[0].is_v4() && r[0].lo() == 0x0a00_0000 && r[0].hi() == 0x0aff_ffff);
}

#[test]
fn unordered_list_still_answers() {
    static NETS: NetList = NetList::new(&[
        NetRange::v6(1, 1),
        NetRange::v4(0x0a00_0000, 0x0aff_ffff),
        NetRange::v4(0x0a00_0000, 0x0a00_00ff),
        NetRange::v4(5, 1),
    ]);
    assert!(!NETS.sorted);
    assert!(NETS.contains(ip("10.1.1.1")));
    assert!(NETS.contains(ip("::1")));
    assert!(!NETS.contains(ip("0.0.0.3")));
}
