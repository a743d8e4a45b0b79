//! Flow routes: how every instance of a pool reaches a phone through the
//! instance it registered with (issue 14).
//!
//! A TCP, TLS or WebSocket connection belongs to the instance that
//! accepted it, and a phone behind NAT lets UDP in only from the address
//! it registered with; the location table is shared (Redis). So when a
//! REGISTER arrives over a connection, or over UDP from behind a NAT (a
//! Contact that is not where it came from), and the bindings live in a
//! shared store, the binding gets a Path of one entry naming this
//! instance, with a flow token in a
//! URI parameter (the edge proxy's part of RFC 5626 §5.3, played by the
//! instance itself):
//!
//! ```text
//! <sip:198.51.100.1:5060;transport=tcp;lr;sf-flow=tcp~203.0.113.7~40312~9f3c0a1b2c3d4e5f>
//! ```
//!
//! The token names the flow (transport, the phone's address) and carries
//! a MAC under the pool's `--secret-file` key, so only a member of the
//! pool can make one. Any instance's `lookup` turns the binding into a
//! branch along that Path (as for any Path), so the request goes to the
//! owner; the owner's own `lookup` leaves its entry out and sends to the
//! phone directly. The owner, receiving a request whose only Route is its
//! own flow entry with a valid token, relays it to the phone (over the
//! connection, never a new one: [`crate::target::NextHop::Flow`]) without
//! running the routes again (the instance that did the `lookup` ran them:
//! authentication, media, the caller's policy); see
//! `stateless::on_request` and [`crate::ctx::Edits::pool_hop`].
//!
//! The token is not shown to the phone nor to the caller: it travels in the
//! store and on the hop between two instances only. The owner's
//! Record-Route is the plain one, and in-dialog requests reach the phone
//! through the `fix_contact` marker the owner writes into the phone's
//! Contact (see [`crate::nat`]).

use std::net::SocketAddr;

use super::identity::Identity;
use crate::api::RelayTo;
use crate::ctx::{Decision, Edits};
use crate::sip::{HeaderName, Message, Uri};
use crate::target::parse_ip;
use crate::transport::Transport;

/// The URI parameter holding the token.
pub const PARAM: &str = "sf-flow";

/// How this instance reaches a phone registered here, as a flow token
/// names it: a connection, or a NAT binding over UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub transport: Transport,
    /// The phone's address (the connection's remote end, or the NAT
    /// binding its REGISTER came from).
    pub addr: SocketAddr,
}

impl Flow {
    /// The next hop that sends over this connection only (`$du`); over
    /// UDP, to the address (from our socket: the phone's NAT binding
    /// lets in the address it registered with).
    pub fn uri(&self) -> String {
        crate::target::binding_uri(self.addr, self.transport)
    }
}

/// Whether `uri` may carry a token: a search that costs less than a
/// parse (`str::contains` builds a searcher per call, which costs more
/// than the search in a short URI).
pub fn may_carry_token(uri: &str) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(PARAM));
    FINDER.find(uri.as_bytes()).is_some()
}

/// The MAC of a flow under the pool's key.
fn mac(identity: &Identity, flow: Flow) -> u64 {
    identity.mac((PARAM, flow.transport.name(), flow.addr))
}

/// The token's text: `transport~ip~port~mac` (the IPv6 address in brackets).
fn token(identity: &Identity, flow: Flow) -> String {
    let ip = match flow.addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    format!(
        "{}~{ip}~{}~{:016x}",
        flow.transport.name(),
        flow.addr.port(),
        mac(identity, flow)
    )
}

/// The Path entry that sends requests for `flow` to this instance: its
/// first TCP listener (no size limit: a WebRTC offer is often over the
/// 1,300 bytes that RFC 3261 §18.1.1 allows a datagram), else its first
/// UDP one, else its first listener; the transport always written, so
/// that the other instances never pick another one. None without a
/// listener.
pub fn path_entry(identity: &Identity, flow: Flow) -> Option<String> {
    let of = |t: Transport| identity.listeners.iter().find(|l| l.transport == t);
    let listener = of(Transport::Tcp)
        .or_else(|| of(Transport::Udp))
        .or_else(|| identity.listeners.first())?;
    Some(format!(
        "<sip:{}:{};transport={};lr;{PARAM}={}>",
        listener.host,
        listener.port,
        listener.transport.name(),
        token(identity, flow)
    ))
}

