//! Networks and sorted network tables: `trusted: [10.0.0.0/8, "192.0.2.1"]`
//! and the `$si in [10.0.0.0/8, 192.168.0.0/16]` condition.
//!
//! [`Net::parse`] reads one entry. The code generator turns a whole list
//! into sorted, merged inclusive ranges with [`NetList::ranges_of`] at build
//! time and prints them (see [`NetRange::constructor`]) as
//! `static NETS: NetList = NetList::new(&[NetRange::v4(..), ..]);`, so a
//! lookup at run time is one binary search and no allocation.
//!
//! IPv4 and IPv6 ranges are kept apart (all IPv4 ranges sort before all
//! IPv6 ones). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
//! dual-stack socket reports for an IPv4 sender) is treated as the IPv4
//! address it carries, everywhere: it matches IPv4 ranges only, so `::/0`
//! means "every IPv6 source" and does not contain IPv4 senders (write
//! `0.0.0.0/0` too for "everything"). For the same reason an entry written
//! as a mapped network (`::ffff:10.0.0.0/104`) is read as its IPv4 network
//! (`10.0.0.0/8`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IPv4-mapped prefix `::ffff:0:0/96`: the top 96 bits of a mapped
/// address (`addr >> 32`).
pub(crate) const MAPPED_PREFIX: u128 = 0xffff;

/// The family and number of an address, mapped IPv6 read as IPv4.
/// `(false, v4 widened)` or `(true, v6)`.
pub(crate) fn ip_key(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (false, u128::from(u32::from(v4))),
            None => (true, u128::from(v6)),
        },
    }
}

/// All `width` bits set (`width` 32 or 128), as the low bits of a u128.
fn all_ones(width: u8) -> u128 {
    1u128
        .checked_shl(u32::from(width))
        .map_or(u128::MAX, |b| b - 1)
}

/// The network mask of a prefix of `len` bits in an address of `width` bits,
/// as the low `width` bits of a u128 (`len <= width <= 128`).
fn mask(len: u8, width: u8) -> u128 {
    all_ones(width) & !all_ones(width.saturating_sub(len))
}

/// A network (address + prefix length), IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    v6: bool,
    /// The network address (host bits clear); IPv4 widened.
    addr: u128,
    /// Prefix length: at most 32 (IPv4) or 128 (IPv6).
    len: u8,
}

impl Net {
    /// `"10.0.0.0/8"`, `"192.0.2.1"` (= /32), `"2001:db8::/32"`, `"::1"`,
    /// `"[::1]"`, `"[2001:db8::]/32"`. Surrounding spaces are ignored. A
    /// mapped IPv6 network of /96 or longer is read as its IPv4 network.
    ///
    /// Errors say what is wrong; host bits set (`"10.1.2.3/8"`) gives the
    /// network address to write instead.
    pub fn parse(text: &str) -> Result<Net, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err(
                "empty network (expected e.g. 10.0.0.0/8, 192.0.2.1 or 2001:db8::/32)".into(),
            );
        }
        let (addr_text, len_text) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip = parse_addr(addr_text).ok_or_else(|| {
            format!("`{s}` is not an IP address or network (expected e.g. 10.0.0.0/8, 192.0.2.1 or 2001:db8::/32)")
        })?;
        let (v6, width) = match ip {
            IpAddr::V4(_) => (false, 32u8),
            IpAddr::V6(_) => (true, 128u8),
        };
        let len = match len_text {
            None => width,
            Some(l) => parse_len(l)
                .ok_or_else(|| format!("`{s}`: the prefix length `/{l}` is not a number"))?,
        };
        if len > width {
            let family = if v6 { "IPv6" } else { "IPv4" };
            return Err(format!(
                "`{s}`: prefix length /{len} is too long for an {family} address (at most /{width})"
            ));
        }
        let bits = match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let net = Net {
            v6,
            addr: bits & mask(len, width),
            len,
        };
        if net.addr != bits {
            return Err(format!("`{s}` has host bits set: the network is {net}"));
        }
        Ok(net.unmapped())
    }

    /// A mapped IPv6 network of /96 or longer as its IPv4 network.
    fn unmapped(self) -> Net {
        if self.v6 && self.len >= 96 && self.addr >> 32 == MAPPED_PREFIX {
            Net {
                v6: false,
                addr: self.addr & u128::from(u32::MAX),
                len: self.len - 96,
            }
        } else {
            self
        }
    }

    /// Whether `ip` is in this network (a mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range().contains_key(ip_key(ip))
    }

    /// Whether this is an IPv4 network.
    pub fn is_v4(&self) -> bool {
        !self.v6
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.addr as u32))
        }
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The inclusive range of addresses of this network.
    pub fn range(&self) -> NetRange {
        let width = if self.v6 { 128 } else { 32 };
        let hi = self.addr | (all_ones(width) & !mask(self.len, width));
        NetRange {
            v6: self.v6,
            lo: self.addr,
            hi,
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

/// An address, IPv6 possibly in brackets (brackets are for IPv6 only).
fn parse_addr(text: &str) -> Option<IpAddr> {
    match text.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')?
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6),
        None => text.parse().ok(),
    }
}

