//! SIP over WebSocket (RFC 7118), `ws:` and `wss:` listeners (`wss:`: the
//! TLS handshake of the `tls:` block first, then the same): the accept loops,
//! the HTTP Upgrade (tokio-tungstenite) and one task per connection that
//! hands each WebSocket message to the core as one SIP message, with a
//! writer task fed by the shared connection table
//! ([`super::connections`], under [`Transport::Ws`] or [`Transport::Wss`]
//! and the peer's address) that sends each outgoing SIP message as one
//! text frame.
//!
//! The upgrade may use any path; it must offer the `sip` subprotocol
//! (`Sec-WebSocket-Protocol: sip`, RFC 7118 §4), which the answer
//! selects; one that does not is refused with 400. The upgrade must be
//! complete within [`Limits::header_timeout`].
//!
//! One WebSocket message (text or binary, however many frames) is one SIP
//! message (§5): its end delimits the body, so Content-Length may be
//! absent. A message without a complete header section is dropped with a
//! rate-limited log line; the connection stays. A message over
//! [`Limits::max_message`] closes the connection (tungstenite refuses it
//! while reading). tungstenite answers pings and the close handshake; we
//! send no pings of our own: a connection without traffic for
//! [`Limits::idle_timeout`] is closed (with a close frame).
//!
//! We never open WebSocket connections: a message for a WebSocket peer
//! with no open connection is dropped with a log line (RFC 7118 clients
//! connect to the proxy; Kamailio does the same).
//!
//! RFC 7118 clients name themselves with a random `.invalid` host in Via
//! and Contact (§5.2): responses go back by the connection's address (the
//! core forces `received`/`rport` over connections), and a request whose
//! next hop is such a host (an in-dialog request to the client's Contact)
//! goes over the connection whose requests used that host in their top Via
//! or first Contact ([`Sockets::send_to_alias`]; the first connection to
//! claim a host keeps it until it closes; at most [`MAX_ALIASES`] per
//! connection). `.invalid` names are never looked up (RFC 6761 §6.4).
//!
//! These tasks run on the stream threads of the TCP connections
//! (`sf-tcp0`, ..., [`super::stream_threads`]), and the connections count
//! against the same connection limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::Shared;
use super::connections::{Activity, Connections, Delivered, Limits};
use super::queue::Queued;
use super::stream_threads::Pool;
use crate::metrics::{self, CloseReason, DropReason};
use crate::proxy::{Outgoing, Payload};
use crate::transport::Transport;

/// The WebSocket subprotocol of SIP (RFC 7118 §4).
const SUBPROTOCOL: &str = "sip";
/// The most `.invalid` hosts one connection may claim.
pub(super) const MAX_ALIASES: usize = 4;
/// How long a closing connection may take to write what is queued and
/// its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The WebSocket side of a server.
pub(super) struct Sockets {
    table: Arc<Connections>,
    /// The stream threads: every connection runs on one of them.
    pool: Pool,
    /// The server side of the `tls:` block, for `wss:` listeners.
    tls: Option<TlsAcceptor>,
    /// The server, to hand it messages (set once it exists).
    shared: OnceLock<Weak<Shared>>,
    /// `.invalid` host (lowercase) -> the connection that claimed it: its
    /// transport, peer address and id.
    aliases: Mutex<HashMap<String, Alias>>,
}

/// The connection a `.invalid` host names.
#[derive(Clone, Copy)]
struct Alias {
    transport: Transport,
    peer: SocketAddr,
    id: u64,
}

/// What a WebSocket runs over: TCP, or TLS over TCP for `wss:`.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// Bind a `ws:` listener: a TCP listener, with the takeover probe of TCP.
pub(super) fn bind(
    addr: SocketAddr,
    takeover: bool,
) -> std::io::Result<(std::net::TcpListener, bool)> {
    super::tcp::bind_as("ws", addr, takeover)
}

impl Sockets {
    pub(super) fn new(
        table: Arc<Connections>,
        pool: Pool,
        tls: Option<TlsAcceptor>,
    ) -> Arc<Sockets> {
        Arc::new(Sockets {
            table,
            pool,
            tls,
            shared: OnceLock::new(),
            aliases: Mutex::new(HashMap::new()),
        })
    }

