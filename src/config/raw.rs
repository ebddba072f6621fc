//! The YAML shape of an SLA file, exactly as a user writes it. Nothing here is checked
//! beyond types; `validate` turns these into the typed `SlaConfig`.

use serde::Deserialize;
use serde_yaml_ng::Value;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub evaluate_every: Option<String>,
    pub allowed_lateness: Option<String>,
    pub label_ttl: Option<String>,
    pub early_label_ttl: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_time_jump: Option<String>,
    pub max_pending: Option<u64>,
    pub max_segments: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub model_id: String,
    pub task: String,
    pub owner: Option<String>,
    pub runbook: Option<String>,
    pub decision_threshold: Option<f64>,
    pub positive_label: Option<String>,
    #[serde(default)]
    pub segment_by: Vec<String>,
    pub reference: Option<RawReference>,
    pub escalation: Option<String>,
    pub label_ttl: Option<String>,
    pub early_label_ttl: Option<String>,
    #[serde(default)]
    pub objectives: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReference {
    pub file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObjective {
    pub name: String,
    pub metric: String,
    pub op: Option<String>,
    pub target: Option<f64>,
    pub warn_at: Option<f64>,
    pub resolve_at: Option<f64>,
    pub window: Option<String>,
    pub min_samples: Option<u64>,
    #[serde(rename = "for")]
    pub for_count: Option<u32>,
    pub clear_for: Option<u32>,
    pub segment_by: Option<Vec<String>>,
    pub alerting: Option<String>,
    pub feature: Option<String>,
    pub threshold_ms: Option<f64>,
    pub inhibits: Option<Vec<String>>,
    pub range: Option<Value>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub repeat: Option<u32>,
    pub ack_timeout: Option<String>,
    #[serde(default)]
    pub levels: Vec<RawLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevel {
    pub after: String,
    #[serde(default)]
    pub notify: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCreditTier {
    pub below: f64,
    pub credit: f64,
}
