//! Byte-level lexical helpers shared by the SIP parsers (RFC 3261 §25.1):
//! whitespace, token characters, trimming and bounded decimal parsing.
//! Everything here works on bytes or ASCII and never allocates or panics.

/// Linear whitespace as it can appear inside a (possibly folded) header value.
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// True when `s` is a non-empty RFC 3261 token.
pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Index of the first non-whitespace byte at or after `i` (or `b.len()`).
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !is_ws(c) {
            break;
        }
        i += 1;
    }
    i
}

/// End of the run of bytes satisfying `pred` starting at `i`.
pub(crate) fn scan(b: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while let Some(&c) = b.get(i) {
        if !pred(c) {
            break;
        }
        i += 1;
    }
    i
}

/// `start..end` shrunk so that it neither begins nor ends with whitespace.
pub(crate) fn trim_span(b: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    end = end.min(b.len());
    while start < end && b.get(start).is_some_and(|&c| is_ws(c)) {
        start += 1;
    }
    while end > start && b.get(end - 1).is_some_and(|&c| is_ws(c)) {
        end -= 1;
    }
    (start, end)
}

/// `s` without leading/trailing SP, HT, CR, LF.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// Decimal digits only (no sign, no whitespace); `None` on overflow or empty.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// Decimal `u32` (see [`parse_u64`]).
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_u64(s).and_then(|n| u32::try_from(n).ok())
}

/// Decimal `u16` (see [`parse_u64`]).
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
        // One param runs to the next ';' outside quotes.
        let mut j = i;
        while let Some(&c) = b.get(j) {
            match c {
                b';' => break,
                b'"' => j = quoted_end(b, j).unwrap_or(b.len()),
                _ => j += 1,
            }
        }
        let piece = params.get(i..j.min(b.len())).unwrap_or("");
        let (pname, pvalue) = match piece.split_once('=') {
            Some((n, v)) => (trim(n), Some(trim(v))),
            None => (trim(piece), None),
        };
        if !pname.is_empty() && pname.eq_ignore_ascii_case(name) {
            return Some(pvalue);
        }
        i = j + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0068"), Some(68));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u64(b"36893488147419103232"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u16(b"65536"), None);
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
    fn trimming() {
        assert_eq!(trim_span(b"  ab \r\n", 0, 7), (2, 4));
        assert_eq!(trim_span(b"   ", 0, 3), (3, 3));
        assert_eq!(trim("\r\n x \t"), "x");
    }
}
