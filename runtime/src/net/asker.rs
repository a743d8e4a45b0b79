//! Carries out the core's questions to another server (today: a shared
//! location store) and gives the core the answers (see
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
    store: Arc<dyn AsyncStore>,
    mut asks: mpsc::UnboundedReceiver<Ask>,
    mut stop: watch::Receiver<bool>,
) {
    let mut count = tokio::time::interval(COUNT_EVERY);
    count.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ask = asks.recv() => {
                let Some(ask) = ask else { return };
                tokio::spawn(carry(Arc::clone(&shared), Arc::clone(&store), ask));
            }
            _ = count.tick() => {
                tokio::spawn(count_bindings(Arc::clone(&shared), Arc::clone(&store)));
            }
            _ = stop.changed() => return,
        }
    }
}

/// Ask the store, then give the core the answer and send what it sends.
async fn carry(shared: Arc<Shared>, store: Arc<dyn AsyncStore>, ask: Ask) {
    let timeout = shared.core().ask_timeout();
    let config = shared.core().registrar_config();
    let started = Instant::now();
    let (answer, op) = match &ask.query {
        Query::Bindings { aor } => {
            let result = tokio::time::timeout(timeout, store.lookup(aor, ask.now_unix)).await;
            (Answer::Bindings(flatten(result, timeout)), "lookup")
        }
        Query::Save { request } => {
            let result =
                tokio::time::timeout(timeout, store.save(request, ask.now_unix, &config)).await;
            (Answer::Saved(flatten(result, timeout)), "save")
        }
    };
    crate::metrics::store_latency(op, started.elapsed());
    let failed = match &answer {
        Answer::Bindings(r) => r.as_ref().err(),
        Answer::Saved(r) => r.as_ref().err(),
    };
    if let Some(e) = failed {
        crate::warn_limited!(op, "registrar store: {}", e.message);
    }
    let mut out = Vec::new();
    let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shared
            .core()
            .answer(Instant::now(), ask.id, answer, &mut out)
    }));
    match answered {
        Ok(touched) => {
            if let Some(t) = touched {
                shared.timer_hint(t.lane, t.next_deadline);
            }
            for outgoing in out.drain(..) {
                super::send(&shared, outgoing);
            }
            take_asks(&shared);
        }
        Err(_) => tracing::error!("internal error while resuming a request: dropped"),
    }
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
