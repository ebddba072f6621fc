//! `slaguard demo`: the whole system on one machine with nothing installed. librdkafka's
//! in-process mock cluster stands in for Kafka; the scripted scenario (src/scenario.rs)
//! is produced on an accelerated event clock; `run` processes it as a consumer group; and
//! a live view shows every objective's value against its target and each breach as it
//! opens and resolves. It stops by itself after the requested wall-clock time.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::http::HttpServer;
use crate::kafka::processor::{self, RunOptions, RunSummary};
use crate::kafka::{KafkaSettings, KafkaShellError};
use crate::otel::Otel;
use crate::scenario::{self, ScenarioSpec};
use crate::telemetry::Telemetry;
use crate::time::{format_rfc3339, Millis};

/// What the demo saw.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    pub produced: u64,
    pub opened: u64,
    pub resolved: u64,
    pub run: RunSummary,
}

/// The mock cluster: alive as long as the client that created it.
struct MockKafka {
    producer: BaseProducer,
    bootstrap: String,
}

impl MockKafka {
    fn start(topics: &[(String, i32)]) -> Result<MockKafka, KafkaShellError> {
        let producer: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .set("linger.ms", "5")
            .create()?;
        let (bootstrap, ptr) = {
            let mock = producer.client().mock_cluster().ok_or_else(|| {
                KafkaShellError::Invalid("librdkafka did not create a mock cluster".into())
            })?;
            for (t, p) in topics {
                mock.create_topic(t, *p, 1)?;
            }
            // SAFETY: the handle belongs to `producer`, which outlives this call.
            let ptr = unsafe {
                rdkafka::bindings::rd_kafka_handle_mock_cluster(producer.client().native_ptr())
            };
            (mock.bootstrap_servers(), ptr)
        };
        if !ptr.is_null() {
            // A group join otherwise waits 3 s in the mock cluster.
            // SAFETY: `ptr` is the live mock cluster of `producer`.
            unsafe { rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(ptr, 0) };
        }
        Ok(MockKafka {
            producer,
            bootstrap,
        })
    }
}

/// One scenario line to produce at its event time.
struct Scheduled {
    time: Millis,
    topic: &'static str,
    key: Option<String>,
    line: Vec<u8>,
}

fn schedule(spec: &ScenarioSpec) -> Result<Vec<Scheduled>, KafkaShellError> {
    let (mut inf, mut lab, mut acks) = (Vec::new(), Vec::new(), Vec::new());
    scenario::generate(spec, &mut inf, &mut lab, &mut acks)
        .map_err(|e| KafkaShellError::Invalid(e.to_string()))?;
    let mut out = Vec::new();
    for (topic, bytes) in [("inferences", &inf), ("labels", &lab), ("acks", &acks)] {
        let mut last = spec.start;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let parsed: Option<Value> = serde_json::from_slice(line).ok();
            let time = parsed
                .as_ref()
                .and_then(|v| v.get("timestamp"))
                .and_then(|t| {
                    t.as_i64()
                        .or_else(|| t.as_str().and_then(crate::time::parse_rfc3339))
                })
                .unwrap_or(last);
            last = time;
            let key = parsed
                .as_ref()
                .and_then(|v| v.get("request_id"))
                .and_then(|r| r.as_str())
                .map(str::to_string);
            out.push(Scheduled {
                time,
                topic,
                key,
                line: line.to_vec(),
            });
        }
    }
    out.sort_by_key(|s| s.time);
    Ok(out)
}

/// Keeps the latest whole-model value of each objective, and prints.
struct View<W: Write> {
    out: W,
    tty: bool,
    latest: BTreeMap<(String, String), Value>,
    /// (model, objective) → "op target" as the SLA states it.
    targets: BTreeMap<(String, String), String>,
    events: Vec<String>,
    opened: u64,
    resolved: u64,
}

impl<W: Write> View<W> {
    fn metric(&mut self, v: Value) {
        if v["segment"].as_object().is_some_and(|s| s.is_empty()) {
            let key = (
                v["model_id"].as_str().unwrap_or_default().to_string(),
                v["objective"].as_str().unwrap_or_default().to_string(),
            );
            self.latest.insert(key, v);
        }
    }

