//! Server-Sent Events: one `text/event-stream` response per subscription.
//!
//! Each message is an event with `id:` (what `Last-Event-ID` resumes from),
//! `event:` when published with one, and one `data:` line per line of data.
//! A one-channel stream sends frames encoded once per message and shared by
//! every subscriber; a multi-channel stream adds its own cursor as the id.
//! With `?envelope=1` the data is a JSON object naming the channel (what a
//! client needs to demultiplex a multi-channel stream).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use tokio::time::{interval_at, Instant, Interval};
use tokio_util::sync::CancellationToken;

use super::{
    connection_deadline, data_as_json_string, write_message_fields, Context, Expiry, Subscriber,
    WRITE_BATCH_BYTES,
};
use crate::engine::{EngineError, Event, Subscription};
use crate::hub::{Message, Movement, Wire};
use crate::telemetry::Connection;

/// Appends `data:` lines for `text`, splitting on every SSE line ending.
fn push_data_lines(out: &mut BytesMut, text: &str) {
    let mut rest = text;
    loop {
        let end = rest.find(['\n', '\r']).unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest.as_bytes()[..end]);
        out.extend_from_slice(b"\n");
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
}

/// An event frame: optional `id:`, optional `event:`, data lines, blank line.
pub fn frame(id: Option<&str>, event: Option<&str>, data: &str) -> Bytes {
    frame_marked(id, event, false, data)
}

/// [`frame`], with an `encoding: base64` line before the data when `base64`:
/// the marker of binary data on a plain stream. EventSource ignores fields
/// it does not know (WHATWG HTML §9.2.6), so browsers still fire the event;
/// other parsers can read it, and `?envelope=1` carries `"encoding"` too.
fn frame_marked(id: Option<&str>, event: Option<&str>, base64: bool, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 64);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\n");
    }
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.extend_from_slice(b"\n");
    }
    if base64 {
        out.extend_from_slice(b"encoding: base64\n");
    }
    push_data_lines(&mut out, data);
    out.extend_from_slice(b"\n");
    out.freeze()
}

/// The event of `message` on a plain stream. SSE is text only: binary data
/// travels base64-encoded, marked (docs/protocol.md).
fn plain_frame(id: Option<&str>, message: &Message) -> Bytes {
    let (data, base64) = data_as_json_string(message);
    let event = message.event.as_ref().map(|e| e.as_str());
    frame_marked(id, event, base64, &data)
}

fn envelope_data(message: &Message) -> String {
    let mut out = Vec::with_capacity(message.data.len() + 64);
    out.push(b'{');
    write_message_fields(&mut out, message);
    out.push(b'}');
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// The frame for `message`, reusing the encoding shared by all subscribers
/// where the id is the message's own.
pub fn message_frame(message: &Message, envelope: bool, cursor: Option<&str>) -> Bytes {
    match (envelope, cursor) {
        (false, None) => message.encoded(Wire::EventStream, |m| plain_frame(Some(&m.id_text()), m)),
        (true, None) => message.encoded(Wire::EnvelopeStream, |m| {
            frame(Some(&m.id_text()), None, &envelope_data(m))
        }),
        (false, Some(cursor)) => {
            let body = message.encoded(Wire::EventStreamBody, |m| plain_frame(None, m));
            with_id(cursor, &body)
        }
        (true, Some(cursor)) => {
            let body =
                message.encoded(Wire::EnvelopeBody, |m| frame(None, None, &envelope_data(m)));
            with_id(cursor, &body)
        }
    }
}

fn with_id(id: &str, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + id.len() + 5);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\n");
    out.extend_from_slice(body);
    out.freeze()
}

/// Everything a stream needs between two chunks.
struct Stream {
    subscription: Subscription,
    multi: bool,
    envelope: bool,
    heartbeat: Interval,
    shutdown: CancellationToken,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    expiry: Expiry,
    first: Option<Bytes>,
    finished: bool,
    connection: Connection,
}

