//! What a shard hands to the evaluator (SPEC "Architecture"): the global metrics of a
//! model come from merging the partial summaries of every input partition, not from
//! routing a model's traffic to one place.
//!
//! A shard is an engine over some input partitions that joins and summarises but does not
//! evaluate ([`crate::engine::Engine::shard`]); an evaluator is an engine fed with the
//! shards' batches ([`crate::engine::Engine::apply_batch`]). A batch carries, since the
//! previous one: per series, segment (by value) and interval, the summary of the facts
//! recorded; the model versions and first event times seen; the acks read; and how far
//! each of the shard's sources has got. A shard closes a batch whenever its watermark
//! reaches a new evaluation instant, so facts recorded after that point never reach an
//! evaluation they would have missed in a single engine.
//!
//! When partitions move between shards, a fresh shard re-reads them up to where their
//! previous owners stopped ([`crate::engine::Engine::begin_replay`]): re-read events
//! rebuild the pending join state without counting again, nothing expires until the
//! re-read ends, and then only the predictions whose deadline the previous owner's
//! watermark had not passed are counted as expired.

use serde::{Deserialize, Serialize};

use crate::event::Ack;
use crate::join::Moved;
use crate::series::AnySummary;
use crate::time::Millis;
use crate::watermark::SourceProgress;

/// The facts of one series, segment and interval, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialItem {
    pub model: u32,
    /// Index of the series in the model's series (the same configuration on both sides).
    pub series: u32,
    /// The segment's dimension values, in the series' order (empty for the whole model
    /// only, when the series has no dimensions).
    pub segment: Vec<String>,
    pub interval: i64,
    pub summary: AnySummary,
}

/// The latest model version seen in an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionSeen {
    pub model: u32,
    pub interval: i64,
    pub time: Millis,
    pub version: String,
}

/// One batch; `to_bytes` / `from_bytes` are its wire form (postcard) between instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialBatch {
    pub items: Vec<PartialItem>,
    pub versions: Vec<VersionSeen>,
    /// Models seen for the first time, with the time of their first event.
    pub started: Vec<(u32, Millis)>,
    /// Per model, the class names behind the multiclass ids in `items`.
    pub classes: Vec<(u32, Vec<String>)>,
    pub acks: Vec<Ack>,
    /// The shard's sources (by the shard's ids), as of the end of the batch.
    pub progress: Vec<SourceProgress>,
}

/// A batch that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("unreadable partial batch: {0}")]
pub struct BatchError(#[from] postcard::Error);

impl PartialBatch {
    pub fn to_bytes(&self) -> Result<Vec<u8>, BatchError> {
        postcard::to_stdvec(self).map_err(BatchError)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<PartialBatch, BatchError> {
        postcard::from_bytes(bytes).map_err(BatchError)
    }
}

impl PartialBatch {
    /// Splits a batch in two whose application, first then second, equals applying it
    /// whole: the items halved, what names them (classes) in both, what starts models
    /// first, and the acks and progress — which may evaluate — last.
    pub fn split(self) -> (PartialBatch, PartialBatch) {
        let PartialBatch {
            mut items,
            versions,
            started,
            classes,
            acks,
            progress,
        } = self;
        let second_items = items.split_off(items.len() / 2);
        (
            PartialBatch {
                items,
                versions,
                started,
                classes: classes.clone(),
                acks: Vec::new(),
                progress: Vec::new(),
            },
            PartialBatch {
                items: second_items,
                classes,
                acks,
                progress,
                ..PartialBatch::default()
            },
        )
    }
}

/// A waiting prediction as it moves between shards: segment values and class by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MovedVerdict {
    Binary { predicted: bool, score: Option<f64> },
    Class(String),
    Value(f64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovedPrediction {
    pub verdict: MovedVerdict,
    pub dims: Vec<String>,
}

/// A waiting label as it moves between shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MovedTruth {
    Binary(bool),
    Class(String),
    Value(f64),
}

/// The join state of some sources (a co-partitioned pair of input partitions) as it
/// leaves one shard for another ([`crate::engine::Engine::export_sources`] and
/// [`crate::engine::Engine::import_sources`]): every waiting prediction, waiting label
/// and duplicate guard read from them, with origins as indexes into the exported sources,
/// and how far each source had got.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    pub entries: Vec<Moved<MovedPrediction, MovedTruth>>,
    pub reached: Vec<Option<Millis>>,
}

impl PartitionState {
    pub fn to_bytes(&self) -> Result<Vec<u8>, BatchError> {
        Ok(postcard::to_stdvec(self)?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<PartitionState, BatchError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}
