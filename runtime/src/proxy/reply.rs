//! Replies the proxy builds itself, statelessly (RFC 3261 §8.2.6, §16.3):
//! Via, From, To (with a tag added), Call-ID and CSeq copied from the
//! request, our own headers, no body.

use std::net::SocketAddr;

use super::branch::stateless_to_tag;
use super::received::{reply_destination, top_via_edit};
use crate::sip::{HeaderName, Message};

/// Build a reply to `req` into `out`; returns where to send it, or None
/// when the request has no Via we can answer to.
pub fn build(
    req: &Message<'_>,
    source: SocketAddr,
    transport: crate::transport::Transport,
    code: u16,
    reason: Option<&str>,
    extra_headers: &[u8],
    out: &mut Vec<u8>,
) -> Option<SocketAddr> {
    let top = req.top_via()?;
    let edit = top_via_edit(&top, source, transport);
    let buf = req.buf();
    out.extend_from_slice(b"SIP/2.0 ");
    let mut digits = [0u8; 10];
    out.extend_from_slice(crate::digits::decimal(u32::from(code), &mut digits));
    out.push(b' ');
    out.extend_from_slice(reason.unwrap_or_else(|| default_reason(code)).as_bytes());
    out.extend_from_slice(b"\r\n");
    // Without a bare CR in the head (the parse knows), the lines are
    // copied as they are; push_line only replaces bare CRs.
    let push_line = |out: &mut Vec<u8>, bytes: &[u8]| {
        if req.has_bare_cr() {
            push_line(out, bytes);
        } else {
            out.extend_from_slice(bytes);
        }
    };
    let mut first_via = true;
    for h in req.headers() {
        let line = buf.get(h.line_range.clone())?;
        match h.name {
            HeaderName::Via if first_via => {
                first_via = false;
                match &edit {
                    Some(e) => {
                        // Written straight into `out`; through push_line
                        // only when the line has a bare CR to replace.
                        let start = out.len();
                        e.write_line(buf, h.line_range.clone(), out);
                        let written = &out[start..];
                        if req.has_bare_cr()
                            && memchr::memchr_iter(b'\r', written)
                                .any(|i| written.get(i + 1) != Some(&b'\n'))
                        {
                            let via = out.split_off(start);
                            push_line(out, &via);
                        }
                    }
                    None => push_line(out, line),
                }
            }
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                push_line(out, line)
            }
            HeaderName::To => {
                let has_tag = req.to().is_some_and(|to| to.tag.is_some());
                if has_tag || code == 100 {
                    push_line(out, line);
                } else {
                    push_line(out, &buf[h.line_range.start..h.value_range.end]);
                    let mut tag = String::with_capacity(24);
                    stateless_to_tag(req, &mut tag);
                    out.extend_from_slice(b";tag=");
                    out.extend_from_slice(tag.as_bytes());
                    push_line(out, &buf[h.value_range.end..h.line_range.end]);
                }
            }
            _ => {}
        }
        // a header block ending without a final line break
        if !out.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Server: sipforge\r\n");
    out.extend_from_slice(extra_headers);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(reply_destination(&top, source, transport))
}

/// Appends header bytes copied from the request, a CR that is not part of
/// a CRLF written as a space: the 400 that refuses a bare CR
/// (`validate`) copies the request's Via, From, To, Call-ID and CSeq
/// lines, and must not carry the bare CR back (CRLF framing, RFC 3261 §7).
fn push_line(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes;
    while let Some(i) = memchr::memchr(b'\r', rest) {
        out.extend_from_slice(&rest[..i]);
        out.push(if rest.get(i + 1) == Some(&b'\n') {
            b'\r'
        } else {
            b' '
        });
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// The reason phrase RFC 3261 §21 (and later RFCs) give a status code.
/// (rsip's `StatusCode` prints Rust identifiers such as `NotFound`, which
/// are not reason phrases, so the table is ours.)
pub fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match code / 100 {
            1 => "Trying",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}