    fn breach(&mut self, v: &Value) {
        let kind = v["kind"].as_str().unwrap_or_default();
        match kind {
            "opened" => self.opened += 1,
            "resolved" => self.resolved += 1,
            _ => {}
        }
        let segment = v["segment"].as_object().map(|s| {
            s.iter()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        });
        let line = format!(
            "{}  {:<16} {:<8} {}/{}{} observed {} (target {} {})",
            v["event_time"].as_str().unwrap_or_default(),
            kind.to_uppercase(),
            v["severity"].as_str().unwrap_or_default(),
            v["model_id"].as_str().unwrap_or_default(),
            v["objective"].as_str().unwrap_or_default(),
            segment
                .filter(|s| !s.is_empty())
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default(),
            v["observed"]
                .as_f64()
                .map_or("-".to_string(), |x| format!("{x:.4}")),
            v["op"].as_str().unwrap_or_default(),
            v["target"],
        );
        if !self.tty {
            let _ = writeln!(self.out, "{line}");
        }
        self.events.push(line);
    }

    fn draw(&mut self, sim_time: Millis, elapsed: Duration, produced: u64) {
        if !self.tty {
            let _ = writeln!(
                self.out,
                "[{:>3.0}s] event time {}, {} events produced, {} opened, {} resolved",
                elapsed.as_secs_f64(),
                format_rfc3339(sim_time),
                produced,
                self.opened,
                self.resolved
            );
            return;
        }
        let mut s = String::from("\x1b[2J\x1b[H");
        s.push_str(&format!(
            "slaguard demo — event time {} ({:.0}s), {} events produced\n\n",
            format_rfc3339(sim_time),
            elapsed.as_secs_f64(),
            produced
        ));
        s.push_str(&format!(
            "{:<8} {:<14} {:<16} {:>12}   {:<10} {:<7} {:<18}\n",
            "model", "objective", "metric", "value", "target", "window", "state"
        ));
        for ((model, objective), v) in &self.latest {
            let value = v["value"]
                .as_f64()
                .map_or("-".to_string(), |x| format!("{x:.4}"));
            let state = v["state"].as_str().unwrap_or_default();
            let mark = match state {
                "critical" => "\x1b[31m●\x1b[0m",
                "warning" => "\x1b[33m●\x1b[0m",
                "ok" => "\x1b[32m●\x1b[0m",
                _ => "\x1b[90m○\x1b[0m",
            };
            let target = self
                .targets
                .get(&(model.clone(), objective.clone()))
                .map_or("", String::as_str);
            s.push_str(&format!(
                "{model:<8} {objective:<14} {:<16} {value:>12}   {target:<10} {:<7} {mark} {state}\n",
                v["metric"].as_str().unwrap_or_default(),
                v["window"].as_str().unwrap_or_default()
            ));
        }
        s.push_str("\nbreaches:\n");
        for e in self.events.iter().rev().take(12).rev() {
            s.push_str(e);
            s.push('\n');
        }
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.flush();
    }
}

