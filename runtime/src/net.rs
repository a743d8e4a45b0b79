//! The tokio layer: owns the UDP sockets, feeds received datagrams to the
//! sans-IO core and sends what it returns. Host names in next hops are
//! resolved here (A/AAAA through the system resolver). Draining and the
//! hand-over at shutdown: see [`handover`].

mod handover;
mod sibling;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::api::Routes;
use crate::proxy::{Core, CoreConfig, DestinationState, DrainMode, Identity, Listener, Outgoing};
use crate::target::NextHop;

/// Largest datagram accepted (RFC 3261 §18.1.1: up to 65,535 bytes).
const MAX_DATAGRAM: usize = 65_535;
/// Socket buffers: the 208 KiB default drops bursts at a few thousand cps.
const SOCKET_BUFFER: usize = 4 << 20;

/// How to run the proxy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Addresses to listen on (UDP). Port 0 picks a free port.
    pub listen: Vec<SocketAddr>,
    /// Host[:port] written into Via and Record-Route instead of the bound address.
    pub advertise: Option<String>,
    /// Timers and limits of the core.
    pub core: CoreConfig,
}

/// What the socket tasks and the timer task share.
struct Shared {
    core: Mutex<Core>,
    sockets: Box<[Arc<UdpSocket>]>,
    /// Woken when a message made a timer due earlier than the one awaited.
    timer: Notify,
    /// Becomes true when the server stops: the loops hand over and end.
    stop: watch::Receiver<bool>,
    /// Where instances sharing our ports pass us our responses.
    sibling: Option<sibling::Link>,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock would poison it; the core does not
        // panic, and if it ever did the state is still usable.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running proxy: its bound addresses and its tasks.
pub struct Server {
    local: Vec<SocketAddr>,
    shared: Arc<Shared>,
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

    /// The addresses the sockets are bound to (real ports).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Start draining (after SIGTERM); see [`crate::proxy::drain`].
    pub fn start_draining(&self, mode: DrainMode) {
        self.shared.core().start_draining(mode);
    }

    /// Transactions still waiting for their final response.
    pub fn pending_transactions(&self) -> usize {
        self.shared.core().pending_transactions()
    }

    /// Stop receiving and end the tasks, handing the sockets' traffic over
    /// to any other process bound to the same ports (see [`handover`]).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let ended = tokio::time::timeout(handover::TIME_LIMIT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if ended.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }

    /// Wait until every socket task has ended (they end only on abort).
    pub async fn run_until_stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Bind the sockets and start serving `routes`. Must be called inside a
/// tokio runtime.
pub async fn start(routes: &'static dyn Routes, options: Options) -> io::Result<Server> {
    if options.listen.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nothing to listen on",
        ));
    }
    let mut sockets = Vec::new();
    let mut listeners = Vec::new();
    for addr in &options.listen {
        let socket = bind_udp(*addr)?;
        let local = socket.local_addr()?;
        let listener = Listener::new(local, options.advertise.as_deref())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        listeners.push(listener);
        sockets.push(Arc::new(socket));
    }
    let local: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
    let (stop, stopped) = watch::channel(false);
    let mut core = Core::new(routes, Identity { listeners }, options.core);
    core.start(Instant::now());
    let sibling = sibling::Link::bind(core.instance())
        .inspect_err(|e| tracing::warn!("no sibling link (rollouts lose stateful responses): {e}"))
        .ok();
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        sockets: sockets.into(),
        timer: Notify::new(),
        stop: stopped,
        sibling,
    });
    let mut tasks = JoinSet::new();
    for index in 0..shared.sockets.len() {
        tasks.spawn(receive_loop(index, Arc::clone(&shared)));
    }
    tasks.spawn(timer_loop(Arc::clone(&shared)));
    tasks.spawn(sibling::receive_loop(Arc::clone(&shared)));
    for addr in &local {
        tracing::info!(listen = %addr, "listening on udp:{addr}");
    }
    Ok(Server {
        local,
        shared,
        tasks,
        stop,
    })
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // SO_REUSEPORT lets a new binary start beside the old one during a rollout.
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn receive_loop(index: usize, shared: Arc<Shared>) {
    let socket = Arc::clone(&shared.sockets[index]);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out: Vec<Outgoing> = Vec::with_capacity(4);
    let mut stop = shared.stop.clone();
    // This thread writes its log lines itself, once per burst of messages.
    crate::logbuf::batch();
    loop {
        // One atomic load: a busy loop still sees the stop.
        if stop.has_changed().unwrap_or(true) {
            break;
        }
        let (len, source) = match socket.try_recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Out of work: write the burst's log lines, then wait.
                crate::logbuf::flush();
                let ready = tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    ready = socket.readable() => ready,
                };
                if let Err(e) = ready {
                    tracing::warn!("socket {:?} failed: {e}", socket.local_addr());
                    return;
                }
                continue;
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems.
                tracing::debug!("receive error on {:?}: {e}", socket.local_addr());
                continue;
            }
        };
        if sibling::pass_on(&shared, index, &buf[..len], source) {
            continue;
        }
        let now = Instant::now();
        let earlier = {
            let mut core = shared.core();
            let before = core.next_deadline();
            core.handle(now, &buf[..len], source, index, &mut out);
            let after = core.next_deadline();
            after.is_some_and(|a| before.is_none_or(|b| a < b))
        };
        if earlier {
            shared.timer.notify_one();
        }
        for outgoing in out.drain(..) {
            send(&shared.sockets, outgoing).await;
        }
    }
    handover::sweep(index, &shared, &mut buf, &mut out).await;
}

