//! `run` and topic replay against a real Apache Kafka broker (scripts/kafka.sh).

mod common;
mod kafka_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_support::*;
use serde_json::Value;
use slaguard::kafka::processor::{self, RunOptions};
use tokio_util::sync::CancellationToken;

fn snapshot_key(v: &Value) -> (String, String, String, String) {
    (
        v["event_time"].as_str().expect("time").to_string(),
        v["model_id"].as_str().expect("model").to_string(),
        v["objective"].as_str().expect("objective").to_string(),
        common::segment_key(&v["segment"]),
    )
}

/// Waits until `topic` holds at least `min` messages and stops growing.
fn wait_settled(brokers: &str, topic: &str, min: usize, deadline: Duration) -> usize {
    let start = Instant::now();
    let mut last = 0;
    loop {
        let n = read_topic(brokers, topic).len();
        if n >= min && n == last {
            return n;
        }
        assert!(
            start.elapsed() < deadline,
            "{topic}: {n} messages after {deadline:?}, expected at least {min}"
        );
        last = n;
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn run_on_four_partitions_matches_the_file_replay() {
    let brokers = real_broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = common::write_scenario(dir.path(), &common::golden_spec());
    let (_, replayed, out) = common::replay(dir.path(), "files");
    let expected = common::read_jsonl(&out.join("metrics.jsonl"));
    let expected_breaches = common::read_jsonl(&out.join("breaches.jsonl"));

    let s = settings(&brokers, &unique("equiv"));
    create_all(&brokers, &s, 4);
    produce_file(&brokers, &s.inferences_topic, &inputs.inferences);
    produce_file(&brokers, &s.labels_topic, &inputs.labels);
    produce_file(&brokers, &s.acks_topic, &inputs.acks.clone().expect("acks"));

    let cfg = common::load_config(&dir.path().join("sla.yaml"));
    let options = RunOptions {
        group: "equiv".into(),
        state_dir: dir.path().join("state"),
        commit_interval: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(10),
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let token = CancellationToken::new();
    let started = Instant::now();
    let handle = rt.spawn(processor::run(
        Arc::clone(&cfg),
        s.clone(),
        options,
        token.clone(),
    ));
    // Everything but the last minute or so: the final instants wait for a watermark that a
    // live stream only moves on.
    let n = wait_settled(
        &brokers,
        &s.output_topic("metrics"),
        expected.len() - 60,
        Duration::from_secs(120),
    );
    let elapsed = started.elapsed();
    token.cancel();
    let summary = rt.block_on(handle).expect("task").expect("run");
    eprintln!(
        "run: {} messages in {elapsed:?} ({:.0}/s incl. settling)",
        summary.messages,
        summary.messages as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(
        summary.messages, replayed.lines,
        "every input message consumed"
    );

    let ours = read_json(&brokers, &s.output_topic("metrics"));
    assert_eq!(ours.len(), n);
    let by_key: BTreeMap<_, _> = expected.iter().map(|v| (snapshot_key(v), v)).collect();
    let last = ours
        .iter()
        .map(|v| v["event_time"].as_str().expect("time").to_string())
        .max()
        .expect("snapshots");
    for v in &ours {
        let want = by_key
            .get(&snapshot_key(v))
            .unwrap_or_else(|| panic!("run produced a snapshot the replay did not: {v}"));
        assert_eq!(&v, want, "snapshot differs from the file replay");
    }
    let covered = expected
        .iter()
        .filter(|v| v["event_time"].as_str().expect("time") <= last.as_str())
        .count();
    assert_eq!(
        covered,
        ours.len(),
        "every replay snapshot up to the run's last instant ({last}) was produced once"
    );

    let mut breaches: Vec<String> = read_json(&brokers, &s.output_topic("breaches"))
        .iter()
        .map(|v| v.to_string())
        .collect();
    let mut want: Vec<String> = expected_breaches.iter().map(|v| v.to_string()).collect();
    breaches.sort();
    want.sort();
    assert_eq!(breaches, want, "the same incidents, with the same ids");

    let dead = read_topic(&brokers, &s.output_topic("dead_letters"));
    assert_eq!(dead.len() as u64, replayed.dead_letters);
    for d in &dead {
        let h: BTreeMap<&str, &str> = d
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert!(
            h.contains_key("slaguard.reason") && h.contains_key("slaguard.source.topic"),
            "{h:?}"
        );
        assert!(h["slaguard.source.offset"].parse::<i64>().is_ok());
    }
}
