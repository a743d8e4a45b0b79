//! Digest credentials (RFC 3261 §22.4 and §25, RFC 7616 §3.4): parsing the
//! value of an Authorization / Proxy-Authorization header into its
//! parameters, and computing the `response` a client must send.
//!
//! The parser works on any input without panicking: it only slices the
//! text at ASCII delimiters and reports anything it cannot read as an
//! error, which the caller turns into `Failure::Malformed`.

use std::borrow::Cow;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::{Algorithm, Failure};

/// More parameters than this in one header value is not a real client.
const MAX_PARAMS: usize = 32;

/// One `name=value` parameter of a Digest header; `value` has its
/// quoted-string escapes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a str,
    pub value: Cow<'a, str>,
}

/// The parameter list of a header value whose scheme is `Digest`
/// (case-insensitive); `None` for any other scheme (e.g. `Basic`).
pub fn digest_params(value: &str) -> Option<&str> {
    let v = value.trim_start_matches(is_lws_char);
    let end = v.bytes().position(|b| !is_token(b)).unwrap_or(v.len());
    let (scheme, rest) = v.split_at(end);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    match rest.bytes().next() {
        None => Some(rest),
        Some(b) if is_lws(b) => Some(rest),
        Some(_) => None,
    }
}

/// Split `name=token, name="quoted \" string", ...` into parameters.
/// Linear whitespace (including folded CRLF SP) is allowed around names,
/// `=` and `,`; empty list elements are skipped. Names are tokens; an
/// unquoted value runs to the next `,` or whitespace (lenient: clients
/// send `uri=sip:a@b` unquoted).
pub fn parse_params(s: &str) -> Result<Vec<Param<'_>>, Failure> {
    let b = s.as_bytes();
    let mut i = 0;
    // A client's answer has 8-10 parameters: room for them at once.
    let mut out = Vec::with_capacity(10);
    loop {
        i = skip_lws(b, i);
        let Some(&c) = b.get(i) else { break };
        if c == b',' {
            i += 1;
            continue;
        }
        let start = i;
        while b.get(i).is_some_and(|&c| is_token(c)) {
            i += 1;
        }
        if i == start {
            return Err(Failure::Malformed);
        }
        let name = &s[start..i];
        i = skip_lws(b, i);
        if b.get(i) != Some(&b'=') {
            return Err(Failure::Malformed);
        }
        i = skip_lws(b, i + 1);
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let vstart = i;
            let mut escaped = false;
            // The next quote or backslash at once (a nonce or response is
            // 32-64 plain characters).
            loop {
                let Some(at) = b.get(i..).and_then(|r| memchr::memchr2(b'"', b'\\', r)) else {
                    return Err(Failure::Malformed);
                };
                i += at;
                if b[i] == b'"' {
                    break;
                }
                escaped = true;
                i += 2;
            }
            // `i` is at an ASCII quote, `vstart` just after one: both are
            // char boundaries.
            let raw = &s[vstart..i];
            i += 1;
            if escaped {
                Cow::Owned(unescape(raw))
            } else {
                Cow::Borrowed(raw)
            }
        } else {
            let vstart = i;
            while b
                .get(i)
                .is_some_and(|&c| !matches!(c, b',' | b'"') && !is_lws(c))
            {
                i += 1;
            }
            if i == vstart {
                return Err(Failure::Malformed);
            }
            Cow::Borrowed(&s[vstart..i])
        };
        if out.len() == MAX_PARAMS {
            return Err(Failure::Malformed);
        }
        out.push(Param { name, value });
        i = skip_lws(b, i);
        match b.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(Failure::Malformed),
        }
    }
    Ok(out)
}

/// The value of parameter `name` (case-insensitive), the first if repeated.
pub fn param<'p, 'a>(params: &'p [Param<'a>], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value.as_ref())
}

/// The parameters [`DigestResponse::from_params`] reads (lowercase).
const KNOWN: [&str; 11] = [
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "qop",
    "nc",
    "cnonce",
    "username*",
    "userhash",
];

