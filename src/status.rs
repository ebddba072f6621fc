//! The live SLA status behind the status page (SPEC §6): for every model and objective of
//! the SLA, its latest value against target and `warn_at`, its state, a trend of the
//! whole-model value over the last hours, and the incidents open now with severity,
//! escalation level and age. Built from the engine's outputs alone (metric snapshots,
//! breach and escalation events), in the order they were emitted.
//!
//! Pure: no clock and no I/O. Ages and the trend's span are in event time, measured from
//! the latest evaluation instant seen, so the same outputs always give the same status.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Deref;

use serde::Serialize;

use crate::config::SlaConfig;
use crate::output::{BreachEvent, BreachKind, MetricSnapshot, Output, Severity, State};
use crate::time::{parse_rfc3339, Millis};

/// Event time the trend of an objective covers, back from its latest point.
pub const TREND_SPAN: Millis = 6 * 3_600_000;
/// Points kept per trend at most (an objective evaluated more often than a minute keeps
/// the latest of them).
const TREND_POINTS: usize = 360;
/// Segment values shown per objective at most; more are counted, not listed.
const SEGMENTS_SHOWN: usize = 50;
/// Resolved incidents kept for the page, newest first.
const RECENT_RESOLVED: usize = 10;

/// One point of an objective's trend: its whole-model value at an instant (`None` while
/// data was insufficient).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub t: Millis,
    pub v: Option<f64>,
}

/// The latest evaluation of one segment value of an objective.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentStatus {
    pub segment: String,
    pub value: Option<f64>,
    pub samples: u64,
    pub state: State,
}

/// An objective of the SLA and what its latest evaluation said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectiveStatus {
    pub name: String,
    pub metric: &'static str,
    pub feature: Option<String>,
    pub op: &'static str,
    pub target: f64,
    pub warn_at: Option<f64>,
    pub window: String,
    pub description: Option<String>,
    /// `None` until the objective is first evaluated.
    pub state: Option<State>,
    pub value: Option<f64>,
    pub samples: u64,
    pub event_time: Option<String>,
    pub trend: VecDeque<Point>,
    /// The latest evaluation of each segment value, by its name.
    #[serde(skip)]
    segments: BTreeMap<String, SegmentStatus>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelStatus {
    pub model_id: String,
    pub owner: Option<String>,
    pub runbook: Option<String>,
    pub objectives: Vec<ObjectiveStatus>,
}

/// An incident as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentStatus {
    pub incident_id: String,
    pub model_id: String,
    pub objective: String,
    pub metric: &'static str,
    pub segment: String,
    pub severity: Severity,
    pub observed: Option<f64>,
    pub target: f64,
    pub op: &'static str,
    pub opened_at: String,
    /// The highest escalation level notified so far, and whom it notified.
    pub level: Option<usize>,
    pub notified: Vec<String>,
    pub acknowledged_by: Option<String>,
    pub acknowledged: bool,
    pub inhibited: bool,
    pub resolved_at: Option<String>,
    #[serde(skip)]
    opened_ms: Millis,
    #[serde(skip)]
    resolved_ms: Option<Millis>,
}

/// The whole status, as the page reads it: the board's state with what is derived from
/// it when read (segment order, incident ages).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView<'a> {
    pub sla_version: &'a str,
    /// The latest evaluation instant seen.
    pub event_time: Option<Millis>,
    pub models: Vec<ModelView<'a>>,
    /// Open incidents, critical first, then oldest first.
    pub incidents: Vec<IncidentView<'a>>,
    /// The last resolved, newest first.
    pub resolved: Vec<IncidentView<'a>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelView<'a> {
    pub model_id: &'a str,
    pub owner: &'a Option<String>,
    pub runbook: &'a Option<String>,
    pub objectives: Vec<ObjectiveView<'a>>,
}

/// An objective with its segment values, worst first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectiveView<'a> {
    #[serde(flatten)]
    pub objective: &'a ObjectiveStatus,
    /// The worst segment values first (critical, warning, insufficient, ok), then by name.
    pub segments: Vec<&'a SegmentStatus>,
    /// Segment values evaluated but not listed in `segments`.
    pub more_segments: usize,
}

impl Deref for ObjectiveView<'_> {
    type Target = ObjectiveStatus;
    fn deref(&self) -> &ObjectiveStatus {
        self.objective
    }
}

/// An incident with its age.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentView<'a> {
    #[serde(flatten)]
    pub incident: &'a IncidentStatus,
    /// Event time from opening to the latest instant seen (to resolution once resolved).
    pub age_seconds: f64,
}

