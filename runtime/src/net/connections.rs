//! The connection table: every open connection (accepted or opened by us)
//! by transport and peer address, with the queue its writer task reads.
//!
//! Any thread may send: a receive thread (a std thread), a timer thread, a
//! task of a runtime. [`Connections::route`] never blocks: it puts the
//! message on the connection's bounded queue with `try_send` (a full queue
//! drops it, as the network would), or, when the peer has no connection,
//! registers a new one at once, so that the messages that follow queue
//! behind the first while the connect runs (one connect per peer, not one
//! per message). Connections are reused in both directions (RFC 5923
//! style): one the peer opened to us carries our requests to its address.
//!
//! A plain TCP connection is also written to directly by the sending
//! thread when nothing waits on its queue ([`Direct`]): most messages
//! then cost one send(2) and no wake-up of the writer task (Kamailio's
//! `tcp_async` writes the same way). Only what the socket does not take
//! at once goes through the queue, and everything after it queues behind
//! it, so the stream keeps the order messages were sent in.
//!
//! Bounds: at most [`Limits::max_connections`] connections (accepted and
//! opened together; over it an accept is closed at once and a send is
//! dropped), of which the ones we open take at most three quarters (a
//! quarter stays for peers that connect to us, however many connections
//! requests routed to unreachable hosts keep opening), at most [`Limits::max_per_source`] of them with one remote
//! host (so one host cannot take every slot and lock the others out), a
//! queue per connection bounded in messages and bytes ([`super::queue`]). The table is
//! sharded by peer, so senders to different peers rarely meet on a lock.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use super::queue::{Queue, Queued};

use crate::metrics;
use crate::proxy::Payload;
use crate::transport::Transport;

const SHARDS: usize = 16;

/// The bounds of stream connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once (accepted and opened together).
    pub max_connections: usize,
    /// Most connections with one remote host at once, accepted from it or
    /// opened to it (an IPv4 address, or an IPv6 /64), so that one host
    /// cannot take every slot.
    pub max_per_source: usize,
    /// A connection without traffic (either way; a keep-alive counts) for
    /// this long is closed.
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte arrived
    /// (slow senders cannot keep a connection and its buffer forever).
    pub header_timeout: Duration,
    /// The largest message, header section and body (see [`super::framing`]).
    pub max_message: usize,
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// How long one write may wait for the peer to read (then the
    /// connection is closed).
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            max_per_source: 512,
            idle_timeout: Duration::from_secs(600),
            header_timeout: Duration::from_secs(10),
            max_message: super::framing::MAX_MESSAGE,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Which connection: its transport and the peer's address.
pub type Key = (Transport, SocketAddr);

/// The sending side of a connection.
struct Handle {
    id: u64,
    queue: Queue,
    /// Plain TCP, once connected: its socket, written to directly.
    direct: Option<Arc<Direct>>,
}

/// A connection's socket that senders write to directly while its
/// writer task has nothing queued (see the module doc).
pub struct Direct {
    half: tokio::net::tcp::OwnedWriteHalf,
    /// Messages on the queue not yet written by the writer task: while
    /// there are any, a send queues behind them. The lock also keeps two
    /// direct writes from interleaving.
    pending: Mutex<usize>,
    activity: Arc<Activity>,
}

impl Direct {
    pub fn new(half: tokio::net::tcp::OwnedWriteHalf, activity: Arc<Activity>) -> Direct {
        Direct {
            half,
            pending: Mutex::new(0),
            activity,
        }
    }

    fn pending(&self) -> MutexGuard<'_, usize> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write `bytes` now if nothing is queued and the socket takes them;
    /// else queue them (what is left of them) for the writer task.
    pub fn send(
        &self,
        queue: &Queue,
        bytes: Payload,
    ) -> Result<(), mpsc::error::TrySendError<Payload>> {
        let mut pending = self.pending();
        let mut bytes = bytes;
        if *pending == 0 {
            match self.half.try_write(bytes.as_ref()) {
                Ok(n) if n == bytes.as_ref().len() => {
                    self.activity.touch();
                    return Ok(());
                }
                Ok(n) => bytes = Payload::Owned(bytes.as_ref()[n..].to_vec()),
                // Would block, or failed: the writer task finds out which.
                Err(_) => {}
            }
        }
        queue.try_send(bytes)?;
        *pending += 1;
        Ok(())
    }

