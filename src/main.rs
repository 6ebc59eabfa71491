//! The `ringnats` binary: parse the command line, load the configuration, start the shards,
//! and wait for signals. Nothing else lives here.

use std::process::ExitCode;

use ringnats::cli::{Cli, Command};
use ringnats::config::ServerOptions;
use ringnats::server::Server;
use ringnats::shared::{COMPAT_VERSION, Security};
use ringnats::signals::{Control, SignalWaiter};
use ringnats::{cli, logging};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ringnats::server::disable_transparent_huge_pages();
    let cli = Cli::parse_args();
    if let Some(command) = cli.effective_command() {
        return run_tool(&command);
    }
    if let Some(refusal) = cli.unsupported_flag() {
        logging::early_error(&refusal);
        return ExitCode::FAILURE;
    }
    if let Some(command) = &cli.signal {
        return match ringnats::signals::send_command(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                logging::early_error(&err);
                ExitCode::FAILURE
            }
        };
    }
    if cli.test_config && cli.config.is_none() {
        // nats-server's words.
        logging::early_error(
            "must specify [-c, --config] option to check configuration file syntax",
        );
        return ExitCode::FAILURE;
    }
    let opts = match cli::options_from_cli(&cli) {
        Ok(opts) => opts,
        Err(err) => {
            logging::early_error(&err.to_string());
            return ExitCode::FAILURE;
        }
    };
    let security = match Security::from_options(&opts) {
        Ok(security) => security,
        Err(err) => {
            logging::early_error(&err.to_string());
            return ExitCode::FAILURE;
        }
    };
    if cli.test_config {
        // The warnings start-up would log, in the same shape, on standard error.
        if logging::init(false, false, opts.logtime, None).is_ok() {
            for warning in opts.warnings.iter().chain(&security.auth.warnings()) {
                tracing::warn!("{warning}");
            }
        }
        let file = opts
            .config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!("ringnats: configuration file {file} is valid");
        return ExitCode::SUCCESS;
    }
    run_server(&cli, opts, security)
}

fn run_tool(command: &Command) -> ExitCode {
    match ringnats::tools::run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            logging::early_error(&err);
            ExitCode::FAILURE
        }
    }
}

