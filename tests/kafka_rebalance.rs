//! Global metrics on a real broker: however many instances share the partitions, and
//! however they join and leave mid-stream, `run` produces exactly the file replay's
//! snapshots and incidents. Each instance's shard summarises the partitions it owns; the
//! evaluator (one instance at a time) merges every partition's batches. A moved partition
//! is re-read by its new owner without counting twice; a moved evaluator rebuilds its
//! windows from the batches, quietly up to where its predecessor's outputs reached.

mod common;
mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_support::*;
use serde_json::Value;
use slaguard::kafka::processor::{self, RunOptions, RunSummary};
use slaguard::kafka::KafkaShellError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Instance = JoinHandle<Result<RunSummary, KafkaShellError>>;

/// Instances of `run` in one consumer group, each in a task of `rt`.
struct Group {
    rt: tokio::runtime::Runtime,
    cfg: Arc<slaguard::config::SlaConfig>,
    settings: slaguard::kafka::KafkaSettings,
    group: String,
    dir: std::path::PathBuf,
    snapshot_interval: Duration,
    running: BTreeMap<&'static str, (CancellationToken, Instance)>,
}

impl Group {
    fn new(golden: &GoldenOnTopics, name: &str) -> Group {
        Group {
            rt: tokio::runtime::Runtime::new().expect("runtime"),
            cfg: common::load_config(&golden.dir.path().join("sla.yaml")),
            settings: golden.settings.clone(),
            group: unique(name),
            dir: golden.dir.path().to_path_buf(),
            snapshot_interval: Duration::from_secs(60),
            running: BTreeMap::new(),
        }
    }

    fn join(&mut self, name: &'static str) {
        let token = CancellationToken::new();
        let options = RunOptions {
            group: self.group.clone(),
            state_dir: self.dir.join(name),
            commit_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(10),
            instance_id: None,
            exactly_once: false,
            snapshot_interval: self.snapshot_interval,
        };
        let task = self.rt.spawn(processor::run(
            Arc::clone(&self.cfg),
            self.settings.clone(),
            options,
            token.clone(),
        ));
        self.running.insert(name, (token, task));
    }

    /// Stops an instance (drain, checkpoint, commit) and returns what it did.
    fn leave(&mut self, name: &str) -> RunSummary {
        let (token, task) = self.running.remove(name).expect("running");
        token.cancel();
        self.rt
            .block_on(task)
            .expect("task")
            .unwrap_or_else(|e| panic!("instance {name} failed: {e}"))
    }

    fn wait_members(&self, brokers: &str) {
        wait_for_group(brokers, &self.group, self.running.len());
    }
}

/// Every snapshot and breach event out equals the file replay's, and every one of the
/// file replay's is out.
fn assert_equals_the_file_replay(brokers: &str, golden: &GoldenOnTopics) {
    let s = &golden.settings;
    let key = |v: &Value| {
        format!(
            "{}|{}|{}|{}",
            v["event_time"],
            v["model_id"],
            v["objective"],
            common::segment_key(&v["segment"])
        )
    };
    let expected: BTreeMap<String, &Value> = golden.expected.iter().map(|v| (key(v), v)).collect();
    let ours = read_json(brokers, &s.output_topic("metrics"));
    let mut seen = BTreeSet::new();
    for v in &ours {
        let want = expected
            .get(&key(v))
            .unwrap_or_else(|| panic!("unexpected snapshot {v}"));
        assert_eq!(v, *want, "a snapshot differs from the file replay");
        seen.insert(key(v));
    }
    let missing: Vec<&String> = expected.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} snapshots missing, first {:?}",
        missing.len(),
        expected.len(),
        missing.first()
    );
    let breaches: BTreeSet<String> = read_json(brokers, &s.output_topic("breaches"))
        .iter()
        .map(Value::to_string)
        .collect();
    let wanted: BTreeSet<String> = golden
        .expected_breaches
        .iter()
        .map(Value::to_string)
        .collect();
    assert_eq!(
        breaches, wanted,
        "the incidents of the file replay, no other"
    );
    eprintln!(
        "{} snapshots ({} distinct) and {} breach events equal the file replay's",
        ours.len(),
        seen.len(),
        breaches.len()
    );
}