    /// The writer task's side: write one queued message (waiting for the
    /// socket to take it), then count it done.
    pub async fn write_queued(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            self.half.writable().await?;
            match self.half.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        let mut pending = self.pending();
        *pending = pending.saturating_sub(1);
        Ok(())
    }
}

/// Send on a connection: directly when it has a [`Direct`] socket, else
/// on its queue.
pub fn send_on(
    direct: Option<&Direct>,
    queue: &Queue,
    bytes: Payload,
) -> Result<(), mpsc::error::TrySendError<Payload>> {
    match direct {
        Some(direct) => direct.send(queue, bytes),
        None => queue.try_send(bytes),
    }
}

/// What [`Connections::route`] did with a message.
pub enum Routed {
    /// Queued on an open (or opening) connection.
    Queued,
    /// Not sent (given back): the connection's queue is full.
    Full(Payload),
    /// Not sent (given back): too many connections to open another one.
    Limit(Payload),
    /// The message waits on the queue of a new connection, registered as
    /// `id`: the caller connects and runs it.
    Connect(Opening),
}

/// What [`Connections::deliver`] did with a message.
pub enum Delivered {
    /// Queued on the open connection.
    Queued,
    /// Dropped: the connection's queue is full.
    Full,
    /// Dropped: no open connection to the peer.
    NotOpen,
}

/// A connection registered in the table but not yet connected.
pub struct Opening {
    pub id: u64,
    pub queue: Queue,
    pub queued: Queued,
    pub slot: Slot,
}

/// One connection counted against the limits and in the open gauge, until dropped.
pub struct Slot {
    table: Arc<Connections>,
    transport: Transport,
    /// The remote source it counts against ([`Limits::max_per_source`]).
    source: Option<u128>,
    /// Accepted from a peer (not opened by us).
    accepted: bool,
    /// Counted among the connections we open ([`Connections::max_opened`]).
    opened: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.open.fetch_sub(1, Ordering::Relaxed);
        if self.opened {
            self.table.opened.fetch_sub(1, Ordering::Relaxed);
        }
        metrics::connections_open(self.transport, -1);
        if let Some(source) = self.source {
            let mut counts = self
                .table
                .per_source
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Entry::Occupied(mut n) = counts.entry(source) {
                *n.get_mut() -= 1;
                if *n.get() == 0 {
                    n.remove();
                }
            }
        }
    }
}

impl Slot {
    /// Whether it counts a connection accepted from a peer (not one we opened).
    pub fn accepted(&self) -> bool {
        self.accepted
    }
}

/// Why a connection cannot be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`Limits::max_connections`] are open.
    Full,
    /// Its source has [`Limits::max_per_source`] open.
    SourceFull,
}

/// When a connection last carried traffic (read or written).
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Traffic now.
    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// The last traffic.
    pub fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

impl Default for Activity {
    fn default() -> Activity {
        Activity::new()
    }
}

/// The table.
pub struct Connections {
    shards: Box<[Mutex<HashMap<Key, Handle>>]>,
    hasher: RandomState,
    next_id: AtomicU64,
    open: AtomicUsize,
    /// Of those, the ones we opened (or are opening).
    opened: AtomicUsize,
    /// Connections open, accepted or opened, by remote source (IPv6 by /64).
    per_source: Mutex<HashMap<u128, usize>>,
    pub limits: Limits,
    /// The second (since `started`) of the last "connection limit" log line.
    limit_logged: AtomicU64,
    started: Instant,
}

