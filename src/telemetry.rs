//! Metrics and per-connection accounting.
//!
//! Every metric is named `herald_*` and recorded through the `metrics`
//! facade; `/metrics` renders them in Prometheus text format. Every series
//! with a known label value is registered when the recorder is installed, at
//! zero, so that `rate()` and alerts see zero rather than no data on a fresh
//! node. A [`Connection`] guard counts a connection while it lives and, when
//! it ends, records why and logs one line with its transport, duration,
//! deliveries and close reason.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram as LatencyHistogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::hub::{now_ms, GapReason};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Handles of the metrics touched on every delivery and publish, looked up
/// once: `counter!` with a label hashes its key into the registry on every
/// call, which profiling showed at 7% of a fan-out's CPU. A long poll opens
/// and closes a connection's accounting on every request, so the connection
/// gauges and counters are here too.
struct Hot {
    deliveries: [Counter; TRANSPORTS.len()],
    latency: LatencyHistogram,
    publishes: Counter,
    published_bytes: Counter,
    connections: [Gauge; TRANSPORTS.len()],
    opened: [Counter; TRANSPORTS.len()],
    disconnects: [[Counter; DISCONNECT_REASONS.len()]; TRANSPORTS.len()],
    subscriptions: Gauge,
}

static HOT: OnceLock<Hot> = OnceLock::new();

/// The cached handles, once the recorder is installed (before that, the
/// macros' own lookups stand in, so nothing is bound to a no-op recorder).
fn hot() -> Option<&'static Hot> {
    if let Some(hot) = HOT.get() {
        return Some(hot);
    }
    HANDLE.get()?.as_ref()?;
    Some(HOT.get_or_init(|| Hot {
        deliveries: std::array::from_fn(
            |i| counter!("herald_deliveries_total", "transport" => TRANSPORTS[i]),
        ),
        latency: histogram!("herald_delivery_latency_seconds"),
        publishes: counter!("herald_publishes_total"),
        published_bytes: counter!("herald_published_bytes_total"),
        connections: std::array::from_fn(
            |i| gauge!("herald_connections", "transport" => TRANSPORTS[i]),
        ),
        opened: std::array::from_fn(
            |i| counter!("herald_connections_opened_total", "transport" => TRANSPORTS[i]),
        ),
        disconnects: std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                counter!(
                    "herald_disconnects_total",
                    "transport" => TRANSPORTS[i],
                    "reason" => DISCONNECT_REASONS[j]
                )
            })
        }),
        subscriptions: gauge!("herald_subscriptions"),
    }))
}

/// The cached handles and `transport`'s place among them, for a transport
/// [`TRANSPORTS`] names.
fn hot_transport(transport: &str) -> Option<(&'static Hot, usize)> {
    let slot = TRANSPORTS.iter().position(|t| *t == transport)?;
    Some((hot()?, slot))
}

/// Transports counted by the live status page, in display order.
pub const TRANSPORTS: [&str; 5] = ["ws", "sse", "poll", "socket", "echo"];

/// Why a connection ended: the `reason` label of `herald_disconnects_total`.
/// Registered for every transport, so a reason a transport never gives
/// stays at zero.
pub const DISCONNECT_REASONS: [&str; 15] = [
    "client_closed",
    "shutdown",
    "max_age",
    "token_expired",
    "channel_deleted",
    "pong_timeout",
    "idle",
    "protocol_error",
    "forbidden",
    "rate_limited",
    "too_big",
    "engine_unavailable",
    "answered",
    "timeout",
    "auth_unavailable",
];

/// Engine operations whose failures are counted (`herald_engine_errors_total`).
pub const ENGINE_OPERATIONS: [&str; 1] = ["publish"];

/// Refusals of a connection before any request is read, beside the
/// [`crate::error::CODES`] of refused requests (`herald_rejected_total`).
pub const CONNECTION_REFUSALS: [&str; 2] = ["connection_rate_limited", "too_many_connections"];

/// Outcomes of a TLS handshake (`herald_tls_handshakes_total`).
pub const TLS_HANDSHAKE_RESULTS: [&str; 3] = ["ok", "failed", "timeout"];

/// Outcomes of a certificate reload (`herald_tls_reloads_total`).
pub const TLS_RELOAD_RESULTS: [&str; 2] = ["ok", "failed"];

/// Gap reasons (`herald_gaps_total`).
const GAP_REASONS: [GapReason; 2] = [GapReason::Trimmed, GapReason::Epoch];

