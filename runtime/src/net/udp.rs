//! UDP: binding a listening socket, and the threads that receive on it.
//!
//! Each UDP socket has `workers` receive threads. They do not all block
//! on the socket (the kernel would then wake them in turn, one per
//! datagram, and every message would cost a wake-up on another core and
//! its transaction's memory moving there). One thread, the lead, always
//! receives. The others, its crew, sleep until the lead finds
//! [`BACKLOG`] datagrams in a row already queued when it comes back for
//! the next one: then there is a backlog, and one crew member is called. A called member takes datagrams
//! without blocking until the socket is empty and goes back to sleep.
//! Under light load the lead handles everything on one core; under load
//! every worker receives, whatever the source address (a single carrier
//! sending from one IP:port is spread too, which SO_REUSEPORT would not
//! do). The crew only speeds things up: the lead never stops receiving, so
//! a missed call loses nothing.
//!
//! An idle proxy costs next to nothing: the lead waits [`IDLE`] for the
//! next datagram only while it holds log lines to write, then up to
//! [`REST`]; a crew member writes its lines when it has emptied the socket
//! and sleeps until called. Every wake-up of an idle thread is CPU taken
//! from the machine: 64 workers waking 40 times a second each, at the
//! 40-70 µs a wake-up costs on the bench's VM, would spend an eighth of a
//! core on nothing (see bench/README.md, "an idle proxy stops waking up"). A
//! stop does not wait for a timeout: [`wake_for_stop`] shuts the socket for
//! reading, which ends a blocked receive at once (the datagrams already
//! queued stay readable for the hand-over), and wakes the crew.

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{MAX_DATAGRAM, Shared, handle_guarded, handover, sibling};
use crate::logbuf::FLUSH_EVERY;
use crate::proxy::Outgoing;

/// Socket buffers: the 208 KiB default drops bursts at a few thousand cps.
const SOCKET_BUFFER: usize = 4 << 20;
/// How long the lead waits without traffic before it writes the log lines
/// it buffered.
const IDLE: Duration = Duration::from_millis(25);
/// How long an idle receive thread with nothing to write sleeps before it
/// looks whether the server stops (a backstop: a stop wakes it at once, see
/// [`wake_for_stop`]).
pub(super) const REST: Duration = Duration::from_secs(1);
/// Datagrams the lead must find waiting in a row before it calls a crew
/// member: a pair sent together (a 180 and a 200, an ACK and a BYE), a
/// few calls' messages arriving close together, or what queued while the
/// lead waited for a CPU (on a busy machine, milliseconds) are no
/// backlog: the lead takes them in a moment, and a member woken for them
/// costs two wake-ups and finds little left. A lead that cannot keep up
/// finds every datagram waiting, so any bound is reached; this one takes
/// 64 datagrams, a few milliseconds at the rates where a second thread
/// helps. (At 8, a stateless proxy at 1,000 calls/s on 2 busy cores
/// called its crew ~1,500 times per 8,000 calls, which cost ~12 µs per
/// call and took no work off the lead.)
const BACKLOG: u32 = 64;
/// A blocking receive that returns sooner than this found its datagram
/// already queued (a thread put to sleep and woken takes longer): asking
/// the clock twice costs less than a second, non-blocking receive would.
const ALREADY_THERE: Duration = Duration::from_micros(10);
/// A send that cannot complete in this time (a full socket buffer) is dropped,
/// as the network would drop it: no thread ever hangs on a send.
const SEND_TIMEOUT: Duration = Duration::from_millis(100);

/// Bind a UDP listening socket at `addr`, shared with other processes
/// (SO_REUSEPORT) for rollouts.
pub(super) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // SO_REUSEPORT lets a new binary start beside the old one during a
    // rollout (`--takeover`; without it, `bind_listen` refuses a held port).
    socket.set_reuse_port(true)?;
    // An IPv6 socket serves IPv6 only (see `takeover::held`).
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_read_timeout(Some(IDLE))?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// One receive thread: the socket it reads, its number among all workers
/// (the `worker` label of its metric), and the crew of its socket.
pub(super) struct Worker {
    pub socket: usize,
    pub id: usize,
    pub crew: Arc<Crew>,
}

