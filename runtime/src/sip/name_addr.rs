//! name-addr / addr-spec values of From, To, Contact, Route... (RFC 3261
//! §20.10, §25.1): display name, URI text, header params and the tag.

use super::lex::{find_param, quoted_end, trim};
use memchr::memchr;

/// A borrowed name-addr (`"Bob" <sip:bob@b.example>;tag=x`) or addr-spec
/// (`sip:bob@b.example;tag=x`, where params after the URI belong to the
/// header, RFC 3261 §20.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quotes kept), None when absent.
    pub display: Option<&'a str>,
    /// The URI inside `<>` (whitespace inside the brackets trimmed —
    /// liberal for RFC 4475 badaspec) or the addr-spec.
    pub uri: &'a str,
    /// Header params starting at ';' ("" when none).
    pub params: &'a str,
    pub tag: Option<&'a str>,
}

impl<'a> NameAddr<'a> {
    /// Structural parse; does not validate the URI (use [`super::Uri::parse`]).
    /// None for an unterminated quoted display name (RFC 4475 quotbal),
    /// unbalanced `<`, junk after `>` or an empty URI.
    pub fn parse(s: &'a str) -> Option<NameAddr<'a>> {
        let mut na = Self::parse_untagged(s)?;
        na.tag = find_param(na.params, "tag")
            .flatten()
            .filter(|t| !t.is_empty());
        Some(na)
    }

    /// [`NameAddr::parse`] without looking up the tag (`tag` is None): the
    /// same answer to whether `s` is a name-addr, for validation.
    pub(crate) fn parse_untagged(s: &'a str) -> Option<NameAddr<'a>> {
        let s = trim(s);
        let b = s.as_bytes();
        let (display, angled) = if b.first() == Some(&b'"') {
            let close = quoted_end(b, 0)?;
            let rest = trim(s.get(close..)?);
            if !rest.starts_with('<') {
                return None;
            }
            (Some(s.get(..close)?), Some(rest))
        } else if let Some(lt) = memchr(b'<', b) {
            let d = trim(s.get(..lt)?);
            ((!d.is_empty()).then_some(d), Some(s.get(lt..)?))
        } else {
            (None, None)
        };
        let (uri, params) = match angled {
            Some(rest) => {
                let gt = memchr(b'>', rest.as_bytes())?;
                let uri = trim(rest.get(1..gt)?);
                let params = trim(rest.get(gt + 1..)?);
                if !(params.is_empty() || params.starts_with(';')) {
                    return None;
                }
                (uri, params)
            }
            None => match memchr(b';', b) {
                Some(i) => (trim(s.get(..i)?), s.get(i..)?),
                None => (s, ""),
            },
        };
        if uri.is_empty() {
            return None;
        }
        Some(NameAddr {
            display,
            uri,
            params,
            tag: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let n =
            NameAddr::parse("\"Bell, Alexander\" <sip:a.g.bell@example.com>;tag=433423").unwrap();
        assert_eq!(n.display, Some("\"Bell, Alexander\""));
        assert_eq!(n.uri, "sip:a.g.bell@example.com");
        assert_eq!(n.params, ";tag=433423");
        assert_eq!(n.tag, Some("433423"));

        let n =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(n.display, None);
        assert_eq!(n.uri, "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(n.tag, Some("1918181833n"));

        let n = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(n.display, Some("\"J Rosenberg \\\\\\\"\""));
        assert_eq!(n.tag, Some("98asjd8"));

        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display, Some("caller"));
        let n = NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >").unwrap();
        assert_eq!(n.uri, "sip:t.watson@example.org");
        assert_eq!(n.tag, None);
        let n = NameAddr::parse("<sip:x@y;lr;tag=not-a-header-param>").unwrap();
        assert_eq!(n.tag, None);
        let n = NameAddr::parse("sip:+1@gw.example.net;unknownparam").unwrap();
        assert_eq!(n.params, ";unknownparam");
    }

    #[test]
    fn malformed() {
        for s in [
            "",
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"x\" sip:a@b",
            "<sip:a@b",
            "<sip:a@b> junk",
            "<>",
            ";tag=1",
        ] {
            assert!(NameAddr::parse(s).is_none(), "{s:?}");
        }
    }
}
