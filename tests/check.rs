//! `slaguard check`: every problem of a broken SLA file is listed with its YAML path in one
//! run; a valid file is summarised.

use std::process::Command;

use slaguard::config::{self, ConfigError};

const BROKEN: &str = r#"
sla_version: "2026-11-01.1"
defaults: {evaluate_every: 1m, labell_ttl: 7d}
models:
  - model_id: fraud
    task: binary_classification
    escalation: nightly
    segment_by: [region, region]
    objectives:
      - {name: auc, metric: roc_auk, op: ">=", target: 0.85, window: 1h}
      - {name: p99, metric: latency_p99, target: 250, window: 90s}
      - {name: acc, metric: accuracy, op: ">=", target: 0.9, warn_at: 0.85, window: 1h}
      - {name: acc2, metric: accuracy, op: ">=", target: 0.9, window: 1h, colour: red}
      - {name: mae, metric: mae, op: "<=", target: 3, window: 1h}
      - {name: fast, metric: latency_under, op: ">=", target: 0.99, window: 1h}
      - {name: p50, metric: latency_p50, op: "=<", target: 100, window: 5m}
      - {name: auc, metric: roc_auc, op: ">=", target: 0.8, window: 1h}
      - {name: drift, metric: psi, feature: amount, op: "<=", target: 0.25, window: 1h}
      - {name: slow, metric: latency_p99, op: "<=", target: 250, warn_at: 200, window: 30d, alerting: burn_rate}
      - {name: p90, metric: latency_p90, op: "<=", target: 100, window: 5m, resolve_at: 120}
      - {name: errors, metric: error_rate, op: ">=", target: 0.01, window: 30d, alerting: burn_rate}
      - {name: avail, metric: availability, op: ">=", target: 1, window: 30d, alerting: pager}
  - model_id: eta
    task: forecasting
    objectives: []
  - model_id: fraud
    task: regression
    objectives:
      - {name: mae, metric: mae, op: "<=", target: 3, window: 1h, for: 0}
escalation_policies:
  default: {levels: []}
  paging:
    levels:
      - {after: 15m, notify: [team:a]}
      - {after: 5m, notify: []}
service_credits:
  uptime: [{below: 1.5, credit: 10}]
extra: true
"#;

#[test]
fn every_problem_is_listed_with_its_path() {
    let Err(ConfigError::Invalid { problems, .. }) = config::parse(BROKEN, "broken.yaml", None)
    else {
        panic!("the broken file must be rejected");
    };
    let expect = [
        ("defaults.labell_ttl", "unknown field"),
        (
            "models[0].escalation",
            "unknown escalation policy `nightly`",
        ),
        ("models[0].segment_by[1]", "listed twice"),
        ("models[0].objectives[0].metric", "unknown metric `roc_auk`"),
        ("models[0].objectives[1].op", "missing"),
        (
            "models[0].objectives[1].window",
            "not a multiple of evaluate_every",
        ),
        (
            "models[0].objectives[2].warn_at",
            "must be above the target",
        ),
        ("models[0].objectives[3].colour", "unknown field"),
        (
            "models[0].objectives[4].metric",
            "does not apply to a binary_classification model",
        ),
        ("models[0].objectives[5].threshold_ms", "missing"),
        ("models[0].objectives[6].op", "unknown op `=<`"),
        (
            "models[0].objectives[10].resolve_at",
            "at or below the target",
        ),
        (
            "models[0].objectives[7].name",
            "already defined at models[0].objectives[0]",
        ),
        (
            "models[0].objectives[8].metric",
            "set `reference: {file: …}` on the model",
        ),
        (
            "models[0].objectives[9].alerting",
            "burn_rate needs a ratio metric",
        ),
        ("models[0].objectives[9].target", "strictly between 0 and 1"),
        (
            "models[0].objectives[9].warn_at",
            "does not apply with burn_rate",
        ),
        (
            "models[0].objectives[11].op",
            "error_rate with burn_rate takes op <=",
        ),
        (
            "models[0].objectives[12].alerting",
            "unknown alerting `pager`",
        ),
        ("models[1].task", "unknown task `forecasting`"),
        ("models[1].objectives", "at least one objective"),
        ("models[2].model_id", "defined twice"),
        ("models[2].objectives[0].for", "at least 1"),
        ("escalation_policies.default.levels", "at least one level"),
        ("escalation_policies.paging.levels[1].after", "in order"),
        ("escalation_policies.paging.levels[1].notify", "empty"),
        ("service_credits.uptime", "no model defines"),
        ("service_credits.uptime[0].below", "(0, 1]"),
        ("extra", "unknown field"),
    ];
    assert_exactly(&problems, &expect);
}

