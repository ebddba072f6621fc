//! Bounded replay of the input topics (`slaguard replay --brokers`): every partition from
//! the first offset at or after `--from` (offsets_for_times) up to the end offset captured
//! at start; events outside [from, to) are skipped and counted. Each partition that
//! reaches its end stops holding the watermark, so the replay evaluates every instant up
//! to its last event and then exits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::sink::Sink;
use super::{preflight, KafkaSettings, KafkaShellError};
use crate::avro::Codecs;
use crate::config::SlaConfig;
use crate::dead_letter::{DeadLetter, InputKind, Origin, Position};
use crate::decode;
use crate::engine::Engine;
use crate::event::Event;
use crate::output::Output;
use crate::replay::{OutputFiles, ReplayCounts};
use crate::time::Millis;
use crate::watermark::SourceId;

/// Where a topic replay writes.
pub enum ReplayTarget {
    /// `metrics.jsonl`, `breaches.jsonl`, … in a folder.
    Dir(PathBuf),
    /// Output topics with this prefix (e.g. `replay.`).
    Topics(String),
}

pub struct TopicReplayOptions {
    pub from: Option<Millis>,
    pub to: Option<Millis>,
    pub target: ReplayTarget,
}

/// Progress and totals of a topic replay.
#[derive(Debug, Clone, Default)]
pub struct TopicReplayCounts {
    pub messages: u64,
    /// Messages to read in all, from the start and end offsets.
    pub total: u64,
    /// Events outside [from, to).
    pub outside: u64,
    pub outputs: ReplayCounts,
}

enum Out {
    Files(Box<OutputFiles>),
    Topics(Box<Sink>),
}

impl Out {
    fn write(
        &mut self,
        o: &Output,
        key: Option<&[u8]>,
        counts: &mut ReplayCounts,
    ) -> Result<(), KafkaShellError> {
        match self {
            Out::Files(f) => Ok(f.write(o, counts)?),
            Out::Topics(s) => {
                match o {
                    Output::Metric(_) => counts.metrics += 1,
                    Output::Breach(_) => counts.breaches += 1,
                    Output::Escalation(_) => counts.escalations += 1,
                    Output::DeadLetter(_) => counts.dead_letters += 1,
                }
                s.send(o, key)
            }
        }
    }
}

struct PartitionRange {
    end: i64,
    source: Option<SourceId>,
    done: bool,
}

/// Replays the input topics over [from, to) and returns the engine and the counts.
pub fn replay_topics(
    config: Arc<SlaConfig>,
    settings: &KafkaSettings,
    options: TopicReplayOptions,
    mut progress: impl FnMut(&TopicReplayCounts),
) -> Result<(Engine, TopicReplayCounts), KafkaShellError> {
    let timeout = Duration::from_secs(10);
    let mut out_settings = settings.clone();
    let mut out = match &options.target {
        ReplayTarget::Dir(dir) => {
            Out::Files(Box::new(OutputFiles::create(dir, &config.sla_version)?))
        }
        ReplayTarget::Topics(prefix) => {
            out_settings.output_prefix = prefix.clone();
            Out::Topics(Box::new(Sink::new(&out_settings, &config.sla_version)?))
        }
    };
    let partitions = preflight::check(
        &out_settings,
        matches!(options.target, ReplayTarget::Topics(_)),
        timeout,
    )?;
    let consumer: BaseConsumer = settings
        .client_with(&[
            ("group.id", "slaguard-replay"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
        ])
        .create()?;
    let codecs = Codecs::new()?;
    let mut engine = Engine::new(Arc::clone(&config));
    let mut ranges: BTreeMap<(String, i32), PartitionRange> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut counts = TopicReplayCounts::default();
    for (topic, kind) in settings.input_topics() {
        for p in 0..partitions[topic] as i32 {
            let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
            let start = match options.from {
                None => low,
                Some(from) => {
                    let mut q = TopicPartitionList::new();
                    q.add_partition_offset(topic, p, Offset::Offset(from))?;
                    let found = consumer.offsets_for_times(q, timeout)?;
                    match found.find_partition(topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => high,
                    }
                }
            };
            let source = (kind != InputKind::Acks).then(|| engine.add_source());
            counts.total += (high - start).max(0) as u64;
            ranges.insert(
                (topic.to_string(), p),
                PartitionRange {
                    end: high,
                    source,
                    done: start >= high,
                },
            );
            if start < high {
                assignment.add_partition_offset(topic, p, Offset::Offset(start))?;
            }
        }
    }
    for r in ranges.values().filter(|r| r.done) {
        if let Some(s) = r.source {
            engine.end_source(s);
        }
    }
    consumer.assign(&assignment)?;
    let mut last_progress = Instant::now();
    while ranges.values().any(|r| !r.done) {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = result?;
        let key = (m.topic().to_string(), m.partition());
        let Some(range) = ranges.get_mut(&key) else {
            continue;
        };
        if range.done || m.offset() >= range.end {
            continue;
        }
        let kind = settings.role(m.topic()).unwrap_or(InputKind::Acks);
        let payload = m.payload().unwrap_or(&[]);
        let origin = || Origin {
            input: kind,
            position: Position::Offset {
                topic: key.0.clone(),
                partition: key.1,
                offset: m.offset(),
            },
            raw: payload.to_vec(),
        };
        counts.messages += 1;
        let result =
            decode::event(kind, settings.formats.input(kind), payload, &codecs).and_then(|event| {
                let t = event.time();
                if options.from.is_some_and(|f| t < f) || options.to.is_some_and(|to| t >= to) {
                    counts.outside += 1;
                    return Ok(());
                }
                // Event time reached, for the progress line.
                counts.outputs.event_time = Some(counts.outputs.event_time.map_or(t, |e| e.max(t)));
                let event = match event {
                    Event::Ack(mut a) => {
                        a.origin = Some(origin());
                        Event::Ack(a)
                    }
                    other => other,
                };
                engine.handle(range.source.unwrap_or(SourceId(usize::MAX)), event)
            });
        if let Err(reason) = result {
            out.write(
                &Output::DeadLetter(DeadLetter {
                    origin: origin(),
                    reason,
                }),
                m.key(),
                &mut counts.outputs,
            )?;
        }
        if m.offset() + 1 >= range.end {
            range.done = true;
            if let Some(s) = range.source {
                engine.end_source(s);
            }
        }
        while let Some(o) = engine.poll_output() {
            out.write(&o, None, &mut counts.outputs)?;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(&counts);
            last_progress = Instant::now();
        }
    }
    engine.finish();
    while let Some(o) = engine.poll_output() {
        out.write(&o, None, &mut counts.outputs)?;
    }
    match &mut out {
        Out::Files(f) => f.flush()?,
        Out::Topics(s) => s.flush(Duration::from_secs(30))?,
    }
    progress(&counts);
    Ok((engine, counts))
}
