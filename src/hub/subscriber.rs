//! The receiving end of fan-out: one bounded queue per subscriber.
//!
//! The hub offers each new message to every subscriber's queue without
//! waiting. A full queue means the subscriber cannot keep up: the hub drops
//! it from that channel and raises a `Lagged` signal, and the subscriber,
//! once it has drained what it has, catches up from history (reporting a gap
//! only if history no longer holds what it missed). A slow subscriber
//! therefore never blocks a publisher or other subscribers, and never makes
//! memory grow beyond its queue.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use super::message::Message;
use super::name::ChannelName;

/// Identifies one subscriber across all the channels it listens to.
pub type SubscriberId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Something the hub needs a subscriber to notice outside its message queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Its queue overflowed on this channel; it was detached and must resume.
    Lagged(ChannelName),
    /// The channel was deleted.
    Deleted(ChannelName),
}

#[derive(Debug, Default)]
struct Shared {
    signals: Mutex<Vec<Signal>>,
    notify: Notify,
    /// Bytes of message data waiting in the queue, and the most allowed.
    queued_bytes: AtomicUsize,
    max_bytes: usize,
}

/// What the hub keeps for each subscriber of a channel.
#[derive(Debug, Clone)]
pub struct SubscriberHandle {
    id: SubscriberId,
    tx: mpsc::Sender<Arc<Message>>,
    shared: Arc<Shared>,
}

/// Result of offering a message to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The queue is full; the subscriber has been told to catch up.
    Lagged,
    /// The subscriber is gone.
    Closed,
}

impl SubscriberHandle {
    /// Creates a subscriber whose queue holds at most `capacity` messages.
    pub fn new(capacity: usize) -> (Self, Inbox) {
        Self::with_limits(capacity, usize::MAX)
    }

    /// Creates a subscriber whose queue holds at most `capacity` messages and
    /// `max_bytes` bytes (a message larger than that still fits an empty queue).
    pub fn with_limits(capacity: usize, max_bytes: usize) -> (Self, Inbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Shared {
            max_bytes,
            ..Shared::default()
        });
        let handle = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tx,
            shared: shared.clone(),
        };
        (handle, Inbox { rx, shared })
    }

    pub fn id(&self) -> SubscriberId {
        self.id
    }

    /// Queues `message` without waiting; on overflow raises `Lagged`.
    pub fn offer(&self, message: &Arc<Message>) -> Offer {
        let size = message.weight();
        let queued = self.shared.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if queued > 0 && queued + size > self.shared.max_bytes {
            self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            self.signal(Signal::Lagged(message.channel.clone()));
            return Offer::Lagged;
        }
        match self.tx.try_send(message.clone()) {
            Ok(()) => Offer::Queued,
            Err(error) => {
                self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                self.refused(error, message)
            }
        }
    }

    fn refused(&self, error: mpsc::error::TrySendError<Arc<Message>>, message: &Message) -> Offer {
        match error {
            mpsc::error::TrySendError::Full(_) => {
                self.signal(Signal::Lagged(message.channel.clone()));
                Offer::Lagged
            }
            mpsc::error::TrySendError::Closed(_) => Offer::Closed,
        }
    }

    /// Raises `signal` and wakes the subscriber.
    pub fn signal(&self, signal: Signal) {
        self.shared.signals.lock().push(signal);
        self.shared.notify.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The subscriber's side: its queue and its signals.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Arc<Message>>,
    shared: Arc<Shared>,
}

impl Inbox {
    /// A queued message, if any, without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<Message>> {
        let message = self.rx.try_recv().ok()?;
        self.dequeued(&message);
        Some(message)
    }

    fn dequeued(&self, message: &Message) {
        self.shared
            .queued_bytes
            .fetch_sub(message.weight(), Ordering::AcqRel);
    }

    /// Takes every pending signal.
    pub fn take_signals(&self) -> Vec<Signal> {
        std::mem::take(&mut *self.shared.signals.lock())
    }

    /// Waits for a message or a signal; `None` means "look at the signals".
    pub async fn wait(&mut self) -> Option<Arc<Message>> {
        let message = tokio::select! {
            message = self.rx.recv() => message,
            _ = self.shared.notify.notified() => None,
        };
        if let Some(message) = &message {
            self.dequeued(message);
        }
        message
    }
}
