//! A synthetic, scripted two-model scenario for tests, demos and benchmarks.
//!
//! `fraud` is a binary classifier segmented by region; `eta` is a regressor segmented by
//! model version. The script (minutes from the start):
//! - 60–100: in `eu-west`, 40% of fraud labels contradict the model (an accuracy drop in
//!   one segment);
//! - 130–140: 25% of fraud requests fail (an error burst);
//! - 160–170: eta latency is six times its usual (a latency spike);
//! - 150 on: the fraud model's `amount` feature is 2.5 times its usual size (drift).
//!
//! Around them: delayed labels (some never come, some after the TTL, some before their
//! prediction), duplicate lines, and, when asked, malformed lines of every kind.
//!
//! Generation is deterministic for a seed and writes to any `Write`; it reads no clock.

use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};
use serde::Serialize;

use crate::time::{format_rfc3339, Millis};

/// The scripted incidents, in minutes from the start.
pub const ACCURACY_DROP: (i64, i64) = (60, 100);
pub const ERROR_BURST: (i64, i64) = (130, 140);
pub const LATENCY_SPIKE: (i64, i64) = (160, 170);
/// From this minute on, the fraud model's `amount` feature is 2.5 times its usual size.
pub const AMOUNT_SHIFT: i64 = 150;
/// The fraud model's reference profile, written beside `sla.yaml`.
pub const REFERENCE_FILE: &str = "fraud-reference.json";

/// What to generate.
#[derive(Debug, Clone)]
pub struct ScenarioSpec {
    /// Event time of the first request.
    pub start: Millis,
    pub duration_ms: Millis,
    /// Inferences per second, per model.
    pub rate: f64,
    pub seed: u64,
    /// Whether to mix malformed lines into the inputs.
    pub bad_lines: bool,
}

impl Default for ScenarioSpec {
    fn default() -> Self {
        ScenarioSpec {
            start: 1_793_491_200_000, // 2026-11-01T00:00:00Z
            duration_ms: 6 * 3_600_000,
            rate: 10.0,
            seed: 7,
            bad_lines: true,
        }
    }
}

/// Lines written, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioCounts {
    pub inferences: u64,
    pub labels: u64,
    pub acks: u64,
    pub duplicate_inferences: u64,
    pub duplicate_labels: u64,
    pub bad_lines: u64,
}

/// The SLA file that goes with the scenario; `{throughput}` is filled from the rate.
const SLA_TEMPLATE: &str = r#"sla_version: "scenario-1"
defaults: {evaluate_every: 1m, allowed_lateness: 30s, label_ttl: 1h, early_label_ttl: 10m}
models:
  - model_id: fraud
    task: binary_classification
    owner: risk-ml
    runbook: https://runbooks.example/fraud
    decision_threshold: 0.5
    positive_label: "1"
    label_ttl: 30m
    segment_by: [region]
    reference: {file: fraud-reference.json}
    escalation: default
    objectives:
      - {name: accuracy, metric: accuracy, op: ">=", target: 0.75, warn_at: 0.8, window: 10m, min_samples: 100}
      - {name: auc, metric: roc_auc, op: ">=", target: 0.85, window: 15m, min_samples: 200, segment_by: []}
      - {name: errors, metric: error_rate, op: "<=", target: 0.05, window: 5m, for: 2, clear_for: 3, segment_by: []}
      - {name: p99, metric: latency_p99, op: "<=", target: 250, window: 5m, segment_by: []}
      - {name: coverage, metric: label_coverage, op: ">=", target: 0.9, window: 30m, min_samples: 100, segment_by: []}
      - {name: label-delay, metric: label_delay_p95, op: "<=", target: 900000, window: 30m, segment_by: []}
      - {name: amount-drift, metric: psi, feature: amount, op: "<=", target: 0.25, warn_at: 0.1, window: 30m, min_samples: 500, segment_by: []}
      - {name: country-drift, metric: js_distance, feature: country, op: "<=", target: 0.1, window: 30m, min_samples: 500, segment_by: []}
      - {name: amount-missing, metric: missing_rate, feature: amount, op: "<=", target: 0.05, window: 10m, min_samples: 100, segment_by: []}
  - model_id: eta
    task: regression
    owner: logistics-ml
    segment_by: [model_version]
    objectives:
      - {name: mae, metric: mae, op: "<=", target: 3.5, window: 15m, min_samples: 50}
      - {name: rmse, metric: rmse, op: "<=", target: 5, warn_at: 4.5, resolve_at: 4.2, window: 15m, min_samples: 50, segment_by: []}
      - {name: p95, metric: latency_p95, op: "<=", target: 150, window: 5m, segment_by: []}
      - {name: throughput, metric: throughput, op: ">=", target: {throughput}, window: 5m, segment_by: []}
