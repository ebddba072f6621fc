//! The output producer: metric snapshots, breach events and dead letters to their topics,
//! keyed by model_id (dead letters keep the original key), with delivery failures counted
//! so that offsets are never committed past an output that did not reach the broker.
//!
//! With a transactional id (`run --exactly-once`) outputs are written in Kafka
//! transactions: each checkpoint commits the outputs since the last one together with the
//! consumer offsets, so `read_committed` readers see every output once across crashes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::{KafkaSettings, KafkaShellError};
use crate::avro::{Codecs, Format};
use crate::dead_letter::{DeadLetter, Position};
use crate::output::Output;

/// Counts failed deliveries (after librdkafka's own retries).
#[derive(Default)]
pub struct DeliveryTracker {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "an output was not delivered");
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(e.to_string());
            }
        }
    }
}

/// What the sink has sent, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub metrics: u64,
    pub breaches: u64,
    pub escalations: u64,
    pub dead_letters: u64,
    /// Partial batches (messages) for the evaluator.
    pub partials: u64,
}

pub struct Sink {
    producer: ThreadedProducer<DeliveryTracker>,
    transactional: bool,
    codecs: Codecs,
    breaches: String,
    escalations: String,
    metrics: String,
    dead_letters: String,
    partials: String,
    join_state: String,
    formats: super::Formats,
    sla_version: String,
    pub counts: SinkCounts,
}

impl Sink {
    /// Stamps `sla_version` on what is written from now on (after a configuration reload).
    pub fn set_sla_version(&mut self, sla_version: &str) {
        self.sla_version = sla_version.to_string();
    }

    pub fn new(settings: &KafkaSettings, sla_version: &str) -> Result<Sink, KafkaShellError> {
        Sink::create(settings, sla_version, None)
    }

    /// A sink writing in transactions under `transactional_id`, once
    /// [`Sink::start_transactions`] has returned.
    pub fn transactional(
        settings: &KafkaSettings,
        sla_version: &str,
        transactional_id: &str,
        transaction_timeout: Duration,
    ) -> Result<Sink, KafkaShellError> {
        Sink::create(
            settings,
            sla_version,
            Some((transactional_id, transaction_timeout)),
        )
    }

    /// Opens a transactional sink's first transaction. A previous producer with the same
    /// id is fenced and its open transaction aborted; one with another id (a crashed
    /// instance without `--instance-id`) is aborted by the broker after the transaction
    /// timeout, and holds `read_committed` readers back until then.
    pub fn start_transactions(&self, timeout: Duration) -> Result<(), KafkaShellError> {
        // librdkafka asks for the producer id as soon as it is told to, and if no
        // connection to a broker is up yet it asks again only after 500 ms: metadata
        // requests first bring a connection up, and the id then comes at once (0.5 s of
        // every start, and of every stage made again, spared). Two: librdkafka closes
        // the bootstrap connection the first one goes through once it has learnt the
        // brokers, and the second waits for a connection to one of those. A failure here
        // is left to `init_transactions`, which reports it.
        let warm = timeout.min(Duration::from_secs(2));
        for _ in 0..2 {
            let _ = self
                .producer
                .client()
                .fetch_metadata(Some(&self.dead_letters), warm);
        }
        self.producer.init_transactions(timeout)?;
        self.producer.begin_transaction()?;
        Ok(())
    }

