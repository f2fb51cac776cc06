//! Presence: who holds a subscription to a channel, as pure state.
//!
//! The roster keeps one member per client per channel, with a count of the
//! subscriptions holding it (a client may hold a channel twice for a moment,
//! as a long poller does between two polls). A member leaves when its last
//! holder lets go, or, for a long poller, when it has not come back within
//! its linger time. The roster answers what changed (a join, a leave, a
//! channel occupied or vacated) and the engines turn that into notices for
//! subscribers and events for webhooks. Only channels that need it are
//! tracked: presence channels, and every channel while someone listens for
//! occupancy (webhooks), so a server with neither pays nothing.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use serde::Serialize;
use serde_json::Value;

use super::name::ChannelName;

/// One subscription's presence entry: `{"client", "user", "info", "transport"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceEntry {
    /// The opaque id herald gives the connection (or a long poller's own).
    pub client: Arc<str>,
    /// The JWT `sub`, or what the auth hook answered; `null` when anonymous.
    pub user: Option<String>,
    /// The JWT claim `herald.info`, or the auth hook's `info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
    /// `ws`, `ws-protocol`, `sse` or `poll`.
    pub transport: &'static str,
}

/// A fresh client id: random, so ids from different nodes never collide.
pub fn new_client_id() -> Arc<str> {
    let mut n: u64 = rand::random();
    let mut out = String::with_capacity(13);
    loop {
        let digit = (n % 36) as u32;
        out.push(char::from_digit(digit, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.into()
}

/// Whether a long poller's own client id (`?client=`) is acceptable:
/// 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn valid_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether a member came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Movement {
    Join,
    Leave,
}

impl Movement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Leave => "leave",
        }
    }
}

/// A join or leave told to a channel's other subscribers, encoded once:
/// `{"op": "join"|"leave", "channel", "client", "user", "info"}` is both the
/// `/ws` frame's text and the SSE event's data.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub movement: Movement,
    pub channel: ChannelName,
    /// The member's client: its own connection is not told.
    pub client: Arc<str>,
    pub json: Bytes,
}

impl Notice {
    pub fn new(movement: Movement, channel: &ChannelName, entry: &PresenceEntry) -> Self {
        let json = serde_json::json!({
            "op": movement.as_str(),
            "channel": channel.as_str(),
            "client": &*entry.client,
            "user": entry.user,
            "info": entry.info,
        });
        Self {
            movement,
            channel: channel.clone(),
            client: entry.client.clone(),
            json: Bytes::from(json.to_string()),
        }
    }
}

/// What a channel's roster change means to the rest of the server.
#[derive(Debug, Clone, PartialEq)]
pub enum RosterChange {
    /// The channel had no member and now has one.
    Occupied,
    /// The channel's last member left.
    Vacated,
    /// A member came (presence channels only).
    Join(Arc<PresenceEntry>),
    /// A member went (presence channels only).
    Leave(Arc<PresenceEntry>),
}

#[derive(Debug)]
struct Member {
    entry: Arc<PresenceEntry>,
    /// Subscriptions holding this member now.
    holders: u32,
    /// With no holder, the member stays until then (Unix ms): a long poller
    /// between two polls.
    linger_until_ms: u64,
    /// Whether joins and leaves of this member are presence (or occupancy only).
    listed: bool,
}

/// Every tracked channel's members on this node.
#[derive(Debug, Default)]
pub struct Roster {
    channels: DashMap<ChannelName, HashMap<Arc<str>, Member>>,
}

impl Roster {
    /// A subscription holds `channel` as `entry.client`. `listed` says the
    /// channel has presence (a join is reported) rather than occupancy only.
    pub fn hold(
        &self,
        channel: &ChannelName,
        entry: &Arc<PresenceEntry>,
        listed: bool,
    ) -> Vec<RosterChange> {
        let mut members = self.channels.entry(channel.clone()).or_default();
        let mut changes = Vec::new();
        if members.is_empty() {
            changes.push(RosterChange::Occupied);
        }
        match members.get_mut(&entry.client) {
            Some(member) => {
                member.holders += 1;
                member.linger_until_ms = 0;
            }
            None => {
                members.insert(
                    entry.client.clone(),
                    Member {
                        entry: entry.clone(),
                        holders: 1,
                        linger_until_ms: 0,
                        listed,
                    },
                );
                if listed {
                    changes.push(RosterChange::Join(entry.clone()));
                }
            }
        }
        changes
    }

    /// A subscription lets go of `channel`. With `linger_until_ms`, a member
    /// left without holders stays until then (see [`Roster::expire`]).
    pub fn release(
        &self,
        channel: &ChannelName,
        client: &str,
        linger_until_ms: Option<u64>,
    ) -> Vec<RosterChange> {
        let mut changes = Vec::new();
        let Some(mut members) = self.channels.get_mut(channel) else {
            return changes;
        };
        let Some(member) = members.get_mut(client) else {
            return changes;
        };
        member.holders = member.holders.saturating_sub(1);
        if member.holders > 0 {
            return changes;
        }
        if let Some(until) = linger_until_ms {
            member.linger_until_ms = member.linger_until_ms.max(until);
            return changes;
        }
        if let Some(member) = members.remove(client) {
            if member.listed {
                changes.push(RosterChange::Leave(member.entry));
            }
        }
        let empty = members.is_empty();
        drop(members);
        if empty {
            self.forget_if_empty(channel);
            changes.push(RosterChange::Vacated);
        }
        changes
    }

