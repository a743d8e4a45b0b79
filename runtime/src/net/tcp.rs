//! SIP over TCP (RFC 3261 §18): the listeners, their accept loops, one
//! task per connection that frames what it reads ([`super::framing`]) and
//! hands each message to the core, a writer task per connection fed by
//! the connection table ([`super::connections`]), and the connections we
//! open to send.
//!
//! All of it runs on the stream threads (`sf-tcp0`, ... `--workers` of
//! them, [`super::stream_threads`]), created by the server when it has a
//! TCP listener: each connection lives on one of them, the core is called
//! there exactly as on the UDP receive threads, and the outgoing messages
//! go through the same `send`.
//!
//! A connection is closed when the peer closes it, on a read or write
//! error, after [`Limits::idle_timeout`] without traffic either way, when a
//! message does not complete within [`Limits::header_timeout`] of its
//! first byte, on a message over [`Limits::max_message`] or an invalid
//! Content-Length (no response is attempted: the stream cannot be framed
//! any more), and when the server stops. Each close is counted in
//! `sipforge_connections_closed_total{reason}`; those a sender controls log
//! one rate-limited line.
//!
//! TLS listeners (`tls:`) and connections are the same with a TLS stream
//! over the TCP one ([`super::tls`]): the handshake runs in the
//! connection's task, bounded by the handshake timeout, and a connection
//! that fails it is closed with `reason="handshake"`.
//!
//! Rollouts: the listeners are bound with SO_REUSEPORT, with the probe of
//! [`super::takeover`] (a port held by a listener is an error without
//! `--takeover`), so the new instance accepts new connections beside the old
//! one. Connections are not handed over: a draining instance keeps serving
//! its open connections until it exits, and closes them then.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Shared;
use super::connections::{
    Activity, Connections, Direct, Key, Limits, Opening, Routed, Slot, send_on,
};
use super::framing::{Frame, FrameError, Framer};
use super::queue::{Queue, Queued};
use super::stream_threads::Pool;
use super::tls::Tls;
use crate::metrics::{self, CloseReason, DropReason};
use crate::proxy::{Outgoing, Payload};
use crate::transport::Transport;

/// Listen backlog.
const BACKLOG: i32 = 1024;
/// Bytes read at once from a connection.
const READ_CHUNK: usize = 16 * 1024;
/// How long a closing connection may take to write what is queued.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The keep-alive answer (RFC 5626 §3.5.1).
const PONG: &[u8] = b"\r\n";

/// The TCP side of a server.
pub(super) struct Streams {
    table: Arc<Connections>,
    /// The stream threads: every connection runs on one of them.
    pool: Pool,
    /// The index, transport and bound address of every TCP and TLS
    /// listener, in listen order.
    listeners: Vec<(usize, Transport, SocketAddr)>,
    /// The TLS configurations (None: no `tls:` settings).
    tls: Option<Tls>,
    /// The server, to hand it messages (set once it exists).
    shared: OnceLock<Weak<Shared>>,
}

/// Bind a TCP listener on `addr`; also whether another socket held it
/// (then it is shared: only with `takeover`). See [`super::takeover`].
pub(super) fn bind(addr: SocketAddr, takeover: bool) -> io::Result<(std::net::TcpListener, bool)> {
    bind_as("tcp", addr, takeover)
}

/// [`bind`] for a listen entry of scheme `scheme` over TCP (`ws`): its
/// errors name it.
pub(super) fn bind_as(
    scheme: &str,
    addr: SocketAddr,
    takeover: bool,
) -> io::Result<(std::net::TcpListener, bool)> {
    let name = |e: io::Error| super::takeover::naming_as(scheme, addr, e);
    let held = held(addr).map_err(name)?;
    if held && !takeover {
        return Err(super::takeover::in_use_as(scheme, addr));
    }
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(name)?;
    socket.listen(BACKLOG)?;
    Ok((socket.into(), held))
}

