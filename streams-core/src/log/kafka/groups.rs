//! Group offsets: a consumer per group that never joins it commits and fetches the group's
//! offsets; offset lists for librdkafka.

use std::sync::Arc;

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::client::{kafka_error, partition_i32};
use super::config::ClientKind;
use super::KafkaLog;
use crate::error::Result;
use crate::record::TopicPartition;

/// A consumer of a group that never joins it: fetches the group's offsets, and commits them
/// while the group has no members.
pub(super) type GroupConsumer = BaseConsumer;

/// A librdkafka offset list.
pub(super) fn offset_list(offsets: &[(TopicPartition, u64)]) -> KafkaResult<TopicPartitionList> {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for (tp, offset) in offsets {
        list.add_partition_offset(
            &tp.topic,
            partition_i32(tp.partition),
            Offset::Offset(i64::try_from(*offset).unwrap_or(i64::MAX)),
        )?;
    }
    Ok(list)
}

impl KafkaLog {
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
            .create()
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
