//! Configuration reload of a running `run` (SPEC §6): on SIGHUP, or when the SLA file
//! changes with `--watch-config`, the file is loaded and checked again. An invalid file
//! is rejected with every problem logged, and the running SLA stays; one that changes
//! what needs a restart ([`crate::config::reload`]) is refused the same way. A valid one
//! goes to both stages, which take it at their next tick, so its `sla_version` is stamped
//! on outputs from the next evaluation instant; and the change is recorded on
//! `<prefix>changes` (who, what, when: the new and previous versions, the changed fields,
//! the file, the trigger, the instance, user and host, the wall-clock time).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{KafkaSettings, KafkaShellError};
use crate::config::{self, SlaConfig};
use crate::telemetry::Telemetry;

/// One applied change of the SLA, as written to `<prefix>changes` (JSON, keyed by the
/// new `sla_version`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub sla_version: String,
    pub previous_version: String,
    /// `path: old -> new`, one per changed field.
    pub changes: Vec<String>,
    pub file: String,
    /// `SIGHUP` or `file changed`.
    pub trigger: String,
    pub instance: String,
    pub user: Option<String>,
    pub host: Option<String>,
    /// Wall-clock time of the reload (RFC 3339).
    pub loaded_at: String,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub enum ReloadOutcome {
    /// The file says what is running already.
    Unchanged,
    /// The new SLA is in force from the next evaluation instant; `recorded` tells whether
    /// the change reached `<prefix>changes`.
    Applied {
        record: ChangeRecord,
        recorded: bool,
    },
    /// The file does not load; nothing changed.
    Invalid(String),
    /// The file changes what the running state is built from; nothing changed.
    NeedsRestart(Vec<String>),
}

/// Holds the SLA in force and hands reloaded ones to the stages.
pub struct ConfigReloader {
    path: PathBuf,
    current: Arc<SlaConfig>,
    tx: watch::Sender<Arc<SlaConfig>>,
    producer: FutureProducer,
    topic: String,
    instance: String,
    telemetry: Arc<Telemetry>,
    modified: Option<SystemTime>,
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ConfigReloader {
    /// The reloader of the SLA loaded from `path` as `config`, and the receiver the stages
    /// read it from ([`crate::kafka::processor::run_live`]).
    pub fn new(
        path: PathBuf,
        config: Arc<SlaConfig>,
        settings: &KafkaSettings,
        instance: &str,
        telemetry: Arc<Telemetry>,
    ) -> Result<(ConfigReloader, watch::Receiver<Arc<SlaConfig>>), KafkaShellError> {
        let (tx, rx) = watch::channel(Arc::clone(&config));
        let producer: FutureProducer = settings.client().create()?;
        Ok((
            ConfigReloader {
                modified: modified(&path),
                path,
                current: config,
                tx,
                producer,
                topic: settings.output_topic("changes"),
                instance: instance.to_string(),
                telemetry,
            },
            rx,
        ))
    }

    /// Creates `<prefix>changes` (one partition) when the cluster does not have it.
    pub async fn ensure_topic(&self, settings: &KafkaSettings) -> Result<(), KafkaShellError> {
        let consumer: rdkafka::consumer::BaseConsumer = settings.client().create()?;
        let metadata = rdkafka::consumer::Consumer::fetch_metadata(
            &consumer,
            Some(&self.topic),
            Duration::from_secs(10),
        )?;
        let exists = metadata
            .topics()
            .iter()
            .any(|t| t.error().is_none() && !t.partitions().is_empty());
        if exists {
            return Ok(());
        }
        super::preflight::ensure_internal_topic(
            settings,
            &super::PartitionCounts::new(),
            &self.topic,
            1,
            &[],
        )
        .await
    }

    /// The SLA in force.
    pub fn current(&self) -> &Arc<SlaConfig> {
        &self.current
    }

    /// Loads the file again and applies it if it is valid and may change live.
    pub async fn reload(&mut self, trigger: &str) -> ReloadOutcome {
        self.modified = modified(&self.path);
        let new = match config::load(&self.path) {
            Ok(c) => Arc::new(c),
            Err(e) => return ReloadOutcome::Invalid(e.to_string()),
        };
        let diff = config::reload::compare(&self.current, &new);
        if !diff.applicable() {
            return ReloadOutcome::NeedsRestart(diff.needs_restart);
        }
        if diff.changes.is_empty() {
            return ReloadOutcome::Unchanged;
        }
        let record = ChangeRecord {
            sla_version: new.sla_version.clone(),
            previous_version: self.current.sla_version.clone(),
            changes: diff.changes,
            file: self.path.display().to_string(),
            trigger: trigger.to_string(),
            instance: self.instance.clone(),
            user: std::env::var("USER").ok(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .or_else(|| std::env::var("HOSTNAME").ok()),
            loaded_at: crate::time::format_rfc3339(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            ),
        };
        self.current = Arc::clone(&new);
        self.telemetry.reconfigure(&new);
        // Receivers all gone means the run has stopped: nothing left to reconfigure.
        let _ = self.tx.send(new);
        let recorded = self.record(&record).await;
        ReloadOutcome::Applied { record, recorded }
    }

    async fn record(&self, record: &ChangeRecord) -> bool {
        let Ok(json) = serde_json::to_vec(record) else {
            return false;
        };
        let sent = self
            .producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(record.sla_version.as_bytes())
                    .payload(&json),
                Duration::from_secs(10),
            )
            .await;
        match sent {
            Ok(_) => true,
            Err((e, _)) => {
                tracing::warn!(error = %e, topic = %self.topic, "the SLA change was applied but not recorded");
                false
            }
        }
    }

    /// Whether the file's modification time changed since it was last loaded.
    fn file_changed(&self) -> bool {
        modified(&self.path) != self.modified
    }
}

/// Reloads on SIGHUP, and when `watch_file` also whenever the file changes (checked every
/// 2 s), until `stop` is cancelled; logs each outcome.
pub async fn reload_on_signal(
    mut reloader: ConfigReloader,
    watch_file: bool,
    stop: CancellationToken,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: reload by signal is off");
            None
        }
    };
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        let trigger = tokio::select! {
            _ = stop.cancelled() => return,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => "SIGHUP",
            _ = poll.tick(), if watch_file => {
                if !reloader.file_changed() {
                    continue;
                }
                "file changed"
            }
        };
        log(&reloader.reload(trigger).await, reloader.current());
    }
}

fn log(outcome: &ReloadOutcome, running: &SlaConfig) {
    match outcome {
        ReloadOutcome::Unchanged => {
            tracing::info!(sla_version = %running.sla_version, "SLA file reloaded: nothing changed")
        }
        ReloadOutcome::Applied { record, recorded } => tracing::info!(
            sla_version = %record.sla_version,
            previous = %record.previous_version,
            changes = ?record.changes,
            recorded,
            "SLA reloaded: in force from the next evaluation instant"
        ),
        ReloadOutcome::Invalid(errors) => tracing::warn!(
            sla_version = %running.sla_version,
            "SLA file rejected, the running SLA stays: {errors}"
        ),
        ReloadOutcome::NeedsRestart(what) => tracing::warn!(
            sla_version = %running.sla_version,
            needs_restart = ?what,
            "SLA file not taken: it changes what the running state is built from; restart to use it"
        ),
    }
}
