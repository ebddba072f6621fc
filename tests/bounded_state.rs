//! Abuse keeps memory within the configured bounds: a flood of labels with no predictions,
//! of predictions with no labels, and one hot model with an unbounded attribute each stay
//! within `max_pending` per input source and `max_segments` per objective, with every
//! eviction counted.

use std::sync::Arc;

use slaguard::config;
use slaguard::decode;
use slaguard::engine::Engine;

const SLA: &str = r#"
sla_version: "bounded-1"
defaults: {evaluate_every: 1m, allowed_lateness: 30s, max_pending: 100, max_segments: 10, early_label_ttl: 1h}
models:
  - model_id: hot
    task: binary_classification
    segment_by: [region]
    objectives:
      - {name: acc, metric: accuracy, op: ">=", target: 0.5, window: 10m}
      - {name: req, metric: request_count, op: ">=", target: 0, window: 10m}
"#;

const T0: i64 = 1_793_534_400_000;

fn engine() -> Engine {
    Engine::new(Arc::new(config::parse(SLA, "t.yaml", None).expect("valid")))
}

fn inference(i: usize, region: &str) -> slaguard::event::Inference {
    let t = T0 + i as i64 * 10;
    decode::inference(
        format!(r#"{{"request_id":"r{i}","model_id":"hot","timestamp":{t},"prediction":{{"score":0.9}},"attributes":{{"region":"{region}"}}}}"#)
            .as_bytes(),
    )
    .expect("valid")
}

fn label(i: usize) -> slaguard::event::Label {
    let t = T0 + i as i64 * 10;
    decode::label(
        format!(r#"{{"request_id":"x{i}","model_id":"hot","timestamp":{t},"label":"1"}}"#)
            .as_bytes(),
    )
    .expect("valid")
}

#[test]
fn a_label_flood_without_predictions_is_bounded() {
    let mut e = engine();
    let (inferences, labels) = (e.add_source(), e.add_source());
    for i in 0..20_000 {
        e.handle_label(labels, &label(i)).expect("accepted");
    }
    e.handle_inference(inferences, &inference(0, "eu"))
        .expect("accepted");
    // Two sources: 200 entries at most; everything beyond was evicted and counted.
    assert!(e.pending_entries() <= 200, "{}", e.pending_entries());
    let stats = e.join_stats();
    assert_eq!(
        stats.evicted_labels as usize + e.pending_entries(),
        20_000 + 1
    );
}

#[test]
fn a_prediction_flood_without_labels_is_bounded() {
    let mut e = engine();
    let (inferences, _labels) = (e.add_source(), e.add_source());
    for i in 0..20_000 {
        e.handle_inference(inferences, &inference(i, "eu"))
            .expect("accepted");
    }
    assert_eq!(e.pending_predictions(), 200);
    assert_eq!(e.join_stats().evicted_predictions, 20_000 - 200);
}

#[test]
fn a_hot_model_with_an_unbounded_attribute_keeps_bounded_windows() {
    let mut e = engine();
    let (inferences, _labels) = (e.add_source(), e.add_source());
    let mut sizes = Vec::new();
    for i in 0..50_000 {
        // A new region value every event: a misbehaving client.
        e.handle_inference(inferences, &inference(i, &format!("region-{i}")))
            .expect("accepted");
        while e.poll_output().is_some() {}
        if i == 5_000 || i == 49_999 {
            sizes.push(e.snapshot().expect("snapshot").len());
        }
    }
    // Per series: the whole model, 10 values and `__other__`.
    let series = 2;
    assert!(e.windows() <= series * 12, "{} windows", e.windows());
    // Ten times the events, the same state: nothing grows with the distinct values.
    assert!(
        sizes[1] < sizes[0] * 3 / 2,
        "state grew from {} to {} bytes",
        sizes[0],
        sizes[1]
    );
}
