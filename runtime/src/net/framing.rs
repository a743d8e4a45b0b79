//! Framing of SIP over a byte stream (RFC 3261 §18.3), sans-IO: feed the
//! bytes read from a connection with [`Framer::push`], take complete
//! messages with [`Framer::next_frame`].
//!
//! - A message is its header section (up to the empty line) plus
//!   `Content-Length` bytes of body (`l:` is the compact form). §18.3 says
//!   the header MUST be present over a stream; a message without one is
//!   taken to have no body (what a lenient peer means), so the next
//!   message starts right after the empty line.
//! - CRLFs between messages are skipped; a double CRLF is the RFC 5626
//!   §3.5.1 keep-alive ping ([`Frame::Ping`]), which the connection answers
//!   with a single CRLF (the pong).
//! - Bounded: a header section longer than the limit, or a
//!   `Content-Length` that would make the message larger than it, is an
//!   error at once ([`FrameError::TooLarge`]): nothing beyond the limit is
//!   ever buffered (a `Content-Length: 10000000` is refused after its
//!   header section, not after 10 MB). After an error the framer is
//!   unusable: the connection is closed.
//!
//! The slow-header timeout (a message must complete in some seconds from
//! its first byte) is the connection's: [`Framer::in_message`] tells it
//! whether part of a message is waiting.

/// The largest message (header section and body) accepted by default.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// What a connection gets out of the framer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete SIP message (header section and body).
    Message(Vec<u8>),
    /// A double-CRLF keep-alive: answer with a single CRLF.
    Ping,
}

/// Why the stream cannot be read further.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum FrameError {
    /// The header section, or header section plus Content-Length, is over the limit.
    TooLarge,
    /// A Content-Length that is not a number, or two that differ.
    BadContentLength,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::TooLarge => "message over the size limit",
            FrameError::BadContentLength => "invalid Content-Length",
        })
    }
}

/// The framing state of one connection.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    max: usize,
    /// How far the search for the end of the header section got (bytes
    /// already searched need not be searched again).
    scanned: usize,
    /// The length of the current message, once its header section is read.
    total: Option<usize>,
    failed: Option<FrameError>,
}

