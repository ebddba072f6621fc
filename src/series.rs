//! Series: the sliding windows one model keeps per summary family, window length and
//! segment dimensions, one window per segment value (plus the whole model).
//!
//! Objectives that need the same family over the same window and dimensions share a
//! series. Facts (an inference, a joined outcome, an expired prediction) are recorded into
//! every series of the model that uses them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metric::{Family, Metric};
use crate::summary::{
    BinarySummary, DriftSummary, LabelSummary, Latency, LatencySummary, LatencyUnderSummary,
    Measured, MulticlassSummary, QualityCounts, QualitySummary, RegressionOutcome,
    RegressionSummary, ReliabilitySummary, ScoredOutcome, Summary,
};
use crate::time::Millis;
use crate::window::{Recorded, SlidingWindow};

/// Segment key: interned dimension values in the series' dimension order; empty for the
/// whole model.
pub type SegmentKey = Box<[u32]>;

/// Something that happened, to be recorded into the windows that use it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fact {
    /// An inference: whether it succeeded, and its latency when it has one.
    Inference { ok: bool, latency: Option<Latency> },
    /// A joined binary outcome (with its score's share, when it has a score).
    Binary {
        truth: bool,
        predicted: bool,
        scored: Option<ScoredOutcome>,
        delay_ms: Millis,
    },
    /// A joined multiclass outcome (interned class ids).
    Multiclass {
        truth: u32,
        predicted: u32,
        delay_ms: Millis,
    },
    /// A joined regression outcome, as its errors.
    Regression {
        errors: RegressionOutcome,
        delay_ms: Millis,
    },
    /// A prediction whose label never came.
    Unlabeled,
    /// The bin of a profiled feature (or of the score) in one inference.
    Drift { feature: u32, bin: u32 },
    /// Data-quality counts of one inference for one quality family.
    Quality {
        feature: u32,
        range: Option<(u64, u64)>,
        counts: QualityCounts,
    },
}

/// Applies a fact to one family's summary.
trait Apply: Summary {
    /// Records `fact` if this family uses it.
    fn apply(&mut self, fact: &Fact, threshold_ms: f64);
}

impl Apply for ReliabilitySummary {
    fn apply(&mut self, fact: &Fact, _: f64) {
        if let Fact::Inference { ok, .. } = fact {
            self.record(*ok);
        }
    }
}

impl Apply for LatencySummary {
    fn apply(&mut self, fact: &Fact, _: f64) {
        if let Fact::Inference {
            latency: Some(l), ..
        } = fact
        {
            self.add(l);
        }
    }
}

impl Apply for LatencyUnderSummary {
    fn apply(&mut self, fact: &Fact, threshold_ms: f64) {
        if let Fact::Inference {
            latency: Some(l), ..
        } = fact
        {
            self.record(l.ms, threshold_ms);
        }
    }
}

impl Apply for BinarySummary {
    fn apply(&mut self, fact: &Fact, _: f64) {
        if let Fact::Binary {
            truth,
            predicted,
            scored,
            ..
        } = fact
        {
            self.record_outcome(*truth, *predicted, scored.as_ref());
        }
    }
}

impl Apply for MulticlassSummary {
    fn apply(&mut self, fact: &Fact, _: f64) {
        if let Fact::Multiclass {
            truth, predicted, ..
        } = fact
        {
            self.record(*truth, *predicted);
        }
    }
}

impl Apply for RegressionSummary {
    fn apply(&mut self, fact: &Fact, _: f64) {
        if let Fact::Regression { errors, .. } = fact {
            self.record_outcome(errors);
        }
    }
}

impl Apply for LabelSummary {
    fn apply(&mut self, fact: &Fact, _: f64) {
        match fact {
            Fact::Binary { delay_ms, .. }
            | Fact::Multiclass { delay_ms, .. }
            | Fact::Regression { delay_ms, .. } => self.record_joined(*delay_ms),
            Fact::Unlabeled => self.record_expired(),
            _ => {}
        }
    }
}

impl Apply for DriftSummary {
    fn apply(&mut self, fact: &Fact, _: f64) {
        if let Fact::Drift { bin, .. } = fact {
            self.record(*bin as usize);
        }
    }
}

