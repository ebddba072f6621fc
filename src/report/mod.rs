//! The SLA report (`slaguard report`): what a replay says about a period, per objective
//! and per incident, for the people who signed the SLA.
//!
//! Pure: it reads the outputs of two replays of the same input — one with the SLA as
//! written, one with the *ledger* configuration ([`ledger_config`]), where every ratio
//! objective is measured over single, non-overlapping intervals so that its good and bad
//! events over the period add up exactly — and builds a [`Report`]. [`markdown`] renders
//! it for readers who never saw the configuration.
//!
//! Figures, per objective of the whole model (segment `{}`):
//! - compliance: the share of evaluation instants in the period whose value met the
//!   target (instants with too few samples are counted apart, not as misses);
//! - for ratio objectives (availability, error_rate, latency_under, accuracy): the
//!   period's events, bad events, the ratio itself, and the error budget — the bad events
//!   the target allows over the period — consumed and remaining;
//! - attainment, which the `service_credits` tiers are applied to: the period's good share
//!   for ratio objectives, the compliance share otherwise; the credit owed is the largest
//!   of the tiers whose `below` the attainment falls under;
//! - incidents (every segment), each with its timeline, and MTTA / MTTR.

pub mod markdown;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::burn_rate::{self, RATIO_METRICS};
use crate::config::{Objective, SlaConfig};
use crate::time::{format_duration, format_rfc3339, parse_rfc3339, Millis};

/// The ledger configuration: the same models, each ratio objective measured over one
/// evaluation interval for the whole model, with nothing that alerts or pages.
pub fn ledger_config(config: &SlaConfig) -> SlaConfig {
    let every = config.defaults.evaluate_every;
    let mut ledger = config.clone();
    ledger.escalation_policies.clear();
    ledger.service_credits.clear();
    for m in &mut ledger.models {
        m.escalation = None;
        m.segment_by.clear();
        m.objectives.retain(|o| RATIO_METRICS.contains(&o.metric));
        for o in &mut m.objectives {
            *o = Objective {
                window: every,
                window_text: format_duration(every),
                min_samples: 1,
                for_count: 1,
                clear_for: 1,
                segment_by: Vec::new(),
                inhibits: Vec::new(),
                warn_at: None,
                resolve_at: None,
                burn_rate: None,
                ..o.clone()
            };
        }
    }
    ledger
}

/// A metric snapshot as read back from `metrics.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotLine {
    pub model_id: String,
    pub segment: BTreeMap<String, String>,
    pub objective: String,
    pub event_time: String,
    pub value: Option<f64>,
    pub samples: u64,
}

/// A breach event as read back from `breaches.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct BreachLine {
    pub incident_id: String,
    pub kind: String,
    pub severity: String,
    pub model_id: String,
    pub metric: String,
    pub segment: BTreeMap<String, String>,
    pub objective: String,
    pub event_time: String,
    pub observed: Option<f64>,
    #[serde(default)]
    pub inhibited: bool,
    #[serde(default)]
    pub by: Option<String>,
}

/// An escalation event as read back from `escalations.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct EscalationLine {
    pub incident_id: String,
    pub level: u64,
    pub notify: Vec<String>,
    pub event_time: String,
    pub pagerduty: PagerDutyLine,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PagerDutyLine {
    pub event_action: String,
}

/// The period a report covers: instants `T` with `from < T <= to` (an instant closes the
/// interval before it). Open ends take what the replay reached.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Period {
    pub from: Option<Millis>,
    pub to: Option<Millis>,
}

impl Period {
    fn holds_instant(&self, t: Millis) -> bool {
        self.from.is_none_or(|f| t > f) && self.to.is_none_or(|e| t <= e)
    }