/// Handle one datagram and send what the core returns.
async fn handle_one(
    shared: &Shared,
    index: usize,
    datagram: &[u8],
    source: SocketAddr,
    out: &mut Vec<Outgoing>,
) {
    let earlier = {
        let mut core = shared.core();
        let before = core.next_deadline();
        core.handle(Instant::now(), datagram, source, index, out);
        let after = core.next_deadline();
        after.is_some_and(|a| before.is_none_or(|b| a < b))
    };
    if earlier {
        shared.timer.notify_one();
    }
    for outgoing in out.drain(..) {
        send(&shared.sockets, outgoing).await;
    }
}

/// Drives the core's timers: sleeps until the next deadline (or until a
/// message makes an earlier one), then fires what is due.
async fn timer_loop(shared: Arc<Shared>) {
    let mut out: Vec<Outgoing> = Vec::with_capacity(8);
    let mut stop = shared.stop.clone();
    loop {
        let deadline = shared.core().next_deadline();
        match deadline {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shared.timer.notified() => continue,
                    _ = stop.changed() => return,
                }
            }
            None => {
                tokio::select! {
                    _ = shared.timer.notified() => continue,
                    _ = stop.changed() => return,
                }
            }
        }
        shared.core().on_timeout(Instant::now(), &mut out);
        for outgoing in out.drain(..) {
            send(&shared.sockets, outgoing).await;
        }
        crate::logbuf::flush();
    }
}

async fn send(sockets: &[Arc<UdpSocket>], outgoing: Outgoing) {
    let Some(socket) = sockets.get(outgoing.socket) else {
        return;
    };
    match outgoing.to {
        NextHop::Addr(addr) => send_to(socket, outgoing.bytes.as_ref(), addr).await,
        NextHop::Name { host, port } => {
            // Resolution may take a while: never hold the receive loop for it.
            let socket = Arc::clone(socket);
            tokio::spawn(async move {
                let resolved = tokio::net::lookup_host((host.as_str(), port)).await;
                let local_v4 = socket.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
                match resolved.map(|mut addrs| addrs.find(|a| a.is_ipv4() == local_v4)) {
                    Ok(Some(addr)) => send_to(&socket, outgoing.bytes.as_ref(), addr).await,
                    Ok(None) => tracing::warn!(
                        host,
                        "no address of the right family for the next hop: dropped"
                    ),
                    Err(e) => tracing::warn!(host, "cannot resolve the next hop: {e}; dropped"),
                }
            });
        }
    }
}

async fn send_to(socket: &UdpSocket, bytes: &[u8], addr: SocketAddr) {
    let sent = match socket.try_send_to(bytes, addr) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.send_to(bytes, addr).await,
        other => other,
    };
    if let Err(e) = sent {
        tracing::debug!(%addr, "send failed: {e}");
    }
}
