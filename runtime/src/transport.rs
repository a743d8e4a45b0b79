//! The transports SIP travels over (RFC 3261 §18, RFC 7118): their names
//! in Via (`SIP/2.0/TCP`), in `;transport=` parameters and `$pr`, and in
//! `listen` entries (`tcp:IP:PORT`).

use std::net::SocketAddr;

/// A SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    /// Lowercase name: the `listen` scheme, the `transport=` value, `$pr`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// The Via protocol token (`SIP/2.0/TCP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// A transport by name, case-insensitively (`udp`, `TCP`, ...).
    pub fn parse(name: &str) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Carried over a connection (framing, connection table) rather than
    /// as datagrams.
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }

    /// Encrypted (TLS or WSS): what a `sips:` URI asks for.
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// The port a URI without one means for this transport (RFC 3261
    /// §19.1.2: 5061 for TLS; RFC 7118 has none, so 5060 like SIP's).
    pub fn default_port(self) -> u16 {
        if self.is_secure() { 5061 } else { 5060 }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A socket to listen on: `udp:127.0.0.1:5060`, `tcp:[::1]:5060`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl ListenAddr {
    pub fn udp(addr: SocketAddr) -> ListenAddr {
        ListenAddr {
            transport: Transport::Udp,
            addr,
        }
    }

    /// `SCHEME:IP:PORT` (IPv6 in brackets).
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        let (scheme, rest) = text.split_once(':').ok_or_else(|| {
            format!("listen `{text}`: expected SCHEME:IP:PORT, e.g. udp:127.0.0.1:5060")
        })?;
        let transport = Transport::parse(scheme).ok_or_else(|| {
            format!("listen `{text}`: unknown transport `{scheme}` (udp, tcp, tls, ws or wss)")
        })?;
        let addr = rest
            .parse()
            .map_err(|_| format!("listen `{text}`: `{rest}` is not IP:PORT"))?;
        Ok(ListenAddr { transport, addr })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_listen_entries() {
        assert_eq!(Transport::parse("TCP"), Some(Transport::Tcp));
        assert_eq!(Transport::parse("sctp"), None);
        assert_eq!(Transport::Wss.via_name(), "WSS");
        assert_eq!(Transport::Tls.default_port(), 5061);
        let l = ListenAddr::parse("tcp:[::1]:5070").unwrap();
        assert_eq!(l.transport, Transport::Tcp);
        assert_eq!(l.to_string(), "tcp:[::1]:5070");
        assert!(ListenAddr::parse("sctp:1.2.3.4:5").is_err());
        assert!(ListenAddr::parse("udp:host:5").is_err());
        assert!(ListenAddr::parse("5060").is_err());
    }
}