/// Every expected (path, text) is a problem, and there is no other.
fn assert_exactly(problems: &[config::Problem], expect: &[(&str, &str)]) {
    let rendered: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    for (path, text) in expect {
        assert!(
            problems
                .iter()
                .any(|p| p.path == *path && p.message.contains(text)),
            "no problem at {path} mentioning {text:?}; got:\n{}",
            rendered.join("\n")
        );
    }
    assert_eq!(
        problems.len(),
        expect.len(),
        "unexpected extra problems:\n{}",
        rendered.join("\n")
    );
}

#[test]
fn yaml_syntax_errors_and_wrong_types_are_reported() {
    assert!(matches!(
        config::parse("models: [", "x.yaml", None),
        Err(ConfigError::Yaml { .. })
    ));
    let Err(ConfigError::Invalid { problems, .. }) =
        config::parse("sla_version: 3\nmodels:\n  - {model_id: m, task: regression, objectives: [{name: a, metric: mae, op: '<=', target: high, window: 1h}]}\n", "x.yaml", None)
    else {
        panic!("must be rejected")
    };
    assert!(
        problems
            .iter()
            .any(|p| p.path == "sla_version" && p.message.contains("string")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.path == "models[0].objectives[0].target"),
        "{problems:?}"
    );
}

const VALID: &str = r#"
sla_version: "2026-11-01.1"
defaults: {evaluate_every: 1m, allowed_lateness: 30s, label_ttl: 7d}
models:
  - model_id: fraud
    task: binary_classification
    owner: risk-ml
    runbook: https://runbooks.example/fraud
    decision_threshold: 0.5
    positive_label: "1"
    segment_by: [region]
    escalation: default
    objectives:
      - {name: auc, metric: roc_auc, op: ">=", target: 0.85, warn_at: 0.88, window: 1h, min_samples: 200}
      - {name: p99, metric: latency_p99, op: "<=", target: 250, window: 5m, for: 2, clear_for: 3}
      - {name: availability, metric: availability, op: ">=", target: 0.999, window: 30d, alerting: burn_rate}
escalation_policies:
  default:
    repeat: 1
    levels:
      - {after: 0m,  notify: ["team:risk-ml-oncall"]}
      - {after: 15m, notify: ["team:ml-platform"]}
      - {after: 45m, notify: ["role:head-of-ml"]}
service_credits:
  availability: [{below: 0.999, credit: 10}, {below: 0.99, credit: 25}, {below: 0.95, credit: 100}]
"#;

fn slaguard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args(args)
        .output()
        .expect("run slaguard")
}

#[test]
fn the_cli_exits_non_zero_on_problems_and_summarises_a_valid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, BROKEN).expect("write");
    let out = slaguard(&["check", "--config", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("29 problem(s)"), "{err}");
    assert!(
        err.contains(
            "models[0].objectives[1].window: window 90s is not a multiple of evaluate_every (1m)"
        ),
        "{err}"
    );

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, VALID).expect("write");
    let out = slaguard(&["check", "--config", good.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("SLA 2026-11-01.1: 1 model(s), 3 objective(s)"),
        "{text}"
    );
    assert!(
        text.contains("auc") && text.contains("roc_auc >= 0.85 (warn at 0.88) over 1h, per region"),
        "{text}"
    );
    assert!(
        text.contains("escalation default: 0s → team:risk-ml-oncall"),
        "{text}"
    );
    assert!(
        text.contains("burn rate: critical 1h/5m > 14.4; critical 6h/30m > 6; warning 1d/2h > 3; warning 3d/6h > 1"),
        "{text}"
    );
    assert!(text.lines().count() <= 24, "fits one screen:\n{text}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sla.yaml");
    let out = slaguard(&["check", "--config", example]);
    assert!(
        out.status.success(),
        "the example SLA is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = slaguard(&[
        "check",
        "--config",
        dir.path().join("missing.yaml").to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read SLA file"));
}

#[test]
fn broken_profiles_and_drift_objectives_are_all_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("broken.json"),
        r#"{"features": {"amount": {"type": "numeric", "edges": [10, 5], "proportions": [0.2, 0.3, 0.4]},
                        "country": {"type": "categorical", "proportions": {"DE": 0.7, "US": 0.2}}}}"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("good.json"),
        r#"{"features": {"amount": {"type": "numeric", "edges": [5, 10, 20], "proportions": [0.1, 0.4, 0.3, 0.2]},
                        "country": {"type": "categorical", "proportions": {"DE": 0.6, "US": 0.3, "__other__": 0.1}}}}"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("garbage.json"),
        "{\"features\": {\"a\": {\"type\": \"histogram\"}}}",
    )
    .expect("write");
    let yaml = r#"
