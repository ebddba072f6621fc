//! `slaguard run`: the engine as two Kafka consumer groups in every instance (SPEC §7).
//!
//! - The **shard** stage (group `<group>`) reads the input partitions it is assigned: it
//!   joins predictions with their labels and summarises the facts into partial batches
//!   ([`crate::partial`]), written to the internal topic `<prefix>partials` in Kafka
//!   transactions that also commit its input offsets. Undecodable input is dead-lettered
//!   in the same transaction.
//! - The **evaluator** stage (group `<group>.evaluator`) reads the partials topic: it
//!   merges every shard's batches into global per-model windows, evaluates each instant
//!   once every input partition has reported past it (or gone idle), and produces the
//!   metric, breach and escalation events — in transactions with its offsets under
//!   `--exactly-once`, at least once otherwise.
//!
//! The results do not depend on the partition count nor on how partitions are spread
//! over instances. Every input partition is a source of the watermark: an inferences or
//! labels partition silent for `idle_timeout` of processing time stops holding it back,
//! an acks partition as soon as it is read to its end.
//!
//! Each stage checkpoints the same way: wait for every output to be acknowledged, save the
//! engine state with the offsets it covers, then commit (in the transaction, where there
//! is one) the offsets a successor would rebuild from, with a [`CommitMark`]. This runs
//! every `commit_interval`, when partitions are revoked, and at shutdown (SIGINT/SIGTERM).
//! A restarted instance with the same assignment restores its checkpoint and reads on
//! from its offsets. A shard snapshots each pair's join state ([`handover`]) every
//! snapshot interval and when it gives its partitions up; a new owner imports the
//! snapshot and re-reads only what its predecessor read after it, without counting it
//! again. A new evaluator re-reads batches quietly up to where its predecessor's outputs
//! reached.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{fingerprint, Checkpoint, CheckpointStore, CommitMark};
use super::decoder::{Decoder, InputBatch, InputMessage, BATCH_MESSAGES};
use super::handover;
use super::partials::{PartialMessage, MAX_MESSAGE_BYTES};
use super::partition_queues::PartitionQueues;
use super::sink::{Sink, SinkCounts};
use super::{preflight, KafkaSettings, KafkaShellError};
use crate::config::SlaConfig;
use crate::dead_letter::{DeadLetter, InputKind, Origin, Position, Reason};
use crate::engine::Engine;
use crate::event::Event;
use crate::series::Fact;
use crate::telemetry::{Outcome, StageReport, Telemetry};
use crate::time::Millis;
use crate::watermark::SourceId;

/// How `run` behaves, beyond the topics.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub group: String,
    pub state_dir: PathBuf,
    pub commit_interval: Duration,
    /// How long the final drain may wait for outputs to be acknowledged.
    pub shutdown_timeout: Duration,
    /// Static group membership (`group.instance.id`): a restarted instance with the same
    /// id takes its partitions back without a rebalance, and so restores its checkpoints.
    /// It also names the instance's transactional producers, so that a restart fences a
    /// crashed predecessor at once.
    pub instance_id: Option<String>,
    /// Kafka transactions for the evaluator's outputs too: each checkpoint commits them
    /// together with the offsets of the batches they came from.
    pub exactly_once: bool,
    /// How often shards snapshot their join state to the join-state topic (also done
    /// whenever they give partitions up): a successor after a crash re-reads at most
    /// this much input.
    pub snapshot_interval: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Input messages read by the shard stage.
    pub messages: u64,
    /// Partial batches read by the evaluator stage.
    pub batches: u64,
    /// Outputs of both stages (the shard writes dead letters and partials).
    pub outputs: SinkCounts,
    pub checkpoints: u64,
    pub failed_commits: u64,
    /// Whether either stage restored a checkpoint at its first assignment.
    pub restored: bool,
    /// Partition pairs whose join state was taken over from a snapshot.
    pub snapshot_pairs: u64,
    /// Input messages re-read to rebuild join state (not counted again).
    pub replayed: u64,
    /// Times a stage failed by the cluster was made again.
    pub stage_restarts: u64,
}

type PartitionKey = (String, i32);

/// What one stage does with what it reads.
#[derive(Clone)]
enum Stage {
    Shard(ShardStage),
    Evaluator(EvaluatorStage),
}

#[derive(Clone)]
struct ShardStage {
    /// After a rebuild, per partition being re-read: messages below this offset were read
    /// and summarised by the previous owner.
    replay_until: BTreeMap<PartitionKey, i64>,
    /// Per pair, its latest join-state snapshot (see [`handover`]).
    snapshots: BTreeMap<i32, handover::Snapshot>,
    /// Per partition, the offset its pair's latest snapshot was taken at: the committed
    /// offset, from which a successor reads on.
    snapshot_next: BTreeMap<PartitionKey, i64>,
    last_snapshot: Option<Instant>,
}

impl ShardStage {
    fn new() -> ShardStage {
        ShardStage {
            replay_until: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            snapshot_next: BTreeMap::new(),
            last_snapshot: None,
        }
    }
}

#[derive(Clone)]
struct EvaluatorStage {
    /// Every input partition and the engine source that shards' progress on it feeds.
    inputs: BTreeMap<PartitionKey, SourceId>,
    /// The input partitions at start-up, from the cluster's metadata.
    known: Vec<PartitionKey>,
    /// The latest interval any batch read so far reaches (for the rebuild marks).
    reached: Option<i64>,
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::Shard(_) => "shard",
            Stage::Evaluator(_) => "evaluator",
        }
    }
}

/// Everything a stage's message loop and its rebalance callbacks share.
struct State {
    stage: Stage,
    config: Arc<SlaConfig>,
    settings: KafkaSettings,
    engine: Engine,
    sink: Sink,
    store: CheckpointStore,
    fingerprint: [u8; 32],
    idle_timeout: Duration,
    /// How often a shard snapshots its join state to the join-state topic.
    snapshot_interval: Duration,
    /// Assigned partitions → engine source (a shard's input partitions; none for the
    /// evaluator's partials partition).
    sources: BTreeMap<PartitionKey, Option<SourceId>>,
    /// Next offset to read, per partition consumed from.
    offsets: BTreeMap<PartitionKey, i64>,
    /// After a restore: messages below these offsets are already in the engine state.
    skip_below: BTreeMap<PartitionKey, i64>,
    /// After a rebuild: messages below these offsets were read before, and dead-lettered
    /// if they had to be.
    dead_below: BTreeMap<PartitionKey, i64>,
    /// Sequence number of the last checkpoint.
    seq: u64,
    /// Where reading starts, per assigned partition with a committed offset.
    start: BTreeMap<PartitionKey, i64>,
    /// A client of its own for end offsets, apart from the group consumer.
    offsets_client: BaseConsumer,
    last_message: BTreeMap<PartitionKey, Instant>,
    idle: BTreeSet<PartitionKey>,
    /// Per partition: (interval, first offset seen in it), oldest first.
    marks: BTreeMap<PartitionKey, VecDeque<(i64, i64)>>,
    /// How far back in event time live state can reach (see `rebuild_horizon`).
    horizon: Millis,
    every: Millis,
    summary: RunSummary,
    /// An error raised inside a rebalance callback, reported by the loop.
    failure: Option<KafkaShellError>,
    /// Where the stage publishes its figures (`/metrics`, the status page).
    telemetry: Arc<Telemetry>,
    /// Messages read per topic, by [`Outcome`] (in `Outcome::ALL` order).
    read: BTreeMap<String, [u64; 4]>,
    /// Dead letters written, by reason code.
    dead_reasons: BTreeMap<&'static str, u64>,
    /// The current assignment has been taken (state restored, taken over or rebuilt).
    ready: bool,
    /// A shard's decoding thread.
    decoder: Option<Decoder>,
    /// A shard's input partitions, each read from a queue of its own (by the decoding
    /// thread).
    queues: Arc<Mutex<PartitionQueues>>,
    /// The last batch applied from the partition queues filled its batch: they may
    /// have more.
    queued_more: bool,
}

impl State {
    /// The evaluator reads one message of partial batches.
    fn handle(&mut self, m: &BorrowedMessage<'_>) -> Result<(), KafkaShellError> {
        let key = (m.topic().to_string(), m.partition());
        let offset = m.offset();
        if self.skip_below.get(&key).is_some_and(|s| offset < *s) {
            self.count(&key.0, Outcome::Skipped);
            return Ok(());
        }
        self.handle_partials(&key, m)?;
        self.offsets.insert(key.clone(), offset + 1);
        self.last_message.insert(key.clone(), Instant::now());
        self.idle.remove(&key);
        Ok(())
    }

