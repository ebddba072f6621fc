//! A shard reads each of its input partitions from a queue of its own, least advanced in
//! event time first.
//!
//! Through the consumer's one queue, messages come in the order librdkafka fetched them,
//! and it fetches by bytes: a label is about a third of an inference's size, so a backlog's
//! labels partitions are read far ahead of its inferences partitions in event time, and
//! every label read ahead waits in the join for its prediction. With a queue per
//! partition the shard chooses what to read next: the partitions whose messages read so far
//! reached least far in event time go first, as a replay merges its files, so the join
//! holds what the label delays make it hold and no more. librdkafka then bounds the
//! prefetch of each partition on its own (`queued.max.messages.kbytes`,
//! `queued.min.messages`): a partition read ahead stops being fetched while its queue is
//! full, without the prefetched messages being dropped as a pause would.
//!
//! The queues are split off the consumer's when partitions are assigned, before librdkafka
//! starts fetching them (so none of their messages go through the consumer's queue), and
//! destroyed when they are revoked. A queue that becomes non-empty wakes the shard
//! through [`PartitionQueues::ready`]. Messages are taken in batches
//! (`rd_kafka_consume_batch_queue`): one call per partition and batch rather than one
//! poll per message. The shard's decoding thread takes them (see `kafka::decoder`), and
//! tells each queue how far in event time the messages it decoded reached
//! ([`PartitionQueues::reached`]): it reads ahead of what the engine has applied.

use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use tokio::sync::Notify;

use super::decoder::InputBatch;
use crate::time::Millis;

/// One partition's queue, split off the consumer's.
struct Queue {
    topic: String,
    partition: i32,
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The latest event time of the messages taken from it and decoded, if any.
    reached: Option<Millis>,
}

// librdkafka's queues are thread-safe; the handle is only used under the lock of the
// shard's `PartitionQueues`.
unsafe impl Send for Queue {}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_queue_get_partition` and is destroyed
        // once, here; the wake-up is removed first, so librdkafka no longer calls it.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// Called by librdkafka's threads when a split queue gets a message while empty.
unsafe extern "C" fn wake(_rk: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Notify` of the `PartitionQueues` the queue belongs to,
    // which removes this wake-up from every queue before it is dropped.
    let ready = unsafe { &*(opaque as *const Notify) };
    ready.notify_one();
}

/// The shard's split partition queues.
pub struct PartitionQueues {
    /// Dropped before `ready`, which their wake-ups point to.
    queues: Vec<Queue>,
    ready: Arc<Notify>,
    /// Messages taken from librdkafka, reused for every batch.
    taken: Vec<*mut rdsys::rd_kafka_message_t>,
}

// The raw message pointers in `taken` never outlive a call of `gather`.
unsafe impl Send for PartitionQueues {}

impl Default for PartitionQueues {
    fn default() -> Self {
        PartitionQueues {
            queues: Vec::new(),
            ready: Arc::new(Notify::new()),
            taken: Vec::new(),
        }
    }
}

impl PartitionQueues {
    /// Woken when a split queue that was empty gets a message.
    pub fn ready(&self) -> Arc<Notify> {
        Arc::clone(&self.ready)
    }