    /// Connect to the server messages are handed to.
    pub(super) fn attach(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.get().and_then(Weak::upgrade)
    }

    /// Accept connections on `listener` (listen entry `index`, `ws` or
    /// `wss`) until `stop`.
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
        let this = Arc::clone(self);
        self.pool.adopt(stream, move |stream| async move {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, "{transport} connection not moved to its thread: {e}");
                    metrics::connection_closed(CloseReason::Error);
                    return;
                }
            };
            let reason = match (transport, &this.tls) {
                (Transport::Wss, Some(tls)) => {
                    let limits = this.table.limits;
                    let handshake = tls.accept(stream);
                    match tokio::time::timeout(limits.header_timeout, handshake).await {
                        Ok(Ok(stream)) => this.serve(shared, stream, peer, index, transport).await,
                        Ok(Err(e)) => {
                            metrics::tls_handshake_failed();
                            crate::warn_limited!(%peer, "wss: TLS handshake failed: {e}");
                            CloseReason::Error
                        }
                        Err(_) => {
                            metrics::tls_handshake_failed();
                            CloseReason::SlowHeader
                        }
                    }
                }
                (Transport::Wss, None) => CloseReason::Error,
                _ => this.serve(shared, stream, peer, index, transport).await,
            };
            metrics::connection_closed(reason);
            log_close(peer, transport, reason, &this.table.limits);
            drop(slot);
        });
    }

    /// Send `bytes` to the WebSocket peer `to` over its open connection
    /// (`ws` or `wss`); without one the message is dropped (we do not
    /// connect out).
    pub(super) fn send(&self, transport: Transport, to: SocketAddr, bytes: Payload) {
        match self.table.deliver((transport, to), bytes) {
            Delivered::Queued => {}
            Delivered::Full => {
                metrics::dropped(DropReason::Unsent);
                tracing::debug!(%to, "{transport} connection's queue full: message dropped");
            }
            Delivered::NotOpen => {
                metrics::dropped(DropReason::Unsent);
                crate::warn_limited!(%to, "no open {transport} connection to {to}: message dropped (we do not open WebSocket connections)");
            }
        }
    }

    /// Send `bytes` over the connection that claimed the `.invalid` host
    /// `host`; without one the message is dropped.
    pub(super) fn send_to_alias(&self, host: &str, bytes: Payload) {
        let alias = self.aliases().get(host).copied();
        match alias {
            Some(a) => self.send(a.transport, a.peer, bytes),
            None => {
                metrics::dropped(DropReason::Unsent);
                crate::warn_limited!(
                    host,
                    "no ws connection uses the host {host}: message dropped (`.invalid` names are not looked up)"
                );
            }
        }
    }

    /// Whether `addr` is the connection that claimed the `.invalid` host
    /// `host` (a response to a request sent to that host comes from it).
    pub(super) fn knows(&self, host: &str, addr: SocketAddr) -> bool {
        host.ends_with(".invalid") && self.aliases().get(host).is_some_and(|a| a.peer == addr)
    }

    fn aliases(&self) -> std::sync::MutexGuard<'_, HashMap<String, Alias>> {
        self.aliases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connection `id` to `peer` over `transport` uses `host`: claim it if
    /// nobody has. Whether it is (now) this connection's.
    fn claim(&self, host: &str, transport: Transport, peer: SocketAddr, id: u64) -> bool {
        let mut aliases = self.aliases();
        let owner = aliases.entry(host.to_string()).or_insert(Alias {
            transport,
            peer,
            id,
        });
        owner.id == id
    }

    /// Connection `id` closed: release its hosts.
    fn release(&self, hosts: &[String], id: u64) {
        let mut aliases = self.aliases();
        for host in hosts {
            if aliases.get(host).is_some_and(|a| a.id == id) {
                aliases.remove(host);
            }
        }
    }

    /// Upgrade, then run a connection: read and handle its messages while
    /// its writer sends what is queued; why it closed.
    async fn serve<S: Stream>(
        self: &Arc<Self>,
        shared: Arc<Shared>,
        stream: S,
        peer: SocketAddr,
        index: usize,
        transport: Transport,
    ) -> CloseReason {
        let limits = self.table.limits;
        let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            check_upgrade,
            Some(config(&limits)),
        );
        let ws = match tokio::time::timeout(limits.header_timeout, upgrade).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                crate::warn_limited!(%peer, "{transport} upgrade refused or failed: {e}");
                return CloseReason::Malformed;
            }
            Err(_) => return CloseReason::SlowHeader,
        };
        tracing::debug!(%peer, index, "{transport} connection accepted");
        let key = (transport, peer);
        let (id, queue, queued) = self.table.register(key);
        // Only the table sends: the writer ends once it is unregistered.
        drop(queue);
        let (sink, read) = ws.split();
        let activity = Arc::new(Activity::new());
        let mut writer = tokio::spawn(write_loop(
            sink,
            queued,
            Arc::clone(&activity),
            limits.write_timeout,
        ));
        let reason = {
            let mut reader = Reader {
                sockets: self,
                shared: &shared,
                index,
                transport,
                peer,
                id,
                limits,
                activity: &activity,
                aliases: Vec::new(),
                out: Vec::with_capacity(4),
                silent_until: Some(Instant::now() + limits.header_timeout),
            };
            let reason = reader.run(read, &mut writer).await;
            self.release(&reader.aliases, id);
            reason
        };
        self.table.unregister(key, id);
        if !writer.is_finished()
            && tokio::time::timeout(CLOSE_GRACE, &mut writer)
                .await
                .is_err()
        {
            writer.abort();
        }
        reason
    }
}

