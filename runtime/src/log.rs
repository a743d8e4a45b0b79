//! Logging setup: tracing to stderr through a background writer, so a
//! `log` step never waits on the terminal. `RUST_LOG` filters when set,
//! else `--log-level`. Text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Install the global subscriber, writing through [`crate::logbuf`]: no
/// writer thread, lines buffered per thread and written when the socket
/// loop runs out of work. Keep the guard alive until exit: dropping it
/// writes what the current thread still holds.
pub fn init(level: &str, format: Format) -> Result<FlushGuard, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| format!("RUST_LOG: {e}"))?
        }
        _ => EnvFilter::try_new(level).map_err(|e| format!("--log-level {level}: {e}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::logbuf::ThreadBuffered)
        .with_ansi(false);
    let installed = match format {
        Format::Text => builder.try_init(),
        Format::Json => builder.json().try_init(),
    };
    installed.map_err(|e| format!("logging: {e}"))?;
    Ok(FlushGuard)
}

/// Writes the current thread's buffered log lines when dropped.
pub struct FlushGuard;

impl Drop for FlushGuard {
    fn drop(&mut self) {
        crate::logbuf::flush();
    }
}
