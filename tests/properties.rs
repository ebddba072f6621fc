//! Property tests of the core's algebra: merging summaries equals summarising the union,
//! a sliding window equals a fresh merge of its intervals, and an engine snapshotted and
//! restored at any point of the input produces exactly the outputs of an uninterrupted run.

mod common;

use std::sync::Arc;

use proptest::prelude::*;
use slaguard::engine::Engine;
use slaguard::output::Output;
use slaguard::replay::{MergedInputs, ReplayCounts, Step};
use slaguard::scenario::ScenarioSpec;
use slaguard::summary::{
    BinarySummary, DriftSummary, LabelSummary, LatencySummary, MulticlassSummary, QualityCounts,
    QualitySummary, RegressionSummary, ReliabilitySummary, Summary,
};
use slaguard::window::SlidingWindow;

#[derive(Debug, Clone)]
struct Outcome {
    part: usize,
    truth: bool,
    score: f64,
    class: (u32, u32),
    value: (f64, f64),
    latency: f64,
    ok: bool,
    delay: i64,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    (
        0..5usize,
        any::<bool>(),
        0.0..=1.0f64,
        (0..6u32, 0..6u32),
        (-1e4..1e4f64, -1e4..1e4f64),
        0.0..1e5f64,
        any::<bool>(),
        -5_000..5_000_000i64,
    )
        .prop_map(
            |(part, truth, score, class, value, latency, ok, delay)| Outcome {
                part,
                truth,
                score,
                class,
                value,
                latency,
                ok,
                delay,
            },
        )
}

/// Records every outcome into its part and into `all`; checks merge(parts) == all and that
/// unmerging a part from the merge equals the merge of the others.
fn check_merge<S: Summary + PartialEq + std::fmt::Debug>(
    events: &[Outcome],
    record: impl Fn(&mut S, &Outcome),
) {
    let mut parts = vec![S::default(); 5];
    let mut all = S::default();
    for e in events {
        record(&mut parts[e.part], e);
        record(&mut all, e);
    }
    let mut merged = S::default();
    for p in &parts {
        merged.merge(p);
    }
    assert_eq!(merged, all);
    merged.unmerge(&parts[0]);
    let mut rest = S::default();
    for p in &parts[1..] {
        rest.merge(p);
    }
    assert_eq!(merged, rest);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(11),
        ..ProptestConfig::default()
    })]

    #[test]
    fn merging_summaries_equals_summarising_the_union(events in prop::collection::vec(outcome(), 0..300)) {
        check_merge::<BinarySummary>(&events, |s, e| s.record(e.truth, e.score >= 0.5, Some(e.score)));
        check_merge::<MulticlassSummary>(&events, |s, e| s.record(e.class.0, e.class.1));
        check_merge::<RegressionSummary>(&events, |s, e| s.record(e.value.0, e.value.1));
        check_merge::<LatencySummary>(&events, |s, e| s.record(e.latency));
        check_merge::<ReliabilitySummary>(&events, |s, e| s.record(e.ok));
        check_merge::<LabelSummary>(&events, |s, e| if e.ok { s.record_joined(e.delay) } else { s.record_expired() });
        check_merge::<DriftSummary>(&events, |s, e| s.record(e.class.0 as usize));
        check_merge::<QualitySummary>(&events, |s, e| {
            s.record(QualityCounts { units: 2, missing: u32::from(e.ok), violations: e.class.1 % 2, range_checked: 1, out_of_range: u32::from(e.truth) })
        });
    }

    #[test]
    fn a_sliding_window_is_the_merge_of_its_intervals(
        len in 1i64..8,
        // (interval, value, instant at which it arrives); arrivals may be late
        events in prop::collection::vec((0i64..40, 0.0..1000.0f64, 0i64..45), 0..200),
    ) {
        let mut w: SlidingWindow<LatencySummary> = SlidingWindow::new(len);
        let mut accepted: Vec<(i64, f64)> = Vec::new();
        for n in 0..45i64 {
            for &(k, v, _) in events.iter().filter(|e| e.2 == n) {
                if w.record(k, |s| s.record(v)) == slaguard::window::Recorded::Stored {
                    accepted.push((k, v));
                } else {
                    prop_assert!(k < n - len, "only intervals outside every future window are refused");
                }
            }
            let got = w.advance_to(n).clone();
            let mut want = LatencySummary::default();
            for &(_, v) in accepted.iter().filter(|(k, _)| *k >= n - len && *k < n) {
                want.record(v);
            }
            prop_assert_eq!(got, want);
        }
    }
}

/// Drives `engine` over the merged inputs, snapshotting and restoring at step `split`.
fn run(dir: &std::path::Path, split: Option<usize>) -> Vec<Output> {
    let cfg = common::load_config(&dir.join("sla.yaml"));
    let mut engine = Engine::new(Arc::clone(&cfg));
    let mut merged =
        MergedInputs::open(&common::inputs(dir), &cfg, || engine.add_source()).expect("open");
    let (mut counts, mut dead) = (ReplayCounts::default(), Vec::new());
    let mut outputs = Vec::new();
    let mut step_no = 0;
    loop {
        if Some(step_no) == split {
            let snap = engine.snapshot().expect("snapshot");
            engine = Engine::restore(Arc::clone(&cfg), &snap).expect("restore");
        }
        step_no += 1;
        let step = merged.next(&mut counts, &mut dead).expect("read");
        outputs.extend(dead.drain(..).map(Output::DeadLetter));
        match step {
            None => break,
            Some(Step::Ended(s)) => engine.end_source(s),
            Some(Step::Event(i)) => {
                outputs.extend(merged.apply(&mut engine, i).map(Output::DeadLetter))
            }
        }
        while let Some(o) = engine.poll_output() {
            outputs.push(o);
        }
    }
    engine.finish();
    while let Some(o) = engine.poll_output() {
        outputs.push(o);
    }
    outputs
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        rng_seed: proptest::test_runner::RngSeed::Fixed(13),
        ..ProptestConfig::default()
    })]

    #[test]
    fn snapshot_and_restore_at_any_point_changes_nothing(seed in 0u64..1000, split_frac in 0.0..1.0f64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = ScenarioSpec { duration_ms: 75 * 60_000, rate: 0.5, seed, bad_lines: true, start: ScenarioSpec::default().start + 50 * 60_000 };
        common::write_scenario(dir.path(), &spec);
        let whole = run(dir.path(), None);
        prop_assert!(whole.len() > 100);
        let total_steps = 75 * 60 + 75 * 60 + 10;
        let split = (split_frac * total_steps as f64) as usize;
        let resumed = run(dir.path(), Some(split));
        prop_assert_eq!(whole.len(), resumed.len());
        prop_assert!(whole == resumed, "outputs differ after a snapshot at step {}", split);
    }
}
