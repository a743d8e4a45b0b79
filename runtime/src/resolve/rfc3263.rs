//! RFC 3263 §4 (locating a SIP server), sans IO: what to look up for a next
//! hop, and the ordered targets to try from the answers (NAPTR, SRV and
//! A/AAAA records given as plain values). `net::dns` runs the queries.
//!
//! - A port in the URI (or an IP literal): A/AAAA only; the transport is
//!   the URI's, else UDP ([`Query::Address`]).
//! - A transport in the URI (`;transport=`, `sips:`) and no port: the SRV
//!   records of that transport only ([`Query::Srv`]).
//! - Neither: NAPTR first (§4.1: services `SIP+D2U`, `SIP+D2T`,
//!   `SIPS+D2T`, and `SIP+D2W`/`SIPS+D2W` of RFC 7118, by order then
//!   preference, among the transports we can use), SRV for each supported
//!   transport when there is no usable NAPTR record ([`Query::Naptr`]).
//! - SRV records are ordered by priority, and within a priority by the
//!   weighted random selection of RFC 2782 ([`order_srv`]). A lone `.`
//!   target means the service is not offered: no targets. No SRV record at
//!   all: the host's own A/AAAA records, on the transport's default port.
//!
//! Every [`Target`] carries the smallest TTL of the records it came from.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::target::parse_ip;
use crate::transport::Transport;

/// The shortest an answer is kept (a TTL of 0 would mean a lookup per message).
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest an answer is kept, whatever its TTL.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// A record TTL (seconds) within [`MIN_TTL`]..=[`MAX_TTL`].
pub fn clamp_ttl(seconds: u32) -> Duration {
    Duration::from_secs(u64::from(seconds)).clamp(MIN_TTL, MAX_TTL)
}

/// One place to send a request to, in the order to try them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// How long the records it came from are valid (clamped, see [`clamp_ttl`]).
    pub ttl: Duration,
}

/// A NAPTR record (RFC 3403), the fields RFC 3263 reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub service: String,
    /// The SRV name to query (the `s` flag).
    pub replacement: String,
    pub ttl: u32,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// A host name; `.`: the service is not available.
    pub target: String,
    pub ttl: u32,
}

/// The A/AAAA answer for a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addrs {
    pub ips: Vec<IpAddr>,
    pub ttl: u32,
}

/// What to look up for a next hop (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// A port was given (or the host is an IP literal): A/AAAA only.
    Address {
        host: String,
        port: u16,
        transport: Transport,
    },
    /// A transport was given without a port: its SRV records only.
    Srv { host: String, transport: Transport },
    /// Neither: NAPTR, then SRV, then A/AAAA.
    Naptr { host: String },
}

impl Query {
    /// The lookup for `host` (lowercase, no trailing dot), the URI's port
    /// and transport (`;transport=`, or TLS for `sips:`, see
    /// [`crate::target::uri_transport`]).
    pub fn new(host: &str, port: Option<u16>, transport: Option<Transport>) -> Query {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match (port, transport) {
            (Some(port), t) => Query::Address {
                host,
                port,
                transport: t.unwrap_or_default(),
            },
            (None, t) if parse_ip(&host).is_some() => {
                let transport = t.unwrap_or_default();
                Query::Address {
                    host,
                    port: transport.default_port(),
                    transport,
                }
            }
            (None, Some(transport)) => Query::Srv { host, transport },
            (None, None) => Query::Naptr { host },
        }
    }

    pub fn host(&self) -> &str {
        match self {
            Query::Address { host, .. } | Query::Srv { host, .. } | Query::Naptr { host } => host,
        }
    }

    /// The cache key of this lookup's answer: `host:port` (an address
    /// lookup, whatever the transport), `host;transport=tcp` (SRV), `host`
    /// (NAPTR).
    pub fn key(&self) -> String {
        match self {
            Query::Address { host, port, .. } => format!("{host}:{port}"),
            Query::Srv { host, transport } => format!("{host};transport={transport}"),
            Query::Naptr { host } => host.clone(),
        }
    }

