//! The breach state machine of SPEC §3, one per objective and segment.
//!
//! Each evaluation is assessed as ok, warning (past `warn_at`), critical (past `target`) or
//! insufficient data (below `min_samples`, or undefined). An incident opens after `for`
//! consecutive breaching evaluations and resolves after `clear_for` consecutive healthy
//! ones, where healthy means ok and, when `resolve_at` is set, back past it. Insufficient
//! data neither opens nor resolves, and breaks both runs. A severity change while open is
//! an event on the same incident.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Objective;
use crate::output::{Segment, Severity, State};
use crate::summary::Measured;
use crate::time::Millis;

/// An incident that is open now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenIncident {
    pub id: String,
    pub opened_at: Millis,
    pub severity: Severity,
    pub acknowledged_at: Option<Millis>,
    /// The model version serving when it opened (named by events caused by acks).
    pub model_version: Option<String>,
    /// Where it is in its escalation policy (none without a policy).
    pub escalation: Option<crate::escalation::Escalation>,
}

/// What one evaluation changed, with the incident as it is after the change.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Opened(OpenIncident),
    SeverityChanged {
        from: Severity,
        incident: OpenIncident,
    },
    Resolved(OpenIncident),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BreachTracker {
    breaching_run: u32,
    healthy_run: u32,
    pub open: Option<OpenIncident>,
}

/// Classifies a measured value against the objective.
pub fn assess(objective: &Objective, m: Measured) -> State {
    let Some(v) = m.value else {
        return State::InsufficientData;
    };
    if m.samples < objective.min_samples {
        return State::InsufficientData;
    }
    if !objective.op.holds(v, objective.target) {
        State::Critical
    } else if objective.warn_at.is_some_and(|w| !objective.op.holds(v, w)) {
        State::Warning
    } else {
        State::Ok
    }
}

