//! The Kafka shell on librdkafka's in-process mock cluster: a produce/consume round trip,
//! dead letters with headers, start-up checks, and the demo. (Graceful shutdown keeps a
//! transaction open for a while, which the mock cluster does not serve faithfully: the
//! real broker's tests cover it.)

mod common;
mod kafka_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_support::*;
use rdkafka::producer::Producer;
use slaguard::kafka::processor::{self, RunOptions};
use slaguard::kafka::{preflight, KafkaShellError};
use tokio_util::sync::CancellationToken;

const OUTPUTS: [(&str, i32); 5] = [
    ("sla.breaches", 1),
    ("sla.escalations", 1),
    ("sla.metrics", 1),
    ("sla.dead_letters", 1),
    ("sla.partials", 1),
];

fn all_topics(partitions: i32, labels: i32) -> Vec<(&'static str, i32)> {
    let mut t = vec![("inferences", partitions), ("labels", labels), ("acks", 1)];
    t.extend(OUTPUTS);
    t.push(("sla.join-state", partitions));
    t
}

#[test]
fn start_up_checks_name_the_problem() {
    let (_keep, bootstrap) = mock_cluster(&all_topics(4, 3));
    let s = slaguard::kafka::KafkaSettings::new(&bootstrap);
    match preflight::check(&s, true, Duration::from_secs(5)) {
        Err(e @ KafkaShellError::NotCoPartitioned { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("`inferences` has 4 partitions but `labels` has 3"),
                "{text}"
            );
        }
        other => panic!("expected a co-partitioning error, got {other:?}"),
    }
    let mut missing = s.clone();
    missing.acks_topic = "no-such-acks".into();
    assert!(
        matches!(preflight::check(&missing, true, Duration::from_secs(5)), Err(KafkaShellError::TopicMissing { topic, .. }) if topic == "no-such-acks")
    );
    let down = slaguard::kafka::KafkaSettings::new("127.0.0.1:1");
    let e = preflight::check(&down, true, Duration::from_secs(2))
        .expect_err("nothing listens on port 1");
    assert!(
        e.to_string()
            .contains("cannot reach the Kafka brokers at 127.0.0.1:1"),
        "{e}"
    );
}

/// A topic the cluster lists with a partition that has no leader yet (being created) is
/// waited for: named in the error if it stays so, taken once its leader is there.
#[test]
fn start_up_waits_for_a_topic_being_created() {
    let (keep, bootstrap) = mock_cluster(&all_topics(2, 2));
    let cluster = keep.client().mock_cluster().expect("mock");
    let s = slaguard::kafka::KafkaSettings::new(&bootstrap);
    cluster
        .partition_leader("labels", 1, None)
        .expect("leaderless");
    match preflight::check(&s, true, Duration::from_secs(1)) {
        Err(e @ KafkaShellError::TopicNotReady { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("topic `labels`") && text.contains("partition 1 has no leader"),
                "{text}"
            );
        }
        other => panic!("expected the topic not to be ready, got {other:?}"),
    }
    std::thread::scope(|scope| {
        let check = scope.spawn(|| preflight::check(&s, true, Duration::from_secs(30)));
        // The check is waiting (or not started yet): the leader comes back either way
        // long before its deadline.
        std::thread::sleep(Duration::from_millis(300));
        cluster
            .partition_leader("labels", 1, Some(1))
            .expect("leader");
        let counts = check.join().expect("no panic").expect("ready");
        assert_eq!(counts.get("labels"), Some(&2));
    });
}

