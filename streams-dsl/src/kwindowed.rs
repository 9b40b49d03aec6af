//! Windowed grouped streams: [`TimeWindowedKStream`] (tumbling, hopping and sliding windows)
//! and [`SessionWindowedKStream`], whose aggregations yield tables keyed by
//! [`Windowed<K>`](crate::Windowed).
//!
//! Each aggregation owns a window store (sessions: a session store) kept for the windows'
//! retention, after which whole segments are dropped. The tables they return know their grace
//! period, so [`KTable::suppress`](crate::KTable::suppress) can tell when a window closes.

use std::sync::Arc;

use streams_core::{Downstream, NodeRef, Processor, Serde};

use crate::kgrouped::{Aggregation, KGroupedStream};
use crate::ktable::KTable;
use crate::ops::aggregate::{aggregate_fn, count_fn, reduce_fn, AggregateFn};
use crate::ops::session_aggregate::{MergerFn, SessionAggregate};
use crate::ops::window_aggregate::{SlidingWindowAggregate, TimeWindowAggregate, WindowedCore};
use crate::options::{count_materialized, Materialized, Serdes};
use crate::windowed::{Windowed, WindowedSerde};
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows};

#[derive(Debug, Clone, Copy)]
pub(crate) enum WindowKind {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

/// The table of an aggregation that was added (or a dead one after an error, which `build()`
/// reports).
fn windowed_table<K: Clone + 'static, A: Clone + 'static>(
    graph: &crate::graph::GraphRef,
    added: Option<Aggregation<K, Windowed<K>, A>>,
    grace: i64,
    window_size_ms: Option<i64>,
) -> KTable<Windowed<K>, A> {
    match added {
        Some(a) => {
            let key: Arc<dyn Serde<Windowed<K>>> = Arc::new(match window_size_ms {
                Some(size) => WindowedSerde::time_from_arc(a.key_serde, size),
                None => WindowedSerde::session_from_arc(a.key_serde),
            });
            KTable::from_node(
                graph,
                a.node,
                Serdes {
                    key: Some(key),
                    value: Some(a.agg_serde),
                },
                None,
            )
            .with_window_grace(Some(grace))
        }
        None => KTable::from_node(graph, NodeRef::dangling(), Serdes::none(), None),
    }
}

/// A grouped stream in time windows (tumbling, hopping or sliding), ready to aggregate into a
/// table with one row per key and window. Made by [`KGroupedStream::windowed_by`] and
/// [`KGroupedStream::windowed_by_sliding`].
///
/// Each record updates every open window it falls in and each update is forwarded (merged by
/// the cache between commits when caching is on), timestamped with the largest record time of
/// its window. A record that falls only in closed windows (`end + grace <= stream time`) is
/// dropped and counted as `"late"`.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::prelude::*;
/// use streams_dsl::{SlidingWindows, Windowed, WindowedSerde};
/// use streams_core::{I64Serde, OptionSerde, StringSerde, TestDriver};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, i64>("temps", Consumed::default())
///     .group_by_key(Grouped::inferred())
///     .windowed_by_sliding(SlidingWindows::of_time_difference_with_no_grace(Duration::from_millis(10)))
///     .reduce(|a, b| a.max(b), Materialized::named("max-temp").with_caching(false))
///     .to_stream()
///     .to("out", Produced::inferred());
/// let mut driver = TestDriver::new(&builder.build()?)?;
/// for (v, ts) in [(20i64, 100), (25, 105)] {
///     driver.pipe_typed("temps", &StringSerde, &I64Serde, &"t1".to_string(), &v, ts)?;
/// }
/// // Sliding windows of a 10 ms difference are 11 ms long.
/// let keys = WindowedSerde::time(StringSerde, Duration::from_millis(11));
/// let out = driver.read_output_typed("out", &keys, &OptionSerde(I64Serde))?;
/// let windows: Vec<(i64, i64, Option<i64>)> =
///     out.iter().map(|(w, v, _)| (w.window.start, w.window.end, *v)).collect();
/// // [90, 100]; then, in Kafka Streams' order, [101, 111] (the right window of 100, which 105
/// // opens) and [95, 105] (105's left window, both records).
/// assert_eq!(windows, vec![(90, 101, Some(20)), (101, 112, Some(25)), (95, 106, Some(25))]);
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: WindowKind,
}

