//! Addresses-of-record and URI comparison (RFC 3261 §10.3, §19.1.4).
//!
//! The canonical AoR is `scheme:user@host[:port]`: scheme and host
//! lowercased, the user kept case-sensitive (escapes of unreserved
//! characters decoded, other escapes with uppercase hex), the password,
//! parameters and headers dropped, and the port dropped when it is the
//! scheme's default (5060 for `sip:`, 5061 for `sips:`) and kept otherwise.
//! So `sip:Alice@EXAMPLE.com:5060;transport=udp` and `sip:Alice@example.com`
//! are one AoR, `sip:alice@example.com` another, and `sips:` AoRs are
//! distinct from `sip:` ones. Only `sip:` and `sips:` URIs have an AoR.

use crate::sip::{NameAddr, Uri};

/// The canonical address-of-record of a SIP URI (see the module doc), or
/// None when `uri` is not a `sip:`/`sips:` URI. A name-addr
/// (`"A" <sip:a@b>;tag=1`) is accepted too and its URI used.
pub fn aor_of(uri: &str) -> Option<String> {
    let uri = uri.trim();
    let parsed = match Uri::parse(uri) {
        Some(u) => u,
        None => Uri::parse(NameAddr::parse(uri)?.uri)?,
    };
    if !parsed.is_sip() {
        return None;
    }
    // Written straight into the one String: the scheme and host
    // lowercased in place, the port without the formatter.
    let mut out = String::with_capacity(uri.len());
    out.push_str(parsed.scheme);
    out.make_ascii_lowercase();
    let sips = out == "sips";
    out.push(':');
    if let Some(user) = parsed.user {
        push_normalised(&mut out, user);
        out.push('@');
    }
    let host_at = out.len();
    out.push_str(parsed.host);
    if let Some(host) = out.get_mut(host_at..) {
        host.make_ascii_lowercase();
    }
    let default_port = if sips { 5061 } else { 5060 };
    if let Some(port) = parsed.port.filter(|&p| p != default_port) {
        out.push(':');
        crate::digits::push_u64(&mut out, u64::from(port));
    }
    Some(out)
}

/// `s` with `%HH` escapes of unreserved characters decoded and the hex
/// digits of the other escapes uppercased (§19.1.4: an escaped unreserved
/// character equals the character).
fn normalise_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_normalised(&mut out, s);
    out
}

/// [`normalise_escapes`] of `s` appended to `out` (without `%`, `s` itself).
fn push_normalised(out: &mut String, s: &str) {
    if !s.contains('%') {
        out.push_str(s);
        return;
    }
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |k: usize| b.get(k).and_then(|&h| char::from(h).to_digit(16));
        if c == b'%'
            && let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2))
        {
            let byte = (hi * 16 + lo) as u8;
            if byte.is_ascii_alphanumeric()
                || matches!(
                    byte,
                    b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
                )
            {
                out.push(char::from(byte));
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 15)]));
            }
            i += 3;
            continue;
        }
        // Copy the whole UTF-8 character starting here.
        let len = s
            .get(i..)
            .and_then(|r| r.chars().next())
            .map_or(1, char::len_utf8);
        out.push_str(s.get(i..i + len).unwrap_or(""));
        i += len;
    }
}

/// Whether `x` and `y` are equal after [`normalise_escapes`], allocating
/// only when one has an escape.
fn same_escaped(x: &str, y: &str) -> bool {
    if !x.contains('%') && !y.contains('%') {
        return x == y;
    }
    normalise_escapes(x) == normalise_escapes(y)
}

/// The `;name[=value]` parameters of `s` (a URI's or a header's parameter
/// list, starting with `;` or not), quotes respected, whitespace around
/// names and values trimmed. Empty pieces (`;;`) are skipped.
pub(crate) fn params(s: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut rest = s;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let end = piece_end(rest);
            let piece = rest.get(..end).unwrap_or("");
            rest = rest.get(end + 1..).unwrap_or("");
            let (name, value) = match piece.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (piece.trim(), None),
            };
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    })
}

/// Index of the first `;` of `s` outside a quoted string, or `s.len()`.
fn piece_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b';' if !quoted => return i,
            _ => {}
        }
        i += 1;
    }
    s.len()
}

/// URI parameters that must match when either URI has them (§19.1.4).
const MUST_MATCH: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];

