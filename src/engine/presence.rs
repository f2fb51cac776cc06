//! Presence and occupancy as the engines serve them: the hub's roster, the
//! joins and leaves told to a channel's subscribers, and the stream of
//! channel events (occupied, vacated, join, leave) that webhooks listen to.
//!
//! The memory and durable engines use [`Presence`] as it is; the Redis
//! engine keeps one for its own node's members and shares them through
//! Redis for the cluster-wide view.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::hub::{
    now_ms, ChannelName, ChannelPolicy, Hub, Movement, Notice, PresenceEntry, Roster, RosterChange,
};

/// Above this many subscribers of a channel on one node, joins and leaves
/// are not told to that node's subscribers (presence is still listed): the
/// fan-out of every join to every subscriber grows with the square of the
/// channel's size.
pub const JOIN_LEAVE_MAX_LISTENERS: usize = 1_000;

/// Channel events kept for a slow listener before it misses some.
const EVENT_BUFFER: usize = 4_096;

/// What happened to a channel, for webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChannelEventKind {
    #[serde(rename = "channel.occupied")]
    Occupied,
    #[serde(rename = "channel.vacated")]
    Vacated,
    #[serde(rename = "presence.join")]
    Join,
    #[serde(rename = "presence.leave")]
    Leave,
}

impl ChannelEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Occupied => "channel.occupied",
            Self::Vacated => "channel.vacated",
            Self::Join => "presence.join",
            Self::Leave => "presence.leave",
        }
    }

    /// Every kind, for metrics that exist from startup.
    pub const ALL: [ChannelEventKind; 4] = [Self::Occupied, Self::Vacated, Self::Join, Self::Leave];
}

/// One channel event: `{"type", "channel", "time_ms", "client"?, "user"?}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelEvent {
    #[serde(rename = "type")]
    pub kind: ChannelEventKind,
    pub channel: ChannelName,
    pub time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ChannelEvent {
    pub fn new(
        kind: ChannelEventKind,
        channel: &ChannelName,
        entry: Option<&PresenceEntry>,
    ) -> Self {
        Self {
            kind,
            channel: channel.clone(),
            time_ms: now_ms(),
            client: entry.map(|e| e.client.clone()),
            user: entry.and_then(|e| e.user.clone()),
        }
    }
}

/// One node's presence and occupancy.
#[derive(Debug)]
pub struct Presence {
    roster: Roster,
    policy: Arc<ChannelPolicy>,
    events: broadcast::Sender<ChannelEvent>,
    /// Track every channel's occupancy (someone listens for it), not only
    /// presence channels.
    track_occupancy: bool,
}

impl Presence {
    pub fn new(policy: Arc<ChannelPolicy>, track_occupancy: bool) -> Self {
        Self {
            roster: Roster::default(),
            policy,
            events: broadcast::channel(EVENT_BUFFER).0,
            track_occupancy,
        }
    }

    /// Whether `channel` is tracked at all, and whether it lists presence.
    fn tracking(&self, channel: &ChannelName) -> Option<bool> {
        if !self.track_occupancy && !self.policy.has_presence() {
            return None;
        }
        let presence = self.policy.options(channel).presence;
        (presence || self.track_occupancy).then_some(presence)
    }

    /// Whether `channel` has presence.
    pub fn listed(&self, channel: &ChannelName) -> bool {
        self.policy.has_presence() && self.policy.options(channel).presence
    }

    /// Whether joins and leaves of `channel` are told to its subscribers.
    pub fn tells(&self, channel: &ChannelName) -> bool {
        let options = self.policy.options(channel);
        options.presence && options.join_leave
    }

    /// A subscription holds `channel`: the roster's changes.
    pub fn hold(&self, channel: &ChannelName, entry: &Arc<PresenceEntry>) -> Vec<RosterChange> {
        match self.tracking(channel) {
            Some(listed) => self.roster.hold(channel, entry, listed),
            None => Vec::new(),
        }
    }

