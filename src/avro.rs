//! Avro encoding of events (SPEC §1, §5) with the schemas in `schemas/`, raw or in the
//! Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body).
//!
//! Schemas are parsed once into a [`Codecs`]; decoding and encoding reuse them. No schema
//! registry is consulted: the Confluent id is skipped on input and written as configured
//! on output.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use serde_json::Value as Json;

use crate::dead_letter::Reason;
use crate::decode;
use crate::event::{Ack, FeatureValue, Inference, Label, Prediction};

const INFERENCE: &str = include_str!("../schemas/inference.avsc");
const LABEL: &str = include_str!("../schemas/label.avsc");
const ACK: &str = include_str!("../schemas/ack.avsc");
const BREACH: &str = include_str!("../schemas/breach.avsc");
const ESCALATION: &str = include_str!("../schemas/escalation.avsc");
const METRIC: &str = include_str!("../schemas/metric.avsc");
const DEAD_LETTER: &str = include_str!("../schemas/dead_letter.avsc");

/// How a topic's message values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    /// A bare Avro datum.
    Avro,
    /// Confluent wire format; the id is written on output and skipped on input.
    Confluent(u32),
}

impl Format {
    /// `json`, `avro`, or `confluent` / `confluent:ID`.
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "json" => Ok(Format::Json),
            "avro" => Ok(Format::Avro),
            "confluent" => Ok(Format::Confluent(0)),
            other => match other.strip_prefix("confluent:") {
                Some(id) => id.parse().map(Format::Confluent).map_err(|_| {
                    format!("`{other}`: the schema id after confluent: must be a number")
                }),
                None => Err(format!(
                    "unknown format `{other}`: use json, avro or confluent[:ID]"
                )),
            },
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Json => f.write_str("json"),
            Format::Avro => f.write_str("avro"),
            Format::Confluent(id) => write!(f, "confluent:{id}"),
        }
    }
}

/// A schema file that does not parse: a build defect, reported rather than panicking.
#[derive(Debug, Clone, thiserror::Error)]
#[error("schema {name}: {message}")]
pub struct SchemaError {
    name: &'static str,
    message: String,
}

fn parse(name: &'static str, text: &str) -> Result<Schema, SchemaError> {
    Schema::parse_str(text).map_err(|e| SchemaError {
        name,
        message: e.to_string(),
    })
}

/// An input schema and its datum reader.
struct Input {
    schema: &'static Schema,
    reader: GenericDatumReader<'static>,
}

/// The input schemas and their readers, made once for the process: making a reader
/// resolves its schema's names, which costs more than reading a datum.
struct Inputs {
    inference: Input,
    label: Input,
    ack: Input,
}

fn inputs() -> Result<&'static Inputs, SchemaError> {
    static INPUTS: OnceLock<Result<Inputs, SchemaError>> = OnceLock::new();
    INPUTS
        .get_or_init(|| {
            let input = |name: &'static str, text: &str| {
                // Kept for the process, as the reader borrows it.
                let schema: &'static Schema = Box::leak(Box::new(parse(name, text)?));
                let reader =
                    GenericDatumReader::builder(schema)
                        .build()
                        .map_err(|e| SchemaError {
                            name,
                            message: e.to_string(),
                        })?;
                Ok(Input { schema, reader })
            };
            Ok(Inputs {
                inference: input("inference", INFERENCE)?,
                label: input("label", LABEL)?,
                ack: input("ack", ACK)?,
            })
        })
        .as_ref()
        .map_err(SchemaError::clone)
}

/// The parsed schemas.
pub struct Codecs {
    pub inference: &'static Schema,
    pub label: &'static Schema,
    pub ack: &'static Schema,
    pub breach: Schema,
    pub escalation: Schema,
    pub metric: Schema,
    pub dead_letter: Schema,
    inputs: &'static Inputs,
}

impl Codecs {
    pub fn new() -> Result<Codecs, SchemaError> {
        let inputs = inputs()?;
        Ok(Codecs {
            inference: inputs.inference.schema,
            label: inputs.label.schema,
            ack: inputs.ack.schema,
            inputs,
            breach: parse("breach", BREACH)?,
            escalation: parse("escalation", ESCALATION)?,
            metric: parse("metric", METRIC)?,
            dead_letter: parse("dead_letter", DEAD_LETTER)?,
        })
    }

