//! Helpers shared by the integration tests: writing scenarios and replaying them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use slaguard::config;
use slaguard::engine::Engine;
use slaguard::replay::{replay_files, ReplayCounts, ReplayInputs};
use slaguard::scenario::{self, ScenarioSpec};

pub mod stream;

/// The golden scenario of tests/fixtures/golden: 3 hours, 2 inferences/s per model, seed 7.
pub fn golden_spec() -> ScenarioSpec {
    ScenarioSpec {
        duration_ms: 3 * 3_600_000,
        rate: 2.0,
        seed: 7,
        bad_lines: true,
        ..ScenarioSpec::default()
    }
}

pub fn write_scenario(dir: &Path, spec: &ScenarioSpec) -> ReplayInputs {
    scenario::write_dir(spec, dir).expect("write scenario");
    inputs(dir)
}

pub fn inputs(dir: &Path) -> ReplayInputs {
    ReplayInputs {
        inferences: dir.join("inferences.jsonl"),
        labels: dir.join("labels.jsonl"),
        acks: Some(dir.join("acks.jsonl")).filter(|p| p.exists()),
    }
}

pub fn load_config(path: &Path) -> Arc<config::SlaConfig> {
    Arc::new(config::load(path).unwrap_or_else(|e| panic!("{e}")))
}

/// Replays the scenario in `dir` into `dir/<out>`.
pub fn replay(dir: &Path, out: &str) -> (Engine, ReplayCounts, PathBuf) {
    replay_inputs(dir, &inputs(dir), out)
}

/// Replays `inputs` with the SLA of `dir` into `dir/<out>`.
pub fn replay_inputs(
    dir: &Path,
    inputs: &ReplayInputs,
    out: &str,
) -> (Engine, ReplayCounts, PathBuf) {
    let cfg = load_config(&dir.join("sla.yaml"));
    let out_dir = dir.join(out);
    let (engine, counts) = replay_files(cfg, inputs, &out_dir, u64::MAX, |_| {}).expect("replay");
    (engine, counts, out_dir)
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

pub fn millis(v: &Value) -> i64 {
    match v {
        Value::String(s) => slaguard::time::parse_rfc3339(s).expect("RFC 3339 event_time"),
        other => other.as_i64().expect("epoch ms"),
    }
}

/// `{"region": "eu-west"}` → `region=eu-west` (sorted), `{}` → empty.
pub fn segment_key(v: &Value) -> String {
    let mut parts: Vec<String> = v
        .as_object()
        .expect("segment object")
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().expect("segment value")))
        .collect();
    parts.sort();
    parts.join(",")
}

pub fn minute_of(start: i64, v: &Value) -> i64 {
    (millis(v) - start) / 60_000
}

/// The golden scenario's inferences and labels split into `p` partitions each, keyed by
/// request_id as Kafka partitions them: `p` inference partitions, then `p` label ones.
pub fn golden_partitions(inputs: &ReplayInputs, p: usize) -> Vec<Vec<slaguard::event::Event>> {
    use slaguard::decode;
    use slaguard::event::Event;
    let hash = |k: &str| {
        k.bytes()
            .fold(17u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b))) as usize
            % p
    };
    let mut parts: Vec<Vec<Event>> = vec![Vec::new(); 2 * p];
    let read = |path: &Path| std::fs::read_to_string(path).expect("read input");
    for l in read(&inputs.inferences).lines() {
        if let Ok(e) = decode::inference(l.as_bytes()) {
            parts[hash(&e.request_id)].push(Event::Inference(e));
        }
    }
    for l in read(&inputs.labels).lines() {
        if let Ok(e) = decode::label(l.as_bytes()) {
            parts[p + hash(&e.request_id)].push(Event::Label(e));
        }
    }
    parts
}

/// The metric snapshots and breach events of a replay of the scenario in `dir` without
/// its acks, as lines.
pub fn replay_without_acks(dir: &Path, inputs: &ReplayInputs) -> (Vec<String>, Vec<String>) {
    let without_acks = ReplayInputs {
        acks: None,
        ..inputs.clone()
    };
    let (_, _, out) = replay_inputs(dir, &without_acks, "files");
    let lines = |name: &str| -> Vec<String> {
        std::fs::read_to_string(out.join(name))
            .expect("output")
            .lines()
            .map(str::to_string)
            .collect()
    };
    (lines("metrics.jsonl"), lines("breaches.jsonl"))
}

/// The metric snapshots `e` has emitted so far (its other outputs are dropped).
pub fn metric_snapshots(e: &mut Engine) -> Vec<slaguard::output::MetricSnapshot> {
    std::iter::from_fn(|| e.poll_output())
        .filter_map(|o| match o {
            slaguard::output::Output::Metric(m) => Some(m),
            _ => None,
        })
        .collect()
}