impl Deref for IncidentView<'_> {
    type Target = IncidentStatus;
    fn deref(&self) -> &IncidentStatus {
        self.incident
    }
}

/// Every model's and objective's latest state, and the incidents open now.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    sla_version: String,
    models: Vec<ModelStatus>,
    /// model_id → (index, objective name → index).
    index: BTreeMap<String, (usize, BTreeMap<String, usize>)>,
    open: BTreeMap<String, IncidentStatus>,
    resolved: VecDeque<IncidentStatus>,
    latest: Option<Millis>,
}

impl StatusBoard {
    /// Every model and objective of `config`, none evaluated yet.
    pub fn new(config: &SlaConfig) -> StatusBoard {
        let mut index = BTreeMap::new();
        let models: Vec<ModelStatus> = config
            .models
            .iter()
            .enumerate()
            .map(|(mi, m)| {
                let names = m
                    .objectives
                    .iter()
                    .enumerate()
                    .map(|(oi, o)| (o.name.clone(), oi))
                    .collect();
                index.insert(m.model_id.clone(), (mi, names));
                ModelStatus {
                    model_id: m.model_id.clone(),
                    owner: m.owner.clone(),
                    runbook: m.runbook.clone(),
                    objectives: m
                        .objectives
                        .iter()
                        .map(|o| ObjectiveStatus {
                            name: o.name.clone(),
                            metric: o.metric.name(),
                            feature: o.feature.clone(),
                            op: o.op.symbol(),
                            target: o.target,
                            warn_at: o.warn_at,
                            window: o.window_text.clone(),
                            description: o.description.clone(),
                            state: None,
                            value: None,
                            samples: 0,
                            event_time: None,
                            trend: VecDeque::new(),
                            segments: BTreeMap::new(),
                        })
                        .collect(),
                }
            })
            .collect();
        StatusBoard {
            sla_version: config.sla_version.clone(),
            models,
            index,
            open: BTreeMap::new(),
            resolved: VecDeque::new(),
            latest: None,
        }
    }

    /// A reloaded SLA: its version, and the promises (op, target, `warn_at`),
    /// descriptions, owners and runbooks it states; the values and trends stay. (A reload
    /// never changes which models and objectives there are.)
    pub fn reconfigure(&mut self, config: &SlaConfig) {
        self.sla_version = config.sla_version.clone();
        for (m, mc) in self.models.iter_mut().zip(&config.models) {
            m.owner = mc.owner.clone();
            m.runbook = mc.runbook.clone();
            for (o, oc) in m.objectives.iter_mut().zip(&mc.objectives) {
                o.op = oc.op.symbol();
                o.target = oc.target;
                o.warn_at = oc.warn_at;
                o.description = oc.description.clone();
            }
        }
    }

    /// Takes one output of the engine into account.
    pub fn observe(&mut self, output: &Output) {
        match output {
            Output::Metric(m) => self.metric(m),
            Output::Breach(b) => self.breach(b),
            Output::Escalation(e) => {
                if let Some(i) = self.open.get_mut(&e.incident_id) {
                    if e.pagerduty.event_action == "trigger" && i.level.is_none_or(|l| e.level >= l)
                    {
                        i.level = Some(e.level);
                        i.notified = e.notify.clone();
                    }
                }
            }
            Output::DeadLetter(_) => {}
        }
    }

    fn objective(&mut self, model: &str, objective: &str) -> Option<&mut ObjectiveStatus> {
        let (mi, names) = self.index.get(model)?;
        let oi = *names.get(objective)?;
        self.models.get_mut(*mi)?.objectives.get_mut(oi)
    }

    fn metric(&mut self, m: &MetricSnapshot) {
        let Some(t) = parse_rfc3339(&m.event_time) else {
            return;
        };
        self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
        let Some(o) = self.objective(&m.model_id, &m.objective) else {
            return;
        };
        if m.segment.0.is_empty() {
            o.state = Some(m.state);
            o.value = m.value;
            o.samples = m.samples;
            o.event_time = Some(m.event_time.clone());
            if o.trend.back().is_some_and(|p| p.t >= t) {
                // The same instant again (a restart re-emitting it): the latest wins.
                o.trend.retain(|p| p.t < t);
            }
            o.trend.push_back(Point { t, v: m.value });
            while o
                .trend
                .front()
                .is_some_and(|p| p.t < t - TREND_SPAN || o.trend.len() > TREND_POINTS)
            {
                o.trend.pop_front();
            }
        } else {
            let name = m.segment.describe();
            o.segments.insert(
                name.clone(),
                SegmentStatus {
                    segment: name,
                    value: m.value,
                    samples: m.samples,
                    state: m.state,
                },
            );
        }
    }

