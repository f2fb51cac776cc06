//! Raw WebSocket on `/sub/{channels}`: one frame per message with its data as
//! is (text frame for UTF-8, binary otherwise), and every frame the client
//! sends is published to the subscription's channels, so the sender hears its
//! own message back like every other subscriber (Nchan's pub/sub behaviour).
//! Raw mode has no room for ids or gap reports; clients that need them use
//! the `/ws` protocol.
//!
//! This is the transport that fans one message out to the most sockets, so
//! it speaks RFC 6455 itself (`frame`) after answering the handshake: a
//! message's frame is built once and shared by every socket, and a delivery
//! is that buffer in one write (several in one vectored write when a batch
//! is waiting), with no per-subscriber copy or codec state. The heartbeat and the
//! close codes below are shared with the axum-based `/ws` and demo sockets.

use std::future::Future;
use std::io::IoSlice;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode, Version};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::io::poll_read_buf;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::frame::{self, opcode, Decoder, FrameError, Incoming};
use super::{connection_deadline, Context, Expiry, WRITE_BATCH_BYTES};
use crate::auth::Credential;
use crate::engine::{Event, Subscription};
use crate::error::ApiError;
use crate::hub::{ChannelName, DataKind, Draft, Message, Since, Wire};
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
/// One timer serves both: it runs to the next ping, then to the pong deadline.
pub struct Heartbeat {
    every: Duration,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// When the last ping went out, while its pong is awaited.
    pinged_at: Option<Instant>,
}

/// What the heartbeat asks for.
pub enum Beat {
    Ping,
    TimedOut,
}

impl Heartbeat {
    pub fn new(every: Duration, timeout: Duration) -> Self {
        let every = every.max(Duration::from_millis(10));
        Self {
            every,
            timeout,
            timer: Box::pin(tokio::time::sleep(every)),
            pinged_at: None,
        }
    }

    /// Ready when a ping is due or the last one went unanswered too long.
    pub fn poll_next(&mut self, cx: &mut TaskContext<'_>) -> Poll<Beat> {
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.pinged_at.is_some() {
            return Poll::Ready(Beat::TimedOut);
        }
        let now = Instant::now();
        self.pinged_at = Some(now);
        self.timer.as_mut().reset(now + self.timeout);
        Poll::Ready(Beat::Ping)
    }

    /// Waits until a ping is due or the last one went unanswered too long. Cancel-safe.
    pub async fn next(&mut self) -> Beat {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The client showed it is alive (any frame counts).
    pub fn alive(&mut self) {
        if let Some(pinged_at) = self.pinged_at.take() {
            self.timer.as_mut().reset(pinged_at + self.every);
        }
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

/// Validates an RFC 6455 opening handshake (§4.2.1) and returns the
/// `Sec-WebSocket-Accept` value that answers it.
pub fn accept_key(parts: &Parts) -> Result<HeaderValue, ApiError> {
    let bad = |why: &str| ApiError::bad_request("bad_websocket_upgrade", why.to_owned());
    let has_token = |name: header::HeaderName, token: &str| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if parts.method != Method::GET {
        return Err(bad("a WebSocket opening handshake is a GET"));
    }
    if parts.version != Version::HTTP_11 {
        return Err(bad("a WebSocket upgrade needs HTTP/1.1"));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(bad("Connection header did not include 'upgrade'"));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err(bad("`Upgrade` header did not include 'websocket'"));
    }
    if parts
        .headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(bad("`Sec-WebSocket-Version` header did not include '13'"));
    }
    let key = parts
        .headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| bad("`Sec-WebSocket-Key` header missing"))?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| bad("bad `Sec-WebSocket-Key`"))
}

/// Accepts the upgrade after subscribing, so a bad cursor is refused with 400
/// before the socket opens.
pub async fn upgrade(
    ctx: Context,
    mut parts: Parts,
    channels: Vec<ChannelName>,
    since: Vec<Since>,
    who: Credential,
    peer: IpAddr,
) -> Result<Response, ApiError> {
    let accept = accept_key(&parts)?;
    let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or_else(|| {
        ApiError::bad_request(
            "bad_websocket_upgrade",
            "this connection cannot be upgraded",
        )
    })?;
    let subscription = Subscription::open(
        ctx.engine.clone(),
        ctx.config.queue_limits(),
        &channels,
        &since,
    )
    .await?;
    let max_message = ctx.config.max_message_size.max(1024) + 1024;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = RawSocket {
                    io: TokioIo::new(upgraded),
                    read: BytesMut::with_capacity(READ_BUFFER),
                    decoder: Decoder::new(max_message),
                };
                serve(ctx, socket, subscription, channels, who, peer).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    });
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// A raw WebSocket after its handshake: the connection, the bytes read but
/// not yet decoded, and the frame decoder.
struct RawSocket {
    io: TokioIo<Upgraded>,
    read: BytesMut,
    decoder: Decoder,
}

