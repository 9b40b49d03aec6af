//! Group offsets: a consumer per group that never joins it commits and fetches the group's
//! offsets; offset lists for librdkafka.

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::client::retry_transient;
use super::client::{kafka_error, partition_i32};
use super::config::ClientKind;
use super::context::LogContext;
use super::KafkaLog;
use crate::error::Result;
use crate::log::OffsetCommit;
use crate::record::TopicPartition;

/// A consumer of a group that never joins it: fetches the group's offsets, and commits them
/// while the group has no members.
pub(super) type GroupConsumer = BaseConsumer<LogContext>;

/// A librdkafka offset list.
pub(super) fn offset_list(offsets: &[OffsetCommit]) -> KafkaResult<TopicPartitionList> {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for c in offsets {
        let mut e = list.add_partition(&c.tp.topic, partition_i32(c.tp.partition));
        e.set_offset(Offset::Offset(i64::try_from(c.offset).unwrap_or(i64::MAX)))?;
        if !c.metadata.is_empty() {
            e.set_metadata(&c.metadata);
        }
    }
    Ok(list)
}

impl KafkaLog {
    /// One OffsetFetch for these partitions: the group's commits (offset and metadata) in
    /// those it committed.
    pub(super) fn fetch_committed(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<OffsetCommit>> {
        let operation = || format!("fetch the committed offsets of group {group}");
        let mut list = TopicPartitionList::with_capacity(partitions.len());
        for tp in partitions {
            list.add_partition(&tp.topic, partition_i32(tp.partition));
        }
        if list.count() == 0 {
            return Ok(Vec::new());
        }
        let consumer = self.group_consumer(group)?;
        // The group's coordinator moves (or loads the offsets) while a broker restarts.
        let found = retry_transient(
            self.config.timeout,
            &[
                RDKafkaErrorCode::NotCoordinator,
                RDKafkaErrorCode::CoordinatorNotAvailable,
                RDKafkaErrorCode::CoordinatorLoadInProgress,
            ],
            |left| consumer.committed_offsets(list.clone(), left),
        )
        .map_err(|e| kafka_error(operation(), None, &e))?;
        Ok(found
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(OffsetCommit {
                    tp: TopicPartition::new(e.topic(), u32::try_from(e.partition()).ok()?),
                    offset: u64::try_from(o).ok()?,
                    // librdkafka's accessor insists on UTF-8; other writers' bytes are none.
                    metadata: std::panic::catch_unwind(|| e.metadata().to_string())
                        .unwrap_or_default(),
                }),
                _ => None,
            })
            .collect())
    }

    pub(super) fn group_consumer(&self, group: &str) -> Result<Arc<GroupConsumer>> {
        if let Some(c) = self.groups.lock().get(group) {
            return Ok(c.clone());
        }
        let consumer: GroupConsumer = self
            .config
            .client_config(
                ClientKind::Consumer,
                &[
                    ("group.id", group),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                ],
            )
            .create_with_context(self.context())
            .map_err(|e| kafka_error(format!("create a consumer for group {group}"), None, &e))?;
        let consumer = Arc::new(consumer);
        Ok(self
            .groups
            .lock()
            .entry(group.to_string())
            .or_insert(consumer)
            .clone())
    }
}
