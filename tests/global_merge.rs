//! Global metrics from partial summaries: the golden scenario split into four inference
//! and four label partitions, spread over one, two or three shards in random ways and fed
//! in adversarial orders, with every shard's batches merged by one evaluator, gives
//! exactly the snapshots and incidents of a single engine reading everything.

mod common;

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use slaguard::decode;
use slaguard::engine::Engine;
use slaguard::output::Output;
use slaguard::watermark::SourceId;

#[test]
fn shards_and_an_evaluator_equal_a_single_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = common::write_scenario(dir.path(), &common::golden_spec());
    // The partitions carry no acks, nor does the file replay they are compared with.
    let (expected_metrics, expected_breaches) = common::replay_without_acks(dir.path(), &inputs);
    let cfg = common::load_config(&dir.path().join("sla.yaml"));
    const P: usize = 4;
    let parts = common::golden_partitions(&inputs, P);

    for (seed, shards) in [(0u64, 1usize), (1, 2), (2, 2), (3, 3), (4, 3)] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // Co-partitioned pairs move together; any pair may land on any shard.
        let owner: Vec<usize> = (0..P).map(|_| rng.random_range(0..shards)).collect();
        let mut shard_engines: Vec<Engine> = (0..shards)
            .map(|_| Engine::shard(Arc::clone(&cfg)))
            .collect();
        let mut evaluator = Engine::new(Arc::clone(&cfg));
        // Per partition: (shard, the shard's source); per shard: its sources' evaluator ids.
        let mut at: Vec<(usize, SourceId)> = Vec::new();
        let mut mapping: Vec<Vec<SourceId>> = vec![Vec::new(); shards];
        for part in 0..2 * P {
            let shard = owner[part % P];
            let local = shard_engines[shard].add_source();
            at.push((shard, local));
            let global = evaluator.add_source();
            mapping[shard].resize(local.0 + 1, global);
            mapping[shard][local.0] = global;
        }
        let max_batch = if seed % 2 == 0 { 300 } else { 20_000 };
        let mut pos = [0usize; 2 * P];
        let mut outputs = Vec::new();
        loop {
            let live: Vec<usize> = (0..2 * P).filter(|&i| pos[i] < parts[i].len()).collect();
            let Some(&i) = live.get(rng.random_range(0..live.len().max(1))) else {
                break;
            };
            let (shard, local) = at[i];
            let n = rng.random_range(1..max_batch);
            for e in parts[i].iter().skip(pos[i]).take(n) {
                let _ = shard_engines[shard].handle(local, e.clone());
            }
            pos[i] = (pos[i] + n).min(parts[i].len());
            if pos[i] == parts[i].len() {
                shard_engines[shard].end_source(local);
            }
            for batch in shard_engines[shard].take_batches() {
                evaluator.apply_batch(&mapping[shard], batch);
            }
            outputs.extend(std::iter::from_fn(|| evaluator.poll_output()));
        }
        evaluator.finish();
        outputs.extend(std::iter::from_fn(|| evaluator.poll_output()));
        let metrics: Vec<String> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Metric(m) => serde_json::to_string(m).ok(),
                _ => None,
            })
            .collect();
        let breaches: Vec<String> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Breach(b) => serde_json::to_string(b).ok(),
                _ => None,
            })
            .collect();
        assert_eq!(
            metrics.len(),
            expected_metrics.len(),
            "seed {seed}, {shards} shards"
        );
        for (a, b) in metrics.iter().zip(&expected_metrics) {
            assert_eq!(a, b, "seed {seed}, {shards} shards: snapshot differs");
        }
        assert_eq!(breaches, expected_breaches, "seed {seed}, {shards} shards");
    }
}

#[test]
fn a_shard_ends_its_batch_at_each_instant_its_watermark_reaches() {
    let yaml = r#"
sla_version: "shard-1"
defaults: {evaluate_every: 1m, allowed_lateness: 0s}
models:
  - model_id: m
    task: regression
    objectives:
      - {name: availability, metric: availability, op: ">=", target: 0.9, window: 1m}
"#;
    let cfg = Arc::new(slaguard::config::parse(yaml, "t.yaml", None).expect("valid"));
    let t0 = 1_793_534_400_000i64;
    let request = |id: &str, seconds: i64| {
        decode::inference(
            format!(r#"{{"request_id":"{id}","model_id":"m","timestamp":{},"status":"ok","prediction":{{"value":1}}}}"#, t0 + seconds * 1000)
                .as_bytes(),
        )
        .expect("valid")
    };
    let mut shard = Engine::shard(Arc::clone(&cfg));
    let source = shard.add_source();
    // 10 s and 50 s; then 70 s takes the watermark past the instant 60 s; then a request
    // from 40 s arrives late.
    for (id, s) in [("a", 10), ("b", 50), ("c", 70), ("late", 40)] {
        shard.handle_inference(source, &request(id, s)).expect("ok");
    }
    let batches = shard.take_batches();
    let requests = |b: &slaguard::partial::PartialBatch| -> u64 {
        b.items
            .iter()
            .map(|i| match &i.summary {
                slaguard::series::AnySummary::Reliability(r) => r.total,
                _ => 0,
            })
            .sum()
    };
    let counts: Vec<u64> = batches.iter().map(requests).collect();
    assert_eq!(counts, vec![3, 1], "the late request starts a new batch");
    assert_eq!(
        batches[0].progress[0].max_time,
        Some(t0 + 70_000),
        "the batch ends where the watermark reached the instant"
    );
    // The evaluator evaluates 60 s on the first batch, as a single engine would before the
    // late request: two requests in [0 s, 60 s); the late one misses that window.
    let mut evaluator = Engine::new(cfg);
    let global = evaluator.add_source();
    for b in batches {
        evaluator.apply_batch(&[global], b);
    }
    let first = std::iter::from_fn(|| evaluator.poll_output())
        .find_map(|o| match o {
            Output::Metric(m) => Some(m),
            _ => None,
        })
        .expect("a snapshot");
    assert_eq!(first.samples, 2);
}
