//! Bencode, the dictionary format of rtpengine's ng protocol: a small
//! encoder and a bounded, zero-copy decoder.
//!
//! Why not a crate: the two usual ones do not fit rtpengine's replies.
//! `bendy` decodes only canonical bencode and rejects a dictionary whose
//! keys are not sorted, and rtpengine does not sort them (an offer's reply
//! is `d3:sdp…6:result2:oke`, `sdp` before `result`). `serde_bencode`
//! decodes them, but nests without a bound: a datagram of `l` bytes from
//! anyone who can reach the control socket recurses once per byte, deep
//! enough to overflow a thread's stack. What the ng protocol needs is
//! four value kinds, about a hundred lines here, with the limits a
//! datagram from the network calls for:
//!
//! - nesting at most [`MAX_DEPTH`] deep (rtpengine's deepest reply, a
//!   `query`'s, nests 7);
//! - no allocation before a length is checked against the bytes that are
//!   there, so a lying length costs nothing;
//! - byte strings borrowed from the datagram, never copied;
//! - integers that overflow an `i64` are an error, not a wrap.
//!
//! Keys are kept in the order they came, and looked up by a scan
//! ([`Value::get`]): ng dictionaries have a handful of keys.

use std::fmt;

/// How deep lists and dictionaries may nest in a decoded value.
pub const MAX_DEPTH: usize = 32;

