//! The outputs do not depend on how input partitions interleave: the golden scenario split
//! into four inference and four label partitions (by request_id, as Kafka co-partitions
//! them) and fed in adversarial orders — whole partitions far ahead of others, tiny and
//! huge batches — gives byte-identical snapshots and breach events to the file replay.

mod common;

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use slaguard::decode;
use slaguard::engine::Engine;
use slaguard::event::Event;
use slaguard::output::Output;

#[test]
fn partition_interleaving_does_not_change_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = common::write_scenario(dir.path(), &common::golden_spec());
    // The partitions carry no acks, nor does the file replay they are compared with.
    let without_acks = slaguard::replay::ReplayInputs {
        acks: None,
        ..inputs.clone()
    };
    let (_, _, out) = common::replay_inputs(dir.path(), &without_acks, "files");
    let lines = |name: &str| -> Vec<String> {
        std::fs::read_to_string(out.join(name))
            .expect("output")
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (expected_metrics, expected_breaches) = (lines("metrics.jsonl"), lines("breaches.jsonl"));
    let cfg = common::load_config(&dir.path().join("sla.yaml"));

    const P: usize = 4;
    let hash = |k: &str| {
        k.bytes()
            .fold(17u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b))) as usize
            % P
    };
    let mut parts: Vec<Vec<Event>> = vec![Vec::new(); 2 * P];
    for l in std::fs::read_to_string(&inputs.inferences)
        .expect("read")
        .lines()
    {
        if let Ok(e) = decode::inference(l.as_bytes()) {
            parts[hash(&e.request_id)].push(Event::Inference(e));
        }
    }
    for l in std::fs::read_to_string(&inputs.labels)
        .expect("read")
        .lines()
    {
        if let Ok(e) = decode::label(l.as_bytes()) {
            parts[P + hash(&e.request_id)].push(Event::Label(e));
        }
    }
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
