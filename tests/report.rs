//! The SLA report: error budget, attainment, credits, incidents and their timelines,
//! checked against figures worked out by hand on a crafted stream, and `slaguard report`
//! on the golden scenario checked against its own replay outputs.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::stream::{requests, run_config, Input, Outputs, MINUTE, T0};
use serde_json::Value;
use slaguard::report::{
    ledger_config, BreachLine, EscalationLine, Period, ReplayOutputs, Report, SnapshotLine,
};

const DAY: i64 = 1440 * MINUTE;

const SLA: &str = r#"
sla_version: "report-1"
defaults: {evaluate_every: 5m, allowed_lateness: 0s}
models:
  - model_id: m
    task: regression
    owner: api-team
    escalation: page
    objectives:
      - {name: availability, metric: availability, op: ">=", target: 0.999, window: 30d, alerting: burn_rate, min_samples: 50}
      - {name: errors, metric: error_rate, op: "<=", target: 0.05, window: 5m}
escalation_policies:
  page:
    levels:
      - {after: 0m, notify: ["team:oncall"]}
      - {after: 15m, notify: ["team:lead"]}
service_credits:
  availability: [{below: 0.999, credit: 10}, {below: 0.99, credit: 25}]
"#;

/// A request every 5 s for a day and 8 hours; every request fails for 10 minutes after
/// the first day; the on-call engineer acknowledges the availability incident 7 minutes
/// into the outage.
fn stream() -> Vec<Input> {
    let outage = T0 + DAY;
    let mut inputs = requests(T0, outage + 8 * 60 * MINUTE, 5_000, |_, t| {
        (outage..outage + 10 * MINUTE).contains(&t)
    });
    let ack_at = outage + 7 * MINUTE;
    let pos = inputs
        .iter()
        .position(|i| matches!(i, Input::Request { time, .. } if *time > ack_at))
        .expect("requests after the ack");
    inputs.insert(
        pos,
        Input::Ack(format!(
            r#"{{"model_id":"m","objective":"availability","action":"acknowledge","by":"oncall","timestamp":{ack_at}}}"#
        )),
    );
    inputs
}

/// Outputs as they read back from the replay files.
fn lines<T: serde::Serialize, U: serde::de::DeserializeOwned>(items: &[T]) -> Vec<U> {
    items
        .iter()
        .map(|o| {
            serde_json::from_str(&serde_json::to_string(o).expect("json")).expect("output line")
        })
        .collect()
}

