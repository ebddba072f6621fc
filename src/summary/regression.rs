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

impl RegressionSummary {
    pub fn record(&mut self, predicted: f64, truth: f64) {
        let e = predicted - truth;
        self.n += 1;
        self.abs_error.add(e.abs());
        self.sq_error.add(e * e);
        if truth != 0.0 {
            self.abs_pct_error.add(e.abs() / truth.abs());
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
