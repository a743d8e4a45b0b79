//! Who the proxy is: its listening sockets and the host:port it writes into
//! Via and Record-Route. Used to recognise our own Via in responses, our
//! own Route entries in requests and next hops that would be ourselves;
//! it also holds this process's secret key, which makes our branches
//! unguessable (see `branch`).

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::{IpAddr, SocketAddr};

use crate::target::{DEFAULT_PORT, NextHop, parse_ip};
use crate::transport::Transport;

/// One listening socket and how it names itself in headers.
#[derive(Debug, Clone)]
pub struct Listener {
    /// The bound address (the real port, after binding port 0).
    pub addr: SocketAddr,
    /// What it speaks: Via and Record-Route name it.
    pub transport: Transport,
    /// Host written into Via/Record-Route (advertise, else the bound IP).
    pub host: String,
    /// Port written into Via/Record-Route.
    pub port: u16,
    /// `Via: SIP/2.0/UDP host:port;branch=` ready to be followed by a branch.
    pub via_prefix: String,
    /// `Record-Route: <sip:host:port;lr>\r\n`
    pub record_route: String,
}

impl Listener {
    /// A UDP listener bound to `addr`, advertising `advertise` (host or host:port) when given.
    pub fn new(addr: SocketAddr, advertise: Option<&str>) -> Result<Listener, String> {
        Listener::with_transport(addr, Transport::Udp, advertise)
    }

    /// A listener of `transport` bound to `addr`, advertising `advertise`.
    pub fn with_transport(
        addr: SocketAddr,
        transport: Transport,
        advertise: Option<&str>,
    ) -> Result<Listener, String> {
        let (host, port) = match advertise {
            Some(adv) => split_host_port(adv)
                .map(|(h, p)| (h.to_string(), p.unwrap_or(addr.port())))
                .ok_or_else(|| format!("advertise `{adv}` is not host[:port]"))?,
            None => {
                if addr.ip().is_unspecified() {
                    return Err(format!(
                        "listening on {addr} needs an advertised address (--advertise HOST[:PORT] or `advertise:`), \
                         since {} cannot be written into Via",
                        addr.ip()
                    ));
                }
                let host = match addr.ip() {
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                };
                (host, addr.port())
            }
        };
        // RFC 3261 §19.1.1: a URI without `transport=` means UDP.
        let param = match transport {
            Transport::Udp => String::new(),
            t => format!(";transport={}", t.name()),
        };
        Ok(Listener {
            via_prefix: format!(
                "Via: SIP/2.0/{} {host}:{port};branch=",
                transport.via_name()
            ),
            record_route: format!("Record-Route: <sip:{host}:{port}{param};lr>\r\n"),
            addr,
            transport,
            host,
            port,
        })
    }
}

/// All the listeners of this proxy, and its keys.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub listeners: Vec<Listener>,
    /// The addresses of this host's interfaces: a listener bound to the
    /// unspecified address (0.0.0.0, ::) receives on every one of them.
    pub local_ips: Vec<IpAddr>,
    /// The 128-bit key of the checks in our branches (SipHash-1-3):
    /// random per process, or from a secret shared by a pool of instances
    /// (`--secret-file`) so each verifies the others' branches.
    secret: (u64, u64),
    /// Random per process: the instance tag in our branches (see `net::sibling`).
    instance: u32,
}

impl Identity {
    /// The identity of a proxy listening on `listeners`, with a fresh
    /// secret and instance tag.
    pub fn new(listeners: Vec<Listener>) -> Identity {
        let secret = random_key();
        // Independent of the key: the tag is visible in every branch, the
        // key never is.
        let instance = RandomState::new().hash_one(std::process::id()) as u32;
        Identity {
            listeners,
            local_ips: Vec::new(),
            secret,
            instance,
        }
    }

