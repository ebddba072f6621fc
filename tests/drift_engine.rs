//! Drift and data quality through the engine: crafted events for each data-quality metric,
//! and a generated stream whose `amount` shifts at a known minute — the PSI objective opens
//! an incident then — while an unshifted feature never drifts over hours of data.

mod common;

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use slaguard::config;
use slaguard::decode;
use slaguard::engine::Engine;
use slaguard::output::Output;

const T0: i64 = 1_793_534_400_000;

fn engine(dir: &std::path::Path, profile: &str, objectives: &str) -> Engine {
    std::fs::write(dir.join("ref.json"), profile).expect("profile");
    let yaml = format!(
        "sla_version: \"drift-1\"\ndefaults: {{evaluate_every: 1m, allowed_lateness: 0s}}\nmodels:\n  - model_id: m\n    task: regression\n    reference: {{file: ref.json}}\n    objectives:\n{objectives}"
    );
    Engine::new(Arc::new(
        config::parse(&yaml, "t.yaml", Some(dir)).unwrap_or_else(|e| panic!("{e}")),
    ))
}

#[test]
fn data_quality_rates_on_crafted_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = r#"{"features": {"amount": {"type": "numeric", "edges": [10, 20], "proportions": [0.3, 0.4, 0.3], "min": 0, "max": 100},
                                 "country": {"type": "categorical", "proportions": {"DE": 0.5, "US": 0.5}}}}"#;
    let mut e = engine(
        dir.path(),
        profile,
        r#"      - {name: missing, metric: missing_rate, feature: amount, op: "<=", target: 0.5, window: 1m}
      - {name: missing-all, metric: missing_rate, op: "<=", target: 0.5, window: 1m}
      - {name: schema, metric: schema_violation_rate, op: "<=", target: 0.5, window: 1m}
      - {name: schema-amount, metric: schema_violation_rate, feature: amount, op: "<=", target: 0.5, window: 1m}
      - {name: range, metric: out_of_range_rate, feature: amount, op: "<=", target: 0.5, window: 1m}
      - {name: range-own, metric: out_of_range_rate, feature: amount, range: [0, 50], op: "<=", target: 0.5, window: 1m}
"#,
    );
    let s = e.add_source();
    let features = [
        r#"{"amount": 5, "country": "DE"}"#,                // fine
        r#"{"amount": null, "country": "US"}"#,             // amount missing
        r#"{"country": "FR"}"#, // amount absent (missing); FR is only unseen, not a violation
        r#"{"amount": "12", "country": "DE"}"#, // amount of the wrong type
        r#"{"amount": 150, "country": "DE", "vip": true}"#, // beyond the profile's max; unknown feature
        r#"{"amount": 70, "country": [1]}"#, // within 0..100, beyond range [0, 50]; country not a value
    ];
    for (i, f) in features.iter().enumerate() {
        let line = format!(
            r#"{{"request_id":"r{i}","model_id":"m","timestamp":{},"prediction":{{"value":1}},"features":{f}}}"#,
            T0 + i as i64 * 1000
        );
        e.handle_inference(s, &decode::inference(line.as_bytes()).expect("valid"))
            .expect("accepted");
    }
    // One more event in the next minute, outside the window of 12:01, moves time on.
    let tick = format!(
        r#"{{"request_id":"tick","model_id":"m","timestamp":{},"prediction":{{"value":1}}}}"#,
        T0 + 61_000
    );
    e.handle_inference(s, &decode::inference(tick.as_bytes()).expect("valid"))
        .expect("accepted");
    let snaps = common::metric_snapshots(&mut e);
    let value = |name: &str| {
        snaps
            .iter()
            .find(|m| m.objective == name)
            .and_then(|m| m.value)
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(value("missing"), 2.0 / 6.0);
    // pairs: 6 events × 2 profile features + 1 unknown feature = 13; missing: 2 amounts
    assert_eq!(value("missing-all"), 2.0 / 13.0);
    // violations: amount "12", country [1], unknown `vip`
    assert_eq!(value("schema"), 3.0 / 13.0);
    assert_eq!(value("schema-amount"), 1.0 / 6.0);
    // numeric amounts checked: 5, 150, 70 → 150 is outside the profile's 0..100
    assert_eq!(value("range"), 1.0 / 3.0);
    assert_eq!(value("range-own"), 2.0 / 3.0);
}

