//! What every publish path shares, whichever layer it arrives through: the
//! HTTP publish API, a raw WebSocket frame, a `/ws` `pub` op, the demo echo.
//! One function stores and records a publish; the JSON forms of a publish's
//! answer and of a `data` field are defined once here.

use std::net::IpAddr;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};

use super::Context;
use crate::engine::EngineError;
use crate::error::ApiError;
use crate::hub::{DataKind, Draft, Published};
use crate::telemetry;

/// The client's address: the peer, or the one a trusted proxy forwarded.
pub fn client_ip(ctx: &Context, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
    ctx.config.trusted_proxies.client_ip(peer, headers)
}

/// Refuses a publish from `peer` beyond `--publish-rate`.
pub fn check_publish_rate(ctx: &Context, peer: IpAddr) -> Result<(), ApiError> {
    ctx.publish_rate
        .check(peer)
        .map_err(|wait| ApiError::RateLimited {
            retry_after: crate::limits::retry_after_seconds(wait),
        })
}

/// Publishes through the engine and records it; every publish path goes through here.
pub async fn publish(ctx: &Context, mut draft: Draft) -> Result<Published, EngineError> {
    // Copied out of the buffer it arrived in: a slice of hyper's (or a
    // socket's) read buffer keeps that whole buffer alive for as long as the
    // message stays in history (measured: about 5 KiB per 256-byte message).
    draft.data = bytes::Bytes::copy_from_slice(&draft.data);
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

/// The publish answer: `{"id", "channel", "subscribers"}`.
pub fn published_json(published: &Published) -> Value {
    json!({
        "id": published.id.to_string(),
        "channel": published.channel.as_str(),
        "subscribers": published.subscribers,
    })
}

/// The publish answer serialized straight from the result, with the keys
/// in [`published_json`]'s order: made for every single publish, where
/// building a JSON value first (a map, its keys) showed in profiles.
pub struct PublishedAnswer(pub Published);

impl serde::Serialize for PublishedAnswer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut answer = serializer.serialize_struct("Published", 3)?;
        answer.serialize_field("channel", self.0.channel.as_str())?;
        answer.serialize_field("id", &self.0.id.to_string())?;
        answer.serialize_field("subscribers", &self.0.subscribers)?;
        answer.end()
    }
}

/// The bytes a JSON `data` field stands for and their kind: a string as is
/// (or base64-decoded: binary), anything else as its JSON text.
pub fn data_from_json(data: Value, encoding: Option<&str>) -> Result<(Bytes, DataKind), ApiError> {
    match (data, encoding) {
        (Value::String(s), Some("base64")) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(|bytes| (Bytes::from(bytes), DataKind::Binary))
            .map_err(|e| {
                ApiError::bad_request("bad_data", format!("data is not valid base64: {e}"))
            }),
        (_, Some(other)) if other != "text" => Err(ApiError::bad_request(
            "bad_encoding",
            format!("unknown encoding {other:?}; use \"base64\" or leave it out"),
        )),
        (Value::String(s), _) => Ok((Bytes::from(s), DataKind::Text)),
        (other, _) => Ok((Bytes::from(other.to_string()), DataKind::Text)),
    }
}

#[cfg(test)]
mod answer_tests {
    use super::*;
    use crate::hub::{ChannelName, MessageId};

    #[test]
    fn the_direct_answer_is_the_json_values_bytes() {
        for (channel, subscribers) in [("a", 0), ("chat.room-1", 12_345)] {
            let published = Published {
                channel: ChannelName::parse(channel).unwrap(),
                id: MessageId::new(1_700_000_000, 42),
                subscribers,
            };
            assert_eq!(
                serde_json::to_string(&PublishedAnswer(published.clone())).unwrap(),
                published_json(&published).to_string()
            );
        }
    }
}