fn run_server(cli: &Cli, opts: ServerOptions, security: Security) -> ExitCode {
    if let Err(err) = logging::init(
        opts.debug,
        opts.trace,
        opts.logtime,
        opts.logfile.as_deref(),
    ) {
        logging::early_error(&format!("cannot open log file: {err}"));
        return ExitCode::FAILURE;
    }
    // Signals are routed to this thread before any shard starts, so a shard failure signal
    // never meets the default action.
    let mut signals = match SignalWaiter::new() {
        Ok(s) => s,
        Err(err) => {
            tracing::error!("cannot install signal handlers: {err}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("Starting ringnats");
    tracing::info!(
        "  Version:  {} (nats-server protocol {})",
        env!("CARGO_PKG_VERSION"),
        COMPAT_VERSION
    );
    for warning in opts.warnings.iter().chain(&security.auth.warnings()) {
        tracing::warn!("{warning}");
    }
    if let Some(file) = &opts.config_file {
        tracing::info!("Using configuration file: {}", file.display());
    }
    // The monitoring port is bound before the shards start, so a taken port stops the server
    // as a taken client port does; `/healthz` answers 503 until the server is built.
    let monitor_slot = ringnats::monitor::http::SharedSlot::default();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let monitor_addr = match start_monitoring(&opts, &security, &monitor_slot, started_rx) {
        Ok(addr) => addr,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    // The endpoints learn of the server before any client is served (nats-server starts
    // monitoring before its accept loop): a script that reads `/varz` once connected gets it.
    let server = match Server::start_then(opts.clone(), security, |shared| {
        let _ = monitor_slot.set(shared.clone());
    }) {
        Ok(server) => server,
        Err(err) if err.is_fatal() => {
            tracing::error!(target: logging::FATAL_TARGET, "{err}");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let shared = server.shared().clone();
    let _ = started_tx.send(shared.clone());
    if let Some((scheme, addr)) = monitor_addr {
        tracing::info!("Starting {scheme} monitor on {addr}");
    }
    tracing::info!(
        "  Name:     {}",
        opts.server_name.as_deref().unwrap_or(&shared.server_id)
    );
    tracing::info!("  ID:       {}", shared.server_id);
    tracing::info!("  Shards:   {}", shared.shard_count);
    tracing::info!(
        "Listening for client connections on {}",
        server.listen_addr()
    );
    if let Some(path) = &opts.pid_file {
        // nats-server `logPid`: the bare number, once listening.
        if let Err(err) = std::fs::write(path, std::process::id().to_string()) {
            tracing::error!(target: logging::FATAL_TARGET, "Could not write pidfile: {err}");
            server.shutdown();
            return ExitCode::FAILURE;
        }
    }
    tracing::info!("Server is ready");
    let mut current = opts;
    loop {
        match signals.wait() {
            Control::Reload => {
                tracing::info!("Trapped \"hangup\" signal");
                current = reload(cli, &server, current);
            }
            // nats-server: SIGTERM does not cut a lame-duck shutdown short.
            Control::Stop("terminated") if server.is_lame_duck() => {
                tracing::info!("Trapped \"terminated\" signal");
            }
            Control::Stop(name) => {
                tracing::info!("Trapped \"{name}\" signal");
                break;
            }
            Control::ReopenLog => {
                tracing::info!("Trapped \"user defined signal 1\" signal");
                reopen_log();
            }
            Control::LameDuck => {
                tracing::info!("Trapped \"user defined signal 2\" signal");
                if !server.is_lame_duck() {
                    tracing::info!("Entering lame duck mode, stop accepting new clients");
                    server.enter_lame_duck();
                }
            }
            Control::Check => {
                if server.has_failed() || server.is_lame_duck_finished() {
                    break;
                }
            }
        }
    }
    tracing::info!("Initiating Shutdown...");
    ringnats::monitor::sys::publish_shutdown(server.shared());
    // The shards publish it on their next turn, before they see the stop below; there is no
    // acknowledgement to wait for, so give that turn a moment.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let ok = server.shutdown();
    tracing::info!("Server Exiting..");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Binds the monitoring port (if configured) and starts its thread; returns its scheme and
/// address.
fn start_monitoring(
    opts: &ServerOptions,
    security: &ringnats::shared::Security,
    slot: &ringnats::monitor::http::SharedSlot,
    started: tokio::sync::oneshot::Receiver<std::sync::Arc<ringnats::shared::Shared>>,
) -> Result<Option<(&'static str, std::net::SocketAddr)>, ringnats::monitor::http::MonitorError> {
    let listener = ringnats::monitor::http::bind(opts, security.tls.as_ref())?;
    let addr = listener.as_ref().map(|l| (l.scheme(), l.addr));
    // The thread runs until the process exits.
    drop(ringnats::monitor::http::spawn(
        listener,
        slot.clone(),
        started,
    )?);
    Ok(addr)
}

/// SIGUSR1: reopens the log file, for logrotate (nats-server `ReOpenLogFile`).
fn reopen_log() {
    match logging::reopen_log_file() {
        None => tracing::info!("File log re-open ignored, not a file logger"),
        Some(Ok(())) => tracing::info!("File log re-opened"),
        Some(Err(err)) => tracing::error!("File log re-open failed: {err}"),
    }
}

/// Re-reads the configuration and applies what can change while running.
fn reload(cli: &Cli, server: &Server, current: ServerOptions) -> ServerOptions {
    let new = match cli::options_from_cli(cli) {
        Ok(opts) => opts,
        Err(err) => {
            tracing::error!("Failed to reload server configuration: {err}");
            return current;
        }
    };
    // An account update on the monitoring thread must not slip in between.
    let _auth_update = server.shared().lock_auth_update();
    let security = match Security::from_options_after(&new, &server.shared().snapshot().auth) {
        Ok(security) => security,
        Err(err) => {
            tracing::error!("Failed to reload server configuration: {err}");
            return current;
        }
    };
    let changes = ringnats::config::reload::reloadable_changes(&current, &new);
    if let Some(refused) = changes.refused.first() {
        tracing::error!(
            "Failed to reload server configuration: config reload not supported for {refused}"
        );
        return current;
    }
    if new.debug != current.debug || new.trace != current.trace {
        logging::set_levels(new.debug, new.trace);
    }
    for change in &changes.applied {
        tracing::info!("Reloaded: {change}");
    }
    for warning in security.auth.warnings() {
        tracing::warn!("{warning}");
    }
    server.reload(new.clone(), security);
    server
        .shared()
        .monitor
        .set_config_load_time(std::time::SystemTime::now());
    tracing::info!("Reloaded server configuration");
    new
}
