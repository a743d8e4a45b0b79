//! SIP/SIPS/TEL and other URIs (RFC 3261 §19.1, RFC 3966, RFC 5118): a
//! borrowed view of scheme, userinfo, host, port, params and headers.

use super::lex::{self, HOST, SCHEME, URI, find, find_param};
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
        if rest.is_empty() || !lex::all(rest.as_bytes(), URI) {
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