    /// An empty batch for a shard to fill with input messages.
    fn input_batch(&mut self) -> InputBatch {
        self.decoder
            .as_mut()
            .map(Decoder::batch)
            .unwrap_or_default()
    }

    /// A shard hands a batch of input messages over to be decoded, and applies the
    /// batches decoded before it; this one too when `settle` (the consumer has nothing
    /// more ready), else it is applied with the next.
    fn submit(&mut self, batch: InputBatch, settle: bool) -> Result<(), KafkaShellError> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(());
        };
        if batch.is_empty() {
            decoder.recycle(batch);
        } else {
            decoder.submit(batch)?;
        }
        self.apply_decoded(if settle { 0 } else { DECODED_AHEAD })
    }

    /// Applies every batch in flight: what is read is in the state.
    fn settle(&mut self) -> Result<(), KafkaShellError> {
        self.apply_decoded(0)
    }

    /// Applies decoded batches, oldest first, until `keep` are left in flight.
    fn apply_decoded(&mut self, keep: usize) -> Result<(), KafkaShellError> {
        while self.decoder.as_ref().is_some_and(|d| d.in_flight() > keep) {
            let Some(batch) = self
                .decoder
                .as_mut()
                .map(Decoder::take)
                .transpose()?
                .flatten()
            else {
                break;
            };
            if let Some(full) = batch.gathered {
                self.queued_more = full;
            }
            let applied = self.apply_batch(&batch);
            if let Some(d) = self.decoder.as_mut() {
                d.recycle(batch);
            }
            applied?;
        }
        Ok(())
    }

    /// A shard applies a decoded batch, message by message in the order read.
    fn apply_batch(&mut self, batch: &InputBatch) -> Result<(), KafkaShellError> {
        let now = Instant::now();
        for (topic, partition, run) in batch.partitions() {
            let key = (topic.to_string(), partition);
            if let Some(next) = self.apply_run(&key, batch, run)? {
                self.offsets.insert(key.clone(), next);
                self.last_message.insert(key.clone(), now);
                self.idle.remove(&key);
            }
        }
        let batches = self.engine.ready_batches();
        self.send_batches(batches)
    }

    /// Applies consecutive messages of partition `key`; returns the offset to read next,
    /// unless every message was skipped.
    fn apply_run(
        &mut self,
        key: &PartitionKey,
        batch: &InputBatch,
        run: &[InputMessage],
    ) -> Result<Option<i64>, KafkaShellError> {
        let skip_below = self.skip_below.get(key).copied();
        let dead_below = self.dead_below.get(key).copied();
        let source = match self.sources.get(key) {
            Some(s) => *s,
            None => {
                // A partition we were not told about (cannot happen with the group protocol).
                let s = Some(self.engine.add_source());
                self.sources.insert(key.clone(), s);
                s
            }
        };
        let mut counts = [0u64; 4];
        let mut next = None;
        for m in run {
            let offset = m.offset;
            if skip_below.is_some_and(|s| offset < s) {
                counts[Outcome::Skipped as usize] += 1;
                continue;
            }
            next = Some(offset + 1);
            // Not an input topic: read past, nothing else (cannot happen: the shard
            // subscribes to the inputs only).
            let (Some(kind), Some(decoded)) = (m.kind, &m.decoded) else {
                continue;
            };
            let replay_until = match &self.stage {
                Stage::Shard(shard) => shard.replay_until.get(key).copied(),
                Stage::Evaluator(_) => None,
            };
            let replayed = replay_until.is_some_and(|u| offset < u);
            self.summary.replayed += u64::from(replayed);
            let origin = || Origin {
                input: kind,
                position: Position::Offset {
                    topic: key.0.clone(),
                    partition: key.1,
                    offset,
                },
                raw: batch.payload(m).to_vec(),
            };
            let facts = batch.facts(m);
            let result = self.apply_message(key, source, m, decoded, facts, &origin, replayed);
            let seen = replayed || dead_below.is_some_and(|d| offset < d);
            let outcome = match (&result, replayed) {
                (_, true) => Outcome::Reread,
                (Ok(()), false) => Outcome::Applied,
                (Err(_), false) => Outcome::DeadLetter,
            };
            counts[outcome as usize] += 1;
            if let (Err(reason), false) = (result, seen) {
                *self.dead_reasons.entry(reason.code()).or_default() += 1;
                let letter = DeadLetter {
                    origin: origin(),
                    reason,
                };
                if let Err(e) = self.sink.dead_letter(&letter, batch.key(m)) {
                    self.count_all(&key.0, counts);
                    return Err(e);
                }
            }
            if replay_until.is_some_and(|u| offset + 1 >= u) {
                self.replayed(key);
            }
            self.summary.messages += 1;
        }
        self.count_all(&key.0, counts);
        Ok(next)
    }

    /// Hands one decoded input message to the engine.
    #[allow(clippy::too_many_arguments)]
    fn apply_message(
        &mut self,
        key: &PartitionKey,
        source: Option<SourceId>,
        m: &InputMessage,
        decoded: &Result<Event, Reason>,
        facts: &[Fact],
        origin: &impl Fn() -> Origin,
        replayed: bool,
    ) -> Result<(), Reason> {
        let event = decoded.as_ref().map_err(Reason::clone)?;
        // Remember the first offset of each interval of event time: a rebuild restarts
        // from the interval that the oldest live state reaches back to.
        self.mark(key, event.time().div_euclid(self.every), m.offset);
        let source = source.unwrap_or(SourceId(usize::MAX));
        let apply = |engine: &mut Engine| match (event, m.keys) {
            (Event::Inference(e), Some(keys)) => {
                engine.handle_inference_prepared(source, e, keys, facts)
            }
            (Event::Label(e), Some(keys)) => engine.handle_label_keyed(source, e, keys),
            (Event::Ack(a), _) => {
                let mut a = a.clone();
                a.origin = Some(origin());
                engine.handle_ack(a)
            }
            (other, None) => engine.handle(source, other.clone()),
        };
        let result = if replayed {
            self.engine.replaying(apply)
        } else {
            apply(&mut self.engine)
        };
        if let Event::Ack(a) = event {
            // An acks partition holds the watermark while it has unread acks (see
            // `check_idle`), so an ack is never read after the data passed its time.
            self.engine.observe_source(source, a.timestamp);
        }
        result
    }

    fn count_all(&mut self, topic: &str, counts: [u64; 4]) {
        if counts.iter().all(|n| *n == 0) {
            return;
        }
        match self.read.get_mut(topic) {
            Some(c) => c.iter_mut().zip(counts).for_each(|(c, n)| *c += n),
            None => {
                self.read.insert(topic.to_string(), counts);
            }
        }
    }

    fn count(&mut self, topic: &str, outcome: Outcome) {
        let mut counts = [0; 4];
        counts[outcome as usize] = 1;
        self.count_all(topic, counts);
    }

    /// Takes a reloaded SLA (checked by the reloader) from the next instant on.
    fn reconfigure(&mut self, config: Arc<SlaConfig>) {
        match self.engine.reconfigure(Arc::clone(&config)) {
            Ok(_) => {
                tracing::info!(stage = self.stage.name(), sla_version = %config.sla_version, "SLA reloaded");
                self.sink.set_sla_version(&config.sla_version);
                self.fingerprint = fingerprint(&config);
                self.config = config;
            }
            Err(r) => {
                tracing::warn!(stage = self.stage.name(), needs_restart = ?r.needs_restart, "reloaded SLA not taken");
            }
        }
    }

    /// A shard has the decoding thread fill its next batch from the partition queues, and
    /// applies the batches read before it, keeping [`DECODED_AHEAD`] in the thread's hands
    /// while the queues have more; once a batch was not filled (the queues were emptied),
    /// every batch in flight is applied: what is read is in the state. Returns whether the
    /// queues may have more.
    fn read_queues(&mut self) -> Result<bool, KafkaShellError> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(false);
        };
        decoder.gather()?;
        self.apply_decoded(DECODED_AHEAD)?;
        if !self.queued_more {
            self.apply_decoded(0)?;
        }
        Ok(self.queued_more)
    }

    /// The shard's partition queues.
    fn queues(&self) -> MutexGuard<'_, PartitionQueues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A shard took a batch; `full` when the consumer may have more ready. When a
    /// backlog has just been read (`busy` before, not full now), the figures are
    /// published at once rather than at the next tick. Returns whether it is busy now.
    fn caught_up_after(&self, busy: bool, full: bool) -> bool {
        if busy && !full {
            self.publish();
        }
        full
    }

    /// Publishes the stage's figures.
    fn publish(&self) {
        let name = self.stage.name();
        let stats = self.sink.counts.clone();
        self.telemetry.stage(name, |r: &mut StageReport| {
            r.assigned = self.sources.len();
            r.ready = self.ready;
            r.messages = self
                .read
                .iter()
                .flat_map(|(t, c)| {
                    Outcome::ALL
                        .iter()
                        .map(move |o| ((t.clone(), *o), c[*o as usize]))
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            r.dead_letters = self.dead_reasons.clone();
            r.engine = self.engine.stats().clone();
            r.join = self.engine.join_stats().clone();
            r.pending_predictions = self.engine.pending_predictions() as u64;
            r.pending_entries = self.engine.pending_entries() as u64;
            r.watermark = self.engine.watermark();
            r.outputs = [
                ("metric", stats.metrics),
                ("breach", stats.breaches),
                ("escalation", stats.escalations),
                ("dead_letter", stats.dead_letters),
                ("partial_batch", stats.partials),
            ];
            r.sla_version.clone_from(&self.config.sla_version);
        });
    }

    fn mark(&mut self, key: &PartitionKey, interval: i64, offset: i64) {
        match self.marks.get_mut(key) {
            Some(marks) => {
                if marks.back().is_none_or(|(k, _)| interval > *k) {
                    marks.push_back((interval, offset));
                }
            }
            None => {
                self.marks
                    .insert(key.clone(), VecDeque::from([(interval, offset)]));
            }
        }
    }

    /// A rebuilding shard has re-read `key` up to where its previous owner stopped; once
    /// every such partition has, what waited too long expires.
    fn replayed(&mut self, key: &PartitionKey) {
        if let Stage::Shard(shard) = &mut self.stage {
            if shard.replay_until.remove(key).is_some() && shard.replay_until.is_empty() {
                tracing::info!(
                    "re-read every moved partition up to where its previous owner stopped"
                );
                self.engine.end_replay();
            }
        }
    }

    /// Writes a shard's batches to the partials topic, each naming the input partition
    /// behind each of the shard's sources.
    fn send_batches(
        &mut self,
        batches: Vec<crate::partial::PartialBatch>,
    ) -> Result<(), KafkaShellError> {
        if batches.is_empty() {
            return Ok(());
        }
        let mut names: Vec<Option<PartitionKey>> = Vec::new();
        for (k, s) in &self.sources {
            if let Some(s) = s {
                if names.len() <= s.0 {
                    names.resize(s.0 + 1, None);
                }
                names[s.0] = Some(k.clone());
            }
        }
        for batch in batches {
            let message = PartialMessage {
                sources: names.clone(),
                batch,
            };
            let pieces = message
                .encode(MAX_MESSAGE_BYTES)
                .map_err(|e| KafkaShellError::Invalid(e.to_string()))?;
            tracing::trace!(pieces = pieces.len(), "partial batch written");
            for piece in pieces {
                self.sink.partial(&piece)?;
            }
        }
        Ok(())
    }

    /// The evaluator reads one message of partial batches.
    fn handle_partials(
        &mut self,
        key: &PartitionKey,
        m: &BorrowedMessage<'_>,
    ) -> Result<(), KafkaShellError> {
        let Stage::Evaluator(evaluator) = &mut self.stage else {
            return Ok(());
        };
        let began = Instant::now();
        let message = match PartialMessage::decode(m.payload().unwrap_or(&[])) {
            Ok(message) => message,
            Err(e) => {
                // Written by an instance of another slaguard version: the facts in it are
                // lost to the metrics.
                tracing::error!(error = %e, topic = %key.0, partition = key.1, offset = m.offset(), "unreadable partial batch skipped");
                return Ok(());
            }
        };
        let mut sources = Vec::with_capacity(message.sources.len());
        for name in message.sources {
            sources.push(match name {
                Some(k) => *evaluator
                    .inputs
                    .entry(k)
                    .or_insert_with(|| self.engine.add_source()),
                None => SourceId(usize::MAX),
            });
        }
        let every = self.every;
        let batch = message.batch;
        let span = tracing::info_span!(
            "evaluation",
            items = batch.items.len(),
            instants = tracing::field::Empty
        );
        let _entered = span.enter();
        let instants_before = self.engine.stats().instants;
        let latest = batch
            .items
            .iter()
            .map(|i| i.interval)
            .chain(
                batch
                    .progress
                    .iter()
                    .filter_map(|p| p.max_time.map(|t| t.div_euclid(every))),
            )
            .max();
        evaluator.reached = evaluator.reached.max(latest);
        if let Some(reached) = evaluator.reached {
            self.mark(key, reached, m.offset());
        }
        self.engine.apply_batch(&sources, batch);
        self.summary.batches += 1;
        self.count(&key.0, Outcome::Applied);
        let drained = self.drain_engine();
        span.record("instants", self.engine.stats().instants - instants_before);
        self.telemetry.evaluation(began.elapsed().as_secs_f64());
        drained
    }

    fn drain_engine(&mut self) -> Result<(), KafkaShellError> {
        while let Some(o) = self.engine.poll_output() {
            self.telemetry.output(&o);
            self.sink.send(&o, None)?;
        }
        Ok(())
    }

    /// Marks a shard's partitions idle, so that they stop holding the watermark: an
    /// inferences or labels partition silent for `idle_timeout`, an acks partition as soon
    /// as it is read to its end. Acks are rare, so their partitions are idle nearly
    /// always, yet while a backlog of them waits (a restart catching up) they hold the
    /// data back until read. Also ends the re-reading of moved partitions that have no
    /// more messages to re-read.
    fn check_idle(&mut self) -> Result<(), KafkaShellError> {
        self.settle()?;
        let Stage::Shard(shard) = &self.stage else {
            return Ok(());
        };
        let done: Vec<PartitionKey> = shard
            .replay_until
            .iter()
            .filter(|(k, until)| {
                self.offsets.get(*k).is_some_and(|o| o >= *until) || self.caught_up(k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            self.replayed(&k);
        }
        let now = Instant::now();
        let mut due: Vec<(PartitionKey, SourceId)> = Vec::new();
        for (k, s) in &self.sources {
            let Some(s) = *s else { continue };
            if self.idle.contains(k) {
                continue;
            }
            let idle = if self.settings.role(&k.0) == Some(InputKind::Acks) {
                self.caught_up(k)
            } else {
                self.last_message
                    .get(k)
                    .is_none_or(|t| now.duration_since(*t) >= self.idle_timeout)
            };
            if idle {
                due.push((k.clone(), s));
            }
        }
        for (k, s) in due {
            tracing::debug!(topic = %k.0, partition = k.1, "partition idle: no longer holds the watermark");
            self.engine.set_source_idle(s, true);
            self.idle.insert(k);
        }
        let batches = self.engine.ready_batches();
        self.send_batches(batches)
    }

    /// Whether every message of `key` written so far has been read.
    fn caught_up(&self, key: &PartitionKey) -> bool {
        match self
            .offsets_client
            .fetch_watermarks(&key.0, key.1, Duration::from_secs(1))
        {
            Ok((low, high)) => match self.offsets.get(key).or(self.start.get(key)) {
                Some(next) => *next >= high,
                None => high <= low,
            },
            Err(e) => {
                tracing::debug!(error = %e, topic = %key.0, partition = key.1, "cannot read the end offset");
                false
            }
        }
    }

    /// Offsets from which a fresh engine rebuilds all live state: the first offset of the
    /// interval the horizon reaches back to. Marks older than that are forgotten.
    fn rebuild_offsets(&mut self) -> Vec<(String, i32, i64)> {
        let cutoff = self
            .engine
            .watermark()
            .map(|w| (w - self.horizon).div_euclid(self.every));
        // Every assigned partition, read or not: one not read since the assignment is at
        // its committed offset, and its commit must name the same join-state snapshot as
        // its pair's other partition.
        let positions: Vec<(PartitionKey, i64)> = self
            .sources
            .keys()
            .filter_map(|k| {
                let next = self.offsets.get(k).or(self.start.get(k))?;
                Some((k.clone(), *next))
            })
            .collect();
        let mut out = Vec::new();
        for (key, next) in &positions {
            let marks = self.marks.entry(key.clone()).or_default();
            if let Some(cutoff) = cutoff {
                while marks.len() > 1 && marks[1].0 <= cutoff {
                    marks.pop_front();
                }
            }
            let pinned = match &self.stage {
                Stage::Shard(shard) => shard.snapshot_next.get(key).copied(),
                Stage::Evaluator(_) => None,
            };
            out.push((
                key.0.clone(),
                key.1,
                pinned.unwrap_or_else(|| marks.front().map_or(*next, |(_, o)| *o)),
            ));
        }
        out
    }

    /// Waits for every output to be acknowledged, saves the state and the exact offsets it
    /// covers, then commits the rebuild offsets with their [`CommitMark`], so that another
    /// owner of these partitions can rebuild the state. A transactional sink commits its
    /// outputs with them.
    fn checkpoint<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        timeout: Duration,
    ) -> Result<(), KafkaShellError> {
        self.settle()?;
        if let Stage::Shard(shard) = &self.stage {
            let due = shard
                .last_snapshot
                .is_none_or(|t| t.elapsed() >= self.snapshot_interval);
            // The batch in the making closes here: a successor starts after it.
            let batches = self.engine.take_batches();
            self.send_batches(batches)?;
            if due {
                self.snapshot_join_state()?;
            }
        }
        self.sink.flush(timeout)?;
        let partitions = self
            .sources
            .iter()
            .map(|((t, p), s)| (t.clone(), *p, s.map(|s| s.0)))
            .collect();
        let offsets: Vec<(String, i32, i64)> = self
            .offsets
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect();
        let inputs = match &self.stage {
            Stage::Evaluator(e) => e
                .inputs
                .iter()
                .map(|((t, p), s)| (t.clone(), *p, s.0))
                .collect(),
            Stage::Shard(_) => Vec::new(),
        };
        let seq = self.seq + 1;
        self.store.save(Checkpoint {
            version: 0,
            seq,
            config: self.fingerprint,
            partitions,
            offsets,
            marks: self
                .marks
                .iter()
                .map(|((t, p), m)| (t.clone(), *p, m.iter().copied().collect()))
                .collect(),
            inputs,
            engine: self.engine.snapshot()?,
        })?;
        self.commit(consumer, timeout, seq)
    }

    /// A shard giving up its partitions snapshots every pair's join state for its next
    /// owner and commits in the same transaction. No local checkpoint: the next owner
    /// (this instance too) takes the snapshot.
    fn hand_over<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        timeout: Duration,
    ) -> Result<(), KafkaShellError> {
        self.settle()?;
        let batches = self.engine.take_batches();
        self.send_batches(batches)?;
        self.snapshot_join_state()?;
        self.sink.flush(timeout)?;
        self.commit(consumer, timeout, self.seq + 1)
    }

    /// Writes a snapshot of each assigned pair's join state to the join-state topic (in
    /// the open transaction), deleting the pair's previous one, and pins the pair's
    /// committed offsets to where it was taken. Skipped while moved partitions are still
    /// being re-read.
    fn snapshot_join_state(&mut self) -> Result<(), KafkaShellError> {
        let Stage::Shard(shard) = &mut self.stage else {
            return Ok(());
        };
        if !shard.replay_until.is_empty() {
            // Still rebuilding moved partitions: the pairs' committed snapshots and marks
            // (the previous owner's next offsets) stand until the re-read is done.
            return Ok(());
        }
        let mut pairs: BTreeMap<i32, [Option<(PartitionKey, SourceId)>; 2]> = BTreeMap::new();
        for (key, source) in &self.sources {
            let side = match self.settings.role(&key.0) {
                Some(InputKind::Inferences) => 0,
                Some(InputKind::Labels) => 1,
                _ => continue,
            };
            if let Some(s) = source {
                pairs.entry(key.1).or_default()[side] = Some((key.clone(), *s));
            }
        }
        // Unique across instances and restarts: one snapshot never shadows another.
        let id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        for (pair, sides) in pairs {
            let [Some((ki, si)), Some((kl, sl))] = sides else {
                continue;
            };
            // A partition not read yet is at its committed offset.
            let (Some(ni), Some(nl)) = (
                self.offsets.get(&ki).or(self.start.get(&ki)).copied(),
                self.offsets.get(&kl).or(self.start.get(&kl)).copied(),
            ) else {
                continue;
            };
            let state = self.engine.export_sources(&[si, sl]);
            let (snapshot, messages) = handover::messages(id, &state)?;
            for (key, value) in &messages {
                self.sink.join_state(pair, key, Some(value))?;
            }
            if let Some(previous) = shard.snapshots.insert(pair, snapshot) {
                for key in previous.keys() {
                    self.sink.join_state(pair, &key, None)?;
                }
            }
            shard.snapshot_next.insert(ki, ni);
            shard.snapshot_next.insert(kl, nl);
        }
        shard.last_snapshot = Some(Instant::now());
        Ok(())
    }

    /// Commits the rebuild offsets with their [`CommitMark`]s (in the transaction, when
    /// the sink has one) as checkpoint `seq`, naming each pair's latest join-state
    /// snapshot.
    fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        timeout: Duration,
        seq: u64,
    ) -> Result<(), KafkaShellError> {
        let rebuild = self.rebuild_offsets();
        self.seq = seq;
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in &rebuild {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
            let key = (t.clone(), *p);
            let next = self
                .offsets
                .get(&key)
                .or(self.start.get(&key))
                .copied()
                .unwrap_or(*o);
            let mark = match &self.stage {
                Stage::Shard(shard) => {
                    // While moved partitions are re-read nothing expires here, so what
                    // counts as counted is still the previous owner's: its watermark, and
                    // its next offset for a partition still being re-read.
                    let previous = self
                        .sources
                        .get(&key)
                        .copied()
                        .flatten()
                        .and_then(|s| self.engine.counted_through(s));
                    let counted = if shard.replay_until.is_empty() {
                        self.engine.watermark().max(previous)
                    } else {
                        previous
                    };
                    CommitMark {
                        resume: None,
                        counted,
                        state: shard
                            .snapshots
                            .get(p)
                            .map(|s| s.id)
                            .filter(|_| self.settings.role(t) != Some(InputKind::Acks)),
                        seq,
                        next: next.max(shard.replay_until.get(&key).copied().unwrap_or(next)),
                    }
                }
                Stage::Evaluator(_) => CommitMark {
                    resume: self.engine.emitted_through(),
                    counted: None,
                    state: None,
                    seq,
                    next,
                },
            };
            if let Some(mut e) = tpl.find_partition(t, *p) {
                e.set_metadata(mark.to_metadata());
            }
        }
        if self.sink.is_transactional() {
            // Outputs and offsets commit together or not at all; a failure stops the run
            // (a restart resumes from the last committed transaction).
            let group = consumer.group_metadata().ok_or_else(|| {
                KafkaShellError::Invalid("no consumer group metadata for the transaction".into())
            })?;
            if let Err(e) = self.sink.commit_transaction(&tpl, &group, timeout) {
                let _ = self.sink.abort_transaction(timeout);
                return Err(e);
            }
        } else if !rebuild.is_empty() {
            // The checkpoint above already covers these offsets for this instance, so a
            // commit that fails (coordinator moving, broker restarting) is retried at the
            // next checkpoint; a restart meanwhile skips what the checkpoint holds.
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, stage = self.stage.name(), "offset commit failed; retrying at the next checkpoint");
                self.summary.failed_commits += 1;
            }
        }
        self.summary.checkpoints += 1;
        Ok(())
    }

    /// Takes over `assigned` partitions: restores a checkpoint when one covers exactly
    /// them with the same configuration (with a transactional sink, the one the last
    /// committed transaction follows), else rebuilds from the committed offsets.
    /// Returns the offsets to start reading at where they are not the committed ones: a
    /// restored checkpoint's, or the previous owner's next offsets of the pairs whose
    /// join state it handed over.
    fn assign(
        &mut self,
        assigned: Vec<PartitionKey>,
        committed: &BTreeMap<PartitionKey, CommitMark>,
    ) -> Result<BTreeMap<PartitionKey, i64>, KafkaShellError> {
        let now = Instant::now();
        let wanted: BTreeSet<&PartitionKey> = assigned.iter().collect();
        // Input read for an earlier assignment and not applied (a drain on revoke that
        // failed): the partitions are read again from the offsets taken here.
        if let Some(d) = self.decoder.as_mut() {
            d.discard()?;
        }
        self.offsets.clear();
        self.skip_below.clear();
        self.dead_below.clear();
        self.idle.clear();
        self.last_message = assigned.iter().map(|k| (k.clone(), now)).collect();
        let committed_seq = committed.values().map(|m| m.seq).max();
        self.seq = self.seq.max(committed_seq.unwrap_or(0));
        let checkpoint = if self.sink.is_transactional() {
            match committed_seq {
                Some(seq) => self.store.load_seq(seq)?,
                // Nothing committed yet: whatever a checkpoint holds was never committed.
                None => None,
            }
        } else {
            self.store.load()?
        };
        if let Some(c) = checkpoint {
            let covered: BTreeSet<PartitionKey> = c
                .partitions
                .iter()
                .map(|(t, p, _)| (t.clone(), *p))
                .collect();
            let same = covered.len() == wanted.len() && covered.iter().all(|k| wanted.contains(k));
            // Another owner has read further since this checkpoint was taken (and
            // committed): the checkpoint is stale, whatever its sequence number.
            let latest = committed.iter().all(|((t, p), m)| {
                c.offsets
                    .iter()
                    .any(|(ct, cp, o)| ct == t && cp == p && *o >= m.next)
            });
            if same && latest && c.config == self.fingerprint {
                self.engine = Engine::restore(Arc::clone(&self.config), &c.engine)?;
                self.sources = c
                    .partitions
                    .iter()
                    .map(|(t, p, s)| ((t.clone(), *p), s.map(SourceId)))
                    .collect();
                self.offsets = c
                    .offsets
                    .iter()
                    .map(|(t, p, o)| ((t.clone(), *p), *o))
                    .collect();
                self.marks = c
                    .marks
                    .iter()
                    .map(|(t, p, m)| ((t.clone(), *p), m.iter().copied().collect()))
                    .collect();
                match &mut self.stage {
                    Stage::Shard(shard) => {
                        shard.replay_until.clear();
                        // Idleness is what this process saw (silence for `idle_timeout`),
                        // not state: restored idle, a partition that has not been read
                        // yet would let the others run the watermark ahead of it.
                        for s in self.sources.values().flatten() {
                            self.engine.set_source_idle(*s, false);
                        }
                    }
                    Stage::Evaluator(evaluator) => {
                        evaluator.inputs = c
                            .inputs
                            .iter()
                            .map(|(t, p, s)| ((t.clone(), *p), SourceId(*s)))
                            .collect();
                        evaluator.reached = self
                            .marks
                            .values()
                            .filter_map(|m| m.back())
                            .map(|(k, _)| *k)
                            .max();
                    }
                }
                self.skip_below = self.offsets.clone();
                self.seq = self.seq.max(c.seq);
                self.summary.restored = true;
                tracing::info!(stage = self.stage.name(), path = %self.store.path().display(), seq = c.seq, partitions = assigned.len(), "restored the checkpoint");
                return Ok(self.offsets.clone());
            }
            tracing::info!(
                stage = self.stage.name(),
                path = %self.store.path().display(),
                same_partitions = same,
                latest,
                same_config = c.config == self.fingerprint,
                "the checkpoint does not match this assignment, the latest commits or the configuration: rebuilding from the committed offsets"
            );
        }
        self.marks.clear();
        self.dead_below = committed.iter().map(|(k, m)| (k.clone(), m.next)).collect();
        if let Stage::Shard(_) = self.stage {
            self.engine = Engine::shard(Arc::clone(&self.config));
            self.sources = assigned
                .iter()
                .map(|k| (k.clone(), Some(self.engine.add_source())))
                .collect();
            let snapshots = self.import_snapshots(committed)?;
            let mut shard = ShardStage::new();
            for (k, s) in &self.sources {
                let (Some(mark), Some(s)) = (committed.get(k), s) else {
                    continue;
                };
                if let Some(w) = mark.counted {
                    self.engine.set_counted_through(*s, w);
                }
                let start = self.start.get(k).copied();
                let paired = self.settings.role(&k.0) != Some(InputKind::Acks);
                if paired && snapshots.contains_key(&k.1) {
                    if let Some(start) = start {
                        shard.snapshot_next.insert(k.clone(), start);
                    }
                }
                // What the previous owner read after its snapshot (or since the rebuild
                // offset) is re-read without being counted again.
                if start.is_some_and(|start| start < mark.next) {
                    shard.replay_until.insert(k.clone(), mark.next);
                }
            }
            if !shard.replay_until.is_empty() {
                tracing::info!(
                    partitions = shard.replay_until.len(),
                    "re-reading moved partitions up to where their previous owner stopped"
                );
                self.engine.begin_replay();
            }
            shard.snapshots = snapshots;
            self.stage = Stage::Shard(shard);
            return Ok(BTreeMap::new());
        }
        match &mut self.stage {
            Stage::Shard(_) => {}
            Stage::Evaluator(evaluator) => {
                self.engine = Engine::new(Arc::clone(&self.config));
                evaluator.inputs = evaluator
                    .known
                    .iter()
                    .map(|k| (k.clone(), self.engine.add_source()))
                    .collect();
                evaluator.reached = None;
                if let Some(t) = committed.values().filter_map(|m| m.resume).max() {
                    // Everything up to `t` was emitted by the previous evaluator.
                    self.engine.quiet_until(t);
                    tracing::info!(until = %crate::time::format_rfc3339(t), "rebuilding the evaluator quietly up to where outputs were produced");
                }
                self.sources = assigned.into_iter().map(|k| (k, None)).collect();
            }
        }
        Ok(BTreeMap::new())
    }

    /// Imports the join-state snapshot the commits of each assigned pair name (both of
    /// its partitions naming the same one); the pair then reads on from where the
    /// snapshot was taken (its committed offsets). Returns the snapshots imported.
    fn import_snapshots(
        &mut self,
        committed: &BTreeMap<PartitionKey, CommitMark>,
    ) -> Result<BTreeMap<i32, handover::Snapshot>, KafkaShellError> {
        let pair = |p: i32| {
            [
                (self.settings.inferences_topic.clone(), p),
                (self.settings.labels_topic.clone(), p),
            ]
        };
        let wanted: BTreeMap<i32, u64> = self
            .sources
            .keys()
            .filter(|(t, _)| *t == self.settings.inferences_topic)
            .filter_map(|(_, p)| {
                let [i, l] = pair(*p).map(|k| committed.get(&k).and_then(|m| m.state));
                i.filter(|_| i == l).map(|id| (*p, id))
            })
            .collect();
        let began = Instant::now();
        let found = handover::read(&self.settings, &wanted, Duration::from_secs(30))?;
        if let Some((p, id)) = wanted.iter().find(|(p, _)| !found.contains_key(p)) {
            // The committed offsets start after the snapshot: without it the pair's
            // waiting predictions would be lost.
            return Err(KafkaShellError::Invalid(format!(
                "join-state snapshot {id} of pair {p}, named by the committed offsets, is not readable from `{}`; refusing to read on without it",
                self.settings.output_topic("join-state")
            )));
        }
        let mut imported = BTreeMap::new();
        for (p, (snapshot, state)) in found {
            let sources: Vec<SourceId> = pair(p)
                .iter()
                .filter_map(|k| self.sources.get(k).copied().flatten())
                .collect();
            self.engine.import_sources(&sources, state);
            imported.insert(p, snapshot);
            self.summary.snapshot_pairs += 1;
        }
        if !wanted.is_empty() {
            tracing::info!(pairs = imported.len(), took = ?began.elapsed(), "took over the join-state snapshots named by the committed offsets");
        }
        Ok(imported)
    }
}

