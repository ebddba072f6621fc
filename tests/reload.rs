//! Reloading the SLA of a running instance (librdkafka's mock cluster, in process): a
//! valid change is in force from the next evaluation instant — its version stamped on
//! the outputs, its target judging them — and is recorded on `<prefix>changes`; an invalid
//! file, or one that changes what the running state is built from, changes nothing.

mod common;
mod kafka_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_support::*;
use rdkafka::producer::BaseProducer;
use slaguard::kafka::processor::{self, RunOptions};
use slaguard::kafka::reload::{ConfigReloader, ReloadOutcome};
use slaguard::telemetry::Telemetry;
use tokio_util::sync::CancellationToken;

const SLA: &str = r#"
sla_version: "reload-1"
defaults: {evaluate_every: 1m, allowed_lateness: 0s, idle_timeout: 1s}
models:
  - model_id: m
    task: binary_classification
    objectives:
      - {name: acc, metric: accuracy, op: ">=", target: 0.5, window: 1m}
      - {name: p99, metric: latency_p99, op: "<=", target: 100, window: 1m}
"#;

const T0: i64 = 1_793_534_400_000;

/// A mock cluster with slaguard's topics; the producer owns it.
fn mock() -> (BaseProducer, String) {
    mock_cluster(&[
        ("inferences", 1),
        ("labels", 1),
        ("acks", 1),
        ("sla.breaches", 1),
        ("sla.escalations", 1),
        ("sla.metrics", 1),
        ("sla.dead_letters", 1),
        ("sla.partials", 1),
        ("sla.join-state", 1),
        ("sla.changes", 1),
    ])
}

