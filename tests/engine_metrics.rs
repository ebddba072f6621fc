//! Metric families through the whole engine (join, windows, evaluation) on small crafted
//! streams whose values can be worked out by hand.

mod common;

use std::sync::Arc;

use slaguard::config;
use slaguard::decode;
use slaguard::engine::Engine;
use slaguard::output::{MetricSnapshot, Output, State};

const SLA: &str = r#"
sla_version: "t"
defaults: {evaluate_every: 1m, allowed_lateness: 0s}
models:
  - model_id: intent
    task: multiclass_classification
    objectives:
      - {name: acc, metric: accuracy, op: ">=", target: 0.5, window: 5m}
      - {name: f1, metric: macro_f1, op: ">=", target: 0.5, window: 5m}
      - {name: fast, metric: latency_under, threshold_ms: 100, op: ">=", target: 0.9, window: 5m}
      - {name: avail, metric: availability, op: ">=", target: 0.9, window: 5m}
      - {name: delay, metric: label_delay_p50, op: "<=", target: 60000, window: 5m}
"#;

const T0: i64 = 1_793_534_400_000;

fn feed(lines: &[(bool, String)]) -> Vec<MetricSnapshot> {
    let cfg = Arc::new(config::parse(SLA, "t.yaml", None).expect("valid"));
    let mut e = Engine::new(cfg);
    let (inf, lab) = (e.add_source(), e.add_source());
    for (is_label, l) in lines {
        if *is_label {
            e.handle_label(lab, &decode::label(l.as_bytes()).expect("label"))
                .expect("accepted");
        } else {
            e.handle_inference(inf, &decode::inference(l.as_bytes()).expect("inference"))
                .expect("accepted");
        }
    }
    e.end_source(inf);
    e.end_source(lab);
    e.finish();
    common::metric_snapshots(&mut e)
}

fn inf(id: usize, t: i64, predicted: &str, latency: f64, status: &str) -> (bool, String) {
    (
        false,
        format!(
            r#"{{"request_id":"{id}","model_id":"intent","timestamp":{t},"latency_ms":{latency},"status":"{status}","prediction":{{"label":"{predicted}"}}}}"#
        ),
    )
}