/// How far back in event time a shard's live state can reach: the longest label wait,
/// the allowed lateness and one interval. Rebuilding from this far back before the
/// watermark restores every pending prediction (and label waiting for its prediction).
pub fn rebuild_horizon(config: &SlaConfig) -> Millis {
    let wait = config
        .models
        .iter()
        .map(|m| m.label_ttl.max(m.early_label_ttl))
        .max()
        .unwrap_or(0);
    wait + config.defaults.allowed_lateness + config.defaults.evaluate_every
}

/// How far back in event time an evaluator's live state can reach: the longest window,
/// the allowed lateness and one interval.
pub fn evaluator_horizon(config: &SlaConfig) -> Millis {
    let window = config
        .models
        .iter()
        .flat_map(|m| m.objectives.iter().map(|o| o.window))
        .max()
        .unwrap_or(0);
    window + config.defaults.allowed_lateness + config.defaults.evaluate_every
}

/// The consumer context: rebalances go through the same drain as shutdown.
struct GroupContext {
    state: Arc<Mutex<State>>,
    /// Rebalances so far: messages read before one and not yet handed to the state are
    /// dropped (the consumer reads them again from the state's offsets).
    rebalances: Arc<AtomicU64>,
    timeout: Duration,
    telemetry: Arc<Telemetry>,
    stage: &'static str,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves state that is still consistent enough to drain.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientContext for GroupContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): per assigned partition,
    /// the messages between the read position and the end (the last stable offset, as
    /// the consumers read `read_committed`). Not librdkafka's `consumer_lag`, which counts
    /// from the consumer's own commits: a shard commits through its producer's
    /// transactions, which the consumer never sees.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lags = statistics
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.app_offset >= 0 && p.ls_offset >= 0)
                    .map(|p| {
                        (
                            t.topic.clone(),
                            p.partition,
                            (p.ls_offset - p.app_offset).max(0),
                        )
                    })
            })
            .collect();
        self.telemetry.lag(self.stage, lags);
    }
}