impl RawSocket {
    /// Writes every slice, in as few system calls as the kernel allows
    /// (a lone slice with `send`, which costs less in the kernel than `writev`).
    async fn write_all(&mut self, mut parts: &mut [IoSlice<'_>]) -> std::io::Result<()> {
        if let [only] = parts {
            return self.io.write_all(only).await;
        }
        IoSlice::advance_slices(&mut parts, 0);
        while !parts.is_empty() {
            let n = self.io.write_vectored(parts).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut parts, n);
        }
        Ok(())
    }

    async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.write_all(&mut [IoSlice::new(frame)]).await
    }

    /// Sends a close frame and ends the TCP connection.
    async fn close(&mut self, code: u16, reason: &str) {
        if self.send(&frame::close(code, reason)).await.is_ok() {
            let _ = self.io.shutdown().await;
        }
    }

    /// Gives back a read buffer that a large message grew.
    fn shrink(&mut self) {
        if self.read.is_empty() && self.read.capacity() > 16 * READ_BUFFER {
            self.read = BytesMut::with_capacity(READ_BUFFER);
        }
    }
}

/// What woke a raw socket's task.
enum Wake {
    Shutdown,
    Deadline,
    Beat(Beat),
    Read(std::io::Result<usize>),
    Frame(Incoming),
    Broken(FrameError),
    Event(Event),
}