impl Stream {
    /// The frame for `event`, and whether the stream stays open after it.
    fn render(&mut self, event: Event, delivered: &mut (usize, u64)) -> (Bytes, bool) {
        match event {
            Event::Message(message) => {
                delivered.0 += 1;
                delivered.1 = delivered.1.min(message.published_at_ms());
                let cursor = self.multi.then(|| self.subscription.cursor().render());
                (
                    message_frame(&message, self.envelope, cursor.as_deref()),
                    true,
                )
            }
            Event::Gap(gap) => {
                let data = gap.to_json().to_string();
                (frame(None, Some("herald.gap"), &data), true)
            }
            Event::Presence(notice) => {
                let event = match notice.movement {
                    Movement::Join => "herald.join",
                    Movement::Leave => "herald.leave",
                };
                let data = std::str::from_utf8(&notice.json).unwrap_or("{}");
                (frame(None, Some(event), data), true)
            }
            Event::Deleted(channel) => {
                self.connection.set_reason("channel_deleted");
                let data = serde_json::json!({ "channel": channel.as_str(), "reason": "deleted" });
                (frame(None, Some("herald.closed"), &data.to_string()), false)
            }
        }
    }

    /// `first` plus whatever else is ready, as one chunk (shared bytes, not a
    /// copy, when only one frame is ready).
    fn batch(&mut self, first: Event) -> Bytes {
        let mut delivered = (0, u64::MAX);
        let (head, mut open) = self.render(first, &mut delivered);
        let mut out: Option<BytesMut> = None;
        while open && out.as_ref().map_or(head.len(), BytesMut::len) < WRITE_BATCH_BYTES {
            let Some(event) = self.subscription.try_next() else {
                break;
            };
            let (next, still_open) = self.render(event, &mut delivered);
            open = still_open;
            out.get_or_insert_with(|| BytesMut::from(&head[..]))
                .extend_from_slice(&next);
        }
        self.finished = !open;
        self.connection.delivered(delivered.0, delivered.1);
        out.map_or(head, BytesMut::freeze)
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.finished {
            return None;
        }
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => {
                self.finished = true;
                self.connection.set_reason("shutdown");
                let data = serde_json::json!({ "reason": "shutdown" });
                Some(frame(None, Some("herald.closed"), &data.to_string()))
            }
            _ = &mut self.deadline => {
                self.finished = true;
                let reason = match self.expiry {
                    Expiry::MaxAge => "max_age",
                    Expiry::Token => "token_expired",
                };
                self.connection.set_reason(reason);
                let data = serde_json::json!({ "reason": reason });
                Some(frame(None, Some("herald.closed"), &data.to_string()))
            }
            event = self.subscription.next() => Some(self.batch(event)),
            _ = self.heartbeat.tick() => Some(Bytes::from_static(b": ping\n\n")),
        }
    }
}

/// Starts an event stream for `channels`.
pub async fn respond(
    ctx: Context,
    subscriber: Subscriber,
    envelope: bool,
) -> Result<Response, EngineError> {
    let (deadline, expiry) = connection_deadline(&ctx.config, &subscriber.caller.who);
    let channels = &subscriber.channels;
    let subscription = Subscription::open(
        ctx.engine.clone(),
        ctx.config.queue_limits(),
        channels,
        &subscriber.since,
        subscriber.identity(&ctx, None, true),
        &subscriber.entries,
    )
    .await?;
    let heartbeat_every = ctx.config.sse_heartbeat.max(Duration::from_millis(100));
    // An event with an id and no data sets the browser's last event id
    // without firing anything (HTML, "dispatch the event", steps 1-2), so a
    // stream that drops before its first message still resumes from here.
    let first = Bytes::from(format!(
        "retry: {}\nid: {}\n\n",
        ctx.config.sse_retry.as_millis(),
        subscription.cursor().render()
    ));
    let state = Stream {
        subscription,
        multi: channels.len() > 1,
        envelope,
        heartbeat: interval_at(Instant::now() + heartbeat_every, heartbeat_every),
        shutdown: ctx.shutdown.clone(),
        deadline,
        expiry,
        first: Some(first),
        finished: false,
        connection: Connection::open("sse"),
    };
    let body = stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), state))
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_data_line_per_line_of_data() {
        let f = frame(Some("a-1"), Some("update"), "one\ntwo\r\nthree\rfour");
        assert_eq!(
            &f[..],
            b"id: a-1\nevent: update\ndata: one\ndata: two\ndata: three\ndata: four\n\n"
        );
        assert_eq!(&frame(None, None, "")[..], b"data: \n\n");
        assert_eq!(&frame(None, None, "x\n")[..], b"data: x\ndata: \n\n");
    }
}
