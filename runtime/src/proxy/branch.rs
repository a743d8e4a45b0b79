//! Our Via branches (RFC 3261 §16.6 step 8, §16.11, §8.2.6.2): what they
//! carry and how a response or a looping request is checked against them.
//!
//! A stateless proxy keeps no record of what it sent, so the branch it
//! adds must be a function of the request: a retransmission gets the same
//! branch, and a CANCEL or a non-2xx ACK gets the branch of the INVITE it
//! belongs to. With an RFC 3261 branch upstream (magic cookie) we hash that
//! branch and the sent-by; for RFC 2543 requests we hash what the INVITE, its
//! CANCEL and its ACK share: Call-ID, From tag, CSeq number, Request-URI and
//! the top Via.
//!
//! Every branch of ours also carries:
//! - a **loop key** (§16.3 step 4): a hash of what a looping request keeps
//!   and a spiral changes (Request-URI, Call-ID, From, CSeq number,
//!   the next Route; not the To tag, so the ACK of a non-2xx keeps the
//!   INVITE's branch). A request that comes back with a Via of ours whose loop
//!   key equals the one it would get now has looped: 482.
//! - the **instance tag** of the process that made it (rollouts, see
//!   `net::sibling`);
//! - a **check**: a keyed hash (SipHash under a random per-process key)
//!   that nobody without the key can compute. Stateless branches check the
//!   address their responses go back to, so a forged response cannot be
//!   reflected anywhere else; stateful ones check the transaction slot and
//!   branch number, so they cannot be guessed.
//!
//! Stateless: `z9hG4bKsf` + 16 hex (request) + 8 hex (loop key) + 8 hex
//! (instance) + 12 hex (check), 53 characters. Stateful (`stateful.rs`):
//! `z9hG4bKsfT<shard>.<slot>.<generation>.<n>.<instance>.<loop key><check>`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;

use super::identity::Identity;
use crate::hashbuf::Buffered;
use crate::sip::{HeaderName, Message};

/// The RFC 3261 magic cookie every branch starts with.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The branch prefix that marks a branch as ours.
pub const OUR_PREFIX: &str = "z9hG4bKsf";

/// Stateful branches (`stateful.rs`) and health probes (`probe.rs`) start
/// with `OUR_PREFIX` then this letter; stateless ones continue in hex.
const STATEFUL_LETTER: u8 = b'T';

/// Hex digits of each stateless field.
const REQUEST_HEX: usize = 16;
const LOOP_HEX: usize = 8;
const INSTANCE_HEX: usize = 8;
const CHECK_HEX: usize = 12;
const STATELESS_LEN: usize = OUR_PREFIX.len() + REQUEST_HEX + LOOP_HEX + INSTANCE_HEX + CHECK_HEX;

/// The loop key of a request (§16.3 step 4, §16.6 step 8): a hash of the
/// fields a looping request keeps and a spiral changes. `route_next` is
/// the first Route entry left after ours were removed. Deterministic (not
/// keyed), so instances sharing a port recognise each other's branches.
pub fn loop_key(msg: &Message<'_>, route_next: Option<&str>) -> u32 {
    // The From header as written (not parsed: a request and its CANCEL
    // carry the same one), the CSeq number without the method.
    let mut h = Buffered::new(DefaultHasher::new());
    msg.request_uri().hash(&mut h);
    msg.call_id().hash(&mut h);
    msg.first(HeaderName::From)
        .map(|f| msg.value(f))
        .hash(&mut h);
    msg.cseq().map(|(n, _)| n).hash(&mut h);
    route_next.hash(&mut h);
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

/// Whether `msg` carries a Via of ours whose loop key is `key`: the request
/// went through this proxy before unchanged, so it is looping (482).
/// Costs one substring search when no branch of ours is in the message.
pub fn has_looped(msg: &Message<'_>, identity: &Identity, key: u32) -> bool {
    has_looped_with(msg, identity, || key)
}

/// [`has_looped`] with the loop key computed only when the message holds
/// a branch of ours (most requests answered here never need the key).
pub fn has_looped_with(msg: &Message<'_>, identity: &Identity, key: impl FnOnce() -> u32) -> bool {
    // The searcher is built once: `memmem::find` builds one per call
    // (~400 instructions, more than the search).
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(OUR_PREFIX.as_bytes()));
    // Only the header section can hold a Via (the body is not searched).
    let head = msg.buf().get(..msg.headers_end()).unwrap_or(msg.buf());
    if FINDER.find(head).is_none() {
        return false;
    }
    let key = key();
    msg.vias().any(|via| {
        via.branch.and_then(loop_key_of) == Some(key) && identity.is_us(via.host, via.port)
    })
}

