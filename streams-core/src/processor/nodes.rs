//! The nodes at a sub-topology's edges, and the type-erased hooks a task calls.
//!
//! A [`SourceNode`] decodes a topic's records into typed ones; a [`SinkNode`] encodes typed
//! records and hands them to the collector. Everything between them passes typed values.

use std::sync::Arc;

use super::context::{ProcessorContext, RecordMeta};
use super::{Downstream, Processor, ProcessorRef, Rec};
use crate::error::{Error, RecordPart, Result, SerdeError};
use crate::partitioner::partition_for_key;
use crate::record::{Record, StoredRecord};
use crate::serdes::Serde;

/// A source as the task sees it: encoded records in, typed records out.
pub(crate) trait RawSource {
    fn process_raw(&mut self, ctx: &mut ProcessorContext<'_>, rec: &StoredRecord) -> Result<()>;
}

/// Commit and punctuation entry points of a processor, with its types erased.
pub(crate) trait NodeHooks {
    fn flush(&self, ctx: &mut ProcessorContext<'_>) -> Result<()>;
    fn punctuate(
        &self,
        ctx: &mut ProcessorContext<'_>,
        schedule: u32,
        timestamp: i64,
    ) -> Result<()>;
}

pub(crate) struct Hooks<K, V>(pub(crate) ProcessorRef<K, V>);

impl<K, V> NodeHooks for Hooks<K, V> {
    fn flush(&self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        self.0.borrow_mut().flush(ctx)
    }

    fn punctuate(
        &self,
        ctx: &mut ProcessorContext<'_>,
        schedule: u32,
        timestamp: i64,
    ) -> Result<()> {
        self.0.borrow_mut().punctuate(ctx, schedule, timestamp)
    }
}

/// Decodes a topic's records and forwards them.
pub(crate) struct SourceNode<K, V> {
    name: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
    down: Downstream<K, V>,
}

impl<K, V> SourceNode<K, V> {
    pub(crate) fn new(
        name: String,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
        down: Downstream<K, V>,
    ) -> Self {
        SourceNode {
            name,
            key_serde,
            value_serde,
            down,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> RawSource for SourceNode<K, V> {
    fn process_raw(&mut self, ctx: &mut ProcessorContext<'_>, rec: &StoredRecord) -> Result<()> {
        // Only an error needs the coordinates as strings.
        let at = |e: SerdeError, meta: &RecordMeta, part| {
            e.at(
                meta.topic.as_deref().unwrap_or(""),
                meta.partition,
                rec.offset,
                part,
            )
        };
        let key = self
            .key_serde
            .deserialize_nullable(rec.record.key.as_deref())
            .map_err(|e| at(e, ctx.meta, RecordPart::Key))?;
        let Some(key) = key else {
            ctx.record_dropped(&self.name, "null-key");
            return Ok(());
        };
        let value = self
            .value_serde
            .deserialize_nullable(rec.record.value.as_deref())
            .map_err(|e| at(e, ctx.meta, RecordPart::Value))?;
        let Some(value) = value else {
            ctx.record_dropped(&self.name, "null-value");
            return Ok(());
        };
        self.down
            .forward(ctx, Rec::new(key, value, rec.record.timestamp))
    }
}

/// The type of a custom sink partitioner: key, value, partition count → partition.
pub type SinkPartitioner<K, V> = Arc<dyn Fn(&K, &V, u32) -> Option<u32> + Send + Sync>;

/// Encodes records and hands them to the collector.
pub(crate) struct SinkNode<K, V> {
    topic: String,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
    partitioner: Option<SinkPartitioner<K, V>>,
    name: String,
}

impl<K, V> SinkNode<K, V> {
    pub(crate) fn new(
        name: String,
        topic: String,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
        partitioner: Option<SinkPartitioner<K, V>>,
    ) -> Self {
        SinkNode {
            topic,
            key_serde,
            value_serde,
            partitioner,
            name,
        }
    }
}

impl<K: 'static, V: 'static> Processor<K, V> for SinkNode<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let encode_err = |e: SerdeError| Error::Serialization {
            topic: self.topic.clone(),
            processor: self.name.clone(),
            source: e,
        };
        let key = self
            .key_serde
            .serialize_nullable(&rec.key)
            .map_err(encode_err)?;
        let value = self
            .value_serde
            .serialize_nullable(&rec.value)
            .map_err(encode_err)?;
        let count = ctx.collector.partition_count(&self.topic)?;
        let partition = self
            .partitioner
            .as_ref()
            .and_then(|p| p(&rec.key, &rec.value, count))
            .or_else(|| {
                let key = key.as_deref()?;
                Some(partition_for_key(
                    self.key_serde.partition_bytes(key),
                    count,
                ))
            });
        let record = Record {
            key,
            value,
            timestamp: rec.timestamp,
            headers: ctx.meta.headers.clone(),
        };
        let origin = ctx.origin();
        ctx.collector.send(&self.topic, partition, record, origin)
    }
}
