//! The outputs do not depend on how input partitions interleave: the golden scenario split
//! into four inference and four label partitions (by request_id, as Kafka co-partitions
//! them) and fed in adversarial orders — whole partitions far ahead of others, tiny and
//! huge batches — gives byte-identical snapshots and breach events to the file replay.

mod common;

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use slaguard::engine::Engine;
use slaguard::output::Output;

#[test]
fn partition_interleaving_does_not_change_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = common::write_scenario(dir.path(), &common::golden_spec());
    // The partitions carry no acks, nor does the file replay they are compared with.
    let (expected_metrics, expected_breaches) = common::replay_without_acks(dir.path(), &inputs);
    let cfg = common::load_config(&dir.path().join("sla.yaml"));
    const P: usize = 4;
    let parts = common::golden_partitions(&inputs, P);
    for seed in 0..4u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut engine = Engine::new(Arc::clone(&cfg));
        let sources: Vec<_> = (0..2 * P).map(|_| engine.add_source()).collect();
        let mut pos = [0usize; 2 * P];
        let mut outputs = Vec::new();
        // Seeds 0 and 1: small batches; 2 and 3: batches of up to 30 000 events, so one
        // partition runs hours of event time ahead of the others.
        let max_batch = if seed < 2 { 200 } else { 30_000 };
        loop {
            let live: Vec<usize> = (0..2 * P).filter(|&i| pos[i] < parts[i].len()).collect();
            let Some(&i) = live.get(rng.random_range(0..live.len().max(1))) else {
                break;
            };
            let n = rng.random_range(1..max_batch);
            for e in parts[i].iter().skip(pos[i]).take(n) {
                let _ = engine.handle(sources[i], e.clone());
            }
            pos[i] = (pos[i] + n).min(parts[i].len());
            if pos[i] == parts[i].len() {
                engine.end_source(sources[i]);
            }
            while let Some(o) = engine.poll_output() {
                outputs.push(o);
            }
        }
        engine.finish();
        outputs.extend(std::iter::from_fn(|| engine.poll_output()));
        let metrics: Vec<String> = outputs
            .iter()
            .filter_map(|o| {
                if let Output::Metric(m) = o {
                    serde_json::to_string(m).ok()
                } else {
                    None
                }
            })
            .collect();
        let breaches: Vec<String> = outputs
            .iter()
            .filter_map(|o| {
                if let Output::Breach(b) = o {
                    serde_json::to_string(b).ok()
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(metrics.len(), expected_metrics.len(), "seed {seed}");
        for (a, b) in metrics.iter().zip(&expected_metrics) {
            assert_eq!(a, b, "seed {seed}: snapshot differs from the file replay");
        }
        assert_eq!(breaches, expected_breaches, "seed {seed}");
    }
}
