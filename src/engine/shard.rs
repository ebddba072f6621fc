//! The engine split in two for global metrics (see [`crate::partial`]): a shard joins and
//! summarises the events of some partitions into batches; an evaluator merges every
//! shard's batches into its windows and evaluates them as one engine reading everything
//! would.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{fold_overflow, segment_values, Engine, Pred, PredKind, Truth, MAX_CLASSES, OTHER};
use crate::config::SlaConfig;
use crate::dead_letter::Reason;
use crate::event::{Ack, Event};
use crate::partial::{
    MovedPrediction, MovedTruth, MovedVerdict, PartialBatch, PartialItem, PartitionState,
    VersionSeen,
};
use crate::series::{AnySummary, Fact, RecordStats, SegmentKey};
use crate::time::Millis;
use crate::watermark::SourceId;

/// What a shard has summarised since its last batch.
#[derive(Debug, Clone, Default)]
pub(super) struct ShardBuffer {
    /// Per (model, series, dimension tuple, interval): a tuple, not the series' segment,
    /// so that recording finds its summary without building a key; the tuples of one
    /// segment are merged when the batch closes.
    pub(super) items: HashMap<(u32, u32, u32, i64), AnySummary, foldhash::fast::FixedState>,
    pub(super) versions: BTreeSet<(u32, i64)>,
    pub(super) started: Vec<(u32, Millis)>,
    pub(super) acks: Vec<Ack>,
    ready: Vec<PartialBatch>,
    /// The evaluation instant the last batch was closed at.
    pub(super) closed_at: Option<i64>,
}

impl Engine {
    /// A shard: joins and summarises its sources' events into [`PartialBatch`]es for an
    /// evaluator ([`Engine::apply_batch`]) instead of evaluating them itself.
    pub fn shard(config: Arc<SlaConfig>) -> Engine {
        let mut e = Engine::new(config);
        e.state.shard = true;
        e
    }

    /// A shard's batches since the last call, the last one closed now.
    pub fn take_batches(&mut self) -> Vec<PartialBatch> {
        self.close_batch();
        self.ready_batches()
    }

    /// The batches closed at evaluation instants since the last call (the batch in the
    /// making stays open).
    pub fn ready_batches(&mut self) -> Vec<PartialBatch> {
        std::mem::take(&mut self.state.buffer.ready)
    }

    fn close_batch(&mut self) {
        let state = &mut self.state;
        let buffer = &mut state.buffer;
        let mut batch = PartialBatch {
            progress: state.watermark.progress(),
            started: std::mem::take(&mut buffer.started),
            acks: std::mem::take(&mut buffer.acks),
            ..PartialBatch::default()
        };
        let mut multiclass: BTreeSet<u32> = BTreeSet::new();
        let mut items: BTreeMap<(u32, u32, SegmentKey, i64), AnySummary> = BTreeMap::new();
        for ((model, series, tuple, interval), summary) in buffer.items.drain() {
            let ms = &state.models[model as usize];
            let key: SegmentKey =
                segment_values(&ms.series[series as usize], ms.tuples.get(tuple)).collect();
            items
                .entry((model, series, key, interval))
                .and_modify(|s| s.merge(&summary))
                .or_insert(summary);
        }
        for ((model, series, key, interval), summary) in items {
            let ms = &state.models[model as usize];
            let s = &ms.series[series as usize];
            if matches!(summary, AnySummary::Multiclass(_)) {
                multiclass.insert(model);
            }
            batch.items.push(PartialItem {
                model,
                series,
                segment: s
                    .dims
                    .iter()
                    .zip(key.iter())
                    .map(|(&d, &id)| ms.values[d].name(id).to_string())
                    .collect(),
                interval,
                summary,
            });
        }
        for (model, interval) in std::mem::take(&mut buffer.versions) {
            if let Some((time, version)) = state.models[model as usize].versions.get(&interval) {
                batch.versions.push(VersionSeen {
                    model,
                    interval,
                    time: *time,
                    version: version.clone(),
                });
            }
        }
        batch.classes = multiclass
            .into_iter()
            .map(|m| (m, state.models[m as usize].classes.values.clone()))
            .collect();
        buffer.ready.push(batch);
    }