/// Requests (latency 10–16 ms) and their labels for the seconds `[from, to)` after T0.
/// With `telemetry`, the labels follow only once the shard has read the requests: after
/// an idle spell, labels read first would run the watermark past requests still unread
/// (the partitions are idle after 1 s).
fn produce(bootstrap: &str, from: i64, to: i64, telemetry: Option<&Telemetry>) {
    let inferences: Vec<String> = (from..to)
        .map(|i| format!(r#"{{"request_id":"r{i}","model_id":"m","timestamp":{},"latency_ms":{},"prediction":{{"score":0.9}}}}"#, T0 + i * 1000, 10 + i % 7))
        .collect();
    let labels: Vec<String> = (from..to)
        .map(|i| {
            format!(
                r#"{{"request_id":"r{i}","model_id":"m","timestamp":{},"label":"1"}}"#,
                T0 + i * 1000 + 500
            )
        })
        .collect();
    produce_lines(
        bootstrap,
        "inferences",
        inferences.iter().map(String::as_str),
    );
    if let Some(t) = telemetry {
        let key = (
            "inferences".to_string(),
            slaguard::telemetry::Outcome::Applied,
        );
        let start = Instant::now();
        while t
            .stage_report("shard")
            .and_then(|r| r.messages.get(&key).copied())
            .unwrap_or(0)
            < to as u64
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the shard never read the requests"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    produce_lines(bootstrap, "labels", labels.iter().map(String::as_str));
}

/// Waits until the snapshots reach the instant `minute` minutes after T0, and returns
/// them all.
fn snapshots_through(bootstrap: &str, minute: i64) -> Vec<serde_json::Value> {
    let until = slaguard::time::format_rfc3339(T0 + minute * 60_000);
    let start = Instant::now();
    loop {
        let metrics = read_json(bootstrap, "sla.metrics");
        if metrics
            .iter()
            .filter(|m| m["event_time"].as_str() == Some(until.as_str()))
            .count()
            == 2
        {
            return metrics;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no snapshots of {until} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until both stages run with `version`.
fn both_stages_on(telemetry: &Telemetry, version: &str) {
    let start = Instant::now();
    while ["shard", "evaluator"]
        .iter()
        .any(|s| telemetry.stage_report(s).map(|r| r.sla_version) != Some(version.to_string()))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the stages never took {version}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the SLA file");
}

#[test]
fn a_valid_change_is_in_force_from_the_next_instant_and_an_invalid_one_changes_nothing() {
    let (_keep, bootstrap) = mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sla.yaml");
    write(&path, SLA);
    let cfg = common::load_config(&path);
    let settings = slaguard::kafka::KafkaSettings::new(&bootstrap);
    let telemetry = Arc::new(Telemetry::new(&cfg));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mut reloader, sla) = rt
        .block_on(async {
            ConfigReloader::new(
                path.clone(),
                Arc::clone(&cfg),
                &settings,
                "test-instance",
                Arc::clone(&telemetry),
            )
        })
        .expect("reloader");
    let token = CancellationToken::new();
    let options = RunOptions {
        group: "reload".into(),
        state_dir: dir.path().join("state"),
        commit_interval: Duration::from_millis(500),
        shutdown_timeout: Duration::from_secs(5),
        instance_id: None,
        exactly_once: false,
        snapshot_interval: Duration::from_secs(60),
    };
    let handle = rt.spawn(processor::run_live(
        sla,
        settings,
        options,
        token.clone(),
        Arc::clone(&telemetry),
    ));

    // Five minutes under the first SLA: latencies of 10–16 ms meet a p99 of 100 ms. The
    // watermark stops at the last event (4:59.5): instants 1 to 4 are evaluated.
    produce(&bootstrap, 0, 300, Some(&telemetry));
    let before = snapshots_through(&bootstrap, 4);

    // The second: a new version and a p99 target of 1 ms, which every minute misses.
    write(
        &path,
        &SLA.replace("reload-1", "reload-2")
            .replace("target: 100", "target: 1"),
    );
    let outcome = rt.block_on(reloader.reload("test"));
    let ReloadOutcome::Applied { record, recorded } = outcome else {
        panic!("not applied: {outcome:?}");
    };
    assert!(recorded);
    assert_eq!(record.sla_version, "reload-2");
    assert_eq!(record.previous_version, "reload-1");
    assert_eq!(
        record.changes,
        [
            "sla_version: \"reload-1\" -> \"reload-2\"",
            "models[m].objectives[p99].target: 100.0 -> 1.0",
        ]
    );
    assert_eq!(record.instance, "test-instance");
    both_stages_on(&telemetry, "reload-2");
    produce(&bootstrap, 300, 600, Some(&telemetry));
    let after = snapshots_through(&bootstrap, 9);

    // An invalid file and one that changes a window: both refused, nothing changes.
    write(&path, &SLA.replace("latency_p99", "latency_p42"));
    match rt.block_on(reloader.reload("test")) {
        ReloadOutcome::Invalid(e) => assert!(e.contains("latency_p42"), "{e}"),
        other => panic!("an invalid file was not rejected: {other:?}"),
    }
    write(
        &path,
        &SLA.replace("reload-1", "reload-3").replace(
            "window: 1m}\n      - {name: p99",
            "window: 2m}\n      - {name: p99",
        ),
    );
    match rt.block_on(reloader.reload("test")) {
        ReloadOutcome::NeedsRestart(what) => assert!(
            what.iter()
                .any(|w| w.starts_with("models[m].objectives[acc].window")),
            "{what:?}"
        ),
        other => panic!("a window change was taken live: {other:?}"),
    }
    assert_eq!(reloader.current().sla_version, "reload-2");
    produce(&bootstrap, 600, 900, Some(&telemetry));
    let last = snapshots_through(&bootstrap, 14);
    token.cancel();
    rt.block_on(handle).expect("task").expect("run");

    let version = |m: &serde_json::Value| m["sla_version"].as_str().unwrap_or("").to_string();
    let minute = |m: &serde_json::Value| {
        (slaguard::time::parse_rfc3339(m["event_time"].as_str().expect("time")).expect("time") - T0)
            / 60_000
    };
    assert_eq!(before.len(), 8);
    assert!(before.iter().all(|m| version(m) == "reload-1"));
    // Instant 5, the first evaluated after the reload, is the new SLA's (its window's
    // events were read before: what changed is how they are judged).
    for m in &last {
        let (v, n) = (version(m), minute(m));
        if n <= 4 {
            assert_eq!(v, "reload-1", "{m}");
        } else {
            assert_eq!(v, "reload-2", "from the next instant on: {m}");
            if m["objective"] == "p99" {
                assert_eq!(m["state"], "critical", "judged by the new target: {m}");
            }
        }
    }
    assert_eq!((after.len(), last.len()), (18, 28));
    let breaches = read_json(&bootstrap, "sla.breaches");
    assert!(
        breaches.iter().any(|b| b["objective"] == "p99"
            && b["kind"] == "opened"
            && b["sla_version"] == "reload-2"),
        "{breaches:?}"
    );
    let changes = read_json(&bootstrap, "sla.changes");
    assert_eq!(changes.len(), 1, "only the applied change is recorded");
    assert_eq!(changes[0]["sla_version"], "reload-2");
    assert_eq!(changes[0]["previous_version"], "reload-1");
    assert_eq!(changes[0]["trigger"], "test");
}

/// `slaguard run` reloads on SIGHUP, and with `--watch-config` when the file changes; each
/// applied change is on `sla.changes` with its trigger.
#[test]
fn sighup_and_a_watched_file_reload_a_running_instance() {
    let (_keep, bootstrap) = mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sla.yaml");
    write(&path, SLA);
    let run = |group: &str, watch: bool| {
        Reaped::new(
            std::process::Command::new(env!("CARGO_BIN_EXE_slaguard"))
                .args(["run", "--config", path.to_str().expect("utf-8")])
                .args(["--brokers", &bootstrap, "--group", group])
                .args(["--commit-interval", "500ms", "--http", "127.0.0.1:0"])
                .args(watch.then_some("--watch-config"))
                .arg("--state-dir")
                .arg(dir.path().join(group))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn slaguard run"),
        )
    };
    let changes_with = |n: usize| {
        let start = Instant::now();
        loop {
            let changes = read_json(&bootstrap, "sla.changes");
            if changes.len() >= n {
                return changes;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} change record(s) after 30 s, expected {n}",
                changes.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    produce(&bootstrap, 0, 120, None);

    // Without --watch-config a changed file waits for SIGHUP.
    let mut first = run("hup", false);
    snapshots_through(&bootstrap, 1);
    write(&path, &SLA.replace("reload-1", "reload-2"));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &first.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let changes = changes_with(1);
    assert_eq!(changes[0]["sla_version"], "reload-2");
    assert_eq!(changes[0]["previous_version"], "reload-1");
    assert_eq!(changes[0]["trigger"], "SIGHUP");
    let _ = first.kill();
    let _ = first.wait();

    // With it, writing the file is enough (once the instance runs: its snapshots of
    // instant 1, stamped with the version it loaded).
    let mut second = run("watch", true);
    let start = Instant::now();
    while read_json(&bootstrap, "sla.metrics")
        .iter()
        .filter(|m| m["sla_version"] == "reload-2")
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the second instance never evaluated"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    write(&path, &SLA.replace("reload-1", "reload-3"));
    let changes = changes_with(2);
    assert_eq!(changes[1]["sla_version"], "reload-3");
    assert_eq!(changes[1]["previous_version"], "reload-2");
    assert_eq!(changes[1]["trigger"], "file changed");
    let _ = second.kill();
    let _ = second.wait();
}
