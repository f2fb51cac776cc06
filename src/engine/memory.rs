//! The memory engine: history in RAM, fan-out in process. Nothing to install;
//! history is lost on restart (a new epoch tells resuming clients so).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::presence::{ChannelEvent, Presence};
use super::{Engine, EngineError, EngineTotals};
use crate::hub::{
    now_ms, ChannelActivity, ChannelInfo, ChannelName, ChannelPolicy, Draft, HistoryLimits, Hub,
    PresenceEntry, Published, Replay, Since, SubscriberHandle, SubscriberId,
};

/// The default engine: the hub alone.
#[derive(Debug)]
pub struct MemoryEngine {
    hub: Hub,
    presence: Presence,
}

impl MemoryEngine {
    /// Every channel keeps `limits` of history.
    pub fn new(limits: HistoryLimits) -> Self {
        Self::with_policy(Arc::new(ChannelPolicy::uniform(limits)))
    }

    /// Each channel keeps the history its options say.
    pub fn with_policy(policy: Arc<ChannelPolicy>) -> Self {
        Self::open(policy, false)
    }

    /// Each channel keeps the history its options say; with
    /// `track_occupancy`, every channel's occupancy is reported.
    pub fn open(policy: Arc<ChannelPolicy>, track_occupancy: bool) -> Self {
        Self {
            hub: Hub::with_policy(policy.clone()),
            presence: Presence::new(policy, track_occupancy),
        }
    }
}

#[async_trait]
impl Engine for MemoryEngine {
    async fn publish(&self, draft: Draft) -> Result<Published, EngineError> {
        Ok(self.hub.publish(draft, now_ms()))
    }

    async fn attach(
        &self,
        channel: &ChannelName,
        subscriber: &SubscriberHandle,
        since: Since,
    ) -> Result<Replay, EngineError> {
        Ok(self.hub.attach(channel, subscriber, since))
    }

    fn detach(&self, channel: &ChannelName, subscriber: SubscriberId) {
        self.hub.detach(channel, subscriber);
    }

    async fn info(&self, channel: &ChannelName) -> Result<Option<ChannelInfo>, EngineError> {
        Ok(self.hub.info(channel, now_ms()))
    }

    async fn delete(&self, channel: &ChannelName) -> Result<bool, EngineError> {
        Ok(self.hub.delete(channel))
    }

    async fn is_ready(&self) -> bool {
        true
    }

    fn sweep(&self) {
        self.hub.sweep(now_ms());
        self.presence.sweep(&self.hub);
    }

    async fn hold(
        &self,
        channel: &ChannelName,
        entry: &Arc<PresenceEntry>,
    ) -> Result<(), EngineError> {
        self.presence.hold_here(&self.hub, channel, entry);
        Ok(())
    }

    fn release(&self, channel: &ChannelName, client: &Arc<str>, linger: Option<Duration>) {
        self.presence
            .release_here(&self.hub, channel, client, linger);
    }

    async fn presence(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<Vec<Arc<PresenceEntry>>>, EngineError> {
        Ok(self.presence.listing(channel))
    }

    fn channel_events(&self) -> tokio::sync::broadcast::Receiver<ChannelEvent> {
        self.presence.subscribe()
    }

    fn channel_count(&self) -> usize {
        self.hub.channel_count()
    }

    fn activity(&self) -> Vec<ChannelActivity> {
        self.hub.activity()
    }

    fn totals(&self) -> EngineTotals {
        let (history_messages, history_bytes) = self.hub.history_totals();
        EngineTotals {
            channels: self.hub.channel_count(),
            history_messages,
            history_bytes,
        }
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