    /// Applies a shard's batch: `sources[i]` is this engine's source for the shard's
    /// source `i`. The evaluator's windows, incidents and outputs then follow from every
    /// shard's batches as a single engine's would from all the events.
    pub fn apply_batch(&mut self, sources: &[SourceId], batch: PartialBatch) {
        for (model, time) in batch.started {
            self.start(model as usize, time);
        }
        // An evaluator rebuilding from the middle of the shards' batches never saw a
        // model start: it starts with its earliest interval there, as a rebuilding single
        // engine starts with the first event it re-reads.
        let mut unstarted: BTreeMap<u32, i64> = BTreeMap::new();
        for item in &batch.items {
            let started = self
                .state
                .models
                .get(item.model as usize)
                .is_none_or(|m| m.started);
            if !started {
                let k = unstarted.entry(item.model).or_insert(item.interval);
                *k = (*k).min(item.interval);
            }
        }
        for (model, interval) in unstarted {
            self.start(model as usize, interval * self.every);
        }
        for v in batch.versions {
            if let Some(ms) = self.state.models.get_mut(v.model as usize) {
                match ms.versions.get_mut(&v.interval) {
                    Some(latest) if latest.0 > v.time => {}
                    Some(latest) => *latest = (v.time, v.version),
                    None => {
                        ms.versions.insert(v.interval, (v.time, v.version));
                    }
                }
            }
        }
        let class_ids: BTreeMap<u32, Vec<u32>> = batch
            .classes
            .iter()
            .filter_map(|(m, names)| {
                let ms = self.state.models.get_mut(*m as usize)?;
                Some((
                    *m,
                    names
                        .iter()
                        .map(|n| ms.classes.intern(n, MAX_CLASSES))
                        .collect(),
                ))
            })
            .collect();
        let max_segments = self.config.defaults.max_segments;
        let mut stats = RecordStats::default();
        for mut item in batch.items {
            let Some(ms) = self.state.models.get_mut(item.model as usize) else {
                continue;
            };
            let Some(series) = ms.series.get_mut(item.series as usize) else {
                continue;
            };
            let mut key: Vec<u32> = series
                .dims
                .iter()
                .zip(&item.segment)
                // `__other__` and `__missing__` intern to their reserved ids.
                .map(|(&d, v)| ms.values[d].intern(v, max_segments))
                .collect();
            if fold_overflow(series, &mut key, max_segments) {
                self.state.stats.segment_overflow += 1;
            }
            if let Some(ids) = class_ids.get(&item.model) {
                item.summary
                    .map_classes(|id| ids.get(id as usize).copied().unwrap_or(OTHER));
            }
            series.merge(item.interval, &item.summary, &key, &mut stats);
        }
        self.state.stats.too_late += u64::from(stats.too_late);
        for ack in batch.acks {
            // The shard checked its target; what remains to judge is the incident.
            let _ = self.handle_ack(ack);
        }
        self.state.watermark.apply_progress(
            batch
                .progress
                .into_iter()
                .filter_map(|p| sources.get(p.source.0).map(|&s| (s, p))),
        );
        self.advance();
    }

    /// A fresh shard is about to re-read partitions that other owners had read (after a
    /// rebalance): until [`Engine::end_replay`], nothing expires, so that a prediction
    /// whose label is re-read too meets it as it did before.
    pub fn begin_replay(&mut self) {
        self.state.rebuilding = true;
    }

    /// An event a partition's previous owner already read and summarised: it rebuilds the
    /// join state, but the facts it makes were counted then. (Facts a later, first-read
    /// event makes with it count.)
    pub fn handle_replayed(&mut self, source: SourceId, event: Event) -> Result<(), Reason> {
        self.replaying(|engine| engine.handle(source, event))
    }

    /// Runs `f` (which hands the engine events) with every event taken as
    /// [`Engine::handle_replayed`] takes its.
    pub fn replaying<R>(&mut self, f: impl FnOnce(&mut Engine) -> R) -> R {
        self.state.replaying = true;
        let result = f(self);
        self.state.replaying = false;
        result
    }

    /// Every re-read partition has reached where its previous owner stopped: what the
    /// previous owners had already expired (and counted) is dropped, and what else waited
    /// too long expires and counts now. Later entries, late ones included, expire as
    /// usual.
    pub fn end_replay(&mut self) {
        self.state.rebuilding = false;
        for (&source, &watermark) in &self.state.counted_through {
            self.state.join.drop_before(source as u32, watermark);
        }
        self.advance();
    }

    /// The join state read from `sources` (a co-partitioned pair), for a shard that takes
    /// their partitions over and reads on from here. Take it after
    /// [`Engine::take_batches`]: what was counted up to here has left with the batches.
    pub fn export_sources(&self, sources: &[SourceId]) -> PartitionState {
        let origins: Vec<u32> = sources.iter().map(|s| s.0 as u32).collect();
        let moved = self.state.join.copy_origins(&origins);
        let models = &self.state.models;
        let entries = moved
            .into_iter()
            .map(|m| {
                m.map(
                    |model, p: Pred| {
                        let ms = &models[model as usize];
                        MovedPrediction {
                            verdict: match p.kind {
                                PredKind::Binary { predicted, score } => {
                                    MovedVerdict::Binary { predicted, score }
                                }
                                PredKind::Class(c) => {
                                    MovedVerdict::Class(ms.classes.name(c).to_string())
                                }
                                PredKind::Value(v) => MovedVerdict::Value(v),
                            },
                            dims: ms
                                .tuples
                                .get(p.dims)
                                .iter()
                                .zip(&ms.values)
                                .map(|(&id, values)| values.name(id).to_string())
                                .collect(),
                        }
                    },
                    |model, t: Truth| match t {
                        Truth::Binary(b) => MovedTruth::Binary(b),
                        Truth::Class(c) => {
                            MovedTruth::Class(models[model as usize].classes.name(c).to_string())
                        }
                        Truth::Value(v) => MovedTruth::Value(v),
                    },
                    |origin| origins.iter().position(|o| *o == origin).unwrap_or(0) as u32,
                )
            })
            .collect();
        let progress = self.state.watermark.progress();
        PartitionState {
            entries,
            reached: sources
                .iter()
                .map(|s| progress.get(s.0).and_then(|p| p.max_time))
                .collect(),
        }
    }

