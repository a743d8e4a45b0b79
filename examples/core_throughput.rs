//! Throughput of the sans-IO core from 1 and from N threads sharing one
//! `Core` (issue 12, "use every core"): whole calls (INVITE, 180, 200,
//! ACK, BYE, 200), every one with its own Call-ID, tags and Via branches,
//! no sockets. Run it with `bench/core-throughput` (release build); see
//! bench/README.md, "Every core (issue 12)".
//!
//! Modes (routes from tests/routes/, compiled in by build.rs):
//! - `stateless`: `seed.yaml`, the seed example (`log`, `append_header`,
//!   `forward` to the Request-URI; a reply route).
//! - `stateful`: `sipp_stateful.yaml`, bench scenario (b) without its
//!   `log` steps: initial requests `record_route` + `relay` to the
//!   Request-URI, in-dialog requests `relay`; the INVITE and BYE make
//!   transactions, the 100 Trying is the core's, the ACK for the 2xx is
//!   relayed without one.
//!
//! Each thread runs its share of the calls in batches. A batch is built
//! before it is timed, and timed in phases separated by a barrier, since
//! the responses need the Via the core put on the forwarded request:
//! 1. every INVITE of the batch (the forwarded INVITEs are kept);
//! 2. untimed: the 180s and 200s built from them (Via and Record-Route
//!    copied), the ACKs and BYEs (Route from the Record-Route);
//! 3. per call: 180, 200, ACK, BYE (the forwarded BYEs are kept);
//! 4. untimed: the 200s to the BYEs;
//! 5. every 200 to a BYE;
//! 6. timers: the clock (synthetic, passed to the core) jumps past RFC
//!    6026's 32 s Timers L/M/J and each thread fires its share of the
//!    timer lanes (lane % threads == thread), as the timer threads of
//!    the binary do. The table is empty again after every batch.
//!
//! Responses come from the address their request was sent to (the `to` of
//! the core's output), as `strict_response_source` wants. The figure is
//! messages handled per second of wall time over the timed phases (6
//! messages per call), timers included. On a shared machine that mostly
//! says how much CPU the threads were given, so each thread's time in the
//! timed phases is also split into CPU (CLOCK_THREAD_CPUTIME_ID), waiting
//! for a CPU on the run queue (/proc/thread-self/schedstat: other
//! processes had it) and the rest, blocked (locks); "unqueued" is the rate
//! without the run-queue waits: messages / ((CPU + blocked) / threads).
//! The control (`--no-control` skips it): the same threads each with a
//! core of its own, so that nothing of the core is shared (the process's
//! allocator and the global metrics still are).

#[allow(dead_code, clippy::needless_return)]
mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use sipforge_runtime::api::Routes;
use sipforge_runtime::proxy::{Core, CoreConfig, Identity, Listener, Outgoing, Payload};
use sipforge_runtime::target::NextHop;

const UAC: &str = "127.0.0.1:5070";
const UAS: &str = "127.0.0.1:5080";
const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
/// Messages received by the proxy per call (requests and responses from
/// outside; the 100 Trying is the proxy's own).
const MESSAGES_PER_CALL: u64 = 6;
const USAGE: &str = "usage: core_throughput [--calls N] [--threads 1,2] [--modes stateless,stateful] [--reps R] [--batch N] [--shards N] [--logs] [--no-control]";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Stateless,
    Stateful,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Stateless => "stateless",
            Mode::Stateful => "stateful",
        }
    }

    fn routes(self) -> &'static dyn Routes {
        match self {
            Mode::Stateless => &fixtures::seed::ROUTES,
            Mode::Stateful => &fixtures::sipp_stateful::ROUTES,
        }
    }

    /// What the core sends per call: 6 forwarded, + the 100 Trying.
    fn sent_per_call(self) -> u64 {
        match self {
            Mode::Stateless => 6,
            Mode::Stateful => 7,
        }
    }
}

fn fail(what: &str) -> ! {
    eprintln!("core_throughput: {what}\n{USAGE}");
    std::process::exit(2)
}

struct Options {
    calls: usize,
    threads: Vec<usize>,
    modes: Vec<Mode>,
    reps: usize,
    batch: usize,
    shards: usize,
    logs: bool,
    /// Also run N threads with a core each (nothing of the core shared).
    control: bool,
}

