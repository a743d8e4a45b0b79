//! SIP/SIPS/TEL and other URIs (RFC 3261 §19.1, RFC 3966, RFC 5118): a
//! borrowed view of scheme, userinfo, host, port, params and headers.

use memchr::memchr;

use super::lex::find_param;
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

fn scheme_ok(s: &[u8]) -> bool {
    matches!(s.first(), Some(c) if c.is_ascii_alphabetic())
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

fn uri_char_ok(c: u8) -> bool {
    c > b' ' && c != 0x7f && !matches!(c, b'<' | b'>' | b'"')
}

fn host_ok(h: &[u8]) -> bool {
    if h.first() == Some(&b'[') {
        return is_ipv6_reference(h);
    }
    !h.is_empty()
        && h.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

impl<'a> Uri<'a> {
    /// Parses `s` (no surrounding whitespace or angle brackets). Returns None
    /// for a missing/invalid scheme, whitespace, control characters, `<>"`,
    /// or, for sip/sips, an empty or invalid host or a non-numeric port
    /// (so an unbracketed IPv6 host such as "sip:2001:db8::10" is rejected,
    /// RFC 5118 §4.2, and "sip:[2001:db8::10:5070]" has no port, §4.3).
    pub fn parse(s: &'a str) -> Option<Uri<'a>> {
        let b = s.as_bytes();
        let colon = memchr(b':', b)?;
        let scheme = s.get(..colon)?;
        let rest = s.get(colon + 1..)?;
        if !scheme_ok(scheme.as_bytes()) || rest.is_empty() || !rest.bytes().all(uri_char_ok) {
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
            let (number, params) = match memchr(b';', rest.as_bytes()) {
                Some(i) => (rest.get(..i)?, rest.get(i..)?),
                None => (rest, ""),
            };
            uri.user = Some(number);
            uri.params = params;
            return Some(uri);
        }
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            return Some(uri);
        }
        let hostport = match memchr(b'@', rest.as_bytes()) {
            Some(at) => {
                let userinfo = rest.get(..at)?;
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                if user.is_empty() {
                    return None;
                }
                uri.user = Some(user);
                uri.password = password;
                rest.get(at + 1..)?
            }
            None => rest,
        };
        let hb = hostport.as_bytes();
        let host_end = if hb.first() == Some(&b'[') {
            memchr(b']', hb)? + 1
        } else {
            hb.iter()
                .position(|&c| matches!(c, b':' | b';' | b'?'))
                .unwrap_or(hb.len())
        };
        uri.host = hostport.get(..host_end)?;
        if !host_ok(uri.host.as_bytes()) {
            return None;
        }
        let mut tail = hostport.get(host_end..)?;
        if let Some(p) = tail.strip_prefix(':') {
            let pe = p
                .bytes()
                .position(|c| c == b';' || c == b'?')
                .unwrap_or(p.len());
            uri.port = Some(super::lex::parse_u16(p.get(..pe)?.as_bytes())?);
            tail = p.get(pe..)?;
        }
        let (params, headers) = match tail.split_once('?') {
            Some((p, h)) => (p, Some(h)),
            None => (tail, None),
        };
        if !(params.is_empty() || params.starts_with(';')) {
            return None;
        }
        uri.params = params;
        uri.headers = headers;
        Some(uri)
    }

    /// A URI parameter by name (case-insensitive): `Some(None)` for a flag
    /// param such as `;lr`, `Some(Some(v))` for `;name=v`.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// True for sip: and sips: URIs.
    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
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