    /// Takes over the join state another shard exported for the partitions now read
    /// through `sources` (in the exported order), instead of re-reading them.
    pub fn import_sources(&mut self, sources: &[SourceId], state: PartitionState) {
        let max_segments = self.config.defaults.max_segments;
        let models = &mut self.state.models;
        let source = |i: u32| sources.get(i as usize).map_or(u32::MAX, |s| s.0 as u32);
        let mut entries = Vec::with_capacity(state.entries.len());
        for m in state.entries {
            let ms = &mut models[m.model as usize];
            // Only one of the two translations runs per entry; both may intern a class.
            let classes = std::cell::RefCell::new(&mut ms.classes);
            let values = &mut ms.values;
            let tuples = &mut ms.tuples;
            let entry = m.map(
                |_, p: MovedPrediction| Pred {
                    kind: match p.verdict {
                        MovedVerdict::Binary { predicted, score } => {
                            PredKind::Binary { predicted, score }
                        }
                        MovedVerdict::Class(c) => {
                            PredKind::Class(classes.borrow_mut().intern(&c, MAX_CLASSES))
                        }
                        MovedVerdict::Value(v) => PredKind::Value(v),
                    },
                    dims: {
                        let tuple: Vec<u32> = p
                            .dims
                            .iter()
                            .zip(values.iter_mut())
                            .map(|(v, values)| values.intern(v, max_segments))
                            .collect();
                        tuples.intern(&tuple)
                    },
                },
                |_, t: MovedTruth| match t {
                    MovedTruth::Binary(b) => Truth::Binary(b),
                    MovedTruth::Class(c) => {
                        Truth::Class(classes.borrow_mut().intern(&c, MAX_CLASSES))
                    }
                    MovedTruth::Value(v) => Truth::Value(v),
                },
                source,
            );
            entries.push(entry);
        }
        self.state.join.put_moved(entries);
        for (s, reached) in sources.iter().zip(state.reached) {
            if let Some(t) = reached {
                self.state.watermark.observe(*s, t);
            }
        }
    }

    /// What [`Engine::set_counted_through`] said of `source`.
    pub fn counted_through(&self, source: SourceId) -> Option<Millis> {
        self.state.counted_through.get(&source.0).copied()
    }

    /// The previous owner of `source`'s partition had expired, and counted, the
    /// predictions whose deadline is before `watermark`.
    pub fn set_counted_through(&mut self, source: SourceId, watermark: Millis) {
        self.state.counted_through.insert(source.0, watermark);
    }

    /// Records `fact` at interval `k` into the batch in the making.
    pub(super) fn record_partial(&mut self, mi: usize, k: i64, fact: Fact, dims: u32) {
        if self.state.replaying {
            return;
        }
        let ms = &self.state.models[mi];
        for (si, s) in ms.series.iter().enumerate() {
            if !s.uses(&fact) {
                continue;
            }
            self.state
                .buffer
                .items
                .entry((mi as u32, si as u32, dims, k))
                .or_insert_with(|| AnySummary::new(s.family))
                .record(fact, s.threshold_ms());
        }
    }

    /// A shard only expires what waited too long; a batch ends at each instant the
    /// watermark reaches, for the evaluator to evaluate there.
    pub(super) fn advance_shard(&mut self, wm: Millis) {
        // While re-reading, nothing expires: a prediction whose label is re-read too must
        // meet it as it did before (the join, or the label after the deadline, was counted
        // then).
        if self.state.rebuilding {
            return;
        }
        for e in self.state.join.expire_before(wm) {
            self.record_unlabeled(e.model as usize, e.unlabeled);
        }
        let instant = wm.div_euclid(self.every);
        match self.state.buffer.closed_at {
            // Evaluation starts at the instant after the first event's. A watermark that
            // forms only past that instant (a backlog read in full before an idle source
            // let it form) has passed instants already: what was read goes out now, not
            // when the next instant passes.
            None => {
                self.state.buffer.closed_at = Some(instant);
                let first = self.state.first_time.map(|t| t.div_euclid(self.every));
                if first.is_some_and(|f| instant > f) {
                    self.close_batch();
                }
            }
            Some(c) if instant > c => {
                self.state.buffer.closed_at = Some(instant);
                self.close_batch();
            }
            Some(_) => {}
        }
    }
}