impl ConsumerContext for GroupContext {
    /// The rebalance protocol is eager: every assignment is whole. On revoke the state is
    /// drained and committed; on assign it is restored (and the partitions read on from
    /// the checkpoint's offsets, not from the committed rebuild offsets) or rebuilt.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(consumer, tpl);
                self.split_queues(consumer, tpl);
                if let Err(e) = consumer.assign(tpl) {
                    lock(&self.state).failure = Some(e.into());
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(consumer, tpl);
                lock(&self.state).queues().clear();
                if let Err(e) = consumer.unassign() {
                    lock(&self.state).failure = Some(e.into());
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance failed; dropping the assignment");
                let _ = consumer.unassign();
            }
        }
    }
}

impl GroupContext {
    /// A shard reads each assigned partition from a queue of its own (see
    /// [`PartitionQueues`]), split off before librdkafka starts fetching it.
    fn split_queues(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let s = lock(&self.state);
        if !matches!(s.stage, Stage::Shard(_)) {
            return;
        }
        let mut queues = s.queues();
        queues.clear();
        let client = consumer.client().native_ptr();
        for e in tpl.elements() {
            if !queues.split(client, e.topic(), e.partition()) {
                tracing::warn!(
                    topic = e.topic(),
                    partition = e.partition(),
                    "no queue of its own for this partition: read through the consumer's"
                );
            }
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut s = lock(&self.state);
        if s.sources.is_empty() {
            return;
        }
        tracing::info!(
            stage = s.stage.name(),
            partitions = tpl.count(),
            "partitions revoked: draining"
        );
        let drained = match s.stage {
            Stage::Shard(_) => s.hand_over(consumer, self.timeout),
            Stage::Evaluator(_) => s.checkpoint(consumer, self.timeout),
        };
        if let Err(e) = drained {
            // Nothing is lost: the next owner reads on from the last commit.
            tracing::warn!(error = %e, "drain on revoke failed: offsets not committed");
            s.failure = Some(e);
        }
        s.sources.clear();
        s.ready = false;
        s.publish();
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let assigned: Vec<PartitionKey> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        // What the previous owners of these partitions committed: offsets and marks.
        let (start, committed) = match consumer.committed_offsets(tpl.clone(), self.timeout) {
            Ok(c) => {
                let key = |e: &rdkafka::topic_partition_list::TopicPartitionListElem<'_>| {
                    (e.topic().to_string(), e.partition())
                };
                let start: BTreeMap<PartitionKey, i64> = c
                    .elements()
                    .iter()
                    .filter_map(|e| e.offset().to_raw().filter(|o| *o >= 0).map(|o| (key(e), o)))
                    .collect();
                let marks: BTreeMap<PartitionKey, CommitMark> = c
                    .elements()
                    .iter()
                    .filter_map(|e| CommitMark::parse(e.metadata()).map(|m| (key(e), m)))
                    .collect();
                (start, marks)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the committed offsets and their metadata");
                (BTreeMap::new(), BTreeMap::new())
            }
        };
        let mut s = lock(&self.state);
        tracing::info!(
            stage = s.stage.name(),
            partitions = assigned.len(),
            "partitions assigned"
        );
        s.start = start;
        match s.assign(assigned, &committed) {
            Ok(start) => {
                s.ready = true;
                s.publish();
                // Read on from where the restored or handed-over state stopped.
                for ((topic, partition), offset) in &start {
                    if let Err(e) =
                        tpl.set_partition_offset(topic, *partition, Offset::Offset(*offset))
                    {
                        tracing::warn!(error = %e, topic, partition, "cannot start at the state's offset; reading from the committed one");
                    }
                }
            }
            Err(e) => s.failure = Some(e),
        }
    }
}

