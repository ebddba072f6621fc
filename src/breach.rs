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