fn parse_options() -> Options {
    let mut o = Options {
        calls: 200_000,
        threads: vec![1, 2],
        modes: vec![Mode::Stateless, Mode::Stateful],
        reps: 3,
        batch: 2_000,
        shards: CoreConfig::default().shards,
        logs: false,
        control: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{arg} needs a value")))
        };
        let number = |v: String| -> usize {
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| fail(&format!("not a positive number: {v}")))
        };
        match arg.as_str() {
            "--calls" => o.calls = number(value()),
            "--reps" => o.reps = number(value()),
            "--batch" => o.batch = number(value()),
            "--shards" => o.shards = number(value()),
            "--threads" => o.threads = value().split(',').map(|t| number(t.into())).collect(),
            "--modes" => {
                o.modes = value()
                    .split(',')
                    .map(|m| match m {
                        "stateless" => Mode::Stateless,
                        "stateful" => Mode::Stateful,
                        _ => fail(&format!("unknown mode {m}")),
                    })
                    .collect()
            }
            "--logs" => o.logs = true,
            "--no-control" => o.control = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            _ => fail(&format!("unknown argument {arg}")),
        }
    }
    o
}

/// The datagrams of one call, built before they are timed.
#[derive(Default)]
struct Call {
    id: String,
    invite: Vec<u8>,
    ringing: Vec<u8>,
    ok: Vec<u8>,
    ack: Vec<u8>,
    bye: Vec<u8>,
    bye_ok: Vec<u8>,
    /// What the core forwarded to the UAS (INVITE, then BYE).
    forwarded: Option<Outgoing>,
    /// Where the INVITE and the BYE went: their responses come from there.
    invite_to: Option<SocketAddr>,
    bye_to: Option<SocketAddr>,
}

fn invite(id: &str) -> Vec<u8> {
    format!(
        "INVITE sip:service@{UAS} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{id}-1\r\n\
         From: sipp <sip:sipp@{UAC}>;tag={id}\r\n\
         To: service <sip:service@{UAS}>\r\n\
         Call-ID: {id}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: sip:sipp@{UAC}\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
    .into_bytes()
}

/// The header lines named `name` (or its compact form) of a message, in order.
fn header_lines<'a>(message: &'a str, names: &[&str]) -> Vec<&'a str> {
    let head = message.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .skip(1)
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(n, _)| names.iter().any(|want| n.trim().eq_ignore_ascii_case(want)))
        })
        .collect()
}

fn header_values<'a>(message: &'a str, names: &[&str]) -> Vec<&'a str> {
    header_lines(message, names)
        .into_iter()
        .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim()))
        .collect()
}

/// A response of the UAS to `request` (as forwarded by the proxy): its
/// Via and Record-Route lines copied.
fn response(request: &str, id: &str, status: &str, cseq: &str, body: bool) -> Vec<u8> {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for line in header_lines(request, &["Via", "v"]) {
        r.push_str(line);
        r.push_str("\r\n");
    }
    for line in header_lines(request, &["Record-Route"]) {
        r.push_str(line);
        r.push_str("\r\n");
    }
    r.push_str(&format!(
        "From: sipp <sip:sipp@{UAC}>;tag={id}\r\n\
         To: service <sip:service@{UAS}>;tag=u{id}\r\n\
         Call-ID: {id}@127.0.0.1\r\n\
         CSeq: {cseq}\r\n\
         Contact: <sip:service@{UAS}>\r\n"
    ));
    if body {
        r.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ));
    } else {
        r.push_str("Content-Length: 0\r\n\r\n");
    }
    r.into_bytes()
}

