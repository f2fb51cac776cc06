//! A channel's bounded history: the last messages by count, bytes and age.
//!
//! Sequence numbers in history are contiguous, so finding "everything after
//! seq S" is index arithmetic, not a search.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::message::Message;

/// How much history each channel keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub ttl: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_bytes: 64 * 1024 * 1024,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// Messages of one channel, oldest first, with contiguous sequence numbers.
#[derive(Debug, Default)]
pub struct History {
    messages: VecDeque<Arc<Message>>,
    bytes: usize,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `message` (whose seq must follow the newest) and trims to `limits`.
    pub fn push(&mut self, message: Arc<Message>, limits: &HistoryLimits, now_ms: u64) {
        debug_assert!(self
            .messages
            .back()
            .is_none_or(|last| last.id.seq + 1 == message.id.seq));
        self.bytes += message.weight();
        self.messages.push_back(message);
        self.trim(limits, now_ms);
    }

    /// Drops the oldest messages beyond the count, byte and age limits.
    pub fn trim(&mut self, limits: &HistoryLimits, now_ms: u64) {
        let ttl_ms = limits.ttl.as_millis() as u64;
        while let Some(oldest) = self.messages.front() {
            let too_many = self.messages.len() > limits.max_messages;
            let too_big = self.bytes > limits.max_bytes;
            let too_old = now_ms.saturating_sub(oldest.published_at_ms()) >= ttl_ms;
            if !(too_many || too_big || too_old) {
                break;
            }
            self.bytes -= oldest.weight();
            self.messages.pop_front();
        }
    }

    /// Seq of the oldest message kept.
    pub fn first_seq(&self) -> Option<u64> {
        self.messages.front().map(|m| m.id.seq)
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn oldest(&self) -> Option<&Arc<Message>> {
        self.messages.front()
    }

    pub fn newest(&self) -> Option<&Arc<Message>> {
        self.messages.back()
    }

    /// Every kept message with a seq greater than `seq`, oldest first.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &Arc<Message>> {
        let skip = match self.first_seq() {
            Some(first) if seq >= first => (seq - first + 1) as usize,
            _ => 0,
        };
        self.messages.iter().skip(skip)
    }

    /// Every kept message, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Message>> {
        self.messages.iter()
    }
}
