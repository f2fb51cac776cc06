//! `GET /ws`: the JSON protocol that multiplexes many channels on one
//! WebSocket, with acknowledgements, per-message ids and gap reports. This is
//! what herald.js speaks.
//!
//! The socket is herald's own RFC 6455 implementation (`websocket`), as on
//! the raw `/sub` path: the same handshake, decoder, limits, close codes and
//! heartbeat. A message's `msg` frame carries nothing particular to one
//! subscriber, so it is built once per message (header and JSON) and the
//! same bytes go to every `/ws` socket, batched like raw frames. This file
//! adds what the protocol means: ops from the client (`protocol`), answers,
//! gap and deletion reports, the idle timeout and token refresh.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use super::access::Caller;
use super::protocol::{self, Request as Op};
use super::publish::{data_from_json, published_json};
use super::websocket::frame::{self, opcode};
use super::websocket::{Batch, Close, Handshake, Next, Step, WebSocket};
use super::{connection_deadline, Context};
use crate::auth::{AuthError, Credential};
use crate::engine::subscription::Identity;
use crate::engine::{Event, Subscription};
use crate::error::ApiError;
use crate::hooks::auth::ForwardedHeaders;
use crate::hub::presence::new_client_id;
use crate::hub::{ChannelName, Cursor, Draft, EventName, Message, Wire};
use crate::telemetry::Connection;

/// Accepts a `/ws` connection from a client allowed to connect: a valid
/// handshake (400), an allowed origin (403), credentials if required (401).
pub async fn upgrade(
    State(ctx): State<Context>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, _body) = request.into_parts();
    let handshake = Handshake::check(&mut parts)?;
    check_origin(&ctx, &parts.headers)?;
    let who = ctx
        .config
        .auth
        .identify(&parts.headers, query.get("token").map(String::as_str))?;
    // Without a token a socket can only reach anonymous channels: refuse it
    // at once when there are none.
    if ctx.config.auth.jwt.is_some()
        && who == Credential::Anonymous
        && !ctx.channels.has_anonymous()
    {
        return Err(AuthError::Missing.into());
    }
    let caller = Caller {
        who,
        transport: "ws-protocol",
        client: new_client_id(),
        ip: super::publish::client_ip(&ctx, peer.ip(), &parts.headers),
        // Kept for the auth hook only (a cookie can be long).
        headers: match &ctx.auth_hook {
            Some(_) => ForwardedHeaders::of(&parts.headers),
            None => ForwardedHeaders::default(),
        },
        poll_credential: None,
    };
    Ok(handshake.accept(&ctx.clone(), move |socket| serve(ctx, socket, caller)))
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

/// One `/ws` connection's state.
struct Session {
    subscription: Subscription,
    caller: Caller,
}

async fn serve(ctx: Context, mut socket: WebSocket, caller: Caller) {
    let mut connection = Connection::open("socket");
    socket.set_heartbeat(ctx.config.ws_ping_interval, ctx.config.ws_pong_timeout);
    let (deadline, why) = connection_deadline(&ctx.config, &caller.who);
    socket.set_deadline(deadline, why);
    socket.set_idle_timeout(ctx.config.idle_timeout);
    let queue = ctx.config.queue_limits();
    let subscription = if ctx.tracks_presence() {
        let identity = Identity {
            entry: caller.entry(),
            linger: None,
            listen: true,
        };
        Subscription::with_identity(ctx.engine.clone(), queue, identity)
    } else {
        Subscription::new(ctx.engine.clone(), queue)
    };
    let mut session = Session {
        subscription,
        caller,
    };
    loop {
        let step = match socket.next(Some(&mut session.subscription)).await {
            Next::Text(text) => {
                // Boxed: the connection's future (its memory for as long as
                // it is open) holds room for a wait, not for an op.
                let answer = Box::pin(handle(&ctx, &mut session, &mut socket, &text)).await;
                answered(socket.send_text(&answer).await)
            }
            Next::Binary(_) => {
                let body = json!({"code": "bad_frame", "message": "the /ws protocol uses JSON text frames"});
                answered(socket.send_text(&protocol::error(&Value::Null, body)).await)
            }
            Next::Event(event) => {
                socket
                    .deliver(&mut session.subscription, &mut connection, event, add_event)
                    .await
            }
            Next::Expired(why) => Step::Close(Close::expired(
                why,
                "token expired; send a refresh before exp",
            )),
            Next::Close(close) => Step::Close(close),
            Next::Gone => Step::Gone,
        };
        if !socket.settle(step, &mut connection).await {
            return;
        }
    }
}

fn answered(sent: std::io::Result<()>) -> Step {
    match sent {
        Ok(()) => Step::Continue,
        Err(_) => Step::Gone,
    }
}

/// Applies one client frame (valid UTF-8: the decoder checked) and returns the answer frame.
async fn handle(
    ctx: &Context,
    session: &mut Session,
    socket: &mut WebSocket,
    text: &Bytes,
) -> String {
    let text = std::str::from_utf8(text).unwrap_or_default();
    let (request, reference) = match protocol::decode(text) {
        Ok(decoded) => decoded,
        Err(e) => {
            return protocol::error(
                &e.reference,
                json!({ "code": e.code, "message": e.message }),
            )
        }
    };
    match apply(ctx, session, socket, request).await {
        Ok(Some(fields)) => protocol::ok(&reference, fields),
        Ok(None) => protocol::pong(&reference),
        Err(e) => protocol::error(&reference, e.body()),
    }
}

