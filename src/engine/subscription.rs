//! A subscriber's view of one or more channels: replay, then live messages,
//! in order, each exactly once, with gaps reported.
//!
//! Every transport reads from a `Subscription`. It owns the subscriber's
//! queue and its cursor (the last id delivered on each channel), and it turns
//! the hub's signals into catch-up: when the queue overflowed or a hole
//! appears, it re-attaches from the cursor, so history fills in what the
//! queue could not hold, and duplicates at the seam are dropped by sequence.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, EngineError};
use crate::hub::{
    ChannelName, Cursor, Gap, GapReason, Inbox, Message, MessageId, Notice, PresenceEntry, Signal,
    Since, SubscriberHandle,
};
use crate::telemetry;

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Event {
    Message(Arc<Message>),
    /// Messages were missed; what follows comes after the gap.
    Gap(Gap),
    /// The channel was deleted; the subscription no longer includes it.
    Deleted(ChannelName),
    /// Someone joined or left a channel (only for a subscription that
    /// listens: [`Identity::listen`]).
    Presence(Arc<Notice>),
}

/// Who a subscription is, for presence: its entry on every channel it
/// holds (unless [`Subscription::add_as`] names another), how long it stays
/// present after letting go, and whether it wants joins and leaves.
#[derive(Debug, Clone)]
pub struct Identity {
    pub entry: Arc<PresenceEntry>,
    /// A long poller stays present this long after its poll ends.
    pub linger: Option<Duration>,
    /// Deliver joins and leaves as [`Event::Presence`].
    pub listen: bool,
}

/// How much a subscriber's queue may hold before it must catch up from history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub messages: usize,
    pub bytes: usize,
}

/// A live subscription to a set of channels.
pub struct Subscription {
    engine: Arc<dyn Engine>,
    handle: SubscriberHandle,
    inbox: Inbox,
    cursor: Cursor,
    pending: VecDeque<Event>,
    /// Channels that must re-attach from the cursor before more is delivered.
    catch_up: VecDeque<ChannelName>,
    identity: Option<Identity>,
}

enum Verdict {
    Deliver(Event),
    Skip,
}

impl Subscription {
    /// An empty subscription whose queue holds at most `queue`.
    pub fn new(engine: Arc<dyn Engine>, queue: QueueLimits) -> Self {
        let (handle, inbox) = SubscriberHandle::with_limits(queue.messages, queue.bytes);
        Self {
            engine,
            handle,
            inbox,
            cursor: Cursor::new(),
            pending: VecDeque::new(),
            catch_up: VecDeque::new(),
            identity: None,
        }
    }

    /// An empty subscription that is present as `identity` on what it holds.
    pub fn with_identity(engine: Arc<dyn Engine>, queue: QueueLimits, identity: Identity) -> Self {
        let mut subscription = Self::new(engine, queue);
        if identity.listen {
            subscription.handle.listen_as(identity.entry.client.clone());
        }
        subscription.identity = Some(identity);
        subscription
    }

    /// Subscribes to every channel in `channels`, each from its own starting point.
    /// With `identity`, it is present on each channel, as the matching
    /// entry of `entries` when there is one.
    pub async fn open(
        engine: Arc<dyn Engine>,
        queue: QueueLimits,
        channels: &[ChannelName],
        since: &[Since],
        identity: Option<Identity>,
        entries: &[Option<Arc<PresenceEntry>>],
    ) -> Result<Self, EngineError> {
        let mut subscription = match identity {
            Some(identity) => Self::with_identity(engine, queue, identity),
            None => Self::new(engine, queue),
        };
        for (i, (channel, since)) in channels.iter().zip(since).enumerate() {
            let entry = entries.get(i).cloned().flatten();
            subscription.add_as(channel, *since, entry).await?;
        }
        Ok(subscription)
    }

