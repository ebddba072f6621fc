//! The Kafka shell (SPEC §1, §5, §7): the `run` consumer group, bounded replay of topics,
//! and what they share — client settings, topic names and formats, start-up checks, and
//! the output producer. The engine inside stays pure; this module owns every network
//! call, clock and file.

pub mod checkpoint;
mod decoder;
pub mod handover;
pub mod partials;
mod partition_queues;
pub mod preflight;
pub mod processor;
pub mod reload;
pub mod sink;
pub mod topic_replay;

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;

use crate::avro::Format;
use crate::dead_letter::InputKind;

/// Why the Kafka shell stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaShellError {
    #[error("cannot reach the Kafka brokers at {brokers}: {detail} (check --brokers and that the cluster is up)")]
    Unreachable { brokers: String, detail: String },
    #[error("topic `{topic}` does not exist on {brokers} ({role}); create it or name another with --{role}-topic")]
    TopicMissing {
        topic: String,
        role: String,
        brokers: String,
    },
    #[error("topic `{topic}` is listed by the cluster but cannot be served yet ({detail}) after {waited:?}: it may still be being created, or a broker holding it is down")]
    TopicNotReady {
        topic: String,
        detail: String,
        waited: std::time::Duration,
    },
    #[error("`{inferences}` has {inference_partitions} partitions but `{labels}` has {label_partitions}: inferences and labels must be co-partitioned (same partition count, both keyed by request_id) so that a prediction and its label meet in the same partition")]
    NotCoPartitioned {
        inferences: String,
        inference_partitions: usize,
        labels: String,
        label_partitions: usize,
    },
    #[error("Kafka client error: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("output delivery failed after retries: {0}; offsets were not committed, so a restart reprocesses from the last checkpoint")]
    Delivery(String),
    #[error("checkpoint {path}: {detail}")]
    Checkpoint { path: String, detail: String },
    #[error(transparent)]
    Snapshot(#[from] crate::engine::SnapshotError),
    #[error(transparent)]
    Schema(#[from] crate::avro::SchemaError),
    #[error(transparent)]
    Files(#[from] crate::replay::ReplayError),
    #[error("{0}")]
    Invalid(String),
}

/// Topic names, formats and the connection: what every Kafka command shares.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    /// librdkafka properties given with `-X key=value` (SASL, SSL, …); they win over ours.
    pub overrides: Vec<(String, String)>,
    pub inferences_topic: String,
    pub labels_topic: String,
    pub acks_topic: String,
    /// Prefix of the output topics: `<prefix>breaches`, `metrics`, `escalations`, `dead_letters`.
    pub output_prefix: String,
    pub formats: Formats,
}

impl KafkaSettings {
    pub fn new(brokers: &str) -> KafkaSettings {
        KafkaSettings {
            brokers: brokers.to_string(),
            overrides: Vec::new(),
            inferences_topic: "inferences".into(),
            labels_topic: "labels".into(),
            acks_topic: "acks".into(),
            output_prefix: "sla.".into(),
            formats: Formats::default(),
        }
    }

    /// A client configuration with the brokers and the user's overrides.
    pub fn client(&self) -> ClientConfig {
        self.client_with(&[])
    }

    /// A client configuration with our `defaults`; the user's overrides win over them.
    pub fn client_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("client.id", "slaguard");
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.overrides {
            c.set(k, v);
        }
        c
    }

    pub fn input_topics(&self) -> [(&str, InputKind); 3] {
        [
            (self.inferences_topic.as_str(), InputKind::Inferences),
            (self.labels_topic.as_str(), InputKind::Labels),
            (self.acks_topic.as_str(), InputKind::Acks),
        ]
    }

    pub fn role(&self, topic: &str) -> Option<InputKind> {
        self.input_topics()
            .into_iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, k)| k)
    }

    pub fn output_topic(&self, what: &str) -> String {
        format!("{}{what}", self.output_prefix)
    }

    /// The topics `run` keeps for itself: the batches between its two stages (one
    /// partition, see [`partials`]) and the join state handed over with partitions
    /// (compacted, as many partitions as the inferences topic, see [`handover`]).
    pub fn internal_topics(&self) -> Vec<String> {
        vec![
            self.output_topic("partials"),
            self.output_topic("join-state"),
        ]
    }

    pub fn output_topics(&self) -> Vec<String> {
        ["breaches", "escalations", "metrics", "dead_letters"]
            .iter()
            .map(|w| self.output_topic(w))
            .collect()
    }
}

/// Value encodings per topic role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Formats {
    pub inferences: Format,
    pub labels: Format,
    pub acks: Format,
    pub breaches: Format,
    pub escalations: Format,
    pub metrics: Format,
}

impl Formats {
    /// Applies one `ROLE=FORMAT` setting (`inferences=avro`, `metrics=confluent:3`).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (role, format) = spec
            .split_once('=')
            .ok_or_else(|| format!("`{spec}`: write ROLE=FORMAT, e.g. inferences=avro"))?;
        let format = Format::parse(format)?;
        let slot = match role {
            "inferences" => &mut self.inferences,
            "labels" => &mut self.labels,
            "acks" => &mut self.acks,
            "breaches" => &mut self.breaches,
            "escalations" => &mut self.escalations,
            "metrics" => &mut self.metrics,
            other => {
                return Err(format!(
                    "`{other}`: roles are inferences, labels, acks, breaches, escalations, metrics"
                ))
            }
        };
        *slot = format;
        Ok(())
    }

    pub fn input(&self, kind: InputKind) -> Format {
        match kind {
            InputKind::Inferences => self.inferences,
            InputKind::Labels => self.labels,
            InputKind::Acks => self.acks,
        }
    }
}

/// Parses `-X key=value` settings.
pub fn parse_overrides(specs: &[String]) -> Result<Vec<(String, String)>, String> {
    specs
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    format!("-X `{s}`: write key=value, e.g. -X security.protocol=SASL_SSL")
                })
        })
        .collect()
}

/// Partition counts of the topics that exist, by name.
pub type PartitionCounts = BTreeMap<String, usize>;
