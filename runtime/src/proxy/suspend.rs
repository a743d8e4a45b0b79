//! Requests waiting for another server's answer, sans-IO (Kamailio's
//! `t_suspend` / `t_continue`).
//!
//! When the routes need something only another server knows (the
//! bindings of an AoR in a shared location store, or storing a REGISTER
//! there), the core does not wait for it: it keeps the request here, emits
//! an [`Ask`] ("ask this, for request N") that the network layer carries
//! out, and takes the [`Answer`] later ([`crate::proxy::Core::answer`]).
//!
//! How a route continues: routes compile to native code that cannot stop
//! in the middle of a step, but their steps only record edits and a
//! decision (see [`crate::ctx`]), so a route run is a pure function of
//! the message and of what it learned. A run that needs an answer records
//! the question and is thrown away; when the answer comes, the route runs
//! again from the start with every answer so far in its [`Memo`], and
//! goes past the question. What a run does besides deciding is kept from
//! happening twice: its log lines before the question are not written
//! again ([`Memo::replay_until`]), and an `authenticate` that accepted the
//! credentials is not checked again (a second check would see its own
//! nonce-count as a replay): its result is in the memo.
//!
//! While a request waits, its retransmissions are absorbed (an INVITE's
//! get the 100 Trying again), a CANCEL of a waiting INVITE ends it with
//! 487 (RFC 3261 §16.10), and the table is bounded: a request that finds
//! it full, or whose answer does not come within the timeout, is handled
//! as if the server had failed.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::registrar::{Binding, Refusal, RegisterRequest, StoreError};
use crate::transaction::TransactionKey;

/// Names one waiting request (and the ask made for it).
pub type AskId = u64;

/// What the core asks another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The live bindings of an address-of-record (`lookup`, `registered`).
    Bindings { aor: String },
    /// Apply a REGISTER to its AoR's bindings atomically (`save`).
    Save { request: Box<RegisterRequest> },
    /// An rtpengine offer, answer or delete (`rtp_manage`).
    Media(Box<MediaAsk>),
}

/// The ng commands `rtp_manage` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaCommand {
    Offer,
    Answer,
    Delete,
}

/// What `rtp_manage` asks rtpengine: one ng command built from the
/// message (see [`crate::rtpengine`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAsk {
    pub command: MediaCommand,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    /// The top Via branch of the message (forked answers are told apart
    /// by their to-tag; rtpengine uses it for the offer's branch).
    pub via_branch: Option<String>,
    /// The SDP to rewrite (offer and answer).
    pub sdp: Option<Vec<u8>>,
    /// The step's flags string as written.
    pub flags: Option<&'static str>,
    /// Where the message came from (rtpengine's `received-from`).
    pub source: std::net::IpAddr,
}

/// A question for the network layer to carry out: answer it with
/// [`crate::proxy::Core::answer`] and the same `id`, always (a failure or
/// a timeout is an answer too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub id: AskId,
    pub query: Query,
    /// The wall-clock second the question is about (binding expiry).
    pub now_unix: u64,
}

/// What another server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// To [`Query::Bindings`]: the live bindings (none: not registered).
    Bindings(Result<Vec<Binding>, StoreError>),
    /// To [`Query::Save`]: the bindings now registered, or the refusal.
    Saved(Result<Result<Vec<Binding>, Refusal>, StoreError>),
    /// To [`Query::Media`]: the SDP rtpengine returned (empty for a
    /// delete), or why there is none.
    Media(Result<Vec<u8>, String>),
}

/// What one request's route runs learned from other servers, carried from
/// run to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memo {
    /// Answers to [`Query::Bindings`], by canonical AoR.
    pub(crate) bindings: Vec<(String, Result<Vec<Binding>, StoreError>)>,
    /// What each `authenticate` that accepted returned, in the order of
    /// the route: the user and the index of the credentials header.
    pub(crate) accepted: Vec<(String, usize)>,
    /// Answers to [`Query::Media`], in the order the route's
    /// `rtp_manage` steps asked them.
    pub(crate) media: Vec<Result<Vec<u8>, String>>,
    /// The run that asked had made this many questions (location queries
    /// and `rtp_manage` steps), the last one being the question: log
    /// lines before it were written.
    pub(crate) replay_until: usize,
}

impl Memo {
    /// The answer for `aor`, if one came.
    pub(crate) fn bindings_of(&self, aor: &str) -> Option<&Result<Vec<Binding>, StoreError>> {
        self.bindings.iter().find(|(a, _)| a == aor).map(|(_, b)| b)
    }
}

/// What a waiting request does when its answer comes.
#[derive(Debug)]
pub enum Resume {
    /// Run the request route again with the answer (the bindings of
    /// `aor`) in the memo.
    Route { aor: String },
    /// Answer the REGISTER with the stored bindings.
    Save { request: Box<RegisterRequest> },
    /// Run the request route again with rtpengine's answer in the memo.
    MediaRoute,
    /// A response whose `reply` route asked rtpengine: handle it again
    /// with the answer in the memo (`held`: the transaction branch it
    /// waits in; None: a response relayed statelessly).
    Reply { held: Option<HeldReply> },
    /// A fork of an INVITE waits for its own offer (rtpengine's answer
    /// is its SDP): send it (`held`: its transaction and branch, in table
    /// shard `shard`).
    Fork { held: HeldReply, shard: usize },
}

