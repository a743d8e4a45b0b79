//! The hand-over when a server stops: traffic moves to the other processes
//! bound to the same ports (SO_REUSEPORT) without losing what was queued.
//!
//! Closing a socket drops the datagrams queued on it, and until it is
//! closed the kernel keeps hashing flows to it. A connected UDP socket,
//! though, only matches datagrams from its peer, so connecting each socket
//! to a black hole (port 9 on the loopback) makes the kernel send every new
//! datagram to the other sockets of the group at once; what is already
//! queued stays readable and is handled here before the socket closes.
//! Without another process on the port, the new datagrams are simply
//! refused, as they would be after the exit.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::udp::Received;
use super::{MAX_DATAGRAM, Shared, handle_one};
use crate::proxy::Outgoing;

/// How long a stopping server may take to end its tasks.
pub(super) const TIME_LIMIT: Duration = Duration::from_secs(2);

/// Silence after which the queue of a connected socket is known empty
/// (no new datagram can arrive; the queued ones are reported at once).
const QUIET: Duration = Duration::from_millis(20);

/// Stop new datagrams reaching socket `index`, then handle the queued ones.
/// Runs on the socket's receive thread, after its loop ended.
pub(super) fn sweep(index: usize, shared: &Shared, buf: &mut [u8], out: &mut Vec<Outgoing>) {
    let Some(socket) = shared.sockets.udp(index) else {
        return;
    };
    let local = match socket.local_addr() {
        Ok(local) => local,
        Err(_) => return,
    };
    let sink: SocketAddr = if local.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 9).into()
    } else {
        (Ipv6Addr::LOCALHOST, 9).into()
    };
    if let Err(e) = socket.connect(sink) {
        tracing::debug!(%local, "hand-over: cannot detach the socket ({e}); closing it");
        return;
    }
    if let Err(e) = socket.set_read_timeout(Some(QUIET)) {
        tracing::debug!(%local, "hand-over: cannot time the sweep ({e}); closing it");
        return;
    }
    let mut handled = 0usize;
    // Bounded: the queue is finite, and so is this loop.
    let len = MAX_DATAGRAM.min(buf.len());
    let buf = &mut buf[..len];
    let mut last = Instant::now();
    for _ in 0..100_000 {
        match super::udp::receive(socket, buf, 0) {
            Received::Datagram(len, source) => {
                handled += 1;
                last = Instant::now();
                if !super::sibling::pass_on(shared, index, &buf[..len], source) {
                    handle_one(shared, index, &buf[..len], source, out);
                }
            }
            // Quiet for QUIET: empty.
            Received::Nothing => break,
            // A socket shut for reading (the stop, see udp::wake_for_stop)
            // says "empty" without waiting: wait out QUIET here, so a
            // datagram the kernel was queueing as we connected is read.
            Received::ShutDown => {
                let quiet_for = last.elapsed();
                if quiet_for >= QUIET {
                    break;
                }
                std::thread::sleep(QUIET - quiet_for);
            }
            // An error queued by an earlier send (ICMP): consumed, go on.
            Received::Failed(_) => continue,
        }
    }
    tracing::info!(%local, handled, "socket handed over");
    crate::logbuf::flush();
}
