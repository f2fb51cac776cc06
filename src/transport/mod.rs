//! Transports: turn subscription events into bytes on a wire, and frames from
//! clients into publishes. Each transport knows its wire format and nothing of
//! how messages are stored.

pub mod poll;
pub mod protocol;
pub mod socket;
pub mod sse;
pub mod ws;

use std::sync::Arc;

use base64::Engine as _;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::engine::{Engine, EngineError};
use crate::hub::{Draft, Message, Published};
use crate::telemetry;

/// What every handler needs: the engine, the settings, the shutdown signal.
#[derive(Clone)]
pub struct Context {
    pub engine: Arc<dyn Engine>,
    pub config: Arc<ServerConfig>,
    pub shutdown: CancellationToken,
    /// Live status snapshots for `/status/stream`.
    pub status: tokio::sync::watch::Receiver<Arc<str>>,
}

/// Publishes through the engine and records it; every publish path goes through here.
pub async fn publish(ctx: &Context, draft: Draft) -> Result<Published, EngineError> {
    let bytes = draft.data.len();
    match ctx.engine.publish(draft).await {
        Ok(published) => {
            telemetry::published(bytes);
            Ok(published)
        }
        Err(error) => {
            telemetry::engine_error("publish");
            Err(error)
        }
    }
}

/// Fires when a connection opened now reaches `--max-connection-age` (never if unset).
pub fn connection_deadline(config: &ServerConfig) -> std::pin::Pin<Box<tokio::time::Sleep>> {
    // A year stands in for "never" without overflowing Instant arithmetic.
    let age = config
        .max_connection_age
        .unwrap_or(std::time::Duration::from_secs(365 * 24 * 3600));
    Box::pin(tokio::time::sleep(age))
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
