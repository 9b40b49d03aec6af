//! The record collector: where sinks and changelogs put encoded records until the runtime
//! writes them to the log (at the end of a batch, and always before a commit).

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::handler::Origin;
use crate::partitioner::partition_for_key;
use crate::record::{Record, TopicPartition};

/// Changelog records written by store layers. The changelogging layer holds its sink for the
/// store's whole life, longer than any borrow of the task, and store layers must be `Send`
/// (see the crate's threading notes), so the sink shares this buffer with the task instead of
/// borrowing the collector. The lock is only ever taken by the task's own thread.
pub(crate) type ChangelogBuffer = Arc<Mutex<Vec<(TopicPartition, Record)>>>;

/// A record on its way to the log, with the input record that produced it (when one did:
/// changelog records and punctuations have none), for the dead-letter headers of a record the
/// log refuses.
pub(crate) type Output = (TopicPartition, Record, Option<Origin>);

/// Encoded records waiting to be appended, in the order they were produced.
pub(crate) struct RecordCollector {
    pending: Vec<Output>,
    partitions: Arc<HashMap<String, u32>>,
    round_robin: u32,
}

impl RecordCollector {
    pub(crate) fn new(partitions: Arc<HashMap<String, u32>>) -> Self {
        RecordCollector {
            pending: Vec::new(),
            partitions,
            round_robin: 0,
        }
    }

    /// Queues `record` for `topic`, produced while processing the input record at `origin`.
    /// Without an explicit partition, keyed records go where Kafka's default partitioner puts
    /// them and unkeyed ones round-robin.
    pub(crate) fn send(
        &mut self,
        topic: &str,
        partition: Option<u32>,
        record: Record,
        origin: Option<Origin>,
    ) -> Result<()> {
        let count = *self
            .partitions
            .get(topic)
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_string(),
            })?;
        let partition = match (partition, &record.key) {
            (Some(p), _) if p < count => p,
            (Some(p), _) => {
                return Err(Error::PartitionOutOfRange {
                    topic: topic.to_string(),
                    partition: p,
                    partitions: count,
                })
            }
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => {
                self.round_robin = self.round_robin.wrapping_add(1);
                self.round_robin % count
            }
        };
        self.pending
            .push((TopicPartition::new(topic, partition), record, origin));
        Ok(())
    }

    /// The partition count of an output topic.
    pub(crate) fn partition_count(&self, topic: &str) -> Result<u32> {
        self.partitions
            .get(topic)
            .copied()
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_string(),
            })
    }

    /// Takes every queued record.
    pub(crate) fn drain(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.pending)
    }
}
