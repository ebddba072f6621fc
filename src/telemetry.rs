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
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, OnceLock};

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
    /// Where else each evaluation time goes (the OTLP histogram), once set.
    also: OnceLock<EvaluationHook>,
}

struct EvaluationHook(Box<dyn Fn(f64) + Send + Sync>);

impl std::fmt::Debug for EvaluationHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvaluationHook")
    }
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
            also: OnceLock::new(),
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
        if let Some(hook) = self.also.get() {
            (hook.0)(seconds);
        }
    }

    /// Each evaluation time from now on also goes to `record` (set once).
    pub fn also_record_evaluations(&self, record: impl Fn(f64) + Send + Sync + 'static) {
        let _ = self.also.set(EvaluationHook(Box::new(record)));
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

    /// Every figure but the evaluation time histogram, as samples; `now` (wall clock,
    /// epoch ms) gives the event-time lag. `/metrics` and the OTLP export both read this.
    pub fn samples(&self, now: Millis) -> Vec<Sample> {
        let inner = self.lock();
        let mut out = Vec::new();
        let mut push =
            |metric: &'static Metric, labels: Vec<(&'static str, String)>, value: f64| {
                out.push(Sample {
                    metric,
                    labels,
                    value,
                })
            };
        for (stage, r) in &inner.stages {
            let st = || ("stage", stage.to_string());
            push(
                &SLA_INFO,
                vec![st(), ("sla_version", r.sla_version.clone())],
                1.0,
            );
            for ((topic, outcome), n) in &r.messages {
                push(
                    &MESSAGES,
                    vec![("topic", topic.clone()), ("outcome", outcome.name().into())],
                    *n as f64,
                );
            }
            for (reason, n) in &r.dead_letters {
                push(
                    &DEAD_LETTERS,
                    vec![("reason", reason.to_string())],
                    *n as f64,
                );
            }
            let kind = |k: &str| vec![("kind", k.to_string())];
            if *stage == "shard" {
                push(&LATE, kind("inference"), r.engine.late_inferences as f64);
                push(&LATE, kind("label"), r.engine.late_labels as f64);
                for (k, n) in [
                    ("joined", r.join.matched),
                    ("unlabeled", r.join.unlabeled),
                    ("unmatched_label", r.join.unmatched_labels),
                    ("duplicate_prediction", r.join.duplicate_predictions),
                    ("duplicate_label", r.join.duplicate_labels),
                ] {
                    push(&JOIN, kind(k), n as f64);
                }
                for (k, n) in [
                    ("prediction", r.join.evicted_predictions),
                    ("label", r.join.evicted_labels),
                    ("duplicate_guard", r.join.evicted_guards),
                ] {
                    push(&EVICTED, kind(k), n as f64);
                }
                push(&PENDING, kind("predictions"), r.pending_predictions as f64);
                push(&PENDING, kind("entries"), r.pending_entries as f64);
            } else {
                push(&INSTANTS, Vec::new(), r.engine.instants as f64);
            }
            for (k, n) in r.outputs {
                push(&OUTPUTS, vec![st(), ("kind", k.to_string())], n as f64);
            }
            if let Some(w) = r.watermark {
                push(&WATERMARK, vec![st()], w as f64 / 1000.0);
                push(&EVENT_TIME_LAG, vec![st()], (now - w) as f64 / 1000.0);
            }
            push(&READY, vec![st()], if r.ready { 1.0 } else { 0.0 });
            push(&ASSIGNED, vec![st()], r.assigned as f64);
            push(&RESTARTS, vec![st()], r.restarts as f64);
        }
        for ((stage, topic, partition), n) in &inner.lag {
            push(
                &CONSUMER_LAG,
                vec![
                    ("stage", stage.to_string()),
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ],
                *n as f64,
            );
        }
        if inner.stages.contains_key("evaluator") {
            for severity in [Severity::Warning, Severity::Critical] {
                let n = inner
                    .board
                    .open_incidents()
                    .filter(|i| i.severity == severity)
                    .count();
                push(
                    &INCIDENTS_OPEN,
                    vec![("severity", severity.name().to_string())],
                    n as f64,
                );
            }
        }
        out
    }

    /// Every figure in the Prometheus (OpenMetrics) text exposition format.
    pub fn prometheus(&self, now: Millis) -> Result<String, std::fmt::Error> {
        type Labels = Vec<(&'static str, String)>;
        let mut registry = Registry::with_prefix("slaguard");
        let mut counters: BTreeMap<&str, Family<Labels, Counter<f64, AtomicU64>>> = BTreeMap::new();
        let mut gauges: BTreeMap<&str, Family<Labels, Gauge<f64, AtomicU64>>> = BTreeMap::new();
        for m in METRICS {
            match m.kind {
                Kind::Counter => {
                    let f = Family::default();
                    registry.register(m.name, m.help, f.clone());
                    counters.insert(m.name, f);
                }
                Kind::Gauge => {
                    let f = Family::default();
                    registry.register(m.name, m.help, f.clone());
                    gauges.insert(m.name, f);
                }
                Kind::Histogram => {}
            }
        }
        for s in self.samples(now) {
            if let Some(f) = counters.get(s.metric.name) {
                f.get_or_create(&s.labels).inc_by(s.value);
            } else if let Some(f) = gauges.get(s.metric.name) {
                f.get_or_create(&s.labels).set(s.value);
            }
        }
        registry.register(EVALUATION.name, EVALUATION.help, self.evaluation.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// Whether a figure only grows (across restarts too: the engine's counters are part of
/// its checkpoint) or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Recorded as it happens (the evaluation time), not sampled.
    Histogram,
}

/// One exported figure: its name (without the `slaguard_` prefix, and for counters
/// without `_total`), what it means, and its kind.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

/// One value of a figure, with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: &'static Metric,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

const fn metric(name: &'static str, help: &'static str, kind: Kind) -> Metric {
    Metric { name, help, kind }
}

pub static SLA_INFO: Metric = metric(
    "sla_info",
    "The version of the SLA each stage runs (value 1)",
    Kind::Gauge,
);
pub static MESSAGES: Metric = metric(
    "messages",
    "Input messages read, by topic and outcome",
    Kind::Counter,
);
pub static DEAD_LETTERS: Metric = metric(
    "dead_letters",
    "Messages written to the dead-letter topic, by reason",
    Kind::Counter,
);
pub static LATE: Metric = metric(
    "late_events",
    "Inferences and labels behind the watermark on arrival",
    Kind::Counter,
);
pub static JOIN: Metric = metric(
    "join_outcomes",
    "Predictions joined to their label, expired unlabeled, labels that never met their prediction, duplicates",
    Kind::Counter,
);
pub static EVICTED: Metric = metric(
    "evicted",
    "Pending join entries evicted because max_pending was reached",
    Kind::Counter,
);
pub static PENDING: Metric = metric(
    "pending",
    "Join state held: predictions waiting for labels, and all entries",
    Kind::Gauge,
);
pub static OUTPUTS: Metric = metric(
    "outputs",
    "Output messages written, by stage and kind",
    Kind::Counter,
);
pub static WATERMARK: Metric = metric(
    "watermark_seconds",
    "Event-time watermark of each stage (Unix time)",
    Kind::Gauge,
);
pub static EVENT_TIME_LAG: Metric = metric(
    "event_time_lag_seconds",
    "Wall-clock time minus each stage's watermark",
    Kind::Gauge,
);
pub static READY: Metric = metric(
    "stage_ready",
    "1 once the stage has taken its assignment",
    Kind::Gauge,
);
pub static ASSIGNED: Metric = metric(
    "assigned_partitions",
    "Partitions assigned to each stage",
    Kind::Gauge,
);
pub static RESTARTS: Metric = metric(
    "stage_restarts",
    "Times a stage was made again after the cluster failed it",
    Kind::Counter,
);
pub static INSTANTS: Metric = metric("instants", "Evaluation instants evaluated", Kind::Counter);
pub static CONSUMER_LAG: Metric = metric(
    "consumer_lag",
    "Messages between each assigned partition's read position and its last stable offset (librdkafka statistics, every 5 s)",
    Kind::Gauge,
);
pub static INCIDENTS_OPEN: Metric = metric(
    "incidents_open",
    "Incidents open now, by severity (on the instance that holds the evaluator)",
    Kind::Gauge,
);
/// The evaluation time histogram (recorded as it happens, not sampled).
pub static EVALUATION: Metric = metric(
    "evaluation_seconds",
    "Processing time of one evaluation: a partial batch merged and the instants it made due evaluated",
    Kind::Histogram,
);

/// Every sampled figure, in the order `/metrics` lists them.
pub static METRICS: [&Metric; 16] = [
    &SLA_INFO,
    &MESSAGES,
    &DEAD_LETTERS,
    &LATE,
    &JOIN,
    &EVICTED,
    &PENDING,
    &OUTPUTS,
    &WATERMARK,
    &EVENT_TIME_LAG,
    &READY,
    &ASSIGNED,
    &RESTARTS,
    &INSTANTS,
    &CONSUMER_LAG,
    &INCIDENTS_OPEN,
];