    fn holds_time(&self, t: Millis) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|e| t < e)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub sla_version: String,
    /// First and last moment covered: the start of the first evaluated interval and the
    /// last instant.
    pub from: Option<String>,
    pub to: Option<String>,
    pub objectives: Vec<ObjectiveReport>,
    pub incidents: Vec<IncidentReport>,
    pub mtta_seconds: Option<f64>,
    pub mttr_seconds: Option<f64>,
    /// Credits owed, one per objective with tiers that were missed.
    pub credits: Vec<CreditOwed>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectiveReport {
    pub model_id: String,
    pub owner: Option<String>,
    pub objective: String,
    pub metric: &'static str,
    pub feature: Option<String>,
    pub op: &'static str,
    pub target: f64,
    pub window: String,
    pub alerting: &'static str,
    /// The objective in words.
    pub promise: String,
    pub description: Option<String>,
    pub instants: u64,
    pub instants_compliant: u64,
    pub instants_insufficient: u64,
    /// Compliant instants over instants with enough data.
    pub compliance: Option<f64>,
    pub ratio: Option<RatioFigures>,
    /// What the credit tiers apply to (see the module notes), and on what basis.
    pub attainment: Option<f64>,
    pub attainment_basis: &'static str,
    /// Whether the promise held over the period: the period's ratio met the target for a
    /// ratio objective, every instant with data complied otherwise.
    pub met: Option<bool>,
    pub credit_percent: Option<f64>,
    pub incidents: u64,
    pub mtta_seconds: Option<f64>,
    pub mttr_seconds: Option<f64>,
}

