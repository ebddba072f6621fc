//! Start-up checks with clear errors: brokers unreachable, a topic missing, inferences
//! and labels not co-partitioned.

use std::time::Duration;

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
