//! Sends to next hops given by name: the cache and bounds of
//! [`crate::resolve`], RFC 3263 lookups (NAPTR, SRV, A/AAAA through
//! [`super::dns`], cached for the records' TTLs) on the runtime, never on a
//! receive thread. The message then goes out the way of its listen entry
//! (a datagram, or over a TCP connection: see [`super::Sockets`]).
//!
//! A lookup that takes longer than [`LOOKUP_TIMEOUT`] counts as failed (its
//! messages are dropped, the failure cached), but keeps its slot among the
//! bounded lookups until it ends, so slow DNS cannot pile up lookups.
//!
//! A message goes to the first target of its name of its socket's address
//! family. The core picks the socket: for a name already looked up, one
//! of the transport of the name's first target it can use (NAPTR/SRV,
//! RFC 3263 §4.1), and the message then goes to the first target of that
//! transport. A message sent to a name that had to be looked up first was
//! built without knowing the answer: when the name's first target turns
//! out to be over another transport (a NAPTR lookup), the message goes
//! back to the core (`Core::retarget`), which moves it to a socket of that
//! transport. Trying the next target on a 503, a timeout or a transport
//! error is the core's too (see [`Resolver::targets`]).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::dns::Dns;
use crate::metrics::{self, DropReason};
use crate::proxy::{Identity, Outgoing, Payload};
use crate::resolve::rfc3263::{Query, Target};
use crate::resolve::{Busy, Cache, Limits, Lookup};
use crate::target::NextHop;
use crate::transport::Transport;

/// The longest a message waits for its next hop's name.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A message waiting for a name.
pub(super) struct Waiting {
    socket: usize,
    bytes: Payload,
    /// Its next hop (the name), for the core when the message goes back
    /// to it (see [`Retarget`]).
    to: NextHop,
}

/// Hands a message back to the core (`Core::retarget`): its bytes, the
/// socket it was built for, the transport of its name's first target, and
/// its next hop; whatever the core sends then is sent.
pub(super) type Retarget = Box<dyn Fn(&[u8], usize, Transport, &NextHop) + Send + Sync>;

/// The name cache and what sending needs.
pub(super) struct Resolver {
    cache: Mutex<Cache<Waiting>>,
    sockets: Arc<super::Sockets>,
    /// Who we are: a name that resolves to one of our own sockets is
    /// never sent to (the request would loop back to us).
    identity: Identity,
    runtime: Handle,
    /// The DNS client (hickory), made once.
    dns: Dns,
    /// Set once by `net::start` (unit tests run without a core).
    retarget: std::sync::OnceLock<Retarget>,
}

impl Resolver {
    /// Must be called inside a tokio runtime (the lookups run on it).
    /// `dns_servers`: the servers to ask (None: the system's
    /// configuration); `supported`: the transports targets may use.
    pub(super) fn new(
        sockets: Arc<super::Sockets>,
        limits: Limits,
        identity: Identity,
        dns_servers: Option<&[SocketAddr]>,
        supported: Vec<Transport>,
    ) -> Resolver {
        let families: Vec<bool> = (0..sockets.len())
            .map(|i| sockets.local(i).is_none_or(|a| a.is_ipv4()))
            .collect();
        let dns = Dns::new(
            dns_servers,
            supported,
            families.iter().any(|&v4| v4),
            families.iter().any(|&v4| !v4),
        );
        Resolver {
            identity,
            cache: Mutex::new(Cache::new(limits)),
            sockets,
            runtime: Handle::current(),
            dns,
            retarget: std::sync::OnceLock::new(),
        }
    }

    /// How to hand a message back to the core (see [`Retarget`]).
    pub(super) fn set_retarget(&self, retarget: Retarget) {
        let _ = self.retarget.set(retarget);
    }

    /// Whether `host` has resolved to `addr`: a target of any lookup of the
    /// name (address, SRV or NAPTR; see [`Cache::has_address`]).
    pub(super) fn knows(&self, host: &str, addr: SocketAddr) -> bool {
        let cache = self.cache();
        Query::keys_of(host, addr.port()).any(|key| cache.has_address(&key, addr))
    }

    /// The targets of a next hop name in the order RFC 3263 tries them
    /// (§4.3: on a 503, a timeout or a transport error, the next one), from
    /// the cache: `port` and `transport` as the URI gives them (see
    /// [`Query::new`]). None when the name has not been looked up (or its
    /// answer expired): sending a message to it looks it up. Some(empty):
    /// the name does not resolve.
    pub(super) fn targets(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
    ) -> Option<Vec<Target>> {
        let query = Query::new(host, port, transport);
        if let Some(target) = query.literal() {
            return Some(vec![target]);
        }
        let mut targets = self.cache().get(Instant::now(), &query.key())?.to_vec();
        if let Query::Address { transport, .. } = query {
            // Kept by host and port only: the transport is the one asked for.
            for t in &mut targets {
                t.transport = transport;
            }
        }
        Some(targets)
    }

