//! The accept loop: connection limits, per-IP connection rate, the TLS
//! handshake on a `tls://` listener (cut after the header read timeout,
//! like a slow head), header size and header read timeout (slowloris),
//! then HTTP/1.1 and HTTP/2 via hyper with WebSocket upgrades; event
//! streams, publishes and long polls over HTTP/1 are served without hyper
//! ([`lean`](super::lean)) for as long as a connection asks only for them.
//! Over TLS, HTTP/2 is chosen by ALPN; everything above this loop sees a [`Stream`] and cannot
//! tell TLS from TCP.
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
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::lean::{self, Served};
use super::stream::Stream;
use crate::config::ServerConfig;
use crate::limits::{retry_after_seconds, ConnectionSlot, RateLimiter};
use crate::transport::Context;

/// Most headers in one request.
pub const MAX_HEADERS: usize = 100;

/// Connections beyond `--max-connections` that may still reach the health
/// and metrics endpoints, so that a full server can be seen from outside.
pub const OPERATIONS_SLOTS: usize = 32;

/// The fewest connections answered a refusal (429, 503) at once. Beyond
/// the refusal slots a refused connection is closed without an answer, so
/// that refusals never hold more descriptors than the reserve
/// `--max-connections` leaves (a flood of half-open connections at a full
/// server must not exhaust them). See [`refusal_slots`].
pub const REFUSAL_SLOTS: usize = 64;

/// Refusal slots for a server: half of the open files left over by the
/// connection and operations slots (the other half stays for Redis, the
/// data store and the process), at least [`REFUSAL_SLOTS`], at most 4,096.
pub fn refusal_slots(max_connections: usize, open_files: u64) -> usize {
    let open_files = usize::try_from(open_files).unwrap_or(usize::MAX);
    let spare = open_files
        .saturating_sub(max_connections)
        .saturating_sub(OPERATIONS_SLOTS);
    (spare / 2).clamp(REFUSAL_SLOTS, 4_096)
}

/// Most concurrent streams (requests, event streams) on one HTTP/2 connection.
pub const H2_MAX_STREAMS: u32 = 256;

/// How often a failing `accept` is logged at most.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(5);

/// The connection slots every listener of a server draws from.
#[derive(Clone)]
pub struct Slots {
    clients: Arc<Semaphore>,
    operations: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
}

impl Slots {
    /// `--max-connections` slots, plus [`OPERATIONS_SLOTS`] and the
    /// [`refusal_slots`] the open-file limit leaves room for.
    pub fn new(max_connections: usize) -> Self {
        let (open_files, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 0));
        Self {
            clients: Arc::new(Semaphore::new(max_connections)),
            operations: Arc::new(Semaphore::new(OPERATIONS_SLOTS)),
            refusals: Arc::new(Semaphore::new(refusal_slots(max_connections, open_files))),
        }
    }
}

/// What one listener serves with: the routers, the configuration and the
/// limits shared by every listener of the server.
#[derive(Clone)]
pub struct Service {
    pub app: Router,
    /// The router's state, for the endpoints the lean path calls directly.
    pub ctx: Context,
    pub operations: Router,
    pub config: Arc<ServerConfig>,
    pub connection_rate: Arc<RateLimiter>,
    pub slots: Slots,
}

