//! Presence as clients and the backend read it: `{"channel", "count",
//! "users", "clients"}` for `GET /pub/{channel}/presence` and the `/ws`
//! `presence` op.

use serde_json::Value;

use super::Context;
use crate::error::ApiError;
use crate::hub::ChannelName;

/// Who is on `channel` (every node's clients with Redis); `404
/// presence_off` for a channel without presence.
pub async fn listing(ctx: &Context, channel: &ChannelName) -> Result<Value, ApiError> {
    match ctx.engine.presence(channel).await? {
        Some(mut entries) => {
            // Client ids are random: sorted, the answer is stable.
            entries.sort_by(|a, b| a.client.cmp(&b.client));
            Ok(crate::hub::presence::listing(channel, &entries))
        }
        None => Err(ApiError::PresenceOff(channel.as_str().to_owned())),
    }
}