fn build(period: Period) -> Report {
    let cfg = Arc::new(slaguard::config::parse(SLA, "t.yaml", None).expect("valid"));
    let main: Outputs = run_config(Arc::clone(&cfg), stream());
    let ledger: Outputs = run_config(Arc::new(ledger_config(&cfg)), stream());
    let snapshots: Vec<SnapshotLine> = lines(&main.metrics);
    let ledger: Vec<SnapshotLine> = lines(&ledger.metrics);
    let breaches: Vec<BreachLine> = lines(&main.breaches);
    let escalations: Vec<EscalationLine> = lines(&main.escalations);
    Report::build(
        &cfg,
        period,
        &ReplayOutputs {
            snapshots: &snapshots,
            ledger: &ledger,
            breaches: &breaches,
            escalations: &escalations,
        },
    )
    .expect("report")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn budget_attainment_and_credits_match_hand_counts() {
    let r = build(Period::default());
    // The last instant evaluated closes the interval 5 minutes before the stream ends, so
    // the period holds 23,040 − 60 = 22,980 requests, 120 of them failed.
    let a = &r.objectives[0];
    assert_eq!(a.objective, "availability");
    let ratio = a.ratio.as_ref().expect("a ratio objective");
    assert_eq!((ratio.events, ratio.bad_events), (22_980, 120));
    assert!(close(ratio.value.expect("value"), 1.0 - 120.0 / 22_980.0));
    // 99.9% allows 22.98 failures; 120 spent 522% of the budget.
    assert!(close(ratio.budget_events, 22.98));
    assert!(close(
        ratio.budget_consumed.expect("consumed"),
        120.0 / 22.98
    ));
    assert!(ratio.budget_remaining.expect("remaining") < 0.0);
    assert_eq!(a.met, Some(false));
    // Attained 99.48%: below 99.9% (10%) but not below 99% (25%).
    assert_eq!(a.attainment_basis, "events");
    assert!(close(
        a.attainment.expect("attainment"),
        1.0 - 120.0 / 22_980.0
    ));
    assert_eq!(a.credit_percent, Some(10.0));
    assert_eq!(r.credits.len(), 1);
    assert_eq!(r.credits[0].objective, "availability");

    // The 5-minute error rate: 383 checks, the two covering the outage missed 5%; over the
    // period 0.52% of requests failed, a tenth of the 5% budget.
    let e = &r.objectives[1];
    assert_eq!((e.instants, e.instants_compliant), (383, 381));
    assert!(close(e.compliance.expect("compliance"), 381.0 / 383.0));
    let ratio = e.ratio.as_ref().expect("a ratio objective");
    assert!(close(
        ratio.budget_consumed.expect("consumed"),
        120.0 / (0.05 * 22_980.0)
    ));
    assert_eq!(e.met, Some(true));
    assert_eq!(e.credit_percent, None, "no tiers for this objective");
}

#[test]
fn incidents_carry_their_timelines_mtta_and_mttr() {
    let r = build(Period::default());
    let o = (DAY / MINUTE) as usize;
    let minute = |t: &str| common::stream::minute(t) as usize;
    assert_eq!(r.incidents.len(), 2);
    // Both open at the first check after the outage began; the error-rate incident closes
    // at the first clean 5 minutes (10 minutes later), the burn-rate one 6 hours after the
    // outage (see tests/incidents.rs) — 365 minutes after it opened.
    let availability = r
        .incidents
        .iter()
        .find(|i| i.objective == "availability")
        .expect("availability incident");
    let steps: Vec<(usize, &str)> = availability
        .timeline
        .iter()
        .map(|e| (minute(&e.at), e.what))
        .collect();
    assert_eq!(
        steps,
        vec![
            (o + 5, "opened"),
            (o + 5, "notified"),
            (o + 7, "acknowledged"),
            (o + 40, "severity_changed"),
            (o + 370, "resolved"),
        ]
    );
    assert_eq!(availability.severity, "critical", "the worst it reached");
    assert_eq!(availability.seconds_to_acknowledge, Some(120.0));
    assert_eq!(availability.seconds_to_resolve, Some(365.0 * 60.0));
    assert_eq!(availability.acknowledged_by.as_deref(), Some("oncall"));
    assert_eq!(availability.resolved_by, None, "resolved by itself");
    let errors = r
        .incidents
        .iter()
        .find(|i| i.objective == "errors")
        .expect("errors incident");
    assert_eq!(errors.seconds_to_resolve, Some(600.0));
    assert_eq!(errors.seconds_to_acknowledge, None);
    // MTTA over the one acknowledged incident; MTTR over both.
    assert_eq!(r.mtta_seconds, Some(120.0));
    assert_eq!(r.mttr_seconds, Some((365.0 * 60.0 + 600.0) / 2.0));
    assert_eq!(r.objectives[0].mttr_seconds, Some(365.0 * 60.0));
}

#[test]
fn a_period_counts_only_its_own_checks_and_events() {
    // The hour from the outage on: 720 requests, 120 failed.
    let from = T0 + DAY;
    let r = build(Period {
        from: Some(from),
        to: Some(from + 60 * MINUTE),
    });
    let ratio = r.objectives[0].ratio.as_ref().expect("ratio");
    assert_eq!((ratio.events, ratio.bad_events), (720, 120));
    assert_eq!(r.objectives[1].instants, 12);
    assert_eq!(r.incidents.len(), 2, "both opened in the hour");
    // The day before: no failure, no incident, budget untouched.
    let r = build(Period {
        from: Some(T0),
        to: Some(from),
    });
    let ratio = r.objectives[0].ratio.as_ref().expect("ratio");
    assert_eq!(ratio.bad_events, 0);
    assert_eq!(ratio.budget_consumed, Some(0.0));
    assert!(r.incidents.is_empty());
    assert!(r.credits.is_empty());
}

/// `slaguard report` on the golden scenario, up to 02:55 so that the 5-minute `errors`
/// windows tile the period exactly.
#[test]
fn the_golden_report_adds_up_and_reads_without_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = common::write_scenario(dir.path(), &common::golden_spec());
    let out = dir.path().join("report");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
    let status = Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args(["report", "--config", &path(&dir.path().join("sla.yaml"))])
        .args(["--inferences", &path(&inputs.inferences)])
        .args(["--labels", &path(&inputs.labels)])
        .args(["--acks", &path(inputs.acks.as_deref().expect("acks"))])
        .args(["--to", "2026-11-01T02:55:00Z", "--out", &path(&out)])
        .output()
        .expect("run report");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("json"))
            .expect("report.json");
    let snapshots = common::read_jsonl(&out.join("replay/metrics.jsonl"));
    assert!(
        !out.join(".ledger").exists(),
        "the ledger replay is cleaned up"
    );
    let objective = |name: &str| -> &Value {
        report["objectives"]
            .as_array()
            .expect("objectives")
            .iter()
            .find(|o| o["objective"] == name)
            .expect("objective")
    };
    let whole = |name: &'static str| {
        snapshots.iter().filter(move |s| {
            s["objective"] == name
                && s["segment"].as_object().is_some_and(|m| m.is_empty())
                && s["event_time"]
                    .as_str()
                    .is_some_and(|t| t <= "2026-11-01T02:55:00.000Z")
        })
    };
    // The 5-minute error-rate windows at every fifth minute tile the period: their counts
    // add up to the ledger's.
    let tiles: Vec<&Value> = whole("errors")
        .filter(|s| common::millis(&s["event_time"]) % (5 * MINUTE) == 0)
        .collect();
    let events: u64 = tiles
        .iter()
        .map(|s| s["samples"].as_u64().expect("n"))
        .sum();
    let bad: u64 = tiles
        .iter()
        .map(|s| {
            (s["value"].as_f64().unwrap_or(0.0) * s["samples"].as_f64().expect("n")).round() as u64
        })
        .sum();
    let ratio = &objective("errors")["ratio"];
    assert_eq!(ratio["events"].as_u64(), Some(events));
    assert_eq!(ratio["bad_events"].as_u64(), Some(bad));
    assert!(bad > 0 && events > 10_000);
    // AUC compliance from the snapshots themselves: checks with enough samples (200) that
    // met 0.85. Below 90% of checks: the 10% tier applies.
    let judged: Vec<f64> = whole("auc")
        .filter(|s| s["samples"].as_u64().is_some_and(|n| n >= 200))
        .filter_map(|s| s["value"].as_f64())
        .collect();
    let met = judged.iter().filter(|v| **v >= 0.85).count();
    let auc = objective("auc");
    assert_eq!(auc["instants_compliant"].as_u64(), Some(met as u64));
    let compliance = met as f64 / judged.len() as f64;
    assert!(compliance < 0.9, "{compliance}");
    assert_eq!(auc["credit_percent"].as_f64(), Some(10.0));
    // Every incident of the replay is in the report, each opened once.
    let breaches = common::read_jsonl(&out.join("replay/breaches.jsonl"));
    let opened = breaches.iter().filter(|b| b["kind"] == "opened").count();
    assert_eq!(report["incidents"].as_array().map(Vec::len), Some(opened));

    // The Markdown speaks plainly: every objective is there, with its promise in words,
    // and none of the configuration's vocabulary.
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    for o in report["objectives"].as_array().expect("objectives") {
        let line = format!(
            "**{}**: {}",
            o["objective"].as_str().expect("name"),
            o["promise"].as_str().expect("promise")
        );
        assert!(md.contains(&line), "missing {line}");
    }
    assert!(md.contains("Share of predictions that were right at least 75%, over any 10 min"));
    assert!(md.contains("**10%** for fraud auc"));
    assert!(md.contains("acknowledged 14 min later by oncall-risk"));
    for jargon in [
        ">=",
        "<=",
        "roc_auc",
        "error_rate",
        "latency_p99",
        "min_samples",
        "warn_at",
    ] {
        assert!(!md.contains(jargon), "the report says {jargon:?}");
    }
}