escalation_policies:
  default:
    levels:
      - {after: 0m, notify: ["team:risk-ml-oncall"]}
      - {after: 15m, notify: ["team:ml-platform"]}
      - {after: 45m, notify: ["role:head-of-ml"]}
service_credits:
  auc: [{below: 0.99, credit: 5}, {below: 0.9, credit: 10}]
  errors: [{below: 0.95, credit: 10}, {below: 0.9, credit: 25}]
"#;

/// The scenario's SLA file for `spec`.
pub fn sla_yaml(spec: &ScenarioSpec) -> String {
    SLA_TEMPLATE.replace("{throughput}", &format!("{}", spec.rate * 0.5))
}

#[derive(Serialize)]
struct InferenceLine<'a> {
    request_id: &'a str,
    model_id: &'static str,
    model_version: &'static str,
    timestamp: String,
    latency_ms: f64,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prediction: Option<PredictionLine>,
    attributes: Attributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<FraudFeatures>,
}

/// The fraud model's inputs: `amount` (sometimes missing) and `country`.
#[derive(Serialize, Clone, Copy)]
struct FraudFeatures {
    amount: Option<f64>,
    country: &'static str,
}

/// Draws the fraud features of a request at scenario minute `m`.
fn fraud_features(rng: &mut ChaCha8Rng, amount: &LogNormal<f64>, m: i64) -> FraudFeatures {
    let factor = if m >= AMOUNT_SHIFT { 2.5 } else { 1.0 };
    let value = (amount.sample(rng) * factor * 100.0).round() / 100.0;
    let missing = rng.random::<f64>() < 0.01;
    let country = match rng.random::<f64>() {
        x if x < 0.4 => "DE",
        x if x < 0.7 => "US",
        x if x < 0.9 => "FR",
        _ => "GB",
    };
    FraudFeatures {
        amount: (!missing).then_some(value),
        country,
    }
}

fn amount_distribution() -> io::Result<LogNormal<f64>> {
    LogNormal::new(50f64.ln(), 0.8).map_err(io::Error::other)
}

/// The fraud model's reference profile: 20,000 requests before any shift, drawn from a
/// stream of their own.
pub fn reference_profile(spec: &ScenarioSpec) -> io::Result<crate::profile::Profile> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed.wrapping_add(1_000_003));
    let amount = amount_distribution()?;
    let events: Vec<crate::event::Inference> = (0..20_000)
        .map(|i| {
            let f = fraud_features(&mut rng, &amount, 0);
            let mut features = vec![(
                "country".to_string(),
                crate::event::FeatureValue::Text(f.country.to_string()),
            )];
            features.push((
                "amount".to_string(),
                f.amount.map_or(
                    crate::event::FeatureValue::Missing,
                    crate::event::FeatureValue::Number,
                ),
            ));
            crate::event::Inference {
                request_id: format!("ref-{i}"),
                model_id: "fraud".into(),
                model_version: None,
                timestamp: spec.start,
                latency_ms: None,
                status: crate::event::Status::Ok,
                prediction: None,
                attributes: Vec::new(),
                features,
            }
        })
        .collect();
    Ok(crate::profile::Profile::build(&events))
}

/// Writes the whole scenario into `dir`: inferences.jsonl, labels.jsonl, acks.jsonl,
/// sla.yaml and the reference profile it names.
pub fn write_dir(spec: &ScenarioSpec, dir: &std::path::Path) -> io::Result<ScenarioCounts> {
    use std::io::BufWriter;
    std::fs::create_dir_all(dir)?;
    let create = |name: &str| std::fs::File::create(dir.join(name)).map(BufWriter::new);
    let (mut i, mut l, mut a) = (
        create("inferences.jsonl")?,
        create("labels.jsonl")?,
        create("acks.jsonl")?,
    );
    let counts = generate(spec, &mut i, &mut l, &mut a)?;
    for w in [&mut i, &mut l, &mut a] {
        w.flush()?;
    }
    std::fs::write(dir.join("sla.yaml"), sla_yaml(spec))?;
    let profile =
        serde_json::to_string_pretty(&reference_profile(spec)?).map_err(io::Error::other)?;
    std::fs::write(dir.join(REFERENCE_FILE), profile)?;
    Ok(counts)
}

#[derive(Serialize)]
struct PredictionLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
}

#[derive(Serialize)]
struct Attributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'static str>,
}

#[derive(Serialize)]
struct LabelLine<'a> {
    request_id: &'a str,
    model_id: &'static str,
    timestamp: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
}

