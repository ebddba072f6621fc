//! What a configuration reload may change while slaguard runs, and what it changed.
//!
//! The join, the summaries and the windows are built from the structure of the SLA: the
//! models and their objectives (in order), each objective's metric, window, segments,
//! feature, threshold and burn-rate spans, each model's task, decision threshold,
//! positive label, label TTLs and reference profile, and the defaults that time
//! evaluation. Changing any of these needs a restart (the state would not fit them).
//! Everything that is judged against that state may change live: the SLA version,
//! targets, `op`, `warn_at`, `resolve_at`, `min_samples`, `for`, `clear_for`, `inhibits`,
//! descriptions, owners, runbooks, escalation policies and which one a model uses, and
//! service credits.

use std::fmt::Debug;

use super::{ModelSla, Objective, SlaConfig};

/// The differences between a running SLA and a reloaded one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reload {
    /// What changed that may change live, one line each: `path: old -> new`.
    pub changes: Vec<String>,
    /// What changed that needs a restart, one line each.
    pub needs_restart: Vec<String>,
}

impl Reload {
    /// Whether the new SLA can replace the old one in a running instance.
    pub fn applicable(&self) -> bool {
        self.needs_restart.is_empty()
    }
}

fn diff<T: PartialEq + Debug>(out: &mut Vec<String>, path: &str, old: &T, new: &T) {
    if old != new {
        out.push(format!("{path}: {old:?} -> {new:?}"));
    }
}

/// Compares the running SLA with a reloaded one.
pub fn compare(old: &SlaConfig, new: &SlaConfig) -> Reload {
    let mut r = Reload::default();
    let live = &mut r.changes;
    let restart = &mut r.needs_restart;
    diff(live, "sla_version", &old.sla_version, &new.sla_version);
    diff(restart, "defaults", &old.defaults, &new.defaults);
    diff(
        live,
        "escalation_policies",
        &old.escalation_policies,
        &new.escalation_policies,
    );
    diff(
        live,
        "service_credits",
        &old.service_credits,
        &new.service_credits,
    );
    let ids = |c: &SlaConfig| {
        c.models
            .iter()
            .map(|m| m.model_id.clone())
            .collect::<Vec<_>>()
    };
    if ids(old) != ids(new) {
        diff(restart, "models", &ids(old), &ids(new));
        return r;
    }
    for (a, b) in old.models.iter().zip(&new.models) {
        model(&mut r, a, b);
    }
    r
}

fn model(r: &mut Reload, a: &ModelSla, b: &ModelSla) {
    let at = |field: &str| format!("models[{}].{field}", a.model_id);
    let restart = &mut r.needs_restart;
    diff(restart, &at("task"), &a.task, &b.task);
    diff(
        restart,
        &at("decision_threshold"),
        &a.decision_threshold,
        &b.decision_threshold,
    );
    diff(
        restart,
        &at("positive_label"),
        &a.positive_label,
        &b.positive_label,
    );
    diff(restart, &at("segment_by"), &a.segment_by, &b.segment_by);
    diff(restart, &at("label_ttl"), &a.label_ttl, &b.label_ttl);
    diff(
        restart,
        &at("early_label_ttl"),
        &a.early_label_ttl,
        &b.early_label_ttl,
    );
    diff(restart, &at("reference"), &a.reference, &b.reference);
    if a.profile != b.profile {
        restart.push(format!(
            "{}: the reference profile's contents changed",
            at("reference")
        ));
    }
    let live = &mut r.changes;
    diff(live, &at("owner"), &a.owner, &b.owner);
    diff(live, &at("runbook"), &a.runbook, &b.runbook);
    diff(live, &at("escalation"), &a.escalation, &b.escalation);
    let names = |m: &ModelSla| {
        m.objectives
            .iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>()
    };
    if names(a) != names(b) {
        diff(
            &mut r.needs_restart,
            &at("objectives"),
            &names(a),
            &names(b),
        );
        return;
    }
    for (x, y) in a.objectives.iter().zip(&b.objectives) {
        objective(r, &at(&format!("objectives[{}]", x.name)), x, y);
    }
}

fn objective(r: &mut Reload, at: &str, a: &Objective, b: &Objective) {
    let path = |field: &str| format!("{at}.{field}");
    let restart = &mut r.needs_restart;
    diff(restart, &path("metric"), &a.metric, &b.metric);
    diff(restart, &path("window"), &a.window, &b.window);
    diff(restart, &path("segment_by"), &a.segment_by, &b.segment_by);
    diff(restart, &path("feature"), &a.feature, &b.feature);
    diff(
        restart,
        &path("threshold_ms"),
        &a.threshold_ms,
        &b.threshold_ms,
    );
    diff(restart, &path("range"), &a.range, &b.range);
    diff(restart, &path("alerting"), &a.burn_rate, &b.burn_rate);
    let live = &mut r.changes;
    diff(live, &path("op"), &a.op, &b.op);
    diff(live, &path("target"), &a.target, &b.target);
    diff(live, &path("warn_at"), &a.warn_at, &b.warn_at);
    diff(live, &path("resolve_at"), &a.resolve_at, &b.resolve_at);
    diff(live, &path("min_samples"), &a.min_samples, &b.min_samples);
    diff(live, &path("for"), &a.for_count, &b.for_count);
    diff(live, &path("clear_for"), &a.clear_for, &b.clear_for);
    diff(live, &path("inhibits"), &a.inhibits, &b.inhibits);
    diff(live, &path("description"), &a.description, &b.description);
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
sla_version: "v1"
defaults: {evaluate_every: 1m}
models:
  - model_id: m
    task: regression
    objectives:
      - {name: availability, metric: availability, op: ">=", target: 0.99, window: 5m}
      - {name: p99, metric: latency_p99, op: "<=", target: 250, window: 5m}
"#;

    fn cfg(yaml: &str) -> SlaConfig {
        crate::config::parse(yaml, "t.yaml", None).expect("valid")
    }

    #[test]
    fn targets_and_versions_change_live() {
        let new = YAML
            .replace("\"v1\"", "\"v2\"")
            .replace("target: 250", "target: 300, warn_at: 200");
        let r = compare(&cfg(YAML), &cfg(&new));
        assert!(r.applicable(), "{r:?}");
        assert_eq!(
            r.changes,
            [
                "sla_version: \"v1\" -> \"v2\"",
                "models[m].objectives[p99].target: 250.0 -> 300.0",
                "models[m].objectives[p99].warn_at: None -> Some(200.0)",
            ]
        );
        assert_eq!(compare(&cfg(YAML), &cfg(YAML)), Reload::default());
    }

    #[test]
    fn structure_needs_a_restart() {
        for (from, to, what) in [
            (
                "window: 5m}\n      - {name: p99",
                "window: 10m}\n      - {name: p99",
                "models[m].objectives[availability].window",
            ),
            ("evaluate_every: 1m", "evaluate_every: 5m", "defaults"),
            (
                "metric: latency_p99",
                "metric: latency_p95",
                "models[m].objectives[p99].metric",
            ),
            ("name: p99", "name: p95", "models[m].objectives"),
            ("model_id: m", "model_id: n", "models"),
        ] {
            let new = YAML.replace(from, to);
            assert_ne!(new, YAML, "{from}");
            let r = compare(&cfg(YAML), &cfg(&new));
            assert!(!r.applicable(), "{from} -> {to}");
            assert!(
                r.needs_restart.iter().any(|l| l.starts_with(what)),
                "{what} in {:?}",
                r.needs_restart
            );
        }
    }
}