    fn create(
        settings: &KafkaSettings,
        sla_version: &str,
        transactional: Option<(&str, Duration)>,
    ) -> Result<Sink, KafkaShellError> {
        let mut config = settings.client_with(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "20"),
            ("compression.type", "lz4"),
            ("message.timeout.ms", "60000"),
            // librdkafka spaces its attempts to connect to a broker it has not used yet
            // by half this (50 ms by default): a transactional start waits for one, to the
            // broker the bootstrap connection told of. The backoff still doubles on each
            // failed attempt, up to `reconnect.backoff.max.ms` (10 s).
            ("reconnect.backoff.ms", "20"),
        ]);
        if let Some((id, timeout)) = transactional {
            config.set("transactional.id", id);
            let ms = timeout.as_millis().to_string();
            config.set("transaction.timeout.ms", &ms);
            // librdkafka wants message timeouts within the transaction's.
            config.set("message.timeout.ms", &ms);
        }
        let producer: ThreadedProducer<DeliveryTracker> =
            config.create_with_context(DeliveryTracker::default())?;
        Ok(Sink {
            producer,
            transactional: transactional.is_some(),
            codecs: Codecs::new()?,
            breaches: settings.output_topic("breaches"),
            escalations: settings.output_topic("escalations"),
            metrics: settings.output_topic("metrics"),
            dead_letters: settings.output_topic("dead_letters"),
            partials: settings.output_topic("partials"),
            join_state: settings.output_topic("join-state"),
            formats: settings.formats.clone(),
            sla_version: sla_version.to_string(),
            counts: SinkCounts::default(),
        })
    }

    fn encode(
        &self,
        json: &serde_json::Value,
        format: Format,
        schema: &apache_avro::Schema,
    ) -> Result<Vec<u8>, KafkaShellError> {
        match format {
            Format::Json => {
                serde_json::to_vec(json).map_err(|e| KafkaShellError::Invalid(e.to_string()))
            }
            f => Codecs::encode(schema, json, f).map_err(KafkaShellError::Invalid),
        }
    }

    /// Queues one engine output. `key` is the original message key for dead letters.
    pub fn send(&mut self, output: &Output, key: Option<&[u8]>) -> Result<(), KafkaShellError> {
        match output {
            Output::Metric(m) => {
                let json =
                    serde_json::to_value(m).map_err(|e| KafkaShellError::Invalid(e.to_string()))?;
                let value = self.encode(&json, self.formats.metrics, &self.codecs.metric)?;
                self.counts.metrics += 1;
                self.enqueue(
                    &self.metrics.clone(),
                    Some(m.model_id.as_bytes()),
                    &value,
                    None,
                )
            }
            Output::Breach(b) => {
                let json =
                    serde_json::to_value(b).map_err(|e| KafkaShellError::Invalid(e.to_string()))?;
                let value = self.encode(&json, self.formats.breaches, &self.codecs.breach)?;
                self.counts.breaches += 1;
                self.enqueue(
                    &self.breaches.clone(),
                    Some(b.model_id.as_bytes()),
                    &value,
                    None,
                )
            }
            Output::Escalation(e) => {
                let json =
                    serde_json::to_value(e).map_err(|e| KafkaShellError::Invalid(e.to_string()))?;
                let value =
                    self.encode(&json, self.formats.escalations, &self.codecs.escalation)?;
                self.counts.escalations += 1;
                self.enqueue(
                    &self.escalations.clone(),
                    Some(e.model_id.as_bytes()),
                    &value,
                    None,
                )
            }
            Output::DeadLetter(d) => self.dead_letter(d, key),
        }
    }

    /// Sends the original bytes to the dead-letter topic, with headers saying why and
    /// where they came from.
    pub fn dead_letter(
        &mut self,
        d: &DeadLetter,
        key: Option<&[u8]>,
    ) -> Result<(), KafkaShellError> {
        let detail = d.reason.to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "slaguard.reason",
                value: Some(d.reason.code()),
            })
            .insert(Header {
                key: "slaguard.detail",
                value: Some(&detail),
            })
            .insert(Header {
                key: "slaguard.input",
                value: Some(d.origin.input.name()),
            })
            .insert(Header {
                key: "slaguard.sla_version",
                value: Some(&self.sla_version),
            });
        match &d.origin.position {
            Position::Offset {
                topic,
                partition,
                offset,
            } => {
                let (p, o) = (partition.to_string(), offset.to_string());
                headers = headers
                    .insert(Header {
                        key: "slaguard.source.topic",
                        value: Some(topic),
                    })
                    .insert(Header {
                        key: "slaguard.source.partition",
                        value: Some(&p),
                    })
                    .insert(Header {
                        key: "slaguard.source.offset",
                        value: Some(&o),
                    });
            }
            Position::Line { file, line } => {
                let l = line.to_string();
                headers = headers
                    .insert(Header {
                        key: "slaguard.source.file",
                        value: Some(file),
                    })
                    .insert(Header {
                        key: "slaguard.source.line",
                        value: Some(&l),
                    });
            }
        }
        self.counts.dead_letters += 1;
        let raw = d.origin.raw.clone();
        self.enqueue(&self.dead_letters.clone(), key, &raw, Some(headers))
    }

    /// Queues one encoded partial batch for the evaluator (the partials topic's only
    /// partition).
    pub fn partial(&mut self, value: &[u8]) -> Result<(), KafkaShellError> {
        self.counts.partials += 1;
        let record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&self.partials).partition(0).payload(value);
        self.produce(record)
    }

    /// Queues one message of a pair's join-state snapshot (see [`super::handover`]) to
    /// the join-state topic's partition `pair`; no value deletes the key.
    pub fn join_state(
        &mut self,
        pair: i32,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<(), KafkaShellError> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.join_state)
            .partition(pair)
            .key(key.as_bytes());
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.produce(record)
    }

    fn enqueue(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(), KafkaShellError> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        self.produce(record)
    }

    fn produce(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), KafkaShellError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    // Backpressure: the background thread drains the queue.
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// Commits the open transaction — the outputs since the last commit and `offsets` for
    /// the consumer group `group` — and opens the next one.
    pub fn commit_transaction(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: &rdkafka::consumer::ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), KafkaShellError> {
        self.flush(timeout)?;
        if offsets.count() > 0 {
            self.producer
                .send_offsets_to_transaction(offsets, group, timeout)?;
        }
        self.producer.commit_transaction(timeout)?;
        self.producer.begin_transaction()?;
        Ok(())
    }

    /// Gives up the open transaction: its outputs are never visible to `read_committed`.
    pub fn abort_transaction(&self, timeout: Duration) -> Result<(), KafkaShellError> {
        self.producer.abort_transaction(timeout)?;
        Ok(())
    }

    /// Waits until every queued output is acknowledged by the broker, or fails.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaShellError> {
        self.producer.flush(timeout)?;
        let tracker = self.producer.context();
        let failed = tracker.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let last = tracker
                .last_error
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_default();
            return Err(KafkaShellError::Delivery(format!(
                "{failed} output(s) failed, last: {last}"
            )));
        }
        Ok(())
    }
}
