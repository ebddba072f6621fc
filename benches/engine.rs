//! Hot paths of the engine: decoding, join, summary updates, window advance, metric
//! evaluation, a whole file replay, and the checkpoint and hand-over of a million pending
//! predictions.
//! Run with `cargo bench --bench engine`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use slaguard::decode;
use slaguard::join::{JoinState, RequestKey};
use slaguard::metric::Metric;
use slaguard::replay::{replay_files, ReplayInputs};
use slaguard::scenario::{self, ScenarioSpec};
use slaguard::summary::{BinarySummary, LatencySummary};
use slaguard::window::SlidingWindow;

const LINE: &[u8] = br#"{"request_id":"f-123456","model_id":"fraud","model_version":"2.3.0","timestamp":"2026-11-01T12:00:00.123Z","latency_ms":41.27,"status":"ok","prediction":{"score":0.231877},"attributes":{"region":"eu-west"}}"#;

fn decode_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("inference_json", |b| {
        b.iter(|| decode::inference(black_box(LINE)))
    });
    // The same event as a bare Avro datum (schemas/inference.avsc: epoch-millisecond
    // timestamp, empty maps where the JSON leaves a field out).
    let codecs = slaguard::avro::Codecs::new().expect("schemas");
    let mut json: serde_json::Value = serde_json::from_slice(LINE).expect("JSON");
    json["timestamp"] = slaguard::time::parse_rfc3339("2026-11-01T12:00:00.123Z")
        .expect("time")
        .into();
    json["features"] = serde_json::json!({});
    let avro =
        slaguard::avro::Codecs::encode(codecs.inference, &json, slaguard::avro::Format::Avro)
            .expect("encodes");
    assert!(codecs
        .inference(&avro, slaguard::avro::Format::Avro)
        .is_ok());
    g.bench_function("inference_avro", |b| {
        b.iter(|| codecs.inference(black_box(&avro), slaguard::avro::Format::Avro))
    });
    g.finish();
}

fn join_bench(c: &mut Criterion) {
    let ids: Vec<RequestKey> = (0..10_000)
        .map(|i| RequestKey::of(&format!("r-{i}")))
        .collect();
    c.bench_function("join/insert_then_match_10k", |b| {
        b.iter_batched(
            || JoinState::<u32, u32>::new(1_000_000),
            |mut j| {
                for (i, id) in ids.iter().enumerate() {
                    j.insert_prediction(0, *id, i as i64, 3_600_000, 1, 0);
                }
                for (i, id) in ids.iter().enumerate() {
                    black_box(j.insert_label(0, *id, i as i64 + 1000, 60_000, 1, 0));
                }
                j
            },
            BatchSize::SmallInput,
        )
    });
}

fn summary_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("summary");
    g.throughput(Throughput::Elements(1));
    let mut s = BinarySummary::default();
    let mut x = 0.1f64;
    g.bench_function("binary_record", |b| {
        b.iter(|| {
            x = (x * 1.618_033).fract();
            s.record(x > 0.3, x >= 0.5, Some(x));
        })
    });
    let mut l = LatencySummary::default();
    g.bench_function("latency_record", |b| {
        b.iter(|| {
            x = (x * 1.618_033).fract();
            l.record(x * 400.0);
        })
    });
    g.finish();
}

fn window_bench(c: &mut Criterion) {
    // A 1h window of 1m intervals holding `per_interval` latencies each. Evaluating an
    // instant (p99 of the running aggregate) costs the same whatever the volume; moving
    // the window on by one instant merges the interval that enters and unmerges the one
    // that leaves, a cost per event of those intervals, whatever the window's length.
    for per_interval in [20u64, 20_000] {
        let mut w: SlidingWindow<LatencySummary> = SlidingWindow::new(60);
        let mut x = 0.1f64;
        for k in 0..200 {
            for _ in 0..per_interval {
                x = (x * 1.618_033).fract();
                w.record(k, |s| s.record(x * 400.0));
            }
        }
        w.advance_to(100);
        let aggregate = w.clone().advance_to(101).clone();
        c.bench_function(
            &format!("window/p99_1h_{}_events", per_interval * 60),
            |b| b.iter(|| black_box(aggregate.measure(Metric::LatencyP99))),
        );
        c.bench_function(
            &format!("window/advance_and_p99_1h_{}_events", per_interval * 60),
            |b| {
                b.iter_batched(
                    || w.clone(),
                    |mut w| black_box(w.advance_to(101).measure(Metric::LatencyP99)),
                    BatchSize::LargeInput,
                )
            },
        );
    }
    let mut s = BinarySummary::default();
    let mut x = 0.1f64;
    for _ in 0..1_000_000 {
        x = (x * 1.618_033).fract();
        s.record(x > 0.3, x >= 0.5, Some(x));
    }
    c.bench_function("metric/roc_auc_1m_outcomes", |b| {
        b.iter(|| black_box(s.measure(Metric::RocAuc)))
    });
}