impl Apply for QualitySummary {
    fn apply(&mut self, fact: &Fact, _: f64) {
        if let Fact::Quality { counts, .. } = fact {
            self.record(*counts);
        }
    }
}

/// Runs `$body` with `$x` bound to the inner value of whichever family variant `$value`
/// (of enum `$enum`) holds.
macro_rules! each_family {
    ($enum:ident, $value:expr, $x:ident => $body:expr) => {
        match $value {
            $enum::Binary($x) => $body,
            $enum::Multiclass($x) => $body,
            $enum::Regression($x) => $body,
            $enum::Latency($x) => $body,
            $enum::LatencyUnder($x) => $body,
            $enum::Reliability($x) => $body,
            $enum::Labels($x) => $body,
            $enum::Drift($x) => $body,
            $enum::Quality($x) => $body,
        }
    };
}

/// The summary of one family over some events: what a shard hands to the evaluator for
/// one series, segment and interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnySummary {
    Binary(BinarySummary),
    Multiclass(MulticlassSummary),
    Regression(RegressionSummary),
    Latency(LatencySummary),
    LatencyUnder(LatencyUnderSummary),
    Reliability(ReliabilitySummary),
    Labels(LabelSummary),
    Drift(DriftSummary),
    Quality(QualitySummary),
}

impl AnySummary {
    pub fn new(family: Family) -> AnySummary {
        match family {
            Family::Binary => AnySummary::Binary(Default::default()),
            Family::Multiclass => AnySummary::Multiclass(Default::default()),
            Family::Regression => AnySummary::Regression(Default::default()),
            Family::Latency => AnySummary::Latency(Default::default()),
            Family::LatencyUnder(_) => AnySummary::LatencyUnder(Default::default()),
            Family::Reliability => AnySummary::Reliability(Default::default()),
            Family::Labels => AnySummary::Labels(Default::default()),
            Family::Drift(_) => AnySummary::Drift(Default::default()),
            Family::Quality { .. } => AnySummary::Quality(Default::default()),
        }
    }

    pub fn record(&mut self, fact: Fact, threshold_ms: f64) {
        each_family!(AnySummary, self, s => s.apply(&fact, threshold_ms))
    }

    /// Adds `other`'s facts, when it is of the same family (else nothing).
    pub fn merge(&mut self, other: &AnySummary) {
        use AnySummary as S;
        match (self, other) {
            (S::Binary(a), S::Binary(b)) => a.merge(b),
            (S::Multiclass(a), S::Multiclass(b)) => a.merge(b),
            (S::Regression(a), S::Regression(b)) => a.merge(b),
            (S::Latency(a), S::Latency(b)) => a.merge(b),
            (S::LatencyUnder(a), S::LatencyUnder(b)) => a.merge(b),
            (S::Reliability(a), S::Reliability(b)) => a.merge(b),
            (S::Labels(a), S::Labels(b)) => a.merge(b),
            (S::Drift(a), S::Drift(b)) => a.merge(b),
            (S::Quality(a), S::Quality(b)) => a.merge(b),
            _ => {}
        }
    }