/// An in-dialog request of the UAC (ACK for the 2xx, BYE), routed
/// through the proxy's Record-Route if it put one.
fn in_dialog(method: &str, id: &str, branch: u32, cseq: u32, routes: &[&str]) -> Vec<u8> {
    let mut r = format!(
        "{method} sip:service@{UAS} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{id}-{branch}\r\n\
         From: sipp <sip:sipp@{UAC}>;tag={id}\r\n\
         To: service <sip:service@{UAS}>;tag=u{id}\r\n\
         Call-ID: {id}@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\n"
    );
    for route in routes {
        r.push_str(&format!("Route: {route}\r\n"));
    }
    r.push_str(&format!(
        "Contact: sip:sipp@{UAC}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ));
    r.into_bytes()
}

fn text(payload: &Payload) -> &str {
    std::str::from_utf8(payload.as_ref()).expect("the core sends UTF-8 here")
}

fn addr(hop: &NextHop) -> SocketAddr {
    hop.addr().expect("the fixtures forward to IP literals")
}

/// Handle one datagram; keep what went to `keep_to`, if anything did.
/// Returns the number of datagrams the core sent.
#[inline]
fn handle(
    core: &Core,
    now: Instant,
    datagram: &[u8],
    source: SocketAddr,
    out: &mut Vec<Outgoing>,
    keep: Option<(&mut Option<Outgoing>, SocketAddr)>,
) -> u64 {
    out.clear();
    core.handle(now, datagram, source, 0, out);
    let n = out.len() as u64;
    if let Some((slot, to)) = keep
        && let Some(i) = out.iter().position(|o| o.to == NextHop::Addr(to))
    {
        *slot = Some(out.swap_remove(i));
    }
    n
}

/// CPU time of the calling thread so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Time a thread spent in the timed phases: on a CPU, waiting for one on
/// the run queue (other processes had it: the machine's load), and the
/// rest of its wall time, blocked (locks: the core's shard mutexes, the
/// allocator's arenas).
#[derive(Clone, Copy, Default)]
struct Spent {
    wall: Duration,
    cpu: Duration,
    queued: Duration,
    /// CPU time in the timer phase alone.
    timer_cpu: Duration,
}

impl Spent {
    fn blocked(&self) -> Duration {
        self.wall.saturating_sub(self.cpu + self.queued)
    }

    fn add(self, o: Spent) -> Spent {
        Spent {
            wall: self.wall + o.wall,
            cpu: self.cpu + o.cpu,
            queued: self.queued + o.queued,
            timer_cpu: self.timer_cpu + o.timer_cpu,
        }
    }
}

/// The calling thread's time spent waiting on a run queue
/// (`/proc/thread-self/schedstat`, second field; zero where unreadable).
fn thread_queued() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// A point in a thread's time: wall, CPU, run-queue wait.
struct Mark(Instant, Duration, Duration);

impl Mark {
    fn now() -> Mark {
        Mark(Instant::now(), thread_cpu(), thread_queued())
    }

    /// Add what passed since this mark to `spent`; returns the CPU time.
    fn close(self, spent: &mut Spent) -> Duration {
        let end = Mark::now();
        spent.wall += end.0 - self.0;
        spent.cpu += end.1 - self.1;
        spent.queued += end.2.saturating_sub(self.2);
        end.1 - self.1
    }
}

/// One thread's share of a run: `batches` batches of `batch` calls, in
/// step with the others through `barrier` (the coordinator times between
/// its waits). Returns the datagrams the core sent and where the thread's
/// time went in the timed phases.
#[allow(clippy::too_many_arguments)]
fn worker(
    core: &Core,
    mode: Mode,
    thread: usize,
    // The timer lanes this thread fires: `first`, `first + step`, ...
    (first, step): (usize, usize),
    batches: usize,
    batch: usize,
    clock: &dyn Fn(usize) -> Instant,
    barrier: &Barrier,
) -> (u64, Spent) {
    let mut spent = Spent::default();
    let uac: SocketAddr = UAC.parse().unwrap();
    let uas: SocketAddr = UAS.parse().unwrap();
    let mut out = Vec::with_capacity(8);
    let mut sent = 0;
    let mut calls: Vec<Call> = (0..batch).map(|_| Call::default()).collect();
    for b in 0..batches {
        let now = clock(b);
        for (i, call) in calls.iter_mut().enumerate() {
            call.id = format!("t{thread}b{b}c{i}-{}", mode.name());
            call.invite = invite(&call.id);
            call.forwarded = None;
        }
        barrier.wait(); // phase 1: INVITEs
        let mark = Mark::now();
        for call in calls.iter_mut() {
            sent += handle(
                core,
                now,
                &call.invite,
                uac,
                &mut out,
                Some((&mut call.forwarded, uas)),
            );
        }
        mark.close(&mut spent);
        barrier.wait();
        // Untimed: the 180s, 200s, ACKs and BYEs.
        for call in calls.iter_mut() {
            let fwd = call.forwarded.take().expect("the INVITE was forwarded");
            call.invite_to = Some(addr(&fwd.to));
            let fwd = text(&fwd.bytes);
            call.ringing = response(fwd, &call.id, "180 Ringing", "1 INVITE", false);
            call.ok = response(fwd, &call.id, "200 OK", "1 INVITE", true);
            let routes = header_values(fwd, &["Record-Route"]);
            call.ack = in_dialog("ACK", &call.id, 2, 1, &routes);
            call.bye = in_dialog("BYE", &call.id, 3, 2, &routes);
        }
        barrier.wait(); // phase 3: 180, 200, ACK, BYE
        let mark = Mark::now();
        for call in calls.iter_mut() {
            let from = call.invite_to.unwrap_or(uas);
            sent += handle(core, now, &call.ringing, from, &mut out, None);
            sent += handle(core, now, &call.ok, from, &mut out, None);
            sent += handle(core, now, &call.ack, uac, &mut out, None);
            sent += handle(
                core,
                now,
                &call.bye,
                uac,
                &mut out,
                Some((&mut call.forwarded, uas)),
            );
        }
        mark.close(&mut spent);
        barrier.wait();
        for call in calls.iter_mut() {
            let fwd = call.forwarded.take().expect("the BYE was forwarded");
            call.bye_to = Some(addr(&fwd.to));
            call.bye_ok = response(text(&fwd.bytes), &call.id, "200 OK", "2 BYE", false);
        }
        barrier.wait(); // phase 5: 200s to the BYEs
        let mark = Mark::now();
        for call in calls.iter() {
            let from = call.bye_to.unwrap_or(uas);
            sent += handle(core, now, &call.bye_ok, from, &mut out, None);
        }
        mark.close(&mut spent);
        barrier.wait();
        barrier.wait(); // phase 6: timers, past Timers L/M/J
        let mark = Mark::now();
        let later = clock(b) + Duration::from_secs(40);
        for lane in (first..core.lanes()).step_by(step) {
            if core.next_deadline_in(lane).is_some_and(|d| d <= later) {
                out.clear();
                core.on_timeout_in(lane, later, &mut out);
                sent += out.len() as u64;
            }
        }
        let timer_cpu = mark.close(&mut spent);
        spent.timer_cpu += timer_cpu;
        barrier.wait();
    }
    out.clear();
    (sent, spent)
}

struct RunResult {
    messages: u64,
    /// Where the threads' time went, summed over them.
    spent: Spent,
    elapsed: Duration,
}

/// One run: a fresh core, `calls` calls split over `threads` threads.
/// One run: `calls` calls split over `threads` threads, all sharing one
/// fresh core, or (`separate`, the control) each with a core of its own.
fn run(mode: Mode, threads: usize, separate: bool, o: &Options) -> RunResult {
    let config = CoreConfig {
        max_transactions: 4 * o.batch * threads + 1_000,
        shards: o.shards,
        ..CoreConfig::default()
    };
    let new_core = || {
        let listener = Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap();
        Core::new(mode.routes(), Identity::new(vec![listener]), config)
    };
    let cores: Vec<Core> = (0..if separate { threads } else { 1 })
        .map(|_| new_core())
        .collect();
    let per_thread = o.calls.div_ceil(threads);
    let batch = o.batch.min(per_thread);
    let batches = per_thread.div_ceil(batch);
    let start = Instant::now();
    // Each batch 41 s after the previous one: everything has expired.
    let clock = move |b: usize| start + Duration::from_secs(41 * b as u64);
    let barrier = Barrier::new(threads + 1);
    let mut elapsed = Duration::ZERO;
    let (sent, spent) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, clock) = (&barrier, &clock);
                let (core, lanes) = if separate {
                    (&cores[t], (0, 1))
                } else {
                    (&cores[0], (t, threads))
                };
                s.spawn(move || worker(core, mode, t, lanes, batches, batch, clock, barrier))
            })
            .collect();
        for _ in 0..batches {
            // Phases 1, 3, 5 and the timers.
            for _ in 0..4 {
                barrier.wait(); // the workers' untimed work is done
                let t0 = Instant::now();
                barrier.wait();
                elapsed += t0.elapsed();
            }
        }
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, Spent::default()), |(n, s), (wn, ws)| {
                (n + wn, s.add(ws))
            })
    });
    let calls = (batches * batch * threads) as u64;
    assert_eq!(
        sent,
        calls * mode.sent_per_call(),
        "{} with {threads} threads: the core sent {sent} datagrams for {calls} calls",
        mode.name()
    );
    for core in &cores {
        assert_eq!(core.transactions(), 0, "transactions left after the timers");
    }
    RunResult {
        messages: calls * MESSAGES_PER_CALL,
        spent,
        elapsed,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `median (min..max)` of a series, with `decimals`.
fn spread(v: &[f64], decimals: usize) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.*} ({:.*}..{:.*})",
        decimals,
        median(v.to_vec()),
        decimals,
        lo,
        decimals,
        hi
    )
}

