//! The I/O layer: owns the UDP sockets, feeds received datagrams to the
//! sans-IO core and sends what it returns.
//!
//! Each UDP socket has `workers` receive threads ([`udp`]): one, the
//! lead, blocks in `recvfrom(2)`, handles the datagram and sends the
//! results with blocking `sendto(2)` (per message two system calls and one
//! wake-up, where a readiness loop adds an `EAGAIN` read and an
//! `epoll_wait`); the others sleep until the lead meets a backlog and
//! calls them, so under load even a single peer (one carrier or SBC
//! sending everything from one IP:port, which `SO_REUSEPORT` would pin to
//! one socket) is spread over every worker, and under light load a message
//! costs no wake-up of another core. The core takes no process-wide lock
//! (see [`crate::proxy::Core`]).
//!
//! Timer threads (one per worker, at most one per lane) drive the core's
//! timer lanes (a transaction shard each, and the probes): each sleeps until
//! the earliest deadline of its lanes, on a grid (see [`TimerClock`]), and
//! is woken early only by a message that makes an earlier one. The tokio
//! runtime keeps what waits on other sockets: the sibling link, name
//! resolution, metrics and signals. Host names in next hops are resolved there (RFC 3263:
//! NAPTR, SRV, A/AAAA with hickory, see [`dns`]; cached for the records'
//! TTLs and bounded: see [`resolver`]).
//! Draining and the hand-over at shutdown: see [`handover`]. Sharing a
//! port with the instance a rollout replaces: see [`takeover`].
//!
//! Every listen entry is one entry of the socket table ([`Sockets`]), at
//! the index of its listener in the core's identity: a UDP socket, or a
//! TCP listener ([`tcp`], on a runtime of its own with `workers` threads).
//! A `ws:` entry is a TCP listener whose connections speak SIP over
//! WebSocket ([`ws`], on the TCP runtime, in the same connection table).
//! [`send`] picks the way by the entry the core chose. The sibling link,
//! the hand-over and the draining sweep are UDP's; TCP connections are not
//! handed over (a draining instance keeps its open connections until it
//! exits).

mod asker;
pub mod connections;
mod dns;
pub mod framing;
mod handover;
pub mod queue;
mod resolver;
mod rtpengine;
mod sibling;
mod stream_threads;
mod takeover;
mod tcp;
pub mod tls;
mod udp;
mod ws;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::Routes;
use crate::metrics::{self, DropReason};
use crate::proxy::{
    Core, CoreConfig, DestinationState, DrainMode, Identity, Listener, Outgoing, Payload, Touched,
    Unsent,
};
use crate::target::NextHop;
use crate::transport::{ListenAddr, Transport};

/// Largest datagram accepted (RFC 3261 §18.1.1: up to 65,535 bytes).
const MAX_DATAGRAM: usize = 65_535;

/// How to run the proxy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Addresses to listen on (UDP or TCP). Port 0 picks a free port.
    pub listen: Vec<ListenAddr>,
    /// Host[:port] written into Via and Record-Route instead of the bound address.
    pub advertise: Option<String>,
    /// Timers and limits of the core.
    pub core: CoreConfig,
    /// Receive threads per socket (0: one per core the process may use).
    pub workers: usize,
    /// The secret the branch checks are keyed with, shared by a pool of
    /// instances (`--secret-file`); None: random for this process.
    pub secret: Option<Vec<u8>>,
    /// What `authenticate` checks against (None: the routes do not
    /// authenticate, or `authenticate` answers 500).
    pub authenticator: Option<Arc<crate::auth::Authenticator>>,
    /// Share the listen ports with the processes holding them and ask the
    /// sipforge instances among them to drain (`--takeover`); false: a
    /// port another process holds is an "address in use" error. See
    /// [`takeover`].
    pub takeover: bool,
    /// The bounds of TCP connections (most open, timeouts, largest message).
    pub streams: connections::Limits,
    /// The DNS servers next hop names are looked up with, overriding the
    /// routes file's `dns.servers` (None: those, else the system's
    /// configuration). Tests point it at a server of their own.
    pub dns_servers: Option<Vec<SocketAddr>>,
    /// The TLS certificates, overriding the routes file's `tls:` block
    /// (None: that block's files). Tests pass files of their own.
    pub tls: Option<tls::TlsFiles>,
    /// The shared location store's URL, overriding `registrar.store`
    /// when that is one (`--registrar-store`; tests start their own).
    pub registrar_store: Option<String>,
    /// rtpengine control sockets (`IP:PORT`), replacing the routes file's
    /// `rtpengine:` list (`--rtpengine`; tests start their own).
    pub rtpengine: Option<Vec<String>>,
}

