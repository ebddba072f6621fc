//! Label arrival: how many predictions got their label within `label_ttl`, how many
//! expired unlabeled, and how long labels took (milliseconds).

use serde::{Deserialize, Serialize};

use super::latency::LatencyHistogram;
use super::{Measured, Summary};
use crate::metric::Metric;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelSummary {
    pub joined: u64,
    pub expired: u64,
    /// Label delay (label time − prediction time, floored at 0) in milliseconds.
    pub delay_ms: LatencyHistogram,
}

impl LabelSummary {
    pub fn record_joined(&mut self, delay_ms: i64) {
        self.joined += 1;
        self.delay_ms.record(delay_ms.max(0) as u64);
    }

    pub fn record_expired(&mut self) {
        self.expired += 1;
    }

    pub fn measure(&self, metric: Metric) -> Measured {
        let resolved = self.joined + self.expired;
        let q = |q: f64| Measured {
            value: self.delay_ms.quantile(q).map(|v| v as f64),
            samples: self.joined,
        };
        match metric {
            Metric::LabelCoverage => Measured::ratio(self.joined, resolved, resolved),
            Metric::LabelDelayP50 => q(0.50),
            Metric::LabelDelayP95 => q(0.95),
            _ => Measured {
                value: None,
                samples: 0,
            },
        }
    }
}

impl Summary for LabelSummary {
    fn merge(&mut self, o: &Self) {
        self.joined += o.joined;
        self.expired += o.expired;
        self.delay_ms.merge(&o.delay_ms);
    }
    fn index(&mut self) {
        self.delay_ms.index();
    }
    fn unmerge(&mut self, o: &Self) {
        self.joined -= o.joined;
        self.expired -= o.expired;
        self.delay_ms.unmerge(&o.delay_ms);
    }
    fn is_empty(&self) -> bool {
        self.joined + self.expired == 0
    }
}