fn lab(id: usize, t: i64, truth: &str) -> (bool, String) {
    (
        true,
        format!(r#"{{"request_id":"{id}","model_id":"intent","timestamp":{t},"label":"{truth}"}}"#),
    )
}

#[test]
fn multiclass_latency_under_availability_and_label_delay() {
    // truth/pred: (a,a) (b,b) (c,a) (a,a): accuracy 3/4; per class: a P=2/3 R=1 F1=0.8,
    // b P=1 R=1 F1=1, c P=0 R=0 F1=0 → macro F1 = 0.6.
    let pairs = [("a", "a"), ("b", "b"), ("c", "a"), ("a", "a")];
    let mut lines = Vec::new();
    for (i, (_, pred)) in pairs.iter().enumerate() {
        let t = T0 + i as i64 * 1000;
        lines.push(inf(i, t, pred, if i == 0 { 250.0 } else { 40.0 }, "ok"));
    }
    lines.push(inf(9, T0 + 5000, "a", 10.0, "timeout"));
    for (i, (truth, _)) in pairs.iter().enumerate() {
        // label delays 10 s, 20 s, 30 s, 40 s
        lines.push(lab(
            i,
            T0 + i as i64 * 1000 + (i as i64 + 1) * 10_000,
            truth,
        ));
    }
    lines.push(inf(10, T0 + 4 * 60_000, "b", 40.0, "ok"));
    let snaps = feed(&lines);
    let at = |name: &str, minute: i64| -> &MetricSnapshot {
        let t = slaguard::time::format_rfc3339(T0 + minute * 60_000);
        snaps
            .iter()
            .find(|m| m.objective == name && m.event_time == t)
            .unwrap_or_else(|| panic!("{name} at {t}"))
    };
    assert_eq!(at("acc", 1).value, Some(0.75));
    assert!((at("f1", 1).value.expect("f1") - 0.6).abs() < 1e-12);
    // 4 of the first minute's 5 requests are at or under 100 ms: the timeout (10 ms)
    // counts, the 250 ms one does not.
    assert_eq!(at("fast", 1).value, Some(4.0 / 5.0));
    assert_eq!(at("fast", 1).state, State::Critical);
    assert_eq!(at("avail", 1).value, Some(4.0 / 5.0));
    assert_eq!(at("avail", 4).value, Some(4.0 / 5.0));
    // nearest-rank median of 10, 20, 30, 40 s is 20 s
    let d = at("delay", 1).value.expect("delay");
    assert!(
        (20_000.0..=20_000.0 * (1.0 + 1.0 / 1024.0)).contains(&d),
        "{d}"
    );
    assert_eq!(at("delay", 1).samples, 4);
}

#[test]
fn an_open_inhibitor_marks_incidents_inhibited_and_silences_them() {
    let yaml = r#"
sla_version: "inhibit-1"
defaults: {evaluate_every: 1m, allowed_lateness: 0s}
models:
  - model_id: m
    task: regression
    escalation: page
    objectives:
      - {name: availability, metric: availability, op: ">=", target: 0.9, window: 1m, inhibits: [latency]}
      - {name: latency, metric: latency_p99, op: "<=", target: 100, window: 1m}
escalation_policies:
  page:
    levels:
      - {after: 0m, notify: ["team:oncall"]}
      - {after: 2m, notify: ["team:lead"]}
"#;
    let cfg = Arc::new(config::parse(yaml, "t.yaml", None).expect("valid"));
    let mut e = Engine::new(cfg);
    let s = e.add_source();
    // Minutes 0–4: every request fails slowly (an outage); minute 5 on: healthy.
    for i in 0..480 {
        let t = T0 + i * 1000;
        let (status, latency) = if i < 300 {
            ("error", 900.0)
        } else {
            ("ok", 20.0)
        };
        let line = format!(
            r#"{{"request_id":"r{i}","model_id":"m","timestamp":{t},"latency_ms":{latency},"status":"{status}","prediction":{{"value":1}}}}"#
        );
        e.handle_inference(s, &decode::inference(line.as_bytes()).expect("valid"))
            .expect("accepted");
    }
    let outputs: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    let breaches: Vec<&slaguard::output::BreachEvent> = outputs
        .iter()
        .filter_map(|o| {
            if let Output::Breach(b) = o {
                Some(b)
            } else {
                None
            }
        })
        .collect();
    let escalations: Vec<&slaguard::output::EscalationEvent> = outputs
        .iter()
        .filter_map(|o| {
            if let Output::Escalation(x) = o {
                Some(x)
            } else {
                None
            }
        })
        .collect();
    let latency_opened = breaches
        .iter()
        .find(|b| b.objective == "latency" && b.kind == slaguard::output::BreachKind::Opened)
        .expect("latency opened");
    assert!(
        latency_opened.inhibited,
        "opened while availability was open"
    );
    let availability_opened = breaches
        .iter()
        .find(|b| b.objective == "availability")
        .expect("availability opened");
    assert!(!availability_opened.inhibited);
    // The outage pages (level 0 at once, level 1 two minutes later); the latency incident
    // never does.
    assert!(
        escalations.iter().all(|x| x.objective == "availability"),
        "{escalations:?}"
    );
    let levels: Vec<usize> = escalations
        .iter()
        .filter(|x| x.pagerduty.event_action == "trigger")
        .map(|x| x.level)
        .collect();
    assert_eq!(levels, vec![0, 1]);
    // Both resolve once requests are healthy again.
    assert!(breaches
        .iter()
        .any(|b| b.objective == "latency" && b.kind == slaguard::output::BreachKind::Resolved));
}
