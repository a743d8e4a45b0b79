//! The `sipforge` command line: flags, `--version`, `--print-routes`,
//! `--check`, the `--metrics` endpoint, and running the proxy until
//! SIGTERM/SIGINT or until a new instance takes its ports over
//! (`--takeover`), then draining (bounded by `--shutdown-timeout`).
//!
//! Exit codes: 0 success (including a drained shutdown); 1 `--check`
//! found a bad setting, or the proxy could not start (a socket could not be
//! bound); 2 a bad flag or setting. Errors are one line on stderr.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;

use crate::api::Routes;
use crate::log;
use crate::net::{self, Options};
use crate::proxy::DrainMode;
use crate::transport::ListenAddr;

mod auth;

/// Longest `--shutdown-timeout` accepted (an hour).
const MAX_SHUTDOWN_TIMEOUT: u64 = 3600;
/// How often a draining instance looks at its open transactions.
const DRAIN_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Parser)]
#[command(
    name = "sipforge",
    about = "A SIP proxy whose routes were compiled from routes.yaml",
    disable_version_flag = true
)]
struct Args {
    /// Listen on this socket, `udp:IP:PORT` or `tcp:IP:PORT` (repeatable; replaces the routes file's `listen`)
    #[arg(long = "listen", value_name = "udp|tcp:IP:PORT")]
    listen: Vec<String>,
    /// Host[:port] written into Via and Record-Route (replaces `advertise`)
    #[arg(long, value_name = "HOST[:PORT]")]
    advertise: Option<String>,
    /// Log filter when RUST_LOG is not set (error, warn, info, debug, trace or a tracing filter)
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,
    /// Log line format
    #[arg(long, value_enum, default_value = "text")]
    log_format: log::Format,
    /// Print the version, the git commit and the SHA-256 of the routes built in
    #[arg(short = 'V', long)]
    version: bool,
    /// Print the routes file built into this binary
    #[arg(long)]
    print_routes: bool,
    /// Receive threads per socket (replaces `workers`; default: one per core)
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// A file holding the secret (16 bytes or more, e.g. `head -c 32 /dev/urandom | base64`) that keys the checks in our Via branches; give every instance of a pool the same one so each verifies the others' branches (default: random per process)
    #[arg(long, value_name = "PATH")]
    secret_file: Option<std::path::PathBuf>,
    /// The credentials file `authenticate` checks against (lines `user:realm:HA1`; replaces `auth.credentials`; reloaded on SIGHUP)
    #[arg(long, value_name = "PATH")]
    credentials: Option<std::path::PathBuf>,
    /// An rtpengine control socket `udp:IP:PORT` (repeatable; replaces the routes file's `rtpengine:` list when it has one)
    #[arg(long = "rtpengine", value_name = "udp:IP:PORT")]
    rtpengine: Vec<String>,
    /// The shared location store's URL (`redis://HOST:PORT/DB`; replaces `registrar.store` when the routes file names a shared store)
    #[arg(long, value_name = "URL")]
    registrar_store: Option<String>,
    /// Most transactions (relayed requests) kept at once; over it new ones get 503
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    max_transactions: usize,
    /// Most TCP, TLS and WebSocket connections open at once (accepted and opened)
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_connections: usize,
    /// Most connections with one remote host, accepted or opened (an IPv4 address or an IPv6 /64)
    #[arg(long, default_value_t = 512, value_name = "N")]
    max_connections_per_source: usize,
    /// Serve Prometheus metrics on http://ADDR/metrics (also /healthz and /ready); off by default
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<String>,
    /// After SIGTERM, wait at most this long for open transactions before exiting
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    shutdown_timeout: u64,
    /// While draining, what happens to requests the routes `relay` that open a new transaction
    #[arg(long, value_enum, default_value = "stateless")]
    drain_mode: DrainMode,
    /// Share the listen ports with the sipforge already serving them and have it drain and exit (a rollout); without it, a port another process holds is an "address in use" error
    #[arg(long)]
    takeover: bool,
    /// Validate the settings (flags, addresses, log filter) without binding anything: exit 0 valid, 1 not
    #[arg(long)]
    check: bool,
}