/// The default number of workers: the cores this process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A timer thread: the lanes it drives are `lane % timer_threads == its index`.
struct TimerThread {
    clock: TimerClock,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

/// One listen entry: a UDP socket, a TCP or a WebSocket listener.
enum Socket {
    Udp(Arc<UdpSocket>),
    Tcp,
    Ws,
    Tls,
    Wss,
}

/// The socket table: one entry per listen entry, in listen order (the
/// index the core knows them by), and the TCP connections.
pub(crate) struct Sockets {
    entries: Box<[Socket]>,
    /// The bound address of each entry.
    local: Box<[SocketAddr]>,
    /// The TCP side (None: no TCP or WebSocket listener).
    streams: Option<Arc<tcp::Streams>>,
    /// The WebSocket side (None: no WebSocket listener).
    ws: Option<Arc<ws::Sockets>>,
}

impl Sockets {
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The UDP socket of entry `index` (None: out of range, or TCP).
    fn udp(&self, index: usize) -> Option<&Arc<UdpSocket>> {
        match self.entries.get(index)? {
            Socket::Udp(socket) => Some(socket),
            Socket::Tcp | Socket::Tls | Socket::Ws | Socket::Wss => None,
        }
    }

    /// The bound address of entry `index`.
    fn local(&self, index: usize) -> Option<SocketAddr> {
        self.local.get(index).copied()
    }

    /// Send `bytes` to the WebSocket client that calls itself `host` (a
    /// `.invalid` name); dropped when none does.
    fn send_to_invalid(&self, host: &str, bytes: Payload) {
        match &self.ws {
            Some(ws) => ws.send_to_alias(host, bytes),
            None => {
                crate::metrics::dropped(crate::metrics::DropReason::Unresolved);
                crate::warn_limited!(
                    host,
                    "next hop {host}: a `.invalid` name, not looked up: message dropped"
                );
            }
        }
    }

    /// Whether entry `index` may send to `addr` without opening a
    /// connection: a UDP socket, or a stream one with a connection to it.
    fn has_connection(&self, index: usize, addr: SocketAddr) -> bool {
        let table = self.streams.as_ref().map(|s| s.table());
        let key = match self.entries.get(index) {
            Some(Socket::Udp(_)) => return true,
            Some(Socket::Tcp) => (Transport::Tcp, addr),
            Some(Socket::Tls) => (Transport::Tls, addr),
            Some(Socket::Ws) => (Transport::Ws, addr),
            Some(Socket::Wss) => (Transport::Wss, addr),
            None => return false,
        };
        table.is_some_and(|t| t.has(key))
    }

    /// Send `bytes` to `addr` the way of entry `index`: a datagram, or over
    /// a TCP connection (never blocking on it).
    fn send(&self, index: usize, bytes: Payload, addr: SocketAddr) {
        self.send_named(index, bytes, addr, None);
    }

