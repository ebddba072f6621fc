//! What a running instance tells about itself (SPEC §6): the figures behind `/metrics`,
//! `/healthz` and `/readyz`, and the live SLA status behind the status page.
//!
//! The Kafka stages publish into one [`Telemetry`] — each stage its [`StageReport`] a few
//! times a second, the evaluator every output it emits and the time each evaluation
//! took, the consumers' statistics their lag — and the HTTP server reads it. Nothing here
//! is on the per-message path: a stage counts in its own state and publishes copies.
//!
//! Label values are bounded: stages, input topics, outcomes, dead-letter reason codes,
//! severities and the partitions of the input topics.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::config::SlaConfig;
use crate::engine::EngineStats;
use crate::join::JoinStats;
use crate::output::{Output, Severity};
use crate::status::StatusBoard;
use crate::time::Millis;

/// What became of an input message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Decoded and applied.
    Applied,
    /// Written to the dead-letter topic.
    DeadLetter,
    /// Re-read to rebuild join state a previous owner had counted; not counted again.
    Reread,
    /// Below a restored checkpoint's offset: already in the state.
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Applied,
        Outcome::DeadLetter,
        Outcome::Reread,
        Outcome::Skipped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::DeadLetter => "dead_letter",
            Outcome::Reread => "reread",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One stage's figures, as it last published them.