/// What the binary knows about its own build.
#[derive(Clone, Copy, Debug)]
pub struct Build {
    /// The crate version.
    pub version: &'static str,
    /// The git commit the binary was built from, when the build knew it.
    pub commit: Option<&'static str>,
}

impl Build {
    /// This crate's version and the given commit (the binary passes
    /// `option_env!("SIPFORGE_GIT_COMMIT")`, set by the root build script).
    pub fn new(commit: Option<&'static str>) -> Build {
        Build {
            version: env!("CARGO_PKG_VERSION"),
            commit: commit.filter(|c| !c.is_empty()),
        }
    }
}

/// The settings the proxy runs with, from the flags and the routes file.
#[derive(Debug)]
struct Settings {
    options: Options,
    metrics: Option<SocketAddr>,
    shutdown_timeout: Duration,
    drain_mode: DrainMode,
    /// The credentials `authenticate` checks against, and their file.
    auth: Option<auth::Loaded>,
}

/// Run the `sipforge` binary with the compiled routes (commit unknown).
pub fn main(routes: &'static dyn Routes) -> ExitCode {
    main_with(routes, Build::new(None))
}

/// Run the `sipforge` binary with the compiled routes and build facts.
pub fn main_with(routes: &'static dyn Routes, build: Build) -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "sipforge: {} (see --help)",
                one_line(&e.render().to_string())
            );
            return ExitCode::from(2);
        }
    };
    let source = routes.settings();
    if args.version {
        // Written with errors ignored: `sipforge --version | grep -q ...`
        // closes the pipe early, which must not turn into a panic.
        use std::io::Write;
        let workers = match args
            .workers
            .or((source.workers > 0).then_some(source.workers as usize))
        {
            Some(n) => format!("workers {n} per socket"),
            None => format!(
                "workers {} per socket (one per core this process may use)",
                net::default_workers()
            ),
        };
        let _ = write!(
            std::io::stdout().lock(),
            "sipforge {}\ncommit {}\nroutes {} sha256:{}\n{workers}\n",
            build.version,
            build.commit.unwrap_or("unknown"),
            source.source_path,
            source.source_sha256
        );
        return ExitCode::SUCCESS;
    }
    if args.print_routes {
        use std::io::Write;
        let _ = std::io::stdout()
            .lock()
            .write_all(source.source_text.as_bytes());
        return ExitCode::SUCCESS;
    }
    let settings = match settings(&args, routes) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("sipforge: {e}");
            return ExitCode::from(if args.check { 1 } else { 2 });
        }
    };
    if args.check {
        let users = match &settings.auth {
            Some(a) => format!(
                ", {} credential(s) from {}",
                a.authenticator.credentials_count(),
                a.credentials.display()
            ),
            None => String::new(),
        };
        println!(
            "sipforge: settings ok ({} listen socket(s), metrics {}{users}, routes sha256:{})",
            settings.options.listen.len(),
            settings
                .metrics
                .map_or_else(|| "off".to_string(), |a| a.to_string()),
            source.source_sha256
        );
        return ExitCode::SUCCESS;
    }
    let _guard = match log::init(&args.log_level, args.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("sipforge: {e}");
            return ExitCode::from(2);
        }
    };
    crate::metrics::set_build_info(
        build.version,
        build.commit,
        source.source_path,
        source.source_sha256,
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sipforge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(routes, build, settings))
}

/// A clap error as one line: its first line, plus the possible values when given.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match lines.find(|l| l.starts_with("[possible values")) {
        Some(values) => format!("{first} {values}"),
        None => first.to_string(),
    }
}