enum Step {
    Continue,
    /// Close with a code, a reason for the client, and a reason for metrics.
    Close(u16, String, &'static str),
    Gone,
}

/// Deliveries in a row served before the task looks at its other sources
/// (shutdown, timers, the client) even though more messages are waiting.
const FAIRNESS: u32 = 16;

/// The waker a raw socket's task gives its sources other than the
/// subscription (shutdown, deadline, heartbeat, the client's bytes): it
/// notes that one of them fired, then wakes the task. Their registrations
/// outlive a poll, so while none has fired they need no polling at all.
struct Others {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Default for Others {
    fn default() -> Self {
        // Polled once at the start, which registers every source.
        Self {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }
    }
}

impl std::task::Wake for Others {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Ready with the first of the other sources that is ready; polls them only
/// after one of them fired (or when asked to, by setting `woken`).
fn poll_others<'a>(
    others: &'a Arc<Others>,
    mut shutdown: Pin<&'a mut WaitForCancellationFutureOwned>,
    deadline: &'a mut Pin<Box<Sleep>>,
    heartbeat: &'a mut Heartbeat,
    socket: &'a mut RawSocket,
) -> impl Future<Output = Wake> + 'a {
    std::future::poll_fn(move |cx| {
        others.task.register(cx.waker());
        if !others.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(others.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let wake = if shutdown.as_mut().poll(&mut cx).is_ready() {
            Wake::Shutdown
        } else if deadline.as_mut().poll(&mut cx).is_ready() {
            Wake::Deadline
        } else if let Poll::Ready(beat) = heartbeat.poll_next(&mut cx) {
            Wake::Beat(beat)
        } else if let Poll::Ready(read) =
            poll_read_buf(Pin::new(&mut socket.io), &mut cx, &mut socket.read)
        {
            Wake::Read(read)
        } else {
            return Poll::Pending;
        };
        // The sources after the ready one were not polled: look again next time.
        others.woken.store(true, Ordering::Release);
        Poll::Ready(wake)
    })
}

async fn serve(
    ctx: Context,
    mut socket: RawSocket,
    mut subscription: Subscription,
    channels: Vec<ChannelName>,
    who: Credential,
    peer: IpAddr,
) {
    let mut connection = Connection::open("ws");
    let mut heartbeat = Heartbeat::new(ctx.config.ws_ping_interval, ctx.config.ws_pong_timeout);
    let (mut deadline, expiry) = connection_deadline(&ctx.config, &who);
    // Kept across iterations, so the shutdown signal is registered once.
    let mut shutdown = std::pin::pin!(ctx.shutdown.clone().cancelled_owned());
    let others = Arc::new(Others::default());
    let mut streak = 0u32;
    loop {
        // The select only says what woke the task; the work happens after it,
        // once its futures are dropped, so the connection's future (its
        // memory for as long as it is open, idle or not) holds room for the
        // select or for one handler, not both. The subscription comes first,
        // and the other sources are polled only when one of them woke the
        // task (`Others`): a delivery then costs one poll of the queue, not
        // one of every source. Every FAIRNESS deliveries in a row, the other
        // sources go first, so a busy channel cannot starve them.
        let wake = match socket.decoder.decode(&mut socket.read) {
            Ok(Some(incoming)) => Wake::Frame(incoming),
            Err(error) => Wake::Broken(error),
            Ok(None) if streak < FAIRNESS => tokio::select! {
                biased;
                event = subscription.next() => Wake::Event(event),
                wake = poll_others(&others, shutdown.as_mut(), &mut deadline, &mut heartbeat, &mut socket) => wake,
            },
            Ok(None) => {
                others.woken.store(true, Ordering::Release);
                tokio::select! {
                    biased;
                    wake = poll_others(&others, shutdown.as_mut(), &mut deadline, &mut heartbeat, &mut socket) => wake,
                    event = subscription.next() => Wake::Event(event),
                }
            }
        };
        streak = if matches!(wake, Wake::Event(_)) {
            streak + 1
        } else {
            0
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
            Wake::Beat(Beat::Ping) => match socket.send(&frame::control(opcode::PING, &[])).await {
                Ok(()) => Step::Continue,
                Err(_) => Step::Gone,
            },
            Wake::Beat(Beat::TimedOut) => Step::Close(
                close_code::GOING_AWAY,
                "no pong in time".into(),
                "pong_timeout",
            ),
            Wake::Read(Ok(0) | Err(_)) => Step::Gone,
            Wake::Read(Ok(_)) => Step::Continue,
            Wake::Broken(error) => {
                connection.set_reason("protocol_error");
                Step::Close(error.close_code(), error.to_string(), "protocol_error")
            }
            Wake::Frame(incoming) => {
                heartbeat.alive();
                socket.shrink();
                match incoming {
                    Incoming::Text(data) => {
                        Box::pin(publish(&ctx, &who, peer, &channels, data, DataKind::Text)).await
                    }
                    Incoming::Binary(data) => {
                        let kind = DataKind::Binary;
                        Box::pin(publish(&ctx, &who, peer, &channels, data, kind)).await
                    }
                    Incoming::Ping(payload) => {
                        match socket.send(&frame::control(opcode::PONG, &payload)).await {
                            Ok(()) => Step::Continue,
                            Err(_) => Step::Gone,
                        }
                    }
                    Incoming::Pong(_) => Step::Continue,
                    Incoming::Close(received) => {
                        // RFC 6455 §5.5.1: answer a close, echoing its code.
                        let answer = match received {
                            Some((code, _)) => frame::close(code, ""),
                            None => frame::control(opcode::CLOSE, &[]),
                        };
                        if socket.send(&answer).await.is_ok() {
                            let _ = socket.io.shutdown().await;
                        }
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
                socket.close(code, &reason).await;
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
    kind: DataKind,
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
            kind,
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

/// Most messages gathered into one vectored write.
const WRITE_BATCH_MESSAGES: usize = 64;

/// Writes `first` and whatever else is ready in one vectored write of the
/// messages' shared frames.
async fn write_events(
    socket: &mut RawSocket,
    subscription: &mut Subscription,
    connection: &mut Connection,
    first: Event,
) -> Step {
    // The frames to write: most wakes carry one message, which needs no list.
    let mut frames: Vec<Bytes> = Vec::new();
    let mut only: Option<Bytes> = None;
    let mut event = Some(first);
    let (mut written, mut count, mut oldest) = (0, 0, u64::MAX);
    let mut deleted = None;
    while let Some(current) = event.take() {
        match current {
            Event::Message(message) => {
                written += message.data.len();
                count += 1;
                oldest = oldest.min(message.published_at_ms);
                let frame = data_frame(&message);
                match only.take() {
                    None if frames.is_empty() => only = Some(frame),
                    None => frames.push(frame),
                    Some(previous) => frames.extend([previous, frame]),
                }
            }
            Event::Gap(gap) => {
                tracing::debug!(channel = %gap.channel, "gap on a raw WebSocket (not reportable in raw mode)");
            }
            Event::Deleted(channel) => {
                deleted = Some(channel);
                break;
            }
        }
        if written < WRITE_BATCH_BYTES && count < WRITE_BATCH_MESSAGES {
            event = subscription.try_next();
        }
    }
    let sent = match only {
        Some(frame) => socket.io.write_all(&frame).await,
        None if frames.is_empty() => Ok(()),
        None => {
            let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
            socket.write_all(&mut slices).await
        }
    };
    if sent.is_err() {
        return Step::Gone;
    }
    connection.delivered(count, oldest);
    match deleted {
        Some(channel) => Step::Close(
            close_code::NORMAL,
            format!("channel {channel} was deleted"),
            "channel_deleted",
        ),
        None => Step::Continue,
    }
}

/// The frame carrying `message`: text for text, binary for binary data.
/// Built once per message and shared by every raw socket, so a delivery
/// is one contiguous buffer (one `send` when it is alone in its batch).
fn data_frame(message: &Message) -> Bytes {
    message.encoded(Wire::RawFrame, |m| {
        let code = if m.is_text {
            opcode::TEXT
        } else {
            opcode::BINARY
        };
        let (head, used) = frame::header(code, m.data.len());
        let mut out = Vec::with_capacity(used + m.data.len());
        out.extend_from_slice(&head[..used]);
        out.extend_from_slice(&m.data);
        Bytes::from(out)
    })
}
