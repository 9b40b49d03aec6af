//! Nodes that forward what they get: `merge` targets and `split` branches; and the split
//! node, which sends each record to the first branch whose predicate matches.

use crate::ops::Predicate;

use streams_core::{Downstream, Processor, ProcessorContext, Rec, Result};

pub(crate) struct Passthrough<K, V> {
    pub(crate) down: Downstream<K, V>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V> for Passthrough<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        self.down.forward(ctx, rec)
    }
}

/// A branch predicate.
pub(crate) type BranchFn<K, V> = Predicate<K, V>;

/// Forwards to child `i` for the first predicate `i` that matches; with a default branch,
/// unmatched records go to the last child.
pub(crate) struct Split<K, V> {
    pub(crate) predicates: Vec<BranchFn<K, V>>,
    pub(crate) branches: Vec<Downstream<K, V>>,
    pub(crate) default: Option<Downstream<K, V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V> for Split<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        for (p, down) in self.predicates.iter().zip(&self.branches) {
            if p(&rec.key, &rec.value) {
                return down.forward(ctx, rec);
            }
        }
        if let Some(d) = &self.default {
            d.forward(ctx, rec)?;
        }
        Ok(())
    }
}