/// The loop key carried in one of our branches, stateless or stateful.
pub fn loop_key_of(branch: &str) -> Option<u32> {
    let rest = branch.strip_prefix(OUR_PREFIX)?;
    if rest.as_bytes().first() == Some(&STATEFUL_LETTER) {
        let last = rest.rsplit('.').next()?;
        return parse_hex(last.as_bytes().get(..LOOP_HEX)?, u64::from(u32::MAX)).map(|v| v as u32);
    }
    if branch.len() != STATELESS_LEN {
        return None;
    }
    let digits = rest.as_bytes().get(REQUEST_HEX..REQUEST_HEX + LOOP_HEX)?;
    parse_hex(digits, u64::from(u32::MAX)).map(|v| v as u32)
}

/// The instance tag of a branch of any sipforge process, stateless or
/// stateful (probes carry none).
pub fn branch_instance(branch: &str) -> Option<u32> {
    let rest = branch.strip_prefix(OUR_PREFIX)?;
    if let Some(stateful) = rest.strip_prefix(STATEFUL_LETTER as char) {
        let tag = stateful.split('.').nth(4)?;
        return u32::from_str_radix(tag, 16).ok();
    }
    if branch.len() != STATELESS_LEN {
        return None;
    }
    let at = REQUEST_HEX + LOOP_HEX;
    u32::from_str_radix(rest.get(at..at + INSTANCE_HEX)?, 16).ok()
}

