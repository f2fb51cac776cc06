//! `herald bench`: the load generator (DESIGN §6).
//!
//! One file per scenario — [`fanout`], [`idle`], [`echo`], [`publish`] —
//! over shared pieces: URL templates that point the same generator at herald
//! or at another server such as Nchan ([`target`]), the message format that
//! carries a sequence number and a send time ([`payload`]), subscriber
//! clients per transport ([`subscriber`]), HDR latency histograms and the
//! order check ([`stats`]), the server's CPU and memory from `/proc`
//! ([`procfs`]), and the table and JSON line ([`report`]). [`plot`] draws
//! SVG charts from saved JSON lines.
//!
//! Every run is bounded in connections, messages and time (`--duration`),
//! stops by itself, and talks only to loopback addresses.

pub mod args;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod payload;
pub mod plot;
pub mod procfs;
pub mod publish;
pub mod rawhttp;
pub mod rawws;
pub mod report;
pub mod stats;
pub mod subscriber;
pub mod target;

pub use args::{
    BenchArgs, Common, EchoArgs, FanoutArgs, IdleArgs, IdleTransport, PlotArgs, PollDialect,
    PublishArgs, Scenario, Transport,
};
pub use report::Report;

use thiserror::Error;

/// Why a bench run could not be carried out.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("bad URL {0:?}: {1}")]
    BadUrl(String, String),
    #[error("{0:?} is not a loopback address: herald bench only sends traffic to 127.0.0.0/8, ::1 or localhost")]
    NotLoopback(String),
    #[error("bad options: {0}")]
    Options(String),
    #[error("could not connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("publish to {url} answered {status}: {body}")]
    Publish {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the server answered {0}")]
    Status(u16),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Proc(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("plot: {0}")]
    Plot(String),
}

impl BenchError {
    /// A connection to `url` failed for `reason`.
    pub fn connect(url: &str, reason: impl std::fmt::Display) -> Self {
        BenchError::Connect {
            url: url.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Runs the scenario and returns what to print: the summary table, or one
/// JSON line with `--json`.
pub async fn run(args: BenchArgs) -> Result<String, BenchError> {
    // Every connection is a file descriptor: take what the hard limit allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (report, json) = match args.scenario {
        Scenario::Fanout(a) => (fanout::run(&a).await?, a.common.json),
        Scenario::Idle(a) => (idle::run(&a).await?, a.common.json),
        Scenario::Echo(a) => (echo::run(&a).await?, a.common.json),
        Scenario::Publish(a) => (publish::run(&a).await?, a.common.json),
        Scenario::Plot(a) => return plot::run(&a),
    };
    Ok(if json {
        format!("{}\n", report.json())
    } else {
        report.table()
    })
}

/// The time left until `deadline`, at least zero.
fn left(deadline: tokio::time::Instant) -> std::time::Duration {
    deadline.saturating_duration_since(tokio::time::Instant::now())
}