/// Counters the live status page reads back (the `metrics` facade is write-only).
pub struct Live {
    connections: [AtomicI64; TRANSPORTS.len()],
    pub publishes: AtomicU64,
    pub deliveries: AtomicU64,
    /// Set while someone watches `/status`; latency samples are kept only then.
    pub watching: AtomicBool,
    /// Publish-to-delivery latency in milliseconds since the last snapshot.
    pub latency: Mutex<Histogram<u64>>,
}

/// The process-wide live counters.
pub fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| Live {
        connections: Default::default(),
        publishes: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        watching: AtomicBool::new(false),
        latency: Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000, 2).expect("static histogram bounds are valid"),
        ),
    })
}

impl Live {
    /// Open connections per transport, in [`TRANSPORTS`] order.
    pub fn connections(&self) -> [i64; TRANSPORTS.len()] {
        std::array::from_fn(|i| self.connections[i].load(Ordering::Relaxed))
    }

    fn connection_delta(&self, transport: &str, delta: i64) {
        if let Some(i) = TRANSPORTS.iter().position(|t| *t == transport) {
            self.connections[i].fetch_add(delta, Ordering::Relaxed);
        }
    }
}

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the Prometheus recorder once per process and returns its handle
/// (`None` if another recorder was installed first).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            register_known_series();
            Some(handle)
        })
        .as_ref()
}

/// Folds the histogram samples recorded since the last call into their
/// buckets. The recorder keeps every sample until then, so without this a
/// server nobody scrapes grows by each delivery's sample (the exporter runs
/// it only for recorders it installs itself); the sweep calls it every second.
pub fn upkeep() {
    if let Some(Some(handle)) = HANDLE.get() {
        handle.run_upkeep();
    }
}

/// Registers every series whose labels are known in advance, at zero (and
/// the latency histogram, empty), so a scrape right after start shows each
/// documented metric.
fn register_known_series() {
    for transport in TRANSPORTS {
        gauge!("herald_connections", "transport" => transport).increment(0.0);
        counter!("herald_connections_opened_total", "transport" => transport).absolute(0);
        counter!("herald_deliveries_total", "transport" => transport).absolute(0);
        for reason in DISCONNECT_REASONS {
            counter!("herald_disconnects_total", "transport" => transport, "reason" => reason)
                .absolute(0);
        }
    }
    for reason in GAP_REASONS {
        counter!("herald_gaps_total", "reason" => reason.as_str()).absolute(0);
    }
    for result in TLS_HANDSHAKE_RESULTS {
        counter!("herald_tls_handshakes_total", "result" => result).absolute(0);
    }
    for result in TLS_RELOAD_RESULTS {
        counter!("herald_tls_reloads_total", "result" => result).absolute(0);
    }
    for operation in ENGINE_OPERATIONS {
        counter!("herald_engine_errors_total", "operation" => operation).absolute(0);
    }
    for code in crate::error::CODES.iter().chain(&CONNECTION_REFUSALS) {
        counter!("herald_rejected_total", "code" => *code).absolute(0);
    }
    for result in AUTH_HOOK_RESULTS {
        counter!("herald_auth_hook_requests_total", "result" => result).absolute(0);
    }
    for result in ["ok", "failed"] {
        counter!("herald_webhook_requests_total", "result" => result).absolute(0);
    }
    for reason in WEBHOOK_DROP_REASONS {
        counter!("herald_webhook_events_dropped_total", "reason" => reason).absolute(0);
    }
    for name in [
        "herald_webhook_events_sent_total",
        "herald_publishes_total",
        "herald_published_bytes_total",
        "herald_subscriber_lag_total",
        "herald_ws_compressed_total",
    ] {
        counter!(name).absolute(0);
    }
    for name in [
        "herald_subscriptions",
        "herald_channels",
        "herald_history_messages",
        "herald_history_bytes",
        "herald_ready",
        "herald_max_connections",
    ] {
        gauge!(name).increment(0.0);
    }
    // Registering the handle is the point: the exporter renders it empty.
    let _latency = histogram!("herald_delivery_latency_seconds");
    hot();
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!("herald_connections", "Open connections, by transport.");
    describe_counter!(
        "herald_connections_opened_total",
        "Connections opened, by transport."
    );
    describe_counter!(
        "herald_disconnects_total",
        "Connections closed, by transport and reason."
    );
    describe_gauge!(
        "herald_subscriptions",
        "Channel subscriptions held by connected subscribers."
    );
    describe_gauge!("herald_channels", "Channels this node knows.");
    describe_counter!("herald_publishes_total", "Messages published.");
    describe_counter!(
        "herald_published_bytes_total",
        Unit::Bytes,
        "Bytes of message data published."
    );
    describe_counter!(
        "herald_deliveries_total",
        "Messages written to subscribers, by transport."
    );
    describe_counter!(
        "herald_subscriber_lag_total",
        "Times a subscriber's queue overflowed and it caught up from history."
    );
    describe_counter!(
        "herald_gaps_total",
        "Gaps reported to subscribers, by reason."
    );
    describe_gauge!(
        "herald_history_messages",
        "Messages kept in history, all channels."
    );
    describe_gauge!(
        "herald_history_bytes",
        Unit::Bytes,
        "Bytes kept in history, all channels."
    );
    describe_counter!(
        "herald_engine_errors_total",
        "Engine operations that failed, by operation."
    );
    describe_counter!("herald_rejected_total", "Requests refused, by error code.");
    describe_counter!(
        "herald_auth_hook_requests_total",
        "Auth hook decisions, by result (allowed, refused, unavailable, cached)."
    );
    describe_counter!(
        "herald_webhook_requests_total",
        "Webhook requests, by result (ok, failed)."
    );
    describe_counter!(
        "herald_webhook_events_sent_total",
        "Channel events delivered to the webhook."
    );
    describe_counter!(
        "herald_webhook_events_dropped_total",
        "Channel events never delivered to the webhook, by reason."
    );
    describe_counter!(
        "herald_tls_handshakes_total",
        "TLS handshakes on tls:// listeners, by result (ok, failed, timeout)."
    );
    describe_counter!(
        "herald_tls_reloads_total",
        "Certificate reloads after a file change or SIGHUP, by result."
    );
    describe_counter!(
        "herald_ws_compressed_total",
        "WebSocket connections that negotiated permessage-deflate."
    );
    describe_gauge!(
        "herald_ready",
        "1 while the node is ready (engine reachable, not shutting down), as /readyz answers; else 0."
    );
    describe_gauge!(
        "herald_max_connections",
        "The configured connection limit (--max-connections)."
    );
    describe_histogram!(
        "herald_delivery_latency_seconds",
        Unit::Seconds,
        "Time from publish to the write of a message to a subscriber (oldest message of each write)."
    );
}