impl Connections {
    pub fn new(limits: Limits) -> Arc<Connections> {
        Arc::new(Connections {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            opened: AtomicUsize::new(0),
            per_source: Mutex::new(HashMap::new()),
            limits,
            limit_logged: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        })
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, HashMap<Key, Handle>> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a connection for `key` is registered (open, or opening).
    pub fn has(&self, key: Key) -> bool {
        self.shard(&key).contains_key(&key)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Count one more connection of `transport` that we open, if under the limits.
    pub fn reserve(self: &Arc<Self>, transport: Transport) -> Option<Slot> {
        self.reserve_from(transport, None, false).ok()
    }

    /// The most connections we open ourselves: three quarters of
    /// [`Limits::max_connections`]. The rest is kept for connections
    /// peers open to us: a flood of requests routed to hosts that never
    /// answer a connect (each attempt held for the connect timeout) must
    /// not lock out the phones.
    pub fn max_opened(&self) -> usize {
        let max = self.limits.max_connections;
        (max - max / 4).max(1)
    }

    /// Count one more connection of `transport` with the remote host
    /// `source` (None: count it against the total only), `accepted` from
    /// it or opened by us, if under the limits.
    pub fn reserve_from(
        self: &Arc<Self>,
        transport: Transport,
        source: Option<IpAddr>,
        accepted: bool,
    ) -> Result<Slot, Refused> {
        if !accepted {
            let max = self.max_opened();
            self.opened
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                })
                .map_err(|_| Refused::Full)?;
        }
        let max = self.limits.max_connections;
        if self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            if !accepted {
                self.opened.fetch_sub(1, Ordering::Relaxed);
            }
            return Err(Refused::Full);
        }
        metrics::connections_open(transport, 1);
        // From here the slot gives back what it took when dropped.
        let mut slot = Slot {
            table: Arc::clone(self),
            transport,
            source: None,
            accepted,
            opened: !accepted,
        };
        if let Some(ip) = source {
            let key = crate::limits::source_key(ip, crate::limits::DEFAULT_IPV6_PREFIX);
            let mut counts = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(key).or_insert(0);
            if *n >= self.limits.max_per_source {
                return Err(Refused::SourceFull);
            }
            *n += 1;
            slot.source = Some(key);
        }
        Ok(slot)
    }

    /// Admit a connection of `transport` just accepted from `peer`: its
    /// slot, or None when it must be closed at once (counted, and one
    /// rate-limited line): over [`Limits::max_connections`], over
    /// [`Limits::max_per_source`], or from a source `banned` by
    /// `limits.per_source`.
    pub fn admit(
        self: &Arc<Self>,
        transport: Transport,
        peer: SocketAddr,
        banned: bool,
    ) -> Option<Slot> {
        if banned {
            metrics::connection_closed(metrics::CloseReason::Banned);
            return None;
        }
        match self.reserve_from(transport, Some(peer.ip()), true) {
            Ok(slot) => Some(slot),
            Err(Refused::Full) => {
                metrics::connection_closed(metrics::CloseReason::Limit);
                if self.may_log_limit() {
                    tracing::warn!(
                        %peer,
                        max = self.limits.max_connections,
                        "connection limit reached: new {transport} connections are closed at once (at most one such line per second)"
                    );
                }
                None
            }
            Err(Refused::SourceFull) => {
                metrics::connection_closed(metrics::CloseReason::SourceLimit);
                crate::warn_limited!(
                    %peer,
                    max = self.limits.max_per_source,
                    "{transport} connection from {} refused: its source has {} open, the most one source may have",
                    peer.ip(),
                    self.limits.max_per_source
                );
                None
            }
        }
    }

    /// Connections with `ip`'s source (accepted or opened) open now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let key = crate::limits::source_key(ip, crate::limits::DEFAULT_IPV6_PREFIX);
        let counts = self.per_source.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&key).copied().unwrap_or(0)
    }

    /// Whether a "connection limit reached" line may be written now: at
    /// most one per second.
    pub fn may_log_limit(&self) -> bool {
        let second = self.started.elapsed().as_secs();
        let last = self.limit_logged.load(Ordering::Relaxed);
        (last == u64::MAX || last < second)
            && self
                .limit_logged
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Register an accepted connection (it replaces an older one to the
    /// same peer as the one sends go to); returns its id and its queue.
    pub fn register(&self, key: Key) -> (u64, Queue, Queued) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, queued) = super::queue::channel();
        self.shard(&key).insert(
            key,
            Handle {
                id,
                queue: queue.clone(),
                direct: None,
            },
        );
        (id, queue, queued)
    }

    /// Connection `id` of `key` is connected over plain TCP: senders may
    /// write to its socket directly from now on.
    /// What its queue holds already (sent while it connected) is counted
    /// as pending, so direct writes wait behind it.
    pub fn attach_direct(&self, key: Key, id: u64, direct: Arc<Direct>, queue: &Queue) {
        // Under the shard's lock: no sender of the table queues meanwhile.
        let mut shard = self.shard(&key);
        *direct.pending() = queue.len();
        if let Some(handle) = shard.get_mut(&key).filter(|h| h.id == id) {
            handle.direct = Some(direct);
        }
    }

    /// Remove `key`'s connection if `queue` is its (closed) queue.
    fn unregister_closed(&self, key: Key, queue: &Queue) {
        let mut shard = self.shard(&key);
        if shard.get(&key).is_some_and(|h| h.queue.same_channel(queue)) {
            shard.remove(&key);
        }
    }

    /// Remove connection `id` of `key` (not a newer one to the same peer).
    pub fn unregister(&self, key: Key, id: u64) {
        let mut shard = self.shard(&key);
        if shard.get(&key).is_some_and(|h| h.id == id) {
            shard.remove(&key);
        }
    }

    /// Send `bytes` over `key`'s open connection only (for transports we
    /// do not connect out on: WebSocket).
    pub fn deliver(&self, key: Key, bytes: Payload) -> Delivered {
        let shard = self.shard(&key);
        match shard.get(&key).map(|open| open.queue.try_send(bytes)) {
            Some(Ok(())) => Delivered::Queued,
            Some(Err(mpsc::error::TrySendError::Full(_))) => Delivered::Full,
            Some(Err(mpsc::error::TrySendError::Closed(_))) | None => Delivered::NotOpen,
        }
    }

    /// Send `bytes` to `key`'s connection, or register a new one for it.
    pub fn route(self: &Arc<Self>, key: Key, bytes: Payload) -> Routed {
        let mut shard = self.shard(&key);
        if let Some(open) = shard.get(&key)
            && let Some(direct) = open.direct.clone()
        {
            // The write happens without the table's lock.
            let queue = open.queue.clone();
            drop(shard);
            return match direct.send(&queue, bytes) {
                Ok(()) => Routed::Queued,
                Err(mpsc::error::TrySendError::Full(bytes)) => Routed::Full(bytes),
                Err(mpsc::error::TrySendError::Closed(bytes)) => {
                    // Its tasks ended: route again, as to a closed queue.
                    self.unregister_closed(key, &queue);
                    self.route(key, bytes)
                }
            };
        }
        let bytes = match shard.entry(key) {
            Entry::Occupied(open) => match open.get().queue.try_send(bytes) {
                Ok(()) => return Routed::Queued,
                Err(mpsc::error::TrySendError::Full(bytes)) => return Routed::Full(bytes),
                // Its tasks ended, and it is not unregistered yet: replace it.
                Err(mpsc::error::TrySendError::Closed(bytes)) => {
                    open.remove();
                    bytes
                }
            },
            Entry::Vacant(_) => bytes,
        };
        // A connection we open counts against its peer's share too: a
        // host that lures us into connecting to it (a Route to its
        // listener that accepts and says nothing) holds no more than one
        // that connects to us.
        let Ok(slot) = self.reserve_from(key.0, Some(key.1.ip()), false) else {
            return Routed::Limit(bytes);
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, queued) = super::queue::channel();
        // A new channel has room.
        let _ = queue.try_send(bytes);
        shard.insert(
            key,
            Handle {
                id,
                queue: queue.clone(),
                direct: None,
            },
        );
        Routed::Connect(Opening {
            id,
            queue,
            queued,
            slot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> Key {
        (Transport::Tcp, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn bytes(text: &str) -> Payload {
        Payload::Owned(text.as_bytes().to_vec())
    }

    #[test]
    fn a_peer_gets_one_connection_and_its_messages_queue_behind() {
        let table = Connections::new(Limits::default());
        let Routed::Connect(mut opening) = table.route(key(1), bytes("one")) else {
            panic!("a new peer needs a connection");
        };
        assert!(matches!(table.route(key(1), bytes("two")), Routed::Queued));
        assert_eq!(opening.queued.try_recv().unwrap().as_ref(), b"one");
        assert_eq!(opening.queued.try_recv().unwrap().as_ref(), b"two");
        assert_eq!(table.open(), 1);
        // Closed (its receiver gone): the next send opens a new one.
        table.unregister(key(1), opening.id + 1000);
        drop(opening);
        assert_eq!(table.open(), 0);
        assert!(matches!(
            table.route(key(1), bytes("three")),
            Routed::Connect(_)
        ));
    }

    #[test]
    fn connections_we_open_leave_a_quarter_of_the_slots_to_peers() {
        let table = Connections::new(Limits {
            max_connections: 8,
            ..Limits::default()
        });
        assert_eq!(table.max_opened(), 6);
        let peer = |i: u8| SocketAddr::from(([127, 0, 1, i], 5060));
        // Requests to six unreachable hosts: six connections opening.
        let opening: Vec<Routed> = (1..=6).map(|i| table.route(key(i), bytes("x"))).collect();
        assert!(opening.iter().all(|r| matches!(r, Routed::Connect(_))));
        // A seventh is refused although two slots are free...
        assert!(matches!(table.route(key(7), bytes("x")), Routed::Limit(_)));
        // ...and they are the phones': two accepted, then the table is full.
        let a = table.admit(Transport::Tcp, peer(1), false).unwrap();
        let b = table.admit(Transport::Tcp, peer(2), false).unwrap();
        assert!(a.accepted() && b.accepted());
        assert!(table.admit(Transport::Tcp, peer(3), false).is_none());
        assert_eq!(table.open(), 8);
        // An opened connection that ends gives its share back to opening.
        drop(opening);
        assert_eq!(table.open(), 2);
        assert!(matches!(
            table.route(key(7), bytes("x")),
            Routed::Connect(_)
        ));
        // Accepted connections may take every slot: the quarter is a floor for them, not a cap.
        let more: Vec<Slot> = (3..=8)
            .map(|i| table.admit(Transport::Tcp, peer(i), false).unwrap())
            .collect();
        assert_eq!(table.open(), 8);
        drop((a, b, more));
    }

    #[test]
    fn limits_and_full_queues_drop() {
        let table = Connections::new(Limits {
            max_connections: 2,
            ..Limits::default()
        });
        let a = table.route(key(1), bytes("a"));
        let b = table.route(key(2), bytes("b"));
        assert!(matches!(table.route(key(3), bytes("c")), Routed::Limit(_)));
        assert!(table.reserve(Transport::Tcp).is_none());
        drop(b);
        assert!(table.reserve(Transport::Tcp).is_some());
        for _ in 1..crate::net::queue::MESSAGES {
            assert!(matches!(table.route(key(1), bytes("x")), Routed::Queued));
        }
        assert!(matches!(table.route(key(1), bytes("x")), Routed::Full(_)));
        drop(a);
        // The limit line: once per second.
        assert!(table.may_log_limit());
        assert!(!table.may_log_limit());
    }

    #[test]
    fn one_remote_host_gets_its_share_of_connections_either_way() {
        let table = Connections::new(Limits {
            max_per_source: 2,
            ..Limits::default()
        });
        let ip = |last: u8, port: u16| SocketAddr::from(([127, 0, 0, last], port));
        // Two opened to one host (two ports), then its share is used up.
        let Routed::Connect(_first) = table.route((Transport::Tcp, ip(9, 1)), bytes("a")) else {
            panic!("the first connection to the host");
        };
        let Routed::Connect(second) = table.route((Transport::Tcp, ip(9, 2)), bytes("b")) else {
            panic!("the second connection to the host");
        };
        assert!(matches!(
            table.route((Transport::Tcp, ip(9, 3)), bytes("c")),
            Routed::Limit(_)
        ));
        assert!(
            table.admit(Transport::Tcp, ip(9, 4), false).is_none(),
            "nor accepted"
        );
        assert_eq!(table.open_from(ip(9, 0).ip()), 2);
        // Another host is not affected; an accepted slot is marked so.
        let accepted = table.admit(Transport::Tcp, ip(8, 1), false).unwrap();
        assert!(accepted.accepted());
        assert!(!second.slot.accepted());
        // A banned source is refused whatever its share.
        assert!(table.admit(Transport::Tcp, ip(7, 1), true).is_none());
        drop(second);
        assert_eq!(table.open_from(ip(9, 0).ip()), 1);
    }

    #[test]
    fn deliver_uses_open_connections_only() {
        let table = Connections::new(Limits::default());
        assert!(matches!(
            table.deliver(key(7), bytes("m")),
            Delivered::NotOpen
        ));
        assert_eq!(table.open(), 0);
        let (id, queue, mut queued) = table.register(key(7));
        assert!(matches!(
            table.deliver(key(7), bytes("m")),
            Delivered::Queued
        ));
        assert_eq!(queued.try_recv().unwrap().as_ref(), b"m");
        drop(queue);
        drop(queued);
        assert!(matches!(
            table.deliver(key(7), bytes("m")),
            Delivered::NotOpen
        ));
        table.unregister(key(7), id);
        assert!(matches!(
            table.deliver(key(7), bytes("m")),
            Delivered::NotOpen
        ));
    }

    #[tokio::test]
    async fn direct_writes_wait_behind_what_is_queued() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (_read, write) = client.into_split();
        let table = Connections::new(Limits::default());
        let (id, queue, mut queued) = table.register(key(9));
        // Queued while the connection was being made.
        assert!(matches!(table.route(key(9), bytes("one;")), Routed::Queued));
        let direct = Arc::new(Direct::new(write, Arc::new(Activity::new())));
        table.attach_direct(key(9), id, Arc::clone(&direct), &queue);
        assert_eq!(*direct.pending(), 1);
        // Something waits: this queues behind it instead of overtaking.
        assert!(matches!(table.route(key(9), bytes("two;")), Routed::Queued));
        assert_eq!(*direct.pending(), 2);
        for _ in 0..2 {
            let next = queued.try_recv().unwrap();
            direct.write_queued(next.as_ref()).await.unwrap();
        }
        assert_eq!(*direct.pending(), 0);
        // Nothing waits: written at once, nothing queued.
        assert!(matches!(
            table.route(key(9), bytes("three;")),
            Routed::Queued
        ));
        assert!(queued.try_recv().is_err());
        let mut got = vec![0u8; 14];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"one;two;three;");
    }

    #[test]
    fn an_accepted_connection_replaces_the_route_and_unregisters_only_itself() {
        let table = Connections::new(Limits::default());
        let (old, _q1, _r1) = table.register(key(5));
        let (new, _q2, mut r2) = table.register(key(5));
        table.unregister(key(5), old);
        assert!(matches!(table.route(key(5), bytes("m")), Routed::Queued));
        assert_eq!(r2.try_recv().unwrap().as_ref(), b"m");
        table.unregister(key(5), new);
        assert!(matches!(
            table.route(key(5), bytes("m")),
            Routed::Connect(_)
        ));
    }
}
