//! Log output without a writer thread in the way: each thread formats
//! its lines into a buffer of its own and hands them over to be written.
//!
//! A thread that handles messages in bursts (the UDP socket loops, the
//! stream runtime's workers) marks itself with [`batch`]. The UDP loops
//! call [`flush`] every few milliseconds and when idle; a stream worker
//! calls [`flush_when_due`] each time it parks, which writes only when the
//! oldest line handed over has waited [`FLUSH_EVERY`] and otherwise leaves
//! the lines to the `sf-log` thread, which writes them when they are due.
//! So a burst of log lines costs one write(2), a worker that parks after
//! every message does not write each time, and no line waits much longer
//! than [`FLUSH_EVERY`]. Every other thread writes each line at once, like
//! Kamailio's xlog to stderr. A full buffer is written whatever the mode,
//! so memory stays bounded. Lines are written in the order they were
//! handed over, so one thread's lines stay in order.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Buffered bytes after which a batching thread writes anyway.
const FLUSH_AT: usize = 32 * 1024;
/// The longest a line handed over by [`flush_when_due`] waits.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
    static BATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Lines handed over and not yet written, and since when the oldest waits.
struct Pending {
    bytes: Vec<u8>,
    since: Option<Instant>,
}

impl Pending {
    fn write(&mut self) {
        if !self.bytes.is_empty() {
            // Logging must never take the proxy down: a failed write is lost.
            let _ = io::stderr().lock().write_all(&self.bytes);
            self.bytes.clear();
        }
        self.since = None;
    }
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    bytes: Vec::new(),
    since: None,
});
/// Whether the `sf-log` thread has lines to wait for.
static ARMED: AtomicBool = AtomicBool::new(false);
/// The `sf-log` thread (None: it could not be started).
static WRITER: OnceLock<Option<std::thread::Thread>> = OnceLock::new();

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    PENDING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Mark the current thread as one that calls [`flush`] or
/// [`flush_when_due`] when idle.
pub fn batch() {
    BATCHING.with(|b| b.set(true));
}

/// Hand the current thread's lines over, under the lock of the pending
/// ones (None when the thread's buffer is busy: re-entrant logging).
fn hand_over() -> Option<std::sync::MutexGuard<'static, Pending>> {
    BUFFER.with(|buffer| {
        let mut buffer = buffer.try_borrow_mut().ok()?;
        let mut pending = pending();
        if !buffer.is_empty() {
            if pending.bytes.is_empty() {
                std::mem::swap(&mut pending.bytes, &mut *buffer);
            } else {
                pending.bytes.extend_from_slice(&buffer);
                buffer.clear();
            }
        }
        Some(pending)
    })
}

/// Write what the current thread has buffered (and every line handed
/// over before it).
pub fn flush() {
    if let Some(mut pending) = hand_over() {
        pending.write();
    }
}

/// For a batching thread going idle: hand its lines over, and write them
/// now only when the oldest line handed over waited [`FLUSH_EVERY`];
/// otherwise the `sf-log` thread writes them when they are due.
pub fn flush_when_due() {
    let Some(mut pending) = hand_over() else {
        return;
    };
    if pending.bytes.is_empty() {
        return;
    }
    let now = Instant::now();
    let since = *pending.since.get_or_insert(now);
    if now.duration_since(since) >= FLUSH_EVERY {
        pending.write();
        return;
    }
    drop(pending);
    if !ARMED.swap(true, Ordering::AcqRel) {
        match WRITER.get_or_init(start_writer) {
            Some(writer) => writer.unpark(),
            None => flush(),
        }
    }
}

fn start_writer() -> Option<std::thread::Thread> {
    std::thread::Builder::new()
        .name("sf-log".into())
        .spawn(write_when_due)
        .map(|handle| handle.thread().clone())
        .ok()
}

