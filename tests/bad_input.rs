//! Bad input of every kind becomes a dead letter with its position and reason, and never
//! stops the replay; late events are counted; pending state stays bounded.

mod common;

use std::sync::Arc;

use slaguard::config;
use slaguard::decode;
use slaguard::engine::Engine;
use slaguard::output::Output;

const SLA: &str = r#"
sla_version: "bad-input-1"
defaults: {evaluate_every: 1m, allowed_lateness: 30s, max_pending: 3}
models:
  - model_id: m
    task: binary_classification
    segment_by: [region]
    objectives:
      - {name: acc, metric: accuracy, op: ">=", target: 0.5, window: 10m}
      - {name: req, metric: request_count, op: ">=", target: 0, window: 10m}
  - model_id: r
    task: regression
    objectives:
      - {name: mae, metric: mae, op: "<=", target: 5, window: 10m}
"#;

#[test]
fn each_kind_of_bad_line_is_a_dead_letter_with_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(p.join("sla.yaml"), SLA).expect("write");
    let t0 = "2026-11-01T12:00:00Z";
    let mut inferences: Vec<Vec<u8>> = vec![
        format!(r#"{{"request_id":"a","model_id":"m","timestamp":"{t0}","latency_ms":5,"prediction":{{"score":0.9}},"attributes":{{"region":"eu"}}}}"#).into_bytes(),
        b"not json".to_vec(),
        br#"{"model_id":"m","timestamp":1793534400000,"prediction":{"score":0.9}}"#.to_vec(),
        br#"{"request_id":"b","model_id":"m","timestamp":1793534400000,"latency_ms":"fast","prediction":{"score":0.9}}"#.to_vec(),
        br#"{"request_id":"c","model_id":"m","timestamp":"noon","prediction":{"score":0.9}}"#.to_vec(),
        br#"{"request_id":"d","model_id":"ghost","timestamp":1793534400000,"prediction":{"score":0.9}}"#.to_vec(),
        br#"{"request_id":"e","model_id":"m","timestamp":1793534400000,"status":"ok"}"#.to_vec(),
        br#"{"request_id":"f","model_id":"r","timestamp":1793534400000,"prediction":{"score":0.2}}"#.to_vec(),
        br#"{"request_id":"g","model_id":"m","timestamp":1793534400000,"prediction":{"score":2.0}}"#.to_vec(),
        br#"{"request_id":"h","model_id":"m","timestamp":1793534400000,"latency_ms":-3,"prediction":{"score":0.1}}"#.to_vec(),
        br#"{"request_id":"i","model_id":"m","timestamp":"2099-01-01T00:00:00Z","prediction":{"score":0.1}}"#.to_vec(),
        br#"{"request_id":"j","model_id":"m","timestamp":1793534400000,"prediction":{}}"#.to_vec(),
        br#"{"request_id":"k","model_id":"m","timestamp":1793534400000,"prediction":{"score":0.3},"attributes":{"region":{"nested":1}}}"#.to_vec(),
        b"   ".to_vec(),
        vec![0xff, 0xfe, b'{'],
        format!(r#"{{"request_id":"a","model_id":"m","timestamp":"{t0}","latency_ms":5,"prediction":{{"score":0.9}},"attributes":{{"region":"eu"}}}}"#).into_bytes(),
        br#"{"request_id":"z","model_id":"m","timestamp":1793534460000,"status":"timeout","latency_ms":1000}"#.to_vec(),
    ];
    let labels = [
        r#"{"request_id":"f","model_id":"r","timestamp":1793534401000,"label":"1"}"#,
        r#"{"request_id":"a","model_id":"ghost","timestamp":1793534401000,"label":"1"}"#,
        r#"{"request_id":"a","model_id":"m","timestamp":1793534401000}"#,
        r#"{"request_id":"a","model_id":"m","timestamp":1793534402000,"label":"1"}"#,
    ];
    let acks = [
        r#"{"model_id":"m","objective":"nope","action":"acknowledge","timestamp":1793534401000}"#,
        r#"{"incident_id":"0000","action":"resolve","timestamp":1793534401000}"#,
        r#"{"incident_id":"0000","action":"snooze","timestamp":1793534401000}"#,
    ];
    for l in &mut inferences {
        l.push(b'\n');
    }
    std::fs::write(p.join("inferences.jsonl"), inferences.concat()).expect("write");
    std::fs::write(p.join("labels.jsonl"), labels.join("\n")).expect("write");
    std::fs::write(p.join("acks.jsonl"), acks.join("\n")).expect("write");
    let (engine, counts, out) = common::replay(p, "out");
    let dead = common::read_jsonl(&out.join("dead_letters.jsonl"));
    let got: Vec<(String, u64, String)> = dead
        .iter()
        .map(|d| {
            (
                d["input"].as_str().expect("input").to_string(),
                d["line"].as_u64().expect("line"),
                d["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    let want = [
        ("inferences", 2, "not_json"),
        ("inferences", 3, "missing_field"),
        ("inferences", 4, "wrong_type"),
        ("inferences", 5, "bad_timestamp"),
        ("inferences", 9, "invalid_value"),
        ("inferences", 10, "invalid_value"),
        ("inferences", 13, "wrong_type"),
        ("inferences", 15, "not_json"),
        ("labels", 3, "missing_field"),
        ("acks", 3, "invalid_value"),
        ("inferences", 6, "unknown_model"),
        ("inferences", 7, "missing_field"),
        ("inferences", 8, "missing_field"),
        ("inferences", 11, "time_jump"),
        ("inferences", 12, "missing_field"),
        ("labels", 1, "missing_field"),
        ("labels", 2, "unknown_model"),
        ("acks", 1, "unknown_objective"),
        ("acks", 2, "no_open_incident"),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted: Vec<(String, u64, String)> = want
        .iter()
        .map(|(i, l, r)| (i.to_string(), *l, r.to_string()))
        .collect();
    want_sorted.sort();
    assert_eq!(
        got_sorted, want_sorted,
        "dead letters in order of appearance: {got:?}"
    );
    let non_utf8 = dead
        .iter()
        .find(|d| d["line"] == 15 && d["input"] == "inferences")
        .expect("line 15");
    assert_eq!(
        non_utf8["raw_hex"], "fffe7b",
        "bytes that are not UTF-8 are kept as hex"
    );
    let missing_pred = dead.iter().find(|d| d["line"] == 7).expect("line 7");
    assert!(
        missing_pred["detail"]
            .as_str()
            .expect("detail")
            .contains("prediction"),
        "{missing_pred}"
    );
    // The run went on: the good inferences and the matching label were used.
    assert_eq!(engine.join_stats().matched, 1);
    assert_eq!(engine.join_stats().duplicate_predictions, 1);
    assert_eq!(
        counts.lines,
        16 + 4 + 3,
        "blank lines are skipped, every other line is read"
    );
}

fn engine(max_pending: u64) -> Engine {
    let yaml = SLA.replace("max_pending: 3", &format!("max_pending: {max_pending}"));
    Engine::new(Arc::new(
        config::parse(&yaml, "t.yaml", None).expect("valid"),
    ))
}

fn inference(id: &str, t: i64) -> slaguard::event::Inference {
    decode::inference(format!(r#"{{"request_id":"{id}","model_id":"m","timestamp":{t},"prediction":{{"score":0.9}},"attributes":{{"region":"eu"}}}}"#).as_bytes())
        .expect("valid")
}

#[test]
fn late_events_are_counted_and_still_land_in_open_windows() {
    let mut e = engine(1000);
    let s = e.add_source();
    let base = 1_793_534_400_000;
    e.handle_inference(s, &inference("a", base)).expect("ok");
    e.handle_inference(s, &inference("b", base + 5 * 60_000))
        .expect("ok");
    // 4 minutes behind the watermark (allowed lateness is 30 s): late, but its interval is
    // still inside the next windows.
    e.handle_inference(s, &inference("c", base + 60_000))
        .expect("ok");
    assert_eq!(e.stats().late_inferences, 1);
    e.handle_inference(s, &inference("d", base + 7 * 60_000))
        .expect("ok");
    let mut counts = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::Metric(m) = o {
            if m.objective == "req" && m.segment.0.is_empty() {
                counts.push(m.samples);
            }
        }
    }
    // b moved the watermark to 12:04:30, so 12:01–12:04 were evaluated with a alone; c
    // arrived late and counts in the instants still to come: 12:05 (a, c), 12:06 (a, b, c).
    assert_eq!(counts, vec![1, 1, 1, 1, 2, 3]);
}

#[test]
fn pending_state_is_bounded_and_evictions_are_counted() {
    let mut e = engine(3);
    let s = e.add_source();
    for i in 0..10 {
        e.handle_inference(
            s,
            &inference(&format!("r{i}"), 1_793_534_400_000 + i * 1000),
        )
        .expect("ok");
    }
    assert_eq!(e.pending_predictions(), 3);
    assert_eq!(e.join_stats().evicted_predictions, 7);
}