/// One bencode value; byte strings and keys borrow the decoded bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Entries in the order they were written (rtpengine does not sort).
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The value of `key` in a dictionary (the first, should it repeat).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Dict(entries) => entries
                .iter()
                .find(|(k, _)| *k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A byte string that is UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value as bencode.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => put_int(out, *i),
            Value::Bytes(b) => put_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    put_bytes(out, k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Why bytes are not one bencode value, and where that was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for DecodeError {}

/// Decode `input`, which must be exactly one value (bytes after it are an
/// error: a datagram holds one dictionary).
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut d = Decoder { input, pos: 0 };
    let value = d.value(0)?;
    if d.pos != input.len() {
        return Err(d.error("bytes after the value"));
    }
    Ok(value)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn error(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        match self.peek() {
            None => Err(self.error("unexpected end")),
            Some(b'i') => {
                self.pos += 1;
                let n = self.number(b'e')?;
                Ok(Value::Int(n))
            }
            Some(b'0'..=b'9') => self.bytes().map(Value::Bytes),
            Some(b'l') => {
                let depth = self.nest(depth)?;
                let mut items = Vec::new();
                while self.peek() != Some(b'e') {
                    items.push(self.value(depth)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            Some(b'd') => {
                let depth = self.nest(depth)?;
                let mut entries = Vec::new();
                while self.peek() != Some(b'e') {
                    if !matches!(self.peek(), Some(b'0'..=b'9')) {
                        return Err(self.error("a dictionary key that is not a string"));
                    }
                    let key = self.bytes()?;
                    entries.push((key, self.value(depth)?));
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            Some(_) => Err(self.error("not a bencode value")),
        }
    }

    /// Step into a list or dictionary.
    fn nest(&mut self, depth: usize) -> Result<usize, DecodeError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.pos += 1;
        Ok(depth + 1)
    }

    /// A decimal integer ending at `end` (consumed).
    fn number(&mut self, end: u8) -> Result<i64, DecodeError> {
        let rest = self.input.get(self.pos..).unwrap_or(&[]);
        let Some(len) = rest.iter().position(|&c| c == end) else {
            return Err(self.error("unterminated number"));
        };
        let text = &rest[..len];
        let (negative, digits) = match text.split_first() {
            Some((b'-', digits)) => (true, digits),
            _ => (false, text),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(self.error("not a number"));
        }
        let mut n: i64 = 0;
        for &c in digits {
            n = n
                .checked_mul(10)
                .and_then(|n| {
                    let d = i64::from(c - b'0');
                    if negative {
                        n.checked_sub(d)
                    } else {
                        n.checked_add(d)
                    }
                })
                .ok_or_else(|| self.error("number out of range"))?;
        }
        self.pos += len + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.number(b':')?;
        let start = self.pos;
        let len = usize::try_from(len).map_err(|_| self.error("negative length"))?;
        if len > self.input.len() - start {
            return Err(self.error("string longer than the input"));
        }
        self.pos = start + len;
        Ok(&self.input[start..start + len])
    }
}

/// Append `b` as a bencode byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_decimal(out, b.len() as u64);
    out.push(b':');
    out.extend_from_slice(b);
}

/// Append `i` as a bencode integer.
pub fn put_int(out: &mut Vec<u8>, i: i64) {
    out.push(b'i');
    if i < 0 {
        out.push(b'-');
    }
    put_decimal(out, i.unsigned_abs());
    out.push(b'e');
}

fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(input: &[u8]) {
        let v = decode(input).unwrap();
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out, input, "{}", String::from_utf8_lossy(input));
    }

    #[test]
    fn values() {
        assert_eq!(decode(b"i42e").unwrap(), Value::Int(42));
        assert_eq!(decode(b"i-7e").unwrap(), Value::Int(-7));
        assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
        assert_eq!(decode(b"0:").unwrap(), Value::Bytes(b""));
        assert_eq!(decode(b"4:spam").unwrap(), Value::Bytes(b"spam"));
        assert_eq!(
            decode(b"l4:spami3ee").unwrap(),
            Value::List(vec![Value::Bytes(b"spam"), Value::Int(3)])
        );
        let d = decode(b"d6:result2:ok3:sdp2:v=e").unwrap();
        assert_eq!(d.get("result").and_then(Value::as_str), Some("ok"));
        assert_eq!(d.get("sdp").and_then(Value::as_bytes), Some(&b"v="[..]));
        assert_eq!(d.get("missing"), None);
        assert_eq!(Value::Int(1).get("x"), None);
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap(),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap(),
            Value::Int(i64::MIN)
        );
    }

    #[test]
    fn unsorted_keys_and_binary_strings_are_kept() {
        // rtpengine writes `sdp` before `result`; strings may hold any byte.
        round_trip(b"d3:sdp3:\r\n\x006:result2:oke");
        round_trip(b"d1:bi1e1:ai2e1:bi3ee");
        let d = decode(b"d1:bi1e1:ai2e1:bi3ee").unwrap();
        assert_eq!(
            d.get("b"),
            Some(&Value::Int(1)),
            "the first of a repeated key"
        );
    }

    #[test]
    fn encoding() {
        let mut out = Vec::new();
        put_int(&mut out, 0);
        put_int(&mut out, -120);
        put_int(&mut out, i64::MIN);
        put_bytes(&mut out, b"");
        put_bytes(&mut out, b"abc");
        assert_eq!(out, b"i0ei-120ei-9223372036854775808e0:3:abc");
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"i",
            b"ie",
            b"i-e",
            b"i12",
            b"i1x2e",
            b"i99999999999999999999e",
            b"i-9223372036854775809e",
            b"5:abc",
            b"99999999999999999999999:a",
            b"-1:a",
            b"l",
            b"li1e",
            b"d",
            b"di1ei2ee",
            b"d1:a",
            b"d1:ae",
            b"x",
            b"i1ei2e",
            b"4:spamextra",
            b":",
            b"1",
        ];
        for case in cases {
            assert!(decode(case).is_err(), "{:?}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = [b"l".repeat(MAX_DEPTH), b"e".repeat(MAX_DEPTH)].concat();
        assert!(decode(&ok).is_ok());
        let deep = [b"l".repeat(MAX_DEPTH + 1), b"e".repeat(MAX_DEPTH + 1)].concat();
        assert_eq!(decode(&deep).unwrap_err().reason, "nested too deep");
        // A datagram of nothing but `l`: refused at the bound, no recursion
        // past it.
        let hostile = b"l".repeat(65_000);
        assert_eq!(decode(&hostile).unwrap_err().offset, MAX_DEPTH);
        let hostile = b"d1:a".repeat(20_000);
        assert!(decode(&hostile).is_err());
    }

    #[test]
    fn every_prefix_of_a_real_reply_is_refused() {
        let reply: &[u8] = b"d7:warning38:Call-ID not found or tags didn't match6:result2:oke";
        round_trip(reply);
        for end in 0..reply.len() {
            assert!(decode(&reply[..end]).is_err());
        }
    }
}
