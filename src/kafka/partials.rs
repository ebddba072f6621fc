//! The internal topic between the two stages of `run` (SPEC §7): shards write their
//! [`PartialBatch`]es to `<prefix>partials`, the evaluator reads them back.
//!
//! The topic has one partition, so the evaluator sees each shard's batches in the order
//! they were written; shards write it in transactions that also commit their input
//! offsets, and the evaluator reads it `read_committed`, so a shard that crashes and
//! re-reads its input never has its facts counted twice.
//!
//! A message is a batch with the input partition behind each of the shard's sources
//! (the evaluator keys its watermark by input partition, not by shard). A batch too large
//! for one message is split into pieces that apply in order as the whole would.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde::{Deserialize, Serialize};

use super::{KafkaSettings, KafkaShellError, PartitionCounts};
use crate::partial::{BatchError, PartialBatch};

/// Largest message written, below the brokers' default limit of about 1 MB.
pub const MAX_MESSAGE_BYTES: usize = 900_000;

/// A batch and, for each of the shard's sources by id, the input partition it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialMessage {
    pub sources: Vec<Option<(String, i32)>>,
    pub batch: PartialBatch,
}

impl PartialMessage {
    /// The message's wire form, split into as many pieces as the size limit needs.
    pub fn encode(self, limit: usize) -> Result<Vec<Vec<u8>>, BatchError> {
        let bytes = postcard::to_stdvec(&self).map_err(BatchError::from)?;
        if bytes.len() <= limit || self.batch.items.len() < 2 {
            return Ok(vec![bytes]);
        }
        let (first, second) = self.batch.split();
        let mut pieces = PartialMessage {
            sources: self.sources.clone(),
            batch: first,
        }
        .encode(limit)?;
        pieces.extend(
            PartialMessage {
                sources: self.sources,
                batch: second,
            }
            .encode(limit)?,
        );
        Ok(pieces)
    }

    pub fn decode(bytes: &[u8]) -> Result<PartialMessage, BatchError> {
        postcard::from_bytes(bytes).map_err(BatchError::from)
    }
}

/// Creates the partials topic when it does not exist yet; one that exists must have one
/// partition.
pub async fn ensure_topic(
    settings: &KafkaSettings,
    counts: &PartitionCounts,
    retention_ms: i64,
) -> Result<(), KafkaShellError> {
    let topic = settings.output_topic("partials");
    match counts.get(&topic) {
        Some(1) => return Ok(()),
        Some(n) => {
            return Err(KafkaShellError::Invalid(format!(
                "the internal topic `{topic}` has {n} partitions; it must have exactly one (delete it and slaguard creates it)"
            )))
        }
        None => {}
    }
    let admin: AdminClient<DefaultClientContext> = settings.client().create()?;
    let retention = retention_ms.to_string();
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "delete")
        .set("retention.ms", &retention);
    let results = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .map_err(|e| cannot_create(&topic, e.to_string()))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, "created the internal partials topic"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(cannot_create(&topic, code.to_string())),
        }
    }
    Ok(())
}

fn cannot_create(topic: &str, detail: String) -> KafkaShellError {
    KafkaShellError::Invalid(format!(
        "cannot create the internal topic `{topic}` ({detail}); create it with one partition"
    ))
}
