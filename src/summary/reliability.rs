//! Request counts by status: error_rate, availability, throughput, request_count.

use serde::{Deserialize, Serialize};

use super::{Measured, Summary};
use crate::metric::Metric;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReliabilitySummary {
    pub total: u64,
    /// Requests whose status is not `ok`.
    pub errors: u64,
}

impl ReliabilitySummary {
    pub fn record(&mut self, ok: bool) {
        self.total += 1;
        self.errors += u64::from(!ok);
    }

    /// `window_ms` converts counts to a rate for `throughput` (events per second).
    pub fn measure(&self, metric: Metric, window_ms: i64) -> Measured {
        let n = self.total;
        match metric {
            Metric::ErrorRate => Measured::ratio(self.errors, n, n),
            Metric::Availability => Measured::ratio(n - self.errors, n, n),
            Metric::Throughput => Measured {
                value: Some(n as f64 / (window_ms as f64 / 1000.0)),
                samples: n,
            },
            Metric::RequestCount => Measured {
                value: Some(n as f64),
                samples: n,
            },
            _ => Measured {
                value: None,
                samples: 0,
            },
        }
    }
}

impl Summary for ReliabilitySummary {
    fn merge(&mut self, o: &Self) {
        self.total += o.total;
        self.errors += o.errors;
    }
    fn unmerge(&mut self, o: &Self) {
        self.total -= o.total;
        self.errors -= o.errors;
    }
    fn is_empty(&self) -> bool {
        self.total == 0
    }
}
