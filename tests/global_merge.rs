//! Global metrics from partial summaries: the golden scenario split into four inference
//! and four label partitions, spread over one, two or three shards in random ways and fed
//! in adversarial orders, with every shard's batches merged by one evaluator, gives
//! exactly the snapshots and incidents of a single engine reading everything.

mod common;

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use slaguard::decode;
use slaguard::engine::Engine;
use slaguard::event::Event;
use slaguard::output::Output;
use slaguard::watermark::SourceId;

#[test]
fn shards_and_an_evaluator_equal_a_single_engine() {
    let golden = Golden::new();
    for (seed, shards) in [(0u64, 1usize), (1, 2), (2, 2), (3, 3), (4, 3)] {
        golden.check(seed, shards, Move::None);
    }
}

/// A partition pair moves from one shard to another mid-run; as in an eager rebalance,
/// every shard starts afresh and re-reads its partitions from the start, the events its
/// partitions' previous owners had read marked as such, and the expirations they had
/// counted skipped. Nothing is lost or counted twice.
#[test]
fn a_partition_moving_between_shards_changes_nothing() {
    let golden = Golden::new();
    for (seed, shards) in [(10u64, 2usize), (11, 2), (12, 3), (13, 3), (14, 2), (15, 3)] {
        golden.check(seed, shards, Move::Reread);
    }
}

/// The same moves, but the pairs' join state travels with them instead: each shard gives
/// up every pair's waiting predictions, labels and guards, the new owners take them and
/// read on from where the previous owners stopped, re-reading nothing.
#[test]
fn join_state_moving_with_its_partitions_changes_nothing() {
    let golden = Golden::new();
    for (seed, shards) in [(20u64, 2usize), (21, 2), (22, 3), (23, 3), (24, 2), (25, 3)] {
        golden.check(seed, shards, Move::State);
    }
}

/// Whether, and how, a partition pair moves between shards midway.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Move {
    None,
    /// The new owners re-read their partitions up to where the previous owners stopped.
    Reread,
    /// The join state moves with the partitions; nothing is re-read.
    State,
}

/// A batch as another instance receives it: through its wire form, and every third one
/// split in two pieces as an oversized batch is.
/// An evaluator restarted from the partial batches, quietly up to where its
/// predecessor's outputs reached, claims that progress before it has caught up: restarted
/// again before its first instant, its successor is still quiet up to there. Outputs of
/// the first evaluator and of the last together are the single engine's, once each.
#[test]
fn an_evaluator_restarted_twice_while_rebuilding_emits_nothing_twice() {
    let golden = Golden::new();
    let mut shard = Engine::shard(Arc::clone(&golden.cfg));
    let sources: Vec<SourceId> = (0..2 * P).map(|_| shard.add_source()).collect();
    let mut batches = Vec::new();
    let longest = golden.parts.iter().map(Vec::len).max().unwrap_or(0);
    for step in (0..longest).step_by(50) {
        for (part, events) in golden.parts.iter().enumerate() {
            for e in events.iter().skip(step).take(50) {
                let _ = shard.handle(sources[part], e.clone());
            }
            if step + 50 >= events.len() {
                shard.end_source(sources[part]);
            }
        }
        batches.extend(shard.take_batches());
    }
    assert!(batches.len() > 100, "{} batches", batches.len());
    let evaluator = || {
        let mut e = Engine::new(Arc::clone(&golden.cfg));
        let global: Vec<SourceId> = (0..2 * P).map(|_| e.add_source()).collect();
        (e, global)
    };
    let metrics = |e: &mut Engine| -> Vec<String> {
        std::iter::from_fn(|| e.poll_output())
            .filter_map(|o| match o {
                Output::Metric(m) => serde_json::to_string(&m).ok(),
                _ => None,
            })
            .collect()
    };

    // The first evaluator reads half the batches, then stops.
    let (mut first, global) = evaluator();
    for b in &batches[..batches.len() / 2] {
        first.apply_batch(&global, b.clone());
    }
    let mut outputs = metrics(&mut first);
    let reached = first.emitted_through().expect("instants evaluated");
    assert!(!outputs.is_empty());

    // Its successor rebuilds from the first batch, and stops before it has evaluated
    // anything.
    let (mut second, global) = evaluator();
    second.quiet_until(reached);
    assert_eq!(
        second.emitted_through(),
        Some(reached),
        "what was emitted before"
    );

    // The third rebuilds from the first batch too, quiet up to what the second claimed.
    let (mut third, global3) = evaluator();
    third.quiet_until(second.emitted_through().expect("claimed"));
    drop((second, global));
    for b in &batches {
        third.apply_batch(&global3, b.clone());
    }
    third.finish();
    outputs.extend(metrics(&mut third));
    assert_eq!(outputs.len(), golden.expected_metrics.len());
    for (a, b) in outputs.iter().zip(&golden.expected_metrics) {
        assert_eq!(a, b, "snapshot differs");
    }
}