/// The fields of a Digest response that the check uses, validated: every
/// required field present, no parameter repeated, `nc`/`cnonce` present
/// exactly when `qop` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestResponse<'p> {
    pub username: &'p str,
    pub realm: &'p str,
    pub nonce: &'p str,
    pub uri: &'p str,
    pub response: &'p str,
    pub algorithm: Algorithm,
    /// `(qop, nc, cnonce)` when the client sent `qop=auth`.
    pub qop: Option<Qop<'p>>,
}

/// The RFC 2617 `qop` fields of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qop<'p> {
    /// As sent (`auth`, in any case): it is part of the hashed string.
    pub qop: &'p str,
    /// As sent: 8 hex digits.
    pub nc_text: &'p str,
    /// The nonce count, parsed.
    pub nc: u32,
    pub cnonce: &'p str,
}

impl<'p> DigestResponse<'p> {
    /// Validate a parsed parameter list.
    pub fn from_params(params: &'p [Param<'_>]) -> Result<DigestResponse<'p>, Failure> {
        // One pass: each parameter the check reads goes to its slot (a
        // second one is a repeat); any other name is compared with the
        // other unknown names before it.
        let mut slots: [Option<&'p str>; KNOWN.len()] = [None; KNOWN.len()];
        for (k, p) in params.iter().enumerate() {
            match KNOWN.iter().position(|n| p.name.eq_ignore_ascii_case(n)) {
                Some(slot) => {
                    if slots[slot].replace(p.value.as_ref()).is_some() {
                        return Err(Failure::Malformed);
                    }
                }
                None => {
                    if params[..k]
                        .iter()
                        .any(|q| q.name.eq_ignore_ascii_case(p.name))
                    {
                        return Err(Failure::Malformed);
                    }
                }
            }
        }
        let get = |name: &str| {
            KNOWN
                .iter()
                .position(|n| *n == name)
                .and_then(|slot| slots[slot])
        };
        // RFC 7616 `username*` (extended notation) and `userhash`: we never
        // offer userhash, and do not decode RFC 5987 values.
        if get("username*").is_some() {
            return Err(Failure::Malformed);
        }
        if get("userhash").is_some_and(|v| !v.eq_ignore_ascii_case("false")) {
            return Err(Failure::Malformed);
        }
        let required = |name| get(name).ok_or(Failure::Malformed);
        let username = required("username")?;
        let realm = required("realm")?;
        let nonce = required("nonce")?;
        let uri = required("uri")?;
        let response = required("response")?;
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(Failure::UnsupportedAlgorithm)?,
        };
        let qop = match get("qop") {
            None => {
                if get("nc").is_some() || get("cnonce").is_some() {
                    return Err(Failure::Malformed);
                }
                None
            }
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc_text = required("nc")?;
                let cnonce = required("cnonce")?;
                if nc_text.len() != 8 || !nc_text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Failure::Malformed);
                }
                let nc = u32::from_str_radix(nc_text, 16).map_err(|_| Failure::Malformed)?;
                if nc == 0 || cnonce.is_empty() {
                    return Err(Failure::Malformed);
                }
                Some(Qop {
                    qop: q,
                    nc_text,
                    nc,
                    cnonce,
                })
            }
            // auth-int needs the message body hashed: not supported.
            Some(q) if q.eq_ignore_ascii_case("auth-int") => {
                return Err(Failure::UnsupportedAlgorithm);
            }
            Some(_) => return Err(Failure::Malformed),
        };
        if response.len() != 2 * algorithm.output_len()
            || !response.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Failure::Malformed);
        }
        Ok(DigestResponse {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop,
        })
    }
}

/// `H(part0 ':' part1 ':' ...)` in lowercase hex.
pub fn hash_hex(alg: Algorithm, parts: &[&[u8]]) -> String {
    fn run<D: Digest>(parts: &[&[u8]]) -> String {
        let mut h = D::new();
        for (k, p) in parts.iter().enumerate() {
            if k > 0 {
                h.update(b":");
            }
            h.update(p);
        }
        to_hex(&h.finalize())
    }
    match alg {
        Algorithm::Md5 => run::<Md5>(parts),
        Algorithm::Sha256 => run::<Sha256>(parts),
    }
}