/// A content-derived incident id: the same incident gets the same id on every replay.
pub fn incident_id(
    model_id: &str,
    objective: &str,
    segment: &Segment,
    opened_at: Millis,
) -> String {
    let mut h = Sha256::new();
    for part in [model_id, objective] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (k, v) in &segment.0 {
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.update(opened_at.to_be_bytes());
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl BreachTracker {
    /// Feeds one evaluation; `new_id` names an incident if one opens now.
    pub fn step(
        &mut self,
        objective: &Objective,
        state: State,
        m: Measured,
        at: Millis,
        new_id: impl FnOnce() -> String,
    ) -> Option<Transition> {
        let severity = match state {
            State::Critical => Some(Severity::Critical),
            State::Warning => Some(Severity::Warning),
            State::Ok => None,
            State::InsufficientData => {
                self.breaching_run = 0;
                self.healthy_run = 0;
                return None;
            }
        };
        match &mut self.open {
            None => match severity {
                Some(sev) => {
                    self.breaching_run += 1;
                    if self.breaching_run >= objective.for_count {
                        self.breaching_run = 0;
                        self.healthy_run = 0;
                        let incident = OpenIncident {
                            id: new_id(),
                            opened_at: at,
                            severity: sev,
                            acknowledged_at: None,
                            model_version: None,
                            escalation: None,
                        };
                        self.open = Some(incident.clone());
                        return Some(Transition::Opened(incident));
                    }
                    None
                }
                None => {
                    self.breaching_run = 0;
                    None
                }
            },
            Some(incident) => {
                let healthy = severity.is_none()
                    && match (objective.resolve_at, m.value) {
                        (Some(r), Some(v)) => objective.op.holds(v, r),
                        _ => true,
                    };
                if healthy {
                    self.healthy_run += 1;
                    if self.healthy_run >= objective.clear_for {
                        self.healthy_run = 0;
                        self.breaching_run = 0;
                        return self.open.take().map(Transition::Resolved);
                    }
                    return None;
                }
                self.healthy_run = 0;
                match severity {
                    Some(sev) if sev != incident.severity => {
                        let from = incident.severity;
                        incident.severity = sev;
                        Some(Transition::SeverityChanged {
                            from,
                            incident: incident.clone(),
                        })
                    }
                    _ => None,
                }
            }
        }
    }

    /// Closes the open incident by hand (an ack with action resolve).
    pub fn resolve_by_hand(&mut self) -> Option<OpenIncident> {
        self.breaching_run = 0;
        self.healthy_run = 0;
        self.open.take()
    }

    /// Nothing open and no run in progress: the tracker can be dropped.
    pub fn is_idle(&self) -> bool {
        self.open.is_none() && self.breaching_run == 0 && self.healthy_run == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{Family, Metric, Op};

    fn objective(for_count: u32, clear_for: u32, resolve_at: Option<f64>) -> Objective {
        Objective {
            name: "acc".into(),
            metric: Metric::Accuracy,
            family: Family::Binary,
            op: Op::Ge,
            target: 0.8,
            warn_at: Some(0.9),
            resolve_at,
            window: 60_000,
            window_text: "1m".into(),
            min_samples: 10,
            for_count,
            clear_for,
            segment_by: vec![],
            threshold_ms: None,
            inhibits: Vec::new(),
            feature: None,
            range: None,
            description: None,
            burn_rate: None,
        }
    }

    /// Feeds values (None = too few samples) and returns the transitions by index.
    fn run(o: &Objective, values: &[Option<f64>]) -> Vec<(usize, &'static str, Severity)> {
        let mut t = BreachTracker::default();
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let m = Measured {
                value: *v,
                samples: if v.is_some() { 100 } else { 3 },
            };
            let state = assess(o, m);
            let tr = t.step(o, state, m, i as i64, || format!("inc-{i}"));
            match tr {
                Some(Transition::Opened(inc)) => out.push((i, "opened", inc.severity)),
                Some(Transition::SeverityChanged { incident, .. }) => {
                    out.push((i, "severity_changed", incident.severity))
                }
                Some(Transition::Resolved(inc)) => out.push((i, "resolved", inc.severity)),
                None => {}
            }
        }
        out
    }

    #[test]
    fn for_and_clear_for_count_consecutive_evaluations() {
        let o = objective(2, 2, None);
        let got = run(
            &o,
            &[
                Some(0.7),
                Some(0.95),
                Some(0.7),
                Some(0.7),
                Some(0.95),
                Some(0.7),
                Some(0.95),
                Some(0.95),
            ],
        );
        assert_eq!(
            got,
            vec![
                (3, "opened", Severity::Critical),
                (7, "resolved", Severity::Critical)
            ]
        );
    }

    #[test]
    fn severity_changes_stay_on_one_incident() {
        let o = objective(1, 1, None);
        let got = run(&o, &[Some(0.85), Some(0.7), Some(0.85), Some(0.95)]);
        assert_eq!(
            got,
            vec![
                (0, "opened", Severity::Warning),
                (1, "severity_changed", Severity::Critical),
                (2, "severity_changed", Severity::Warning),
                (3, "resolved", Severity::Warning)
            ]
        );
    }

    #[test]
    fn resolve_at_adds_hysteresis() {
        let o = objective(1, 1, Some(0.95));
        // 0.92 is ok (past warn_at 0.9) but not past resolve_at 0.95: still open.
        let got = run(&o, &[Some(0.7), Some(0.92), Some(0.92), Some(0.96)]);
        assert_eq!(
            got,
            vec![
                (0, "opened", Severity::Critical),
                (3, "resolved", Severity::Critical)
            ]
        );
    }

    #[test]
    fn insufficient_data_neither_opens_nor_resolves_and_breaks_runs() {
        let o = objective(2, 2, None);
        let got = run(
            &o,
            &[
                Some(0.7),
                None,
                Some(0.7),
                Some(0.7),
                None,
                None,
                Some(0.95),
                None,
                Some(0.95),
                Some(0.95),
            ],
        );
        assert_eq!(
            got,
            vec![
                (3, "opened", Severity::Critical),
                (9, "resolved", Severity::Critical)
            ]
        );
    }

    #[test]
    fn incident_ids_derive_from_content() {
        let seg = Segment(vec![("region".into(), "eu".into())]);
        let a = incident_id("fraud", "auc", &seg, 1000);
        assert_eq!(a, incident_id("fraud", "auc", &seg, 1000));
        assert_ne!(a, incident_id("fraud", "auc", &seg, 2000));
        assert_ne!(a, incident_id("fraud", "auc", &Segment::default(), 1000));
        assert_eq!(a.len(), 32);
    }
}
