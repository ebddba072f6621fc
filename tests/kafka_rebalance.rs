//! Rebalances on a real broker: a second instance joins, takes half the partitions, and
//! leaves. Each change drains (outputs acknowledged, rebuild offsets committed with the
//! last instant emitted); the owners rebuild their state from those offsets, quietly up to
//! that instant. After the second instance has left, the first produces exactly the file
//! replay's snapshots and incidents: no pending prediction of a moved partition was lost,
//! nothing was counted twice.

mod common;
mod kafka_support;

use std::sync::Arc;
use std::time::Duration;

use kafka_support::*;
use serde_json::Value;
use slaguard::kafka::processor::{self, RunOptions};
use tokio_util::sync::CancellationToken;

#[test]
fn an_instance_joins_and_leaves_without_loss() {
    let brokers = real_broker();
    let GoldenOnTopics {
        dir,
        inputs,
        expected,
        expected_breaches,
        settings: s,
        ..
    } = golden_on_topics(&brokers, "rebalance", 4, Produce::Nothing);
    let inferences: Vec<String> = read_lines(&inputs.inferences);
    let labels: Vec<String> = read_lines(&inputs.labels);
    let start = slaguard::scenario::ScenarioSpec::default().start;
    let at = |minutes: i64| start + minutes * 60_000;
    let produce_stage = |from: i64, to: i64| {
        produce_lines(&brokers, &s.inferences_topic, stage(&inferences, from, to));
        produce_lines(&brokers, &s.labels_topic, stage(&labels, from, to));
    };
    let cfg = common::load_config(&dir.path().join("sla.yaml"));
    let group = unique("rebalance");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let instance = |name: &str, token: &CancellationToken| {
        let options = RunOptions {
            group: group.clone(),
            state_dir: dir.path().join(name),
            commit_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(10),
            instance_id: None,
            exactly_once: false,
        };
        rt.spawn(processor::run(
            Arc::clone(&cfg),
            s.clone(),
            options,
            token.clone(),
        ))
    };
    let metrics = s.output_topic("metrics");

    let (a_token, b_token) = (CancellationToken::new(), CancellationToken::new());
    let a = instance("a", &a_token);
    wait_for_group(&brokers, &group, 1);
    produce_stage(i64::MIN, at(60));
    wait_settled(&brokers, &metrics, 400, Duration::from_secs(120));
    let b = instance("b", &b_token);
    wait_for_group(&brokers, &group, 2);
    produce_stage(at(60), at(120));
    wait_settled(&brokers, &metrics, 800, Duration::from_secs(120));
    b_token.cancel();
    let b_summary = rt.block_on(b).expect("task").expect("b ran");
    assert!(
        b_summary.messages > 0,
        "the second instance took partitions over"
    );
    // Only once the first instance owns every partition again does the last hour arrive:
    // an instance emits the instants its own partitions reach.
    wait_for_group(&brokers, &group, 1);
    produce_stage(at(120), i64::MAX);
    wait_settled(
        &brokers,
        &metrics,
        expected.len() / 2,
        Duration::from_secs(120),
    );
    a_token.cancel();
    rt.block_on(a).expect("task").expect("a ran");

    // From 2h10 on (after the last rebalance and one full window of the longest objective
    // on top), every snapshot equals the file replay's, and none is missing up to the last
    // instant reached.
    let from = slaguard::time::format_rfc3339(at(130));
    let ours: Vec<Value> = read_json(&brokers, &metrics)
        .into_iter()
        .filter(|v| v["event_time"].as_str().is_some_and(|t| t >= from.as_str()))
        .collect();
    let last = ours
        .iter()
        .filter_map(|v| v["event_time"].as_str())
        .max()
        .expect("snapshots after the rebalances")
        .to_string();
    let wanted: Vec<&Value> = expected
        .iter()
        .filter(|v| {
            v["event_time"]
                .as_str()
                .is_some_and(|t| t >= from.as_str() && t <= last.as_str())
        })
        .collect();
    let key = |v: &Value| {
        format!(
            "{}|{}|{}|{}",
            v["event_time"], v["model_id"], v["objective"], v["segment"]
        )
    };
    let by_key: std::collections::BTreeMap<String, &Value> =
        wanted.iter().map(|v| (key(v), *v)).collect();
    for v in &ours {
        let want = by_key
            .get(&key(v))
            .unwrap_or_else(|| panic!("unexpected snapshot {v}"));
        assert_eq!(
            v, *want,
            "snapshot after the rebalances differs from the file replay"
        );
    }
    let got: std::collections::BTreeSet<String> = ours.iter().map(key).collect();
    assert_eq!(
        got.len(),
        wanted.len(),
        "every snapshot from {from} to {last} was produced"
    );
    // The incidents of the last hour (the latency spike) open and resolve with their ids.
    let breaches: std::collections::BTreeSet<String> =
        read_json(&brokers, &s.output_topic("breaches"))
            .iter()
            .map(|v| v.to_string())
            .collect();
    for b in expected_breaches.iter().filter(|b| {
        b["event_time"]
            .as_str()
            .is_some_and(|t| t >= from.as_str() && t <= last.as_str())
    }) {
        assert!(
            breaches.contains(&b.to_string()),
            "incident event missing after the rebalances: {b}"
        );
    }
}
