//! Per-client rate limits: a token bucket per IP address.
//!
//! Loopback addresses are exempt unless asked otherwise, since on one machine
//! every client (a reverse proxy, a load generator) shares one address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// One of the `--max-connections` slots, held by whatever serves the
/// connection: a WebSocket task keeps it after hyper hands the socket over,
/// so upgraded connections count against the limit like the others.
#[derive(Debug, Clone)]
pub struct ConnectionSlot(pub std::sync::Arc<tokio::sync::OwnedSemaphorePermit>);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Allows `per_second` events per IP on average, in bursts of up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    include_loopback: bool,
    buckets: DashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// `per_second` of 0 turns the limit off.
    pub fn new(per_second: f64, burst: f64, include_loopback: bool) -> Self {
        Self {
            per_second,
            burst: burst.max(1.0),
            include_loopback,
            buckets: DashMap::new(),
        }
    }

    /// Takes one token for `ip`, or says how long until one is available.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.per_second <= 0.0 || (ip.is_loopback() && !self.include_loopback) {
            return Ok(());
        }
        let now = Instant::now();
        let mut bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }

    /// Forgets clients whose buckets have refilled, so memory follows active clients only.
    pub fn sweep(&self) {
        let now = Instant::now();
        let full_after = self.burst / self.per_second.max(f64::MIN_POSITIVE);
        self.buckets
            .retain(|_, b| now.duration_since(b.last).as_secs_f64() < full_after);
    }
}

/// Whole seconds to put in `Retry-After` (at least 1).
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_with_a_wait() {
        let limiter = RateLimiter::new(1.0, 3.0, true);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok());
        }
        let wait = limiter.check(ip).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        assert_eq!(retry_after_seconds(wait), 1);
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limiter.check(other).is_ok());
    }

    #[test]
    fn loopback_is_exempt_unless_included() {
        let limiter = RateLimiter::new(1.0, 1.0, false);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(limiter.check(ip).is_ok());
        }
    }
}