    /// Drops lingering members whose time is up.
    pub fn expire(&self, now_ms: u64) -> Vec<(ChannelName, RosterChange)> {
        let mut changes = Vec::new();
        let mut emptied = Vec::new();
        for mut channel in self.channels.iter_mut() {
            let before = channel.len();
            let mut left = Vec::new();
            channel.retain(|_, member| {
                let stays = member.holders > 0 || member.linger_until_ms > now_ms;
                if !stays && member.listed {
                    left.push(member.entry.clone());
                }
                stays
            });
            let name = channel.key().clone();
            changes.extend(
                left.into_iter()
                    .map(|entry| (name.clone(), RosterChange::Leave(entry))),
            );
            if before > 0 && channel.is_empty() {
                emptied.push(name);
            }
        }
        for name in emptied {
            if self.forget_if_empty(&name) {
                changes.push((name, RosterChange::Vacated));
            }
        }
        changes
    }

    fn forget_if_empty(&self, channel: &ChannelName) -> bool {
        self.channels
            .remove_if(channel, |_, members| members.is_empty())
            .is_some()
    }

    /// The channel's listed members (presence), in no particular order.
    pub fn members(&self, channel: &ChannelName) -> Vec<Arc<PresenceEntry>> {
        self.channels
            .get(channel)
            .map(|members| {
                members
                    .values()
                    .filter(|m| m.listed)
                    .map(|m| m.entry.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Channels with at least one member here.
    pub fn occupied(&self) -> Vec<ChannelName> {
        self.channels.iter().map(|c| c.key().clone()).collect()
    }

    /// Members over all channels (for memory accounting and metrics).
    pub fn len(&self) -> usize {
        self.channels.iter().map(|c| c.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

/// A presence listing: `{"channel", "count", "users", "clients"}`.
pub fn listing(channel: &ChannelName, entries: &[Arc<PresenceEntry>]) -> Value {
    let mut users: Vec<&str> = entries.iter().filter_map(|e| e.user.as_deref()).collect();
    users.sort_unstable();
    users.dedup();
    serde_json::json!({
        "channel": channel.as_str(),
        "count": entries.len(),
        "users": users.len(),
        "clients": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(client: &str, user: Option<&str>) -> Arc<PresenceEntry> {
        Arc::new(PresenceEntry {
            client: client.into(),
            user: user.map(str::to_owned),
            info: None,
            transport: "sse",
        })
    }

    fn room() -> ChannelName {
        ChannelName::parse("room").unwrap()
    }

    #[test]
    fn first_holder_occupies_and_joins_last_one_leaves_and_vacates() {
        let roster = Roster::default();
        let a = entry("a", Some("ann"));
        let b = entry("b", None);
        assert_eq!(
            roster.hold(&room(), &a, true),
            vec![RosterChange::Occupied, RosterChange::Join(a.clone())]
        );
        assert_eq!(
            roster.hold(&room(), &b, true),
            vec![RosterChange::Join(b.clone())]
        );
        assert_eq!(roster.hold(&room(), &a, true), vec![], "a second holder");
        assert_eq!(roster.release(&room(), "a", None), vec![]);
        assert_eq!(
            roster.release(&room(), "a", None),
            vec![RosterChange::Leave(a)]
        );
        assert_eq!(
            roster.release(&room(), "b", None),
            vec![RosterChange::Leave(b), RosterChange::Vacated]
        );
        assert!(roster.is_empty());
        assert_eq!(roster.release(&room(), "b", None), vec![], "already gone");
    }

    #[test]
    fn a_lingering_member_stays_until_its_time_or_comes_back() {
        let roster = Roster::default();
        let p = entry("p.1", Some("ann"));
        roster.hold(&room(), &p, true);
        assert_eq!(roster.release(&room(), "p.1", Some(1_000)), vec![]);
        assert_eq!(roster.members(&room()).len(), 1, "still present");
        assert!(roster.expire(999).is_empty());
        assert_eq!(roster.hold(&room(), &p, true), vec![], "back in time");
        roster.release(&room(), "p.1", Some(2_000));
        assert_eq!(
            roster.expire(2_000),
            vec![
                (room(), RosterChange::Leave(p)),
                (room(), RosterChange::Vacated)
            ]
        );
        assert!(roster.is_empty());
    }

    #[test]
    fn occupancy_only_members_are_not_listed_and_never_join() {
        let roster = Roster::default();
        let a = entry("a", None);
        assert_eq!(
            roster.hold(&room(), &a, false),
            vec![RosterChange::Occupied]
        );
        assert!(roster.members(&room()).is_empty());
        assert_eq!(
            roster.release(&room(), "a", None),
            vec![RosterChange::Vacated]
        );
    }

    #[test]
    fn a_listing_counts_connections_and_distinct_users() {
        let entries = vec![
            entry("a", Some("ann")),
            entry("b", Some("ann")),
            entry("c", None),
        ];
        let listing = listing(&room(), &entries);
        assert_eq!(listing["count"], 3);
        assert_eq!(listing["users"], 1);
        assert_eq!(listing["clients"][2]["user"], Value::Null);
        assert_eq!(listing["clients"][0]["transport"], "sse");
    }

    #[test]
    fn a_notice_is_the_same_json_for_every_transport() {
        let notice = Notice::new(Movement::Join, &room(), &entry("a", Some("ann")));
        let json: Value = serde_json::from_slice(&notice.json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"op": "join", "channel": "room", "client": "a", "user": "ann", "info": null})
        );
    }
}
