//! Sibling instances: two processes sharing a port during a rollout pass
//! each other the responses that belong to the other's transactions.
//!
//! With SO_REUSEPORT the kernel hashes each flow to one of the processes,
//! and a relayed request has two flows (the caller's and the callee's), so
//! the callee's responses can land on the instance that does not hold the
//! transaction. Every branch of ours, stateless or stateful, carries its
//! instance's random tag and a check only that instance can verify
//! (`proxy::branch`), and every instance listens on an abstract Unix
//! datagram socket named after its tag (`\0sipforge.<tag>`; abstract names
//! live in the network namespace, so containers sharing the host network
//! see each other). A response whose top Via carries another instance's
//! tag is passed to that socket with its source address and handled there
//! as if it had been received there. When the send fails (the owner is
//! gone, or its queue is full), the response is handled here, where its
//! check cannot be verified: it is dropped (counted as `forged_branch`),
//! never forwarded unchecked.
//!
//! The check costs one substring search per response; only foreign
//! responses are parsed here. Only responses are passed on: requests do
//! not carry our branch.

use std::io;
use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram as StdUnixDatagram};
use std::sync::{Arc, LazyLock};

use memchr::memmem;

use tokio::net::UnixDatagram;

use super::{MAX_DATAGRAM, Shared, handle_one};
use crate::metrics;
use crate::proxy::Outgoing;
use crate::proxy::branch::{OUR_PREFIX, branch_instance};
use crate::sip::Message;

/// First bytes of a passed-on datagram (then: socket index, source length,
/// source as text, the datagram).
const MAGIC: &[u8; 5] = b"SFSB1";

/// Our end of the link: the socket siblings send to, and one to send from.
pub(super) struct Link {
    tag: u32,
    receiver: UnixDatagram,
    sender: StdUnixDatagram,
}

fn name(tag: u32) -> String {
    format!("sipforge.{tag:08x}")
}

impl Link {
    /// Listen under this instance's tag. Must run inside a tokio runtime.
    pub(super) fn bind(tag: u32) -> io::Result<Link> {
        let addr = UnixAddr::from_abstract_name(name(tag))?;
        let receiver = StdUnixDatagram::bind_addr(&addr)?;
        receiver.set_nonblocking(true)?;
        let sender = StdUnixDatagram::unbound()?;
        sender.set_nonblocking(true)?;
        Ok(Link {
            tag,
            receiver: UnixDatagram::from_std(receiver)?,
            sender,
        })
    }
}

/// Finds our stateful branches in a datagram.
static BRANCH: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(OUR_PREFIX.as_bytes()));

/// The instance tag of a response whose top Via is a stateful branch of
/// any sipforge instance (parses the message).
fn tag_of(datagram: &[u8]) -> Option<u32> {
    if !datagram.starts_with(b"SIP/2.0 ") {
        return None;
    }
    BRANCH.find(datagram)?;
    let msg = Message::parse(datagram).ok()?;
    branch_instance(msg.top_via()?.branch?)
}

/// The tag of the instance a response belongs to, when it is another
/// instance's. Cheap for the common cases: a response without a stateful
/// branch costs a substring search, one with our own tag (the first
/// occurrence is our Via, on top) a few more bytes; only a foreign tag is
/// confirmed by parsing the message.
fn foreign_tag(datagram: &[u8], ours: u32) -> Option<u32> {
    if !datagram.starts_with(b"SIP/2.0 ") {
        return None;
    }
    let at = BRANCH.find(datagram)?;
    let token = datagram[at..]
        .split(|b| matches!(b, b';' | b',' | b' ' | b'\t' | b'\r' | b'\n'))
        .next()?;
    let first = std::str::from_utf8(token).ok().and_then(branch_instance);
    if first == Some(ours) {
        return None;
    }
    tag_of(datagram).filter(|tag| *tag != ours)
}

