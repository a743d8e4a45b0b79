//! The `sipforge` command line: flags, `--version`, `--print-routes`,
//! `--check`, and running the proxy until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

use crate::api::Routes;
use crate::log;
use crate::net::{self, Options};

#[derive(Debug, Parser)]
#[command(
    name = "sipforge",
    about = "A SIP proxy whose routes were compiled from routes.yaml",
    disable_version_flag = true
)]
struct Args {
    /// Listen on this socket, `udp:IP:PORT` (repeatable; replaces the routes file's `listen`)
    #[arg(long = "listen", value_name = "udp:IP:PORT")]
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
    /// Print the version and the SHA-256 of the routes built in
    #[arg(short = 'V', long)]
    version: bool,
    /// Print the routes file built into this binary
    #[arg(long)]
    print_routes: bool,
    /// Validate the settings (flags, listen addresses) and exit: 0 valid, 1 not
    #[arg(long)]
    check: bool,
}

/// Run the `sipforge` binary with the compiled routes.
pub fn main(routes: &'static dyn Routes) -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let settings = routes.settings();
    if args.version {
        println!("sipforge {}", env!("CARGO_PKG_VERSION"));
        if let Some(commit) = option_env!("SIPFORGE_GIT_COMMIT") {
            println!("commit {commit}");
        }
        println!(
            "routes {} sha256:{}",
            settings.source_path, settings.source_sha256
        );
        return ExitCode::SUCCESS;
    }
    if args.print_routes {
        print!("{}", settings.source_text);
        return ExitCode::SUCCESS;
    }
    let options = match options(&args, routes) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("sipforge: {e}");
            return ExitCode::from(if args.check { 1 } else { 2 });
        }
    };
    if args.check {
        println!(
            "sipforge: settings ok ({} listen socket(s))",
            options.listen.len()
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sipforge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(routes, options))
}

async fn run(routes: &'static dyn Routes, options: Options) -> ExitCode {
    let server = match net::start(routes, options).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("cannot listen: {e}");
            eprintln!("sipforge: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        routes = routes.settings().source_path,
        sha256 = routes.settings().source_sha256,
        "sipforge {} started",
        env!("CARGO_PKG_VERSION")
    );
    wait_for_signal().await;
    tracing::info!("stopping");
    server.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Run-time settings from the flags and the routes file.
fn options(args: &Args, routes: &'static dyn Routes) -> Result<Options, String> {
    let settings = routes.settings();
    let listen_text: Vec<&str> = if args.listen.is_empty() {
        settings.listen.to_vec()
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
        .or_else(|| settings.advertise.map(str::to_string));
    if let Some(adv) = &advertise
        && crate::proxy::identity::split_host_port(adv).is_none()
    {
        return Err(format!("advertise `{adv}` is not HOST[:PORT]"));
    }
    for addr in &listen {
        crate::proxy::Listener::new(*addr, advertise.as_deref())?;
    }
    Ok(Options { listen, advertise })
}

/// `udp:IP:PORT` (IPv6 in brackets).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let Some(rest) = text.strip_prefix("udp:") else {
        return Err(format!(
            "listen `{text}`: expected udp:IP:PORT (only UDP is supported so far)"
        ));
    };
    rest.parse()
        .map_err(|_| format!("listen `{text}`: `{rest}` is not IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("udp:127.0.0.1:5060").unwrap().port(), 5060);
        assert_eq!(parse_listen("udp:[::1]:5062").unwrap().port(), 5062);
        assert!(parse_listen("tcp:127.0.0.1:5060").is_err());
        assert!(parse_listen("udp:localhost:5060").is_err());
    }
}