/// Whether two URIs are equal under RFC 3261 §19.1.4: scheme, host and
/// parameter and header names case-insensitive, user and password
/// case-sensitive (escapes normalised), ports equal only when both are
/// absent or both the same number, `user`/`ttl`/`method`/`maddr`/
/// `transport` present in both or neither, other parameters compared only
/// when present in both, headers all present in both. URIs that do not
/// parse are equal only when byte for byte the same.
pub fn uri_equal(a: &str, b: &str) -> bool {
    // The comparison is reflexive (see the test `equal_to_itself`): the
    // same text needs no parse, which is what a refresh compares.
    a == b || uri_equal_parsed(a, b)
}

/// [`uri_equal`] by the parts of the URIs.
fn uri_equal_parsed(a: &str, b: &str) -> bool {
    let (Some(ua), Some(ub)) = (Uri::parse(a), Uri::parse(b)) else {
        return a == b;
    };
    if !ua.scheme.eq_ignore_ascii_case(ub.scheme) {
        return false;
    }
    if !ua.is_sip() {
        return ua.opaque == ub.opaque;
    }
    let same_text = |x: Option<&str>, y: Option<&str>| match (x, y) {
        (Some(x), Some(y)) => same_escaped(x, y),
        (x, y) => x.is_none() && y.is_none(),
    };
    if !same_text(ua.user, ub.user)
        || !same_text(ua.password, ub.password)
        || !ua.host.eq_ignore_ascii_case(ub.host)
        || ua.port != ub.port
    {
        return false;
    }
    let pa: Vec<_> = params(ua.params).collect();
    let pb: Vec<_> = params(ub.params).collect();
    let lookup = |list: &[(&str, Option<&str>)], name: &str| {
        list.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v.map(normalise_escapes))
    };
    for (name, _) in pa.iter().chain(pb.iter()) {
        let (va, vb) = (lookup(&pa, name), lookup(&pb, name));
        let must = MUST_MATCH.iter().any(|m| m.eq_ignore_ascii_case(name));
        let differ = match (va, vb) {
            (Some(Some(x)), Some(Some(y))) if must => !x.eq_ignore_ascii_case(&y),
            (Some(x), Some(y)) => x != y,
            (None, None) => false,
            _ => must,
        };
        if differ {
            return false;
        }
    }
    headers_of(ua.headers) == headers_of(ub.headers)
}