impl<K: Clone + 'static, V: Clone + 'static> TimeWindowedKStream<K, V> {
    pub(crate) fn new(grouped: KGroupedStream<K, V>, windows: WindowKind) -> Self {
        TimeWindowedKStream { grouped, windows }
    }

    /// The number of records per key and window.
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let materialized = count_materialized(materialized);
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, count_fn())
    }

    /// Combines the values of each key and window with `reducer`.
    pub fn reduce(
        self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let materialized = self.grouped.reduce_materialized(materialized);
        self.aggregate_with("KSTREAM-REDUCE", materialized, reduce_fn(reducer))
    }

    /// Folds the values of each key and window into an aggregate that starts at
    /// `initializer()`.
    pub fn aggregate<A: Clone + 'static>(
        self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized<K, A>,
    ) -> KTable<Windowed<K>, A> {
        self.aggregate_with(
            "KSTREAM-AGGREGATE",
            materialized,
            aggregate_fn(initializer, aggregator),
        )
    }

    fn aggregate_with<A: Clone + 'static>(
        self,
        prefix: &str,
        materialized: Materialized<K, A>,
        f: AggregateFn<K, V, A>,
    ) -> KTable<Windowed<K>, A> {
        match self.windows {
            WindowKind::Time(w) => self.add(
                prefix,
                materialized,
                (w.validate(), w.size_ms(), w.grace_ms()),
                w.size_ms().saturating_add(w.grace_ms()),
                move |core| TimeWindowAggregate {
                    core,
                    windows: w,
                    f: f.clone(),
                },
            ),
            // Windows are looked up as far back as `t - 2d` from records as old as
            // `stream time - d - grace`, and starts run up to `stream time + 1`.
            WindowKind::Sliding(w) => self.add(
                prefix,
                materialized,
                (w.validate(), w.window_size_ms(), w.grace_ms()),
                w.time_difference_ms()
                    .saturating_mul(3)
                    .saturating_add(w.grace_ms())
                    .saturating_add(2),
                move |core| SlidingWindowAggregate {
                    core,
                    windows: w,
                    f: f.clone(),
                },
            ),
        }
    }

    fn add<A: Clone + 'static, P: Processor<K, V> + 'static>(
        self,
        prefix: &str,
        materialized: Materialized<K, A>,
        (valid, size, grace): (Result<(), String>, i64, i64),
        least_retention: i64,
        make: impl Fn(WindowedCore<K, A>) -> P + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, A> {
        let cached = materialized.caching;
        let added = self.grouped.add_aggregation(
            prefix,
            &materialized,
            |store| {
                valid?;
                let retention = materialized.retention(least_retention)?;
                Ok(materialized.window_spec(store, retention, size))
            },
            |store_name, key_serde, agg_serde| {
                move |inst: &mut streams_core::Instantiation<'_>, down: Downstream<_, _>| {
                    Ok(make(WindowedCore {
                        name: inst.node_name().to_string(),
                        store: inst.window_store(&store_name)?,
                        cached,
                        key_serde: key_serde.clone(),
                        agg_serde: agg_serde.clone(),
                        size_ms: size,
                        grace_ms: grace,
                        down,
                        observed: crate::ops::ObservedTime::default(),
                    }))
                }
            },
        );
        windowed_table(self.grouped.graph(), added, grace, Some(size))
    }
}

/// How long a session store keeps sessions, in stream time after their end: `gap + grace`, as
/// Kafka Streams' session stores. A store finds only sessions ending after
/// `store time - retention`, where its time is the latest session end written, so a record
/// at the edge of its grace starts a session of its own instead of merging with one that
/// ended too long ago, exactly as in Kafka Streams.
fn session_retention(w: &SessionWindows) -> i64 {
    w.gap_ms().saturating_add(w.grace_ms())
}

