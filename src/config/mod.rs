//! SLA configuration (SPEC §2): the typed, validated form every other module reads.
//!
//! A file is parsed once into these types by [`load`] / [`parse`]; every problem is reported
//! at once with its YAML path, and nothing downstream re-checks strings.

mod raw;
pub mod reload;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::metric::{Family, Metric, Op, Task};
use crate::time::Millis;

pub use validate::validate;

/// One problem in an SLA file: where (YAML path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why an SLA file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read SLA file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("{} has {} problem(s):\n{}", .path, .problems.len(), render_problems(.problems))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

fn render_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Global settings, from `defaults:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub evaluate_every: Millis,
    pub allowed_lateness: Millis,
    pub label_ttl: Millis,
    pub early_label_ttl: Millis,
    pub idle_timeout: Millis,
    /// Pending join entries (predictions, early labels, duplicate guards) per input source
    /// (a partition for `run`, a file for a replay).
    pub max_pending: usize,
    /// Distinct segment values per objective before new values are folded into `__other__`.
    pub max_segments: usize,
    /// How far ahead of the latest event time an event may jump before it is rejected
    /// (a clock far in the future would otherwise make every later event late).
    pub max_time_jump: Millis,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            evaluate_every: 60_000,
            allowed_lateness: 30_000,
            label_ttl: 7 * 86_400_000,
            early_label_ttl: 3_600_000,
            idle_timeout: 60_000,
            max_pending: 1_000_000,
            max_segments: 100,
            max_time_jump: 86_400_000,
        }
    }
}

/// A validated SLA file.
#[derive(Debug, Clone, PartialEq)]
pub struct SlaConfig {
    pub sla_version: String,
    pub defaults: Defaults,
    pub models: Vec<ModelSla>,
    pub escalation_policies: BTreeMap<String, EscalationPolicy>,
    /// Objective name → attainment tiers, most lenient first.
    pub service_credits: BTreeMap<String, Vec<CreditTier>>,
}

/// One model's SLA.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSla {
    pub model_id: String,
    pub task: Task,
    pub owner: Option<String>,
    pub runbook: Option<String>,
    pub decision_threshold: f64,
    pub positive_label: String,
    pub segment_by: Vec<String>,
    pub reference: Option<PathBuf>,
    /// The reference profile, loaded and validated with the configuration.
    pub profile: Option<std::sync::Arc<crate::profile::Profile>>,
    pub escalation: Option<String>,
    pub label_ttl: Millis,
    pub early_label_ttl: Millis,
    pub objectives: Vec<Objective>,
}

/// One objective: a metric over a sliding window compared with a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub name: String,
    pub metric: Metric,
    pub family: Family,
    pub op: Op,
    pub target: f64,
    pub warn_at: Option<f64>,
    pub resolve_at: Option<f64>,
    pub window: Millis,
    /// The window as the user wrote it, echoed in outputs.
    pub window_text: String,
    pub min_samples: u64,
    /// Consecutive breaching evaluations before an incident opens.
    pub for_count: u32,
    /// Consecutive healthy evaluations before an incident resolves.
    pub clear_for: u32,
    /// Dimensions this objective is also evaluated per (the model's unless overridden).
    pub segment_by: Vec<String>,
    pub threshold_ms: Option<f64>,
    /// Objectives of the same model whose incidents are marked inhibited, and do not
    /// escalate, while this one has an incident open.
    pub inhibits: Vec<String>,
    /// The feature a drift or data-quality objective watches (`score` for the score).
    pub feature: Option<String>,
    /// `range: [low, high]` of an out_of_range_rate objective.
    pub range: Option<(f64, f64)>,
    pub description: Option<String>,
    /// `alerting: burn_rate`: the alert rules, spans scaled to `window`. Severity then
    /// comes from how fast the error budget burns, not from the value against `target`.
    pub burn_rate: Option<Vec<crate::burn_rate::BurnPair>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EscalationPolicy {
    pub repeat: u32,
    pub ack_timeout: Option<Millis>,
    pub levels: Vec<EscalationLevel>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EscalationLevel {
    /// Time since the incident opened, in event time.
    pub after: Millis,
    pub notify: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreditTier {
    pub below: f64,
    pub credit: f64,
}

impl SlaConfig {
    pub fn model(&self, model_id: &str) -> Option<(usize, &ModelSla)> {
        self.models
            .iter()
            .enumerate()
            .find(|(_, m)| m.model_id == model_id)
    }
}

impl ModelSla {
    /// Every dimension any of this model's objectives is segmented by, in first-use order.
    pub fn dimensions(&self) -> Vec<String> {
        let mut dims: Vec<String> = Vec::new();
        for o in &self.objectives {
            for d in &o.segment_by {
                if !dims.contains(d) {
                    dims.push(d.clone());
                }
            }
        }
        dims
    }
}

/// Reads and validates an SLA file. Relative paths inside it resolve against its folder.
pub fn load(path: &Path) -> Result<SlaConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string(), path.parent())
}

/// Validates SLA text; `name` is used in messages, `base_dir` resolves relative paths.
pub fn parse(text: &str, name: &str, base_dir: Option<&Path>) -> Result<SlaConfig, ConfigError> {
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
            path: name.to_string(),
            message: e.to_string(),
        })?;
    validate(&value, base_dir).map_err(|problems| ConfigError::Invalid {
        path: name.to_string(),
        problems,
    })
}