/// The `?a=b&c=d` headers of a URI as sorted `(lowercased name, value)`.
fn headers_of(h: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<_> = h
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (n.to_ascii_lowercase(), normalise_escapes(v))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_aor() {
        let a = aor_of("sip:Alice@EXAMPLE.com:5060;transport=udp").unwrap();
        assert_eq!(a, "sip:Alice@example.com");
        assert_eq!(aor_of("sip:Alice@example.com").unwrap(), a);
        assert_eq!(aor_of("SIP:Alice@Example.COM?Subject=x").unwrap(), a);
        assert_eq!(aor_of("\"A\" <sip:Alice@example.com>;tag=9").unwrap(), a);
        assert_eq!(aor_of("sip:%41lice@example.com").unwrap(), a);
        assert_ne!(aor_of("sip:alice@example.com").unwrap(), a);
        assert_eq!(
            aor_of("sip:bob:pw@h.example:5070").unwrap(),
            "sip:bob@h.example:5070"
        );
        assert_eq!(aor_of("sips:bob@h:5061").unwrap(), "sips:bob@h");
        assert_eq!(aor_of("sips:bob@h:5060").unwrap(), "sips:bob@h:5060");
        assert_eq!(aor_of("sip:[2001:DB8::1]").unwrap(), "sip:[2001:db8::1]");
        assert_eq!(aor_of("sip:a%3a@h").unwrap(), "sip:a%3A@h");
        for bad in ["", "tel:+15551234", "mailto:a@b", "sip:", "<sip:a@b", "x"] {
            assert_eq!(aor_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn uri_comparison() {
        for (a, b) in [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;newparam=5",
            ),
            (
                "sip:a@h?Subject=x&Priority=y",
                "sip:a@h?priority=y&subject=x",
            ),
        ] {
            assert!(uri_equal(a, b), "{a} {b}");
        }
        for (a, b) in [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;security=off",
            ),
            ("sip:a@h?Subject=x", "sip:a@h"),
            ("sip:a@h", "sips:a@h"),
        ] {
            assert!(!uri_equal(a, b), "{a} {b}");
        }
    }

    const URIS: [&str; 16] = [
        "sip:%61lice@atlanta.com;transport=TCP",
        "sip:alice@AtLanTa.CoM;Transport=tcp",
        "sip:carol@chicago.com;newparam=5",
        "sip:carol@chicago.com;security=on;security=off",
        "sip:a@h?Subject=x&Priority=y",
        "sip:a%3a%7e@h?priority=%79&subject=x",
        "SIP:ALICE@AtLanTa.CoM;Transport=udp;maddr=1.2.3.4;ttl=1;method=INVITE;user=phone",
        "sips:bob:pw@biloxi.com:5061;lr",
        "sip:[2001:db8::1]:5070",
        "sip:a@h;x=\"q;uoted\";y",
        "tel:+15551234",
        "mailto:a@b",
        "sip:",
        "<sip:a@b",
        "x",
        "",
    ];

    #[test]
    fn equal_to_itself() {
        // uri_equal's shortcut for identical text gives what the parse does.
        for a in URIS {
            assert!(uri_equal_parsed(a, a), "{a}");
            for b in URIS {
                assert_eq!(uri_equal(a, b), uri_equal_parsed(a, b), "{a} {b}");
            }
        }
    }

    /// The escapes normalised as before `push_normalised` (hex by the formatter).
    fn normalise_escapes_formatted(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            let hex = |k: usize| b.get(k).and_then(|&h| char::from(h).to_digit(16));
            if c == b'%'
                && let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2))
            {
                let byte = (hi * 16 + lo) as u8;
                if byte.is_ascii_alphanumeric()
                    || matches!(
                        byte,
                        b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
                    )
                {
                    out.push(char::from(byte));
                } else {
                    out.push('%');
                    out.push_str(&format!("{byte:02X}"));
                }
                i += 3;
                continue;
            }
            let len = s
                .get(i..)
                .and_then(|r| r.chars().next())
                .map_or(1, char::len_utf8);
            out.push_str(s.get(i..i + len).unwrap_or(""));
            i += len;
        }
        out
    }

    #[test]
    fn escapes_as_formatted() {
        let mut inputs: Vec<String> = (0..=255u8).map(|b| format!("a%{b:02x}b%{b:02X}")).collect();
        inputs.extend(
            ["", "plain", "%", "%4", "%zz", "é%41ü", "%%41", "x%7E%7e%20"].map(String::from),
        );
        for s in &inputs {
            assert_eq!(normalise_escapes(s), normalise_escapes_formatted(s), "{s}");
            for t in &inputs {
                assert_eq!(
                    same_escaped(s, t),
                    normalise_escapes_formatted(s) == normalise_escapes_formatted(t),
                    "{s} {t}"
                );
            }
        }
    }

    /// The AoR as built before (one String per part, the port formatted).
    fn aor_of_parts(uri: &str) -> Option<String> {
        let uri = uri.trim();
        let parsed = match Uri::parse(uri) {
            Some(u) => u,
            None => Uri::parse(NameAddr::parse(uri)?.uri)?,
        };
        if !parsed.is_sip() {
            return None;
        }
        let scheme = parsed.scheme.to_ascii_lowercase();
        let mut out = String::new();
        out.push_str(&scheme);
        out.push(':');
        if let Some(user) = parsed.user {
            out.push_str(&normalise_escapes_formatted(user));
            out.push('@');
        }
        out.push_str(&parsed.host.to_ascii_lowercase());
        let default_port = if scheme == "sips" { 5061 } else { 5060 };
        if let Some(port) = parsed.port.filter(|&p| p != default_port) {
            out.push(':');
            out.push_str(&port.to_string());
        }
        Some(out)
    }

    #[test]
    fn aor_as_built_before() {
        let mut inputs: Vec<String> = URIS.iter().map(|u| u.to_string()).collect();
        for port in ["", ":5060", ":5061", ":1", ":65535", ":0"] {
            for scheme in ["sip", "SIPS", "Sip"] {
                inputs.push(format!("{scheme}:U%41%2f@Ex.AMPLE.com{port};x=1"));
                inputs.push(format!("\"N\" <{scheme}:H{port}>;tag=1"));
            }
        }
        for u in &inputs {
            assert_eq!(aor_of(u), aor_of_parts(u), "{u}");
        }
    }

    #[test]
    fn param_lists() {
        let p: Vec<_> = params(";a=1; b ;;c=\"x;y\";d = 2").collect();
        assert_eq!(
            p,
            [
                ("a", Some("1")),
                ("b", None),
                ("c", Some("\"x;y\"")),
                ("d", Some("2"))
            ]
        );
        assert_eq!(params("").count(), 0);
        assert_eq!(params("\"unterminated;x").count(), 1);
    }
}
