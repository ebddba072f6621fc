//! Kafka helpers for the integration tests: the real broker of scripts/kafka.sh, topic
//! creation, producing scenario files, reading output topics.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use slaguard::kafka::KafkaSettings;

/// The real Apache Kafka broker (started once per test binary; .ci/run starts it first).
pub fn real_broker() -> String {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER
        .get_or_init(|| {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
            let out = Command::new("bash")
                .arg(script)
                .arg("start")
                .output()
                .expect("run scripts/kafka.sh");
            assert!(
                out.status.success(),
                "broker failed to start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .lines()
                .last()
                .expect("address")
                .to_string()
        })
        .clone()
}

/// librdkafka's in-process mock cluster with `topics` (name, partitions), groups joining
/// without the initial rebalance delay; it lives as long as the returned producer.
/// Returns the producer and the bootstrap address.
pub fn mock_cluster(topics: &[(&str, i32)]) -> (BaseProducer, String) {
    let producer: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .expect("mock cluster");
    let bootstrap = {
        let m = producer.client().mock_cluster().expect("mock");
        for (t, p) in topics {
            m.create_topic(t, *p, 1).expect("topic");
        }
        m.bootstrap_servers()
    };
    // SAFETY: the handle belongs to `producer`, alive for the test.
    unsafe {
        let ptr = rdkafka::bindings::rd_kafka_handle_mock_cluster(producer.client().native_ptr());
        rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(ptr, 0);
    }
    (producer, bootstrap)
}

/// A child process that is killed and reaped when dropped, so that a failing test
/// leaves no `slaguard run` behind.
pub struct Reaped(Option<std::process::Child>);

impl Reaped {
    pub fn new(child: std::process::Child) -> Reaped {
        Reaped(Some(child))
    }

    /// The child, to wait for it to exit by itself.
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("a child")
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("a child")
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("a child")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A topic prefix no earlier run used: tests share one broker that outlives them.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos}.", std::process::id())
}

/// Settings whose topic names all start with `prefix` (tests share one broker).
pub fn settings(brokers: &str, prefix: &str) -> KafkaSettings {
    let mut s = KafkaSettings::new(brokers);
    s.inferences_topic = format!("{prefix}inferences");
    s.labels_topic = format!("{prefix}labels");
    s.acks_topic = format!("{prefix}acks");
    s.output_prefix = format!("{prefix}sla.");
    s
}

/// The command-line flags naming the input topics of `s`.
pub fn topic_args(s: &KafkaSettings) -> Vec<String> {
    [
        ("--inferences-topic", &s.inferences_topic),
        ("--labels-topic", &s.labels_topic),
        ("--acks-topic", &s.acks_topic),
    ]
    .into_iter()
    .flat_map(|(flag, topic)| [flag.to_string(), topic.clone()])
    .collect()
}

