//! Networks written in the routes file (`$si in [10.0.0.0/8, "::1"]`,
//! `limits.trusted`), parsed at build time into sorted, merged address
//! ranges, which the generator emits as a `NetList` table: the run time
//! only binary-searches it.

use std::net::IpAddr;

use crate::ast::{Operand, Sp, Var};

/// An inclusive address range of one family; IPv4 addresses as their
/// 32-bit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub v4: bool,
    pub lo: u128,
    pub hi: u128,
}

/// `10.0.0.0/8`, `192.0.2.1`, `2001:db8::/32`, `[::1]` -> its range.
pub fn parse(text: &str) -> Result<Range, String> {
    let text = text.trim();
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{text}` is not an IP address or network"))?;
    let (v4, value, bits) = match ip {
        IpAddr::V4(a) => (true, u128::from(u32::from(a)), 32u32),
        IpAddr::V6(a) => (false, u128::from(a), 128u32),
    };
    let prefix = match prefix {
        None => bits,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if n <= bits && !p.starts_with('+') => n,
            _ => return Err(format!("`/{p}` is not a prefix length from 0 to {bits}")),
        },
    };
    let host_bits = bits - prefix;
    let host_mask: u128 = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    if value & host_mask != 0 {
        let net = value & !host_mask;
        let shown = match ip {
            IpAddr::V4(_) => std::net::Ipv4Addr::from(net as u32).to_string(),
            IpAddr::V6(_) => std::net::Ipv6Addr::from(net).to_string(),
        };
        return Err(format!(
            "`{text}` has host bits set; the network is `{shown}/{prefix}`"
        ));
    }
    Ok(Range {
        v4,
        lo: value,
        hi: value | host_mask,
    })
}

/// Every entry parsed, sorted and merged (overlapping or adjacent ranges
/// of one family joined). The error names the entry's index.
pub fn ranges<'a>(
    entries: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Range>, (usize, String)> {
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        out.push(parse(e).map_err(|m| (i, m))?);
    }
    out.sort_by_key(|r| (!r.v4, r.lo, r.hi));
    let mut merged: Vec<Range> = Vec::with_capacity(out.len());
    for r in out {
        if let Some(last) = merged.last_mut()
            && last.v4 == r.v4
            && r.lo <= last.hi.saturating_add(1)
        {
            last.hi = last.hi.max(r.hi);
            continue;
        }
        merged.push(r);
    }
    Ok(merged)
}

/// Whether an `in [...]` list tests addresses against networks: some item
/// is written as a bare address or network, or the subject is `$si` and
/// every item is an address or network in quotes.
pub fn is_net_list(lhs: &Operand, items: &[Sp<Operand>]) -> bool {
    if items.iter().any(|i| matches!(i.node, Operand::Net(_))) {
        return true;
    }
    *lhs == Operand::Var(Var::Si)
        && !items.is_empty()
        && items
            .iter()
            .all(|i| matches!(&i.node, Operand::Str(s) if parse(s).is_ok()))
}

/// The text of a list item as a network, when it is one.
pub fn item_text(o: &Operand) -> Option<&str> {
    match o {
        Operand::Net(s) | Operand::Str(s) => Some(s),
        _ => None,
    }
}

/// Whether the lexer should read `text` (a run of address characters) as
/// an address or network rather than as numbers and words.
pub fn looks_like_net(text: &str) -> bool {
    !text.contains("..") && (text.contains(':') || text.contains('.')) && parse(text).is_ok()
        || text.contains('/') && (text.contains('.') || text.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_their_errors() {
        assert_eq!(
            parse("10.0.0.0/8").unwrap(),
            Range {
                v4: true,
                lo: 0x0a00_0000,
                hi: 0x0aff_ffff
            }
        );
        assert_eq!(
            parse("192.0.2.1").unwrap().lo,
            parse("192.0.2.1").unwrap().hi
        );
        assert_eq!(parse("0.0.0.0/0").unwrap().hi, 0xffff_ffff);
        assert_eq!(parse("::/0").unwrap().hi, u128::MAX);
        assert_eq!(parse("[::1]").unwrap().lo, 1);
        assert!(!parse("2001:db8::/32").unwrap().v4);
        let e = parse("10.1.2.3/8").unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
        assert!(parse("10.0.0.0/33").is_err());
        assert!(parse("10.0.0/8").is_err());
        assert!(parse("abc").is_err());
        assert!(parse("10.0.0.0/+8").is_err());
    }

    #[test]
    fn ranges_sort_and_merge() {
        let r = ranges(["10.128.0.0/9", "10.0.0.0/9", "::1", "192.168.0.0/16"]).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].lo, r[0].hi), (0x0a00_0000, 0x0aff_ffff));
        assert!(r[1].v4 && !r[2].v4);
        assert_eq!(ranges(["1.2.3.4", "bad"]).unwrap_err().0, 1);
    }

    #[test]
    fn what_the_lexer_reads_as_a_network() {
        assert!(looks_like_net("10.0.0.0/8"));
        assert!(looks_like_net("127.0.0.1"));
        assert!(looks_like_net("::1"));
        assert!(looks_like_net("10.1.2.3/8")); // read as a network, refused by the check
        assert!(!looks_like_net("500..599"));
        assert!(!looks_like_net("404"));
    }
}
