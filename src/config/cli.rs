//! The command line: `herald serve`, `pub`, `sub`, `config`, `bench` and
//! `completions` (and the hidden `man`), and the global log options. The
//! serve flags themselves are in [`super::flags`]; the options of `pub` and
//! `sub` are here, and the shell completions and manual pages generated from
//! this one definition, so they can never drift from the real parser.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use super::flags::ServeArgs;

/// herald: a real-time push server (WebSocket, Server-Sent Events, long polling).
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level: error, warn, info, debug or trace (or a tracing filter such as herald=debug).
    #[arg(long, global = true, env = "HERALD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format: text for people, json for log collectors.
    #[arg(long, global = true, value_enum, env = "HERALD_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Publish one message to a channel.
    Pub(PubArgs),
    /// Subscribe to channels and print each message on its own line.
    Sub(SubArgs),
    /// Check a configuration file, or show the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Load generator: fan-out, idle connections, echo and publish throughput,
    /// against herald or (through URL templates) another server such as Nchan.
    Bench(crate::bench::BenchArgs),
    /// Print a shell completion script: `herald completions bash > /usr/share/bash-completion/completions/herald`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page herald(1) in roff, or write herald(1) and a page
    /// per command (herald-serve(1)...) into --dir (for packagers).
    #[command(hide = true)]
    Man {
        /// Write every page into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a TOML configuration file: unknown keys (with suggestions) and bad values.
    Check {
        /// The file to check.
        file: std::path::PathBuf,
    },
    /// Print the configuration `herald serve` would run with (same options), secrets redacted.
    Show(Box<ServeArgs>),
}

/// Options of `herald pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Channel to publish to.
    pub channel: String,
    /// Message data; `-` reads it from standard input.
    pub data: String,
    /// SSE event type to publish with.
    #[arg(long)]
    pub event: Option<String>,
    /// The server's base URL.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Publish key, sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "HERALD_PUBLISH_KEY")]
    pub key: Option<String>,
}

/// The transports `herald sub` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SubTransport {
    /// WebSocket, with the `/ws` protocol (ids, gaps, many channels on one socket).
    Ws,
    /// Server-Sent Events.
    Sse,
    /// HTTP long polling.
    Poll,
}

/// Options of `herald sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Channels, comma-separated (`news,alerts`).
    pub channels: String,
    /// Transport to use.
    #[arg(long, value_enum, default_value_t = SubTransport::Ws)]
    pub transport: SubTransport,
    /// Resume after this id or cursor (`0` for everything still in history).
    #[arg(long)]
    pub since: Option<String>,
    /// Print each message as a JSON object with id, channel, event and data.
    #[arg(long)]
    pub json: bool,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// The server's base URL.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Subscriber token (JWT), sent as `?token=`.
    #[arg(long, env = "HERALD_TOKEN")]
    pub token: Option<String>,
}

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "herald", out);
}

/// Writes the manual page herald(1).
pub fn man_page(out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// Writes herald(1) and one page per visible command (herald-serve(1),
/// herald-config-check(1)...) into `dir`.
pub fn man_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}
