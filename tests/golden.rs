//! The golden scenario: a 3-hour, two-model scripted scenario (src/scenario.rs) replayed
//! from files and compared, snapshot by snapshot and breach by breach, with the output of
//! an independent reference (scripts/reference_replay.py, NumPy + scikit-learn) stored in
//! tests/fixtures/golden.
//!
//! Tolerances: ROC AUC within 0.001 of scikit-learn's exact value; percentiles at or above
//! the nearest-rank value and within 2^-10 relative (HdrHistogram, 3 significant digits);
//! everything else within 1e-9 relative; samples, states and breach events exact.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden");

fn check_inputs_match_fixture(dir: &std::path::Path) {
    let recorded: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/inputs.json")).expect("inputs.json"),
    )
    .expect("json");
    for name in ["inferences.jsonl", "labels.jsonl", "acks.jsonl", "sla.yaml"] {
        let bytes = std::fs::read(dir.join(name)).expect("scenario file");
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            recorded["sha256"][name].as_str(),
            Some(digest.as_str()),
            "{name} differs from the input the reference was computed on: the generator changed; run scripts/make_fixtures.sh"
        );
    }
}

type Key = (i64, String, String, String);

fn key(v: &Value) -> Key {
    (
        millis(&v["event_time"]),
        v["model_id"].as_str().expect("model").to_string(),
        v["objective"].as_str().expect("objective").to_string(),
        segment_key(&v["segment"]),
    )
}

#[test]
fn golden_scenario_matches_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_scenario(dir.path(), &golden_spec());
    check_inputs_match_fixture(dir.path());
    let (_, counts, out) = replay(dir.path(), "out");

    let expected: BTreeMap<Key, Value> = read_jsonl(std::path::Path::new(&format!(
        "{FIXTURES}/expected_metrics.jsonl"
    )))
    .into_iter()
    .map(|v| (key(&v), v))
    .collect();
    let ours: BTreeMap<Key, Value> = read_jsonl(&out.join("metrics.jsonl"))
        .into_iter()
        .map(|v| (key(&v), v))
        .collect();
    assert_eq!(ours.len() as u64, counts.metrics, "one line per snapshot");
    let missing: Vec<&Key> = expected
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<&Key> = ours
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "snapshot sets differ: missing {missing:?}, extra {extra:?}"
    );

    for (k, want) in &expected {
        let got = &ours[k];
        assert_eq!(got["samples"], want["samples"], "samples at {k:?}");
        assert_eq!(
            got["state"], want["state"],
            "state at {k:?}: ours {got}, reference {want}"
        );
        match (got["value"].as_f64(), want["value"].as_f64()) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                let metric = got["metric"].as_str().expect("metric");
                let ok = if metric == "roc_auc" {
                    (g - w).abs() <= 1e-3
                } else if want["hdr"].as_bool() == Some(true) {
                    g >= w - 1e-9 && g <= w * (1.0 + 1.0 / 1024.0) + 1e-9
                } else {
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0)
                };
                assert!(ok, "{metric} at {k:?}: ours {g}, reference {w}");
            }
            (g, w) => panic!("value at {k:?}: ours {g:?}, reference {w:?}"),
        }
    }

    let breach_key = |v: &Value| {
        (
            v["incident_id"].as_str().expect("id").to_string(),
            v["kind"].as_str().expect("kind").to_string(),
            v["severity"].as_str().expect("severity").to_string(),
            v["model_id"].as_str().expect("model").to_string(),
            v["objective"].as_str().expect("objective").to_string(),
            segment_key(&v["segment"]),
            millis(&v["event_time"]),
        )
    };
    let want: Vec<_> = read_jsonl(std::path::Path::new(&format!(
        "{FIXTURES}/expected_breaches.jsonl"
    )))
    .iter()
    .map(breach_key)
    .collect();
    let got: Vec<_> = read_jsonl(&out.join("breaches.jsonl"))
        .iter()
        .map(breach_key)
        .collect();
    assert_eq!(got, want, "breach events differ from the reference");
}

