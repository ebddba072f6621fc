//! Local checkpoints of the engine: its whole state and the input offsets it covers,
//! written atomically (temporary file, fsync, rename) before the same offsets are
//! committed to Kafka. A restarted instance with the same assignment resumes exactly
//! where the checkpoint was taken; messages between the committed and the checkpointed
//! offset are skipped, never applied twice.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::KafkaShellError;
use crate::config::SlaConfig;

const VERSION: u32 = 2;

/// (interval, first offset seen in it) for one partition, oldest first.
pub type Marks = Vec<(i64, i64)>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// Fingerprint of the SLA configuration the state was built with.
    pub config: [u8; 32],
    /// Input partitions and the engine source each one feeds (acks partitions: none).
    pub partitions: Vec<(String, i32, Option<usize>)>,
    /// Next offset to read, per input partition.
    pub offsets: Vec<(String, i32, i64)>,
    /// Per input partition: (interval, first offset) marks for rebuild offsets.
    pub marks: Vec<(String, i32, Marks)>,
    pub engine: Vec<u8>,
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

    pub fn load(&self) -> Result<Option<Checkpoint>, KafkaShellError> {
        let bytes = match fs::read(&self.path) {
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
        fs::rename(&tmp, &self.path).map_err(|e| self.error(e))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