/// The sleeping workers of one socket, and the calls waiting for them.
pub(super) struct Crew {
    /// How many members sleep now (read without the lock by the caller).
    sleeping: AtomicUsize,
    /// Calls not yet taken (never more than the sleepers).
    calls: Mutex<usize>,
    woken: Condvar,
    /// Set when the server stops: sleepers wake and do not sleep again.
    stopped: AtomicBool,
}

impl Crew {
    /// The crew of one socket (empty until its members go to sleep).
    pub(super) fn new() -> Arc<Crew> {
        Arc::new(Crew {
            sleeping: AtomicUsize::new(0),
            calls: Mutex::new(0),
            woken: Condvar::new(),
            stopped: AtomicBool::new(false),
        })
    }

    /// The server stops: wake every sleeping member (each then sees the
    /// stop flag).
    pub(super) fn wake_all(&self) {
        let _calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        self.stopped.store(true, Ordering::Relaxed);
        self.woken.notify_all();
    }

    /// There is a backlog: wake one sleeping member, if any sleeps.
    fn call(&self) {
        if self.sleeping.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if *calls < self.sleeping.load(Ordering::Relaxed) {
            *calls += 1;
            self.woken.notify_one();
        }
    }

    /// Sleep until called (true), or until `timeout` passed or the server
    /// stops (false).
    fn sleep(&self, timeout: Duration) -> bool {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        self.sleeping.fetch_add(1, Ordering::Relaxed);
        if *calls == 0 && !self.stopped.load(Ordering::Relaxed) {
            calls = self
                .woken
                .wait_timeout_while(calls, timeout, |c| {
                    *c == 0 && !self.stopped.load(Ordering::Relaxed)
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        self.sleeping.fetch_sub(1, Ordering::Relaxed);
        if *calls > 0 {
            *calls -= 1;
            true
        } else {
            false
        }
    }
}

/// Datagrams found already queued in a row, and when that makes a backlog.
#[derive(Default)]
struct Streak(u32);

impl Streak {
    /// One more datagram, found queued or not; true when a crew member
    /// is to be called.
    fn count(&mut self, already_there: bool) -> bool {
        if !already_there {
            self.0 = 0;
            return false;
        }
        self.0 += 1;
        if self.0 < BACKLOG {
            return false;
        }
        self.0 = 0;
        true
    }
}

/// What one receive call gave.
pub(super) enum Received {
    /// A datagram of this length from this address.
    Datagram(usize, SocketAddr),
    /// Nothing within the socket's read timeout (or, without waiting,
    /// nothing queued).
    Nothing,
    /// The socket is shut for reading and nothing is queued: the server
    /// stops (see [`wake_for_stop`]).
    ShutDown,
    /// Another error (an ICMP error of an earlier send surfaces here).
    Failed(io::Error),
}

/// Receive one datagram into `buf` (`flags`: 0 waits up to the socket's
/// read timeout, `MSG_DONTWAIT` does not wait).
pub(super) fn receive(socket: &UdpSocket, buf: &mut [u8], flags: libc::c_int) -> Received {
    // SAFETY: initialised bytes may be viewed as possibly uninitialised
    // ones; the kernel only writes bytes into them.
    let uninit = unsafe {
        std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<MaybeUninit<u8>>(), buf.len())
    };
    match socket2::SockRef::from(socket).recv_from_with_flags(uninit, flags) {
        Ok((len, from)) => match from.as_socket() {
            Some(source) => Received::Datagram(len, source),
            // A socket shut for reading returns 0 bytes from nobody once
            // its queue is empty (a real empty datagram names its sender).
            None if len == 0 => Received::ShutDown,
            None => Received::Failed(io::Error::other("a datagram from a non-IP address")),
        },
        Err(e) if nothing_came(&e) => Received::Nothing,
        Err(e) => Received::Failed(e),
    }
}

/// The server stops: end the blocked receives on `socket` at once by
/// shutting it for reading (Linux wakes the readers of an unconnected UDP
/// socket and answers "not connected", which is expected here; datagrams
/// already queued, and any still arriving, stay readable until the
/// hand-over detaches the socket), and wake its sleeping `crew`.
pub(super) fn wake_for_stop(socket: &UdpSocket, crew: &Crew) {
    let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Read);
    crew.wake_all();
}

/// What one receive thread keeps between datagrams.
struct Receiver {
    socket: Arc<UdpSocket>,
    buf: Vec<u8>,
    out: Vec<Outgoing>,
    messages: prometheus_client::metrics::counter::Counter,
    flushed: Instant,
}

impl Receiver {
    fn new(shared: &Shared, worker: &Worker) -> Option<Receiver> {
        Some(Receiver {
            socket: shared.sockets.udp(worker.socket).cloned()?,
            buf: vec![0u8; MAX_DATAGRAM],
            out: Vec::with_capacity(4),
            messages: crate::metrics::worker_counter(worker.id),
            flushed: Instant::now(),
        })
    }