/// Whether a listener holds `addr`: a bind with SO_REUSEADDR (so that
/// connections in TIME_WAIT do not count) and without SO_REUSEPORT fails.
fn held(addr: SocketAddr) -> io::Result<bool> {
    if addr.port() == 0 {
        return Ok(false);
    }
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(true),
        Err(e) => Err(e),
    }
}

impl Streams {
    pub(super) fn new(
        pool: Pool,
        listeners: Vec<(usize, Transport, SocketAddr)>,
        limits: Limits,
        tls: Option<Tls>,
    ) -> Arc<Streams> {
        Arc::new(Streams {
            table: Connections::new(limits),
            pool,
            listeners,
            tls,
            shared: OnceLock::new(),
        })
    }

    /// Connect the streams to the server they hand messages to.
    pub(super) fn attach(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.get().and_then(Weak::upgrade)
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        self.table.open()
    }

    /// The connection table (shared with the WebSocket connections).
    pub(super) fn table(&self) -> &Arc<Connections> {
        &self.table
    }

    /// The threads the connections run on.
    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Accept connections on `listener` (listen entry `index`, TCP or
    /// TLS) until `stop`.
    pub(super) fn accept(
        self: &Arc<Self>,
        index: usize,
        transport: Transport,
        listener: std::net::TcpListener,
        mut stop: watch::Receiver<bool>,
    ) {
        let this = Arc::clone(self);
        self.pool.first().spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("{transport} listener {index}: {e}: not accepting");
                    return;
                }
            };
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => this.accepted(stream, peer, index, transport),
                        Err(e) => {
                            // Out of descriptors, mostly: wait a little.
                            crate::warn_limited!("{transport} accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        });
    }

    fn accepted(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        index: usize,
        transport: Transport,
    ) {
        metrics::connection_started(transport, true);
        let Some(shared) = self.shared() else {
            return;
        };
        let banned = shared.core().is_banned(peer.ip(), Instant::now());
        let Some(slot) = self.table.admit(transport, peer, banned) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let key = (transport, peer);
        let (id, queue, queued) = self.table.register(key);
        tracing::debug!(%peer, index, "{transport} connection accepted");
        let this = Arc::clone(self);
        let conn = Conn {
            key,
            id,
            index,
            queue,
            queued,
            slot,
        };
        self.pool.adopt(stream, move |stream| async move {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => return this.failed(conn, &format!("not moved to its thread: {e}")),
            };
            if transport != Transport::Tls {
                return this.serve(shared, stream, conn).await;
            }
            let Some(tls) = this.tls.clone() else {
                return this.failed(conn, "no tls settings");
            };
            let handshake = tls.acceptor.accept(stream);
            match tokio::time::timeout(tls.handshake_timeout, handshake).await {
                Ok(Ok(stream)) => this.serve(shared, stream, conn).await,
                Ok(Err(e)) => this.handshake_failed(conn, &format!("tls handshake failed: {e}")),
                Err(_) => this.handshake_failed(
                    conn,
                    &format!("tls handshake not done within {:?}", tls.handshake_timeout),
                ),
            }
        });
    }

    /// A connection whose TLS handshake failed: unregister it, drop what
    /// waited for it, count it and log one rate-limited line.
    fn handshake_failed(&self, conn: Conn, why: &str) {
        metrics::tls_handshake_failed();
        let peer = conn.key.1;
        let dropped = self.abandon(conn, CloseReason::Handshake);
        crate::warn_limited!(%peer, dropped, "tls connection with {peer} closed: {why}; {dropped} message(s) dropped");
    }

    /// A connection that cannot be used (not a handshake failure).
    fn failed(&self, conn: Conn, why: &str) {
        let peer = conn.key.1;
        let dropped = self.abandon(conn, CloseReason::Error);
        crate::warn_limited!(%peer, dropped, "connection with {peer} closed: {why}; {dropped} message(s) dropped");
    }