/// Serves on `listener` (TLS with `tls`) until `shutdown`, then waits for
/// open HTTP connections to finish (WebSocket and SSE tasks end on the same
/// signal). At the connection limit, [`OPERATIONS_SLOTS`] more connections
/// are served by the operations router (health and metrics only); the rest
/// get 503.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Service,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Service {
        app,
        ctx,
        operations,
        config,
        connection_rate,
        slots,
    } = service;
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
        let tls = tls.clone();
        let timeout = config.header_read_timeout;
        if let Err(wait) = limited {
            let refusal = too_many_connections(wait);
            let Ok(permit) = slots.refusals.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            tracker.spawn(async move {
                if let Some(stream) = secure(stream, peer, tls, timeout).await {
                    refuse(stream, refusal).await;
                }
                drop(permit);
            });
            continue;
        }
        let Ok(slot) = slots.clients.clone().try_acquire_owned() else {
            match slots.operations.clone().try_acquire_owned() {
                Ok(slot) => {
                    let operations = operations.clone();
                    let config = config.clone();
                    let shutdown = shutdown.clone();
                    let slot = ConnectionSlot(Arc::new(slot));
                    tracker.spawn(async move {
                        if let Some(stream) = secure(stream, peer, tls, timeout).await {
                            serve_hyper(stream, peer, operations, &config, shutdown, slot).await;
                        }
                    });
                }
                Err(_) => {
                    let refusal = server_full();
                    let Ok(permit) = slots.refusals.clone().try_acquire_owned() else {
                        drop(stream);
                        continue;
                    };
                    tracker.spawn(async move {
                        if let Some(stream) = secure(stream, peer, tls, timeout).await {
                            refuse(stream, refusal).await;
                        }
                        drop(permit);
                    });
                }
            }
            continue;
        };
        let app = app.clone();
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        let slot = ConnectionSlot(Arc::new(slot));
        tracker.spawn(async move {
            let handshake = tokio::select! {
                stream = secure(stream, peer, tls, timeout) => stream,
                _ = shutdown.cancelled() => None,
            };
            if let Some(stream) = handshake {
                serve_connection(stream, peer, app, &ctx, shutdown, slot).await;
            }
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

/// The connection as served: TCP as accepted, or TLS once its handshake is
/// done. A handshake that does not finish within `timeout` (the header read
/// timeout: a TLS client that stalls is a slowloris like any other) or
/// fails is dropped.
async fn secure(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    timeout: Duration,
) -> Option<Stream> {
    let Some(acceptor) = tls else {
        return Some(Stream::plain(tcp));
    };
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            crate::telemetry::tls_handshake("ok");
            Some(Stream::tls(stream))
        }
        Ok(Err(error)) => {
            crate::telemetry::tls_handshake("failed");
            tracing::debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            crate::telemetry::tls_handshake("timeout");
            tracing::debug!(%peer, "TLS handshake not finished in time");
            None
        }
    }
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
        .max_concurrent_streams(H2_MAX_STREAMS)
        // HTTP/2 has no header read timeout; a peer that stops answering
        // pings is dropped instead, as a silent WebSocket is.
        .keep_alive_interval(config.ws_ping_interval)
        .keep_alive_timeout(config.ws_pong_timeout);
    builder
}

async fn serve_connection(
    mut stream: Stream,
    peer: SocketAddr,
    app: Router,
    ctx: &Context,
    shutdown: CancellationToken,
    slot: ConnectionSlot,
) {
    let config = &*ctx.config;
    if stream.is_h2() {
        // HTTP/2 (by ALPN): every request, event streams included, is
        // hyper's; streams share the connection.
        return serve_hyper(stream, peer, app, config, shutdown, slot).await;
    }
    let lean = lean::Peer {
        addr: peer,
        ctx,
        slot: &slot,
        config,
        shutdown: &shutdown,
    };
    match lean::serve(&mut stream, &app, lean).await {
        Served::Closed => {}
        Served::Hyper => serve_hyper(stream, peer, app, config, shutdown, slot).await,
    }
}

async fn serve_hyper(
    stream: Stream,
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
async fn refuse(stream: Stream, refusal: Refusal) {
    let service = hyper::service::service_fn(move |_request: Request<Incoming>| async move {
        Ok::<_, Infallible>(refusal.response())
    });
    if stream.is_h2() {
        // An HTTP/2 client (by ALPN) reads the refusal only as HTTP/2: answer
        // what it asks within a moment, then say goodbye (GOAWAY).
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new()).max_concurrent_streams(8);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        if tokio::time::timeout(Duration::from_secs(1), connection.as_mut())
            .await
            .is_err()
        {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_take_half_the_spare_descriptors_within_bounds() {
        // The default limit under 20,000 open files leaves 2,000 spare.
        assert_eq!(refusal_slots(18_000, 20_000), 984);
        assert_eq!(refusal_slots(100_000, 20_000), REFUSAL_SLOTS);
        assert_eq!(refusal_slots(1_000, 1 << 20), 4_096);
    }
}