/// The flow a URI of ours names in a token that verifies; None when it
/// has no token, or one that does not verify (made up, altered, or made
/// by an instance with another key).
pub fn verify(identity: &Identity, uri: &Uri<'_>) -> Option<Flow> {
    let text = uri.param(PARAM)??;
    let mut parts = text.split('~');
    let (Some(transport), Some(ip), Some(port), Some(mac_hex), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let transport = Transport::parse(transport)?;
    let ip = parse_ip(ip)?;
    let port: u16 = port.parse().ok()?;
    if mac_hex.len() != 16 {
        return None;
    }
    let given = u64::from_str_radix(mac_hex, 16).ok()?;
    let flow = Flow {
        transport,
        addr: SocketAddr::new(ip, port),
    };
    (given == mac(identity, flow)).then_some(flow)
}

/// Whether `entry` (a Path element as stored) is this instance's entry for
/// a flow: then the owner sends to the binding's source itself. The
/// token is not checked: the entry comes from the store, not from a
/// request, and a restarted instance without `--secret-file` has another
/// key than the one that wrote it.
pub fn is_own_entry(identity: &Identity, entry: &str) -> bool {
    let uri = crate::sip::NameAddr::parse(entry).map_or(entry, |na| na.uri);
    Uri::parse(uri).is_some_and(|u| identity.is_us(u.host, u.port) && u.param(PARAM).is_some())
}

/// What the owner does with a request from the pool for `flow`, instead
/// of running the routes: relay it (statefully) to the connection, and
/// record-route when an instance before us did (in-dialog requests must
/// come through us to reach the connection).
pub(crate) fn pool_hop(msg: &Message<'_>, flow: Flow) -> (Decision, Edits) {
    let edits = Edits {
        du: Some(flow.uri()),
        record_route: msg.first(HeaderName::RecordRoute).is_some(),
        pool_hop: true,
        ..Edits::default()
    };
    (Decision::Relay(RelayTo::Default), edits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Listener;

    fn pool_member(addr: &str) -> Identity {
        let udp = Listener::new(addr.parse().unwrap(), None).unwrap();
        let ws = Listener::with_transport(addr.parse().unwrap(), Transport::Ws, None).unwrap();
        Identity::with_secret(vec![ws, udp], b"a secret shared by the whole pool")
    }

    fn phone() -> Flow {
        Flow {
            transport: Transport::Tcp,
            addr: "203.0.113.7:40312".parse().unwrap(),
        }
    }

    fn uri_of(entry: &str) -> String {
        crate::sip::NameAddr::parse(entry).unwrap().uri.to_string()
    }

    #[test]
    fn an_entry_names_a_listener_and_verifies_on_every_member() {
        let a = pool_member("198.51.100.1:5060");
        let entry = path_entry(&a, phone()).unwrap();
        // No TCP listener: the UDP one, its transport written.
        assert!(
            entry.starts_with(
                "<sip:198.51.100.1:5060;transport=udp;lr;sf-flow=tcp~203.0.113.7~40312~"
            ),
            "{entry}"
        );
        let mut with_tcp = a.clone();
        with_tcp.listeners.push(
            Listener::with_transport("198.51.100.1:5070".parse().unwrap(), Transport::Tcp, None)
                .unwrap(),
        );
        let tcp_entry = path_entry(&with_tcp, phone()).unwrap();
        assert!(
            tcp_entry.starts_with("<sip:198.51.100.1:5070;transport=tcp;lr;sf-flow=tcp~"),
            "{tcp_entry}"
        );
        let uri = uri_of(&entry);
        assert_eq!(verify(&a, &Uri::parse(&uri).unwrap()), Some(phone()));
        // Another member with the same key verifies it too (the token is
        // the pool's), but it is not its own entry.
        let b = pool_member("198.51.100.2:5060");
        assert_eq!(verify(&b, &Uri::parse(&uri).unwrap()), Some(phone()));
        assert!(is_own_entry(&a, &entry));
        assert!(!is_own_entry(&b, &entry));
    }

    #[test]
    fn ipv6_and_tls_flows_round_trip() {
        let a = pool_member("198.51.100.1:5060");
        let flow = Flow {
            transport: Transport::Tls,
            addr: "[2001:db8::7]:5061".parse().unwrap(),
        };
        let uri = uri_of(&path_entry(&a, flow).unwrap());
        assert!(uri.contains("sf-flow=tls~[2001:db8::7]~5061~"), "{uri}");
        assert_eq!(verify(&a, &Uri::parse(&uri).unwrap()), Some(flow));
        assert_eq!(flow.uri(), "sip:[2001:db8::7]:5061;transport=tls;sf-conn");
    }

    #[test]
    fn a_udp_flow_is_the_phones_nat_binding() {
        let a = pool_member("198.51.100.1:5060");
        let flow = Flow {
            transport: Transport::Udp,
            ..phone()
        };
        let uri = uri_of(&path_entry(&a, flow).unwrap());
        assert!(uri.contains(";sf-flow=udp~203.0.113.7~40312~"), "{uri}");
        assert_eq!(verify(&a, &Uri::parse(&uri).unwrap()), Some(flow));
        assert_eq!(flow.uri(), "sip:203.0.113.7:40312;transport=udp");
    }

    #[test]
    fn forged_altered_and_foreign_tokens_do_not_verify() {
        let a = pool_member("198.51.100.1:5060");
        let uri = uri_of(&path_entry(&a, phone()).unwrap());
        let mac = uri.rsplit('~').next().unwrap().to_string();
        let forged = [
            // Another connection with the MAC of the first.
            uri.replace("40312", "40313"),
            uri.replace("~203.0.113.7~", "~203.0.113.8~"),
            uri.replace("tcp~", "tls~"),
            uri.replace("tcp~", "udp~"),
            uri.replace("tcp~", "sctp~"),
            // Made up, short, missing or extra parts.
            uri.replace(&mac, "0000000000000000"),
            uri.replace(&mac, &mac[..15]),
            uri.replace(&mac, &format!("{mac}~1")),
            uri.replace(&format!("~{mac}"), ""),
            "sip:198.51.100.1:5060;lr;sf-flow".to_string(),
            "sip:198.51.100.1:5060;lr;sf-flow=".to_string(),
            "sip:198.51.100.1:5060;lr".to_string(),
        ];
        for f in &forged {
            let parsed = Uri::parse(f).unwrap();
            assert_eq!(verify(&a, &parsed), None, "{f}");
        }
        // A process with another key (no --secret-file) rejects the pool's.
        let stranger = Identity::new(a.listeners.clone());
        assert_eq!(verify(&stranger, &Uri::parse(&uri).unwrap()), None);
    }
}