    /// Unregister a connection that never ran, counting its queued
    /// messages as dropped and the close as `reason`, and tell the core
    /// which messages were not sent (a relayed request's transaction then
    /// goes on at once, as for a 503); how many were dropped.
    fn abandon(&self, conn: Conn, reason: CloseReason) -> usize {
        let Conn {
            key,
            id,
            index,
            mut queued,
            ..
        } = conn;
        self.table.unregister(key, id);
        queued.close();
        let mut unsent = Vec::new();
        while let Ok(bytes) = queued.try_recv() {
            metrics::dropped(DropReason::Unsent);
            unsent.push(bytes);
        }
        metrics::connection_closed(reason);
        let dropped = unsent.len();
        if let Some(shared) = self.shared() {
            for bytes in unsent {
                super::unsent(&shared, index, bytes.as_ref(), key.1);
            }
        }
        dropped
    }

    /// Send `bytes` over `transport` (TCP or TLS) to `to` from listener
    /// `index`: over the open connection to `to`, or a new one (a TLS one
    /// verified against `host`, the next hop's name, else `to`'s address).
    /// Never blocks.
    pub(super) fn send(
        self: &Arc<Self>,
        index: usize,
        transport: Transport,
        to: SocketAddr,
        bytes: Payload,
        host: Option<&str>,
    ) {
        let key = (transport, to);
        match self.table.route(key, bytes) {
            Routed::Queued => {}
            Routed::Full(bytes) => {
                metrics::dropped(DropReason::Unsent);
                tracing::debug!(%to, "{transport} connection's queue full: message dropped");
                self.not_sent(index, bytes, to);
            }
            Routed::Limit(bytes) => {
                metrics::dropped(DropReason::Unsent);
                metrics::connection_closed(CloseReason::Limit);
                if self.table.may_log_limit() {
                    tracing::warn!(
                        %to,
                        max = self.table.limits.max_connections,
                        opened_max = self.table.max_opened(),
                        "connection limit reached: cannot open a {transport} connection, message dropped (at most one such line per second)"
                    );
                }
                self.not_sent(index, bytes, to);
            }
            Routed::Connect(opening) => {
                let this = Arc::clone(self);
                let name = super::tls::server_name(host, to.ip());
                self.pool
                    .next()
                    .spawn(async move { this.connect(index, key, opening, name).await });
            }
        }
    }

    /// Tell the core a message was not sent: a relayed request's
    /// transaction goes on at once, as after a transport error (RFC 3261
    /// §8.1.3.1: a 503 from that hop), not after its timeout.
    fn not_sent(&self, index: usize, bytes: Payload, to: SocketAddr) {
        if let Some(shared) = self.shared() {
            super::unsent(&shared, index, bytes.as_ref(), to);
        }
    }

    /// The listener a connection we opened to `to` belongs to: the first
    /// listener of its transport and address family, else the one that sent.
    fn listener_for(
        &self,
        transport: Transport,
        to: SocketAddr,
        sent_from: usize,
    ) -> (usize, Option<SocketAddr>) {
        let from = self
            .listeners
            .iter()
            .find(|(i, _, _)| *i == sent_from)
            .map(|(_, _, a)| *a);
        let index = self
            .listeners
            .iter()
            .find(|(_, t, a)| *t == transport && a.is_ipv4() == to.is_ipv4())
            .map_or(sent_from, |(i, _, _)| *i);
        (index, from)
    }

