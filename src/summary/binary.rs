//! Binary classification outcomes: confusion counts, a score histogram for ROC AUC, and
//! fixed-point loss sums for log_loss and brier.
//!
//! Scores are binned in logit space, which gives fine bins where classifiers concentrate
//! their scores (near 0 and 1) and keeps binned ROC AUC within 0.001 of the exact value.

use serde::{Deserialize, Serialize};

use super::sparse::SparseCounts;
use super::{FixedSum, Measured, Summary};
use crate::metric::Metric;

/// Number of score bins.
pub const SCORE_BINS: usize = 16_384;
/// Bins cover logit(score) in [-LOGIT_RANGE, LOGIT_RANGE]; scores beyond fall in the end bins.
const LOGIT_RANGE: f64 = 12.0;
/// Probabilities are clipped to [EPS, 1 - EPS] for log_loss.
const EPS: f64 = 1e-15;

/// Counts of negatives and positives per score bin, sparse: a bin with no outcome costs nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreHistogram {
    /// bin → [negatives, positives]
    bins: SparseCounts<u16, [u64; 2]>,
}

impl ScoreHistogram {
    pub fn bin(score: f64) -> u16 {
        let logit = (score / (1.0 - score)).ln();
        let width = 2.0 * LOGIT_RANGE / SCORE_BINS as f64;
        let b = ((logit + LOGIT_RANGE) / width).floor();
        // NaN cannot reach here (scores are validated); ±inf clamp to the end bins.
        b.clamp(0.0, (SCORE_BINS - 1) as f64) as u16
    }

    pub fn record(&mut self, score: f64, positive: bool) {
        self.record_bin(Self::bin(score), positive);
    }

    /// One outcome in bin `bin` (of [`ScoreHistogram::bin`]).
    pub fn record_bin(&mut self, bin: u16, positive: bool) {
        let count = if positive { [0, 1] } else { [1, 0] };
        self.bins.add(bin, count);
    }

    pub fn merge(&mut self, other: &Self) {
        self.bins.merge(&other.bins);
    }

    pub fn unmerge(&mut self, other: &Self) {
        self.bins.unmerge(&other.bins);
    }

    /// Probability that a random positive scores above a random negative (ties count half).
    /// `None` when either class is absent.
    pub fn roc_auc(&self) -> Option<f64> {
        let (mut neg_below, mut twice_num) = (0u128, 0u128);
        let (mut negatives, mut positives) = (0u128, 0u128);
        for (_, c) in self.bins.iter() {
            let (neg, pos) = (u128::from(c[0]), u128::from(c[1]));
            twice_num += pos * (2 * neg_below + neg);
            neg_below += neg;
            negatives += neg;
            positives += pos;
        }
        (negatives > 0 && positives > 0)
            .then(|| twice_num as f64 / (2.0 * negatives as f64 * positives as f64))
    }
}

/// What one scored outcome adds to a summary's score histogram and loss sums, computed
/// once however many summaries (windows, segments) it goes into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredOutcome {
    bin: u16,
    log_loss: FixedSum,
    brier: FixedSum,
}

impl ScoredOutcome {
    pub fn new(score: f64, truth: bool) -> ScoredOutcome {
        let y = if truth { 1.0 } else { 0.0 };
        let pc = score.clamp(EPS, 1.0 - EPS);
        ScoredOutcome {
            bin: ScoreHistogram::bin(score),
            log_loss: FixedSum::of(-(y * pc.ln() + (1.0 - y) * (1.0 - pc).ln())),
            brier: FixedSum::of((score - y) * (score - y)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BinarySummary {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    pub fn_: u64,
    /// Outcomes that carried a score (the samples of roc_auc, log_loss and brier).
    pub scored: u64,
    pub scores: ScoreHistogram,
    pub log_loss: FixedSum,
    pub brier: FixedSum,
}

impl BinarySummary {
    pub fn record(&mut self, truth: bool, predicted: bool, score: Option<f64>) {
        let scored = score.map(|p| ScoredOutcome::new(p, truth));
        self.record_outcome(truth, predicted, scored.as_ref());
    }

    /// [`BinarySummary::record`] with the score's share worked out beforehand.
    pub fn record_outcome(&mut self, truth: bool, predicted: bool, scored: Option<&ScoredOutcome>) {
        match (truth, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
        if let Some(s) = scored {
            self.scored += 1;
            self.scores.record_bin(s.bin, truth);
            self.log_loss.merge(s.log_loss);
            self.brier.merge(s.brier);
        }
    }

    pub fn n(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    pub fn measure(&self, metric: Metric) -> Measured {
        let n = self.n();
        let per_score = |s: FixedSum| Measured {
            value: (self.scored > 0).then(|| s.value() / self.scored as f64),
            samples: self.scored,
        };
        match metric {
            Metric::Accuracy => Measured::ratio(self.tp + self.tn, n, n),
            Metric::Precision => Measured::ratio(self.tp, self.tp + self.fp, n),
            Metric::Recall => Measured::ratio(self.tp, self.tp + self.fn_, n),
            Metric::F1 => Measured::ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_, n),
            Metric::PositiveRate => Measured::ratio(self.tp + self.fp, n, n),
            Metric::RocAuc => Measured {
                value: self.scores.roc_auc(),
                samples: self.scored,
            },
            Metric::LogLoss => per_score(self.log_loss),
            Metric::Brier => per_score(self.brier),
            _ => Measured {
                value: None,
                samples: 0,
            },
        }
    }
}

impl Summary for BinarySummary {
    fn merge(&mut self, o: &Self) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.tn += o.tn;
        self.fn_ += o.fn_;
        self.scored += o.scored;
        self.scores.merge(&o.scores);
        self.log_loss.merge(o.log_loss);
        self.brier.merge(o.brier);
    }
    fn unmerge(&mut self, o: &Self) {
        self.tp -= o.tp;
        self.fp -= o.fp;
        self.tn -= o.tn;
        self.fn_ -= o.fn_;
        self.scored -= o.scored;
        self.scores.unmerge(&o.scores);
        self.log_loss.unmerge(o.log_loss);
        self.brier.unmerge(o.brier);
    }
    fn is_empty(&self) -> bool {
        self.n() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotone_and_cover_the_ends() {
        assert_eq!(ScoreHistogram::bin(0.0), 0);
        assert_eq!(usize::from(ScoreHistogram::bin(1.0)), SCORE_BINS - 1);
        let mut last = 0;
        for i in 0..=1000 {
            let b = ScoreHistogram::bin(i as f64 / 1000.0);
            assert!(b >= last);
            last = b;
        }
    }

    #[test]
    fn perfect_and_inverted_rankings() {
        let mut h = ScoreHistogram::default();
        h.record(0.9, true);
        h.record(0.1, false);
        assert_eq!(h.roc_auc(), Some(1.0));
        let mut h = ScoreHistogram::default();
        h.record(0.1, true);
        h.record(0.9, false);
        assert_eq!(h.roc_auc(), Some(0.0));
        h.record(0.5, true);
        h.record(0.5, false);
        // pairs: (0.1 vs 0.9)=0, (0.1 vs 0.5)=0, (0.5 vs 0.9)=0, (0.5 vs 0.5)=0.5 → 0.5/4
        assert_eq!(h.roc_auc(), Some(0.125));
    }
}
