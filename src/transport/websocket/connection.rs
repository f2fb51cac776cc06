//! A WebSocket after its handshake: the connection, the bytes read but not
//! yet decoded, the frame decoder and what the task waits on ([`Watch`]).
//!
//! [`WebSocket::next`] answers what RFC 6455 itself asks of a server (a
//! pong for a ping, a close for a close, a close with the right code for a
//! broken rule, pings and their deadline) and hands the transport the rest:
//! a client's message, a subscription event, or why the connection must
//! close. The write side sends frames built elsewhere, most of them shared
//! by every subscriber of a message: a lone frame in one `send`, a batch
//! in one `writev`, never copied into a per-socket buffer.

use std::borrow::Cow;
use std::io::IoSlice;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::frame::{self, close_code, opcode, Decoder, Incoming};
use super::heartbeat::Beat;
use super::watch::{Wake, Watch};
use crate::engine::{Event, Subscription};
use crate::telemetry::Connection;
use crate::transport::{Expiry, WRITE_BATCH_BYTES};

/// Read buffer, allocated for every connection: clients mostly listen, so
/// it is small (1 KiB measured 6 KiB of RSS per idle WebSocket, 4 KiB 10 KiB;
/// 512 bytes saves another half KiB). A larger frame grows it as it arrives.
pub const READ_BUFFER: usize = 512;

/// Most messages gathered into one vectored write.
const WRITE_BATCH_MESSAGES: usize = 64;

/// An open WebSocket, server side.
pub struct WebSocket {
    io: TokioIo<Upgraded>,
    /// permessage-deflate was negotiated.
    deflate: bool,
    read: BytesMut,
    decoder: Decoder,
    watch: Watch,
}

/// What the transport handles next.
pub enum Next {
    /// A whole text message (its UTF-8 checked).
    Text(Bytes),
    /// A whole binary message.
    Binary(Bytes),
    /// An event of the subscription.
    Event(Event),
    /// The connection reached its deadline; the transport words the close.
    Expired(Expiry),
    /// The connection must close with this frame.
    Close(Close),
    /// The client closed (and was answered) or the connection broke.
    Gone,
}

/// A close frame to send, and the reason recorded in the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: Cow<'static, str>,
    pub metric: &'static str,
}

impl Close {
    pub fn new(code: u16, reason: impl Into<Cow<'static, str>>, metric: &'static str) -> Self {
        Self {
            code,
            reason: reason.into(),
            metric,
        }
    }

    /// The close at a connection's deadline; `token` says why for an expired token.
    pub fn expired(why: Expiry, token: &'static str) -> Self {
        match why {
            Expiry::MaxAge => Self::new(
                close_code::GOING_AWAY,
                "connection reached its maximum age; reconnect",
                "max_age",
            ),
            Expiry::Token => Self::new(close_code::POLICY, token, "token_expired"),
        }
    }
}

/// What a transport does after handling one thing.
pub enum Step {
    Continue,
    Close(Close),
    Gone,
}

impl WebSocket {
    /// A WebSocket over `upgraded` that fails any message over
    /// `max_message` bytes (inflated, with `deflate`) and closes with 1012
    /// on `shutdown`.
    pub(super) fn new(
        upgraded: Upgraded,
        max_message: usize,
        shutdown: CancellationToken,
        deflate: bool,
    ) -> Self {
        let decoder = if deflate {
            Decoder::with_deflate(max_message)
        } else {
            Decoder::new(max_message)
        };
        Self {
            io: TokioIo::new(upgraded),
            deflate,
            read: BytesMut::with_capacity(READ_BUFFER),
            decoder,
            watch: Watch::new(shutdown),
        }
    }

    /// Pings every `every` and closes with 1001 when no frame answers within `timeout`.
    pub fn set_heartbeat(&mut self, every: Duration, timeout: Duration) {
        self.watch.set_heartbeat(every, timeout);
    }

    /// Ends the connection when `deadline` passes (see [`Next::Expired`]).
    pub fn set_deadline(&mut self, deadline: Pin<Box<Sleep>>, why: Expiry) {
        self.watch.set_deadline(deadline, why);
    }

    /// Closes with 1000 when the subscription stays empty and the client
    /// sends nothing for `after`.
    pub fn set_idle_timeout(&mut self, after: Duration) {
        self.watch.set_idle_timeout(after);
    }

    /// The next thing for the transport to handle. Subscription events come
    /// first (with [`Watch`]'s fairness); pings, pongs and closes from the
    /// client are answered here.
    pub async fn next(&mut self, mut subscription: Option<&mut Subscription>) -> Next {
        loop {
            // Whatever is already buffered goes before waiting for more.
            let wake = match self.decoder.decode(&mut self.read) {
                Ok(Some(incoming)) => match self.incoming(incoming).await {
                    Some(next) => return next,
                    None => continue,
                },
                Err(error) => {
                    let reason = error.to_string();
                    return Next::Close(Close::new(error.close_code(), reason, "protocol_error"));
                }
                Ok(None) => {
                    self.watch
                        .wait(&mut self.io, &mut self.read, subscription.as_deref_mut())
                        .await
                }
            };
            match wake {
                Wake::Event(event) => return Next::Event(event),
                Wake::Read(Ok(0) | Err(_)) => return Next::Gone,
                Wake::Read(Ok(_)) => {}
                Wake::Shutdown => {
                    return Next::Close(Close::new(
                        close_code::SERVICE_RESTART,
                        "server shutting down",
                        "shutdown",
                    ))
                }
                Wake::Deadline(why) => return Next::Expired(why),
                Wake::Idle => {
                    return Next::Close(Close::new(
                        close_code::NORMAL,
                        "idle: no subscriptions and no frames",
                        "idle",
                    ))
                }
                Wake::Beat(Beat::TimedOut) => {
                    return Next::Close(Close::new(
                        close_code::GOING_AWAY,
                        "no pong in time",
                        "pong_timeout",
                    ))
                }
                Wake::Beat(Beat::Ping) => {
                    if self.send(&frame::control(opcode::PING, &[])).await.is_err() {
                        return Next::Gone;
                    }
                }
            }
        }
    }

