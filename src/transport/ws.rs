//! Raw WebSocket on `/sub/{channels}`: one frame per message with its data as
//! is (text frame for UTF-8, binary otherwise), and every frame the client
//! sends is published to the subscription's channels, so the sender hears its
//! own message back like every other subscriber (Nchan's pub/sub behaviour).
//! Raw mode has no room for ids or gap reports; clients that need them use
//! the `/ws` protocol.

use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

use super::{connection_deadline, Context, Expiry, WRITE_BATCH_BYTES};
use crate::auth::Credential;
use crate::engine::{Event, Subscription};
use crate::http::ApiError;
use crate::hub::{ChannelName, Draft, Message, Since};
use crate::telemetry::Connection;

/// RFC 6455 §7.4.1 close codes herald uses.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const SERVICE_RESTART: u16 = 1012;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Pings a WebSocket client on an interval and notices when it stops answering.
pub struct Heartbeat {
    interval: tokio::time::Interval,
    timeout: Duration,
    waiting_since: Option<Instant>,
}

/// What the heartbeat asks for.
pub enum Beat {
    Ping,
    TimedOut,
}

impl Heartbeat {
    pub fn new(every: Duration, timeout: Duration) -> Self {
        let every = every.max(Duration::from_millis(10));
        let mut interval = tokio::time::interval_at(Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            interval,
            timeout,
            waiting_since: None,
        }
    }

    /// Waits until a ping is due or the last one went unanswered too long. Cancel-safe.
    pub async fn next(&mut self) -> Beat {
        match self.waiting_since {
            Some(since) => {
                tokio::time::sleep_until(since + self.timeout).await;
                Beat::TimedOut
            }
            None => {
                self.interval.tick().await;
                self.waiting_since = Some(Instant::now());
                Beat::Ping
            }
        }
    }

    /// The client showed it is alive (any frame counts).
    pub fn alive(&mut self) {
        self.waiting_since = None;
    }
}

/// Read buffer, allocated for every connection: clients mostly listen, so
/// it is small (1 KiB measured 6 KiB of RSS per idle WebSocket, 4 KiB 10 KiB;
/// 512 bytes saves another half KiB). A larger frame grows it as it arrives.
pub const READ_BUFFER: usize = 512;

/// Bytes of frames gathered before a write; grows only when a batch needs it.
pub const WRITE_BUFFER: usize = 16 * 1024;

/// Applies herald's frame limits and buffer sizes to an upgrade.
pub fn configure(upgrade: WebSocketUpgrade, ctx: &Context) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(ctx.config.max_message_size.max(1024) + 1024)
        .max_frame_size(ctx.config.max_message_size.max(1024) + 1024)
}

/// The frame carrying `message` on a raw socket.
pub fn data_frame(message: &Message) -> Frame {
    if message.is_text {
        if let Ok(text) = Utf8Bytes::try_from(message.data.clone()) {
            return Frame::Text(text);
        }
    }
    Frame::Binary(message.data.clone())
}

/// The close frame that fails a connection after `error` (RFC 6455 §7.1.7):
/// 1007 for invalid UTF-8, 1009 for a message over the size limit, 1002 for
/// any other protocol violation. The library reports these without closing.
pub fn close_for_error(error: &axum::Error) -> Frame {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let cause = std::error::Error::source(error).and_then(|e| e.downcast_ref::<WsError>());
    match cause {
        Some(WsError::Utf8(_)) => close_frame(close_code::INVALID_DATA, "invalid UTF-8"),
        Some(WsError::Capacity(_)) => close_frame(close_code::TOO_BIG, "message too big"),
        _ => close_frame(close_code::PROTOCOL, "protocol error"),
    }
}