/// Events every second for `hours`; `amount` is multiplied by 2.5 from minute `shift_at`.
fn drifting_stream(
    e: &mut Engine,
    hours: i64,
    shift_at: Option<i64>,
) -> Vec<slaguard::output::BreachEvent> {
    let s = e.add_source();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let amount = LogNormal::new(50f64.ln(), 0.8).expect("distribution");
    let mut breaches = Vec::new();
    for i in 0..hours * 3600 {
        let t = T0 + i * 1000;
        let minute = i / 60;
        let factor = if shift_at.is_some_and(|m| minute >= m) {
            2.5
        } else {
            1.0
        };
        let country = ["DE", "US", "FR", "GB"][rng.random_range(0..4)];
        let line = format!(
            r#"{{"request_id":"r{i}","model_id":"m","timestamp":{t},"prediction":{{"value":1}},"features":{{"amount":{:.2},"country":"{country}"}}}}"#,
            amount.sample(&mut rng) * factor
        );
        e.handle_inference(s, &decode::inference(line.as_bytes()).expect("valid"))
            .expect("accepted");
        while let Some(o) = e.poll_output() {
            if let Output::Breach(b) = o {
                breaches.push(b);
            }
        }
    }
    breaches
}

fn reference_profile() -> String {
    // Built the way `slaguard profile` builds it, from an unshifted sample.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let amount = LogNormal::new(50f64.ln(), 0.8).expect("distribution");
    let events: Vec<_> = (0..20_000)
        .map(|i| {
            let country = ["DE", "US", "FR", "GB"][rng.random_range(0..4)];
            let line = format!(r#"{{"request_id":"p{i}","model_id":"m","timestamp":{T0},"prediction":{{"value":1}},"features":{{"amount":{:.2},"country":"{country}"}}}}"#, amount.sample(&mut rng));
            decode::inference(line.as_bytes()).expect("valid")
        })
        .collect();
    serde_json::to_string(&slaguard::profile::Profile::build(&events)).expect("json")
}

const DRIFT_OBJECTIVES: &str = r#"      - {name: amount-psi, metric: psi, feature: amount, op: "<=", target: 0.25, warn_at: 0.1, window: 30m, min_samples: 500}
      - {name: amount-ks, metric: ks, feature: amount, op: "<=", target: 0.2, window: 30m, min_samples: 500}
      - {name: country-js, metric: js_distance, feature: country, op: "<=", target: 0.1, window: 30m, min_samples: 500}
"#;

#[test]
fn a_shifted_feature_opens_a_drift_incident_at_the_expected_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = engine(dir.path(), &reference_profile(), DRIFT_OBJECTIVES);
    let breaches = drifting_stream(&mut e, 3, Some(90));
    let opened: Vec<_> = breaches
        .iter()
        .filter(|b| b.kind == slaguard::output::BreachKind::Opened)
        .collect();
    let psi = opened
        .iter()
        .find(|b| b.objective == "amount-psi")
        .expect("the PSI objective opened");
    let minute = (slaguard::time::parse_rfc3339(&psi.event_time).expect("time") - T0) / 60_000;
    // A 30-minute window: the warning level (0.1) is crossed within a few minutes of the shift.
    assert!(
        (91..=100).contains(&minute),
        "amount-psi opened at minute {minute}"
    );
    assert!(
        opened.iter().any(|b| b.objective == "amount-ks"),
        "KS sees the shift too"
    );
    assert!(
        !opened.iter().any(|b| b.objective == "country-js"),
        "the unshifted feature never drifts: {opened:?}"
    );
    assert!(
        !breaches
            .iter()
            .any(|b| b.objective == "amount-psi" && minute < 90),
        "nothing before the shift"
    );
}

