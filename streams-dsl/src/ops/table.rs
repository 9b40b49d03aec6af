//! Table operators: the source that materializes a topic, `filter` and `map_values` on
//! changes, `to_stream`, and materializing a derived table into a store.

use crate::ops::{Predicate, ValueMapper};
use std::sync::Arc;

use streams_core::{
    Change, Downstream, KvStoreRef, Processor, ProcessorContext, Rec, Result, Serde,
};

use super::encode;
use super::stamped::{encode_stamped, get_stamped};

/// Writes each update into the table's store and forwards `Change { new, old }`. Input values
/// are `Option<V>`: `None` is a tombstone (a deletion). Used for source tables (input is the
/// topic's records) and for materializing derived tables (input is their changes' new value).
///
/// The store is timestamped: a value is kept behind the timestamp of the update that wrote it
/// (a source table: the topic record's; a derived table: the change's, which `filter` and
/// `map_values` pass through), and the change is forwarded with that timestamp, as Kafka
/// Streams' `KTableSource` and materialized `KTableFilter`/`KTableMapValues` do.
///
/// Uncached, each update is forwarded as it is applied, even a deletion of a key the store
/// does not hold (a change from `None` to `None`), as Kafka Streams forwards it; a cached
/// store forwards what its cache writes through, which skips a key that was absent before
/// and is absent after (Kafka Streams' caching store does the same).
pub(crate) struct Materialize<K, V> {
    pub(crate) name: String,
    /// A timestamped store.
    pub(crate) store: KvStoreRef,
    pub(crate) store_name: String,
    /// Whether the store is cached: then changes are forwarded as its cache writes them
    /// through, taken from the store.
    pub(crate) cached: bool,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) down: Downstream<K, Change<V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> Materialize<K, V> {
    /// Forwards the changes the cache wrote through (flushed or evicted).
    fn forward_flushed(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        super::forward_flushed(
            &self.store,
            &self.store_name,
            self.key_serde.as_ref(),
            self.value_serde.as_ref(),
            &self.name,
            &self.down,
            ctx,
        )
    }

    pub(crate) fn apply(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: K,
        new: Option<V>,
        timestamp: i64,
    ) -> Result<()> {
        let kb = encode(self.key_serde.as_ref(), &key, &self.name)?;
        let old = match self.cached {
            true => None,
            false => get_stamped(&self.store, &kb, self.value_serde.as_ref(), &self.name)?
                .map(|(v, _)| v),
        };
        match &new {
            Some(v) => {
                let vb = encode_stamped(self.value_serde.as_ref(), v, timestamp, &self.name)?;
                self.store.borrow_mut().put(&kb, &vb)
            }
            None => self.store.borrow_mut().delete(&kb),
        }?;
        if self.cached {
            return self.forward_flushed(ctx);
        }
        // Uncached, every update is forwarded, a deletion of a key the table does not hold
        // included (as `None` to `None`), as Kafka Streams' uncached tables do.
        self.down
            .forward(ctx, Rec::new(key, Change::new(new, old), timestamp))
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Option<V>> for Materialize<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, Option<V>>) -> Result<()> {
        self.apply(ctx, rec.key, rec.value, rec.timestamp)
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        if super::flush_cached(&self.store, self.cached)? {
            self.forward_flushed(ctx)?;
        }
        Ok(())
    }
}

/// Materializes a derived table: takes its changes and stores/forwards their new values.
pub(crate) struct MaterializeChanges<K, V>(pub(crate) Materialize<K, V>);

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>> for MaterializeChanges<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, Change<V>>) -> Result<()> {
        self.0.apply(ctx, rec.key, rec.value.new, rec.timestamp)
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        Processor::<K, Option<V>>::flush(&mut self.0, ctx)
    }
}

/// `filter` on a table: a value that fails the predicate reads as absent, so an update from
/// passing to failing forwards a deletion.
pub(crate) struct FilterChanges<K, V> {
    pub(crate) predicate: Predicate<K, V>,
    pub(crate) keep_when: bool,
    pub(crate) down: Downstream<K, Change<V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>> for FilterChanges<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, Change<V>>) -> Result<()> {
        let keep = |v: Option<V>| v.filter(|v| (self.predicate)(&rec.key, v) == self.keep_when);
        let new = keep(rec.value.new);
        let old = keep(rec.value.old);
        if new.is_none() && old.is_none() {
            return Ok(());
        }
        self.down
            .forward(ctx, Rec::new(rec.key, Change::new(new, old), rec.timestamp))
    }
}

/// `map_values` on a table: applied to both the new and the old value.
pub(crate) struct MapChanges<K, V, V2> {
    pub(crate) f: ValueMapper<K, V, V2>,
    pub(crate) down: Downstream<K, Change<V2>>,
}

impl<K: Clone + 'static, V: 'static, V2: Clone + 'static> Processor<K, Change<V>>
    for MapChanges<K, V, V2>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, Change<V>>) -> Result<()> {
        let new = rec.value.new.as_ref().map(|v| (self.f)(&rec.key, v));
        let old = rec.value.old.as_ref().map(|v| (self.f)(&rec.key, v));
        self.down
            .forward(ctx, Rec::new(rec.key, Change::new(new, old), rec.timestamp))
    }
}

/// `to_stream`: each change becomes a record of its new value (`None` for a deletion).
pub(crate) struct ToStream<K, V> {
    pub(crate) down: Downstream<K, Option<V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>> for ToStream<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, Change<V>>) -> Result<()> {
        self.down
            .forward(ctx, Rec::new(rec.key, rec.value.new, rec.timestamp))
    }
}