    /// Handle the datagram in the buffer; write the logs when due.
    fn handle(
        &mut self,
        shared: &Shared,
        now: Instant,
        index: usize,
        len: usize,
        source: SocketAddr,
    ) {
        self.messages.inc();
        let datagram = &self.buf[..len];
        if sibling::pass_on(shared, index, datagram, source) {
            return;
        }
        handle_guarded(shared, now, index, datagram, source, &mut self.out);
        if now.duration_since(self.flushed) >= FLUSH_EVERY {
            self.flush(now);
        }
    }

    fn flush(&mut self, now: Instant) {
        crate::logbuf::flush();
        self.flushed = now;
    }

    /// Set how long a blocking receive waits.
    fn wait_up_to(&self, timeout: Duration) {
        if let Err(e) = self.socket.set_read_timeout(Some(timeout)) {
            tracing::debug!("cannot set the receive timeout: {e}");
        }
    }
}

/// Whether a receive error only means "nothing came".
fn nothing_came(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The lead of socket `worker.socket`: blocks for a datagram, calling a
/// crew member when [`BACKLOG`] of them in a row were already there (see
/// [`ALREADY_THERE`]); hands the socket over when the server stops.
///
/// After traffic it waits [`IDLE`] at most, so that the log lines of the
/// last messages are written soon; once they are written, up to [`REST`]
/// (one change of the socket's timeout per pause in the traffic, none
/// under steady load).
pub(super) fn lead(worker: Worker, shared: Arc<Shared>) {
    let index = worker.socket;
    let Some(mut rx) = Receiver::new(&shared, &worker) else {
        return;
    };
    let crew = worker.crew;
    crate::logbuf::batch();
    let mut streak = Streak::default();
    let mut resting = false;
    rx.wait_up_to(IDLE);
    while !shared.stopping.load(Ordering::Relaxed) {
        let asked = Instant::now();
        match receive(&rx.socket, &mut rx.buf, 0) {
            Received::Datagram(len, source) => {
                let now = Instant::now();
                if resting {
                    rx.wait_up_to(IDLE);
                    resting = false;
                }
                if streak.count(now.duration_since(asked) < ALREADY_THERE) {
                    crew.call();
                }
                rx.handle(&shared, now, index, len, source);
            }
            Received::Nothing => {
                rx.flush(Instant::now());
                if !resting {
                    rx.wait_up_to(REST);
                    resting = true;
                }
            }
            Received::ShutDown => break,
            Received::Failed(e) => {
                tracing::debug!("receive error on {:?}: {e}", rx.socket.local_addr());
            }
        }
    }
    handover::sweep(index, &shared, &mut rx.buf, &mut rx.out);
    crate::logbuf::flush();
}

/// A crew member of socket `worker.socket`: sleeps until called, then
/// takes the waiting datagrams until none is left, writes its log lines
/// and sleeps again.
pub(super) fn member(worker: Worker, shared: Arc<Shared>) {
    let index = worker.socket;
    let Some(mut rx) = Receiver::new(&shared, &worker) else {
        return;
    };
    let crew = worker.crew;
    crate::logbuf::batch();
    while !shared.stopping.load(Ordering::Relaxed) {
        if !crew.sleep(REST) {
            continue;
        }
        let mut streak = Streak::default();
        loop {
            match receive(&rx.socket, &mut rx.buf, libc::MSG_DONTWAIT) {
                Received::Datagram(len, source) => {
                    if streak.count(true) {
                        crew.call();
                    }
                    rx.handle(&shared, Instant::now(), index, len, source);
                }
                Received::Nothing | Received::ShutDown => break,
                Received::Failed(e) => {
                    tracing::debug!("receive error on {:?}: {e}", rx.socket.local_addr());
                }
            }
        }
        rx.flush(Instant::now());
    }
    crate::logbuf::flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_wakes_a_sleeper_and_is_taken_once() {
        let crew = Crew::new();
        let sleeper = {
            let crew = Arc::clone(&crew);
            std::thread::spawn(move || crew.sleep(Duration::from_secs(10)))
        };
        while crew.sleeping.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        crew.call();
        assert!(sleeper.join().unwrap(), "the sleeper was called");
        assert!(!crew.sleep(Duration::from_millis(1)), "the call was taken");
    }

    #[test]
    fn a_backlog_is_backlog_in_a_row_and_a_wait_ends_it() {
        let mut streak = Streak::default();
        for _ in 1..BACKLOG {
            assert!(!streak.count(true));
        }
        assert!(!streak.count(false), "a datagram waited for breaks the row");
        let calls: Vec<bool> = (0..2 * BACKLOG).map(|_| streak.count(true)).collect();
        let at: Vec<usize> = (0..calls.len()).filter(|&i| calls[i]).collect();
        assert_eq!(at, [BACKLOG as usize - 1, 2 * BACKLOG as usize - 1]);
    }

    #[test]
    fn a_stop_ends_a_blocked_receive_at_once_and_keeps_what_was_queued() {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let crew = Crew::new();
        let reader = {
            let socket = Arc::clone(&socket);
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                let asked = Instant::now();
                let got = receive(&socket, &mut buf, 0);
                (matches!(got, Received::ShutDown), asked.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        wake_for_stop(&socket, &crew);
        let (shut, waited) = reader.join().unwrap();
        assert!(shut, "the blocked receive saw the stop");
        assert!(waited < Duration::from_secs(10), "woken, not timed out");
        // A datagram that still arrives is read, then the empty queue says
        // "shut down" at once.
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender
            .send_to(b"OPTIONS", socket.local_addr().unwrap())
            .unwrap();
        let mut buf = [0u8; 64];
        let from = sender.local_addr().unwrap();
        assert!(matches!(receive(&socket, &mut buf, 0), Received::Datagram(7, a) if a == from));
        assert!(matches!(receive(&socket, &mut buf, 0), Received::ShutDown));
        // An empty datagram before the stop is a datagram, not a stop.
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        sender.send_to(b"", other.local_addr().unwrap()).unwrap();
        assert!(matches!(receive(&other, &mut buf, 0), Received::Datagram(0, a) if a == from));
        assert!(matches!(
            receive(&other, &mut buf, libc::MSG_DONTWAIT),
            Received::Nothing
        ));
    }

    #[test]
    fn a_stop_wakes_the_crew_and_keeps_it_awake() {
        let crew = Crew::new();
        let sleeper = {
            let crew = Arc::clone(&crew);
            std::thread::spawn(move || {
                let asked = Instant::now();
                (crew.sleep(Duration::from_secs(30)), asked.elapsed())
            })
        };
        while crew.sleeping.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        crew.wake_all();
        let (called, waited) = sleeper.join().unwrap();
        assert!(!called, "a stop is not a call");
        assert!(waited < Duration::from_secs(10), "woken, not timed out");
        let asked = Instant::now();
        assert!(!crew.sleep(Duration::from_secs(30)));
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "no sleep after a stop"
        );
    }

    #[test]
    fn a_call_with_nobody_asleep_is_not_kept() {
        let crew = Crew::new();
        crew.call();
        assert!(!crew.sleep(Duration::from_millis(1)));
    }
}
