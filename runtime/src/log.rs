//! Logging setup: tracing to stderr through [`crate::logbuf`] (no writer
//! thread: lines are buffered per thread and written when the socket loop
//! runs out of work), so a `log` step never waits on the terminal.
//! `RUST_LOG` filters when set, else `--log-level`. Text or JSON lines.
//!
//! JSON lines are flat objects, one per event: `timestamp`, `level`,
//! `target`, `message` and the event's fields (for a `log` step of the
//! routes: `line`, the routes file line, and `call_id`; for the per-message
//! debug lines: `call_id`, `method` or `status`/`code`, `source`, `to`).
//! Route logs have the target `sipforge::routes`, so
//! `RUST_LOG=warn,sipforge::routes=info` keeps them and quiets the rest.
//!
//! Text lines quote the message and escape every value
//! ([`crate::logfmt`]); WARN lines a sender can trigger per datagram are
//! rate-limited per call site ([`crate::log_limit`]).

use tracing_subscriber::EnvFilter;

/// Output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The filter: `RUST_LOG` when set and not empty, else `level`.
pub fn filter(level: &str) -> Result<EnvFilter, String> {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| format!("RUST_LOG `{spec}`: {e}"))
        }
        _ => EnvFilter::try_new(level).map_err(|e| format!("--log-level `{level}`: {e}")),
    }
}

/// Install the global subscriber, writing through [`crate::logbuf`]. Keep
/// the guard alive until exit: dropping it writes what the current thread
/// still holds.
pub fn init(level: &str, format: Format) -> Result<FlushGuard, String> {
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::logbuf::ThreadBuffered)
        .with_ansi(false);
    let installed = match format {
        Format::Text => builder.fmt_fields(crate::logfmt::EscapedFields).try_init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| format!("logging: {e}"))?;
    // Route `log` lines in text format skip the formatter (same line shape).
    crate::logbuf::set_fast_text(format == Format::Text);
    Ok(FlushGuard)
}

/// Writes the current thread's buffered log lines when dropped.
pub struct FlushGuard;

impl Drop for FlushGuard {
    fn drop(&mut self) {
        crate::logbuf::flush();
    }
}
