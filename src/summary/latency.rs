//! Latency summaries: an HdrHistogram-bucketed histogram (3 significant digits) for
//! percentiles and max, an exact fixed-point sum for the mean, and the under-threshold
//! counts of `latency_under`.
//!
//! Buckets are HdrHistogram's; storage is sparse (see `sparse`), so a minute with a few
//! requests does not allocate HdrHistogram's full counts array. Quantiles follow
//! HdrHistogram exactly: the smallest bucket whose cumulative count reaches ⌈q·n⌉, reported
//! as the highest value equivalent to that bucket.

use std::sync::OnceLock;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::sparse::SparseCounts;
use super::{FixedSum, Measured, Summary};
use crate::metric::Metric;

/// Largest recordable value; larger values are recorded as this (saturating).
pub const MAX_VALUE: u64 = 1_000_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// The bucket layout shared by every latency and delay histogram.
fn layout() -> &'static Histogram<u64> {
    static LAYOUT: OnceLock<Histogram<u64>> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        // Constant, valid bounds: creation cannot fail.
        Histogram::new_with_bounds(1, MAX_VALUE, SIGNIFICANT_DIGITS)
            .unwrap_or_else(|e| unreachable!("constant HdrHistogram bounds rejected: {e:?}"))
    })
}

/// Counts per HdrHistogram bucket, keyed by the bucket's lowest equivalent value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    buckets: SparseCounts<u64, u64>,
    count: u64,
}

impl LatencyHistogram {
    pub fn record(&mut self, value: u64) {
        let v = value.min(MAX_VALUE);
        self.buckets.add(layout().lowest_equivalent(v), 1);
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn merge(&mut self, other: &Self) {
        self.buckets.merge(&other.buckets);
        self.count += other.count;
    }

    pub fn unmerge(&mut self, other: &Self) {
        self.buckets.unmerge(&other.buckets);
        self.count -= other.count;
    }

    /// The value at quantile `q` (0..1), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut cumulative = 0;
        for (&bucket, &c) in self.buckets.iter() {
            cumulative += c;
            if cumulative >= rank {
                return Some(layout().highest_equivalent(bucket));
            }
        }
        self.max()
    }

    pub fn max(&self) -> Option<u64> {
        self.buckets
            .iter()
            .next_back()
            .map(|(&b, _)| layout().highest_equivalent(b))
    }
}

/// Inference latencies, recorded in microseconds and reported in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub micros: LatencyHistogram,
    /// Σ latency in milliseconds.
    pub sum_ms: FixedSum,
}

impl LatencySummary {
    pub fn record(&mut self, latency_ms: f64) {
        self.micros.record((latency_ms * 1000.0).round() as u64);
        self.sum_ms.add(latency_ms);
    }

    pub fn measure(&self, metric: Metric) -> Measured {
        let n = self.micros.count();
        let q = |q: f64| self.micros.quantile(q).map(|us| us as f64 / 1000.0);
        let value = match metric {
            Metric::LatencyP50 => q(0.50),
            Metric::LatencyP90 => q(0.90),
            Metric::LatencyP95 => q(0.95),
            Metric::LatencyP99 => q(0.99),
            Metric::LatencyP999 => q(0.999),
            Metric::LatencyMax => self.micros.max().map(|us| us as f64 / 1000.0),
            Metric::LatencyMean => (n > 0).then(|| self.sum_ms.value() / n as f64),
            _ => None,
        };
        Measured { value, samples: n }
    }
}

impl Summary for LatencySummary {
    fn merge(&mut self, o: &Self) {
        self.micros.merge(&o.micros);
        self.sum_ms.merge(o.sum_ms);
    }
    fn unmerge(&mut self, o: &Self) {
        self.micros.unmerge(&o.micros);
        self.sum_ms.unmerge(o.sum_ms);
    }
    fn is_empty(&self) -> bool {
        self.micros.count() == 0
    }
}

/// Requests with a latency at or under the objective's `threshold_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyUnderSummary {
    pub under: u64,
    pub total: u64,
}

impl LatencyUnderSummary {
    pub fn record(&mut self, latency_ms: f64, threshold_ms: f64) {
        self.total += 1;
        self.under += u64::from(latency_ms <= threshold_ms);
    }

    pub fn measure(&self) -> Measured {
        Measured::ratio(self.under, self.total, self.total)
    }
}

impl Summary for LatencyUnderSummary {
    fn merge(&mut self, o: &Self) {
        self.under += o.under;
        self.total += o.total;
    }
    fn unmerge(&mut self, o: &Self) {
        self.under -= o.under;
        self.total -= o.total;
    }
    fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hdrhistogram() {
        let mut ours = LatencyHistogram::default();
        let mut hdr = Histogram::<u64>::new_with_bounds(1, MAX_VALUE, 3).expect("bounds");
        let mut x: u64 = 12345;
        for _ in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (x >> 40) % 2_000_000;
            ours.record(v);
            hdr.record(v).expect("in range");
        }
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(ours.quantile(q), Some(hdr.value_at_quantile(q)), "q={q}");
        }
        assert_eq!(ours.max(), Some(hdr.max()));
    }
}