const BAD_INFERENCES: [&str; 6] = [
    "{\"request_id\": \"broken\", \"model_id\": \"fraud\"",
    r#"{"model_id":"fraud","timestamp":"2026-11-01T00:00:00Z","status":"ok","prediction":{"score":0.5}}"#,
    r#"{"request_id":"bad-ts","model_id":"fraud","timestamp":"yesterday","status":"ok","prediction":{"score":0.5}}"#,
    r#"{"request_id":"ghost-1","model_id":"ghost","timestamp":1793491200000,"status":"ok","prediction":{"score":0.5}}"#,
    r#"{"request_id":"bad-type","model_id":"eta","timestamp":1793491200000,"latency_ms":"fast","prediction":{"value":1}}"#,
    r#"{"request_id":"bad-score","model_id":"fraud","timestamp":1793491200000,"prediction":{"score":1.7}}"#,
];
const BAD_LABELS: [&str; 3] = [
    r#"{"request_id":"no-label","model_id":"fraud","timestamp":1793491200000}"#,
    r#"{"request_id":"bad-ts","model_id":"fraud","timestamp":"12:00","label":"1"}"#,
    r#"{"request_id":"ghost-2","model_id":"ghost","timestamp":1793491200000,"label":"1"}"#,
];

struct PendingLabel {
    time: Millis,
    line: Vec<u8>,
}

fn minute(spec: &ScenarioSpec, t: Millis) -> i64 {
    (t - spec.start).div_euclid(60_000)
}

fn within(m: i64, span: (i64, i64)) -> bool {
    m >= span.0 && m < span.1
}