    /// [`Sockets::send`] to a next hop that was named `host` (what a TLS
    /// connection verifies the peer's certificate against).
    fn send_named(&self, index: usize, bytes: Payload, addr: SocketAddr, host: Option<&str>) {
        match self.entries.get(index) {
            Some(Socket::Udp(socket)) => send_to(socket, bytes.as_ref(), addr),
            Some(Socket::Tcp) => {
                if let Some(streams) = &self.streams {
                    streams.send(index, Transport::Tcp, addr, bytes, host);
                }
            }
            Some(Socket::Tls) => {
                if let Some(streams) = &self.streams {
                    streams.send(index, Transport::Tls, addr, bytes, host);
                }
            }
            Some(Socket::Ws) => {
                if let Some(ws) = &self.ws {
                    ws.send(Transport::Ws, addr, bytes);
                }
            }
            Some(Socket::Wss) => {
                if let Some(ws) = &self.ws {
                    ws.send(Transport::Wss, addr, bytes);
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
impl Sockets {
    /// A table of UDP sockets only (unit tests).
    fn udp_only(sockets: Vec<Arc<UdpSocket>>) -> Arc<Sockets> {
        let local = sockets
            .iter()
            .map(|s| s.local_addr().expect("bound"))
            .collect();
        Arc::new(Sockets {
            entries: sockets.into_iter().map(Socket::Udp).collect(),
            local,
            streams: None,
            ws: None,
        })
    }
}

/// What the receive threads and the runtime's tasks share.
struct Shared {
    core: Core,
    sockets: Arc<Sockets>,
    /// The timer threads; lane `l` belongs to `timers[l % timers.len()]`.
    timers: Box<[TimerThread]>,
    /// Becomes true when the server stops: the receive threads hand over and end.
    stopping: AtomicBool,
    /// The crew of UDP receive threads of each listen entry (unused for
    /// other transports), woken when the server stops.
    crews: Box<[Arc<udp::Crew>]>,
    /// The same, for the runtime's tasks.
    stop: watch::Receiver<bool>,
    /// Where instances sharing our ports pass us our responses.
    sibling: Option<sibling::Link>,
    /// Sends to next hops given by name.
    resolver: Arc<resolver::Resolver>,
    /// Notified when a new instance takes our ports over (`--takeover`).
    taken_over: tokio::sync::Notify,
    /// Carries the core's questions to a shared store (None: none used).
    asker: Option<asker::Asker>,
}

impl Shared {
    fn core(&self) -> &Core {
        &self.core
    }

    /// Wake the timer thread of `lane` if a deadline at `at` would fire
    /// late with its current wake-up.
    fn timer_hint(&self, lane: usize, at: Option<Instant>) {
        let Some(at) = at else {
            return;
        };
        let t = &self.timers[lane % self.timers.len()];
        if t.clock.wakes_too_late_for(at)
            && let Some(thread) = t.thread.get()
        {
            thread.unpark();
        }
    }
}

/// A running proxy: its bound addresses, its threads and its tasks.
pub struct Server {
    local: Vec<SocketAddr>,
    shared: Arc<Shared>,
    /// The threads of the TCP, TLS and WebSocket connections (None: no such listener).
    streams: Option<stream_threads::StreamThreads>,
    threads: Vec<JoinHandle<()>>,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Live transactions in the core.
    pub fn transactions(&self) -> usize {
        self.shared.core().transactions()
    }

    /// Every target of every destination set and whether it is up.
    pub fn destination_states(&self) -> Vec<DestinationState> {
        self.shared.core().destination_states()
    }

    /// The cached RFC 3263 targets of a next hop name, in the order to try
    /// them (None: not looked up, or expired): see `Resolver::targets`.
    pub fn name_targets(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
    ) -> Option<Vec<crate::resolve::Target>> {
        self.shared.resolver.targets(host, port, transport)
    }

    /// The addresses the listen entries are bound to (real ports), in
    /// listen order, UDP and TCP alike.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// TCP connections open now (accepted and opened).
    pub fn connections(&self) -> usize {
        self.shared.sockets.streams.as_ref().map_or(0, |s| s.open())
    }

    /// Start draining (after SIGTERM); see [`crate::proxy::drain`].
    pub fn start_draining(&self, mode: DrainMode) {
        self.shared.core().start_draining(mode);
    }

    /// Transactions still waiting for their final response.
    pub fn pending_transactions(&self) -> usize {
        self.shared.core().pending_transactions()
    }

    /// Wait until a new instance started with `--takeover` on one of our
    /// addresses asks us to leave (over the sibling link). What to do then
    /// is the caller's: the binary drains and stops, as on SIGTERM. A
    /// request that came while nobody waited is remembered.
    pub async fn taken_over(&self) {
        self.shared.taken_over.notified().await;
    }

    fn signal_stop(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        for (index, crew) in self.shared.crews.iter().enumerate() {
            if let Some(socket) = self.shared.sockets.udp(index) {
                udp::wake_for_stop(socket, crew);
            }
        }
        let _ = self.stop.send(true);
        for t in self.shared.timers.iter() {
            if let Some(thread) = t.thread.get() {
                thread.unpark();
            }
        }
    }

    /// Stop receiving and end the threads and tasks, handing the sockets'
    /// traffic over to any other process bound to the same ports (see
    /// [`handover`]).
    pub async fn shutdown(mut self) {
        self.signal_stop();
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        // The threads end by themselves (each sweep is bounded); this only
        // keeps a stuck one from holding the exit.
        let _ = tokio::time::timeout(handover::TIME_LIMIT + udp::REST, joined).await;
        let ended = tokio::time::timeout(handover::TIME_LIMIT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if ended.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        // Closes the TCP connections (their tasks end with the runtime).
        if let Some(s) = &mut self.streams {
            s.stop();
        }
    }

    /// Wait until the server's tasks end (they end only on a stop).
    pub async fn run_until_stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for Server {
    /// A server dropped without [`Server::shutdown`] still stops its
    /// threads (at once, [`udp::REST`] at worst, plus the hand-over).
    fn drop(&mut self) {
        self.signal_stop();
        if let Some(s) = &mut self.streams {
            s.stop();
        }
    }
}

/// Bind the sockets and start serving `routes`. Must be called inside a
/// tokio runtime (it keeps the timers, the sibling link and name
/// resolution); the sockets get threads of their own.
pub async fn start(routes: &'static dyn Routes, options: Options) -> io::Result<Server> {
    if options.listen.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nothing to listen on",
        ));
    }
    let store = shared_store(routes, &options)?;
    let tls = load_tls(routes, &options)?;
    let mut sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    let mut ws_listeners = Vec::new();
    let mut listeners = Vec::new();
    let mut taken = Vec::new();
    for (index, entry) in options.listen.iter().enumerate() {
        let (socket, local, held) = match entry.transport {
            Transport::Udp => {
                let (socket, held) = bind_listen(entry.addr, options.takeover)?;
                let local = socket.local_addr()?;
                (Socket::Udp(Arc::new(socket)), local, held)
            }
            Transport::Tcp => {
                let (listener, held) = tcp::bind(entry.addr, options.takeover)?;
                let local = listener.local_addr()?;
                tcp_listeners.push((index, Transport::Tcp, listener));
                (Socket::Tcp, local, held)
            }
            Transport::Ws | Transport::Wss => {
                let (listener, held) = ws::bind(entry.addr, options.takeover)?;
                let local = listener.local_addr()?;
                ws_listeners.push((index, entry.transport, listener));
                let socket = if entry.transport == Transport::Ws {
                    Socket::Ws
                } else {
                    Socket::Wss
                };
                (socket, local, held)
            }
            Transport::Tls => {
                let (listener, held) = tcp::bind(entry.addr, options.takeover)?;
                let local = listener.local_addr()?;
                tcp_listeners.push((index, Transport::Tls, listener));
                (Socket::Tls, local, held)
            }
        };
        let name = entry.transport;
        if held {
            taken.push(local);
        } else if options.takeover {
            tracing::info!(listen = %local, "nothing to take over on {name}:{local}: nobody held it");
        }
        let listener = Listener::with_transport(local, name, options.advertise.as_deref())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        listeners.push(listener);
        sockets.push(socket);
    }
    let local: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
    let (stop, stopped) = watch::channel(false);
    // The branch key: the pool's (`--secret-file`), else the one the
    // instances of this host share for rollouts, else our own.
    let secret = options.secret.clone().or_else(sibling::shared_secret);
    let mut identity = match &secret {
        Some(secret) => Identity::with_secret(listeners, secret),
        None => Identity::new(listeners),
    };
    identity.local_ips = interface_ips();
    let workers = if options.workers == 0 {
        default_workers()
    } else {
        options.workers
    };
    let mut config = options.core;
    // Enough shards that workers rarely meet on one.
    config.shards = config.shards.max(4 * workers);
    let core = Core::new(routes, identity.clone(), config);
    if let Some(authenticator) = &options.authenticator {
        core.set_authenticator(Arc::clone(authenticator));
    }
    core.start(Instant::now());
    let timer_threads = workers.clamp(1, core.lanes());
    // The TCP, TLS and WebSocket connections run on threads of their own.
    let stream_threads = if tcp_listeners.is_empty() && ws_listeners.is_empty() {
        None
    } else {
        Some(stream_threads::StreamThreads::start(workers)?)
    };
    let streams = stream_threads.as_ref().map(|threads| {
        let tcp: Vec<(usize, Transport, SocketAddr)> = tcp_listeners
            .iter()
            .map(|(index, transport, _)| (*index, *transport, local[*index]))
            .collect();
        tcp::Streams::new(threads.pool().clone(), tcp, options.streams, tls.clone())
    });
    let ws = streams
        .as_ref()
        .filter(|_| !ws_listeners.is_empty())
        .map(|s| {
            let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
            ws::Sockets::new(Arc::clone(s.table()), s.pool().clone(), acceptor)
        });
    let sockets = Arc::new(Sockets {
        entries: sockets.into(),
        local: local.clone().into(),
        streams,
        ws,
    });
    let sibling = sibling::Link::bind(core.instance())
        .inspect_err(|e| tracing::warn!("no sibling link (rollouts lose stateful responses): {e}"))
        .ok();
    let dns_servers = options
        .dns_servers
        .clone()
        .or_else(|| dns_settings_servers(routes));
    let resolver = Arc::new(resolver::Resolver::new(
        Arc::clone(&sockets),
        crate::resolve::Limits::default(),
        identity,
        dns_servers.as_deref(),
        options.listen.iter().map(|l| l.transport).collect(),
    ));
    let names = Arc::clone(&resolver);
    let ws_names = sockets.ws.clone();
    core.set_name_check(Box::new(move |host, addr| {
        names.knows(host, addr) || ws_names.as_ref().is_some_and(|ws| ws.knows(host, addr))
    }));
    let targets = Arc::clone(&resolver);
    core.set_name_targets(Box::new(move |host, port, transport| {
        targets.targets(host, port, transport)
    }));
    let media = if routes.settings().rtpengine.is_empty() {
        None
    } else {
        let addrs: Vec<&str> = match &options.rtpengine {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => routes.settings().rtpengine.to_vec(),
        };
        Some(rtpengine::Media::start(&addrs, stopped.clone()).await?)
    };
    let (asker, asks) = if store.is_some() || media.is_some() {
        let (asker, asks) = asker::Asker::new();
        (Some(asker), Some(asks))
    } else {
        (None, None)
    };
    let crews = (0..sockets.len()).map(|_| udp::Crew::new()).collect();
    let shared = Arc::new(Shared {
        core,
        sockets,
        timers: (0..timer_threads)
            .map(|_| TimerThread {
                clock: TimerClock::new(options.core.timers.t1),
                thread: std::sync::OnceLock::new(),
            })
            .collect(),
        stopping: AtomicBool::new(false),
        crews,
        stop: stopped,
        sibling,
        resolver,
        taken_over: tokio::sync::Notify::new(),
        asker,
    });
    let mut threads = Vec::new();
    let mut spawn = |name: String, f: Box<dyn FnOnce() + Send>| -> io::Result<()> {
        match std::thread::Builder::new().name(name).spawn(f) {
            Ok(thread) => {
                threads.push(thread);
                Ok(())
            }
            Err(e) => {
                shared.stopping.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    };
    for index in 0..shared.sockets.len() {
        if shared.sockets.udp(index).is_none() {
            continue;
        }
        let crew = &shared.crews[index];
        for w in 0..workers {
            let for_thread = Arc::clone(&shared);
            let worker = udp::Worker {
                socket: index,
                id: index * workers + w,
                crew: Arc::clone(crew),
            };
            let receive: Box<dyn FnOnce() + Send> = if w == 0 {
                Box::new(move || udp::lead(worker, for_thread))
            } else {
                Box::new(move || udp::member(worker, for_thread))
            };
            spawn(format!("sf-udp{index}-w{w}"), receive)?;
        }
    }
    for t in 0..timer_threads {
        let for_thread = Arc::clone(&shared);
        spawn(
            format!("sf-timer{t}"),
            Box::new(move || timer_thread(t, for_thread)),
        )?;
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(sibling::receive_loop(Arc::clone(&shared)));
    tasks.spawn(log_summaries(shared.stop.clone()));
    if let Some(asks) = asks {
        let servers = asker::Servers { store, media };
        tasks.spawn(asker::run(
            Arc::clone(&shared),
            servers,
            asks,
            shared.stop.clone(),
        ));
    }
    let weak = Arc::downgrade(&shared);
    shared
        .resolver
        .set_retarget(Box::new(move |bytes, socket, transport, to| {
            if let Some(shared) = weak.upgrade() {
                retarget(&shared, bytes, socket, transport, to);
            }
        }));
    if let Some(streams) = &shared.sockets.streams {
        streams.attach(&shared);
        for (index, transport, listener) in tcp_listeners {
            streams.accept(index, transport, listener, shared.stop.clone());
        }
    }
    if let Some(ws) = &shared.sockets.ws {
        ws.attach(&shared);
        for (index, transport, listener) in ws_listeners {
            ws.accept(index, transport, listener, shared.stop.clone());
        }
    }
    for (addr, entry) in local.iter().zip(&options.listen) {
        let name = entry.transport;
        tracing::info!(listen = %addr, workers, "listening on {name}:{addr} with {workers} workers");
    }
    if !taken.is_empty() {
        ask_holders_to_drain(&shared, &taken);
    }
    Ok(Server {
        local,
        shared,
        streams: stream_threads,
        threads,
        tasks,
        stop,
    })
}

/// The shared location store the routes' registrar uses (None: none, or
/// the in-memory one the core holds). A store that cannot be used is an
/// error at start, not at the first REGISTER.
fn shared_store(
    routes: &'static dyn Routes,
    options: &Options,
) -> io::Result<Option<Arc<dyn crate::registrar::AsyncStore>>> {
    let unsupported = |e: String| io::Error::new(io::ErrorKind::Unsupported, e);
    let Some(settings) = &routes.settings().registrar else {
        return match &options.registrar_store {
            Some(_) => Err(unsupported(
                "--registrar-store: the routes file has no `registrar:` block".into(),
            )),
            None => Ok(None),
        };
    };
    let registrar =
        crate::proxy::location::Registrar::from_settings(settings).map_err(unsupported)?;
    if !registrar.is_shared() {
        return match &options.registrar_store {
            Some(_) => Err(unsupported(
                "--registrar-store: the routes file's registrar keeps its bindings in memory; \
                 a shared store is chosen in the routes file (`store: redis://...`)"
                    .into(),
            )),
            None => Ok(None),
        };
    }
    let url = options.registrar_store.as_deref().unwrap_or(settings.store);
    let store = crate::registrar::RedisStore::new(url, options.core.ask_timeout)
        .map_err(|e| unsupported(format!("registrar store {url}: {}", e.message)))?;
    tracing::info!(store = url, "location bindings are kept in {url}");
    Ok(Some(Arc::new(store)))
}

/// The TLS configurations from [`Options::tls`], else the routes file's
/// `tls:` block (None: neither). A `tls:` or `wss:` listener needs them.
fn load_tls(routes: &'static dyn Routes, options: &Options) -> io::Result<Option<tls::Tls>> {
    let files = options.tls.clone().or_else(|| {
        routes
            .settings()
            .tls
            .as_ref()
            .map(tls::TlsFiles::from_settings)
    });
    let Some(files) = files else {
        if let Some(entry) = options.listen.iter().find(|l| l.transport.is_secure()) {
            let name = entry.transport;
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "listen {entry}: a {name} listener needs the routes file's `tls:` block (certificate and key)"
                ),
            ));
        }
        return Ok(None);
    };
    tls::load(&files)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// The IP addresses of this host's interfaces (getifaddrs), so a next hop
/// naming any of them on a port we listen on with an unspecified address
/// is recognised as ourselves. Empty when the list cannot be read.
fn interface_ips() -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut ips = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; every
    // node and address pointer is checked for null before it is read, and
    // sockaddr_in/sockaddr_in6 are read only when the family says so.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return ips;
        }
        let mut node = head;
        while !node.is_null() {
            let addr = (*node).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        ips.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        ips.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            node = (*node).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    ips
}

/// Bind listen address `addr`; also whether another socket held it (then
/// we share it: only with `takeover`, else that is an "address in use"
/// error). See [`takeover`].
fn bind_listen(addr: SocketAddr, takeover: bool) -> io::Result<(UdpSocket, bool)> {
    let held = takeover::held(addr)?;
    if held && !takeover {
        return Err(takeover::in_use(addr));
    }
    let socket = udp::bind(addr).map_err(|e| takeover::naming(addr, e))?;
    Ok((socket, held))
}

/// Ask the instances on the sibling link that hold one of `taken` (the
/// addresses we now share) to drain and stop.
fn ask_holders_to_drain(shared: &Shared, taken: &[SocketAddr]) {
    let list = taken
        .iter()
        .map(|a| format!("udp:{a}"))
        .collect::<Vec<_>>()
        .join(" ");
    let Some(link) = &shared.sibling else {
        tracing::warn!(
            "taking over {list}: no sibling link to ask the old instance to leave; stop it with SIGTERM"
        );
        return;
    };
    let asked = link.broadcast(&takeover::request(taken));
    tracing::info!(
        asked,
        "taking over {list}: asked the {asked} other instance(s) on the sibling link to drain if they hold it (one we cannot reach, e.g. with another SIPFORGE_RUNTIME_DIR, must be sent SIGTERM)"
    );
}

/// A takeover request came over the sibling link: when it names one of
/// our addresses, wake whoever waits in [`Server::taken_over`].
fn on_takeover_request(shared: &Shared, request: &[u8]) {
    let ours: Vec<SocketAddr> = shared.sockets.local.to_vec();
    match takeover::is_for(request, &ours) {
        Some((pid, addr)) => {
            let by = pid.map_or_else(|| "a new instance".to_string(), |p| format!("pid {p}"));
            tracing::info!(listen = %addr, "udp:{addr} taken over by {by}");
            shared.taken_over.notify_one();
        }
        None => tracing::debug!("a takeover request for ports that are not ours: ignored"),
    }
}

/// Handle one datagram and send what the core returns.
fn handle_one(
    shared: &Shared,
    index: usize,
    datagram: &[u8],
    source: SocketAddr,
    out: &mut Vec<Outgoing>,
) {
    handle_at(shared, Instant::now(), index, datagram, source, out);
}

/// [`handle_at`], catching a panic: the core does not panic; if it ever
/// did, one message is lost (with the panic message on stderr), not the
/// socket or the connection.
fn handle_guarded(
    shared: &Shared,
    now: Instant,
    index: usize,
    message: &[u8],
    source: SocketAddr,
    out: &mut Vec<Outgoing>,
) {
    let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handle_at(shared, now, index, message, source, out)
    }));
    if handled.is_err() {
        out.clear();
        let len = message.len();
        tracing::error!(%source, len, "internal error while handling a message: dropped");
    }
}

fn handle_at(
    shared: &Shared,
    now: Instant,
    index: usize,
    datagram: &[u8],
    source: SocketAddr,
    out: &mut Vec<Outgoing>,
) {
    if let Some(touched) = shared.core().handle(now, datagram, source, index, out) {
        shared.timer_hint(touched.lane, touched.next_deadline);
    }
    for outgoing in out.drain(..) {
        send(shared, outgoing);
    }
    asker::take_asks(shared);
}

/// Hand the core something besides a received message (`f`), then send
/// what it sent and carry out what it asked. A panic inside loses only
/// that one thing, logged as `what`.
fn guarded(
    shared: &Shared,
    what: std::fmt::Arguments<'_>,
    f: impl FnOnce(&Core, &mut Vec<Outgoing>) -> Option<Touched>,
) {
    let mut out = Vec::new();
    let handled =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(shared.core(), &mut out)));
    match handled {
        Ok(touched) => {
            if let Some(t) = touched {
                shared.timer_hint(t.lane, t.next_deadline);
            }
            for outgoing in out.drain(..) {
                send(shared, outgoing);
            }
            asker::take_asks(shared);
        }
        Err(_) => tracing::error!("internal error while {what}: dropped"),
    }
}

