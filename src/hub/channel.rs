//! One channel's state: epoch, sequence, history, subscribers.
//!
//! Everything here runs under the channel's own lock, which is what makes the
//! seam between history and live delivery exact: a subscriber attaches (gets
//! the history after its id and joins the subscriber list) in the same
//! critical section, so no publish can fall between the two.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::gap::{Gap, GapReason};
use super::history::{History, HistoryLimits};
use super::id::{MessageId, Since};
use super::message::Message;
use super::name::ChannelName;
use super::subscriber::{Offer, Signal, SubscriberHandle, SubscriberId};

/// Most idempotency keys remembered per channel.
const IDEMPOTENCY_KEYS: usize = 1024;

/// History a subscriber receives on attaching, and where live delivery takes over.
#[derive(Debug)]
pub struct Replay {
    pub messages: Vec<Arc<Message>>,
    pub gap: Option<Gap>,
    /// The channel's newest id at attach time: live messages follow it.
    pub position: MessageId,
}

/// What a publish produced, as answered to the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub channel: ChannelName,
    pub id: MessageId,
    pub subscribers: usize,
}

/// What became of a message mirrored from a shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirrored {
    /// It was the next one: appended and offered to this many subscribers.
    Appended(usize),
    /// This copy already had it.
    Duplicate,
    /// Another epoch, or messages are missing before it: resynchronise.
    OutOfStep,
}

/// Mutable state of one channel.
#[derive(Debug)]
pub struct ChannelState {
    pub name: ChannelName,
    pub epoch: u64,
    pub last_seq: u64,
    pub history: History,
    subscribers: Vec<SubscriberHandle>,
    idempotency: HashMap<Box<str>, (Published, u64)>,
    idempotency_order: VecDeque<Box<str>>,
    /// Set when the channel left the registry; a caller holding it must look again.
    pub(crate) removed: bool,
    /// Kept at least until then (Unix ms), so a subscriber that reconnects to
    /// a quiet channel finds the same epoch rather than a spurious gap.
    keep_until_ms: u64,
}

impl ChannelState {
    pub fn new(name: ChannelName, epoch: u64) -> Self {
        Self::resume(name, epoch, 0)
    }

    /// A channel whose ids continue after `last_seq` (a restored history).
    pub fn resume(name: ChannelName, epoch: u64, last_seq: u64) -> Self {
        Self {
            name,
            epoch,
            last_seq,
            history: History::new(),
            subscribers: Vec::new(),
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            removed: false,
            keep_until_ms: u64::MAX,
        }
    }