/// One stage's consumer and shared state, ready to run.
struct StageRunner {
    state: Arc<Mutex<State>>,
    consumer: StreamConsumer<GroupContext>,
    rebalances: Arc<AtomicU64>,
}

/// A transactional id per instance and stage: a restarted instance fences its
/// predecessor and aborts its open transaction.
fn transactional_id(options: &RunOptions, stage: &str) -> String {
    let instance = options.instance_id.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{nanos}", std::process::id())
    });
    format!("slaguard-{}-{stage}-{instance}", options.group)
}

/// What a stage is made of; it is made again after a failure.
struct StageSpec<'a> {
    settings: &'a KafkaSettings,
    options: &'a RunOptions,
    group: String,
    topics: Vec<String>,
    /// For a transactional sink: its id, kept across remakes so that each fences the last.
    transactional_id: Option<String>,
    horizon: Millis,
    /// The stage as it starts.
    stage: Stage,
    telemetry: Arc<Telemetry>,
    /// The SLA in force: a reload sends the new one (see `kafka::reload`).
    sla: watch::Receiver<Arc<SlaConfig>>,
}

/// Broker-side transactions are aborted after this long without a commit: a crashed
/// instance that does not come back under the same `--instance-id` holds
/// `read_committed` readers back that long. An outage longer than this breaks the open
/// transaction, and the stage is made again from its last committed checkpoint.
fn transaction_timeout(options: &RunOptions) -> Duration {
    (options.commit_interval * 10).max(Duration::from_secs(10))
}