    pub fn inference(&self, bytes: &[u8], format: Format) -> Result<Inference, Reason> {
        let fields = record(&self.inputs.inference.reader, body(bytes, format)?)?;
        let prediction = match field(&fields, "prediction") {
            Avro::Record(p) => Some(Prediction {
                score: opt_f64(p, "score")?,
                label: opt_string(p, "label")?,
                value: opt_f64(p, "value")?,
            }),
            _ => None,
        };
        let attributes: Vec<(String, String)> =
            string_map(&fields, "attributes").into_iter().collect();
        let event = Inference {
            request_id: string(&fields, "request_id")?,
            model_id: string(&fields, "model_id")?,
            model_version: opt_string(&fields, "model_version")?,
            timestamp: millis(&fields, "timestamp")?,
            latency_ms: opt_f64(&fields, "latency_ms")?,
            status: decode::status(match field(&fields, "status") {
                Avro::Enum(_, s) => Some(s.as_str()),
                _ => None,
            })?,
            prediction,
            attributes,
            features: match field(&fields, "features") {
                Avro::Map(m) => {
                    let mut f: Vec<(String, FeatureValue)> = m
                        .iter()
                        .map(|(k, v)| {
                            let v = match v {
                                Avro::Union(_, inner) => inner.as_ref(),
                                other => other,
                            };
                            let value = match v {
                                Avro::Null => FeatureValue::Missing,
                                Avro::Double(d) => FeatureValue::Number(*d),
                                Avro::String(s) => FeatureValue::Text(s.clone()),
                                Avro::Boolean(b) => FeatureValue::Bool(*b),
                                _ => FeatureValue::Other,
                            };
                            (k.clone(), value)
                        })
                        .collect();
                    f.sort_by(|a, b| a.0.cmp(&b.0));
                    f
                }
                _ => Vec::new(),
            },
        };
        decode::check_inference(&event)?;
        Ok(event)
    }

    pub fn label(&self, bytes: &[u8], format: Format) -> Result<Label, Reason> {
        let fields = record(&self.inputs.label.reader, body(bytes, format)?)?;
        let event = Label {
            request_id: string(&fields, "request_id")?,
            model_id: string(&fields, "model_id")?,
            timestamp: millis(&fields, "timestamp")?,
            label: opt_string(&fields, "label")?,
            value: opt_f64(&fields, "value")?,
        };
        decode::check_label(&event)?;
        Ok(event)
    }

    pub fn ack(&self, bytes: &[u8], format: Format) -> Result<Ack, Reason> {
        let fields = record(&self.inputs.ack.reader, body(bytes, format)?)?;
        let segment = string_map(&fields, "segment");
        let action = match field(&fields, "action") {
            Avro::Enum(_, s) => decode::ack_action(s)?,
            _ => return Err(Reason::MissingField("action".to_string())),
        };
        Ok(Ack {
            target: decode::ack_target(
                opt_string(&fields, "incident_id")?,
                opt_string(&fields, "model_id")?,
                opt_string(&fields, "objective")?,
                segment,
            )?,
            action,
            by: opt_string(&fields, "by")?,
            timestamp: millis(&fields, "timestamp")?,
            origin: None,
        })
    }

    /// Encodes a JSON-shaped output event (as slaguard serializes it) with `schema`.
    pub fn encode(schema: &Schema, json: &Json, format: Format) -> Result<Vec<u8>, String> {
        let value = json_to_avro(json, schema)?;
        let datum = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .and_then(|w| w.write_value_to_vec(value))
            .map_err(|e| e.to_string())?;
        Ok(match format {
            Format::Json | Format::Avro => datum,
            Format::Confluent(id) => {
                let mut out = Vec::with_capacity(datum.len() + 5);
                out.push(0);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&datum);
                out
            }
        })
    }
}

fn body(bytes: &[u8], format: Format) -> Result<&[u8], Reason> {
    match format {
        Format::Confluent(_) => match bytes {
            [0, _, _, _, _, rest @ ..] => Ok(rest),
            _ => Err(Reason::NotAvro(
                "no Confluent header (magic byte 0 and a 4-byte schema id)".to_string(),
            )),
        },
        _ => Ok(bytes),
    }
}

