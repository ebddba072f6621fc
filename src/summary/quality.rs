//! Data-quality counts of one profiled feature, or of all of them: missing values,
//! schema violations (wrong type, or a feature the profile does not know) and values
//! outside the expected range.

use serde::{Deserialize, Serialize};

use super::{Measured, Summary};
use crate::metric::Metric;

/// What one inference contributes. `units` counts (event, feature) pairs: 1 for one
/// feature, the number of features checked for all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityCounts {
    pub units: u32,
    pub missing: u32,
    pub violations: u32,
    /// Numeric values whose range was checked, and how many fell outside.
    pub range_checked: u32,
    pub out_of_range: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary {
    events: u64,
    units: u64,
    missing: u64,
    violations: u64,
    range_checked: u64,
    out_of_range: u64,
}

impl QualitySummary {
    pub fn record(&mut self, c: QualityCounts) {
        self.events += 1;
        self.units += u64::from(c.units);
        self.missing += u64::from(c.missing);
        self.violations += u64::from(c.violations);
        self.range_checked += u64::from(c.range_checked);
        self.out_of_range += u64::from(c.out_of_range);
    }

    pub fn measure(&self, metric: Metric) -> Measured {
        match metric {
            Metric::MissingRate => Measured::ratio(self.missing, self.units, self.events),
            Metric::SchemaViolationRate => {
                Measured::ratio(self.violations, self.units, self.events)
            }
            Metric::OutOfRangeRate => {
                Measured::ratio(self.out_of_range, self.range_checked, self.events)
            }
            _ => Measured {
                value: None,
                samples: 0,
            },
        }
    }
}

impl Summary for QualitySummary {
    fn merge(&mut self, o: &Self) {
        self.events += o.events;
        self.units += o.units;
        self.missing += o.missing;
        self.violations += o.violations;
        self.range_checked += o.range_checked;
        self.out_of_range += o.out_of_range;
    }
    fn unmerge(&mut self, o: &Self) {
        self.events -= o.events;
        self.units -= o.units;
        self.missing -= o.missing;
        self.violations -= o.violations;
        self.range_checked -= o.range_checked;
        self.out_of_range -= o.out_of_range;
    }
    fn is_empty(&self) -> bool {
        self.events == 0
    }
}
