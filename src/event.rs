//! The typed input events of SPEC §1, as the engine receives them. Decoding from bytes lives
//! in `decode`; checks that need the SLA configuration live in the engine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dead_letter::Origin;
use crate::time::Millis;

/// Outcome of a request, as reported by the model server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Error,
    Timeout,
}

/// What the model answered. Which fields must be present depends on the model's task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prediction {
    /// Probability of the positive class, in 0..1.
    pub score: Option<f64>,
    /// Predicted class.
    pub label: Option<String>,
    /// Predicted value (regression).
    pub value: Option<f64>,
}

/// One inference (prediction) event.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    pub request_id: String,
    pub model_id: String,
    pub model_version: Option<String>,
    pub timestamp: Millis,
    pub latency_ms: Option<f64>,
    pub status: Status,
    pub prediction: Option<Prediction>,
    /// Slice dimensions, values rendered as strings.
    pub attributes: Vec<(String, String)>,
    /// Model inputs, by name, for drift and data-quality metrics.
    pub features: Vec<(String, FeatureValue)>,
}

/// One feature value as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue {
    /// `null`: counted by `missing_rate`, left out of drift.
    Missing,
    Number(f64),
    Text(String),
    Bool(bool),
    /// A list or an object: never a valid feature value.
    Other,
}

/// One ground-truth label event.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub request_id: String,
    pub model_id: String,
    pub timestamp: Millis,
    /// True class (classification).
    pub label: Option<String>,
    /// True value (regression).
    pub value: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckAction {
    Acknowledge,
    Resolve,
}

/// Which incident an acknowledgement is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckTarget {
    Incident(String),
    /// The incident open now for this model, objective and segment (`{}` = whole model).
    Objective {
        model_id: String,
        objective: String,
        segment: BTreeMap<String, String>,
    },
}

/// A person or pager bridge acknowledging or resolving an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub target: AckTarget,
    pub action: AckAction,
    pub by: Option<String>,
    pub timestamp: Millis,
    /// The message as received, returned in a dead letter if the ack matches nothing.
    pub origin: Option<Origin>,
}

/// Any input event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Inference(Inference),
    Label(Label),
    Ack(Ack),
}

impl Event {
    /// The event's own time.
    pub fn time(&self) -> Millis {
        match self {
            Event::Inference(e) => e.timestamp,
            Event::Label(e) => e.timestamp,
            Event::Ack(e) => e.timestamp,
        }
    }
}
