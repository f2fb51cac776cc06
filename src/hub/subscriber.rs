//! The receiving end of fan-out: one bounded queue per subscriber.
//!
//! The hub offers each new message to every subscriber's queue without
//! waiting. A full queue means the subscriber cannot keep up: the hub drops
//! it from that channel and raises a `Lagged` signal, and the subscriber,
//! once it has drained what it has, catches up from history (reporting a gap
//! only if history no longer holds what it missed). A slow subscriber
//! therefore never blocks a publisher or other subscribers, and never makes
//! memory grow beyond its queue.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Poll, Waker};

use parking_lot::Mutex;

use super::message::Message;
use super::name::ChannelName;
use super::presence::Notice;

/// Identifies one subscriber across all the channels it listens to.
pub type SubscriberId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Something the hub needs a subscriber to notice outside its message queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Its queue overflowed on this channel; it was detached and must resume.
    Lagged(ChannelName),
    /// The channel was deleted.
    Deleted(ChannelName),
    /// Someone joined or left a channel it listens to (`join_leave`).
    Notice(Arc<Notice>),
}

/// Most joins and leaves waiting for one subscriber: one that does not read
/// them misses further ones rather than growing without bound.
pub const MAX_PENDING_NOTICES: usize = 256;

/// One subscriber's queue. A plain deque under a lock rather than a tokio
/// channel: an idle subscriber then costs about 130 bytes instead of about
/// 900 (a channel preallocates a block of 32 slots and pads its halves to
/// cache lines), and that is paid once per idle connection.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Most messages queued.
    capacity: usize,
    /// Most bytes of message data queued.
    max_bytes: usize,
    /// Set when the subscriber wants joins and leaves: its own client id,
    /// whose own joins it is not told.
    listener: OnceLock<Arc<str>>,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Arc<Message>>,
    /// Bytes of message data in `messages`.
    bytes: usize,
    signals: Vec<Signal>,
    /// `Signal::Notice`s among `signals`.
    notices: usize,
    /// The subscriber's task, while it waits.
    waker: Option<Waker>,
    /// The inbox is gone: nobody will read.
    closed: bool,
}

impl Queue {
    /// Takes the waker to wake once the lock is released.
    fn waker(&mut self) -> Option<Waker> {
        self.waker.take()
    }
}

/// What the hub keeps for each subscriber of a channel.
#[derive(Debug, Clone)]
pub struct SubscriberHandle {
    id: SubscriberId,
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
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            capacity: capacity.max(1),
            max_bytes,
            listener: OnceLock::new(),
        });
        let handle = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shared: shared.clone(),
        };
        (handle, Inbox { shared })
    }

    pub fn id(&self) -> SubscriberId {
        self.id
    }

    /// Queues `message` without waiting; on overflow raises `Lagged`.
    pub fn offer(&self, message: &Arc<Message>) -> Offer {
        let size = message.weight();
        let mut queue = self.shared.queue.lock();
        if queue.closed {
            return Offer::Closed;
        }
        let full = queue.messages.len() >= self.shared.capacity
            || (queue.bytes > 0 && queue.bytes + size > self.shared.max_bytes);
        let offer = if full {
            queue.signals.push(Signal::Lagged(message.channel.clone()));
            Offer::Lagged
        } else {
            queue.messages.push_back(message.clone());
            queue.bytes += size;
            Offer::Queued
        };
        let waker = queue.waker();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        offer
    }

    /// Raises `signal` and wakes the subscriber.
    pub fn signal(&self, signal: Signal) {
        let mut queue = self.shared.queue.lock();
        queue.signals.push(signal);
        let waker = queue.waker();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Asks for joins and leaves of the channels it holds, except those of `client`.
    pub fn listen_as(&self, client: Arc<str>) {
        let _ = self.shared.listener.set(client);
    }

    /// Offers a join or leave if this subscriber listens for them and it is
    /// not its own. False if it was not offered (or was dropped as excess).
    pub fn notify(&self, notice: &Arc<Notice>) -> bool {
        match self.shared.listener.get() {
            Some(own) if **own != *notice.client => {}
            _ => return false,
        }
        let mut queue = self.shared.queue.lock();
        if queue.closed {
            return false;
        }
        if queue.notices >= MAX_PENDING_NOTICES {
            return false;
        }
        queue.notices += 1;
        queue.signals.push(Signal::Notice(notice.clone()));
        let waker = queue.waker();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    pub fn is_closed(&self) -> bool {
        self.shared.queue.lock().closed
    }
}

/// The subscriber's side: its queue and its signals.
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<Shared>,
}

impl Inbox {
    /// A queued message, if any, without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<Message>> {
        let mut queue = self.shared.queue.lock();
        let message = queue.messages.pop_front()?;
        queue.bytes -= message.weight();
        Some(message)
    }

    /// Takes every pending signal.
    pub fn take_signals(&self) -> Vec<Signal> {
        let mut queue = self.shared.queue.lock();
        queue.notices = 0;
        std::mem::take(&mut queue.signals)
    }

    /// Waits for a message or a signal; `None` means "look at the signals".
    /// Cancel-safe: nothing is taken unless it is returned.
    pub async fn wait(&mut self) -> Option<Arc<Message>> {
        poll_fn(|cx| {
            let mut queue = self.shared.queue.lock();
            if let Some(message) = queue.messages.pop_front() {
                queue.bytes -= message.weight();
                return Poll::Ready(Some(message));
            }
            if !queue.signals.is_empty() {
                return Poll::Ready(None);
            }
            if !queue
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                queue.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut queue = self.shared.queue.lock();
        queue.closed = true;
        queue.waker = None;
        queue.bytes = 0;
        // Released outside the lock: the last reference may free a message.
        let messages = std::mem::take(&mut queue.messages);
        drop(queue);
        drop(messages);
    }
}
