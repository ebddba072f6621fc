//! Regression error sums: mae, rmse, mape.

use serde::{Deserialize, Serialize};

use super::{FixedSum, Measured, Summary};
use crate::metric::Metric;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegressionSummary {
    pub n: u64,
    pub abs_error: FixedSum,
    pub sq_error: FixedSum,
    /// Σ |error| / |truth| over outcomes whose true value is not zero.
    pub abs_pct_error: FixedSum,
    /// Outcomes counted in `abs_pct_error` (true value not zero).
    pub pct_n: u64,
}

/// What one outcome adds to a summary's error sums, computed once however many summaries
/// (windows, segments) it goes into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressionOutcome {
    abs_error: FixedSum,
    sq_error: FixedSum,
    /// `None` when the true value is zero.
    abs_pct_error: Option<FixedSum>,
}

impl RegressionOutcome {
    pub fn new(predicted: f64, truth: f64) -> RegressionOutcome {
        let e = predicted - truth;
        RegressionOutcome {
            abs_error: FixedSum::of(e.abs()),
            sq_error: FixedSum::of(e * e),
            abs_pct_error: (truth != 0.0).then(|| FixedSum::of(e.abs() / truth.abs())),
        }
    }
}

impl RegressionSummary {
    pub fn record(&mut self, predicted: f64, truth: f64) {
        self.record_outcome(&RegressionOutcome::new(predicted, truth));
    }

    /// [`RegressionSummary::record`] with the errors worked out beforehand.
    pub fn record_outcome(&mut self, o: &RegressionOutcome) {
        self.n += 1;
        self.abs_error.merge(o.abs_error);
        self.sq_error.merge(o.sq_error);
        if let Some(pct) = o.abs_pct_error {
            self.abs_pct_error.merge(pct);
            self.pct_n += 1;
        }
    }

    pub fn measure(&self, metric: Metric) -> Measured {
        let n = self.n;
        let mean = |s: FixedSum, d: u64| (d > 0).then(|| s.value() / d as f64);
        let value = match metric {
            Metric::Mae => mean(self.abs_error, n),
            Metric::Rmse => mean(self.sq_error, n).map(|v| v.max(0.0).sqrt()),
            Metric::Mape => mean(self.abs_pct_error, self.pct_n),
            _ => None,
        };
        Measured { value, samples: n }
    }
}

impl Summary for RegressionSummary {
    fn merge(&mut self, o: &Self) {
        self.n += o.n;
        self.abs_error.merge(o.abs_error);
        self.sq_error.merge(o.sq_error);
        self.abs_pct_error.merge(o.abs_pct_error);
        self.pct_n += o.pct_n;
    }
    fn unmerge(&mut self, o: &Self) {
        self.n -= o.n;
        self.abs_error.unmerge(o.abs_error);
        self.sq_error.unmerge(o.sq_error);
        self.abs_pct_error.unmerge(o.abs_pct_error);
        self.pct_n -= o.pct_n;
    }
    fn is_empty(&self) -> bool {
        self.n == 0
    }
}
