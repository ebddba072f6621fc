//! Multi-window, multi-burn-rate alerting (SPEC §3, after the SRE workbook).
//!
//! A ratio objective promises that at most a share `budget` of its events is bad over its
//! window: `1 − target` for a good ratio (availability, accuracy, latency_under with
//! `>=`), `target` for a bad ratio (error_rate with `<=`). The burn rate over some span is
//! the bad share seen there divided by the budget: at rate 1 the budget lasts exactly the
//! objective's window. An alert rule pairs a long span with a short one and fires when
//! both burn faster than its factor; the short span makes the alert stop soon after the
//! burning does. For a 30-day objective the pairs are 1h/5m at 14.4 and 6h/30m at 6
//! (critical), 1d/2h at 3 and 3d/6h at 1 (warning); other windows scale the spans in
//! proportion, which keeps the share of budget each rule has seen burnt when it fires.

use crate::metric::{Metric, Op};
use crate::output::{Severity, State};
use crate::summary::Measured;
use crate::time::{format_duration, Millis};

/// The objective window the workbook's spans are written for.
const REFERENCE_WINDOW: Millis = 30 * 86_400_000;

/// The workbook's rules for a 30-day window: long span, short span, factor, severity.
const RULES: [(Millis, Millis, f64, Severity); 4] = [
    (3_600_000, 300_000, 14.4, Severity::Critical),
    (6 * 3_600_000, 1_800_000, 6.0, Severity::Critical),
    (86_400_000, 2 * 3_600_000, 3.0, Severity::Warning),
    (3 * 86_400_000, 6 * 3_600_000, 1.0, Severity::Warning),
];

/// The metrics whose value is a share of events, good or bad.
pub const RATIO_METRICS: [Metric; 4] = [
    Metric::Availability,
    Metric::ErrorRate,
    Metric::LatencyUnder,
    Metric::Accuracy,
];

/// One alert rule, with spans already scaled to the objective's window.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnPair {
    pub long: Millis,
    pub short: Millis,
    pub factor: f64,
    pub severity: Severity,
}

impl BurnPair {
    /// `1h/5m`: how events and the check summary name the pair.
    pub fn name(&self) -> String {
        format!(
            "{}/{}",
            format_duration(self.long),
            format_duration(self.short)
        )
    }
}

/// The workbook's rules scaled to `window`, each span rounded to the nearest whole number
/// of evaluation intervals (at least one).
pub fn scaled_pairs(window: Millis, every: Millis) -> Vec<BurnPair> {
    let every = every.max(1);
    let scale = |span: Millis| -> Millis {
        let exact = span as f64 * window as f64 / REFERENCE_WINDOW as f64;
        let intervals = (exact / every as f64).round().max(1.0) as Millis;
        intervals * every
    };
    RULES
        .iter()
        .map(|&(long, short, factor, severity)| BurnPair {
            long: scale(long),
            short: scale(short),
            factor,
            severity,
        })
        .collect()
}

/// The share of events the objective allows to be bad.
pub fn budget(op: Op, target: f64) -> f64 {
    if op.higher_is_better() {
        1.0 - target
    } else {
        target
    }
}

/// The share of bad events in a measured ratio.
pub fn bad_share(op: Op, value: f64) -> f64 {
    if op.higher_is_better() {
        1.0 - value
    } else {
        value
    }
}

/// How fast a span burns the budget: 1 spends exactly the budget over the window.
pub fn rate(op: Op, target: f64, value: f64) -> f64 {
    bad_share(op, value) / budget(op, target)
}

/// The rule that fired, with the burn rates that made it fire.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub pair: BurnPair,
    pub long_rate: f64,
    pub short_rate: f64,
}

