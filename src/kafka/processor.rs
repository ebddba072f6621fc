//! `slaguard run`: the engine as a Kafka consumer group.
//!
//! Every input partition of inferences and labels is an engine source (the watermark is
//! the minimum over them; a partition silent for `idle_timeout` of processing time stops
//! holding it back). Outputs are produced as the engine emits them. At-least-once with
//! nothing lost: a checkpoint first waits for every output to be acknowledged by the
//! broker, then saves the engine state with the offsets it covers, and only then commits
//! those offsets. The same drain runs every `commit_interval`, when partitions are
//! revoked, and at shutdown (SIGINT/SIGTERM). After a crash the instance restores the
//! last checkpoint and re-reads from its offsets, so outputs since then are produced again
//! with the same content and incident ids.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::checkpoint::{fingerprint, Checkpoint, CheckpointStore};
use super::sink::{Sink, SinkCounts};
use super::{preflight, KafkaSettings, KafkaShellError};
use crate::avro::Codecs;
use crate::config::SlaConfig;
use crate::dead_letter::{DeadLetter, InputKind, Origin, Position, Reason};
use crate::decode;
use crate::engine::Engine;
use crate::event::Event;
use crate::watermark::SourceId;

/// How `run` behaves, beyond the topics.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub group: String,
    pub state_dir: PathBuf,
    pub commit_interval: Duration,
    /// How long the final drain may wait for outputs to be acknowledged.
    pub shutdown_timeout: Duration,
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
    last_message: BTreeMap<PartitionKey, Instant>,
    idle: BTreeSet<PartitionKey>,
    summary: RunSummary,
    /// An error raised inside a rebalance callback, reported by the loop.
    failure: Option<KafkaShellError>,
}

impl State {
    fn decode_and_apply(
        &mut self,
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
        self.engine
            .handle(source.unwrap_or(SourceId(usize::MAX)), event)
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
                let s = (kind != InputKind::Acks).then(|| self.engine.add_source());
                self.sources.insert(key.clone(), s);
                s
            }
        };
        if let Err(reason) = self.decode_and_apply(kind, source, payload, origin) {
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

    /// Marks partitions silent for `idle_timeout` as idle, so they stop holding the watermark.
    fn check_idle(&mut self) -> Result<(), KafkaShellError> {
        let now = Instant::now();
        let due: Vec<(PartitionKey, SourceId)> = self
            .sources
            .iter()
            .filter_map(|(k, s)| s.map(|s| (k, s)))
            .filter(|(k, _)| !self.idle.contains(*k))
            .filter(|(k, _)| {
                self.last_message
                    .get(*k)
                    .is_none_or(|t| now.duration_since(*t) >= self.idle_timeout)
            })
            .map(|(k, s)| (k.clone(), s))
            .collect();
        for (k, s) in due {
            tracing::debug!(topic = %k.0, partition = k.1, "partition idle: no longer holds the watermark");
            self.engine.set_source_idle(s, true);
            self.idle.insert(k);
        }
        self.drain_engine()
    }

    /// Waits for every output to be acknowledged, saves the state and the offsets it
    /// covers, then commits those offsets.
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
        self.store.save(Checkpoint {
            version: 0,
            config: self.fingerprint,
            partitions,
            offsets: offsets.clone(),
            engine: self.engine.snapshot()?,
        })?;
        if !offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (t, p, o) in &offsets {
                tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
            }
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

    /// Takes over `assigned` partitions: restores the checkpoint when it covers exactly
    /// them with the same configuration, else starts a new engine.
    fn assign(&mut self, assigned: Vec<PartitionKey>) -> Result<(), KafkaShellError> {
        let now = Instant::now();
        let wanted: BTreeSet<&PartitionKey> = assigned.iter().collect();
        self.offsets.clear();
        self.skip_below.clear();
        self.idle.clear();
        self.last_message = assigned.iter().map(|k| (k.clone(), now)).collect();
        if let Some(c) = self.store.load()? {
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
                self.skip_below = self.offsets.clone();
                self.summary.restored = true;
                tracing::info!(path = %self.store.path().display(), partitions = assigned.len(), "restored the checkpoint");
                return Ok(());
            }
            tracing::warn!(
                path = %self.store.path().display(),
                same_partitions = same,
                same_config = c.config == self.fingerprint,
                "the checkpoint does not match this assignment or configuration: starting from the committed offsets with empty state"
            );
        }
        self.engine = Engine::new(Arc::clone(&self.config));
        self.sources = assigned
            .into_iter()
            .map(|k| {
                let s = (self.settings.role(&k.0) != Some(InputKind::Acks))
                    .then(|| self.engine.add_source());
                (k, s)
            })
            .collect();
        Ok(())
    }
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
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
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
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned: Vec<PartitionKey> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            tracing::info!(partitions = assigned.len(), "partitions assigned");
            let mut s = lock(&self.state);
            if let Err(e) = s.assign(assigned) {
                s.failure = Some(e);
            }
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
    let state = Arc::new(Mutex::new(State {
        engine: Engine::new(Arc::clone(&config)),
        sink: Sink::new(&settings, &config.sla_version)?,
        codecs: Codecs::new()?,
        store: CheckpointStore::new(&options.state_dir, &options.group),
        fingerprint: fingerprint(&config),
        idle_timeout,
        config,
        settings: settings.clone(),
        sources: BTreeMap::new(),
        offsets: BTreeMap::new(),
        skip_below: BTreeMap::new(),
        last_message: BTreeMap::new(),
        idle: BTreeSet::new(),
        summary: RunSummary::default(),
        failure: None,
    }));
    let context = GroupContext {
        state: Arc::clone(&state),
        timeout: options.shutdown_timeout,
    };
    let consumer: StreamConsumer<GroupContext> = settings
        .client_with(&[
            ("group.id", &options.group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
        ])
        .create_with_context(context)?;
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