    /// Every key an answer for `host` may be kept under when a response
    /// comes from port `port` (see [`Query::key`]): how a response's source
    /// is checked against every target of every lookup of the name.
    pub fn keys_of(host: &str, port: u16) -> impl Iterator<Item = String> + '_ {
        [format!("{host}:{port}"), host.to_owned()]
            .into_iter()
            .chain(
                Transport::ALL
                    .into_iter()
                    .map(move |t| format!("{host};transport={t}")),
            )
    }

    /// The target of an IP literal, which needs no lookup.
    pub fn literal(&self) -> Option<Target> {
        match self {
            Query::Address {
                host,
                port,
                transport,
            } => parse_ip(host).map(|ip| Target {
                transport: *transport,
                addr: SocketAddr::new(ip, *port),
                ttl: MAX_TTL,
            }),
            _ => None,
        }
    }
}

/// The transport a NAPTR service field names, if SIP's (RFC 3263 §4.1,
/// RFC 7118 §5 for WebSocket).
pub fn naptr_transport(service: &str) -> Option<Transport> {
    const SERVICES: [(&str, Transport); 5] = [
        ("SIP+D2U", Transport::Udp),
        ("SIP+D2T", Transport::Tcp),
        ("SIPS+D2T", Transport::Tls),
        ("SIP+D2W", Transport::Ws),
        ("SIPS+D2W", Transport::Wss),
    ];
    SERVICES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(service))
        .map(|&(_, t)| t)
}

/// The SRV name of `transport` for `host` (`_sip._udp.host`,
/// `_sip._tcp.host`, `_sips._tcp.host`); None for WebSocket, which has no
/// standard SRV name.
pub fn srv_name(transport: Transport, host: &str) -> Option<String> {
    let prefix = match transport {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
        Transport::Ws | Transport::Wss => return None,
    };
    Some(format!("{prefix}.{host}"))
}

/// One SRV query of a resolution and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvSet {
    pub transport: Transport,
    /// The SRV name to ask.
    pub name: String,
    /// The TTL of the NAPTR record that named it, if one did.
    pub naptr_ttl: Option<u32>,
    /// The answer (empty until asked, or when there is none).
    pub records: Vec<Srv>,
}

/// The SRV queries to make, in order. For [`Query::Srv`], the one of its
/// transport; for [`Query::Naptr`], those the usable NAPTR records name
/// (flag `s`, a SIP service over a `supported` transport; by order, then
/// preference), else one per supported transport (UDP, TCP, TLS). None for
/// [`Query::Address`].
pub fn srv_queries(query: &Query, naptr: &[Naptr], supported: &[Transport]) -> Vec<SrvSet> {
    let set = |transport, name, naptr_ttl| SrvSet {
        transport,
        name,
        naptr_ttl,
        records: Vec::new(),
    };
    match query {
        Query::Address { .. } => Vec::new(),
        Query::Srv { host, transport } => srv_name(*transport, host)
            .map(|name| set(*transport, name, None))
            .into_iter()
            .collect(),
        Query::Naptr { host } => {
            let mut usable: Vec<(&Naptr, Transport)> = naptr
                .iter()
                .filter(|n| n.flags.eq_ignore_ascii_case("s"))
                .filter(|n| !n.replacement.is_empty() && n.replacement != ".")
                .filter_map(|n| Some((n, naptr_transport(&n.service)?)))
                .filter(|(_, t)| supported.contains(t))
                .collect();
            usable.sort_by_key(|(n, _)| (n.order, n.preference));
            if !usable.is_empty() {
                return usable
                    .into_iter()
                    .map(|(n, t)| {
                        let name = n.replacement.trim_end_matches('.').to_ascii_lowercase();
                        set(t, name, Some(n.ttl))
                    })
                    .collect();
            }
            [Transport::Udp, Transport::Tcp, Transport::Tls]
                .into_iter()
                .filter(|t| supported.contains(t))
                .filter_map(|t| Some(set(t, srv_name(t, host)?, None)))
                .collect()
        }
    }
}

