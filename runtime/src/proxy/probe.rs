//! OPTIONS health probes of destination set targets (Kamailio's
//! dispatcher pinging), sans-IO: the core calls [`Prober::on_timeout`] when
//! [`Prober::next_deadline`] has passed and hands over the responses whose
//! top Via branch starts with [`PROBE_PREFIX`]; the outcomes go to
//! [`Destinations::report`].
//!
//! Every target of a set with `probe:` gets an OPTIONS each interval, from
//! the proxy's listening socket (the first one of the target's address
//! family), with our own Via and a branch
//! `z9hG4bKsfP<set>.<target>.<seq>` (hex) that names the probe. Over UDP
//! the OPTIONS is retransmitted like a non-INVITE request (Timer E: T1,
//! doubling up to T2) until its timeout. Any response, whatever its status,
//! proves the target alive; no response within the timeout counts against
//! it. At most one probe per target is outstanding; the next one is sent
//! when the interval has passed and the previous one has ended.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::destinations::{Destinations, Report, TargetId};
use super::identity::Identity;
use super::{Outgoing, Payload};
use crate::api::{DestinationSet, Target};
use crate::target::NextHop;
use crate::transaction::Timers;

/// Branch prefix of our probes (stateless branches are hex after `sf`,
/// stateful ones `sfT`).
pub const PROBE_PREFIX: &str = "z9hG4bKsfP";

/// Longest probe interval used (one day); longer ones are shortened.
const MAX_INTERVAL_MS: u64 = 86_400_000;

struct Pending {
    seq: u32,
    /// The probe's branch, with its keyed check: an answer must carry it.
    branch: Box<str>,
    bytes: Arc<[u8]>,
    to: NextHop,
    socket: usize,
    /// No answer by then: a failure.
    expires: Instant,
    /// Next retransmission, while before `expires`.
    resend_at: Instant,
    /// Current retransmission interval.
    rto: Duration,
}

struct ProbeTarget {
    id: TargetId,
    uri: &'static Target,
    interval: Duration,
    timeout: Duration,
    /// When the next probe goes out (None until the prober is started).
    due: Option<Instant>,
    pending: Option<Pending>,
}

impl ProbeTarget {
    fn next_deadline(&self) -> Option<Instant> {
        match &self.pending {
            Some(p) => Some(p.expires.min(p.resend_at)),
            None => self.due,
        }
    }
}

/// The probes of every target of every set with `probe:`.
pub struct Prober {
    targets: Vec<ProbeTarget>,
    /// Probe sequence number: CSeq and the last part of the branch.
    seq: u32,
}

impl Prober {
    pub fn new(sets: &'static [DestinationSet]) -> Prober {
        let mut targets = Vec::new();
        for (set_index, set) in sets.iter().enumerate() {
            let Some(probe) = set.probe else {
                continue;
            };
            // At most a day: keeps every deadline computable.
            let interval_ms = probe.interval_ms.clamp(1, MAX_INTERVAL_MS);
            let interval = Duration::from_millis(interval_ms);
            let timeout = Duration::from_millis(probe.timeout_ms.clamp(1, interval_ms));
            for (index, d) in set.targets.iter().enumerate() {
                targets.push(ProbeTarget {
                    id: TargetId {
                        set: set_index,
                        index,
                    },
                    uri: d.uri,
                    interval,
                    timeout,
                    due: None,
                    pending: None,
                });
            }
        }
        Prober { targets, seq: 0 }
    }

    /// Whether any set is probed.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Start probing: the first probes are due at `now`. Calling it again
    /// does not reschedule targets that are already started.
    pub fn start(&mut self, now: Instant) {
        for t in &mut self.targets {
            t.due.get_or_insert(now);
        }
    }

