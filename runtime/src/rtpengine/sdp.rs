//! A message's SDP: where it is ([`locate`]) and the message with another
//! SDP in its place ([`replace`]), as `rtp_manage` needs: the offer or
//! answer goes to rtpengine, rtpengine's version goes on in the message.
//!
//! - The SDP is the body when Content-Type is `application/sdp` (any
//!   case, any parameters), or when there is no Content-Type and the body
//!   starts with `v=` (a sloppy sender's SDP is still an SDP).
//! - A `multipart/*` body is handled when it is simple: well formed, with
//!   exactly one `application/sdp` part, no part that is itself multipart,
//!   and no part with a Content-Length of its own (which would need fixing
//!   too); the SDP part's content is replaced and the other parts pass
//!   byte for byte. Other multipart bodies are left alone: [`locate`]
//!   says why ([`Unsupported`]), and `rtp_manage` fails on them rather
//!   than relay media for half a session or send a broken body.
//! - A Content-Encoding other than `identity` (a compressed body) is
//!   [`Unsupported`] too, and so is a Content-Length that does not frame
//!   the body (larger than the datagram) or a repeated one.
//!
//! [`replace`] changes nothing in the headers but the Content-Length
//! value (digits only; one is added when there was none), so nothing from
//! rtpengine reaches a header and no CR or LF is added to one;
//! Content-Type and every other byte of the message stay as they were.
//! Bytes after the message in the datagram (which a receiver ignores) are
//! not copied.

use std::fmt;
use std::ops::Range;

use memchr::memmem;

use crate::sip::{HeaderName, Message};

/// Where a message's SDP is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdp<'a> {
    /// The SDP's bytes in the message buffer (absolute offsets).
    pub range: Range<usize>,
    /// Those bytes.
    pub bytes: &'a [u8],
    /// The boundary of the multipart body the SDP is a part of.
    pub boundary: Option<&'a str>,
}

/// A body `rtp_manage` leaves alone, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub reason: &'static str,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for Unsupported {}

fn unsupported<T>(reason: &'static str) -> Result<T, Unsupported> {
    Err(Unsupported { reason })
}

/// The message's SDP: None when it has none (no body, an empty one, or a
/// body of another type).
pub fn locate<'a>(msg: &Message<'a>) -> Result<Option<Sdp<'a>>, Unsupported> {
    let body = msg.body();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if let Some(h) = msg.find("Content-Encoding").next()
        && !msg.value(h).trim().eq_ignore_ascii_case("identity")
    {
        return unsupported("an encoded (compressed) body");
    }
    let mut lengths = msg.all(HeaderName::ContentLength);
    if let (Some(_), Some(_)) = (lengths.next(), lengths.next()) {
        return unsupported("more than one Content-Length");
    }
    if msg.first(HeaderName::ContentLength).is_some()
        && msg.content_length() != Some(body.len() as u64)
    {
        return unsupported("a Content-Length that does not frame the body");
    }
    let base = msg.body_start();
    let Some(h) = msg.first(HeaderName::ContentType) else {
        return Ok(body.starts_with(b"v=").then_some(Sdp {
            range: base..base + body.len(),
            bytes: body,
            boundary: None,
        }));
    };
    let content_type = msg.value(h);
    let (media, params) = split_media_type(content_type);
    if media.eq_ignore_ascii_case("application/sdp") {
        return Ok(Some(Sdp {
            range: base..base + body.len(),
            bytes: body,
            boundary: None,
        }));
    }
    if !has_prefix_ignore_case(media, "multipart/") {
        return Ok(None);
    }
    let Some(boundary) = param(params, "boundary").filter(|b| !b.is_empty()) else {
        return unsupported("a multipart body without a boundary");
    };
    let part = sdp_part(body, boundary)?;
    Ok(part.map(|r| Sdp {
        range: base + r.start..base + r.end,
        bytes: &body[r],
        boundary: Some(boundary),
    }))
}

