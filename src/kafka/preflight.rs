//! Start-up checks with clear errors: brokers unreachable, a topic missing, inferences
//! and labels not co-partitioned; and the internal topics `run` creates for itself.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::MetadataTopic;
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaSettings, KafkaShellError, PartitionCounts};

/// Checks the cluster and returns the partition count of every input and output topic.
/// A topic the cluster lists but cannot serve yet (just created: no leader elected for a
/// partition) is waited for, up to `timeout`; one it does not list is missing at once.
pub fn check(
    settings: &KafkaSettings,
    outputs: bool,
    timeout: Duration,
) -> Result<PartitionCounts, KafkaShellError> {
    let consumer: BaseConsumer = settings.client().create()?;
    let mut required: Vec<(String, String)> = settings
        .input_topics()
        .iter()
        .map(|(t, k)| (t.to_string(), k.name().to_string()))
        .collect();
    if outputs {
        required.extend(
            settings
                .output_topics()
                .into_iter()
                .map(|t| (t, "output-prefix".to_string())),
        );
    }
    let deadline = Instant::now() + timeout;
    // The topic waited for, and why.
    let mut waiting: Option<(String, String)> = None;
    let not_ready = |(topic, detail): (String, String)| KafkaShellError::TopicNotReady {
        topic,
        detail,
        waited: timeout,
    };
    let counts = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let metadata = match consumer.fetch_metadata(None, left) {
            Ok(m) => m,
            Err(e) => {
                return Err(match waiting {
                    // The cluster answered before: it is the topic that is not ready.
                    Some(w) => not_ready(w),
                    None => KafkaShellError::Unreachable {
                        brokers: settings.brokers.clone(),
                        detail: e.to_string(),
                    },
                });
            }
        };
        let mut counts = PartitionCounts::new();
        let mut unready: Vec<(String, String)> = Vec::new();
        for t in metadata.topics() {
            match topic_unready(t) {
                None => {
                    counts.insert(t.name().to_string(), t.partitions().len());
                }
                Some(detail) => unready.push((t.name().to_string(), detail)),
            }
        }
        waiting = required
            .iter()
            .find_map(|(topic, _)| unready.iter().find(|(t, _)| t == topic))
            .cloned();
        match waiting {
            None => break counts,
            Some(w) if Instant::now() >= deadline => return Err(not_ready(w)),
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    for (topic, role) in required {
        if !counts.contains_key(&topic) {
            return Err(KafkaShellError::TopicMissing {
                topic,
                role,
                brokers: settings.brokers.clone(),
            });
        }
    }
    let (i, l) = (
        counts[&settings.inferences_topic],
        counts[&settings.labels_topic],
    );
    if i != l {
        return Err(KafkaShellError::NotCoPartitioned {
            inferences: settings.inferences_topic.clone(),
            inference_partitions: i,
            labels: settings.labels_topic.clone(),
            label_partitions: l,
        });
    }
    Ok(counts)
}

/// Why a topic the cluster lists cannot be served yet (an error on the topic, or a
/// partition without a leader); `None` when it can. A partition with a leader is served,
/// whatever else its metadata says (a follower replica down, for one).
fn topic_unready(t: &MetadataTopic) -> Option<String> {
    if let Some(e) = t.error() {
        return Some(format!("{:?}", RDKafkaErrorCode::from(e)));
    }
    if t.partitions().is_empty() {
        return Some("no partitions listed".to_string());
    }
    t.partitions()
        .iter()
        .find(|p| p.leader() < 0)
        .map(|p| match p.error() {
            Some(e) => format!(
                "partition {} has no leader: {:?}",
                p.id(),
                RDKafkaErrorCode::from(e)
            ),
            None => format!("partition {} has no leader", p.id()),
        })
}

/// Creates internal topic `topic` with `partitions` partitions and `config` when it does
/// not exist yet (replication: the brokers' default); one that exists must have that many
/// partitions.
pub async fn ensure_internal_topic(
    settings: &KafkaSettings,
    counts: &PartitionCounts,
    topic: &str,
    partitions: usize,
    config: &[(&str, &str)],
) -> Result<(), KafkaShellError> {
    let wanted = config
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let cannot = |detail: String| {
        KafkaShellError::Invalid(format!(
            "cannot create the internal topic `{topic}` ({detail}); create it with {partitions} partition(s), {wanted}"
        ))
    };
    match counts.get(topic) {
        Some(n) if *n == partitions => return Ok(()),
        Some(n) => {
            return Err(KafkaShellError::Invalid(format!(
                "the internal topic `{topic}` has {n} partition(s) where slaguard needs {partitions} ({wanted}): delete it and slaguard creates it"
            )))
        }
        None => {}
    }
    let admin: AdminClient<DefaultClientContext> = settings.client().create()?;
    let mut new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
    for (k, v) in config {
        new = new.set(k, v);
    }
    let results = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .map_err(|e| cannot(e.to_string()))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, "created an internal topic"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(cannot(code.to_string())),
        }
    }
    Ok(())
}