/// HA1 = H(user ":" realm ":" password), as stored in the credentials file.
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    hash_hex(
        alg,
        &[user.as_bytes(), realm.as_bytes(), password.as_bytes()],
    )
}

/// The expected `response` (RFC 7616 §3.4.1, RFC 2069 without qop), from
/// HA1 in hex: HA2 = H(method ":" uri); with qop
/// KD = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2), without
/// H(HA1 ":" nonce ":" HA2). Lowercase hex.
pub fn response(
    alg: Algorithm,
    ha1_hex: &[u8],
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = hash_hex(alg, &[method.as_bytes(), uri.as_bytes()]);
    match qop {
        Some((qop, nc, cnonce)) => hash_hex(
            alg,
            &[
                ha1_hex,
                nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                qop.as_bytes(),
                ha2.as_bytes(),
            ],
        ),
        None => hash_hex(alg, &[ha1_hex, nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// `s` with `"` and `\` escaped, for a quoted-string; CR, LF, NUL and other
/// control characters (except tab) are dropped: they cannot appear in a
/// header value.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn skip_lws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_lws(c)) {
        i += 1;
    }
    i
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_lws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// RFC 3261 §25.1 token characters.
fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// [`is_token`] by byte value: one load per character.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    t
};

/// The `username` of a Digest credentials value (what `$au` reads before
/// `authenticate` accepted the request); None for other schemes or a
/// value that does not parse.
pub fn username_of(value: &str) -> Option<String> {
    let params = parse_params(digest_params(value)?).ok()?;
    param(&params, "username").map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_token` as it was before the table.
    fn is_token_matched(b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
    }

    #[test]
    fn token_table() {
        for b in 0..=255u8 {
            assert_eq!(is_token(b), is_token_matched(b), "{b}");
        }
    }

    /// The quoted-string scan as it was before memchr2: byte by byte.
    fn parse_params_bytewise(s: &str) -> Result<Vec<Param<'_>>, Failure> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut out = Vec::new();
        loop {
            i = skip_lws(b, i);
            let Some(&c) = b.get(i) else { break };
            if c == b',' {
                i += 1;
                continue;
            }
            let start = i;
            while b.get(i).is_some_and(|&c| is_token_matched(c)) {
                i += 1;
            }
            if i == start {
                return Err(Failure::Malformed);
            }
            let name = &s[start..i];
            i = skip_lws(b, i);
            if b.get(i) != Some(&b'=') {
                return Err(Failure::Malformed);
            }
            i = skip_lws(b, i + 1);
            let value = if b.get(i) == Some(&b'"') {
                i += 1;
                let vstart = i;
                let mut escaped = false;
                loop {
                    match b.get(i) {
                        None => return Err(Failure::Malformed),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            escaped = true;
                            i += 2;
                        }
                        Some(_) => i += 1,
                    }
                }
                let raw = &s[vstart..i];
                i += 1;
                if escaped {
                    Cow::Owned(unescape(raw))
                } else {
                    Cow::Borrowed(raw)
                }
            } else {
                let vstart = i;
                while b
                    .get(i)
                    .is_some_and(|&c| !matches!(c, b',' | b'"') && !is_lws(c))
                {
                    i += 1;
                }
                if i == vstart {
                    return Err(Failure::Malformed);
                }
                Cow::Borrowed(&s[vstart..i])
            };
            if out.len() == MAX_PARAMS {
                return Err(Failure::Malformed);
            }
            out.push(Param { name, value });
            i = skip_lws(b, i);
            match b.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err(Failure::Malformed),
            }
        }
        Ok(out)
    }

    /// Inputs: pieces of Digest values glued together in every order of a
    /// pseudo-random walk, so quotes, escapes and ends fall everywhere.
    fn digest_inputs() -> Vec<String> {
        const PIECES: [&str; 22] = [
            "username=\"sipp\"",
            ", ",
            "realm=\"a\\\"b\"",
            "nonce=\"0123456789abcdef0123456789abcdef0123456789a\"",
            "uri=sip:a@b",
            "\"",
            "\\",
            "response=\"6629fae49393a05397450978507c4ef1\"",
            "qop=auth",
            "nc=00000001",
            "cnonce=\"x\"",
            "algorithm=MD5",
            ",",
            "=",
            " ",
            "\r\n ",
            "\\\"",
            "é",
            "x=\"\\",
            "USERNAME=\"u\"",
            "opaque=\"\"",
            "userhash=false",
        ];
        let mut out: Vec<String> = PIECES.iter().map(|p| p.to_string()).collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut s = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for k in 0..(x % 12) {
                let pick = (x >> (4 * k + 8)) as usize % PIECES.len();
                s.push_str(PIECES[pick]);
            }
            out.push(s);
        }
        out
    }

    #[test]
    fn params_as_bytewise() {
        for s in digest_inputs() {
            assert_eq!(parse_params(&s), parse_params_bytewise(&s), "{s:?}");
        }
    }

    /// `from_params` as it was before the one pass: a quadratic repeat
    /// check, then each name looked up in the list.
    fn from_params_lookups<'p>(params: &'p [Param<'_>]) -> Result<DigestResponse<'p>, Failure> {
        for (k, p) in params.iter().enumerate() {
            if params[..k]
                .iter()
                .any(|q| q.name.eq_ignore_ascii_case(p.name))
            {
                return Err(Failure::Malformed);
            }
        }
        let get = |name| param(params, name);
        if get("username*").is_some() {
            return Err(Failure::Malformed);
        }
        if get("userhash").is_some_and(|v| !v.eq_ignore_ascii_case("false")) {
            return Err(Failure::Malformed);
        }
        let required = |name| get(name).ok_or(Failure::Malformed);
        let username = required("username")?;
        let realm = required("realm")?;
        let nonce = required("nonce")?;
        let uri = required("uri")?;
        let response = required("response")?;
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(Failure::UnsupportedAlgorithm)?,
        };
        let qop = match get("qop") {
            None => {
                if get("nc").is_some() || get("cnonce").is_some() {
                    return Err(Failure::Malformed);
                }
                None
            }
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc_text = required("nc")?;
                let cnonce = required("cnonce")?;
                if nc_text.len() != 8 || !nc_text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Failure::Malformed);
                }
                let nc = u32::from_str_radix(nc_text, 16).map_err(|_| Failure::Malformed)?;
                if nc == 0 || cnonce.is_empty() {
                    return Err(Failure::Malformed);
                }
                Some(Qop {
                    qop: q,
                    nc_text,
                    nc,
                    cnonce,
                })
            }
            Some(q) if q.eq_ignore_ascii_case("auth-int") => {
                return Err(Failure::UnsupportedAlgorithm);
            }
            Some(_) => return Err(Failure::Malformed),
        };
        if response.len() != 2 * algorithm.output_len()
            || !response.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Failure::Malformed);
        }
        Ok(DigestResponse {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop,
        })
    }

    #[test]
    fn from_params_as_lookups() {
        // Every subset (by bit) of a full answer, with variants of case,
        // repeats, unknown names and bad values.
        const ALL: [(&str, &str); 14] = [
            ("username", "sipp"),
            ("Realm", "r"),
            ("nonce", "n"),
            ("uri", "sip:a@b"),
            ("response", "6629fae49393a05397450978507c4ef1"),
            ("algorithm", "MD5"),
            ("qop", "auth"),
            ("nc", "00000001"),
            ("cnonce", "c"),
            ("opaque", "o"),
            ("OPAQUE", "p"),
            ("userhash", "true"),
            ("USERNAME", "again"),
            ("username*", "x"),
        ];
        const VARIANTS: [(&str, &str); 10] = [
            ("algorithm", "SHA-256"),
            ("algorithm", "bogus"),
            ("qop", "auth-int"),
            ("qop", "other"),
            ("nc", "0000000g"),
            ("nc", "00000000"),
            ("cnonce", ""),
            ("response", "short"),
            ("userhash", "FALSE"),
            ("NC", "00000002"),
        ];
        let full: u32 = (1 << 9) - 1;
        let mut lists: Vec<Vec<(&str, &str)>> = Vec::new();
        for bits in 0u32..(1 << ALL.len()) {
            // All subsets of the first 9, then the full 9 with the others.
            if bits >= 1 << 9 && bits & full != full && bits & full != full & !(1 << 6) {
                continue;
            }
            lists.push(
                ALL.iter()
                    .enumerate()
                    .filter(|(k, _)| bits & (1 << k) != 0)
                    .map(|(_, p)| *p)
                    .collect(),
            );
        }
        for v in VARIANTS {
            let mut l: Vec<_> = ALL[..9].to_vec();
            l.retain(|(n, _)| !n.eq_ignore_ascii_case(v.0));
            l.push(v);
            lists.push(l.clone());
            l.insert(0, v);
            lists.push(l);
        }
        for list in lists {
            let params: Vec<Param<'_>> = list
                .iter()
                .map(|&(name, value)| Param {
                    name,
                    value: Cow::Borrowed(value),
                })
                .collect();
            assert_eq!(
                DigestResponse::from_params(&params),
                from_params_lookups(&params),
                "{list:?}"
            );
        }
    }

    #[test]
    fn rfc2617_md5_example() {
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(ha1, "939e7578ed9e3c518a452acee763bce9");
        let r = response(
            Algorithm::Md5,
            ha1.as_bytes(),
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("auth", "00000001", "0a4f113b")),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_sha256_example() {
        // RFC 7616 §3.9.1: realm "http-auth@example.org", password
        // "Circle of Life" (lowercase "of", unlike RFC 2617).
        let ha1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = response(
            Algorithm::Sha256,
            ha1.as_bytes(),
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some((
                "auth",
                "00000001",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            )),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        // The same section's MD5 variant.
        let ha1 = super::ha1(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = response(
            Algorithm::Md5,
            ha1.as_bytes(),
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some((
                "auth",
                "00000001",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            )),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn response_without_qop() {
        // RFC 2069 form: H(HA1:nonce:HA2).
        let ha1 = ha1(Algorithm::Md5, "u", "r", "p");
        let ha2 = hash_hex(Algorithm::Md5, &[b"REGISTER", b"sip:r"]);
        let want = hash_hex(Algorithm::Md5, &[ha1.as_bytes(), b"n", ha2.as_bytes()]);
        assert_eq!(
            response(
                Algorithm::Md5,
                ha1.as_bytes(),
                "n",
                None,
                "REGISTER",
                "sip:r"
            ),
            want
        );
    }

    #[test]
    fn scheme() {
        assert_eq!(digest_params("Digest a=b"), Some(" a=b"));
        assert_eq!(digest_params("  dIgEsT\r\n\ta=b"), Some("\r\n\ta=b"));
        assert_eq!(digest_params("Digest"), Some(""));
        assert_eq!(digest_params("Basic abc"), None);
        assert_eq!(digest_params("Digesta=b"), None);
        assert_eq!(digest_params("Digest,a=b"), None);
        assert_eq!(digest_params(""), None);
    }

    #[test]
    fn params_grammar() {
        let p = parse_params(
            " username = \"Mu\\\"fa\\\\sa\" ,\r\n realm=\"a, b\",NC=00000001,,uri=sip:x@y;lr ",
        )
        .unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].name, "username");
        assert_eq!(p[0].value, "Mu\"fa\\sa");
        assert_eq!(p[1].value, "a, b");
        assert_eq!(param(&p, "nc"), Some("00000001"));
        assert_eq!(param(&p, "URI"), Some("sip:x@y;lr"));
        assert_eq!(parse_params("").unwrap(), vec![]);
        for bad in [
            "a",
            "a=",
            "a=\"x",
            "a=\"x\\\"",
            "=b",
            "a=b c=d",
            "a=\"b\"c",
            "a b=c",
            "a=b=c\"",
        ] {
            assert_eq!(parse_params(bad), Err(Failure::Malformed), "{bad}");
        }
        let many = vec!["a=b"; MAX_PARAMS + 1].join(",");
        assert_eq!(parse_params(&many), Err(Failure::Malformed));
    }

    fn fields(s: &str) -> Result<DigestResponse<'static>, Failure> {
        let params = parse_params(s)?;
        // Leak for the test's convenience.
        let params: &'static [Param<'static>] = Vec::leak(
            params
                .into_iter()
                .map(|p| Param {
                    name: String::leak(p.name.to_string()),
                    value: Cow::Owned(p.value.into_owned()),
                })
                .collect(),
        );
        DigestResponse::from_params(params)
    }

    const BASE: &str = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", \
                        response=\"0123456789abcdef0123456789ABCDEF\"";

    #[test]
    fn response_fields() {
        let d = fields(BASE).unwrap();
        assert_eq!(d.username, "u");
        assert_eq!(d.algorithm, Algorithm::Md5);
        assert_eq!(d.qop, None);
        let d = fields(&format!("{BASE}, qop=auth, nc=0000000a, cnonce=\"c\"")).unwrap();
        assert_eq!(d.qop.map(|q| q.nc), Some(10));
        for (extra, why) in [
            (", qop=auth, cnonce=\"c\"", Failure::Malformed),
            (", qop=auth, nc=00000001", Failure::Malformed),
            (", qop=auth, nc=1, cnonce=c", Failure::Malformed),
            (", qop=auth, nc=+0000001, cnonce=c", Failure::Malformed),
            (", qop=auth, nc=00000000, cnonce=c", Failure::Malformed),
            (", qop=auth, nc=0000000g, cnonce=c", Failure::Malformed),
            (", nc=00000001", Failure::Malformed),
            (", qop=bogus", Failure::Malformed),
            (
                ", qop=auth-int, nc=00000001, cnonce=c",
                Failure::UnsupportedAlgorithm,
            ),
            (", algorithm=MD5-sess", Failure::UnsupportedAlgorithm),
            (", algorithm=SHA-512-256", Failure::UnsupportedAlgorithm),
            (", algorithm=SHA-256", Failure::Malformed), // response too short
            (", Realm=\"r\"", Failure::Malformed),
            (", userhash=true", Failure::Malformed),
            (", username*=UTF-8''u", Failure::Malformed),
        ] {
            assert_eq!(fields(&format!("{BASE}{extra}")), Err(why), "{extra}");
        }
        assert!(fields(&format!("{BASE}, userhash=false, opaque=\"x\"")).is_ok());
        for missing in ["username", "realm", "nonce", "uri", "response"] {
            let s: Vec<&str> = BASE
                .split(", ")
                .filter(|p| !p.starts_with(missing))
                .collect();
            assert_eq!(fields(&s.join(", ")), Err(Failure::Malformed), "{missing}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("a\r\nb\0c\td"), "\"abc\td\"");
        let q = quote("x\"y\\z");
        let text = format!("realm={q}");
        let p = parse_params(&text).unwrap();
        assert_eq!(p[0].value, "x\"y\\z");
    }

    #[test]
    fn never_panics_on_mutations() {
        let valid = "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
                     nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
                     qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
                     response=\"6629fae49393a05397450978507c4ef1\", opaque=\"x\\\"é\"";
        let bytes = valid.as_bytes();
        let try_one = |s: &str| {
            if let Some(rest) = digest_params(s)
                && let Ok(params) = parse_params(rest)
            {
                let _ = DigestResponse::from_params(&params);
            }
        };
        for cut in 0..=bytes.len() {
            try_one(&String::from_utf8_lossy(&bytes[..cut]));
            try_one(&String::from_utf8_lossy(&bytes[cut..]));
        }
        let replacements = [b'"', b'\\', b',', b'=', b' ', b'\r', b'\n', 0, 0xc3, b'a'];
        for at in 0..bytes.len() {
            for &r in &replacements {
                let mut m = bytes.to_vec();
                m[at] = r;
                try_one(&String::from_utf8_lossy(&m));
                m.insert(at, r);
                try_one(&String::from_utf8_lossy(&m));
                m.remove(at);
                m.remove(at);
                try_one(&String::from_utf8_lossy(&m));
            }
        }
    }
}
