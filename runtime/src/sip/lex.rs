//! Byte-level lexical helpers shared by the SIP parsers (RFC 3261 §25.1):
//! whitespace, token characters, trimming and bounded decimal parsing.
//! Everything here works on bytes or ASCII and never allocates or panics.

/// Byte classes, one bit each, looked up in [`CLASSES`].
pub(crate) type Class = u8;

/// RFC 3261 `token` characters.
pub(crate) const TOKEN: Class = 1 << 0;
/// Host name characters: alphanumerics, '-', '.', '_'.
pub(crate) const HOST: Class = 1 << 1;
/// Unquoted Via param value: token plus ':', '[' and ']' (IPv6 `received`).
pub(crate) const PARAM_VALUE: Class = 1 << 2;
/// Linear whitespace as it can appear inside a (possibly folded) header value.
pub(crate) const WS: Class = 1 << 3;
/// ASCII decimal digits.
pub(crate) const DIGIT: Class = 1 << 4;
/// Bytes allowed anywhere in a URI: no whitespace, controls, DEL or `<>"`
/// (non-ASCII bytes pass; the host check rejects them where it matters).
pub(crate) const URI: Class = 1 << 5;
/// URI scheme characters after the first: alphanumerics, '+', '-', '.'.
pub(crate) const SCHEME: Class = 1 << 6;
/// Inside an IPv6 reference: hex digits, ':' and '.'.
pub(crate) const IPV6: Class = 1 << 7;

/// The classes of every byte value, so that a scanner tests a byte with one
/// load and a mask instead of a chain of comparisons (indexing by a `u8`
/// needs no bounds check).
static CLASSES: [Class; 256] = classes();

const fn classes() -> [Class; 256] {
    let mut t = [0; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut k = 0;
        if c.is_ascii_alphanumeric() {
            k |= TOKEN | HOST | PARAM_VALUE | SCHEME;
        }
        if matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        ) {
            k |= TOKEN | PARAM_VALUE;
        }
        if matches!(c, b'-' | b'.' | b'_') {
            k |= HOST;
        }
        if matches!(c, b':' | b'[' | b']') {
            k |= PARAM_VALUE;
        }
        if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
            k |= WS;
        }
        if c.is_ascii_digit() {
            k |= DIGIT;
        }
        if c > b' ' && c != 0x7f && !matches!(c, b'<' | b'>' | b'"') {
            k |= URI;
        }
        if matches!(c, b'+' | b'-' | b'.') {
            k |= SCHEME;
        }
        if c.is_ascii_hexdigit() || matches!(c, b':' | b'.') {
            k |= IPV6;
        }
        t[i] = k;
        i += 1;
    }
    t
}

/// True when byte `b` belongs to `class` (one of the constants above, or
/// several or-ed together).
#[inline]
pub(crate) fn is(b: u8, class: Class) -> bool {
    CLASSES[usize::from(b)] & class != 0
}

/// Linear whitespace as it can appear inside a (possibly folded) header value.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    is(b, WS)
}

/// True when every byte of `s` belongs to `class` (true for an empty `s`).
#[inline]
pub(crate) fn all(s: &[u8], class: Class) -> bool {
    s.iter().all(|&c| is(c, class))
}

/// `all(s, URI)`, eight bytes at a time (every URI parse checks its whole
/// text): a byte is out when it is at most a space, DEL, `<`, `>` or `"`.
pub(crate) fn all_uri(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of x is zero (exact as a yes/no).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        // Bytes below 0x21 (bytes of 0x80 and up have no high bit in !x).
        let low = x.wrapping_sub(0x21 * ONES) & !x & HIGH;
        let bad = low
            | zero(x ^ (0x7f * ONES))
            | zero(x ^ (u64::from(b'<') * ONES))
            | zero(x ^ (u64::from(b'>') * ONES))
            | zero(x ^ (u64::from(b'"') * ONES));
        if bad != 0 {
            return false;
        }
    }
    all(words.remainder(), URI)
}

