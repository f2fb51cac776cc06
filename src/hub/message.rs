//! A published message, shared by every subscriber and every transport.
//!
//! A message is created once, wrapped in an `Arc`, kept in history and handed
//! to each subscriber's queue. Transports turn it into bytes on a wire; each
//! wire format is encoded at most once per message (the first subscriber that
//! needs it fills the slot) and then shared, so fan-out to N subscribers costs
//! one encoding, not N.

use std::sync::OnceLock;

use bytes::Bytes;

use super::id::MessageId;
use super::name::{ChannelName, EventName};

/// The wire formats a transport can cache on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// A complete Server-Sent Events frame with its `id:` line.
    EventStream,
    /// An event-stream frame without `id:` (multi-channel streams add their cursor).
    EventStreamBody,
    /// A complete event-stream frame whose data is the JSON envelope.
    EnvelopeStream,
    /// The envelope frame without `id:`.
    EnvelopeBody,
    /// The `/ws` protocol `msg` frame.
    SocketFrame,
    /// The JSON object used in long-poll responses.
    PollObject,
    /// A whole raw WebSocket frame: header and data.
    RawFrame,
    /// [`Wire::RawFrame`] compressed (permessage-deflate, no context takeover).
    RawFrameDeflate,
    /// [`Wire::SocketFrame`] compressed (permessage-deflate, no context takeover).
    SocketFrameDeflate,
}

const WIRE_COUNT: usize = 9;

/// What a message's bytes are, as its publisher said (a WebSocket frame's
/// opcode, a POST's `Content-Type`, a JSON item's `encoding`): text is shown
/// as is; binary stays an opaque payload, a binary frame on a WebSocket and
/// base64 wherever the wire is text, even when the bytes happen to be UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataKind {
    #[default]
    Text,
    Binary,
}

/// One message in one channel's history.
#[derive(Debug)]
pub struct Message {
    pub channel: ChannelName,
    pub id: MessageId,
    pub event: Option<EventName>,
    pub data: Bytes,
    /// Whether `data` is text: published as text and valid UTF-8 (text
    /// frames, plain JSON strings), else binary (binary frames, base64).
    pub is_text: bool,
    /// Wall-clock publish time in Unix milliseconds, for age trimming and latency.
    pub published_at_ms: u64,
    id_text: Box<str>,
    encoded: [OnceLock<Bytes>; WIRE_COUNT],
}

impl Message {
    pub fn new(
        channel: ChannelName,
        id: MessageId,
        event: Option<EventName>,
        data: Bytes,
        kind: DataKind,
        published_at_ms: u64,
    ) -> Self {
        let is_text = kind == DataKind::Text && std::str::from_utf8(&data).is_ok();
        Self {
            channel,
            id,
            event,
            data,
            is_text,
            published_at_ms,
            id_text: id.to_string().into_boxed_str(),
            encoded: Default::default(),
        }
    }

    /// The id as clients see it.
    pub fn id_text(&self) -> &str {
        &self.id_text
    }

    /// Text or binary, as delivered (text that is not UTF-8 is binary).
    pub fn kind(&self) -> DataKind {
        if self.is_text {
            DataKind::Text
        } else {
            DataKind::Binary
        }
    }

    /// The data as text, when it is text.
    pub fn text(&self) -> Option<&str> {
        if self.is_text {
            std::str::from_utf8(&self.data).ok()
        } else {
            None
        }
    }

    /// Size counted against history byte limits.
    pub fn weight(&self) -> usize {
        self.data.len() + self.channel.as_str().len() + 64
    }

    /// This message in `wire` format, encoded by `encode` the first time only.
    pub fn encoded(&self, wire: Wire, encode: impl FnOnce(&Message) -> Bytes) -> Bytes {
        self.encoded[wire as usize]
            .get_or_init(|| encode(self))
            .clone()
    }
}

/// Unix milliseconds on a clock that never jumps: the wall clock read once,
/// when the process first asks, plus the monotonic time since. History age,
/// idempotency windows and latency all count on it, so a wall-clock step
/// (NTP, a VM resumed, an operator's `date -s`) neither expires every
/// message at once nor keeps them forever; ids never depend on any clock.
pub fn now_ms() -> u64 {
    static ANCHOR: std::sync::OnceLock<(u64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall_ms, at) = ANCHOR.get_or_init(|| {
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (wall_ms, std::time::Instant::now())
    });
    wall_ms + at.elapsed().as_millis() as u64
}