/// What one run gave.
#[derive(Clone, Copy)]
struct Figures {
    /// Messages per second of wall time.
    rate: f64,
    /// Messages per second had no thread waited on a run queue: messages
    /// / ((CPU + blocked time) / threads). What the threads would do with
    /// the cores to themselves (an estimate: it assumes they stay in step).
    unqueued: f64,
    /// CPU nanoseconds per message, all threads.
    cpu_ns: f64,
    /// The part of it firing timers.
    timer_ns: f64,
    /// Shares of the threads' time in the timed phases: waiting for a CPU
    /// (the machine's load), blocked (locks).
    queued: f64,
    blocked: f64,
}

impl Figures {
    fn of(r: &RunResult, threads: usize) -> Figures {
        let s = &r.spent;
        let busy = (s.cpu + s.blocked()).as_secs_f64() / threads as f64;
        let n = r.messages as f64;
        Figures {
            rate: n / r.elapsed.as_secs_f64(),
            unqueued: n / busy,
            cpu_ns: 1e9 * s.cpu.as_secs_f64() / n,
            timer_ns: 1e9 * s.timer_cpu.as_secs_f64() / n,
            queued: s.queued.as_secs_f64() / s.wall.as_secs_f64(),
            blocked: s.blocked().as_secs_f64() / s.wall.as_secs_f64(),
        }
    }
}

