//! The context a processor sees while it processes a record or punctuates: where the record
//! came from, the task's clocks, and the collector that output records go to.

use std::sync::Arc;

use super::collector::RecordCollector;
use super::metrics::TaskMetrics;
use crate::error::Result;
use crate::handler::Origin;
use crate::ids::TaskId;
use crate::record::{Header, Record};

/// When a punctuation fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PunctuationType {
    /// Driven by the task's stream time (record timestamps): no records, no punctuation.
    StreamTime,
    /// Driven by the wall clock, whether or not records arrive.
    WallClockTime,
}

/// Where the current record came from; `None` fields for records created by a punctuation.
#[derive(Debug, Clone, Default)]
pub struct RecordMeta {
    /// Source topic (shared, so setting it per record allocates nothing).
    pub topic: Option<Arc<str>>,
    /// Source partition (the task's partition).
    pub partition: u32,
    /// Offset in the source partition.
    pub offset: Option<u64>,
    /// Headers of the source record.
    pub headers: Vec<Header>,
}

/// What a processor may look at and use while it processes a record or punctuates.
pub struct ProcessorContext<'a> {
    pub(crate) application_id: &'a str,
    pub(crate) task_id: TaskId,
    pub(crate) meta: &'a RecordMeta,
    pub(crate) stream_time: i64,
    pub(crate) resumed_stream_time: i64,
    pub(crate) wall_clock: i64,
    pub(crate) collector: &'a mut RecordCollector,
    pub(crate) metrics: &'a mut TaskMetrics,
}

impl ProcessorContext<'_> {
    /// The application id.
    pub fn application_id(&self) -> &str {
        self.application_id
    }

    /// The task this processor runs in.
    pub fn task_id(&self) -> TaskId {
        self.task_id
    }

    /// The partition of the task (all of a task's inputs share it).
    pub fn partition(&self) -> u32 {
        self.task_id.partition
    }

    /// Where the record being processed came from.
    pub fn record_meta(&self) -> &RecordMeta {
        self.meta
    }

    /// The task's stream time: the largest record timestamp processed so far.
    pub fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// The stream time the task resumed from when it opened: the one committed with its
    /// input offsets before a restart or a move, `i64::MIN` when it started afresh.
    /// Operators that keep a time of their own (the largest timestamp that reached them, as
    /// windowed aggregations do) start from it, so what was closed before stays closed.
    pub fn resumed_stream_time(&self) -> i64 {
        self.resumed_stream_time
    }

    /// Wall-clock time in ms as the task sees it (the test driver sets it).
    pub fn wall_clock_time(&self) -> i64 {
        self.wall_clock
    }

    /// Counts a record a processor dropped, by reason (`"late"`, `"null-key"`, ...).
    pub fn record_dropped(&mut self, processor: &str, reason: &'static str) {
        self.metrics.dropped(processor, reason);
    }

    /// Sends an encoded record to a topic; `partition: None` lets the collector choose
    /// (murmur2 of the key, or round-robin for unkeyed records).
    pub fn send(&mut self, topic: &str, partition: Option<u32>, record: Record) -> Result<()> {
        let origin = self.origin();
        self.collector.send(topic, partition, record, origin)
    }

    /// The input record being processed, when there is one (not in a punctuation).
    pub(crate) fn origin(&self) -> Option<Origin> {
        let meta = self.meta;
        Some(Origin {
            topic: meta.topic.clone()?,
            partition: meta.partition,
            offset: meta.offset?,
        })
    }
}
