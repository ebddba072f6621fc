//! `slaguard run`: the engine as a Kafka consumer group.
//!
//! Every input partition is an engine source (the watermark is the minimum over them): an
//! inferences or labels partition silent for `idle_timeout` of processing time stops
//! holding it back, an acks partition as soon as it is read to its end. Outputs are
//! produced as the engine emits them. At-least-once with nothing lost: a checkpoint first
//! waits for every output to be acknowledged by the broker, then saves the engine state
//! with the offsets it covers, and only then commits (with `--exactly-once`, commits the
//! outputs' transaction together with) the offsets a successor would rebuild from. The
//! same drain runs every `commit_interval`, when partitions are revoked, and at shutdown
//! (SIGINT/SIGTERM). A restarted instance restores its checkpoint and reads on from the
//! checkpoint's offsets; after a crash, outputs since the checkpoint are produced again
//! with the same content and incident ids (not with `--exactly-once`: they were aborted).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::checkpoint::{fingerprint, Checkpoint, CheckpointStore, CommitMark};
use super::sink::{Sink, SinkCounts};
use super::{preflight, KafkaSettings, KafkaShellError};
use crate::avro::Codecs;
use crate::config::SlaConfig;
use crate::dead_letter::{DeadLetter, InputKind, Origin, Position, Reason};
use crate::decode;
use crate::engine::Engine;
use crate::event::Event;
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
    /// id takes its partitions back without a rebalance, and so restores its checkpoint.
    pub instance_id: Option<String>,
    /// Kafka transactions: outputs and offsets of each checkpoint commit together.
    pub exactly_once: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub messages: u64,
    pub outputs: SinkCounts,
    pub checkpoints: u64,
    pub failed_commits: u64,
    pub restored: bool,
}

type PartitionKey = (String, i32);

/// Everything the message loop and the rebalance callbacks share.
struct State {
    config: Arc<SlaConfig>,
    settings: KafkaSettings,
    codecs: Codecs,
    engine: Engine,
    sink: Sink,
    store: CheckpointStore,
    fingerprint: [u8; 32],
    idle_timeout: Duration,
    /// Assigned input partitions → engine source (None for acks).
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
}

impl State {
    fn decode_and_apply(
        &mut self,
        key: &PartitionKey,
        offset: i64,
        kind: InputKind,
        source: Option<SourceId>,
        payload: &[u8],
        origin: impl Fn() -> Origin,
    ) -> Result<(), Reason> {
        let format = self.settings.formats.input(kind);
        let event = match decode::event(kind, format, payload, &self.codecs)? {
            Event::Ack(mut a) => {
                a.origin = Some(origin());
                Event::Ack(a)
            }
            other => other,
        };
        // Remember the first offset of each interval of event time: a rebuild restarts
        // from the interval that the oldest live state reaches back to.
        let interval = event.time().div_euclid(self.every);
        let marks = self.marks.entry(key.clone()).or_default();
        if marks.back().is_none_or(|(k, _)| interval > *k) {
            marks.push_back((interval, offset));
        }
        let source = source.unwrap_or(SourceId(usize::MAX));
        let ack_time = match &event {
            Event::Ack(a) => Some(a.timestamp),
            _ => None,
        };
        let result = self.engine.handle(source, event);
        if let Some(t) = ack_time {
            // An acks partition holds the watermark while it has unread acks (see
            // `check_idle`), so an ack is never read after the data passed its time.
            self.engine.observe_source(source, t);
        }
        result
    }

    fn handle(&mut self, m: &BorrowedMessage<'_>) -> Result<(), KafkaShellError> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let key = (topic.to_string(), partition);
        if self.skip_below.get(&key).is_some_and(|s| offset < *s) {
            return Ok(());
        }
        let Some(kind) = self.settings.role(topic) else {
            return Ok(());
        };
        let payload = m.payload().unwrap_or(&[]);
        let origin = || Origin {
            input: kind,
            position: Position::Offset {
                topic: topic.to_string(),
                partition,
                offset,
            },
            raw: payload.to_vec(),
        };
        let source = match self.sources.get(&key) {
            Some(s) => *s,
            None => {
                // A partition we were not told about (cannot happen with the group protocol).
                let s = Some(self.engine.add_source());
                self.sources.insert(key.clone(), s);
                s
            }
        };
        let result = self.decode_and_apply(&key, offset, kind, source, payload, origin);
        let seen = self.dead_below.get(&key).is_some_and(|d| offset < *d);
        if let (Err(reason), false) = (result, seen) {
            self.sink.dead_letter(
                &DeadLetter {
                    origin: origin(),
                    reason,
                },
                m.key(),
            )?;
        }
        self.drain_engine()?;
        self.offsets.insert(key.clone(), offset + 1);
        self.last_message.insert(key.clone(), Instant::now());
        self.idle.remove(&key);
        self.summary.messages += 1;
        Ok(())
    }

