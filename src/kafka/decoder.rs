//! A shard's decoding thread. It fills an [`InputBatch`] from the shard's partition
//! queues (see [`PartitionQueues`]), or takes one the shard copied from the consumer's
//! own queue, and decodes every message, computing its [`EventKeys`] and an inference's
//! drift and data-quality facts ([`prepare`]); the engine applies one batch while the
//! next ones are read and decoded. A batch the engine is done with goes back to the
//! thread, which drops its events (where they were made) and returns it empty for reuse.
//!
//! Decoding is pure: it depends on the message bytes, the topic's role and input format,
//! and what of the SLA a reload cannot change (its models, their tasks, positive labels,
//! objectives and reference profiles; see [`EventKeys`] and [`prepare`]).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use rdkafka::message::{BorrowedMessage, Message};

use super::partition_queues::PartitionQueues;
use super::{KafkaSettings, KafkaShellError};
use crate::avro::Codecs;
use crate::config::SlaConfig;
use crate::dead_letter::{InputKind, Reason};
use crate::decode;
use crate::engine::{prepare, EventKeys};
use crate::event::Event;
use crate::series::Fact;
use crate::time::Millis;

/// One input message of a batch.
pub(super) struct InputMessage {
    /// Index into the batch's topic names.
    topic: usize,
    pub partition: i32,
    pub offset: i64,
    payload: Range<usize>,
    key: Option<Range<usize>>,
    /// The message's role, from its topic: `None` for a topic that is not an input.
    pub kind: Option<InputKind>,
    /// What it decoded to (`None` until decoded, and for a topic that is not an input).
    pub decoded: Option<Result<Event, Reason>>,
    /// The event's keys, for inferences and labels.
    pub keys: Option<EventKeys>,
    /// Where an inference's drift and data-quality facts lie in the batch's facts.
    facts: Range<usize>,
}

/// Consecutive messages as the consumer delivered them, with their bytes.
#[derive(Default)]
pub(super) struct InputBatch {
    bytes: Vec<u8>,
    topics: Vec<String>,
    pub messages: Vec<InputMessage>,
    /// The inferences' drift and data-quality facts ([`prepare`]).
    facts: Vec<Fact>,
    decoded: bool,
    /// Filled from the partition queues: whether it was filled to the brim (the queues
    /// may have more), `None` for a batch copied from the consumer's queue.
    pub gathered: Option<bool>,
}

impl InputBatch {
    /// Copies a message in.
    pub fn push(&mut self, m: &BorrowedMessage<'_>) {
        self.push_parts(m.topic(), m.partition(), m.offset(), m.payload(), m.key());
    }

    pub fn push_parts(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
        key: Option<&[u8]>,
    ) {
        let topic = match self.topics.iter().position(|t| t == topic) {
            Some(i) => i,
            None => {
                self.topics.push(topic.to_string());
                self.topics.len() - 1
            }
        };
        let mut copy = |bytes: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(bytes);
            start..self.bytes.len()
        };
        let payload = copy(payload.unwrap_or(&[]));
        let key = key.map(copy);
        self.messages.push(InputMessage {
            topic,
            partition,
            offset,
            payload,
            key,
            kind: None,
            decoded: None,
            keys: None,
            facts: 0..0,
        });
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// The messages in runs of one partition each: (topic, partition, messages).
    pub fn partitions(&self) -> impl Iterator<Item = (&str, i32, &[InputMessage])> {
        self.messages
            .chunk_by(|a, b| a.topic == b.topic && a.partition == b.partition)
            .map(|run| (self.topic(&run[0]), run[0].partition, run))
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Drops every message (and its event).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.topics.clear();
        self.messages.clear();
        self.facts.clear();
        self.decoded = false;
        self.gathered = None;
    }

    pub fn topic(&self, m: &InputMessage) -> &str {
        self.topics.get(m.topic).map_or("", String::as_str)
    }

    pub fn payload(&self, m: &InputMessage) -> &[u8] {
        self.bytes.get(m.payload.clone()).unwrap_or(&[])
    }