    fn breach(&mut self, b: &BreachEvent) {
        let opened_ms = parse_rfc3339(&b.opened_at).unwrap_or(0);
        let at = parse_rfc3339(&b.event_time).unwrap_or(opened_ms);
        // A breach event is stamped with the evaluation instant that made it.
        self.latest = Some(self.latest.map_or(at, |l| l.max(at)));
        match b.kind {
            BreachKind::Opened => {
                self.open.insert(
                    b.incident_id.clone(),
                    IncidentStatus {
                        incident_id: b.incident_id.clone(),
                        model_id: b.model_id.clone(),
                        objective: b.objective.clone(),
                        metric: b.metric,
                        segment: b.segment.describe(),
                        severity: b.severity,
                        observed: b.observed,
                        target: b.target,
                        op: b.op,
                        opened_at: b.opened_at.clone(),
                        level: None,
                        notified: Vec::new(),
                        acknowledged_by: None,
                        acknowledged: false,
                        inhibited: b.inhibited,
                        resolved_at: None,
                        opened_ms,
                        resolved_ms: None,
                    },
                );
            }
            BreachKind::SeverityChanged => {
                if let Some(i) = self.open.get_mut(&b.incident_id) {
                    i.severity = b.severity;
                    i.observed = b.observed;
                }
            }
            BreachKind::Acknowledged => {
                if let Some(i) = self.open.get_mut(&b.incident_id) {
                    i.acknowledged = true;
                    i.acknowledged_by = b.by.clone();
                }
            }
            BreachKind::Resolved => {
                if let Some(mut i) = self.open.remove(&b.incident_id) {
                    i.resolved_at = Some(b.event_time.clone());
                    i.resolved_ms = Some(at);
                    i.observed = b.observed;
                    self.resolved.push_front(i);
                    self.resolved.truncate(RECENT_RESOLVED);
                }
            }
        }
    }

    /// Incidents open now.
    pub fn open_incidents(&self) -> impl Iterator<Item = &IncidentStatus> {
        self.open.values()
    }

    pub fn view(&self) -> StatusView<'_> {
        let mut open: Vec<&IncidentStatus> = self.open.values().collect();
        open.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.opened_ms.cmp(&b.opened_ms))
                .then(a.incident_id.cmp(&b.incident_id))
        });
        let aged = |i: &'_ IncidentStatus| {
            let until = i
                .resolved_ms
                .unwrap_or_else(|| self.latest.unwrap_or(i.opened_ms));
            (until - i.opened_ms).max(0) as f64 / 1000.0
        };
        StatusView {
            sla_version: &self.sla_version,
            event_time: self.latest,
            models: self
                .models
                .iter()
                .map(|m| ModelView {
                    model_id: &m.model_id,
                    owner: &m.owner,
                    runbook: &m.runbook,
                    objectives: m.objectives.iter().map(objective_view).collect(),
                })
                .collect(),
            incidents: open
                .into_iter()
                .map(|i| IncidentView {
                    incident: i,
                    age_seconds: aged(i),
                })
                .collect(),
            resolved: self
                .resolved
                .iter()
                .map(|i| IncidentView {
                    incident: i,
                    age_seconds: aged(i),
                })
                .collect(),
        }
    }
}

fn objective_view(o: &ObjectiveStatus) -> ObjectiveView<'_> {
    let mut all: Vec<&SegmentStatus> = o.segments.values().collect();
    all.sort_by_key(|s| severity_rank(s.state));
    let more_segments = all.len().saturating_sub(SEGMENTS_SHOWN);
    all.truncate(SEGMENTS_SHOWN);
    ObjectiveView {
        objective: o,
        segments: all,
        more_segments,
    }
}