impl Framer {
    /// A framer for messages of at most `max` bytes.
    pub fn new(max: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            max: max.max(16),
            scanned: 0,
            total: None,
            failed: None,
        }
    }

    /// Add bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Whether part of a message is buffered (not just CRLFs between messages).
    pub fn in_message(&self) -> bool {
        self.buf.iter().any(|&b| b != b'\r' && b != b'\n')
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame; `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.frame();
        if let Err(e) = result {
            self.failed = Some(e);
            self.buf = Vec::new();
        }
        result
    }

    fn frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.total.is_none() {
            // Between messages: keep-alives and stray line ends.
            loop {
                match self.buf.as_slice() {
                    [b'\r', b'\n', b'\r', b'\n', ..] => {
                        self.consume(4);
                        return Ok(Some(Frame::Ping));
                    }
                    // Maybe the start of a ping: wait for the rest.
                    [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] | [b'\r'] => return Ok(None),
                    [b'\r', b'\n', ..] => self.consume(2),
                    [b'\r' | b'\n', ..] => self.consume(1),
                    _ => break,
                }
            }
            if self.buf.is_empty() {
                return Ok(None);
            }
            let Some(end) = self.header_end() else {
                if self.buf.len() > self.max {
                    return Err(FrameError::TooLarge);
                }
                return Ok(None);
            };
            // A header section over the limit is too large whatever it
            // says (and whether it all arrived at once or not).
            if end > self.max {
                return Err(FrameError::TooLarge);
            }
            let body = content_length(&self.buf[..end])?.unwrap_or(0);
            let total = end.checked_add(body).ok_or(FrameError::TooLarge)?;
            if total > self.max {
                return Err(FrameError::TooLarge);
            }
            self.total = Some(total);
        }
        let total = self.total.unwrap_or(0);
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let message = std::mem::replace(&mut self.buf, rest);
        self.total = None;
        self.scanned = 0;
        Ok(Some(Frame::Message(message)))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
        self.scanned = 0;
    }

    /// The length of the header section including its empty line, once complete.
    fn header_end(&mut self) -> Option<usize> {
        let from = self.scanned.saturating_sub(3);
        match blank_line(&self.buf[from..]) {
            Some(at) => Some(from + at + 4),
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }
}

/// Where the first CRLF CRLF (the end of a header section) starts. The
/// searcher is built once (`memmem::find` builds one per call, which costs
/// more than the search in a SIP message).
pub(crate) fn blank_line(bytes: &[u8]) -> Option<usize> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    FINDER.find(bytes)
}

/// Whether `message` starts with a SIP start line: a status line
/// (`SIP/2.0 ...`) or a request line ending in ` SIP/2.0`. What a
/// connection must bring before it has said anything (see the readers'
/// first-message deadline); the core parses it fully afterwards.
pub fn has_sip_start_line(message: &[u8]) -> bool {
    let line = match memchr::memchr(b'\n', message) {
        Some(end) => &message[..end],
        None => message,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.starts_with(b"SIP/2.0 ") || (line.len() > 9 && line.ends_with(b" SIP/2.0"))
}

/// The Content-Length of a header section (`Content-Length` or `l`), None
/// when it has none. Two that differ, or one that is not a number, are an
/// error; folded lines are not looked into (a Content-Length is never folded
/// by anybody sane).
fn content_length(head: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut found: Option<usize> = None;
    // Every line after the start line; only one that starts with `C` or
    // `l` can be a Content-Length, so the others cost a memchr each (a
    // line starting with whitespace continues the one before it).
    for newline in memchr::memchr_iter(b'\n', head) {
        let start = newline + 1;
        let Some(first) = head.get(start) else {
            break;
        };
        if !matches!(first, b'C' | b'c' | b'L' | b'l') {
            continue;
        }
        let end = memchr::memchr(b'\n', &head[start..]).map_or(head.len(), |e| start + e);
        let line = &head[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 12 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::BadContentLength);
        }
        let n = value
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(FrameError::BadContentLength);
        }
        found = Some(n);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> Vec<u8> {
        format!(
            "MESSAGE sip:b@x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Everything the framer returns for `input` fed in pieces of `split` bytes.
    fn frames(input: &[u8], split: usize) -> Result<Vec<Frame>, FrameError> {
        let mut f = Framer::new(MAX_MESSAGE);
        let mut out = Vec::new();
        for piece in input.chunks(split.max(1)) {
            f.push(piece);
            while let Some(frame) = f.next_frame()? {
                out.push(frame);
            }
        }
        Ok(out)
    }

    #[test]
    fn pipelined_messages_and_pings_at_every_split() {
        let a = msg("hello");
        let b = msg("");
        let mut input = b"\r\n".to_vec();
        input.extend_from_slice(&a);
        input.extend_from_slice(b"\r\n\r\n");
        input.extend_from_slice(&b);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&a);
        let want = vec![
            Frame::Message(a.clone()),
            Frame::Ping,
            Frame::Message(b.clone()),
            Frame::Message(a.clone()),
        ];
        for split in 1..=input.len() {
            assert_eq!(frames(&input, split).unwrap(), want, "split {split}");
        }
        // Every cut point of a two-piece write.
        for cut in 0..=input.len() {
            let mut f = Framer::new(MAX_MESSAGE);
            let mut out = Vec::new();
            for piece in [&input[..cut], &input[cut..]] {
                f.push(piece);
                while let Some(frame) = f.next_frame().unwrap() {
                    out.push(frame);
                }
            }
            assert_eq!(out, want, "cut {cut}");
        }
    }

    #[test]
    fn compact_and_missing_content_length() {
        let compact = b"BYE sip:b@x SIP/2.0\r\nl : 3\r\n\r\nabcOPTIONS sip:x SIP/2.0\r\n\r\n";
        let got = frames(compact, 5).unwrap();
        assert_eq!(
            got,
            vec![
                Frame::Message(b"BYE sip:b@x SIP/2.0\r\nl : 3\r\n\r\nabc".to_vec()),
                Frame::Message(b"OPTIONS sip:x SIP/2.0\r\n\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn only_a_header_line_is_a_content_length_not_a_continuation_or_a_lookalike() {
        // A folded line continues the header before it (Subject here),
        // as the parser reads it; names that only start alike do not count.
        let input = b"MESSAGE sip:b@x SIP/2.0\r\nSubject: a\r\n Content-Length: 9\r\nContent-Lengthy: 7\r\nCall-ID: 1\r\nLx: 4\r\ncontent-LENGTH:2\r\n\r\nhiOPTIONS sip:x SIP/2.0\r\n\r\n";
        let got = frames(input, 7).unwrap();
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Frame::Message(m) if m.ends_with(b"\r\n\r\nhi")));
        assert_eq!(
            got[1],
            Frame::Message(b"OPTIONS sip:x SIP/2.0\r\n\r\n".to_vec())
        );
    }

    #[test]
    fn a_partial_message_is_in_message_and_line_ends_are_not() {
        let mut f = Framer::new(MAX_MESSAGE);
        f.push(b"\r\n");
        assert!(!f.in_message());
        assert_eq!(f.next_frame(), Ok(None));
        f.push(b"\r\n");
        assert_eq!(f.next_frame(), Ok(Some(Frame::Ping)));
        f.push(b"INV");
        assert!(f.in_message());
        assert_eq!(f.next_frame(), Ok(None));
    }

    #[test]
    fn over_the_limit_is_refused_without_buffering() {
        let mut f = Framer::new(1024);
        f.push(b"INVITE sip:x SIP/2.0\r\nContent-Length: 10000000\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge));
        assert_eq!(f.buffered(), 0);
        // Still an error afterwards; nothing more is kept.
        f.push(&[b'a'; 4096]);
        assert_eq!(f.buffered(), 0);
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge));

        // Headers that never end.
        let mut f = Framer::new(1024);
        f.push(b"INVITE sip:x SIP/2.0\r\n");
        let mut err = None;
        for _ in 0..200 {
            f.push(b"X-Filler: aaaaaaaaaaaaaaaa\r\n");
            match f.next_frame() {
                Ok(None) => {}
                other => {
                    err = Some(other);
                    break;
                }
            }
        }
        assert_eq!(err, Some(Err(FrameError::TooLarge)));
        // Exactly at the limit is fine; one byte more is not.
        let sized = |len: usize| {
            (0..len)
                .map(|n| msg(&"x".repeat(n)))
                .find(|m| m.len() == len)
                .unwrap()
        };
        assert_eq!(frames(&sized(1024), 100).unwrap().len(), 1);
        let mut f = Framer::new(1024);
        f.push(&sized(1024));
        assert!(matches!(f.next_frame(), Ok(Some(Frame::Message(_)))));
        let mut f = Framer::new(1024);
        f.push(&sized(1025));
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge));
        // A header section over the limit is too large even when its
        // Content-Length is invalid, and whether it arrives at once or in
        // pieces (found by the framing fuzz target: at once it used to be
        // BadContentLength, in pieces TooLarge).
        let long = format!(
            "BYE sip:x SIP/2.0\r\nX-Pad: {}\r\nContent-Length: x\r\n\r\n",
            "p".repeat(1100)
        );
        let mut f = Framer::new(1024);
        f.push(long.as_bytes());
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge));
        let mut f = Framer::new(1024);
        let mut got = Ok(None);
        for piece in long.as_bytes().chunks(100) {
            f.push(piece);
            got = f.next_frame();
            if got != Ok(None) {
                break;
            }
        }
        assert_eq!(got, Err(FrameError::TooLarge));
    }

    #[test]
    fn bad_content_lengths() {
        for head in [
            &b"BYE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n"[..],
            b"BYE sip:x SIP/2.0\r\nContent-Length: 1x\r\n\r\n",
            b"BYE sip:x SIP/2.0\r\nContent-Length:\r\n\r\n",
            b"BYE sip:x SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"BYE sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
        ] {
            let mut f = Framer::new(MAX_MESSAGE);
            f.push(head);
            assert_eq!(
                f.next_frame(),
                Err(FrameError::BadContentLength),
                "{head:?}"
            );
        }
        // The same value twice is fine.
        let mut f = Framer::new(MAX_MESSAGE);
        f.push(b"BYE sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 1\r\n\r\nz");
        assert!(matches!(f.next_frame(), Ok(Some(Frame::Message(_)))));
    }

    #[test]
    fn sip_start_lines() {
        for yes in [
            &b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"[..],
            b"SIP/2.0 200 OK\r\n\r\n",
            b"INVITE sip:x SIP/2.0\n\n",
        ] {
            assert!(has_sip_start_line(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"hello\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b" SIP/2.0\r\n\r\n",
            b"",
        ] {
            assert!(!has_sip_start_line(no), "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded() {
        // A small xorshift generator: deterministic, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"\r\n: lLContent-Length0123456789 INVITE SIP/2.0\x00\xff";
        let seed = msg("body");
        for round in 0..2000 {
            let mut f = Framer::new(512);
            let len = (rand() % 2048) as usize;
            let mut input: Vec<u8> = (0..len)
                .map(|_| alphabet[(rand() % alphabet.len() as u64) as usize])
                .collect();
            if round % 3 == 0 {
                // Truncated and spliced real messages.
                let cut = (rand() % seed.len() as u64) as usize;
                input.splice(0..0, seed[..cut].iter().copied());
            }
            for piece in input.chunks(1 + (rand() % 64) as usize) {
                f.push(piece);
                loop {
                    match f.next_frame() {
                        Ok(Some(Frame::Message(m))) => assert!(m.len() <= 512),
                        Ok(Some(Frame::Ping)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                assert!(f.buffered() <= 512 + 64, "round {round}");
            }
        }
    }
}
