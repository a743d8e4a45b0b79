//! Talks to rtpengine for `rtp_manage` (the ng control protocol over UDP,
//! [`crate::rtpengine`] builds and reads its messages): one UDP socket,
//! a task reading the replies and matching them to their requests by
//! cookie, and one future per request that the asker awaits
//! ([`super::asker`]).
//!
//! A request goes to the call's instance (chosen by a hash of the
//! Call-ID, dead ones skipped: [`Instances`]), is sent again with the same
//! cookie when no reply came within [`RETRY_AFTER`] (twice), then the
//! instance is marked dead and the next one is tried; a dead instance is
//! pinged every [`PROBE_EVERY`] and is alive again when it answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};

use crate::proxy::suspend::{MediaAsk, MediaCommand};
use crate::rtpengine::instances::Instances;
use crate::rtpengine::ng::{Cookies, Flags, Outcome, Reply, Request};

/// How long a request waits for its reply before it is sent again.
pub const RETRY_AFTER: Duration = Duration::from_millis(400);
/// Sends of one request to one instance (the first and the retries).
const SENDS: usize = 3;
/// How often a dead instance is pinged.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The rtpengine side of the network layer.
pub(super) struct Media {
    socket: Arc<UdpSocket>,
    instances: Mutex<Instances>,
    cookies: Cookies,
    pending: Mutex<HashMap<Vec<u8>, oneshot::Sender<Reply>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Media {
    /// A client of the rtpengines at `addrs` (`IP:PORT`), with its reply
    /// and probe tasks running until `stop`.
    pub(super) async fn start(
        addrs: &[&str],
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Media>> {
        let addrs: Vec<SocketAddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
        let bind: SocketAddr = if addrs.iter().all(SocketAddr::is_ipv6) && !addrs.is_empty() {
            "[::]:0"
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0; 4], 0)))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        let media = Arc::new(Media {
            socket,
            instances: Mutex::new(Instances::new(&addrs, PROBE_EVERY)),
            cookies: Cookies::new(),
            pending: Mutex::new(HashMap::new()),
        });
        crate::metrics::set_rtpengines_up(addrs.len());
        tokio::spawn(Arc::clone(&media).read_replies(stop.clone()));
        tokio::spawn(Arc::clone(&media).probe(stop));
        Ok(media)
    }

    /// Carry out one `rtp_manage` question: rtpengine's SDP (empty for a
    /// delete), or why there is none.
    pub(super) async fn ask(&self, ask: &MediaAsk) -> Result<Vec<u8>, String> {
        let started = Instant::now();
        let command = match ask.command {
            MediaCommand::Offer => "offer",
            MediaCommand::Answer => "answer",
            MediaCommand::Delete => "delete",
        };
        let result = self.exchange(ask).await;
        crate::metrics::rtpengine_request(command, result.is_ok(), started.elapsed());
        tracing::debug!(
            call_id = ask.call_id.as_str(),
            command,
            ok = result.is_ok(),
            "rtpengine {command} done"
        );
        result
    }

    async fn exchange(&self, ask: &MediaAsk) -> Result<Vec<u8>, String> {
        let flags =
            Flags::parse(ask.flags.unwrap_or("")).map_err(|e| format!("rtp_manage flags: {e}"))?;
        let sdp = ask.sdp.as_deref().unwrap_or_default();
        let request = match ask.command {
            MediaCommand::Offer => Request::offer(
                &ask.call_id,
                &ask.from_tag,
                ask.to_tag.as_deref(),
                sdp,
                &flags,
            ),
            MediaCommand::Answer => {
                let to_tag = ask.to_tag.as_deref().unwrap_or("");
                Request::answer(&ask.call_id, &ask.from_tag, to_tag, sdp, &flags)
            }
            MediaCommand::Delete => {
                Request::delete(&ask.call_id, &ask.from_tag, ask.to_tag.as_deref(), &flags)
            }
        }
        .with_via_branch(ask.via_branch.as_deref())
        .with_received_from(ask.source);
        let mut tried = Vec::new();
        loop {
            let picked = lock(&self.instances).pick(&ask.call_id, &tried);
            let Some(i) = picked else {
                return Err(if tried.is_empty() {
                    "every rtpengine is down".into()
                } else {
                    "no rtpengine answered".into()
                });
            };
            tried.push(i);
            let addr = lock(&self.instances).addr(i);
            match self.send_and_wait(&request, addr).await {
                Some(reply) => {
                    self.alive(i);
                    if let Some(w) = &reply.warning {
                        tracing::debug!(%addr, call_id = ask.call_id.as_str(), "rtpengine warns: {w}");
                    }
                    return match reply.outcome {
                        Outcome::Ok => Ok(reply.sdp.unwrap_or_default()),
                        _ => Err(format!(
                            "rtpengine {addr}: {}",
                            reply.error_reason.unwrap_or(reply.result)
                        )),
                    };
                }
                None => {
                    if lock(&self.instances).mark_down(i, Instant::now()) {
                        crate::metrics::set_rtpengines_up(lock(&self.instances).up_count());
                        tracing::warn!(%addr, "rtpengine {addr} does not answer: marked down, pinged every {PROBE_EVERY:?}");
                    }
                }
            }
        }
    }

    /// Send `request` to `addr` under a new cookie, again on each
    /// [`RETRY_AFTER`] with the same cookie; the reply, or None.
    async fn send_and_wait(&self, request: &Request<'_>, addr: SocketAddr) -> Option<Reply> {
        let cookie = self.cookies.next_cookie();
        let bytes = request.encode(&cookie);
        tracing::trace!(%addr, "ng request: {}", String::from_utf8_lossy(&bytes));
        let (tx, mut rx) = oneshot::channel();
        lock(&self.pending).insert(cookie.clone().into_bytes(), tx);
        let mut reply = None;
        for _ in 0..SENDS {
            if let Err(e) = self.socket.send_to(&bytes, addr).await {
                tracing::debug!(%addr, "rtpengine send failed: {e}");
            }
            match tokio::time::timeout(RETRY_AFTER, &mut rx).await {
                Ok(Ok(r)) => {
                    reply = Some(r);
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => continue,
            }
        }
        lock(&self.pending).remove(cookie.as_bytes());
        reply
    }

    /// Instance `i` answered: alive.
    fn alive(&self, i: usize) {
        let mut instances = lock(&self.instances);
        if instances.mark_up(i) {
            crate::metrics::set_rtpengines_up(instances.up_count());
            tracing::info!(addr = %instances.addr(i), "rtpengine answers again: marked up");
        }
    }

    /// Match replies to their requests by cookie (unknown cookies: late
    /// replies to requests given up, dropped).
    async fn read_replies(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65_535];
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = received else { continue };
                    match Reply::parse(&buf[..n]) {
                        Ok(reply) => {
                            let waiter = lock(&self.pending).remove(&reply.cookie);
                            match waiter {
                                Some(tx) => {
                                    let _ = tx.send(reply);
                                }
                                None => tracing::debug!(%from, "rtpengine reply with an unknown cookie: dropped"),
                            }
                        }
                        Err(e) => crate::warn_limited!(%from, "unreadable rtpengine reply: {e}"),
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Ping the dead instances when due; alive when they answer.
    async fn probe(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(PROBE_EVERY / 2);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.changed() => return,
            }
            let due = lock(&self.instances).due_probes(Instant::now());
            for i in due {
                let this = Arc::clone(&self);
                tokio::spawn(async move {
                    let addr = lock(&this.instances).addr(i);
                    if let Some(r) = this.send_and_wait(&Request::ping(), addr).await
                        && r.outcome == Outcome::Pong
                    {
                        this.alive(i);
                    }
                });
            }
        }
    }
}
