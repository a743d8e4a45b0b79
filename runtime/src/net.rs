//! The tokio layer: owns the UDP sockets, feeds received datagrams to the
//! sans-IO core and sends what it returns. Host names in next hops are
//! resolved here (A/AAAA through the system resolver).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::api::Routes;
use crate::proxy::{Core, Identity, Listener, Outgoing};
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
}

/// A running proxy: its bound addresses and its tasks.
pub struct Server {
    local: Vec<SocketAddr>,
    tasks: JoinSet<()>,
}

impl Server {
    /// The addresses the sockets are bound to (real ports).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Stop receiving and end the tasks.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
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
    let core = Arc::new(Core::new(routes, Identity { listeners }));
    let sockets: Arc<[Arc<UdpSocket>]> = sockets.into();
    let mut tasks = JoinSet::new();
    for index in 0..sockets.len() {
        tasks.spawn(receive_loop(index, Arc::clone(&sockets), Arc::clone(&core)));
    }
    for addr in &local {
        tracing::info!(listen = %addr, "listening on udp:{addr}");
    }
    Ok(Server { local, tasks })
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

async fn receive_loop(index: usize, sockets: Arc<[Arc<UdpSocket>]>, core: Arc<Core>) {
    let socket = &sockets[index];
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out: Vec<Outgoing> = Vec::with_capacity(4);
    loop {
        let (len, source) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems.
                tracing::debug!("receive error on {:?}: {e}", socket.local_addr());
                continue;
            }
        };
        core.handle(&buf[..len], source, index, &mut out);
        for outgoing in out.drain(..) {
            send(&sockets, outgoing).await;
        }
    }
}

async fn send(sockets: &Arc<[Arc<UdpSocket>]>, outgoing: Outgoing) {
    let Some(socket) = sockets.get(outgoing.socket) else {
        return;
    };
    match outgoing.to {
        NextHop::Addr(addr) => send_to(socket, &outgoing.bytes, addr).await,
        NextHop::Name { host, port } => {
            // Resolution may take a while: never hold the receive loop for it.
            let socket = Arc::clone(socket);
            tokio::spawn(async move {
                let resolved = tokio::net::lookup_host((host.as_str(), port)).await;
                let local_v4 = socket.local_addr().map(|a| a.is_ipv4()).unwrap_or(true);
                match resolved.map(|mut addrs| addrs.find(|a| a.is_ipv4() == local_v4)) {
                    Ok(Some(addr)) => send_to(&socket, &outgoing.bytes, addr).await,
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
