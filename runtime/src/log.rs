//! Logging setup: tracing to stderr through a background writer, so a
//! `log` step never waits on the terminal. `RUST_LOG` filters when set,
//! else `--log-level`. Text or JSON lines.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Install the global subscriber; keep the guard alive until exit so the
/// last lines are flushed.
pub fn init(level: &str, format: Format) -> Result<WorkerGuard, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| format!("RUST_LOG: {e}"))?
        }
        _ => EnvFilter::try_new(level).map_err(|e| format!("--log-level {level}: {e}"))?,
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    let installed = match format {
        Format::Text => builder.try_init(),
        Format::Json => builder.json().try_init(),
    };
    installed.map_err(|e| format!("logging: {e}"))?;
    Ok(guard)
}