/// A stage with the SLA in force now in `sla` (marked seen there, so that the stage's loop
/// takes only later reloads).
fn make_stage(
    spec: &StageSpec<'_>,
    sla: &mut watch::Receiver<Arc<SlaConfig>>,
) -> Result<StageRunner, KafkaShellError> {
    let current = Arc::clone(&sla.borrow_and_update());
    let config = &current;
    let (settings, options) = (spec.settings, spec.options);
    let sink = match &spec.transactional_id {
        Some(id) => Sink::transactional(
            settings,
            &config.sla_version,
            id,
            transaction_timeout(options),
        )?,
        None => Sink::new(settings, &config.sla_version)?,
    };
    let queues = Arc::new(Mutex::new(PartitionQueues::default()));
    let state = Arc::new(Mutex::new(State {
        stage: spec.stage.clone(),
        engine: Engine::new(Arc::clone(config)),
        sink,
        store: CheckpointStore::new(&options.state_dir, &spec.group),
        fingerprint: fingerprint(config),
        idle_timeout: Duration::from_millis(config.defaults.idle_timeout.max(0) as u64),
        snapshot_interval: options.snapshot_interval,
        config: Arc::clone(config),
        settings: settings.clone(),
        sources: BTreeMap::new(),
        offsets: BTreeMap::new(),
        skip_below: BTreeMap::new(),
        dead_below: BTreeMap::new(),
        seq: 0,
        start: BTreeMap::new(),
        offsets_client: settings.client().create()?,
        last_message: BTreeMap::new(),
        idle: BTreeSet::new(),
        marks: BTreeMap::new(),
        horizon: spec.horizon,
        every: config.defaults.evaluate_every.max(1),
        summary: RunSummary::default(),
        failure: None,
        telemetry: Arc::clone(&spec.telemetry),
        read: BTreeMap::new(),
        dead_reasons: BTreeMap::new(),
        ready: false,
        decoder: match spec.stage {
            Stage::Shard(_) => Some(Decoder::spawn(settings, config, Arc::clone(&queues))?),
            Stage::Evaluator(_) => None,
        },
        queues,
        queued_more: false,
    }));
    let rebalances = Arc::new(AtomicU64::new(0));
    let context = GroupContext {
        state: Arc::clone(&state),
        rebalances: Arc::clone(&rebalances),
        timeout: options.shutdown_timeout,
        telemetry: Arc::clone(&spec.telemetry),
        stage: spec.stage.name(),
    };
    let extra: &[(&str, &str)] = match spec.stage {
        Stage::Shard(_) => &SHARD_PREFETCH,
        Stage::Evaluator(_) => &[],
    };
    let mut client = consumer_config(settings, &spec.group, extra);
    if let Some(id) = &options.instance_id {
        client.set("group.instance.id", id);
    }
    let consumer: StreamConsumer<GroupContext> = client.create_with_context(context)?;
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    // The group is joined in the background meanwhile; the assignment is taken at the
    // loop's first poll, once the first transaction is open.
    if spec.transactional_id.is_some() {
        lock(&state)
            .sink
            .start_transactions(options.shutdown_timeout)?;
    }
    Ok(StageRunner {
        state,
        consumer,
        rebalances,
    })
}

