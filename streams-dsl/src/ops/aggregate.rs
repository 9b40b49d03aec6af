//! `count`, `reduce` and `aggregate` of a grouped stream: read the key's aggregate, apply
//! the record, write it back, forward the change. With caching, the change is forwarded when
//! the cache flushes (commit) or evicts, merged over every update in between.

use std::sync::Arc;

use streams_core::{
    Change, Downstream, FlushQueue, KvStoreRef, Processor, ProcessorContext, Rec, Result, Serde,
};

use super::{decode, encode, store_error};

/// `(key, value, previous aggregate or None) -> new aggregate`.
pub(crate) type AggregateFn<K, V, A> = Arc<dyn Fn(&K, V, Option<A>) -> A + Send + Sync>;

pub(crate) struct Aggregate<K, V, A> {
    pub(crate) name: String,
    pub(crate) store: KvStoreRef,
    pub(crate) queue: Option<FlushQueue>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<A>>,
    pub(crate) f: AggregateFn<K, V, A>,
    pub(crate) down: Downstream<K, Change<A>>,
}

impl<K: Clone + 'static, V: 'static, A: Clone + 'static> Aggregate<K, V, A> {
    /// Forwards the changes the cache flushed or evicted.
    fn drain(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        super::forward_flushed(
            self.queue.as_ref(),
            self.key_serde.as_ref(),
            self.agg_serde.as_ref(),
            &self.name,
            &self.down,
            ctx,
        )
    }
}

impl<K: Clone + 'static, V: 'static, A: Clone + 'static> Processor<K, V> for Aggregate<K, V, A> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let kb = encode(self.key_serde.as_ref(), &rec.key, &self.name)?;
        let old_bytes = self
            .store
            .borrow()
            .get(&kb)
            .map_err(|e| store_error(&self.name, e))?;
        let old = old_bytes
            .map(|b| decode(self.agg_serde.as_ref(), &b, &self.name))
            .transpose()?;
        let new = (self.f)(&rec.key, rec.value, old.clone());
        let nb = encode(self.agg_serde.as_ref(), &new, &self.name)?;
        self.store
            .borrow_mut()
            .put(&kb, &nb)
            .map_err(|e| store_error(&self.name, e))?;
        if self.queue.is_some() {
            self.drain(ctx)
        } else {
            self.down.forward(
                ctx,
                Rec::new(rec.key, Change::new(Some(new), old), rec.timestamp),
            )
        }
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        if super::flush_cached(&self.store, self.queue.as_ref(), &self.name)? {
            self.drain(ctx)?;
        }
        Ok(())
    }
}
