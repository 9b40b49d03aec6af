//! Joins that look up a materialized table: stream–table (inner and left) and table–table
//! (inner, left, outer).
//!
//! Stream–table: a stream record looks up the table's current value for its key; table
//! updates alone emit nothing. Inner joins drop records with no match; left joins emit them
//! with `None`. Table–table: an update on either side looks up the other side's store and
//! emits the joined change (new and old), deletions included.
//!
//! Timestamps, as in Kafka Streams: a stream–table result carries the stream record's time.
//! A table–table result carries the larger of the update's time and the time the other side's
//! current value was written (tables keep it in their timestamped stores), so a result is never
//! older than either of its inputs; when the other side has no value for the key, the update's
//! time. A deletion on one side is an update like any other: its result (a deletion, or for
//! left and outer joins the row joined with `None`) carries the larger of the deletion's time
//! and the other side's value's time.
//!
//! An uncached table forwards a deletion of a key it does not hold (`None` to `None`, see
//! [`Materialize`](super::table::Materialize)); as in Kafka Streams' `KTableKTable*Join`, a
//! side passes such an update on when the other side has a row for the key, joined as any
//! update: an inner join, or a left join's left side, emits a deletion; a left join's right
//! side emits the left row joined with `None` again; an outer join emits the other row
//! joined with `None`. Without a row on the other side nothing is emitted. (A cached table
//! forwards no such deletion, so then nothing is emitted either, as in Kafka Streams.)

use std::sync::Arc;

use streams_core::{
    Change, Downstream, KvStoreRef, Processor, ProcessorContext, Rec, Result, Serde,
};

use super::encode;
use super::stamped::get_stamped;

/// The value of `key` in a table's (timestamped) store and the time it was written.
fn lookup<K: 'static, T: 'static>(
    store: &KvStoreRef,
    key_serde: &dyn Serde<K>,
    value_serde: &dyn Serde<T>,
    key: &K,
    node: &str,
) -> Result<Option<(T, i64)>> {
    let kb = encode(key_serde, key, node)?;
    get_stamped(store, &kb, value_serde, node)
}

/// `(key, stream value, table value) -> joined value`, or `None` to emit nothing (an inner
/// join without a match).
pub(crate) type StreamTableJoiner<K, V, T, R> =
    Arc<dyn Fn(&K, V, Option<T>) -> Option<R> + Send + Sync>;

pub(crate) struct StreamTableJoin<K, V, T, R> {
    pub(crate) name: String,
    pub(crate) table: KvStoreRef,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) table_serde: Arc<dyn Serde<T>>,
    pub(crate) joiner: StreamTableJoiner<K, V, T, R>,
    pub(crate) down: Downstream<K, R>,
}

impl<K: Clone + 'static, V: 'static, T: 'static, R: Clone + 'static> Processor<K, V>
    for StreamTableJoin<K, V, T, R>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let found = lookup(
            &self.table,
            self.key_serde.as_ref(),
            self.table_serde.as_ref(),
            &rec.key,
            &self.name,
        )?
        .map(|(v, _)| v);
        match (self.joiner)(&rec.key, rec.value, found) {
            Some(out) => self
                .down
                .forward(ctx, Rec::new(rec.key, out, rec.timestamp)),
            None => {
                ctx.record_dropped(&self.name, "no-match");
                Ok(())
            }
        }
    }
}

/// `(key, this side's value, other side's value) -> joined value`, or `None` where the join
/// kind emits nothing for that combination.
pub(crate) type TableJoiner<K, This, Other, O> =
    Arc<dyn Fn(&K, Option<&This>, Option<&Other>) -> Option<O> + Send + Sync>;

/// One side of a table–table join: this side's changes joined with the other side's store.
pub(crate) struct TableTableJoin<K, This, Other, O> {
    pub(crate) name: String,
    pub(crate) other: KvStoreRef,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) other_serde: Arc<dyn Serde<Other>>,
    pub(crate) joiner: TableJoiner<K, This, Other, O>,
    pub(crate) down: Downstream<K, Change<O>>,
}

impl<K: Clone + 'static, This: 'static, Other: 'static, O: Clone + 'static>
    Processor<K, Change<This>> for TableTableJoin<K, This, Other, O>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, Change<This>>) -> Result<()> {
        let other = lookup(
            &self.other,
            self.key_serde.as_ref(),
            self.other_serde.as_ref(),
            &rec.key,
            &self.name,
        )?;
        let (other, timestamp) = match other {
            Some((v, ts)) => (Some(v), rec.timestamp.max(ts)),
            None => (None, rec.timestamp),
        };
        let new = (self.joiner)(&rec.key, rec.value.new.as_ref(), other.as_ref());
        let old = (self.joiner)(&rec.key, rec.value.old.as_ref(), other.as_ref());
        // With a row on the other side every update is passed on, even one that joins to
        // nothing before and after (a deletion of a key this side did not hold: an inner
        // join's result is a deletion again); without one, only updates that join to
        // something.
        if other.is_none() && new.is_none() && old.is_none() {
            return Ok(());
        }
        self.down
            .forward(ctx, Rec::new(rec.key, Change::new(new, old), timestamp))
    }
}
