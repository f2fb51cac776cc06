//! The flags of `herald serve` (each with its `HERALD_*` environment
//! variable and its TOML key, the flag's name with underscores), and how they
//! resolve into the [`ServerConfig`] every layer reads.

use std::time::Duration;

use clap::Args;

use super::listen::{Listen, Listeners, TlsFiles};
use super::units::{parse_duration, parse_size};
use super::ServerConfig;
use crate::auth::{Auth, AuthSetupError, JwtKey};
use crate::engine::redis::{RedisConfig, SentinelConfig};
use crate::hub::HistoryLimits;

/// Options of `herald serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file of options (keys are the flag names with underscores);
    /// flags and HERALD_* variables take precedence over it.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Address and port to listen on; repeatable or comma-separated. An
    /// address written tls://HOST:PORT serves HTTPS and WSS (HTTP/2 by ALPN)
    /// with --tls-cert and --tls-key.
    #[arg(
        long,
        env = "HERALD_LISTEN",
        default_value = "127.0.0.1:8080",
        value_delimiter = ','
    )]
    pub listen: Vec<Listen>,
    /// Certificate chain (PEM) of the tls:// listeners; reloaded when the file
    /// changes or on SIGHUP.
    #[arg(
        long,
        env = "HERALD_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of the tls:// listeners.
    #[arg(
        long,
        env = "HERALD_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,
    /// How often the certificate and key files are checked for changes.
    #[arg(long, env = "HERALD_TLS_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// Do not offer permessage-deflate (RFC 7692) to WebSocket clients.
    #[arg(long, env = "HERALD_NO_WS_COMPRESSION")]
    pub no_ws_compression: bool,
    /// Keep history on disk in DIR: every acknowledged publish survives restarts and kill -9.
    #[arg(
        long,
        env = "HERALD_DATA_DIR",
        value_name = "DIR",
        conflicts_with_all = ["redis", "redis_sentinel"]
    )]
    pub data_dir: Option<std::path::PathBuf>,
    /// Share channels and history with other nodes through Redis 6+ or Valkey
    /// (redis://[:password@]host:port/db, rediss:// for TLS); with
    /// --redis-cluster, comma-separated seed nodes of a Redis Cluster.
    #[arg(long, env = "HERALD_REDIS", value_name = "URL", hide_env_values = true)]
    pub redis: Option<String>,
    /// The --redis URLs are seed nodes of a Redis Cluster.
    #[arg(long, env = "HERALD_REDIS_CLUSTER", requires = "redis")]
    pub redis_cluster: bool,
    /// Find the Redis primary through these Sentinels (HOST:PORT, repeatable
    /// or comma-separated) and follow its failovers without a restart; needs
    /// --redis-sentinel-master, replaces --redis.
    #[arg(
        long,
        env = "HERALD_REDIS_SENTINEL",
        value_name = "HOST:PORT",
        value_delimiter = ',',
        requires = "redis_sentinel_master",
        conflicts_with_all = ["redis", "redis_cluster"]
    )]
    pub redis_sentinel: Vec<String>,
    /// The name the sentinels monitor the primary by (`sentinel monitor NAME ...`).
    #[arg(
        long,
        env = "HERALD_REDIS_SENTINEL_MASTER",
        value_name = "NAME",
        requires = "redis_sentinel"
    )]
    pub redis_sentinel_master: Option<String>,
    /// Acknowledge a publish only after this many Redis replicas confirm it
    /// (WAIT), so it survives a failover; 0 acknowledges once the primary
    /// has it (an asynchronous failover can then lose it).
    #[arg(
        long,
        env = "HERALD_REDIS_WAIT_REPLICAS",
        default_value_t = 0,
        value_name = "N"
    )]
    pub redis_wait_replicas: usize,
    /// How long a publish waits for --redis-wait-replicas before it is
    /// answered 503 `not_replicated` (e.g. 500ms, 2s).
    #[arg(long, env = "HERALD_REDIS_WAIT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub redis_wait_timeout: Duration,
    /// Prefix of herald's Redis keys and topics (several deployments can share one Redis).
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald")]
    pub redis_prefix: String,
    /// Messages kept per channel for resume.
    #[arg(long, env = "HERALD_HISTORY_SIZE", default_value_t = 1000)]
    pub history_size: usize,
    /// How long a message stays in history (e.g. 90s, 1h).
    #[arg(long, env = "HERALD_HISTORY_TTL", default_value = "1h", value_parser = parse_duration)]
    pub history_ttl: Duration,
    /// Most bytes of history kept per channel (e.g. 64MiB).
    #[arg(long, env = "HERALD_HISTORY_BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub history_bytes: usize,
    /// Largest message accepted (e.g. 64KiB).
    #[arg(long, env = "HERALD_MAX_MESSAGE_SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub max_message_size: usize,
    /// Messages queued per subscriber before it must catch up from history.
    #[arg(long, env = "HERALD_SUBSCRIBER_QUEUE", default_value_t = 1024)]
    pub subscriber_queue: usize,
    /// Bytes of messages queued per subscriber before it must catch up from history (e.g. 1MiB).
    #[arg(long, env = "HERALD_SUBSCRIBER_QUEUE_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub subscriber_queue_bytes: usize,
    /// Most channels named in one subscription (`/sub/a,b,...`).
    #[arg(
        long,
        env = "HERALD_MAX_CHANNELS_PER_SUBSCRIPTION",
        default_value_t = 64
    )]
    pub max_channels_per_subscription: usize,
    /// Most channels one `/ws` socket may subscribe to.
    #[arg(
        long,
        env = "HERALD_MAX_SUBSCRIPTIONS_PER_SOCKET",
        default_value_t = 256
    )]
    pub max_subscriptions_per_socket: usize,
    /// How long a long poll is held when it names no timeout.
    #[arg(long, env = "HERALD_POLL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub poll_timeout: Duration,
    /// The longest hold a long poll may ask for with `?timeout=`.
    #[arg(long, env = "HERALD_MAX_POLL_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub max_poll_timeout: Duration,
    /// Most messages in one long-poll response.
    #[arg(long, env = "HERALD_POLL_PAGE_SIZE", default_value_t = 100)]
    pub poll_page_size: usize,
    /// Interval of the SSE `: ping` comment that keeps proxies from closing idle streams.
    #[arg(long, env = "HERALD_SSE_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub sse_heartbeat: Duration,
    /// Close streaming connections (WebSocket, SSE) after this long (e.g. 1h) so
    /// clients reconnect, resume and rebalance; off by default.
    #[arg(long, env = "HERALD_MAX_CONNECTION_AGE", value_parser = parse_duration)]
    pub max_connection_age: Option<Duration>,
    /// On SIGTERM/SIGINT, how long to wait for connections to finish before exiting anyway.
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Most simultaneous client connections; more are answered 503 and closed
    /// (health and metrics stay reachable). Default: the open-file limit less
    /// a reserve of a tenth (at least 100), at most 100000.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// New connections per second per client IP (bursts of twice that); 0 turns it off.
    #[arg(long, env = "HERALD_CONNECTION_RATE", default_value_t = 50.0)]
    pub connection_rate: f64,
    /// Publishes per second per client IP (bursts of twice that); 0 turns it off.
    #[arg(long, env = "HERALD_PUBLISH_RATE", default_value_t = 500.0)]
    pub publish_rate: f64,
    /// Apply the per-IP rate limits to loopback clients too (off: a local proxy is one IP for everyone).
    #[arg(long, env = "HERALD_RATE_LIMIT_LOOPBACK")]
    pub rate_limit_loopback: bool,
    /// Largest request line plus headers (e.g. 16KiB); larger requests get 431.
    #[arg(long, env = "HERALD_MAX_HEADER_BYTES", default_value = "16KiB", value_parser = parse_size)]
    pub max_header_bytes: usize,
    /// Time a client has to send its request headers (slowloris guard).
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Time a publisher has to send its body.
    #[arg(long, env = "HERALD_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// How often WebSocket clients are pinged.
    #[arg(long, env = "HERALD_WS_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub ws_ping_interval: Duration,
    /// How long a WebSocket client may take to answer a ping before it is dropped.
    #[arg(long, env = "HERALD_WS_PONG_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub ws_pong_timeout: Duration,
    /// A /ws socket with no subscriptions that sends nothing for this long is closed.
    #[arg(long, env = "HERALD_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Publishers must send `Authorization: Bearer KEY` (or a JWT with publish rights).
    #[arg(long, env = "HERALD_PUBLISH_KEY", hide_env_values = true)]
    pub publish_key: Option<String>,
    /// Subscribers need a JWT signed with this HS256 secret.
    #[arg(
        long,
        env = "HERALD_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    pub jwt_secret: Option<String>,
    /// Subscribers need a JWT verified by this PEM public key (RS256 or ES256).
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<std::path::PathBuf>,
    /// Clock skew tolerated on a token's `exp`, in seconds (at most 30).
    #[arg(long, env = "HERALD_JWT_LEEWAY", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=30))]
    pub jwt_leeway: u64,
    /// Origins accepted for WebSocket and SSE and sent in CORS headers,
    /// comma-separated (`https://app.example.com,https://admin.example.com`, or `*`).
    #[arg(long, env = "HERALD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Reverse proxies or load balancers (address or CIDR, repeatable or
    /// comma-separated) whose X-Forwarded-For / Forwarded headers name the
    /// client for per-IP publish limits; from anyone else they are ignored.
    #[arg(long, env = "HERALD_TRUSTED_PROXY", value_delimiter = ',', value_parser = crate::proxy::parse_network)]
    pub trusted_proxy: Vec<ipnet::IpNet>,
    /// Ask this URL (POST JSON) before every client subscribe and WebSocket
    /// publish; it answers {"allow": true|false, "user"?, "info"?}.
    #[arg(long, env = "HERALD_AUTH_HOOK")]
    pub auth_hook: Option<String>,
    /// An auth hook slower than this refuses with 503 auth_unavailable.
    #[arg(long, env = "HERALD_AUTH_HOOK_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub auth_hook_timeout: Duration,
    /// How long a long poll's auth hook decision is reused (0 never).
    #[arg(long, env = "HERALD_AUTH_HOOK_CACHE", default_value = "30s", value_parser = parse_duration)]
    pub auth_hook_cache: Duration,
    /// POST channel events (occupied, vacated, join, leave) to this URL.
    #[arg(long, env = "HERALD_WEBHOOK")]
    pub webhook: Option<String>,
    /// Sign webhook bodies with this secret (X-Herald-Signature: sha256=HMAC).
    #[arg(long, env = "HERALD_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// How long a failed webhook batch is retried before it is dropped.
    #[arg(long, env = "HERALD_WEBHOOK_RETRY", default_value = "60s", value_parser = parse_duration)]
    pub webhook_retry: Duration,
    /// Serve the seed examples: /demo, the /demo/ws echo and the `clock` ticker.
    #[arg(long, env = "HERALD_DEMO")]
    pub demo: bool,
    /// Interval of the demo clock ticker.
    #[arg(long, env = "HERALD_DEMO_TICK", default_value = "5s", value_parser = parse_duration, hide = true)]
    pub demo_tick: Duration,
}