#[test]
fn round_trip_with_dead_letters_and_headers() {
    let (_keep, bootstrap) = mock_cluster(&all_topics(2, 2));
    let s = slaguard::kafka::KafkaSettings::new(&bootstrap);
    let t0 = 1_793_534_400_000i64;
    let mut inferences: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"request_id":"r{i}","model_id":"m","timestamp":{},"latency_ms":{},"prediction":{{"score":0.9}}}}"#, t0 + i * 1000, 10 + i % 7))
        .collect();
    inferences.push("this is not json".into());
    inferences.push(r#"{"request_id":"x","model_id":"ghost","timestamp":1793534400000}"#.into());
    produce_lines(
        &bootstrap,
        "inferences",
        inferences.iter().map(String::as_str),
    );
    let labels: Vec<String> = (0..300)
        .map(|i| {
            format!(
                r#"{{"request_id":"r{i}","model_id":"m","timestamp":{},"label":"1"}}"#,
                t0 + i * 1000 + 500
            )
        })
        .collect();
    produce_lines(&bootstrap, "labels", labels.iter().map(String::as_str));

    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = r#"
sla_version: "mock-1"
defaults: {evaluate_every: 1m, allowed_lateness: 0s, idle_timeout: 1s}
models:
  - model_id: m
    task: binary_classification
    objectives:
      - {name: acc, metric: accuracy, op: ">=", target: 0.9, window: 1m}
      - {name: p99, metric: latency_p99, op: "<=", target: 100, window: 1m}
"#;
    let cfg = Arc::new(slaguard::config::parse(yaml, "t.yaml", None).expect("valid"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let token = CancellationToken::new();
    let options = RunOptions {
        group: "rt".into(),
        state_dir: dir.path().into(),
        commit_interval: Duration::from_millis(500),
        shutdown_timeout: Duration::from_secs(5),
        instance_id: None,
        exactly_once: false,
        snapshot_interval: Duration::from_secs(60),
    };
    let handle = rt.spawn(processor::run(cfg, s.clone(), options, token.clone()));
    // 300 s of events and no lateness: instants 12:01..12:04, the last ones once the
    // partitions have gone idle. Two objectives each.
    let start = Instant::now();
    while read_topic(&bootstrap, "sla.metrics").len() < 8 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no snapshots after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    token.cancel();
    let summary = rt.block_on(handle).expect("task").expect("run");
    assert_eq!(summary.messages, 602);
    let metrics = read_json(&bootstrap, "sla.metrics");
    let acc: Vec<&serde_json::Value> = metrics.iter().filter(|m| m["objective"] == "acc").collect();
    assert!(
        acc.iter().all(|m| m["value"] == 1.0 && m["state"] == "ok"),
        "{acc:?}"
    );
    assert_eq!(acc[0]["samples"], 60, "one minute of outcomes per window");
    let dead = read_topic(&bootstrap, "sla.dead_letters");
    assert_eq!(dead.len(), 2);
    let reasons: Vec<BTreeMap<String, String>> = dead
        .iter()
        .map(|d| d.headers.iter().cloned().collect())
        .collect();
    let codes: Vec<&str> = reasons
        .iter()
        .map(|h| h["slaguard.reason"].as_str())
        .collect();
    assert!(
        codes.contains(&"not_json") && codes.contains(&"unknown_model"),
        "{codes:?}"
    );
    for (d, h) in dead.iter().zip(&reasons) {
        assert_eq!(h["slaguard.source.topic"], "inferences");
        assert!(h["slaguard.source.offset"].parse::<i64>().is_ok());
        assert!(
            d.value == b"this is not json" || d.value.starts_with(b"{\"request_id\":\"x\""),
            "original bytes kept"
        );
    }
}

#[test]
fn the_demo_opens_and_resolves_breaches_and_exits_by_itself() {
    let out = Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args(["demo", "--seconds", "25", "--http", "127.0.0.1:0"])
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("OPENED") && stdout.contains("RESOLVED"),
        "{stdout}"
    );
    let last = stdout.lines().last().expect("summary");
    assert!(
        last.starts_with("demo finished:") && !last.contains(" 0 breaches opened"),
        "{last}"
    );
}

#[test]
fn avro_inputs_and_outputs_in_the_confluent_wire_format() {
    use slaguard::avro::{Codecs, Format};
    let (producer, bootstrap) = mock_cluster(&all_topics(1, 1));
    let codecs = Codecs::new().expect("schemas");
    let t0 = 1_793_534_400_000i64;
    let encode = |schema: &apache_avro::Schema, v: serde_json::Value| {
        Codecs::encode(schema, &v, Format::Confluent(7)).expect("encode")
    };
    let send = |topic: &str, key: &str, value: &[u8]| {
        producer
            .send(
                rdkafka::producer::BaseRecord::to(topic)
                    .key(key)
                    .payload(value),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    };
    for i in 0..120 {
        let inference = serde_json::json!({"request_id": format!("r{i}"), "model_id": "m", "model_version": "1",
            "timestamp": t0 + i * 1000, "latency_ms": 20.0, "status": "ok",
            "prediction": {"score": if i % 4 == 0 { 0.2 } else { 0.9 }, "label": null, "value": null},
            "features": {}, "attributes": {}});
        send(
            "inferences",
            &format!("r{i}"),
            &encode(codecs.inference, inference),
        );
        let label = serde_json::json!({"request_id": format!("r{i}"), "model_id": "m", "timestamp": t0 + i * 1000 + 10, "label": "1", "value": null});
        send("labels", &format!("r{i}"), &encode(codecs.label, label));
    }
    send("inferences", "bad", b"\x00\x00\x00\x00\x07garbage");
    producer.flush(Duration::from_secs(5)).expect("flush");

    let mut s = slaguard::kafka::KafkaSettings::new(&bootstrap);
    for f in [
        "inferences=confluent",
        "labels=confluent",
        "metrics=confluent:11",
        "breaches=avro",
        "escalations=confluent:13",
    ] {
        s.formats.set(f).expect("format");
    }
    let yaml = r#"
sla_version: "avro-1"
defaults: {evaluate_every: 1m, allowed_lateness: 0s, idle_timeout: 1s}
models:
  - model_id: m
    task: binary_classification
    escalation: page
    objectives:
      - {name: acc, metric: accuracy, op: ">=", target: 0.9, window: 1m}
escalation_policies:
  page: {levels: [{after: 0m, notify: ["team:oncall"]}]}
"#;
    let cfg = Arc::new(slaguard::config::parse(yaml, "t.yaml", None).expect("valid"));
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let token = CancellationToken::new();
    let options = RunOptions {
        group: "avro".into(),
        state_dir: dir.path().into(),
        commit_interval: Duration::from_millis(500),
        shutdown_timeout: Duration::from_secs(5),
        instance_id: None,
        exactly_once: false,
        snapshot_interval: Duration::from_secs(60),
    };
    let handle = rt.spawn(processor::run(cfg, s, options, token.clone()));
    let start = Instant::now();
    // Two minutes of events: the instant 12:01 is evaluated, 12:02 is not reached.
    while read_topic(&bootstrap, "sla.metrics").is_empty() {
        if handle.is_finished() {
            panic!("run stopped: {:?}", rt.block_on(handle));
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no snapshots");
        std::thread::sleep(Duration::from_millis(200));
    }
    token.cancel();
    rt.block_on(handle).expect("task").expect("run");
    let metrics = read_topic(&bootstrap, "sla.metrics");
    let first = &metrics[0].value;
    assert_eq!(
        &first[..5],
        &[0, 0, 0, 0, 11],
        "Confluent header with the configured id"
    );
    let mut body = &first[5..];
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&codecs.metric)
        .build()
        .and_then(|r| r.read_value(&mut body))
        .expect("a MetricSnapshot record");
    let text = format!("{value:?}");
    // 60 outcomes in the first minute, 45 of them correct (every fourth scored 0.2 is wrong).
    assert!(
        text.contains("Double(0.75)") && text.contains("Long(60)"),
        "{text}"
    );
    // Accuracy 0.75 misses 0.9: the incident opens (raw Avro) and pages (Confluent).
    let breach = read_topic(&bootstrap, "sla.breaches");
    let mut body = &breach[0].value[..];
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&codecs.breach)
        .build()
        .and_then(|r| r.read_value(&mut body))
        .expect("a Breach record");
    assert!(format!("{value:?}").contains("\"opened\""), "{value:?}");
    let page = read_topic(&bootstrap, "sla.escalations");
    assert_eq!(&page[0].value[..5], &[0, 0, 0, 0, 13]);
    let mut body = &page[0].value[5..];
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&codecs.escalation)
        .build()
        .and_then(|r| r.read_value(&mut body))
        .expect("an Escalation record");
    let text = format!("{value:?}");
    assert!(
        text.contains("\"trigger\"") && text.contains("team:oncall"),
        "{text}"
    );
    let dead = read_topic(&bootstrap, "sla.dead_letters");
    assert_eq!(dead.len(), 1);
    assert!(dead[0]
        .headers
        .iter()
        .any(|(k, v)| k == "slaguard.reason" && v == "not_avro"));
}

#[test]
fn a_topic_replay_never_writes_to_the_live_topics_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::write_scenario(dir.path(), &common::golden_spec());
    let config = dir.path().join("sla.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args([
            "replay",
            "--config",
            config.to_str().expect("utf-8"),
            "--brokers",
            "127.0.0.1:1",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--out DIR or to topics named with --output-prefix"),
        "{err}"
    );
}