/// `Ok(None)` answers a ping.
async fn apply(
    ctx: &Context,
    session: &mut Session,
    socket: &mut WebSocket,
    request: Op,
) -> Result<Option<Value>, ApiError> {
    let subscription = &mut session.subscription;
    let auth = &ctx.config.auth;
    match request {
        Op::Refresh { token } => {
            let who = auth.authenticate(Some(&token))?;
            if who == Credential::Anonymous {
                return Err(AuthError::Missing.into());
            }
            let (deadline, why) = connection_deadline(&ctx.config, &who);
            let dropped: Vec<ChannelName> = subscription
                .cursor()
                .channels()
                .filter(|c| super::access::may_subscribe(ctx, &who, c).is_err())
                .cloned()
                .collect();
            for channel in &dropped {
                subscription.remove(channel);
            }
            session.caller.who = who;
            socket.set_deadline(deadline, why);
            let dropped: Vec<&str> = dropped.iter().map(ChannelName::as_str).collect();
            Ok(Some(json!({ "unsubscribed": dropped })))
        }
        Op::Sub { channel, since } => {
            let channel = ChannelName::parse(&channel)?;
            let entry = super::access::authorize_subscribe(ctx, &session.caller, &channel).await?;
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
            let last = subscription.add_as(&channel, since, entry).await?;
            Ok(Some(
                json!({ "channel": channel.as_str(), "last_id": last.to_string() }),
            ))
        }
        Op::Unsub { channel } => {
            let channel = ChannelName::parse(&channel)?;
            if !subscription.remove(&channel) {
                return Err(ApiError::bad_request(
                    "not_subscribed",
                    format!("this socket is not subscribed to {channel:?}"),
                ));
            }
            Ok(Some(json!({ "channel": channel.as_str() })))
        }
        Op::Pub {
            channel,
            data,
            event,
            encoding,
        } => {
            let channel = ChannelName::parse(&channel)?;
            super::access::authorize_client_publish(ctx, &session.caller, &channel).await?;
            super::check_publish_rate(ctx, session.caller.ip)?;
            let event = event
                .filter(|e| !e.is_empty())
                .map(|e| EventName::parse(&e))
                .transpose()
                .map_err(|e| ApiError::bad_request("bad_event", format!("bad event name: {e}")))?;
            let (data, kind) = data_from_json(data, encoding.as_deref())?;
            let limit = ctx.channels.options(&channel).max_message_size;
            if data.len() > limit {
                return Err(ApiError::TooLarge { limit });
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
        Op::Presence { channel } => {
            let channel = ChannelName::parse(&channel)?;
            super::access::authorize_subscribe(ctx, &session.caller, &channel).await?;
            let presence = super::presence::listing(ctx, &channel).await?;
            Ok(Some(json!({ "presence": presence })))
        }
        Op::Ping => Ok(None),
    }
}

/// A subscription event on a `/ws` socket: a message is its shared frame;
/// gaps and deletions are reported, and the socket stays open.
fn add_event(event: Event, batch: &mut Batch) -> ControlFlow<Close> {
    match event {
        Event::Message(message) => {
            let frame = message_frame(&message, batch.deflate());
            batch.push_message(frame, message.published_at_ms())
        }
        Event::Gap(gap) => batch.push(text_frame(protocol::gap(&gap))),
        Event::Presence(notice) => {
            let json = &notice.json;
            batch.push(frame::build(opcode::TEXT, json.len(), |out| {
                out.extend_from_slice(json)
            }))
        }
        Event::Deleted(channel) => {
            let body = json!({ "code": "channel_deleted", "message": format!("channel {channel} was deleted") });
            let mut frame: Value =
                serde_json::from_str(&protocol::error(&Value::Null, body)).unwrap_or(Value::Null);
            frame["channel"] = channel.as_str().into();
            batch.push(text_frame(frame.to_string()));
        }
    }
    ControlFlow::Continue(())
}

/// The `msg` frame for `message`, header and JSON: built by the first `/ws`
/// socket that needs it, then the same bytes for every other; with
/// `deflate`, the compressed frame, likewise built once.
fn message_frame(message: &Message, deflate: bool) -> Bytes {
    let plain = plain_message_frame(message);
    if !deflate {
        return plain;
    }
    message.encoded(Wire::SocketFrameDeflate, |_| {
        super::websocket::deflate::compress_frame(&plain)
    })
}

fn plain_message_frame(message: &Message) -> Bytes {
    message.encoded(Wire::SocketFrame, |m| {
        frame::build(opcode::TEXT, protocol::message_capacity(m), |out| {
            protocol::write_message(out, m)
        })
    })
}

fn text_frame(text: String) -> Bytes {
    frame::build(opcode::TEXT, text.len(), |out| {
        out.extend_from_slice(text.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::MessageId;

    #[test]
    fn a_msg_frame_is_one_text_frame_built_once_and_shared() {
        let channel = ChannelName::parse("news").unwrap();
        let message = Message::new(
            channel,
            MessageId::new(1, 2),
            None,
            Bytes::from(vec![b'x'; 300]),
            crate::hub::DataKind::Text,
            0,
        );
        let first = message_frame(&message, false);
        let again = message_frame(&message, false);
        let compressed = message_frame(&message, true);
        assert_eq!(compressed.as_ptr(), message_frame(&message, true).as_ptr());
        assert_eq!(compressed[0], 0xC1, "a compressed text frame");
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, not a copy");
        let json = protocol::message(&message);
        let (head, used) = frame::header(opcode::TEXT, json.len());
        assert_eq!(&first[..used], &head[..used]);
        assert_eq!(&first[used..], &json[..]);
    }
}
