//! ng requests in flight, sans-IO: the state of a client of one or more
//! rtpengines, driven by the network layer with three inputs and two
//! outputs.
//!
//! Inputs: [`Client::request`] (send this), [`Client::on_datagram`]
//! (these bytes came from that address), [`Client::on_timeout`] (the
//! time is now; call it at [`Client::next_timeout`]). Outputs:
//! [`Client::poll_transmit`] (send these bytes to that address, from the
//! client's UDP socket) and [`Client::poll_event`] (a request's reply or
//! failure, an instance dead or alive again: for the waiting message and
//! for the metrics).
//!
//! - A request goes to its call's instance ([`super::instances`]) with a
//!   new cookie; unanswered, it is sent again with the same cookie (so
//!   rtpengine, which remembers the cookies it answered, answers a
//!   retransmission with its first reply instead of running the command
//!   twice) after [`Config::retransmit_after`], [`Config::retransmissions`]
//!   times; unanswered after that, the instance is marked dead.
//! - Then an offer is sent to the call's next live instance (a new cookie:
//!   another server), since an offer can set a call up anywhere; an
//!   answer, a delete or a query cannot (only the dead instance knew the
//!   call), so they fail. A request with no live instance to go to fails
//!   at once.
//! - A reply is matched by its cookie and must come from the address the
//!   request went to; anything else (an unknown or answered cookie,
//!   another address, bytes that are no reply) is ignored and counted
//!   ([`Client::ignored`]).
//! - Any reply from a dead instance marks it alive; dead instances are
//!   probed with `ping` every `probe_every` ([`Config::probe_every`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::instances::Instances;
use super::ng::{Command, Cookies, Reply, Request};

/// Timing of requests and probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long to wait for a reply before sending again (and, after the
    /// last retransmission, before giving up).
    pub retransmit_after: Duration,
    /// Retransmissions after the first send.
    pub retransmissions: u32,
    /// How often a dead instance is pinged.
    pub probe_every: Duration,
}

impl Default for Config {
    /// 500 ms, twice more (1.5 s in all before an instance is dead), and a
    /// probe every 5 s.
    fn default() -> Config {
        Config {
            retransmit_after: Duration::from_millis(500),
            retransmissions: 2,
            probe_every: Duration::from_secs(5),
        }
    }
}

/// Names a request for its events.
pub type RequestId = u64;

/// Bytes to send from the client's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub datagram: Vec<u8>,
}

/// Why a request got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No live instance to send it to.
    NoInstance,
    /// Its instance did not answer (and it could not go elsewhere).
    Timeout,
}

impl Failure {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::NoInstance => "no_instance",
            Failure::Timeout => "timeout",
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// rtpengine answered request `id` (its [`Reply::outcome`] may still
    /// be an error).
    Reply {
        id: RequestId,
        command: Command,
        instance: SocketAddr,
        /// From the request to its reply, retransmissions and failover
        /// included.
        latency: Duration,
        reply: Reply,
    },
    /// Request `id` got no reply.
    Failed {
        id: RequestId,
        command: Command,
        failure: Failure,
    },
    /// An instance stopped answering.
    InstanceDown(SocketAddr),
    /// A dead instance answered again.
    InstanceUp(SocketAddr),
}

#[derive(Debug)]
struct Pending {
    /// None for a probe (it has no event of its own).
    id: Option<RequestId>,
    command: Command,
    /// The call, for failover (empty for ping).
    call_id: String,
    /// The dictionary (the cookie goes before it).
    dict: Vec<u8>,
    /// The whole datagram as sent, for retransmissions.
    datagram: Vec<u8>,
    instance: usize,
    tried: Vec<usize>,
    started: Instant,
    retransmissions_left: u32,
    next: Instant,
}

/// The client's state.
#[derive(Debug)]
pub struct Client {
    instances: Instances,
    config: Config,
    cookies: Cookies,
    pending: HashMap<Vec<u8>, Pending>,
    /// Instances with a probe in flight.
    probing: Vec<usize>,
    next_id: RequestId,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    ignored: u64,
}

impl Client {
    /// A client of `addrs` (see [`super::instances::parse_address`]), all
    /// taken as alive, with a random cookie prefix.
    pub fn new(addrs: &[SocketAddr], config: Config) -> Client {
        Client::with_cookies(addrs, config, Cookies::new())
    }

