//! A published message, shared by every subscriber and every transport.
//!
//! A message is created once, wrapped in an `Arc`, kept in history and handed
//! to each subscriber's queue. Transports turn it into bytes on a wire; each
//! wire format is encoded at most once per message (the first subscriber that
//! needs it fills the slot) and then shared, so fan-out to N subscribers costs
//! one encoding, not N. The slots themselves are made on first use: a
//! message kept in history that nobody has received carries one pointer for
//! them, and a delivered one a slot per wire format actually used.

use bytes::Bytes;
use once_cell::race::OnceBox;

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

/// The bit of [`Message::stamp`] that says the data is text (millisecond
/// timestamps stay far below 2^63).
const TEXT_BIT: u64 = 1 << 63;

/// One message in one channel's history.
#[derive(Debug)]
pub struct Message {
    pub channel: ChannelName,
    pub id: MessageId,
    /// Boxed: a thin pointer, so the many messages without an event name
    /// keep the struct in a smaller allocation (those with one pay 16 bytes).
    pub event: Option<Box<EventName>>,
    pub data: Bytes,
    /// The publish time and whether `data` is text, in one word (see
    /// [`Message::published_at_ms`] and [`Message::is_text`]): with it, a
    /// message fits an 80-byte struct, 96 bytes with its `Arc`.
    stamp: u64,
    /// Encodings per wire format, allocated by the first delivery.
    encoded: OnceBox<Encodings>,
}

/// One slot per wire format, each filled (and allocated) on first use.
#[derive(Debug, Default)]
struct Encodings([OnceBox<Bytes>; WIRE_COUNT]);

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
            event: event.map(Box::new),
            data,
            stamp: (published_at_ms & !TEXT_BIT) | if is_text { TEXT_BIT } else { 0 },
            encoded: OnceBox::new(),
        }
    }

    /// Whether `data` is text: published as text and valid UTF-8 (text
    /// frames, plain JSON strings), else binary (binary frames, base64).
    pub fn is_text(&self) -> bool {
        self.stamp & TEXT_BIT != 0
    }

    /// Wall-clock publish time in Unix milliseconds, for age trimming and latency.
    pub fn published_at_ms(&self) -> u64 {
        self.stamp & !TEXT_BIT
    }

    /// The id as clients see it (made when an encoding needs it: not kept,
    /// since every wire format that shows it is itself encoded once).
    pub fn id_text(&self) -> String {
        self.id.to_string()
    }

    /// Text or binary, as delivered (text that is not UTF-8 is binary).
    pub fn kind(&self) -> DataKind {
        if self.is_text() {
            DataKind::Text
        } else {
            DataKind::Binary
        }
    }

    /// The data as text, when it is text.
    pub fn text(&self) -> Option<&str> {
        if self.is_text() {
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
        self.encoded.get_or_init(Box::default).0[wire as usize]
            .get_or_init(|| Box::new(encode(self)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_message_is_small() {
        // With its Arc's two counters: 96 bytes, the allocator's 96-byte
        // class. Its encodings are allocated by the first delivery.
        assert!(
            std::mem::size_of::<Message>() <= 80,
            "{}",
            std::mem::size_of::<Message>()
        );
    }

    #[test]
    fn the_stamp_keeps_time_and_kind_apart() {
        let at = 1_764_000_000_123;
        for kind in [DataKind::Text, DataKind::Binary] {
            let message = Message::new(
                ChannelName::parse("a").unwrap(),
                MessageId::new(1, 1),
                None,
                Bytes::from_static(b"x"),
                kind,
                at,
            );
            assert_eq!(message.published_at_ms(), at);
            assert_eq!(message.is_text(), kind == DataKind::Text);
        }
    }

    #[test]
    fn each_wire_format_is_encoded_once() {
        let message = Message::new(
            ChannelName::parse("a").unwrap(),
            MessageId::new(1, 1),
            None,
            Bytes::from_static(b"x"),
            DataKind::Text,
            0,
        );
        let mut calls = 0;
        let first = message.encoded(Wire::PollObject, |_| {
            calls += 1;
            Bytes::from_static(b"one")
        });
        let again = message.encoded(Wire::PollObject, |_| {
            calls += 1;
            Bytes::from_static(b"two")
        });
        assert_eq!(
            (first, again, calls),
            (Bytes::from_static(b"one"), Bytes::from_static(b"one"), 1)
        );
        assert_eq!(message.id_text(), "1-1");
    }
}
