//! Model-based test of the incident and escalation machine: random streams of per-minute
//! availability, random acknowledgements and resolutions, and random objective and policy
//! settings drive the engine and a small reference model written straight from SPEC §3;
//! every breach, escalation and rejected ack agrees.

mod common;

use std::collections::VecDeque;

use common::stream::{run, Input, MINUTE, T0};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Settings {
    warn_at: Option<f64>,
    resolve_at: Option<f64>,
    for_count: u32,
    clear_for: u32,
    min_samples: u64,
    /// Minutes after opening of levels 1 and 2 (level 0 is at 0).
    afters: [i64; 2],
    repeat: u32,
    ack_timeout: Option<i64>,
}

#[derive(Debug, Clone)]
struct Case {
    settings: Settings,
    /// Per minute: requests and how many of them failed.
    minutes: Vec<(u32, u32)>,
    /// (minute, second, resolve?) of each ack.
    acks: Vec<(usize, u32, bool)>,
}

const TARGET: f64 = 0.8;

/// Fixed, so that every run tries the same cases.
const SEED: u64 = 5;

fn yaml(s: &Settings) -> String {
    let mut objective = format!(
        "{{name: availability, metric: availability, op: \">=\", target: {TARGET}, window: 1m, for: {}, clear_for: {}, min_samples: {}",
        s.for_count, s.clear_for, s.min_samples
    );
    if let Some(w) = s.warn_at {
        objective += &format!(", warn_at: {w}");
    }
    if let Some(r) = s.resolve_at {
        objective += &format!(", resolve_at: {r}");
    }
    objective += "}";
    let timeout = s
        .ack_timeout
        .map(|t| format!("\n    ack_timeout: {t}m"))
        .unwrap_or_default();
    format!(
        r#"
sla_version: "model-1"
defaults: {{evaluate_every: 1m, allowed_lateness: 0s}}
models:
  - model_id: m
    task: regression
    escalation: page
    objectives:
      - {objective}
escalation_policies:
  page:
    repeat: {}{timeout}
    levels:
      - {{after: 0m, notify: ["l0"]}}
      - {{after: {}m, notify: ["l1"]}}
      - {{after: {}m, notify: ["l2"]}}
"#,
        s.repeat, s.afters[0], s.afters[1]
    )
}

fn inputs(case: &Case) -> Vec<Input> {
    let mut out = Vec::new();
    for (k, &(n, failed)) in case.minutes.iter().enumerate() {
        let start = T0 + k as i64 * MINUTE;
        let mut acks: Vec<&(usize, u32, bool)> =
            case.acks.iter().filter(|(m, _, _)| *m == k).collect();
        acks.sort_by_key(|(_, sec, _)| *sec);
        let mut acks: VecDeque<_> = acks.into();
        for j in 0..n {
            let time = start + i64::from(j) * (MINUTE / i64::from(n));
            while let Some(&&(_, sec, resolve)) = acks.front() {
                if start + i64::from(sec) * 1000 > time {
                    break;
                }
                out.push(ack(start + i64::from(sec) * 1000, resolve));
                acks.pop_front();
            }
            out.push(Input::Request {
                time,
                ok: j >= failed,
            });
        }
        for &&(_, sec, resolve) in &acks {
            out.push(ack(start + i64::from(sec) * 1000, resolve));
        }
    }
    out
}

fn ack(t: i64, resolve: bool) -> Input {
    let action = if resolve { "resolve" } else { "acknowledge" };
    Input::Ack(format!(
        r#"{{"model_id":"m","objective":"availability","action":"{action}","by":"p","timestamp":{t}}}"#
    ))
}

