//! Next hops: where a URI says a message should go (RFC 3263: an IP literal
//! is used as it is, a host name is resolved by the network layer with
//! NAPTR, SRV and A/AAAA, see [`crate::resolve::rfc3263`]; the port
//! defaults to 5060).

use std::net::{IpAddr, SocketAddr};

use crate::sip::Uri;
use crate::transport::Transport;

/// Default SIP port for UDP/TCP (RFC 3261 §19.1.2).
pub const DEFAULT_PORT: u16 = 5060;

/// Where to send a message: an address, or a name still to resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    Addr(SocketAddr),
    /// A host name, lowercase. `port` is the URI's, else 5060; RFC 3263
    /// looks up SRV (and NAPTR) records only when the URI gave no port
    /// (`port_given`), and only those of the URI's `transport` if it names
    /// one (`;transport=`, `sips:`).
    Name {
        host: String,
        port: u16,
        port_given: bool,
        transport: Option<Transport>,
    },
    /// An address the core picked among a name's RFC 3263 targets (the
    /// next one after a failed target, §4.3). Sent to like `Addr`; a TLS
    /// connection opened for it verifies the peer's certificate against
    /// `name`, the URI's host, not the address (RFC 5922 §4).
    Found {
        addr: SocketAddr,
        name: String,
    },
    /// The open connection from `addr` only (a registered phone's
    /// connection, its flow): never a new connection to it, since the
    /// phone's source port does not accept one (RFC 5626 §5.3). Without
    /// the connection the request fails at once as `430 Flow Failed`.
    /// Written `;sf-conn` in a `$du` ([`flow_uri`]). Over UDP, as `Addr`.
    Flow(SocketAddr),
}

/// `IP:PORT` or `host:port` (log lines, tests).
impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NextHop::Addr(addr) => addr.fmt(f),
            NextHop::Name { host, port, .. } => write!(f, "{host}:{port}"),
            NextHop::Found { addr, name } => write!(f, "{addr} ({name})"),
            NextHop::Flow(addr) => write!(f, "{addr} (its connection)"),
        }
    }
}

impl NextHop {
    /// The address to send to, when known without a lookup.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            NextHop::Addr(addr) | NextHop::Found { addr, .. } | NextHop::Flow(addr) => Some(*addr),
            NextHop::Name { .. } => None,
        }
    }

    /// The next hop of a SIP URI: `maddr` wins over the host, `port` defaults
    /// to 5060. None for a URI without a host (tel:, unknown schemes).
    pub fn from_uri(text: &str) -> Option<NextHop> {
        let uri = Uri::parse(text)?;
        let host = match uri.param("maddr") {
            Some(Some(maddr)) if !maddr.is_empty() => maddr,
            _ => uri.host,
        };
        let hop = NextHop::from_host_port(host, uri.port)?;
        Some(match hop {
            NextHop::Name {
                host,
                port,
                port_given,
                ..
            } => NextHop::Name {
                host,
                port,
                port_given,
                transport: uri_transport(text),
            },
            NextHop::Addr(addr) if uri.param(FLOW_PARAM) == Some(None) => NextHop::Flow(addr),
            addr => addr,
        })
    }

    /// A next hop from a host (IPv6 in brackets or not) and an optional
    /// port (no transport: see [`NextHop::Name`]).
    pub fn from_host_port(host: &str, port: Option<u16>) -> Option<NextHop> {
        if host.is_empty() {
            return None;
        }
        let port_given = port.is_some();
        let port = port.unwrap_or(DEFAULT_PORT);
        match parse_ip(host) {
            Some(ip) => Some(NextHop::Addr(SocketAddr::new(ip, port))),
            None => Some(NextHop::Name {
                host: host.to_ascii_lowercase(),
                port,
                port_given,
                transport: None,
            }),
        }
    }
}