/// The branch for a request forwarded statelessly, written after `out`.
/// `responses_to` is where responses to the request go (§18.2.2 with
/// `received`/`rport` as we record them): the check binds the branch to it.
pub fn stateless_branch(
    msg: &Message<'_>,
    identity: &Identity,
    loop_key: u32,
    responses_to: SocketAddr,
    out: &mut String,
) {
    let mut h = Buffered::new(DefaultHasher::new());
    match msg.top_via() {
        Some(via) if via.has_magic_cookie() => {
            via.branch.hash(&mut h);
            // Lowercased only when it has capitals (no String otherwise).
            if via.host.bytes().any(|b| b.is_ascii_uppercase()) {
                via.host.to_ascii_lowercase().hash(&mut h);
            } else {
                via.host.hash(&mut h);
            }
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
    let request = h.finish();
    let instance = identity.instance();
    let check = stateless_check(identity, request, loop_key, instance, responses_to);
    out.reserve(STATELESS_LEN);
    out.push_str(OUR_PREFIX);
    push_hex(out, request, REQUEST_HEX);
    push_hex(out, u64::from(loop_key), LOOP_HEX);
    push_hex(out, u64::from(instance), INSTANCE_HEX);
    push_hex(out, check, CHECK_HEX);
}

fn stateless_check(
    identity: &Identity,
    request: u64,
    loop_key: u32,
    instance: u32,
    responses_to: SocketAddr,
) -> u64 {
    identity.mac(("stateless", request, loop_key, instance, responses_to))
}

/// What a response carrying a stateless branch of ours is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatelessCheck {
    /// Made by this process for a request whose responses go to `to`.
    Valid,
    /// Made by another instance (its tag): only it can check it.
    Foreign(u32),
    /// Not a branch we made for that destination: forged or altered.
    Invalid,
}

/// Check a stateless branch of ours against the address the response
/// would be forwarded to (its second Via, `received`/`rport` applied).
pub fn check_stateless(branch: &str, identity: &Identity, to: SocketAddr) -> StatelessCheck {
    let Some(rest) = branch.strip_prefix(OUR_PREFIX) else {
        return StatelessCheck::Invalid;
    };
    // Every byte a hex digit (checked by parse_hex as the fields are read:
    // they cover the whole rest).
    if branch.len() != STATELESS_LEN {
        return StatelessCheck::Invalid;
    }
    let rest = rest.as_bytes();
    let field = |at: usize, len: usize| match rest.get(at..at + len) {
        Some(digits @ [b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F', ..]) => parse_hex(digits, u64::MAX),
        _ => None,
    };
    let (Some(request), Some(loop_key), Some(instance), Some(check)) = (
        field(0, REQUEST_HEX),
        field(REQUEST_HEX, LOOP_HEX),
        field(REQUEST_HEX + LOOP_HEX, INSTANCE_HEX),
        field(REQUEST_HEX + LOOP_HEX + INSTANCE_HEX, CHECK_HEX),
    ) else {
        return StatelessCheck::Invalid;
    };
    let instance = instance as u32;
    let expected = stateless_check(identity, request, loop_key as u32, instance, to);
    if truncate(expected, CHECK_HEX) == check {
        // Ours, or made by an instance sharing our secret (`--secret-file`).
        StatelessCheck::Valid
    } else if instance != identity.instance() {
        StatelessCheck::Foreign(instance)
    } else {
        StatelessCheck::Invalid
    }
}

/// The check part of a stateful branch: a keyed hash of its slot,
/// generation, branch number and the address responses go back to
/// upstream (48 bits, 12 hex digits).
pub fn stateful_check(
    identity: &Identity,
    shard: u16,
    index: u32,
    generation: u32,
    n: usize,
    upstream: SocketAddr,
) -> u64 {
    truncate(
        identity.mac(("stateful", shard, index, generation, n, upstream)),
        CHECK_HEX,
    )
}

/// Digits of the check in a stateful branch.
pub const STATEFUL_CHECK_HEX: usize = CHECK_HEX;
/// Digits of the loop key in a stateful branch.
pub const STATEFUL_LOOP_HEX: usize = LOOP_HEX;

/// A To tag for a reply the proxy generates itself: the same for every
/// retransmission of the request.
pub fn stateless_to_tag(msg: &Message<'_>, out: &mut String) {
    let mut h = Buffered::new(DefaultHasher::new());
    "to-tag".hash(&mut h);
    msg.call_id().hash(&mut h);
    msg.from().and_then(|f| f.tag).hash(&mut h);
    msg.top_via().and_then(|v| v.branch).hash(&mut h);
    msg.cseq().map(|(n, _)| n).hash(&mut h);
    out.push_str("sf");
    push_hex(out, h.finish(), 16);
}

fn truncate(v: u64, digits: usize) -> u64 {
    if digits >= 16 {
        v
    } else {
        v & ((1u64 << (digits * 4)) - 1)
    }
}

/// `s` read as an unsigned hexadecimal number no greater than `max`,
/// exactly as `from_str_radix(s, 16)` reads it into an integer type whose
/// maximum is `max` (one leading `+` allowed, no empty digits, overflow
/// refused), without its generic per-digit work.
pub fn parse_hex(s: &[u8], max: u64) -> Option<u64> {
    let digits = match s {
        [b'+', rest @ ..] if !rest.is_empty() => rest,
        _ => s,
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    if digits.len() <= 16 {
        // Sixteen digits fit in a u64: no overflow to check per digit.
        for &b in digits {
            let d = HEX_VALUE[usize::from(b)];
            if d > 15 {
                return None;
            }
            v = v << 4 | u64::from(d);
        }
    } else {
        for &b in digits {
            let d = HEX_VALUE[usize::from(b)];
            if d > 15 {
                return None;
            }
            v = v.checked_mul(16)?.checked_add(u64::from(d))?;
        }
    }
    (v <= max).then_some(v)
}

/// The value of each byte as a hex digit, 0xff when it is none.
static HEX_VALUE: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0xff,
        };
        i += 1;
    }
    t
};

/// `v`'s low `digits` hex digits, zero-padded, most significant first.
pub fn push_hex(out: &mut String, v: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::identity::Listener;

    fn identity() -> Identity {
        Identity::new(vec![
            Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap(),
        ])
    }

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKabc;rport\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn stateless_branch_fields_round_trip_and_check_the_destination() {
        let id = identity();
        let msg = Message::parse(INVITE).unwrap();
        let key = loop_key(&msg, None);
        let to: SocketAddr = "192.0.2.1:5070".parse().unwrap();
        let mut b = String::new();
        stateless_branch(&msg, &id, key, to, &mut b);
        assert_eq!(b.len(), STATELESS_LEN);
        assert!(b.starts_with(OUR_PREFIX));
        assert_eq!(loop_key_of(&b), Some(key));
        assert_eq!(branch_instance(&b), Some(id.instance()));
        assert_eq!(check_stateless(&b, &id, to), StatelessCheck::Valid);
        // Reflection elsewhere: the check fails.
        let elsewhere: SocketAddr = "203.0.113.9:5060".parse().unwrap();
        assert_eq!(check_stateless(&b, &id, elsewhere), StatelessCheck::Invalid);
        // Another process's key: not ours to check, it is passed on...
        let other = identity();
        assert_eq!(
            check_stateless(&b, &other, to),
            StatelessCheck::Foreign(id.instance())
        );
        // ...unless the two share a secret.
        let l = || vec![Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap()];
        let (a, b2) = (
            Identity::with_secret(l(), b"a pool secret, 16+ bytes"),
            Identity::with_secret(l(), b"a pool secret, 16+ bytes"),
        );
        let mut made = String::new();
        stateless_branch(&msg, &a, key, to, &mut made);
        assert_eq!(check_stateless(&made, &b2, to), StatelessCheck::Valid);
        assert_ne!(
            check_stateless(&made, &b2, elsewhere),
            StatelessCheck::Valid
        );
        // Same request, same branch (retransmissions, CANCEL).
        let mut again = String::new();
        stateless_branch(&msg, &id, key, to, &mut again);
        assert_eq!(b, again);
        // A flipped check digit, a short branch, a non-hex one: invalid.
        let mut forged = b.clone();
        let last = if forged.ends_with('0') { "1" } else { "0" };
        forged.replace_range(forged.len() - 1.., last);
        assert_eq!(check_stateless(&forged, &id, to), StatelessCheck::Invalid);
        assert_eq!(
            check_stateless(&b[..b.len() - 1], &id, to),
            StatelessCheck::Invalid
        );
        let mut bad = b.clone();
        bad.replace_range(20..21, "x");
        assert_eq!(check_stateless(&bad, &id, to), StatelessCheck::Invalid);
    }

    #[test]
    fn loop_key_follows_what_a_spiral_changes() {
        let msg = Message::parse(INVITE).unwrap();
        let base = loop_key(&msg, None);
        assert_eq!(base, loop_key(&msg, None));
        assert_ne!(base, loop_key(&msg, Some("sip:as.example.com;lr")));
        let other_ruri =
            String::from_utf8_lossy(INVITE).replace("INVITE sip:bob@", "INVITE sip:carol@");
        let spiral = Message::parse(other_ruri.as_bytes()).unwrap();
        assert_ne!(base, loop_key(&spiral, None));
    }

    #[test]
    fn parse_hex_reads_as_from_str_radix() {
        let cases = [
            "",
            "+",
            "-",
            "0",
            "+0",
            "-0",
            "f",
            "F",
            "g",
            "+f",
            "++f",
            "0f",
            "ffff",
            "10000",
            "ffffffff",
            "100000000",
            "7fffffffffffffff",
            "ffffffffffffffff",
            "10000000000000000",
            "0000000000000000ff",
            "0000000000000000000001",
            "abc ",
            " abc",
            "a.b",
            "\u{e9}",
            "FfFf",
        ];
        for c in cases {
            let b = c.as_bytes();
            assert_eq!(
                parse_hex(b, u64::MAX),
                u64::from_str_radix(c, 16).ok(),
                "{c:?}"
            );
            assert_eq!(
                parse_hex(b, u64::from(u32::MAX)),
                u32::from_str_radix(c, 16).ok().map(u64::from),
                "{c:?}"
            );
            assert_eq!(
                parse_hex(b, u64::from(u16::MAX)),
                u16::from_str_radix(c, 16).ok().map(u64::from),
                "{c:?}"
            );
        }
        for byte in 0..=255u8 {
            let v = [b'1', byte];
            let text = String::from_utf8_lossy(&v).into_owned();
            let want = std::str::from_utf8(&v)
                .ok()
                .and_then(|t| u64::from_str_radix(t, 16).ok());
            assert_eq!(parse_hex(&v, u64::MAX), want, "{text:?}");
        }
    }

    #[test]
    fn stateful_branches_give_their_parts() {
        let b = "z9hG4bKsfT3.1f.2.0.abcdef01.0000beef123456789abc";
        assert_eq!(branch_instance(b), Some(0xabcdef01));
        assert_eq!(loop_key_of(b), Some(0x0000beef));
        assert_eq!(loop_key_of("z9hG4bKsfP12"), None);
        assert_eq!(branch_instance("z9hG4bKother"), None);
    }

    #[test]
    fn has_looped_needs_our_host_and_the_same_key() {
        let id = identity();
        let msg = Message::parse(INVITE).unwrap();
        let key = loop_key(&msg, None);
        let mut b = String::new();
        stateless_branch(&msg, &id, key, "192.0.2.1:5070".parse().unwrap(), &mut b);
        let text = String::from_utf8_lossy(INVITE);
        let looped = text.replacen(
            "Via: ",
            &format!("Via: SIP/2.0/UDP 127.0.0.1:5060;branch={b}\r\nVia: "),
            1,
        );
        let m = Message::parse(looped.as_bytes()).unwrap();
        assert!(has_looped(&m, &id, loop_key(&m, None)));
        // A spiral: another Request-URI, another key.
        let spiral = looped.replace("INVITE sip:bob@", "INVITE sip:carol@");
        let m = Message::parse(spiral.as_bytes()).unwrap();
        assert!(!has_looped(&m, &id, loop_key(&m, None)));
        // Our branch in a Via that names someone else: not our Via.
        let foreign = looped.replace("127.0.0.1:5060;branch", "127.0.0.9:5060;branch");
        let m = Message::parse(foreign.as_bytes()).unwrap();
        assert!(!has_looped(&m, &id, loop_key(&m, None)));
        assert!(!has_looped(&msg, &id, key));
    }
}
