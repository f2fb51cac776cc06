//! The live status page: `GET /status` (the page) and `GET /status/stream`
//! (an SSE stream of one JSON snapshot per second, which the page charts).
//!
//! One task computes the snapshot for all viewers, and only while someone is
//! watching; rates are differences between consecutive snapshots.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{Html, Response};
use bytes::Bytes;
use futures_util::stream;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::hub::ChannelName;
use crate::telemetry::{live, TRANSPORTS};
use crate::transport::Context;

/// How many channels the page lists.
const BUSIEST: usize = 10;

/// Open `/status/stream` responses; snapshots are computed only while there are some.
static VIEWERS: AtomicUsize = AtomicUsize::new(0);

/// Counts one viewer while it lives.
struct Viewer;

impl Viewer {
    fn new() -> Self {
        VIEWERS.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        VIEWERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The latest snapshot, as JSON text, shared by every viewer.
pub type Snapshots = watch::Receiver<Arc<str>>;

/// `GET /status`.
pub async fn page() -> Html<&'static str> {
    Html(include_str!("../../assets/status.html"))
}

/// `GET /status/stream`: `data: {snapshot}` every second until shutdown.
pub async fn stream(State(ctx): State<Context>) -> Response {
    let mut snapshots = ctx.status.clone();
    snapshots.mark_changed();
    let shutdown = ctx.shutdown.clone();
    let state = (snapshots, shutdown, Viewer::new());
    let body = stream::unfold(state, |(mut snapshots, shutdown, viewer)| async move {
        tokio::select! {
            _ = shutdown.cancelled() => None,
            changed = snapshots.changed() => {
                changed.ok()?;
                let json = snapshots.borrow_and_update().clone();
                let chunk = Bytes::from(format!("data: {json}\n\n"));
                Some((Ok::<_, Infallible>(chunk), (snapshots, shutdown, viewer)))
            }
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Computes a snapshot every second while anyone watches.
pub async fn ticker(
    engine: Arc<dyn Engine>,
    sender: watch::Sender<Arc<str>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = live();
    let mut previous = Instant::now();
    let mut publishes = live.publishes.load(Ordering::Relaxed);
    let mut deliveries = live.deliveries.load(Ordering::Relaxed);
    let mut sequences: HashMap<ChannelName, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let watching = VIEWERS.load(Ordering::Relaxed) > 0;
        live.watching.store(watching, Ordering::Relaxed);
        let now = Instant::now();
        let seconds = now.duration_since(previous).as_secs_f64().max(0.001);
        previous = now;
        let (p, d) = (
            live.publishes.load(Ordering::Relaxed),
            live.deliveries.load(Ordering::Relaxed),
        );
        let publish_rate = (p - publishes) as f64 / seconds;
        let delivery_rate = (d - deliveries) as f64 / seconds;
        (publishes, deliveries) = (p, d);
        if !watching {
            sequences.clear();
            continue;
        }
        let latency = {
            let mut histogram = live.latency.lock();
            let snapshot = if histogram.is_empty() {
                json!(null)
            } else {
                json!({
                    "p50": histogram.value_at_quantile(0.50),
                    "p90": histogram.value_at_quantile(0.90),
                    "p99": histogram.value_at_quantile(0.99),
                    "max": histogram.max(),
                })
            };
            histogram.reset();
            snapshot
        };
        let activity = engine.activity();
        let mut busiest: Vec<(f64, &crate::hub::ChannelActivity)> = activity
            .iter()
            .map(|a| {
                let before = sequences.get(&a.channel).copied().unwrap_or(a.last_seq);
                ((a.last_seq.saturating_sub(before)) as f64 / seconds, a)
            })
            .collect();
        busiest.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(b.1.subscribers.cmp(&a.1.subscribers))
        });
        let busiest: Vec<_> = busiest
            .iter()
            .take(BUSIEST)
            .map(|(rate, a)| json!({ "channel": a.channel.as_str(), "messages_per_sec": rate, "subscribers": a.subscribers }))
            .collect();
        sequences = activity
            .iter()
            .map(|a| (a.channel.clone(), a.last_seq))
            .collect();
        let connections: serde_json::Map<String, serde_json::Value> = TRANSPORTS
            .iter()
            .zip(live.connections())
            .map(|(t, n)| (t.to_string(), json!(n)))
            .collect();
        let snapshot = json!({
            "time_ms": crate::hub::now_ms(),
            "engine": engine.name(),
            "connections": connections,
            "publishes_per_sec": publish_rate,
            "deliveries_per_sec": delivery_rate,
            "publishes_total": p,
            "deliveries_total": d,
            "latency_ms": latency,
            "channels": activity.len(),
            "busiest": busiest,
        });
        let _ = sender.send(Arc::from(snapshot.to_string()));
    }
}