sla_version: "drift-1"
models:
  - model_id: a
    task: regression
    reference: {file: broken.json}
    objectives:
      - {name: d, metric: psi, feature: amount, op: "<=", target: 0.25, window: 1h}
  - model_id: b
    task: regression
    reference: {file: good.json}
    objectives:
      - {name: d1, metric: psi, feature: weight, op: "<=", target: 0.25, window: 1h}
      - {name: d2, metric: ks, feature: country, op: "<=", target: 0.2, window: 1h}
      - {name: d3, metric: js_distance, op: "<=", target: 0.2, window: 1h}
      - {name: d4, metric: psi, feature: score, op: "<=", target: 0.2, window: 1h}
      - {name: q1, metric: out_of_range_rate, feature: amount, op: "<=", target: 0.01, window: 1h, range: [10, 5]}
      - {name: q2, metric: missing_rate, feature: height, op: "<=", target: 0.01, window: 1h}
      - {name: q3, metric: mae, feature: amount, op: "<=", target: 1, window: 1h}
  - model_id: c
    task: regression
    reference: {file: garbage.json}
    objectives:
      - {name: m, metric: mae, op: "<=", target: 1, window: 1h}
  - model_id: d
    task: regression
    reference: {file: missing.json}
    objectives:
      - {name: m, metric: mae, op: "<=", target: 1, window: 1h}
"#;
    let Err(ConfigError::Invalid { problems, .. }) =
        config::parse(yaml, "drift.yaml", Some(dir.path()))
    else {
        panic!("must be rejected");
    };
    let expect = [
        (
            "models[0].reference.file",
            "features.amount.edges: must be finite and strictly increasing",
        ),
        (
            "models[0].reference.file",
            "features.amount.proportions: sum to 0.9",
        ),
        (
            "models[0].reference.file",
            "features.country.proportions: sum to 0.8999",
        ),
        (
            "models[1].objectives[0].feature",
            "feature `weight` is not in the reference profile",
        ),
        (
            "models[1].objectives[1].metric",
            "ks needs a numeric feature",
        ),
        ("models[1].objectives[2].feature", "missing"),
        ("models[1].objectives[3].feature", "no score distribution"),
        ("models[1].objectives[4].range", "low < high"),
        (
            "models[1].objectives[5].feature",
            "feature `height` is not in the reference profile",
        ),
        (
            "models[1].objectives[6].feature",
            "applies only to drift and data-quality metrics",
        ),
        ("models[2].reference.file", "not a valid profile"),
        ("models[3].reference.file", "not found"),
    ];
    assert_exactly(&problems, &expect);
}

#[test]
fn inhibits_names_objectives_of_the_same_model() {
    let yaml = r#"
sla_version: "i-1"
models:
  - model_id: m
    task: regression
    objectives:
      - {name: a, metric: availability, op: ">=", target: 0.9, window: 1h, inhibits: [b, ghost, a]}
      - {name: b, metric: mae, op: "<=", target: 1, window: 1h}
"#;
    let Err(ConfigError::Invalid { problems, .. }) = config::parse(yaml, "i.yaml", None) else {
        panic!("must be rejected");
    };
    let rendered: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        rendered,
        vec![
            "models[0].objectives[0].inhibits[1]: names objective `ghost`, which model `m` does not define".to_string(),
            "models[0].objectives[0].inhibits[2]: an objective cannot inhibit itself".to_string(),
        ]
    );
}
