//! SIP/SIPS/TEL and other URIs (RFC 3261 §19.1, RFC 3966, RFC 5118): a
//! borrowed view of scheme, userinfo, host, port, params and headers.

use super::lex::{self, HOST, SCHEME, find, find_param};
use super::via::is_ipv6_reference;

/// A parsed URI. For `sip:`/`sips:` every field is filled in. For `tel:`
/// `user` is the number and `params` its parameters. Any other scheme
/// (RFC 4475 unkscm, novelsc) is accepted as opaque: `host` is "", `user`
/// and `headers` are None and `opaque` holds everything after the colon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: &'a str,
    /// May contain escapes and ';' (RFC 4475 semiuri: "user;par=u%40example.net").
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    /// IPv6 references keep their brackets; "" for non-SIP schemes.
    pub host: &'a str,
    pub port: Option<u16>,
    /// ";a=b;lr" or "".
    pub params: &'a str,
    /// After '?'.
    pub headers: Option<&'a str>,
    /// Everything after "scheme:".
    pub opaque: &'a str,
}

/// Length of the scheme when `b` starts with a valid one followed by ':'.
fn scheme_len(b: &[u8]) -> Option<usize> {
    let end = lex::scan(b, 0, SCHEME);
    let starts_alpha = b.first().is_some_and(u8::is_ascii_alphabetic);
    (starts_alpha && b.get(end) == Some(&b':')).then_some(end)
}

/// End of the host at the start of `hb`: an IPv6 reference, or a host name
/// that must be followed by the end, ':', ';' or '?'. None when invalid.
fn host_end(hb: &[u8]) -> Option<usize> {
    if hb.first() == Some(&b'[') {
        let end = find(hb, b']')? + 1;
        return is_ipv6_reference(hb.get(..end)?).then_some(end);
    }
    let end = lex::scan(hb, 0, HOST);
    let terminated = matches!(hb.get(end), None | Some(b':' | b';' | b'?'));
    (end > 0 && terminated).then_some(end)
}

/// Splits `userinfo` (before '@') into user and password; None for an empty user.
fn split_userinfo(userinfo: &str) -> Option<(&str, Option<&str>)> {
    let (user, password) = match find(userinfo.as_bytes(), b':') {
        Some(i) => (userinfo.get(..i)?, Some(userinfo.get(i + 1..)?)),
        None => (userinfo, None),
    };
    (!user.is_empty()).then_some((user, password))
}

/// RFC 3261 §25 `unreserved` (alphanum / mark): stands for itself anywhere.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// RFC 3261 §25 `user` characters other than escapes: unreserved and
/// user-unreserved (`& = + $ , ; ? /`).
fn is_user_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

/// RFC 3261 §25 `password` characters other than escapes.
fn is_password_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'&' | b'=' | b'+' | b'$' | b',')
}

/// RFC 3261 §25 `uri-parameters`: `paramchar`s (unreserved,
/// param-unreserved `[ ] / : & + $`, escapes) and the `;` and `=` between
/// and inside parameters.
fn is_params_char(c: u8) -> bool {
    is_unreserved(c)
        || matches!(
            c,
            b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b';' | b'='
        )
}

/// Whether `b[i..]` starts with an escape, `%` and two hex digits.
fn is_escape_at(b: &[u8], i: usize) -> bool {
    b.get(i) == Some(&b'%')
        && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
}

/// True when every byte of `s` is a `plain` character or part of an escape.
fn all_plain_or_escaped(s: &str, plain: fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if is_escape_at(b, i) {
            i += 3;
        } else if plain(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Appends `value` to `out` escaped as the user part of a SIP URI (RFC 3261
/// §25 `user`, §19.1.2): unreserved and user-unreserved characters as they
/// are, an escape already in the value (`%` and two hex digits) kept, every
/// other byte (`@`, `:`, `%` alone, space, `<`, non-ASCII UTF-8 ...) as `%HH`.
/// So the value can only ever be a user: it cannot end the user part and
/// name another host, port or password.
pub fn escape_user(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_escape_at(b, i) {
            out.push_str(value.get(i..i + 3).unwrap_or(""));
            i += 3;
            continue;
        }
        if is_user_char(c) {
            out.push(char::from(c));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 0xf)]));
        }
        i += 1;
    }
}

/// Whether `s` is a host a route may write into a SIP URI: a host name or
/// IPv4 address (letters, digits, `-`, `.` and `_`, starting with a letter
/// or a digit, no empty label) or a bracketed IPv6 reference. Anything that
/// could end the host (`@ : ; ? >`, spaces) is refused.
pub fn is_host(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        return is_ipv6_reference(b);
    }
    b.first().is_some_and(u8::is_ascii_alphanumeric) && lex::all(b, HOST) && !s.contains("..")
}

