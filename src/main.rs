//! The `herald` binary: parses the command line and runs a command.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context as _;
use herald::config::cli::{Command, ConfigCommand, LogFormat};
use herald::config::flags::ServeArgs;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: hyper, axum and the fan-out
/// allocate and free small buffers per request and per batch (glibc's
/// malloc and free were 17% of a publish benchmark's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli =
        herald::config::file::parse(std::env::args_os().collect()).unwrap_or_else(|e| e.exit());
    let filter = EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("bad --log-level {:?}", cli.log_level))?;
    let colour = herald::telemetry::log_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.command {
        Command::Serve(args) => serve(*args).await?,
        Command::Pub(args) => {
            let answer = herald::client::publish(args).await?;
            println!("{answer}");
        }
        Command::Sub(args) => herald::client::subscribe::run(args).await?,
        Command::Bench(args) => print!("{}", herald::bench::run(args).await?),
        Command::Config(ConfigCommand::Check { file }) => {
            match herald::config::file::check(&file) {
                Ok(keys) => println!("{}: ok ({keys} keys)", file.display()),
                Err(error) => {
                    eprintln!("{error}");
                    std::process::exit(1);
                }
            }
        }
        Command::Completions { shell } => {
            herald::config::cli::completions(shell, &mut std::io::stdout())
        }
        Command::Man { dir: None } => herald::config::cli::man_page(&mut std::io::stdout())?,
        Command::Man { dir: Some(dir) } => herald::config::cli::man_pages(&dir)
            .with_context(|| format!("writing manual pages into {}", dir.display()))?,
        Command::Config(ConfigCommand::Show(_)) => {
            let shown = herald::config::file::show(std::env::args_os().collect())
                .unwrap_or_else(|e| e.exit());
            print!("{shown}");
        }
    }
    Ok(())
}

/// Runs the server until SIGTERM or SIGINT, then drains within the shutdown timeout.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let deadline = args.shutdown_timeout;
    // Every connection is a file descriptor: take what the hard limit allows
    // (before the configuration, whose default connection limit follows it).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open file limit"),
    }
    let config = args.into_config()?;
    tracing::debug!(max_connections = config.max_connections, "connection limit");
    if let Some(warning) = config.exposure_warning() {
        tracing::warn!("{warning}");
    }
    let mut signals = Signals::install().context("could not listen for signals")?;
    let server = herald::http::start(config)
        .await
        .context("could not start the server")?;
    for listen in &server.listeners {
        let scheme = if listen.tls { "https" } else { "http" };
        println!("herald listening on {scheme}://{}", listen.addr);
    }
    let stop = server.shutdown_token();
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!("shutting down: closing connections (a second signal exits at once)");
        stop.cancel();
        signals.next().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    let stop = server.shutdown_token();
    tokio::select! {
        result = server.wait() => result.context("server failed")?,
        _ = overdue(stop, deadline) => {
            tracing::warn!(?deadline, "connections still open at the shutdown deadline; exiting");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes `deadline` after shutdown began.
async fn overdue(stop: tokio_util::sync::CancellationToken, deadline: Duration) {
    stop.cancelled().await;
    tokio::time::sleep(deadline).await;
}

/// SIGTERM and SIGINT, listened for from before the server starts so that
/// no signal can arrive unhandled, and reused for the second signal.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
