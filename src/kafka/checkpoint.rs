//! Local checkpoints of the engine: its whole state and the input offsets it covers,
//! written atomically (temporary file, fsync, rename) before the same offsets are
//! committed to Kafka. A restarted instance with the same assignment resumes exactly
//! where the checkpoint was taken; messages between the committed and the checkpointed
//! offset are skipped, never applied twice.
//!
//! Each checkpoint has a sequence number, also written into the commit that follows it,
//! and the one before it is kept: with `--exactly-once` a crash between the checkpoint and
//! its commit (whose transaction is then aborted) restores the previous checkpoint, the
//! one the last committed transaction matches.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::KafkaShellError;
use crate::config::SlaConfig;

const VERSION: u32 = 5;

/// (interval, first offset seen in it) for one partition, oldest first.
pub type Marks = Vec<(i64, i64)>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// Increases by one per checkpoint of this group's state directory.
    pub seq: u64,
    /// Fingerprint of the SLA configuration the state was built with.
    pub config: [u8; 32],
    /// Input partitions and the engine source each one feeds (acks partitions: none).
    pub partitions: Vec<(String, i32, Option<usize>)>,
    /// Next offset to read, per input partition.
    pub offsets: Vec<(String, i32, i64)>,
    /// Per partition read: (interval, first offset) marks for rebuild offsets.
    pub marks: Vec<(String, i32, Marks)>,
    /// The evaluator's engine source for each input partition (empty for a shard).
    pub inputs: Vec<(String, i32, usize)>,
    pub engine: Vec<u8>,
}

/// What a commit says besides the offset, in its metadata: the event time up to which
/// outputs were produced (a new evaluator rebuilding from the offset stays quiet up to
/// there), the shard's watermark (a new shard does not count again the expirations its
/// predecessor counted before it), the sequence number of the checkpoint it follows, and
/// the partition's next offset to read (a rebuild re-reads what lies below it without
/// counting or dead-lettering it again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitMark {
    pub resume: Option<crate::time::Millis>,
    pub counted: Option<crate::time::Millis>,
    /// The sequence number of the join-state hand-over made with this commit, if any.
    pub state: Option<u64>,
    pub seq: u64,
    pub next: i64,
}

const MARK: &str = "slaguard:";

impl CommitMark {
    pub fn to_metadata(self) -> String {
        let time =
            |t: Option<crate::time::Millis>| t.map_or(String::new(), crate::time::format_rfc3339);
        format!(
            "{MARK}resume={};counted={};state={};seq={};next={}",
            time(self.resume),
            time(self.counted),
            self.state.map_or(String::new(), |s| s.to_string()),
            self.seq,
            self.next
        )
    }

    /// `None` for metadata slaguard did not write.
    pub fn parse(metadata: &str) -> Option<CommitMark> {
        let mut mark = CommitMark::default();
        for field in metadata.strip_prefix(MARK)?.split(';') {
            let (key, value) = field.split_once('=')?;
            match key {
                "resume" | "counted" | "state" if value.is_empty() => {}
                "state" => mark.state = Some(value.parse().ok()?),
                "resume" => mark.resume = Some(crate::time::parse_rfc3339(value)?),
                "counted" => mark.counted = Some(crate::time::parse_rfc3339(value)?),
                "seq" => mark.seq = value.parse().ok()?,
                "next" => mark.next = value.parse().ok()?,
                _ => {}
            }
        }
        Some(mark)
    }
}

/// A configuration's fingerprint: a checkpoint only restores into the same configuration.
pub fn fingerprint(config: &SlaConfig) -> [u8; 32] {
    Sha256::digest(format!("{config:?}").as_bytes()).into()
}

pub struct CheckpointStore {
    path: PathBuf,
}

impl CheckpointStore {
    /// One checkpoint file per consumer group in `dir`.
    pub fn new(dir: &Path, group: &str) -> CheckpointStore {
        let safe: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        CheckpointStore {
            path: dir.join(format!("{safe}.checkpoint")),
        }
    }

    fn error(&self, detail: impl ToString) -> KafkaShellError {
        KafkaShellError::Checkpoint {
            path: self.path.display().to_string(),
            detail: detail.to_string(),
        }
    }

    fn previous(&self) -> PathBuf {
        self.path.with_extension("checkpoint.prev")
    }

    fn read(&self, path: &Path) -> Result<Option<Checkpoint>, KafkaShellError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let c: Checkpoint =
            postcard::from_bytes(&bytes).map_err(|e| self.error(format!("unreadable: {e}")))?;
        if c.version != VERSION {
            return Err(self.error(format!("version {} is not {VERSION}", c.version)));
        }
        Ok(Some(c))
    }

    /// The latest checkpoint.
    pub fn load(&self) -> Result<Option<Checkpoint>, KafkaShellError> {
        self.read(&self.path)
    }

    /// The latest or the previous checkpoint, whichever has sequence number `seq`.
    pub fn load_seq(&self, seq: u64) -> Result<Option<Checkpoint>, KafkaShellError> {
        for path in [self.path.clone(), self.previous()] {
            if let Some(c) = self.read(&path)?.filter(|c| c.seq == seq) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Writes `c` as the latest checkpoint; the latest so far becomes the previous one.
    pub fn save(&self, mut c: Checkpoint) -> Result<(), KafkaShellError> {
        c.version = VERSION;
        let bytes = postcard::to_stdvec(&c).map_err(|e| self.error(e))?;
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(|e| self.error(e))?;
        f.write_all(&bytes).map_err(|e| self.error(e))?;
        f.sync_all().map_err(|e| self.error(e))?;
        match fs::rename(&self.path, self.previous()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.error(e)),
        }
        fs::rename(&tmp, &self.path).map_err(|e| self.error(e))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_marks_round_trip() {
        for mark in [
            CommitMark {
                resume: Some(1_793_534_400_000),
                counted: None,
                state: Some(7),
                seq: 7,
                next: 1234,
            },
            CommitMark {
                resume: None,
                counted: Some(1_793_530_800_000),
                state: None,
                seq: 0,
                next: 0,
            },
        ] {
            assert_eq!(CommitMark::parse(&mark.to_metadata()), Some(mark));
        }
        assert_eq!(CommitMark::parse(""), None);
        assert_eq!(CommitMark::parse("someone else's"), None);
        assert_eq!(CommitMark::parse("slaguard:seq=x"), None);
    }

    #[test]
    fn the_previous_checkpoint_is_kept_and_found_by_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CheckpointStore::new(dir.path(), "g");
        let at = |seq| Checkpoint {
            version: 0,
            seq,
            config: [0; 32],
            partitions: Vec::new(),
            offsets: Vec::new(),
            marks: Vec::new(),
            inputs: Vec::new(),
            engine: vec![seq as u8],
        };
        store.save(at(1)).expect("save");
        store.save(at(2)).expect("save");
        store.save(at(3)).expect("save");
        assert_eq!(store.load().expect("load").map(|c| c.seq), Some(3));
        assert_eq!(
            store.load_seq(2).expect("load").map(|c| c.engine),
            Some(vec![2])
        );
        assert_eq!(store.load_seq(3).expect("load").map(|c| c.seq), Some(3));
        assert!(
            store.load_seq(1).expect("load").is_none(),
            "only one is kept back"
        );
    }
}