#[test]
fn two_instances_on_four_partitions_equal_the_file_replay() {
    let brokers = real_broker();
    let golden = golden_on_topics(&brokers, "two-instances", 4, Produce::Nothing);
    let mut group = Group::new(&golden, "two-instances");
    group.join("a");
    group.join("b");
    group.wait_members(&brokers);
    let s = &golden.settings;
    produce_file(&brokers, &s.inferences_topic, &golden.inputs.inferences);
    produce_file(&brokers, &s.labels_topic, &golden.inputs.labels);
    wait_settled(
        &brokers,
        &s.output_topic("metrics"),
        golden.expected.len(),
        Duration::from_secs(180),
    );
    let (a, b) = (group.leave("a"), group.leave("b"));
    assert!(
        a.messages > 0 && b.messages > 0,
        "both instances read partitions: {} and {} messages",
        a.messages,
        b.messages
    );
    assert_equals_the_file_replay(&brokers, &golden);
    assert_eq!(
        a.messages + b.messages,
        golden.replayed.lines,
        "every input message read once"
    );
}

/// Three instances join and leave while the stream is being read: each change of
/// membership comes right after a stage of input is produced.
#[test]
fn three_instances_joining_and_leaving_on_eight_partitions_equal_the_file_replay() {
    let brokers = real_broker();
    let golden = golden_on_topics(&brokers, "join-leave", 8, Produce::Nothing);
    let s = &golden.settings;
    let stages = Stages::new(&brokers, &golden);
    let mut group = Group::new(&golden, "join-leave");
    let mut produced = 0;
    group.join("a");
    group.wait_members(&brokers);
    produced += stages.produce(i64::MIN, at(40));
    group.join("b");
    group.wait_members(&brokers);
    produced += stages.produce(at(40), at(80));
    group.join("c");
    group.wait_members(&brokers);
    produced += stages.produce(at(80), at(120));
    let a = group.leave("a");
    group.wait_members(&brokers);
    produced += stages.produce(at(120), at(150));
    let b = group.leave("b");
    group.wait_members(&brokers);
    produced += stages.produce(at(150), i64::MAX);
    wait_settled(
        &brokers,
        &s.output_topic("metrics"),
        golden.expected.len(),
        Duration::from_secs(180),
    );
    let c = group.leave("c");
    for (name, summary) in [("a", &a), ("b", &b), ("c", &c)] {
        assert!(summary.messages > 0, "instance {name} read partitions");
    }
    // Each move handed the pairs' join state over: no input was read twice.
    assert_eq!(
        (a.messages + b.messages + c.messages) as usize,
        produced,
        "every input message read once, across four rebalances"
    );
    let evaluators = [&a, &b, &c].iter().filter(|s| s.batches > 0).count();
    assert!(
        evaluators >= 2,
        "the evaluator moved between instances at least once"
    );
    assert_equals_the_file_replay(&brokers, &golden);
}

/// An instance is killed (-9) with its pairs' join state snapshotted after its last
/// message: the other instance takes the pairs over from the snapshots once the dead
/// member's session expires, re-reads nothing, and the run still equals the file replay.
#[test]
fn a_killed_instances_pairs_are_taken_over_from_their_snapshots() {
    let brokers = real_broker();
    let golden = golden_on_topics(&brokers, "takeover", 4, Produce::Nothing);
    let s = &golden.settings;
    let stages = Stages::new(&brokers, &golden);
    let mut group = Group::new(&golden, "takeover");
    group.snapshot_interval = Duration::from_secs(1);
    group.join("b");
    group.wait_members(&brokers);
    let mut a = Reaped::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_slaguard"))
            .args(["run", "--config"])
            .arg(golden.dir.path().join("sla.yaml"))
            .args(["--brokers", &brokers, "--group", &group.group])
            .args(topic_args(s))
            .args(["--output-prefix", &s.output_prefix])
            .args(["--commit-interval", "1s", "--snapshot-interval", "1s"])
            .arg("--state-dir")
            .arg(golden.dir.path().join("a"))
            .args(["--instance-id", "a"])
            .args(["--http", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn slaguard run"),
    );
    wait_for_group(&brokers, &group.group, 2);
    stages.produce(i64::MIN, at(120));
    // Settled: both instances have read everything and snapshotted since.
    wait_settled(
        &brokers,
        &s.output_topic("metrics"),
        400,
        Duration::from_secs(120),
    );
    a.kill().expect("kill -9");
    a.wait().expect("reaped");
    // The dead member keeps its pairs until its session times out; then b holds all.
    wait_for_group(&brokers, &group.group, 1);
    stages.produce(at(120), i64::MAX);
    wait_settled(
        &brokers,
        &s.output_topic("metrics"),
        golden.expected.len(),
        Duration::from_secs(180),
    );
    let b = group.leave("b");
    // At the rebalance after the kill b hands its own two pairs over to itself and
    // takes the killed instance's two from their periodic snapshots. (At the first
    // rebalance nothing had been read yet: nothing to hand over.)
    assert_eq!(
        b.snapshot_pairs, 4,
        "every pair taken over from a snapshot after the kill"
    );
    assert_eq!(b.replayed, 0, "nothing re-read: the snapshots were current");
    assert_equals_the_file_replay(&brokers, &golden);
}