/// A message for `to` that could not be sent from entry `index`: the
/// core decides what it means (see [`Core::unsent`]); send what it sends.
fn unsent(shared: &Shared, index: usize, bytes: &[u8], to: SocketAddr) {
    guarded(
        shared,
        format_args!("handling a message unsent to {to}"),
        |core, out| core.unsent(Instant::now(), bytes, to, index, Unsent::Failed, out),
    );
}

/// A message sent to a name before it was looked up, whose first target
/// is over `transport`, not over entry `socket`'s: the core moves it (see
/// [`Core::retarget`]); send what it sends.
fn retarget(shared: &Shared, bytes: &[u8], socket: usize, transport: Transport, to: &NextHop) {
    guarded(
        shared,
        format_args!("moving a message for {to} to another transport"),
        |core, out| core.retarget(Instant::now(), bytes, socket, transport, to, out),
    );
}

/// When the timer task will wake next, rounded up to a grid of T1/50
/// (10 ms by default) so that the timers of many transactions (at 1,000
/// calls per second a few fall due every millisecond) fire together in one
/// wake-up. A timer fires at most one grid step late, which RFC 3261's
/// timers (multiples of T1) do not notice; receive threads wake the timer
/// task only for a deadline before its next grid step.
struct TimerClock {
    base: Instant,
    step_nanos: u64,
    /// The next wake-up, in nanoseconds since `base` (u64::MAX: none).
    wake_at: std::sync::atomic::AtomicU64,
}