/// Records a successful publish of `bytes` of data.
/// What the auth hook answered: `allowed`, `refused`, `unavailable`, or
/// `cached` (a long poll answered from an earlier decision).
const AUTH_HOOK_RESULTS: [&str; 4] = ["allowed", "refused", "unavailable", "cached"];

/// Why webhook events were dropped.
const WEBHOOK_DROP_REASONS: [&str; 3] = ["retries_exhausted", "overflow", "lagged"];

pub fn auth_hook(result: &'static str) {
    counter!("herald_auth_hook_requests_total", "result" => result).increment(1);
}

pub fn webhook_request(result: &'static str) {
    counter!("herald_webhook_requests_total", "result" => result).increment(1);
}

pub fn webhook_sent(events: u64) {
    counter!("herald_webhook_events_sent_total").increment(events);
}

pub fn webhook_dropped(reason: &'static str, events: u64) {
    counter!("herald_webhook_events_dropped_total", "reason" => reason).increment(events);
}

pub fn published(bytes: usize) {
    live().publishes.fetch_add(1, Ordering::Relaxed);
    if let Some(hot) = hot() {
        hot.publishes.increment(1);
        hot.published_bytes.increment(bytes as u64);
        return;
    }
    counter!("herald_publishes_total").increment(1);
    counter!("herald_published_bytes_total").increment(bytes as u64);
}

/// Records an engine failure during `operation`.
pub fn engine_error(operation: &'static str) {
    counter!("herald_engine_errors_total", "operation" => operation).increment(1);
}

/// Records the end of a TLS handshake (`ok`, `failed` or `timeout`).
pub fn tls_handshake(result: &'static str) {
    counter!("herald_tls_handshakes_total", "result" => result).increment(1);
}

/// Records a certificate reload that succeeded or failed.
pub fn certificate_reload(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    counter!("herald_tls_reloads_total", "result" => result).increment(1);
}

/// Records a WebSocket that negotiated permessage-deflate.
pub fn ws_compressed() {
    counter!("herald_ws_compressed_total").increment(1);
}

/// Records a refused request.
pub fn rejected(code: &'static str) {
    counter!("herald_rejected_total", "code" => code).increment(1);
}

/// Records a gap told to a subscriber.
pub fn gap(reason: &'static str) {
    counter!("herald_gaps_total", "reason" => reason).increment(1);
}

/// Records a subscriber queue overflow (followed by catch-up from history).
pub fn lagged() {
    counter!("herald_subscriber_lag_total").increment(1);
}

