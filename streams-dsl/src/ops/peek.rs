//! `peek` (look and forward) and `foreach` (look, forward nothing).

use crate::ops::Inspector;

use streams_core::{Downstream, Processor, ProcessorContext, Rec, Result};

pub(crate) struct Peek<K, V> {
    pub(crate) f: Inspector<K, V>,
    pub(crate) down: Downstream<K, V>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V> for Peek<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        (self.f)(&rec.key, &rec.value);
        self.down.forward(ctx, rec)
    }
}
