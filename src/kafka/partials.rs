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

use serde::{Deserialize, Serialize};

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