/// Adjusts the number of live channel subscriptions.
pub fn subscriptions(delta: f64) {
    match hot() {
        Some(hot) => hot.subscriptions.increment(delta),
        None => gauge!("herald_subscriptions").increment(delta),
    }
}

/// Sets the gauges sampled from the engine at scrape time.
pub fn engine_totals(channels: usize, messages: usize, bytes: usize) {
    gauge!("herald_channels").set(channels as f64);
    gauge!("herald_history_messages").set(messages as f64);
    gauge!("herald_history_bytes").set(bytes as f64);
}

/// Sets `herald_ready`, sampled at scrape time as `/readyz` would answer.
pub fn ready(ready: bool) {
    gauge!("herald_ready").set(if ready { 1.0 } else { 0.0 });
}

/// Exposes the configured connection limit, so alerts can compare with it.
pub fn max_connections(limit: usize) {
    gauge!("herald_max_connections").set(limit as f64);
}

/// One client connection, counted while it lives.
pub struct Connection {
    transport: &'static str,
    opened: Instant,
    delivered: u64,
    reason: &'static str,
}

impl Connection {
    /// Counts a new connection on `transport` (`ws`, `sse`, `poll`, `socket`, `echo`).
    pub fn open(transport: &'static str) -> Self {
        match hot_transport(transport) {
            Some((hot, slot)) => {
                hot.connections[slot].increment(1.0);
                hot.opened[slot].increment(1);
            }
            None => {
                gauge!("herald_connections", "transport" => transport).increment(1.0);
                counter!("herald_connections_opened_total", "transport" => transport).increment(1);
            }
        }
        live().connection_delta(transport, 1);
        Self {
            transport,
            opened: Instant::now(),
            delivered: 0,
            reason: "client_closed",
        }
    }

    /// Records `count` messages written at once, the oldest published at `oldest_published_ms`.
    pub fn delivered(&mut self, count: usize, oldest_published_ms: u64) {
        if count == 0 {
            return;
        }
        self.delivered += count as u64;
        let latency_ms = now_ms().saturating_sub(oldest_published_ms);
        match hot_transport(self.transport) {
            Some((hot, slot)) => {
                hot.deliveries[slot].increment(count as u64);
                hot.latency.record(latency_ms as f64 / 1000.0);
            }
            None => {
                counter!("herald_deliveries_total", "transport" => self.transport)
                    .increment(count as u64);
                histogram!("herald_delivery_latency_seconds").record(latency_ms as f64 / 1000.0);
            }
        }
        let live = live();
        live.deliveries.fetch_add(count as u64, Ordering::Relaxed);
        if live.watching.load(Ordering::Relaxed) {
            live.latency.lock().saturating_record(latency_ms.max(1));
        }
    }

    /// Why the connection ends (the last reason set wins).
    pub fn set_reason(&mut self, reason: &'static str) {
        self.reason = reason;
    }

    pub fn delivered_count(&self) -> u64 {
        self.delivered
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let reason = DISCONNECT_REASONS.iter().position(|r| *r == self.reason);
        match (hot_transport(self.transport), reason) {
            (Some((hot, slot)), Some(reason)) => {
                hot.connections[slot].decrement(1.0);
                hot.disconnects[slot][reason].increment(1);
            }
            _ => {
                gauge!("herald_connections", "transport" => self.transport).decrement(1.0);
                counter!("herald_disconnects_total", "transport" => self.transport, "reason" => self.reason)
                    .increment(1);
            }
        }
        live().connection_delta(self.transport, -1);
        let duration_ms = self.opened.elapsed().as_millis() as u64;
        if self.transport == "poll" {
            tracing::debug!(
                transport = self.transport,
                duration_ms,
                delivered = self.delivered,
                reason = self.reason,
                "connection closed"
            );
        } else {
            tracing::info!(
                transport = self.transport,
                duration_ms,
                delivered = self.delivered,
                reason = self.reason,
                "connection closed"
            );
        }
    }
}
/// Whether text logs are coloured: only on a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (no-color.org), so
/// journald, log files and pipes get no escape sequences.
pub fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::{log_colour, GAP_REASONS};
    use crate::hub::GapReason;
    use std::ffi::OsStr;

    #[test]
    fn every_gap_reason_is_registered() {
        // Fails to compile when a reason is added, until it is listed.
        let listed = |reason: GapReason| match reason {
            GapReason::Trimmed | GapReason::Epoch => GAP_REASONS.contains(&reason),
        };
        assert!(GAP_REASONS.into_iter().all(listed));
        assert!(listed(GapReason::Trimmed) && listed(GapReason::Epoch));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new(""))));
    }
}