/// Worst first: critical, warning, insufficient data, ok.
fn severity_rank(s: State) -> u8 {
    match s {
        State::Critical => 0,
        State::Warning => 1,
        State::InsufficientData => 2,
        State::Ok => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Segment;

    const YAML: &str = r#"
sla_version: "status-1"
defaults: {evaluate_every: 1m}
models:
  - model_id: m
    task: regression
    objectives:
      - {name: availability, metric: availability, op: ">=", target: 0.99, warn_at: 0.995, window: 5m, segment_by: [region]}
      - {name: p99, metric: latency_p99, op: "<=", target: 250, window: 5m}
"#;

    fn snapshot(t: &str, segment: &[(&str, &str)], value: f64, state: State) -> Output {
        Output::Metric(MetricSnapshot {
            model_id: "m".into(),
            segment: Segment(
                segment
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            objective: "availability".into(),
            metric: "availability",
            feature: None,
            window: "5m".into(),
            event_time: t.into(),
            value: Some(value),
            samples: 100,
            state,
            incidents_open: 0,
            incidents_opened: 0,
            mtta_seconds: None,
            mttr_seconds: None,
            sla_version: "status-1".into(),
        })
    }

    fn breach(kind: BreachKind, severity: Severity, t: &str) -> Output {
        Output::Breach(BreachEvent {
            incident_id: "inc-1".into(),
            kind,
            severity,
            model_id: "m".into(),
            model_version: None,
            segment: Segment(vec![("region".into(), "eu".into())]),
            objective: "availability".into(),
            metric: "availability",
            op: ">=",
            target: 0.99,
            warn_at: Some(0.995),
            observed: Some(0.9),
            window: "5m".into(),
            samples: 100,
            event_time: t.into(),
            sla_version: "status-1".into(),
            owner: None,
            runbook: None,
            opened_at: "2026-11-01T00:10:00.000Z".into(),
            inhibited: false,
            by: (kind == BreachKind::Acknowledged).then(|| "oncall".to_string()),
            burn_rate: None,
        })
    }

    #[test]
    fn every_objective_is_listed_before_any_evaluation() {
        let cfg = crate::config::parse(YAML, "t.yaml", None).expect("valid");
        let board = StatusBoard::new(&cfg);
        let view = board.view();
        assert_eq!(view.sla_version, "status-1");
        let names: Vec<&str> = view.models[0]
            .objectives
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["availability", "p99"]);
        assert!(view.models[0].objectives.iter().all(|o| o.state.is_none()));
        assert_eq!(view.models[0].objectives[1].target, 250.0);
    }

    #[test]
    fn latest_values_trend_segments_and_an_incidents_life() {
        let cfg = crate::config::parse(YAML, "t.yaml", None).expect("valid");
        let mut board = StatusBoard::new(&cfg);
        for minute in 0..400 {
            let t = crate::time::format_rfc3339(
                parse_rfc3339("2026-11-01T00:00:00Z").expect("time") + minute * 60_000,
            );
            board.observe(&snapshot(&t, &[], 0.999, State::Ok));
        }
        board.observe(&snapshot(
            "2026-11-01T06:39:00.000Z",
            &[("region", "us")],
            0.999,
            State::Ok,
        ));
        board.observe(&snapshot(
            "2026-11-01T06:39:00.000Z",
            &[("region", "eu")],
            0.9,
            State::Critical,
        ));
        let view = board.view();
        let o = &view.models[0].objectives[0];
        assert_eq!(o.state, Some(State::Ok));
        assert_eq!(o.trend.len(), 360, "six hours of one-minute points");
        assert_eq!(
            o.trend.back().map(|p| p.t),
            parse_rfc3339("2026-11-01T06:39:00Z")
        );
        let segments: Vec<&str> = o.segments.iter().map(|s| s.segment.as_str()).collect();
        assert_eq!(segments, ["region=eu", "region=us"], "the worst first");

        board.observe(&breach(
            BreachKind::Opened,
            Severity::Warning,
            "2026-11-01T06:00:00.000Z",
        ));
        board.observe(&breach(
            BreachKind::SeverityChanged,
            Severity::Critical,
            "2026-11-01T06:10:00.000Z",
        ));
        let open = board.view().incidents;
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].severity, Severity::Critical);
        // Opened at 00:10 (opened_at), the latest instant is 06:39.
        assert_eq!(open[0].age_seconds, 6.0 * 3600.0 + 29.0 * 60.0);
        // The page reads the derived figures beside the stored ones, in one object each.
        let json = serde_json::to_value(board.view()).expect("JSON");
        assert_eq!(
            json["incidents"][0]["age_seconds"],
            6.0 * 3600.0 + 29.0 * 60.0
        );
        assert_eq!(json["incidents"][0]["severity"], "critical");
        let objective = &json["models"][0]["objectives"][0];
        assert_eq!(objective["segments"][0]["segment"], "region=eu");
        assert_eq!(objective["more_segments"], 0);
        assert_eq!(objective["name"], "availability");
        board.observe(&breach(
            BreachKind::Acknowledged,
            Severity::Critical,
            "2026-11-01T06:20:00.000Z",
        ));
        assert_eq!(
            board.view().incidents[0].acknowledged_by.as_deref(),
            Some("oncall")
        );
        board.observe(&breach(
            BreachKind::Resolved,
            Severity::Critical,
            "2026-11-01T06:40:00.000Z",
        ));
        let view = board.view();
        assert!(view.incidents.is_empty());
        assert_eq!(view.resolved.len(), 1);
        assert_eq!(view.resolved[0].age_seconds, 6.5 * 3600.0);
    }
}