async fn run(routes: &'static dyn Routes, build: Build, settings: Settings) -> ExitCode {
    // Signal handlers first: a SIGTERM right after the start must drain, not kill.
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sipforge: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics_listener = match settings.metrics {
        Some(addr) => match crate::metrics::http::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("sipforge: cannot listen for metrics on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let workers = settings.options.workers;
    let reload = match settings.auth.map(auth::reload_on_sighup).transpose() {
        Ok(task) => task,
        Err(e) => {
            eprintln!("sipforge: cannot handle SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match net::start(routes, settings.options).await {
        Ok(server) => server,
        Err(e) => {
            // One line, like the other start errors (no log line as well).
            eprintln!("sipforge: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let draining = Arc::new(AtomicBool::new(false));
    let metrics_task = metrics_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(metrics = %addr, "metrics on http://{addr}/metrics");
        }
        tokio::spawn(crate::metrics::http::serve(listener, Arc::clone(&draining)))
    });
    let source = routes.settings();
    tracing::info!(
        version = build.version,
        commit = build.commit.unwrap_or("unknown"),
        routes = source.source_path,
        sha256 = source.source_sha256,
        workers,
        "sipforge {} started",
        build.version
    );

    let signal = tokio::select! {
        signal = signals.next() => signal,
        () = server.taken_over() => "taken over",
    };
    let deadline = tokio::time::Instant::now() + settings.shutdown_timeout;
    tracing::info!(
        signal,
        drain_mode = ?settings.drain_mode,
        timeout_s = settings.shutdown_timeout.as_secs(),
        "{signal}: draining"
    );
    draining.store(true, Ordering::Relaxed);
    crate::metrics::set_draining(true);
    server.start_draining(settings.drain_mode);
    loop {
        let pending = server.pending_transactions();
        if pending == 0 {
            tracing::info!("no transaction pending");
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                pending,
                "shutdown deadline reached: {pending} transaction(s) still pending are cut"
            );
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_POLL) => {}
            again = signals.next() => {
                tracing::warn!(signal = again, pending, "second signal: stopping now");
                break;
            }
        }
    }
    server.shutdown().await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    if let Some(task) = reload {
        task.abort();
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Run-time settings from the flags and the routes file.
fn settings(args: &Args, routes: &'static dyn Routes) -> Result<Settings, String> {
    let source = routes.settings();
    let listen_text: Vec<&str> = if args.listen.is_empty() {
        source.listen.to_vec()
    } else {
        args.listen.iter().map(String::as_str).collect()
    };
    if listen_text.is_empty() {
        return Err(
            "nothing to listen on: give --listen udp:IP:PORT or `listen:` in the routes file"
                .into(),
        );
    }
    let listen = listen_text
        .iter()
        .map(|l| parse_listen(l))
        .collect::<Result<Vec<_>, _>>()?;
    let advertise = args
        .advertise
        .clone()
        .or_else(|| source.advertise.map(str::to_string));
    if let Some(adv) = &advertise
        && crate::proxy::identity::split_host_port(adv).is_none()
    {
        return Err(format!("advertise `{adv}` is not HOST[:PORT]"));
    }
    for l in &listen {
        use crate::transport::Transport;
        if !matches!(
            l.transport,
            Transport::Udp | Transport::Tcp | Transport::Tls | Transport::Ws
        ) {
            return Err(format!(
                "listen {l}: {} is not supported yet (udp, tcp, tls and ws are)",
                l.transport
            ));
        }
        if l.transport == Transport::Tls && source.tls.is_none() {
            return Err(format!(
                "listen {l}: a tls listener needs the routes file's `tls:` block (certificate and key)"
            ));
        }
        crate::proxy::Listener::with_transport(l.addr, l.transport, advertise.as_deref())?;
    }
    let workers = match args.workers.or(match source.workers {
        0 => None,
        n => Some(n as usize),
    }) {
        Some(0) => return Err("--workers must be at least 1".into()),
        Some(n) if n > 1024 => return Err(format!("--workers {n}: at most 1024")),
        Some(n) => n,
        None => net::default_workers(),
    };
    let secret = match &args.secret_file {
        Some(path) => {
            let text = std::fs::read(path)
                .map_err(|e| format!("--secret-file {}: {e}", path.display()))?;
            let secret = text.trim_ascii().to_vec();
            if secret.len() < 16 {
                return Err(format!(
                    "--secret-file {}: the secret must be at least 16 bytes",
                    path.display()
                ));
            }
            Some(secret)
        }
        None => None,
    };
    if args.max_transactions == 0 {
        return Err("--max-transactions must be at least 1".into());
    }
    if args.max_connections == 0 || args.max_connections_per_source == 0 {
        return Err("--max-connections and --max-connections-per-source must be at least 1".into());
    }
    if args.shutdown_timeout > MAX_SHUTDOWN_TIMEOUT {
        return Err(format!(
            "--shutdown-timeout {}: at most {MAX_SHUTDOWN_TIMEOUT} seconds",
            args.shutdown_timeout
        ));
    }
    let metrics = args.metrics.as_deref().map(parse_metrics).transpose()?;
    log::filter(&args.log_level)?;
    let auth = auth::load(routes, args.credentials.as_deref())?;
    if let Some(r) = &source.registrar {
        crate::proxy::location::Registrar::from_settings(r)?;
    }
    // The certificates are read (and checked) here, so --check reports a
    // bad file; the server reads them again when it starts.
    let tls = source.tls.as_ref().map(net::tls::TlsFiles::from_settings);
    if let Some(files) = &tls {
        net::tls::load(files)?;
    }
    Ok(Settings {
        options: Options {
            listen,
            advertise,
            core: crate::proxy::CoreConfig {
                max_transactions: args.max_transactions,
                ..Default::default()
            },
            workers,
            secret,
            authenticator: auth.as_ref().map(|a| Arc::clone(&a.authenticator)),
            takeover: args.takeover,
            streams: crate::net::connections::Limits {
                max_connections: args.max_connections,
                max_per_source: args.max_connections_per_source,
                ..Default::default()
            },
            dns_servers: None,
            registrar_store: args.registrar_store.clone(),
            rtpengine: rtpengine_flags(&args.rtpengine)?,
            tls,
        },
        metrics,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        drain_mode: args.drain_mode,
        auth,
    })
}

/// `--rtpengine udp:IP:PORT` flags as `IP:PORT` (None: none given).
fn rtpengine_flags(flags: &[String]) -> Result<Option<Vec<String>>, String> {
    if flags.is_empty() {
        return Ok(None);
    }
    flags
        .iter()
        .map(|f| {
            crate::rtpengine::instances::parse_address(f)
                .map(|a| a.to_string())
                .map_err(|e| format!("--rtpengine: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `SCHEME:IP:PORT` (IPv6 in brackets); schemes `udp`, `tcp`, `tls`, `ws`, `wss`.
pub fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    ListenAddr::parse(text)
}

/// `IP:PORT` of the metrics endpoint (`:PORT` means every address).
pub fn parse_metrics(text: &str) -> Result<SocketAddr, String> {
    let full;
    let text = match text.strip_prefix(':') {
        Some(port) => {
            full = format!("0.0.0.0:{port}");
            &full
        }
        None => text,
    };
    text.parse().map_err(|_| {
        format!("--metrics `{text}`: expected IP:PORT, e.g. 127.0.0.1:9090 or [::]:9090")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("udp:127.0.0.1:5060").unwrap().addr.port(),
            5060
        );
        assert_eq!(parse_listen("udp:[::1]:5062").unwrap().addr.port(), 5062);
        assert!(parse_listen("sctp:127.0.0.1:5060").is_err());
        assert!(parse_listen("udp:localhost:5060").is_err());
    }

    #[test]
    fn metrics_forms() {
        assert_eq!(parse_metrics("127.0.0.1:9090").unwrap().port(), 9090);
        assert_eq!(
            parse_metrics(":9090").unwrap(),
            "0.0.0.0:9090".parse().unwrap()
        );
        assert!(parse_metrics("[::]:9090").is_ok());
        assert!(parse_metrics("localhost:9090").is_err());
        assert!(parse_metrics("9090").is_err());
    }

    #[test]
    fn clap_errors_fit_on_one_line() {
        let e = Args::try_parse_from(["sipforge", "--log-format", "xml"]).unwrap_err();
        let line = one_line(&e.render().to_string());
        assert!(!line.contains('\n'));
        assert!(
            line.contains("'xml'") && line.contains("[possible values: text, json]"),
            "{line}"
        );
        let e = Args::try_parse_from(["sipforge", "--nope"]).unwrap_err();
        let line = one_line(&e.render().to_string());
        assert!(line.starts_with("unexpected argument '--nope'"), "{line}");
    }
}
