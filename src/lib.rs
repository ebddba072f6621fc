//! slaguard: service-level agreements for machine-learning models, enforced on the event
//! stream.
//!
//! Module map — the pure core first, then the shells around it:
//! - [`time`]: event time, durations, RFC 3339.
//! - [`config`]: the SLA file (SPEC §2), parsed once into typed, validated values.
//! - [`metric`]: metric names, tasks, ops, and which summary family computes what.
//! - [`event`] and [`decode`]: typed input events and their JSON decoding; [`avro`]: the
//!   Avro encoding of inputs and outputs.
//! - [`dead_letter`]: rejected input with its position and reason.
//! - [`join`]: predictions joined with delayed labels, TTLs, duplicates, bounded state.
//! - [`watermark`]: event-time progress over input sources.
//! - [`summary`]: mergeable per-interval summaries (counts, histograms, sums).
//! - [`window`]: sliding windows as running merges of interval summaries.
//! - [`series`]: per-model windows by family, window and segment.
//! - [`breach`]: the incident state machine and incident ids; [`burn_rate`]: multi-window
//!   burn-rate alerting; [`escalation`]: policies; [`incident_log`]: recent incidents for
//!   MTTA, MTTR and incident counts.
//! - [`output`]: metric snapshots and breach events.
//! - [`profile`]: reference profiles, the drift baselines; [`drift`]: PSI, KS, JS distance.
//! - [`engine`]: the deterministic core tying these together: events in, outputs out; as a
//!   shard (join and summaries of some partitions) or an evaluator of the shards'
//!   [`partial`] batches, for global metrics across partitions and instances.
//! - [`replay`]: the file replay shell, with [`progress`] on stderr; [`kafka`]: the Kafka
//!   shell (`run`, topic replay, configuration reload).
//! - [`report`]: the SLA report of a replayed period (attainment, error budget, incidents,
//!   credits), as JSON and as Markdown for readers outside engineering.
//! - [`status`]: the live SLA status (latest values, trends, open incidents) built from
//!   the outputs; [`telemetry`]: what a running instance publishes about itself;
//!   [`http`]: `/metrics`, `/healthz`, `/readyz` and the status page; [`otel`]: the same
//!   figures, and a span per evaluation, over OTLP.
//! - [`demo`]: the embedded demo on librdkafka's mock cluster.
//! - [`scenario`]: a synthetic, scripted scenario generator for tests, demos and benchmarks.
//! - [`check`]: the human summary printed by `slaguard check`.

pub mod avro;
pub mod breach;
pub mod burn_rate;
pub mod check;
pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod demo;
pub mod drift;
pub mod engine;
pub mod escalation;
pub mod event;
pub mod http;
pub mod incident_log;
pub mod join;
pub mod kafka;
pub mod metric;
pub mod otel;
pub mod output;
pub mod partial;
pub mod profile;
pub mod progress;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod series;
pub mod status;
pub mod summary;
pub mod telemetry;
pub mod time;
pub mod watermark;
pub mod window;
