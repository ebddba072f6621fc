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
    BinarySummary, DriftSummary, LabelSummary, LatencySummary, LatencyUnderSummary, Measured,
    MulticlassSummary, QualityCounts, QualitySummary, RegressionSummary, ReliabilitySummary,
};
use crate::time::Millis;
use crate::window::{Recorded, SlidingWindow};

/// Segment key: interned dimension values in the series' dimension order; empty for the
/// whole model.
pub type SegmentKey = Box<[u32]>;

/// Something that happened, to be recorded into the windows that use it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fact {
    Inference {
        ok: bool,
        latency_ms: Option<f64>,
    },
    /// A joined binary outcome.
    Binary {
        truth: bool,
        predicted: bool,
        score: Option<f64>,
        delay_ms: Millis,
    },
    /// A joined multiclass outcome (interned class ids).
    Multiclass {
        truth: u32,
        predicted: u32,
        delay_ms: Millis,
    },
    /// A joined regression outcome.
    Regression {
        truth: f64,
        predicted: f64,
        delay_ms: Millis,
    },
    /// A prediction whose label never came.
    Unlabeled,
    /// The bin of a profiled feature (or of the score) in one inference.
    Drift {
        feature: u32,
        bin: u32,
    },
    /// Data-quality counts of one inference for one quality family.
    Quality {
        feature: u32,
        range: Option<(u64, u64)>,
        counts: QualityCounts,
    },
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

    /// Records `fact` into interval `k`; `None` when this family does not use the fact.
    fn record(&mut self, k: i64, fact: Fact, threshold_ms: f64) -> Option<Recorded> {
        use AnyWindow as W;
        Some(match (self, fact) {
            (W::Reliability(w), Fact::Inference { ok, .. }) => w.record(k, |s| s.record(ok)),
            (
                W::Latency(w),
                Fact::Inference {
                    latency_ms: Some(l),
                    ..
                },
            ) => w.record(k, |s| s.record(l)),
            (
                W::LatencyUnder(w),
                Fact::Inference {
                    latency_ms: Some(l),
                    ..
                },
            ) => w.record(k, |s| s.record(l, threshold_ms)),
            (
                W::Binary(w),
                Fact::Binary {
                    truth,
                    predicted,
                    score,
                    ..
                },
            ) => w.record(k, |s| s.record(truth, predicted, score)),
            (
                W::Multiclass(w),
                Fact::Multiclass {
                    truth, predicted, ..
                },
            ) => w.record(k, |s| s.record(truth, predicted)),
            (
                W::Regression(w),
                Fact::Regression {
                    truth, predicted, ..
                },
            ) => w.record(k, |s| s.record(predicted, truth)),
            (
                W::Labels(w),
                Fact::Binary { delay_ms, .. }
                | Fact::Multiclass { delay_ms, .. }
                | Fact::Regression { delay_ms, .. },
            ) => w.record(k, |s| s.record_joined(delay_ms)),
            (W::Labels(w), Fact::Unlabeled) => w.record(k, |s| s.record_expired()),
            (W::Drift(w), Fact::Drift { bin, .. }) => w.record(k, |s| s.record(bin as usize)),
            (W::Quality(w), Fact::Quality { counts, .. }) => w.record(k, |s| s.record(counts)),
            _ => return None,
        })
    }

    fn advance_to(&mut self, n: i64) {
        use AnyWindow as W;
        match self {
            W::Binary(w) => _ = w.advance_to(n),
            W::Multiclass(w) => _ = w.advance_to(n),
            W::Regression(w) => _ = w.advance_to(n),
            W::Latency(w) => _ = w.advance_to(n),
            W::LatencyUnder(w) => _ = w.advance_to(n),
            W::Reliability(w) => _ = w.advance_to(n),
            W::Labels(w) => _ = w.advance_to(n),
            W::Drift(w) => _ = w.advance_to(n),
            W::Quality(w) => _ = w.advance_to(n),
        }
    }

    /// The current window (as of the last advance) holds at least one event.
    fn has_data(&self) -> bool {
        use crate::summary::Summary;
        use AnyWindow as W;
        match self {
            W::Binary(w) => !w.aggregate().is_empty(),
            W::Multiclass(w) => !w.aggregate().is_empty(),
            W::Regression(w) => !w.aggregate().is_empty(),
            W::Latency(w) => !w.aggregate().is_empty(),
            W::LatencyUnder(w) => !w.aggregate().is_empty(),
            W::Reliability(w) => !w.aggregate().is_empty(),
            W::Labels(w) => !w.aggregate().is_empty(),
            W::Drift(w) => !w.aggregate().is_empty(),
            W::Quality(w) => !w.aggregate().is_empty(),
        }
    }

    fn is_idle(&self) -> bool {
        use AnyWindow as W;
        match self {
            W::Binary(w) => w.is_idle(),
            W::Multiclass(w) => w.is_idle(),
            W::Regression(w) => w.is_idle(),
            W::Latency(w) => w.is_idle(),
            W::LatencyUnder(w) => w.is_idle(),
            W::Reliability(w) => w.is_idle(),
            W::Labels(w) => w.is_idle(),
            W::Drift(w) => w.is_idle(),
            W::Quality(w) => w.is_idle(),
        }
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
                Some(Recorded::Stored) => stats.stored += 1,
                Some(Recorded::TooLate) => stats.too_late += 1,
                None => {}
            }
        }
    }

    /// Whether this series records `fact` at all.
    pub fn uses(&self, fact: &Fact) -> bool {
        matches!(
            (self.family, fact),
            (Family::Reliability, Fact::Inference { .. })
                | (
                    Family::Latency | Family::LatencyUnder(_),
                    Fact::Inference {
                        latency_ms: Some(_),
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