    /// With the cookies given (tests).
    pub fn with_cookies(addrs: &[SocketAddr], config: Config, cookies: Cookies) -> Client {
        Client {
            instances: Instances::new(addrs, config.probe_every),
            config,
            cookies,
            pending: HashMap::new(),
            probing: Vec::new(),
            next_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ignored: 0,
        }
    }

    pub fn instances(&self) -> &Instances {
        &self.instances
    }

    /// Requests waiting for a reply (probes included).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Datagrams ignored so far (not a reply, unknown cookie, wrong
    /// address).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Send `request` to its call's instance (a ping to the first live
    /// instance). Its reply or failure comes as an [`Event`] with the id
    /// returned (a failure may already be queued when this returns).
    pub fn request(&mut self, now: Instant, request: &Request<'_>) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        let call_id = request.call_id.to_string();
        let Some(instance) = self.instances.pick(&call_id, &[]) else {
            self.events.push_back(Event::Failed {
                id,
                command: request.command,
                failure: Failure::NoInstance,
            });
            return id;
        };
        self.send(Pending {
            id: Some(id),
            command: request.command,
            call_id,
            dict: request.dict(),
            datagram: Vec::new(),
            instance,
            tried: vec![instance],
            started: now,
            retransmissions_left: 0,
            next: now,
        });
        id
    }

    /// Send (or send again, elsewhere) with a new cookie and a fresh
    /// retransmission schedule.
    fn send(&mut self, mut p: Pending) {
        let cookie = self.cookies.next_cookie();
        let mut datagram = Vec::with_capacity(cookie.len() + 1 + p.dict.len());
        datagram.extend_from_slice(cookie.as_bytes());
        datagram.push(b' ');
        datagram.extend_from_slice(&p.dict);
        p.datagram = datagram;
        p.retransmissions_left = self.config.retransmissions;
        p.next += self.config.retransmit_after;
        self.transmits.push_back(Transmit {
            to: self.instances.addr(p.instance),
            datagram: p.datagram.clone(),
        });
        self.pending.insert(cookie.into_bytes(), p);
    }

