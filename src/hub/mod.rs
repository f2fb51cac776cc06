//! The hub: channels, ids, history and fan-out, with no I/O.
//!
//! Each channel sits behind its own lock in a sharded map, so publishes to
//! different channels never contend, and no lock is held across an await.
//! Engines build on the hub: the memory engine is the hub alone; the others
//! add a store behind it.

pub mod channel;
pub mod gap;
pub mod history;
pub mod id;
pub mod message;
pub mod name;
pub mod options;
pub mod presence;
pub mod subscriber;

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;

pub use channel::{ChannelState, Mirrored, Published, Replay};
pub use gap::{Gap, GapReason};
pub use history::{History, HistoryLimits};
pub use id::{Cursor, CursorError, MessageId, Since};
pub use message::{now_ms, DataKind, Message, Wire};
pub use name::{pattern_matches, ChannelName, EventName, NameError};
pub use options::{ChannelOptions, ChannelPolicy, ChannelRule};
pub use presence::{Movement, Notice, PresenceEntry, Roster, RosterChange};
pub use subscriber::{Inbox, Signal, SubscriberHandle, SubscriberId};

/// A snapshot of a channel for `GET /pub/{channel}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub channel: ChannelName,
    pub subscribers: usize,
    pub messages: usize,
    pub bytes: usize,
    pub first_id: Option<MessageId>,
    pub last_id: Option<MessageId>,
}

/// One channel's counters, sampled for the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelActivity {
    pub channel: ChannelName,
    pub last_seq: u64,
    pub subscribers: usize,
}

/// A new publish: what to append to a channel.
#[derive(Debug, Clone)]
pub struct Draft {
    pub channel: ChannelName,
    pub event: Option<EventName>,
    pub data: Bytes,
    /// Text or binary, as the publisher said.
    pub kind: DataKind,
    pub idempotency_key: Option<String>,
}

#[derive(Debug)]
struct Channel {
    state: Mutex<ChannelState>,
}

/// All channels of one node.
#[derive(Debug)]
pub struct Hub {
    channels: DashMap<ChannelName, Arc<Channel>>,
    policy: Arc<ChannelPolicy>,
}

/// A fresh random epoch: small enough to keep ids short, random enough that
/// a restarted node never reuses one.
pub fn new_epoch() -> u64 {
    rand::random_range(36u64.pow(6)..36u64.pow(8))
}

impl Hub {
    /// A hub whose channels all keep `limits` of history.
    pub fn new(limits: HistoryLimits) -> Self {
        Self::with_policy(Arc::new(ChannelPolicy::uniform(limits)))
    }

    /// A hub whose channels keep the history their options say.
    pub fn with_policy(policy: Arc<ChannelPolicy>) -> Self {
        Self {
            channels: DashMap::new(),
            policy,
        }
    }

    /// The history limits of `channel`.
    pub fn limits(&self, channel: &ChannelName) -> HistoryLimits {
        self.policy.history(channel)
    }

    pub fn policy(&self) -> &Arc<ChannelPolicy> {
        &self.policy
    }

    /// Runs `f` on the channel's state under its lock, creating the channel if needed.
    pub fn with_channel<R>(&self, name: &ChannelName, f: impl FnOnce(&mut ChannelState) -> R) -> R {
        let mut f = Some(f);
        loop {
            let channel = self
                .channels
                .entry(name.clone())
                .or_insert_with(|| {
                    Arc::new(Channel {
                        state: Mutex::new(ChannelState::new(name.clone(), new_epoch())),
                    })
                })
                .clone();
            let mut state = channel.state.lock();
            if state.removed {
                continue;
            }
            let f = f
                .take()
                .expect("the closure runs once: the loop exits after it");
            return f(&mut state);
        }
    }

    /// Runs `f` on the channel's state if the channel exists.
    pub fn with_existing<R>(
        &self,
        name: &ChannelName,
        f: impl FnOnce(&mut ChannelState) -> R,
    ) -> Option<R> {
        let channel = self.channels.get(name)?.clone();
        let mut state = channel.state.lock();
        if state.removed {
            return None;
        }
        Some(f(&mut state))
    }

    /// Puts a channel with a known epoch and sequence in place (restored from a store).
    pub fn restore(&self, state: ChannelState) {
        let name = state.name.clone();
        self.channels.insert(
            name,
            Arc::new(Channel {
                state: Mutex::new(state),
            }),
        );
    }

