//! `GET /ws`: the JSON protocol that multiplexes many channels on one
//! WebSocket, with acknowledgements, per-message ids and gap reports. This is
//! what herald.js speaks.

use axum::extract::ws::{Message as Frame, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::SinkExt;
use serde_json::{json, Value};

use super::protocol::{self, Request};
use super::ws::{close_code, close_frame, configure};
use super::{connection_deadline, Context, WRITE_BATCH_BYTES};
use crate::engine::{Event, Subscription};
use crate::http::publish::{data_from_json, published_json};
use crate::http::ApiError;
use crate::hub::{ChannelName, Cursor, Draft, EventName};
use crate::telemetry::Connection;

/// Accepts a `/ws` connection.
pub async fn upgrade(State(ctx): State<Context>, upgrade: WebSocketUpgrade) -> Response {
    configure(upgrade, &ctx).on_upgrade(move |socket| serve(ctx, socket))
}

async fn send_text(socket: &mut WebSocket, text: String) -> bool {
    socket
        .send(Frame::Text(Utf8Bytes::from(text)))
        .await
        .is_ok()
}

async fn serve(ctx: Context, mut socket: WebSocket) {
    let mut subscription = Subscription::new(ctx.engine.clone(), ctx.config.subscriber_queue);
    let mut connection = Connection::open("socket");
    let mut deadline = connection_deadline(&ctx.config);
    loop {
        let alive = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => {
                connection.set_reason("shutdown");
                let _ = socket.send(close_frame(close_code::SERVICE_RESTART, "server shutting down")).await;
                return;
            }
            _ = &mut deadline => {
                connection.set_reason("max_age");
                let _ = socket
                    .send(close_frame(close_code::GOING_AWAY, "connection reached its maximum age; reconnect"))
                    .await;
                return;
            }
            frame = socket.recv() => match frame {
                Some(Ok(Frame::Text(text))) => {
                    let answer = handle(&ctx, &mut subscription, &text).await;
                    send_text(&mut socket, answer).await
                }
                Some(Ok(Frame::Binary(_))) => {
                    let body = json!({"code": "bad_frame", "message": "the /ws protocol uses JSON text frames"});
                    send_text(&mut socket, protocol::error(&Value::Null, body)).await
                }
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => true,
                Some(Ok(Frame::Close(_))) | None => false,
                Some(Err(_)) => {
                    connection.set_reason("protocol_error");
                    false
                }
            },
            event = subscription.next() => {
                write_events(&mut socket, &mut subscription, &mut connection, event).await
            }
        };
        if !alive {
            return;
        }
    }
}

/// Applies one client frame and returns the answer frame.
async fn handle(ctx: &Context, subscription: &mut Subscription, text: &str) -> String {
    let (request, reference) = match protocol::decode(text) {
        Ok(decoded) => decoded,
        Err(e) => {
            return protocol::error(
                &e.reference,
                json!({ "code": e.code, "message": e.message }),
            )
        }
    };
    match apply(ctx, subscription, request).await {
        Ok(Some(fields)) => protocol::ok(&reference, fields),
        Ok(None) => protocol::pong(&reference),
        Err(e) => protocol::error(&reference, e.body()),
    }
}

/// `Ok(None)` answers a ping.
async fn apply(
    ctx: &Context,
    subscription: &mut Subscription,
    request: Request,
) -> Result<Option<Value>, ApiError> {
    match request {
        Request::Sub { channel, since } => {
            let channel = ChannelName::parse(&channel)?;
            if !subscription.is_subscribed(&channel)
                && subscription.len() >= ctx.config.max_subscriptions_per_socket
            {
                return Err(ApiError::bad_request(
                    "too_many_subscriptions",
                    format!(
                        "this socket already has {} subscriptions, the limit",
                        ctx.config.max_subscriptions_per_socket
                    ),
                ));
            }
            let since = match since.as_deref().filter(|s| !s.is_empty()) {
                Some(raw) => Cursor::parse_since(raw, std::slice::from_ref(&channel))?[0],
                None => crate::hub::Since::Now,
            };
            let last = subscription.add(&channel, since).await?;
            Ok(Some(
                json!({ "channel": channel.as_str(), "last_id": last.to_string() }),
            ))
        }
        Request::Unsub { channel } => {
            let channel = ChannelName::parse(&channel)?;
            if !subscription.remove(&channel) {
                return Err(ApiError::bad_request(
                    "not_subscribed",
                    format!("this socket is not subscribed to {channel:?}"),
                ));
            }
            Ok(Some(json!({ "channel": channel.as_str() })))
        }
        Request::Pub {
            channel,
            data,
            event,
            encoding,
        } => {
            let channel = ChannelName::parse(&channel)?;
            let event = event
                .filter(|e| !e.is_empty())
                .map(|e| EventName::parse(&e))
                .transpose()
                .map_err(|e| ApiError::bad_request("bad_event", format!("bad event name: {e}")))?;
            let data = data_from_json(data, encoding.as_deref())?;
            if data.len() > ctx.config.max_message_size {
                return Err(ApiError::TooLarge {
                    limit: ctx.config.max_message_size,
                });
            }
            let draft = Draft {
                channel,
                event,
                data,
                idempotency_key: None,
            };
            let published = super::publish(ctx, draft).await?;
            Ok(Some(published_json(&published)))
        }
        Request::Ping => Ok(None),
    }
}

/// Writes `first` and whatever else is ready, then flushes once. False when the socket is gone.
async fn write_events(
    socket: &mut WebSocket,
    subscription: &mut Subscription,
    connection: &mut Connection,
    first: Event,
) -> bool {
    let mut event = Some(first);
    let mut written = 0;
    let mut count = 0;
    let mut oldest = u64::MAX;
    while let Some(current) = event.take() {
        let frame = match current {
            Event::Message(message) => {
                let bytes = protocol::message(&message);
                written += bytes.len();
                count += 1;
                oldest = oldest.min(message.published_at_ms);
                match Utf8Bytes::try_from(bytes) {
                    Ok(text) => Frame::Text(text),
                    Err(_) => continue,
                }
            }
            Event::Gap(gap) => Frame::Text(Utf8Bytes::from(protocol::gap(&gap))),
            Event::Deleted(channel) => {
                let body = json!({ "code": "channel_deleted", "message": format!("channel {channel} was deleted") });
                let mut frame: Value = serde_json::from_str(&protocol::error(&Value::Null, body))
                    .unwrap_or(Value::Null);
                frame["channel"] = channel.as_str().into();
                Frame::Text(Utf8Bytes::from(frame.to_string()))
            }
        };
        if socket.feed(frame).await.is_err() {
            return false;
        }
        if written < WRITE_BATCH_BYTES {
            event = subscription.try_next();
        }
    }
    let flushed = socket.flush().await.is_ok();
    connection.delivered(count, oldest);
    flushed
}
