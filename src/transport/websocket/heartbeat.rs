//! The server's side of WebSocket liveness: a ping on an interval, and a
//! close when the client stops answering (any frame from it counts).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Pings a WebSocket client on an interval and notices when it stops answering.
/// One timer serves both: it runs to the next ping, then to the pong deadline.
pub struct Heartbeat {
    every: Duration,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// When the last ping went out, while its pong is awaited.
    pinged_at: Option<Instant>,
}

/// What the heartbeat asks for.
pub enum Beat {
    Ping,
    TimedOut,
}

impl Heartbeat {
    pub fn new(every: Duration, timeout: Duration) -> Self {
        let every = every.max(Duration::from_millis(10));
        Self {
            every,
            timeout,
            timer: Box::pin(tokio::time::sleep(every)),
            pinged_at: None,
        }
    }

    /// Ready when a ping is due or the last one went unanswered too long.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Beat> {
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.pinged_at.is_some() {
            return Poll::Ready(Beat::TimedOut);
        }
        let now = Instant::now();
        self.pinged_at = Some(now);
        self.timer.as_mut().reset(now + self.timeout);
        Poll::Ready(Beat::Ping)
    }

    /// The client showed it is alive (any frame counts).
    pub fn alive(&mut self) {
        if let Some(pinged_at) = self.pinged_at.take() {
            self.timer.as_mut().reset(pinged_at + self.every);
        }
    }
}
