//! Log output without a writer thread: each thread formats its lines into
//! a buffer of its own and writes them to stderr itself.
//!
//! A thread that handles messages in bursts (the socket loops) marks
//! itself with [`batch`] and calls [`flush`] when it runs out of work, so
//! a burst of log lines costs one write(2) and no cross-thread wake-up;
//! every other thread writes each line at once, like Kamailio's xlog to
//! stderr. A full buffer is written whatever the mode, so memory stays
//! bounded.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Buffered bytes after which a batching thread writes anyway.
const FLUSH_AT: usize = 32 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
    static BATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Mark the current thread as one that calls [`flush`] when idle.
pub fn batch() {
    BATCHING.with(|b| b.set(true));
}

/// Write what the current thread has buffered.
pub fn flush() {
    BUFFER.with(|buffer| {
        let Ok(mut buffer) = buffer.try_borrow_mut() else {
            return;
        };
        if buffer.is_empty() {
            return;
        }
        // Logging must never take the proxy down: a failed write is lost.
        let _ = io::stderr().lock().write_all(&buffer);
        buffer.clear();
    });
}

/// The `MakeWriter` handed to tracing-subscriber.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadBuffered;

/// Appends one formatted event to the thread's buffer.
pub struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => buffer.extend_from_slice(bytes),
            // Re-entrant logging while writing: write straight through.
            Err(_) => {
                let _ = io::stderr().lock().write_all(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    /// The end of one event: write now unless this thread batches.
    fn drop(&mut self) {
        let full = BUFFER.with(|b| b.try_borrow().map(|b| b.len() >= FLUSH_AT).unwrap_or(false));
        if full || !BATCHING.with(Cell::get) {
            flush();
        }
    }
}

impl<'a> MakeWriter<'a> for ThreadBuffered {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter
    }
}
