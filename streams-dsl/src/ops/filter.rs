//! `filter` and `filter_not` on streams.

use crate::ops::Predicate;

use streams_core::{Downstream, Processor, ProcessorContext, Rec, Result};

pub(crate) struct Filter<K, V> {
    pub(crate) predicate: Predicate<K, V>,
    pub(crate) keep_when: bool,
    pub(crate) down: Downstream<K, V>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V> for Filter<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        if (self.predicate)(&rec.key, &rec.value) == self.keep_when {
            self.down.forward(ctx, rec)?;
        }
        Ok(())
    }
}
