//! Carries out the core's questions to other servers (a shared location
//! store, rtpengine) and gives the core the answers (see
//! [`crate::proxy::suspend`]).
//!
//! Whoever hands the core a message takes its questions right after
//! ([`take_asks`], a lock-free check when there are none) and queues them
//! here; a task on the main runtime runs each one as a future of its own,
//! bounded by the core's ask timeout, so a slow or dead server delays only
//! the requests that need it and never a receive thread. The answer (or
//! the timeout, as a store error) goes to [`crate::proxy::Core::answer`],
//! and what the core sends then is sent from this task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::Shared;
use crate::proxy::suspend::{Answer, Ask, Query};
use crate::registrar::{AsyncStore, StoreError};

/// How often the registered AoRs and contacts of a shared store are
/// counted for the metrics (a scan of the store: not on every REGISTER).
const COUNT_EVERY: Duration = Duration::from_secs(15);

/// The queue of questions the carrying task reads.
pub(super) struct Asker {
    queue: mpsc::UnboundedSender<Ask>,
}

impl Asker {
    /// An asker and the receiving end its task reads.
    pub(super) fn new() -> (Asker, mpsc::UnboundedReceiver<Ask>) {
        let (queue, asks) = mpsc::unbounded_channel();
        (Asker { queue }, asks)
    }
}

/// Queue the questions the core has after a message (the core bounds how
/// many requests wait, so the queue is bounded too).
pub(super) fn take_asks(shared: &Shared) {
    let Some(asker) = &shared.asker else {
        return;
    };
    while let Some(ask) = shared.core().poll_ask() {
        if asker.queue.send(ask).is_err() {
            // The task ended: the server is stopping.
            return;
        }
    }
}

/// The carrying task: every question as a future of its own, until the
/// server stops; and the store's counts for the metrics.
pub(super) async fn run(
    shared: Arc<Shared>,
    servers: Servers,
    mut asks: mpsc::UnboundedReceiver<Ask>,
    mut stop: watch::Receiver<bool>,
) {
    let mut count = tokio::time::interval(COUNT_EVERY);
    count.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ask = asks.recv() => {
                let Some(ask) = ask else { return };
                tokio::spawn(carry(Arc::clone(&shared), servers.clone(), ask));
            }
            _ = count.tick() => {
                if let Some(store) = &servers.store {
                    tokio::spawn(count_bindings(Arc::clone(&shared), Arc::clone(store)));
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// The servers the core's questions go to (None: the routes use none).
#[derive(Clone)]
pub(super) struct Servers {
    pub store: Option<Arc<dyn AsyncStore>>,
    pub media: Option<Arc<super::rtpengine::Media>>,
}

/// Ask the server, then give the core the answer and send what it sends.
async fn carry(shared: Arc<Shared>, servers: Servers, ask: Ask) {
    let timeout = shared.core().ask_timeout();
    let answer = match &ask.query {
        Query::Bindings { .. } | Query::Save { .. } => match &servers.store {
            Some(store) => ask_store(&shared, store.as_ref(), &ask, timeout).await,
            None => return,
        },
        Query::Media(media) => {
            let result = match &servers.media {
                Some(client) => tokio::time::timeout(timeout, client.ask(media))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!("no answer within {} ms", timeout.as_millis()))
                    }),
                None => Err("no rtpengine configured".to_string()),
            };
            if let Err(why) = &result {
                crate::warn_limited!("rtp_manage: {why}");
            }
            Answer::Media(result)
        }
    };
    if ask.id == 0 {
        // A question nobody waits for (an rtpengine delete).
        return;
    }
    super::guarded(&shared, format_args!("resuming a request"), |core, out| {
        core.answer(Instant::now(), ask.id, answer, out)
    });
}

/// Ask the location store a [`Query::Bindings`] or [`Query::Save`].
async fn ask_store(
    shared: &Shared,
    store: &dyn AsyncStore,
    ask: &Ask,
    timeout: Duration,
) -> Answer {
    let config = shared.core().registrar_config();
    let started = Instant::now();
    let (answer, op) = match &ask.query {
        Query::Save { request } => {
            let result =
                tokio::time::timeout(timeout, store.save(request, ask.now_unix, &config)).await;
            (Answer::Saved(flatten(result, timeout)), "save")
        }
        Query::Bindings { aor } => {
            let result = tokio::time::timeout(timeout, store.lookup(aor, ask.now_unix)).await;
            (Answer::Bindings(flatten(result, timeout)), "lookup")
        }
        Query::Media(_) => return Answer::Media(Err("not a store question".into())),
    };
    crate::metrics::store_latency(op, started.elapsed());
    let failed = match &answer {
        Answer::Bindings(r) => r.as_ref().err(),
        Answer::Saved(r) => r.as_ref().err(),
        Answer::Media(_) => None,
    };
    if let Some(e) = failed {
        crate::warn_limited!(op, "registrar store: {}", e.message);
    }
    answer
}

/// A store's result within the timeout, or the timeout as a store error.
fn flatten<T>(
    result: Result<Result<T, StoreError>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Result<T, StoreError> {
    result.unwrap_or_else(|_| {
        Err(StoreError::new(format!(
            "no answer within {} ms",
            timeout.as_millis()
        )))
    })
}

/// Count the store's AoRs and contacts for the metrics.
async fn count_bindings(shared: Arc<Shared>, store: Arc<dyn AsyncStore>) {
    let timeout = shared.core().ask_timeout() * 5;
    match tokio::time::timeout(timeout, store.counts()).await {
        Ok(Ok((aors, contacts))) => crate::metrics::set_registrations(aors, contacts),
        Ok(Err(e)) => tracing::debug!("counting the registrar store: {}", e.message),
        Err(_) => tracing::debug!("counting the registrar store: timed out"),
    }
}