/// Order SRV records the RFC 2782 way: by priority, and within a priority
/// by weighted random selection (`random(n)` returns a number in `0..=n`).
/// The `.` target (service not available) is left out.
pub fn order_srv(records: &[Srv], random: &mut impl FnMut(u32) -> u32) -> Vec<Srv> {
    let mut left: Vec<Srv> = records
        .iter()
        .filter(|r| !is_root(&r.target))
        .cloned()
        .collect();
    // Stable: within a priority the weight-0 records come first, as the
    // RFC asks, and the rest keep their order.
    left.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut ordered = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let priority = left[0].priority;
        let group = left.iter().take_while(|r| r.priority == priority).count();
        let total: u32 = left[..group].iter().map(|r| u32::from(r.weight)).sum();
        let draw = random(total).min(total);
        let mut sum = 0u32;
        let pick = left[..group]
            .iter()
            .position(|r| {
                sum += u32::from(r.weight);
                sum >= draw
            })
            .unwrap_or(0);
        ordered.push(left.remove(pick));
    }
    ordered
}

fn is_root(name: &str) -> bool {
    name.is_empty() || name == "."
}

/// The names whose A/AAAA records the SRV answers need, in order, once each.
pub fn srv_hosts(sets: &[SrvSet]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in sets.iter().flat_map(|s| &s.records) {
        let name = r.target.trim_end_matches('.').to_ascii_lowercase();
        if !is_root(&r.target) && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Whether no SRV query found a record: the host's own A/AAAA records are
/// then used (§4.2), on [`fallback`]'s transport and port.
pub fn needs_fallback(query: &Query, sets: &[SrvSet]) -> bool {
    match query {
        Query::Address { .. } => true,
        _ => sets.iter().all(|s| s.records.is_empty()),
    }
}

/// The transport and port of the host's own addresses when there is no SRV
/// record: the URI's port and transport; else the transport asked for (or
/// UDP, else the first supported) on its default port.
pub fn fallback(query: &Query, supported: &[Transport]) -> (Transport, u16) {
    match query {
        Query::Address {
            port, transport, ..
        } => (*transport, *port),
        Query::Srv { transport, .. } => (*transport, transport.default_port()),
        Query::Naptr { .. } => {
            let t = if supported.contains(&Transport::Udp) || supported.is_empty() {
                Transport::Udp
            } else {
                supported[0]
            };
            (t, t.default_port())
        }
    }
}

/// The targets of the SRV answers, in order (see [`order_srv`]), with the
/// addresses of their hosts (`addrs`, by lowercase name without the
/// trailing dot); a target whose host has no address is left out.
pub fn srv_targets(
    sets: &[SrvSet],
    addrs: &HashMap<String, Addrs>,
    random: &mut impl FnMut(u32) -> u32,
) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for set in sets {
        for srv in order_srv(&set.records, random) {
            let host = srv.target.trim_end_matches('.').to_ascii_lowercase();
            let Some(found) = addrs.get(&host) else {
                continue;
            };
            let ttl = set
                .naptr_ttl
                .unwrap_or(u32::MAX)
                .min(srv.ttl)
                .min(found.ttl);
            push_all(&mut out, set.transport, &found.ips, srv.port, ttl);
        }
    }
    out
}

/// The targets of the host's own addresses (no SRV record, or an address
/// lookup), see [`fallback`].
pub fn address_targets(query: &Query, supported: &[Transport], found: &Addrs) -> Vec<Target> {
    let (transport, port) = fallback(query, supported);
    let mut out = Vec::new();
    push_all(&mut out, transport, &found.ips, port, found.ttl);
    out
}

fn push_all(out: &mut Vec<Target>, transport: Transport, ips: &[IpAddr], port: u16, ttl: u32) {
    for ip in ips {
        let target = Target {
            transport,
            addr: SocketAddr::new(*ip, port),
            ttl: clamp_ttl(ttl),
        };
        if !out
            .iter()
            .any(|t| t.transport == target.transport && t.addr == target.addr)
        {
            out.push(target);
        }
    }
}

/// How long a resolution's answer is kept: the shortest TTL of its targets
/// (None without targets: the cache's negative TTL).
pub fn answer_ttl(targets: &[Target]) -> Option<Duration> {
    targets.iter().map(|t| t.ttl).min()
}

/// A small random source for [`order_srv`] (xorshift64*): SRV weights
/// spread load, they need no cryptographic randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is replaced: xorshift would stay at 0).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// Seeded from the process's random hasher keys and the clock.
    pub fn from_entropy() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Rng::new(h.finish())
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..=n`.
    pub fn up_to(&mut self, n: u32) -> u32 {
        (self.next() % (u64::from(n) + 1)) as u32
    }
}

#[cfg(test)]
mod tests;