/// Whether a stage that failed this way is worth making again: the cluster may come
/// back (a broker restart breaks the open transaction), a bad configuration will not.
fn recoverable(e: &KafkaShellError) -> bool {
    matches!(e, KafkaShellError::Client(_) | KafkaShellError::Delivery(_))
}

/// Runs a stage until `stop` is cancelled. When the cluster fails it (an open transaction
/// broken by a broker restart, deliveries timing out), the stage is dropped without
/// committing anything more and made again: it restores its last committed checkpoint and
/// reads on from there, as after a crash. Other errors stop the run.
async fn supervise(
    spec: StageSpec<'_>,
    stop: CancellationToken,
) -> Result<RunSummary, KafkaShellError> {
    let mut total = RunSummary::default();
    let mut backoff = Duration::from_millis(500);
    loop {
        // A stage made again after a failure starts with the SLA in force then.
        let mut sla = spec.sla.clone();
        let result = match make_stage(&spec, &mut sla) {
            Ok(runner) => {
                let (summary, result) = run_stage(runner, spec.options, stop.clone(), sla).await;
                total.add(&summary);
                result
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(total),
            Err(e) if recoverable(&e) && !stop.is_cancelled() => {
                total.stage_restarts += 1;
                let restarts = total.stage_restarts;
                spec.telemetry.stage(spec.stage.name(), |r| {
                    r.restarts = restarts;
                    r.ready = false;
                });
                tracing::warn!(stage = spec.stage.name(), error = %e, retry_in = ?backoff, "stage failed: making it again from its last committed checkpoint");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(total),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                spec.telemetry
                    .failed(format!("the {} stage stopped: {e}", spec.stage.name()));
                return Err(e);
            }
        }
    }
}

impl RunSummary {
    fn add(&mut self, other: &RunSummary) {
        self.messages += other.messages;
        self.batches += other.batches;
        self.outputs.metrics += other.outputs.metrics;
        self.outputs.breaches += other.outputs.breaches;
        self.outputs.escalations += other.outputs.escalations;
        self.outputs.dead_letters += other.outputs.dead_letters;
        self.outputs.partials += other.outputs.partials;
        self.checkpoints += other.checkpoints;
        self.failed_commits += other.failed_commits;
        self.restored |= other.restored;
        self.snapshot_pairs += other.snapshot_pairs;
        self.replayed += other.replayed;
        self.stage_restarts += other.stage_restarts;
    }
}

/// Runs one stage until `stop` is cancelled or an error stops it, then drains it. An
/// evaluator first reads what is committed on its partitions (the batches its own
/// instance's shard committed when it drained), within half the shutdown timeout.
/// Returns what the stage did, also when it failed.
async fn run_stage(
    runner: StageRunner,
    options: &RunOptions,
    stop: CancellationToken,
    sla: watch::Receiver<Arc<SlaConfig>>,
) -> (RunSummary, Result<(), KafkaShellError>) {
    let StageRunner {
        state,
        consumer,
        rebalances,
    } = runner;
    let mut result = stage_loop(&state, &consumer, &rebalances, options, &stop, sla).await;
    if result.is_ok() && matches!(lock(&state).stage, Stage::Evaluator(_)) {
        result = catch_up(&state, &consumer, options.shutdown_timeout / 2).await;
    }
    let mut s = lock(&state);
    match result {
        Ok(()) if !s.sources.is_empty() => {
            tracing::info!(stage = s.stage.name(), "shutting down: draining");
            result = s.checkpoint(&consumer, options.shutdown_timeout);
        }
        Ok(()) => {}
        Err(_) => {
            // Nothing more is committed from this state: closing the consumer must not
            // drain it on revocation.
            s.sources.clear();
        }
    }
    // librdkafka wants a client's queues destroyed before the client.
    s.queues().clear();
    let mut summary = s.summary.clone();
    summary.outputs = s.sink.counts.clone();
    (summary, result)
}

async fn catch_up(
    state: &Mutex<State>,
    consumer: &StreamConsumer<GroupContext>,
    timeout: Duration,
) -> Result<(), KafkaShellError> {
    let deadline = Instant::now() + timeout;
    // The client reads `read_committed`: the end offsets are the last stable ones.
    let targets: Vec<(PartitionKey, i64)> = {
        let s = lock(state);
        s.sources
            .keys()
            .filter_map(|k| {
                s.offsets_client
                    .fetch_watermarks(&k.0, k.1, Duration::from_secs(1))
                    .ok()
                    .map(|(_, high)| (k.clone(), high))
            })
            .collect()
    };
    loop {
        let position = consumer.position()?;
        let done = targets.iter().all(|((t, p), high)| {
            position
                .find_partition(t, *p)
                .and_then(|e| e.offset().to_raw())
                .is_some_and(|o| o >= *high)
        });
        if done || Instant::now() >= deadline {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await {
            Ok(Ok(m)) => lock(state).handle(&m)?,
            Ok(Err(e)) => tracing::warn!(error = %e, "consumer error; librdkafka retries"),
            Err(_) => {}
        }
    }
}

/// How many batches a shard keeps in its decoding thread's hands while it applies the
/// ones decoded before them: enough for the two threads' paces to even out.
const DECODED_AHEAD: usize = 3;

/// A shard consumer's prefetch bound and fetch wait, unless the user sets them. A shard
/// reads each partition from its own queue (see [`PartitionQueues`]), where librdkafka
/// bounds the prefetch per partition (64 MB by default). With a bound that holds the
/// whole backlog, librdkafka's broker thread spent half its time zeroing fresh pages for
/// it; 2 MB a partition is refilled as it is read, in memory reused. A partition over
/// its bound is left out of the next fetch, and a fetch of partitions with nothing new
/// waits at the broker for `fetch.wait.max.ms` (500 ms by default) before the others
/// can be fetched again: 50 ms, so that a small bound does not idle the shard.
const SHARD_PREFETCH: [(&str, &str); 2] = [
    ("queued.max.messages.kbytes", "2048"),
    ("fetch.wait.max.ms", "50"),
];

/// A shard's next batch: `first` and what else the consumer has ready now, up to
/// [`BATCH_MESSAGES`]. Messages read before a rebalance are dropped. Returns whether the
/// consumer had nothing more ready.
fn gather(
    batch: &mut InputBatch,
    first: &BorrowedMessage<'_>,
    consumer: &StreamConsumer<GroupContext>,
    rebalances: &AtomicU64,
) -> bool {
    let mut generation = rebalances.load(Ordering::SeqCst);
    batch.push(first);
    let mut stream = consumer.stream();
    let mut cx = Context::from_waker(Waker::noop());
    while batch.len() < BATCH_MESSAGES {
        let polled = std::pin::Pin::new(&mut stream).poll_next(&mut cx);
        let now = rebalances.load(Ordering::SeqCst);
        if now != generation {
            // Revoked (and maybe assigned again) inside that poll: what was read before
            // is read again from the offsets the state stands at.
            batch.clear();
            generation = now;
        }
        match polled {
            Poll::Ready(Some(Ok(m))) => batch.push(&m),
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "consumer error; librdkafka retries");
                return true;
            }
            Poll::Ready(None) | Poll::Pending => return true,
        }
    }
    false
}

