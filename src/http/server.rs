//! The accept loop: connection limits, per-IP connection rate, header size and
//! header read timeout (slowloris), then HTTP/1.1 and HTTP/2 via hyper with
//! WebSocket upgrades; an SSE subscription is written without hyper
//! (`event_stream`), so a long-lived stream does not keep hyper's buffers.
//!
//! axum's own `serve` exposes none of these knobs, so the loop is written out
//! here, after the shape of axum's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::event_stream::{self, After, Opening};
use crate::config::ServerConfig;
use crate::limits::{retry_after_seconds, ConnectionSlot, RateLimiter};

/// Most headers in one request.
pub const MAX_HEADERS: usize = 100;

/// Connections beyond `--max-connections` that may still reach the health
/// and metrics endpoints, so that a full server can be seen from outside.
pub const OPERATIONS_SLOTS: usize = 32;

/// How often a failing `accept` is logged at most.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown`, then waits for open HTTP
/// connections to finish (WebSocket and SSE tasks end on the same signal).
/// At the connection limit, [`OPERATIONS_SLOTS`] more connections are
/// served by `operations` (health and metrics only); the rest get 503.
pub async fn run(
    listener: TcpListener,
    app: Router,
    operations: Router,
    config: Arc<ServerConfig>,
    connection_rate: Arc<RateLimiter>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let operations_slots = Arc::new(Semaphore::new(OPERATIONS_SLOTS));
    let tracker = TaskTracker::new();
    let mut accept_errors = AcceptErrors::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or similar: back off briefly
                    // instead of spinning on a listener that cannot accept.
                    accept_errors.failed(&error);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // A trusted proxy's connections carry many clients: its address is
        // not one client's to rate-limit (their publishes still are, by
        // the forwarded address).
        let limited = if config.trusted_proxies.trusts(peer.ip()) {
            Ok(())
        } else {
            connection_rate.check(peer.ip())
        };
        if let Err(wait) = limited {
            tracker.spawn(refuse(stream, too_many_connections(wait)));
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            match operations_slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let operations = operations.clone();
                    let config = config.clone();
                    let shutdown = shutdown.clone();
                    let slot = ConnectionSlot(Arc::new(slot));
                    tracker.spawn(async move {
                        serve_hyper(stream, peer, operations, &config, shutdown, slot).await;
                    });
                }
                Err(_) => {
                    tracker.spawn(refuse(stream, server_full()));
                }
            }
            continue;
        };
        let app = app.clone();
        let config = config.clone();
        let shutdown = shutdown.clone();
        let slot = ConnectionSlot(Arc::new(slot));
        tracker.spawn(async move {
            serve_connection(stream, peer, app, &config, shutdown, slot).await;
        });
    }
    // Close the listening socket now rather than when the drain ends: a new
    // connection is then refused at once (and retried on another node)
    // instead of waiting unanswered in the accept backlog.
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Failed accepts, logged at most once per [`ACCEPT_ERROR_LOG_EVERY`] with
/// the count of those not logged: out of descriptors, accept fails every
/// 20 ms, and a line each time would flood the log.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn failed(&mut self, error: &std::io::Error) {
        let now = tokio::time::Instant::now();
        if self
            .last_logged
            .is_some_and(|at| now.duration_since(at) < ACCEPT_ERROR_LOG_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(%error, also_failed = self.unlogged, "accept failed");
        self.last_logged = Some(now);
        self.unlogged = 0;
    }
}

/// The answer of the operations router to anything but health and metrics.
pub fn server_full_response() -> Response<Body> {
    server_full().response()
}

fn builder(config: &ServerConfig) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(config.max_header_bytes as u32)
        .enable_connect_protocol();
    builder
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    config: &ServerConfig,
    shutdown: CancellationToken,
    slot: ConnectionSlot,
) {
    match event_stream::open(&mut stream, peer, config).await {
        Opening::Gone => return,
        Opening::Other => {}
        Opening::EventStream(request) => {
            match event_stream::serve(&mut stream, app.clone(), request).await {
                After::Close => return,
                After::KeepAlive => {}
            }
        }
    }
    serve_hyper(stream, peer, app, config, shutdown, slot).await;
}

async fn serve_hyper(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    config: &ServerConfig,
    shutdown: CancellationToken,
    slot: ConnectionSlot,
) {
    let service = app.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(slot.clone());
        request.map(Body::new)
    });
    let builder = builder(config);
    // Boxed: hyper's connection state is large, and an event stream served
    // without hyper should not carry room for it in its task.
    let mut connection =
        Box::pin(builder.serve_connection_with_upgrades(
            TokioIo::new(stream),
            TowerToHyperService::new(service),
        ));
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Why a connection is turned away, answered as one JSON error.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    retry_after: u64,
}

impl Refusal {
    fn response(&self) -> Response<Body> {
        let body = json!({ "error": { "code": self.code, "message": self.message } }).to_string();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after));
        response
    }
}

fn too_many_connections(wait: Duration) -> Refusal {
    crate::telemetry::rejected("connection_rate_limited");
    Refusal {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "rate_limited",
        message: "too many new connections from this address; retry later",
        retry_after: retry_after_seconds(wait),
    }
}

fn server_full() -> Refusal {
    crate::telemetry::rejected("too_many_connections");
    Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "too_many_connections",
        message: "the server is at its connection limit; retry later",
        retry_after: 1,
    }
}

/// Answers one request on a refused connection, then closes it.
async fn refuse(stream: TcpStream, refusal: Refusal) {
    let service = hyper::service::service_fn(move |_request: Request<Incoming>| async move {
        Ok::<_, Infallible>(refusal.response())
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .keep_alive(false);
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        builder.serve_connection(TokioIo::new(stream), service),
    )
    .await;
}