/// The `sf-log` thread: once armed, sleeps until the pending lines are
/// due and writes them.
fn write_when_due() {
    loop {
        std::thread::park();
        if !ARMED.load(Ordering::Acquire) {
            continue;
        }
        loop {
            let wait = {
                let mut pending = pending();
                let waited = pending.since.map_or(FLUSH_EVERY, |s| s.elapsed());
                if waited < FLUSH_EVERY {
                    Some(FLUSH_EVERY - waited)
                } else {
                    pending.write();
                    None
                }
            };
            match wait {
                Some(wait) => std::thread::sleep(wait),
                None => {
                    ARMED.store(false, Ordering::Release);
                    // Lines handed over after the write, by a thread that
                    // saw us armed, are ours too.
                    if pending().bytes.is_empty() || ARMED.swap(true, Ordering::AcqRel) {
                        break;
                    }
                }
            }
        }
    }
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

/// Whether `log` steps may skip tracing's formatter and write their text
/// line straight into the thread's buffer (set by `log::init` for the text
/// format; tests and other subscribers keep getting tracing events).
static FAST_TEXT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turn the direct text path for route `log` lines on or off.
pub fn set_fast_text(on: bool) {
    FAST_TEXT.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether route `log` lines go through [`write_route_line`].
pub fn fast_text() -> bool {
    FAST_TEXT.load(std::sync::atomic::Ordering::Relaxed)
}

thread_local! {
    /// The second the cached date prefix is for, and the prefix itself.
    static CLOCK: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Write one route `log` line in the same shape as tracing's text format
/// (`2026-11-28T01:05:42.495198Z  INFO sipforge::routes: "TEXT" line=N call_id="..."`),
/// straight into the thread's buffer: `text` appends the line's text (CR
/// and LF in it are turned into spaces afterwards, then it is escaped as
/// [`crate::logfmt`] says). About a tenth of the
/// instructions of going through the formatter, and no allocation.
pub fn write_route_line(level: &str, line: u32, call_id: &str, text: impl FnOnce(&mut Vec<u8>)) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, micros) = (now.as_secs(), now.subsec_micros());
    // Some(whether the buffer is now due to be written), None when the
    // buffer was busy (re-entrant logging) and the line was lost.
    let written = BUFFER.with(|buffer| {
        let Ok(mut out) = buffer.try_borrow_mut() else {
            return None;
        };
        CLOCK.with(|clock| {
            let mut clock = clock.borrow_mut();
            if clock.0 != secs {
                clock.1 = date_time(secs);
                clock.0 = secs;
            }
            out.extend_from_slice(clock.1.as_bytes());
        });
        out.push(b'.');
        crate::digits::push_padded(&mut out, micros, 6);
        out.extend_from_slice(b"Z ");
        for _ in level.len()..5 {
            out.push(b' ');
        }
        out.extend_from_slice(level.as_bytes());
        out.extend_from_slice(b" sipforge::routes: \"");
        let text_start = out.len();
        text(&mut out);
        // Log lines are data, not headers: CR and LF become spaces (as in
        // the JSON format), then the text is escaped like tracing's lines
        // (crate::logfmt), so it can neither forge fields nor reach a
        // terminal as a control sequence.
        if memchr::memchr2(b'\r', b'\n', &out[text_start..]).is_some() {
            for b in &mut out[text_start..] {
                if *b == b'\r' || *b == b'\n' {
                    *b = b' ';
                }
            }
        }
        crate::logfmt::escape_tail(&mut out, text_start);
        out.extend_from_slice(b"\" line=");
        crate::digits::push_padded(&mut out, line, 1);
        out.extend_from_slice(b" call_id=\"");
        crate::logfmt::push_escaped(&mut out, call_id.as_bytes());
        out.extend_from_slice(b"\"\n");
        Some(out.len() >= FLUSH_AT)
    });
    if written.is_some_and(|full| full || !BATCHING.with(Cell::get)) {
        flush();
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the Unix epoch.
fn date_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_lines_are_one_line_with_the_call_id_quoted() {
        batch();
        write_route_line("INFO", 12, r#"a"b\c"#, |out| {
            out.extend_from_slice(b"evil\r\nX-Injected: 1")
        });
        let line =
            BUFFER.with(|b| String::from_utf8(std::mem::take(&mut *b.borrow_mut())).unwrap());
        let (stamp, rest) = line.split_once('Z').unwrap();
        assert_eq!(stamp.len(), "2026-11-28T01:05:42.495198".len(), "{line}");
        assert_eq!(
            rest,
            "  INFO sipforge::routes: \"evil  X-Injected: 1\" line=12 call_id=\"a\\\"b\\\\c\"\n"
        );
    }

    #[test]
    fn route_lines_cannot_forge_fields_or_reach_the_terminal() {
        batch();
        write_route_line("WARN", 3, "c\u{1b}1", |out| {
            out.extend_from_slice(
                "UA x line=999 call_id=\"forged\" \x1b[2J\u{2028}\u{85}\\".as_bytes(),
            );
            out.push(0xff);
        });
        let line =
            BUFFER.with(|b| String::from_utf8(std::mem::take(&mut *b.borrow_mut())).unwrap());
        let (_, rest) = line.split_once('Z').unwrap();
        assert_eq!(
            rest,
            "  WARN sipforge::routes: \"UA x line=999 call_id=\\\"forged\\\" \\u{1b}[2J\\u{2028}\\u{85}\\\\\\xff\" \
             line=3 call_id=\"c\\u{1b}1\"\n"
        );
    }

    #[test]
    fn lines_handed_over_when_parking_are_written_when_due() {
        let marker = b"logbuf test: a line handed over by a parking worker\n";
        BUFFER.with(|b| b.borrow_mut().extend_from_slice(marker));
        flush_when_due();
        let contains = |bytes: &[u8]| bytes.windows(marker.len()).any(|w| w == marker);
        assert!(BUFFER.with(|b| b.borrow().is_empty()), "handed over");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while contains(&pending().bytes) {
            assert!(
                std::time::Instant::now() < deadline,
                "the sf-log thread did not write the line"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(date_time(0), "1970-01-01T00:00:00");
        assert_eq!(date_time(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(date_time(1_795_827_759), "2026-11-28T01:02:39");
        assert_eq!(date_time(4_107_542_399), "2100-02-28T23:59:59");
    }
}
