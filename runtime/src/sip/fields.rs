//! Typed accessors for the headers a proxy reads (RFC 3261 §8.1.1, §16):
//! Via list, Call-ID, CSeq, From, To, Max-Forwards, Content-Length.

use std::ops::Range;

use super::lex::{DIGIT, is_token_str, parse_u32, parse_u64, scan, skip_ws, trim};
use super::list::split_list;
use super::message::{Header, HeaderName, Message};
use super::name_addr::NameAddr;
use super::via::Via;

impl<'a> Message<'a> {
    /// The Via elements of one Via header, in order (unparseable ones skipped).
    pub fn vias_of(&self, h: &Header) -> impl Iterator<Item = Via<'a>> + use<'a> {
        let value = self.value(h);
        let base = h.value_range.start;
        split_list(value).filter_map(move |(off, elem)| Via::parse(elem, base + off))
    }

    /// First element of the first Via header.
    pub fn top_via(&self) -> Option<Via<'a>> {
        self.cached_top_via().cloned()
    }

    pub(super) fn parse_top_via(&self) -> Option<Via<'a>> {
        let h = self.first(HeaderName::Via)?;
        let (off, elem) = split_list(self.value(h)).next()?;
        Via::parse(elem, h.value_range.start + off)
    }

    /// Every element of every Via header, in order (elements that do not
    /// parse are skipped; `validate` rejects such messages).
    pub fn vias(&self) -> impl Iterator<Item = Via<'a>> + '_ {
        self.all(HeaderName::Via)
            .enumerate()
            .flat_map(move |(i, h)| {
                let base = h.value_range.start;
                split_list(self.value(h))
                    .enumerate()
                    .filter_map(move |(j, (off, elem))| {
                        // The top Via was already parsed with the message.
                        if i == 0 && j == 0 {
                            self.cached_top_via().cloned()
                        } else {
                            Via::parse(elem, base + off)
                        }
                    })
            })
    }

    /// The second Via element, unparsed (its text and where it starts):
    /// the next one in the first Via header, else the first of the second
    /// Via header. A response goes where it says.
    pub(super) fn second_via_elem(&self) -> Option<(&'a str, usize)> {
        let mut headers = self.all(HeaderName::Via);
        let first = headers.next()?;
        let in_first = split_list(self.value(first))
            .nth(1)
            .map(|(off, elem)| (elem, first.value_range.start + off));
        in_first.or_else(|| {
            let h = headers.next()?;
            let (off, elem) = split_list(self.value(h)).next()?;
            Some((elem, h.value_range.start + off))
        })
    }

    /// Byte range to delete to remove the top Via element: the whole header
    /// line (incl. line ending and continuations) when it is the only element
    /// of that header, else the element plus its separating comma/whitespace.
    pub fn top_via_removal(&self) -> Option<Range<usize>> {
        let h = self.first(HeaderName::Via)?;
        let mut elems = split_list(self.value(h));
        let (first, _) = elems.next()?;
        match elems.next() {
            None => Some(h.line_range.clone()),
            Some((second, _)) => {
                let base = h.value_range.start;
                Some(base + first..base + second)
            }
        }
    }

    pub fn call_id(&self) -> Option<&'a str> {
        let v = self.value(self.first(HeaderName::CallId)?);
        (!v.is_empty()).then_some(v)
    }

    /// CSeq number and method (`"0009\r\n  INVITE"` gives `(9, "INVITE")`).
    pub fn cseq(&self) -> Option<(u32, &'a str)> {
        let v = self.value(self.first(HeaderName::CSeq)?);
        let b = v.as_bytes();
        let digits_end = scan(b, 0, DIGIT);
        let num = parse_u32(b.get(..digits_end)?)?;
        let ms = skip_ws(b, digits_end);
        if ms == digits_end {
            return None;
        }
        let method = v.get(ms..)?;
        is_token_str(method).then_some((num, method))
    }

    pub fn from(&self) -> Option<NameAddr<'a>> {
        NameAddr::parse(self.value(self.first(HeaderName::From)?))
    }

    pub fn to(&self) -> Option<NameAddr<'a>> {
        NameAddr::parse(self.value(self.first(HeaderName::To)?))
    }

    /// None when absent or not a decimal number (validate() rejects a
    /// malformed one); values above 255 are returned as-is.
    pub fn max_forwards(&self) -> Option<u32> {
        parse_u32(trim(self.value(self.first(HeaderName::MaxForwards)?)).as_bytes())
    }

    /// The Content-Length value when there is exactly one and it is a
    /// decimal number.
    pub fn content_length(&self) -> Option<u64> {
        if self.count(HeaderName::ContentLength) > 1 {
            return None;
        }
        parse_u64(
            self.value(self.first(HeaderName::ContentLength)?)
                .as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/TCP [2001:db8::1]:5062;branch=z9hG4bK2;rport\r\n\
Via: SIP/2.0/UDP uac.example.com;branch=z9hG4bK3;received=192.0.2.1\r\n\
cseq: 0009\r\n  INVITE\r\n\
f: \"A\" <sip:a@example.com>;tag=1\r\n\
t: sip:b@example.com\r\n\
i: cid\r\n\
Max-Forwards: 0068\r\n\
\r\n";

    #[test]
    fn vias_in_order() {
        let m = Message::parse(MSG).unwrap();
        let hosts: Vec<_> = m.vias().map(|v| v.host).collect();
        assert_eq!(
            hosts,
            ["p1.example.com", "[2001:db8::1]", "uac.example.com"]
        );
        let top = m.top_via().unwrap();
        assert_eq!(top.branch, Some("z9hG4bK1"));
        assert_eq!(
            &MSG[top.range.clone()],
            b"SIP/2.0/UDP p1.example.com;branch=z9hG4bK1"
        );
        let second = m.vias().nth(1).unwrap();
        assert_eq!(second.rport, Some(None));
        assert_eq!(&MSG[second.rport_range.unwrap()], b";rport");
        assert_eq!(MSG[second.params_end], b'\r');
    }

    #[test]
    fn top_via_removal_forms() {
        let m = Message::parse(MSG).unwrap();
        let r = m.top_via_removal().unwrap();
        assert_eq!(
            &MSG[r.clone()],
            b"SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, "
        );
        let mut out = Vec::new();
        let mut s = crate::sip::Splice::new();
        s.delete(r);
        s.apply(MSG, &mut out);
        let m2 = Message::parse(&out).unwrap();
        assert_eq!(m2.top_via().unwrap().host, "[2001:db8::1]");
        let r2 = m2.top_via_removal().unwrap();
        assert_eq!(
            &out[r2.clone()],
            b"Via: SIP/2.0/TCP [2001:db8::1]:5062;branch=z9hG4bK2;rport\r\n"
        );
        let mut out2 = Vec::new();
        let mut s = crate::sip::Splice::new();
        s.delete(r2);
        s.apply(&out, &mut out2);
        let m3 = Message::parse(&out2).unwrap();
        assert_eq!(m3.vias().count(), 1);
        assert_eq!(m3.top_via().unwrap().host, "uac.example.com");
    }

    #[test]
    fn scalar_fields() {
        let m = Message::parse(MSG).unwrap();
        assert_eq!(m.cseq(), Some((9, "INVITE")));
        assert_eq!(m.call_id(), Some("cid"));
        assert_eq!(m.max_forwards(), Some(68));
        assert_eq!(m.from().unwrap().tag, Some("1"));
        assert_eq!(m.to().unwrap().uri, "sip:b@example.com");
        assert_eq!(m.content_length(), None);
    }
}
