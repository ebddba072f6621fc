//! Join state that moves with its partitions (SPEC §7): when a shard gives up its
//! partitions (a rebalance, a shutdown), it writes each co-partitioned pair's join state
//! — predictions waiting for labels, labels waiting for predictions, duplicate guards —
//! to the compacted topic `<prefix>join-state`, partition `p` for the pair `p`, in the
//! same transaction as the offsets it commits; the commit's mark names the hand-over.
//! The next owner of the pair, in this instance or another, reads the state back and
//! reads on from the previous owner's next offsets: no input is re-read.
//!
//! A pair's state is one or more chunks (messages keyed `chunk/<i>`, at most
//! [`MAX_MESSAGE_BYTES`] each) followed by a head (key `head`) naming the hand-over's
//! sequence number and the chunk count. Compaction keeps the latest message per key, so
//! the latest complete hand-over stays readable. A state that cannot be found (the topic
//! deleted, a hand-over never committed) leaves the new owner to rebuild by re-reading.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::partials::MAX_MESSAGE_BYTES;
use super::{KafkaSettings, KafkaShellError};
use crate::partial::PartitionState;

const HEAD: &str = "head";

/// The last message of a hand-over.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    seq: u64,
    chunks: u32,
}

/// One piece of a hand-over's state.
#[derive(Debug, Serialize, Deserialize)]
struct Chunk<'a> {
    seq: u64,
    #[serde(borrow)]
    bytes: &'a [u8],
}

fn invalid(detail: impl ToString) -> KafkaShellError {
    KafkaShellError::Invalid(format!("join state hand-over: {}", detail.to_string()))
}

/// The messages (key, value) of pair `state`'s hand-over number `seq`, head last.
pub fn messages(
    seq: u64,
    state: &PartitionState,
) -> Result<Vec<(String, Vec<u8>)>, KafkaShellError> {
    let bytes = state.to_bytes().map_err(invalid)?;
    let mut out = Vec::new();
    for (i, piece) in bytes.chunks(MAX_MESSAGE_BYTES).enumerate() {
        let value = postcard::to_stdvec(&Chunk { seq, bytes: piece }).map_err(invalid)?;
        out.push((format!("chunk/{i}"), value));
    }
    let head = Head {
        seq,
        chunks: out.len() as u32,
    };
    out.push((
        HEAD.to_string(),
        postcard::to_stdvec(&head).map_err(invalid)?,
    ));
    Ok(out)
}

/// What one partition of the join-state topic holds of one hand-over, as read so far.
#[derive(Default)]
struct Found {
    head: Option<Head>,
    chunks: Vec<Option<Vec<u8>>>,
}

impl Found {
    fn add(&mut self, seq: u64, key: &[u8], value: &[u8]) -> Result<(), KafkaShellError> {
        if key == HEAD.as_bytes() {
            let h: Head = postcard::from_bytes(value).map_err(invalid)?;
            if h.seq == seq {
                self.head = Some(h);
            }
        } else if let Some(i) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix("chunk/"))
            .and_then(|i| i.parse::<usize>().ok())
        {
            let c: Chunk<'_> = postcard::from_bytes(value).map_err(invalid)?;
            if c.seq == seq {
                if self.chunks.len() <= i {
                    self.chunks.resize(i + 1, None);
                }
                self.chunks[i] = Some(c.bytes.to_vec());
            }
        }
        Ok(())
    }

    /// The state, once the head and every chunk it names have been read.
    fn complete(&self) -> Option<Vec<u8>> {
        let head = self.head.as_ref()?;
        let mut bytes = Vec::new();
        for i in 0..head.chunks as usize {
            bytes.extend_from_slice(self.chunks.get(i)?.as_ref()?);
        }
        Some(bytes)
    }
}

/// Reads the join-state topic's partitions of the `wanted` pairs, each for its hand-over
/// number, and returns the states found whole within `timeout`. A hand-over committed
/// just now may take a moment to become readable (`read_committed` waits for the
/// transaction's markers), so partitions are read until their state is whole or time is
/// up.
pub fn read(
    settings: &KafkaSettings,
    wanted: &BTreeMap<i32, u64>,
    timeout: Duration,
) -> Result<BTreeMap<i32, PartitionState>, KafkaShellError> {
    let topic = settings.output_topic("join-state");
    let mut found: BTreeMap<i32, Found> = wanted.keys().map(|p| (*p, Found::default())).collect();
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let consumer: BaseConsumer = settings
        .client_with(&[
            ("group.id", "slaguard-join-state-reader"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
            ("fetch.wait.max.ms", "10"),
        ])
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in wanted.keys() {
        tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut states = BTreeMap::new();
    while states.len() < wanted.len() && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let message = message?;
        let pair = message.partition();
        let (Some(seq), Some(f)) = (wanted.get(&pair), found.get_mut(&pair)) else {
            continue;
        };
        f.add(
            *seq,
            message.key().unwrap_or_default(),
            message.payload().unwrap_or_default(),
        )?;
        if let std::collections::btree_map::Entry::Vacant(slot) = states.entry(pair) {
            if let Some(bytes) = f.complete() {
                slot.insert(PartitionState::from_bytes(&bytes).map_err(invalid)?);
            }
        }
    }
    Ok(states)
}