impl TimerClock {
    fn new(t1: Duration) -> TimerClock {
        TimerClock {
            base: Instant::now(),
            step_nanos: (t1 / 50).as_nanos().clamp(1, u128::from(u64::MAX)) as u64,
            wake_at: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base)
            .as_nanos()
            .min(u128::from(u64::MAX - 1)) as u64
    }

    /// The grid point at or after `at`.
    fn round_up(&self, at: Instant) -> Instant {
        let nanos = self.nanos(at).div_ceil(self.step_nanos) * self.step_nanos;
        self.base + Duration::from_nanos(nanos)
    }

    /// Record the timer task's next wake-up (None: no deadline).
    fn set(&self, wake: Option<Instant>) {
        let nanos = wake.map_or(u64::MAX, |w| self.nanos(w));
        self.wake_at.store(nanos, Ordering::Relaxed);
    }

    /// Whether a deadline at `at` would fire more than a grid step late
    /// with the recorded wake-up.
    fn wakes_too_late_for(&self, at: Instant) -> bool {
        let wake = self.wake_at.load(Ordering::Relaxed);
        self.nanos(at).saturating_add(self.step_nanos) < wake
    }
}

/// The longest a timer thread sleeps without a deadline: a backstop, since
/// a stop wakes it and so does a receive thread that adds an earlier
/// deadline (see [`Shared::timer_hint`]); every wake-up of an idle thread
/// is CPU taken for nothing.
const TIMER_IDLE: Duration = Duration::from_secs(1);

