//! The seed examples (`herald serve --demo`): the WebSocket echo that answers
//! `服务器回应:<message>`, the `clock` ticker that publishes
//! `New message at HH:MM:SS` every five seconds, and the `/demo` page with
//! the three original browser clients.
//!
//! Unlike the seed, the ticker is one task for the whole server (not a timer
//! per connection), and the clock messages go through a channel's history, so
//! two pollers sharing it both see every message.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as Frame, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::error::ApiError;
use crate::hub::{ChannelName, DataKind, Draft};
use crate::transport::ws::{close_code, close_for_error, close_frame, configure};
use crate::transport::Context;

/// The reply prefix of the seed's echo server.
pub const ECHO_PREFIX: &str = "服务器回应:";
/// The channel the ticker publishes to.
pub const CLOCK_CHANNEL: &str = "clock";

/// `/demo` and `/demo/ws`.
pub fn routes() -> Router<Context> {
    Router::new()
        .route("/demo", get(page))
        .route("/demo/ws", get(echo_upgrade))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("../assets/demo.html"))
}

async fn echo_upgrade(
    State(ctx): State<Context>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    Ok(configure(upgrade?, &ctx).on_upgrade(move |socket| echo(ctx, socket)))
}

/// The seed's echo server: every text frame comes back prefixed.
async fn echo(ctx: Context, mut socket: WebSocket) {
    let mut connection = crate::telemetry::Connection::open("echo");
    loop {
        let frame = tokio::select! {
            _ = ctx.shutdown.cancelled() => {
                connection.set_reason("shutdown");
                let _ = socket.send(close_frame(close_code::SERVICE_RESTART, "server shutting down")).await;
                break;
            }
            frame = socket.recv() => frame,
        };
        let reply = match frame {
            Some(Ok(Frame::Text(text))) => format!("{ECHO_PREFIX}{}", text.as_str()),
            Some(Ok(Frame::Binary(data))) => {
                format!("{ECHO_PREFIX}{}", String::from_utf8_lossy(&data))
            }
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => continue,
            Some(Ok(Frame::Close(_))) => {
                let _ = futures_util::SinkExt::flush(&mut socket).await;
                break;
            }
            Some(Err(error)) => {
                connection.set_reason("protocol_error");
                let _ = socket.send(close_for_error(&error)).await;
                break;
            }
            _ => break,
        };
        if socket
            .send(Frame::Text(Utf8Bytes::from(reply)))
            .await
            .is_err()
        {
            break;
        }
        connection.delivered(1, crate::hub::now_ms());
    }
}

/// The text the seed's SSE server sent, for the current local time.
pub fn clock_message() -> String {
    format!("New message at {}", chrono::Local::now().format("%H:%M:%S"))
}

/// Publishes the clock message every tick until shutdown.
pub async fn ticker(ctx: Context) {
    let channel = ChannelName::parse(CLOCK_CHANNEL).expect("\"clock\" is a valid channel name");
    let mut tick = tokio::time::interval(ctx.config.demo_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let draft = Draft {
            channel: channel.clone(),
            event: None,
            data: Bytes::from(clock_message()),
            kind: DataKind::Text,
            idempotency_key: None,
        };
        if let Err(error) = crate::transport::publish(&ctx, draft).await {
            tracing::warn!(%error, "demo clock could not publish");
        }
    }
}
