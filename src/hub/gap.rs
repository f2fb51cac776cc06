//! Gap reports: what a subscriber missed and why.

use serde::Serialize;

use super::id::MessageId;
use super::name::ChannelName;

/// Why messages a subscriber asked for cannot be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// They left history (count, byte or age limit) before the subscriber got them.
    Trimmed,
    /// The id belongs to another history epoch: history was lost or reset.
    Epoch,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trimmed => "trimmed",
            Self::Epoch => "epoch",
        }
    }
}

/// Told to a subscriber before the messages that follow a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub channel: ChannelName,
    pub reason: GapReason,
    /// The id the subscriber resumed from.
    pub since: Option<MessageId>,
    /// How many messages were missed, when known.
    pub missed: Option<u64>,
    /// The first id delivered after the gap, if history holds any.
    pub first_id: Option<MessageId>,
}

#[derive(Serialize)]
struct GapJson<'a> {
    channel: &'a str,
    reason: GapReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_id: Option<String>,
}

impl Gap {
    /// `{"channel", "reason", "since"?, "missed"?, "first_id"?}` as sent on every transport.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(GapJson {
            channel: self.channel.as_str(),
            reason: self.reason,
            since: self.since.map(|id| id.to_string()),
            missed: self.missed,
            first_id: self.first_id.map(|id| id.to_string()),
        })
        .unwrap_or(serde_json::Value::Null)
    }
}
