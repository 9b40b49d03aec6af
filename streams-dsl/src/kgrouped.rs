//! [`KGroupedStream`]: a stream grouped by key, ready to aggregate into a [`KTable`].

use std::sync::Arc;

use streams_core::{Change, Downstream, Instantiation, NodeRef, Processor, Serde, StoreSpec};

use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::kwindowed::{SessionWindowedKStream, TimeWindowedKStream, WindowKind};
use crate::ops::aggregate::{aggregate_fn, count_fn, reduce_fn, Aggregate, AggregateFn};
use crate::options::{count_materialized, Grouped, Materialized, Serdes};
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows};

/// A stream grouped by key. Aggregations produce a table with one row per key, updated for
/// every record (merged by the cache between commits when caching is on).
///
/// Each aggregate keeps a timestamp, as in Kafka Streams: a key's first aggregate takes its
/// record's time, every later one the larger of the record's time and the previous
/// aggregate's, so a late (out-of-order) record updates the aggregate without moving it back in
/// time. Updates are forwarded with that timestamp.
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
        let materialized = count_materialized(materialized);
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, count_fn())
    }

    /// Combines the values of each key with `reducer` (the first value is taken as is).
    pub fn reduce(
        self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let materialized = self.reduce_materialized(materialized);
        self.aggregate_with("KSTREAM-REDUCE", materialized, reduce_fn(reducer))
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
            aggregate_fn(initializer, aggregator),
        )
    }

    /// Windows the grouped stream with tumbling or hopping windows, for windowed aggregations.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::prelude::*;
    /// use streams_dsl::{TimeWindows, Windowed, WindowedSerde};
    /// use streams_core::{I64Serde, OptionSerde, StringSerde, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream::<String, String>("views", Consumed::default())
    ///     .group_by_key(Grouped::inferred())
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
    ///     .count(Materialized::named("views-per-minute"))
    ///     .to_stream()
    ///     .map(|w: Windowed<String>, n| (w.to_string(), n))
    ///     .to("out", Produced::with(StringSerde, OptionSerde(I64Serde)));
    /// let mut driver = TestDriver::new(&builder.build()?)?;
    /// for ts in [1_000, 59_999, 60_000] {
    ///     driver.pipe_typed("views", &StringSerde, &StringSerde, &"home".to_string(), &String::new(), ts)?;
    /// }
    /// let out = driver.read_output_typed("out", &StringSerde, &OptionSerde(I64Serde))?;
    /// assert_eq!(out[1], ("home@[1970-01-01T00:00:00.000Z,1970-01-01T00:01:00.000Z)".to_string(), Some(2), 59_999));
    /// assert_eq!(out[2].1, Some(1));
    /// # Ok::<(), streams_core::Error>(())
    /// ```
    pub fn windowed_by(self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream::new(self, WindowKind::Time(windows))
    }

    /// Windows the grouped stream with sliding windows (see [`SlidingWindows`]).
    pub fn windowed_by_sliding(self, windows: SlidingWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream::new(self, WindowKind::Sliding(windows))
    }

    /// Windows the grouped stream into sessions (see [`SessionWindows`]).
    pub fn windowed_by_session(self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream::new(self, windows)
    }

    pub(crate) fn graph(&self) -> &crate::graph::GraphRef {
        &self.stream.graph
    }

    /// `materialized` with the value serde a reduce uses when none is given.
    pub(crate) fn reduce_materialized(
        &self,
        materialized: Materialized<K, V>,
    ) -> Materialized<K, V> {
        Materialized {
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
        }
    }

    /// Adds an aggregation node that owns a store: names the store (after `prefix` unless
    /// `materialized` names it), repartitions the stream first when its key changed, resolves
    /// the key and aggregate serdes, registers the store `spec` describes and connects it.
    /// Returns `None` after recording the error when something is missing or invalid.
    pub(crate) fn add_aggregation<KO, A, P, F>(
        &self,
        prefix: &str,
        materialized: &Materialized<K, A>,
        spec: impl FnOnce(&str) -> Result<StoreSpec, String>,
        make: impl FnOnce(String, Arc<dyn Serde<K>>, Arc<dyn Serde<A>>) -> F,
    ) -> Option<Aggregation<K, KO, A>>
    where
        KO: Clone + 'static,
        A: Clone + 'static,
        P: Processor<K, V> + 'static,
        F: Fn(&mut Instantiation<'_>, Downstream<KO, Change<A>>) -> streams_core::Result<P>
            + Send
            + Sync
            + 'static,
    {
        let graph = self.stream.graph.clone();
        let store = graph.borrow_mut().name(
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
            graph
                .borrow_mut()
                .missing_serde(&store, "key and aggregate");
            return None;
        };
        let spec = match spec(&store) {
            Ok(spec) => spec,
            Err(reason) => {
                graph
                    .borrow_mut()
                    .invalid(format!("store `{store}`"), reason);
                return None;
            }
        };
        let make = make(store.clone(), key_serde.clone(), agg_serde.clone());
        let node = stream.add(prefix, None, make);
        graph.borrow_mut().add_keyed_store_for(node.id, spec);
        Some(Aggregation {
            node,
            key_serde,
            agg_serde,
            store,
        })
    }

    pub(crate) fn aggregate_with<A: Clone + 'static>(
        self,
        prefix: &str,
        materialized: Materialized<K, A>,
        f: AggregateFn<K, V, A>,
    ) -> KTable<K, A> {
        let cached = materialized.caching;
        let added = self.add_aggregation(
            prefix,
            &materialized,
            |store| Ok(materialized.key_value_spec(store)),
            |store_name, ks, as_| {
                move |inst: &mut Instantiation<'_>, down| {
                    Ok(Aggregate {
                        name: inst.node_name().to_string(),
                        store: inst.kv_store(&store_name)?,
                        store_name: store_name.clone(),
                        cached,
                        key_serde: ks.clone(),
                        agg_serde: as_.clone(),
                        f: f.clone(),
                        down,
                    })
                }
            },
        );
        let graph = self.stream.graph.clone();
        match added {
            Some(a) => KTable::from_node(
                &graph,
                a.node,
                Serdes {
                    key: Some(a.key_serde),
                    value: Some(a.agg_serde),
                },
                Some(a.store),
            ),
            None => KTable::from_node(&graph, NodeRef::dangling(), Serdes::none(), None),
        }
    }
}

/// What [`KGroupedStream::add_aggregation`] added.
pub(crate) struct Aggregation<K, KO, A> {
    pub(crate) node: NodeRef<KO, Change<A>>,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<A>>,
    pub(crate) store: String,
}
