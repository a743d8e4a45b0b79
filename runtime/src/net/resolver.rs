//! Sends to next hops given by name: the cache and bounds of
//! [`crate::resolve`], lookups through the system resolver (A/AAAA with
//! `getaddrinfo`, on tokio's blocking threads) on the runtime, never on a
//! receive thread. The message then goes out the way of its listen entry
//! (a datagram, or over a TCP connection: see [`super::Sockets`]).
//!
//! A lookup that takes longer than [`LOOKUP_TIMEOUT`] counts as failed (its
//! messages are dropped, the failure cached), but keeps its slot among the
//! bounded lookups until `getaddrinfo` returns, so slow DNS cannot pile up
//! blocked threads. [`lookup`] is the one place a DNS client (hickory, for
//! RFC 3263 SRV/NAPTR, with real TTLs) would replace.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::metrics::{self, DropReason};
use crate::proxy::{Identity, Outgoing, Payload};
use crate::resolve::{Busy, Cache, Limits, Lookup};
use crate::target::NextHop;

/// The longest a message waits for its next hop's name.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A message waiting for a name.
pub(super) struct Waiting {
    socket: usize,
    port: u16,
    bytes: Payload,
}

/// The name cache and what sending needs.
pub(super) struct Resolver {
    cache: Mutex<Cache<Waiting>>,
    sockets: Arc<super::Sockets>,
    /// Who we are: a name that resolves to one of our own sockets is
    /// never sent to (the request would loop back to us).
    identity: Identity,
    runtime: Handle,
}

impl Resolver {
    /// Must be called inside a tokio runtime (the lookups run on it).
    pub(super) fn new(
        sockets: Arc<super::Sockets>,
        limits: Limits,
        identity: Identity,
    ) -> Resolver {
        Resolver {
            identity,
            cache: Mutex::new(Cache::new(limits)),
            sockets,
            runtime: Handle::current(),
        }
    }

    /// Whether `host` has resolved to `ip` (see [`Cache::has_address`]).
    pub(super) fn knows(&self, host: &str, ip: IpAddr) -> bool {
        self.cache().has_address(host, ip)
    }

    fn cache(&self) -> MutexGuard<'_, Cache<Waiting>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Send `outgoing` (whose next hop is a name) now if the name is known,
    /// after its lookup otherwise, or drop it (unresolvable, or over the
    /// bounds).
    pub(super) fn send(self: &Arc<Self>, outgoing: Outgoing) {
        let Outgoing { socket, to, bytes } = outgoing;
        let NextHop::Name { host, port } = to else {
            return;
        };
        let waiting = Waiting {
            socket,
            port,
            bytes,
        };
        let mut cache = self.cache();
        match cache.lookup(Instant::now(), &host, waiting) {
            Lookup::Known(addrs, waiting) => {
                let addr = self.pick(addrs, &waiting);
                drop(cache);
                match addr {
                    Some(addr) => self.send_to(waiting, addr),
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
                self.runtime.spawn(async move { this.resolve(host).await });
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

    /// An address of the family of the message's socket.
    fn pick(&self, addrs: &[IpAddr], waiting: &Waiting) -> Option<SocketAddr> {
        let v4 = self
            .sockets
            .local(waiting.socket)
            .is_none_or(|a| a.is_ipv4());
        let ip = addrs.iter().find(|ip| ip.is_ipv4() == v4)?;
        Some(SocketAddr::new(*ip, waiting.port))
    }

    fn send_to(&self, waiting: Waiting, addr: SocketAddr) {
        if self.identity.is_own_socket(addr) {
            // The core answers 482 for an address of ours; a name is only
            // known to be ours here, after the core has let the message go.
            metrics::loop_detected();
            metrics::dropped(DropReason::SelfLoop);
            tracing::debug!(%addr, "the next hop's name resolves to this proxy: not sent");
            return;
        }
        self.sockets.send(waiting.socket, waiting.bytes, addr);
    }

    /// Look `host` up, send or drop what waited for it.
    async fn resolve(self: Arc<Self>, host: String) {
        let running = lookup(&host);
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
        let waiters = self
            .cache()
            .answer(Instant::now(), &host, addrs.clone(), None);
        let mut dropped = 0usize;
        for waiting in waiters {
            match self.pick(&addrs, &waiting) {
                Some(addr) => self.send_to(waiting, addr),
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
            // Keep the slot until getaddrinfo gives its thread back.
            let _ = running.await;
        }
        self.cache().release();
    }
}

/// The addresses of `host` (A and AAAA), through the system resolver.
async fn lookup(host: &str) -> io::Result<Vec<IpAddr>> {
    let mut addrs: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
        .await?
        .map(|a| a.ip())
        .collect();
    addrs.dedup();
    Ok(addrs)
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
            ));
            let message = |text: &str| Outgoing {
                socket: 0,
                to: NextHop::Name {
                    host: "localhost".into(),
                    port,
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
            ));
            let loops =
                crate::metrics::sample(&crate::metrics::encode(), "sipforge_loops_detected_total")
                    .unwrap_or(0.0);
            resolver.send(Outgoing {
                socket: 0,
                to: NextHop::Name {
                    host: "localhost".into(),
                    port: ours.port(),
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
