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
    /// Classifies a header name (long or compact form, any case).
    pub fn parse(name: &str) -> HeaderName {
        Self::from_bytes(name.as_bytes())
    }

    /// Like [`HeaderName::parse`] for raw bytes (non-UTF-8 names are `Other`).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        let long = canonical(name);
        let candidates: &[HeaderName] = match long.len() {
            2 => &[To],
            3 => &[Via],
            4 => &[From, CSeq],
            5 => &[Route],
            7 => &[CallId, Contact, Require],
            9 => &[Supported],
            10 => &[UserAgent],
            12 => &[MaxForwards, ContentType, RecordRoute],
            13 => &[ProxyRequire],
            14 => &[ContentLength],
            _ => &[],
        };
        candidates
            .iter()
            .copied()
            .find(|c| c.as_str().as_bytes().eq_ignore_ascii_case(long))
            .unwrap_or(Other)
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
    canonical(a).eq_ignore_ascii_case(canonical(b))
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