#[test]
fn scripted_incidents_open_and_resolve_at_the_expected_minutes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = golden_spec();
    write_scenario(dir.path(), &spec);
    let (engine, _, out) = replay(dir.path(), "out");
    let breaches = read_jsonl(&out.join("breaches.jsonl"));
    // (model, objective, segment) → (opened minute, resolved minute)
    let mut life: BTreeMap<(String, String, String), (i64, Option<i64>)> = BTreeMap::new();
    for b in &breaches {
        let k = (
            b["model_id"].as_str().expect("model").to_string(),
            b["objective"].as_str().expect("objective").to_string(),
            segment_key(&b["segment"]),
        );
        let m = minute_of(spec.start, &b["event_time"]);
        match b["kind"].as_str() {
            Some("opened") => assert!(
                life.insert(k.clone(), (m, None)).is_none(),
                "{k:?} opened twice"
            ),
            Some("resolved") => life.get_mut(&k).expect("resolved after opened").1 = Some(m),
            _ => {}
        }
    }
    let k = |m: &str, o: &str, s: &str| (m.to_string(), o.to_string(), s.to_string());
    let expect = |key: (String, String, String), open: (i64, i64), resolve: (i64, i64)| {
        let (o, r) = life
            .get(&key)
            .copied()
            .unwrap_or_else(|| panic!("{key:?} never opened; incidents: {life:?}"));
        assert!(
            (open.0..=open.1).contains(&o),
            "{key:?} opened at minute {o}, expected {open:?}"
        );
        let r = r.unwrap_or_else(|| panic!("{key:?} never resolved"));
        assert!(
            (resolve.0..=resolve.1).contains(&r),
            "{key:?} resolved at minute {r}, expected {resolve:?}"
        );
    };
    use slaguard::scenario::{ACCURACY_DROP, AMOUNT_SHIFT, ERROR_BURST, LATENCY_SPIKE};
    // Labels arrive minutes late and windows are 5–15 minutes: allow that much slack.
    expect(
        k("fraud", "accuracy", "region=eu-west"),
        (ACCURACY_DROP.0, ACCURACY_DROP.0 + 15),
        (ACCURACY_DROP.1, ACCURACY_DROP.1 + 20),
    );
    expect(
        k("fraud", "errors", ""),
        (ERROR_BURST.0, ERROR_BURST.0 + 5),
        (ERROR_BURST.1, ERROR_BURST.1 + 10),
    );
    expect(
        k("eta", "p95", ""),
        (LATENCY_SPIKE.0, LATENCY_SPIKE.0 + 3),
        (LATENCY_SPIKE.1, LATENCY_SPIKE.1 + 6),
    );
    // The amount shift lasts to the end: its drift incident opens (a 30-minute window fills
    // with shifted values) and stays open.
    let (drift_opened, drift_resolved) = life[&k("fraud", "amount-drift", "")];
    assert!(
        (AMOUNT_SHIFT..=AMOUNT_SHIFT + 15).contains(&drift_opened),
        "amount-drift opened at minute {drift_opened}"
    );
    assert_eq!(drift_resolved, None);
    // The eu-west drop also shows in the whole-model accuracy and AUC; nothing else fires
    // (the unshifted country feature and the missing-amount rate stay healthy).
    let opened: BTreeSet<_> = life.keys().cloned().collect();
    let allowed: BTreeSet<_> = [
        k("fraud", "accuracy", "region=eu-west"),
        k("fraud", "accuracy", ""),
        k("fraud", "auc", ""),
        k("fraud", "errors", ""),
        k("eta", "p95", ""),
        k("fraud", "amount-drift", ""),
    ]
    .into_iter()
    .collect();
    assert_eq!(opened, allowed);
    assert_eq!(
        engine.stats().incidents_opened,
        engine.stats().incidents_resolved + 1,
        "every incident but the drift resolves"
    );
    // The acknowledgement 20 minutes into the drop reaches the open eu-west incident.
    let acked: Vec<&Value> = breaches
        .iter()
        .filter(|b| b["kind"] == "acknowledged")
        .collect();
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0]["by"], "oncall-risk");
    assert_eq!(
        minute_of(spec.start, &acked[0]["event_time"]),
        ACCURACY_DROP.0 + 20
    );
}