/// The message with `new_sdp` in place of the SDP at `sdp` (from
/// [`locate`] on this message) and the Content-Length fixed.
pub fn replace(msg: &Message<'_>, sdp: &Sdp<'_>, new_sdp: &[u8]) -> Result<Vec<u8>, Unsupported> {
    if new_sdp.is_empty() {
        return unsupported("an empty SDP from rtpengine");
    }
    let body_start = msg.body_start();
    let end = msg.len();
    if sdp.range.start < body_start || sdp.range.end > end || sdp.range.start > sdp.range.end {
        return unsupported("the SDP is not in this message's body");
    }
    if let Some(boundary) = sdp.boundary {
        let delimiter = [b"--", boundary.as_bytes()].concat();
        if memmem::find(new_sdp, &delimiter).is_some() {
            return unsupported("rtpengine's SDP holds the multipart boundary");
        }
    }
    let buf = msg.buf();
    let body_len = end - body_start - sdp.range.len() + new_sdp.len();
    let digits = body_len.to_string();
    let mut out = Vec::with_capacity(end + new_sdp.len() + 24);
    match msg.first(HeaderName::ContentLength) {
        Some(h) => {
            out.extend_from_slice(&buf[..h.value_range.start]);
            out.extend_from_slice(digits.as_bytes());
            out.extend_from_slice(&buf[h.value_range.end..sdp.range.start]);
        }
        None => {
            let at = msg.headers_end();
            out.extend_from_slice(&buf[..at]);
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(digits.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&buf[at..sdp.range.start]);
        }
    }
    out.extend_from_slice(new_sdp);
    out.extend_from_slice(&buf[sdp.range.end..end]);
    Ok(out)
}

/// `type/subtype` and the parameters after it (`; a=b; c="d"`).
fn split_media_type(value: &str) -> (&str, &str) {
    match value.split_once(';') {
        Some((media, params)) => (media.trim(), params),
        None => (value.trim(), ""),
    }
}

fn has_prefix_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The value of parameter `name` in `; a=b; name="v"` (quotes removed).
fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = params;
    loop {
        rest = rest
            .trim_start()
            .strip_prefix(';')
            .unwrap_or(rest)
            .trim_start();
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find(['=', ';']).unwrap_or(rest.len());
        let key = rest[..eq].trim();
        let after = &rest[eq..];
        let (value, next) = match after.strip_prefix('=') {
            None => ("", after),
            Some(v) => {
                let v = v.trim_start();
                if let Some(quoted) = v.strip_prefix('"') {
                    let close = quoted.find('"')?;
                    (&quoted[..close], &quoted[close + 1..])
                } else {
                    let stop = v.find(';').unwrap_or(v.len());
                    (v[..stop].trim_end(), &v[stop..])
                }
            }
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        if next.len() == rest.len() {
            return None;
        }
        rest = next;
    }
}

/// The content range (within `body`) of the one `application/sdp` part
/// of a simple multipart body (RFC 2046 §5.1.1).
fn sdp_part(body: &[u8], boundary: &str) -> Result<Option<Range<usize>>, Unsupported> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    // Where each delimiter line starts: at the very start of the body or
    // right after a line break (the line break before a delimiter belongs
    // to it, not to the part before).
    let mut at = next_delimiter(body, &delimiter, 0);
    let mut found: Option<Range<usize>> = None;
    loop {
        let Some((line_start, _)) = at else {
            return unsupported("a multipart body without its closing boundary");
        };
        let after = line_start + delimiter.len();
        if body[after..].starts_with(b"--") {
            return Ok(found);
        }
        // The rest of the delimiter line (transport padding) and its end.
        let Some(nl) = memchr::memchr(b'\n', &body[after..]) else {
            return unsupported("a multipart body without its closing boundary");
        };
        let part_start = after + nl + 1;
        let next = next_delimiter(body, &delimiter, part_start);
        let Some((_, part_end)) = next else {
            return unsupported("a multipart body without its closing boundary");
        };
        let part = &body[part_start..part_end.max(part_start)];
        let (headers, content) = split_part(part);
        let mut is_sdp = false;
        for line in headers.split(|&c| c == b'\n') {
            let line = std::str::from_utf8(line).unwrap_or("").trim();
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            let value = value.trim();
            if crate::sip::names_equal(name, "Content-Type") {
                let (media, _) = split_media_type(value);
                if has_prefix_ignore_case(media, "multipart/") {
                    return unsupported("a multipart body inside a multipart body");
                }
                is_sdp = media.eq_ignore_ascii_case("application/sdp");
            } else if crate::sip::names_equal(name, "Content-Length") {
                return unsupported("a multipart part with a Content-Length of its own");
            } else if name.eq_ignore_ascii_case("Content-Transfer-Encoding")
                && !["7bit", "8bit", "binary"]
                    .iter()
                    .any(|e| value.eq_ignore_ascii_case(e))
            {
                return unsupported("a multipart part in a transfer encoding");
            }
        }
        if is_sdp {
            if found.is_some() {
                return unsupported("more than one SDP part");
            }
            let start = part_start + (part.len() - content.len());
            found = Some(start..start + content.len());
        }
        at = next;
    }
}