    /// The same, with the branch key derived from `secret` (at least 16
    /// bytes of a random secret shared by the instances of a pool).
    pub fn with_secret(listeners: Vec<Listener>, secret: &[u8]) -> Identity {
        let mut id = Identity::new(listeners);
        let derive = |label: u64| {
            let mut h = siphasher::sip::SipHasher24::new_with_keys(label, !label);
            h.write(secret);
            h.finish()
        };
        id.secret = (derive(0x7369_7066_6f72_6765), derive(0x6272_616e_6368_6573));
        id
    }

    /// The instance tag: random per process, carried in our branches.
    pub fn instance(&self) -> u32 {
        self.instance
    }

    /// A keyed hash (a MAC under this process's secret) of `value`.
    pub fn mac<T: Hash>(&self, value: T) -> u64 {
        let mut h = crate::hashbuf::Buffered::new(siphasher::sip::SipHasher13::new_with_keys(
            self.secret.0,
            self.secret.1,
        ));
        value.hash(&mut h);
        h.finish()
    }

    /// Whether sending to `addr` would send to one of our own sockets.
    pub fn is_own_socket(&self, addr: SocketAddr) -> bool {
        self.listeners.iter().any(|l| {
            if l.addr.port() != addr.port() {
                return false;
            }
            let bound = l.addr.ip();
            if bound == addr.ip() {
                return true;
            }
            bound.is_unspecified()
                && (addr.ip().is_unspecified()
                    || addr.ip().is_loopback()
                    || self.local_ips.contains(&addr.ip())
                    || parse_ip(&l.host) == Some(addr.ip()))
        }) || addr.ip().is_unspecified()
            && self.listeners.iter().any(|l| l.addr.port() == addr.port())
    }

    /// Whether `ip` is the address of one of our sockets (for some port
    /// of ours): a datagram from there may be ours, come back.
    pub fn is_own_ip(&self, ip: std::net::IpAddr) -> bool {
        self.listeners
            .iter()
            .any(|l| self.is_own_socket(SocketAddr::new(ip, l.addr.port())))
    }

    /// Whether `host:port` (as written in a Via sent-by or a URI) names this proxy.
    pub fn is_us(&self, host: &str, port: Option<u16>) -> bool {
        let port = port.unwrap_or(DEFAULT_PORT);
        let ip = parse_ip(host);
        self.listeners.iter().any(|l| {
            let same_host = l.host.eq_ignore_ascii_case(host)
                || ip.is_some_and(|ip| ip == l.addr.ip() && !ip.is_unspecified());
            same_host && (port == l.port || port == l.addr.port())
        })
    }

    /// The socket a request to `hop` leaves from, having come in on
    /// `arrival`: one of transport `want` when the next hop asks for one
    /// (None when we have none); else the arrival socket when it is UDP,
    /// else a UDP socket (RFC 3263: UDP when nothing says otherwise), else
    /// the arrival socket. Among several, one of the hop's address family,
    /// the arrival socket first.
    pub fn sending_socket(
        &self,
        arrival: usize,
        want: Option<Transport>,
        hop: &NextHop,
    ) -> Option<usize> {
        let family_ok = |l: &Listener| hop.addr().is_none_or(|a| l.addr.is_ipv4() == a.is_ipv4());
        let pick = |t: Transport| {
            let of = |i: usize| self.listeners.get(i).filter(|l| l.transport == t);
            of(arrival)
                .filter(|l| family_ok(l))
                .map(|_| arrival)
                .or_else(|| {
                    self.listeners
                        .iter()
                        .position(|l| l.transport == t && family_ok(l))
                })
                .or_else(|| of(arrival).map(|_| arrival))
                .or_else(|| self.listeners.iter().position(|l| l.transport == t))
        };
        match want {
            Some(t) => pick(t),
            None => pick(Transport::Udp).or_else(|| self.listeners.get(arrival).map(|_| arrival)),
        }
    }

    /// The transport of socket `index` (UDP for an index we do not have).
    pub fn transport_of(&self, index: usize) -> Transport {
        self.listeners
            .get(index)
            .map_or(Transport::Udp, |l| l.transport)
    }

    /// The listener a message that arrived on socket `index` leaves from.
    pub fn listener(&self, index: usize) -> Option<&Listener> {
        self.listeners.get(index)
    }
}

