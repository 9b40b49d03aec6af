//! [`KGroupedStream`]: a stream grouped by key, ready to aggregate into a [`KTable`].

use std::sync::Arc;

use streams_core::{Change, NodeRef};

use crate::kstream::{dead, KStream};
use crate::ktable::KTable;
use crate::ops::aggregate::{Aggregate, AggregateFn};
use crate::options::{Grouped, Materialized, Serdes};

/// A stream grouped by key. Aggregations produce a table with one row per key, updated for
/// every record (merged by the cache between commits when caching is on).
///
/// ```
/// use streams_dsl::prelude::*;
/// use streams_core::{TestDriver, StringSerde, I64Serde};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("words", Consumed::default())
///     .group_by_key(Grouped::inferred())
///     .count(Materialized::named("counts"))
///     .to_stream()
///     .to("counts-out", Produced::default());
/// let topology = builder.build()?;
/// let mut driver = TestDriver::new(&topology)?;
/// for (w, ts) in [("a", 1), ("b", 2), ("a", 3)] {
///     driver.pipe_typed("words", &StringSerde, &StringSerde, &w.to_string(), &String::new(), ts)?;
/// }
/// let out = driver.read_output_typed("counts-out", &StringSerde, &streams_core::OptionSerde(I64Serde))?;
/// assert_eq!(out.last(), Some(&("a".to_string(), Some(2), 3)));
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
    grouped: Grouped<K, V>,
}

impl<K: Clone + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>, grouped: Grouped<K, V>) -> Self {
        KGroupedStream { stream, grouped }
    }

    /// The number of records per key.
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let materialized = Materialized {
            serdes: Serdes {
                key: materialized.serdes.key,
                value: materialized
                    .serdes
                    .value
                    .or_else(|| Some(Arc::new(streams_core::I64Serde))),
            },
            ..materialized
        };
        self.aggregate_with(
            "KSTREAM-AGGREGATE",
            materialized,
            Arc::new(|_, _, old: Option<i64>| old.unwrap_or(0) + 1),
        )
    }

    /// Combines the values of each key with `reducer` (the first value is taken as is).
    pub fn reduce(
        self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let materialized = Materialized {
            serdes: materialized.serdes.or(&Serdes {
                key: None,
                value: self
                    .grouped
                    .serdes
                    .value
                    .clone()
                    .or_else(|| self.stream.serdes.value.clone()),
            }),
            ..materialized
        };
        self.aggregate_with(
            "KSTREAM-REDUCE",
            materialized,
            Arc::new(move |_, v, old: Option<V>| match old {
                Some(agg) => reducer(agg, v),
                None => v,
            }),
        )
    }

    /// Folds the values of each key into an aggregate that starts at `initializer()`.
    pub fn aggregate<A: Clone + 'static>(
        self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized<K, A>,
    ) -> KTable<K, A> {
        self.aggregate_with(
            "KSTREAM-AGGREGATE",
            materialized,
            Arc::new(move |k, v, old: Option<A>| {
                aggregator(k, v, old.unwrap_or_else(&initializer))
            }),
        )
    }

    fn aggregate_with<A: Clone + 'static>(
        self,
        prefix: &str,
        materialized: Materialized<K, A>,
        f: AggregateFn<K, V, A>,
    ) -> KTable<K, A> {
        let state = self.stream.state.clone();
        let store = state.borrow_mut().name(
            &format!("{prefix}-STATE-STORE"),
            materialized.store_name.as_deref(),
        );
        let stream = if self.stream.needs_repartition {
            self.stream.through_repartition(
                self.grouped.serdes.clone(),
                Some(self.grouped.name.as_deref().unwrap_or(&store)),
            )
        } else {
            self.stream.clone()
        };
        let key_serde = materialized
            .serdes
            .key
            .clone()
            .or_else(|| self.grouped.serdes.key.clone())
            .or_else(|| stream.serdes.key.clone());
        let (Some(key_serde), Some(agg_serde)) = (key_serde, materialized.serdes.value.clone())
        else {
            state
                .borrow_mut()
                .missing_serde(&store, "key and aggregate");
            return KTable::from_node(&state, dead(), Serdes::none(), None);
        };
        let spec = materialized.key_value_spec(&store);
        if let Err(e) = state.borrow_mut().topo.add_store(spec) {
            state.borrow_mut().fail(e);
        }
        let (ks, as_) = (key_serde.clone(), agg_serde.clone());
        let store_name = store.clone();
        let cached = materialized.caching;
        let node: NodeRef<K, Change<A>> = stream.add(prefix, None, move |inst, down| {
            Ok(Aggregate {
                name: inst.node_name().to_string(),
                store: inst.kv_store(&store_name)?,
                queue: if cached {
                    Some(inst.flush_queue(&store_name)?)
                } else {
                    None
                },
                key_serde: ks.clone(),
                agg_serde: as_.clone(),
                f: f.clone(),
                down,
            })
        });
        {
            let mut s = state.borrow_mut();
            if let Err(e) = s.topo.connect_store(node.id, &store) {
                s.fail(e);
            }
        }
        KTable::from_node(
            &state,
            node,
            Serdes {
                key: Some(key_serde),
                value: Some(agg_serde),
            },
            Some(store),
        )
    }
}
