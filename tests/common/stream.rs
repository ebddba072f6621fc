//! Crafted streams fed straight into the engine: requests with a status, and acks, in
//! event-time order, with every output collected.

use std::sync::Arc;

use slaguard::config;
use slaguard::dead_letter::{DeadLetter, InputKind, Origin, Position};
use slaguard::decode;
use slaguard::engine::Engine;
use slaguard::output::{BreachEvent, EscalationEvent, MetricSnapshot, Output};

/// An aligned start (a multiple of 5 minutes).
pub const T0: i64 = 1_793_534_400_000;
pub const MINUTE: i64 = 60_000;

pub enum Input {
    /// A request of model `m` at `time`, ok or failed.
    Request { time: i64, ok: bool },
    /// An ack event, as JSON.
    Ack(String),
}

/// Everything one run emitted, sorted by kind.
#[derive(Default)]
pub struct Outputs {
    pub metrics: Vec<MetricSnapshot>,
    pub breaches: Vec<BreachEvent>,
    pub escalations: Vec<EscalationEvent>,
    pub dead_letters: Vec<DeadLetter>,
    /// Every output serialised, in emission order (for determinism checks).
    pub lines: Vec<String>,
}

/// Feeds `inputs` (in time order) to an engine for `yaml` and ends the stream.
pub fn run(yaml: &str, inputs: impl IntoIterator<Item = Input>) -> Outputs {
    let cfg = Arc::new(config::parse(yaml, "t.yaml", None).expect("valid SLA"));
    run_config(cfg, inputs)
}

/// [`run`] with a configuration already loaded.
pub fn run_config(cfg: Arc<config::SlaConfig>, inputs: impl IntoIterator<Item = Input>) -> Outputs {
    let mut e = Engine::new(cfg);
    let source = e.add_source();
    let mut out = Outputs::default();
    for (i, input) in inputs.into_iter().enumerate() {
        match input {
            Input::Request { time, ok } => {
                let status = if ok { "ok" } else { "error" };
                let line = format!(
                    r#"{{"request_id":"r{i}","model_id":"m","timestamp":{time},"latency_ms":10,"status":"{status}","prediction":{{"value":1}}}}"#
                );
                e.handle_inference(
                    source,
                    &decode::inference(line.as_bytes()).expect("inference"),
                )
                .expect("accepted");
            }
            Input::Ack(line) => {
                let mut ack = decode::ack(line.as_bytes()).expect("ack");
                ack.origin = Some(Origin {
                    input: InputKind::Acks,
                    position: Position::Line {
                        file: "acks".into(),
                        line: i as u64 + 1,
                    },
                    raw: line.into_bytes(),
                });
                e.handle_ack(ack).expect("ack accepted");
            }
        }
        collect(&mut e, &mut out);
    }
    e.end_source(source);
    e.finish();
    collect(&mut e, &mut out);
    out
}

fn collect(e: &mut Engine, out: &mut Outputs) {
    while let Some(o) = e.poll_output() {
        match o {
            Output::Metric(m) => {
                out.lines.push(serde_json::to_string(&m).expect("json"));
                out.metrics.push(m);
            }
            Output::Breach(b) => {
                out.lines.push(serde_json::to_string(&b).expect("json"));
                out.breaches.push(b);
            }
            Output::Escalation(x) => {
                out.lines.push(serde_json::to_string(&x).expect("json"));
                out.escalations.push(x);
            }
            Output::DeadLetter(d) => out.dead_letters.push(d),
        }
    }
}

/// Minutes since [`T0`] of an RFC 3339 time.
pub fn minute(t: &str) -> i64 {
    (slaguard::time::parse_rfc3339(t).expect("time") - T0) / MINUTE
}

/// Requests every `spacing` ms over `[from, to)`, failing where `fails(index, time)` says.
pub fn requests(
    from: i64,
    to: i64,
    spacing: i64,
    mut fails: impl FnMut(i64, i64) -> bool,
) -> Vec<Input> {
    (0..)
        .map(|i| (i, from + i * spacing))
        .take_while(|(_, t)| *t < to)
        .map(|(i, time)| Input::Request {
            time,
            ok: !fails(i, time),
        })
        .collect()
}