/// Where a stateful response (or an unsent fork) waits: its transaction
/// and branch.
#[derive(Debug, Clone, Copy)]
pub struct HeldReply {
    pub id: crate::transaction::TransactionId,
    pub index: usize,
}

/// A request waiting for its answer.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// The request as received (after CRLF normalisation).
    pub datagram: Vec<u8>,
    pub source: SocketAddr,
    pub socket: usize,
    pub memo: Memo,
    pub resume: Resume,
    /// Route runs so far (bounded: a route may ask a few questions).
    pub rounds: u8,
    deadline: Instant,
    key: Option<TransactionKey>,
}

/// A route may ask this many questions for one request; the next one is
/// answered as a store failure.
pub(crate) const MAX_ROUNDS: u8 = 4;

#[derive(Default)]
struct Table {
    waiting: HashMap<AskId, Waiting>,
    by_key: HashMap<TransactionKey, AskId>,
}

/// The waiting requests of a core and the asks not yet taken.
pub struct Suspended {
    table: Mutex<Table>,
    asks: Mutex<VecDeque<Ask>>,
    /// Waiting requests (read without the lock on every request).
    count: AtomicUsize,
    /// Asks not yet taken (read without the lock after every message).
    pending_asks: AtomicUsize,
    next_id: AtomicU64,
    max: usize,
    timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Suspended {
    /// At most `max` waiting requests, each for at most `timeout`.
    pub fn new(max: usize, timeout: Duration) -> Suspended {
        Suspended {
            table: Mutex::default(),
            asks: Mutex::default(),
            count: AtomicUsize::new(0),
            pending_asks: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            max: max.max(1),
            timeout,
        }
    }

    /// How long a request waits for its answer before it is handled as a
    /// failure of the server.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep the request until the answer to `query` comes, and queue the
    /// ask. Requests whose deadline passed are dropped first when the
    /// table is full (the network layer always answers in time unless it
    /// is stuck); still full, the memo comes back: as many requests wait
    /// as the bound allows.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn suspend(
        &self,
        now: Instant,
        now_unix: u64,
        key: Option<TransactionKey>,
        datagram: Vec<u8>,
        source: SocketAddr,
        socket: usize,
        memo: Memo,
        resume: Resume,
        rounds: u8,
        query: Query,
    ) -> Result<AskId, Memo> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut table = lock(&self.table);
            if table.waiting.len() >= self.max {
                let stale: Vec<AskId> = table
                    .waiting
                    .iter()
                    .filter(|(_, w)| w.deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in stale {
                    remove(&mut table, id);
                }
                if table.waiting.len() >= self.max {
                    return Err(memo);
                }
            }
            if let Some(k) = &key {
                table.by_key.insert(k.clone(), id);
            }
            table.waiting.insert(
                id,
                Waiting {
                    datagram,
                    source,
                    socket,
                    memo,
                    resume,
                    rounds,
                    deadline: now + 2 * self.timeout,
                    key,
                },
            );
            self.count.store(table.waiting.len(), Ordering::Relaxed);
        }
        lock(&self.asks).push_back(Ask {
            id,
            query,
            now_unix,
        });
        self.pending_asks.fetch_add(1, Ordering::Release);
        Ok(id)
    }

    /// Whether a request with this server key is waiting.
    pub(crate) fn is_waiting(&self, key: &TransactionKey) -> bool {
        lock(&self.table).by_key.contains_key(key)
    }

    /// Take the waiting request with this server key (a CANCEL ends it).
    pub(crate) fn take_by_key(&self, key: &TransactionKey) -> Option<Waiting> {
        let mut table = lock(&self.table);
        let id = *table.by_key.get(key)?;
        let w = remove(&mut table, id);
        self.count.store(table.waiting.len(), Ordering::Relaxed);
        w
    }

    /// Take the request an answer is for (None: unknown or already ended).
    pub(crate) fn take(&self, id: AskId) -> Option<Waiting> {
        let mut table = lock(&self.table);
        let w = remove(&mut table, id);
        self.count.store(table.waiting.len(), Ordering::Relaxed);
        w
    }

    /// Queue a question nobody waits for (an rtpengine delete): its
    /// answer, under id 0, is ignored.
    pub(crate) fn tell(&self, query: Query, now_unix: u64) {
        lock(&self.asks).push_back(Ask {
            id: 0,
            query,
            now_unix,
        });
        self.pending_asks.fetch_add(1, Ordering::Release);
    }

    /// The next question for the network layer, oldest first.
    pub fn poll_ask(&self) -> Option<Ask> {
        if self.pending_asks.load(Ordering::Acquire) == 0 {
            return None;
        }
        let ask = lock(&self.asks).pop_front()?;
        self.pending_asks.fetch_sub(1, Ordering::Release);
        Some(ask)
    }
}

fn remove(table: &mut Table, id: AskId) -> Option<Waiting> {
    let w = table.waiting.remove(&id)?;
    if let Some(k) = &w.key
        && table.by_key.get(k) == Some(&id)
    {
        table.by_key.remove(k);
    }
    Some(w)
}