    /// When `on_timeout` must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.targets
            .iter()
            .filter_map(ProbeTarget::next_deadline)
            .min()
    }

    /// Expire unanswered probes, retransmit, and send the probes that are due.
    pub fn on_timeout(
        &mut self,
        now: Instant,
        identity: &Identity,
        timers: Timers,
        destinations: &Destinations,
        out: &mut Vec<Outgoing>,
    ) {
        for i in 0..self.targets.len() {
            let t = &mut self.targets[i];
            if let Some(p) = &mut t.pending {
                if p.expires <= now {
                    t.pending = None;
                    destinations.report(t.id, Report::ProbeUnanswered);
                } else if p.resend_at <= now {
                    out.push(Outgoing {
                        socket: p.socket,
                        to: p.to.clone(),
                        bytes: Payload::Shared(Arc::clone(&p.bytes)),
                    });
                    p.rto = p.rto.saturating_mul(2).min(timers.t2);
                    p.resend_at = now + p.rto;
                    continue;
                } else {
                    continue;
                }
            }
            let Some(due) = t.due else {
                continue;
            };
            if due > now {
                continue;
            }
            // The next probe keeps the rhythm, unless we fell behind.
            let next = due + t.interval;
            t.due = Some(if next > now { next } else { now + t.interval });
            self.seq = self.seq.wrapping_add(1);
            let seq = self.seq;
            let t = &mut self.targets[i];
            let Some(to) = t.uri.next_hop().cloned() else {
                continue;
            };
            let socket = socket_for(identity, &to);
            let Some((bytes, branch)) = options(identity, socket, t.id, t.uri.as_str(), seq) else {
                continue;
            };
            let bytes: Arc<[u8]> = Arc::from(bytes);
            out.push(Outgoing {
                socket,
                to: to.clone(),
                bytes: Payload::Shared(Arc::clone(&bytes)),
            });
            t.pending = Some(Pending {
                seq,
                branch: branch.into(),
                bytes,
                to,
                socket,
                expires: now + t.timeout,
                resend_at: now + timers.t1,
                rto: timers.t1,
            });
        }
    }

    /// A response whose top Via branch starts with [`PROBE_PREFIX`], from
    /// `source`: ends the probe it answers. Returns whether it answered an
    /// outstanding probe (late, unknown, forged answers and answers from
    /// another address than the probed one are consumed all the same).
    pub fn on_response(
        &mut self,
        branch: &str,
        status: u16,
        source: SocketAddr,
        destinations: &Destinations,
    ) -> bool {
        let Some((id, seq)) = parse_branch(branch) else {
            return false;
        };
        let Some(t) = self.targets.iter_mut().find(|t| {
            t.id == id
                && t.pending.as_ref().is_some_and(|p| {
                    p.seq == seq
                        && *p.branch == *branch
                        && p.to.addr().is_none_or(|to| to == source)
                })
        }) else {
            return false;
        };
        t.pending = None;
        destinations.report(id, Report::ProbeAnswered(status));
        true
    }
}

/// The first listener of the target's address family (the first one for names).
fn socket_for(identity: &Identity, to: &NextHop) -> usize {
    match to.addr() {
        Some(addr) => identity
            .listeners
            .iter()
            .position(|l| l.addr.is_ipv4() == addr.is_ipv4())
            .unwrap_or(0),
        None => 0,
    }
}

/// A probe's branch: the target, the sequence number and a keyed check
/// (so an answer cannot be forged by someone who has not seen the probe).
fn make_branch(identity: &Identity, id: TargetId, seq: u32) -> String {
    let check = identity.mac(("probe", id.set, id.index, seq)) & 0xffff_ffff_ffff;
    let mut s = String::with_capacity(48);
    let _ = write!(
        s,
        "{PROBE_PREFIX}{:x}.{:x}.{seq:x}.{check:012x}",
        id.set, id.index
    );
    s
}

fn parse_branch(branch: &str) -> Option<(TargetId, u32)> {
    let mut parts = branch.strip_prefix(PROBE_PREFIX)?.split('.');
    let set = usize::from_str_radix(parts.next()?, 16).ok()?;
    let index = usize::from_str_radix(parts.next()?, 16).ok()?;
    let seq = u32::from_str_radix(parts.next()?, 16).ok()?;
    let check = parts.next()?;
    if parts.next().is_some() || check.len() != 12 {
        return None;
    }
    Some((TargetId { set, index }, seq))
}