#[test]
fn an_unshifted_stream_never_drifts_over_hours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut e = engine(dir.path(), &reference_profile(), DRIFT_OBJECTIVES);
    let breaches = drifting_stream(&mut e, 4, None);
    assert!(breaches.is_empty(), "{breaches:?}");
}

#[test]
fn slaguard_profile_builds_a_valid_decile_profile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = slaguard::scenario::ScenarioSpec {
        duration_ms: 60 * 60_000,
        rate: 5.0,
        ..slaguard::scenario::ScenarioSpec::default()
    };
    slaguard::scenario::write_dir(&spec, dir.path()).expect("scenario");
    let out = dir.path().join("built.json");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args([
            "profile",
            "--inferences",
            dir.path().join("inferences.jsonl").to_str().expect("utf-8"),
            "--model",
            "fraud",
        ])
        .args(["--out", out.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let p = slaguard::profile::Profile::load(&out).expect("loads");
    assert!(p.problems().is_empty(), "{:?}", p.problems());
    let slaguard::profile::FeatureProfile::Numeric {
        edges,
        proportions,
        min,
        max,
    } = &p.features["amount"]
    else {
        panic!("amount is numeric");
    };
    assert_eq!(edges.len(), 9, "ten decile bins");
    assert!(
        proportions.iter().all(|x| (x - 0.1).abs() < 0.01),
        "{proportions:?}"
    );
    assert!(min.is_some_and(|m| m > 0.0) && max.is_some_and(|m| m > edges[8]));
    let slaguard::profile::FeatureProfile::Categorical { proportions } = &p.features["country"]
    else {
        panic!("country is categorical");
    };
    assert_eq!(
        proportions.keys().map(String::as_str).collect::<Vec<_>>(),
        ["DE", "FR", "GB", "US"]
    );
    assert!(p.score.is_some());
    // Several models in one file need --model.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args([
            "profile",
            "--inferences",
            dir.path().join("inferences.jsonl").to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("choose one with --model"));
}

#[test]
fn score_drift_against_the_profiled_score() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("ref.json"),
        r#"{"features": {}, "score": {"type": "numeric", "edges": [0.25, 0.5, 0.75], "proportions": [0.25, 0.25, 0.25, 0.25]}}"#,
    )
    .expect("profile");
    let yaml = r#"
sla_version: "score-1"
defaults: {evaluate_every: 1m, allowed_lateness: 0s}
models:
  - model_id: m
    task: binary_classification
    reference: {file: ref.json}
    objectives:
      - {name: score-psi, metric: psi, feature: score, op: "<=", target: 0.2, window: 1m}
"#;
    let mut e = Engine::new(Arc::new(
        config::parse(yaml, "t.yaml", Some(dir.path())).unwrap_or_else(|e| panic!("{e}")),
    ));
    let s = e.add_source();
    // 40 scores: 20 in the first bin, 10 in the second, 10 in the third, none in the last.
    let scores: Vec<f64> = (0..40)
        .map(|i| {
            if i < 20 {
                0.1
            } else if i < 30 {
                0.3
            } else {
                0.6
            }
        })
        .collect();
    for (i, score) in scores.iter().enumerate() {
        let line = format!(
            r#"{{"request_id":"r{i}","model_id":"m","timestamp":{},"prediction":{{"score":{score}}}}}"#,
            T0 + i as i64 * 1000
        );
        e.handle_inference(s, &decode::inference(line.as_bytes()).expect("valid"))
            .expect("accepted");
    }
    let tick = format!(
        r#"{{"request_id":"tick","model_id":"m","timestamp":{},"prediction":{{"score":0.9}}}}"#,
        T0 + 61_000
    );
    e.handle_inference(s, &decode::inference(tick.as_bytes()).expect("valid"))
        .expect("accepted");
    let snap = common::metric_snapshots(&mut e)
        .into_iter()
        .find(|m| m.objective == "score-psi")
        .expect("snapshot");
    let want = slaguard::drift::psi(&[0.25, 0.25, 0.25, 0.25], &[0.5, 0.25, 0.25, 0.0]);
    assert_eq!(snap.value, Some(want));
    assert_eq!(snap.samples, 40);
    assert_eq!(snap.feature.as_deref(), Some("score"));
}