    /// The multiclass summary's class ids, renamed (a shard's ids into the evaluator's).
    pub fn map_classes(&mut self, rename: impl Fn(u32) -> u32) {
        if let AnySummary::Multiclass(m) = self {
            *m = m.map_classes(rename);
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum AnyWindow {
    Binary(SlidingWindow<BinarySummary>),
    Multiclass(SlidingWindow<MulticlassSummary>),
    Regression(SlidingWindow<RegressionSummary>),
    Latency(SlidingWindow<LatencySummary>),
    LatencyUnder(SlidingWindow<LatencyUnderSummary>),
    Reliability(SlidingWindow<ReliabilitySummary>),
    Labels(SlidingWindow<LabelSummary>),
    Drift(SlidingWindow<DriftSummary>),
    Quality(SlidingWindow<QualitySummary>),
}

impl AnyWindow {
    fn new(family: Family, len: i64) -> AnyWindow {
        match family {
            Family::Binary => AnyWindow::Binary(SlidingWindow::new(len)),
            Family::Multiclass => AnyWindow::Multiclass(SlidingWindow::new(len)),
            Family::Regression => AnyWindow::Regression(SlidingWindow::new(len)),
            Family::Latency => AnyWindow::Latency(SlidingWindow::new(len)),
            Family::LatencyUnder(_) => AnyWindow::LatencyUnder(SlidingWindow::new(len)),
            Family::Reliability => AnyWindow::Reliability(SlidingWindow::new(len)),
            Family::Labels => AnyWindow::Labels(SlidingWindow::new(len)),
            Family::Drift(_) => AnyWindow::Drift(SlidingWindow::new(len)),
            Family::Quality { .. } => AnyWindow::Quality(SlidingWindow::new(len)),
        }
    }

    /// Records `fact` into interval `k`.
    fn record(&mut self, k: i64, fact: Fact, threshold_ms: f64) -> Recorded {
        each_family!(AnyWindow, self, w => w.record(k, |s| s.apply(&fact, threshold_ms)))
    }

    /// Merges a summary of the same family into interval `k`; `None` for another family.
    fn merge(&mut self, k: i64, summary: &AnySummary) -> Option<Recorded> {
        use AnySummary as S;
        use AnyWindow as W;
        Some(match (self, summary) {
            (W::Binary(w), S::Binary(s)) => w.record(k, |x| x.merge(s)),
            (W::Multiclass(w), S::Multiclass(s)) => w.record(k, |x| x.merge(s)),
            (W::Regression(w), S::Regression(s)) => w.record(k, |x| x.merge(s)),
            (W::Latency(w), S::Latency(s)) => w.record(k, |x| x.merge(s)),
            (W::LatencyUnder(w), S::LatencyUnder(s)) => w.record(k, |x| x.merge(s)),
            (W::Reliability(w), S::Reliability(s)) => w.record(k, |x| x.merge(s)),
            (W::Labels(w), S::Labels(s)) => w.record(k, |x| x.merge(s)),
            (W::Drift(w), S::Drift(s)) => w.record(k, |x| x.merge(s)),
            (W::Quality(w), S::Quality(s)) => w.record(k, |x| x.merge(s)),
            _ => return None,
        })
    }

    fn advance_to(&mut self, n: i64) {
        each_family!(AnyWindow, self, w => {
            w.advance_to(n);
        })
    }

    /// The current window (as of the last advance) holds at least one event.
    fn has_data(&self) -> bool {
        each_family!(AnyWindow, self, w => !w.aggregate().is_empty())
    }

    fn is_idle(&self) -> bool {
        each_family!(AnyWindow, self, w => w.is_idle())
    }

    fn measure(&self, metric: Metric, window_ms: Millis, expected: &[f64]) -> Measured {
        use AnyWindow as W;
        match self {
            W::Binary(w) => w.aggregate().measure(metric),
            W::Multiclass(w) => w.aggregate().measure(metric),
            W::Regression(w) => w.aggregate().measure(metric),
            W::Latency(w) => w.aggregate().measure(metric),
            W::LatencyUnder(w) => w.aggregate().measure(),
            W::Reliability(w) => w.aggregate().measure(metric, window_ms),
            W::Labels(w) => w.aggregate().measure(metric),
            W::Drift(w) => w.aggregate().measure(metric, expected),
            W::Quality(w) => w.aggregate().measure(metric),
        }
    }
}

/// The windows of one family, window length and dimension list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    pub family: Family,
    pub window_ms: Millis,
    /// Window length in evaluation intervals.
    len: i64,
    threshold_ms: f64,
    /// Indices into the model's dimension list.
    pub dims: Vec<usize>,
    /// Reference proportions of the bins, for a drift series.
    expected: Vec<f64>,
    windows: BTreeMap<SegmentKey, AnyWindow>,
}

/// The outcome of recording one fact into a series.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecordStats {
    pub stored: u32,
    pub too_late: u32,
}

impl Series {
    pub fn new(
        family: Family,
        window_ms: Millis,
        every_ms: Millis,
        threshold_ms: f64,
        dims: Vec<usize>,
        expected: Vec<f64>,
    ) -> Series {
        Series {
            family,
            window_ms,
            len: window_ms / every_ms.max(1),
            threshold_ms,
            dims,
            expected,
            windows: BTreeMap::new(),
        }
    }