#[derive(Debug, Clone, Default)]
pub struct StageReport {
    /// Partitions assigned now.
    pub assigned: usize,
    /// The stage has taken its assignment: partitions assigned (none is an assignment
    /// too) and their state restored, taken over or rebuilt.
    pub ready: bool,
    /// Messages read, by topic and outcome.
    pub messages: BTreeMap<(String, Outcome), u64>,
    /// Dead letters written, by reason code.
    pub dead_letters: BTreeMap<&'static str, u64>,
    pub engine: EngineStats,
    pub join: JoinStats,
    pub pending_predictions: u64,
    pub pending_entries: u64,
    /// The stage's event-time watermark.
    pub watermark: Option<Millis>,
    /// Outputs written: metrics, breaches, escalations, dead letters, partial batches.
    pub outputs: [(&'static str, u64); 5],
    /// Times the stage was made again after the cluster failed it.
    pub restarts: u64,
    /// The version of the SLA the stage runs.
    pub sla_version: String,
}

#[derive(Debug)]
struct Inner {
    stages: BTreeMap<&'static str, StageReport>,
    /// Consumer lag per stage and partition, from the consumers' statistics.
    lag: BTreeMap<(&'static str, String, i32), i64>,
    board: StatusBoard,
    /// A stage stopped for good, and why.
    failed: Option<String>,
}

/// Shared between the stages, which publish, and the HTTP server, which reads.
#[derive(Debug)]
pub struct Telemetry {
    inner: Mutex<Inner>,
    evaluation: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    topic: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    stage: String,
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    stage: String,
    sla_version: String,
}

/// Readiness as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Per stage: `ready`, or what it waits for.
    pub stages: BTreeMap<&'static str, String>,
}

impl Telemetry {
    pub fn new(config: &SlaConfig) -> Telemetry {
        Telemetry {
            inner: Mutex::new(Inner {
                stages: BTreeMap::new(),
                lag: BTreeMap::new(),
                board: StatusBoard::new(config),
                failed: None,
            }),
            // 50 µs to about 1.6 s.
            evaluation: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves figures still worth reading.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces `stage`'s report with what `update` makes of it.
    pub fn stage(&self, stage: &'static str, update: impl FnOnce(&mut StageReport)) {
        update(self.lock().stages.entry(stage).or_default());
    }

    /// What `stage` last published.
    pub fn stage_report(&self, stage: &str) -> Option<StageReport> {
        self.lock().stages.get(stage).cloned()
    }

    /// A reloaded SLA is in force.
    pub fn reconfigure(&self, config: &SlaConfig) {
        self.lock().board.reconfigure(config);
    }

    /// An output the evaluator emitted.
    pub fn output(&self, output: &Output) {
        self.lock().board.observe(output);
    }

    /// How long one evaluation took (a partial batch merged and what it made due
    /// evaluated), in seconds of processing time.
    pub fn evaluation(&self, seconds: f64) {
        self.evaluation.observe(seconds);
    }

    /// A consumer's lag per partition, from its statistics.
    pub fn lag(&self, stage: &'static str, lags: Vec<(String, i32, i64)>) {
        let mut inner = self.lock();
        inner.lag.retain(|(s, _, _), _| *s != stage);
        for (topic, partition, lag) in lags {
            inner.lag.insert((stage, topic, partition), lag);
        }
    }

    /// The run stopped with an error.
    pub fn failed(&self, why: String) {
        self.lock().failed = Some(why);
    }

    /// `Err` with the reason once the run has stopped with an error.
    pub fn health(&self) -> Result<(), String> {
        match &self.lock().failed {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Ready once both stages have taken their assignment.
    pub fn readiness(&self) -> Readiness {
        let inner = self.lock();
        let mut stages = BTreeMap::new();
        for stage in ["shard", "evaluator"] {
            let state = match inner.stages.get(stage) {
                Some(r) if r.ready => "ready".to_string(),
                Some(_) => "taking its assignment (restoring state)".to_string(),
                None => "waiting for its first assignment".to_string(),
            };
            stages.insert(stage, state);
        }
        Readiness {
            ready: inner.failed.is_none() && stages.values().all(|s| s == "ready"),
            stages,
        }
    }

    /// The status page's data, as JSON.
    pub fn status_json(&self) -> Result<String, serde_json::Error> {
        let inner = self.lock();
        serde_json::to_string(&inner.board.view())
    }

    /// Every figure in the Prometheus text exposition format; `now` (wall clock, epoch
    /// ms) gives the event-time lag.
    pub fn prometheus(&self, now: Millis) -> Result<String, std::fmt::Error> {
        let inner = self.lock();
        let mut registry = Registry::with_prefix("slaguard");

        let info = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "sla_info",
            "The version of the SLA each stage runs (value 1)",
            info.clone(),
        );

        let messages = Family::<MessageLabels, Counter>::default();
        registry.register(
            "messages",
            "Input messages read, by topic and outcome",
            messages.clone(),
        );
        let dead = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "dead_letters",
            "Messages written to the dead-letter topic, by reason",
            dead.clone(),
        );
        let late = Family::<KindLabel, Counter>::default();
        registry.register(
            "late_events",
            "Inferences and labels behind the watermark on arrival",
            late.clone(),
        );
        let join = Family::<KindLabel, Counter>::default();
        registry.register(
            "join_outcomes",
            "Predictions joined to their label, expired unlabeled, labels that never met \
             their prediction, duplicates",
            join.clone(),
        );
        let evicted = Family::<KindLabel, Counter>::default();
        registry.register(
            "evicted",
            "Pending join entries evicted because max_pending was reached",
            evicted.clone(),
        );
        let pending = Family::<KindLabel, Gauge>::default();
        registry.register(
            "pending",
            "Join state held: predictions waiting for labels, and all entries",
            pending.clone(),
        );
        let outputs = Family::<KindLabel, Counter>::default();
        registry.register(
            "outputs",
            "Output messages written, by kind",
            outputs.clone(),
        );
        let watermark = Family::<StageLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "watermark_seconds",
            "Event-time watermark of each stage (Unix time)",
            watermark.clone(),
        );
        let lag_time = Family::<StageLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "event_time_lag_seconds",
            "Wall-clock time minus each stage's watermark",
            lag_time.clone(),
        );
        let ready = Family::<StageLabel, Gauge>::default();
        registry.register(
            "stage_ready",
            "1 once the stage has taken its assignment",
            ready.clone(),
        );
        let assigned = Family::<StageLabel, Gauge>::default();
        registry.register(
            "assigned_partitions",
            "Partitions assigned to each stage",
            assigned.clone(),
        );
        let restarts = Family::<StageLabel, Counter>::default();
        registry.register(
            "stage_restarts",
            "Times a stage was made again after the cluster failed it",
            restarts.clone(),
        );
        let instants = Counter::<u64>::default();
        registry.register(
            "instants",
            "Evaluation instants evaluated",
            instants.clone(),
        );

        for (stage, r) in &inner.stages {
            let stage_label = StageLabel {
                stage: stage.to_string(),
            };
            for ((topic, outcome), n) in &r.messages {
                messages
                    .get_or_create(&MessageLabels {
                        topic: topic.clone(),
                        outcome: outcome.name().to_string(),
                    })
                    .inc_by(*n);
            }
            for (reason, n) in &r.dead_letters {
                dead.get_or_create(&ReasonLabel {
                    reason: reason.to_string(),
                })
                .inc_by(*n);
            }
            let kind = |k: &str| KindLabel {
                kind: k.to_string(),
            };
            late.get_or_create(&kind("inference"))
                .inc_by(r.engine.late_inferences);
            late.get_or_create(&kind("label"))
                .inc_by(r.engine.late_labels);
            for (k, n) in [
                ("joined", r.join.matched),
                ("unlabeled", r.join.unlabeled),
                ("unmatched_label", r.join.unmatched_labels),
                ("duplicate_prediction", r.join.duplicate_predictions),
                ("duplicate_label", r.join.duplicate_labels),
            ] {
                join.get_or_create(&kind(k)).inc_by(n);
            }
            for (k, n) in [
                ("prediction", r.join.evicted_predictions),
                ("label", r.join.evicted_labels),
                ("duplicate_guard", r.join.evicted_guards),
            ] {
                evicted.get_or_create(&kind(k)).inc_by(n);
            }
            pending
                .get_or_create(&kind("predictions"))
                .inc_by(r.pending_predictions as i64);
            pending
                .get_or_create(&kind("entries"))
                .inc_by(r.pending_entries as i64);
            for (k, n) in r.outputs {
                outputs.get_or_create(&kind(k)).inc_by(n);
            }
            if let Some(w) = r.watermark {
                watermark.get_or_create(&stage_label).set(w as f64 / 1000.0);
                lag_time
                    .get_or_create(&stage_label)
                    .set((now - w) as f64 / 1000.0);
            }
            ready.get_or_create(&stage_label).set(i64::from(r.ready));
            info.get_or_create(&VersionLabel {
                stage: stage.to_string(),
                sla_version: r.sla_version.clone(),
            })
            .set(1);
            assigned.get_or_create(&stage_label).set(r.assigned as i64);
            restarts.get_or_create(&stage_label).inc_by(r.restarts);
            instants.inc_by(r.engine.instants);
        }

        let lag = Family::<LagLabels, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Messages between each assigned partition's read position and its last stable \
             offset (librdkafka statistics, every 5 s)",
            lag.clone(),
        );
        for ((stage, topic, partition), n) in &inner.lag {
            lag.get_or_create(&LagLabels {
                stage: stage.to_string(),
                topic: topic.clone(),
                partition: partition.to_string(),
            })
            .set(*n);
        }

        let open = Family::<SeverityLabel, Gauge>::default();
        registry.register(
            "incidents_open",
            "Incidents open now, by severity (on the instance that holds the evaluator)",
            open.clone(),
        );
        for severity in [Severity::Warning, Severity::Critical] {
            let n = inner
                .board
                .open_incidents()
                .filter(|i| i.severity == severity)
                .count();
            open.get_or_create(&SeverityLabel {
                severity: severity.name().to_string(),
            })
            .set(n as i64);
        }

        registry.register(
            "evaluation_seconds",
            "Processing time of one evaluation: a partial batch merged and the instants it \
             made due evaluated",
            self.evaluation.clone(),
        );

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}
