//! The zero-copy message view: framing one datagram into a start line, an
//! index of header lines and a body (RFC 3261 §7, §18.3), with accessors that
//! hand out slices of the received buffer. Typed header accessors live in
//! `fields.rs`, request validation in `validate.rs`.

use std::ops::Range;

use memchr::{memchr, memrchr};

use super::header::names_equal_bytes;
pub use super::header::{HeaderName, names_equal};
pub use super::validate::Invalid;

/// One header line of the message. All ranges are absolute offsets in the
/// buffer the message was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    /// The name as written (without the colon and surrounding whitespace).
    pub name_range: Range<usize>,
    /// The value, trimmed; continuation lines are included as-is.
    pub value_range: Range<usize>,
    /// The whole line(s), including continuations and the final line ending.
    pub line_range: Range<usize>,
}

/// Why a datagram could not even be delimited into start line and headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub reason: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ParseError {}

fn err(reason: &'static str) -> ParseError {
    ParseError { reason }
}

/// A parsed SIP message: byte ranges into the received buffer.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    is_request: bool,
    /// Request: method; response: version.
    part1: Range<usize>,
    /// Request: Request-URI; response: status code.
    part2: Range<usize>,
    /// Request: version; response: reason phrase.
    part3: Range<usize>,
    headers: Vec<Header>,
    headers_end: usize,
    body_start: usize,
    len: usize,
    /// The start line and headers as text, when they are UTF-8 (checked
    /// once, so reading a value does not check it again).
    head: Option<&'a str>,
    /// The top Via, parsed once with the message (every path needs it).
    top_via: Option<super::Via<'a>>,
    /// A CR not followed by LF somewhere in the start line or the headers.
    bare_cr: bool,
    /// A line of the start line, headers or the empty line after them that
    /// ends in LF alone.
    bare_lf: bool,
    /// Per header name, indexed by `HeaderName as usize`: how many headers
    /// have it and where the first one is, so that [`Message::first`] and
    /// the counts `validate` needs take no scan of the headers.
    seen: [Seen; HeaderName::COUNT],
}

/// How many headers of one [`HeaderName`] a message has, and the index of
/// the first of them in `Message::headers`.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    count: u32,
    first: u32,
}

/// Initial capacity of the header index: room for a typical request, and
/// small enough (18 * 56 = 1008 bytes) for glibc's per-thread cache of
/// freed blocks (up to 1032 bytes), which makes the allocation cheap.
const HEADERS_CAPACITY: usize = 18;
const _: () = assert!(HEADERS_CAPACITY * std::mem::size_of::<Header>() <= 1032);

/// `(content_end, next_line_start)` of the line starting at `from`; the
/// content excludes the LF and a CR right before it.
fn next_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let idx = find_lf(buf.get(from..)?)?;
    let lf = from + idx;
    let end = if lf > from && buf.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

/// Offset of the first LF in `hay`. On x86_64 with memchr's SSE2 searcher
/// called directly (SSE2 is part of the architecture): header lines are
/// short, and `memchr`'s run-time choice of a searcher costs about as
/// much as the search.
#[inline]
fn find_lf(hay: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(lf) = memchr::arch::x86_64::sse2::memchr::One::new(b'\n') {
        return lf.find(hay);
    }
    memchr(b'\n', hay)
}

/// Offset of the first ':' in the header line `pos..end`.
fn header_colon(buf: &[u8], pos: usize, end: usize) -> Option<usize> {
    // Usually the name is a token right up to the colon: no search needed.
    // (A token stops at the line end at the latest: CR and LF are no token bytes.)
    let name_end = super::lex::scan(buf, pos, super::lex::TOKEN);
    if buf.get(name_end) == Some(&b':') {
        return Some(name_end);
    }
    Some(pos + memchr(b':', buf.get(pos..end)?)?)
}

/// Whether `from..end` (the start line and headers, `crlf_lines` of whose
/// lines end in CRLF) holds a CR that is not followed by LF: every CR there
/// ends a line unless the CRs outnumber those lines. One counting pass
/// (vectorised), not one search per CR.
fn has_bare_cr(buf: &[u8], from: usize, end: usize, crlf_lines: usize) -> bool {
    let Some(head) = buf.get(from..end) else {
        return false;
    };
    memchr::memchr_iter(b'\r', head).count() != crlf_lines
}