    async fn connect(
        self: Arc<Self>,
        sent_from: usize,
        key: Key,
        opening: Opening,
        name: rustls_pki_types::ServerName<'static>,
    ) {
        let (transport, to) = key;
        metrics::connection_started(transport, false);
        let (index, from) = self.listener_for(transport, to, sent_from);
        let conn = Conn {
            key,
            id: opening.id,
            index,
            queue: opening.queue,
            queued: opening.queued,
            slot: opening.slot,
        };
        let connected =
            tokio::time::timeout(self.table.limits.connect_timeout, open_from(from, to))
                .await
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")));
        let stream = match connected {
            Ok(stream) => stream,
            Err(e) => {
                return self.failed(conn, &format!("cannot connect over {transport}: {e}"));
            }
        };
        let _ = stream.set_nodelay(true);
        tracing::debug!(%to, index, "{transport} connection opened");
        let Some(shared) = self.shared() else {
            return;
        };
        if transport != Transport::Tls {
            return self.serve(shared, stream, conn).await;
        }
        let Some(tls) = self.tls.clone() else {
            return self.failed(conn, "no tls settings");
        };
        let shown = format!("{name:?}");
        let handshake = tls.connector.connect(name, stream);
        match tokio::time::timeout(tls.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => self.serve(shared, stream, conn).await,
            Ok(Err(e)) => self.handshake_failed(
                conn,
                &format!("tls handshake failed (verifying the peer as {shown}): {e}"),
            ),
            Err(_) => self.handshake_failed(
                conn,
                &format!("tls handshake not done within {:?}", tls.handshake_timeout),
            ),
        }
    }

    /// Run a connection: read and handle its messages, while its writer
    /// task sends what is queued; then unregister and count it.
    async fn serve<S: Stream>(self: Arc<Self>, shared: Arc<Shared>, stream: S, conn: Conn) {
        let Conn {
            key,
            id,
            index,
            queue,
            queued,
            slot,
        } = conn;
        let (transport, peer) = key;
        let accepted = slot.accepted();
        let (read, write) = stream.halves();
        let activity = Arc::new(Activity::new());
        let limits = self.table.limits;
        let (write, direct) = match write {
            Writing::Async(write) => (Writer::Stream(write), None),
            Writing::Direct(half) => {
                let direct = Arc::new(Direct::new(half, Arc::clone(&activity)));
                self.table
                    .attach_direct(key, id, Arc::clone(&direct), &queue);
                (Writer::Direct(Arc::clone(&direct)), Some(direct))
            }
        };
        let mut writer = tokio::spawn(write_loop(
            write,
            queued,
            Arc::clone(&activity),
            limits.write_timeout,
        ));
        let reason = {
            let mut reader = Reader {
                shared: &shared,
                index,
                transport,
                peer,
                limits,
                activity: &activity,
                queue,
                direct,
                out: Vec::with_capacity(4),
                silent_until: accepted.then(|| Instant::now() + limits.header_timeout),
            };
            reader.run(read, &mut writer).await
        };
        self.table.unregister(key, id);
        metrics::connection_closed(reason);
        // The queue's senders are gone (ours ended with the reader, the
        // table's just now): the writer sends what is left, then ends.
        if !writer.is_finished()
            && tokio::time::timeout(CLOSE_GRACE, &mut writer)
                .await
                .is_err()
        {
            writer.abort();
        }
        match reason {
            CloseReason::Oversize
            | CloseReason::SlowHeader
            | CloseReason::Malformed
            | CloseReason::Silent => {
                crate::warn_limited!(%peer, reason = reason.label(), "{transport} connection closed: {}", describe(reason, &limits));
            }
            _ => tracing::debug!(%peer, reason = reason.label(), "{transport} connection closed"),
        }
        drop(slot);
    }
}

/// A registered connection and what its tasks need.
struct Conn {
    key: Key,
    id: u64,
    /// The listen entry it belongs to.
    index: usize,
    /// Its queue (the reader's copy, for the keep-alive pongs).
    queue: Queue,
    queued: Queued,
    slot: Slot,
}

/// A connected stream (TCP, or TLS after its handshake) that splits into
/// a reading and a writing half for the connection's two tasks.
trait Stream: Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    fn halves(self) -> (Self::Read, Writing<Self::Write>);
}

/// How a connection is written: by its writer task only (TLS, whose
/// records are made by the stream), or directly by senders too (plain
/// TCP, see [`Direct`]).
enum Writing<W> {
    Async(W),
    Direct(tokio::net::tcp::OwnedWriteHalf),
}