/// The transport a URI asks for: its `transport=` parameter, else TLS for
/// a `sips:` URI; None when it says nothing (RFC 3263 then picks: UDP for
/// an IP literal). An unknown transport name counts as saying nothing.
pub fn uri_transport(text: &str) -> Option<Transport> {
    // Without a `;transport` parameter a sip: URI says nothing (most next
    // hops): no parse needed. Only a sips: scheme or a `transport` name
    // (in any case) somewhere after a ';' can make the answer other than None.
    let b = text.as_bytes();
    let sips = b.len() >= 5 && b[..5].eq_ignore_ascii_case(b"sips:");
    if !sips {
        let semi = memchr::memchr(b';', b)?;
        if !b[semi..]
            .windows(9)
            .any(|w| w.eq_ignore_ascii_case(b"transport"))
        {
            return None;
        }
    }
    let uri = Uri::parse(text)?;
    if let Some(Some(name)) = uri.param("transport")
        && let Some(t) = Transport::parse(name)
    {
        // `sips:` over TCP means TLS (RFC 3261 §26.2.2); over WS, WSS.
        return Some(match (uri.scheme.eq_ignore_ascii_case("sips"), t) {
            (true, Transport::Tcp) => Transport::Tls,
            (true, Transport::Ws) => Transport::Wss,
            _ => t,
        });
    }
    uri.scheme
        .eq_ignore_ascii_case("sips")
        .then_some(Transport::Tls)
}

/// The URI parameter (without a value) of a `$du` that is a connection
/// only ([`NextHop::Flow`]).
pub const FLOW_PARAM: &str = "sf-conn";

/// A `$du` for the open connection from `addr` over `transport` only
/// (`sip:203.0.113.7:40312;transport=tcp;sf-conn`): see [`NextHop::Flow`].
pub fn flow_uri(addr: SocketAddr, transport: Transport) -> String {
    let mut uri = uri_of(addr, transport);
    uri.push(';');
    uri.push_str(FLOW_PARAM);
    uri
}

/// A `$du` for a phone's NAT binding or connection: over UDP its address
/// with `;transport=udp` written (a request over 1,300 bytes must not move
/// to TCP, RFC 3261 §18.1.1: nobody listens there on the phone's side);
/// over a connection, that connection only ([`flow_uri`]).
pub fn binding_uri(addr: SocketAddr, transport: Transport) -> String {
    match transport {
        Transport::Udp => {
            let mut uri = uri_of(addr, Transport::Udp);
            uri.push_str(";transport=udp");
            uri
        }
        t => flow_uri(addr, t),
    }
}

/// A SIP URI naming `addr` over `transport` (`sip:10.0.0.1:5060`, with
/// `;transport=` unless UDP): a next hop (`$du`) to an address we know.
pub fn uri_of(addr: SocketAddr, transport: Transport) -> String {
    let mut uri = String::with_capacity(48);
    uri.push_str("sip:");
    push_addr(&mut uri, addr);
    if transport != Transport::Udp {
        uri.push_str(";transport=");
        uri.push_str(transport.name());
    }
    uri
}

/// `addr` as `Display` writes it (`IP:PORT`, IPv6 in brackets), IPv4
/// without the formatter: this is on the path of every call to a
/// registered phone.
pub(crate) fn push_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for octet in v4.ip().octets() {
                crate::digits::push_u64(out, u64::from(octet));
                out.push('.');
            }
            out.pop();
            out.push(':');
            crate::digits::push_u64(out, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(out, "{addr}");
        }
    }
}

/// An IP literal as written in SIP (IPv6 may be in brackets).
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match dotted_quad(bare.as_bytes()) {
        Some(v4) => Some(IpAddr::V4(v4)),
        None => bare.parse().ok(),
    }
}

