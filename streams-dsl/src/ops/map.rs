//! `map`, `map_values`, `select_key`, `flat_map` and `flat_map_values`: one processor that
//! applies a record → records function.

use std::sync::Arc;

use streams_core::{Downstream, Processor, ProcessorContext, Rec, Result};

/// A record-to-records function; the output is collected into a reused buffer.
pub(crate) type FlatMapFn<K, V, K2, V2> = Arc<dyn Fn(K, V, &mut Vec<(K2, V2)>) + Send + Sync>;

pub(crate) struct FlatMap<K, V, K2, V2> {
    pub(crate) f: FlatMapFn<K, V, K2, V2>,
    pub(crate) down: Downstream<K2, V2>,
    pub(crate) buf: Vec<(K2, V2)>,
}

impl<K: 'static, V: 'static, K2: Clone + 'static, V2: Clone + 'static> Processor<K, V>
    for FlatMap<K, V, K2, V2>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let ts = rec.timestamp;
        (self.f)(rec.key, rec.value, &mut self.buf);
        for (k, v) in self.buf.drain(..) {
            self.down.forward(ctx, Rec::new(k, v, ts))?;
        }
        Ok(())
    }
}

/// A one-to-one function, the common case, without the buffer.
pub(crate) struct Map<K, V, K2, V2> {
    pub(crate) f: Arc<dyn Fn(K, V) -> (K2, V2) + Send + Sync>,
    pub(crate) down: Downstream<K2, V2>,
}

impl<K: 'static, V: 'static, K2: Clone + 'static, V2: Clone + 'static> Processor<K, V>
    for Map<K, V, K2, V2>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let (k, v) = (self.f)(rec.key, rec.value);
        self.down.forward(ctx, Rec::new(k, v, rec.timestamp))
    }
}