/// The WebSocket limits: messages and frames up to the SIP message limit.
fn config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(limits.max_message))
}

/// The upgrade must offer the `sip` subprotocol (RFC 7118 §4); the
/// answer selects it. Any path is accepted.
#[allow(clippy::result_large_err)]
fn check_upgrade(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offers_sip = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
    if !offers_sip {
        let mut refusal = ErrorResponse::new(Some(
            "the WebSocket subprotocol `sip` (RFC 7118) is required\n".to_string(),
        ));
        *refusal.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refusal);
    }
    response.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(response)
}

fn log_close(peer: SocketAddr, transport: Transport, reason: CloseReason, limits: &Limits) {
    match reason {
        CloseReason::Oversize => {
            crate::warn_limited!(%peer, reason = reason.label(), "{transport} connection closed: a message over {} bytes", limits.max_message);
        }
        CloseReason::SlowHeader => {
            crate::warn_limited!(%peer, reason = reason.label(), "{transport} connection closed: no handshake or upgrade within {:?}", limits.header_timeout);
        }
        CloseReason::Silent => {
            crate::warn_limited!(%peer, reason = reason.label(), "{transport} connection closed: no SIP message within {:?} of the upgrade", limits.header_timeout);
        }
        _ => tracing::debug!(%peer, reason = reason.label(), "{transport} connection closed"),
    }
}

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Message>;
type Source<S> = futures_util::stream::SplitStream<WebSocketStream<S>>;

