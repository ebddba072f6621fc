//! Throughput of `run` on a Kafka cluster against a consume-and-discard consumer: produces
//! the scripted scenario to fresh topics, reads them once with an rdkafka consumer created
//! with the same client settings as `run`'s (discarding every message), then runs the
//! consumer group until its checkpoint covers every input message, and prints both
//! events/s and their ratio.
//!
//!     bash scripts/kafka.sh start
//!     cargo run --release --example kafka_throughput -- 127.0.0.1:19092 6h 10

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use slaguard::kafka::processor::{self, RunOptions};
use slaguard::kafka::KafkaSettings;
use slaguard::scenario::{self, ScenarioSpec};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let brokers = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:19092".into());
    let duration = slaguard::time::parse_duration(args.get(2).map_or("6h", String::as_str))
        .map_err(anyhow::Error::msg)?;
    let rate: f64 = args.get(3).map_or(Ok(10.0), |r| r.parse())?;
    let spec = ScenarioSpec {
        duration_ms: duration,
        rate,
        ..ScenarioSpec::default()
    };
    let state = tempfile_dir()?;
    scenario::write_dir(&spec, &state)?;
    let inf = std::fs::read(state.join("inferences.jsonl"))?;
    let lab = std::fs::read(state.join("labels.jsonl"))?;

    let prefix = format!("bench-{}.", std::process::id());
    let mut s = KafkaSettings::new(&brokers);
    s.inferences_topic = format!("{prefix}inferences");
    s.labels_topic = format!("{prefix}labels");
    s.acks_topic = format!("{prefix}acks");
    s.output_prefix = format!("{prefix}sla.");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    let mut topics = vec![
        NewTopic::new(&s.inferences_topic, 4, TopicReplication::Fixed(1)),
        NewTopic::new(&s.labels_topic, 4, TopicReplication::Fixed(1)),
        NewTopic::new(&s.acks_topic, 1, TopicReplication::Fixed(1)),
    ];
    let outputs = s.output_topics();
    topics.extend(
        outputs
            .iter()
            .map(|t| NewTopic::new(t, 2, TopicReplication::Fixed(1))),
    );
    admin.create_topics(&topics, &AdminOptions::new()).await?;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .create()?;
    let mut total = 0u64;
    for (topic, bytes) in [(&s.inferences_topic, &inf), (&s.labels_topic, &lab)] {
        let mut pending = Vec::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let key = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["request_id"].as_str().map(str::to_string));
            let mut r = FutureRecord::to(topic).payload(line);
            if let Some(k) = key.as_deref() {
                r = r.key(k.as_bytes());
            }
            pending.push(producer.send_result(r).map_err(|(e, _)| e)?);
            total += 1;
            if pending.len() > 20_000 {
                for p in pending.drain(..) {
                    p.await?.map_err(|(e, _)| e)?;
                }
            }
        }
        for p in pending {
            p.await?.map_err(|(e, _)| e)?;
        }
    }
    eprintln!("produced {total} events to {prefix}*");

    // The floor: the same consumer settings, every message read and dropped.
    let floor: StreamConsumer =
        processor::consumer_config(&s, &format!("{prefix}floor")).create()?;
    floor.subscribe(&[&s.inferences_topic, &s.labels_topic, &s.acks_topic])?;
    let started = Instant::now();
    let mut read = 0u64;
    while read < total {
        let m = tokio::time::timeout(Duration::from_secs(60), floor.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the floor consumer stalled at {read} of {total}"))??;
        std::hint::black_box(m.payload());
        read += 1;
    }
    let floor_elapsed = started.elapsed();
    drop(floor);
    let floor_rate = total as f64 / floor_elapsed.as_secs_f64();
    println!(
        "consume-and-discard: {total} events in {:.2}s = {floor_rate:.0} events/s",
        floor_elapsed.as_secs_f64()
    );

    let config = Arc::new(slaguard::config::load(&state.join("sla.yaml"))?);
    let token = CancellationToken::new();
    let options = RunOptions {
        group: format!("{prefix}group"),
        state_dir: state.clone(),
        commit_interval: Duration::from_millis(200),
        shutdown_timeout: Duration::from_secs(30),
        instance_id: None,
        exactly_once: false,
        snapshot_interval: Duration::from_secs(60),
    };
    let started = Instant::now();
    let run = tokio::spawn(processor::run(
        config,
        s.clone(),
        options.clone(),
        token.clone(),
    ));
    // Done when the checkpoint (written every 200 ms, after every output is acknowledged)
    // covers every input message.
    let store = slaguard::kafka::checkpoint::CheckpointStore::new(&state, &options.group);
    let elapsed = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let covered: i64 = store
            .load()?
            .map_or(0, |c| c.offsets.iter().map(|(_, _, o)| *o).sum());
        if covered as u64 >= total {
            break started.elapsed();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "not done after 10 minutes ({covered} of {total})"
        );
    };
    token.cancel();
    let summary = run.await??;
    let _ = std::fs::remove_dir_all(&state);
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "run: {total} events in {:.2}s = {rate:.0} events/s, {:.2} of consume-and-discard ({} snapshots, {} breach events, {} checkpoints)",
        elapsed.as_secs_f64(),
        rate / floor_rate,
        summary.outputs.metrics,
        summary.outputs.breaches,
        summary.checkpoints
    );
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("slaguard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
