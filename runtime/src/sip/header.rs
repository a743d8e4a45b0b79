//! Header names: the [`HeaderName`] enum for the headers the proxy reads,
//! compact forms (RFC 3261 §7.3.3 and later RFCs) and case-insensitive,
//! allocation-free name comparison.

/// Headers the proxy core works with; everything else is [`HeaderName::Other`]
/// (compare those by text with [`names_equal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Route,
    RecordRoute,
    Contact,
    ProxyRequire,
    Require,
    Supported,
    UserAgent,
    Other,
}

impl HeaderName {
    /// Number of variants (`Other` is the last), for tables indexed by
    /// `name as usize`.
    pub(crate) const COUNT: usize = HeaderName::Other as usize + 1;

    /// Classifies a header name (long or compact form, any case).
    pub fn parse(name: &str) -> HeaderName {
        Self::from_bytes(name.as_bytes())
    }

    /// Like [`HeaderName::parse`] for raw bytes (non-UTF-8 names are `Other`).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        let candidate = match name {
            [c] => return Self::from_compact(*c),
            [first, second, ..] => Self::candidate(name.len(), *first, *second),
            [] => HeaderName::Other,
        };
        if candidate != HeaderName::Other
            && super::lex::eq_ignore_case(candidate.as_str().as_bytes(), name)
        {
            candidate
        } else {
            HeaderName::Other
        }
    }

    /// The only known long name a header name of this length and first two
    /// letters can be (to be confirmed by a full case-insensitive compare).
    fn candidate(len: usize, first: u8, second: u8) -> HeaderName {
        use HeaderName::*;
        match (len, first.to_ascii_lowercase(), second.to_ascii_lowercase()) {
            (2, b't', _) => To,
            (3, b'v', _) => Via,
            (4, b'f', _) => From,
            (4, b'c', _) => CSeq,
            (5, b'r', _) => Route,
            (7, b'c', b'a') => CallId,
            (7, b'c', _) => Contact,
            (7, b'r', _) => Require,
            (9, b's', _) => Supported,
            (10, b'u', _) => UserAgent,
            (12, b'm', _) => MaxForwards,
            (12, b'c', _) => ContentType,
            (12, b'r', _) => RecordRoute,
            (13, b'p', _) => ProxyRequire,
            (14, b'c', _) => ContentLength,
            _ => Other,
        }
    }

    /// A one-letter compact name (RFC 3261 §7.3.3): its long form's name.
    fn from_compact(c: u8) -> HeaderName {
        expand_compact(c).map_or(HeaderName::Other, |long| Self::from_bytes(long.as_bytes()))
    }

    /// Canonical long form ("" for `Other`).
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Contact => "Contact",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Require => "Require",
            HeaderName::Supported => "Supported",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Other => "",
        }
    }
}

/// Long form of a one-letter compact header name (RFC 3261 §7.3.3, RFC 3265,
/// RFC 3515, RFC 3892, RFC 3841, RFC 4028, RFC 4474, RFC 3903...).
pub fn expand_compact(c: u8) -> Option<&'static str> {
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// The long form of `name` when it is a known compact form, else `name`.
fn canonical(name: &[u8]) -> &[u8] {
    if let [c] = name
        && let Some(long) = expand_compact(*c)
    {
        return long.as_bytes();
    }
    name
}

/// True when two header names denote the same header: ASCII case-insensitive,
/// compact forms equal to their long forms ("v" == "VIA").
pub fn names_equal(a: &str, b: &str) -> bool {
    names_equal_bytes(a.as_bytes(), b.as_bytes())
}

/// [`names_equal`] on raw bytes.
pub fn names_equal_bytes(a: &[u8], b: &[u8]) -> bool {
    super::lex::eq_ignore_case(canonical(a), canonical(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_compact_forms() {
        assert_eq!(HeaderName::parse("vIa"), HeaderName::Via);
        assert_eq!(HeaderName::parse("V"), HeaderName::Via);
        assert_eq!(HeaderName::parse("i"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("CALL-ID"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::parse("c"), HeaderName::ContentType);
        assert_eq!(HeaderName::parse("m"), HeaderName::Contact);
        assert_eq!(HeaderName::parse("k"), HeaderName::Supported);
        assert_eq!(HeaderName::parse("t"), HeaderName::To);
        assert_eq!(HeaderName::parse("F"), HeaderName::From);
        assert_eq!(HeaderName::parse("cseq"), HeaderName::CSeq);
        assert_eq!(HeaderName::parse("record-route"), HeaderName::RecordRoute);
        assert_eq!(HeaderName::parse("o"), HeaderName::Other);
        assert_eq!(HeaderName::parse("C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::parse(""), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"\xff"), HeaderName::Other);
    }

    /// Every known name, for the reference below.
    #[rustfmt::skip]
    const KNOWN: [HeaderName; 15] = {
        use HeaderName::*;
        [Via, From, To, CallId, CSeq, MaxForwards, ContentLength, ContentType, Route,
         RecordRoute, Contact, ProxyRequire, Require, Supported, UserAgent]
    };

    /// The straightforward definition `from_bytes` must agree with.
    fn reference(name: &[u8]) -> HeaderName {
        KNOWN
            .into_iter()
            .find(|c| c.as_str().as_bytes().eq_ignore_ascii_case(canonical(name)))
            .unwrap_or(HeaderName::Other)
    }

    #[test]
    fn matches_reference() {
        let mut names: Vec<Vec<u8>> = (0..=255u8).map(|c| vec![c]).collect();
        for long in [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Max-Forwards",
            "Content-Length",
            "Content-Type",
            "Route",
            "Record-Route",
            "Contact",
            "Proxy-Require",
            "Require",
            "Supported",
            "User-Agent",
            "Subject",
            "Cxntact",
            "Callid",
            "Contact-",
            "Content-Typo",
            "Tx",
            "Vi",
            "",
        ] {
            names.push(long.as_bytes().to_vec());
            names.push(long.to_ascii_uppercase().into_bytes());
            names.push(long.to_ascii_lowercase().into_bytes());
        }
        for n in names {
            assert_eq!(HeaderName::from_bytes(&n), reference(&n), "{n:?}");
        }
    }

    #[test]
    fn round_trip() {
        for n in [
            HeaderName::Via,
            HeaderName::MaxForwards,
            HeaderName::ProxyRequire,
            HeaderName::UserAgent,
            HeaderName::ContentLength,
        ] {
            assert_eq!(HeaderName::parse(n.as_str()), n);
        }
    }

    #[test]
    fn equality() {
        assert!(names_equal("o", "EVENT"));
        assert!(names_equal("x", "session-expires"));
        assert!(names_equal("Y", "Identity"));
        assert!(names_equal("u", "Allow-Events"));
        assert!(names_equal("X-Foo", "x-foo"));
        assert!(!names_equal("X-Foo", "X-Fo"));
        assert!(!names_equal("q", "Q-Header"));
    }
}