fn wire(batch: slaguard::partial::PartialBatch) -> Vec<slaguard::partial::PartialBatch> {
    let bytes = batch.to_bytes().expect("serialises");
    let back = slaguard::partial::PartialBatch::from_bytes(&bytes).expect("reads back");
    assert_eq!(back, batch);
    if back.items.len() >= 2 && back.items.len().is_multiple_of(3) {
        let (first, second) = back.split();
        vec![first, second]
    } else {
        vec![back]
    }
}

struct Golden {
    _dir: tempfile::TempDir,
    cfg: Arc<slaguard::config::SlaConfig>,
    parts: Vec<Vec<Event>>,
    expected_metrics: Vec<String>,
    expected_breaches: Vec<String>,
}

const P: usize = 4;

impl Golden {
    fn new() -> Golden {
        let dir = tempfile::tempdir().expect("tempdir");
        let inputs = common::write_scenario(dir.path(), &common::golden_spec());
        // The partitions carry no acks, nor does the file replay they are compared with.
        let (expected_metrics, expected_breaches) =
            common::replay_without_acks(dir.path(), &inputs);
        Golden {
            cfg: common::load_config(&dir.path().join("sla.yaml")),
            parts: common::golden_partitions(&inputs, P),
            expected_metrics,
            expected_breaches,
            _dir: dir,
        }
    }

