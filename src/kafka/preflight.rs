//! Start-up checks with clear errors: brokers unreachable, a topic missing, inferences
//! and labels not co-partitioned; and the internal topics `run` creates for itself.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{KafkaSettings, KafkaShellError, PartitionCounts};

/// Checks the cluster and returns the partition count of every input and output topic.
pub fn check(
    settings: &KafkaSettings,
    outputs: bool,
    timeout: Duration,
) -> Result<PartitionCounts, KafkaShellError> {
    let consumer: BaseConsumer = settings.client().create()?;
    let metadata =
        consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| KafkaShellError::Unreachable {
                brokers: settings.brokers.clone(),
                detail: e.to_string(),
            })?;
    let mut counts = PartitionCounts::new();
    for t in metadata.topics() {
        if t.error().is_none() && !t.partitions().is_empty() {
            counts.insert(t.name().to_string(), t.partitions().len());
        }
    }
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
