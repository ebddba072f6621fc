//! The real broker stops and starts while `run` is consuming: the group recovers and
//! nothing is lost. Alone in its test binary, since it stops the shared broker.

mod common;
mod kafka_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_support::*;
use slaguard::kafka::processor::{self, RunOptions};
use tokio_util::sync::CancellationToken;

#[test]
fn broker_stop_and_start_is_survived() {
    let brokers = real_broker();
    let GoldenOnTopics {
        dir,
        inputs,
        expected,
        settings: s,
        ..
    } = golden_on_topics(&brokers, "restart", 4, Produce::Nothing);
    // Half the stream now, half after the broker came back.
    let lines: Vec<String> = read_lines(&inputs.inferences);
    let labels: Vec<String> = read_lines(&inputs.labels);
    produce_lines(
        &brokers,
        &s.inferences_topic,
        lines[..lines.len() / 2].iter().map(String::as_str),
    );
    produce_lines(
        &brokers,
        &s.labels_topic,
        labels[..labels.len() / 2].iter().map(String::as_str),
    );

    let cfg = common::load_config(&dir.path().join("sla.yaml"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let token = CancellationToken::new();
    let options = RunOptions {
        group: "restart".into(),
        state_dir: dir.path().join("state"),
        commit_interval: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(30),
        instance_id: None,
        exactly_once: false,
        snapshot_interval: Duration::from_secs(60),
    };
    let handle = rt.spawn(processor::run(
        Arc::clone(&cfg),
        s.clone(),
        options,
        token.clone(),
    ));
    let start = Instant::now();
    while read_topic(&brokers, &s.output_topic("metrics")).len() < 200 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no progress before the broker stop"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
    assert!(std::process::Command::new("bash")
        .args([script, "stop"])
        .status()
        .expect("stop")
        .success());
    // The processor keeps running against a dead broker for a few seconds…
    std::thread::sleep(Duration::from_secs(5));
    assert!(!handle.is_finished(), "run must ride out a broker outage");
    assert!(std::process::Command::new("bash")
        .args([script, "start"])
        .status()
        .expect("start")
        .success());
    produce_lines(
        &brokers,
        &s.inferences_topic,
        lines[lines.len() / 2..].iter().map(String::as_str),
    );
    produce_lines(
        &brokers,
        &s.labels_topic,
        labels[labels.len() / 2..].iter().map(String::as_str),
    );

    let start = Instant::now();
    loop {
        let n = read_topic(&brokers, &s.output_topic("metrics")).len();
        if n >= expected.len() - 60 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "after the restart only {n} snapshots of {}",
            expected.len()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    token.cancel();
    let summary = rt.block_on(handle).expect("task").expect("run survived");
    eprintln!(
        "broker restart: {} stage restart(s), {} messages",
        summary.stage_restarts, summary.messages
    );
    assert!(
        summary.messages as usize >= lines.len() + labels.len() - 10,
        "consumed {}",
        summary.messages
    );
    let ours = read_json(&brokers, &s.output_topic("metrics"));
    let keys: std::collections::BTreeSet<String> = expected
        .iter()
        .map(|v| {
            format!(
                "{}|{}|{}|{}",
                v["event_time"], v["model_id"], v["objective"], v["segment"]
            )
        })
        .collect();
    for v in &ours {
        assert!(
            keys.contains(&format!(
                "{}|{}|{}|{}",
                v["event_time"], v["model_id"], v["objective"], v["segment"]
            )),
            "unexpected snapshot {v}"
        );
    }
}