/// Send what is queued for a connection, one message per SIP message,
/// until the queue closes (then a close frame) or a write fails or takes
/// longer than `timeout`.
async fn write_loop<S: Stream>(
    mut sink: Sink<S>,
    mut queued: Queued,
    activity: Arc<Activity>,
    timeout: Duration,
) {
    while let Some(bytes) = queued.recv().await {
        match tokio::time::timeout(timeout, sink.send(to_message(bytes))).await {
            Ok(Ok(())) => activity.touch(),
            Ok(Err(e)) => {
                tracing::debug!("ws write failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("ws write timed out: the peer does not read");
                return;
            }
        }
    }
    let _ = tokio::time::timeout(timeout, sink.close()).await;
}

/// A text message (SIP is text; a body that is not UTF-8 goes binary).
fn to_message(bytes: Payload) -> Message {
    match String::from_utf8(bytes.as_ref().to_vec()) {
        Ok(text) => Message::text(text),
        Err(e) => Message::binary(e.into_bytes()),
    }
}

/// Whether a WebSocket message can be a SIP message: it has a complete
/// header section (the body is the rest of the message, RFC 7118 §5).
/// Blank lines alone (a keep-alive some clients send) are not.
fn is_sip_message(data: &[u8]) -> bool {
    !data.trim_ascii().is_empty() && super::framing::blank_line(data).is_some()
}

/// The `.invalid` hosts (lowercase) a request names in its top Via and its
/// first Contact (RFC 7118 §5.2); nothing for a response.
fn invalid_hosts(message: &[u8]) -> Vec<String> {
    let mut hosts = Vec::new();
    if message.starts_with(b"SIP/") {
        return hosts;
    }
    let head_end = super::framing::blank_line(message).unwrap_or(message.len());
    let mut via_seen = false;
    let mut contact_seen = false;
    for line in message[..head_end].split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let is = |long: &[u8], short: &[u8]| {
            name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
        };
        let value = &line[colon + 1..];
        let first_value = value.split(|&b| b == b',').next().unwrap_or(value);
        if is(b"via", b"v") && !via_seen {
            via_seen = true;
        } else if is(b"contact", b"m") && !contact_seen {
            contact_seen = true;
        } else {
            continue;
        }
        if let Some(host) = invalid_host_in(first_value)
            && !hosts.contains(&host)
        {
            hosts.push(host);
        }
    }
    hosts
}

/// The first host name ending in `.invalid` in `text`, lowercase.
fn invalid_host_in(text: &[u8]) -> Option<String> {
    let is_host = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&lower[from..], b".invalid") {
        let end = from + at + b".invalid".len();
        if lower.get(end).is_none_or(|b| !is_host(b)) {
            let start = lower[..from + at]
                .iter()
                .rposition(|b| !is_host(b))
                .map_or(0, |p| p + 1);
            if start < from + at {
                return String::from_utf8(lower[start..end].to_vec()).ok();
            }
        }
        from = end;
    }
    None
}

/// The reading side of one connection.
struct Reader<'a> {
    sockets: &'a Sockets,
    shared: &'a Shared,
    index: usize,
    /// `ws` or `wss`.
    transport: Transport,
    peer: SocketAddr,
    /// The connection's id in the table.
    id: u64,
    limits: Limits,
    activity: &'a Activity,
    /// The `.invalid` hosts this connection claimed.
    aliases: Vec<String>,
    out: Vec<Outgoing>,
    /// The first SIP message must come by then (pings do not count);
    /// None once it has (see the TCP reader's).
    silent_until: Option<Instant>,
}