async fn stage_loop(
    state: &Mutex<State>,
    consumer: &StreamConsumer<GroupContext>,
    rebalances: &AtomicU64,
    options: &RunOptions,
    stop: &CancellationToken,
    mut sla: watch::Receiver<Arc<SlaConfig>>,
) -> Result<(), KafkaShellError> {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_checkpoint = Instant::now();
    let (shard, ready) = {
        let s = lock(state);
        let ready = s.queues().ready();
        (matches!(s.stage, Stage::Shard(_)), ready)
    };
    // Whether the shard is reading a backlog: its last batch was full.
    let mut busy = false;
    loop {
        // Whether the partition queues may hold more than the batches applied took
        // (whichever branch applied them).
        let more = shard && lock(state).queued_more;
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                let mut s = lock(state);
                if let Some(e) = s.failure.take() {
                    return Err(e);
                }
                // A closed channel (no reloads) is no change.
                if sla.has_changed().unwrap_or(false) {
                    let new = Arc::clone(&sla.borrow_and_update());
                    s.reconfigure(new);
                }
                if !s.sources.is_empty() {
                    s.check_idle()?;
                    if last_checkpoint.elapsed() >= options.commit_interval {
                        s.checkpoint(consumer, options.shutdown_timeout)?;
                        last_checkpoint = Instant::now();
                    }
                }
                s.publish();
            }
            message = consumer.recv() => match message {
                Ok(m) if shard => {
                    let mut batch = lock(state).input_batch();
                    let settle = gather(&mut batch, &m, consumer, rebalances);
                    drop(m);
                    {
                        let mut s = lock(state);
                        s.submit(batch, settle)?;
                        busy = s.caught_up_after(busy, !settle);
                    }
                    // While a backlog is read, `recv` is always ready and the loop would
                    // never give the runtime its turn: the tick (checkpoints, idleness,
                    // figures) would wait for the backlog's end.
                    tokio::task::yield_now().await;
                }
                Ok(m) => lock(state).handle(&m)?,
                Err(e) => tracing::warn!(error = %e, "consumer error; librdkafka retries"),
            },
            // The consumer's queue above also serves the rebalances, which split and
            // destroy the partition queues: it is polled before them at every turn.
            _ = async { if !more { ready.notified().await } }, if shard => {
                {
                    let mut s = lock(state);
                    let more = s.read_queues()?;
                    busy = s.caught_up_after(busy, more);
                }
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Checks the cluster (see [`preflight::check`]) and creates `run`'s internal topics
/// where they do not exist yet: the partials topic (one partition, kept long enough for
/// an evaluator to rebuild from) and the join-state topic (compacted, one partition per
/// inferences partition). Returns the partition counts of the topics `run` reads.
pub async fn ensure_internal_topics(
    settings: &KafkaSettings,
    config: &SlaConfig,
) -> Result<super::PartitionCounts, KafkaShellError> {
    // The check blocks (metadata requests, and waits for topics being created): off the
    // runtime's worker threads.
    let checked = settings.clone();
    let counts = tokio::task::spawn_blocking(move || {
        preflight::check(&checked, true, Duration::from_secs(10))
    })
    .await
    .map_err(|e| KafkaShellError::Invalid(format!("the start-up check stopped: {e}")))??;
    // Kept long enough for an evaluator to rebuild from, and a week at least.
    let retention = (2 * evaluator_horizon(config)).max(7 * 86_400_000);
    let retention = retention.to_string();
    preflight::ensure_internal_topic(
        settings,
        &counts,
        &settings.output_topic("partials"),
        1,
        &[("cleanup.policy", "delete"), ("retention.ms", &retention)],
    )
    .await?;
    preflight::ensure_internal_topic(
        settings,
        &counts,
        &settings.output_topic("join-state"),
        counts.get(&settings.inferences_topic).copied().unwrap_or(1),
        &[("cleanup.policy", "compact")],
    )
    .await?;
    Ok(counts)
}

/// Runs both stages until `shutdown` is cancelled or an error stops them.
pub async fn run(
    config: Arc<SlaConfig>,
    settings: KafkaSettings,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, KafkaShellError> {
    let telemetry = Arc::new(Telemetry::new(&config));
    let (_fixed, sla) = watch::channel(config);
    run_live(sla, settings, options, shutdown, telemetry).await
}

/// [`run`] with the SLA in force from `sla` (a reload sends a new one, taken by both
/// stages at their next tick), publishing the stages' figures and the SLA status into
/// `telemetry` (what the HTTP server serves).
pub async fn run_live(
    sla: watch::Receiver<Arc<SlaConfig>>,
    settings: KafkaSettings,
    options: RunOptions,
    shutdown: CancellationToken,
    telemetry: Arc<Telemetry>,
) -> Result<RunSummary, KafkaShellError> {
    let config = Arc::clone(&sla.borrow());
    let counts = ensure_internal_topics(&settings, &config).await?;
    let horizon = rebuild_horizon(&config);
    let eval_horizon = evaluator_horizon(&config);
    let known: Vec<PartitionKey> = settings
        .input_topics()
        .iter()
        .flat_map(|(t, _)| {
            let n = counts.get(*t).copied().unwrap_or(0);
            (0..n as i32).map(move |p| (t.to_string(), p))
        })
        .collect();
    // Batches become visible to the evaluator when the shard's transaction commits: at
    // each checkpoint.
    let shard = StageSpec {
        settings: &settings,
        options: &options,
        group: options.group.clone(),
        topics: settings
            .input_topics()
            .iter()
            .map(|(t, _)| t.to_string())
            .collect(),
        transactional_id: Some(transactional_id(&options, "shard")),
        horizon,
        stage: Stage::Shard(ShardStage::new()),
        telemetry: Arc::clone(&telemetry),
        sla: sla.clone(),
    };
    let evaluator = StageSpec {
        settings: &settings,
        options: &options,
        group: format!("{}.evaluator", options.group),
        topics: vec![settings.output_topic("partials")],
        transactional_id: options
            .exactly_once
            .then(|| transactional_id(&options, "evaluator")),
        horizon: eval_horizon,
        stage: Stage::Evaluator(EvaluatorStage {
            inputs: BTreeMap::new(),
            known,
            reached: None,
        }),
        telemetry: Arc::clone(&telemetry),
        sla: sla.clone(),
    };
    // At shutdown the shard drains first, then the evaluator reads what it committed; an
    // error in either stage stops the other.
    let shard_stop = shutdown.child_token();
    let evaluator_stop = CancellationToken::new();
    let (shard, evaluator) = tokio::join!(
        async {
            let r = supervise(shard, shard_stop.clone()).await;
            evaluator_stop.cancel();
            r
        },
        async {
            let r = supervise(evaluator, evaluator_stop.clone()).await;
            shard_stop.cancel();
            r
        },
    );
    // The shard reads messages and writes partials, the evaluator reads batches and
    // writes the outputs: their sum is the run's.
    let mut total = shard?;
    total.add(&evaluator?);
    Ok(total)
}

/// The settings every stage's group consumer is created with, and then `extra` (the
/// user's `-X` overrides win over both): offsets committed by slaguard only, from the
/// earliest offset when the group has none, `read_committed`.
pub fn consumer_config(
    settings: &KafkaSettings,
    group: &str,
    extra: &[(&str, &str)],
) -> rdkafka::config::ClientConfig {
    let common = [
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", "read_committed"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "1000"),
        // Consumer lag per partition for `/metrics`.
        ("statistics.interval.ms", "5000"),
        // When a partition's prefetched messages pass librdkafka's queue thresholds, its
        // next fetch waits this long (1 s by default): a consumer that reads a backlog a
        // little slower than the broker serves it then fetches twice a second and idles
        // in between (a whole backlog read at 0.08 of a consume-and-discard consumer's
        // rate; 0.25 with this).
        ("fetch.queue.backoff.ms", "10"),
    ];
    let defaults: Vec<(&str, &str)> = common.iter().chain(extra).copied().collect();
    settings.client_with(&defaults)
}
