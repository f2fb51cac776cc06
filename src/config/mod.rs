//! Configuration, in one place: where each option is defined ([`flags`] for
//! `herald serve`, [`cli`] for the command line as a whole), read from a TOML
//! file ([`file`]) or the environment, validated, and resolved into the one
//! [`ServerConfig`] every layer above the engine reads. The engine gets only
//! its own part ([`ServerConfig::engine_settings`]).

pub mod channels;
pub mod cli;
pub mod file;
pub mod flags;
pub mod listen;
pub mod units;

pub use listen::{Listen, Listeners, TlsFiles};
pub use units::{parse_duration, parse_size};

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Auth;
use crate::engine::{EngineSettings, QueueLimits};
use crate::hub::{ChannelOptions, ChannelPolicy, ChannelRule, HistoryLimits};
use crate::proxy::TrustedProxies;

/// Everything `herald serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Every address to listen on, plain or TLS.
    pub listen: Listeners,
    /// Certificate and key of the TLS listeners.
    pub tls: Option<TlsFiles>,
    /// How often the TLS files are checked for changes (SIGHUP checks at once).
    pub tls_reload_interval: Duration,
    /// Offer permessage-deflate to WebSocket clients that ask for it.
    pub ws_compression: bool,
    pub history: HistoryLimits,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Messages queued per subscriber before it must catch up from history.
    pub subscriber_queue: usize,
    /// Bytes of message data queued per subscriber before it must catch up from history.
    pub subscriber_queue_bytes: usize,
    pub max_channels_per_subscription: usize,
    pub max_subscriptions_per_socket: usize,
    /// Long-poll hold time when the request names none, and the most it may ask for.
    pub poll_timeout: Duration,
    pub max_poll_timeout: Duration,
    /// Most messages in one long-poll response.
    pub poll_page_size: usize,
    pub sse_heartbeat: Duration,
    /// The reconnect delay suggested to EventSource clients (`retry:`).
    pub sse_retry: Duration,
    /// Streaming connections (WebSocket, SSE) are closed after this long, so
    /// clients reconnect and spread over nodes; `None` keeps them open.
    pub max_connection_age: Option<Duration>,
    /// Most simultaneous client connections.
    pub max_connections: usize,
    /// New connections per second allowed from one IP address (0: no limit).
    pub connection_rate: f64,
    /// Publishes per second allowed from one IP address (0: no limit).
    pub publish_rate: f64,
    /// Apply the per-IP rates to loopback clients too.
    pub rate_limit_loopback: bool,
    /// Largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// Time allowed to send a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Time allowed to send a publish body.
    pub body_read_timeout: Duration,
    /// How often WebSocket clients are pinged, and how long a pong may take.
    pub ws_ping_interval: Duration,
    pub ws_pong_timeout: Duration,
    /// A `/ws` socket with no subscriptions that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Keep history on disk in this directory (the durable engine).
    pub data_dir: Option<std::path::PathBuf>,
    /// Share channels and history through Redis (the Redis engine).
    pub redis: Option<crate::engine::redis::RedisConfig>,
    /// Publish key and JWT verification.
    pub auth: Auth,
    /// Origins accepted on WebSocket upgrades, SSE and CORS; `None` accepts any.
    pub allowed_origins: Option<Vec<String>>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` name the client.
    pub trusted_proxies: TrustedProxies,
    /// Ask the application's backend before subscribes and client publishes.
    pub auth_hook: Option<AuthHookSettings>,
    /// Tell the application's backend of channel events.
    pub webhook: Option<crate::hooks::Webhook>,
    /// `[[channels]]` rules from the TOML file, first match wins.
    pub channel_rules: Vec<ChannelRule>,
    /// Serve the seed examples (`/demo`, `/demo/ws`, the `clock` ticker).
    pub demo: bool,
    pub demo_tick: Duration,
}

/// Where the auth hook is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHookSettings {
    pub url: String,
    /// An answer later than this refuses with `503 auth_unavailable`.
    pub timeout: Duration,
    /// How long a long poll's decision is reused (zero: never).
    pub cache: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)).into(),
            tls: None,
            tls_reload_interval: Duration::from_secs(5),
            ws_compression: true,
            history: HistoryLimits::default(),
            max_message_size: 64 * 1024,
            subscriber_queue: 1024,
            subscriber_queue_bytes: 1024 * 1024,
            max_channels_per_subscription: 64,
            max_subscriptions_per_socket: 256,
            poll_timeout: Duration::from_secs(30),
            max_poll_timeout: Duration::from_secs(120),
            poll_page_size: 100,
            sse_heartbeat: Duration::from_secs(15),
            sse_retry: Duration::from_secs(2),
            max_connection_age: None,
            max_connections: 100_000,
            connection_rate: 50.0,
            publish_rate: 500.0,
            rate_limit_loopback: false,
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            ws_ping_interval: Duration::from_secs(30),
            ws_pong_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            data_dir: None,
            redis: None,
            auth: Auth::default(),
            allowed_origins: None,
            channel_rules: Vec::new(),
            auth_hook: None,
            webhook: None,
            trusted_proxies: TrustedProxies::default(),
            demo: false,
            demo_tick: Duration::from_secs(5),
        }
    }
}

impl ServerConfig {
    /// The warning to log when this configuration exposes an open server.
    pub fn exposure_warning(&self) -> Option<String> {
        let exposed = self.listen.iter().find(|l| !l.addr.ip().is_loopback());
        let exposed = exposed.filter(|_| !self.auth.enabled())?;
        Some(format!(
            "LISTENING ON {exposed} WITH NO AUTH: anyone who can reach this port can publish and \
             subscribe to every channel. Set --publish-key and --jwt-secret (or \
             --jwt-public-key) before exposing herald."
        ))
    }

    /// The part of the configuration an engine is opened from.
    pub fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            channels: Arc::new(self.channel_policy()),
            data_dir: self.data_dir.clone(),
            redis: self.redis.clone(),
            track_occupancy: self.webhook.is_some(),
        }
    }

    /// Every channel's options: the `[[channels]]` rules over the global flags.
    pub fn channel_policy(&self) -> ChannelPolicy {
        let defaults = ChannelOptions {
            history: self.history,
            max_message_size: self.max_message_size,
            ..ChannelOptions::default()
        };
        ChannelPolicy::new(defaults, self.channel_rules.clone())
    }

    /// Per-subscriber queue bounds for streaming transports.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            messages: self.subscriber_queue,
            bytes: self.subscriber_queue_bytes,
        }
    }

    /// Whether `origin` may open WebSockets and event streams (and get CORS headers).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        match &self.allowed_origins {
            None => true,
            Some(list) => list
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_server_beyond_loopback_is_warned_about() {
        let mut config = ServerConfig::default();
        assert!(config.exposure_warning().is_none());
        config.listen = "127.0.0.1:80,tls://0.0.0.0:8443".parse().unwrap();
        assert!(config.exposure_warning().unwrap().contains("NO AUTH"));
        config.auth.publish_key = Some("k".into());
        assert!(config.exposure_warning().is_none());
    }

    #[test]
    fn human_durations_and_sizes() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("lots").is_err());
    }
}