    pub fn last_id(&self) -> MessageId {
        MessageId::new(self.epoch, self.last_seq)
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Forgets subscribers that have gone away; returns how many remain.
    pub fn live_subscribers(&mut self) -> usize {
        self.subscribers.retain(|s| !s.is_closed());
        self.subscribers.len()
    }

    /// The next id this channel will assign.
    pub fn next_id(&self) -> MessageId {
        MessageId::new(self.epoch, self.last_seq + 1)
    }

    /// Appends a message carrying the next id, trims history, and offers it
    /// to every subscriber. Returns how many subscribers it was offered to.
    pub fn append(&mut self, message: Arc<Message>, limits: &HistoryLimits, now_ms: u64) -> usize {
        debug_assert_eq!(message.id, self.next_id());
        self.last_seq = message.id.seq;
        self.history.push(message.clone(), limits, now_ms);
        let before = self.subscribers.len();
        self.subscribers
            .retain(|subscriber| subscriber.offer(&message) == Offer::Queued);
        before
    }

    /// Appends a message whose id was assigned elsewhere (a shared store):
    /// the next one is appended and fanned out, an old one is a duplicate,
    /// anything else means this copy is out of step with the store.
    pub fn mirror(
        &mut self,
        message: Arc<Message>,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Mirrored {
        if message.id.epoch != self.epoch || message.id.seq > self.last_seq + 1 {
            return Mirrored::OutOfStep;
        }
        if message.id.seq <= self.last_seq {
            return Mirrored::Duplicate;
        }
        Mirrored::Appended(self.append(message, limits, now_ms))
    }

    /// Moves this copy to `epoch` with ids continuing after `last_seq`,
    /// dropping its history: the store has moved on (a new epoch, or
    /// messages trimmed before this node saw them). Subscribers are told to
    /// catch up, so each learns of its gap from the cursor it holds.
    pub fn rebase(&mut self, epoch: u64, last_seq: u64) {
        self.epoch = epoch;
        self.last_seq = last_seq;
        self.history = History::new();
        self.idempotency.clear();
        self.idempotency_order.clear();
        for subscriber in &self.subscribers {
            subscriber.signal(Signal::Lagged(self.name.clone()));
        }
    }

    /// The messages a subscriber starting at `since` must receive first.
    pub fn replay(&self, since: Since) -> Replay {
        let position = self.last_id();
        let everything = || self.history.iter().cloned().collect::<Vec<_>>();
        match since {
            Since::Now => Replay {
                messages: Vec::new(),
                gap: None,
                position,
            },
            Since::Oldest => Replay {
                messages: everything(),
                gap: None,
                position,
            },
            Since::After(id) => {
                let first_kept = self.history.first_seq().unwrap_or(self.last_seq + 1);
                if id.epoch != self.epoch || id.seq > self.last_seq {
                    let messages = everything();
                    let gap = Gap {
                        channel: self.name.clone(),
                        reason: GapReason::Epoch,
                        since: Some(id),
                        missed: None,
                        first_id: messages.first().map(|m| m.id),
                    };
                    Replay {
                        messages,
                        gap: Some(gap),
                        position,
                    }
                } else if id.seq + 1 >= first_kept {
                    Replay {
                        messages: self.history.after(id.seq).cloned().collect(),
                        gap: None,
                        position,
                    }
                } else {
                    let messages = everything();
                    let gap = Gap {
                        channel: self.name.clone(),
                        reason: GapReason::Trimmed,
                        since: Some(id),
                        missed: Some(first_kept - id.seq - 1),
                        first_id: messages.first().map(|m| m.id),
                    };
                    Replay {
                        messages,
                        gap: Some(gap),
                        position,
                    }
                }
            }
        }
    }

    /// Replays from `since` and joins the live subscribers, atomically.
    pub fn attach(&mut self, subscriber: &SubscriberHandle, since: Since) -> Replay {
        let replay = self.replay(since);
        self.detach(subscriber.id());
        self.subscribers.push(subscriber.clone());
        replay
    }

    pub fn detach(&mut self, id: SubscriberId) {
        self.subscribers.retain(|s| s.id() != id);
    }

    /// Tells the subscribers that listen for joins and leaves of `notice`,
    /// unless there are more than `max_listeners` subscribers here (beyond
    /// that, join/leave fan-out would cost the square of the channel's size;
    /// presence is still listed). Returns how many were told.
    pub fn notify(&self, notice: &Arc<super::presence::Notice>, max_listeners: usize) -> usize {
        if self.subscribers.len() > max_listeners {
            return 0;
        }
        self.subscribers
            .iter()
            .filter(|subscriber| subscriber.notify(notice))
            .count()
    }

    /// Every subscriber, removed from the channel (on delete).
    pub fn take_subscribers(&mut self) -> Vec<SubscriberHandle> {
        std::mem::take(&mut self.subscribers)
    }

    /// Trims by age and forgets departed subscribers and old idempotency keys.
    pub fn tidy(&mut self, limits: &HistoryLimits, now_ms: u64) {
        self.history.trim(limits, now_ms);
        self.subscribers.retain(|s| !s.is_closed());
        let active = !self.subscribers.is_empty() || !self.history.is_empty();
        if active || self.keep_until_ms == u64::MAX {
            self.keep_until_ms = now_ms.saturating_add(limits.ttl.as_millis() as u64);
        }
        while let Some(key) = self.idempotency_order.front() {
            match self.idempotency.get(key) {
                Some((_, expires)) if *expires > now_ms => break,
                _ => {
                    self.idempotency.remove(key);
                    self.idempotency_order.pop_front();
                }
            }
        }
    }

    /// True when nothing would be lost by forgetting this channel: no
    /// subscribers, no history, and quiet for a history TTL.
    pub fn is_idle(&self, now_ms: u64) -> bool {
        self.subscribers.is_empty()
            && self.history.is_empty()
            && self.idempotency.is_empty()
            && now_ms >= self.keep_until_ms
    }

    /// The earlier result of a publish with this idempotency key, if still remembered.
    pub fn idempotent_result(&self, key: &str, now_ms: u64) -> Option<Published> {
        self.idempotency
            .get(key)
            .filter(|(_, expires)| *expires > now_ms)
            .map(|(published, _)| published.clone())
    }

    /// Remembers `published` under `key` until `expires_ms`.
    pub fn remember(&mut self, key: &str, published: &Published, expires_ms: u64) {
        if self.idempotency_order.len() >= IDEMPOTENCY_KEYS {
            if let Some(oldest) = self.idempotency_order.pop_front() {
                self.idempotency.remove(&oldest);
            }
        }
        let key: Box<str> = key.into();
        self.idempotency_order.push_back(key.clone());
        self.idempotency
            .insert(key, (published.clone(), expires_ms));
    }
}