fn replay_bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = ScenarioSpec {
        duration_ms: 3_600_000,
        rate: 10.0,
        ..ScenarioSpec::default()
    };
    let counts = scenario::write_dir(&spec, dir.path()).expect("scenario");
    let cfg = Arc::new(slaguard::config::load(&dir.path().join("sla.yaml")).expect("valid"));
    let inputs = ReplayInputs {
        inferences: dir.path().join("inferences.jsonl"),
        labels: dir.path().join("labels.jsonl"),
        acks: None,
    };
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(counts.inferences + counts.labels));
    g.bench_function("file_1h_two_models", |b| {
        b.iter(|| {
            replay_files(
                Arc::clone(&cfg),
                &inputs,
                &dir.path().join("out"),
                u64::MAX,
                |_| {},
            )
            .expect("replay")
        })
    });
    g.finish();
}

/// A restart restores the engine from its checkpoint: how long for a million predictions
/// waiting for their labels (a day of labels at ~12 requests/s), and how large it is.
fn checkpoint_bench(c: &mut Criterion) {
    let yaml = r#"
sla_version: "pending-1"
defaults: {evaluate_every: 1m, label_ttl: 7d, max_pending: 2000000}
models:
  - model_id: fraud
    task: binary_classification
    segment_by: [region]
    objectives:
      - {name: accuracy, metric: accuracy, op: ">=", target: 0.9, window: 1h}
"#;
    let cfg = Arc::new(slaguard::config::parse(yaml, "bench.yaml", None).expect("valid"));
    let mut engine = slaguard::engine::Engine::new(Arc::clone(&cfg));
    let source = engine.add_source();
    let t0 = 1_793_534_400_000i64;
    for i in 0..1_000_000i64 {
        let line = format!(
            r#"{{"request_id":"req-{i:09}","model_id":"fraud","timestamp":{},"prediction":{{"score":0.7}},"attributes":{{"region":"eu-west"}}}}"#,
            t0 + i * 80
        );
        let ev = decode::inference(line.as_bytes()).expect("valid");
        engine.handle_inference(source, &ev).expect("accepted");
        while engine.poll_output().is_some() {}
    }
    assert_eq!(engine.pending_predictions(), 1_000_000);
    let snapshot = engine.snapshot().expect("snapshot");
    eprintln!(
        "checkpoint of 1,000,000 pending predictions: {} MB",
        snapshot.len() / 1_000_000
    );
    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10);
    g.bench_function("snapshot_1m_pending", |b| {
        b.iter(|| black_box(engine.snapshot().expect("snapshot")))
    });
    g.bench_function("restore_1m_pending", |b| {
        b.iter(|| {
            slaguard::engine::Engine::restore(Arc::clone(&cfg), black_box(&snapshot))
                .expect("restore")
        })
    });
    // A partition moving to another instance: its join state is snapshotted, written
    // out, read back and imported by the new owner.
    let handed = engine.export_sources(&[source]).to_bytes().expect("bytes");
    eprintln!(
        "join-state snapshot of 1,000,000 pending predictions: {} MB",
        handed.len() / 1_000_000
    );
    g.bench_function("hand_over_1m_pending", |b| {
        b.iter(|| {
            let bytes = engine.export_sources(&[source]).to_bytes().expect("bytes");
            let state = slaguard::partial::PartitionState::from_bytes(&bytes).expect("read");
            let mut to = slaguard::engine::Engine::shard(Arc::clone(&cfg));
            let s = to.add_source();
            to.import_sources(&[s], state);
            assert_eq!(to.pending_predictions(), 1_000_000);
            to
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    decode_bench,
    join_bench,
    summary_bench,
    window_bench,
    replay_bench,
    checkpoint_bench
);
criterion_main!(benches);