    fn cache(&self) -> MutexGuard<'_, Cache<Waiting>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send `outgoing` (whose next hop is a name) now if the name is known,
    /// after its lookup otherwise, or drop it (unresolvable, or over the
    /// bounds).
    pub(super) fn send(self: &Arc<Self>, outgoing: Outgoing) {
        let Outgoing { socket, to, bytes } = outgoing;
        let NextHop::Name {
            host,
            port,
            port_given,
            transport,
        } = to
        else {
            return;
        };
        let query = Query::new(&host, port_given.then_some(port), transport);
        let to = NextHop::Name {
            host: host.clone(),
            port,
            port_given,
            transport,
        };
        let waiting = Waiting { socket, bytes, to };
        let mut cache = self.cache();
        match cache.lookup(Instant::now(), &query.key(), waiting) {
            Lookup::Known(targets, waiting) => {
                // The core chose the socket knowing the answer: the first
                // target of its transport (when a NAPTR lookup gave
                // several). Without one (the answer came in between), the
                // core moves the message as after a lookup.
                let naptr = matches!(query, Query::Naptr { .. });
                let target = self.pick(targets, &waiting, naptr).copied();
                drop(cache);
                match target {
                    Some(target) if naptr && self.hand_back(&waiting, &target) => {}
                    Some(target) => self.send_to(waiting, target.addr, &host),
                    None => {
                        metrics::dropped(DropReason::Unresolved);
                        crate::warn_limited!(
                            host,
                            "next hop not resolved (a cached failure, or no address of the socket's family): dropped"
                        );
                    }
                }
            }
            Lookup::Joined => {}
            Lookup::Start => {
                drop(cache);
                let this = Arc::clone(self);
                self.runtime.spawn(async move { this.resolve(query).await });
            }
            Lookup::Busy(busy, _) => {
                drop(cache);
                metrics::dropped(DropReason::ResolverBusy);
                match busy {
                    Busy::Lookups => crate::warn_limited!(
                        host,
                        "too many next hop names being resolved at once: dropped"
                    ),
                    Busy::Waiting => crate::warn_limited!(
                        host,
                        "too many messages waiting for next hop names: dropped"
                    ),
                }
            }
        }
    }