/// A prefix length: 1 to 3 decimal digits (no sign, no spaces).
fn parse_len(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An inclusive range `[lo, hi]` of IPv4 or IPv6 addresses (IPv4 stored as
/// u32 values widened to u128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetRange {
    v6: bool,
    lo: u128,
    hi: u128,
}

impl NetRange {
    /// IPv4 addresses `lo..=hi` (as u32, e.g. `0x0a000000` for 10.0.0.0).
    pub const fn v4(lo: u32, hi: u32) -> NetRange {
        NetRange {
            v6: false,
            lo: lo as u128,
            hi: hi as u128,
        }
    }

    /// IPv6 addresses `lo..=hi`.
    pub const fn v6(lo: u128, hi: u128) -> NetRange {
        NetRange { v6: true, lo, hi }
    }

    /// Whether this is an IPv4 range.
    pub const fn is_v4(&self) -> bool {
        !self.v6
    }

    /// The first address (IPv4 widened).
    pub const fn lo(&self) -> u128 {
        self.lo
    }

    /// The last address (IPv4 widened).
    pub const fn hi(&self) -> u128 {
        self.hi
    }

    /// The Rust expression that builds this range, for the generator:
    /// `NetRange::v4(0x0a000000, 0x0affffff)` or
    /// `NetRange::v6(0x20010db8000000000000000000000000, 0x...)`
    /// (the caller adds a path prefix if `NetRange` is not in scope).
    pub fn constructor(&self) -> String {
        if self.v6 {
            format!("NetRange::v6({:#034x}, {:#034x})", self.lo, self.hi)
        } else {
            format!("NetRange::v4({:#010x}, {:#010x})", self.lo, self.hi)
        }
    }

    /// Whether the address `(v6, n)` (see [`ip_key`]) is in the range.
    fn contains_key(&self, (v6, n): (bool, u128)) -> bool {
        self.v6 == v6 && self.lo <= n && n <= self.hi
    }

    /// The sort order: IPv4 first, then by first address.
    fn order(&self) -> (bool, u128) {
        (self.v6, self.lo)
    }
}

/// A sorted table of networks, usable as a `static`.
#[derive(Clone, Copy, Debug)]
pub struct NetList {
    ranges: &'static [NetRange],
    /// Whether `ranges` is sorted and disjoint (what the generator emits);
    /// if not (hand-written), lookups scan instead of searching, still right.
    sorted: bool,
}

impl NetList {
    /// A list of ranges as [`NetList::ranges_of`] returns them: sorted
    /// (IPv4 first, then by first address) and disjoint. The only work is an
    /// order check (done at compile time for a `static`); a list that is not
    /// in order still answers right, by a linear scan.
    pub const fn new(ranges: &'static [NetRange]) -> NetList {
        NetList {
            ranges,
            sorted: in_order(ranges),
        }
    }

    /// The empty list (contains nothing).
    pub const EMPTY: NetList = NetList::new(&[]);

    /// Build-time helper for the generator: parse every entry with
    /// [`Net::parse`], sort, and merge overlapping or adjacent ranges.
    /// An error names the entry.
    pub fn ranges_of(entries: &[&str]) -> Result<Vec<NetRange>, String> {
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let net =
                Net::parse(entry).map_err(|e| format!("network list entry {entry:?}: {e}"))?;
            ranges.push(net.range());
        }
        ranges.sort_by_key(NetRange::order);
        let mut merged: Vec<NetRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if last.v6 == r.v6 && r.lo <= last.hi.saturating_add(1) => {
                    last.hi = last.hi.max(r.hi);
                }
                _ => merged.push(r),
            }
        }
        Ok(merged)
    }

    /// Whether `ip` is in one of the networks: a binary search. An
    /// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) matches IPv4 ranges only.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let key = ip_key(ip);
        if !self.sorted {
            return self.ranges.iter().any(|r| r.contains_key(key));
        }
        // The first range that starts after `key`; the one before it is the
        // only candidate.
        let after = self.ranges.partition_point(|r| r.order() <= key);
        after > 0 && self.ranges[after - 1].contains_key(key)
    }

    /// The text form (`$si` is text in the language): an IP address,
    /// IPv6 possibly in brackets; anything else is not contained.
    pub fn contains_text(&self, text: &str) -> bool {
        parse_addr(text).is_some_and(|ip| self.contains(ip))
    }

    /// The ranges.
    pub fn ranges(&self) -> &'static [NetRange] {
        self.ranges
    }

    /// Whether the list has no networks.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Whether `ranges` is sorted, disjoint and well formed (`lo <= hi`, IPv4
/// within 32 bits), so that a binary search finds every match.
const fn in_order(ranges: &[NetRange]) -> bool {
    let mut i = 0;
    while i < ranges.len() {
        let r = ranges[i];
        if r.lo > r.hi || (!r.v6 && r.hi > u32::MAX as u128) {
            return false;
        }
        if i > 0 {
            let p = ranges[i - 1];
            let ordered = (!p.v6 && r.v6) || (p.v6 == r.v6 && p.hi < r.lo);
            if !ordered {
                return false;
            }
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests;