impl ServeArgs {
    /// The listening addresses and the TLS files, checked against each
    /// other: a tls:// address needs the files, the files need a tls:// address.
    pub fn listeners(&self) -> Result<(Listeners, Option<TlsFiles>), ConfigError> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let listen = Listeners::new(self.listen.clone()).ok_or(ConfigError::NoListener)?;
        match (listen.any_tls(), tls.is_some()) {
            (true, false) => Err(ConfigError::TlsWithoutCertificate),
            (false, true) => Err(ConfigError::CertificateWithoutTls),
            _ => Ok((listen, tls)),
        }
    }

    /// The Redis engine's settings, if `--redis` or `--redis-sentinel` asks
    /// for it, checked (also by `herald config check`).
    pub fn redis_settings(&self) -> Result<Option<RedisConfig>, ConfigError> {
        redis_config(
            self.redis.clone(),
            self.redis_cluster,
            self.redis_prefix.clone(),
            self.redis_sentinel.clone(),
            self.redis_sentinel_master.clone(),
            self.redis_wait_replicas,
            self.redis_wait_timeout,
        )
    }

    /// The server configuration these options describe (reads the JWT key file).
    pub fn into_config(self) -> Result<ServerConfig, ConfigError> {
        let channel_rules = match &self.config {
            Some(path) => super::file::channel_rules_of(path)?,
            None => Vec::new(),
        };
        let redis = self.redis_settings()?;
        let jwt = match (&self.jwt_secret, &self.jwt_public_key) {
            (Some(secret), _) => Some(JwtKey::secret(secret)),
            (None, Some(path)) => Some(JwtKey::public_key_file(path)?),
            (None, None) => None,
        };
        let (listen, tls) = self.listeners()?;
        Ok(ServerConfig {
            listen,
            tls,
            tls_reload_interval: self.tls_reload_interval,
            ws_compression: !self.no_ws_compression,
            history: HistoryLimits {
                max_messages: self.history_size,
                max_bytes: self.history_bytes,
                ttl: self.history_ttl,
            },
            max_message_size: self.max_message_size,
            subscriber_queue: self.subscriber_queue,
            subscriber_queue_bytes: self.subscriber_queue_bytes,
            max_channels_per_subscription: self.max_channels_per_subscription,
            max_subscriptions_per_socket: self.max_subscriptions_per_socket,
            poll_timeout: self.poll_timeout,
            max_poll_timeout: self.max_poll_timeout,
            poll_page_size: self.poll_page_size.max(1),
            sse_heartbeat: self.sse_heartbeat,
            max_connection_age: self.max_connection_age,
            demo: self.demo,
            demo_tick: self.demo_tick,
            data_dir: self.data_dir,
            redis,
            max_connections: self
                .max_connections
                .unwrap_or_else(|| {
                    let (soft, _) =
                        rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 0));
                    max_connections_for(soft)
                })
                .max(1),
            connection_rate: self.connection_rate,
            publish_rate: self.publish_rate,
            rate_limit_loopback: self.rate_limit_loopback,
            max_header_bytes: self.max_header_bytes,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            ws_ping_interval: self.ws_ping_interval,
            ws_pong_timeout: self.ws_pong_timeout,
            idle_timeout: self.idle_timeout,
            auth: Auth {
                publish_key: self.publish_key.filter(|k| !k.is_empty()),
                jwt,
                leeway: self.jwt_leeway,
            },
            channel_rules,
            auth_hook: self.auth_hook.filter(|u| !u.trim().is_empty()).map(|url| {
                super::AuthHookSettings {
                    url,
                    timeout: self.auth_hook_timeout,
                    cache: self.auth_hook_cache,
                }
            }),
            webhook: self.webhook.filter(|u| !u.trim().is_empty()).map(|url| {
                crate::hooks::Webhook {
                    url,
                    secret: self.webhook_secret.filter(|s| !s.is_empty()),
                    retry_for: self.webhook_retry,
                }
            }),
            trusted_proxies: crate::proxy::TrustedProxies::new(self.trusted_proxy),
            allowed_origins: self.allowed_origins.map(|list| {
                list.into_iter()
                    .map(|o| o.trim().to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            }),
            ..ServerConfig::default()
        })
    }
}