    /// A datagram came to the client's socket from `from`.
    pub fn on_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Ok(reply) = Reply::parse(datagram) else {
            self.ignored += 1;
            return;
        };
        let matches = self
            .pending
            .get(reply.cookie.as_slice())
            .is_some_and(|p| same_addr(self.instances.addr(p.instance), from));
        if !matches {
            self.ignored += 1;
            return;
        }
        let Some(p) = self.pending.remove(reply.cookie.as_slice()) else {
            return;
        };
        let instance = self.instances.addr(p.instance);
        if self.instances.mark_up(p.instance) {
            self.events.push_back(Event::InstanceUp(instance));
        }
        match p.id {
            Some(id) => self.events.push_back(Event::Reply {
                id,
                command: p.command,
                instance,
                latency: now.saturating_duration_since(p.started),
                reply,
            }),
            None => self.probing.retain(|&i| i != p.instance),
        }
    }

    /// The time is `now`: retransmit, give up, probe what is due.
    pub fn on_timeout(&mut self, now: Instant) {
        let due: Vec<Vec<u8>> = self
            .pending
            .iter()
            .filter(|(_, p)| p.next <= now)
            .map(|(c, _)| c.clone())
            .collect();
        for cookie in due {
            let Some(mut p) = self.pending.remove(&cookie) else {
                continue;
            };
            if p.retransmissions_left > 0 {
                p.retransmissions_left -= 1;
                p.next = now + self.config.retransmit_after;
                self.transmits.push_back(Transmit {
                    to: self.instances.addr(p.instance),
                    datagram: p.datagram.clone(),
                });
                self.pending.insert(cookie, p);
                continue;
            }
            self.give_up(now, p);
        }
        for i in self.instances.due_probes(now) {
            if self.probing.contains(&i) {
                continue;
            }
            self.probing.push(i);
            self.send(Pending {
                id: None,
                command: Command::Ping,
                call_id: String::new(),
                dict: Request::ping().dict(),
                datagram: Vec::new(),
                instance: i,
                tried: vec![i],
                started: now,
                retransmissions_left: 0,
                next: now,
            });
        }
    }

    /// Request `p` went unanswered by its instance.
    fn give_up(&mut self, now: Instant, mut p: Pending) {
        if self.instances.mark_down(p.instance, now) {
            self.events
                .push_back(Event::InstanceDown(self.instances.addr(p.instance)));
        }
        let Some(id) = p.id else {
            self.probing.retain(|&i| i != p.instance);
            return;
        };
        if p.command == Command::Offer
            && let Some(next) = self.instances.pick(&p.call_id, &p.tried)
        {
            p.instance = next;
            p.tried.push(next);
            p.next = now;
            self.send(p);
            return;
        }
        self.events.push_back(Event::Failed {
            id,
            command: p.command,
            failure: Failure::Timeout,
        });
    }

    /// When to call [`Client::on_timeout`] next.
    pub fn next_timeout(&self) -> Option<Instant> {
        let retransmit = self.pending.values().map(|p| p.next).min();
        match (retransmit, self.instances.next_probe()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// The same address, an IPv4-mapped IPv6 address (what a dual-stack
/// socket reports) counting as the IPv4 address it maps.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    fn plain(a: SocketAddr) -> SocketAddr {
        match a {
            SocketAddr::V6(v6) => v6
                .ip()
                .to_ipv4_mapped()
                .map_or(a, |v4| SocketAddr::from((v4, v6.port()))),
            SocketAddr::V4(_) => a,
        }
    }
    plain(a) == plain(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtpengine::ng::{Flags, Outcome, split_cookie};

    const MS: Duration = Duration::from_millis(1);

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 2223 + i)))
            .collect()
    }

    fn client(n: u16) -> Client {
        Client::with_cookies(&addrs(n), Config::default(), Cookies::with_prefix("t"))
    }

    fn transmits(c: &mut Client) -> Vec<Transmit> {
        std::iter::from_fn(|| c.poll_transmit()).collect()
    }

    fn events(c: &mut Client) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn cookie(t: &Transmit) -> String {
        String::from_utf8(split_cookie(&t.datagram).unwrap().0.to_vec()).unwrap()
    }

    /// rtpengine's reply to the request in `t`.
    fn reply_to(t: &Transmit, dict: &str) -> Vec<u8> {
        format!("{} {dict}", cookie(t)).into_bytes()
    }

    fn offer(c: &mut Client, now: Instant, call: &str) -> RequestId {
        let flags = Flags::default();
        c.request(now, &Request::offer(call, "a", None, b"v=0\r\n", &flags))
    }

    #[test]
    fn a_reply_is_matched_by_cookie() {
        let t0 = Instant::now();
        let mut c = client(1);
        let id = offer(&mut c, t0, "call-1");
        let sent = transmits(&mut c);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, addrs(1)[0]);
        assert_eq!(cookie(&sent[0]), "t_1");
        assert!(sent[0].datagram.ends_with(b"3:sdp5:v=0\r\ne"));
        assert_eq!(c.next_timeout(), Some(t0 + 500 * MS));

        c.on_datagram(
            t0 + 3 * MS,
            sent[0].to,
            &reply_to(&sent[0], "d3:sdp3:v=16:result2:oke"),
        );
        let ev = events(&mut c);
        let [
            Event::Reply {
                id: got,
                command,
                instance,
                latency,
                reply,
            },
        ] = ev.as_slice()
        else {
            panic!("{ev:?}");
        };
        assert_eq!(
            (*got, *command, *instance, *latency),
            (id, Command::Offer, sent[0].to, 3 * MS)
        );
        assert_eq!(
            (reply.outcome, reply.sdp.as_deref()),
            (Outcome::Ok, Some(&b"v=1"[..]))
        );
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.next_timeout(), None);
        // The same reply again (rtpengine answering a retransmission late):
        // the cookie is answered, ignored.
        c.on_datagram(
            t0 + 4 * MS,
            sent[0].to,
            &reply_to(&sent[0], "d6:result2:oke"),
        );
        assert!(events(&mut c).is_empty());
        assert_eq!(c.ignored(), 1);
    }

    #[test]
    fn unknown_cookies_other_addresses_and_garbage_are_ignored() {
        let t0 = Instant::now();
        let mut c = client(1);
        offer(&mut c, t0, "call-1");
        let sent = transmits(&mut c);
        let stranger: SocketAddr = "127.0.0.1:9".parse().unwrap();
        c.on_datagram(t0, sent[0].to, b"t_99 d6:result2:oke");
        c.on_datagram(t0, stranger, &reply_to(&sent[0], "d6:result2:oke"));
        c.on_datagram(t0, sent[0].to, b"garbage");
        c.on_datagram(t0, sent[0].to, &reply_to(&sent[0], "d6:result"));
        assert!(events(&mut c).is_empty());
        assert_eq!(c.ignored(), 4);
        assert_eq!(c.in_flight(), 1);
        // From a dual-stack socket the instance's address is IPv4-mapped.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:2223".parse().unwrap();
        assert_eq!(mapped.port(), sent[0].to.port());
        // The real reply still counts.
        c.on_datagram(
            t0,
            mapped,
            &reply_to(&sent[0], "d6:result5:error12:error-reason3:bade"),
        );
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [Event::Reply { reply, instance, .. }] if reply.outcome == Outcome::Error
                && reply.error_reason.as_deref() == Some("bad") && *instance == sent[0].to),
            "{ev:?}"
        );
    }

    #[test]
    fn retransmissions_keep_the_cookie_then_the_instance_is_dead() {
        let t0 = Instant::now();
        let mut c = client(1);
        let flags = Flags::default();
        let id = c.request(t0, &Request::answer("call-1", "a", "b", b"v=0\r\n", &flags));
        let first = transmits(&mut c);
        c.on_timeout(t0 + 499 * MS);
        assert!(transmits(&mut c).is_empty(), "not yet");
        c.on_timeout(t0 + 500 * MS);
        let second = transmits(&mut c);
        assert_eq!(second, first, "the same datagram, the same cookie");
        assert_eq!(c.next_timeout(), Some(t0 + 1000 * MS));
        c.on_timeout(t0 + 1000 * MS);
        assert_eq!(transmits(&mut c), first);
        assert!(events(&mut c).is_empty());
        c.on_timeout(t0 + 1500 * MS);
        assert!(
            transmits(&mut c).is_empty(),
            "an answer does not go elsewhere"
        );
        assert_eq!(
            events(&mut c),
            [
                Event::InstanceDown(addrs(1)[0]),
                Event::Failed {
                    id,
                    command: Command::Answer,
                    failure: Failure::Timeout
                }
            ]
        );
        assert_eq!(c.instances().up_count(), 0);
        // With no live instance a request fails at once.
        let id = offer(&mut c, t0 + 1600 * MS, "call-2");
        assert!(transmits(&mut c).is_empty());
        assert_eq!(
            events(&mut c),
            [Event::Failed {
                id,
                command: Command::Offer,
                failure: Failure::NoInstance
            }]
        );
    }

    #[test]
    fn a_late_reply_to_a_retransmitted_request_counts_from_the_first_send() {
        let t0 = Instant::now();
        let mut c = client(1);
        offer(&mut c, t0, "call-1");
        let sent = transmits(&mut c);
        c.on_timeout(t0 + 500 * MS);
        transmits(&mut c);
        c.on_datagram(
            t0 + 700 * MS,
            sent[0].to,
            &reply_to(&sent[0], "d6:result2:oke"),
        );
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [Event::Reply { latency, .. }] if *latency == 700 * MS),
            "{ev:?}"
        );
    }

    #[test]
    fn an_offer_fails_over_to_the_next_instance_with_a_new_cookie() {
        let t0 = Instant::now();
        let mut c = client(3);
        let order = c.instances().order("call-1");
        let id = offer(&mut c, t0, "call-1");
        let first = transmits(&mut c);
        assert_eq!(first[0].to, addrs(3)[order[0]]);
        for k in 1..=3 {
            c.on_timeout(t0 + k * 500 * MS);
        }
        let sent = transmits(&mut c);
        assert_eq!(sent.len(), 3, "two retransmissions, then the next instance");
        assert_eq!(sent[2].to, addrs(3)[order[1]]);
        assert_ne!(cookie(&sent[2]), cookie(&first[0]));
        assert_eq!(
            split_cookie(&sent[2].datagram).unwrap().1,
            split_cookie(&first[0].datagram).unwrap().1,
            "the same request"
        );
        assert_eq!(events(&mut c), [Event::InstanceDown(first[0].to)]);
        // The first instance's late reply is for a cookie given up on.
        c.on_datagram(
            t0 + 1600 * MS,
            first[0].to,
            &reply_to(&first[0], "d6:result2:oke"),
        );
        assert!(events(&mut c).is_empty());
        c.on_datagram(
            t0 + 1700 * MS,
            sent[2].to,
            &reply_to(&sent[2], "d6:result2:oke"),
        );
        let ev = events(&mut c);
        assert!(
            matches!(&ev[..], [Event::Reply { id: got, instance, latency, .. }]
                if *got == id && *instance == sent[2].to && *latency == 1700 * MS),
            "{ev:?}"
        );
        // Later calls that hash to the dead one go to their next choice.
        for n in 0..50 {
            let call = format!("c{n}");
            offer(&mut c, t0 + 2 * 1000 * MS, &call);
            let t = transmits(&mut c);
            let want = c
                .instances()
                .order(&call)
                .into_iter()
                .find(|&i| i != order[0])
                .unwrap();
            assert_eq!(t[0].to, addrs(3)[want]);
        }
    }

    #[test]
    fn an_offer_that_no_instance_answers_fails_after_trying_each_once() {
        let t0 = Instant::now();
        let mut c = client(2);
        let id = offer(&mut c, t0, "call-1");
        let mut now = t0;
        let mut sent = transmits(&mut c).len();
        while c.in_flight() > 0 {
            now = c.next_timeout().unwrap();
            c.on_timeout(now);
            sent += transmits(&mut c).len();
        }
        assert_eq!(sent, 6, "three sends to each of two instances");
        assert_eq!(now, t0 + 3000 * MS);
        let ev = events(&mut c);
        assert_eq!(ev.len(), 3);
        assert_eq!(
            ev[2],
            Event::Failed {
                id,
                command: Command::Offer,
                failure: Failure::Timeout
            }
        );
    }

    #[test]
    fn a_dead_instance_is_pinged_until_it_answers() {
        let t0 = Instant::now();
        let mut c = client(1);
        let addr = addrs(1)[0];
        offer(&mut c, t0, "call-1");
        for k in 1..=3 {
            c.on_timeout(t0 + k * 500 * MS);
        }
        transmits(&mut c);
        events(&mut c);
        let dead_at = t0 + 1500 * MS;
        assert_eq!(c.next_timeout(), Some(dead_at + 5000 * MS));
        // The first probe gets no answer: three pings, then the next
        // probe one interval after the first.
        c.on_timeout(dead_at + 5000 * MS);
        let ping = transmits(&mut c);
        assert_eq!(ping.len(), 1);
        assert!(ping[0].datagram.ends_with(b" d7:command4:pinge"));
        assert_eq!(ping[0].to, addr);
        for k in 1..=3 {
            c.on_timeout(dead_at + 5000 * MS + k * 500 * MS);
        }
        assert_eq!(transmits(&mut c).len(), 2);
        assert!(events(&mut c).is_empty(), "a probe has no event of its own");
        assert_eq!(c.in_flight(), 0);
        c.on_timeout(dead_at + 10_000 * MS);
        let ping = transmits(&mut c);
        assert_eq!(ping.len(), 1);
        c.on_datagram(
            dead_at + 10_001 * MS,
            addr,
            &reply_to(&ping[0], "d6:result4:ponge"),
        );
        assert_eq!(events(&mut c), [Event::InstanceUp(addr)]);
        assert_eq!(c.instances().up_count(), 1);
        assert_eq!(c.next_timeout(), None);
        offer(&mut c, dead_at + 10_002 * MS, "call-2");
        assert_eq!(transmits(&mut c)[0].to, addr);
    }

    #[test]
    fn any_reply_from_a_dead_instance_revives_it() {
        let t0 = Instant::now();
        let mut c = client(1);
        let flags = Flags::default();
        c.request(t0, &Request::delete("call-1", "a", None, &flags));
        let first = transmits(&mut c);
        // A ping of the caller's own (a health check) times out ...
        let ping = c.request(t0, &Request::ping());
        let ping_sent = transmits(&mut c);
        assert_eq!(ping_sent[0].to, first[0].to);
        for k in 1..=3 {
            c.on_timeout(t0 + k * 500 * MS);
        }
        transmits(&mut c);
        let ev = events(&mut c);
        assert!(ev.contains(&Event::Failed {
            id: ping,
            command: Command::Ping,
            failure: Failure::Timeout
        }));
        assert_eq!(c.instances().up_count(), 0);
        // ... the delete's reply, late, was cut off with the others: the
        // probe's pong brings the instance back.
        c.on_timeout(t0 + 6500 * MS);
        let probe = transmits(&mut c);
        c.on_datagram(
            t0 + 6501 * MS,
            probe[0].to,
            &reply_to(&probe[0], "d6:result4:ponge"),
        );
        assert_eq!(events(&mut c), [Event::InstanceUp(first[0].to)]);
    }

    #[test]
    fn no_instances_at_all() {
        let mut c = Client::with_cookies(&[], Config::default(), Cookies::with_prefix("t"));
        let id = c.request(Instant::now(), &Request::ping());
        assert_eq!(
            events(&mut c),
            [Event::Failed {
                id,
                command: Command::Ping,
                failure: Failure::NoInstance
            }]
        );
        assert_eq!(c.next_timeout(), None);
    }
}
