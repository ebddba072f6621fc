//! Join state that survives its partitions moving (SPEC §7). A shard writes each
//! co-partitioned pair's join state — predictions waiting for labels, labels waiting for
//! predictions, duplicate guards — to the compacted topic `<prefix>join-state`,
//! partition `p` for the pair `p`, in the same transaction as the offsets it commits:
//! every `snapshot interval` and whenever it gives its partitions up (a rebalance, a
//! shutdown). Each commit's mark names the pair's latest snapshot, and the committed
//! offset is where that snapshot was taken. The next owner of the pair, in this instance
//! or another, reads the snapshot back and reads on from there: after a hand-over nothing
//! is re-read; after a crash only what came after the last snapshot is, without being
//! counted again.
//!
//! A snapshot is one or more chunks (keys `<id>/chunk/<i>`, at most
//! [`MAX_MESSAGE_BYTES`] each) followed by a head (key `<id>/head`) giving the chunk
//! count. Keys carry the snapshot's id, so one snapshot never shadows another; writing a
//! pair's next snapshot deletes the previous one (tombstones in the same transaction),
//! and compaction reclaims it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::partials::MAX_MESSAGE_BYTES;
use super::{KafkaSettings, KafkaShellError};
use crate::partial::PartitionState;

fn invalid(detail: impl ToString) -> KafkaShellError {
    KafkaShellError::Invalid(format!("join state snapshot: {}", detail.to_string()))
}

/// A snapshot as written: its id and how many chunks it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub id: u64,
    pub chunks: u32,
}

impl Snapshot {
    fn head(id: u64) -> String {
        format!("{id}/head")
    }

    fn chunk(id: u64, i: usize) -> String {
        format!("{id}/chunk/{i}")
    }

    /// The keys of this snapshot's messages: tombstoned once a newer one is written.
    pub fn keys(&self) -> Vec<String> {
        (0..self.chunks as usize)
            .map(|i| Snapshot::chunk(self.id, i))
            .chain([Snapshot::head(self.id)])
            .collect()
    }
}

/// A message: key and value.
pub type Keyed = (String, Vec<u8>);

/// The messages of snapshot `id` of one pair's `state`, head last.
pub fn messages(
    id: u64,
    state: &PartitionState,
) -> Result<(Snapshot, Vec<Keyed>), KafkaShellError> {
    let bytes = state.to_bytes().map_err(invalid)?;
    let mut out: Vec<Keyed> = bytes
        .chunks(MAX_MESSAGE_BYTES)
        .enumerate()
        .map(|(i, piece)| (Snapshot::chunk(id, i), piece.to_vec()))
        .collect();
    let snapshot = Snapshot {
        id,
        chunks: out.len() as u32,
    };
    out.push((Snapshot::head(id), snapshot.chunks.to_be_bytes().to_vec()));
    Ok((snapshot, out))
}

/// What one partition of the join-state topic holds of one snapshot, as read so far.
#[derive(Default)]
struct Found {
    chunks_expected: Option<u32>,
    chunks: Vec<Option<Vec<u8>>>,
}

impl Found {
    fn add(&mut self, id: u64, key: &[u8], value: Option<&[u8]>) -> Result<(), KafkaShellError> {
        let Some(rest) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(&format!("{id}/")))
        else {
            return Ok(());
        };
        let Some(value) = value else {
            return Ok(());
        };
        if rest == "head" {
            let n: [u8; 4] = value.try_into().map_err(|_| invalid("malformed head"))?;
            self.chunks_expected = Some(u32::from_be_bytes(n));
        } else if let Some(i) = rest
            .strip_prefix("chunk/")
            .and_then(|i| i.parse::<usize>().ok())
        {
            if self.chunks.len() <= i {
                self.chunks.resize(i + 1, None);
            }
            self.chunks[i] = Some(value.to_vec());
        }
        Ok(())
    }

    /// The state's bytes, once the head and every chunk it names have been read.
    fn complete(&self) -> Option<(u32, Vec<u8>)> {
        let n = self.chunks_expected?;
        let mut bytes = Vec::new();
        for i in 0..n as usize {
            bytes.extend_from_slice(self.chunks.get(i)?.as_ref()?);
        }
        Some((n, bytes))
    }
}

/// Reads the join-state topic's partitions of the `wanted` pairs, each for its snapshot
/// id, and returns the snapshots found whole within `timeout`. A snapshot committed just
/// now may take a moment to become readable (`read_committed` waits for the
/// transaction's markers), so partitions are read until their snapshot is whole or time
/// is up.
pub fn read(
    settings: &KafkaSettings,
    wanted: &BTreeMap<i32, u64>,
    timeout: Duration,
) -> Result<BTreeMap<i32, (Snapshot, PartitionState)>, KafkaShellError> {
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let topic = settings.output_topic("join-state");
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
    let mut found: BTreeMap<i32, Found> = wanted.keys().map(|p| (*p, Found::default())).collect();
    let mut states = BTreeMap::new();
    let deadline = Instant::now() + timeout;
    while states.len() < wanted.len() && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let message = message?;
        let pair = message.partition();
        let (Some(id), Some(f)) = (wanted.get(&pair), found.get_mut(&pair)) else {
            continue;
        };
        f.add(*id, message.key().unwrap_or_default(), message.payload())?;
        if let std::collections::btree_map::Entry::Vacant(slot) = states.entry(pair) {
            if let Some((chunks, bytes)) = f.complete() {
                let state = PartitionState::from_bytes(&bytes).map_err(invalid)?;
                slot.insert((Snapshot { id: *id, chunks }, state));
            }
        }
    }
    Ok(states)
}