    fn check(&self, seed: u64, shards: usize, mode: Move) {
        let parts = &self.parts;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // Co-partitioned pairs move together; any pair may land on any shard.
        let mut owner: Vec<usize> = (0..P).map(|_| rng.random_range(0..shards)).collect();
        let mut evaluator = Engine::new(Arc::clone(&self.cfg));
        let global: Vec<SourceId> = (0..2 * P).map(|_| evaluator.add_source()).collect();
        let mut pos = [0usize; 2 * P];
        // Where each partition's previous owner had got: (next event, its watermark).
        let mut counted: Vec<Option<i64>> = vec![None; 2 * P];
        let (mut shard_engines, mut at, mut mapping) =
            self.assign(&owner, shards, &pos, &counted, &global);
        let max_batch = if seed.is_multiple_of(2) { 300 } else { 20_000 };
        let mut outputs = Vec::new();
        let mut steps = 0;
        // Late enough that predictions have expired unlabeled before the move.
        let move_at = if max_batch == 300 {
            rng.random_range(250..400)
        } else {
            rng.random_range(10..20)
        };
        loop {
            steps += 1;
            if mode != Move::None && steps == move_at {
                // Every shard hands in what it has, then the group is rebuilt with one
                // pair on another shard.
                for (shard, e) in shard_engines.iter_mut().enumerate() {
                    for batch in e.take_batches() {
                        for piece in wire(batch) {
                            evaluator.apply_batch(&mapping[shard], piece);
                        }
                    }
                    for (i, (s, _)) in at.iter().enumerate() {
                        if *s == shard {
                            counted[i] = e.watermark();
                        }
                    }
                }
                let states: Vec<_> = (0..P)
                    .map(|pair| {
                        let (shard, inferences) = at[pair];
                        shard_engines[shard].export_sources(&[inferences, at[pair + P].1])
                    })
                    .collect();
                let pair = rng.random_range(0..P);
                owner[pair] = (owner[pair] + 1 + rng.random_range(0..shards - 1)) % shards;
                if mode == Move::State {
                    (shard_engines, at, mapping) =
                        self.assign_with_state(&owner, shards, &pos, &global, states);
                } else {
                    (shard_engines, at, mapping) =
                        self.assign(&owner, shards, &pos, &counted, &global);
                }
            }
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
                for piece in wire(batch) {
                    evaluator.apply_batch(&mapping[shard], piece);
                }
            }
            outputs.extend(std::iter::from_fn(|| evaluator.poll_output()));
        }
        evaluator.finish();
        outputs.extend(std::iter::from_fn(|| evaluator.poll_output()));
        let lines = |pick: fn(&Output) -> Option<String>| -> Vec<String> {
            outputs.iter().filter_map(pick).collect()
        };
        let metrics = lines(|o| match o {
            Output::Metric(m) => serde_json::to_string(m).ok(),
            _ => None,
        });
        let breaches = lines(|o| match o {
            Output::Breach(b) => serde_json::to_string(b).ok(),
            _ => None,
        });
        let case = format!("seed {seed}, {shards} shards, move {mode:?}");
        assert_eq!(metrics.len(), self.expected_metrics.len(), "{case}");
        for (a, b) in metrics.iter().zip(&self.expected_metrics) {
            assert_eq!(a, b, "{case}: snapshot differs");
        }
        assert_eq!(breaches, self.expected_breaches, "{case}");
    }

    /// Fresh shards for `owner`, each re-reading its partitions up to `pos` as events
    /// already summarised. Returns the shards, each partition's (shard, source) and each
    /// shard's sources' evaluator ids.
    #[allow(clippy::type_complexity)]
    fn assign(
        &self,
        owner: &[usize],
        shards: usize,
        pos: &[usize],
        counted: &[Option<i64>],
        global: &[SourceId],
    ) -> (Vec<Engine>, Vec<(usize, SourceId)>, Vec<Vec<SourceId>>) {
        let (mut engines, at, mapping) = self.fresh_shards(owner, shards, global);
        for (part, &(shard, local)) in at.iter().enumerate() {
            if let Some(w) = counted[part] {
                engines[shard].set_counted_through(local, w);
            }
        }
        for e in &mut engines {
            e.begin_replay();
        }
        for (part, &(shard, local)) in at.iter().enumerate() {
            for e in &self.parts[part][..pos[part]] {
                let _ = engines[shard].handle_replayed(local, e.clone());
            }
        }
        for e in &mut engines {
            e.end_replay();
        }
        for (part, &(shard, local)) in at.iter().enumerate() {
            if pos[part] == self.parts[part].len() {
                engines[shard].end_source(local);
            }
        }
        (engines, at, mapping)
    }

    /// `shards` new shard engines; every input partition (both topics) becomes a source of
    /// the shard `owner` gives its pair. Returns the engines, each partition's (shard,
    /// local source) and each shard's local-to-global source map.
    #[allow(clippy::type_complexity)]
    fn fresh_shards(
        &self,
        owner: &[usize],
        shards: usize,
        global: &[SourceId],
    ) -> (Vec<Engine>, Vec<(usize, SourceId)>, Vec<Vec<SourceId>>) {
        let mut engines: Vec<Engine> = (0..shards)
            .map(|_| Engine::shard(Arc::clone(&self.cfg)))
            .collect();
        let mut at = Vec::new();
        let mut mapping: Vec<Vec<SourceId>> = vec![Vec::new(); shards];
        for part in 0..2 * P {
            let shard = owner[part % P];
            let local = engines[shard].add_source();
            at.push((shard, local));
            mapping[shard].resize(local.0 + 1, global[part]);
            mapping[shard][local.0] = global[part];
        }
        (engines, at, mapping)
    }

    /// Fresh shards for `owner`, each taking over its pairs' join state (through its wire
    /// form) and reading on from `pos`.
    #[allow(clippy::type_complexity)]
    fn assign_with_state(
        &self,
        owner: &[usize],
        shards: usize,
        pos: &[usize],
        global: &[SourceId],
        states: Vec<slaguard::partial::PartitionState>,
    ) -> (Vec<Engine>, Vec<(usize, SourceId)>, Vec<Vec<SourceId>>) {
        let (mut engines, at, mapping) = self.fresh_shards(owner, shards, global);
        for (pair, state) in states.into_iter().enumerate() {
            let bytes = state.to_bytes().expect("serialises");
            let back = slaguard::partial::PartitionState::from_bytes(&bytes).expect("reads back");
            assert_eq!(back, state);
            let (shard, inferences) = at[pair];
            engines[shard].import_sources(&[inferences, at[pair + P].1], back);
        }
        for (part, &(shard, local)) in at.iter().enumerate() {
            if pos[part] == self.parts[part].len() {
                engines[shard].end_source(local);
            }
        }
        (engines, at, mapping)
    }
}

/// One regression model with an availability objective, evaluated every minute, no
/// allowed lateness.
fn availability_sla() -> Arc<slaguard::config::SlaConfig> {
    let yaml = r#"
sla_version: "shard-1"
defaults: {evaluate_every: 1m, allowed_lateness: 0s}
models:
  - model_id: m
    task: regression
    objectives:
      - {name: availability, metric: availability, op: ">=", target: 0.9, window: 1m}
"#;
    Arc::new(slaguard::config::parse(yaml, "t.yaml", None).expect("valid"))
}

