//! [`GlobalKTable`]: every partition of a topic, held by every instance, and the stream
//! joins that look it up.
//!
//! A stream joins a global table by a key it computes from each record (a foreign key), so
//! neither repartitioning nor co-partitioning is needed. The global store is filled from the
//! whole topic before any task processes, then kept up to date by the application's global
//! thread, so lookups see the table as the global thread last read it (not as of the stream
//! record's timestamp, as in Kafka Streams). Table updates alone emit nothing.
//!
//! The global store keeps plain values, without timestamps (its topic is its changelog, and it
//! is filled with the topic's values as they are): a join result carries the stream record's
//! timestamp, so nothing reads a global row's time.

use std::sync::Arc;

use streams_core::{
    Downstream, GlobalStoreRef, GlobalStoreSpec, NodeRef, Processor, ProcessorContext, Rec, Result,
    Serde,
};

use crate::builder::StreamsBuilder;
use crate::kstream::KStream;
use crate::ops::{decode, encode};
use crate::options::{Consumed, Materialized, Serdes};

/// A table of every partition of a topic, read by key from any task.
///
/// ```
/// use streams_dsl::prelude::*;
/// use streams_core::{StringSerde, TestDriver};
///
/// let builder = StreamsBuilder::new();
/// // currency → country, a small reference table every instance holds in full.
/// let countries = builder.global_table::<String, String>(
///     "currency-countries", Consumed::default(), Materialized::named("countries"));
/// builder
///     .stream::<String, String>("payments", Consumed::default()) // payment id → currency
///     .left_join_global(&countries, |_, currency| currency.clone(), |currency, country| {
///         format!("{currency} from {}", country.map_or("?", String::as_str))
///     })
///     .to("located", Produced::default());
/// let mut driver = TestDriver::new(&builder.build()?)?;
/// let s = |x: &str| x.to_string();
/// driver.pipe_typed("currency-countries", &StringSerde, &StringSerde, &s("NOK"), &s("Norway"), 1)?;
/// driver.pipe_typed("payments", &StringSerde, &StringSerde, &s("p1"), &s("NOK"), 2)?;
/// driver.pipe_typed("payments", &StringSerde, &StringSerde, &s("p2"), &s("ISK"), 3)?;
/// assert_eq!(
///     driver.read_output_typed("located", &StringSerde, &StringSerde)?,
///     vec![(s("p1"), s("NOK from Norway"), 2), (s("p2"), s("ISK from ?"), 3)]
/// );
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct GlobalKTable<K, V> {
    store: Option<String>,
    serdes: Serdes<K, V>,
}

impl StreamsBuilder {
    /// A global table of topic `topic`: every instance holds all of its partitions in the
    /// store `materialized` names (or an internal one). Its key and value serdes come from
    /// `materialized`, then `consumed`.
    pub fn global_table<K: Clone + 'static, V: Clone + 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> GlobalKTable<K, V> {
        let serdes = materialized.serdes.clone().or(&consumed.serdes);
        let mut s = self.graph.borrow_mut();
        let name = s.name(
            "GLOBAL-STORE",
            materialized
                .store_name
                .as_deref()
                .or(consumed.name.as_deref()),
        );
        if serdes.key.is_none() || serdes.value.is_none() {
            s.missing_serde(&name, "key and value");
            return GlobalKTable {
                store: None,
                serdes: Serdes::none(),
            };
        }
        let spec = GlobalStoreSpec {
            name: name.clone(),
            topic: topic.to_string(),
            persistent: !materialized.in_memory,
        };
        s.add_global_store(spec);
        GlobalKTable {
            store: Some(name),
            serdes,
        }
    }
}

/// `(key, value) -> the table key to look up`.
type KeySelector<K, V, GK> = Arc<dyn Fn(&K, &V) -> GK + Send + Sync>;

/// `(stream value, table value or None) -> output or None` (None: emit nothing).
type GlobalJoiner<V, T, R> = Arc<dyn Fn(&V, Option<&T>) -> Option<R> + Send + Sync>;

struct GlobalJoin<K, V, GK, T, R> {
    name: String,
    store: GlobalStoreRef,
    selector: KeySelector<K, V, GK>,
    key_serde: Arc<dyn Serde<GK>>,
    table_serde: Arc<dyn Serde<T>>,
    joiner: GlobalJoiner<V, T, R>,
    down: Downstream<K, R>,
}

impl<K: Clone + 'static, V: 'static, GK: 'static, T: 'static, R: Clone + 'static> Processor<K, V>
    for GlobalJoin<K, V, GK, T, R>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let foreign = (self.selector)(&rec.key, &rec.value);
        let kb = encode(self.key_serde.as_ref(), &foreign, &self.name)?;
        let found = self.store.lock().get(&kb)?;
        let table = found
            .map(|b| decode(self.table_serde.as_ref(), &b, &self.name))
            .transpose()?;
        match (self.joiner)(&rec.value, table.as_ref()) {
            Some(out) => self
                .down
                .forward(ctx, Rec::new(rec.key, out, rec.timestamp)),
            None => Ok(()),
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Inner join with a global table: for each record, looks up the row under
    /// `selector(key, value)`; records without a row are dropped. Keys stay as they are.
    pub fn join_global<GK: 'static, T: Clone + 'static, R: Clone + 'static>(
        &self,
        table: &GlobalKTable<GK, T>,
        selector: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, &T) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        self.global_join(
            table,
            Arc::new(selector),
            Arc::new(move |v, t: Option<&T>| t.map(|t| joiner(v, t))),
        )
    }

    /// Left join with a global table: like [`KStream::join_global`], but a record without a
    /// row is joined with `None`.
    pub fn left_join_global<GK: 'static, T: Clone + 'static, R: Clone + 'static>(
        &self,
        table: &GlobalKTable<GK, T>,
        selector: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&T>) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        self.global_join(
            table,
            Arc::new(selector),
            Arc::new(move |v, t: Option<&T>| Some(joiner(v, t))),
        )
    }

    fn global_join<GK: 'static, T: Clone + 'static, R: Clone + 'static>(
        &self,
        table: &GlobalKTable<GK, T>,
        selector: KeySelector<K, V, GK>,
        joiner: GlobalJoiner<V, T, R>,
    ) -> KStream<K, R> {
        let (Some(store), Some(key_serde), Some(table_serde)) = (
            table.store.clone(),
            table.serdes.key.clone(),
            table.serdes.value.clone(),
        ) else {
            // The global table already reported what it lacks.
            return self.derive_unkeyed(NodeRef::dangling());
        };
        let node = self.add("KSTREAM-GLOBALJOIN", None, move |inst, down| {
            Ok(GlobalJoin {
                name: inst.node_name().to_string(),
                store: inst.global_store(&store)?,
                selector: selector.clone(),
                key_serde: key_serde.clone(),
                table_serde: table_serde.clone(),
                joiner: joiner.clone(),
                down,
            })
        });
        self.derive_unkeyed(node)
    }
}
