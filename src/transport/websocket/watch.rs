//! What a WebSocket's task waits for, and in which order: its subscription
//! first, then the other sources (the shutdown signal, the connection's
//! deadline, the heartbeat, the idle timer, the client's bytes).
//!
//! A connection spends its life waiting, and a busy one is woken for
//! every delivery, so waiting is built to cost little. The other sources
//! are registered with a waker of their own ([`Others`]) that notes that
//! one of them fired: while none has, a wake costs one poll of the
//! subscription's queue, not one of every source. Every [`FAIRNESS`]
//! deliveries in a row the other sources go first, so a busy channel
//! cannot starve them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::task::AtomicWaker;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::heartbeat::{Beat, Heartbeat};
use crate::engine::{Event, Subscription};
use crate::transport::Expiry;

/// Deliveries in a row served before the task looks at its other sources
/// even though more messages are waiting.
const FAIRNESS: u32 = 16;

/// What woke a WebSocket's task.
pub(super) enum Wake {
    Shutdown,
    Deadline(Expiry),
    Beat(Beat),
    Idle,
    Read(std::io::Result<usize>),
    Event(Event),
}

/// Closes a connection that has no subscription and sends nothing for `after`.
struct Idle {
    after: Duration,
    timer: Pin<Box<Sleep>>,
}

/// The sources a WebSocket's task waits on besides its subscription.
pub(super) struct Watch {
    others: Arc<Others>,
    /// Kept across waits, so the shutdown signal is registered once.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    deadline: Option<(Pin<Box<Sleep>>, Expiry)>,
    heartbeat: Option<Heartbeat>,
    idle: Option<Idle>,
    /// Whether the idle timer counted at the last wait (no subscription then).
    idle_armed: bool,
    /// Deliveries in a row.
    streak: u32,
}

impl Watch {
    pub(super) fn new(shutdown: CancellationToken) -> Self {
        Self {
            others: Arc::default(),
            shutdown: Box::pin(shutdown.cancelled_owned()),
            deadline: None,
            heartbeat: None,
            idle: None,
            idle_armed: false,
            streak: 0,
        }
    }

    pub(super) fn set_deadline(&mut self, deadline: Pin<Box<Sleep>>, why: Expiry) {
        self.deadline = Some((deadline, why));
        self.recheck();
    }

    pub(super) fn set_heartbeat(&mut self, every: Duration, timeout: Duration) {
        self.heartbeat = Some(Heartbeat::new(every, timeout));
        self.recheck();
    }

    pub(super) fn set_idle_timeout(&mut self, after: Duration) {
        let timer = Box::pin(tokio::time::sleep(after));
        self.idle = Some(Idle { after, timer });
        self.recheck();
    }

    /// The client sent a frame: it is alive and not idle.
    pub(super) fn alive(&mut self) {
        if let Some(heartbeat) = &mut self.heartbeat {
            heartbeat.alive();
        }
        if let Some(idle) = &mut self.idle {
            idle.timer.as_mut().reset(Instant::now() + idle.after);
        }
        // The timers moved: register them again at the next wait.
        self.recheck();
    }

    /// Makes the next wait poll every other source, registering each again.
    fn recheck(&self) {
        self.others.woken.store(true, Ordering::Release);
    }

    /// Waits for the next event of `subscription` or of another source.
    pub(super) async fn wait(
        &mut self,
        io: &mut TokioIo<Upgraded>,
        read: &mut BytesMut,
        subscription: Option<&mut Subscription>,
    ) -> Wake {
        let armed = self.idle.is_some() && subscription.as_ref().is_none_or(|s| s.is_empty());
        if armed && !self.idle_armed {
            self.recheck();
        }
        self.idle_armed = armed;
        let wake = match subscription {
            None => self.others(io, read).await,
            Some(subscription) if self.streak < FAIRNESS => tokio::select! {
                biased;
                event = subscription.next() => Wake::Event(event),
                wake = self.others(io, read) => wake,
            },
            Some(subscription) => {
                self.recheck();
                tokio::select! {
                    biased;
                    wake = self.others(io, read) => wake,
                    event = subscription.next() => Wake::Event(event),
                }
            }
        };
        self.streak = match wake {
            Wake::Event(_) => self.streak + 1,
            _ => 0,
        };
        wake
    }

    /// Ready with the first of the other sources that is ready; polls them
    /// only after one of them fired (or after `recheck`).
    fn others<'a>(
        &'a mut self,
        io: &'a mut TokioIo<Upgraded>,
        read: &'a mut BytesMut,
    ) -> impl Future<Output = Wake> + 'a {
        std::future::poll_fn(move |cx| {
            self.others.task.register(cx.waker());
            if !self.others.woken.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
            let waker = Waker::from(self.others.clone());
            let mut cx = Context::from_waker(&waker);
            let Some(wake) = self.poll_sources(io, read, &mut cx) else {
                return Poll::Pending;
            };
            // The sources after the ready one were not polled: look again next time.
            self.recheck();
            Poll::Ready(wake)
        })
    }

    fn poll_sources(
        &mut self,
        io: &mut TokioIo<Upgraded>,
        read: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Option<Wake> {
        if self.shutdown.as_mut().poll(cx).is_ready() {
            return Some(Wake::Shutdown);
        }
        if let Some((deadline, why)) = &mut self.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return Some(Wake::Deadline(*why));
            }
        }
        if let Some(heartbeat) = &mut self.heartbeat {
            if let Poll::Ready(beat) = heartbeat.poll_next(cx) {
                return Some(Wake::Beat(beat));
            }
        }
        if let (Some(idle), true) = (&mut self.idle, self.idle_armed) {
            if idle.timer.as_mut().poll(cx).is_ready() {
                return Some(Wake::Idle);
            }
        }
        match poll_read_buf(Pin::new(io), cx, read) {
            Poll::Ready(result) => Some(Wake::Read(result)),
            Poll::Pending => None,
        }
    }
}

/// The waker a WebSocket's task gives its sources other than the
/// subscription: it notes that one of them fired, then wakes the task.
/// Their registrations outlive a poll, so while none has fired they need
/// no polling at all.
struct Others {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Default for Others {
    fn default() -> Self {
        // Polled once at the start, which registers every source.
        Self {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }
    }
}

impl std::task::Wake for Others {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}
