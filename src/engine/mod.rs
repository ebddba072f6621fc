//! The engine: slaguard's pure, deterministic core.
//!
//! Inputs are typed events tagged with their source, acks, and source lifecycle (ended,
//! idle); outputs are metric snapshots, breach events and dead letters, polled in order.
//! The engine owns the join, the watermark, the sliding windows and the breach trackers.
//! It never reads a clock, performs I/O or spawns: time is the event time carried by the
//! inputs, and every timer (label TTLs, evaluation instants, deferred acks) fires as the
//! watermark passes it.
//!
//! Order of work as the watermark advances to W: for each due instant T (T ≤ W) in
//! order, first expire predictions whose TTL ended before T, then apply acks timed before
//! T, then evaluate T; finally expire and apply what is due before W.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::breach::{assess, incident_id, BreachTracker, Transition};
use crate::burn_rate;
use crate::config::{EscalationPolicy, ModelSla, SlaConfig};
use crate::dead_letter::{DeadLetter, InputKind, Origin, Position, Reason};
use crate::escalation::Escalation;
use crate::event::{Ack, AckAction, AckTarget, Event, Inference, Label, Status};
use crate::incident_log::IncidentLog;
use crate::join::{JoinState, Joined, Match, Unlabeled};
use crate::metric::{Family, Task, SCORE};
use crate::output::{
    BreachEvent, BreachKind, BurnRateFired, EscalationEvent, MetricSnapshot, Output,
    PagerDutyEvent, PagerDutyPayload, Segment,
};
use crate::series::{Fact, RecordStats, SegmentKey, Series};

mod keys;
mod shard;
use crate::summary::{Latency, Measured, RegressionOutcome, ScoredOutcome};
use crate::time::{format_duration, format_rfc3339, Millis};
use crate::watermark::{SourceId, Watermark};
pub use keys::{prepare, profile_facts, EventKeys};
use shard::ShardBuffer;

/// The interners' maps: looked up for every event, keyed by short strings and tuples, so
/// hashed with foldhash rather than SipHash (no untrusted party chooses the keys' hashes
/// to any effect: a collision only slows one lookup).
type IdMap<K> = HashMap<K, u32, foldhash::fast::FixedState>;

/// The values of series `s`'s segment in a model's dimension tuple (interned ids;
/// missing where the tuple has none).
fn segment_values<'a>(s: &'a Series, tuple: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    s.dims
        .iter()
        .map(|&d| tuple.get(d).copied().unwrap_or(MISSING))
}

/// Interned value ids reserved in every dimension.
const OTHER: u32 = 0;
const MISSING: u32 = 1;
/// Distinct classes kept per multiclass model; further classes count as `__other__`.
const MAX_CLASSES: usize = 10_000;

/// Strings ↔ small ids, bounded: past `limit` new values map to `__other__`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Interner {
    values: Vec<String>,
    #[serde(skip)]
    ids: IdMap<String>,
}

impl Interner {
    fn new() -> Interner {
        let mut i = Interner {
            values: Vec::new(),
            ids: IdMap::default(),
        };
        i.intern("__other__", usize::MAX);
        i.intern("__missing__", usize::MAX);
        i
    }

    fn intern(&mut self, v: &str, limit: usize) -> u32 {
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        if self.values.len() >= limit.saturating_add(2) {
            return OTHER;
        }
        let id = self.values.len() as u32;
        self.values.push(v.to_string());
        self.ids.insert(v.to_string(), id);
        id
    }

    fn rebuild(&mut self) {
        self.ids = self
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), i as u32))
            .collect();
    }

    fn lookup(&self, v: &str) -> Option<u32> {
        self.ids.get(v).copied()
    }

    fn name(&self, id: u32) -> &str {
        self.values
            .get(id as usize)
            .map_or("__other__", String::as_str)
    }
}

/// The distinct tuples of a model's interned dimension values, each known by a `u32`: a
/// waiting prediction keeps its tuple's id, not the tuple. Bounded like the values
/// (each dimension keeps at most `max_segments` values plus `__other__` and
/// `__missing__`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Tuples {
    tuples: Vec<Box<[u32]>>,
    #[serde(skip)]
    ids: IdMap<Box<[u32]>>,
}

impl Tuples {
    fn intern(&mut self, tuple: &[u32]) -> u32 {
        if let Some(&id) = self.ids.get(tuple) {
            return id;
        }
        let id = self.tuples.len() as u32;
        self.tuples.push(tuple.into());
        self.ids.insert(tuple.into(), id);
        id
    }

    fn get(&self, id: u32) -> &[u32] {
        self.tuples.get(id as usize).map_or(&[], |t| t)
    }

    fn rebuild(&mut self) {
        self.ids = self
            .tuples
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
    }
}

/// What a waiting prediction keeps: its verdict and its segment values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pred {
    kind: PredKind,
    /// The [`Tuples`] id of its interned dimension values.
    dims: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum PredKind {
    Binary { predicted: bool, score: Option<f64> },
    Class(u32),
    Value(f64),
}