    fn drain_engine(&mut self) -> Result<(), KafkaShellError> {
        while let Some(o) = self.engine.poll_output() {
            self.sink.send(&o, None)?;
        }
        Ok(())
    }

    /// Marks partitions idle, so that they stop holding the watermark: an inferences or
    /// labels partition silent for `idle_timeout`, an acks partition as soon as it is read
    /// to its end. Acks are rare, so their partitions are idle nearly always, yet while a
    /// backlog of them waits (a restart catching up) they hold the data back until read.
    fn check_idle(&mut self) -> Result<(), KafkaShellError> {
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
        self.drain_engine()
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
        let mut out = Vec::new();
        for (key, next) in &self.offsets {
            let marks = self.marks.entry(key.clone()).or_default();
            if let Some(cutoff) = cutoff {
                while marks.len() > 1 && marks[1].0 <= cutoff {
                    marks.pop_front();
                }
            }
            out.push((
                key.0.clone(),
                key.1,
                marks.front().map_or(*next, |(_, o)| *o),
            ));
        }
        out
    }

    /// Waits for every output to be acknowledged, saves the state and the exact offsets it
    /// covers, then commits the rebuild offsets with their [`CommitMark`], so that another
    /// owner of these partitions can rebuild the state and stay quiet up to where outputs
    /// reached. With `--exactly-once` the commit is the outputs' transaction.
    fn checkpoint<C: ConsumerContext>(
        &mut self,
        consumer: &impl Consumer<C>,
        timeout: Duration,
    ) -> Result<(), KafkaShellError> {
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
        let rebuild = self.rebuild_offsets();
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
            engine: self.engine.snapshot()?,
        })?;
        self.seq = seq;
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in &rebuild {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
            let mark = CommitMark {
                resume: self.engine.emitted_through(),
                seq,
                next: self.offsets.get(&(t.clone(), *p)).copied().unwrap_or(*o),
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
                tracing::warn!(error = %e, "offset commit failed; retrying at the next checkpoint");
                self.summary.failed_commits += 1;
            }
        }
        self.summary.checkpoints += 1;
        Ok(())
    }

    /// Takes over `assigned` partitions: restores a checkpoint when one covers exactly
    /// them with the same configuration (with `--exactly-once`, the one the last committed
    /// transaction follows), else rebuilds from the committed offsets, quiet up to where
    /// the previous owner's outputs reached.
    /// Returns whether a checkpoint was restored.
    fn assign(
        &mut self,
        assigned: Vec<PartitionKey>,
        committed: &BTreeMap<PartitionKey, CommitMark>,
    ) -> Result<bool, KafkaShellError> {
        let now = Instant::now();
        let wanted: BTreeSet<&PartitionKey> = assigned.iter().collect();
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
            if same && c.config == self.fingerprint {
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
                self.skip_below = self.offsets.clone();
                self.seq = self.seq.max(c.seq);
                self.summary.restored = true;
                tracing::info!(path = %self.store.path().display(), seq = c.seq, partitions = assigned.len(), "restored the checkpoint");
                return Ok(true);
            }
            tracing::warn!(
                path = %self.store.path().display(),
                same_partitions = same,
                same_config = c.config == self.fingerprint,
                "the checkpoint does not match this assignment or configuration: rebuilding from the committed offsets"
            );
        }
        self.marks.clear();
        self.engine = Engine::new(Arc::clone(&self.config));
        if let Some(t) = committed.values().filter_map(|m| m.resume).max() {
            // Everything up to `t` was emitted by the previous owner of these partitions.
            self.engine.quiet_until(t);
            tracing::info!(until = %crate::time::format_rfc3339(t), "rebuilding state quietly up to where outputs were produced");
        }
        self.dead_below = committed.iter().map(|(k, m)| (k.clone(), m.next)).collect();
        self.sources = assigned
            .into_iter()
            .map(|k| {
                let s = Some(self.engine.add_source());
                (k, s)
            })
            .collect();
        Ok(false)
    }
}

/// How far back in event time live state can reach: the longest label wait, the longest
/// window, the allowed lateness and one interval. Rebuilding from this far back before the
/// watermark restores every pending prediction and every window still to be evaluated.
pub fn rebuild_horizon(config: &SlaConfig) -> Millis {
    let wait = config
        .models
        .iter()
        .map(|m| m.label_ttl.max(m.early_label_ttl))
        .max()
        .unwrap_or(0);
    let window = config
        .models
        .iter()
        .flat_map(|m| m.objectives.iter().map(|o| o.window))
        .max()
        .unwrap_or(0);
    wait + window + config.defaults.allowed_lateness + config.defaults.evaluate_every
}