/// Timer thread `t`: drives the lanes `l` with `l % timer threads == t`.
/// Fires what is due, then sleeps until the earliest deadline of its lanes
/// rounded up to the [`TimerClock`] grid, or until a receive thread wakes
/// it for an earlier one.
///
/// While it scans its lanes the recorded wake-up is "none", so a receive
/// thread that adds a deadline meanwhile always wakes it (an unpark before
/// the park makes the park return at once): no deadline is missed.
fn timer_thread(t: usize, shared: Arc<Shared>) {
    let me = &shared.timers[t];
    let _ = me.thread.set(std::thread::current());
    let count = shared.timers.len();
    let lanes: Vec<usize> = (0..shared.core().lanes())
        .filter(|lane| lane % count == t)
        .collect();
    let mut out: Vec<Outgoing> = Vec::with_capacity(8);
    crate::logbuf::batch();
    while !shared.stopping.load(Ordering::Relaxed) {
        me.clock.set(None);
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for &lane in &lanes {
            let core = shared.core();
            if core.next_deadline_in(lane).is_some_and(|d| d <= now) {
                let fired = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    core.on_timeout_in(lane, now, &mut out)
                }));
                if fired.is_err() {
                    out.clear();
                    tracing::error!(lane, "internal error while firing timers");
                }
                for outgoing in out.drain(..) {
                    send(&shared, outgoing);
                }
            }
            if let Some(d) = core.next_deadline_in(lane) {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        crate::logbuf::flush();
        let wake = next.map(|at| me.clock.round_up(at));
        me.clock.set(wake);
        let now = Instant::now();
        let sleep = wake.map_or(TIMER_IDLE, |w| {
            w.saturating_duration_since(now).min(TIMER_IDLE)
        });
        if !sleep.is_zero() {
            std::thread::park_timeout(sleep);
        }
    }
}