/// The datagram with every line ending in LF alone in its start line,
/// headers and the empty line after them turned into CRLF (RFC 3261 §7:
/// CRLF ends every line), and the body as it was; None when there is no
/// such line ending (or no complete header section), so the datagram can be
/// used as it is. The line structure is the one [`Message::parse`] sees, so
/// the copy parses into the same message with CRLF framing.
pub fn crlf_normalised(buf: &[u8]) -> Option<Vec<u8>> {
    let start = buf.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let mut bare = Vec::new();
    let mut pos = start;
    let head_end = loop {
        let (end, next) = next_line(buf, pos)?;
        if end + 1 == next {
            bare.push(end);
        }
        if end == pos {
            break next;
        }
        pos = next;
    };
    if bare.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(buf.len() + bare.len());
    let mut from = 0;
    for lf in bare {
        out.extend_from_slice(buf.get(from..lf)?);
        out.extend_from_slice(b"\r");
        from = lf;
    }
    out.extend_from_slice(buf.get(from..head_end)?);
    out.extend_from_slice(buf.get(head_end..)?);
    Some(out)
}

fn is_sp_ht(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl<'a> Message<'a> {
    /// Frame and index one datagram. Err only when the start line or header
    /// block cannot be delimited at all.
    ///
    /// Leading CR/LF (keep-alives, RFC 3261 §7.5) are skipped. Lines may end
    /// in CRLF or bare LF. The body is framed by a single well-formed
    /// Content-Length that fits in the datagram; otherwise (absent, repeated,
    /// garbage or too large — the last three are reported by
    /// [`Message::validate`]) the body is the rest of the datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let start = buf
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .ok_or(err("empty message"))?;
        let (line_end, mut pos) = next_line(buf, start).ok_or(err("no end of start line"))?;
        let mut msg = Message {
            buf,
            is_request: true,
            part1: 0..0,
            part2: 0..0,
            part3: 0..0,
            headers: Vec::with_capacity(HEADERS_CAPACITY),
            headers_end: 0,
            body_start: 0,
            len: 0,
            head: None,
            top_via: None,
            bare_cr: false,
            bare_lf: line_end + 1 == pos,
            seen: [Seen::default(); HeaderName::COUNT],
        };
        msg.parse_start_line(start, line_end)?;
        // Lines of the start line and headers that end in CRLF.
        let mut crlf_lines = usize::from(line_end + 2 == pos);
        loop {
            let (end, next) = next_line(buf, pos).ok_or(err("no end of header block"))?;
            msg.bare_lf |= end + 1 == next;
            if end == pos {
                msg.headers_end = pos;
                msg.body_start = next;
                msg.bare_cr = has_bare_cr(buf, start, pos, crlf_lines);
                break;
            }
            crlf_lines += usize::from(end + 2 == next);
            let first = buf.get(pos).copied().unwrap_or(b' ');
            if is_sp_ht(first) {
                let h = msg
                    .headers
                    .last_mut()
                    .ok_or(err("continuation line before any header"))?;
                let (vs, ve) = super::lex::trim_span(buf, pos, end);
                if vs < ve {
                    if h.value_range.is_empty() {
                        h.value_range = vs..ve;
                    } else {
                        h.value_range.end = ve;
                    }
                }
                h.line_range.end = next;
            } else {
                let colon = header_colon(buf, pos, end).ok_or(err("header line without colon"))?;
                let mut name_end = colon;
                while name_end > pos && buf.get(name_end - 1).is_some_and(|&c| is_sp_ht(c)) {
                    name_end -= 1;
                }
                if name_end == pos {
                    return Err(err("empty header name"));
                }
                let (vs, ve) = super::lex::trim_span(buf, colon + 1, end);
                let name = HeaderName::from_bytes(buf.get(pos..name_end).unwrap_or(&[]));
                msg.note(name);
                msg.headers.push(Header {
                    name,
                    name_range: pos..name_end,
                    value_range: vs..ve,
                    line_range: pos..next,
                });
            }
            pos = next;
        }
        msg.len = msg.framed_len();
        msg.head = buf
            .get(..msg.headers_end)
            .and_then(|h| std::str::from_utf8(h).ok());
        msg.top_via = msg.parse_top_via();
        Ok(msg)
    }

    /// Records in `seen` the header about to be pushed.
    fn note(&mut self, name: HeaderName) {
        let index = u32::try_from(self.headers.len()).unwrap_or(u32::MAX);
        if let Some(seen) = self.seen.get_mut(name as usize) {
            if seen.count == 0 {
                seen.first = index;
            }
            seen.count = seen.count.saturating_add(1);
        }
    }

    /// How many headers are named `name` (long or compact form).
    pub(super) fn count(&self, name: HeaderName) -> usize {
        self.seen.get(name as usize).map_or(0, |s| s.count as usize)
    }

    /// Index in `headers` of the first header named `name` (`headers.len()`
    /// when there is none).
    fn first_index(&self, name: HeaderName) -> usize {
        match self.seen.get(name as usize) {
            Some(s) if s.count > 0 => s.first as usize,
            _ => self.headers.len(),
        }
    }

    fn parse_start_line(&mut self, start: usize, mut end: usize) -> Result<(), ParseError> {
        let buf = self.buf;
        // Trailing whitespace on the start line is tolerated (RFC 4475 trws).
        while end > start && buf.get(end - 1).is_some_and(|&c| is_sp_ht(c)) {
            end -= 1;
        }
        let line = buf.get(start..end).unwrap_or(&[]);
        let sp1 = start + memchr(b' ', line).ok_or(err("start line has a single word"))?;
        if sp1 == start {
            return Err(err("start line begins with whitespace"));
        }
        let is_response = line.len() >= 4
            && line
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"));
        self.is_request = !is_response;
        self.part1 = start..sp1;
        if is_response {
            let rest = buf.get(sp1 + 1..end).unwrap_or(&[]);
            match memchr(b' ', rest) {
                Some(i) => {
                    self.part2 = sp1 + 1..sp1 + 1 + i;
                    self.part3 = sp1 + 2 + i..end;
                }
                None => {
                    self.part2 = sp1 + 1..end;
                    self.part3 = end..end;
                }
            }
        } else {
            let sp2 = start + memrchr(b' ', line).unwrap_or(sp1 - start);
            if sp2 == sp1 {
                return Err(err("request line without version"));
            }
            self.part2 = sp1 + 1..sp2;
            self.part3 = sp2 + 1..end;
        }
        Ok(())
    }

    /// End of the message under the framing rules described in [`Message::parse`].
    fn framed_len(&self) -> usize {
        let available = self.buf.len().saturating_sub(self.body_start);
        if self.count(HeaderName::ContentLength) > 1 {
            return self.buf.len();
        }
        match self
            .first(HeaderName::ContentLength)
            .and_then(|h| super::lex::parse_u64(self.bytes(h.value_range.clone())))
        {
            Some(n) if n <= available as u64 => self.body_start + n as usize,
            _ => self.buf.len(),
        }
    }

    fn bytes(&self, r: Range<usize>) -> &'a [u8] {
        self.buf.get(r).unwrap_or(&[])
    }

    fn text(&self, r: Range<usize>) -> Option<&'a str> {
        match self.head {
            Some(head) if r.end <= head.len() => head.get(r),
            _ => std::str::from_utf8(self.bytes(r)).ok(),
        }
    }

    /// Whether the start line or a header holds a CR that is not followed
    /// by LF (refused by [`Message::validate`]: a CR alone ends a line for
    /// some parsers, which would see a header we never saw).
    pub fn has_bare_cr(&self) -> bool {
        self.bare_cr
    }

    /// Whether a line of the start line, the headers or the empty line
    /// after them ends in LF alone (see [`crlf_normalised`]).
    pub fn has_bare_lf(&self) -> bool {
        self.bare_lf
    }

    /// The top Via parsed with the message (see [`Message::top_via`]).
    pub(super) fn cached_top_via(&self) -> Option<&super::Via<'a>> {
        self.top_via.as_ref()
    }

    /// The whole received buffer.
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_request(&self) -> bool {
        self.is_request
    }

    /// Request method token (None for responses or non-UTF-8).
    pub fn method(&self) -> Option<&'a str> {
        if self.is_request {
            self.text(self.part1.clone())
        } else {
            None
        }
    }

    /// Request-URI text exactly as received (may contain anything between
    /// the first and last space of the request line; see `validate`).
    pub fn request_uri(&self) -> Option<&'a str> {
        self.request_uri_range().and_then(|r| self.text(r))
    }

    pub fn request_uri_range(&self) -> Option<Range<usize>> {
        self.is_request.then(|| self.part2.clone())
    }

    /// SIP version of the start line ("SIP/2.0"); "" if not UTF-8.
    pub fn version(&self) -> &'a str {
        let r = if self.is_request {
            self.part3.clone()
        } else {
            self.part1.clone()
        };
        self.text(r).unwrap_or("")
    }

    /// Status code of a response when it is exactly three digits.
    pub fn status(&self) -> Option<u16> {
        if self.is_request {
            return None;
        }
        let code = self.bytes(self.part2.clone());
        if code.len() != 3 {
            return None;
        }
        super::lex::parse_u16(code)
    }

    /// Reason phrase of a response (None for requests or non-UTF-8).
    pub fn reason(&self) -> Option<&'a str> {
        if self.is_request {
            None
        } else {
            self.text(self.part3.clone())
        }
    }

    /// Byte range of the start line without its line ending.
    pub fn start_line_range(&self) -> Range<usize> {
        self.part1.start..self.part3.end.max(self.part2.end)
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    pub fn first(&self, name: HeaderName) -> Option<&Header> {
        self.headers.get(self.first_index(name))
    }

    pub fn all(&self, name: HeaderName) -> impl Iterator<Item = &Header> {
        let rest = self.headers.get(self.first_index(name)..).unwrap_or(&[]);
        rest.iter().filter(move |h| h.name == name)
    }

    /// Headers whose name equals `name` (case-insensitive, compact forms
    /// equal long forms, works for unknown names too).
    pub fn find<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Header> {
        let known = HeaderName::parse(name);
        let buf = self.buf;
        self.headers.iter().filter(move |h| {
            h.name == known
                && (known != HeaderName::Other
                    || names_equal_bytes(
                        buf.get(h.name_range.clone()).unwrap_or(&[]),
                        name.as_bytes(),
                    ))
        })
    }

    /// The header's value without leading/trailing whitespace; folding kept
    /// as-is; "" when the value is not UTF-8.
    pub fn value(&self, h: &Header) -> &'a str {
        self.text(h.value_range.clone()).unwrap_or("")
    }

    /// The header's name as written; "" when not UTF-8.
    pub fn name_text(&self, h: &Header) -> &'a str {
        self.text(h.name_range.clone()).unwrap_or("")
    }

    /// Offset where a new header line may be inserted (start of the empty line).
    pub fn headers_end(&self) -> usize {
        self.headers_end
    }

    /// Offset of the first body byte (just after the empty line).
    pub fn body_start(&self) -> usize {
        self.body_start
    }

    /// The body as framed by Content-Length (binary; never assumed UTF-8).
    pub fn body(&self) -> &'a [u8] {
        self.bytes(self.body_start..self.len)
    }

    /// End of the message (headers + framed body) within `buf`; bytes after
    /// it in a datagram are to be ignored (RFC 4475 dblreq).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true for a parsed message (there is always a start line).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOLDED: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via : SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
