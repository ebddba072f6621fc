//! Latency summaries: an HdrHistogram-bucketed histogram (3 significant digits) for
//! percentiles and max, an exact fixed-point sum for the mean, and the under-threshold
//! counts of `latency_under`.
//!
//! Buckets are HdrHistogram's; storage is sparse (see `sparse`), so a minute with a few
//! requests does not allocate HdrHistogram's full counts array. Quantiles follow
//! HdrHistogram exactly: the smallest bucket whose cumulative count reaches ⌈q·n⌉, reported
//! as the highest value equivalent to that bucket.
//!
//! A window's running aggregate also keeps counts per block of 64 consecutive buckets
//! (`index`), so that a quantile walks the blocks and then one block's buckets: at most a
//! few hundred steps however many events, and distinct buckets, the window holds.

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

/// Buckets per block of the quantile index.
const BLOCK_BUCKETS: u32 = 64;
/// HdrHistogram's sub-bucket layout for 3 significant digits and a lowest value of 1:
/// 2048 sub-buckets, the upper 1024 of which each power of two above 2048 adds.
const SUB_BUCKET_HALF_MAGNITUDE: u32 = 10;
const SUB_BUCKET_MASK: u64 = (1 << (SUB_BUCKET_HALF_MAGNITUDE + 1)) - 1;
const LEADING_ZERO_BASE: u32 = 64 - SUB_BUCKET_HALF_MAGNITUDE - 1;

/// The position of the bucket holding `value` in HdrHistogram's linear order of buckets
/// (its counts-array index): neighbouring buckets have neighbouring positions.
fn position(value: u64) -> u32 {
    let bucket = LEADING_ZERO_BASE - (value | SUB_BUCKET_MASK).leading_zeros();
    let sub = (value >> bucket) as u32;
    ((bucket + 1) << SUB_BUCKET_HALF_MAGNITUDE) + sub - (1 << SUB_BUCKET_HALF_MAGNITUDE)
}

/// The lowest value of the bucket at `position` (the inverse of [`position`]).
fn lowest_at(position: u32) -> u64 {
    let half = 1u32 << SUB_BUCKET_HALF_MAGNITUDE;
    let bucket = (position >> SUB_BUCKET_HALF_MAGNITUDE).max(1) - 1;
    let sub = position + half - ((bucket + 1) << SUB_BUCKET_HALF_MAGNITUDE);
    u64::from(sub) << bucket
}

fn block_of(bucket: u64) -> usize {
    (position(bucket) / BLOCK_BUCKETS) as usize
}

fn add_to_block(blocks: &mut Vec<u64>, bucket: u64, count: u64) {
    let b = block_of(bucket);
    if blocks.len() <= b {
        blocks.resize(b + 1, 0);
    }
    blocks[b] += count;
}

