//! What the engine reads of an event before it touches its state: the index of the
//! event's model in the SLA, the join key of its request, whether its class label is the
//! model's positive one and, for an inference, its drift and data-quality facts against
//! the model's reference profile. Computing them is pure,
//! so a shell may do it beside the engine (a file replay does, on each file's decoding
//! thread; `run`, on each shard's) and hand them in with the event.

use std::ops::Range;

use crate::config::{ModelSla, SlaConfig};
use crate::event::{Event, FeatureValue, Inference};
use crate::join::RequestKey;
use crate::metric::{Family, Task, ALL_FEATURES, SCORE};
use crate::profile::Profile;
use crate::series::Fact;

/// An event's model index and request key, for one SLA's model list, and whether its
/// class label is the model's positive label. The list, and each model's task and
/// positive label, are fixed for an engine's life (a reload that changes them is
/// refused), so keys computed with any version of the engine's SLA hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKeys {
    /// `None`: the SLA has no such model.
    pub(super) model: Option<u32>,
    pub(super) request: RequestKey,
    /// For a binary model's label, or a prediction given as a class label: whether that
    /// label is the positive one (`None`: not computed, or no label).
    pub(super) positive: Option<bool>,
}

impl EventKeys {
    pub fn new(config: &SlaConfig, model_id: &str, request_id: &str) -> EventKeys {
        EventKeys {
            model: config.model(model_id).map(|(i, _)| i as u32),
            request: RequestKey::of(request_id),
            positive: None,
        }
    }

    /// The keys of a decoded inference or label; `None` for an ack, which has none.
    pub fn of(config: &SlaConfig, event: &Event) -> Option<EventKeys> {
        let (mut keys, label) = match event {
            Event::Inference(e) => (
                EventKeys::new(config, &e.model_id, &e.request_id),
                e.prediction.as_ref().and_then(|p| p.label.as_deref()),
            ),
            Event::Label(e) => (
                EventKeys::new(config, &e.model_id, &e.request_id),
                e.label.as_deref(),
            ),
            Event::Ack(_) => return None,
        };
        let model = keys.model.and_then(|i| config.models.get(i as usize));
        if let (Some(model), Some(label)) = (model, label) {
            if model.task == Task::BinaryClassification {
                keys.positive = Some(label == model.positive_label);
            }
        }
        Some(keys)
    }
}

/// What a decoding thread works out of a decoded event (`None`: it did not decode) beside
/// the engine: its keys (none for an ack) and, for an inference, its facts, appended to `facts`; returns the keys and
/// where in `facts` the event's lie.
pub fn prepare(
    config: &SlaConfig,
    event: Option<&Event>,
    facts: &mut Vec<Fact>,
) -> (Option<EventKeys>, Range<usize>) {
    let keys = event.and_then(|e| EventKeys::of(config, e));
    let first = facts.len();
    if let (Some(Event::Inference(e)), Some(keys)) = (event, keys) {
        profile_facts(config, keys, e, facts);
    }
    (keys, first..facts.len())
}

/// An inference's drift and data-quality facts, appended to `out`: one per distinct family
/// of its model's objectives, in their order, as the engine records them. They depend on
/// the model's objectives and reference profile, which a reload cannot change either, so
/// facts computed with any version of an engine's SLA hold.
pub fn profile_facts(config: &SlaConfig, keys: EventKeys, ev: &Inference, out: &mut Vec<Fact>) {
    let Some(model) = keys.model.and_then(|i| config.models.get(i as usize)) else {
        return;
    };
    let Some(profile) = &model.profile else {
        return;
    };
    out.extend(profile_families(model).filter_map(|f| profile_fact(profile, f, ev)));
}

/// The distinct drift and data-quality families of a model's objectives.
pub(super) fn profile_families(model: &ModelSla) -> impl Iterator<Item = Family> + '_ {
    let objectives = &model.objectives;
    objectives.iter().enumerate().filter_map(|(i, o)| {
        let first = !objectives[..i].iter().any(|p| p.family == o.family);
        (matches!(o.family, Family::Drift(_) | Family::Quality { .. }) && first).then_some(o.family)
    })
}

/// What an inference contributes to one drift or data-quality family, computed against
/// the reference profile.
fn profile_fact(profile: &Profile, family: Family, ev: &Inference) -> Option<Fact> {
    let value = |name: &str| ev.features.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    match family {
        Family::Drift(f) if f == SCORE => {
            let score = ev.prediction.as_ref().and_then(|p| p.score)?;
            let bin = profile
                .score
                .as_ref()?
                .bin_of(&FeatureValue::Number(score))?;
            Some(Fact::Drift { feature: f, bin })
        }
        Family::Drift(f) => {
            let (name, p) = profile.features.iter().nth(f as usize)?;
            Some(Fact::Drift {
                feature: f,
                bin: p.bin_of(value(name)?)?,
            })
        }
        Family::Quality { feature, range } => {
            let bounds = range.map(|(lo, hi)| (f64::from_bits(lo), f64::from_bits(hi)));
            let counts = if feature == ALL_FEATURES {
                profile.quality_all(&ev.features, bounds)
            } else {
                let (name, p) = profile.features.iter().nth(feature as usize)?;
                p.quality_of(value(name), bounds)
            };
            Some(Fact::Quality {
                feature,
                range,
                counts,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Label, Prediction, Status};

    const YAML: &str = r#"
sla_version: "v1"
models:
  - model_id: fraud
    task: binary_classification
    positive_label: "yes"
    objectives:
      - {name: acc, metric: accuracy, op: ">=", target: 0.9, window: 5m}
  - model_id: eta
    task: regression
    objectives:
      - {name: mae, metric: mae, op: "<=", target: 3, window: 5m}
"#;

    fn label(model: &str, label: Option<&str>) -> Event {
        Event::Label(Label {
            request_id: "r-1".into(),
            model_id: model.into(),
            timestamp: 0,
            label: label.map(str::to_string),
            value: Some(1.0),
        })
    }

    #[test]
    fn a_binary_models_labels_are_judged_against_its_positive_label() {
        let config = crate::config::parse(YAML, "t.yaml", None).expect("valid");
        let positive = |e: &Event| EventKeys::of(&config, e).and_then(|k| k.positive);
        assert_eq!(positive(&label("fraud", Some("yes"))), Some(true));
        assert_eq!(positive(&label("fraud", Some("no"))), Some(false));
        assert_eq!(positive(&label("fraud", None)), None);
        assert_eq!(positive(&label("eta", Some("yes"))), None, "not binary");
        assert_eq!(
            positive(&label("other", Some("yes"))),
            None,
            "no such model"
        );
        let inference = Event::Inference(Inference {
            request_id: "r-1".into(),
            model_id: "fraud".into(),
            model_version: None,
            timestamp: 0,
            latency_ms: None,
            status: Status::Ok,
            prediction: Some(Prediction {
                score: None,
                label: Some("yes".into()),
                value: None,
            }),
            attributes: Vec::new(),
            features: Vec::new(),
        });
        assert_eq!(positive(&inference), Some(true));
        let keys = EventKeys::of(&config, &inference).expect("keys");
        assert_eq!(
            (keys.model, keys.request),
            (Some(0), RequestKey::of("r-1")),
            "the same keys as EventKeys::new"
        );
    }
}