pub fn create_topics(brokers: &str, topics: &[(String, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let results = rt
        .block_on(admin.create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topics");
    for r in results {
        if let Err((t, e)) = r {
            assert!(
                e == rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "create {t}: {e}"
            );
        }
    }
    // Created is not yet served: wait until every partition has its leader.
    let client = plain_client(brokers);
    let start = std::time::Instant::now();
    loop {
        let metadata = client
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        let ready = topics.iter().all(|(name, partitions)| {
            metadata.topics().iter().any(|t| {
                t.name() == name
                    && t.error().is_none()
                    && t.partitions().len() == *partitions as usize
                    && t.partitions()
                        .iter()
                        .all(|p| p.error().is_none() && p.leader() >= 0)
            })
        });
        if ready {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "topics without a leader 30 s after their creation"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates the input topics (`partitions` each, acks 1) and the output topics.
pub fn create_all(brokers: &str, s: &KafkaSettings, partitions: i32) {
    let mut topics = vec![
        (s.inferences_topic.clone(), partitions),
        (s.labels_topic.clone(), partitions),
        (s.acks_topic.clone(), 1),
    ];
    topics.extend(s.output_topics().into_iter().map(|t| (t, 2)));
    create_topics(brokers, &topics);
}

/// Produces every line of `file` to `topic`, keyed by its request_id when it has one.
pub fn produce_file(brokers: &str, topic: &str, file: &Path) -> usize {
    let text = std::fs::read_to_string(file).expect("read input file");
    produce_lines(
        brokers,
        topic,
        text.lines().filter(|l| !l.trim().is_empty()),
    )
}

/// The lines of a scenario file.
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn produce_lines<'a>(
    brokers: &str,
    topic: &str,
    lines: impl Iterator<Item = &'a str>,
) -> usize {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut n = 0;
    rt.block_on(async {
        let mut pending = Vec::new();
        for line in lines {
            let key = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| {
                    v.get("request_id")
                        .and_then(|r| r.as_str().map(str::to_string))
                });
            let mut record = FutureRecord::to(topic).payload(line.as_bytes());
            if let Some(k) = key.as_deref() {
                record = record.key(k.as_bytes());
            }
            pending.push(producer.send_result(record).expect("enqueue"));
            n += 1;
            if pending.len() >= 5000 {
                for p in pending.drain(..) {
                    p.await.expect("delivery").expect("delivered");
                }
            }
        }
        for p in pending {
            p.await.expect("delivery").expect("delivered");
        }
    });
    n
}

/// A consumed output message.
pub struct Record {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Reads every committed message of `topic` from the beginning up to its current end
/// (the last stable offset: outputs of aborted or open transactions are not read).
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
    read_topic_as(brokers, topic, "read_committed")
}

/// Every message written to `topic`, in transactions or not, committed or not.
pub fn read_topic_uncommitted(brokers: &str, topic: &str) -> Vec<Record> {
    read_topic_as(brokers, topic, "read_uncommitted")
}

fn read_topic_as(brokers: &str, topic: &str, isolation: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "slaguard-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut out = Vec::new();
    for p in partitions {
        // Right after a broker restart a partition may have no leader for a while.
        let started = std::time::Instant::now();
        let (low, high) = loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                Ok(w) => break w,
                Err(e) if started.elapsed() < Duration::from_secs(60) => {
                    eprintln!("{topic}[{p}]: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("{topic}[{p}] watermarks: {e}"),
            }
        };
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        loop {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_string(),
                                        String::from_utf8_lossy(x.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Record {
                        partition: p,
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().unwrap_or_default().to_vec(),
                        headers,
                    });
                    // The end, unless transaction markers follow (then the EOF says so).
                    if m.offset() + 1 >= high {
                        break;
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => panic!("reading {topic}[{p}]: neither a message nor its end within 10 s"),
            }
        }
    }
    out
}

pub fn read_json(brokers: &str, topic: &str) -> Vec<serde_json::Value> {
    read_topic(brokers, topic)
        .into_iter()
        .map(|r| serde_json::from_slice(&r.value).expect("JSON output"))
        .collect()
}

/// What [`golden_on_topics`] produces to the topics before returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produce {
    /// Nothing: the test produces in stages itself (inferences and labels only).
    Nothing,
    /// Inferences and labels.
    Events,
    /// Inferences, labels and acks.
    EventsAndAcks,
}

/// The golden scenario written to files, replayed from them, and produced to fresh topics
/// with `partitions` partitions: what the Kafka tests compare against. The comparison
/// replay reads the acks only when they are produced too.
pub struct GoldenOnTopics {
    pub dir: tempfile::TempDir,
    pub inputs: slaguard::replay::ReplayInputs,
    pub replayed: slaguard::replay::ReplayCounts,
    pub expected: Vec<serde_json::Value>,
    pub expected_breaches: Vec<serde_json::Value>,
    pub settings: KafkaSettings,
}

pub fn golden_on_topics(
    brokers: &str,
    name: &str,
    partitions: i32,
    produce: Produce,
) -> GoldenOnTopics {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = crate::common::write_scenario(dir.path(), &crate::common::golden_spec());
    // The file replay the run is compared with reads the same inputs (acks move the MTTA
    // figures of the snapshots).
    let compared = slaguard::replay::ReplayInputs {
        acks: inputs
            .acks
            .clone()
            .filter(|_| produce == Produce::EventsAndAcks),
        ..inputs.clone()
    };
    let (_, replayed, out) = crate::common::replay_inputs(dir.path(), &compared, "files");
    let s = settings(brokers, &unique(name));
    create_all(brokers, &s, partitions);
    if produce != Produce::Nothing {
        produce_file(brokers, &s.inferences_topic, &inputs.inferences);
        produce_file(brokers, &s.labels_topic, &inputs.labels);
        if let Some(acks) = &compared.acks {
            produce_file(brokers, &s.acks_topic, acks);
        }
    }
    GoldenOnTopics {
        expected: crate::common::read_jsonl(&out.join("metrics.jsonl")),
        expected_breaches: crate::common::read_jsonl(&out.join("breaches.jsonl")),
        dir,
        inputs,
        replayed,
        settings: s,
    }
}

/// A client of no group, for metadata and group listings.
fn plain_client(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("client")
}

/// Waits until consumer group `group` has finished rebalancing with exactly `members`
/// members, so that every member holds its share of the partitions.
pub fn wait_for_group(brokers: &str, group: &str, members: usize) {
    let client = plain_client(brokers);
    let start = std::time::Instant::now();
    loop {
        let list = client
            .fetch_group_list(Some(group), Duration::from_secs(10))
            .expect("group list");
        let info = list.groups().first();
        let (state, n) = info.map_or(("", 0), |g| (g.state(), g.members().len()));
        if state == "Stable" && n == members {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "group {group}: state {state:?} with {n} members, expected Stable with {members}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The lines of a scenario file whose event time is in `[from, to)`.
pub fn stage(lines: &[String], from: i64, to: i64) -> impl Iterator<Item = &str> {
    lines.iter().map(String::as_str).filter(move |l| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v.get("timestamp").cloned())
            .and_then(|t| {
                t.as_i64()
                    .or_else(|| t.as_str().and_then(slaguard::time::parse_rfc3339))
            })
            .is_some_and(|t| t >= from && t < to)
    })
}

/// Waits until `topic` holds at least `min` messages and stops growing (two reads 2 s
/// apart agree).
pub fn wait_settled(brokers: &str, topic: &str, min: usize, deadline: Duration) -> usize {
    let start = std::time::Instant::now();
    let mut last = usize::MAX;
    loop {
        let n = read_topic(brokers, topic).len();
        if n >= min && n == last {
            return n;
        }
        assert!(
            start.elapsed() < deadline,
            "{topic}: {n} messages after {deadline:?}, expected at least {min}"
        );
        last = n;
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Event time `minutes` after the start of the generated scenarios.
pub fn at(minutes: i64) -> i64 {
    slaguard::scenario::ScenarioSpec::default().start + minutes * 60_000
}

/// The golden scenario's inferences and labels, produced one stage of event time at a time.
pub struct Stages<'a> {
    brokers: &'a str,
    settings: &'a KafkaSettings,
    pub inferences: Vec<String>,
    pub labels: Vec<String>,
}

impl<'a> Stages<'a> {
    pub fn new(brokers: &'a str, golden: &'a GoldenOnTopics) -> Stages<'a> {
        Stages {
            brokers,
            settings: &golden.settings,
            inferences: read_lines(&golden.inputs.inferences),
            labels: read_lines(&golden.inputs.labels),
        }
    }

    /// Produces the inferences and labels whose event time is in `[from, to)` and
    /// returns how many (lines without a readable time are in no stage).
    pub fn produce(&self, from: i64, to: i64) -> usize {
        let s = self.settings;
        produce_lines(
            self.brokers,
            &s.inferences_topic,
            stage(&self.inferences, from, to),
        ) + produce_lines(self.brokers, &s.labels_topic, stage(&self.labels, from, to))
    }
}
