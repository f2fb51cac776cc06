//! The HTTP face of herald: one router on one port for the publish API, the
//! three transports, the browser client, the pages and health checks.

pub mod assets;
pub mod dispatch;
pub mod lean;
pub mod publish;
pub mod server;
pub mod status;
pub mod stream;
pub mod subscribe;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{Listen, ServerConfig};
use crate::demo;
use crate::engine::Engine;
use crate::telemetry;
use crate::transport::{self, Context};

pub use crate::error::ApiError;
use crate::limits::RateLimiter;

/// Builds the router over an engine.
pub fn router(ctx: Context) -> Router {
    let mut router = Router::new()
        .route("/", get(assets::console))
        .route("/herald.js", get(assets::client_script))
        .route("/healthz", get(healthz))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status::page))
        .route("/status/stream", get(status::stream))
        .route("/openapi.yaml", get(assets::openapi))
        .route("/pub", axum::routing::post(publish::publish_batch))
        .route(
            "/pub/{channel}",
            get(publish::channel_info)
                .post(publish::publish_one)
                .delete(publish::delete_channel),
        )
        .route("/pub/{channel}/presence", get(publish::channel_presence))
        .route("/sub/{channels}", get(subscribe::subscribe))
        .route("/ws", get(transport::socket::upgrade));
    if ctx.config.demo {
        router = router.merge(demo::routes());
    }
    let cors = cors(&ctx.config);
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors)
        .with_state(ctx)
}

/// What a connection beyond `--max-connections` may still reach: health,
/// readiness and metrics, so that monitoring sees a full server as full
/// rather than as down. Everything else is the usual 503.
fn operations_router(ctx: Context) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { server::server_full_response() })
        .with_state(ctx)
}

/// CORS for browsers on other origins, following `--allowed-origins`; preflights answered.
fn cors(config: &ServerConfig) -> CorsLayer {
    let origins = match &config.allowed_origins {
        Some(list) if !list.iter().any(|o| o == "*") => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
        _ => AllowOrigin::any(),
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(Duration::from_secs(3600))
}

async fn not_found(State(ctx): State<Context>, headers: HeaderMap, body: Body) -> ApiError {
    publish::discard_body(&ctx.config, &headers, body).await;
    ApiError::NotFound("no such endpoint".into())
}

async fn method_not_allowed(
    State(ctx): State<Context>,
    headers: HeaderMap,
    body: Body,
) -> ApiError {
    publish::discard_body(&ctx.config, &headers, body).await;
    ApiError::MethodNotAllowed
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn metrics(State(ctx): State<Context>) -> impl IntoResponse {
    // As /readyz answers; an engine that takes a second to answer a ping is
    // not ready, and the scrape does not wait for it longer than that.
    let ready = !ctx.shutdown.is_cancelled()
        && tokio::time::timeout(Duration::from_secs(1), ctx.engine.is_ready())
            .await
            .unwrap_or(false);
    telemetry::ready(ready);
    let totals = ctx.engine.totals();
    telemetry::engine_totals(
        totals.channels,
        totals.history_messages,
        totals.history_bytes,
    );
    let body = telemetry::install().map(|h| h.render()).unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn readyz(State(ctx): State<Context>) -> impl IntoResponse {
    let engine = ctx.engine.name();
    if ctx.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down", "engine": engine })),
        );
    }
    if ctx.engine.is_ready().await {
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "engine": engine })),
        )
    } else {
        let status = ctx.engine.unready_reason().unwrap_or("engine_unavailable");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": status, "engine": engine })),
        )
    }
}

/// A server running in the background (for `herald serve` and for tests).
pub struct RunningServer {
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener, as bound (port 0 resolved).
    pub listeners: Vec<Listen>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Signals shutdown: stop accepting, end every stream with its transport's goodbye.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that is cancelled when the server shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The address of the first TLS listener, if any.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.listeners.iter().find(|l| l.tls).map(|l| l.addr)
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .map_err(|e| std::io::Error::other(format!("server task failed: {e}")))?
    }
}

/// Opens the configured engine, binds `config.listen` and serves.
pub async fn start(config: ServerConfig) -> std::io::Result<RunningServer> {
    let engine = crate::engine::open(&config.engine_settings())
        .await
        .map_err(|e| std::io::Error::other(format!("could not open the engine: {e}")))?;
    start_with_engine(config, engine).await
}