/// 128 random bits from the OS (getrandom), or, should that fail, from
/// std's per-process random hasher keys.
fn random_key() -> (u64, u64) {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into `bytes`.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == bytes.len() as isize {
        let (a, b) = bytes.split_at(8);
        let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or_default());
        return (word(a), word(b));
    }
    let r = RandomState::new();
    (r.hash_one(1u8), r.hash_one(2u8))
}

/// Split `host[:port]`, with IPv6 in brackets.
pub fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if text.is_empty() {
        return None;
    }
    if text.starts_with('[') {
        let close = text.find(']')?;
        let host = &text[..=close];
        let rest = &text[close + 1..];
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p.parse().ok()?))),
        Some(_) => None,
        None => Some((text, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::new(vec![
            Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap(),
        ])
    }

    #[test]
    fn recognises_itself_by_ip_and_port() {
        let id = identity();
        assert!(id.is_us("127.0.0.1", Some(5060)));
        assert!(id.is_us("127.0.0.1", None));
        assert!(!id.is_us("127.0.0.1", Some(5080)));
        assert!(!id.is_us("127.0.0.2", Some(5060)));
    }

    #[test]
    fn advertised_name_is_us() {
        let l =
            Listener::new("127.0.0.1:5062".parse().unwrap(), Some("proxy.example.com")).unwrap();
        assert_eq!(l.port, 5062);
        assert_eq!(
            l.record_route,
            "Record-Route: <sip:proxy.example.com:5062;lr>\r\n"
        );
        let id = Identity::new(vec![l]);
        assert!(id.is_us("PROXY.example.com", Some(5062)));
    }

    #[test]
    fn own_sockets_by_address() {
        let id = identity();
        assert!(id.is_own_socket("127.0.0.1:5060".parse().unwrap()));
        assert!(!id.is_own_socket("127.0.0.1:5061".parse().unwrap()));
        assert!(!id.is_own_socket("127.0.0.2:5060".parse().unwrap()));
        // Sending to 0.0.0.0 reaches this host.
        assert!(id.is_own_socket("0.0.0.0:5060".parse().unwrap()));
        let mut any = Identity::new(vec![
            Listener::new("0.0.0.0:5070".parse().unwrap(), Some("198.51.100.7")).unwrap(),
        ]);
        any.local_ips = vec!["192.0.2.10".parse().unwrap()];
        assert!(any.is_own_socket("127.0.0.5:5070".parse().unwrap()));
        assert!(any.is_own_socket("192.0.2.10:5070".parse().unwrap()));
        assert!(any.is_own_socket("198.51.100.7:5070".parse().unwrap()));
        assert!(!any.is_own_socket("192.0.2.11:5070".parse().unwrap()));
        assert!(!any.is_own_socket("192.0.2.10:5071".parse().unwrap()));
    }

    #[test]
    fn a_shared_secret_gives_the_same_key() {
        let l = || vec![Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap()];
        let a = Identity::with_secret(l(), b"0123456789abcdef-pool-secret");
        let b = Identity::with_secret(l(), b"0123456789abcdef-pool-secret");
        let c = Identity::with_secret(l(), b"0123456789abcdef-other-secret");
        assert_eq!(a.mac("x"), b.mac("x"));
        assert_ne!(a.mac("x"), c.mac("x"));
        assert_ne!(a.instance(), 0);
    }

    #[test]
    fn keys_differ_per_process_identity() {
        let a = identity();
        let b = identity();
        assert_eq!(a.mac("x"), a.mac("x"));
        assert_ne!(a.mac("x"), b.mac("x"));
    }

    #[test]
    fn unspecified_needs_advertise() {
        assert!(Listener::new("0.0.0.0:5060".parse().unwrap(), None).is_err());
        assert!(Listener::new("0.0.0.0:5060".parse().unwrap(), Some("10.0.0.1:5060")).is_ok());
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("a.b:5"), Some(("a.b", Some(5))));
        assert_eq!(split_host_port("[::1]:5"), Some(("[::1]", Some(5))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_host_port("a.b:x"), None);
    }
}