    /// The first target of the family of the message's socket; with
    /// `same_transport`, the first one of the socket's transport too if
    /// there is one.
    fn pick<'t>(
        &self,
        targets: &'t [Target],
        waiting: &Waiting,
        same_transport: bool,
    ) -> Option<&'t Target> {
        let v4 = self
            .sockets
            .local(waiting.socket)
            .is_none_or(|a| a.is_ipv4());
        let transport = self.identity.transport_of(waiting.socket);
        let mut family = targets.iter().filter(|t| t.addr.is_ipv4() == v4);
        match same_transport {
            true => family
                .clone()
                .find(|t| t.transport == transport)
                .or_else(|| family.next()),
            false => family.next(),
        }
    }

    /// A message built before its name was looked up, whose target is
    /// over another transport than its socket's: back to the core, which
    /// moves it to a socket of that transport. True when it went back.
    fn hand_back(&self, waiting: &Waiting, target: &Target) -> bool {
        if target.transport == self.identity.transport_of(waiting.socket) {
            return false;
        }
        let Some(retarget) = self.retarget.get() else {
            return false;
        };
        retarget(
            waiting.bytes.as_ref(),
            waiting.socket,
            target.transport,
            &waiting.to,
        );
        true
    }

    fn send_to(&self, waiting: Waiting, addr: SocketAddr, host: &str) {
        if self.identity.is_own_socket(addr) {
            // The core answers 482 for an address of ours; a name is only
            // known to be ours here, after the core has let the message go.
            metrics::loop_detected();
            metrics::dropped(DropReason::SelfLoop);
            tracing::debug!(%addr, "the next hop's name resolves to this proxy: not sent");
            return;
        }
        self.sockets
            .send_named(waiting.socket, waiting.bytes, addr, Some(host));
    }

    /// Look `query` up, send or drop what waited for it.
    async fn resolve(self: Arc<Self>, query: Query) {
        let host = query.host().to_owned();
        let running = lookup(&self.dns, &query);
        tokio::pin!(running);
        let (result, timed_out) = match tokio::time::timeout(LOOKUP_TIMEOUT, &mut running).await {
            Ok(result) => (result, false),
            Err(_) => (
                Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
                true,
            ),
        };
        metrics::name_lookup(result.as_ref().is_ok_and(|a| !a.is_empty()));
        let (addrs, error) = match result {
            Ok(addrs) => (addrs, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let ttl = crate::resolve::rfc3263::answer_ttl(&addrs);
        let waiters = self
            .cache()
            .answer(Instant::now(), &query.key(), addrs.clone(), ttl);
        let mut dropped = 0usize;
        let naptr = matches!(query, Query::Naptr { .. });
        for waiting in waiters {
            match self.pick(&addrs, &waiting, false) {
                // Only a NAPTR lookup chooses the transport (RFC 3263 §4.1).
                Some(target) if naptr && self.hand_back(&waiting, target) => {}
                Some(target) => self.send_to(waiting, target.addr, &host),
                None => dropped += 1,
            }
        }
        if dropped > 0 {
            for _ in 0..dropped {
                metrics::dropped(DropReason::Unresolved);
            }
            match error {
                Some(e) => {
                    crate::warn_limited!(host, dropped, "cannot resolve the next hop: {e}; dropped")
                }
                None if addrs.is_empty() => crate::warn_limited!(
                    host,
                    dropped,
                    "the next hop's name has no address: dropped"
                ),
                None => crate::warn_limited!(
                    host,
                    dropped,
                    "no address of the socket's family for the next hop: dropped"
                ),
            }
        }
        if timed_out {
            // Keep the slot until the lookup ends.
            let _ = running.await;
        }
        self.cache().release();
    }
}

/// The targets of `query` in order (RFC 3263: NAPTR, SRV, A/AAAA; see
/// [`Dns::resolve`]).
async fn lookup(dns: &Dns, query: &Query) -> io::Result<Vec<Target>> {
    dns.resolve(query).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn a_name_resolves_and_the_datagrams_arrive() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let from = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
            let to = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let port = to.local_addr().unwrap().port();
            let us = crate::proxy::Listener::new(from.local_addr().unwrap(), None).unwrap();
            let identity = Identity::new(vec![us]);
            let resolver = Arc::new(Resolver::new(
                crate::net::Sockets::udp_only(vec![from]),
                Limits::default(),
                identity,
                None,
                vec![Transport::Udp],
            ));
            let message = |text: &str| Outgoing {
                socket: 0,
                to: NextHop::Name {
                    host: "localhost".into(),
                    port,
                    port_given: true,
                    transport: None,
                },
                bytes: Payload::Owned(text.as_bytes().to_vec()),
            };
            // The second waits for the first one's lookup; the third, sent
            // after it, finds the answer in the cache.
            resolver.send(message("one"));
            resolver.send(message("two"));
            let mut buf = [0u8; 16];
            let mut got = Vec::new();
            for _ in 0..2 {
                let (n, _) = tokio::time::timeout(Duration::from_secs(5), to.recv_from(&mut buf))
                    .await
                    .expect("the datagram arrives")
                    .unwrap();
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            assert_eq!(got, ["one", "two"]);
            // The lookup task ends (its slot freed) right after sending.
            while resolver.cache().in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            resolver.send(message("three"));
            let (n, _) = to.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"three");
        });
    }

    #[test]
    fn a_name_that_resolves_to_one_of_our_sockets_is_not_sent_to() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let std_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let ours = std_socket.local_addr().unwrap();
            let receiver = tokio::net::UdpSocket::from_std({
                let clone = std_socket.try_clone().unwrap();
                clone.set_nonblocking(true).unwrap();
                clone
            })
            .unwrap();
            let us = crate::proxy::Listener::new(ours, None).unwrap();
            let resolver = Arc::new(Resolver::new(
                crate::net::Sockets::udp_only(vec![Arc::new(std_socket)]),
                Limits::default(),
                Identity::new(vec![us]),
                None,
                vec![Transport::Udp],
            ));
            let loops =
                crate::metrics::sample(&crate::metrics::encode(), "sipforge_loops_detected_total")
                    .unwrap_or(0.0);
            resolver.send(Outgoing {
                socket: 0,
                to: NextHop::Name {
                    host: "localhost".into(),
                    port: ours.port(),
                    port_given: true,
                    transport: None,
                },
                bytes: Payload::Owned(b"to myself".to_vec()),
            });
            // The lookup runs, then the send is refused and counted.
            let deadline = Instant::now() + Duration::from_secs(5);
            while crate::metrics::sample(&crate::metrics::encode(), "sipforge_loops_detected_total")
                .unwrap_or(0.0)
                <= loops
            {
                assert!(Instant::now() < deadline, "the self-send was never counted");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut buf = [0u8; 32];
            let got =
                tokio::time::timeout(Duration::from_millis(200), receiver.recv_from(&mut buf))
                    .await;
            assert!(got.is_err(), "a datagram reached our own socket");
        });
    }
}