/// Writes the `suppressed K similar lines` summaries of rate-limited log
/// lines (see [`crate::log_limit`]) once their interval is over, so a flood
/// that stops is still reported.
async fn log_summaries(mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(crate::log_limit::INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => crate::log_limit::sweep(),
            _ = stop.changed() => return,
        }
    }
}

/// The routes file's `dns.servers` (`IP:PORT`, checked by the build; one
/// that does not parse is left out with a warning).
fn dns_settings_servers(routes: &dyn Routes) -> Option<Vec<SocketAddr>> {
    let dns = routes.settings().dns.as_ref()?;
    let servers: Vec<SocketAddr> = dns
        .servers
        .iter()
        .filter_map(|s| {
            s.parse()
                .inspect_err(|_| tracing::warn!(server = s, "dns.servers: not IP:PORT, left out"))
                .ok()
        })
        .collect();
    (!servers.is_empty()).then_some(servers)
}

/// Send what the core returned: over the transport of the listen entry
/// it names.
fn send(shared: &Shared, outgoing: Outgoing) {
    match outgoing.to {
        NextHop::Addr(addr) => shared.sockets.send(outgoing.socket, outgoing.bytes, addr),
        NextHop::Found { addr, ref name } => {
            shared
                .sockets
                .send_named(outgoing.socket, outgoing.bytes, addr, Some(name));
        }
        // A phone's connection, never a new one: without it the request
        // fails at once (430 Flow Failed).
        NextHop::Flow(addr) => {
            if shared.sockets.has_connection(outgoing.socket, addr) {
                shared.sockets.send(outgoing.socket, outgoing.bytes, addr);
            } else {
                metrics::dropped(DropReason::Unsent);
                tracing::debug!(%addr, "no open connection from {addr}: the request fails (430)");
                guarded(
                    shared,
                    format_args!("handling a request for a closed connection from {addr}"),
                    |core, out| {
                        core.unsent(
                            Instant::now(),
                            outgoing.bytes.as_ref(),
                            addr,
                            outgoing.socket,
                            Unsent::FlowFailed,
                            out,
                        )
                    },
                );
            }
        }
        // A WebSocket client's own name (RFC 7118 §5.2): over its
        // connection; never looked up (RFC 6761 §6.4).
        NextHop::Name { ref host, .. } if host.ends_with(".invalid") => {
            shared.sockets.send_to_invalid(host, outgoing.bytes);
        }
        // Resolution may take a while: never on a receive thread.
        NextHop::Name { .. } => shared.resolver.send(outgoing),
    }
}

fn send_to(socket: &UdpSocket, bytes: &[u8], addr: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, addr) {
        tracing::debug!(%addr, "send failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_clock_rounds_to_its_grid_and_wakes_only_for_earlier_deadlines() {
        let clock = TimerClock::new(Duration::from_millis(500));
        let step = Duration::from_millis(10);
        let base = clock.base;
        assert_eq!(clock.round_up(base + Duration::from_millis(3)), base + step);
        assert_eq!(clock.round_up(base + step), base + step);
        assert_eq!(
            clock.round_up(base + Duration::from_micros(10_001)),
            base + 2 * step
        );
        // Nothing awaited: any deadline needs a wake-up.
        clock.set(None);
        assert!(clock.wakes_too_late_for(base + Duration::from_secs(30)));
        // Awaiting 100 ms: a deadline within one step before it waits.
        clock.set(Some(base + Duration::from_millis(100)));
        assert!(!clock.wakes_too_late_for(base + Duration::from_millis(95)));
        assert!(!clock.wakes_too_late_for(base + Duration::from_millis(200)));
        assert!(clock.wakes_too_late_for(base + Duration::from_millis(80)));
    }
}
