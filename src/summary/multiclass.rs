//! Multiclass outcomes: a sparse confusion matrix over interned class ids, giving accuracy
//! and macro-averaged precision, recall and F1 over the classes seen in the window.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::sparse::SparseCounts;
use super::{Measured, Summary};
use crate::metric::Metric;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MulticlassSummary {
    /// (true class, predicted class) → count
    pub cells: SparseCounts<(u32, u32), u64>,
    pub n: u64,
}

impl MulticlassSummary {
    pub fn record(&mut self, truth: u32, predicted: u32) {
        self.cells.add((truth, predicted), 1);
        self.n += 1;
    }

    /// The same counts with every class id renamed.
    pub fn map_classes(&self, rename: impl Fn(u32) -> u32) -> MulticlassSummary {
        let mut out = MulticlassSummary {
            n: self.n,
            ..Default::default()
        };
        for ((t, p), c) in self.cells.iter() {
            out.cells.add((rename(*t), rename(*p)), *c);
        }
        out
    }

    /// Macro averages follow scikit-learn: the classes are those present as truth or
    /// prediction, and a class with a zero denominator scores 0.
    pub fn measure(&self, metric: Metric) -> Measured {
        let n = self.n;
        if metric == Metric::Accuracy {
            let correct: u64 = self
                .cells
                .iter()
                .filter(|((t, p), _)| t == p)
                .map(|(_, c)| c)
                .sum();
            return Measured::ratio(correct, n, n);
        }
        let mut classes = BTreeSet::new();
        let mut tp: BTreeMap<u32, u64> = BTreeMap::new();
        let mut true_n: BTreeMap<u32, u64> = BTreeMap::new();
        let mut pred_n: BTreeMap<u32, u64> = BTreeMap::new();
        for (&(t, p), &c) in self.cells.iter() {
            classes.insert(t);
            classes.insert(p);
            *true_n.entry(t).or_default() += c;
            *pred_n.entry(p).or_default() += c;
            if t == p {
                *tp.entry(t).or_default() += c;
            }
        }
        if classes.is_empty() {
            return Measured {
                value: None,
                samples: 0,
            };
        }
        let div = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut total = 0.0;
        for c in &classes {
            let (tp, t, p) = (
                tp.get(c).copied().unwrap_or(0),
                true_n.get(c).copied().unwrap_or(0),
                pred_n.get(c).copied().unwrap_or(0),
            );
            total += match metric {
                Metric::MacroPrecision => div(tp, p),
                Metric::MacroRecall => div(tp, t),
                Metric::MacroF1 => div(2 * tp, t + p),
                _ => {
                    return Measured {
                        value: None,
                        samples: 0,
                    }
                }
            };
        }
        Measured {
            value: Some(total / classes.len() as f64),
            samples: n,
        }
    }
}

impl Summary for MulticlassSummary {
    fn merge(&mut self, o: &Self) {
        self.cells.merge(&o.cells);
        self.n += o.n;
    }
    fn unmerge(&mut self, o: &Self) {
        self.cells.unmerge(&o.cells);
        self.n -= o.n;
    }
    fn is_empty(&self) -> bool {
        self.n == 0
    }
}