/// A ratio objective over the whole period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioFigures {
    pub events: u64,
    pub bad_events: u64,
    /// The metric over the period (e.g. availability 0.9985).
    pub value: Option<f64>,
    /// Bad events the target allows over the period.
    pub budget_events: f64,
    /// Share of the budget spent (above 1: overspent).
    pub budget_consumed: Option<f64>,
    pub budget_remaining: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentReport {
    pub incident_id: String,
    pub model_id: String,
    pub objective: String,
    pub metric: String,
    pub segment: BTreeMap<String, String>,
    /// The worst severity it reached.
    pub severity: String,
    pub inhibited: bool,
    pub opened_at: String,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    /// Who resolved it by hand; none when it resolved by itself.
    pub resolved_by: Option<String>,
    pub seconds_to_acknowledge: Option<f64>,
    pub seconds_to_resolve: Option<f64>,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub at: String,
    /// `opened`, `severity_changed`, `notified` (a policy level paged), `acknowledged`,
    /// `resolved`.
    pub what: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The metric's value when the evaluation changed the incident.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
    /// Who acknowledged or resolved it by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The policy level notified, and who that is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

impl TimelineEntry {
    fn new(at: &str, what: &'static str) -> TimelineEntry {
        TimelineEntry {
            at: at.to_string(),
            what,
            severity: None,
            observed: None,
            by: None,
            level: None,
            notify: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreditOwed {
    pub model_id: String,
    pub objective: String,
    pub attainment: f64,
    /// `events` (share of good events) or `instants` (share of compliant checks).
    pub attainment_basis: &'static str,
    pub credit_percent: f64,
}

/// Why a report could not be built from the replay outputs.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ReportError {
    pub what: String,
    pub message: String,
}

fn time_of(text: &str, what: &str) -> Result<Millis, ReportError> {
    parse_rfc3339(text).ok_or_else(|| ReportError {
        what: what.to_string(),
        message: format!("`{text}` is not an RFC 3339 time"),
    })
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (n, sum) = values.fold((0u64, 0.0), |(n, s), v| (n + 1, s + v));
    (n > 0).then(|| sum / n as f64)
}

/// The inputs a report is built from.
pub struct ReplayOutputs<'a> {
    pub snapshots: &'a [SnapshotLine],
    /// Snapshots of the replay with [`ledger_config`].
    pub ledger: &'a [SnapshotLine],
    pub breaches: &'a [BreachLine],
    pub escalations: &'a [EscalationLine],
}

impl Report {
    pub fn build(
        config: &SlaConfig,
        period: Period,
        out: &ReplayOutputs<'_>,
    ) -> Result<Report, ReportError> {
        let every = config.defaults.evaluate_every;
        let incidents = incidents(period, out.breaches, out.escalations)?;
        let snapshots = whole_model(out.snapshots);
        let ledger = whole_model(out.ledger);
        let mut first: Option<Millis> = None;
        let mut last: Option<Millis> = None;
        let mut objectives = Vec::new();
        for m in &config.models {
            for o in &m.objectives {
                let mut r = ObjectiveReport {
                    model_id: m.model_id.clone(),
                    owner: m.owner.clone(),
                    objective: o.name.clone(),
                    metric: o.metric.name(),
                    feature: o.feature.clone(),
                    op: o.op.symbol(),
                    target: o.target,
                    window: o.window_text.clone(),
                    alerting: if o.burn_rate.is_some() {
                        "burn_rate"
                    } else {
                        "threshold"
                    },
                    promise: markdown::promise(o),
                    description: o.description.clone(),
                    instants: 0,
                    instants_compliant: 0,
                    instants_insufficient: 0,
                    compliance: None,
                    ratio: None,
                    attainment: None,
                    attainment_basis: "instants",
                    met: None,
                    credit_percent: None,
                    incidents: 0,
                    mtta_seconds: None,
                    mttr_seconds: None,
                };
                let key = (m.model_id.as_str(), o.name.as_str());
                for s in snapshots.get(&key).into_iter().flatten() {
                    let t = time_of(&s.event_time, "metrics.jsonl")?;
                    if !period.holds_instant(t) {
                        continue;
                    }
                    first = Some(first.map_or(t, |f| f.min(t)));
                    last = Some(last.map_or(t, |l| l.max(t)));
                    r.instants += 1;
                    match s.value.filter(|_| s.samples >= o.min_samples) {
                        None => r.instants_insufficient += 1,
                        Some(v) if o.op.holds(v, o.target) => r.instants_compliant += 1,
                        Some(_) => {}
                    }
                }
                let judged = r.instants - r.instants_insufficient;
                r.compliance = (judged > 0).then(|| r.instants_compliant as f64 / judged as f64);
                r.attainment = r.compliance;
                r.met = r.compliance.map(|c| c >= 1.0);
                if RATIO_METRICS.contains(&o.metric) {
                    let ratio =
                        ratio_figures(o, period, ledger.get(&key).map_or(&[], Vec::as_slice))?;
                    r.attainment_basis = "events";
                    r.attainment = ratio.value.map(|v| 1.0 - burn_rate::bad_share(o.op, v));
                    r.met = ratio.value.map(|v| o.op.holds(v, o.target));
                    r.ratio = Some(ratio);
                }
                r.credit_percent = r.attainment.and_then(|a| {
                    config.service_credits.get(&o.name).map(|tiers| {
                        tiers
                            .iter()
                            .filter(|t| a < t.below)
                            .map(|t| t.credit)
                            .fold(0.0, f64::max)
                    })
                });
                let mine: Vec<&IncidentReport> = incidents
                    .iter()
                    .filter(|i| i.model_id == m.model_id && i.objective == o.name)
                    .collect();
                r.incidents = mine.len() as u64;
                r.mtta_seconds = mean(mine.iter().filter_map(|i| i.seconds_to_acknowledge));
                r.mttr_seconds = mean(mine.iter().filter_map(|i| i.seconds_to_resolve));
                objectives.push(r);
            }
        }
        let credits = objectives
            .iter()
            .filter_map(|o| match (o.attainment, o.credit_percent) {
                (Some(a), Some(c)) if c > 0.0 => Some(CreditOwed {
                    model_id: o.model_id.clone(),
                    objective: o.objective.clone(),
                    attainment: a,
                    attainment_basis: o.attainment_basis,
                    credit_percent: c,
                }),
                _ => None,
            })
            .collect();
        Ok(Report {
            sla_version: config.sla_version.clone(),
            from: period.from.or(first.map(|f| f - every)).map(format_rfc3339),
            to: period.to.or(last).map(format_rfc3339),
            mtta_seconds: mean(incidents.iter().filter_map(|i| i.seconds_to_acknowledge)),
            mttr_seconds: mean(incidents.iter().filter_map(|i| i.seconds_to_resolve)),
            objectives,
            incidents,
            credits,
        })
    }
}

/// The whole model's snapshots (segment `{}`) of each (model, objective), in order.
fn whole_model(lines: &[SnapshotLine]) -> BTreeMap<(&str, &str), Vec<&SnapshotLine>> {
    let mut out: BTreeMap<(&str, &str), Vec<&SnapshotLine>> = BTreeMap::new();
    for s in lines.iter().filter(|s| s.segment.is_empty()) {
        out.entry((s.model_id.as_str(), s.objective.as_str()))
            .or_default()
            .push(s);
    }
    out
}

/// Adds up the ledger's per-interval snapshots of a ratio objective over the period.
fn ratio_figures(
    o: &Objective,
    period: Period,
    ledger: &[&SnapshotLine],
) -> Result<RatioFigures, ReportError> {
    let (mut events, mut bad) = (0u64, 0u64);
    for s in ledger {
        if !period.holds_instant(time_of(&s.event_time, "ledger metrics")?) {
            continue;
        }
        if let Some(v) = s.value {
            // The value is a count over `samples`: the product is a whole number.
            bad += (burn_rate::bad_share(o.op, v) * s.samples as f64).round() as u64;
            events += s.samples;
        }
    }
    let budget = burn_rate::budget(o.op, o.target);
    let budget_events = budget * events as f64;
    // The bad share of a ratio is its own inverse: the ratio from the share of bad events.
    let value = (events > 0).then(|| burn_rate::bad_share(o.op, bad as f64 / events as f64));
    let consumed = (budget_events > 0.0).then(|| bad as f64 / budget_events);
    Ok(RatioFigures {
        events,
        bad_events: bad,
        value,
        budget_events,
        budget_consumed: consumed,
        budget_remaining: consumed.map(|c| 1.0 - c),
    })
}

/// Every incident alive in the period, with its timeline.
fn incidents(
    period: Period,
    breaches: &[BreachLine],
    escalations: &[EscalationLine],
) -> Result<Vec<IncidentReport>, ReportError> {
    let mut by_id: BTreeMap<&str, (Millis, IncidentReport)> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for b in breaches {
        let t = time_of(&b.event_time, "breaches.jsonl")?;
        let at = b.event_time.as_str();
        if b.kind == "opened" {
            order.push(&b.incident_id);
            by_id.insert(
                &b.incident_id,
                (
                    t,
                    IncidentReport {
                        incident_id: b.incident_id.clone(),
                        model_id: b.model_id.clone(),
                        objective: b.objective.clone(),
                        segment: b.segment.clone(),
                        severity: b.severity.clone(),
                        inhibited: b.inhibited,
                        opened_at: at.to_string(),
                        acknowledged_at: None,
                        acknowledged_by: None,
                        resolved_at: None,
                        resolved_by: None,
                        seconds_to_acknowledge: None,
                        seconds_to_resolve: None,
                        metric: b.metric.clone(),
                        timeline: vec![TimelineEntry {
                            severity: Some(b.severity.clone()),
                            observed: b.observed,
                            ..TimelineEntry::new(at, "opened")
                        }],
                    },
                ),
            );
            continue;
        }
        let Some((opened, i)) = by_id.get_mut(b.incident_id.as_str()) else {
            // Opened before the replay began: nothing to anchor a timeline to.
            continue;
        };
        let since = (t - *opened) as f64 / 1000.0;
        match b.kind.as_str() {
            "severity_changed" => {
                if b.severity == "critical" {
                    i.severity = b.severity.clone();
                }
                i.timeline.push(TimelineEntry {
                    severity: Some(b.severity.clone()),
                    observed: b.observed,
                    ..TimelineEntry::new(at, "severity_changed")
                });
            }
            "acknowledged" => {
                i.acknowledged_at = Some(at.to_string());
                i.acknowledged_by.clone_from(&b.by);
                i.seconds_to_acknowledge = Some(since);
                i.timeline.push(TimelineEntry {
                    by: b.by.clone(),
                    ..TimelineEntry::new(at, "acknowledged")
                });
            }
            "resolved" => {
                i.resolved_at = Some(at.to_string());
                i.resolved_by.clone_from(&b.by);
                i.seconds_to_resolve = Some(since);
                i.timeline.push(TimelineEntry {
                    by: b.by.clone(),
                    observed: b.observed,
                    ..TimelineEntry::new(at, "resolved")
                });
            }
            _ => {}
        }
    }
    for e in escalations
        .iter()
        .filter(|e| e.pagerduty.event_action == "trigger")
    {
        if let Some((_, i)) = by_id.get_mut(e.incident_id.as_str()) {
            i.timeline.push(TimelineEntry {
                level: Some(e.level),
                notify: e.notify.clone(),
                ..TimelineEntry::new(&e.event_time, "notified")
            });
        }
    }
    let mut out = Vec::new();
    for id in order {
        let Some((opened, mut i)) = by_id.remove(id) else {
            continue;
        };
        let resolved = i
            .resolved_at
            .as_deref()
            .map(|r| time_of(r, "breaches.jsonl"))
            .transpose()?;
        let alive = period.to.is_none_or(|to| opened < to)
            && period
                .from
                .is_none_or(|from| resolved.is_none_or(|r| r >= from));
        if !alive {
            continue;
        }
        if !period.holds_time(opened) {
            // Opened before the period: its timings belong to the period it opened in.
            i.seconds_to_acknowledge = None;
            i.seconds_to_resolve = None;
        }
        // RFC 3339 times of one format sort in time order; the sort is stable.
        i.timeline.sort_by(|a, b| a.at.cmp(&b.at));
        out.push(i);
    }
    Ok(out)
}