/// Runs the demo for `seconds` of wall-clock time, writing the live view to `out`,
/// serving the status page, `/metrics`, `/healthz` and `/readyz` on `http` if given, and
/// exporting the same figures over `otel` if given.
pub async fn demo(
    seconds: u64,
    mut out: impl Write,
    tty: bool,
    http: Option<HttpServer>,
    otel: Option<&mut Otel>,
) -> Result<DemoSummary, KafkaShellError> {
    let spec = ScenarioSpec {
        duration_ms: 3 * 3_600_000,
        rate: 2.0,
        seed: 7,
        bad_lines: true,
        ..ScenarioSpec::default()
    };
    let work = std::env::temp_dir().join(format!("slaguard-demo-{}", std::process::id()));
    scenario::write_dir(&spec, &work)
        .map_err(|e| KafkaShellError::Invalid(format!("demo scenario: {e}")))?;
    let mut cfg = config::load(&work.join("sla.yaml"))
        .map_err(|e| KafkaShellError::Invalid(e.to_string()))?;
    // Wall-clock seconds stand for minutes of event time here: partitions idle at the end
    // of the scenario should release the watermark quickly.
    cfg.defaults.idle_timeout = 2_000;
    let config = Arc::new(cfg);
    let settings = KafkaSettings::new("placeholder");
    let mut topics: Vec<(String, i32)> = vec![
        ("inferences".into(), 4),
        ("labels".into(), 4),
        ("acks".into(), 1),
    ];
    topics.extend(settings.output_topics().into_iter().map(|t| (t, 1)));
    topics.push((settings.output_topic("partials"), 1));
    topics.push((settings.output_topic("join-state"), 4));
    let mock = MockKafka::start(&topics)?;
    let settings = KafkaSettings::new(&mock.bootstrap);
    let schedule = schedule(&spec)?;

    let state_dir = work.join("state");
    let shutdown = CancellationToken::new();
    let options = RunOptions {
        group: "slaguard-demo".into(),
        state_dir: state_dir.clone(),
        commit_interval: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(5),
        instance_id: None,
        exactly_once: false,
        snapshot_interval: Duration::from_secs(60),
    };
    let telemetry = Arc::new(Telemetry::new(&config));
    if let Some(o) = otel {
        o.observe(&telemetry);
    }
    let serving = http.map(|server| {
        let _ = writeln!(
            out,
            "status page: http://{}/  (also /metrics, /healthz, /readyz)",
            server.local_addr()
        );
        let _ = out.flush();
        tokio::spawn(server.serve(Arc::clone(&telemetry), shutdown.child_token()))
    });
    // The demo's SLA never changes: the sender stays here, unused.
    let (_fixed, sla) = tokio::sync::watch::channel(Arc::clone(&config));
    let processor = tokio::spawn(processor::run_live(
        sla,
        settings.clone(),
        options,
        shutdown.clone(),
        Arc::clone(&telemetry),
    ));

    let viewer: BaseConsumer = settings
        .client_with(&[
            ("group.id", "slaguard-demo-view"),
            ("enable.auto.commit", "false"),
        ])
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for t in [
        settings.output_topic("metrics"),
        settings.output_topic("breaches"),
    ] {
        tpl.add_partition_offset(&t, 0, Offset::Beginning)?;
    }
    viewer.assign(&tpl)?;
    let targets = config
        .models
        .iter()
        .flat_map(|m| {
            m.objectives.iter().map(move |o| {
                (
                    (m.model_id.clone(), o.name.clone()),
                    format!("{} {}", o.op.symbol(), o.target),
                )
            })
        })
        .collect();
    let mut view = View {
        out,
        tty,
        latest: BTreeMap::new(),
        targets,
        events: Vec::new(),
        opened: 0,
        resolved: 0,
    };

    // The scenario plays in 85% of the time; the rest lets the last incidents resolve.
    let total = Duration::from_secs(seconds.max(5));
    let speed = spec.duration_ms as f64 / (total.as_secs_f64() * 0.85 * 1000.0);
    let started = Instant::now();
    let mut next = 0usize;
    let mut produced = 0u64;
    let mut last_draw = Instant::now();
    let breaches_topic = settings.output_topic("breaches");
    while started.elapsed() < total {
        let sim = spec.start + (started.elapsed().as_secs_f64() * 1000.0 * speed) as Millis;
        while next < schedule.len() && schedule[next].time <= sim {
            let s = &schedule[next];
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(s.topic).payload(&s.line);
            if let Some(k) = &s.key {
                record = record.key(k.as_bytes());
            }
            if mock.producer.send(record).is_err() {
                break; // queue full: try again on the next tick
            }
            next += 1;
            produced += 1;
        }
        mock.producer.poll(Duration::ZERO);
        while let Some(Ok(m)) = viewer.poll(Duration::ZERO) {
            if let Some(v) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
            {
                if m.topic() == breaches_topic {
                    view.breach(&v);
                } else {
                    view.metric(v);
                }
            }
        }
        if last_draw.elapsed() >= Duration::from_secs(1) {
            view.draw(
                sim.min(spec.start + spec.duration_ms),
                started.elapsed(),
                produced,
            );
            last_draw = Instant::now();
        }
        if processor.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = mock.producer.flush(Duration::from_secs(5));
    shutdown.cancel();
    let run = processor
        .await
        .map_err(|e| KafkaShellError::Invalid(format!("processor task: {e}")))??;
    while let Some(Ok(m)) = viewer.poll(Duration::from_millis(200)) {
        if let Some(v) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<Value>(p).ok())
        {
            if m.topic() == breaches_topic {
                view.breach(&v);
            }
        }
    }
    view.draw(spec.start + spec.duration_ms, started.elapsed(), produced);
    if let Some(serving) = serving {
        if let Ok(Err(e)) = serving.await {
            tracing::warn!(error = %e, "status server stopped");
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(DemoSummary {
        produced,
        opened: view.opened,
        resolved: view.resolved,
        run,
    })
}