impl<'a> Uri<'a> {
    /// Parses `s` (no surrounding whitespace or angle brackets). Returns None
    /// for a missing/invalid scheme, whitespace, control characters, `<>"`,
    /// or, for sip/sips, an empty or invalid host or a non-numeric port
    /// (so an unbracketed IPv6 host such as "sip:2001:db8::10" is rejected,
    /// RFC 5118 §4.2, and "sip:[2001:db8::10:5070]" has no port, §4.3).
    pub fn parse(s: &'a str) -> Option<Uri<'a>> {
        let colon = scheme_len(s.as_bytes())?;
        let scheme = s.get(..colon)?;
        let rest = s.get(colon + 1..)?;
        if rest.is_empty() || !lex::all_uri(rest.as_bytes()) {
            return None;
        }
        let mut uri = Uri {
            scheme,
            user: None,
            password: None,
            host: "",
            port: None,
            params: "",
            headers: None,
            opaque: rest,
        };
        if scheme.eq_ignore_ascii_case("tel") {
            let (number, params) = match find(rest.as_bytes(), b';') {
                Some(i) => (rest.get(..i)?, rest.get(i..)?),
                None => (rest, ""),
            };
            uri.user = Some(number);
            uri.params = params;
            return Some(uri);
        }
        if uri.is_sip() {
            uri.parse_sip(rest)?;
        }
        Some(uri)
    }

    /// Fills in the sip/sips fields from `rest` (after "sip:").
    fn parse_sip(&mut self, rest: &'a str) -> Option<()> {
        let hostport = match find(rest.as_bytes(), b'@') {
            Some(at) => {
                let (user, password) = split_userinfo(rest.get(..at)?)?;
                self.user = Some(user);
                self.password = password;
                rest.get(at + 1..)?
            }
            None => rest,
        };
        let host_end = host_end(hostport.as_bytes())?;
        self.host = hostport.get(..host_end)?;
        let mut tail = hostport.get(host_end..)?;
        if let Some(p) = tail.strip_prefix(':') {
            let pe = p
                .bytes()
                .position(|c| c == b';' || c == b'?')
                .unwrap_or(p.len());
            self.port = Some(lex::parse_u16(p.get(..pe)?.as_bytes())?);
            tail = p.get(pe..)?;
        }
        let (params, headers) = match find(tail.as_bytes(), b'?') {
            Some(q) => (tail.get(..q)?, Some(tail.get(q + 1..)?)),
            None => (tail, None),
        };
        if !(params.is_empty() || params.starts_with(';')) {
            return None;
        }
        self.params = params;
        self.headers = headers;
        Some(())
    }

    /// Parses `s` as a URI a route may write into the Request-URI or `$du`:
    /// a `sip:` or `sips:` URI (see [`Uri::parse`]) without a `?headers`
    /// component (RFC 3261 §19.1.1: not allowed in a Request-URI), whose
    /// user, password and parameters hold only the characters RFC 3261 §25
    /// allows there unescaped. Err says why not, for the log line.
    pub fn parse_target(s: &'a str) -> Result<Uri<'a>, &'static str> {
        let uri = Uri::parse(s).ok_or("not a valid URI")?;
        if !uri.is_sip() {
            return Err("not a sip: or sips: URI");
        }
        if uri.headers.is_some() {
            return Err("a URI with ?headers cannot be a Request-URI or next hop");
        }
        if !uri
            .user
            .is_none_or(|u| all_plain_or_escaped(u, is_user_char))
        {
            return Err("its user part has characters that must be escaped");
        }
        if !uri
            .password
            .is_none_or(|p| all_plain_or_escaped(p, is_password_char))
        {
            return Err("its password has characters that must be escaped");
        }
        if !all_plain_or_escaped(uri.params, is_params_char) {
            return Err("its parameters have characters that must be escaped");
        }
        Ok(uri)
    }

    /// A URI parameter by name (case-insensitive): `Some(None)` for a flag
    /// param such as `;lr`, `Some(Some(v))` for `;name=v`.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// True for sip: and sips: URIs.
    pub fn is_sip(&self) -> bool {
        let s = self.scheme.as_bytes();
        s.eq_ignore_ascii_case(b"sip") || s.eq_ignore_ascii_case(b"sips")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_basic() {
        let u = Uri::parse("sip:alice:secret@example.com:5061;transport=tcp;lr?subject=x").unwrap();
        assert_eq!(u.scheme, "sip");
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params, ";transport=tcp;lr");
        assert_eq!(u.param("TRANSPORT"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(u.headers, Some("subject=x"));
        assert!(u.is_sip());
    }

    #[test]
    fn torture_forms() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.params, "");
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user, Some("sips%3Auser%40example.com"));
        let u = Uri::parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com").unwrap();
        assert_eq!(
            u.user,
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(u.host, "example.com");
        assert_eq!(u.headers, None);
        let u = Uri::parse("sip:user@example.com?Route=%3Csip:example.com%3E").unwrap();
        assert_eq!(u.headers, Some("Route=%3Csip:example.com%3E"));
    }

    #[test]
    fn ipv6() {
        let u = Uri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5070));
        let u = Uri::parse("sip:[2001:db8::10:5070]").unwrap();
        assert_eq!(u.host, "[2001:db8::10:5070]");
        assert_eq!(u.port, None);
        let u = Uri::parse("sip:caller@[::ffff:192.0.2.2];lr").unwrap();
        assert_eq!(u.host, "[::ffff:192.0.2.2]");
        assert_eq!(u.param("lr"), Some(None));
        assert!(Uri::parse("sip:2001:db8::10").is_none());
        assert!(Uri::parse("sip:[2001:db8::10").is_none());
        assert!(Uri::parse("sip:[2001:db8::10]x").is_none());
    }

    #[test]
    fn other_schemes() {
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent").unwrap();
        assert_eq!(u.host, "");
        assert_eq!(u.user, None);
        assert_eq!(u.opaque, "totallyopaquecontent");
        assert!(!u.is_sip());
        let u = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme, "soap.beep");
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.user, Some("+1-201-555-0123"));
        assert_eq!(u.param("phone-context"), Some(Some("example.com")));
    }

    #[test]
    fn user_values_are_escaped() {
        let esc = |v: &str| {
            let mut out = String::new();
            escape_user(v, &mut out);
            out
        };
        assert_eq!(esc("+15551234"), "+15551234");
        assert_eq!(esc("alice.o'neil_(x)~*!"), "alice.o'neil_(x)~*!");
        // user-unreserved: legal as they are (RFC 4475 semiuri, intmeth).
        assert_eq!(esc("a;b=c&d+e$f,g?h/i"), "a;b=c&d+e$f,g?h/i");
        assert_eq!(esc("evil@127.0.0.9:9999;x="), "evil%40127.0.0.9%3A9999;x=");
        assert_eq!(esc("a b<c>\"#"), "a%20b%3Cc%3E%22%23");
        // Escapes already there are kept; a lone % is escaped.
        assert_eq!(esc("%2B1%40"), "%2B1%40");
        assert_eq!(esc("100%"), "100%25");
        assert_eq!(esc("%zz"), "%25zz");
        assert_eq!(esc("é"), "%C3%A9");
        assert_eq!(esc(""), "");
        // Whatever the value, it is the user of the URI and nothing else.
        for v in [
            "evil@127.0.0.9:9999;x=",
            "a:b@c",
            "@",
            ":",
            "x?y@z>",
            "%40@%",
        ] {
            let uri = format!("sip:{}@example.com;lr", esc(v));
            let u = Uri::parse(&uri).unwrap();
            assert_eq!(u.host, "example.com", "{v}");
            assert_eq!(u.password, None, "{v}");
            assert_eq!(u.port, None, "{v}");
            assert_eq!(u.params, ";lr", "{v}");
            assert!(Uri::parse_target(&uri).is_ok(), "{v}");
        }
    }

    #[test]
    fn hosts_a_route_may_write() {
        for h in [
            "example.com",
            "10.0.0.1",
            "a-b.c_d.example.",
            "[2001:db8::1]",
            "x",
        ] {
            assert!(is_host(h), "{h}");
        }
        for h in [
            "",
            "evil@host",
            "host:5060",
            "host;transport=tcp",
            "host?x=y",
            "host>",
            "ho st",
            " host",
            "-host",
            ".host",
            "a..b",
            "2001:db8::1",
            "[2001:db8::1",
            "[zz]",
            "hôst",
        ] {
            assert!(!is_host(h), "{h}");
        }
    }

    #[test]
    fn targets_a_route_may_write() {
        for s in [
            "sip:10.0.0.9:5060",
            "sips:alice@example.com;transport=tls;lr",
            "sip:+1555%40x@[2001:db8::1]:5070;user=phone",
            "sip:user;par=u%40example.net@example.com",
            "sip:bob:p%40ss@example.com",
        ] {
            assert!(Uri::parse_target(s).is_ok(), "{s}");
        }
        for s in [
            "",
            "example.com",
            "tel:+15551234",
            "http://example.com",
            "sip:bob@example.com?Route=%3Csip:evil%3E",
            "sip:bob@example.com?",
            "sip:evil@127.0.0.9:9999;x=@gw.example.com",
            "sip:a\"b@example.com",
            "sip:a%@example.com",
            "sip:bob:p{w@example.com",
            "sip:bob@example.com;x=<y>",
            "sip:bob@example.com junk",
            "<sip:bob@example.com>",
        ] {
            assert!(Uri::parse_target(s).is_err(), "{s}");
        }
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "sip:",
            "sip:@host",
            "<sip:user@example.com>",
            "sip:user@example.com; lr",
            "sip:user@host:",
            "sip:user@host:99999",
            "sip:user@ho st",
            "1sip:x",
            ":x",
            "sip:a@b\"",
            "sip:user@example.com junk",
            "sip:h√st",
        ] {
            assert!(Uri::parse(s).is_none(), "{s:?}");
        }
    }
}