    /// Splits the queue of `topic`/`partition` off the consumer's `client`. To be called
    /// for each partition of an assignment (after [`PartitionQueues::clear`]), before
    /// librdkafka is told of it. Returns false when librdkafka has no queue for it: its
    /// messages then come through the consumer's queue, as without splitting.
    pub fn split(&mut self, client: *mut rdsys::rd_kafka_t, topic: &str, partition: i32) -> bool {
        let Ok(name) = CString::new(topic) else {
            return false;
        };
        // SAFETY: `client` is the live consumer handle librdkafka passed to the rebalance
        // callback; the returned queue is owned by the `Queue` made of it.
        let queue =
            unsafe { rdsys::rd_kafka_queue_get_partition(client, name.as_ptr(), partition) };
        let Some(queue) = NonNull::new(queue) else {
            return false;
        };
        let opaque = Arc::as_ptr(&self.ready) as *mut c_void;
        // SAFETY: forwarding to nothing keeps the partition's messages in its own queue
        // (and marks it as the application's choice, which librdkafka then keeps when it
        // starts fetching); the wake-up's `opaque` outlives the queue (see `Queue::drop`).
        unsafe {
            rdsys::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut());
            rdsys::rd_kafka_queue_cb_event_enable(queue.as_ptr(), Some(wake), opaque);
        }
        self.queues.push(Queue {
            topic: topic.to_string(),
            partition,
            queue,
            reached: None,
        });
        // librdkafka signals a queue only when it goes from empty to not: one that
        // already holds messages (fetched before a revocation, say) is read once anyway.
        self.ready.notify_one();
        true
    }

    /// Destroys every queue: the partitions are revoked.
    pub fn clear(&mut self) {
        self.queues.clear();
    }

    /// The messages of `topic`/`partition` taken so far reached `time` in event time (a
    /// later time than it had, or the first).
    pub fn reached(&mut self, topic: &str, partition: i32, time: Millis) {
        if let Some(q) = self
            .queues
            .iter_mut()
            .find(|q| q.partition == partition && q.topic == topic)
        {
            q.reached = Some(q.reached.map_or(time, |r| r.max(time)));
        }
    }

    /// Copies into `batch` what the queues have ready, up to `max` messages, from the
    /// partitions least advanced in event time first (as [`PartitionQueues::reached`]
    /// was told; a partition with no time yet goes first). Returns whether the batch was
    /// filled (the queues may have more); otherwise every queue was emptied, and the next
    /// message wakes [`PartitionQueues::ready`].
    pub fn gather(&mut self, batch: &mut InputBatch, max: usize) -> bool {
        self.queues.sort_by_key(|q| q.reached);
        for q in &self.queues {
            let room = max.saturating_sub(batch.len());
            if room == 0 {
                return true;
            }
            self.taken.reserve(room);
            // SAFETY: `taken` (empty) has room for `room` pointers; librdkafka writes `n`
            // of them, each a message this loop destroys below.
            unsafe {
                let n = rdsys::rd_kafka_consume_batch_queue(
                    q.queue.as_ptr(),
                    0,
                    self.taken.as_mut_ptr(),
                    room,
                );
                self.taken
                    .set_len(usize::try_from(n).unwrap_or(0).min(room));
            }
            for &m in &self.taken {
                // SAFETY: `m` is a valid message until destroyed, right after it is copied.
                unsafe {
                    let msg = &*m;
                    if msg.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                        batch.push_parts(
                            &q.topic,
                            q.partition,
                            msg.offset,
                            bytes(msg.payload, msg.len),
                            bytes(msg.key, msg.key_len),
                        );
                    } else if msg.err
                        != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF
                    {
                        tracing::warn!(
                            topic = q.topic,
                            partition = q.partition,
                            error = ?msg.err,
                            "consumer error; librdkafka retries"
                        );
                    }
                    rdsys::rd_kafka_message_destroy(m);
                }
            }
            self.taken.clear();
        }
        batch.len() >= max
    }
}

