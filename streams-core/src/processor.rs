//! Processors: the nodes records flow through inside a task.
//!
//! Records pass between the processors of one sub-topology as typed values ([`Rec`]), with no
//! serialization: a processor owns a [`Downstream`] of its children and calls
//! [`Downstream::forward`]. Bytes appear only at sources (which decode) and sinks (which encode).
//! Everything here runs on one stream thread: processors are neither `Send` nor `Sync`, and a
//! task that moves to another thread is rebuilt there from the topology.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::Result;
use crate::record::{Header, Record};
use crate::task::collector::RecordCollector;
use crate::task::metrics::TaskMetrics;

/// A typed record inside a sub-topology: key, value and timestamp (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl<K, V> Rec<K, V> {
    /// A record.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Rec {
            key,
            value,
            timestamp,
        }
    }

    /// The same record with another key and value.
    pub fn with<K2, V2>(&self, key: K2, value: V2) -> Rec<K2, V2> {
        Rec {
            key,
            value,
            timestamp: self.timestamp,
        }
    }
}

/// A table update: the new value and, where known, the old one (`None`: absent or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// The value after the update; `None` is a deletion.
    pub new: Option<V>,
    /// The value before the update.
    pub old: Option<V>,
}

impl<V> Change<V> {
    /// An update from `old` to `new`.
    pub fn new(new: Option<V>, old: Option<V>) -> Self {
        Change { new, old }
    }
}

/// When a punctuation fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub(crate) task_id: crate::task::TaskId,
    pub(crate) meta: &'a RecordMeta,
    pub(crate) stream_time: i64,
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
    pub fn task_id(&self) -> crate::task::TaskId {
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
        self.collector.send(topic, partition, record)
    }
}

/// A node of a sub-topology that consumes typed records.
pub trait Processor<K, V> {
    /// Handles one record, forwarding whatever it produces to its children.
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()>;

    /// Called on commit, parents before children: forward anything held back (cached
    /// aggregates) so the commit covers it.
    fn flush(&mut self, _ctx: &mut ProcessorContext<'_>) -> Result<()> {
        Ok(())
    }

    /// Called for each schedule the processor registered, with the schedule's id and the time
    /// (stream or wall-clock) at which it fired.
    fn punctuate(
        &mut self,
        _ctx: &mut ProcessorContext<'_>,
        _schedule: u32,
        _timestamp: i64,
    ) -> Result<()> {
        Ok(())
    }
}

/// A processor shared by reference: what parents hold of their children.
pub type ProcessorRef<K, V> = Rc<RefCell<dyn Processor<K, V>>>;

/// The children of a processor, all taking the same record type.
pub struct Downstream<K, V> {
    children: Vec<ProcessorRef<K, V>>,
}

impl<K, V> Default for Downstream<K, V> {
    fn default() -> Self {
        Downstream {
            children: Vec::new(),
        }
    }
}

impl<K: Clone, V: Clone> Downstream<K, V> {
    /// Children to forward to.
    pub fn new(children: Vec<ProcessorRef<K, V>>) -> Self {
        Downstream { children }
    }

    /// One downstream per child, in the order the children were added (for operators that
    /// route each record to one child, like `split`).
    pub fn into_each(self) -> Vec<Downstream<K, V>> {
        self.children
            .into_iter()
            .map(|c| Downstream { children: vec![c] })
            .collect()
    }

    /// Whether there is nobody to forward to.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Sends `rec` to every child, cloning it for all but the last.
    pub fn forward(&self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        if let Some((last, rest)) = self.children.split_last() {
            for child in rest {
                child.borrow_mut().process(ctx, rec.clone())?;
            }
            last.borrow_mut().process(ctx, rec)?;
        }
        Ok(())
    }
}