#[test]
fn every_line_is_accounted_for_and_every_bad_line_has_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = golden_spec();
    let mut sink = Vec::new();
    let counts = slaguard::scenario::generate(&spec, &mut sink, &mut Vec::new(), &mut Vec::new())
        .expect("generate");
    write_scenario(dir.path(), &spec);
    let (engine, replayed, out) = replay(dir.path(), "out");
    let dead = read_jsonl(&out.join("dead_letters.jsonl"));
    let s = engine.stats();
    // Lines read = events the engine kept + dead letters: nothing is dropped silently.
    assert_eq!(
        replayed.lines,
        s.inferences + s.labels + (s.acks - s.acks_unmatched) + dead.len() as u64
    );
    assert_eq!(
        s.inferences,
        counts.inferences + counts.duplicate_inferences
    );
    assert_eq!(
        engine.join_stats().duplicate_predictions,
        counts.duplicate_inferences
    );
    assert_eq!(
        engine.join_stats().duplicate_labels,
        counts.duplicate_labels
    );
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for d in &dead {
        *reasons
            .entry(d["reason"].as_str().expect("reason").to_string())
            .or_default() += 1;
        assert!(d["raw"].is_string(), "original line kept: {d}");
        assert!(
            d["line"].as_u64().is_some_and(|l| l > 0),
            "position kept: {d}"
        );
    }
    for code in [
        "not_json",
        "missing_field",
        "bad_timestamp",
        "unknown_model",
        "wrong_type",
        "invalid_value",
        "no_open_incident",
    ] {
        assert!(
            reasons.contains_key(code),
            "no dead letter with reason {code}: {reasons:?}"
        );
    }
    assert_eq!(
        dead.len() as u64,
        counts.bad_lines + 1,
        "every malformed line and the stray ack"
    );
}

#[test]
fn two_replays_are_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_scenario(dir.path(), &golden_spec());
    let (_, _, a) = replay(dir.path(), "a");
    let (_, _, b) = replay(dir.path(), "b");
    for name in [
        "metrics.jsonl",
        "breaches.jsonl",
        "escalations.jsonl",
        "dead_letters.jsonl",
    ] {
        let (x, y) = (
            std::fs::read(a.join(name)).expect("a"),
            std::fs::read(b.join(name)).expect("b"),
        );
        assert!(
            x == y,
            "{name} differs between two replays of the same input"
        );
    }
}

#[test]
fn escalations_follow_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = golden_spec();
    write_scenario(dir.path(), &spec);
    let (_, counts, out) = replay(dir.path(), "out");
    let events = read_jsonl(&out.join("escalations.jsonl"));
    assert_eq!(events.len() as u64, counts.escalations);
    let find = |objective: &str, segment: &str, action: &str, level: u64| -> Vec<i64> {
        events
            .iter()
            .filter(|e| {
                e["objective"] == objective
                    && segment_key(&e["segment"]) == segment
                    && e["pagerduty"]["event_action"] == action
                    && e["level"] == level
            })
            .map(|e| minute_of(spec.start, &e["event_time"]))
            .collect()
    };
    let breaches = read_jsonl(&out.join("breaches.jsonl"));
    let opened = |objective: &str, segment: &str| -> i64 {
        breaches
            .iter()
            .find(|b| {
                b["kind"] == "opened"
                    && b["objective"] == objective
                    && segment_key(&b["segment"]) == segment
            })
            .map(|b| minute_of(spec.start, &b["event_time"]))
            .expect("opened")
    };
    // Unacknowledged: level 0 when it opens, level 1 exactly 15 minutes later.
    let o = opened("accuracy", "");
    assert_eq!(find("accuracy", "", "trigger", 0), vec![o]);
    assert_eq!(find("accuracy", "", "trigger", 1), vec![o + 15]);
    // Acknowledged 14 minutes in: the acknowledgement goes to the pager, level 1 never fires.
    let o = opened("accuracy", "region=eu-west");
    assert_eq!(find("accuracy", "region=eu-west", "trigger", 0), vec![o]);
    assert_eq!(
        find("accuracy", "region=eu-west", "acknowledge", 0).len(),
        1
    );
    assert!(find("accuracy", "region=eu-west", "trigger", 1).is_empty());
    // Resolved before 15 minutes: no level 1, a resolve for the pager.
    assert!(find("errors", "", "trigger", 1).is_empty());
    assert_eq!(find("errors", "", "resolve", 0).len(), 1);
    for e in &events {
        assert_eq!(
            e["pagerduty"]["dedup_key"], e["incident_id"],
            "one PagerDuty incident per slaguard incident"
        );
        assert_eq!(e["pagerduty"]["payload"]["source"], "slaguard");
        assert!(e["notify"].as_array().is_some_and(|n| !n.is_empty()));
    }
    // eta has no policy: its latency incident pages nobody.
    assert!(events.iter().all(|e| e["model_id"] == "fraud"));
}
