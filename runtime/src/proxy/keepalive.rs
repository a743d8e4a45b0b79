//! Keep-alives to phones registered from behind NAT (`registrar:
//! keepalive: { interval: 30s }`), sans-IO: so that the NAT binding a
//! REGISTER opened stays open for the calls to come, like Kamailio's
//! nathelper pinging.
//!
//! `save` hands over the bindings it stored ([`Keepalives::saved`]); a
//! binding is pinged when its Contact names a private address, or an
//! address or port other than the one its REGISTER came from. Over UDP
//! the ping is an OPTIONS to the Contact, sent to the source address,
//! with a branch `z9hG4bKsfK<seq>.<check>` whose answer (any status) is
//! consumed here ([`Keepalives::on_response`]); over a connection it is a
//! CRLF CRLF ping (RFC 5626 §3.5.1). A ping still unanswered when the next
//! one is due is counted (`sipforge_keepalives_unanswered_total`) and
//! logged, and the binding stays: it ends when it expires or the phone
//! unregisters, not because a ping went unanswered.
//!
//! Each instance pings the bindings registered through it (with a shared
//! store too: the NAT binding is towards the instance that got the
//! REGISTER).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::identity::Identity;
use super::{Outgoing, Payload};
use crate::registrar::Binding;
use crate::target::NextHop;
use crate::transport::Transport;

/// Branch prefix of our keep-alive OPTIONS.
pub const KEEPALIVE_PREFIX: &str = "z9hG4bKsfK";

/// Most bindings pinged at once (more are not pinged).
const MAX_ENTRIES: usize = 200_000;

struct Entry {
    contact: String,
    /// When the binding expires (unix seconds): no pings after.
    expires_at: u64,
    due: Instant,
    /// The sequence number of the ping not answered yet.
    outstanding: Option<u32>,
}

/// The bindings to ping, by where their REGISTER came from.
pub struct Keepalives {
    interval: Duration,
    entries: HashMap<(Transport, SocketAddr), Entry>,
    next: Option<Instant>,
    seq: u32,
}

/// Whether a binding looks to be behind NAT: its Contact names a private
/// address, or not the address and port its REGISTER came from.
pub fn is_natted(b: &Binding) -> bool {
    let Some(uri) = crate::sip::Uri::parse(&b.contact) else {
        return false;
    };
    let host = uri.host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let port = uri.port.unwrap_or(crate::target::DEFAULT_PORT);
            crate::nat::is_private(ip)
                || ip != b.received.addr.ip()
                || port != b.received.addr.port()
        }
        // A name (`.invalid` of a WebSocket client): reached only over
        // the connection it came on.
        Err(_) => true,
    }
}

impl Keepalives {
    pub fn new(interval: Duration) -> Keepalives {
        Keepalives {
            interval: interval.max(Duration::from_secs(1)),
            entries: HashMap::new(),
            next: None,
            seq: 0,
        }
    }

    /// The bindings now stored for an AoR after a REGISTER from `source`
    /// at `now`: those behind NAT are pinged from one interval on; the
    /// source is not pinged any more when none of them came from it (it
    /// unregistered).
    pub fn saved(&mut self, now: Instant, bindings: &[Binding], source: (Transport, SocketAddr)) {
        if !bindings
            .iter()
            .any(|b| (b.received.transport, b.received.addr) == source)
        {
            self.entries.remove(&source);
        }
        for b in bindings.iter().filter(|b| is_natted(b)) {
            if self.entries.len() >= MAX_ENTRIES {
                break;
            }
            let key = (b.received.transport, b.received.addr);
            let due = now + self.interval;
            let entry = self.entries.entry(key).or_insert(Entry {
                contact: String::new(),
                expires_at: 0,
                due,
                outstanding: None,
            });
            entry.contact.clone_from(&b.contact);
            entry.expires_at = b.expires_at;
            self.next = Some(self.next.map_or(due, |n| n.min(due)));
        }
    }

    /// Bindings being pinged.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When [`Keepalives::on_timeout`] is next due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Ping the bindings due at `now` (`now_unix`: the wall-clock second,
    /// for expiry); expired ones are forgotten.
    pub fn on_timeout(
        &mut self,
        now: Instant,
        now_unix: u64,
        identity: &Identity,
        out: &mut Vec<Outgoing>,
    ) {
        if self.next.is_none_or(|n| n > now) {
            return;
        }
        self.entries.retain(|_, e| e.expires_at > now_unix);
        let mut next: Option<Instant> = None;
        for (&(transport, addr), e) in &mut self.entries {
            if e.due <= now {
                if e.outstanding.take().is_some() {
                    crate::metrics::keepalive_unanswered();
                    crate::warn_limited!(%addr, contact = e.contact.as_str(), "keep-alive to a phone behind NAT not answered (the binding stays until it expires)");
                }
                self.seq = self.seq.wrapping_add(1);
                if let Some(o) = ping(identity, transport, addr, &e.contact, self.seq) {
                    crate::metrics::keepalive_sent();
                    out.push(o);
                    if transport == Transport::Udp {
                        e.outstanding = Some(self.seq);
                    }
                }
                e.due = now + self.interval;
            }
            next = Some(next.map_or(e.due, |n| n.min(e.due)));
        }
        self.next = next;
    }

    /// A response whose top Via branch starts with [`KEEPALIVE_PREFIX`],
    /// from `source`: the ping is answered. False when it answers none.
    pub fn on_response(&mut self, identity: &Identity, branch: &str, source: SocketAddr) -> bool {
        let Some(seq) = parse_branch(identity, branch) else {
            return false;
        };
        match self.entries.get_mut(&(Transport::Udp, source)) {
            Some(e) if e.outstanding == Some(seq) => {
                e.outstanding = None;
                true
            }
            _ => false,
        }
    }
}

fn make_branch(identity: &Identity, seq: u32) -> String {
    let check = identity.mac(("keepalive", seq)) & 0xffff_ffff_ffff;
    format!("{KEEPALIVE_PREFIX}{seq:x}.{check:012x}")
}

fn parse_branch(identity: &Identity, branch: &str) -> Option<u32> {
    let (seq, check) = branch.strip_prefix(KEEPALIVE_PREFIX)?.split_once('.')?;
    let seq = u32::from_str_radix(seq, 16).ok()?;
    (make_branch(identity, seq) == branch && !check.is_empty()).then_some(seq)
}

/// The ping of one binding: an OPTIONS over UDP, CRLF CRLF over a
/// connection (that one only: a closed one is not opened again to the
/// phone's source port); from the first listener of its transport and
/// family.
fn ping(
    identity: &Identity,
    transport: Transport,
    to: SocketAddr,
    contact: &str,
    seq: u32,
) -> Option<Outgoing> {
    let socket = identity
        .listeners
        .iter()
        .position(|l| l.transport == transport && l.addr.is_ipv4() == to.is_ipv4())?;
    if transport != Transport::Udp {
        return Some(Outgoing {
            socket,
            to: NextHop::Flow(to),
            bytes: Payload::Owned(b"\r\n\r\n".to_vec()),
        });
    }
    let listener = identity.listener(socket)?;
    if contact.contains(['\r', '\n']) {
        return None;
    }
    let branch = make_branch(identity, seq);
    let bytes = super::probe::options_request(listener, contact, &branch, "sfk", seq);
    Some(Outgoing {
        socket,
        to: NextHop::Addr(to),
        bytes: Payload::Owned(bytes),
    })
}
