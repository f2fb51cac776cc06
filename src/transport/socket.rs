//! `GET /ws`: the JSON protocol that multiplexes many channels on one
//! WebSocket, with acknowledgements, per-message ids and gap reports. This is
//! what herald.js speaks.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as Frame, Utf8Bytes, WebSocket, WebSocketUpgrade};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::time::Sleep;

use super::protocol::{self, Request};
use super::publish::{data_from_json, published_json};
use super::ws::{close_code, close_for_error, close_frame, configure, Beat, Heartbeat};
use super::{connection_deadline, Context, Expiry, WRITE_BATCH_BYTES};
use crate::auth::{AuthError, Credential};
use crate::engine::{Event, Subscription};
use crate::error::ApiError;
use crate::hub::{ChannelName, Cursor, Draft, EventName};
use crate::telemetry::Connection;

/// Accepts a `/ws` connection from a client allowed to connect.
pub async fn upgrade(
    State(ctx): State<Context>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade?;
    check_origin(&ctx, &headers)?;
    let who = ctx
        .config
        .auth
        .identify(&headers, query.get("token").map(String::as_str))?;
    if ctx.config.auth.jwt.is_some() && who == Credential::Anonymous {
        return Err(AuthError::Missing.into());
    }
    Ok(configure(upgrade, &ctx).on_upgrade(move |socket| serve(ctx, socket, who, peer.ip())))
}

/// Refuses a browser `Origin` not on `--allowed-origins` (403).
pub fn check_origin(ctx: &Context, headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => Ok(()),
        Some(Ok(origin)) if ctx.config.origin_allowed(origin) => Ok(()),
        Some(origin) => Err(ApiError::OriginNotAllowed(
            origin.unwrap_or("<not text>").to_owned(),
        )),
    }
}

async fn send_text(socket: &mut WebSocket, text: String) -> bool {
    socket
        .send(Frame::Text(Utf8Bytes::from(text)))
        .await
        .is_ok()
}

/// One `/ws` connection's state.
struct Session {
    subscription: Subscription,
    who: Credential,
    peer: IpAddr,
    deadline: Pin<Box<Sleep>>,
    expiry: Expiry,
}

async fn serve(ctx: Context, mut socket: WebSocket, who: Credential, peer: IpAddr) {
    let (deadline, expiry) = connection_deadline(&ctx.config, &who);
    let mut heartbeat = Heartbeat::new(ctx.config.ws_ping_interval, ctx.config.ws_pong_timeout);
    let idle_after = ctx.config.idle_timeout;
    let mut idle = Box::pin(tokio::time::sleep(idle_after));
    let mut session = Session {
        subscription: Subscription::new(ctx.engine.clone(), ctx.config.queue_limits()),
        who,
        peer,
        deadline,
        expiry,
    };
    let mut connection = Connection::open("socket");
    loop {
        let alive = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => {
                connection.set_reason("shutdown");
                let _ = socket.send(close_frame(close_code::SERVICE_RESTART, "server shutting down")).await;
                return;
            }
            _ = &mut session.deadline => {
                let (code, reason, metric) = match session.expiry {
                    Expiry::MaxAge => (close_code::GOING_AWAY, "connection reached its maximum age; reconnect", "max_age"),
                    Expiry::Token => (close_code::POLICY, "token expired; send a refresh before exp", "token_expired"),
                };
                connection.set_reason(metric);
                let _ = socket.send(close_frame(code, reason)).await;
                return;
            }
            beat = heartbeat.next() => match beat {
                Beat::Ping => socket.send(Frame::Ping(Bytes::new())).await.is_ok(),
                Beat::TimedOut => {
                    connection.set_reason("pong_timeout");
                    let _ = socket.send(close_frame(close_code::GOING_AWAY, "no pong in time")).await;
                    false
                }
            },
            _ = &mut idle, if session.subscription.is_empty() => {
                connection.set_reason("idle");
                let _ = socket.send(close_frame(close_code::NORMAL, "idle: no subscriptions and no frames")).await;
                false
            }
            frame = socket.recv() => {
                if matches!(frame, Some(Ok(_))) {
                    heartbeat.alive();
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_after);
                }
                match frame {
                    Some(Ok(Frame::Text(text))) => {
                        let answer = handle(&ctx, &mut session, &text).await;
                        send_text(&mut socket, answer).await
                    }
                    Some(Ok(Frame::Binary(_))) => {
                        let body = json!({"code": "bad_frame", "message": "the /ws protocol uses JSON text frames"});
                        send_text(&mut socket, protocol::error(&Value::Null, body)).await
                    }
                    Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => true,
                    Some(Ok(Frame::Close(_))) => {
                        // RFC 6455 §5.5.1: answer a close; the library queued the reply.
                        let _ = socket.flush().await;
                        false
                    }
                    None => false,
                    Some(Err(error)) => {
                        connection.set_reason("protocol_error");
                        let _ = socket.send(close_for_error(&error)).await;
                        false
                    }
                }
            }
            event = session.subscription.next() => {
                write_events(&mut socket, &mut session.subscription, &mut connection, event).await
            }
        };
        if !alive {
            return;
        }
    }
}

/// Applies one client frame and returns the answer frame.
async fn handle(ctx: &Context, session: &mut Session, text: &str) -> String {
    let (request, reference) = match protocol::decode(text) {
        Ok(decoded) => decoded,
        Err(e) => {
            return protocol::error(
                &e.reference,
                json!({ "code": e.code, "message": e.message }),
            )
        }
    };
    match apply(ctx, session, request).await {
        Ok(Some(fields)) => protocol::ok(&reference, fields),
        Ok(None) => protocol::pong(&reference),
        Err(e) => protocol::error(&reference, e.body()),
    }
}

/// `Ok(None)` answers a ping.
async fn apply(
    ctx: &Context,
    session: &mut Session,
    request: Request,
) -> Result<Option<Value>, ApiError> {
    let subscription = &mut session.subscription;
    let auth = &ctx.config.auth;
    match request {
        Request::Refresh { token } => {
            let who = auth.authenticate(Some(&token))?;
            if who == Credential::Anonymous {
                return Err(AuthError::Missing.into());
            }
            let (deadline, expiry) = connection_deadline(&ctx.config, &who);
            let dropped: Vec<ChannelName> = subscription
                .cursor()
                .channels()
                .filter(|c| auth.may_subscribe(&who, c).is_err())
                .cloned()
                .collect();
            for channel in &dropped {
                subscription.remove(channel);
            }
            session.who = who;
            session.deadline = deadline;
            session.expiry = expiry;
            let dropped: Vec<&str> = dropped.iter().map(ChannelName::as_str).collect();
            Ok(Some(json!({ "unsubscribed": dropped })))
        }
        Request::Sub { channel, since } => {
            let channel = ChannelName::parse(&channel)?;
            auth.may_subscribe(&session.who, &channel)?;
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
            auth.may_publish(&session.who, &channel)?;
            super::check_publish_rate(ctx, session.peer)?;
            let event = event
                .filter(|e| !e.is_empty())
                .map(|e| EventName::parse(&e))
                .transpose()
                .map_err(|e| ApiError::bad_request("bad_event", format!("bad event name: {e}")))?;
            let (data, kind) = data_from_json(data, encoding.as_deref())?;
            if data.len() > ctx.config.max_message_size {
                return Err(ApiError::TooLarge {
                    limit: ctx.config.max_message_size,
                });
            }
            let draft = Draft {
                channel,
                event,
                data,
                kind,
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
