//! The seed examples (`herald serve --demo`): the WebSocket echo that answers
//! `服务器回应:<message>`, the `clock` ticker that publishes
//! `New message at HH:MM:SS` every five seconds, and the `/demo` page with
//! the three original browser clients.
//!
//! Unlike the seed, the ticker is one task for the whole server (not a timer
//! per connection), and the clock messages go through a channel's history, so
//! two pollers sharing it both see every message.

use axum::extract::{Request, State};
use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::error::ApiError;
use crate::hub::{ChannelName, DataKind, Draft};
use crate::telemetry::Connection;
use crate::transport::websocket::{Handshake, Next, WebSocket};
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

async fn echo_upgrade(State(ctx): State<Context>, request: Request) -> Result<Response, ApiError> {
    let (mut parts, _body) = request.into_parts();
    let handshake = Handshake::check(&mut parts)?;
    Ok(handshake.accept(&ctx, echo))
}

/// The seed's echo server: every message comes back as text, prefixed. It
/// runs on herald's own WebSocket (`transport::websocket`), with the same
/// limits and close codes as the other sockets, and like the seed it sends
/// no pings.
async fn echo(mut socket: WebSocket) {
    let mut connection = Connection::open("echo");
    loop {
        let reply = match socket.next(None).await {
            Next::Text(data) | Next::Binary(data) => {
                format!("{ECHO_PREFIX}{}", String::from_utf8_lossy(&data))
            }
            Next::Close(close) => return socket.close(close, &mut connection).await,
            // Nothing else reaches a socket without a subscription or a deadline.
            Next::Event(_) | Next::Expired(_) | Next::Gone => return,
        };
        if socket.send_text(&reply).await.is_err() {
            return;
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
