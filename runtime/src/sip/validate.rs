//! What a proxy must be able to parse before it acts on a message
//! (RFC 3261 §8.1.1, §8.2.2, §16.3, §18.3): start line, the mandatory
//! headers, Via, CSeq, Max-Forwards, Content-Length, To/From. The error
//! carries the status and reason phrase to answer with.

use super::lex::{is_token_str, parse_u32, parse_u64};
use super::list::split_list;
use super::message::{HeaderName, Message};
use super::name_addr::NameAddr;
use super::uri::Uri;
use super::via::Via;

/// Why a message is unacceptable: the status code and reason phrase of the
/// reply (400 with a specific reason; 505 for an unsupported SIP version in
/// a request). For a response there is nobody to answer: drop it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub code: u16,
    pub reason: &'static str,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

impl std::error::Error for Invalid {}

fn bad(reason: &'static str) -> Invalid {
    Invalid { code: 400, reason }
}

fn is_sip_version(v: &str) -> bool {
    v.eq_ignore_ascii_case("SIP/2.0")
}

impl<'a> Message<'a> {
    /// What a proxy must be able to parse (RFC 3261 §16.3, §8.1.1, §18.3):
    /// Err tells the status to answer (400 with a specific reason; 505 for a
    /// SIP version other than 2.0 in a request). A response is checked as
    /// [`Message::validate_response`] does.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !self.is_request() {
            return self.validate_response().map(|_| ());
        }
        self.check_request_line()?;
        self.check_bare_cr()?;
        self.check_mandatory_counts()?;
        self.check_via()?;
        self.check_cseq()?;
        self.check_max_forwards()?;
        self.check_content_length()?;
        self.check_name_addr(HeaderName::From, "Bad From")?;
        self.check_name_addr(HeaderName::To, "Bad To")?;
        self.check_call_id()
    }

    /// What a proxy needs of a response before it forwards it (§16.7,
    /// §18.1.2): the status line, one each of the mandatory headers, the
    /// Call-ID, CSeq and Via that match it to a transaction, the
    /// Content-Length that frames it, and the second Via, which says where
    /// it goes (returned, parsed, when there is one). Vias further down and
    /// the From and To values are the user agents' business: a response is
    /// forwarded with them as they are, and they are parsed only if a reply
    /// route reads them (Kamailio forwards the same way).
    pub fn validate_response(&self) -> Result<Option<Via<'a>>, Invalid> {
        self.check_status_line()?;
        self.check_bare_cr()?;
        self.check_mandatory_counts()?;
        if self.cached_top_via().is_none() {
            return Err(bad("Bad Via"));
        }
        let next = match self.second_via_elem() {
            None => None,
            Some((elem, at)) => Some(Via::parse(elem, at).ok_or(bad("Bad Via"))?),
        };
        self.check_cseq()?;
        self.check_content_length()?;
        self.check_call_id()?;
        Ok(next)
    }

    /// RFC 3261 §7: CRLF ends every line. A CR alone inside a header value
    /// or the reason phrase (`Subject: hi\rX-Injected: yes`) is a line end
    /// to some parsers, which would see a header this one did not: refused,
    /// never forwarded. (A bare CR in the Request-URI, method or version
    /// fails `check_request_line` first, with its own reason.)
    fn check_bare_cr(&self) -> Result<(), Invalid> {
        if self.has_bare_cr() {
            return Err(bad("Bare CR in Header"));
        }
        Ok(())
    }

    fn check_call_id(&self) -> Result<(), Invalid> {
        let call_id = self.call_id().ok_or(bad("Bad Call-ID"))?;
        if call_id.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Err(bad("Bad Call-ID"));
        }
        Ok(())
    }

    /// The first `name` header (From or To) is a name-addr with a valid URI
    /// (what `self.from()` / `self.to()` parse, minus the tag look-up).
    fn check_name_addr(&self, name: HeaderName, reason: &'static str) -> Result<(), Invalid> {
        let h = self.first(name).ok_or(bad(reason))?;
        let na = NameAddr::parse_untagged(self.value(h)).ok_or(bad(reason))?;
        Uri::parse(na.uri).map(|_| ()).ok_or(bad(reason))
    }

    fn check_request_line(&self) -> Result<(), Invalid> {
        let method = self.method().ok_or(bad("Bad Method"))?;
        if !is_token_str(method) {
            return Err(bad("Bad Method"));
        }
        let version = self.version();
        if !version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        {
            return Err(bad("Bad Request Line"));
        }
        if !is_sip_version(version) {
            return Err(Invalid {
                code: 505,
                reason: "Version Not Supported",
            });
        }
        // No whitespace (RFC 4475 lwsruri, lwsstart), a scheme (ltgtruri) and
        // no headers component in a SIP Request-URI (§19.1.1 table; escruri).
        let uri = self
            .request_uri()
            .and_then(Uri::parse)
            .ok_or(bad("Bad Request-URI"))?;
        if uri.is_sip() && uri.headers.is_some() {
            return Err(bad("Bad Request-URI"));
        }
        Ok(())
    }

    fn check_status_line(&self) -> Result<(), Invalid> {
        if !is_sip_version(self.version()) {
            return Err(bad("Version Not Supported"));
        }
        match self.status() {
            Some(100..=699) => Ok(()),
            _ => Err(bad("Bad Status Code")),
        }
    }

    fn check_mandatory_counts(&self) -> Result<(), Invalid> {
        let (to, from, call_id, cseq, via, mf) = (
            self.count(HeaderName::To),
            self.count(HeaderName::From),
            self.count(HeaderName::CallId),
            self.count(HeaderName::CSeq),
            self.count(HeaderName::Via),
            self.count(HeaderName::MaxForwards),
        );
        let once = [
            (to, "Missing To", "Multiple To"),
            (from, "Missing From", "Multiple From"),
            (call_id, "Missing Call-ID", "Multiple Call-ID"),
            (cseq, "Missing CSeq", "Multiple CSeq"),
        ];
        for (n, missing, multiple) in once {
            match n {
                0 => return Err(bad(missing)),
                1 => {}
                _ => return Err(bad(multiple)),
            }
        }
        if via == 0 {
            return Err(bad("Missing Via"));
        }
        if mf > 1 {
            return Err(bad("Multiple Max-Forwards"));
        }
        Ok(())
    }

    /// Every element of every Via header must parse, and no Via header may
    /// be empty.
    fn check_via(&self) -> Result<(), Invalid> {
        for (i, h) in self.all(HeaderName::Via).enumerate() {
            let base = h.value_range.start;
            let mut elems = split_list(self.value(h));
            let (off, elem) = elems.next().ok_or(bad("Bad Via"))?;
            // The top Via was already parsed with the message.
            let first_ok = if i == 0 {
                self.cached_top_via().is_some()
            } else {
                Via::parse(elem, base + off).is_some()
            };
            if !first_ok {
                return Err(bad("Bad Via"));
            }
            for (off, elem) in elems {
                Via::parse(elem, base + off).ok_or(bad("Bad Via"))?;
            }
        }
        Ok(())
    }

    fn check_cseq(&self) -> Result<(), Invalid> {
        let (num, method) = self.cseq().ok_or(bad("Bad CSeq"))?;
        if num >= 1 << 31 {
            return Err(bad("Bad CSeq"));
        }
        if self.is_request() && self.method() != Some(method) {
            return Err(bad("CSeq Method Mismatch"));
        }
        Ok(())
    }

    fn check_max_forwards(&self) -> Result<(), Invalid> {
        match self.first(HeaderName::MaxForwards) {
            None => Ok(()),
            Some(h) => match parse_u32(self.value(h).as_bytes()) {
                Some(0..=255) => Ok(()),
                _ => Err(bad("Bad Max-Forwards")),
            },
        }
    }

    fn check_content_length(&self) -> Result<(), Invalid> {
        let Some(h) = self.first(HeaderName::ContentLength) else {
            return Ok(());
        };
        if self.count(HeaderName::ContentLength) > 1 {
            return Err(bad("Multiple Content-Length"));
        }
        let n = parse_u64(self.value(h).as_bytes()).ok_or(bad("Bad Content-Length"))?;
        let available = self.buf().len().saturating_sub(self.body_start());
        if n > available as u64 {
            return Err(bad("Bad Content-Length"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(start: &str, extra: &str) -> Vec<u8> {
        format!(
            "{start}\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n\
To: <sip:b@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c1\r\n\
CSeq: 1 OPTIONS\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    fn verdict(raw: &[u8]) -> Result<(), Invalid> {
        Message::parse(raw).unwrap().validate()
    }

    #[test]
    fn good() {
        assert_eq!(
            verdict(&msg("OPTIONS sip:b@example.com SIP/2.0", "")),
            Ok(())
        );
        assert_eq!(
            verdict(&msg(
                "OPTIONS sip:b@example.com SIP/2.0",
                "Max-Forwards: 255\r\n"
            )),
            Ok(())
        );
        assert_eq!(verdict(&msg("SIP/2.0 200 OK", "")), Ok(()));
    }

    #[test]
    fn a_response_is_checked_for_what_forwarding_it_needs() {
        let response = |vias: &str, from: &str| {
            format!(
                "SIP/2.0 200 OK\r\n{vias}To: <sip:b@example.com>;tag=2\r\n\
From: {from};tag=1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        };
        let next_host = |raw: &[u8]| {
            let m = Message::parse(raw).unwrap();
            m.validate_response().map(|v| v.map(|v| v.host.to_owned()))
        };
        let ours = "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1\r\n";
        let theirs = "Via: SIP/2.0/UDP uac.example.com;branch=z9hG4bK2\r\n";
        let good_from = "<sip:a@example.com>";
        // The second Via in its own header, or in the same one.
        let two = response(&format!("{ours}{theirs}"), good_from);
        assert_eq!(next_host(&two), Ok(Some("uac.example.com".into())));
        let joined = response(
            "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1, SIP/2.0/UDP uac.example.com\r\n",
            good_from,
        );
        assert_eq!(next_host(&joined), Ok(Some("uac.example.com".into())));
        assert_eq!(next_host(&response(ours, good_from)), Ok(None));
        // A second Via that does not parse: nowhere to send it.
        let bad_next = response(&format!("{ours}Via: SIP/2.0/UDP ;;\r\n"), good_from);
        assert_eq!(next_host(&bad_next).unwrap_err().reason, "Bad Via");
        // A From the proxy never reads is the user agents' business; the
        // same value in a request is a 400.
        let odd_from = response(&format!("{ours}{theirs}"), "<not a uri>");
        assert_eq!(next_host(&odd_from), Ok(Some("uac.example.com".into())));
        let request = String::from_utf8(msg("OPTIONS sip:b@example.com SIP/2.0", ""))
            .unwrap()
            .replace("From: <sip:a@example.com>", "From: <not a uri>");
        assert_eq!(verdict(request.as_bytes()).unwrap_err().reason, "Bad From");
    }

    #[test]
    fn bad_ones() {
        let cases: &[(&str, &str, u16, &str)] = &[
            (
                "OPTIONS sip:b@example.com SIP/3.0",
                "",
                505,
                "Version Not Supported",
            ),
            (
                "OPTIONS sip:b@example.com; lr SIP/2.0",
                "",
                400,
                "Bad Request-URI",
            ),
            (
                "OPTIONS <sip:b@example.com> SIP/2.0",
                "",
                400,
                "Bad Request-URI",
            ),
            (
                "OPTIONS sip:b@example.com?x=y SIP/2.0",
                "",
                400,
                "Bad Request-URI",
            ),
            (
                "INVITE sip:b@example.com SIP/2.0",
                "",
                400,
                "CSeq Method Mismatch",
            ),
            (
                "OPTIONS sip:b@example.com SIP/2.0",
                "Max-Forwards: 256\r\n",
                400,
                "Bad Max-Forwards",
            ),
            (
                "OPTIONS sip:b@example.com SIP/2.0",
                "Max-Forwards: x\r\n",
                400,
                "Bad Max-Forwards",
            ),
            (
                "OPTIONS sip:b@example.com SIP/2.0",
                "l: 1\r\n",
                400,
                "Bad Content-Length",
            ),
            (
                "OPTIONS sip:b@example.com SIP/2.0",
                "l: -1\r\n",
                400,
                "Bad Content-Length",
            ),
            (
                "OPTIONS sip:b@example.com SIP/2.0",
                "l: 0\r\nl: 0\r\n",
                400,
                "Multiple Content-Length",
            ),
            (
                "OPTIONS sip:b@example.com SIP/2.0",
                "t: sip:c@d\r\n",
                400,
                "Multiple To",
            ),
            (
                "OPTIONS sip:b@example.com SIP/2.0",
                "v: SIP/2.0/UDP x;;\r\n",
                400,
                "Bad Via",
            ),
            ("SIP/2.0 1000 Huge", "", 400, "Bad Status Code"),
            ("SIP/2.0 099 Small", "", 400, "Bad Status Code"),
        ];
        for &(start, extra, code, reason) in cases {
            assert_eq!(
                verdict(&msg(start, extra)),
                Err(Invalid { code, reason }),
                "{start} {extra}"
            );
        }
        let raw = b"OPTIONS sip:b@example.com SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(verdict(raw), Err(bad("Missing To")));
    }

    #[test]
    fn a_bare_cr_in_the_header_section_is_refused() {
        let bare_cr = Err(bad("Bare CR in Header"));
        let request = "OPTIONS sip:b@example.com SIP/2.0";
        for extra in [
            "Subject: hello\rX-Injected: yes\r\n",
            "Subject: hello\r\r\n",
            "Subject: one,\r\n two\rX-Injected: yes\r\n",
            "X-Empty:\r\r\n",
        ] {
            assert_eq!(verdict(&msg(request, extra)), bare_cr, "{extra:?}");
        }
        // In a header the proxy parses itself too (here the To value).
        let raw = String::from_utf8(msg(request, "")).unwrap().replace(
            "To: <sip:b@example.com>",
            "To: <sip:b@example.com>\rX-Injected: yes",
        );
        assert_eq!(verdict(raw.as_bytes()), bare_cr);
        // A response: in the reason phrase or a header (dropped by the core).
        for (start, extra) in [
            ("SIP/2.0 200 OK\rX-Injected: yes", ""),
            ("SIP/2.0 200 OK", "Subject: hello\rX-Injected: yes\r\n"),
        ] {
            let m = msg(start, extra);
            let m = Message::parse(&m).unwrap();
            assert_eq!(m.validate_response().map(|_| ()), bare_cr, "{start:?}");
        }
        // In the Request-URI: refused by the request-line check first.
        assert_eq!(
            verdict(&msg("OPTIONS sip:b@exa\rmple.com SIP/2.0", "")),
            Err(bad("Bad Request-URI"))
        );
        // CRLF line ends, folding and a CR in the body are fine.
        let good = msg(request, "Subject: one,\r\n two\r\nContent-Length: 3\r\n");
        let mut good = good;
        good.extend_from_slice(b"a\rb");
        assert_eq!(verdict(&good), Ok(()));
    }
}