/// Assesses one evaluation from the measured long and short spans of each pair (in the
/// order of `pairs`). A pair counts only when both of its spans hold `min_samples`; with
/// no pair counting the state is insufficient data. The most severe firing pair decides
/// (the first one listed among equals).
pub fn assess(
    op: Op,
    target: f64,
    min_samples: u64,
    pairs: &[BurnPair],
    measured: &[(Measured, Measured)],
) -> (State, Option<Fired>) {
    let rate_of = |m: &Measured| {
        m.value
            .filter(|_| m.samples >= min_samples.max(1))
            .map(|v| rate(op, target, v))
    };
    let mut evaluable = false;
    let mut fired: Option<Fired> = None;
    for (pair, (long, short)) in pairs.iter().zip(measured) {
        let (Some(long_rate), Some(short_rate)) = (rate_of(long), rate_of(short)) else {
            continue;
        };
        evaluable = true;
        let fires = long_rate > pair.factor && short_rate > pair.factor;
        let worse = fired.as_ref().is_none_or(|f| {
            pair.severity == Severity::Critical && f.pair.severity != pair.severity
        });
        if fires && worse {
            fired = Some(Fired {
                pair: pair.clone(),
                long_rate,
                short_rate,
            });
        }
    }
    let state = match &fired {
        Some(f) if f.pair.severity == Severity::Critical => State::Critical,
        Some(_) => State::Warning,
        None if evaluable => State::Ok,
        None => State::InsufficientData,
    };
    (state, fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(value: f64, samples: u64) -> Measured {
        Measured {
            value: Some(value),
            samples,
        }
    }

    #[test]
    fn thirty_days_gives_the_workbook_spans() {
        let names: Vec<String> = scaled_pairs(REFERENCE_WINDOW, 60_000)
            .iter()
            .map(BurnPair::name)
            .collect();
        assert_eq!(names, ["1h/5m", "6h/30m", "1d/2h", "3d/6h"]);
    }

    #[test]
    fn short_windows_round_to_whole_intervals() {
        // 1d: 2m/0.2m, 12m/1m, 48m/4m, 144m/12m with 1-minute intervals.
        let p = scaled_pairs(86_400_000, 60_000);
        let spans: Vec<(Millis, Millis)> = p.iter().map(|p| (p.long, p.short)).collect();
        assert_eq!(
            spans,
            [
                (120_000, 60_000),
                (720_000, 60_000),
                (2_880_000, 240_000),
                (8_640_000, 720_000)
            ]
        );
    }

    #[test]
    fn budget_and_rate_for_both_kinds_of_ratio() {
        // 99.9% availability: 0.1% budget; 0.2% errors burn at 2.
        assert!((rate(Op::Ge, 0.999, 0.998) - 2.0).abs() < 1e-9);
        // error_rate <= 1%: 5% errors burn at 5.
        assert!((rate(Op::Le, 0.01, 0.05) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn both_spans_must_burn_and_hold_enough_samples() {
        let pairs = scaled_pairs(REFERENCE_WINDOW, 60_000);
        let healthy = (m(1.0, 1000), m(1.0, 100));
        // Long span burning at 20, short span recovered: nothing fires.
        let mut measured = vec![(m(0.98, 1000), m(1.0, 100)), healthy, healthy, healthy];
        assert_eq!(assess(Op::Ge, 0.999, 10, &pairs, &measured).0, State::Ok);
        // Both spans at 20: the 1h/5m pair pages.
        measured[0] = (m(0.98, 1000), m(0.98, 100));
        let (state, fired) = assess(Op::Ge, 0.999, 10, &pairs, &measured);
        assert_eq!(state, State::Critical);
        let fired = fired.expect("fired");
        assert_eq!(fired.pair.name(), "1h/5m");
        assert!((fired.long_rate - 20.0).abs() < 1e-9);
        // The short span below min_samples: the pair does not count.
        measured[0] = (m(0.98, 1000), m(0.98, 5));
        assert_eq!(assess(Op::Ge, 0.999, 10, &pairs, &measured).0, State::Ok);
        // No pair with enough samples anywhere: insufficient data.
        let few = vec![(m(0.5, 3), m(0.5, 3)); 4];
        assert_eq!(
            assess(Op::Ge, 0.999, 10, &pairs, &few).0,
            State::InsufficientData
        );
    }

    #[test]
    fn a_critical_pair_outranks_a_warning_pair() {
        let pairs = scaled_pairs(REFERENCE_WINDOW, 60_000);
        // Every span at burn rate 10: 6h/30m (6) and both warning pairs fire, 1h/5m not.
        let all = vec![(m(0.99, 1000), m(0.99, 1000)); 4];
        let (state, fired) = assess(Op::Ge, 0.999, 10, &pairs, &all);
        assert_eq!(state, State::Critical);
        assert_eq!(fired.expect("fired").pair.name(), "6h/30m");
        // Every span at 2: only 3d/6h (factor 1) fires, a warning.
        let slow = vec![(m(0.998, 1000), m(0.998, 1000)); 4];
        let (state, fired) = assess(Op::Ge, 0.999, 10, &pairs, &slow);
        assert_eq!(state, State::Warning);
        assert_eq!(fired.expect("fired").pair.name(), "3d/6h");
    }
}
