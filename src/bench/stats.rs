//! What a subscriber keeps while it receives: latency in an HDR histogram,
//! and an order check that tells loss, duplication and reordering apart.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies in microseconds, 1 µs to 10 minutes, two significant digits
/// (1%): small enough (about 20 KiB) to keep one per subscriber.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

const MAX_US: u64 = 600_000_000;

impl Default for Latency {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_US, 2).expect("constant bounds are valid"),
        }
    }
}

impl Latency {
    /// Records one latency; values outside the range are clamped.
    pub fn record(&mut self, us: u64) {
        self.histogram.saturating_record(us.clamp(1, MAX_US));
    }

    /// Adds another subscriber's latencies.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// p50, p99, p99.9 and max, or `None` when nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.histogram.is_empty() {
            return None;
        }
        let h = &self.histogram;
        Some(Percentiles {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        })
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// Checks the sequence numbers one subscriber receives on one channel
/// (1, 2, 3...): whatever arrives below the highest seen was either missing
/// so far (reordered) or already seen (duplicated).
#[derive(Debug, Clone, Default)]
pub struct Order {
    highest: u64,
    /// Sequence numbers below `highest` not received yet.
    missing: std::collections::BTreeSet<u64>,
    pub received: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

/// A jump this far past the highest sequence number is not recorded hole by
/// hole (it would take unbounded memory); the holes count as lost.
const MAX_HOLE: u64 = 1_000_000;

impl Order {
    /// Records sequence number `seq`.
    pub fn see(&mut self, seq: u64) {
        self.received += 1;
        if seq > self.highest {
            if seq - self.highest <= MAX_HOLE {
                self.missing.extend(self.highest + 1..seq);
            }
            self.highest = seq;
        } else if self.missing.remove(&seq) {
            self.reordered += 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// The highest sequence number received so far.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Messages of `1..=published` never received.
    pub fn lost(&self, published: u64) -> u64 {
        let holes = self.missing.range(..=published).count() as u64;
        holes + published.saturating_sub(self.highest)
    }

    /// Distinct messages received.
    pub fn distinct(&self) -> u64 {
        self.received - self.duplicated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order() {
        let mut o = Order::default();
        for s in 1..=5 {
            o.see(s);
        }
        assert_eq!((o.lost(5), o.duplicated, o.reordered), (0, 0, 0));
        assert_eq!(o.lost(7), 2);
    }

    #[test]
    fn loss_duplicates_and_reordering() {
        let mut o = Order::default();
        for s in [1, 3, 2, 2, 5, 6, 6] {
            o.see(s);
        }
        assert_eq!(o.reordered, 1);
        assert_eq!(o.duplicated, 2);
        assert_eq!(o.lost(6), 1); // 4
        assert_eq!(o.distinct(), 5);
    }

    #[test]
    fn latency_percentiles() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for us in 1..=1000 {
            a.record(us);
        }
        b.record(50_000);
        a.merge(&b);
        let p = a.percentiles().unwrap();
        assert_eq!(a.count(), 1001);
        assert!((495..=505).contains(&p.p50), "{p:?}");
        assert!(p.max >= 49_500);
        assert!(Latency::default().percentiles().is_none());
    }
}