/// The Redis engine's settings, if `--redis` or `--redis-sentinel` asks for it.
fn redis_config(
    urls: Option<String>,
    cluster: bool,
    prefix: String,
    sentinels: Vec<String>,
    master: Option<String>,
    wait_replicas: usize,
    wait_timeout: Duration,
) -> Result<Option<RedisConfig>, ConfigError> {
    let sentinels: Vec<String> = sentinels
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let sentinel = match (sentinels.is_empty(), master) {
        (true, _) => None,
        (false, Some(master)) if !master.trim().is_empty() => Some(SentinelConfig {
            addrs: sentinels,
            master: master.trim().to_owned(),
        }),
        (false, _) => {
            return Err(ConfigError::Invalid(
                "--redis-sentinel needs --redis-sentinel-master NAME".into(),
            ))
        }
    };
    if urls.is_none() && sentinel.is_none() {
        if wait_replicas > 0 {
            return Err(ConfigError::Invalid(
                "--redis-wait-replicas needs --redis or --redis-sentinel".into(),
            ));
        }
        return Ok(None);
    }
    if wait_replicas > 0 && cluster {
        // WAIT counts replicas of the server that ran the write on the same
        // connection; a cluster client spreads writes over many.
        return Err(ConfigError::Invalid(
            "--redis-wait-replicas is not supported with --redis-cluster".into(),
        ));
    }
    if wait_replicas > 0 && wait_timeout.is_zero() {
        // WAIT with a timeout of 0 would block forever.
        return Err(ConfigError::Invalid(
            "--redis-wait-timeout must be more than 0 with --redis-wait-replicas".into(),
        ));
    }
    Ok(Some(RedisConfig {
        urls: urls
            .unwrap_or_default()
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect(),
        cluster,
        prefix,
        sentinel,
        wait_replicas,
        wait_timeout,
    }))
}