/// Binds every `config.listen` address and serves with `engine`.
pub async fn start_with_engine(
    config: ServerConfig,
    engine: Arc<dyn Engine>,
) -> std::io::Result<RunningServer> {
    telemetry::install();
    telemetry::max_connections(config.max_connections);
    let certificates = match &config.tls {
        Some(files) => Some(
            tls::Certificates::load(files.clone())
                .map_err(|e| std::io::Error::other(format!("TLS: {e}")))?,
        ),
        None => None,
    };
    let mut bound = Vec::new();
    for listen in config.listen.iter() {
        let listener = TcpListener::bind(listen.addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("could not listen on {listen}: {e}"))
        })?;
        let addr = listener.local_addr()?;
        let acceptor = match (listen.tls, &certificates) {
            (false, _) => None,
            (true, Some(certificates)) => Some(tls::acceptor(certificates.clone())),
            (true, None) => {
                return Err(std::io::Error::other(format!(
                    "{listen} needs --tls-cert and --tls-key"
                )))
            }
        };
        bound.push((
            listener,
            acceptor,
            Listen {
                addr,
                tls: listen.tls,
            },
        ));
    }
    let shutdown = CancellationToken::new();
    let (status_sender, status) = tokio::sync::watch::channel(Arc::<str>::from("{}"));
    let limits = |rate: f64| {
        Arc::new(RateLimiter::new(
            rate,
            rate * 2.0,
            config.rate_limit_loopback,
        ))
    };
    let connection_rate = limits(config.connection_rate);
    let publish_rate = limits(config.publish_rate);
    let auth_hook = config.auth_hook.as_ref().map(|hook| {
        Arc::new(crate::hooks::AuthHook::new(
            hook.url.clone(),
            hook.timeout,
            hook.cache,
        ))
    });
    let ctx = Context {
        auth_hook,
        engine: engine.clone(),
        channels: Arc::new(config.channel_policy()),
        config: Arc::new(config),
        shutdown: shutdown.clone(),
        status,
        publish_rate: publish_rate.clone(),
    };
    let mut background = Vec::new();
    background.push(tokio::spawn(sweep(
        engine.clone(),
        [connection_rate.clone(), publish_rate],
        shutdown.clone(),
    )));
    background.push(tokio::spawn(status::ticker(
        engine.clone(),
        status_sender,
        shutdown.clone(),
    )));
    if ctx.config.demo {
        background.push(tokio::spawn(demo::ticker(ctx.clone())));
    }
    if let Some(webhook) = ctx.config.webhook.clone() {
        background.push(tokio::spawn(
            webhook.run(engine.channel_events(), shutdown.clone()),
        ));
    }
    if let Some(certificates) = certificates {
        background.push(tokio::spawn(tls::watch(
            certificates,
            ctx.config.tls_reload_interval,
            shutdown.clone(),
        )));
    }
    let service = server::Service {
        operations: operations_router(ctx.clone()),
        slots: server::Slots::new(ctx.config.max_connections),
        config: ctx.config.clone(),
        app: router(ctx.clone()),
        ctx,
        connection_rate,
    };
    let listeners: Vec<Listen> = bound.iter().map(|(_, _, listen)| *listen).collect();
    let mut serving = Vec::new();
    for (listener, acceptor, listen) in bound {
        let service = service.clone();
        let stop = shutdown.clone();
        serving.push(tokio::spawn(async move {
            tracing::info!(addr = %listen, "listening");
            server::run(listener, acceptor, service, stop).await
        }));
    }
    drop(service);
    let task = tokio::spawn(async move {
        let mut served = Ok(());
        for listener in serving {
            let result = listener
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(format!("listener failed: {e}"))));
            if served.is_ok() {
                served = result;
            }
        }
        for task in background {
            task.abort();
            let _ = task.await;
        }
        served
    });
    tracing::info!(engine = engine.name(), "serving");
    let addr = listeners
        .first()
        .map(|l| l.addr)
        .ok_or_else(|| std::io::Error::other("no address to listen on"))?;
    Ok(RunningServer {
        addr,
        listeners,
        shutdown,
        task,
    })
}

/// Trims history by age and forgets idle channels, once a second.
async fn sweep(
    engine: Arc<dyn Engine>,
    limiters: [Arc<RateLimiter>; 2],
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                engine.sweep();
                limiters.iter().for_each(|l| l.sweep());
                telemetry::upkeep();
            }
        }
    }
}