    /// A subscription lets go of `channel` (a long poller lingers for `linger`).
    pub fn release(
        &self,
        channel: &ChannelName,
        client: &str,
        linger: Option<Duration>,
    ) -> Vec<RosterChange> {
        if self.tracking(channel).is_none() {
            return Vec::new();
        }
        let until = linger.map(|d| now_ms() + d.as_millis() as u64);
        self.roster.release(channel, client, until)
    }

    /// Lingering members whose time is up leave.
    pub fn expire(&self) -> Vec<(ChannelName, RosterChange)> {
        if self.roster.is_empty() {
            return Vec::new();
        }
        self.roster.expire(now_ms())
    }

    /// This node's members of `channel`.
    pub fn members(&self, channel: &ChannelName) -> Vec<Arc<PresenceEntry>> {
        self.roster.members(channel)
    }

    /// Channels with members on this node.
    pub fn occupied(&self) -> Vec<ChannelName> {
        self.roster.occupied()
    }

    /// Members tracked on this node.
    pub fn len(&self) -> usize {
        self.roster.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roster.is_empty()
    }

    /// Listens to channel events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ChannelEvent> {
        self.events.subscribe()
    }

    /// Sends a channel event to whoever listens (nobody is fine).
    pub fn emit(&self, event: ChannelEvent) {
        let _ = self.events.send(event);
    }

    /// Tells this node's subscribers of `channel` a join or leave, if the
    /// channel wants it.
    pub fn tell(
        &self,
        hub: &Hub,
        channel: &ChannelName,
        movement: Movement,
        entry: &PresenceEntry,
    ) {
        if self.tells(channel) {
            let notice = Arc::new(Notice::new(movement, channel, entry));
            hub.notify(&notice, JOIN_LEAVE_MAX_LISTENERS);
        }
    }

    /// What a single node does with a roster change: tell its subscribers
    /// and emit the event.
    pub fn apply(&self, hub: &Hub, channel: &ChannelName, change: RosterChange) {
        let event = match &change {
            RosterChange::Occupied => ChannelEvent::new(ChannelEventKind::Occupied, channel, None),
            RosterChange::Vacated => ChannelEvent::new(ChannelEventKind::Vacated, channel, None),
            RosterChange::Join(entry) => {
                self.tell(hub, channel, Movement::Join, entry);
                ChannelEvent::new(ChannelEventKind::Join, channel, Some(entry))
            }
            RosterChange::Leave(entry) => {
                self.tell(hub, channel, Movement::Leave, entry);
                ChannelEvent::new(ChannelEventKind::Leave, channel, Some(entry))
            }
        };
        self.emit(event);
    }

    /// [`Presence::apply`] for each change.
    pub fn apply_all(&self, hub: &Hub, channel: &ChannelName, changes: Vec<RosterChange>) {
        for change in changes {
            self.apply(hub, channel, change);
        }
    }

    /// A subscription holds `channel` on a node that is the whole picture
    /// (memory, durable): the changes are told and emitted at once.
    pub fn hold_here(&self, hub: &Hub, channel: &ChannelName, entry: &Arc<PresenceEntry>) {
        let changes = self.hold(channel, entry);
        self.apply_all(hub, channel, changes);
    }

    /// [`Presence::release`], told and emitted at once (see [`Presence::hold_here`]).
    pub fn release_here(
        &self,
        hub: &Hub,
        channel: &ChannelName,
        client: &str,
        linger: Option<Duration>,
    ) {
        let changes = self.release(channel, client, linger);
        self.apply_all(hub, channel, changes);
    }

    /// This node's members of `channel`, or `None` without presence.
    pub fn listing(&self, channel: &ChannelName) -> Option<Vec<Arc<PresenceEntry>>> {
        self.listed(channel).then(|| self.members(channel))
    }

    /// Expires lingering members and applies what that changed.
    pub fn sweep(&self, hub: &Hub) {
        for (channel, change) in self.expire() {
            self.apply(hub, &channel, change);
        }
    }
}
