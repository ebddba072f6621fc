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

#[test]
fn run_on_one_partition_matches_the_file_replay() {
    run_matches_the_file_replay(1);
}

#[test]
fn run_on_four_partitions_matches_the_file_replay() {
    run_matches_the_file_replay(4);
}

#[test]
fn run_on_eight_partitions_matches_the_file_replay() {
    run_matches_the_file_replay(8);
}

/// One instance over `partitions` partitions of inferences and labels produces exactly
/// the file replay's snapshots, incidents and dead letters.
fn run_matches_the_file_replay(partitions: i32) {
    let brokers = real_broker();
    let GoldenOnTopics {
        dir,
        inputs: _,
        replayed,
        expected,
        expected_breaches,
        settings: s,
    } = golden_on_topics(
        &brokers,
        &format!("equiv{partitions}"),
        partitions,
        Produce::EventsAndAcks,
    );

    let cfg = common::load_config(&dir.path().join("sla.yaml"));
    let options = RunOptions {
        group: s.output_prefix.clone(),
        state_dir: dir.path().join("state"),
        commit_interval: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(10),
        instance_id: None,
        exactly_once: false,
        snapshot_interval: Duration::from_secs(60),
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

/// A new log file for a `slaguard run` child, next to its state directory: `run-1.log`,
/// `run-2.log`, … in start order.
fn run_log(state: &std::path::Path) -> std::fs::File {
    let dir = state
        .parent()
        .expect("a state directory in the test's directory");
    let n = (1..)
        .find(|n| !dir.join(format!("run-{n}.log")).exists())
        .expect("a free log name");
    std::fs::File::create(dir.join(format!("run-{n}.log"))).expect("create the run's log")
}

/// The logs of the `slaguard run` children of the test in `dir`, in start order.
fn run_logs(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for n in 1.. {
        let Ok(log) = std::fs::read_to_string(dir.join(format!("run-{n}.log"))) else {
            break;
        };
        out.push_str(&format!("--- run {n} ---\n{log}"));
    }
    out
}

/// Prints the logs of the test's `slaguard run` children if the test fails while it is in
/// scope (declared after the test's directory, so dropped before it).
struct LogsOnFailure<'a>(&'a std::path::Path);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", run_logs(self.0));
        }
    }
}

fn slaguard_run(
    config: &std::path::Path,
    s: &slaguard::kafka::KafkaSettings,
    group: &str,
    state: &std::path::Path,
    exactly_once: bool,
) -> Reaped {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args([
            "run",
            "--config",
            config.to_str().expect("utf-8"),
            "--brokers",
            &s.brokers,
            "--group",
            group,
        ])
        .args(topic_args(s))
        .args([
            "--output-prefix",
            &s.output_prefix,
            "--commit-interval",
            "1s",
            "--state-dir",
            state.to_str().expect("utf-8"),
            // Static membership: the restarted process takes the partitions back at once,
            // instead of sharing them with the killed member until its session expires.
            "--instance-id",
            group,
            // Tests run side by side: any free port for the status server.
            "--http",
            "127.0.0.1:0",
        ])
        .args(exactly_once.then_some("--exactly-once"))
        // One line at exit: the run's summary.
        .stdout(std::process::Stdio::piped())
        // The log, beside the state, for a failed comparison to show.
        .stderr(run_log(state))
        .spawn()
        .expect("spawn slaguard run");
    Reaped::new(child)
}

#[test]
fn kill_9_mid_stream_then_restart_loses_no_incident() {
    let duplicates = kill_9_mid_stream_then_restart("kill9", false);
    eprintln!("at-least-once: {duplicates} snapshots re-emitted after the restart");
}

#[test]
fn exactly_once_kill_9_then_restart_loses_and_repeats_nothing() {
    let duplicates = kill_9_mid_stream_then_restart("eos", true);
    assert_eq!(duplicates, 0, "read_committed sees no snapshot twice");
}

