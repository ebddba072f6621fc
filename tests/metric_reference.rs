//! Metric values against scikit-learn / NumPy (tests/fixtures/metric_reference.json,
//! written by scripts/reference_metrics.py). Each case is recorded into seven interval
//! summaries that are then merged, so merging is exercised too.
//!
//! Tolerances: ROC AUC within 0.001 (binned scores, SPEC §3); counts and ratios of counts
//! exact to 1e-12 (undefined where the denominator is zero); fixed-point sums (log_loss, brier, mae, rmse, mape, mean) within 1e-9
//! relative; percentiles at or above the nearest-rank value and within HdrHistogram's
//! 3-significant-digit bucket (2^-10 relative) of it.

use serde_json::Value;
use slaguard::metric::Metric;
use slaguard::summary::{
    BinarySummary, LatencySummary, MulticlassSummary, RegressionSummary, Summary,
};

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metric_reference.json"
    ))
    .expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn merged<S: Summary>(parts: Vec<S>) -> S {
    let mut all = S::default();
    for p in &parts {
        all.merge(p);
    }
    all
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn close(name: &str, case: &str, got: Option<f64>, want: f64, tol: f64) {
    let got = got.unwrap_or_else(|| panic!("{case}: {name} undefined, reference {want}"));
    assert!(
        (got - want).abs() <= tol,
        "{case}: {name} = {got}, reference {want}, tolerance {tol}"
    );
}

#[test]
fn binary_metrics_match_scikit_learn() {
    let f = fixture();
    for case in f["cases"]["binary"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let threshold = case["threshold"].as_f64().expect("threshold");
        let truth: Vec<bool> = case["truth"]
            .as_array()
            .expect("truth")
            .iter()
            .map(|v| v.as_i64() == Some(1))
            .collect();
        let score = f64s(&case["score"]);
        let mut parts = vec![BinarySummary::default(); 7];
        for (i, (&y, &s)) in truth.iter().zip(&score).enumerate() {
            parts[i % 7].record(y, s >= threshold, Some(s));
        }
        let all = merged(parts);
        for (metric, tol) in [
            (Metric::Accuracy, 1e-12),
            (Metric::Precision, 1e-12),
            (Metric::Recall, 1e-12),
            (Metric::F1, 1e-12),
            (Metric::PositiveRate, 1e-12),
            (Metric::RocAuc, 1e-3),
            (Metric::LogLoss, 1e-9),
            (Metric::Brier, 1e-9),
        ] {
            let got = all.measure(metric).value;
            let Some(want) = case["expected"][metric.name()].as_f64() else {
                assert_eq!(
                    got,
                    None,
                    "{name}: {} has a zero denominator and must be undefined",
                    metric.name()
                );
                continue;
            };
            let tol = if metric == Metric::RocAuc {
                tol
            } else {
                tol * want.abs().max(1.0)
            };
            close(metric.name(), name, got, want, tol);
        }
        assert_eq!(all.measure(Metric::Accuracy).samples, truth.len() as u64);
    }
}

#[test]
fn multiclass_metrics_match_scikit_learn() {
    let f = fixture();
    for case in f["cases"]["multiclass"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let id = |v: &Value| -> u32 { u32::from(v.as_str().expect("class").as_bytes()[0] - b'a') };
        let truth: Vec<u32> = case["truth"]
            .as_array()
            .expect("truth")
            .iter()
            .map(id)
            .collect();
        let pred: Vec<u32> = case["predicted"]
            .as_array()
            .expect("pred")
            .iter()
            .map(id)
            .collect();
        let mut parts = vec![MulticlassSummary::default(); 7];
        for (i, (&t, &p)) in truth.iter().zip(&pred).enumerate() {
            parts[i % 7].record(t, p);
        }
        let all = merged(parts);
        for metric in [
            Metric::Accuracy,
            Metric::MacroPrecision,
            Metric::MacroRecall,
            Metric::MacroF1,
        ] {
            let want = case["expected"][metric.name()]
                .as_f64()
                .expect("expected value");
            close(metric.name(), name, all.measure(metric).value, want, 1e-12);
        }
    }
}

#[test]
fn regression_metrics_match_scikit_learn() {
    let f = fixture();
    for case in f["cases"]["regression"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let truth = f64s(&case["truth"]);
        let pred = f64s(&case["predicted"]);
        let mut parts = vec![RegressionSummary::default(); 7];
        for (i, (&t, &p)) in truth.iter().zip(&pred).enumerate() {
            parts[i % 7].record(p, t);
        }
        let all = merged(parts);
        for metric in [Metric::Mae, Metric::Rmse, Metric::Mape] {
            let want = case["expected"][metric.name()]
                .as_f64()
                .expect("expected value");
            close(
                metric.name(),
                name,
                all.measure(metric).value,
                want,
                1e-9 * want.abs().max(1.0),
            );
        }
    }
}

#[test]
fn latency_percentiles_match_nearest_rank_within_hdr_precision() {
    let f = fixture();
    for case in f["cases"]["latency"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let lat = f64s(&case["latency_ms"]);
        let mut parts = vec![LatencySummary::default(); 7];
        for (i, &l) in lat.iter().enumerate() {
            parts[i % 7].record(l);
        }
        let all = merged(parts);
        for metric in [
            Metric::LatencyP50,
            Metric::LatencyP90,
            Metric::LatencyP95,
            Metric::LatencyP99,
            Metric::LatencyP999,
            Metric::LatencyMax,
        ] {
            let want = case["expected"][metric.name()]
                .as_f64()
                .expect("expected value");
            let got = all.measure(metric).value.expect("defined");
            assert!(
                got >= want - 1e-9 && got <= want * (1.0 + 1.0 / 1024.0) + 1e-9,
                "{name}: {} = {got}, nearest rank {want}",
                metric.name()
            );
        }
        let want = case["expected"]["latency_mean"].as_f64().expect("mean");
        close(
            "latency_mean",
            name,
            all.measure(Metric::LatencyMean).value,
            want,
            1e-9 * want,
        );
        assert_eq!(all.measure(Metric::LatencyP99).samples, lat.len() as u64);
    }
}