    /// Answers a control frame; a message is for the transport.
    async fn incoming(&mut self, incoming: Incoming) -> Option<Next> {
        self.watch.alive();
        self.shrink();
        match incoming {
            Incoming::Text(data) => Some(Next::Text(data)),
            Incoming::Binary(data) => Some(Next::Binary(data)),
            Incoming::Ping(payload) => {
                let pong = frame::control(opcode::PONG, &payload);
                self.send(&pong).await.err().map(|_| Next::Gone)
            }
            Incoming::Pong(_) => None,
            Incoming::Close(received) => {
                // RFC 6455 §5.5.1: answer a close, echoing its code.
                let answer = match received {
                    Some((code, _)) => frame::close(code, ""),
                    None => frame::control(opcode::CLOSE, &[]),
                };
                if self.send(&answer).await.is_ok() {
                    let _ = self.io.shutdown().await;
                }
                Some(Next::Gone)
            }
        }
    }

    /// Gives back a read buffer that a large message grew.
    fn shrink(&mut self) {
        if self.read.is_empty() && self.read.capacity() > 16 * READ_BUFFER {
            self.read = BytesMut::with_capacity(READ_BUFFER);
        }
    }

    /// Writes one whole frame.
    pub async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.io.write_all(frame).await?;
        // A no-op on TCP; a stream that buffers (TLS under the upgrade)
        // sends what it holds now rather than with the next frame.
        self.io.flush().await
    }

    /// Writes `text` as one text frame.
    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        let frame = frame::build(opcode::TEXT, text.len(), |out| {
            out.extend_from_slice(text.as_bytes())
        });
        self.send(&frame).await
    }

    /// Sends `close` and ends the TCP connection, recording why.
    pub async fn close(&mut self, close: Close, connection: &mut Connection) {
        connection.set_reason(close.metric);
        if self
            .send(&frame::close(close.code, &close.reason))
            .await
            .is_ok()
        {
            let _ = self.io.shutdown().await;
        }
    }

    /// Carries out a transport's step: false once the connection is over.
    pub async fn settle(&mut self, step: Step, connection: &mut Connection) -> bool {
        match step {
            Step::Continue => true,
            Step::Gone => false,
            Step::Close(close) => {
                self.close(close, connection).await;
                false
            }
        }
    }

    /// Writes `first` and the events ready after it, up to a batch, in one
    /// write; `add` turns each event into frames, or ends the batch with a
    /// close that follows the write.
    pub async fn deliver(
        &mut self,
        subscription: &mut Subscription,
        connection: &mut Connection,
        first: Event,
        mut add: impl FnMut(Event, &mut Batch) -> ControlFlow<Close>,
    ) -> Step {
        let mut batch = Batch {
            deflate: self.deflate,
            ..Batch::default()
        };
        let mut event = Some(first);
        let mut then = Step::Continue;
        while let Some(current) = event.take() {
            if let ControlFlow::Break(close) = add(current, &mut batch) {
                then = Step::Close(close);
                break;
            }
            if !batch.is_full() {
                event = subscription.try_next();
            }
        }
        if self.write(&batch).await.is_err() {
            return Step::Gone;
        }
        connection.delivered(batch.messages, batch.oldest);
        then
    }

    /// Writes every frame of `batch`, in as few system calls as the kernel
    /// allows (a lone frame with `send`, which costs less in the kernel than `writev`).
    async fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        if let Some(only) = &batch.only {
            return self.send(only).await;
        }
        let mut slices: Vec<IoSlice<'_>> = batch.frames.iter().map(|f| IoSlice::new(f)).collect();
        let mut parts = &mut slices[..];
        while !parts.is_empty() {
            let n = self.io.write_vectored(parts).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut parts, n);
        }
        self.io.flush().await
    }
}

/// Frames gathered for one write. Most wakes carry one message, which
/// needs no list.
pub struct Batch {
    /// The socket negotiated permessage-deflate: message frames may be compressed.
    deflate: bool,
    only: Option<Bytes>,
    frames: Vec<Bytes>,
    bytes: usize,
    messages: usize,
    /// When the oldest message in the batch was published (Unix ms).
    oldest: u64,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            deflate: false,
            only: None,
            frames: Vec::new(),
            bytes: 0,
            messages: 0,
            oldest: u64::MAX,
        }
    }
}

impl Batch {
    /// Whether message frames for this socket may be the compressed ones.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// Adds a frame for this socket alone (an answer, a gap report).
    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        match self.only.take() {
            None if self.frames.is_empty() => self.only = Some(frame),
            None => self.frames.push(frame),
            Some(previous) => self.frames.extend([previous, frame]),
        }
    }

    /// Adds a message's frame, counted as a delivery.
    pub fn push_message(&mut self, frame: Bytes, published_at_ms: u64) {
        self.messages += 1;
        self.oldest = self.oldest.min(published_at_ms);
        self.push(frame);
    }

    /// Whether the batch should be written before more is gathered.
    pub fn is_full(&self) -> bool {
        self.bytes >= WRITE_BATCH_BYTES || self.messages >= WRITE_BATCH_MESSAGES
    }
}
