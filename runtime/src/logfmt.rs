//! Escaping of text log lines, so that a value taken from a message (a
//! User-Agent, a Call-ID, a route's `log` text) can neither forge fields
//! nor reach the terminal as a control sequence.
//!
//! In the text format the message is always quoted and every field value
//! is written either bare (a number, an address: no space, `"`, `\`, `=`
//! and nothing escaped below) or quoted. Inside quotes:
//!
//! - `"` and `\` are written `\"` and `\\`;
//! - LF, CR and TAB are written `\n`, `\r`, `\t`;
//! - the other control characters (C0, DEL, C1), U+2028/U+2029 (line and
//!   paragraph separators) and the bidirectional overrides and isolates
//!   (U+202A–U+202E, U+2066–U+2069) are written `\u{HEX}` (Rust's
//!   notation, lowercase hex, e.g. ESC is `\u{1b}`);
//! - bytes that are not UTF-8 (only route `log` text can hold them) are
//!   written `\xHH`.
//!
//! [`EscapedFields`] applies this to every line tracing formats;
//! [`crate::logbuf::write_route_line`] to the route `log` lines it writes
//! itself.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Whether `c` is written escaped inside a quoted value.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '"' | '\\' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    ) || c.is_control()
}

/// Write `c` escaped (it is one that [`needs_escape`]).
fn write_escape(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '"' => out.write_str("\\\""),
        '\\' => out.write_str("\\\\"),
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c => write!(out, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// Write `text` with the characters that need it escaped (no quotes).
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut clean = 0;
    for (at, c) in text.char_indices() {
        if needs_escape(c) {
            out.write_str(&text[clean..at])?;
            write_escape(out, c)?;
            clean = at + c.len_utf8();
        }
    }
    out.write_str(&text[clean..])
}

/// Appends to a byte buffer through `fmt::Write`.
struct Bytes<'a>(&'a mut Vec<u8>);

impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Append `bytes` escaped (no quotes); bytes that are not UTF-8 become `\xHH`.
pub fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut sink = Bytes(out);
    for chunk in bytes.utf8_chunks() {
        // Writing into a Vec cannot fail.
        let _ = write_escaped(&mut sink, chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(sink, "\\x{b:02x}");
        }
    }
}

/// Escape in place the bytes of `buf` from `start` on (see [`push_escaped`]).
pub fn escape_tail(buf: &mut Vec<u8>, start: usize) {
    if is_plain(&buf[start..]) {
        return;
    }
    let raw = buf.split_off(start);
    push_escaped(buf, &raw);
}

/// Printable ASCII without `"` and `\`: written as it is (the common case).
/// Eight bytes at a time (every log line goes through it twice), the
/// tail byte by byte.
fn is_plain(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero: exact for "is there one" (borrows only run
    // past a zero byte).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        // Below 0x20 (no high bit set in x: x - 0x20 borrows), 0x80 and up,
        // DEL, '"' and '\\'.
        let bad = (x.wrapping_sub(0x20 * ONES) & !x & HIGH)
            | (x & HIGH)
            | zero(x ^ (0x7f * ONES))
            | zero(x ^ (u64::from(b'"') * ONES))
            | zero(x ^ (u64::from(b'\\') * ONES));
        if bad != 0 {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Whether a formatted field value can be written without quotes.
fn is_bare(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_whitespace() && c != '=' && !needs_escape(c))
}

/// The field formatter of the text format: the message quoted, every value
/// escaped (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = Visitor {
            out: &mut writer,
            first: true,
            result: Ok(()),
            scratch: String::new(),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
    /// A formatted value, before it is known whether it needs quotes.
    scratch: String,
}

impl Visitor<'_, '_> {
    /// The separator and `name=` (nothing for the message).
    fn start(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_char(' ')?;
        }
        match field.name() {
            "message" => Ok(()),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                self.out.write_str(name)?;
                self.out.write_char('=')
            }
        }
    }

    fn quoted(&mut self, field: &Field, value: &str) -> fmt::Result {
        self.start(field)?;
        self.out.write_char('"')?;
        write_escaped(self.out, value)?;
        self.out.write_char('"')
    }
}