/// The next delimiter line at or after `from`: (where the delimiter
/// starts, where the content before it ends: before its line break).
fn next_delimiter(body: &[u8], delimiter: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut search = from;
    loop {
        let i = search + memmem::find(body.get(search..)?, delimiter)?;
        if i == 0 {
            return Some((0, 0));
        }
        if body[i - 1] == b'\n' {
            let end = if i >= 2 && body[i - 2] == b'\r' {
                i - 2
            } else {
                i - 1
            };
            return Some((i, end));
        }
        search = i + 1;
    }
}

/// A part's header lines and its content (after the empty line; a part
/// that starts with the empty line has no headers).
fn split_part(part: &[u8]) -> (&[u8], &[u8]) {
    if let Some(content) = part.strip_prefix(b"\r\n") {
        return (&[], content);
    }
    if let Some(content) = part.strip_prefix(b"\n") {
        return (&[], content);
    }
    if let Some(i) = memmem::find(part, b"\r\n\r\n") {
        return (&part[..i], &part[i + 4..]);
    }
    if let Some(i) = memmem::find(part, b"\n\n") {
        return (&part[..i], &part[i + 2..]);
    }
    (part, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    const NEW: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtcp:40001\r\n";

    fn invite(headers: &str, body: &str) -> Vec<u8> {
        format!(
            "INVITE sip:b@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             From: <sip:a@example.com>;tag=a\r\nTo: <sip:b@example.com>\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\n{headers}\r\n{body}"
        )
        .into_bytes()
    }

    fn with_length(content_type: &str, body: &str) -> Vec<u8> {
        invite(
            &format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            ),
            body,
        )
    }

    /// Locate the SDP, put NEW in, and check the result frames right.
    fn swap(buf: &[u8]) -> Vec<u8> {
        let msg = Message::parse(buf).unwrap();
        let sdp = locate(&msg).unwrap().expect("an SDP");
        let out = replace(&msg, &sdp, NEW.as_bytes()).unwrap();
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.content_length(), Some(m.body().len() as u64));
        assert_eq!(m.len(), out.len());
        out
    }

    #[test]
    fn plain_sdp_body_is_replaced_and_framed() {
        let buf = with_length("application/sdp", SDP);
        let out = swap(&buf);
        assert_eq!(out, with_length("application/sdp", NEW));
    }

    #[test]
    fn content_type_case_and_parameters() {
        for ct in [
            "Application/SDP",
            "application/sdp; charset=utf-8",
            " application/sdp ;x",
        ] {
            let buf = with_length(ct, SDP);
            let msg = Message::parse(&buf).unwrap();
            assert!(locate(&msg).unwrap().is_some(), "{ct}");
        }
        let buf = with_length("text/plain", SDP);
        assert_eq!(locate(&Message::parse(&buf).unwrap()), Ok(None));
    }

    #[test]
    fn compact_length_and_type() {
        let buf = invite(&format!("c: application/sdp\r\nl: {}\r\n", SDP.len()), SDP);
        let out = swap(&buf);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&format!("\r\nl: {}\r\n", NEW.len())),
            "{text}"
        );
        assert!(text.contains("\r\nc: application/sdp\r\n"));
    }

    #[test]
    fn a_missing_content_length_is_added() {
        let buf = invite("Content-Type: application/sdp\r\n", SDP);
        let out = swap(&buf);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&format!("Content-Length: {}\r\n\r\nv=0", NEW.len())),
            "{text}"
        );
    }

    #[test]
    fn no_content_type_is_sdp_only_when_it_looks_like_it() {
        let buf = invite(&format!("Content-Length: {}\r\n", SDP.len()), SDP);
        swap(&buf);
        let buf = invite("Content-Length: 5\r\n", "hello");
        assert_eq!(locate(&Message::parse(&buf).unwrap()), Ok(None));
    }

    #[test]
    fn no_body() {
        for buf in [
            invite("Content-Length: 0\r\n", ""),
            invite("", ""),
            with_length("application/sdp", "\r\n  \r\n"),
        ] {
            assert_eq!(locate(&Message::parse(&buf).unwrap()), Ok(None));
        }
    }

    #[test]
    fn bytes_after_the_message_are_dropped_and_the_start_kept() {
        let mut buf = b"\r\n".to_vec();
        buf.extend(with_length("application/sdp", SDP));
        buf.extend_from_slice(b"garbage");
        let out = swap(&buf);
        assert!(out.starts_with(b"\r\nINVITE "));
        assert!(out.ends_with(NEW.as_bytes()));
    }

    #[test]
    fn refused_bodies() {
        let cases = [
            (
                invite(
                    &format!(
                        "Content-Type: application/sdp\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n",
                        SDP.len()
                    ),
                    SDP,
                ),
                "an encoded (compressed) body",
            ),
            (
                invite(
                    "Content-Type: application/sdp\r\nContent-Length: 9999\r\n",
                    SDP,
                ),
                "a Content-Length that does not frame the body",
            ),
            (
                invite(
                    &format!(
                        "Content-Type: application/sdp\r\nContent-Length: {0}\r\nl: {0}\r\n",
                        SDP.len()
                    ),
                    SDP,
                ),
                "more than one Content-Length",
            ),
            (
                with_length("multipart/mixed", SDP),
                "a multipart body without a boundary",
            ),
        ];
        for (buf, reason) in cases {
            let msg = Message::parse(&buf).unwrap();
            assert_eq!(locate(&msg), Err(Unsupported { reason }));
        }
        let buf = with_length("application/sdp", SDP);
        let msg = Message::parse(&buf).unwrap();
        let sdp = locate(&msg).unwrap().unwrap();
        assert!(replace(&msg, &sdp, b"").is_err());
        let elsewhere = Sdp {
            range: 0..3,
            bytes: b"INV",
            boundary: None,
        };
        assert!(replace(&msg, &elsewhere, NEW.as_bytes()).is_err());
    }

    fn multipart(parts: &[(&str, &str)], boundary: &str) -> String {
        let mut body = String::new();
        for (headers, content) in parts {
            body.push_str(&format!("--{boundary}\r\n{headers}\r\n{content}\r\n"));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        body
    }

    #[test]
    fn simple_multipart_replaces_only_the_sdp_part() {
        let isup = "\x01\x02isup\r\nbinary";
        let body = multipart(
            &[
                ("Content-Type: application/sdp\r\n", SDP),
                (
                    "Content-Type: application/isup;version=itu-t92+\r\nContent-Disposition: signal;handling=optional\r\n",
                    isup,
                ),
            ],
            "unique-boundary-1",
        );
        let buf = with_length("multipart/mixed;boundary=\"unique-boundary-1\"", &body);
        let out = swap(&buf);
        let want = multipart(
            &[
                ("Content-Type: application/sdp\r\n", NEW),
                (
                    "Content-Type: application/isup;version=itu-t92+\r\nContent-Disposition: signal;handling=optional\r\n",
                    isup,
                ),
            ],
            "unique-boundary-1",
        );
        assert_eq!(
            out,
            with_length("multipart/mixed;boundary=\"unique-boundary-1\"", &want)
        );
    }

    #[test]
    fn multipart_with_a_preamble_and_the_sdp_last() {
        let body = format!(
            "This is a preamble\r\n{}",
            multipart(
                &[
                    ("", "no headers: text/plain"),
                    ("content-type: Application/SDP\r\n", SDP),
                ],
                "b1"
            )
        );
        let buf = with_length("Multipart/Mixed; boundary=b1", &body);
        let out = swap(&buf);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&format!("\r\n\r\n{NEW}\r\n--b1--\r\n")),
            "{text}"
        );
        assert!(
            text.contains("This is a preamble\r\n--b1\r\n\r\nno headers: text/plain\r\n--b1\r\n")
        );
    }

    #[test]
    fn multipart_without_sdp_is_no_sdp() {
        let body = multipart(&[("Content-Type: text/plain\r\n", "hi")], "b");
        let buf = with_length("multipart/mixed;boundary=b", &body);
        assert_eq!(locate(&Message::parse(&buf).unwrap()), Ok(None));
    }

    #[test]
    fn multipart_that_is_not_simple_is_refused() {
        let sdp_part = ("Content-Type: application/sdp\r\n", SDP);
        let cases = [
            (
                multipart(&[sdp_part, sdp_part], "b"),
                "more than one SDP part",
            ),
            (
                multipart(
                    &[
                        (
                            "Content-Type: multipart/alternative;boundary=c\r\n",
                            "--c--",
                        ),
                        sdp_part,
                    ],
                    "b",
                ),
                "a multipart body inside a multipart body",
            ),
            (
                multipart(
                    &[(
                        "Content-Type: application/sdp\r\nContent-Length: 10\r\n",
                        SDP,
                    )],
                    "b",
                ),
                "a multipart part with a Content-Length of its own",
            ),
            (
                multipart(
                    &[(
                        "Content-Type: application/sdp\r\nContent-Transfer-Encoding: base64\r\n",
                        "dj0w",
                    )],
                    "b",
                ),
                "a multipart part in a transfer encoding",
            ),
            (
                format!("--b\r\nContent-Type: application/sdp\r\n\r\n{SDP}"),
                "a multipart body without its closing boundary",
            ),
            (
                "no delimiter at all".to_string(),
                "a multipart body without its closing boundary",
            ),
        ];
        for (body, reason) in cases {
            let buf = with_length("multipart/mixed;boundary=b", &body);
            let msg = Message::parse(&buf).unwrap();
            assert_eq!(locate(&msg), Err(Unsupported { reason }), "{body}");
        }
    }

    #[test]
    fn rtpengine_sdp_holding_the_boundary_is_refused() {
        let body = multipart(&[("Content-Type: application/sdp\r\n", SDP)], "b");
        let buf = with_length("multipart/mixed;boundary=b", &body);
        let msg = Message::parse(&buf).unwrap();
        let sdp = locate(&msg).unwrap().unwrap();
        assert_eq!(&buf[sdp.range.clone()], SDP.as_bytes());
        assert!(replace(&msg, &sdp, b"v=0\r\na=x--b\r\n").is_err());
        assert!(replace(&msg, &sdp, NEW.as_bytes()).is_ok());
    }

    #[test]
    fn parameters() {
        assert_eq!(param("; boundary=abc", "boundary"), Some("abc"));
        assert_eq!(
            param(";charset=x; Boundary=\"a;b\" ;z", "boundary"),
            Some("a;b")
        );
        assert_eq!(param(";flag;boundary = q ", "boundary"), Some("q"));
        assert_eq!(param("", "boundary"), None);
        assert_eq!(param(";boundary=\"unterminated", "boundary"), None);
        assert_eq!(param(";a=1", "boundary"), None);
    }
}