/// The consumer context: rebalances go through the same drain as shutdown.
struct GroupContext {
    state: Arc<Mutex<State>>,
    timeout: Duration,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves state that is still consistent enough to drain.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientContext for GroupContext {}

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
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(consumer, tpl);
                if let Err(e) = consumer.assign(tpl) {
                    lock(&self.state).failure = Some(e.into());
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(consumer, tpl);
                if let Err(e) = consumer.unassign() {
                    lock(&self.state).failure = Some(e.into());
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; dropping the assignment");
                let _ = consumer.unassign();
            }
        }
    }
}

impl GroupContext {
    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut s = lock(&self.state);
        if s.sources.is_empty() {
            return;
        }
        tracing::info!(partitions = tpl.count(), "partitions revoked: draining");
        if let Err(e) = s.checkpoint(consumer, self.timeout) {
            tracing::error!(error = %e, "drain on revoke failed: offsets not committed");
            s.failure = Some(e);
        }
        s.sources.clear();
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let assigned: Vec<PartitionKey> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        tracing::info!(partitions = assigned.len(), "partitions assigned");
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
        s.start = start;
        match s.assign(assigned, &committed) {
            Ok(true) => {
                // Restored: read on from where the checkpoint stopped.
                for ((topic, partition), offset) in &s.offsets {
                    if let Err(e) =
                        tpl.set_partition_offset(topic, *partition, Offset::Offset(*offset))
                    {
                        tracing::warn!(error = %e, topic, partition, "cannot start at the checkpoint's offset; reading from the committed one");
                    }
                }
            }
            Ok(false) => {}
            Err(e) => s.failure = Some(e),
        }
    }
}

/// Runs the consumer group until `shutdown` is cancelled or an error stops it.
pub async fn run(
    config: Arc<SlaConfig>,
    settings: KafkaSettings,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, KafkaShellError> {
    preflight::check(&settings, true, Duration::from_secs(10))?;
    let idle_timeout = Duration::from_millis(config.defaults.idle_timeout.max(0) as u64);
    let state_config = Arc::clone(&config);
    let state = Arc::new(Mutex::new(State {
        engine: Engine::new(Arc::clone(&config)),
        sink: if options.exactly_once {
            // One transactional id per instance: a restarted instance fences its
            // predecessor and aborts its open transaction.
            let id = format!(
                "slaguard-{}-{}",
                options.group,
                options.instance_id.clone().unwrap_or_else(|| {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos());
                    format!("{}-{nanos}", std::process::id())
                })
            );
            Sink::transactional(
                &settings,
                &config.sla_version,
                &id,
                options.shutdown_timeout,
            )?
        } else {
            Sink::new(&settings, &config.sla_version)?
        },
        codecs: Codecs::new()?,
        store: CheckpointStore::new(&options.state_dir, &options.group),
        fingerprint: fingerprint(&config),
        idle_timeout,
        config,
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
        horizon: rebuild_horizon(&state_config),
        every: state_config.defaults.evaluate_every.max(1),
        summary: RunSummary::default(),
        failure: None,
    }));
    let context = GroupContext {
        state: Arc::clone(&state),
        timeout: options.shutdown_timeout,
    };
    let mut client = settings.client_with(&[
        ("group.id", &options.group),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", "read_committed"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "1000"),
    ]);
    if let Some(id) = &options.instance_id {
        client.set("group.instance.id", id);
    }
    let consumer: StreamConsumer<GroupContext> = client.create_with_context(context)?;
    let topics: Vec<&str> = settings.input_topics().iter().map(|(t, _)| *t).collect();
    consumer.subscribe(&topics)?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_checkpoint = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let mut s = lock(&state);
                if let Some(e) = s.failure.take() {
                    return Err(e);
                }
                if !s.sources.is_empty() {
                    s.check_idle()?;
                    if last_checkpoint.elapsed() >= options.commit_interval {
                        s.checkpoint(&consumer, options.shutdown_timeout)?;
                        last_checkpoint = Instant::now();
                    }
                }
            }
            message = consumer.recv() => match message {
                Ok(m) => lock(&state).handle(&m)?,
                Err(e) => tracing::warn!(error = %e, "consumer error; librdkafka retries"),
            },
        }
    }
    tracing::info!("shutting down: draining");
    let mut s = lock(&state);
    if !s.sources.is_empty() {
        s.checkpoint(&consumer, options.shutdown_timeout)?;
    }
    let mut summary = s.summary.clone();
    summary.outputs = s.sink.counts.clone();
    Ok(summary)
}