    /// Appends a message with the next id of its channel and fans it out.
    pub fn publish(&self, draft: Draft, now_ms: u64) -> Published {
        let limits = self.limits(&draft.channel);
        self.with_channel(&draft.channel, |state| {
            if let Some(key) = &draft.idempotency_key {
                if let Some(earlier) = state.idempotent_result(key, now_ms) {
                    return earlier;
                }
            }
            let id = state.next_id();
            // The channel's own name, shared by its whole history, rather
            // than the one parsed from this request.
            let message = Arc::new(Message::new(
                state.name.clone(),
                id,
                draft.event,
                draft.data,
                draft.kind,
                now_ms,
            ));
            let subscribers = state.append(message, &limits, now_ms);
            let published = Published {
                channel: draft.channel.clone(),
                id,
                subscribers,
            };
            if let Some(key) = &draft.idempotency_key {
                let expires = now_ms + limits.ttl.as_millis() as u64;
                state.remember(key, &published, expires);
            }
            published
        })
    }

    /// Replays history after `since` and subscribes, with no gap or overlap at the seam.
    pub fn attach(
        &self,
        name: &ChannelName,
        subscriber: &SubscriberHandle,
        since: Since,
    ) -> Replay {
        self.with_channel(name, |state| state.attach(subscriber, since))
    }

    pub fn detach(&self, name: &ChannelName, id: SubscriberId) {
        self.with_existing(name, |state| state.detach(id));
    }

    pub fn info(&self, name: &ChannelName, now_ms: u64) -> Option<ChannelInfo> {
        let limits = self.limits(name);
        self.with_existing(name, |state| {
            state.tidy(&limits, now_ms);
            ChannelInfo {
                channel: name.clone(),
                subscribers: state.subscriber_count(),
                messages: state.history.len(),
                bytes: state.history.bytes(),
                first_id: state.history.oldest().map(|m| m.id),
                last_id: (state.last_seq > 0).then(|| state.last_id()),
            }
        })
    }

    /// Tells the channel's subscribers here of a join or leave (see
    /// [`ChannelState::notify`]); returns how many were told.
    pub fn notify(&self, notice: &Arc<Notice>, max_listeners: usize) -> usize {
        self.with_existing(&notice.channel, |state| state.notify(notice, max_listeners))
            .unwrap_or(0)
    }

    /// Drops the channel and its history and tells its subscribers. False if it did not exist.
    pub fn delete(&self, name: &ChannelName) -> bool {
        let Some((_, channel)) = self.channels.remove(name) else {
            return false;
        };
        let mut state = channel.state.lock();
        state.removed = true;
        for subscriber in state.take_subscribers() {
            subscriber.signal(Signal::Deleted(name.clone()));
        }
        true
    }

    /// Forgets the channel if nobody subscribes to it here (a cached copy
    /// of a shared store's channel). True if it was forgotten.
    pub fn forget_unsubscribed(&self, name: &ChannelName) -> bool {
        self.channels
            .remove_if(name, |_, channel| {
                let mut state = channel.state.lock();
                let unused = state.live_subscribers() == 0;
                if unused {
                    state.removed = true;
                }
                unused
            })
            .is_some()
    }

    /// Trims history by age everywhere and forgets channels with nothing left.
    pub fn sweep(&self, now_ms: u64) {
        let mut idle = Vec::new();
        for entry in self.channels.iter() {
            let limits = self.limits(entry.key());
            let mut state = entry.value().state.lock();
            state.tidy(&limits, now_ms);
            if state.is_idle(now_ms) {
                idle.push(entry.key().clone());
            }
        }
        for name in idle {
            self.channels.remove_if(&name, |_, channel| {
                let mut state = channel.state.lock();
                let idle = state.is_idle(now_ms);
                if idle {
                    state.removed = true;
                }
                idle
            });
        }
    }

    /// Every channel's newest seq and subscriber count.
    pub fn activity(&self) -> Vec<ChannelActivity> {
        self.channels
            .iter()
            .map(|entry| {
                let state = entry.value().state.lock();
                ChannelActivity {
                    channel: state.name.clone(),
                    last_seq: state.last_seq,
                    subscribers: state.subscriber_count(),
                }
            })
            .collect()
    }

    /// Messages and bytes kept in history over all channels.
    pub fn history_totals(&self) -> (usize, usize) {
        self.channels
            .iter()
            .fold((0, 0), |(messages, bytes), entry| {
                let state = entry.value().state.lock();
                (
                    messages + state.history.len(),
                    bytes + state.history.bytes(),
                )
            })
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests;