/// Counts per HdrHistogram bucket, keyed by the bucket's lowest equivalent value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyHistogram {
    buckets: SparseCounts<u64, u64>,
    count: u64,
    /// Counts per block of [`BLOCK_BUCKETS`] buckets, by block (a dense vector up to the
    /// highest block filled: 8 bytes per 64 buckets), kept once
    /// [`LatencyHistogram::index`] was called (a window's aggregate). Derived from
    /// `buckets`: not stored, rebuilt on demand after a restore.
    #[serde(skip)]
    blocks: Option<Vec<u64>>,
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.buckets == other.buckets
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, value: u64) {
        let bucket = layout().lowest_equivalent(value.min(MAX_VALUE));
        self.buckets.add(bucket, 1);
        self.count += 1;
        if let Some(blocks) = &mut self.blocks {
            add_to_block(blocks, bucket, 1);
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn merge(&mut self, other: &Self) {
        self.buckets.merge(&other.buckets);
        self.count += other.count;
        if let Some(blocks) = &mut self.blocks {
            for (&bucket, &c) in other.buckets.iter() {
                add_to_block(blocks, bucket, c);
            }
        }
    }

    pub fn unmerge(&mut self, other: &Self) {
        self.buckets.unmerge(&other.buckets);
        self.count -= other.count;
        if let Some(blocks) = &mut self.blocks {
            for (&bucket, &c) in other.buckets.iter() {
                if let Some(n) = blocks.get_mut(block_of(bucket)) {
                    *n -= c;
                }
            }
        }
    }

    /// Keeps block counts from now on, so that quantiles cost the same however many
    /// buckets are filled (for a window's running aggregate; intervals never need it).
    pub fn index(&mut self) {
        if self.blocks.is_none() {
            let mut blocks = Vec::new();
            for (&bucket, &c) in self.buckets.iter() {
                add_to_block(&mut blocks, bucket, c);
            }
            self.blocks = Some(blocks);
        }
    }

    /// The value at quantile `q` (0..1), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut cumulative = 0;
        let mut from = 0;
        let mut to = None;
        if let Some(blocks) = &self.blocks {
            // Skip whole blocks below the rank, then walk the buckets of the block it is in.
            for (b, &c) in (0u32..).zip(blocks) {
                if cumulative + c >= rank {
                    from = lowest_at(b * BLOCK_BUCKETS);
                    to = Some(lowest_at((b + 1) * BLOCK_BUCKETS));
                    break;
                }
                cumulative += c;
            }
        }
        let to = to.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        for (&bucket, &c) in self.buckets.range((std::ops::Bound::Included(from), to)) {
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

/// One inference's latency as the latency summaries take it: the value, its histogram
/// value in microseconds and its share of the fixed-point sum. Worked out once per
/// inference, when its fact is made, not once per summary the fact goes into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub ms: f64,
    micros: u64,
    sum: FixedSum,
}

impl Latency {
    pub fn new(ms: f64) -> Latency {
        Latency {
            ms,
            micros: (ms * 1000.0).round() as u64,
            sum: FixedSum::of(ms),
        }
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
        self.add(&Latency::new(latency_ms));
    }

    /// Records a latency worked out beforehand (the same as [`LatencySummary::record`]
    /// of its value).
    pub fn add(&mut self, latency: &Latency) {
        self.micros.record(latency.micros);
        self.sum_ms.merge(latency.sum);
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
    fn index(&mut self) {
        self.micros.index();
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

    #[test]
    fn positions_are_hdrhistograms_counts_indices() {
        let hdr = layout();
        let mut last = None;
        for v in (0..70_000u64)
            .chain((1..40).map(|p| 1u64 << p))
            .chain([MAX_VALUE])
        {
            let p = position(v);
            let lowest = hdr.lowest_equivalent(v);
            assert_eq!(position(lowest), p, "v={v}");
            assert_eq!(lowest_at(p), lowest, "v={v}");
            if let Some((lv, lp)) = last {
                if v > lv {
                    assert!(p >= lp, "monotone at v={v}");
                }
            }
            last = Some((v, p));
        }
        assert_eq!(
            position(hdr.highest_equivalent(4095) + 1),
            position(4095) + 1
        );
        // HdrHistogram's own walk over every bucket visits them in counts-index order.
        let mut full = hdr.clone();
        full.record(MAX_VALUE).expect("in range");
        let mut n = 0u32;
        for (i, step) in full.iter_all().enumerate() {
            assert_eq!(position(step.value_iterated_to()), i as u32);
            n += 1;
        }
        assert!(n > 30_000, "{n} buckets walked");
    }

    #[test]
    fn a_latency_worked_out_beforehand_records_what_its_value_would() {
        let mut ours = LatencySummary::default();
        let mut direct = LatencySummary::default();
        for ms in [0.0, 0.0004, 0.0005, 1.2345, 249.9996, 250.0, 1e6, 2e12] {
            ours.add(&Latency::new(ms));
            direct.micros.record((ms * 1000.0).round() as u64);
            direct.sum_ms.add(ms);
        }
        assert_eq!(ours, direct);
        assert_eq!(ours.sum_ms, direct.sum_ms);
        assert_eq!(ours.micros.count(), 8);
    }

    #[test]
    fn an_indexed_histogram_gives_the_same_quantiles() {
        let mut plain = LatencyHistogram::default();
        let mut indexed = LatencyHistogram::default();
        indexed.index();
        let mut parts = Vec::new();
        let mut x: u64 = 99;
        for i in 0..20 {
            let mut part = LatencyHistogram::default();
            for _ in 0..(1 + i * 300) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                part.record((x >> 33) % 3_000_000);
            }
            plain.merge(&part);
            indexed.merge(&part);
            parts.push(part);
        }
        indexed.record(5);
        plain.record(5);
        for part in parts.iter().take(7) {
            plain.unmerge(part);
            indexed.unmerge(part);
        }
        let mut late = plain.clone();
        late.index();
        for q in [0.0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(indexed.quantile(q), plain.quantile(q), "q={q}");
            assert_eq!(late.quantile(q), plain.quantile(q), "q={q}");
        }
        assert_eq!(indexed, plain);
    }
}