v: SIP/2.0/TCP b.example.com\r\n\
Subject: one\r\n two\r\n\
Contact:\r\n  <sip:x@y>\r\n\
i: abc@def\r\n\
X-Custom: keep\r\n\
l: 4\r\n\
\r\n\
\x00\xff\r\nEXTRA";

    #[test]
    fn frames_and_indexes() {
        let m = Message::parse(FOLDED).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.request_uri(), Some("sip:bob@example.com"));
        assert_eq!(m.version(), "SIP/2.0");
        assert_eq!(m.headers().len(), 7);
        assert_eq!(m.all(HeaderName::Via).count(), 2);
        let subject = m.find("s").next().unwrap();
        assert_eq!(m.value(subject), "one\r\n two");
        assert_eq!(m.name_text(subject), "Subject");
        let contact = m.first(HeaderName::Contact).unwrap();
        assert_eq!(m.value(contact), "<sip:x@y>");
        assert_eq!(
            &FOLDED[contact.line_range.clone()],
            b"Contact:\r\n  <sip:x@y>\r\n"
        );
        assert_eq!(m.find("CALL-id").count(), 1);
        assert_eq!(m.find("x-custom").count(), 1);
        assert_eq!(m.find("X-Other").count(), 0);
        assert_eq!(m.body(), b"\x00\xff\r\n");
        assert_eq!(m.len(), FOLDED.len() - 5);
        assert_eq!(&FOLDED[m.headers_end()..m.headers_end() + 2], b"\r\n");
    }

    #[test]
    fn bare_lf_and_no_content_length() {
        let raw = b"SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP h\nCall-ID: x\n\nbody\n";
        let m = Message::parse(raw).unwrap();
        assert!(!m.is_request());
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some("Ringing"));
        assert_eq!(m.headers().len(), 2);
        assert_eq!(m.body(), b"body\n");
        assert_eq!(m.len(), raw.len());
    }

    #[test]
    fn bare_cr_is_a_cr_not_followed_by_lf_in_the_head() {
        // Heads made of every sequence of a few pieces, against the
        // definition (a scan of the head).
        let pieces: [&[u8]; 6] = [b"Via: x", b"\r\n", b"\n", b"\r", b" y", b"\r\r\n"];
        let mut checked = 0;
        for n in 0..6u32.pow(5) {
            let mut raw = b"M sip:a SIP/2.0\r\n".to_vec();
            let mut k = n;
            for _ in 0..5 {
                raw.extend_from_slice(pieces[(k % 6) as usize]);
                k /= 6;
            }
            raw.extend_from_slice(b"\r\n\r\nbody\r");
            let Ok(m) = Message::parse(&raw) else {
                continue;
            };
            let head = &raw[m.start_line_range().start..m.headers_end()];
            let want = head
                .iter()
                .enumerate()
                .any(|(i, &c)| c == b'\r' && head.get(i + 1) != Some(&b'\n'));
            assert_eq!(m.has_bare_cr(), want, "{:?}", String::from_utf8_lossy(&raw));
            checked += 1;
        }
        assert!(checked > 1000);
    }

    #[test]
    fn bare_line_ends_are_noticed() {
        let crlf = Message::parse(FOLDED).unwrap();
        assert!(!crlf.has_bare_cr() && !crlf.has_bare_lf());
        // A CR in the body is the body's business.
        assert!(
            !Message::parse(b"M sip:a SIP/2.0\r\nl: 3\r\n\r\na\rb")
                .unwrap()
                .has_bare_cr()
        );
        for raw in [
            &b"M sip:a SIP/2.0\r\nSubject: a\rX-Injected: b\r\n\r\n"[..],
            b"SIP/2.0 200 OK\rX-Injected: b\r\nVia: x\r\n\r\n",
            b"M sip:a SIP/2.0\r\nSubject: a\r\r\n\r\n",
            b"\r\n\r\nM sip:a SIP/2.0\r\nSubject: a,\r\n b\rc\r\n\r\n",
            b"M sip:a SIP/2.0\r\nSubject: a\r\n\rVia: x\r\n\r\n",
        ] {
            let m = Message::parse(raw).unwrap();
            assert!(m.has_bare_cr() && !m.has_bare_lf(), "{raw:?}");
        }
        for raw in [
            &b"M sip:a SIP/2.0\nVia: x\r\n\r\n"[..],
            b"M sip:a SIP/2.0\r\nVia: x\n\r\n",
            b"M sip:a SIP/2.0\r\nVia: x\r\n\n",
            b"\r\nM sip:a SIP/2.0\nVia: x\n\n",
        ] {
            let m = Message::parse(raw).unwrap();
            assert!(m.has_bare_lf() && !m.has_bare_cr(), "{raw:?}");
        }
    }

    #[test]
    fn bare_lf_line_ends_are_normalised_in_the_header_section_only() {
        assert_eq!(crlf_normalised(FOLDED), None);
        let raw = b"\r\nM sip:a SIP/2.0\nVia: x\r\nSubject: a,\n b\nl: 5\n\na\nb\r\n";
        let out = crlf_normalised(raw).unwrap();
        assert_eq!(
            out,
            b"\r\nM sip:a SIP/2.0\r\nVia: x\r\nSubject: a,\r\n b\r\nl: 5\r\n\r\na\nb\r\n"
        );
        let m = Message::parse(&out).unwrap();
        assert!(!m.has_bare_lf());
        assert_eq!(m.body(), b"a\nb\r\n");
        assert_eq!(m.value(m.find("Subject").next().unwrap()), "a,\r\n b");
        // A bare CR stays (for validate to refuse); no header section, no copy.
        let out = crlf_normalised(b"M sip:a SIP/2.0\nS: a\rb\n\n").unwrap();
        assert_eq!(out, b"M sip:a SIP/2.0\r\nS: a\rb\r\n\r\n");
        assert_eq!(crlf_normalised(b"M sip:a SIP/2.0\nVia: x\n"), None);
        assert_eq!(crlf_normalised(b"\n\n"), None);
    }

    #[test]
    fn parse_errors() {
        assert!(Message::parse(b"").is_err());
        assert!(Message::parse(b"\r\n\r\n").is_err());
        assert!(Message::parse(b"INVITE sip:a SIP/2.0").is_err());
        assert!(Message::parse(b"INVITE sip:a SIP/2.0\r\nVia: x\r\n").is_err());
        assert!(Message::parse(b"INVITE\r\n\r\n").is_err());
        assert!(Message::parse(b"INVITE sip:a\r\n\r\n").is_err());
        assert!(Message::parse(b"INVITE sip:a SIP/2.0\r\n folded\r\n\r\n").is_err());
        assert!(Message::parse(b"INVITE sip:a SIP/2.0\r\nNoColon\r\n\r\n").is_err());
        assert!(Message::parse(b"INVITE sip:a SIP/2.0\r\n: x\r\n\r\n").is_err());
    }

    #[test]
    fn content_length_too_large_takes_rest() {
        let raw = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99\r\n\r\nabc";
        let m = Message::parse(raw).unwrap();
        assert_eq!(m.body(), b"abc");
    }
}