    /// Adds `channel` (or restarts it from `since`); returns the channel's newest id.
    pub async fn add(
        &mut self,
        channel: &ChannelName,
        since: Since,
    ) -> Result<MessageId, EngineError> {
        self.add_as(channel, since, None).await
    }

    /// [`Subscription::add`], present on this channel as `entry` rather
    /// than as the identity's own entry (what an auth hook answered).
    pub async fn add_as(
        &mut self,
        channel: &ChannelName,
        since: Since,
        entry: Option<Arc<PresenceEntry>>,
    ) -> Result<MessageId, EngineError> {
        self.drop_pending(channel);
        let replay = self.engine.attach(channel, &self.handle, since).await?;
        if !self.is_subscribed(channel) {
            telemetry::subscriptions(1.0);
            if let Some(identity) = &self.identity {
                let entry = entry.as_ref().unwrap_or(&identity.entry);
                if let Err(error) = self.engine.hold(channel, entry).await {
                    self.engine.detach(channel, self.handle.id());
                    telemetry::subscriptions(-1.0);
                    return Err(error);
                }
            }
        }
        let start = replay
            .messages
            .first()
            .map(|m| MessageId::new(m.id.epoch, m.id.seq - 1))
            .unwrap_or(replay.position);
        self.cursor.set(channel, start);
        if let Some(gap) = replay.gap {
            self.pending.push_back(Event::Gap(gap));
        }
        self.pending
            .extend(replay.messages.into_iter().map(Event::Message));
        Ok(replay.position)
    }

    /// Stops receiving `channel`. Returns false if it was not subscribed.
    pub fn remove(&mut self, channel: &ChannelName) -> bool {
        if self.cursor.get(channel).is_none() {
            return false;
        }
        self.engine.detach(channel, self.handle.id());
        self.cursor.remove(channel);
        self.drop_pending(channel);
        self.let_go(channel);
        telemetry::subscriptions(-1.0);
        true
    }

    /// Stops being present on `channel`.
    fn let_go(&self, channel: &ChannelName) {
        if let Some(identity) = &self.identity {
            self.engine
                .release(channel, &identity.entry.client, identity.linger);
        }
    }

    pub fn is_subscribed(&self, channel: &ChannelName) -> bool {
        self.cursor.get(channel).is_some()
    }

    /// Number of channels subscribed.
    pub fn len(&self) -> usize {
        self.cursor.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cursor.is_empty()
    }

    /// The last id delivered on each channel: what a client resumes from.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The next event, waiting for one if needed. Cancel-safe.
    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(event) = self.next_pending() {
                return event;
            }
            if let Some(channel) = self.catch_up.front().cloned() {
                if let Err(error) = self.resume(&channel).await {
                    // The engine is unavailable: keep the channel queued for a
                    // later try rather than losing track of it.
                    tracing::warn!(%channel, %error, "catch-up failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
                self.catch_up.pop_front();
                continue;
            }
            // Queued messages come before signals: the inbox hands out
            // messages while it has any, then `None` once only signals are left.
            match self.inbox.wait().await {
                Some(message) => {
                    if let Verdict::Deliver(event) = self.judge(message) {
                        return event;
                    }
                }
                None => {
                    self.take_signals();
                }
            }
        }
    }

    /// The next replayed or re-queued event, if any.
    fn next_pending(&mut self) -> Option<Event> {
        while let Some(event) = self.pending.pop_front() {
            match event {
                Event::Message(message) => {
                    if let Verdict::Deliver(event) = self.judge(message) {
                        return Some(event);
                    }
                }
                Event::Gap(gap) => {
                    telemetry::gap(gap.reason.as_str());
                    return Some(Event::Gap(gap));
                }
                other => return Some(other),
            }
        }
        None
    }