/// A close frame with a code and a reason.
pub fn close_frame(code: u16, reason: &str) -> Frame {
    Frame::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

/// Accepts the upgrade after subscribing, so a bad cursor is refused with 400
/// before the socket opens.
pub async fn upgrade(
    ctx: Context,
    upgrade: WebSocketUpgrade,
    channels: Vec<ChannelName>,
    since: Vec<Since>,
    who: Credential,
    peer: IpAddr,
) -> Result<Response, ApiError> {
    let subscription = Subscription::open(
        ctx.engine.clone(),
        ctx.config.queue_limits(),
        &channels,
        &since,
    )
    .await?;
    Ok(configure(upgrade, &ctx)
        .on_upgrade(move |socket| serve(ctx, socket, subscription, channels, who, peer)))
}

/// What woke a raw socket's task.
enum Wake {
    Shutdown,
    Deadline,
    Beat(Beat),
    Frame(Option<Result<Frame, axum::Error>>),
    Event(Event),
}

enum Step {
    Continue,
    /// Close with a code, a reason for the client, and a reason for metrics.
    Close(u16, String, &'static str),
    Gone,
}

async fn serve(
    ctx: Context,
    mut socket: WebSocket,
    mut subscription: Subscription,
    channels: Vec<ChannelName>,
    who: Credential,
    peer: IpAddr,
) {
    let mut connection = Connection::open("ws");
    let mut heartbeat = Heartbeat::new(ctx.config.ws_ping_interval, ctx.config.ws_pong_timeout);
    let (mut deadline, expiry) = connection_deadline(&ctx.config, &who);
    loop {
        // The select only says what woke the task; the work happens after it,
        // once its futures are dropped, so the connection's future (its
        // memory for as long as it is open, idle or not) holds room for the
        // select or for one handler, not both. Publishing from a raw socket
        // is the cold path and is boxed.
        let wake = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => Wake::Shutdown,
            _ = &mut deadline => Wake::Deadline,
            beat = heartbeat.next() => Wake::Beat(beat),
            frame = socket.recv() => Wake::Frame(frame),
            event = subscription.next() => Wake::Event(event),
        };
        let step = match wake {
            Wake::Shutdown => Step::Close(
                close_code::SERVICE_RESTART,
                "server shutting down".into(),
                "shutdown",
            ),
            Wake::Deadline => match expiry {
                Expiry::MaxAge => Step::Close(
                    close_code::GOING_AWAY,
                    "connection reached its maximum age; reconnect".into(),
                    "max_age",
                ),
                Expiry::Token => {
                    Step::Close(close_code::POLICY, "token expired".into(), "token_expired")
                }
            },
            Wake::Beat(Beat::Ping) => match socket.send(Frame::Ping(Bytes::new())).await {
                Ok(()) => Step::Continue,
                Err(_) => Step::Gone,
            },
            Wake::Beat(Beat::TimedOut) => Step::Close(
                close_code::GOING_AWAY,
                "no pong in time".into(),
                "pong_timeout",
            ),
            Wake::Frame(frame) => {
                if matches!(frame, Some(Ok(_))) {
                    heartbeat.alive();
                }
                match frame {
                    Some(Ok(Frame::Text(text))) => {
                        Box::pin(publish(&ctx, &who, peer, &channels, Bytes::from(text))).await
                    }
                    Some(Ok(Frame::Binary(data))) => {
                        Box::pin(publish(&ctx, &who, peer, &channels, data)).await
                    }
                    Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => Step::Continue,
                    Some(Ok(Frame::Close(_))) => {
                        // RFC 6455 §5.5.1: answer a close; the library queued the reply.
                        let _ = socket.flush().await;
                        Step::Gone
                    }
                    None => Step::Gone,
                    Some(Err(error)) => {
                        connection.set_reason("protocol_error");
                        let _ = socket.send(close_for_error(&error)).await;
                        Step::Gone
                    }
                }
            }
            Wake::Event(event) => {
                write_events(&mut socket, &mut subscription, &mut connection, event).await
            }
        };
        match step {
            Step::Continue => {}
            Step::Gone => return,
            Step::Close(code, reason, metric) => {
                connection.set_reason(metric);
                let _ = socket.send(close_frame(code, &reason)).await;
                return;
            }
        }
    }
}

async fn publish(
    ctx: &Context,
    who: &Credential,
    peer: IpAddr,
    channels: &[ChannelName],
    data: Bytes,
) -> Step {
    for channel in channels {
        if let Err(refused) = ctx.config.auth.may_publish(who, channel) {
            return Step::Close(close_code::POLICY, refused.to_string(), "forbidden");
        }
    }
    if let Err(limited) = super::check_publish_rate(ctx, peer) {
        return Step::Close(
            close_code::TRY_AGAIN_LATER,
            limited.to_string(),
            "rate_limited",
        );
    }
    if data.len() > ctx.config.max_message_size {
        return Step::Close(
            close_code::TOO_BIG,
            format!("message larger than {} bytes", ctx.config.max_message_size),
            "too_big",
        );
    }
    for channel in channels {
        let draft = Draft {
            channel: channel.clone(),
            event: None,
            data: data.clone(),
            idempotency_key: None,
        };
        if let Err(error) = super::publish(ctx, draft).await {
            return Step::Close(
                close_code::TRY_AGAIN_LATER,
                error.to_string(),
                "engine_unavailable",
            );
        }
    }
    Step::Continue
}

/// Writes `first` and whatever else is ready, then flushes once.
async fn write_events(
    socket: &mut WebSocket,
    subscription: &mut Subscription,
    connection: &mut Connection,
    first: Event,
) -> Step {
    let mut event = Some(first);
    let mut written = 0;
    let mut count = 0;
    let mut oldest = u64::MAX;
    while let Some(current) = event.take() {
        match current {
            Event::Message(message) => {
                written += message.data.len();
                count += 1;
                oldest = oldest.min(message.published_at_ms);
                if socket.feed(data_frame(&message)).await.is_err() {
                    return Step::Gone;
                }
            }
            Event::Gap(gap) => {
                tracing::debug!(channel = %gap.channel, "gap on a raw WebSocket (not reportable in raw mode)");
            }
            Event::Deleted(channel) => {
                let _ = socket.flush().await;
                connection.delivered(count, oldest);
                return Step::Close(
                    close_code::NORMAL,
                    format!("channel {channel} was deleted"),
                    "channel_deleted",
                );
            }
        }
        if written < WRITE_BATCH_BYTES {
            event = subscription.try_next();
        }
    }
    if socket.flush().await.is_err() {
        return Step::Gone;
    }
    connection.delivered(count, oldest);
    Step::Continue
}