/// What a waiting label keeps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Truth {
    Binary(bool),
    Class(u32),
    Value(f64),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ObjectiveState {
    series: usize,
    /// For `alerting: burn_rate`: the series of each pair's long and short span.
    burn: Vec<(usize, usize)>,
    /// Recent incidents, for the incident figures of the snapshots.
    log: IncidentLog,
    trackers: BTreeMap<SegmentKey, BreachTracker>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ModelState {
    /// Union of the objectives' segment dimensions.
    dims: Vec<String>,
    values: Vec<Interner>,
    tuples: Tuples,
    /// Reused to build a tuple before it is interned.
    #[serde(skip)]
    scratch: Vec<u32>,
    classes: Interner,
    series: Vec<Series>,
    objectives: Vec<ObjectiveState>,
    /// Drift and data-quality families, each recorded once per inference. Kept in the
    /// snapshot format; the facts are worked out from the SLA ([`profile_facts`]).
    profile_families: Vec<Family>,
    /// Reused to hold an inference's drift and data-quality facts before they are
    /// recorded, when the shell did not hand them in.
    #[serde(skip)]
    profile_facts: Vec<Fact>,
    /// Per interval, the model_version of its latest inference: breach events name the
    /// version seen last before their instant, whatever was read ahead of the watermark.
    versions: BTreeMap<i64, (Millis, String)>,
    started: bool,
}

impl ModelState {
    fn new(m: &ModelSla, every: Millis) -> ModelState {
        let dims = m.dimensions();
        let mut series: Vec<Series> = Vec::new();
        let mut objectives = Vec::new();
        for o in &m.objectives {
            let idx: Vec<usize> = o
                .segment_by
                .iter()
                .filter_map(|d| dims.iter().position(|x| x == d))
                .collect();
            let mut series_for = |window: Millis| -> usize {
                match series
                    .iter()
                    .position(|s| s.family == o.family && s.window_ms == window && s.dims == idx)
                {
                    Some(s) => s,
                    None => {
                        series.push(Series::new(
                            o.family,
                            window,
                            every,
                            o.threshold_ms.unwrap_or(0.0),
                            idx.clone(),
                            drift_bins(m, o.family),
                        ));
                        series.len() - 1
                    }
                }
            };
            let main = series_for(o.window);
            let burn = o
                .burn_rate
                .iter()
                .flatten()
                .map(|p| (series_for(p.long), series_for(p.short)))
                .collect();
            objectives.push(ObjectiveState {
                series: main,
                burn,
                trackers: BTreeMap::new(),
                log: IncidentLog::default(),
            });
        }
        ModelState {
            values: dims.iter().map(|_| Interner::new()).collect(),
            tuples: Tuples::default(),
            scratch: Vec::new(),
            dims,
            classes: Interner::new(),
            series,
            objectives,
            versions: BTreeMap::new(),
            profile_families: keys::profile_families(m).collect(),
            profile_facts: Vec::new(),
            started: false,
        }
    }

    /// The model_version of the latest inference in an interval before `interval`.
    fn version_before(&self, interval: i64) -> Option<String> {
        self.versions
            .range(..interval)
            .next_back()
            .map(|(_, (_, v))| v.clone())
    }

    /// Forgets versions that no instant from `interval` on can ask for.
    fn prune_versions(&mut self, interval: i64) {
        if let Some(&keep) = self.versions.range(..interval).next_back().map(|(k, _)| k) {
            self.versions = self.versions.split_off(&keep);
        }
    }

    fn segment(&self, series: &Series, key: &[u32]) -> Segment {
        Segment(
            series
                .dims
                .iter()
                .zip(key)
                .map(|(&d, &v)| (self.dims[d].clone(), self.values[d].name(v).to_string()))
                .collect(),
        )
    }
}

/// An engine snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("engine snapshot: {0}")]
pub struct SnapshotError(postcard::Error);

/// Cumulative counters of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub inferences: u64,
    pub labels: u64,
    pub acks: u64,
    /// Events the engine rejected (each also became a dead letter).
    pub rejected: u64,
    /// Inferences and labels whose event time was behind the watermark on arrival.
    pub late_inferences: u64,
    pub late_labels: u64,
    /// Facts that fell before every window still to be evaluated.
    pub too_late: u64,
    /// Segment values folded into `__other__` because `max_segments` was reached.
    pub segment_overflow: u64,
    pub instants: u64,
    pub snapshots: u64,
    pub incidents_opened: u64,
    pub incidents_resolved: u64,
    pub acks_repeated: u64,
    /// Acks accepted (counted in `acks`) that matched no open incident when applied and
    /// became dead letters.
    pub acks_unmatched: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    watermark: Watermark,
    join: JoinState<Pred, Truth>,
    models: Vec<ModelState>,
    /// Acks waiting for the watermark to pass their time.
    acks: BTreeMap<(Millis, u64), AckEntry>,
    ack_seq: u64,
    /// Interval index n of the next instant T = n·evaluate_every.
    next_instant: Option<i64>,
    /// Event time of the first event: windows reaching back before it are not yet covered.
    first_time: Option<Millis>,
    /// Outputs for instants (and acks) at or before this time are not emitted: they were
    /// emitted before, by this engine's predecessor, and are being rebuilt.
    quiet_until: Option<Millis>,
    /// See [`Engine::emitted_through`].
    emitted_through: Option<Millis>,
    /// A shard: facts go into partial summaries for an evaluator (see [`crate::partial`]).
    shard: bool,
    /// A shard's batch in the making; take the batches before a snapshot.
    #[serde(skip)]
    buffer: ShardBuffer,
    /// A shard rebuilding moved partitions: per source, the watermark up to which the
    /// previous owner already counted expired predictions.
    counted_through: BTreeMap<usize, Millis>,
    /// Set while a shard re-reads an event its previous owner already summarised.
    #[serde(skip)]
    replaying: bool,
    /// Set while a shard re-reads moved partitions up to where their previous owners had
    /// read: nothing expires meanwhile.
    rebuilding: bool,
    /// Open incident id → (model, objective, segment).
    open: BTreeMap<String, (usize, usize, SegmentKey)>,
    /// Escalation deadlines: (due, incident id).
    escalations: BTreeSet<(Millis, String)>,
    stats: EngineStats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AckEntry {
    target: AckTargetState,
    resolve: bool,
    by: Option<String>,
    time: Millis,
    position: Option<Position>,
    raw: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum AckTargetState {
    Incident(String),
    Objective {
        model: usize,
        objective: usize,
        segment: BTreeMap<String, String>,
    },
}

/// The engine. See the module docs.
pub struct Engine {
    config: Arc<SlaConfig>,
    every: Millis,
    state: State,
    outputs: VecDeque<Output>,
}

impl Engine {
    pub fn new(config: Arc<SlaConfig>) -> Engine {
        let every = config.defaults.evaluate_every.max(1);
        let state = State {
            watermark: Watermark::new(config.defaults.allowed_lateness),
            join: JoinState::new(config.defaults.max_pending),
            models: config
                .models
                .iter()
                .map(|m| ModelState::new(m, every))
                .collect(),
            acks: BTreeMap::new(),
            ack_seq: 0,
            next_instant: None,
            first_time: None,
            quiet_until: None,
            emitted_through: None,
            shard: false,
            buffer: ShardBuffer::default(),
            counted_through: BTreeMap::new(),
            replaying: false,
            rebuilding: false,
            open: BTreeMap::new(),
            escalations: BTreeSet::new(),
            stats: EngineStats::default(),
        };
        Engine {
            config,
            every,
            state,
            outputs: VecDeque::new(),
        }
    }

    /// The engine's whole state as bytes (pending outputs excluded: poll them first).
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        postcard::to_stdvec(&self.state).map_err(SnapshotError)
    }

    /// An engine continuing from `snapshot`, taken from an engine with the same config.
    pub fn restore(config: Arc<SlaConfig>, snapshot: &[u8]) -> Result<Engine, SnapshotError> {
        let mut state: State = postcard::from_bytes(snapshot).map_err(SnapshotError)?;
        for m in &mut state.models {
            m.tuples.rebuild();
            m.classes.rebuild();
            m.values.iter_mut().for_each(Interner::rebuild);
        }
        let every = config.defaults.evaluate_every.max(1);
        Ok(Engine {
            config,
            every,
            state,
            outputs: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &SlaConfig {
        &self.config
    }

    /// Takes a reloaded SLA from the next evaluation instant on (its version stamped on
    /// what that instant emits), if it changes only what may change live
    /// ([`crate::config::reload`]); otherwise keeps the running one and says why.
    pub fn reconfigure(
        &mut self,
        config: Arc<SlaConfig>,
    ) -> Result<crate::config::reload::Reload, crate::config::reload::Reload> {
        let reload = crate::config::reload::compare(&self.config, &config);
        if !reload.applicable() {
            return Err(reload);
        }
        self.config = config;
        Ok(reload)
    }

    /// Registers an input source (a file or a partition) that holds the watermark.
    /// A new input source (a partition, a file). Pending join state is bounded by
    /// `max_pending` per source.
    pub fn add_source(&mut self) -> SourceId {
        let id = self.state.watermark.add_source();
        self.state
            .join
            .set_capacity(self.config.defaults.max_pending.saturating_mul(id.0 + 1));
        id
    }

    /// The source has no more events: it stops holding the watermark back.
    pub fn end_source(&mut self, source: SourceId) {
        self.state.watermark.end(source);
        self.advance();
    }

    /// Event time reached on `source` without an event to apply (an ack read from a
    /// partition that holds the watermark).
    pub fn observe_source(&mut self, source: SourceId, time: Millis) {
        self.state.watermark.observe(source, time);
        self.advance();
    }

    /// The shell's judgement (processing time) that a source is idle or active again.
    pub fn set_source_idle(&mut self, source: SourceId, idle: bool) {
        self.state.watermark.set_idle(source, idle);
        self.advance();
    }

    pub fn watermark(&self) -> Option<Millis> {
        self.state.watermark.current()
    }

    /// How far each input source has got, and whether it is idle or ended.
    pub fn source_progress(&self) -> Vec<crate::watermark::SourceProgress> {
        self.state.watermark.progress()
    }

    /// The event time up to which every output has been produced: the latest instant,
    /// ack or escalation deadline processed (they are processed in time order), or, while
    /// an engine rebuilds quietly, the time its predecessor had got to: an engine that has
    /// not caught up yet must not claim less than was emitted before it.
    pub fn emitted_through(&self) -> Option<Millis> {
        self.state.emitted_through.max(self.state.quiet_until)
    }

    fn processed(&mut self, time: Millis) {
        self.state.emitted_through = Some(self.state.emitted_through.map_or(time, |t| t.max(time)));
    }

    /// Rebuilds state without output up to `time`: instants, acks and escalations at or
    /// before it are processed but emit nothing (a predecessor already emitted them, up to
    /// its [`Engine::emitted_through`]).
    pub fn quiet_until(&mut self, time: Millis) {
        self.state.quiet_until = Some(time);
    }

    fn quiet(&self, time: Millis) -> bool {
        self.state.quiet_until.is_some_and(|q| time <= q)
    }

    pub fn stats(&self) -> &EngineStats {
        &self.state.stats
    }

    pub fn join_stats(&self) -> &crate::join::JoinStats {
        &self.state.join.stats
    }

    /// Predictions still waiting for their label.
    pub fn pending_predictions(&self) -> usize {
        self.state.join.pending_predictions()
    }

    /// Join entries held: waiting predictions and labels, and duplicate guards.
    pub fn pending_entries(&self) -> usize {
        self.state.join.len()
    }

    /// Windows held over every model, series and segment (the whole model's included).
    pub fn windows(&self) -> usize {
        self.state
            .models
            .iter()
            .flat_map(|m| m.series.iter())
            .map(Series::segment_count)
            .sum()
    }

    /// The next output, in emission order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn model_index(&self, model_id: &str) -> Result<usize, Reason> {
        self.config
            .model(model_id)
            .map(|(i, _)| i)
            .ok_or_else(|| Reason::UnknownModel(model_id.to_string()))
    }

    fn keyed_model(&self, keys: EventKeys, model_id: &str) -> Result<usize, Reason> {
        keys.model
            .map(|m| m as usize)
            .filter(|&m| m < self.config.models.len())
            .ok_or_else(|| Reason::UnknownModel(model_id.to_string()))
    }

    fn check_time(&self, time: Millis) -> Result<(), Reason> {
        let limit = self.config.defaults.max_time_jump;
        match self.state.watermark.max_seen() {
            Some(latest) if time > latest.saturating_add(limit) => Err(Reason::TimeJump {
                time: format_rfc3339(time),
                ahead: format_duration(time - latest),
                latest: format_rfc3339(latest),
            }),
            _ => Ok(()),
        }
    }

    fn start(&mut self, model: usize, time: Millis) {
        if self.state.next_instant.is_none() {
            self.state.next_instant = Some(time.div_euclid(self.every) + 1);
            self.state.first_time = Some(time);
        }
        if let Some(m) = self.state.models.get_mut(model) {
            if !m.started && self.state.shard {
                self.state.buffer.started.push((model as u32, time));
            }
            m.started = true;
        }
    }

    /// Any input event; `source` is ignored for acks, which do not hold the watermark.
    pub fn handle(&mut self, source: SourceId, event: Event) -> Result<(), Reason> {
        match event {
            Event::Inference(e) => self.handle_inference(source, &e),
            Event::Label(e) => self.handle_label(source, &e),
            Event::Ack(a) => self.handle_ack(a),
        }
    }

    /// One inference event from `source`. An `Err` is a rejection: the shell dead-letters it.
    pub fn handle_inference(&mut self, source: SourceId, ev: &Inference) -> Result<(), Reason> {
        let keys = EventKeys::new(&self.config, &ev.model_id, &ev.request_id);
        self.handle_inference_keyed(source, ev, keys)
    }

    /// [`Engine::handle_inference`] with the event's keys computed beforehand.
    pub fn handle_inference_keyed(
        &mut self,
        source: SourceId,
        ev: &Inference,
        keys: EventKeys,
    ) -> Result<(), Reason> {
        let result = self.inference(source, ev, keys, None);
        self.counted(result)
    }

    /// [`Engine::handle_inference`] with the event's keys and its drift and data-quality
    /// facts ([`profile_facts`], with any version of this engine's SLA) computed
    /// beforehand.
    pub fn handle_inference_prepared(
        &mut self,
        source: SourceId,
        ev: &Inference,
        keys: EventKeys,
        facts: &[Fact],
    ) -> Result<(), Reason> {
        let result = self.inference(source, ev, keys, Some(facts));
        self.counted(result)
    }

    /// Counts a rejected event.
    fn counted(&mut self, result: Result<(), Reason>) -> Result<(), Reason> {
        if result.is_err() {
            self.state.stats.rejected += 1;
        }
        result
    }

    fn inference(
        &mut self,
        source: SourceId,
        ev: &Inference,
        keys: EventKeys,
        facts: Option<&[Fact]>,
    ) -> Result<(), Reason> {
        let mi = self.keyed_model(keys, &ev.model_id)?;
        let model = &self.config.models[mi];
        self.check_time(ev.timestamp)?;
        let ok = ev.status == Status::Ok;
        let max_segments = self.config.defaults.max_segments;
        let state = &mut self.state;
        let ms = &mut state.models[mi];
        let kind = if ok {
            let p = ev
                .prediction
                .as_ref()
                .ok_or_else(|| Reason::MissingField("prediction".to_string()))?;
            Some(match model.task {
                Task::BinaryClassification => {
                    let predicted = match (p.score, &p.label) {
                        (Some(s), _) => s >= model.decision_threshold,
                        (None, Some(l)) => {
                            keys.positive.unwrap_or_else(|| *l == model.positive_label)
                        }
                        (None, None) => {
                            return Err(Reason::MissingField("prediction.score".to_string()))
                        }
                    };
                    PredKind::Binary {
                        predicted,
                        score: p.score,
                    }
                }
                Task::MulticlassClassification => {
                    let l = p
                        .label
                        .as_deref()
                        .ok_or_else(|| Reason::MissingField("prediction.label".to_string()))?;
                    PredKind::Class(ms.classes.intern(l, MAX_CLASSES))
                }
                Task::Regression => {
                    let v = p
                        .value
                        .ok_or_else(|| Reason::MissingField("prediction.value".to_string()))?;
                    if !v.is_finite() {
                        return Err(Reason::invalid(
                            "prediction.value",
                            "must be a finite number",
                        ));
                    }
                    PredKind::Value(v)
                }
            })
        } else {
            None
        };

        state.stats.inferences += 1;
        if state.watermark.current().is_some_and(|w| ev.timestamp < w) {
            state.stats.late_inferences += 1;
        }
        let mut tuple = std::mem::take(&mut ms.scratch);
        tuple.clear();
        tuple.extend(
            ms.dims
                .iter()
                .zip(ms.values.iter_mut())
                .map(|(d, interner)| {
                    let v = ev
                        .attributes
                        .iter()
                        .find(|(k, _)| k == d)
                        .map(|(_, v)| v.as_str())
                        .or_else(|| {
                            (d == "model_version")
                                .then_some(ev.model_version.as_deref())
                                .flatten()
                        });
                    match v {
                        Some(v) => interner.intern(v, max_segments),
                        None => MISSING,
                    }
                }),
        );
        let dims = ms.tuples.intern(&tuple);
        ms.scratch = tuple;
        let key = keys.request;
        let joined = match kind {
            Some(kind) => state.join.insert_prediction(
                mi as u32,
                key,
                ev.timestamp,
                model.label_ttl,
                Pred { kind, dims },
                source.0 as u32,
            ),
            None => state.join.insert_failed(
                mi as u32,
                key,
                ev.timestamp,
                model.label_ttl,
                source.0 as u32,
            ),
        };
        if joined == Joined::Duplicate {
            // The first copy counted; this one only moves time.
            state.watermark.observe(source, ev.timestamp);
            self.start(mi, ev.timestamp);
            self.advance();
            return Ok(());
        }
        if let Some(v) = &ev.model_version {
            let k = ev.timestamp.div_euclid(self.every);
            if state.shard {
                state.buffer.versions.insert((mi as u32, k));
            }
            match ms.versions.get_mut(&k) {
                Some(latest) if latest.0 > ev.timestamp => {}
                Some(latest) if latest.1 == *v => latest.0 = ev.timestamp,
                Some(latest) => *latest = (ev.timestamp, v.clone()),
                None => {
                    ms.versions.insert(k, (ev.timestamp, v.clone()));
                }
            }
        }
        let fact = Fact::Inference {
            ok,
            latency: ev.latency_ms.map(Latency::new),
        };
        self.record(mi, ev.timestamp, fact, dims);
        let mut own = std::mem::take(&mut self.state.models[mi].profile_facts);
        own.clear();
        let facts = match facts {
            Some(facts) => facts,
            None => {
                profile_facts(&self.config, keys, ev, &mut own);
                &own
            }
        };
        for fact in facts {
            self.record(mi, ev.timestamp, *fact, dims);
        }
        self.state.models[mi].profile_facts = own;
        match joined {
            Joined::Matched(m) => self.record_match(mi, m),
            Joined::AfterTtl(u) => self.record_unlabeled(mi, u),
            _ => {}
        }
        self.state.watermark.observe(source, ev.timestamp);
        self.start(mi, ev.timestamp);
        self.advance();
        Ok(())
    }

    /// One label event from `source`. An `Err` is a rejection: the shell dead-letters it.
    pub fn handle_label(&mut self, source: SourceId, ev: &Label) -> Result<(), Reason> {
        let keys = EventKeys::new(&self.config, &ev.model_id, &ev.request_id);
        self.handle_label_keyed(source, ev, keys)
    }

    /// [`Engine::handle_label`] with the event's keys computed beforehand.
    pub fn handle_label_keyed(
        &mut self,
        source: SourceId,
        ev: &Label,
        keys: EventKeys,
    ) -> Result<(), Reason> {
        let result = self.label(source, ev, keys);
        self.counted(result)
    }

    fn label(&mut self, source: SourceId, ev: &Label, keys: EventKeys) -> Result<(), Reason> {
        let mi = self.keyed_model(keys, &ev.model_id)?;
        let model = &self.config.models[mi];
        self.check_time(ev.timestamp)?;
        let ms = &mut self.state.models[mi];
        let truth = match model.task {
            Task::BinaryClassification => {
                let l = ev
                    .label
                    .as_deref()
                    .ok_or_else(|| Reason::MissingField("label".to_string()))?;
                Truth::Binary(keys.positive.unwrap_or_else(|| l == model.positive_label))
            }
            Task::MulticlassClassification => {
                let l = ev
                    .label
                    .as_deref()
                    .ok_or_else(|| Reason::MissingField("label".to_string()))?;
                Truth::Class(ms.classes.intern(l, MAX_CLASSES))
            }
            Task::Regression => {
                let v = ev
                    .value
                    .ok_or_else(|| Reason::MissingField("value".to_string()))?;
                if !v.is_finite() {
                    return Err(Reason::invalid("value", "must be a finite number"));
                }
                Truth::Value(v)
            }
        };
        self.state.stats.labels += 1;
        if self
            .state
            .watermark
            .current()
            .is_some_and(|w| ev.timestamp < w)
        {
            self.state.stats.late_labels += 1;
        }
        let joined = self.state.join.insert_label(
            mi as u32,
            keys.request,
            ev.timestamp,
            model.early_label_ttl,
            truth,
            source.0 as u32,
        );
        match joined {
            Joined::Matched(m) => self.record_match(mi, m),
            Joined::AfterTtl(u) => self.record_unlabeled(mi, u),
            Joined::Pending | Joined::Duplicate | Joined::ForFailedRequest | Joined::Unmatched => {}
        }
        self.state.watermark.observe(source, ev.timestamp);
        self.start(mi, ev.timestamp);
        self.advance();
        Ok(())
    }

    /// One acknowledgement. It takes effect when the watermark reaches its time, after the
    /// instants up to then have been evaluated; one that matches no open incident then
    /// becomes a dead letter.
    pub fn handle_ack(&mut self, ack: Ack) -> Result<(), Reason> {
        let forward = self.state.shard.then(|| ack.clone());
        let target = match ack.target {
            AckTarget::Incident(id) => AckTargetState::Incident(id),
            AckTarget::Objective {
                model_id,
                objective,
                segment,
            } => {
                let model = match self.model_index(&model_id) {
                    Ok(m) => m,
                    Err(e) => {
                        self.state.stats.rejected += 1;
                        return Err(e);
                    }
                };
                let Some(oi) = self.config.models[model]
                    .objectives
                    .iter()
                    .position(|o| o.name == objective)
                else {
                    self.state.stats.rejected += 1;
                    return Err(Reason::UnknownObjective {
                        model_id,
                        objective,
                    });
                };
                AckTargetState::Objective {
                    model,
                    objective: oi,
                    segment,
                }
            }
        };
        self.state.stats.acks += 1;
        if let Some(ack) = forward {
            // A shard hands acks on to the evaluator, which holds the incidents (a re-read
            // one was handed on by the partition's previous owner).
            if !self.state.replaying {
                self.state.buffer.acks.push(ack);
            }
            return Ok(());
        }
        let (position, raw) = match ack.origin {
            Some(Origin { position, raw, .. }) => (Some(position), raw),
            None => (None, Vec::new()),
        };
        self.state.ack_seq += 1;
        let entry = AckEntry {
            target,
            resolve: ack.action == AckAction::Resolve,
            by: ack.by,
            time: ack.timestamp,
            position,
            raw,
        };
        self.state
            .acks
            .insert((ack.timestamp, self.state.ack_seq), entry);
        self.advance();
        Ok(())
    }

    /// Applies acks left waiting after the last instant. Call once every source has ended.
    pub fn finish(&mut self) {
        self.advance();
        while let Some((_, a)) = self.state.acks.pop_first() {
            self.apply_ack(a);
        }
    }

    /// Records `fact` at `time` in every series that uses it, in the segments of the
    /// dimension tuple `dims` ([`Tuples`] id).
    fn record(&mut self, mi: usize, time: Millis, fact: Fact, dims: u32) {
        let k = time.div_euclid(self.every);
        if self.state.shard {
            self.record_partial(mi, k, fact, dims);
            return;
        }
        let max_segments = self.config.defaults.max_segments;
        let ModelState {
            series,
            tuples,
            scratch: key,
            ..
        } = &mut self.state.models[mi];
        let dims = tuples.get(dims);
        let mut stats = RecordStats::default();
        for s in series {
            if !s.uses(&fact) {
                continue;
            }
            key.clear();
            key.extend(segment_values(s, dims));
            if fold_overflow(s, key, max_segments) {
                self.state.stats.segment_overflow += 1;
            }
            s.record(k, fact, Some(key), &mut stats);
        }
        self.state.stats.too_late += u64::from(stats.too_late);
    }

    fn record_match(&mut self, mi: usize, m: Match<Pred, Truth>) {
        let time = m.prediction_time.max(m.label_time);
        let delay_ms = m.label_time - m.prediction_time;
        let fact = match (m.prediction.kind, m.label) {
            (PredKind::Binary { predicted, score }, Truth::Binary(truth)) => Fact::Binary {
                truth,
                predicted,
                scored: score.map(|s| ScoredOutcome::new(s, truth)),
                delay_ms,
            },
            (PredKind::Class(predicted), Truth::Class(truth)) => Fact::Multiclass {
                truth,
                predicted,
                delay_ms,
            },
            (PredKind::Value(predicted), Truth::Value(truth)) => Fact::Regression {
                errors: RegressionOutcome::new(predicted, truth),
                delay_ms,
            },
            // Payloads are built from the same model's task; nothing else can meet here.
            _ => return,
        };
        self.record(mi, time, fact, m.prediction.dims);
    }

    fn record_unlabeled(&mut self, mi: usize, u: Unlabeled<Pred>) {
        self.record(mi, u.deadline, Fact::Unlabeled, u.prediction.dims);
    }

    fn advance(&mut self) {
        let Some(wm) = self.state.watermark.current() else {
            return;
        };
        if self.state.shard {
            self.advance_shard(wm);
            return;
        }
        loop {
            let due = self
                .state
                .next_instant
                .map(|n| n * self.every)
                .filter(|t| *t <= wm);
            let bound = due.unwrap_or(wm);
            for e in self.state.join.expire_before(bound) {
                self.record_unlabeled(e.model as usize, e.unlabeled);
            }
            // Acks and escalation deadlines before the instant, in time order (an ack at
            // the same time as a deadline comes first: it stops that escalation).
            let ready = |t: Millis| match due {
                Some(instant) => t < instant,
                None => t <= wm,
            };
            loop {
                let ack = self
                    .state
                    .acks
                    .first_key_value()
                    .map(|(k, _)| k.0)
                    .filter(|t| ready(*t));
                let esc = self
                    .state
                    .escalations
                    .first()
                    .map(|(t, _)| *t)
                    .filter(|t| ready(*t));
                match (ack, esc) {
                    (Some(a), e) if e.is_none_or(|e| a <= e) => {
                        if let Some((_, entry)) = self.state.acks.pop_first() {
                            self.apply_ack(entry);
                            self.processed(a);
                        }
                    }
                    (_, Some(_)) => {
                        if let Some((t, id)) = self.state.escalations.pop_first() {
                            self.escalate(t, &id);
                            self.processed(t);
                        }
                    }
                    _ => break,
                }
            }
            match (due, self.state.next_instant) {
                (Some(_), Some(n)) => {
                    self.evaluate(n);
                    self.processed(n * self.every);
                    self.state.next_instant = Some(n + 1);
                }
                _ => break,
            }
        }
    }

    fn evaluate(&mut self, n: i64) {
        let at = n * self.every;
        let quiet = self.quiet(at);
        let event_time = format_rfc3339(at);
        self.state.stats.instants += 1;
        let config = Arc::clone(&self.config);
        for (mi, model) in config.models.iter().enumerate() {
            let policy = model
                .escalation
                .as_ref()
                .and_then(|name| config.escalation_policies.get(name));
            let ms = &mut self.state.models[mi];
            if !ms.started {
                continue;
            }
            for s in &mut ms.series {
                s.advance_to(n);
            }
            for (oi, objective) in model.objectives.iter().enumerate() {
                let inhibited_now = inhibited(model, &ms.objectives, oi);
                let os = &ms.objectives[oi];
                let burn_series = os.burn.clone();
                let series = &ms.series[os.series];
                let mut keys: BTreeSet<SegmentKey> = BTreeSet::new();
                keys.insert(Box::new([]));
                if !series.dims.is_empty() {
                    keys.extend(series.keys_with_data().cloned());
                }
                keys.extend(os.trackers.keys().cloned());
                // Segments in the order of their values (the whole model first), whatever
                // order their values were first seen in.
                let mut keys: Vec<(Segment, SegmentKey)> = keys
                    .into_iter()
                    .map(|k| (ms.segment(series, &k), k))
                    .collect();
                keys.sort();
                // First every segment is assessed and its tracker stepped, so that the
                // incident figures of this instant (the whole model's cover every segment)
                // include what opens and resolves now; then the outputs follow.
                let mut assessed = Vec::with_capacity(keys.len());
                for (segment, key) in keys {
                    let mut m = series.measure(&key, objective.metric);
                    // A count or rate over a window the stream has not covered yet is unknown.
                    let covered = self
                        .state
                        .first_time
                        .is_some_and(|f| at - objective.window >= f);
                    if objective.metric.is_volume() && !covered {
                        m.value = None;
                    }
                    let (state, fired) = match &objective.burn_rate {
                        Some(pairs) => {
                            let spans: Vec<(Measured, Measured)> = burn_series
                                .iter()
                                .map(|&(l, s)| {
                                    (
                                        ms.series[l].measure(&key, objective.metric),
                                        ms.series[s].measure(&key, objective.metric),
                                    )
                                })
                                .collect();
                            burn_rate::assess(
                                objective.op,
                                objective.target,
                                objective.min_samples,
                                pairs,
                                &spans,
                            )
                        }
                        None => (assess(objective, m), None),
                    };
                    let os = &mut ms.objectives[oi];
                    let tracker = os.trackers.entry(key.clone()).or_default();
                    let transition = tracker.step(objective, state, m, at, || {
                        incident_id(&model.model_id, &objective.name, &segment, at)
                    });
                    match &transition {
                        Some(Transition::Opened(i)) => os.log.opened(&key, &i.id, at),
                        Some(Transition::Resolved(i)) => os.log.resolved(&i.id, at, at),
                        _ => {}
                    }
                    assessed.push((key, segment, m, state, fired, transition));
                }
                let log = &ms.objectives[oi].log;
                let figures: Vec<_> = assessed
                    .iter()
                    .map(|a| log.figures(&a.0, at, objective.window))
                    .collect();
                for ((key, segment, m, state, fired, transition), figures) in
                    assessed.into_iter().zip(figures)
                {
                    let snapshot = Output::Metric(MetricSnapshot {
                        model_id: model.model_id.clone(),
                        segment: segment.clone(),
                        objective: objective.name.clone(),
                        metric: objective.metric.name(),
                        feature: objective.feature.clone(),
                        window: objective.window_text.clone(),
                        event_time: event_time.clone(),
                        value: m.value,
                        samples: m.samples,
                        state,
                        incidents_open: figures.open,
                        incidents_opened: figures.opened,
                        mtta_seconds: figures.mtta_seconds,
                        mttr_seconds: figures.mttr_seconds,
                        sla_version: config.sla_version.clone(),
                    });
                    if !quiet {
                        self.outputs.push_back(snapshot);
                        self.state.stats.snapshots += 1;
                    }
                    let Some(transition) = transition else {
                        continue;
                    };
                    let mut escalations = Vec::new();
                    let (kind, incident) = match transition {
                        Transition::Opened(mut i) => {
                            self.state.stats.incidents_opened += 1;
                            self.state.open.insert(i.id.clone(), (mi, oi, key.clone()));
                            i.model_version = ms.version_before(n);
                            // An inhibited incident is recorded but never pages.
                            i.escalation = policy
                                .filter(|_| !inhibited_now)
                                .and_then(|p| Escalation::open(p, at));
                            if let Some(open) = ms.objectives[oi]
                                .trackers
                                .get_mut(&key)
                                .and_then(|t| t.open.as_mut())
                            {
                                open.model_version.clone_from(&i.model_version);
                                open.escalation.clone_from(&i.escalation);
                            }
                            if let (Some(p), Some(e)) = (policy, &i.escalation) {
                                if let Some(d) = e.due {
                                    self.state.escalations.insert((d, i.id.clone()));
                                }
                                if !quiet {
                                    escalations.push(escalation_event(
                                        &config,
                                        mi,
                                        oi,
                                        segment.clone(),
                                        &i,
                                        p,
                                        "trigger",
                                        "opened".into(),
                                        at,
                                    ));
                                }
                            }
                            (BreachKind::Opened, i)
                        }
                        Transition::SeverityChanged { incident, .. } => {
                            (BreachKind::SeverityChanged, incident)
                        }
                        Transition::Resolved(i) => {
                            self.state.stats.incidents_resolved += 1;
                            self.state.open.remove(&i.id);
                            if let (Some(p), Some(e)) = (policy, &i.escalation) {
                                if let Some(d) = e.due {
                                    self.state.escalations.remove(&(d, i.id.clone()));
                                }
                                if !quiet {
                                    escalations.push(escalation_event(
                                        &config,
                                        mi,
                                        oi,
                                        segment.clone(),
                                        &i,
                                        p,
                                        "resolve",
                                        "resolved".into(),
                                        at,
                                    ));
                                }
                            }
                            (BreachKind::Resolved, i)
                        }
                    };
                    let event = breach_event(
                        &config,
                        mi,
                        oi,
                        segment,
                        &incident,
                        kind,
                        m,
                        at,
                        ms.version_before(n),
                        None,
                        inhibited_now,
                    );
                    let event = BreachEvent {
                        burn_rate: fired.as_ref().map(BurnRateFired::from),
                        ..event
                    };
                    if !quiet {
                        self.outputs.push_back(Output::Breach(event));
                        self.outputs
                            .extend(escalations.into_iter().map(Output::Escalation));
                    }
                }
                let os = &mut ms.objectives[oi];
                os.trackers.retain(|_, t| !t.is_idle());
                os.log.prune(at, objective.window);
            }
            for s in &mut ms.series {
                s.drop_idle();
            }
            ms.prune_versions(n);
        }
    }

    /// An escalation deadline passed: the incident's next level is notified.
    fn escalate(&mut self, due: Millis, id: &str) {
        let Some((mi, oi, key)) = self.state.open.get(id).cloned() else {
            return;
        };
        let config = Arc::clone(&self.config);
        let model = &config.models[mi];
        let Some(policy) = model
            .escalation
            .as_ref()
            .and_then(|n| config.escalation_policies.get(n))
        else {
            return;
        };
        let ms = &mut self.state.models[mi];
        let segment = ms.segment(&ms.series[ms.objectives[oi].series], &key);
        // While an inhibiting objective is open, the due level passes without a page.
        let silent = inhibited(model, &ms.objectives, oi);
        let Some(incident) = ms.objectives[oi]
            .trackers
            .get_mut(&key)
            .and_then(|t| t.open.as_mut())
        else {
            return;
        };
        let Some(escalation) = incident.escalation.as_mut() else {
            return;
        };
        let Some((level, cycle)) = escalation.fire(policy) else {
            return;
        };
        if let Some(d) = escalation.due {
            self.state.escalations.insert((d, id.to_string()));
        }
        let reason = if cycle > 0 {
            format!("unacknowledged: repeat {cycle}, level {level}")
        } else {
            format!(
                "unacknowledged {} after opening",
                format_duration(policy.levels[level].after)
            )
        };
        let incident = incident.clone();
        if !silent && !self.quiet(due) {
            self.outputs.push_back(Output::Escalation(escalation_event(
                &config, mi, oi, segment, &incident, policy, "trigger", reason, due,
            )));
        }
    }

    fn apply_ack(&mut self, a: AckEntry) {
        let quiet = self.quiet(a.time);
        let found = match &a.target {
            AckTargetState::Incident(id) => self.state.open.get(id).cloned(),
            AckTargetState::Objective {
                model,
                objective,
                segment,
            } => {
                let ms = &self.state.models[*model];
                let series = &ms.series[ms.objectives[*objective].series];
                let key: Option<SegmentKey> = if segment.len() != series.dims.len() {
                    None
                } else {
                    series
                        .dims
                        .iter()
                        .map(|&d| {
                            segment
                                .get(&ms.dims[d])
                                .and_then(|v| ms.values[d].lookup(v))
                        })
                        .collect()
                };
                key.map(|k| (*model, *objective, k))
            }
        };
        // Only an incident that had opened by the ack's time can be acknowledged by it (an
        // ack read late, behind the watermark, must not reach a later incident).
        let found = found.filter(|(mi, oi, key)| {
            self.state.models[*mi].objectives[*oi]
                .trackers
                .get(key)
                .and_then(|t| t.open.as_ref())
                .is_some_and(|i| i.opened_at <= a.time)
        });
        let Some((mi, oi, key)) = found else {
            let what = match &a.target {
                AckTargetState::Incident(id) => format!("incident {id} is not open"),
                AckTargetState::Objective {
                    model,
                    objective,
                    segment,
                } => {
                    let m = &self.config.models[*model];
                    let seg: Vec<String> =
                        segment.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!(
                        "no incident open for model {} objective {} segment {{{}}}",
                        m.model_id,
                        m.objectives[*objective].name,
                        seg.join(",")
                    )
                }
            };
            let position = a.position.unwrap_or(Position::Line {
                file: String::new(),
                line: 0,
            });
            self.state.stats.acks_unmatched += 1;
            if !quiet {
                self.outputs.push_back(Output::DeadLetter(DeadLetter {
                    origin: Origin {
                        input: InputKind::Acks,
                        position,
                        raw: a.raw,
                    },
                    reason: Reason::NoOpenIncident(what),
                }));
            }
            return;
        };
        let config = Arc::clone(&self.config);
        let policy = config.models[mi]
            .escalation
            .as_ref()
            .and_then(|n| config.escalation_policies.get(n));
        let ms = &mut self.state.models[mi];
        let Some(tracker) = ms.objectives[oi].trackers.get_mut(&key) else {
            return;
        };
        let (kind, incident) = if a.resolve {
            let Some(i) = tracker.resolve_by_hand() else {
                return;
            };
            self.state.open.remove(&i.id);
            self.state.stats.incidents_resolved += 1;
            if let Some(d) = i.escalation.as_ref().and_then(|e| e.due) {
                self.state.escalations.remove(&(d, i.id.clone()));
            }
            (BreachKind::Resolved, i)
        } else {
            let Some(i) = tracker.open.as_mut() else {
                return;
            };
            if i.acknowledged_at.is_some() {
                self.state.stats.acks_repeated += 1;
                return;
            }
            i.acknowledged_at = Some(a.time);
            if let (Some(p), Some(e)) = (policy, i.escalation.as_mut()) {
                if let Some(d) = e.due {
                    self.state.escalations.remove(&(d, i.id.clone()));
                }
                e.acknowledge(p, a.time);
                if let Some(d) = e.due {
                    self.state.escalations.insert((d, i.id.clone()));
                }
            }
            (BreachKind::Acknowledged, i.clone())
        };
        // An ack counts from the first instant after it, whenever it was read.
        let counted_at = (a.time.div_euclid(self.every) + 1) * self.every;
        let log = &mut ms.objectives[oi].log;
        match kind {
            BreachKind::Resolved => log.resolved(&incident.id, a.time, counted_at),
            _ => log.acknowledged(&incident.id, a.time, counted_at),
        }
        let series = &ms.series[ms.objectives[oi].series];
        let segment = ms.segment(series, &key);
        let segment_copy = segment.clone();
        let by_name = a.by.clone().unwrap_or_else(|| "someone".to_string());
        let inhibited_now = inhibited(&config.models[mi], &ms.objectives, oi);
        let none = crate::summary::Measured {
            value: None,
            samples: 0,
        };
        let event = breach_event(
            &config,
            mi,
            oi,
            segment,
            &incident,
            kind,
            none,
            a.time,
            incident.model_version.clone(),
            a.by,
            inhibited_now,
        );
        if !quiet {
            self.outputs.push_back(Output::Breach(event));
            if let (Some(p), Some(_)) = (policy, &incident.escalation) {
                let (action, reason) = match kind {
                    BreachKind::Resolved => ("resolve", format!("resolved by {}", by_name)),
                    _ => ("acknowledge", format!("acknowledged by {}", by_name)),
                };
                let e = escalation_event(
                    &config,
                    mi,
                    oi,
                    segment_copy,
                    &incident,
                    p,
                    action,
                    reason,
                    a.time,
                );
                self.outputs.push_back(Output::Escalation(e));
            }
        }
    }
}

/// The reference proportions a drift series compares with (empty for other families).
fn drift_bins(model: &ModelSla, family: Family) -> Vec<f64> {
    let Family::Drift(f) = family else {
        return Vec::new();
    };
    let Some(profile) = &model.profile else {
        return Vec::new();
    };
    let feature = if f == SCORE {
        profile.score.as_ref()
    } else {
        profile.features.values().nth(f as usize)
    };
    feature.map(|p| p.drift_bins()).unwrap_or_default()
}

/// Whether another objective of the model that lists objective `oi` in its `inhibits` has
/// an incident open.
fn inhibited(model: &ModelSla, objectives: &[ObjectiveState], oi: usize) -> bool {
    let name = &model.objectives[oi].name;
    model
        .objectives
        .iter()
        .zip(objectives)
        .enumerate()
        .any(|(j, (o, state))| {
            j != oi
                && o.inhibits.contains(name)
                && state.trackers.values().any(|t| t.open.is_some())
        })
}

/// Builds an escalation event (with its PagerDuty form) for an incident of objective `oi`
/// of model `mi`, at the level it has reached.
#[allow(clippy::too_many_arguments)]
fn escalation_event(
    config: &SlaConfig,
    mi: usize,
    oi: usize,
    segment: Segment,
    incident: &crate::breach::OpenIncident,
    policy: &EscalationPolicy,
    action: &'static str,
    reason: String,
    at: Millis,
) -> EscalationEvent {
    let model = &config.models[mi];
    let objective = &model.objectives[oi];
    let level = incident.escalation.as_ref().map_or(0, |e| e.level);
    let notify = policy
        .levels
        .get(level)
        .map(|l| l.notify.clone())
        .unwrap_or_default();
    let segment_text = if segment.0.is_empty() {
        String::new()
    } else {
        format!(" [{}]", segment.describe())
    };
    let summary = format!(
        "{} {}{}: {} {} {} missed ({})",
        model.model_id,
        objective.name,
        segment_text,
        objective.metric.name(),
        objective.op.symbol(),
        objective.target,
        incident.severity.name()
    );
    let details = serde_json::json!({
        "incident_id": incident.id,
        "objective": objective.name,
        "segment": segment,
        "window": objective.window_text,
        "level": level,
        "notify": notify,
        "opened_at": format_rfc3339(incident.opened_at),
        "runbook": model.runbook,
        "sla_version": config.sla_version,
    });
    EscalationEvent {
        incident_id: incident.id.clone(),
        level,
        notify: notify.clone(),
        reason,
        event_time: format_rfc3339(at),
        model_id: model.model_id.clone(),
        objective: objective.name.clone(),
        segment,
        severity: incident.severity,
        sla_version: config.sla_version.clone(),
        pagerduty: PagerDutyEvent {
            event_action: action,
            dedup_key: incident.id.clone(),
            payload: PagerDutyPayload {
                summary,
                source: "slaguard".to_string(),
                severity: incident.severity.name(),
                timestamp: format_rfc3339(at),
                component: model.model_id.clone(),
                group: model.owner.clone(),
                class: objective.metric.name(),
                custom_details: details,
            },
        },
    }
}

/// Folds `key` into `__other__` when it is a new segment of a series that already holds
/// `max_segments`; returns whether it did.
fn fold_overflow(series: &Series, key: &mut [u32], max_segments: usize) -> bool {
    let full = !key.is_empty() && !series.has_segment(key) && series.segment_count() > max_segments;
    if full {
        key.iter_mut().for_each(|v| *v = OTHER);
    }
    full
}

/// Builds a breach event for an incident of objective `oi` of model `mi`.
#[allow(clippy::too_many_arguments)]
fn breach_event(
    config: &SlaConfig,
    mi: usize,
    oi: usize,
    segment: Segment,
    incident: &crate::breach::OpenIncident,
    kind: BreachKind,
    m: crate::summary::Measured,
    at: Millis,
    version: Option<String>,
    by: Option<String>,
    inhibited: bool,
) -> BreachEvent {
    let model = &config.models[mi];
    let objective = &model.objectives[oi];
    BreachEvent {
        incident_id: incident.id.clone(),
        kind,
        severity: incident.severity,
        model_id: model.model_id.clone(),
        model_version: version,
        segment,
        objective: objective.name.clone(),
        metric: objective.metric.name(),
        op: objective.op.symbol(),
        target: objective.target,
        warn_at: objective.warn_at,
        observed: m.value,
        window: objective.window_text.clone(),
        samples: m.samples,
        event_time: format_rfc3339(at),
        sla_version: config.sla_version.clone(),
        owner: model.owner.clone(),
        runbook: model.runbook.clone(),
        opened_at: format_rfc3339(incident.opened_at),
        inhibited,
        by,
        burn_rate: None,
    }
}