/// The OPTIONS of one probe.
fn options(
    identity: &Identity,
    socket: usize,
    id: TargetId,
    uri: &str,
    seq: u32,
) -> Option<(Vec<u8>, String)> {
    let listener = identity.listener(socket)?;
    let branch = make_branch(identity, id, seq);
    let bytes = options_request(listener, uri, &branch, "sfp", seq);
    Some((bytes, branch))
}

/// An OPTIONS of ours to `uri` from `listener` (health probes and NAT
/// keep-alives): Via branch `branch`, From tag `tag` + `seq` in hex,
/// Call-ID made of the branch. `uri` must hold no CR or LF.
pub(super) fn options_request(
    listener: &super::Listener,
    uri: &str,
    branch: &str,
    tag: &str,
    seq: u32,
) -> Vec<u8> {
    let (host, port) = (&listener.host, listener.port);
    let mut s = String::with_capacity(400);
    let _ = write!(
        s,
        "OPTIONS {uri} SIP/2.0\r\n\
         {via}{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:sipforge@{host}:{port}>;tag={tag}{seq:x}\r\n\
         To: <{uri}>\r\n\
         Call-ID: {branch}@{host}\r\n\
         CSeq: {seq} OPTIONS\r\n\
         User-Agent: sipforge\r\n\
         Content-Length: 0\r\n\r\n",
        via = listener.via_prefix,
    );
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Algorithm, Destination, Probe};
    use crate::proxy::Listener;
    use crate::sip::Message;

    static A: Target = Target::new("sip:127.0.0.1:5080");
    static B: Target = Target::new("sip:127.0.0.1:5090;transport=udp");
    static SETS: [DestinationSet; 2] = [
        DestinationSet {
            name: "plain",
            algorithm: Algorithm::RoundRobin,
            targets: &[Destination { uri: &A, weight: 1 }],
            probe: None,
        },
        DestinationSet {
            name: "probed",
            algorithm: Algorithm::RoundRobin,
            targets: &[
                Destination { uri: &A, weight: 1 },
                Destination { uri: &B, weight: 1 },
            ],
            probe: Some(Probe {
                interval_ms: 1000,
                timeout_ms: 600,
                failures: 3,
                successes: 2,
            }),
        },
    ];

    const TIMERS: Timers = Timers {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(250),
        t4: Duration::from_millis(500),
    };

    fn identity() -> Identity {
        Identity::new(vec![
            Listener::new("127.0.0.1:5060".parse().unwrap(), None).unwrap(),
        ])
    }

    /// A fake clock: `ms` after the start.
    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn run(p: &mut Prober, d: &Destinations, now: Instant) -> Vec<Outgoing> {
        let mut out = Vec::new();
        p.on_timeout(now, &identity(), TIMERS, d, &mut out);
        out
    }

    fn addr_of(o: &Outgoing) -> SocketAddr {
        match &o.to {
            NextHop::Addr(a) => *a,
            other => panic!("probe to a name: {other}"),
        }
    }

    fn branch_of(o: &Outgoing) -> String {
        let msg = Message::parse(o.bytes.as_ref()).unwrap();
        msg.top_via().unwrap().branch.unwrap().to_string()
    }

    #[test]
    fn probes_are_well_formed_options() {
        let d = Destinations::new(&SETS);
        let mut p = Prober::new(&SETS);
        assert_eq!(p.next_deadline(), None, "nothing before start");
        let t0 = Instant::now();
        p.start(t0);
        assert_eq!(p.next_deadline(), Some(t0));
        let out = run(&mut p, &d, t0);
        assert_eq!(out.len(), 2, "one OPTIONS per target of the probed set");
        let msg = Message::parse(out[1].bytes.as_ref()).unwrap();
        assert!(msg.validate().is_ok());
        assert_eq!(msg.method(), Some("OPTIONS"));
        assert_eq!(msg.request_uri(), Some("sip:127.0.0.1:5090;transport=udp"));
        let via = msg.top_via().unwrap();
        assert!(identity().is_us(via.host, via.port));
        assert!(via.branch.unwrap().starts_with(PROBE_PREFIX));
        assert_eq!(
            parse_branch(via.branch.unwrap()),
            Some((TargetId { set: 1, index: 1 }, 2))
        );
        assert_eq!(out[1].to, NextHop::Addr("127.0.0.1:5090".parse().unwrap()));
        assert_eq!(out[1].socket, 0);
        assert_eq!(parse_branch("z9hG4bKsfPx.1.1"), None);
        assert_eq!(parse_branch("z9hG4bKsfP1.1.1.1"), None);
        assert_eq!(parse_branch("z9hG4bKsfT1.1.1"), None);
    }

    #[test]
    fn retransmits_then_fails_then_goes_down_and_comes_back() {
        let d = Destinations::new(&SETS);
        let mut p = Prober::new(&SETS);
        let t0 = Instant::now();
        p.start(t0);
        let a = TargetId { set: 1, index: 0 };
        let mut sent_a = Vec::new();
        let mut down_at = None;
        // Target A never answers; B answers every probe at once.
        let mut now = t0;
        while now <= at(t0, 5000) {
            for o in run(&mut p, &d, now) {
                let branch = branch_of(&o);
                let (id, _) = parse_branch(&branch).unwrap();
                if id == a {
                    sent_a.push((now - t0).as_millis() as u64);
                } else {
                    let from = addr_of(&o);
                    // From another address, or with a forged check: no effect.
                    let wrong: SocketAddr = "127.0.0.1:9".parse().unwrap();
                    assert!(!p.on_response(&branch, 200, wrong, &d));
                    let forged = format!("{}000000000000", &branch[..branch.len() - 12]);
                    assert!(!p.on_response(&forged, 200, from, &d));
                    assert!(p.on_response(&branch, 200, from, &d));
                    assert!(!p.on_response(&branch, 200, from, &d), "answered once");
                }
            }
            if down_at.is_none() && !d.is_up(a) {
                down_at = Some((now - t0).as_millis() as u64);
            }
            match p.next_deadline() {
                Some(next) => now = next,
                None => break,
            }
        }
        // Each probe: sent, retransmitted at T1 then 2*T1, then every T2 (250)
        // up to its 600 ms timeout; the next probe one interval later.
        assert_eq!(
            &sent_a[..8],
            &[0, 100, 300, 550, 1000, 1100, 1300, 1550],
            "{sent_a:?}"
        );
        // Third unanswered probe (sent at 2000) expires at 2600.
        assert_eq!(down_at, Some(2600));
        assert!(d.is_up(TargetId { set: 1, index: 1 }));

        // A answers again: up after two answered probes.
        let mut now = at(t0, 6000);
        let mut answered = 0;
        while !d.is_up(a) {
            for o in run(&mut p, &d, now) {
                let branch = branch_of(&o);
                if p.on_response(&branch, 404, addr_of(&o), &d)
                    && parse_branch(&branch).unwrap().0 == a
                {
                    answered += 1;
                }
            }
            now = p.next_deadline().unwrap();
            assert!(now < at(t0, 10_000), "A never came back");
        }
        assert_eq!(answered, 2);
    }

    #[test]
    fn late_answers_are_consumed_without_effect() {
        let d = Destinations::new(&SETS);
        let mut p = Prober::new(&SETS);
        let t0 = Instant::now();
        p.start(t0);
        let first = run(&mut p, &d, t0);
        let late = branch_of(&first[0]);
        // Probe expired (600 ms) before its answer came.
        run(&mut p, &d, at(t0, 700));
        let from = addr_of(&first[0]);
        assert!(!p.on_response(&late, 200, from, &d));
        assert!(!p.on_response("z9hG4bKsfP9.9.1.000000000000", 200, from, &d));
    }

    #[test]
    fn without_probed_sets_there_is_nothing_to_do() {
        let mut p = Prober::new(&SETS[..1]);
        assert!(p.is_empty());
        p.start(Instant::now());
        assert_eq!(p.next_deadline(), None);
    }
}
