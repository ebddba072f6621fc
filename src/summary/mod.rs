//! Mergeable per-interval summaries, one type per metric family.
//!
//! Each evaluation interval of each series holds one summary; a sliding window is the merge
//! of its intervals, maintained by merging the interval that enters and unmerging the one
//! that leaves. Every summary is integer-valued (counts, histogram buckets, fixed-point
//! sums), so merge and unmerge are exact and the order of merging never changes a result.

mod binary;
mod drift;
mod fixed;
mod labels;
mod latency;
mod multiclass;
mod quality;
mod regression;
mod reliability;
mod sparse;

pub use binary::{BinarySummary, ScoreHistogram, ScoredOutcome, SCORE_BINS};
pub use drift::DriftSummary;
pub use fixed::FixedSum;
pub use labels::LabelSummary;
pub use latency::{Latency, LatencyHistogram, LatencySummary, LatencyUnderSummary};
pub use multiclass::MulticlassSummary;
pub use quality::{QualityCounts, QualitySummary};
pub use regression::{RegressionOutcome, RegressionSummary};
pub use reliability::ReliabilitySummary;

/// A summary of the events of one interval, or of a window of intervals.
pub trait Summary: Default + Clone {
    /// Adds `other` (the union of both event sets).
    fn merge(&mut self, other: &Self);
    /// Removes `other`, which must have been merged into `self` before.
    fn unmerge(&mut self, other: &Self);
    /// Whether no event has been recorded.
    fn is_empty(&self) -> bool;
    /// Called on a window's running aggregate before it is queried: keeps whatever
    /// makes its metrics cost the same however many events it holds (interval summaries,
    /// written far more often than read, never call it).
    fn index(&mut self) {}
}

/// A metric value and the number of samples it was computed from. `value` is `None` when
/// the metric is undefined for the window (no samples, a zero denominator, one class only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub value: Option<f64>,
    pub samples: u64,
}

impl Measured {
    pub fn ratio(numerator: u64, denominator: u64, samples: u64) -> Measured {
        Measured {
            value: (denominator > 0).then(|| numerator as f64 / denominator as f64),
            samples,
        }
    }
}