/// A grouped stream in session windows, ready to aggregate into a table with one row per key
/// and session. Made by [`KGroupedStream::windowed_by_session`].
///
/// A record joins the key's sessions that lie within the inactivity gap of it, merging them
/// when it bridges several; each merged-away session is forwarded as a deletion, then the new
/// session's aggregate. Session stores have no cache: every update is forwarded.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::prelude::*;
/// use streams_dsl::{SessionWindows, WindowedSerde};
/// use streams_core::{I64Serde, OptionSerde, StringSerde, TestDriver};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("clicks", Consumed::default())
///     .group_by_key(Grouped::inferred())
///     .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(
///         Duration::from_millis(5),
///         Duration::from_millis(10),
///     ))
///     .count(Materialized::named("sessions"))
///     .to_stream()
///     .to("out", Produced::inferred());
/// let mut driver = TestDriver::new(&builder.build()?)?;
/// for ts in [0, 10, 5] {
///     driver.pipe_typed("clicks", &StringSerde, &StringSerde, &"u".to_string(), &String::new(), ts)?;
/// }
/// let keys = WindowedSerde::session(StringSerde);
/// let out = driver.read_output_typed("out", &keys, &OptionSerde(I64Serde))?;
/// let last: Vec<_> = out[2..].iter().map(|(w, v, _)| (w.window.start, w.window.end, *v)).collect();
/// // The record at 5 bridges [0, 1) and [10, 11): both go, [0, 11) counts 3. (Without the
/// // grace, the store would have let [0, 1) go by then: it keeps sessions gap + grace.)
/// assert_eq!(last, vec![(0, 1, None), (10, 11, None), (0, 11, Some(3))]);
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
}

impl<K: Clone + 'static, V: Clone + 'static> SessionWindowedKStream<K, V> {
    pub(crate) fn new(grouped: KGroupedStream<K, V>, windows: SessionWindows) -> Self {
        SessionWindowedKStream { grouped, windows }
    }

    /// The number of records per key and session.
    pub fn count(self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let materialized = count_materialized(materialized);
        self.aggregate_with(
            "KSTREAM-AGGREGATE",
            materialized,
            count_fn(),
            Arc::new(|_, a, b| a + b),
        )
    }

    /// Combines the values of each key and session with `reducer`, which also merges two
    /// sessions' values.
    pub fn reduce(
        self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let materialized = self.grouped.reduce_materialized(materialized);
        let reducer = Arc::new(reducer);
        let merge = reducer.clone();
        self.aggregate_with(
            "KSTREAM-REDUCE",
            materialized,
            reduce_fn(move |a, b| reducer(a, b)),
            Arc::new(move |_, a, b| merge(a, b)),
        )
    }

    /// Folds the values of each key and session into an aggregate that starts at
    /// `initializer()`; `merger` combines the aggregates of two sessions a record bridges.
    pub fn aggregate<A: Clone + 'static>(
        self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        merger: impl Fn(&K, A, A) -> A + Send + Sync + 'static,
        materialized: Materialized<K, A>,
    ) -> KTable<Windowed<K>, A> {
        self.aggregate_with(
            "KSTREAM-AGGREGATE",
            materialized,
            aggregate_fn(initializer, aggregator),
            Arc::new(merger),
        )
    }

    fn aggregate_with<A: Clone + 'static>(
        self,
        prefix: &str,
        materialized: Materialized<K, A>,
        f: AggregateFn<K, V, A>,
        merger: MergerFn<K, A>,
    ) -> KTable<Windowed<K>, A> {
        let w = self.windows;
        let added = self.grouped.add_aggregation(
            prefix,
            &materialized,
            |store| {
                w.validate()?;
                let retention = materialized.retention(session_retention(&w))?;
                Ok(materialized.session_spec(store, retention))
            },
            |store_name, key_serde, agg_serde| {
                move |inst: &mut streams_core::Instantiation<'_>, down| {
                    Ok(SessionAggregate {
                        name: inst.node_name().to_string(),
                        store: inst.session_store(&store_name)?,
                        key_serde: key_serde.clone(),
                        agg_serde: agg_serde.clone(),
                        gap_ms: w.gap_ms(),
                        // A session can still grow for `gap` after its last record.
                        grace_ms: w.grace_ms().saturating_add(w.gap_ms()),
                        f: f.clone(),
                        merger: merger.clone(),
                        down,
                        observed: crate::ops::ObservedTime::default(),
                    })
                }
            },
        );
        windowed_table(
            self.grouped.graph(),
            added,
            w.grace_ms().saturating_add(w.gap_ms()),
            None,
        )
    }
}
