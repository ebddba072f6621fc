//! Bin counts of one profiled feature (or the score), for PSI, KS and JS distance against
//! the reference proportions. Dense and fixed-size: recording allocates nothing once the
//! bins exist.

use serde::{Deserialize, Serialize};

use super::{Measured, Summary};
use crate::drift;
use crate::metric::Metric;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftSummary {
    counts: Vec<u64>,
    total: u64,
}

impl DriftSummary {
    pub fn record(&mut self, bin: usize) {
        if self.counts.len() <= bin {
            self.counts.resize(bin + 1, 0);
        }
        self.counts[bin] += 1;
        self.total += 1;
    }

    /// The metric against `expected`, the reference proportions of the same bins.
    pub fn measure(&self, metric: Metric, expected: &[f64]) -> Measured {
        let mut counts = self.counts.clone();
        counts.resize(expected.len().max(counts.len()), 0);
        let Some(actual) = drift::proportions(&counts) else {
            return Measured {
                value: None,
                samples: 0,
            };
        };
        let mut expected = expected.to_vec();
        expected.resize(actual.len(), 0.0);
        let value = match metric {
            Metric::Psi => drift::psi(&expected, &actual),
            Metric::Ks => drift::ks(&expected, &actual),
            Metric::JsDistance => drift::js_distance(&expected, &actual),
            _ => {
                return Measured {
                    value: None,
                    samples: 0,
                }
            }
        };
        Measured {
            value: Some(value),
            samples: self.total,
        }
    }
}

impl Summary for DriftSummary {
    fn merge(&mut self, o: &Self) {
        if self.counts.len() < o.counts.len() {
            self.counts.resize(o.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.total += o.total;
    }
    fn unmerge(&mut self, o: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a -= b;
        }
        // Keep one representation per distribution: no trailing empty bins.
        while self.counts.last() == Some(&0) {
            self.counts.pop();
        }
        self.total -= o.total;
    }
    fn is_empty(&self) -> bool {
        self.total == 0
    }
}
