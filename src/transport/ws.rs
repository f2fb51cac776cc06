//! Raw WebSocket on `/sub/{channels}`: one frame per message with its data as
//! is (text frame for UTF-8, binary otherwise), and every frame the client
//! sends is published to the subscription's channels, so the sender hears its
//! own message back like every other subscriber (Nchan's pub/sub behaviour).
//! Raw mode has no room for ids or gap reports; clients that need them use
//! the `/ws` protocol.
//!
//! This is the transport that fans one message out to the most sockets: a
//! message's frame is built once and shared by every raw socket, and a
//! delivery is that buffer in one write (several in one vectored write when
//! a batch is waiting). RFC 6455 itself (handshake, decoding, control
//! frames, heartbeat, batching) is `websocket`, shared with `/ws` and the demo.

use std::ops::ControlFlow;

use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;

use super::access::Caller;
use super::websocket::frame::{self, opcode};
use super::websocket::{close_code, deflate, Batch, Close, Handshake, Next, Step, WebSocket};
use super::{connection_deadline, Context, Subscriber};
use crate::engine::{Event, Subscription};
use crate::error::ApiError;
use crate::hooks::HookError;
use crate::hub::{ChannelName, DataKind, Draft, Message, Wire};
use crate::telemetry::Connection;

/// Accepts the upgrade after subscribing, so a bad cursor is refused with 400
/// before the socket opens.
pub async fn upgrade(
    ctx: Context,
    mut parts: Parts,
    subscriber: Subscriber,
) -> Result<Response, ApiError> {
    let handshake = Handshake::check(&mut parts)?;
    let subscription = Subscription::open(
        ctx.engine.clone(),
        ctx.config.queue_limits(),
        &subscriber.channels,
        &subscriber.since,
        subscriber.identity(&ctx, None, false),
        &subscriber.entries,
    )
    .await?;
    let Subscriber {
        channels, caller, ..
    } = subscriber;
    Ok(handshake.accept(&ctx.clone(), move |socket| {
        serve(ctx, socket, subscription, channels, caller)
    }))
}

async fn serve(
    ctx: Context,
    mut socket: WebSocket,
    mut subscription: Subscription,
    channels: Vec<ChannelName>,
    caller: Caller,
) {
    let mut connection = Connection::open("ws");
    socket.set_heartbeat(ctx.config.ws_ping_interval, ctx.config.ws_pong_timeout);
    let (deadline, why) = connection_deadline(&ctx.config, &caller.who);
    socket.set_deadline(deadline, why);
    loop {
        let step = match socket.next(Some(&mut subscription)).await {
            // Boxed: the connection's future (its memory for as long as it
            // is open) holds room for a wait or a small handler, and a
            // publish is neither.
            Next::Text(data) => {
                Box::pin(publish(&ctx, &caller, &channels, data, DataKind::Text)).await
            }
            Next::Binary(data) => {
                Box::pin(publish(&ctx, &caller, &channels, data, DataKind::Binary)).await
            }
            Next::Event(event) => {
                socket
                    .deliver(&mut subscription, &mut connection, event, add_event)
                    .await
            }
            Next::Expired(why) => Step::Close(Close::expired(why, "token expired")),
            Next::Close(close) => Step::Close(close),
            Next::Gone => Step::Gone,
        };
        if !socket.settle(step, &mut connection).await {
            return;
        }
    }
}

async fn publish(
    ctx: &Context,
    caller: &Caller,
    channels: &[ChannelName],
    data: Bytes,
    kind: DataKind,
) -> Step {
    for channel in channels {
        match super::access::authorize_client_publish(ctx, caller, channel).await {
            Ok(()) => {}
            Err(ApiError::Hook(HookError::Unavailable(why))) => {
                return Step::Close(Close::new(
                    close_code::TRY_AGAIN_LATER,
                    format!("the auth hook is unavailable: {why}"),
                    "auth_unavailable",
                ));
            }
            Err(refused) => {
                return Step::Close(Close::new(
                    close_code::POLICY,
                    refused.to_string(),
                    "forbidden",
                ));
            }
        }
    }
    if let Err(limited) = super::check_publish_rate(ctx, caller.ip) {
        return Step::Close(Close::new(
            close_code::TRY_AGAIN_LATER,
            limited.to_string(),
            "rate_limited",
        ));
    }
    for channel in channels {
        let limit = ctx.channels.options(channel).max_message_size;
        if data.len() > limit {
            return Step::Close(Close::new(
                close_code::TOO_BIG,
                format!("message larger than {limit} bytes"),
                "too_big",
            ));
        }
    }
    for channel in channels {
        let draft = Draft {
            channel: channel.clone(),
            event: None,
            data: data.clone(),
            kind,
            idempotency_key: None,
        };
        if let Err(error) = super::publish(ctx, draft).await {
            return Step::Close(Close::new(
                close_code::TRY_AGAIN_LATER,
                error.to_string(),
                "engine_unavailable",
            ));
        }
    }
    Step::Continue
}

/// A subscription event on a raw socket: a message is its shared frame, a
/// deleted channel ends the connection (after what is already gathered).
fn add_event(event: Event, batch: &mut Batch) -> ControlFlow<Close> {
    match event {
        Event::Message(message) => {
            let frame = data_frame(&message, batch.deflate());
            batch.push_message(frame, message.published_at_ms())
        }
        Event::Gap(gap) => {
            tracing::debug!(channel = %gap.channel, "gap on a raw WebSocket (not reportable in raw mode)");
        }
        // Raw frames carry messages only; presence is read through the API.
        Event::Presence(_) => {}
        Event::Deleted(channel) => {
            return ControlFlow::Break(Close::new(
                close_code::NORMAL,
                format!("channel {channel} was deleted"),
                "channel_deleted",
            ))
        }
    }
    ControlFlow::Continue(())
}

/// The frame carrying `message`: text for text, binary for binary data.
/// Built once per message and shared by every raw socket, so a delivery
/// is one contiguous buffer (one `send` when it is alone in its batch);
/// with `deflate`, the compressed frame, also built once and shared.
fn data_frame(message: &Message, deflate: bool) -> Bytes {
    let plain = plain_frame(message);
    if !deflate {
        return plain;
    }
    message.encoded(Wire::RawFrameDeflate, |_| deflate::compress_frame(&plain))
}

fn plain_frame(message: &Message) -> Bytes {
    message.encoded(Wire::RawFrame, |m| {
        let code = if m.is_text() {
            opcode::TEXT
        } else {
            opcode::BINARY
        };
        frame::build(code, m.data.len(), |out| out.extend_from_slice(&m.data))
    })
}