/// Pass a response received on socket `index` to the sibling that owns it;
/// true when it was handed over (and must not be handled here).
pub(super) fn pass_on(shared: &Shared, index: usize, datagram: &[u8], source: SocketAddr) -> bool {
    let Some(link) = &shared.sibling else {
        return false;
    };
    let Some(tag) = foreign_tag(datagram, link.tag) else {
        return false;
    };
    let (Ok(index), Ok(to)) = (u8::try_from(index), UnixAddr::from_abstract_name(name(tag))) else {
        return false;
    };
    let source_text = source.to_string();
    let Ok(source_len) = u8::try_from(source_text.len()) else {
        return false;
    };
    let mut envelope = Vec::with_capacity(MAGIC.len() + 2 + source_text.len() + datagram.len());
    envelope.extend_from_slice(MAGIC);
    envelope.push(index);
    envelope.push(source_len);
    envelope.extend_from_slice(source_text.as_bytes());
    envelope.extend_from_slice(datagram);
    match link.sender.send_to_addr(&envelope, &to) {
        Ok(_) => {
            metrics::sibling_passed(true);
            tracing::debug!(%source, sibling = format_args!("{tag:08x}"), "response passed to the instance that holds its transaction");
            true
        }
        Err(e) => {
            tracing::debug!(%source, sibling = format_args!("{tag:08x}"), "sibling unreachable ({e}): response handled here");
            false
        }
    }
}

/// The socket index, the source and the datagram of a passed-on response.
fn open(envelope: &[u8]) -> Option<(usize, SocketAddr, &[u8])> {
    let rest = envelope.strip_prefix(MAGIC.as_slice())?;
    let (&index, rest) = rest.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let (source, datagram) = rest.split_at_checked(usize::from(len))?;
    let source = std::str::from_utf8(source).ok()?.parse().ok()?;
    Some((usize::from(index), source, datagram))
}

/// Handle what siblings pass on, until the server stops.
pub(super) async fn receive_loop(shared: Arc<Shared>) {
    let Some(link) = &shared.sibling else {
        return;
    };
    let mut buf = vec![0u8; MAX_DATAGRAM + 128];
    let mut out: Vec<Outgoing> = Vec::with_capacity(4);
    let mut stop = shared.stop.clone();
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.changed() => return,
            received = link.receiver.recv(&mut buf) => received,
        };
        let Ok(n) = received else {
            continue;
        };
        let Some((index, source, datagram)) = open(&buf[..n]) else {
            tracing::debug!("sibling link: not a passed-on response; ignored");
            continue;
        };
        // Only responses, for our own transactions: anything else is not
        // what a sibling sends, and is ignored.
        let ours = index < shared.sockets.len() && tag_of(datagram) == Some(link.tag);
        if !ours {
            continue;
        }
        metrics::sibling_passed(false);
        handle_one(&shared, index, datagram, source, &mut out);
        crate::logbuf::flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(branch: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\n\
             To: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn only_other_instances_responses_are_foreign() {
        // Stateful: `<shard>.<slot>.<generation>.<n>.<instance>.<tail>`.
        let tail = "0000beef0123456789ab";
        assert_eq!(
            foreign_tag(&response(&format!("z9hG4bKsfT0.0.0.0.beef.{tail}")), 0xcafe),
            Some(0xbeef)
        );
        assert_eq!(
            foreign_tag(&response(&format!("z9hG4bKsfT0.0.0.0.cafe.{tail}")), 0xcafe),
            None
        );
        // Stateless: request hash, loop key, instance, check (all hex).
        let stateless = "z9hG4bKsf0123456789abcdef0000beef0000beef0123456789ab";
        assert_eq!(foreign_tag(&response(stateless), 0xcafe), Some(0xbeef));
        assert_eq!(foreign_tag(&response(stateless), 0xbeef), None);
        assert_eq!(foreign_tag(&response("z9hG4bKsf0123456789abcdef"), 1), None);
        assert_eq!(foreign_tag(&response("z9hG4bKsfT0.0.0"), 1), None);
        let request =
            b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKsfT0.0.0.0.beef\r\n\r\n";
        assert_eq!(foreign_tag(request, 1), None);
        assert_eq!(foreign_tag(b"SIP/2.0 garbage branch=z9hG4bKsfT", 1), None);
    }

    #[test]
    fn envelopes_round_trip_and_refuse_garbage() {
        let source: SocketAddr = "[2001:db8::1]:5070".parse().unwrap();
        let text = source.to_string();
        let mut e = MAGIC.to_vec();
        e.push(3);
        e.push(text.len() as u8);
        e.extend_from_slice(text.as_bytes());
        e.extend_from_slice(b"SIP/2.0 200 OK\r\n");
        assert_eq!(open(&e), Some((3, source, &b"SIP/2.0 200 OK\r\n"[..])));
        for bad in [
            &b""[..],
            b"SFSB1",
            b"SFSB1\x00",
            b"SFSB1\x00\x50abc",
            b"XXXXX\x00\x01a",
            b"SFSB1\x00\x03abc",
        ] {
            assert_eq!(open(bad), None, "{bad:?}");
        }
    }
}
