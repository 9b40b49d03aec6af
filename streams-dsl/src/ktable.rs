//! [`KTable`]: a changelog stream read as a table, one current value per key.

use crate::ops::{Predicate, ValueMapper};
use std::sync::Arc;

use streams_core::{Change, NodeRef, OptionSerde, Serde, StoreSpec, TopicName};

use crate::graph::GraphRef;
use crate::kstream::KStream;
use crate::ops::join::{TableJoiner, TableTableJoin};
use crate::ops::suppress::{Suppress, SuppressParts};
use crate::ops::table::{FilterChanges, MapChanges, Materialize, MaterializeChanges, ToStream};
use crate::options::{Consumed, Materialized, Serdes};
use crate::suppressed::{BufferFull, Suppressed};

/// A table: for each key, its latest value. Internally a stream of changes
/// (`new` and `old` value per update), so downstream tables and joins can retract old values.
///
/// Every row has a timestamp, as in Kafka Streams, kept with the value in the table's store
/// (and changelog, so it survives a restore): the record's for a table read from a topic, the
/// aggregation's rule for an aggregated table (see [`KGroupedStream`](crate::KGroupedStream)),
/// passed through unchanged by [`filter`](KTable::filter) and [`map_values`](KTable::map_values),
/// the later of both sides for a table–table join (see [`join`](KTable::join)).
///
/// ```
/// use streams_dsl::prelude::*;
/// use streams_core::{TestDriver, StringSerde, OptionSerde};
///
/// let builder = StreamsBuilder::new();
/// let rates = builder.table::<String, String>("rates", Consumed::default(), Materialized::named("rates-store"));
/// rates.filter(|_, r| r != "0").to_stream().to("nonzero", Produced::with(StringSerde, OptionSerde(StringSerde)));
/// let topology = builder.build()?;
/// let mut driver = TestDriver::new(&topology)?;
/// driver.pipe_typed("rates", &StringSerde, &StringSerde, &"USD".to_string(), &"0.79".to_string(), 1)?;
/// let out = driver.read_output_typed("nonzero", &StringSerde, &OptionSerde(StringSerde))?;
/// assert_eq!(out, vec![("USD".to_string(), Some("0.79".to_string()), 1)]);
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct KTable<K, V> {
    pub(crate) graph: GraphRef,
    pub(crate) node: NodeRef<K, Change<V>>,
    pub(crate) serdes: Serdes<K, V>,
    pub(crate) store: Option<String>,
    /// For a windowed table: the grace period of the windowed aggregation it comes from, which
    /// tells `suppress(until_window_closes)` when a window closes.
    pub(crate) window_grace: Option<i64>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable {
            graph: self.graph.clone(),
            node: self.node,
            serdes: self.serdes.clone(),
            store: self.store.clone(),
            window_grace: self.window_grace,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    pub(crate) fn from_node(
        graph: &GraphRef,
        node: NodeRef<K, Change<V>>,
        serdes: Serdes<K, V>,
        store: Option<String>,
    ) -> Self {
        KTable {
            graph: graph.clone(),
            node,
            serdes,
            store,
            window_grace: None,
        }
    }

    /// The same table, known to be windowed with `grace`.
    pub(crate) fn with_window_grace(mut self, grace: Option<i64>) -> Self {
        self.window_grace = grace;
        self
    }

    pub(crate) fn source(
        graph: &GraphRef,
        topic: TopicName,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> Self {
        let serdes = materialized.serdes.clone().or(&consumed.serdes);
        let (Some(ks), Some(vs)) = (serdes.key.clone(), serdes.value.clone()) else {
            graph
                .borrow_mut()
                .missing_serde("table source", "key and value");
            return KTable::from_node(graph, NodeRef::dangling(), Serdes::none(), None);
        };
        let optional: Arc<dyn Serde<Option<V>>> = Arc::new(OptionSerde(vs.clone()));
        let source = KStream::source(
            graph,
            vec![topic],
            Consumed {
                serdes: Serdes {
                    key: Some(ks.clone()),
                    value: Some(optional),
                },
                name: consumed.name,
            },
        );
        let store = graph.borrow_mut().name(
            "KTABLE-SOURCE-STATE-STORE",
            materialized.store_name.as_deref(),
        );
        Self::materialize_onto(
            graph,
            &store,
            &materialized,
            ks,
            vs,
            |store_name, ks, vs, cached| {
                source.add("KTABLE-SOURCE", None, move |inst, down| {
                    Ok(Materialize {
                        name: inst.node_name().to_string(),
                        store: inst.kv_store(&store_name)?,
                        store_name: store_name.clone(),
                        cached,
                        key_serde: ks.clone(),
                        value_serde: vs.clone(),
                        down,
                    })
                })
            },
        )
    }

    fn materialize_onto(
        graph: &GraphRef,
        store: &str,
        materialized: &Materialized<K, V>,
        ks: Arc<dyn Serde<K>>,
        vs: Arc<dyn Serde<V>>,
        add: impl FnOnce(String, Arc<dyn Serde<K>>, Arc<dyn Serde<V>>, bool) -> NodeRef<K, Change<V>>,
    ) -> Self {
        let node = add(
            store.to_string(),
            ks.clone(),
            vs.clone(),
            materialized.caching,
        );
        graph
            .borrow_mut()
            .add_keyed_store_for(node.id, materialized.key_value_spec(store));
        KTable::from_node(
            graph,
            node,
            Serdes {
                key: Some(ks),
                value: Some(vs),
            },
            Some(store.to_string()),
        )
    }

    /// The name of the store this table is materialized in, if any (queryable by that name).
    pub fn store_name(&self) -> Option<&str> {
        self.store.as_deref()
    }

    fn add<V2: Clone + 'static, P, F>(&self, prefix: &str, make: F) -> NodeRef<K, Change<V2>>
    where
        P: streams_core::Processor<K, Change<V>> + 'static,
        F: Fn(
                &mut streams_core::Instantiation<'_>,
                streams_core::Downstream<K, Change<V2>>,
            ) -> streams_core::Result<P>
            + Send
            + Sync
            + 'static,
    {
        self.graph
            .borrow_mut()
            .add_processor(prefix, None, &[self.node], make)
    }

    /// The table of rows for which `predicate` holds; rows that stop passing are deleted.
    /// Updates keep their timestamps.
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        self.filter_where(Arc::new(predicate), true)
    }

    /// The table without the rows for which `predicate` holds.
    pub fn filter_not(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        self.filter_where(Arc::new(predicate), false)
    }

    fn filter_where(&self, predicate: Predicate<K, V>, keep_when: bool) -> KTable<K, V> {
        let node = self.add("KTABLE-FILTER", move |_, down| {
            Ok(FilterChanges {
                predicate: predicate.clone(),
                keep_when,
                down,
            })
        });
        KTable::from_node(&self.graph, node, self.serdes.clone(), None)
            .with_window_grace(self.window_grace)
    }

    /// The table with each value replaced by `f(key, value)`. Updates keep their timestamps.
    pub fn map_values<V2: Clone + 'static>(
        &self,
        f: impl Fn(&K, &V) -> V2 + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        let f: ValueMapper<K, V, V2> = Arc::new(f);
        let node = self.add("KTABLE-MAPVALUES", move |_, down| {
            Ok(MapChanges { f: f.clone(), down })
        });
        KTable::from_node(
            &self.graph,
            node,
            Serdes {
                key: self.serdes.key.clone(),
                value: None,
            },
            None,
        )
        .with_window_grace(self.window_grace)
    }

    /// Holds updates back and emits fewer of them: one final result per window
    /// ([`Suppressed::until_window_closes`], windowed tables only) or at most one update per
    /// key per time limit ([`Suppressed::until_time_limit`]). See [`Suppressed`] for an example.
    pub fn suppress(&self, suppressed: Suppressed<K>) -> KTable<K, V> {
        let delay = if suppressed.final_results() {
            match self.window_grace {
                Some(grace) => grace,
                None => {
                    self.graph.borrow_mut().invalid(
                        "suppress(until_window_closes)",
                        "needs a table made by a windowed aggregation",
                    );
                    return KTable::from_node(
                        &self.graph,
                        NodeRef::dangling(),
                        Serdes::none(),
                        None,
                    );
                }
            }
        } else {
            suppressed.limit_ms
        };
        if suppressed.final_results()
            && suppressed.buffer.when_full() == Some(BufferFull::EmitEarly)
        {
            self.graph.borrow_mut().invalid(
                "suppress(until_window_closes)",
                "a final result cannot be emitted early: use fail_when_full()",
            );
        }
        let (Some(key_serde), Some(value_serde)) =
            (self.serdes.key.clone(), self.serdes.value.clone())
        else {
            self.graph
                .borrow_mut()
                .missing_serde("suppress", "key and value");
            return KTable::from_node(&self.graph, NodeRef::dangling(), Serdes::none(), None);
        };
        let name = self
            .graph
            .borrow_mut()
            .name("KTABLE-SUPPRESS", suppressed.name.as_deref());
        // The buffer's store; its changelog topic derives from the node's name.
        let store = format!("{name}-store");
        let suppressed = Arc::new(suppressed);
        let node = {
            let store = store.clone();
            self.graph.borrow_mut().add_processor(
                &name,
                Some(&name),
                &[self.node],
                move |inst, down| {
                    let parts = SuppressParts {
                        name: inst.node_name().to_string(),
                        store_name: store.clone(),
                        store: inst.kv_store(&store)?,
                        key_serde: key_serde.clone(),
                        value_serde: value_serde.clone(),
                        down,
                    };
                    Ok(Suppress::new(parts, &suppressed, delay))
                },
            )
        };
        self.graph
            .borrow_mut()
            .add_store_for(node.id, StoreSpec::key_value(store));
        KTable::from_node(&self.graph, node, self.serdes.clone(), None)
            .with_window_grace(self.window_grace)
    }

    /// Materializes this table into a store (named by `materialized`), so it can be queried.
    /// The store keeps each row's timestamp as it arrives.
    pub fn materialize(&self, materialized: Materialized<K, V>) -> KTable<K, V> {
        let serdes = materialized.serdes.clone().or(&self.serdes);
        let (Some(ks), Some(vs)) = (serdes.key, serdes.value) else {
            self.graph
                .borrow_mut()
                .missing_serde("materialize", "key and value");
            return KTable::from_node(&self.graph, NodeRef::dangling(), Serdes::none(), None);
        };
        let store = self.graph.borrow_mut().name(
            "KTABLE-MATERIALIZED-STATE-STORE",
            materialized.store_name.as_deref(),
        );
        let this = self.clone();
        Self::materialize_onto(
            &self.graph,
            &store,
            &materialized,
            ks,
            vs,
            |store_name, ks, vs, cached| {
                this.add("KTABLE-MATERIALIZE", move |inst, down| {
                    Ok(MaterializeChanges(Materialize {
                        name: inst.node_name().to_string(),
                        store: inst.kv_store(&store_name)?,
                        store_name: store_name.clone(),
                        cached,
                        key_serde: ks.clone(),
                        value_serde: vs.clone(),
                        down,
                    }))
                })
            },
        )
    }

    /// This table with a store (materializing it in an internal store when it has none).
    pub(crate) fn materialized(&self) -> (KTable<K, V>, String) {
        match &self.store {
            Some(s) => (self.clone(), s.clone()),
            None => {
                let t = self.materialize(Materialized::inferred());
                let s = t.store.clone().unwrap_or_default();
                (t, s)
            }
        }
    }

    /// The stream of this table's updates: each update's new value, `None` for a deletion.
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let node = self.add_stream();
        let value: Option<Arc<dyn Serde<Option<V>>>> = self
            .serdes
            .value
            .clone()
            .map(|v| Arc::new(OptionSerde(v)) as Arc<dyn Serde<Option<V>>>);
        KStream {
            graph: self.graph.clone(),
            node,
            serdes: Serdes {
                key: self.serdes.key.clone(),
                value,
            },
            needs_repartition: false,
        }
    }

    fn add_stream(&self) -> NodeRef<K, Option<V>> {
        let mut s = self.graph.borrow_mut();
        s.add_processor("KTABLE-TOSTREAM", None, &[self.node], |_, down| {
            Ok(ToStream { down })
        })
    }

    /// Inner join: a row for each key present in both tables.
    ///
    /// An update on either side is joined with the other side's current row. The result's
    /// timestamp is the larger of the update's and that row's (Kafka Streams' rule), so a
    /// result is never older than either input; a deletion on one side yields a deletion with
    /// the larger of the deletion's time and the other row's. The same holds for
    /// [`left_join`](KTable::left_join) and [`outer_join`](KTable::outer_join), where an update
    /// that finds no row on the other side keeps its own timestamp.
    ///
    /// An uncached table forwards a deletion of a key it does not hold; where the other side
    /// has a row, the join passes it on as Kafka Streams does (a deletion here; the other
    /// side's row joined with `None` again from a left join's right side and an outer join).
    ///
    /// ```
    /// use streams_dsl::prelude::*;
    /// use streams_core::{OptionSerde, StringSerde, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// let names = builder.table::<String, String>("names", Consumed::default(), Materialized::named("names"));
    /// let cities = builder.table::<String, String>("cities", Consumed::default(), Materialized::named("cities"));
    /// names
    ///     .join(&cities, |n, c| format!("{n} in {c}"))
    ///     .to_stream()
    ///     .to("located", Produced::with(StringSerde, OptionSerde(StringSerde)));
    /// let mut driver = TestDriver::new(&builder.build()?)?;
    /// let s = |x: &str| x.to_string();
    /// driver.pipe_typed("cities", &StringSerde, &StringSerde, &s("u1"), &s("Oslo"), 20)?;
    /// driver.pipe_typed("names", &StringSerde, &StringSerde, &s("u1"), &s("Ann"), 10)?;
    /// let out = driver.read_output_typed("located", &StringSerde, &OptionSerde(StringSerde))?;
    /// // Stamped with the city's time, the later of the two.
    /// assert_eq!(out, vec![(s("u1"), Some(s("Ann in Oslo")), 20)]);
    /// # Ok::<(), streams_core::Error>(())
    /// ```
    pub fn join<R: Clone + 'static, O: Clone + 'static>(
        &self,
        other: &KTable<K, R>,
        joiner: impl Fn(&V, &R) -> O + Send + Sync + 'static,
    ) -> KTable<K, O> {
        self.table_join(
            other,
            "KTABLE-JOIN",
            Arc::new(move |l: Option<&V>, r: Option<&R>| l.zip(r).map(|(l, r)| joiner(l, r))),
        )
    }

    /// Left join: a row for each key of this table, with the other side's value if any.
    /// Timestamps as for [`join`](KTable::join).
    pub fn left_join<R: Clone + 'static, O: Clone + 'static>(
        &self,
        other: &KTable<K, R>,
        joiner: impl Fn(&V, Option<&R>) -> O + Send + Sync + 'static,
    ) -> KTable<K, O> {
        self.table_join(
            other,
            "KTABLE-LEFTJOIN",
            Arc::new(move |l: Option<&V>, r: Option<&R>| l.map(|l| joiner(l, r))),
        )
    }

    /// Outer join: a row for each key present in either table. Timestamps as for
    /// [`join`](KTable::join).
    pub fn outer_join<R: Clone + 'static, O: Clone + 'static>(
        &self,
        other: &KTable<K, R>,
        joiner: impl Fn(Option<&V>, Option<&R>) -> O + Send + Sync + 'static,
    ) -> KTable<K, O> {
        self.table_join(
            other,
            "KTABLE-OUTERJOIN",
            Arc::new(move |l: Option<&V>, r: Option<&R>| {
                (l.is_some() || r.is_some()).then(|| joiner(l, r))
            }),
        )
    }

    #[allow(clippy::type_complexity)]
    fn table_join<R: Clone + 'static, O: Clone + 'static>(
        &self,
        other: &KTable<K, R>,
        prefix: &str,
        joiner: Arc<dyn Fn(Option<&V>, Option<&R>) -> Option<O> + Send + Sync>,
    ) -> KTable<K, O> {
        let (left, left_store) = self.materialized();
        let (right, right_store) = other.materialized();
        let key = left.serdes.key.clone().or_else(|| right.serdes.key.clone());
        let (Some(ks), Some(lvs), Some(rvs)) =
            (key, left.serdes.value.clone(), right.serdes.value.clone())
        else {
            self.graph
                .borrow_mut()
                .missing_serde(prefix, "key and value");
            return KTable::from_node(&self.graph, NodeRef::dangling(), Serdes::none(), None);
        };
        let jl = joiner.clone();
        let left_joiner: TableJoiner<K, V, R, O> = Arc::new(move |_, l, r| jl(l, r));
        let right_joiner: TableJoiner<K, R, V, O> = Arc::new(move |_, r, l| joiner(l, r));
        let (ks1, ks2, rs) = (ks.clone(), ks.clone(), right_store.clone());
        let left_node = left.add(&format!("{prefix}-THIS"), move |inst, down| {
            Ok(TableTableJoin {
                name: inst.node_name().to_string(),
                other: inst.kv_store(&rs)?,
                key_serde: ks1.clone(),
                other_serde: rvs.clone(),
                joiner: left_joiner.clone(),
                down,
            })
        });
        let ls = left_store.clone();
        let right_node = right.add(&format!("{prefix}-OTHER"), move |inst, down| {
            Ok(TableTableJoin {
                name: inst.node_name().to_string(),
                other: inst.kv_store(&ls)?,
                key_serde: ks2.clone(),
                other_serde: lvs.clone(),
                joiner: right_joiner.clone(),
                down,
            })
        });
        let mut s = self.graph.borrow_mut();
        s.connect_store(left_node.id, &right_store);
        s.connect_store(right_node.id, &left_store);
        s.copartition(left.node.id, right.node.id);
        let merged = s.merge(&format!("{prefix}-MERGE"), None, &[left_node, right_node]);
        drop(s);
        KTable::from_node(
            &self.graph,
            merged,
            Serdes {
                key: Some(ks),
                value: None,
            },
            None,
        )
    }
}
