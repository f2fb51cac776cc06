//! HTTP long polling: answer at once with what is new after `since`, or hold
//! the request until something arrives or the timeout passes.
//!
//! The body is always `{"messages": [...], "next": "ID"}`; `next` is the
//! cursor after the last message in the body (or the current position when
//! there is none), so a client that passes it back as `since` never loses a
//! message between two polls.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{write_message_fields, Context, Subscriber};
use crate::config::{parse_duration, ServerConfig};
use crate::engine::{Event, QueueLimits, Subscription};
use crate::error::ApiError;
use crate::hub::{ChannelName, Gap, Message, Wire};
use crate::telemetry::Connection;

/// How one poll behaves.
#[derive(Debug, Clone, Copy)]
pub struct PollOptions {
    pub timeout: Duration,
    pub limit: usize,
}

impl PollOptions {
    /// Reads `?timeout=SECONDS` (capped) and `?limit=N` (capped by the page size).
    pub fn from_query(
        config: &ServerConfig,
        query: &HashMap<String, String>,
    ) -> Result<Self, ApiError> {
        let timeout = match query.get("timeout") {
            Some(raw) => {
                parse_duration(raw).map_err(|e| ApiError::bad_request("bad_timeout", e))?
            }
            None => config.poll_timeout,
        }
        .min(config.max_poll_timeout);
        let limit = match query.get("limit") {
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ApiError::bad_request("bad_limit", "limit must be a positive integer")
                })?,
            None => config.poll_page_size,
        }
        .min(config.poll_page_size);
        Ok(Self { timeout, limit })
    }
}

/// The JSON object for one message, encoded once and shared by every poller.
pub fn message_object(message: &Message) -> bytes::Bytes {
    message.encoded(Wire::PollObject, |m| {
        let mut out = Vec::with_capacity(m.data.len() + 96);
        out.push(b'{');
        write_message_fields(&mut out, m);
        out.push(b'}');
        out.into()
    })
}

/// How long a long poller stays present after its poll ends, beyond the
/// poll's own timeout.
pub const POLL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What one poll collected.
struct Page {
    messages: Vec<bytes::Bytes>,
    gaps: Vec<Gap>,
    closed: Vec<ChannelName>,
    /// Publish time of the oldest message in the page (for latency).
    oldest_ms: u64,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            gaps: Vec::new(),
            closed: Vec::new(),
            oldest_ms: u64::MAX,
        }
    }
}

impl Page {
    fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.gaps.is_empty() && self.closed.is_empty()
    }

    fn push(&mut self, event: Event) {
        match event {
            Event::Message(message) => {
                self.oldest_ms = self.oldest_ms.min(message.published_at_ms());
                self.messages.push(message_object(&message));
            }
            Event::Gap(gap) => self.gaps.push(gap),
            Event::Deleted(channel) => self.closed.push(channel),
            // Long polls carry messages only; presence is read through the API.
            Event::Presence(_) => {}
        }
    }

    fn render(&self, next: &str) -> Vec<u8> {
        let size: usize = self.messages.iter().map(|m| m.len() + 1).sum();
        let mut out = Vec::with_capacity(size + 128);
        out.extend_from_slice(b"{\"messages\":[");
        for (i, message) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(message);
        }
        out.extend_from_slice(b"],\"next\":");
        serde_json::to_writer(&mut out, next).expect("writing JSON to a Vec cannot fail");
        if !self.gaps.is_empty() {
            let gaps: Vec<_> = self.gaps.iter().map(Gap::to_json).collect();
            out.extend_from_slice(b",\"gap\":true,\"gaps\":");
            serde_json::to_writer(&mut out, &gaps).expect("writing JSON to a Vec cannot fail");
        }
        if !self.closed.is_empty() {
            let closed: Vec<_> = self.closed.iter().map(|c| c.as_str()).collect();
            out.extend_from_slice(b",\"closed\":");
            serde_json::to_writer(&mut out, &closed).expect("writing JSON to a Vec cannot fail");
        }
        out.push(b'}');
        out
    }
}

fn fill(subscription: &mut Subscription, page: &mut Page, limit: usize) {
    while page.messages.len() < limit {
        match subscription.try_next() {
            Some(event) => page.push(event),
            None => break,
        }
    }
}

/// Answers one long poll.
pub async fn respond(
    ctx: Context,
    subscriber: Subscriber,
    options: PollOptions,
) -> Result<Response, ApiError> {
    // A poll reads history and waits for at most one page: its queue never
    // needs to hold more than that.
    let queue = QueueLimits {
        messages: options.limit.max(16),
        bytes: ctx.config.subscriber_queue_bytes,
    };
    // A poller stays present between polls: until the longest it may wait
    // before polling again (this poll's hold) plus five seconds.
    let linger = options.timeout + POLL_GRACE;
    let mut subscription = Subscription::open(
        ctx.engine.clone(),
        queue,
        &subscriber.channels,
        &subscriber.since,
        // A poll that does not wait (`timeout=0`) only peeks at positions, as
        // herald.js does before opening a stream: it is nobody's presence.
        subscriber
            .identity(&ctx, Some(linger), false)
            .filter(|_| !options.timeout.is_zero()),
        &subscriber.entries,
    )
    .await?;
    let mut connection = Connection::open("poll");
    let mut reason = "answered";
    let mut page = Page::default();
    fill(&mut subscription, &mut page, options.limit);
    if page.is_empty() {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => reason = "shutdown",
            _ = tokio::time::sleep(options.timeout) => reason = "timeout",
            event = subscription.next() => {
                page.push(event);
                fill(&mut subscription, &mut page, options.limit);
            }
        }
    }
    connection.set_reason(reason);
    connection.delivered(page.messages.len(), page.oldest_ms);
    let body = page.render(&subscription.cursor().render());
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    Ok(response)
}