#[test]
fn a_shard_ends_its_batch_at_each_instant_its_watermark_reaches() {
    let cfg = availability_sla();
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

/// A backlog read in full while another source holds the watermark back: when that
/// source is found idle, the watermark forms past many instants at once, and what was read
/// goes out in a batch then, not when a later instant passes.
#[test]
fn a_watermark_forming_late_closes_a_batch_at_once() {
    let cfg = availability_sla();
    let t0 = 1_793_534_400_000i64;
    let mut shard = Engine::shard(Arc::clone(&cfg));
    let data = shard.add_source();
    let quiet = shard.add_source();
    for minute in 0..20 {
        let line = format!(
            r#"{{"request_id":"r{minute}","model_id":"m","timestamp":{},"status":"ok","prediction":{{"value":1}}}}"#,
            t0 + minute * 60_000 + 1_000
        );
        let e = decode::inference(line.as_bytes()).expect("valid");
        shard.handle_inference(data, &e).expect("ok");
    }
    assert_eq!(shard.watermark(), None, "the quiet source holds it back");
    assert!(shard.ready_batches().is_empty());
    shard.set_source_idle(quiet, true);
    let batches = shard.ready_batches();
    let total: u64 = batches
        .iter()
        .flat_map(|b| &b.items)
        .map(|i| match &i.summary {
            slaguard::series::AnySummary::Reliability(r) => r.total,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 20, "every request read goes out with the watermark");
}

/// Two hours are read, then every partition falls idle and the shard and the evaluator
/// checkpoint; both are restored (as after kill -9), the shard's partitions active again
/// until read, and the last hour is read: the snapshots and incidents are a single
/// engine's.
#[test]
fn a_shard_and_an_evaluator_restored_after_an_idle_spell_equal_a_single_engine() {
    let golden = Golden::new();
    let cut = slaguard::scenario::ScenarioSpec::default().start + 120 * 60_000;
    let parts = &golden.parts;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(30);
    let mut shard = Engine::shard(Arc::clone(&golden.cfg));
    let local: Vec<SourceId> = (0..2 * P).map(|_| shard.add_source()).collect();
    let mut evaluator = Engine::new(Arc::clone(&golden.cfg));
    let global: Vec<SourceId> = (0..2 * P).map(|_| evaluator.add_source()).collect();
    let mut outputs = Vec::new();
    let mut pos = [0usize; 2 * P];
    let mut read_until = |shard: &mut Engine,
                          evaluator: &mut Engine,
                          outputs: &mut Vec<Output>,
                          pos: &mut [usize],
                          until: i64| loop {
        let live: Vec<usize> = (0..2 * P)
            .filter(|&i| parts[i].get(pos[i]).is_some_and(|e| e.time() < until))
            .collect();
        let Some(&i) = live.get(rng.random_range(0..live.len().max(1))) else {
            break;
        };
        for _ in 0..rng.random_range(1..300) {
            match parts[i].get(pos[i]) {
                Some(e) if e.time() < until => {
                    let _ = shard.handle(local[i], e.clone());
                    pos[i] += 1;
                }
                _ => break,
            }
        }
        for batch in shard.take_batches() {
            evaluator.apply_batch(&global, batch);
        }
        outputs.extend(std::iter::from_fn(|| evaluator.poll_output()));
    };
    read_until(&mut shard, &mut evaluator, &mut outputs, &mut pos, cut);
    for s in &local {
        shard.set_source_idle(*s, true);
    }
    for batch in shard.take_batches() {
        evaluator.apply_batch(&global, batch);
    }
    outputs.extend(std::iter::from_fn(|| evaluator.poll_output()));

    let mut shard = Engine::restore(
        Arc::clone(&golden.cfg),
        &shard.snapshot().expect("snapshot"),
    )
    .expect("restores");
    let mut evaluator = Engine::restore(
        Arc::clone(&golden.cfg),
        &evaluator.snapshot().expect("snapshot"),
    )
    .expect("restores");
    // The evaluator hears of the partitions' return only with the shard's next batch,
    // which reports all of them at once: here, after ten minutes of every partition but
    // the last were read, which still holds the watermark at the cut.
    for s in &local {
        shard.set_source_idle(*s, false);
    }
    for i in 0..2 * P - 1 {
        while let Some(e) = parts[i].get(pos[i]).filter(|e| e.time() < cut + 600_000) {
            let _ = shard.handle(local[i], e.clone());
            pos[i] += 1;
        }
    }
    for batch in shard.take_batches() {
        evaluator.apply_batch(&global, batch);
    }
    read_until(&mut shard, &mut evaluator, &mut outputs, &mut pos, i64::MAX);
    for s in &local {
        shard.end_source(*s);
    }
    for batch in shard.take_batches() {
        evaluator.apply_batch(&global, batch);
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
    for (a, b) in metrics.iter().zip(&golden.expected_metrics) {
        assert_eq!(a, b, "snapshot differs");
    }
    assert_eq!(metrics.len(), golden.expected_metrics.len());
}
