//! The DNS queries of RFC 3263 (NAPTR, SRV, A, AAAA) with hickory-resolver,
//! asking the `dns.servers` of the routes file (or `net::Options`' override)
//! over UDP and TCP, else the system's configuration (`/etc/resolv.conf`);
//! `/etc/hosts` is read in both cases. The order of the targets is decided
//! by [`crate::resolve::rfc3263`] from the records and their TTLs; the
//! caching is `crate::resolve::Cache`'s (hickory keeps a small cache of
//! its own, within the same TTLs).
//!
//! Each query waits [`QUERY_TIMEOUT`] per try, [`QUERY_ATTEMPTS`] tries; the
//! whole resolution is bounded by the caller (`resolver::LOOKUP_TIMEOUT`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use crate::resolve::rfc3263::{self, Addrs, Naptr, Query, Rng, Srv, Target};
use crate::transport::Transport;

/// How long one try of one query waits for its answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries of one query (over the configured servers) before it fails.
pub const QUERY_ATTEMPTS: usize = 2;

/// A DNS client for RFC 3263 lookups.
pub struct Dns {
    resolver: TokioResolver,
    /// The transports targets may use (the listening sockets').
    supported: Vec<Transport>,
    /// Which address families to ask for (A: IPv4, AAAA: IPv6), after the
    /// sockets we send from.
    v4: bool,
    v6: bool,
    rng: Mutex<Rng>,
}

impl Dns {
    /// A client asking `servers` (None: the system's configuration; when it
    /// cannot be read, 127.0.0.1:53 as the C library would), for targets
    /// over the `supported` transports of the families `v4`/`v6`.
    pub fn new(
        servers: Option<&[SocketAddr]>,
        supported: Vec<Transport>,
        v4: bool,
        v6: bool,
    ) -> Dns {
        let provider = TokioRuntimeProvider::default();
        let local = || {
            let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
            Resolver::builder_with_config(config(&[server]), TokioRuntimeProvider::default())
        };
        let mut builder = match servers {
            Some(servers) => Resolver::builder_with_config(config(servers), provider),
            None => TokioResolver::builder(provider).unwrap_or_else(|e| {
                tracing::warn!(
                    "cannot read the system's DNS configuration ({e}): asking 127.0.0.1:53"
                );
                local()
            }),
        };
        let options = builder.options_mut();
        options.timeout = QUERY_TIMEOUT;
        options.attempts = QUERY_ATTEMPTS;
        options.positive_max_ttl = Some(rfc3263::MAX_TTL);
        let resolver = builder.build().unwrap_or_else(|e| {
            tracing::warn!("cannot set the DNS client up ({e}): asking 127.0.0.1:53");
            local()
                .build()
                .expect("a resolver with a fixed configuration")
        });
        Dns {
            resolver,
            supported,
            v4: v4 || !v6,
            v6,
            rng: Mutex::new(Rng::from_entropy()),
        }
    }

    /// The targets of `query` in the order to try them (empty: the name
    /// has none); an error when the DNS could not be asked (timeouts,
    /// refused, unreachable).
    pub async fn resolve(&self, query: &Query) -> io::Result<Vec<Target>> {
        if let Some(target) = query.literal() {
            return Ok(vec![target]);
        }
        let naptr = match query {
            Query::Naptr { host } => self.naptr(host).await?,
            _ => Vec::new(),
        };
        let mut sets = rfc3263::srv_queries(query, &naptr, &self.supported);
        for set in &mut sets {
            set.records = self.srv(&set.name).await?;
        }
        if rfc3263::needs_fallback(query, &sets) {
            let found = self.addrs(query.host()).await?;
            return Ok(rfc3263::address_targets(query, &self.supported, &found));
        }
        let mut found = HashMap::new();
        for host in rfc3263::srv_hosts(&sets) {
            // SRV targets are absolute names: no search list.
            match self.addrs(&format!("{host}.")).await {
                Ok(addrs) => {
                    found.insert(host, addrs);
                }
                Err(e) => tracing::debug!(%host, "SRV target not resolved: {e}"),
            }
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        Ok(rfc3263::srv_targets(&sets, &found, &mut |n| rng.up_to(n)))
    }

    /// The records of `name` of type `rtype` (none: empty, not an error).
    async fn records(&self, name: &str, rtype: RecordType) -> io::Result<Vec<(RData, u32)>> {
        match self.resolver.lookup(name, rtype).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| (r.data.clone(), r.ttl))
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(io_error(name, rtype, e)),
        }
    }

    async fn naptr(&self, host: &str) -> io::Result<Vec<Naptr>> {
        Ok(self
            .records(host, RecordType::NAPTR)
            .await?
            .into_iter()
            .filter_map(|(data, ttl)| match data {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    service: String::from_utf8_lossy(&n.services).into_owned(),
                    replacement: name_text(&n.replacement.to_string()),
                    ttl,
                }),
                _ => None,
            })
            .collect())
    }

    async fn srv(&self, name: &str) -> io::Result<Vec<Srv>> {
        Ok(self
            .records(name, RecordType::SRV)
            .await?
            .into_iter()
            .filter_map(|(data, ttl)| match data {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: name_text(&s.target.to_string()),
                    ttl,
                }),
                _ => None,
            })
            .collect())
    }

    /// The A (and AAAA, for IPv6 sockets) records of `host`, the smallest TTL.
    async fn addrs(&self, host: &str) -> io::Result<Addrs> {
        let none = || async { Ok(Vec::new()) };
        let (a, aaaa) = tokio::join!(
            async {
                match self.v4 {
                    true => self.records(host, RecordType::A).await,
                    false => none().await,
                }
            },
            async {
                match self.v6 {
                    true => self.records(host, RecordType::AAAA).await,
                    false => none().await,
                }
            },
        );
        let (a, aaaa) = match (a, aaaa) {
            (Err(e), Err(_)) => return Err(e),
            (Err(e), _) if !self.v6 => return Err(e),
            (_, Err(e)) if !self.v4 => return Err(e),
            (a, aaaa) => (a.unwrap_or_default(), aaaa.unwrap_or_default()),
        };
        let mut found = Addrs {
            ips: Vec::new(),
            ttl: u32::MAX,
        };
        for (data, ttl) in a.into_iter().chain(aaaa) {
            let ip = match data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                _ => continue,
            };
            if !found.ips.contains(&ip) {
                found.ips.push(ip);
            }
            found.ttl = found.ttl.min(ttl);
        }
        Ok(found)
    }
}

/// Servers as `IP:PORT`, each over UDP and TCP.
fn config(servers: &[SocketAddr]) -> ResolverConfig {
    ResolverConfig::from_name_servers(
        servers
            .iter()
            .map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            })
            .collect(),
    )
}

/// A DNS name as text, lowercase, without the root's dot (`.` stays `.`).
fn name_text(name: &str) -> String {
    match name.trim_end_matches('.') {
        "" => ".".to_owned(),
        bare => bare.to_ascii_lowercase(),
    }
}

fn io_error(name: &str, rtype: RecordType, e: NetError) -> io::Error {
    let kind = if matches!(e, NetError::Timeout) {
        io::ErrorKind::TimedOut
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, format!("{rtype} {name}: {e}"))
}