/// What a connection's writer task writes the queued messages with.
enum Writer<W> {
    Stream(W),
    Direct(Arc<Direct>),
}

impl Stream for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn halves(self) -> (Self::Read, Writing<Self::Write>) {
        let (read, write) = self.into_split();
        (read, Writing::Direct(write))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream
    for tokio_rustls::server::TlsStream<S>
{
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn halves(self) -> (Self::Read, Writing<Self::Write>) {
        let (read, write) = tokio::io::split(self);
        (read, Writing::Async(write))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream
    for tokio_rustls::client::TlsStream<S>
{
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn halves(self) -> (Self::Read, Writing<Self::Write>) {
        let (read, write) = tokio::io::split(self);
        (read, Writing::Async(write))
    }
}

fn describe(reason: CloseReason, limits: &Limits) -> String {
    match reason {
        CloseReason::Oversize => format!("a message over {} bytes", limits.max_message),
        CloseReason::SlowHeader => format!(
            "a message not complete within {:?} of its first byte",
            limits.header_timeout
        ),
        CloseReason::Malformed => "an invalid Content-Length".to_string(),
        CloseReason::Silent => format!(
            "no complete message within {:?} of connecting",
            limits.header_timeout
        ),
        other => other.label().to_string(),
    }
}

/// Connect to `to`, from the listener's address when it has a specific one
/// of the same family (an ephemeral port).
async fn open_from(from: Option<SocketAddr>, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(from) = from.filter(|f| !f.ip().is_unspecified() && f.is_ipv4() == to.is_ipv4()) {
        socket.bind(SocketAddr::new(from.ip(), 0))?;
    }
    socket.connect(to).await
}

/// Write what is queued for a connection until the queue closes or a
/// write fails or takes longer than `timeout`.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut write: Writer<W>,
    mut queued: Queued,
    activity: Arc<Activity>,
    timeout: Duration,
) {
    while let Some(bytes) = queued.recv().await {
        let written = async {
            match &mut write {
                // A TLS stream buffers what is written until flushed.
                Writer::Stream(w) => {
                    w.write_all(bytes.as_ref()).await?;
                    w.flush().await
                }
                Writer::Direct(direct) => direct.write_queued(bytes.as_ref()).await,
            }
        };
        match tokio::time::timeout(timeout, written).await {
            Ok(Ok(())) => activity.touch(),
            Ok(Err(e)) => {
                tracing::debug!("stream write failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("stream write timed out: the peer does not read");
                return;
            }
        }
    }
    // A direct half shuts down when its last handle is dropped.
    if let Writer::Stream(mut w) = write {
        let _ = w.shutdown().await;
    }
}

/// The reading side of one connection.
struct Reader<'a> {
    shared: &'a Shared,
    index: usize,
    transport: Transport,
    peer: SocketAddr,
    limits: Limits,
    activity: &'a Activity,
    /// The connection's own queue (for the keep-alive pongs).
    queue: Queue,
    direct: Option<Arc<Direct>>,
    out: Vec<Outgoing>,
    /// A connection accepted from a peer must bring its first complete
    /// message by then (keep-alives do not count); None once it has, and
    /// for connections we opened. Without it, a host could hold slots
    /// with connections that never say anything, for the idle timeout.
    silent_until: Option<Instant>,
}

impl Reader<'_> {
    /// Read until the connection must close; why it closes.
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        mut read: R,
        writer: &mut tokio::task::JoinHandle<()>,
    ) -> CloseReason {
        let mut framer = Framer::new(self.limits.max_message);
        let mut buf = vec![0u8; READ_CHUNK];
        // When the first byte of the message being read arrived.
        let mut started: Option<Instant> = None;
        // One timer for both limits. It is moved only when it fires before
        // a limit is reached, or when a message starts that must end
        // sooner: re-arming it on every read would cost a timer update
        // per message.
        let sleep = tokio::time::sleep_until(self.deadline(started).into());
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                // In this order (no random start: it costs more than the
                // checks): the limits first, so that a peer that always
                // has bytes ready cannot keep them from firing.
                biased;
                () = &mut sleep => {
                    let now = Instant::now();
                    if started.is_some_and(|s| now >= s + self.limits.header_timeout) {
                        return CloseReason::SlowHeader;
                    }
                    // (A message under way is the header timeout's.)
                    if started.is_none() && self.silent_until.is_some_and(|at| now >= at) {
                        return CloseReason::Silent;
                    }
                    if now >= self.activity.last() + self.limits.idle_timeout {
                        return CloseReason::Idle;
                    }
                    sleep.as_mut().reset(self.deadline(started).into());
                }
                read = read.read(&mut buf) => {
                    let n = match read {
                        Ok(0) => return CloseReason::Peer,
                        Ok(n) => n,
                        Err(e) => {
                            tracing::debug!(peer = %self.peer, "{} read failed: {e}", self.transport);
                            return CloseReason::Error;
                        }
                    };
                    let now = Instant::now();
                    self.activity.touch();
                    framer.push(&buf[..n]);
                    let mut completed = false;
                    loop {
                        match framer.next_frame() {
                            Ok(Some(Frame::Message(message))) => {
                                completed = true;
                                if self.silent_until.is_some()
                                    && super::framing::has_sip_start_line(&message)
                                {
                                    self.silent_until = None;
                                }
                                self.handle(&message);
                                // The message that started a ban of its
                                // source (or came during one) closes it.
                                if self.shared.core().is_banned(self.peer.ip(), now) {
                                    return CloseReason::Banned;
                                }
                            }
                            Ok(Some(Frame::Ping)) => {
                                let pong = Payload::Owned(PONG.to_vec());
                                let _ = send_on(self.direct.as_deref(), &self.queue, pong);
                            }
                            Ok(None) => break,
                            Err(FrameError::TooLarge) => return CloseReason::Oversize,
                            Err(FrameError::BadContentLength) => return CloseReason::Malformed,
                        }
                    }
                    let before = started;
                    started = match (framer.in_message(), started) {
                        (false, _) => None,
                        (true, Some(s)) if !completed => Some(s),
                        (true, _) => Some(now),
                    };
                    if started.is_some() && started != before {
                        let deadline = self.deadline(started);
                        if deadline < sleep.deadline().into_std() {
                            sleep.as_mut().reset(deadline.into());
                        }
                    }
                }
                _ = &mut *writer => return CloseReason::Error,
            }
        }
    }

    /// When the connection must close if nothing changes: idle since its
    /// last activity, or the message `started` then not complete.
    fn deadline(&self, started: Option<Instant>) -> Instant {
        let idle_at = self.activity.last() + self.limits.idle_timeout;
        match (started, self.silent_until) {
            (Some(s), _) => idle_at.min(s + self.limits.header_timeout),
            (None, Some(silent)) => idle_at.min(silent),
            (None, None) => idle_at,
        }
    }

    fn handle(&mut self, message: &[u8]) {
        metrics::stream_message(self.transport);
        super::handle_guarded(
            self.shared,
            Instant::now(),
            self.index,
            message,
            self.peer,
            &mut self.out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_held_by_a_listener_is_in_use_without_takeover() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        assert!(held(addr).unwrap());
        let e = bind(addr, false).unwrap_err().to_string();
        assert!(
            e.contains(&format!("tcp:{addr}")) && e.contains("address in use"),
            "{e}"
        );
        // The holder did not set SO_REUSEPORT: not shareable even when asked.
        assert!(bind(addr, true).is_err());
        drop(holder);
        assert!(!held(addr).unwrap());
        // Ours are shareable: a second one joins with takeover only.
        let (ours, was_held) = bind(addr, false).unwrap();
        assert!(!was_held);
        assert!(bind(addr, false).is_err());
        let (_second, was_held) = bind(addr, true).unwrap();
        assert!(was_held);
        drop(ours);
    }
}
