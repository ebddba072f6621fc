//! What the command line writes on stderr: log lines as text or, with `--log-format
//! json`, as one JSON object per line; and a replay's progress as plain lines when
//! stderr is not a terminal.

use std::process::Command;

/// `run` against a port where no broker listens: it logs its start, then fails.
fn run_without_brokers(format: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    slaguard::scenario::write_dir(&slaguard::scenario::ScenarioSpec::default(), dir.path())
        .expect("scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args(["--log-format", format, "run", "--config"])
        .arg(dir.path().join("sla.yaml"))
        .args(["--brokers", "127.0.0.1:1", "--http", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env_remove("SLAGUARD_LOG")
        .output()
        .expect("run slaguard");
    assert!(!out.status.success(), "no broker: the run fails");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn log_lines_are_text_or_json() {
    let json = run_without_brokers("json");
    let line = json
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("serving the status page"))
        })
        .unwrap_or_else(|| panic!("no JSON log line of the start in {json}"));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["sla_version"], "scenario-1");
    assert!(line["timestamp"].is_string());

    let text = run_without_brokers("text");
    let start = text
        .lines()
        .find(|l| l.contains("serving the status page"))
        .unwrap_or_else(|| panic!("no log line of the start in {text}"));
    assert!(
        serde_json::from_str::<serde_json::Value>(start).is_err(),
        "{start}"
    );
    assert!(start.contains("INFO"), "{start}");
    // The failure itself names what to fix.
    assert!(text.contains("127.0.0.1:1"), "{text}");
}

#[test]
fn a_replay_reports_progress_in_plain_lines_off_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = slaguard::scenario::ScenarioSpec {
        duration_ms: 30 * 60_000,
        ..slaguard::scenario::ScenarioSpec::default()
    };
    slaguard::scenario::write_dir(&spec, dir.path()).expect("scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_slaguard"))
        .args(["replay", "--config"])
        .arg(dir.path().join("sla.yaml"))
        .arg("--inferences")
        .arg(dir.path().join("inferences.jsonl"))
        .arg("--labels")
        .arg(dir.path().join("labels.jsonl"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .expect("run slaguard replay");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("replay "))
        .collect();
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("no progress in {stderr}"));
    assert!(last.starts_with("replay 100%: "), "{last}");
    assert!(
        last.contains("lines (") && last.contains("/s), event time 2026-11-01T00:"),
        "{last}"
    );
    assert!(!stderr.contains('\r'), "no terminal control off a terminal");
}
