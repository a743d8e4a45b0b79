//! Stateless branch and tag derivation (RFC 3261 §16.11, §8.2.6.2).
//!
//! A stateless proxy keeps no record of what it sent, so the Via branch it
//! adds must be a function of the request: a retransmission gets the same
//! branch, and a CANCEL or a non-2xx ACK gets the branch of the INVITE it
//! belongs to. With an RFC 3261 branch upstream (magic cookie) we hash that
//! branch and the sent-by; for RFC 2543 requests we hash what the INVITE, its
//! CANCEL and its ACK share: Call-ID, From tag, CSeq number, Request-URI and
//! the top Via.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::sip::Message;

/// The RFC 3261 magic cookie every branch starts with.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The branch prefix that marks a branch as ours.
pub const OUR_PREFIX: &str = "z9hG4bKsf";

/// The branch for a request forwarded statelessly, written after `out`.
pub fn stateless_branch(msg: &Message<'_>, out: &mut String) {
    let mut h = DefaultHasher::new();
    match msg.top_via() {
        Some(via) if via.has_magic_cookie() => {
            via.branch.hash(&mut h);
            via.host.to_ascii_lowercase().hash(&mut h);
            via.port.hash(&mut h);
        }
        top => {
            if let Some(via) = top {
                msg.buf().get(via.range.clone()).hash(&mut h);
            }
            msg.call_id().hash(&mut h);
            msg.from().and_then(|f| f.tag).hash(&mut h);
            msg.cseq().map(|(n, _)| n).hash(&mut h);
            msg.request_uri().hash(&mut h);
        }
    }
    out.push_str(OUR_PREFIX);
    push_hex(out, h.finish());
}

/// A To tag for a reply the proxy generates itself: the same for every
/// retransmission of the request.
pub fn stateless_to_tag(msg: &Message<'_>, out: &mut String) {
    let mut h = DefaultHasher::new();
    "to-tag".hash(&mut h);
    msg.call_id().hash(&mut h);
    msg.from().and_then(|f| f.tag).hash(&mut h);
    msg.top_via().and_then(|v| v.branch).hash(&mut h);
    msg.cseq().map(|(n, _)| n).hash(&mut h);
    out.push_str("sf");
    push_hex(out, h.finish());
}

fn push_hex(out: &mut String, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}