impl Reader<'_> {
    /// Read until the connection must close; why it closes.
    async fn run<S: Stream>(
        &mut self,
        mut read: Source<S>,
        writer: &mut tokio::task::JoinHandle<()>,
    ) -> CloseReason {
        loop {
            let idle_at = self.activity.last() + self.limits.idle_timeout;
            let wake = self.silent_until.map_or(idle_at, |at| at.min(idle_at));
            tokio::select! {
                next = tokio::time::timeout_at(wake.into(), read.next()) => match next {
                    Err(_) => {
                        let now = Instant::now();
                        if self.silent_until.is_some_and(|at| now >= at) {
                            return CloseReason::Silent;
                        }
                        if now >= self.activity.last() + self.limits.idle_timeout {
                            return CloseReason::Idle;
                        }
                    }
                    Ok(None) => return CloseReason::Peer,
                    Ok(Some(Err(e))) => return self.failed(e),
                    Ok(Some(Ok(message))) => {
                        self.activity.touch();
                        if let Some(reason) = self.on_message(message) {
                            return reason;
                        }
                    }
                },
                _ = &mut *writer => return CloseReason::Error,
            }
        }
    }

    /// One WebSocket message: a SIP message goes to the core; a close ends.
    fn on_message(&mut self, message: Message) -> Option<CloseReason> {
        let sip = match message {
            Message::Text(text) => self.handle(text.as_bytes()),
            Message::Binary(data) => self.handle(&data),
            Message::Close(_) => return Some(CloseReason::Peer),
            // tungstenite answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
        };
        // Only a SIP message ends the wait for the first one.
        if sip {
            self.silent_until = None;
        }
        // The message that started a ban of its source closes it.
        self.shared
            .core()
            .is_banned(self.peer.ip(), Instant::now())
            .then_some(CloseReason::Banned)
    }

    fn failed(&self, e: tungstenite::Error) -> CloseReason {
        use tungstenite::Error;
        match e {
            Error::Capacity(_) => CloseReason::Oversize,
            Error::ConnectionClosed | Error::AlreadyClosed => CloseReason::Peer,
            Error::Protocol(e) => {
                crate::warn_limited!(peer = %self.peer, "ws protocol error: {e}");
                CloseReason::Malformed
            }
            e => {
                tracing::debug!(peer = %self.peer, "ws read failed: {e}");
                CloseReason::Error
            }
        }
    }

    /// Claim the `.invalid` hosts a request from the client names.
    fn claim_hosts(&mut self, message: &[u8]) {
        for host in invalid_hosts(message) {
            if self.aliases.len() >= MAX_ALIASES || self.aliases.contains(&host) {
                continue;
            }
            if self
                .sockets
                .claim(&host, self.transport, self.peer, self.id)
            {
                self.aliases.push(host);
            }
        }
    }

    /// Hand a WebSocket message to the core; whether it starts like a SIP
    /// message (only such a one ends the wait for the first one).
    fn handle(&mut self, message: &[u8]) -> bool {
        if !is_sip_message(message) {
            if !message.trim_ascii().is_empty() {
                metrics::dropped(DropReason::Malformed);
                crate::warn_limited!(peer = %self.peer, len = message.len(), "ws message dropped: not a SIP message (no complete header section)");
            }
            return false;
        }
        metrics::stream_message(self.transport);
        self.claim_hosts(message);
        super::handle_guarded(
            self.shared,
            Instant::now(),
            self.index,
            message,
            self.peer,
            &mut self.out,
        );
        super::framing::has_sip_start_line(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sip_message_needs_a_complete_header_section() {
        assert!(is_sip_message(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/WS x.invalid\r\n\r\n"
        ));
        assert!(is_sip_message(
            b"MESSAGE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\nhello"
        ));
        assert!(!is_sip_message(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/WS x"
        ));
        assert!(!is_sip_message(b"\r\n\r\n"));
        assert!(!is_sip_message(b""));
    }

    #[test]
    fn invalid_hosts_of_via_and_contact() {
        let request = b"INVITE sip:bob@example.com SIP/2.0\r\n\
            Via: SIP/2.0/WS DF7jal23ls0d.invalid;branch=z9hG4bK1, SIP/2.0/WS other.invalid\r\n\
            Via: SIP/2.0/WS second.invalid\r\n\
            m: <sip:x@abc.invalid;transport=ws>\r\n\
            Subject: see z.invalid\r\n\r\nbody y.invalid";
        assert_eq!(
            invalid_hosts(request),
            ["df7jal23ls0d.invalid", "abc.invalid"]
        );
        assert!(invalid_hosts(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/WS a.invalid\r\n\r\n").is_empty());
        assert_eq!(invalid_host_in(b"SIP/2.0/WS 10.0.0.1:5060"), None);
        assert_eq!(invalid_host_in(b"<sip:a@.invalid>"), None);
        assert_eq!(invalid_host_in(b"<sip:a@b.invalidx>"), None);
    }

    #[allow(clippy::result_large_err)]
    fn upgrade(protocols: Option<&str>) -> Result<Response, ErrorResponse> {
        let mut request = Request::builder().uri("/");
        if let Some(p) = protocols {
            request = request.header("Sec-WebSocket-Protocol", p);
        }
        check_upgrade(&request.body(()).unwrap(), Response::new(()))
    }

    #[test]
    fn the_upgrade_must_offer_sip() {
        let ok = upgrade(Some("chat, sip")).unwrap();
        assert_eq!(ok.headers()["sec-websocket-protocol"], "sip");
        assert_eq!(upgrade(None).unwrap_err().status(), 400);
        assert_eq!(upgrade(Some("chat")).unwrap_err().status(), 400);
    }
}