fn record(
    reader: &GenericDatumReader<'_>,
    mut bytes: &[u8],
) -> Result<Vec<(String, Avro)>, Reason> {
    let value = reader
        .read_value(&mut bytes)
        .map_err(|e| Reason::NotAvro(e.to_string()))?;
    if !bytes.is_empty() {
        return Err(Reason::NotAvro(format!(
            "{} bytes left after the record",
            bytes.len()
        )));
    }
    match value {
        Avro::Record(fields) => Ok(fields),
        other => Err(Reason::NotAvro(format!(
            "expected a record, found {other:?}"
        ))),
    }
}

/// A field's value, with a union unwrapped.
fn field<'a>(fields: &'a [(String, Avro)], name: &str) -> &'a Avro {
    let v = fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or(&Avro::Null);
    match v {
        Avro::Union(_, inner) => inner,
        other => other,
    }
}

/// A map of strings, sorted by key (Avro leaves map order undefined).
fn string_map(fields: &[(String, Avro)], name: &str) -> BTreeMap<String, String> {
    match field(fields, name) {
        Avro::Map(m) => m
            .iter()
            .filter_map(|(k, v)| match v {
                Avro::String(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn string(fields: &[(String, Avro)], name: &str) -> Result<String, Reason> {
    opt_string(fields, name)?.ok_or_else(|| Reason::MissingField(name.to_string()))
}

fn opt_string(fields: &[(String, Avro)], name: &str) -> Result<Option<String>, Reason> {
    match field(fields, name) {
        Avro::Null => Ok(None),
        Avro::String(s) => Ok(Some(s.clone())),
        other => Err(Reason::WrongType {
            field: name.to_string(),
            detail: format!("expected a string, found {other:?}"),
        }),
    }
}

fn opt_f64(fields: &[(String, Avro)], name: &str) -> Result<Option<f64>, Reason> {
    match field(fields, name) {
        Avro::Null => Ok(None),
        Avro::Double(d) => Ok(Some(*d)),
        Avro::Float(f) => Ok(Some(f64::from(*f))),
        other => Err(Reason::WrongType {
            field: name.to_string(),
            detail: format!("expected a double, found {other:?}"),
        }),
    }
}

fn millis(fields: &[(String, Avro)], name: &str) -> Result<i64, Reason> {
    match field(fields, name) {
        Avro::TimestampMillis(t) | Avro::Long(t) => Ok(*t),
        other => Err(Reason::BadTimestamp(format!(
            "expected timestamp-millis, found {other:?}"
        ))),
    }
}

/// Converts a JSON value into the Avro value `schema` describes; unions take the first
/// branch the JSON fits.
pub fn json_to_avro(json: &Json, schema: &Schema) -> Result<Avro, String> {
    match (schema, json) {
        (Schema::Union(u), j) => {
            for (i, variant) in u.variants().iter().enumerate() {
                let fits = matches!(
                    (variant, j),
                    (Schema::Null, Json::Null)
                        | (Schema::String | Schema::Enum(_), Json::String(_))
                        | (Schema::Double | Schema::Float, Json::Number(_))
                        | (Schema::Long | Schema::Int, Json::Number(_))
                        | (Schema::Boolean, Json::Bool(_))
                        | (Schema::Record(_) | Schema::Map(_), Json::Object(_))
                        | (Schema::Array(_), Json::Array(_))
                );
                if fits {
                    return Ok(Avro::Union(i as u32, Box::new(json_to_avro(j, variant)?)));
                }
            }
            Err(format!("{j} fits no branch of the union"))
        }
        (Schema::Record(r), Json::Object(o)) => {
            if let Some(k) = o.keys().find(|k| !r.lookup.contains_key(*k)) {
                return Err(format!("field `{k}` is not in schema {}", r.name.name()));
            }
            let fields = r
                .fields
                .iter()
                .map(|f| {
                    Ok((
                        f.name.clone(),
                        json_to_avro(o.get(&f.name).unwrap_or(&Json::Null), &f.schema)?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Avro::Record(fields))
        }
        (Schema::Map(m), Json::Object(o)) => Ok(Avro::Map(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), json_to_avro(v, &m.types)?)))
                .collect::<Result<_, String>>()?,
        )),
        (Schema::Array(a), Json::Array(items)) => Ok(Avro::Array(
            items
                .iter()
                .map(|v| json_to_avro(v, &a.items))
                .collect::<Result<_, String>>()?,
        )),
        (Schema::Enum(e), Json::String(s)) => e
            .symbols
            .iter()
            .position(|x| x == s)
            .map(|i| Avro::Enum(i as u32, s.clone()))
            .ok_or_else(|| format!("`{s}` is not a symbol of {}", e.name.name())),
        (Schema::String, Json::String(s)) => Ok(Avro::String(s.clone())),
        (Schema::Double, Json::Number(n)) => n
            .as_f64()
            .map(Avro::Double)
            .ok_or_else(|| format!("{n} is not a double")),
        (Schema::Long, Json::Number(n)) => n
            .as_i64()
            .map(Avro::Long)
            .ok_or_else(|| format!("{n} is not a long")),
        (Schema::Int, Json::Number(n)) => n
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .map(Avro::Int)
            .ok_or_else(|| format!("{n} is not an int")),
        (Schema::Boolean, Json::Bool(b)) => Ok(Avro::Boolean(*b)),
        (Schema::TimestampMillis, Json::Number(n)) => n
            .as_i64()
            .map(Avro::TimestampMillis)
            .ok_or_else(|| format!("{n} is not a timestamp")),
        (Schema::Null, Json::Null) => Ok(Avro::Null),
        (s, j) => Err(format!("{j} does not fit {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codecs() -> Codecs {
        Codecs::new().expect("schemas parse")
    }

    #[test]
    fn inference_round_trip_matches_json_decoding() {
        let c = codecs();
        let json = serde_json::json!({"request_id": "r-1", "model_id": "fraud", "model_version": "2.3.0",
            "timestamp": 1_793_534_400_123i64, "latency_ms": 12.5, "status": "ok",
            "prediction": {"score": 0.93, "label": "1", "value": null},
            "features": {"amount": 120.5, "country": "DE", "age": null},
            "attributes": {"region": "eu-west", "tier": "gold"}});
        for format in [Format::Avro, Format::Confluent(42)] {
            let bytes = Codecs::encode(c.inference, &json, format).expect("encode");
            if let Format::Confluent(_) = format {
                assert_eq!(&bytes[..5], &[0, 0, 0, 0, 42]);
            }
            let from_avro = c.inference(&bytes, format).expect("decode");
            let from_json = decode::inference(json.to_string().as_bytes()).expect("json");
            let mut from_json_sorted = from_json.clone();
            from_json_sorted.attributes.sort();
            from_json_sorted.features.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(from_avro, from_json_sorted);
        }
    }

    #[test]
    fn bad_avro_is_a_reason() {
        let c = codecs();
        assert_eq!(
            c.inference(b"\x02", Format::Avro)
                .expect_err("truncated")
                .code(),
            "not_avro"
        );
        assert_eq!(
            c.label(b"{}", Format::Confluent(1))
                .expect_err("no header")
                .code(),
            "not_avro"
        );
        let json = serde_json::json!({"request_id": "r", "model_id": "m", "timestamp": 1i64, "label": null, "value": null});
        let bytes = Codecs::encode(c.label, &json, Format::Avro).expect("encode");
        assert_eq!(
            c.label(&bytes, Format::Avro).expect_err("no label").code(),
            "missing_field"
        );
        let json = serde_json::json!({"request_id": "r", "model_id": "m", "timestamp": 1i64, "latency_ms": 5.0,
            "status": "ok", "prediction": {"score": 3.0}, "features": {}, "attributes": {}});
        let bytes = Codecs::encode(c.inference, &json, Format::Avro).expect("encode");
        assert_eq!(
            c.inference(&bytes, Format::Avro).expect_err("score").code(),
            "invalid_value"
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse("confluent:7"), Ok(Format::Confluent(7)));
        assert_eq!(Format::parse("avro"), Ok(Format::Avro));
        assert!(Format::parse("protobuf").is_err());
    }
}
