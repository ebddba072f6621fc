//! JSON decoding of inference, label and ack events (SPEC §1).
//!
//! Pure functions from bytes to typed events or a [`Reason`]. Checks that need the SLA
//! configuration (is the model known, does the prediction fit its task) are the engine's.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::avro::{Codecs, Format};
use crate::dead_letter::{InputKind, Reason};
use crate::event::{
    Ack, AckAction, AckTarget, Event, FeatureValue, Inference, Label, Prediction, Status,
};
use crate::time::{parse_rfc3339, Millis};

/// A timestamp: RFC 3339 string or integer epoch milliseconds.
struct Timestamp(Millis);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 string or integer epoch milliseconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                parse_rfc3339(s)
                    .map(Timestamp)
                    .ok_or_else(|| E::custom(format!("`{s}` is not an RFC 3339 timestamp")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Err(E::custom(format!(
                    "{v} is not an integer number of milliseconds"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A scalar rendered as a string: attribute values and class labels may be written as
/// strings, integers or booleans.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, integer or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(Text(s.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct RawPrediction {
    score: Option<f64>,
    label: Option<Text>,
    value: Option<f64>,
}

#[derive(Deserialize)]
struct RawInference<'a> {
    #[serde(borrow)]
    request_id: Cow<'a, str>,
    #[serde(borrow)]
    model_id: Cow<'a, str>,
    #[serde(borrow)]
    model_version: Option<Cow<'a, str>>,
    timestamp: Timestamp,
    latency_ms: Option<f64>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    prediction: Option<RawPrediction>,
    attributes: Option<Pairs<Option<Text>>>,
    features: Option<Pairs<Feature>>,
}

/// A JSON object read into its (key, value) pairs sorted by key, a later duplicate key
/// replacing the earlier one (as an ordered map would take them, without its nodes).
struct Pairs<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Pairs<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<V> {
            type Value = Pairs<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Pairs<V>, A::Error> {
                let mut pairs: Vec<(String, V)> = Vec::with_capacity(a.size_hint().unwrap_or(4));
                while let Some(entry) = a.next_entry::<String, V>()? {
                    pairs.push(entry);
                }
                // Stable: duplicates stay in the order sent, and the last one is kept.
                pairs.sort_by(|x, y| x.0.cmp(&y.0));
                let mut out: Vec<(String, V)> = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    match out.last_mut() {
                        Some(last) if last.0 == k => last.1 = v,
                        _ => out.push((k, v)),
                    }
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(PairsVisitor(std::marker::PhantomData))
    }
}

/// A feature value of any JSON type; lists and objects become `Other` (a schema
/// violation to count, not a reason to reject the event).
struct Feature(FeatureValue);

impl<'de> Deserialize<'de> for Feature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Feature;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a feature value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Feature, E> {
                Ok(Feature(FeatureValue::Missing))
            }
            fn visit_none<E: de::Error>(self) -> Result<Feature, E> {
                Ok(Feature(FeatureValue::Missing))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Feature, E> {
                Ok(Feature(FeatureValue::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Feature, E> {
                Ok(Feature(FeatureValue::Number(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Feature, E> {
                Ok(Feature(FeatureValue::Number(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Feature, E> {
                Ok(Feature(FeatureValue::Number(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Feature, E> {
                Ok(Feature(FeatureValue::Text(v.to_string())))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Feature, A::Error> {
                while a.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Feature(FeatureValue::Other))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Feature, A::Error> {
                while a.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Feature(FeatureValue::Other))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct RawLabel<'a> {
    #[serde(borrow)]
    request_id: Cow<'a, str>,
    #[serde(borrow)]
    model_id: Cow<'a, str>,
    timestamp: Timestamp,
    label: Option<Text>,
    value: Option<f64>,
}

#[derive(Deserialize)]
struct RawAck {
    incident_id: Option<String>,
    model_id: Option<String>,
    objective: Option<String>,
    segment: Option<BTreeMap<String, Text>>,
    action: String,
    by: Option<String>,
    timestamp: Timestamp,
}

fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Reason> {
    // Most events are valid: the path to the bad field is tracked (a string per key
    // read) only once there is one.
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => from_json_tracked(bytes),
    }
}

/// [`from_json`] keeping the path to the field that fails, for its [`Reason`].
fn from_json_tracked<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Reason> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(classify)?;
    de.end().map_err(|e| Reason::NotJson(e.to_string()))?;
    Ok(value)
}

fn classify(e: serde_path_to_error::Error<serde_json::Error>) -> Reason {
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let msg = inner.to_string();
            if let Some(rest) = msg.strip_prefix("missing field `") {
                let name = rest.split('`').next().unwrap_or(rest);
                let full = if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                };
                Reason::MissingField(full)
            } else if path == "timestamp" {
                Reason::BadTimestamp(msg)
            } else if path == "." {
                Reason::WrongType {
                    field: "(event)".to_string(),
                    detail: format!("expected a JSON object: {msg}"),
                }
            } else {
                Reason::WrongType {
                    field: path,
                    detail: msg,
                }
            }
        }
        _ => Reason::NotJson(inner.to_string()),
    }
}

fn non_empty(field: &str, s: Cow<'_, str>) -> Result<String, Reason> {
    if s.trim().is_empty() {
        Err(Reason::invalid(field, "must not be empty"))
    } else {
        Ok(s.into_owned())
    }
}

/// Decodes one message of input `kind` in `format` (JSON here, Avro through `codecs`).
pub fn event(
    kind: InputKind,
    format: Format,
    bytes: &[u8],
    codecs: &Codecs,
) -> Result<Event, Reason> {
    Ok(match (kind, format) {
        (InputKind::Inferences, Format::Json) => Event::Inference(inference(bytes)?),
        (InputKind::Labels, Format::Json) => Event::Label(label(bytes)?),
        (InputKind::Acks, Format::Json) => Event::Ack(ack(bytes)?),
        (InputKind::Inferences, f) => Event::Inference(codecs.inference(bytes, f)?),
        (InputKind::Labels, f) => Event::Label(codecs.label(bytes, f)?),
        (InputKind::Acks, f) => Event::Ack(codecs.ack(bytes, f)?),
    })
}

/// Decodes one JSON inference event.
pub fn inference(bytes: &[u8]) -> Result<Inference, Reason> {
    let raw: RawInference = from_json(bytes)?;
    let attributes = raw
        .attributes
        .map(|p| p.0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v.0)))
        .collect();
    let event = Inference {
        request_id: raw.request_id.into_owned(),
        model_id: raw.model_id.into_owned(),
        model_version: raw.model_version.map(Cow::into_owned),
        timestamp: raw.timestamp.0,
        latency_ms: raw.latency_ms,
        status: status(raw.status.as_deref())?,
        prediction: raw.prediction.map(|p| Prediction {
            score: p.score,
            label: p.label.map(|t| t.0),
            value: p.value,
        }),
        attributes,
        features: raw
            .features
            .map(|p| p.0)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    };
    check_inference(&event)?;
    Ok(event)
}

/// Reads a status; absent means `ok`.
pub fn status(text: Option<&str>) -> Result<Status, Reason> {
    match text {
        None | Some("ok") => Ok(Status::Ok),
        Some("error") => Ok(Status::Error),
        Some("timeout") => Ok(Status::Timeout),
        Some(other) => Err(Reason::invalid(
            "status",
            format!("`{other}` is not one of ok, error, timeout"),
        )),
    }
}

/// Checks that hold for an inference in any encoding.
pub fn check_inference(e: &Inference) -> Result<(), Reason> {
    for (field, value) in [("request_id", &e.request_id), ("model_id", &e.model_id)] {
        if value.trim().is_empty() {
            return Err(Reason::invalid(field, "must not be empty"));
        }
    }
    if let Some(l) = e.latency_ms {
        if !(l.is_finite() && l >= 0.0) {
            return Err(Reason::invalid(
                "latency_ms",
                format!("{l} is not a non-negative number of milliseconds"),
            ));
        }
    }
    if let Some(s) = e.prediction.as_ref().and_then(|p| p.score) {
        if !(0.0..=1.0).contains(&s) {
            return Err(Reason::invalid(
                "prediction.score",
                format!("{s} is not a probability in 0..1"),
            ));
        }
    }
    Ok(())
}

/// Checks that hold for a label in any encoding.
pub fn check_label(e: &Label) -> Result<(), Reason> {
    for (field, value) in [("request_id", &e.request_id), ("model_id", &e.model_id)] {
        if value.trim().is_empty() {
            return Err(Reason::invalid(field, "must not be empty"));
        }
    }
    if e.label.is_none() && e.value.is_none() {
        return Err(Reason::MissingField("label".to_string()));
    }
    Ok(())
}

/// Decodes one JSON label event.
pub fn label(bytes: &[u8]) -> Result<Label, Reason> {
    let raw: RawLabel = from_json(bytes)?;
    let event = Label {
        request_id: raw.request_id.into_owned(),
        model_id: raw.model_id.into_owned(),
        timestamp: raw.timestamp.0,
        label: raw.label.map(|t| t.0),
        value: raw.value,
    };
    check_label(&event)?;
    Ok(event)
}

/// Reads an ack's action.
pub fn ack_action(text: &str) -> Result<AckAction, Reason> {
    match text {
        "acknowledge" | "ack" => Ok(AckAction::Acknowledge),
        "resolve" => Ok(AckAction::Resolve),
        other => Err(Reason::invalid(
            "action",
            format!("`{other}` is not acknowledge or resolve"),
        )),
    }
}

/// Which incident an ack names: by id, or by model, objective and segment.
pub fn ack_target(
    incident_id: Option<String>,
    model_id: Option<String>,
    objective: Option<String>,
    segment: BTreeMap<String, String>,
) -> Result<AckTarget, Reason> {
    match (incident_id, model_id, objective) {
        (Some(id), _, _) => Ok(AckTarget::Incident(non_empty(
            "incident_id",
            Cow::Owned(id),
        )?)),
        (None, Some(model_id), Some(objective)) => Ok(AckTarget::Objective {
            model_id,
            objective,
            segment,
        }),
        (None, None, _) => Err(Reason::MissingField("incident_id".to_string())),
        (None, Some(_), None) => Err(Reason::MissingField("objective".to_string())),
    }
}

/// Decodes one JSON ack event.
pub fn ack(bytes: &[u8]) -> Result<Ack, Reason> {
    let raw: RawAck = from_json(bytes)?;
    let action = ack_action(&raw.action)?;
    let segment = raw
        .segment
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let target = ack_target(raw.incident_id, raw.model_id, raw.objective, segment)?;
    Ok(Ack {
        target,
        action,
        by: raw.by,
        timestamp: raw.timestamp.0,
        origin: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_spec_example() {
        let line = br#"{"request_id": "r-1", "model_id": "fraud", "model_version": "2.3.0",
 "timestamp": "2026-11-01T12:00:00.123Z", "latency_ms": 12.5, "status": "ok",
 "prediction": {"score": 0.93, "label": "1"},
 "features": {"amount": 120.5, "country": "DE", "age": null},
 "attributes": {"region": "eu-west"}}"#;
        let e = inference(line).expect("valid");
        assert_eq!(e.request_id, "r-1");
        assert_eq!(e.timestamp, 1_793_534_400_123);
        assert_eq!(
            e.attributes,
            vec![("region".to_string(), "eu-west".to_string())]
        );
        let p = e.prediction.expect("prediction");
        assert_eq!((p.score, p.label.as_deref()), (Some(0.93), Some("1")));
    }

    #[test]
    fn each_bad_input_has_its_reason() {
        let cases: [(&[u8], &str); 8] = [
            (b"{not json", "not_json"),
            (br#"{"model_id":"m","timestamp":1}"#, "missing_field"),
            (
                br#"{"request_id":"r","model_id":"m","timestamp":"yesterday"}"#,
                "bad_timestamp",
            ),
            (
                br#"{"request_id":"r","model_id":"m","timestamp":1,"latency_ms":"fast"}"#,
                "wrong_type",
            ),
            (
                br#"{"request_id":"r","model_id":"m","timestamp":1,"status":"maybe"}"#,
                "invalid_value",
            ),
            (
                br#"{"request_id":"","model_id":"m","timestamp":1}"#,
                "invalid_value",
            ),
            (br#"[1,2]"#, "wrong_type"),
            (
                br#"{"request_id":"r","model_id":"m","timestamp":1} trailing"#,
                "not_json",
            ),
        ];
        for (bytes, code) in cases {
            let got = inference(bytes).expect_err("must be rejected");
            assert_eq!(
                got.code(),
                code,
                "{}: {got}",
                String::from_utf8_lossy(bytes)
            );
        }
        let e =
            inference(br#"{"request_id":"r","model_id":"m","timestamp":1,"latency_ms":"fast"}"#)
                .expect_err("bad");
        assert!(e.to_string().contains("latency_ms"), "{e}");
    }

    #[test]
    fn labels_and_acks() {
        let l = label(br#"{"request_id":"r","model_id":"m","timestamp":1700000000000,"label":1}"#)
            .expect("valid");
        assert_eq!(l.label.as_deref(), Some("1"));
        assert_eq!(
            label(br#"{"request_id":"r","model_id":"m","timestamp":1}"#)
                .expect_err("no label")
                .code(),
            "missing_field"
        );
        let a = ack(br#"{"model_id":"fraud","objective":"auc","segment":{"region":"eu"},"action":"acknowledge","timestamp":"2026-11-01T12:00:00Z"}"#).expect("valid");
        assert!(matches!(a.target, AckTarget::Objective { .. }));
        assert_eq!(
            ack(br#"{"action":"resolve","timestamp":1}"#)
                .expect_err("no target")
                .code(),
            "missing_field"
        );
        assert_eq!(
            ack(br#"{"incident_id":"x","action":"snooze","timestamp":1}"#)
                .expect_err("bad action")
                .code(),
            "invalid_value"
        );
    }
}