    /// An inference's drift and data-quality facts, once decoded.
    pub fn facts(&self, m: &InputMessage) -> &[Fact] {
        self.facts.get(m.facts.clone()).unwrap_or_default()
    }

    pub fn key(&self, m: &InputMessage) -> Option<&[u8]> {
        m.key.clone().and_then(|k| self.bytes.get(k))
    }

    /// Decodes every message: what `settings` says its topic holds, in that input's
    /// format.
    pub fn decode(&mut self, settings: &KafkaSettings, config: &SlaConfig, codecs: &Codecs) {
        let kinds: Vec<Option<InputKind>> = self.topics.iter().map(|t| settings.role(t)).collect();
        for m in &mut self.messages {
            let Some(kind) = kinds.get(m.topic).copied().flatten() else {
                continue;
            };
            let payload = self.bytes.get(m.payload.clone()).unwrap_or(&[]);
            let decoded = decode::event(kind, settings.formats.input(kind), payload, codecs);
            (m.keys, m.facts) = prepare(config, decoded.as_ref().ok(), &mut self.facts);
            m.kind = Some(kind);
            m.decoded = Some(decoded);
        }
        self.decoded = true;
    }

    /// The latest event time of each partition's decoded messages, in the order read.
    fn reached(&self) -> impl Iterator<Item = (&str, i32, Millis)> {
        self.partitions().filter_map(|(topic, partition, run)| {
            run.iter()
                .filter_map(|m| m.decoded.as_ref()?.as_ref().ok().map(Event::time))
                .max()
                .map(|t| (topic, partition, t))
        })
    }
}

/// What the decoding thread is asked to do with a batch.
enum Job {
    /// Decode what the shard copied in.
    Decode(InputBatch),
    /// Fill it from the partition queues, then decode it.
    Gather(InputBatch),
    /// Done with: drop its events, keep its buffers.
    Empty(InputBatch),
}

/// Most messages a batch is filled with from the partition queues.
pub(super) const BATCH_MESSAGES: usize = 1024;

/// Fills `batch` from the partition queues and decodes it; each queue is then told how
/// far in event time its decoded messages reached. The queues stay locked throughout, so
/// that a revocation (which destroys them) waits for the batch to be read whole.
fn gather(
    batch: &mut InputBatch,
    queues: &Mutex<PartitionQueues>,
    settings: &KafkaSettings,
    config: &SlaConfig,
    codecs: &Codecs,
) {
    let mut queues = queues.lock().unwrap_or_else(|e| e.into_inner());
    batch.gathered = Some(queues.gather(batch, BATCH_MESSAGES));
    batch.decode(settings, config, codecs);
    for (topic, partition, time) in batch.reached() {
        queues.reached(topic, partition, time);
    }
}

/// The handle on a shard's decoding thread: batches go in in order and come back decoded
/// in the same order.
pub(super) struct Decoder {
    jobs: Sender<Job>,
    done: Receiver<InputBatch>,
    /// Batches sent to be decoded and not taken back yet.
    in_flight: usize,
    /// Decoded batches that came back while an empty one was looked for, oldest first.
    ready: VecDeque<InputBatch>,
    /// Empty batches to fill.
    spare: Vec<InputBatch>,
}

