//! Where a task starts reading an input partition whose committed offset is missing or out
//! of range: Kafka's `auto.offset.reset`.

use crate::error::{Error, Result};
use crate::record::TopicPartition;

use super::OffsetReset;

/// Where to read `tp` from when its committed offset is missing or outside the partition's
/// range `start..=end`, by `auto.offset.reset`; an offset out of range is warned about.
pub(super) fn reset_position(
    tp: &TopicPartition,
    policy: OffsetReset,
    committed: Option<u64>,
    start: u64,
    end: u64,
) -> Result<u64> {
    let position = match policy {
        OffsetReset::Earliest => start,
        OffsetReset::Latest => end,
        OffsetReset::None => {
            return Err(Error::NoValidOffset {
                topic: tp.topic.clone(),
                partition: tp.partition,
                committed,
                start,
                end,
            })
        }
    };
    match committed {
        Some(offset) => tracing::warn!(
            topic = %tp.topic, partition = tp.partition, offset, start, end, reset_to = position,
            policy = ?policy,
            "the offset to resume from is outside the partition: resuming where \
             auto.offset.reset says"
        ),
        None => tracing::info!(
            topic = %tp.topic, partition = tp.partition, start, end, reset_to = position,
            policy = ?policy, "no committed offset: starting where auto.offset.reset says"
        ),
    }
    Ok(position)
}