/// Why `herald serve`'s options could not become a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    File(#[from] super::file::ConfigFileError),
    #[error("--listen names no address")]
    NoListener,
    #[error("a tls:// listener needs --tls-cert and --tls-key")]
    TlsWithoutCertificate,
    #[error("--tls-cert and --tls-key are given but no --listen address is tls://HOST:PORT")]
    CertificateWithoutTls,
}

/// The default `--max-connections` for an open-file limit of `nofile`: a
/// tenth of the descriptors (at least 100) stay for Redis, the data store,
/// refusals and health checks, so the server answers 503 at its limit
/// rather than failing to accept.
pub fn max_connections_for(nofile: u64) -> usize {
    let reserve = (nofile / 10).max(100);
    usize::try_from(nofile.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .clamp(1, 100_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_options_are_checked_together() {
        let second = Duration::from_secs(1);
        let sentinels = vec!["10.0.0.1:26379".to_owned(), " 10.0.0.2:26379 ".to_owned()];
        let config = redis_config(
            None,
            false,
            "herald".into(),
            sentinels.clone(),
            Some("main".into()),
            1,
            second,
        )
        .unwrap()
        .unwrap();
        let sentinel = config.sentinel.unwrap();
        assert_eq!(sentinel.addrs, ["10.0.0.1:26379", "10.0.0.2:26379"]);
        assert_eq!(sentinel.master, "main");
        assert_eq!((config.wait_replicas, config.wait_timeout), (1, second));
        let url = || Some("redis://127.0.0.1/".to_owned());
        // Each of these is refused with a reason.
        assert!(redis_config(None, false, "h".into(), sentinels, None, 0, second).is_err());
        assert!(redis_config(None, false, "h".into(), vec![], None, 1, second).is_err());
        assert!(redis_config(url(), true, "h".into(), vec![], None, 1, second).is_err());
        assert!(redis_config(url(), false, "h".into(), vec![], None, 1, Duration::ZERO).is_err());
        assert!(
            redis_config(None, false, "h".into(), vec![], None, 0, second)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_connection_limit_leaves_descriptors_in_reserve() {
        assert_eq!(max_connections_for(20_000), 18_000);
        assert_eq!(max_connections_for(1024), 922);
        assert_eq!(max_connections_for(50), 1);
        assert_eq!(max_connections_for(1 << 20), 100_000);
    }
}