impl Decoder {
    /// Starts the thread, which fills batches from `queues` when asked to.
    pub fn spawn(
        settings: &KafkaSettings,
        config: &Arc<SlaConfig>,
        queues: Arc<Mutex<PartitionQueues>>,
    ) -> Result<Decoder, KafkaShellError> {
        let codecs = Codecs::new()?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, done) = mpsc::channel::<InputBatch>();
        let (settings, config) = (settings.clone(), Arc::clone(config));
        std::thread::Builder::new()
            .name("shard-decode".into())
            .spawn(move || {
                for job in inbox {
                    let batch = match job {
                        Job::Decode(mut batch) => {
                            batch.decode(&settings, &config, &codecs);
                            batch
                        }
                        Job::Gather(mut batch) => {
                            gather(&mut batch, &queues, &settings, &config, &codecs);
                            batch
                        }
                        Job::Empty(mut batch) => {
                            // Its events are dropped here, where they were made.
                            batch.clear();
                            batch
                        }
                    };
                    if outbox.send(batch).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| {
                KafkaShellError::Invalid(format!("cannot start the decoding thread: {e}"))
            })?;
        Ok(Decoder {
            jobs,
            done,
            in_flight: 0,
            ready: VecDeque::new(),
            spare: Vec::new(),
        })
    }

    /// An empty batch to fill.
    pub fn batch(&mut self) -> InputBatch {
        while let Ok(b) = self.done.try_recv() {
            self.returned(b);
        }
        self.spare.pop().unwrap_or_default()
    }

    fn stopped() -> KafkaShellError {
        KafkaShellError::Invalid("the shard's decoding thread stopped".into())
    }

    /// Hands a filled batch over to be decoded.
    pub fn submit(&mut self, batch: InputBatch) -> Result<(), KafkaShellError> {
        self.send(Job::Decode(batch))
    }

    /// Has the next batch filled from the partition queues and decoded.
    pub fn gather(&mut self) -> Result<(), KafkaShellError> {
        let batch = self.batch();
        self.send(Job::Gather(batch))
    }

    fn send(&mut self, job: Job) -> Result<(), KafkaShellError> {
        self.jobs.send(job).map_err(|_| Self::stopped())?;
        self.in_flight += 1;
        Ok(())
    }

    /// Batches submitted and not taken back yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The oldest batch submitted, decoded (waiting for it); `None` when none is in flight.
    pub fn take(&mut self) -> Result<Option<InputBatch>, KafkaShellError> {
        while self.in_flight > 0 && self.ready.is_empty() {
            let b = self.done.recv().map_err(|_| Self::stopped())?;
            self.returned(b);
        }
        let b = self.ready.pop_front();
        self.in_flight -= usize::from(b.is_some());
        Ok(b)
    }

    /// Drops every batch in flight, unapplied.
    pub fn discard(&mut self) -> Result<(), KafkaShellError> {
        while let Some(b) = self.take()? {
            self.recycle(b);
        }
        Ok(())
    }

    /// A batch the engine is done with, to be emptied on the decoding thread.
    pub fn recycle(&mut self, batch: InputBatch) {
        if batch.decoded {
            // A stopped thread is reported by the next `submit`.
            let _ = self.jobs.send(Job::Empty(batch));
        } else {
            let mut batch = batch;
            batch.clear();
            self.spare.push(batch);
        }
    }

    /// A batch back from the thread: decoded, or emptied for reuse.
    fn returned(&mut self, batch: InputBatch) {
        if batch.decoded {
            self.ready.push_back(batch);
        } else if self.spare.len() < 4 {
            // A few batches circulate; more than that are extra allocations, dropped.
            self.spare.push(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> KafkaSettings {
        KafkaSettings::new("127.0.0.1:1")
    }

    fn config() -> Arc<SlaConfig> {
        const YAML: &str = r#"
sla_version: "v1"
models:
  - model_id: fraud
    task: binary_classification
    objectives:
      - {name: p99, metric: latency_p99, op: "<=", target: 250, window: 5m}
"#;
        Arc::new(crate::config::parse(YAML, "t.yaml", None).expect("valid"))
    }

    const INFERENCE: &[u8] = br#"{"request_id":"r-1","model_id":"fraud","model_version":"1","timestamp":"2026-01-01T00:00:00Z","latency_ms":12,"prediction":{"score":0.7}}"#;

    #[test]
    fn decodes_in_order_with_keys_and_reasons() {
        let s = settings();
        let config = config();
        let mut d = Decoder::spawn(&s, &config, Arc::default()).unwrap();
        let mut b = d.batch();
        b.push_parts(&s.inferences_topic, 0, 10, Some(INFERENCE), Some(b"r-1"));
        b.push_parts(&s.labels_topic, 0, 3, Some(b"not json"), None);
        b.push_parts("elsewhere", 1, 0, Some(b"{}"), None);
        b.push_parts(&s.inferences_topic, 0, 11, None, None);
        d.submit(b).unwrap();
        let b = d.take().unwrap().expect("one batch in flight");
        assert_eq!(d.in_flight(), 0);
        let [a, l, other, empty] = &b.messages[..] else {
            panic!("four messages, got {}", b.len());
        };
        assert_eq!(
            (b.topic(a), a.partition, a.offset),
            (s.inferences_topic.as_str(), 0, 10)
        );
        assert_eq!(b.key(a), Some(&b"r-1"[..]));
        assert_eq!(b.payload(a), INFERENCE);
        assert!(matches!(a.decoded, Some(Ok(Event::Inference(_)))));
        assert_eq!(a.keys, Some(EventKeys::new(&config, "fraud", "r-1")));
        assert_eq!(a.kind, Some(InputKind::Inferences));
        assert!(
            matches!(l.decoded, Some(Err(Reason::NotJson(_)))),
            "{:?}",
            l.decoded.as_ref().map(|r| r.as_ref().err())
        );
        assert_eq!(l.kind, Some(InputKind::Labels));
        assert!(l.keys.is_none());
        assert!(other.decoded.is_none() && other.kind.is_none());
        assert_eq!(b.payload(empty), b"");
        assert!(matches!(empty.decoded, Some(Err(_))));
        // Recycled: emptied on the thread (which returns it before decoding the next
        // batch), then handed out again with its buffers.
        d.recycle(b);
        let mut next = InputBatch::default();
        next.push_parts(&s.acks_topic, 0, 0, Some(b"{}"), None);
        d.submit(next).unwrap();
        let next = d.take().unwrap().unwrap();
        assert_eq!(next.messages[0].kind, Some(InputKind::Acks));
        let reused = d.batch();
        assert!(reused.is_empty() && !reused.decoded);
        assert!(
            reused.bytes.capacity() >= INFERENCE.len(),
            "the recycled batch's buffers"
        );
    }

    #[test]
    fn a_decoded_batch_seen_while_looking_for_an_empty_one_is_kept() {
        let s = settings();
        let mut d = Decoder::spawn(&s, &config(), Arc::default()).unwrap();
        let mut b = d.batch();
        b.push_parts(&s.acks_topic, 0, 7, Some(b"{}"), None);
        d.submit(b).unwrap();
        // What `batch` does when the decoded batch is back before it is taken.
        let back = d.done.recv().unwrap();
        d.returned(back);
        let mut next = d.batch();
        assert!(next.is_empty());
        next.push_parts(&s.acks_topic, 0, 8, Some(b"{}"), None);
        d.submit(next).unwrap();
        assert_eq!(d.take().unwrap().unwrap().messages[0].offset, 7);
        assert_eq!(d.take().unwrap().unwrap().messages[0].offset, 8);
        assert!(d.take().unwrap().is_none());
    }

    /// Submits one batch per offset, each holding an ack at that offset.
    fn submit_acks(d: &mut Decoder, s: &KafkaSettings, offsets: std::ops::Range<i64>) {
        for i in offsets {
            let mut b = d.batch();
            b.push_parts(&s.acks_topic, 0, i, Some(b"{}"), None);
            d.submit(b).unwrap();
        }
    }

    #[test]
    fn batches_come_back_in_submission_order() {
        let s = settings();
        let mut d = Decoder::spawn(&s, &config(), Arc::default()).unwrap();
        submit_acks(&mut d, &s, 0..5);
        assert_eq!(d.in_flight(), 5);
        for i in 0..5 {
            let b = d.take().unwrap().unwrap();
            assert_eq!(b.messages[0].offset, i);
            d.recycle(b);
        }
        assert!(d.take().unwrap().is_none());
    }

    #[test]
    fn discarding_drops_what_is_in_flight() {
        let s = settings();
        let mut d = Decoder::spawn(&s, &config(), Arc::default()).unwrap();
        submit_acks(&mut d, &s, 0..3);
        d.discard().unwrap();
        assert_eq!(d.in_flight(), 0);
        assert!(d.take().unwrap().is_none());
    }
}
