//! The queue in front of one connection's writer task: bounded in
//! messages ([`MESSAGES`]) and in bytes ([`BYTES`]).
//!
//! The byte bound is the one that matters against a peer that stops
//! reading: messages for it pile up until the write timeout closes the
//! connection, and at up to 64 KiB each, a count alone would let a few
//! such peers (or an attacker calling a phone that does not read) hold
//! gigabytes. A message that would go over either bound is refused
//! (`TrySendError::Full`), as the network drops what a full link cannot
//! carry; the sender counts it as unsent. Kamailio bounds the same thing
//! with `tcp_conn_wq_max` (32 KiB by default).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

use crate::proxy::Payload;

/// Most messages waiting for one connection's writer.
pub const MESSAGES: usize = 1024;
/// Most bytes waiting for one connection's writer: four of the largest
/// messages, hundreds of ordinary ones.
pub const BYTES: usize = 256 * 1024;

/// The sending side (cloned by every sender to the connection).
#[derive(Clone, Debug)]
pub struct Queue {
    tx: mpsc::Sender<Payload>,
    bytes: Arc<AtomicUsize>,
}

/// The writer's side.
#[derive(Debug)]
pub struct Queued {
    rx: mpsc::Receiver<Payload>,
    bytes: Arc<AtomicUsize>,
}

/// A new, empty queue.
pub fn channel() -> (Queue, Queued) {
    let (tx, rx) = mpsc::channel(MESSAGES);
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        Queue {
            tx,
            bytes: Arc::clone(&bytes),
        },
        Queued { rx, bytes },
    )
}

impl Queue {
    /// Queue `payload`, or give it back: `Full` over either bound,
    /// `Closed` when the writer is gone.
    pub fn try_send(&self, payload: Payload) -> Result<(), TrySendError<Payload>> {
        let n = payload.as_ref().len();
        let reserved = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + n <= BYTES).then_some(held + n)
            });
        if reserved.is_err() {
            return Err(TrySendError::Full(payload));
        }
        self.tx.try_send(payload).inspect_err(|_| {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
        })
    }

    /// Messages waiting now.
    pub fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `other` sends to the same writer.
    pub fn same_channel(&self, other: &Queue) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

impl Queued {
    /// The next message; None once every sender is gone and nothing waits.
    pub async fn recv(&mut self) -> Option<Payload> {
        let payload = self.rx.recv().await?;
        self.bytes
            .fetch_sub(payload.as_ref().len(), Ordering::AcqRel);
        Some(payload)
    }

    /// The next message if one waits.
    pub fn try_recv(&mut self) -> Result<Payload, TryRecvError> {
        let payload = self.rx.try_recv()?;
        self.bytes
            .fetch_sub(payload.as_ref().len(), Ordering::AcqRel);
        Ok(payload)
    }

    /// Refuse new messages (those waiting can still be taken).
    pub fn close(&mut self) {
        self.rx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(n: usize) -> Payload {
        Payload::Owned(vec![b'x'; n])
    }

    #[test]
    fn bounded_in_bytes_and_in_messages() {
        let (queue, mut queued) = channel();
        // Four of the largest messages fill the bytes.
        for _ in 0..4 {
            queue.try_send(sized(64 * 1024)).unwrap();
        }
        assert!(matches!(
            queue.try_send(sized(1)),
            Err(TrySendError::Full(_))
        ));
        assert_eq!(queue.len(), 4);
        // Taking one makes room for it again, not more.
        assert_eq!(queued.try_recv().unwrap().as_ref().len(), 64 * 1024);
        queue.try_send(sized(64 * 1024)).unwrap();
        assert!(matches!(
            queue.try_send(sized(1)),
            Err(TrySendError::Full(_))
        ));
        while queued.try_recv().is_ok() {}
        assert!(queue.is_empty());
        // Small ones: the message bound.
        for _ in 0..MESSAGES {
            queue.try_send(sized(10)).unwrap();
        }
        let Err(TrySendError::Full(back)) = queue.try_send(sized(10)) else {
            panic!("over the message bound");
        };
        assert_eq!(back.as_ref().len(), 10, "the message is given back");
        // The refused one took no bytes: after draining, the whole budget
        // is there.
        while queued.try_recv().is_ok() {}
        for _ in 0..4 {
            queue.try_send(sized(64 * 1024)).unwrap();
        }
    }

    #[test]
    fn a_closed_writer_gives_the_message_back_and_keeps_no_bytes() {
        let (queue, mut queued) = channel();
        queue.try_send(sized(100)).unwrap();
        queued.close();
        assert!(matches!(
            queue.try_send(sized(100)),
            Err(TrySendError::Closed(_))
        ));
        assert_eq!(queued.try_recv().unwrap().as_ref().len(), 100);
        drop(queued);
        assert!(matches!(
            queue.try_send(sized(1)),
            Err(TrySendError::Closed(_))
        ));
    }
}