impl Visit for Visitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() && !field.name().starts_with("log.") {
            self.result = self.quoted(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        self.result = write!(text, "{value:?}").and_then(|()| {
            if field.name() != "message" && is_bare(&text) {
                self.start(field)?;
                self.out.write_str(&text)
            } else {
                self.quoted(field, &text)
            }
        });
        self.scratch = text;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_plain_takes_every_byte_as_the_bytewise_rule_does() {
        let slow = |bytes: &[u8]| {
            bytes
                .iter()
                .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        };
        for b in 0..=255u8 {
            for at in 0..20 {
                let mut v = b"Received INVITE to sip:x".to_vec();
                v.truncate(at + 1);
                v[at] = b;
                assert_eq!(is_plain(&v), slow(&v), "byte {b:#x} at {at}");
                // Next to neighbours that borrow or carry.
                let mut w = vec![0x20u8; 17];
                w[at % 17] = b;
                assert_eq!(is_plain(&w), slow(&w), "byte {b:#x} among spaces");
                let mut w = vec![0x7eu8; 17];
                w[at % 17] = b;
                assert_eq!(is_plain(&w), slow(&w), "byte {b:#x} among tildes");
            }
        }
    }
    use super::*;

    fn escaped(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        push_escaped(&mut out, bytes);
        String::from_utf8(out).expect("escaped text is UTF-8")
    }

    #[test]
    fn plain_text_is_left_alone() {
        assert_eq!(
            escaped(b"Received INVITE to sip:bob@x - ok"),
            "Received INVITE to sip:bob@x - ok"
        );
        assert_eq!(escaped("Grüße, 東京".as_bytes()), "Grüße, 東京");
    }

    #[test]
    fn quotes_controls_separators_and_bad_utf8_are_escaped() {
        assert_eq!(
            escaped(br#"x line=999 call_id="forged" \"#),
            r#"x line=999 call_id=\"forged\" \\"#
        );
        assert_eq!(
            escaped(b"\x1b[2J\x00\x07\x7f"),
            "\\u{1b}[2J\\u{0}\\u{7}\\u{7f}"
        );
        assert_eq!(escaped(b"a\r\n\tb"), "a\\r\\n\\tb");
        assert_eq!(
            escaped("\u{9b}31m \u{2028}\u{2029} \u{202e}\u{2066}".as_bytes()),
            "\\u{9b}31m \\u{2028}\\u{2029} \\u{202e}\\u{2066}"
        );
        assert_eq!(escaped(b"ok\xff\xc3("), "ok\\xff\\xc3(");
    }

    #[test]
    fn escape_tail_keeps_the_head() {
        let mut buf = b"head: ".to_vec();
        buf.extend_from_slice(b"a\"b");
        escape_tail(&mut buf, 6);
        assert_eq!(buf, b"head: a\\\"b");
    }

    #[test]
    fn bare_values() {
        assert!(is_bare("127.0.0.1:5060"));
        assert!(is_bare("503"));
        assert!(!is_bare(""));
        assert!(!is_bare("a b"));
        assert!(!is_bare("a=b"));
        assert!(!is_bare("\"q\""));
        assert!(!is_bare("a\u{1b}"));
    }

    /// Format one event with [`EscapedFields`] in tracing's text shape.
    fn format(event: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(Arc::clone(&sink)))
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .with_target(false)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tracing_lines_quote_the_message_and_escape_every_value() {
        let ua = "x line=999 call_id=\"forged\"\u{1b}[2J";
        let source: std::net::SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let line = format(
            || tracing::warn!(%source, len = 12, call_id = ua, agent = %ua, "bad {ua}\r\nnext"),
        );
        assert_eq!(
            line,
            "\"bad x line=999 call_id=\\\"forged\\\"\\u{1b}[2J\\r\\nnext\" \
             source=192.0.2.1:5060 len=12 \
             call_id=\"x line=999 call_id=\\\"forged\\\"\\u{1b}[2J\" \
             agent=\"x line=999 call_id=\\\"forged\\\"\\u{1b}[2J\"\n"
        );
        assert_eq!(format(|| tracing::info!("started")), "\"started\"\n");
    }
}