/// ASCII case-insensitive equality, the same answer as
/// `<[u8]>::eq_ignore_ascii_case`, comparing eight bytes at a time (header
/// and parameter names are compared on every message).
pub(crate) fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 4 {
        return a.eq_ignore_ascii_case(b);
    }
    if n < 8 {
        // Two overlapping four-byte words cover the whole name.
        return fold(word4(a, 0)) == fold(word4(b, 0))
            && fold(word4(a, n - 4)) == fold(word4(b, n - 4));
    }
    // Whole words, then the last eight bytes (overlapping the previous word).
    let mut i = 0;
    while i + 8 < n {
        if fold(word8(a, i)) != fold(word8(b, i)) {
            return false;
        }
        i += 8;
    }
    fold(word8(a, n - 8)) == fold(word8(b, n - 8))
}

/// The eight bytes of `s` at `i` as a little-endian word (0 past the end).
fn word8(s: &[u8], i: usize) -> u64 {
    s.get(i..i + 8)
        .and_then(|w| w.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The four bytes of `s` at `i` as a little-endian word (0 past the end).
fn word4(s: &[u8], i: usize) -> u64 {
    s.get(i..i + 4)
        .and_then(|w| w.try_into().ok())
        .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
}

/// `x` with every ASCII upper case letter byte turned into lower case
/// (SWAR: a byte is upper case when it is at least 'A', not above 'Z' and
/// has no high bit; its 0x20 bit is then set).
fn fold(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = x & LOW7;
    let at_least_a = low + 0x3f3f_3f3f_3f3f_3f3f; // 0x80 - b'A' per byte
    let above_z = low + 0x2525_2525_2525_2525; // 0x80 - (b'Z' + 1) per byte
    let upper = at_least_a & !above_z & !x & HIGH;
    x | (upper >> 2)
}

/// Index of the first `byte` in `s`: a plain loop, cheaper than `memchr`'s
/// dispatch for the few dozen bytes of a URI or parameter.
#[inline]
pub(crate) fn find(s: &[u8], byte: u8) -> Option<usize> {
    s.iter().position(|&c| c == byte)
}

/// True when `s` is a non-empty RFC 3261 token.
pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && all(s.as_bytes(), TOKEN)
}

/// Index of the first non-whitespace byte at or after `i` (or `b.len()`).
#[inline]
pub(crate) fn skip_ws(b: &[u8], i: usize) -> usize {
    // Usually there is none: one test instead of a scan.
    match b.get(i) {
        Some(&c) if is_ws(c) => scan(b, i + 1, WS),
        _ => i,
    }
}

/// End of the run of bytes of `class` starting at `i` (`i` itself when `i`
/// is at or past the end).
#[inline]
pub(crate) fn scan(b: &[u8], i: usize, class: Class) -> usize {
    match b.get(i..) {
        Some(rest) => {
            i + rest
                .iter()
                .position(|&c| !is(c, class))
                .unwrap_or(rest.len())
        }
        None => i,
    }
}

/// `start..end` shrunk so that it neither begins nor ends with whitespace.
#[inline]
pub(crate) fn trim_span(b: &[u8], start: usize, end: usize) -> (usize, usize) {
    let end = end.min(b.len());
    let Some(s) = b.get(start..end) else {
        return (start, end);
    };
    match s.iter().position(|&c| !is_ws(c)) {
        None => (end, end),
        Some(lead) => {
            let last = s.iter().rposition(|&c| !is_ws(c)).unwrap_or(lead);
            (start + lead, start + last + 1)
        }
    }
}

/// `s` without leading/trailing SP, HT, CR, LF.
pub(crate) fn trim(s: &str) -> &str {
    let (start, end) = trim_span(s.as_bytes(), 0, s.len());
    // Only ASCII bytes were cut off, so both ends are char boundaries.
    s.get(start..end).unwrap_or("")
}

/// Decimal digits only (no sign, no whitespace); `None` on overflow or empty.
#[inline]
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    // Up to 19 digits cannot overflow; longer runs may still be small
    // (leading zeros), so they take the checked path.
    if s.is_empty() || s.len() > 19 {
        return parse_u64_checked(s);
    }
    let mut n = 0;
    for &c in s {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    Some(n)
}

/// [`parse_u64`] with overflow checks, for long digit runs.
fn parse_u64_checked(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !all(s, DIGIT) {
        return None;
    }
    s.iter().try_fold(0u64, |n, &c| {
        n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// Decimal `u32` (see [`parse_u64`]).
#[inline]
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_u64(s).and_then(|n| u32::try_from(n).ok())
}

/// Decimal `u16` (see [`parse_u64`]).
#[inline]
pub(crate) fn parse_u16(s: &[u8]) -> Option<u16> {
    parse_u64(s).and_then(|n| u16::try_from(n).ok())
}

/// End index (exclusive, after the closing quote) of the quoted string that
/// starts at `b[i] == b'"'`, honouring backslash escapes.
pub(crate) fn quoted_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while let Some(&c) = b.get(j) {
        match c {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Looks up `name` in a `;`-separated generic-param list (quotes respected,
/// whitespace around `;` and `=` allowed). `Some(None)` for a flag param.
pub(crate) fn find_param<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    let b = params.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let j = param_end(b, i);
        let piece = b.get(i..j).unwrap_or(&[]);
        let eq = find(piece, b'=').map(|k| i + k);
        let (ns, ne) = trim_span(b, i, eq.unwrap_or(j));
        if ns < ne
            && b.get(ns..ne)
                .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        {
            return Some(eq.map(|e| {
                let (vs, ve) = trim_span(b, e + 1, j);
                params.get(vs..ve).unwrap_or("")
            }));
        }
        i = j + 1;
    }
    None
}

/// End of the param starting at `i`: the next ';' outside quotes, or the
/// end of `b`. Always a char boundary (it follows an ASCII byte or is the end).
fn param_end(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while let Some(&c) = b.get(j) {
        match c {
            b';' => return j,
            b'"' => j = quoted_end(b, j).unwrap_or(b.len()),
            _ => j += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_uri_answers_as_the_class_table() {
        for b in 0..=255u8 {
            for len in 1..20 {
                for at in 0..len {
                    for fill in [b'a', b'!', 0x7e, 0x80, 0xff, b'#'] {
                        let mut v = vec![fill; len];
                        v[at] = b;
                        assert_eq!(
                            all_uri(&v),
                            all(&v, URI),
                            "{b:#x} at {at} of {len} in {fill:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0068"), Some(68));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u64(b"36893488147419103232"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u16(b"65536"), None);
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"000000000000000000000000007"), Some(7));
        assert_eq!(
            parse_u64(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_u64(b"12a"), None);
    }

    #[test]
    fn params() {
        let p = " ;   tag    = 1918181833n ; lr;x=\"a;tag=b\"";
        assert_eq!(find_param(p, "tag"), Some(Some("1918181833n")));
        assert_eq!(find_param(p, "LR"), Some(None));
        assert_eq!(find_param(p, "x"), Some(Some("\"a;tag=b\"")));
        assert_eq!(find_param(p, "y"), None);
        assert_eq!(
            find_param(";x=\"unterminated", "x"),
            Some(Some("\"unterminated"))
        );
    }

    #[test]
    fn case_insensitive_equality() {
        let words: [&[u8]; 9] = [
            b"Content-Length",
            b"CONTENT-LENGTH",
            b"content-length",
            b"Content-Lengtx",
            b"Content\rLength",
            b"Content-Type",
            b"[\\]^_`{|}~@ZAza",
            b"{\\}^_`[|]~@zaZA",
            b"\xc1\xe1\xdaX\x80\x00\x7f\xff",
        ];
        for a in words {
            for b in words {
                assert_eq!(eq_ignore_case(a, b), a.eq_ignore_ascii_case(b));
            }
        }
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                let (a, b) = ([x; 9], [y; 9]);
                assert_eq!(eq_ignore_case(&a, &b), a.eq_ignore_ascii_case(&b));
                let (a, b) = ([x, b'a', b'B', x, y], [y, b'A', b'b', x, y]);
                assert_eq!(eq_ignore_case(&a, &b), a.eq_ignore_ascii_case(&b));
            }
        }
    }

    #[test]
    fn trimming() {
        assert_eq!(trim_span(b"  ab \r\n", 0, 7), (2, 4));
        assert_eq!(trim_span(b"   ", 0, 3), (3, 3));
        assert_eq!(trim("\r\n x \t"), "x");
    }
}