fn main() {
    let o = parse_options();
    if o.logs {
        // As core_profile's PROFILE_LOGS: the formatter runs, the lines go nowhere.
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_ansi(false)
            .init();
    }
    println!(
        "core throughput: {} calls per run ({} messages each), batches of {} calls per thread, \
         {} shards, {} repetitions, logs {}; {} cores available",
        o.calls,
        MESSAGES_PER_CALL,
        o.batch,
        o.shards,
        o.reps,
        if o.logs { "formatted to a sink" } else { "off" },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // The configurations: (threads, each its own core); `figures[mode][c]`
    // over the repetitions. The runs are interleaved so that a change in
    // the machine's load hits every configuration alike.
    let mut configs: Vec<(usize, bool)> = o.threads.iter().map(|&t| (t, false)).collect();
    if o.control {
        configs.extend(o.threads.iter().filter(|&&t| t > 1).map(|&t| (t, true)));
    }
    let label = |(threads, separate): (usize, bool)| {
        if separate {
            format!("{threads}, a core each")
        } else {
            format!("{threads}")
        }
    };
    let mut figures: Vec<Vec<Vec<Figures>>> = vec![vec![Vec::new(); configs.len()]; o.modes.len()];
    for rep in 0..o.reps {
        for (m, mode) in o.modes.iter().enumerate() {
            for (c, &(threads, separate)) in configs.iter().enumerate() {
                let r = run(*mode, threads, separate, &o);
                let f = Figures::of(&r, threads);
                println!(
                    "  rep {} {:9} threads {:13}: {:>8.0} msg/s ({:>8.0} unqueued), {:>5.0} ns CPU/msg ({:>4.0} timers), queued {:4.1}%, blocked {:4.1}%",
                    rep + 1,
                    mode.name(),
                    label((threads, separate)),
                    f.rate,
                    f.unqueued,
                    f.cpu_ns,
                    f.timer_ns,
                    100.0 * f.queued,
                    100.0 * f.blocked,
                );
                figures[m][c].push(f);
            }
        }
    }
    println!();
    println!("median (min..max) over the repetitions; ratios taken per repetition:");
    println!();
    println!(
        "| mode | threads | messages/s | vs 1 thread | unqueued messages/s | vs 1 thread | CPU ns per message | of which timers | queued | blocked |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let one = configs.iter().position(|&c| c == (1, false));
    for (m, mode) in o.modes.iter().enumerate() {
        for (c, &config) in configs.iter().enumerate() {
            let runs = &figures[m][c];
            let get = |f: fn(&Figures) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
            let ratio = |f: fn(&Figures) -> f64| match one {
                Some(one) => {
                    let ratios: Vec<f64> = (0..runs.len())
                        .map(|r| f(&runs[r]) / f(&figures[m][one][r]))
                        .collect();
                    format!("{}x", spread(&ratios, 2))
                }
                None => "-".into(),
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {}% | {}% |",
                mode.name(),
                label(config),
                spread(&get(|f| f.rate), 0),
                ratio(|f| f.rate),
                spread(&get(|f| f.unqueued), 0),
                ratio(|f| f.unqueued),
                spread(&get(|f| f.cpu_ns), 0),
                spread(&get(|f| f.timer_ns), 0),
                spread(&get(|f| 100.0 * f.queued), 1),
                spread(&get(|f| 100.0 * f.blocked), 1),
            );
        }
    }
}