/// An output both sides produce: (time, what, severity or action, detail).
type Out = (i64, &'static str, String, i64);

struct Incident {
    opened_at: i64,
    severity: &'static str,
    acknowledged: bool,
    /// Escalation: last level fired, its cycle, the base time, the next due time.
    level: usize,
    cycle: u32,
    base: i64,
    due: Option<i64>,
}

/// The reference: SPEC §3 read literally, one minute at a time.
fn reference(case: &Case, last_instant: i64) -> Vec<Out> {
    let s = &case.settings;
    let afters = [0, s.afters[0] * MINUTE, s.afters[1] * MINUTE];
    let period = afters[2] + (afters[1] - afters[0]);
    let following = |level: usize, cycle: u32| -> Option<(usize, u32)> {
        if level + 1 < 3 {
            Some((level + 1, cycle))
        } else if cycle < s.repeat {
            Some((0, cycle + 1))
        } else {
            None
        }
    };
    let due_of =
        |base: i64, (level, cycle): (usize, u32)| base + i64::from(cycle) * period + afters[level];
    let mut out: Vec<Out> = Vec::new();
    let mut open: Option<Incident> = None;
    let (mut breaching, mut healthy) = (0u32, 0u32);
    let mut acks: Vec<(i64, bool)> = case
        .acks
        .iter()
        .map(|&(m, sec, r)| (T0 + m as i64 * MINUTE + i64::from(sec) * 1000, r))
        .collect();
    // Acks at the same time apply in the order they were read.
    acks.sort_by_key(|a| a.0);
    let mut acks: VecDeque<(i64, bool)> = acks.into();
    for k in 0..case.minutes.len() {
        let at = T0 + (k as i64 + 1) * MINUTE;
        if at > last_instant {
            break;
        }
        // Acks and escalation deadlines before the instant, in time order.
        loop {
            let next_ack = acks.front().map(|a| a.0).filter(|t| *t < at);
            let next_due = open.as_ref().and_then(|i| i.due).filter(|t| *t < at);
            match (next_ack, next_due) {
                (Some(t), d) if d.is_none_or(|d| t <= d) => {
                    let (_, resolve) = acks.pop_front().expect("ack");
                    match open.as_mut() {
                        None => out.push((t, "dead_letter", String::new(), 0)),
                        Some(i) if resolve => {
                            out.push((t, "resolved", i.severity.into(), i.opened_at));
                            out.push((t, "resolve", i.level.to_string(), i.opened_at));
                            open = None;
                            breaching = 0;
                            healthy = 0;
                        }
                        Some(i) if i.acknowledged => {}
                        Some(i) => {
                            i.acknowledged = true;
                            out.push((t, "acknowledged", i.severity.into(), i.opened_at));
                            out.push((t, "acknowledge", i.level.to_string(), i.opened_at));
                            i.due = None;
                            if let Some(timeout) = s.ack_timeout {
                                if let Some(next) = following(i.level, i.cycle) {
                                    let resume = t + timeout * MINUTE;
                                    i.base = resume - (due_of(0, next));
                                    i.due = Some(resume);
                                }
                            }
                        }
                    }
                }
                (_, Some(d)) => {
                    let i = open.as_mut().expect("open");
                    let (level, cycle) = following(i.level, i.cycle).expect("due level");
                    i.level = level;
                    i.cycle = cycle;
                    i.due = following(level, cycle).map(|n| due_of(i.base, n));
                    out.push((d, "trigger", level.to_string(), i.opened_at));
                }
                _ => break,
            }
        }
        // The instant: availability over the minute before it.
        let (n, failed) = case.minutes[k];
        let value = (n > 0).then(|| f64::from(n - failed) / f64::from(n));
        let state = match value {
            Some(v) if u64::from(n) >= s.min_samples => {
                if v < TARGET {
                    Some("critical")
                } else if s.warn_at.is_some_and(|w| v < w) {
                    Some("warning")
                } else {
                    Some("ok")
                }
            }
            _ => None,
        };
        let Some(state) = state else {
            breaching = 0;
            healthy = 0;
            continue;
        };
        match open.as_mut() {
            None if state != "ok" => {
                breaching += 1;
                if breaching >= s.for_count {
                    breaching = 0;
                    healthy = 0;
                    out.push((at, "opened", state.into(), at));
                    out.push((at, "trigger", "0".into(), at));
                    open = Some(Incident {
                        opened_at: at,
                        severity: state,
                        acknowledged: false,
                        level: 0,
                        cycle: 0,
                        base: at,
                        due: following(0, 0).map(|n| due_of(at, n)),
                    });
                }
            }
            None => breaching = 0,
            Some(i) => {
                let recovered = state == "ok"
                    && match (s.resolve_at, value) {
                        (Some(r), Some(v)) => v >= r,
                        _ => true,
                    };
                if recovered {
                    healthy += 1;
                    if healthy >= s.clear_for {
                        out.push((at, "resolved", i.severity.into(), i.opened_at));
                        out.push((at, "resolve", i.level.to_string(), i.opened_at));
                        open = None;
                        healthy = 0;
                        breaching = 0;
                    }
                } else {
                    healthy = 0;
                    if state != "ok" && state != i.severity {
                        i.severity = state;
                        out.push((at, "severity_changed", state.into(), i.opened_at));
                    }
                }
            }
        }
    }
    out
}

fn engine_outputs(case: &Case, until: i64) -> Vec<Out> {
    let got = run(&yaml(&case.settings), inputs(case));
    let time = |t: &str| slaguard::time::parse_rfc3339(t).expect("time");
    let mut out: Vec<Out> = Vec::new();
    for b in &got.breaches {
        let kind = match b.kind {
            slaguard::output::BreachKind::Opened => "opened",
            slaguard::output::BreachKind::SeverityChanged => "severity_changed",
            slaguard::output::BreachKind::Resolved => "resolved",
            slaguard::output::BreachKind::Acknowledged => "acknowledged",
        };
        out.push((
            time(&b.event_time),
            kind,
            b.severity.name().to_string(),
            time(&b.opened_at),
        ));
    }
    for e in &got.escalations {
        let opened = e.pagerduty.payload.custom_details["opened_at"]
            .as_str()
            .map(time)
            .expect("opened_at");
        out.push((
            time(&e.event_time),
            e.pagerduty.event_action,
            e.level.to_string(),
            opened,
        ));
    }
    for d in &got.dead_letters {
        let v: serde_json::Value = serde_json::from_slice(&d.origin.raw).expect("ack json");
        out.push((
            v["timestamp"].as_i64().expect("time"),
            "dead_letter",
            String::new(),
            0,
        ));
    }
    out.retain(|o| o.0 < until);
    out
}

fn sorted(mut v: Vec<Out>) -> Vec<Out> {
    v.sort();
    v
}

fn case() -> impl Strategy<Value = Case> {
    let settings = (
        prop::option::of(Just(0.9)),
        prop::option::of(Just(0.95)),
        1u32..=3,
        1u32..=3,
        prop::sample::select(vec![1u64, 4]),
        (1i64..=5, 1i64..=5),
        0u32..=2,
        prop::option::of(2i64..=6),
    )
        .prop_map(
            |(warn_at, resolve_at, for_count, clear_for, min_samples, (a, b), repeat, timeout)| {
                Settings {
                    warn_at,
                    resolve_at,
                    for_count,
                    clear_for,
                    min_samples,
                    afters: [a, a + b],
                    repeat,
                    ack_timeout: timeout,
                }
            },
        );
    // Mostly healthy minutes, some bad, some thin; the first minute always has traffic.
    let minute = prop_oneof![
        4 => (5u32..=10).prop_map(|n| (n, 0)),
        2 => (5u32..=10).prop_flat_map(|n| (Just(n), 0..=n)),
        1 => (0u32..=3).prop_map(|n| (n, n / 2)),
    ];
    (
        settings,
        prop::collection::vec(minute, 20..90),
        prop::collection::vec((0usize..90, 1u32..59, prop::bool::weighted(0.3)), 0..8),
    )
        .prop_map(|(settings, mut minutes, acks)| {
            minutes[0].0 = minutes[0].0.max(5);
            let len = minutes.len();
            Case {
                settings,
                minutes,
                acks: acks.into_iter().filter(|a| a.0 + 1 < len).collect(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        rng_seed: proptest::test_runner::RngSeed::Fixed(SEED),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_engine_agrees_with_the_reference_model(case in case()) {
        // The last instant evaluated closes the minute before the last one with traffic.
        let last_minute = case.minutes.iter().rposition(|m| m.0 > 0).expect("traffic");
        let last_instant = T0 + last_minute as i64 * MINUTE;
        let mut want = reference(&case, last_instant);
        want.retain(|o| o.0 < last_instant);
        let want = sorted(want);
        let got = sorted(engine_outputs(&case, last_instant));
        prop_assert_eq!(got, want, "settings {:?}", case.settings);
    }
}