/// Writes the scenario's inferences, labels and acks, each in event-time order.
pub fn generate(
    spec: &ScenarioSpec,
    inferences: &mut impl Write,
    labels: &mut impl Write,
    acks: &mut impl Write,
) -> io::Result<ScenarioCounts> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut counts = ScenarioCounts::default();
    let spacing = 1000.0 / spec.rate.max(0.001);
    let n = (spec.duration_ms as f64 / spacing) as u64;
    let unit = |rng: &mut ChaCha8Rng| rng.random::<f64>();
    let normal = Normal::<f64>::new(0.0, 1.0).map_err(io::Error::other)?;
    let fraud_latency = LogNormal::new(40f64.ln(), 0.5).map_err(io::Error::other)?;
    let eta_latency = LogNormal::new(60f64.ln(), 0.4).map_err(io::Error::other)?;
    let fraud_delay = Exp::new(1.0 / 180_000.0).map_err(io::Error::other)?;
    let eta_delay = Exp::new(1.0 / 60_000.0).map_err(io::Error::other)?;
    let mut pending: Vec<PendingLabel> = Vec::new();
    // Features draw from a stream of their own, so the other draws do not depend on them.
    let mut feature_rng = ChaCha8Rng::seed_from_u64(spec.seed.wrapping_add(7_919));
    let amount = amount_distribution()?;
    let mut line = Vec::with_capacity(512);

    for i in 0..n {
        for model in 0..2 {
            let jitter = unit(&mut rng) * spacing * 0.5;
            let t =
                spec.start + (i as f64 * spacing + jitter + model as f64 * spacing * 0.5) as Millis;
            let m = minute(spec, t);
            let request_id = format!("{}-{i}", if model == 0 { "f" } else { "e" });
            line.clear();
            if model == 0 {
                let region = match unit(&mut rng) {
                    x if x < 0.4 => "eu-west",
                    x if x < 0.8 => "us-east",
                    _ => "ap-south",
                };
                let error_p = if within(m, ERROR_BURST) { 0.25 } else { 0.01 };
                let failed = unit(&mut rng) < error_p;
                let truth = unit(&mut rng) < 0.3;
                let z = if truth { 1.2 } else { -1.2 } + normal.sample(&mut rng);
                let score = ((1.0 / (1.0 + (-z).exp())) * 1e6).round() / 1e6;
                let latency = (fraud_latency.sample(&mut rng) * 100.0).round() / 100.0;
                serde_json::to_writer(
                    &mut line,
                    &InferenceLine {
                        request_id: &request_id,
                        model_id: "fraud",
                        model_version: "2.3.0",
                        timestamp: format_rfc3339(t),
                        latency_ms: latency,
                        status: if failed { "error" } else { "ok" },
                        prediction: (!failed).then_some(PredictionLine {
                            score: Some(score),
                            value: None,
                        }),
                        attributes: Attributes {
                            region: Some(region),
                        },
                        features: Some(fraud_features(&mut feature_rng, &amount, m)),
                    },
                )?;
                if !failed {
                    let r = unit(&mut rng);
                    if r >= 0.04 {
                        let delay = if r < 0.05 {
                            35 * 60_000
                        } else {
                            (fraud_delay.sample(&mut rng) as Millis).min(25 * 60_000)
                        };
                        let flip =
                            region == "eu-west" && within(m, ACCURACY_DROP) && unit(&mut rng) < 0.4;
                        let observed = truth != flip;
                        let mut l = Vec::new();
                        serde_json::to_writer(
                            &mut l,
                            &LabelLine {
                                request_id: &request_id,
                                model_id: "fraud",
                                timestamp: t + delay,
                                label: Some(if observed { "1" } else { "0" }),
                                value: None,
                            },
                        )?;
                        pending.push(PendingLabel {
                            time: t + delay,
                            line: l,
                        });
                    }
                }
            } else {
                let version = if unit(&mut rng) < 0.7 {
                    "1.4.0"
                } else {
                    "1.5.0-canary"
                };
                let truth = 30.0 + 8.0 * normal.sample(&mut rng);
                let predicted = ((truth + 3.0 * normal.sample(&mut rng)) * 1000.0).round() / 1000.0;
                let truth = (truth * 1000.0).round() / 1000.0;
                let slow = if within(m, LATENCY_SPIKE) { 6.0 } else { 1.0 };
                let latency = (eta_latency.sample(&mut rng) * slow * 100.0).round() / 100.0;
                serde_json::to_writer(
                    &mut line,
                    &InferenceLine {
                        request_id: &request_id,
                        model_id: "eta",
                        model_version: version,
                        timestamp: format_rfc3339(t),
                        latency_ms: latency,
                        status: "ok",
                        prediction: Some(PredictionLine {
                            score: None,
                            value: Some(predicted),
                        }),
                        attributes: Attributes { region: None },
                        features: None,
                    },
                )?;
                let r = unit(&mut rng);
                if r >= 0.02 {
                    let delay = if r < 0.03 {
                        -500
                    } else {
                        eta_delay.sample(&mut rng) as Millis
                    };
                    let mut l = Vec::new();
                    serde_json::to_writer(
                        &mut l,
                        &LabelLine {
                            request_id: &request_id,
                            model_id: "eta",
                            timestamp: t + delay,
                            label: None,
                            value: Some(truth),
                        },
                    )?;
                    pending.push(PendingLabel {
                        time: t + delay,
                        line: l,
                    });
                }
            }
            line.push(b'\n');
            inferences.write_all(&line)?;
            counts.inferences += 1;
            if unit(&mut rng) < 0.005 {
                inferences.write_all(&line)?;
                counts.duplicate_inferences += 1;
            }
            if spec.bad_lines && counts.inferences % 2000 == 0 {
                let bad =
                    BAD_INFERENCES[(counts.inferences / 2000) as usize % BAD_INFERENCES.len()];
                inferences.write_all(bad.as_bytes())?;
                inferences.write_all(b"\n")?;
                counts.bad_lines += 1;
            }
        }
    }

    // An export covers one time range: labels after its end are not in it.
    let end = spec.start + spec.duration_ms;
    pending.retain(|p| p.time < end);
    pending.sort_by_key(|p| p.time);
    for (j, p) in pending.iter().enumerate() {
        labels.write_all(&p.line)?;
        labels.write_all(b"\n")?;
        counts.labels += 1;
        if unit(&mut rng) < 0.003 {
            labels.write_all(&p.line)?;
            labels.write_all(b"\n")?;
            counts.duplicate_labels += 1;
        }
        if spec.bad_lines && j % 3000 == 2999 {
            labels.write_all(BAD_LABELS[(j / 3000) % BAD_LABELS.len()].as_bytes())?;
            labels.write_all(b"\n")?;
            counts.bad_lines += 1;
        }
    }

    // An on-call engineer acknowledges the eu-west accuracy incident 20 minutes in, and
    // someone acknowledges an incident that does not exist (a dead letter).
    let ack_lines = [
        (
            20,
            r#"{"model_id":"fraud","objective":"accuracy","segment":{"region":"eu-west"},"action":"acknowledge","by":"oncall-risk","timestamp":"#,
        ),
        (
            ACCURACY_DROP.0 + 20,
            r#"{"model_id":"fraud","objective":"accuracy","segment":{"region":"eu-west"},"action":"acknowledge","by":"oncall-risk","timestamp":"#,
        ),
    ];
    for (m, prefix) in ack_lines {
        let t = spec.start + m * 60_000;
        if t < spec.start + spec.duration_ms {
            writeln!(acks, "{prefix}{t}}}")?;
            counts.acks += 1;
        }
    }
    Ok(counts)
}
