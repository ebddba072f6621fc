//! Dead letters: input that could not be used, kept with where it came from and why.
//!
//! Nothing is dropped silently: every rejected message becomes a [`DeadLetter`] carrying its
//! original bytes, its position (file and line, or topic, partition and offset) and a
//! [`Reason`] with a stable machine-readable code.

use serde::{Deserialize, Serialize};

/// Which input stream a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    Inferences,
    Labels,
    Acks,
}

impl InputKind {
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Inferences => "inferences",
            InputKind::Labels => "labels",
            InputKind::Acks => "acks",
        }
    }
}

/// Where a message sits in its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Position {
    Line {
        file: String,
        line: u64,
    },
    Offset {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// A message as it arrived: enough to write it to a dead-letter output unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub input: InputKind,
    pub position: Position,
    pub raw: Vec<u8>,
}

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("not valid Avro for its schema: {0}")]
    NotAvro(String),
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("field `{field}` has the wrong type: {detail}")]
    WrongType { field: String, detail: String },
    #[error("bad timestamp: {0} (use RFC 3339 or integer epoch milliseconds)")]
    BadTimestamp(String),
    #[error("invalid `{field}`: {detail}")]
    InvalidValue { field: String, detail: String },
    #[error("unknown model `{0}`: it is not in the SLA configuration")]
    UnknownModel(String),
    #[error("acknowledgement matches no open incident: {0}")]
    NoOpenIncident(String),
    #[error("acknowledgement names unknown objective `{objective}` of model `{model_id}`")]
    UnknownObjective { model_id: String, objective: String },
    #[error("timestamp {time} is {ahead} ahead of the latest event time seen ({latest}); raise defaults.max_time_jump if such gaps are real")]
    TimeJump {
        time: String,
        ahead: String,
        latest: String,
    },
}

impl Reason {
    /// A stable code for counting and filtering dead letters.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NotJson(_) => "not_json",
            Reason::NotAvro(_) => "not_avro",
            Reason::MissingField(_) => "missing_field",
            Reason::WrongType { .. } => "wrong_type",
            Reason::BadTimestamp(_) => "bad_timestamp",
            Reason::InvalidValue { .. } => "invalid_value",
            Reason::UnknownModel(_) => "unknown_model",
            Reason::NoOpenIncident(_) => "no_open_incident",
            Reason::UnknownObjective { .. } => "unknown_objective",
            Reason::TimeJump { .. } => "time_jump",
        }
    }

    pub fn invalid(field: &str, detail: impl Into<String>) -> Reason {
        Reason::InvalidValue {
            field: field.to_string(),
            detail: detail.into(),
        }
    }
}

/// A rejected message with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub origin: Origin,
    pub reason: Reason,
}

/// A position as the fields of a dead-letter line: `file` and `line`, or `topic`,
/// `partition` and `offset`.
#[derive(Serialize)]
pub struct PositionFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

impl<'a> From<&'a Position> for PositionFields<'a> {
    fn from(p: &'a Position) -> Self {
        match p {
            Position::Line { file, line } => PositionFields {
                file: Some(file),
                line: Some(*line),
                topic: None,
                partition: None,
                offset: None,
            },
            Position::Offset {
                topic,
                partition,
                offset,
            } => PositionFields {
                file: None,
                line: None,
                topic: Some(topic),
                partition: Some(*partition),
                offset: Some(*offset),
            },
        }
    }
}

/// The JSON line written to `dead_letters.jsonl`.
#[derive(Serialize)]
pub struct DeadLetterRecord<'a> {
    pub input: InputKind,
    #[serde(flatten)]
    pub position: PositionFields<'a>,
    pub reason: &'static str,
    pub detail: String,
    /// The original message when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<&'a str>,
    /// The original message as hex when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_hex: Option<String>,
    pub sla_version: &'a str,
}

impl DeadLetter {
    pub fn record<'a>(&'a self, sla_version: &'a str) -> DeadLetterRecord<'a> {
        let (raw, raw_hex) = match std::str::from_utf8(&self.origin.raw) {
            Ok(s) => (Some(s), None),
            Err(_) => (
                None,
                Some(self.origin.raw.iter().map(|b| format!("{b:02x}")).collect()),
            ),
        };
        DeadLetterRecord {
            input: self.origin.input,
            position: (&self.origin.position).into(),
            reason: self.reason.code(),
            detail: self.reason.to_string(),
            raw,
            raw_hex,
            sla_version,
        }
    }
}