/// A dotted-quad IPv4 address in the form std's parser accepts (four
/// decimal parts of at most 3 digits, no leading zero, each at most 255),
/// read in one pass; None for anything else, which std's parser then sees.
/// (Every message has IP literals in its Vias and URIs: std's parser, which
/// tries every form, costs ~300 instructions each.)
fn dotted_quad(s: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut part = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for &b in s {
        match b {
            b'0'..=b'9' => {
                if digits == 1 && value == 0 {
                    return None; // a leading zero
                }
                value = value * 10 + u32::from(b - b'0');
                digits += 1;
                if value > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && part < 3 => {
                octets[part] = value as u8;
                part += 1;
                value = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if part != 3 || digits == 0 {
        return None;
    }
    octets[3] = value as u8;
    Some(std::net::Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_written_as_display_writes_them() {
        for text in [
            "127.0.0.1:5060",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.40:7",
            "[::1]:5060",
            "[2001:db8::7]:40312",
            "[::ffff:192.0.2.1]:5062",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(uri_of(addr, Transport::Udp), format!("sip:{addr}"));
            assert_eq!(
                uri_of(addr, Transport::Tls),
                format!("sip:{addr};transport=tls")
            );
            assert_eq!(
                binding_uri(addr, Transport::Udp),
                format!("sip:{addr};transport=udp")
            );
            assert_eq!(
                binding_uri(addr, Transport::Tcp),
                format!("sip:{addr};transport=tcp;sf-conn")
            );
        }
    }

    #[test]
    fn uri_transport_without_a_parse_when_nothing_can_say_one() {
        // What the full parse answers, for URIs the shortcut takes and not.
        let slow = |text: &str| {
            let uri = Uri::parse(text)?;
            if let Some(Some(name)) = uri.param("transport")
                && let Some(t) = Transport::parse(name)
            {
                return Some(match (uri.scheme.eq_ignore_ascii_case("sips"), t) {
                    (true, Transport::Tcp) => Transport::Tls,
                    (true, Transport::Ws) => Transport::Wss,
                    _ => t,
                });
            }
            uri.scheme
                .eq_ignore_ascii_case("sips")
                .then_some(Transport::Tls)
        };
        for text in [
            "sip:127.0.0.1:5080",
            "sip:127.0.0.1:5060;lr",
            "sip:a@b;transport=tcp",
            "sip:a@b;TRANSPORT=TLS;lr",
            "sip:a@b;lr;Transport=ws",
            "sip:a@b;transport=bogus",
            "sips:a@b",
            "SIPS:a@b;transport=tcp",
            "sips:a@b;transport=ws",
            "sip:transport@b",
            "sip:a;transport=tcp@b",
            "sip:a@b?transport=tcp",
            "sip:a@b;x=1?h=;transport=tcp",
            "sips:",
            "sip:",
            "tel:+1234;transport=tcp",
            "sip:a b;transport=tcp",
            "",
        ] {
            assert_eq!(uri_transport(text), slow(text), "{text:?}");
        }
    }

    #[test]
    fn ip_literals_parse_as_std_parses_them() {
        let cases = [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.02.3.4",
            "1.2.3.00",
            "1.2.3.0",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "1.2.3.-4",
            "+1.2.3.4",
            "1.2.3.4a",
            "999.1.1.1",
            "1000.1.1.1",
            "",
            "::1",
            "[::1]",
            "2001:db8::1",
            "::ffff:1.2.3.4",
            "example.com",
            "1.2.3.4:5060",
            "192.168.100.200",
            "10.0.0.255",
            "0001.2.3.4",
        ];
        for c in cases {
            let bare = c
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(c);
            assert_eq!(parse_ip(c), bare.parse::<IpAddr>().ok(), "{c:?}");
        }
        // Every octet value, and leading zeros, against std.
        for n in 0..1000u32 {
            for form in [format!("{n}"), format!("0{n}"), format!("00{n}")] {
                let c = format!("10.{form}.3.{form}");
                assert_eq!(parse_ip(&c), c.parse::<IpAddr>().ok(), "{c:?}");
            }
        }
    }

    #[test]
    fn ip_literal_with_default_port() {
        assert_eq!(
            NextHop::from_uri("sip:127.0.0.1"),
            Some(NextHop::Addr("127.0.0.1:5060".parse().unwrap()))
        );
    }

    #[test]
    fn ipv6_with_port_and_maddr() {
        assert_eq!(
            NextHop::from_uri("sip:alice@[2001:db8::1]:5070"),
            Some(NextHop::Addr("[2001:db8::1]:5070".parse().unwrap()))
        );
        assert_eq!(
            NextHop::from_uri("sip:x@example.com:5080;maddr=10.0.0.1"),
            Some(NextHop::Addr("10.0.0.1:5080".parse().unwrap()))
        );
    }

    #[test]
    fn transports_uris_ask_for() {
        assert_eq!(
            uri_transport("sip:a@1.2.3.4;transport=TCP"),
            Some(Transport::Tcp)
        );
        assert_eq!(uri_transport("sips:a@example.com"), Some(Transport::Tls));
        assert_eq!(
            uri_transport("sips:a@example.com;transport=tcp"),
            Some(Transport::Tls)
        );
        assert_eq!(
            uri_transport("sip:a@1.2.3.4;transport=ws"),
            Some(Transport::Ws)
        );
        assert_eq!(uri_transport("sip:a@1.2.3.4"), None);
        assert_eq!(uri_transport("sip:a@1.2.3.4;transport=sctp"), None);
    }

    #[test]
    fn names_are_left_to_resolve() {
        assert_eq!(
            NextHop::from_uri("sip:bob@Example.COM;transport=udp"),
            Some(NextHop::Name {
                host: "example.com".into(),
                port: 5060,
                port_given: false,
                transport: Some(Transport::Udp),
            })
        );
        assert_eq!(NextHop::from_uri("tel:+15551234"), None);
    }
}
