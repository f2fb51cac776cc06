//! Transports: turn subscription events into bytes on a wire, and frames from
//! clients into publishes. Each transport knows its wire format and nothing of
//! how messages are stored.
//!
//! `sse` and `poll` are HTTP responses; `ws` (raw, on `/sub/...`) and
//! `socket` (the `/ws` JSON protocol, whose codec is `protocol`) are
//! WebSockets, and share one RFC 6455 implementation, `websocket`, with the
//! demo echo.

pub mod access;
pub mod poll;
pub mod presence;
pub mod protocol;
pub mod publish;
pub mod socket;
pub mod sse;
pub mod websocket;
pub mod ws;

pub use publish::{check_publish_rate, publish};

use std::sync::Arc;

use base64::Engine as _;
use tokio_util::sync::CancellationToken;

use crate::auth::Credential;
use crate::config::ServerConfig;
use crate::engine::Engine;
use crate::hub::{ChannelPolicy, Message};

/// What every handler needs: the engine, the settings, the shutdown signal.
#[derive(Clone)]
pub struct Context {
    pub engine: Arc<dyn Engine>,
    pub config: Arc<ServerConfig>,
    /// Each channel's options (`[[channels]]` over the global flags).
    pub channels: Arc<ChannelPolicy>,
    pub shutdown: CancellationToken,
    /// Live status snapshots for `/status/stream`.
    pub status: tokio::sync::watch::Receiver<Arc<str>>,
    /// Publishes per client IP.
    pub publish_rate: Arc<crate::limits::RateLimiter>,
    /// The application's auth hook, if configured.
    pub auth_hook: Option<Arc<crate::hooks::AuthHook>>,
}

/// A subscribe request that passed every check, on its way to a transport.
#[derive(Debug)]
pub struct Subscriber {
    pub channels: Vec<crate::hub::ChannelName>,
    pub since: Vec<crate::hub::Since>,
    pub caller: access::Caller,
    /// Per channel, the presence entry the auth hook described (`None`: the
    /// caller's own).
    pub entries: Vec<Option<Arc<crate::hub::PresenceEntry>>>,
}

impl Subscriber {
    /// Who the subscription is for presence, if anything tracks presence
    /// or occupancy (nothing to pay for otherwise).
    pub fn identity(
        &self,
        ctx: &Context,
        linger: Option<std::time::Duration>,
        listen: bool,
    ) -> Option<crate::engine::subscription::Identity> {
        ctx.tracks_presence()
            .then(|| crate::engine::subscription::Identity {
                entry: self.caller.entry(),
                linger,
                listen,
            })
    }
}

impl Context {
    /// Whether any channel has presence or channel events are listened to
    /// (webhooks): subscriptions then say who they are.
    pub fn tracks_presence(&self) -> bool {
        self.channels.has_presence() || self.config.webhook.is_some()
    }
}

/// Why a streaming connection must end at its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `--max-connection-age` reached.
    MaxAge,
    /// The subscriber's token expired.
    Token,
}

/// When a connection opened now must end, and why (a year away if never).
pub fn connection_deadline(
    config: &ServerConfig,
    who: &Credential,
) -> (std::pin::Pin<Box<tokio::time::Sleep>>, Expiry) {
    // A year stands in for "never" without overflowing Instant arithmetic.
    let never = std::time::Duration::from_secs(365 * 24 * 3600);
    let age = config.max_connection_age.unwrap_or(never);
    let token = who
        .expires_at()
        .map(|exp| {
            std::time::Duration::from_millis((exp * 1000).saturating_sub(crate::hub::now_ms()))
        })
        .unwrap_or(never);
    let (after, why) = if token < age {
        (token, Expiry::Token)
    } else {
        (age, Expiry::MaxAge)
    };
    (Box::pin(tokio::time::sleep(after)), why)
}

/// Most bytes gathered into one write when several events are ready at once.
pub const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// The message's data as a JSON string value plus whether it was base64-encoded.
pub fn data_as_json_string(message: &Message) -> (String, bool) {
    match message.text() {
        Some(text) => (text.to_owned(), false),
        None => (
            base64::engine::general_purpose::STANDARD.encode(&message.data),
            true,
        ),
    }
}

/// Writes `{"id","channel","event"?,"data","encoding"?` (no closing brace) for JSON wire formats.
pub fn write_message_fields(out: &mut Vec<u8>, message: &Message) {
    let (data, base64) = data_as_json_string(message);
    out.extend_from_slice(b"\"id\":\"");
    out.extend_from_slice(message.id_text().as_bytes());
    out.extend_from_slice(b"\",\"channel\":\"");
    // Channel and event names are from a JSON-safe alphabet: no escaping needed.
    out.extend_from_slice(message.channel.as_str().as_bytes());
    out.push(b'"');
    if let Some(event) = &message.event {
        out.extend_from_slice(b",\"event\":\"");
        out.extend_from_slice(event.as_str().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"data\":");
    serde_json::to_writer(&mut *out, &data).expect("writing JSON to a Vec cannot fail");
    if base64 {
        out.extend_from_slice(b",\"encoding\":\"base64\"");
    }
}