/// The first hour is processed and committed; then the second hour arrives and the process
/// is killed while an open transaction holds what it wrote but did not commit: the shard's
/// partial batches (and, with `--exactly-once`, the evaluator's outputs). The last hour
/// arrives only after the kill, so the kill always lands mid-stream. A restart with the
/// same instance id loses nothing. Returns the snapshots seen twice.
fn kill_9_mid_stream_then_restart(name: &str, exactly_once: bool) -> usize {
    let brokers = real_broker();
    let golden = golden_on_topics(&brokers, name, 4, Produce::Nothing);
    let _logs = LogsOnFailure(golden.dir.path());
    let s = &golden.settings;
    let stages = Stages::new(&brokers, &golden);
    let config = golden.dir.path().join("sla.yaml");
    let state = golden.dir.path().join("state");
    let metrics_topic = s.output_topic("metrics");
    let caught_topic = if exactly_once {
        metrics_topic.clone()
    } else {
        s.output_topic("partials")
    };
    // A group (and static member) of its own: the broker outlives test runs.
    let group = s.output_prefix.trim_end_matches('.').to_string();
    let mut first = slaguard_run(&config, s, &group, &state, exactly_once);
    stages.produce(i64::MIN, at(60));
    let committed_first = wait_settled(&brokers, &metrics_topic, 400, Duration::from_secs(120));
    // The second hour a minute of event time at a time, so that transactions keep
    // opening while the open one is looked for (the whole hour at once is processed in
    // a few transactions, which a slow look can miss).
    let done = std::sync::atomic::AtomicBool::new(false);
    let (written, committed) = std::thread::scope(|scope| {
        scope.spawn(|| {
            for minute in 60..120 {
                stages.produce(at(minute), at(minute + 1));
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    // Killed: the rest of the hour, then nothing until the restart.
                    stages.produce(at(minute + 1), at(120));
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let start = Instant::now();
        let caught = loop {
            let committed = read_topic(&brokers, &caught_topic).len();
            let written = read_topic_uncommitted(&brokers, &caught_topic).len();
            if written > committed {
                break (written, committed);
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "never caught an open transaction on {caught_topic}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        first.kill().expect("kill -9");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        caught
    });
    first.wait().expect("reaped");
    let before = read_topic(&brokers, &metrics_topic).len();
    assert!(before >= committed_first);
    assert!(
        before < golden.expected.len(),
        "killed mid-stream ({before} of {})",
        golden.expected.len()
    );
    eprintln!(
        "{name}: killed with {committed} messages of {caught_topic} committed and {} more written in the open transaction; {before} snapshots out",
        written - committed
    );
    let mut second = slaguard_run(&config, s, &group, &state, exactly_once);
    stages.produce(at(120), i64::MAX);
    let duplicates = nothing_lost(&brokers, &golden, exactly_once);
    second.kill().expect("stop");
    second.wait().expect("reaped");
    duplicates
}

/// Mid-stream, another member joins the shard's group (reading a topic of its own) and
/// leaves again: two rebalances that each take every partition from the shard and give
/// them back. What it hands over to itself loses and changes nothing.
#[test]
fn rebalances_that_give_the_shard_its_partitions_back_change_nothing() {
    let brokers = real_broker();
    let golden = golden_on_topics(&brokers, "regain", 4, Produce::Nothing);
    let _logs = LogsOnFailure(golden.dir.path());
    let s = &golden.settings;
    let stages = Stages::new(&brokers, &golden);
    let config = golden.dir.path().join("sla.yaml");
    let state = golden.dir.path().join("state");
    let group = s.output_prefix.trim_end_matches('.').to_string();
    let elsewhere = format!("{group}.elsewhere");
    create_topics(&brokers, &[(elsewhere.clone(), 1)]);
    let mut run = slaguard_run(&config, s, &group, &state, false);
    stages.produce(i64::MIN, at(60));
    wait_settled(
        &brokers,
        &s.output_topic("metrics"),
        400,
        Duration::from_secs(120),
    );
    for (from, to) in [(60, 90), (90, 120)] {
        let other: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .create()
            .expect("consumer");
        rdkafka::consumer::Consumer::subscribe(&other, &[&elsewhere]).expect("subscribe");
        stages.produce(at(from), at(to));
        // The new member joins while it polls: until the rebalance hands it its topic.
        let start = Instant::now();
        while rdkafka::consumer::Consumer::assignment(&other).map_or(0, |a| a.count()) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the other member was never assigned {elsewhere}"
            );
            let _ = other.poll(Duration::from_millis(100));
        }
        wait_for_group(&brokers, &group, 2);
        drop(other);
    }
    stages.produce(at(120), i64::MAX);
    nothing_lost(&brokers, &golden, false);
    run.kill().expect("stop");
    run.wait().expect("reaped");
}

#[test]
fn kill_9_after_an_idle_spell_then_restart_loses_no_incident() {
    let brokers = real_broker();
    let golden = golden_on_topics(&brokers, "idlespell", 4, Produce::Nothing);
    let _logs = LogsOnFailure(golden.dir.path());
    let s = &golden.settings;
    let stages = Stages::new(&brokers, &golden);
    // A short idle timeout, so the spell is over in seconds (the default is a minute).
    let config = golden.dir.path().join("sla.yaml");
    let yaml = std::fs::read_to_string(&config).expect("sla.yaml");
    let shortened = yaml.replacen("defaults: {", "defaults: {idle_timeout: 5s, ", 1);
    assert_ne!(yaml, shortened, "the scenario's defaults line");
    std::fs::write(&config, shortened).expect("write sla.yaml");
    let state = golden.dir.path().join("state");
    let group = s.output_prefix.trim_end_matches('.').to_string();
    let store = slaguard::kafka::checkpoint::CheckpointStore::new(&state, &group);

    // The first two hours as a backlog; the run reads them, then every input partition
    // falls silent for longer than idle_timeout, and checkpoints record it.
    stages.produce(i64::MIN, at(120));
    let mut first = slaguard_run(&config, s, &group, &state, false);
    let idle_at = wait_for_checkpoint(&store, &config, Duration::from_secs(180), |c, idle| {
        idle == 8 && c.seq > 0
    });
    // Two checkpoints later the idleness is committed as well as saved.
    wait_for_checkpoint(&store, &config, Duration::from_secs(60), |c, _| {
        c.seq >= idle_at + 2
    });
    first.kill().expect("kill -9");
    first.wait().expect("reaped");

    // The last hour, also as a backlog: the restarted run must not let the first partition
    // it reads run the watermark ahead of the others, which its checkpoint says are idle.
    stages.produce(at(120), i64::MAX);
    let mut second = slaguard_run(&config, s, &group, &state, false);
    nothing_lost(&brokers, &golden, false);
    second.kill().expect("stop");
    second.wait().expect("reaped");
}

/// Polls the local checkpoint of a running shard until `done(checkpoint, idle input
/// partitions)` holds, and returns the checkpoint's sequence number.
fn wait_for_checkpoint(
    store: &slaguard::kafka::checkpoint::CheckpointStore,
    config: &std::path::Path,
    deadline: Duration,
    done: impl Fn(&slaguard::kafka::checkpoint::Checkpoint, usize) -> bool,
) -> u64 {
    let cfg = common::load_config(config);
    let start = Instant::now();
    loop {
        if let Ok(Some(c)) = store.load() {
            let engine = slaguard::engine::Engine::restore(Arc::clone(&cfg), &c.engine)
                .expect("the checkpoint restores");
            let progress = engine.source_progress();
            let idle = c
                .partitions
                .iter()
                .filter(|(topic, _, source)| {
                    !topic.ends_with("acks")
                        && source.is_some_and(|s| progress.get(s).is_some_and(|p| p.idle))
                })
                .count();
            if done(&c, idle) {
                return c.seq;
            }
        }
        assert!(
            start.elapsed() < deadline,
            "the checkpoint never got there within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops a `slaguard run` child with SIGTERM (drain, checkpoint, commit) and returns the
/// number of messages it consumed, from its closing summary.
fn terminate(child: Reaped) -> u64 {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let out = child.into_inner().wait_with_output().expect("exit");
    assert!(out.status.success(), "run failed: {:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .split("run stopped: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no closing summary in {stdout:?}"))
}

#[test]
fn pending_predictions_survive_a_restart_without_rereading_history() {
    let brokers = real_broker();
    let golden = golden_on_topics(&brokers, "pending", 4, Produce::Nothing);
    let _logs = LogsOnFailure(golden.dir.path());
    let s = &golden.settings;
    let Stages {
        inferences, labels, ..
    } = Stages::new(&brokers, &golden);
    let config = golden.dir.path().join("sla.yaml");
    let state = golden.dir.path().join("state");
    let metrics_topic = s.output_topic("metrics");
    let group = s.output_prefix.trim_end_matches('.').to_string();

    // 90 minutes of predictions but only 60 of labels: the last half hour of predictions
    // (and more, with labels arriving up to 30 minutes late) wait when the run stops.
    let first = slaguard_run(&config, s, &group, &state, false);
    produce_lines(
        &brokers,
        &s.inferences_topic,
        stage(&inferences, i64::MIN, at(90)),
    );
    produce_lines(&brokers, &s.labels_topic, stage(&labels, i64::MIN, at(60)));
    wait_settled(&brokers, &metrics_topic, 400, Duration::from_secs(120));
    let consumed_first = terminate(first);
    let pending = slaguard::kafka::checkpoint::CheckpointStore::new(&state, &group)
        .load()
        .expect("readable")
        .map(|c| {
            slaguard::engine::Engine::restore(common::load_config(&config), &c.engine)
                .expect("restores")
                .pending_predictions()
        })
        .expect("a checkpoint");
    assert!(pending > 1000, "{pending} predictions pending at the stop");

    // The rest arrives after the restart: its labels join the predictions restored from
    // the checkpoint, and the run reads only the new messages.
    let second = slaguard_run(&config, s, &group, &state, false);
    let new: usize = [
        produce_lines(
            &brokers,
            &s.inferences_topic,
            stage(&inferences, at(90), i64::MAX),
        ),
        produce_lines(&brokers, &s.labels_topic, stage(&labels, at(60), i64::MAX)),
    ]
    .iter()
    .sum();
    assert_eq!(nothing_lost(&brokers, &golden, true), 0, "nothing twice");
    let consumed_second = terminate(second);
    eprintln!("{pending} pending predictions across the restart; {consumed_first} messages before, {consumed_second} after");
    assert_eq!(
        consumed_second, new as u64,
        "the restarted run read only what came after the stop"
    );
}

/// After a restart: every snapshot and incident event of the file replay up to the last
/// instant reached is on the topics, and nothing else (with `exactly_once`, nothing twice
/// either). Returns the number of snapshots seen twice.
fn nothing_lost(brokers: &str, golden: &GoldenOnTopics, exactly_once: bool) -> usize {
    let s = &golden.settings;
    let expected = &golden.expected;
    let metrics_topic = s.output_topic("metrics");
    let n = wait_settled(
        brokers,
        &metrics_topic,
        expected.len() - 60,
        Duration::from_secs(120),
    );
    let by_key: BTreeMap<_, _> = expected.iter().map(|v| (snapshot_key(v), v)).collect();
    let records = read_topic(brokers, &metrics_topic);
    let ours: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(&r.value).expect("JSON output"))
        .collect();
    assert_eq!(ours.len(), n);
    let mut seen = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    for (i, v) in ours.iter().enumerate() {
        let key = snapshot_key(v);
        if by_key.get(&key).is_none_or(|want| *want != v) {
            let copies = ours.iter().filter(|o| snapshot_key(o) == key).count();
            wrong.push(format!(
                "message {i} (partition {}; {copies} with its key): {v}\n  replay: {}",
                records[i].partition,
                by_key
                    .get(&key)
                    .map_or("none".to_string(), |w| w.to_string())
            ));
        }
        seen.insert(key);
    }
    if !wrong.is_empty() {
        panic!(
            "{} of {} snapshots differ from the replay after the restart; the first:\n{}",
            wrong.len(),
            ours.len(),
            wrong[..wrong.len().min(5)].join("\n"),
        );
    }
    let last = seen.iter().map(|k| k.0.clone()).max().expect("snapshots");
    let missing = expected
        .iter()
        .filter(|v| {
            v["event_time"].as_str().expect("time") <= last.as_str()
                && !seen.contains(&snapshot_key(v))
        })
        .count();
    assert_eq!(missing, 0, "snapshots lost across kill -9");

    let got: Vec<String> = read_json(brokers, &s.output_topic("breaches"))
        .iter()
        .map(|v| v.to_string())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = got.iter().collect();
    let wanted: Vec<String> = golden
        .expected_breaches
        .iter()
        .filter(|b| b["event_time"].as_str().is_some_and(|t| t <= last.as_str()))
        .map(|b| b.to_string())
        .collect();
    for b in &wanted {
        assert!(
            distinct.contains(b),
            "incident event lost across kill -9: {b}"
        );
    }
    if exactly_once {
        assert_eq!(got.len(), distinct.len(), "an incident event seen twice");
        assert!(
            got.iter().all(|b| wanted.contains(b)),
            "only the replay's incident events"
        );
    }
    ours.len() - seen.len()
}

#[test]
fn replay_by_timestamp_window() {
    let brokers = real_broker();
    let GoldenOnTopics {
        dir,
        inputs,
        settings: s,
        ..
    } = golden_on_topics(&brokers, "window", 4, Produce::EventsAndAcks);

    // The reference: a file replay of exactly the events in [from, to).
    let (from, to) = ("2026-11-01T01:00:00Z", "2026-11-01T02:00:00Z");
    let (f, t) = (
        slaguard::time::parse_rfc3339(from).expect("from"),
        slaguard::time::parse_rfc3339(to).expect("to"),
    );
    let window_dir = dir.path().join("window");
    std::fs::create_dir_all(&window_dir).expect("mkdir");
    let acks = inputs.acks.clone().expect("acks");
    for (name, path) in [
        ("inferences.jsonl", &inputs.inferences),
        ("labels.jsonl", &inputs.labels),
        ("acks.jsonl", &acks),
    ] {
        let text = std::fs::read_to_string(path).expect("read");
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v.get("timestamp").cloned())
                    .and_then(|ts| {
                        ts.as_i64()
                            .or_else(|| ts.as_str().and_then(slaguard::time::parse_rfc3339))
                    })
                    .is_some_and(|ts| ts >= f && ts < t)
            })
            .collect();
        std::fs::write(window_dir.join(name), kept.join("\n")).expect("write");
    }
    for file in ["sla.yaml", slaguard::scenario::REFERENCE_FILE] {
        std::fs::copy(dir.path().join(file), window_dir.join(file)).expect("copy");
    }
    let (_, _, reference) = common::replay(&window_dir, "out");

    let out_dir = dir.path().join("topic-replay");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args([
            "replay",
            "--config",
            dir.path().join("sla.yaml").to_str().expect("utf-8"),
            "--brokers",
            &brokers,
        ])
        .args(topic_args(&s))
        .args([
            "--from",
            from,
            "--to",
            to,
            "--out",
            out_dir.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run replay");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("replay finished"), "{stdout}");
    for name in ["metrics.jsonl", "breaches.jsonl"] {
        let a = std::fs::read_to_string(out_dir.join(name)).expect("topic replay output");
        let b = std::fs::read_to_string(reference.join(name)).expect("file replay output");
        assert!(!b.is_empty());
        assert!(a == b, "{name}: the topic replay over [{from}, {to}) differs from the file replay of those events");
    }

    // The SLA report of the same period from the topics equals the one from the files.
    let report = |source: &[&str], out: &std::path::Path| -> String {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_slaguard"))
            .args(["report", "--config"])
            .arg(dir.path().join("sla.yaml"))
            .args(source)
            .args(["--from", from, "--to", to, "--out"])
            .arg(out)
            .output()
            .expect("run report");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        std::fs::read_to_string(out.join("report.json")).expect("report.json")
    };
    let file = |name: &str| window_dir.join(name).to_str().expect("utf-8").to_string();
    let from_files = report(
        &[
            "--inferences",
            &file("inferences.jsonl"),
            "--labels",
            &file("labels.jsonl"),
            "--acks",
            &file("acks.jsonl"),
        ],
        &dir.path().join("report-files"),
    );
    let mut topics = vec!["--brokers".to_string(), brokers.clone()];
    topics.extend(topic_args(&s));
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let from_topics = report(&topics, &dir.path().join("report-topics"));
    assert!(from_files.contains("\"incidents\""));
    assert_eq!(from_topics, from_files, "report over topics vs files");
}

/// SIGTERM with the periodic commit a minute away, while the shard's open transaction
/// holds batches: the shard drains (its batches and offsets commit in its transaction,
/// with their marks), the evaluator reads what it committed and drains too, and the
/// process exits at once.
#[test]
fn sigterm_drains_commits_and_exits() {
    let brokers = real_broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = common::write_scenario(
        dir.path(),
        &slaguard::scenario::ScenarioSpec {
            duration_ms: 20 * 60_000,
            rate: 2.0,
            ..common::golden_spec()
        },
    );
    let sla = dir.path().join("sla.yaml");
    let s = settings(&brokers, &unique("sigterm"));
    create_all(&brokers, &s, 2);
    let group = s.output_prefix.trim_end_matches('.').to_string();
    let state = dir.path().join("state");
    let child = Reaped::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_slaguard"))
            .args(["run", "--config", sla.to_str().expect("utf-8")])
            .args(["--brokers", &brokers, "--group", &group])
            .args(topic_args(&s))
            .args(["--output-prefix", &s.output_prefix])
            .args(["--commit-interval", "60s"])
            .args(["--state-dir", state.to_str().expect("utf-8")])
            .args(["--http", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn slaguard run"),
    );
    wait_for_group(&brokers, &group, 1);
    produce_file(&brokers, &s.inferences_topic, &inputs.inferences);
    produce_file(&brokers, &s.labels_topic, &inputs.labels);
    // The shard writes a batch at each instant its watermark passes, in its open
    // transaction: nothing of it is visible to read_committed readers yet. (When the
    // whole input is read before the watermark forms, one batch holds it all.)
    let partials = s.output_topic("partials");
    let start = Instant::now();
    while read_topic_uncommitted(&brokers, &partials).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the shard wrote no batches"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        read_topic(&brokers, &partials).is_empty(),
        "nothing is committed before the drain"
    );
    let sent = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.into_inner().wait_with_output().expect("output");
    let took = sent.elapsed();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let consumed: i64 = stdout
        .split("run stopped: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("closing summary: {stdout}"));
    assert!(consumed > 0);
    // The evaluator read the batches the drain committed: snapshots are out.
    assert!(
        !read_topic(&brokers, &partials).is_empty(),
        "the drain committed the shard's batches"
    );
    assert!(
        !read_topic(&brokers, &s.output_topic("metrics")).is_empty(),
        "the evaluator drained what the shard committed"
    );
    // The shard's checkpoint covers every message consumed…
    let store = slaguard::kafka::checkpoint::CheckpointStore::new(&state, &group);
    let checkpoint = store
        .load()
        .expect("readable")
        .expect("a checkpoint was written");
    let covered: i64 = checkpoint.offsets.iter().map(|(_, _, o)| *o).sum();
    assert_eq!(
        covered, consumed,
        "the checkpoint covers every message read"
    );
    // …and both stages committed the offsets a successor would rebuild from, with their
    // marks: the shard's watermark (what it counted), the evaluator's last instant out.
    use rdkafka::consumer::Consumer;
    let committed = |group: &str, topics: &[&str], partitions: i32| {
        let consumer: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for t in topics {
            for p in 0..partitions {
                tpl.add_partition(t, p);
            }
        }
        let c = consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .expect("committed");
        c.elements()
            .iter()
            .map(|e| {
                assert!(
                    e.offset().to_raw().is_some_and(|o| o >= 0),
                    "{}/{} committed",
                    e.topic(),
                    e.partition()
                );
                slaguard::kafka::checkpoint::CommitMark::parse(e.metadata())
                    .unwrap_or_else(|| panic!("slaguard's mark: {:?}", e.metadata()))
            })
            .collect::<Vec<_>>()
    };
    for mark in committed(&group, &[&s.inferences_topic, &s.labels_topic], 2) {
        assert!(mark.counted.is_some(), "{mark:?}");
    }
    for mark in committed(&format!("{group}.evaluator"), &[&partials], 1) {
        assert!(mark.resume.is_some(), "{mark:?}");
    }
}
