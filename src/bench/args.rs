//! Command-line options of `herald bench`: one struct per scenario, with the
//! options every scenario shares (URL templates, server PID, time cap) in
//! [`Common`]. The structs are also the library's options, so a test can
//! build them with `try_parse_from` exactly as the command line does.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::parse_duration;

/// Options of `herald bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// What `herald bench` measures.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// S subscribers over C channels receive M messages published at rate R:
    /// deliveries/s, loss, duplicates, reordering, latency, server CPU and memory.
    Fanout(FanoutArgs),
    /// N idle subscriber connections: the server's memory per connection.
    Idle(IdleArgs),
    /// WebSocket round trips against an echo endpoint (e.g. `/demo/ws`).
    Echo(EchoArgs),
    /// HTTP publish throughput and latency with K concurrent publishers.
    Publish(PublishArgs),
    /// Draws SVG plots from the JSON lines of earlier fan-out runs.
    Plot(PlotArgs),
}

/// Options every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Subscribe URL template; `{ch}` is replaced by the channel name. Loopback hosts only.
    #[arg(long, default_value = "http://127.0.0.1:8080/sub/{ch}")]
    pub sub_url: String,
    /// Publish URL template (POST publishes, GET answers channel info with a subscriber count).
    #[arg(long, default_value = "http://127.0.0.1:8080/pub/{ch}")]
    pub pub_url: String,
    /// PID of the server process: its CPU seconds and RSS are read from /proc before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Hard cap on the whole run (e.g. 60s); the run stops by itself at the latest then.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Name of the server under test, carried into the report (e.g. herald, nchan).
    #[arg(long)]
    pub label: Option<String>,
    /// Prefix of the channel names (default: a fresh random one, so every run starts on empty channels).
    #[arg(long)]
    pub channel_prefix: Option<String>,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// For https:// targets: accept any server certificate (a self-signed test certificate).
    #[arg(long)]
    pub insecure: bool,
    /// For https:// targets: trust this CA certificate (PEM) besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// How a fan-out subscriber connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Raw WebSocket on the subscribe URL: one frame per message.
    Ws,
    /// Server-Sent Events on the subscribe URL.
    Sse,
    /// HTTP long polling on the subscribe URL (see `--poll-dialect`).
    Poll,
    /// herald's `/ws` JSON protocol (`--ws-url`).
    Wsproto,
}

impl Transport {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Poll => "poll",
            Transport::Wsproto => "wsproto",
        }
    }
}

/// The body of a fan-out message after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadKind {
    /// `x` repeated to the size.
    X,
    /// JSON records to the size.
    Json,
}

/// How a long-poll client asks for the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PollDialect {
    /// herald: JSON pages, `?since=` the previous answer's `next`.
    Herald,
    /// Nchan: one message per answer, `If-Modified-Since`/`If-None-Match` from `Last-Modified`/`Etag`.
    Nchan,
}

/// The transports an idle connection can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdleTransport {
    Ws,
    Sse,
}

/// Options of `herald bench fanout`.
#[derive(Debug, Clone, Parser)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Subscriber transport.
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,
    /// Subscribers in all, spread round-robin over the channels.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Channels.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Messages published in all, round-robin over the channels.
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Messages per second in all; 0 publishes as fast as possible (one request in flight per channel).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Size of each message in bytes (at least the `seq:send_time_us:` header).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Long-poll dialect of the server.
    #[arg(long, value_enum, default_value_t = PollDialect::Herald)]
    pub poll_dialect: PollDialect,
    /// URL of the `/ws` JSON protocol (default: the subscribe URL's host with path `/ws`).
    #[arg(long)]
    pub ws_url: Option<String>,
    /// Keep the publisher at most this many messages ahead of the slowest subscriber
    /// of a channel (0: no limit). Measures sustainable rather than burst throughput.
    #[arg(long, default_value_t = 0)]
    pub max_lag: u64,
    /// Subscriber connections opened at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// How long to wait for deliveries after the last publish.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// SSE and long-poll subscribers over HTTP/2 (https:// targets, ALPN h2),
    /// up to --h2-streams of them sharing each connection.
    #[arg(long)]
    pub http2: bool,
    /// Subscribers per HTTP/2 connection with --http2.
    #[arg(long, default_value_t = 100)]
    pub h2_streams: usize,
    /// What follows each message's `seq:send_time:` header: `x` repeated, or
    /// a JSON document of quote-like records (for compression runs).
    #[arg(long, value_enum, default_value_t = PayloadKind::X)]
    pub payload: PayloadKind,
    /// Raw WebSocket subscribers (--transport ws, ws:// targets) offer
    /// permessage-deflate and inflate what arrives compressed.
    #[arg(long)]
    pub ws_deflate: bool,
    /// Raw WebSocket subscribers use the same minimal client as --ws-deflate
    /// without offering compression (the baseline for wire bytes).
    #[arg(long, conflicts_with = "ws_deflate")]
    pub ws_raw: bool,
}

/// Options of `herald bench idle`.
#[derive(Debug, Clone, Parser)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connection transport.
    #[arg(long, value_enum, default_value_t = IdleTransport::Ws)]
    pub transport: IdleTransport,
    /// Idle connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Channels the connections are spread over.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// How long to hold the connections open once all are up, before reading the server's RSS.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Connections opened at once (kept under common listen backlogs, 128 and
    /// up: an overflowing accept queue costs a one-second SYN retransmit).
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// Connections per source address 127.0.0.x (default: 90% of the kernel's
    /// ephemeral port range, at most 50,000).
    #[arg(long)]
    pub per_address: Option<usize>,
}

/// Options of `herald bench echo`.
#[derive(Debug, Clone, Parser)]
pub struct EchoArgs {
    #[command(flatten)]
    pub common: Common,
    /// The echo endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:8080/demo/ws")]
    pub url: String,
    /// Concurrent WebSocket connections.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Round trips per connection.
    #[arg(long, default_value_t = 10_000)]
    pub round_trips: u64,
    /// Size of each message in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

/// Options of `herald bench publish`.
#[derive(Debug, Clone, Parser)]
pub struct PublishArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent publishers, each on its own channel with one request in flight.
    #[arg(long, default_value_t = 8)]
    pub publishers: usize,
    /// Messages in all.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Size of each message in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Messages per request: above 1, each request is a batch, a JSON array
    /// of `{"channel", "data"}` posted to the publish URL without its
    /// `/{ch}` (herald's `POST /pub`).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Publish over a minimal HTTP/1.1 client (one kept-alive connection
    /// per publisher, loopback http:// only) instead of reqwest, whose own
    /// work otherwise makes the generator the ceiling.
    #[arg(long)]
    pub raw_http: bool,
}

/// Options of `herald bench plot`.
#[derive(Debug, Clone, Parser)]
pub struct PlotArgs {
    /// File of JSON lines written by `herald bench fanout --json`.
    #[arg(long)]
    pub input: PathBuf,
    /// Directory the SVG files are written to.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Title prefix of the plots.
    #[arg(long, default_value = "fan-out")]
    pub title: String,
}
