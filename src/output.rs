//! The output events of SPEC §5: metric snapshots and breach events, as the engine emits
//! them and as every shell serializes them (JSON field order is the struct order).

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::dead_letter::DeadLetter;

/// A segment: dimension → value, in the objective's `segment_by` order; empty for the
/// whole model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Segment(pub Vec<(String, String)>);

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Segment {
    /// `region=eu-west,model_version=2` or `(all)`, for people.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            "(all)".to_string()
        } else {
            self.0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    }
}

/// The evaluated state of an objective (per segment) at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Warning,
    Critical,
    InsufficientData,
}

/// How bad an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One objective's value for one segment at one evaluation instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSnapshot {
    pub model_id: String,
    pub segment: Segment,
    pub objective: String,
    pub metric: &'static str,
    pub feature: Option<String>,
    pub window: String,
    pub event_time: String,
    pub value: Option<f64>,
    pub samples: u64,
    pub state: State,
    /// Incidents of this objective (of this segment; of every segment for the whole
    /// model) open at `event_time`.
    pub incidents_open: u64,
    /// Incidents opened within the window.
    pub incidents_opened: u64,
    /// Mean time to acknowledge, over the acknowledgements within the window.
    pub mtta_seconds: Option<f64>,
    /// Mean time to resolve, over the resolutions within the window.
    pub mttr_seconds: Option<f64>,
    pub sla_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachKind {
    Opened,
    SeverityChanged,
    Resolved,
    Acknowledged,
}

/// A change in an incident's life.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreachEvent {
    pub incident_id: String,
    pub kind: BreachKind,
    pub severity: Severity,
    pub model_id: String,
    pub model_version: Option<String>,
    pub segment: Segment,
    pub objective: String,
    pub metric: &'static str,
    pub op: &'static str,
    pub target: f64,
    pub warn_at: Option<f64>,
    pub observed: Option<f64>,
    pub window: String,
    pub samples: u64,
    pub event_time: String,
    pub sla_version: String,
    pub owner: Option<String>,
    pub runbook: Option<String>,
    /// When the incident opened.
    pub opened_at: String,
    /// Another objective of the model that inhibits this one has an incident open: this
    /// incident is recorded but does not page.
    pub inhibited: bool,
    /// Who acknowledged or resolved it, for events caused by an ack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// For `alerting: burn_rate`: the pair of spans whose burn rates set the severity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burn_rate: Option<BurnRateFired>,
}

/// The burn-rate rule that fired: both spans burnt the error budget faster than `factor`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BurnRateFired {
    /// `1h/5m`.
    pub windows: String,
    pub long_window: String,
    pub short_window: String,
    pub factor: f64,
    pub long_rate: f64,
    pub short_rate: f64,
}

impl From<&crate::burn_rate::Fired> for BurnRateFired {
    fn from(f: &crate::burn_rate::Fired) -> Self {
        use crate::time::format_duration;
        BurnRateFired {
            windows: f.pair.name(),
            long_window: format_duration(f.pair.long),
            short_window: format_duration(f.pair.short),
            factor: f.pair.factor,
            long_rate: f.long_rate,
            short_rate: f.short_rate,
        }
    }
}

/// Everything the engine emits, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Metric(MetricSnapshot),
    Breach(BreachEvent),
    Escalation(EscalationEvent),
    DeadLetter(DeadLetter),
}

/// A PagerDuty Events API v2 event, ready for a bridge to forward unchanged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PagerDutyEvent {
    /// `trigger`, `acknowledge` or `resolve`.
    pub event_action: &'static str,
    /// The incident id: PagerDuty groups every event of one incident under it.
    pub dedup_key: String,
    pub payload: PagerDutyPayload,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PagerDutyPayload {
    pub summary: String,
    pub source: String,
    /// `critical` or `warning`.
    pub severity: &'static str,
    pub timestamp: String,
    pub component: String,
    pub group: Option<String>,
    pub class: &'static str,
    pub custom_details: serde_json::Value,
}

/// One step of an incident's escalation: a level notified, or the incident acknowledged
/// or resolved (for the pager bridge).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationEvent {
    pub incident_id: String,
    pub level: usize,
    pub notify: Vec<String>,
    pub reason: String,
    pub event_time: String,
    pub model_id: String,
    pub objective: String,
    pub segment: Segment,
    pub severity: Severity,
    pub sla_version: String,
    pub pagerduty: PagerDutyEvent,
}