    /// Records `fact` at interval `k` for the whole model and, if the series is segmented,
    /// for `segment`.
    pub fn record(&mut self, k: i64, fact: Fact, segment: Option<&[u32]>, stats: &mut RecordStats) {
        if !self.uses(&fact) {
            return;
        }
        let keys: [Option<&[u32]>; 2] = [Some(&[]), segment.filter(|s| !s.is_empty())];
        for key in keys.into_iter().flatten() {
            let window = match self.windows.get_mut(key) {
                Some(w) => w,
                None => self
                    .windows
                    .entry(key.into())
                    .or_insert_with(|| AnyWindow::new(self.family, self.len)),
            };
            match window.record(k, fact, self.threshold_ms) {
                Recorded::Stored => stats.stored += 1,
                Recorded::TooLate => stats.too_late += 1,
            }
        }
    }

    /// Merges `summary` (a shard's facts of interval `k`) for the whole model and, if the
    /// series is segmented, for `segment`.
    pub fn merge(
        &mut self,
        k: i64,
        summary: &AnySummary,
        segment: &[u32],
        stats: &mut RecordStats,
    ) {
        let keys: [Option<&[u32]>; 2] = [Some(&[]), Some(segment).filter(|s| !s.is_empty())];
        for key in keys.into_iter().flatten() {
            let window = match self.windows.get_mut(key) {
                Some(w) => w,
                None => self
                    .windows
                    .entry(key.into())
                    .or_insert_with(|| AnyWindow::new(self.family, self.len)),
            };
            match window.merge(k, summary) {
                Some(Recorded::Stored) => stats.stored += 1,
                Some(Recorded::TooLate) => stats.too_late += 1,
                None => {}
            }
        }
    }

    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// Whether this series records `fact` at all.
    pub fn uses(&self, fact: &Fact) -> bool {
        matches!(
            (self.family, fact),
            (Family::Reliability, Fact::Inference { .. })
                | (
                    Family::Latency | Family::LatencyUnder(_),
                    Fact::Inference {
                        latency: Some(_),
                        ..
                    }
                )
                | (Family::Binary, Fact::Binary { .. })
                | (Family::Multiclass, Fact::Multiclass { .. })
                | (Family::Regression, Fact::Regression { .. })
                | (
                    Family::Labels,
                    Fact::Binary { .. }
                        | Fact::Multiclass { .. }
                        | Fact::Regression { .. }
                        | Fact::Unlabeled
                )
        ) || match (self.family, fact) {
            (Family::Drift(f), Fact::Drift { feature, .. }) => f == *feature,
            (
                Family::Quality { feature, range },
                Fact::Quality {
                    feature: f,
                    range: r,
                    ..
                },
            ) => feature == *f && range == *r,
            _ => false,
        }
    }

    /// Moves every window to instant `n`.
    pub fn advance_to(&mut self, n: i64) {
        for w in self.windows.values_mut() {
            w.advance_to(n);
        }
    }

    /// Segment keys whose current window holds data, the whole model (empty key) first.
    pub fn keys_with_data(&self) -> impl Iterator<Item = &SegmentKey> {
        self.windows
            .iter()
            .filter(|(_, w)| w.has_data())
            .map(|(k, _)| k)
    }

    pub fn segment_count(&self) -> usize {
        self.windows.len()
    }

    pub fn has_segment(&self, key: &[u32]) -> bool {
        self.windows.contains_key(key)
    }

    pub fn measure(&self, key: &[u32], metric: Metric) -> Measured {
        self.windows.get(key).map_or(
            Measured {
                value: None,
                samples: 0,
            },
            |w| w.measure(metric, self.window_ms, &self.expected),
        )
    }

    /// Drops segment windows (never the whole model's) with nothing left in them.
    pub fn drop_idle(&mut self) {
        self.windows.retain(|k, w| k.is_empty() || !w.is_idle());
    }
}