/// The bytes librdkafka points to, or none.
///
/// # Safety
/// `ptr` is null or points to `len` bytes that stay valid while the slice is used.
unsafe fn bytes<'a>(ptr: *const c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: by the caller's contract.
        Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Offset, TopicPartitionList};

    use super::*;

    const TOPIC: &str = "inferences";

    fn produce(producer: &BaseProducer, partition: i32, range: std::ops::Range<usize>) {
        for i in range {
            let payload = format!("p{partition}-{i}");
            let key = i.to_string();
            producer
                .send(
                    BaseRecord::to(TOPIC)
                        .partition(partition)
                        .payload(&payload)
                        .key(&key),
                )
                .expect("queued");
        }
        producer.flush(Duration::from_secs(10)).expect("flushed");
    }

    /// (partition, offset, payload, key) of every message in `batch`, in order.
    fn contents(batch: &InputBatch) -> Vec<(i32, i64, String, String)> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        batch
            .partitions()
            .flat_map(|(topic, partition, run)| {
                assert_eq!(topic, TOPIC);
                run.iter().map(move |m| {
                    let key = batch.key(m).unwrap_or(b"");
                    (partition, m.offset, text(batch.payload(m)), text(key))
                })
            })
            .collect()
    }

    fn queued(queues: &PartitionQueues) -> usize {
        queues
            .queues
            .iter()
            // SAFETY: a live queue of `queues`.
            .map(|q| unsafe { rdsys::rd_kafka_queue_length(q.queue.as_ptr()) })
            .sum()
    }

    #[test]
    fn partitions_are_read_least_advanced_first_from_queues_of_their_own() {
        let producer: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .expect("mock cluster");
        let bootstrap = {
            let mock = producer.client().mock_cluster().expect("mock");
            mock.create_topic(TOPIC, 2, 1).expect("topic");
            mock.bootstrap_servers()
        };
        produce(&producer, 0, 0..2000);
        produce(&producer, 1, 0..2000);

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "partition-queues")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut queues = PartitionQueues::default();
        let client = consumer.client().native_ptr();
        assert!(queues.split(client, TOPIC, 0));
        assert!(queues.split(client, TOPIC, 1));
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assigned");
        // Everything fetched into the two queues (librdkafka fetches in the background).
        let deadline = Instant::now() + Duration::from_secs(30);
        while queued(&queues) < 4000 {
            assert!(
                Instant::now() < deadline,
                "fetched {} of 4000",
                queued(&queues)
            );
            // The consumer's own queue gets none of the split partitions' messages.
            assert!(consumer.poll(Duration::from_millis(50)).is_none());
        }

        // Partition 1 is behind in event time: it goes first, in offset order.
        queues.reached(TOPIC, 0, 100);
        queues.reached(TOPIC, 1, 0);
        let mut batch = InputBatch::default();
        assert!(queues.gather(&mut batch, 100), "a full batch");
        let expected: Vec<_> = (0..100)
            .map(|i| (1, i as i64, format!("p1-{i}"), i.to_string()))
            .collect();
        assert_eq!(contents(&batch), expected);

        // Now partition 0 is; an earlier time than a partition reached changes nothing.
        queues.reached(TOPIC, 1, 200);
        queues.reached(TOPIC, 1, 50);
        let mut batch = InputBatch::default();
        assert!(queues.gather(&mut batch, 100));
        let expected: Vec<_> = (0..100)
            .map(|i| (0, i as i64, format!("p0-{i}"), i.to_string()))
            .collect();
        assert_eq!(contents(&batch), expected);

        // A batch with room for everything takes the rest, partition 0 first, and says
        // the queues are empty.
        let mut batch = InputBatch::default();
        assert!(
            !queues.gather(&mut batch, 10_000),
            "not full: the queues are empty"
        );
        let expected: Vec<_> = (100..2000)
            .map(|i| (0, i as i64, format!("p0-{i}"), i.to_string()))
            .chain((100..2000).map(|i| (1, i as i64, format!("p1-{i}"), i.to_string())))
            .collect();
        assert_eq!(contents(&batch), expected);
        assert!(consumer.poll(Duration::from_millis(50)).is_none());

        // An emptied queue that gets a message wakes the shard.
        let ready = queues.ready();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            // A wake-up left from the reads above is taken first.
            let _ = tokio::time::timeout(Duration::from_millis(1), ready.notified()).await;
            produce(&producer, 1, 2000..2001);
            tokio::time::timeout(Duration::from_secs(30), ready.notified())
                .await
                .expect("woken by the new message");
        });
        let mut batch = InputBatch::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        while batch.is_empty() {
            assert!(Instant::now() < deadline, "the new message never came");
            assert!(!queues.gather(&mut batch, 100));
        }
        assert_eq!(
            contents(&batch),
            vec![(1, 2000, "p1-2000".to_string(), "2000".to_string())]
        );

        // Revoked: the queues go; their partitions' messages are no longer taken.
        queues.clear();
        produce(&producer, 0, 2000..2001);
        let mut batch = InputBatch::default();
        assert!(!queues.gather(&mut batch, 100));
        assert!(batch.is_empty());

        // Split again, a partition starts with no time: it goes first.
        assert!(queues.split(client, TOPIC, 1));
        assert!(queues.split(client, TOPIC, 0));
        queues.reached(TOPIC, 1, 300);
        assert_eq!(
            queues
                .queues
                .iter()
                .map(|q| (q.partition, q.reached))
                .collect::<Vec<_>>(),
            vec![(1, Some(300)), (0, None)]
        );
        queues.gather(&mut InputBatch::default(), 100);
        assert_eq!(
            queues.queues[0].partition, 0,
            "the partition with no time first"
        );
        queues.clear();
    }
}