    /// The next event if one is ready now (for batching several into one write).
    pub fn try_next(&mut self) -> Option<Event> {
        if let Some(event) = self.next_pending() {
            return Some(event);
        }
        if !self.catch_up.is_empty() {
            return None;
        }
        while let Some(message) = self.inbox.try_recv() {
            if let Verdict::Deliver(event) = self.judge(message) {
                return Some(event);
            }
            if !self.catch_up.is_empty() {
                return None;
            }
        }
        None
    }

    /// Decides what to do with a message: deliver, skip a duplicate, or
    /// notice a hole and schedule a catch-up.
    fn judge(&mut self, message: Arc<Message>) -> Verdict {
        let Some(last) = self.cursor.get(&message.channel) else {
            return Verdict::Skip;
        };
        if self.catch_up.contains(&message.channel) {
            return Verdict::Skip;
        }
        if message.id.epoch != last.epoch {
            // History was reset under us: what we had is gone. Report it and
            // continue in the new epoch.
            self.pending.push_front(Event::Message(message.clone()));
            let gap = Gap {
                channel: message.channel.clone(),
                reason: GapReason::Epoch,
                since: Some(last),
                missed: None,
                first_id: Some(message.id),
            };
            self.cursor.set(
                &message.channel,
                MessageId::new(message.id.epoch, message.id.seq - 1),
            );
            telemetry::gap(gap.reason.as_str());
            return Verdict::Deliver(Event::Gap(gap));
        }
        if message.id.seq <= last.seq {
            return Verdict::Skip;
        }
        if message.id.seq > last.seq + 1 {
            self.catch_up.push_back(message.channel.clone());
            return Verdict::Skip;
        }
        self.cursor.set(&message.channel, message.id);
        Verdict::Deliver(Event::Message(message))
    }

    /// Turns hub signals into catch-ups and deletions.
    fn take_signals(&mut self) {
        for signal in self.inbox.take_signals() {
            match signal {
                Signal::Lagged(channel) => {
                    telemetry::lagged();
                    if self.is_subscribed(&channel) && !self.catch_up.contains(&channel) {
                        self.catch_up.push_back(channel);
                    }
                }
                Signal::Deleted(channel) => {
                    if self.is_subscribed(&channel) {
                        telemetry::subscriptions(-1.0);
                        self.cursor.remove(&channel);
                        self.drop_pending(&channel);
                        self.let_go(&channel);
                        self.pending.push_back(Event::Deleted(channel));
                    }
                }
                Signal::Notice(notice) => {
                    let listening = self.identity.as_ref().is_some_and(|i| i.listen);
                    if listening && self.is_subscribed(&notice.channel) {
                        self.pending.push_back(Event::Presence(notice));
                    }
                }
            }
        }
    }

    /// Re-attaches `channel` from the last id delivered.
    async fn resume(&mut self, channel: &ChannelName) -> Result<(), EngineError> {
        let Some(last) = self.cursor.get(channel) else {
            return Ok(());
        };
        let replay = self
            .engine
            .attach(channel, &self.handle, Since::After(last))
            .await?;
        if let Some(gap) = replay.gap {
            // Skip straight to what history still has.
            let start = replay
                .messages
                .first()
                .map(|m| MessageId::new(m.id.epoch, m.id.seq - 1))
                .unwrap_or(replay.position);
            self.cursor.set(channel, start);
            self.pending.push_back(Event::Gap(gap));
        }
        self.pending
            .extend(replay.messages.into_iter().map(Event::Message));
        Ok(())
    }

    fn drop_pending(&mut self, channel: &ChannelName) {
        self.pending.retain(|event| match event {
            Event::Message(m) => &m.channel != channel,
            Event::Gap(g) => &g.channel != channel,
            Event::Deleted(c) => c != channel,
            Event::Presence(n) => &n.channel != channel,
        });
        self.catch_up.retain(|c| c != channel);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        telemetry::subscriptions(-(self.cursor.len() as f64));
        for channel in self.cursor.channels() {
            self.engine.detach(channel, self.handle.id());
            self.let_go(channel);
        }
    }
}
