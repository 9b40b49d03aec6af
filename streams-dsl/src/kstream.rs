//! [`KStream`]: an unbounded stream of keyed records, and its operators.

use crate::ops::{BranchPredicate, Inspector, Predicate};
use std::sync::Arc;

use streams_core::{Downstream, NodeRef, TopicName};

use crate::graph::GraphRef;
use crate::kgrouped::KGroupedStream;
use crate::ktable::KTable;
use crate::ops::filter::Filter;
use crate::ops::join::StreamTableJoin;
use crate::ops::map::{FlatMap, Map};
use crate::ops::passthrough::{Passthrough, Split};
use crate::ops::peek::Peek;
use crate::options::{Consumed, Grouped, Produced, Repartitioned, Serdes, StreamJoined};
use crate::windows::JoinWindows;

/// A stream of records with keys `K` and values `V`.
///
/// Operators return new streams; a stream can feed several operators (each gets every record).
/// Key-changing operators (`map`, `select_key`, `flat_map`) mark the stream, and a later
/// key-based operator (grouping, join) first writes it through a repartition topic, so records
/// with equal keys meet in one task.
///
/// ```
/// use streams_dsl::prelude::*;
/// use streams_core::{Record, TestDriver, StringSerde, U64Serde};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, u64>("in", Consumed::default())
///     .filter(|_, v| *v > 10)
///     .map_values(|v| v * 2)
///     .to("out", Produced::default());
/// let topology = builder.build()?;
/// let mut driver = TestDriver::new(&topology)?;
/// for (v, ts) in [(5u64, 1), (20, 2)] {
///     driver.pipe_typed("in", &StringSerde, &U64Serde, &"k".to_string(), &v, ts)?;
/// }
/// let out = driver.read_output_typed("out", &StringSerde, &U64Serde)?;
/// assert_eq!(out, vec![("k".to_string(), 40, 2)]);
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct KStream<K, V> {
    pub(crate) graph: GraphRef,
    pub(crate) node: NodeRef<K, V>,
    pub(crate) serdes: Serdes<K, V>,
    pub(crate) needs_repartition: bool,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            graph: self.graph.clone(),
            node: self.node,
            serdes: self.serdes.clone(),
            needs_repartition: self.needs_repartition,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    pub(crate) fn source(
        graph: &GraphRef,
        topics: Vec<TopicName>,
        consumed: Consumed<K, V>,
    ) -> Self {
        let mut s = graph.borrow_mut();
        let name = s.name("KSTREAM-SOURCE", consumed.name.as_deref());
        let (Some(ks), Some(vs)) = (consumed.serdes.key.clone(), consumed.serdes.value.clone())
        else {
            s.missing_serde(&name, "key and value");
            return KStream {
                graph: graph.clone(),
                node: NodeRef::dangling(),
                serdes: Serdes::none(),
                needs_repartition: false,
            };
        };
        let node = s.add_source(name, topics, ks, vs);
        drop(s);
        KStream {
            graph: graph.clone(),
            node,
            serdes: consumed.serdes,
            needs_repartition: false,
        }
    }

    /// Adds a processor node under this stream.
    pub(crate) fn add<K2, V2, P, F>(
        &self,
        prefix: &str,
        name: Option<&str>,
        make: F,
    ) -> NodeRef<K2, V2>
    where
        K2: Clone + 'static,
        V2: Clone + 'static,
        P: streams_core::Processor<K, V> + 'static,
        F: Fn(&mut streams_core::Instantiation<'_>, Downstream<K2, V2>) -> streams_core::Result<P>
            + Send
            + Sync
            + 'static,
    {
        self.graph
            .borrow_mut()
            .add_processor(prefix, name, &[self.node], make)
    }

    pub(crate) fn derive<K2, V2>(
        &self,
        node: NodeRef<K2, V2>,
        serdes: Serdes<K2, V2>,
        rekeyed: bool,
    ) -> KStream<K2, V2> {
        KStream {
            graph: self.graph.clone(),
            node,
            serdes,
            needs_repartition: self.needs_repartition || rekeyed,
        }
    }

    /// A stream from `node` with this stream's key (and key serde); values are new.
    pub(crate) fn derive_unkeyed<V2>(&self, node: NodeRef<K, V2>) -> KStream<K, V2> {
        self.derive(node, self.same_key_serde(), false)
    }

    fn same_key_serde<V2>(&self) -> Serdes<K, V2> {
        Serdes {
            key: self.serdes.key.clone(),
            value: None,
        }
    }

    /// Keeps the records for which `predicate` holds.
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KStream<K, V> {
        self.filter_where(Arc::new(predicate), true)
    }

    /// Drops the records for which `predicate` holds.
    pub fn filter_not(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KStream<K, V> {
        self.filter_where(Arc::new(predicate), false)
    }

    fn filter_where(&self, predicate: Predicate<K, V>, keep_when: bool) -> KStream<K, V> {
        let node = self.add("KSTREAM-FILTER", None, move |_, down| {
            Ok(Filter {
                predicate: predicate.clone(),
                keep_when,
                down,
            })
        });
        self.derive(node, self.serdes.clone(), false)
    }

    /// Replaces each record's key and value. Marks the stream for repartitioning.
    pub fn map<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        f: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let f: Arc<dyn Fn(K, V) -> (K2, V2) + Send + Sync> = Arc::new(f);
        let node = self.add("KSTREAM-MAP", None, move |_, down| {
            Ok(Map { f: f.clone(), down })
        });
        self.derive(node, Serdes::none(), true)
    }

    /// Replaces each record's value; the key, and so the partitioning, stays.
    pub fn map_values<V2: Clone + 'static>(
        &self,
        f: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        let node = self.add("KSTREAM-MAPVALUES", None, {
            let f = Arc::new(f);
            move |_, down| {
                let f = f.clone();
                Ok(Map {
                    f: Arc::new(move |k, v| (k, f(v))),
                    down,
                })
            }
        });
        self.derive(node, self.same_key_serde(), false)
    }

    /// Replaces each record's key. Marks the stream for repartitioning.
    pub fn select_key<K2: Clone + 'static>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        let node = self.add("KSTREAM-KEY-SELECT", None, {
            let f = Arc::new(f);
            move |_, down| {
                let f = f.clone();
                Ok(Map {
                    f: Arc::new(move |k, v| (f(&k, &v), v)),
                    down,
                })
            }
        });
        self.derive(
            node,
            Serdes {
                key: None,
                value: self.serdes.value.clone(),
            },
            true,
        )
    }

    /// Replaces each record with zero or more records. Marks the stream for repartitioning.
    pub fn flat_map<K2, V2, I>(
        &self,
        f: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        K2: Clone + 'static,
        V2: Clone + 'static,
        I: IntoIterator<Item = (K2, V2)>,
    {
        let node = self.add("KSTREAM-FLATMAP", None, {
            let f = Arc::new(f);
            move |_, down| {
                let f = f.clone();
                Ok(FlatMap {
                    f: Arc::new(move |k, v, out: &mut Vec<(K2, V2)>| out.extend(f(k, v))),
                    down,
                    buf: Vec::new(),
                })
            }
        });
        self.derive(node, Serdes::none(), true)
    }

    /// Replaces each record's value with zero or more values, keeping the key.
    pub fn flat_map_values<V2, I>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        V2: Clone + 'static,
        I: IntoIterator<Item = V2>,
    {
        let node = self.add("KSTREAM-FLATMAPVALUES", None, {
            let f = Arc::new(f);
            move |_, down| {
                let f = f.clone();
                Ok(FlatMap {
                    f: Arc::new(move |k: K, v, out: &mut Vec<(K, V2)>| {
                        out.extend(f(v).into_iter().map(|v2| (k.clone(), v2)))
                    }),
                    down,
                    buf: Vec::new(),
                })
            }
        });
        self.derive(node, self.same_key_serde(), false)
    }

    /// Calls `f` on each record and passes it on unchanged.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        let f: Inspector<K, V> = Arc::new(f);
        let node = self.add("KSTREAM-PEEK", None, move |_, down| {
            Ok(Peek { f: f.clone(), down })
        });
        self.derive(node, self.serdes.clone(), false)
    }

    /// Calls `f` on each record; the end of this branch of the pipeline.
    pub fn foreach(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) {
        let f: Inspector<K, V> = Arc::new(f);
        let _: NodeRef<K, V> = self.add("KSTREAM-FOREACH", None, move |_, down| {
            Ok(Peek { f: f.clone(), down })
        });
    }

    /// Splits the stream: each record goes to the first branch whose predicate holds; with
    /// `default_branch`, unmatched records go to one more stream at the end.
    pub fn split(
        &self,
        predicates: Vec<BranchPredicate<K, V>>,
        default_branch: bool,
    ) -> Vec<KStream<K, V>> {
        let predicates: Vec<Predicate<K, V>> = predicates.into_iter().map(Arc::from).collect();
        let n = predicates.len();
        let split = self.add("KSTREAM-BRANCH", None, move |_, down: Downstream<K, V>| {
            let mut each = down.into_each();
            let default = if default_branch && each.len() == n + 1 {
                each.pop()
            } else {
                None
            };
            Ok(Split {
                predicates: predicates.clone(),
                branches: each,
                default,
            })
        });
        let parent = self.derive(split, self.serdes.clone(), false);
        (0..n + usize::from(default_branch))
            .map(|_| {
                let node = parent.add("KSTREAM-BRANCHCHILD", None, |_, down| {
                    Ok(Passthrough { down })
                });
                parent.derive(node, self.serdes.clone(), false)
            })
            .collect()
    }

    /// Interleaves this stream with `other`.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let node = self
            .graph
            .borrow_mut()
            .merge("KSTREAM-MERGE", None, &[self.node, other.node]);
        KStream {
            graph: self.graph.clone(),
            node,
            serdes: self.serdes.clone().or(&other.serdes),
            needs_repartition: self.needs_repartition || other.needs_repartition,
        }
    }

    /// Writes the stream to `topic`, partitioned by Kafka's default partitioner.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        self.sink(
            TopicName::User(topic.to_string()),
            produced.serdes,
            produced.name.as_deref(),
            "KSTREAM-SINK",
        );
    }

    pub(crate) fn sink(
        &self,
        topic: TopicName,
        serdes: Serdes<K, V>,
        name: Option<&str>,
        prefix: &str,
    ) {
        let serdes = serdes.or(&self.serdes);
        let mut s = self.graph.borrow_mut();
        let name = s.name(prefix, name);
        let (Some(ks), Some(vs)) = (serdes.key, serdes.value) else {
            s.missing_serde(&name, "key and value");
            return;
        };
        s.add_sink(name, topic, self.node, ks, vs);
    }

    /// Writes the stream through an internal repartition topic and reads it back, so records
    /// are partitioned by their current key.
    pub fn repartition(&self, options: Repartitioned<K, V>) -> KStream<K, V> {
        let stream = self.through_repartition(options.serdes, options.name.as_deref());
        if let Some(n) = options.partitions {
            stream.graph.borrow_mut().set_partitions(stream.node.id, n);
        }
        stream
    }

    pub(crate) fn through_repartition(
        &self,
        serdes: Serdes<K, V>,
        name: Option<&str>,
    ) -> KStream<K, V> {
        let serdes = serdes.or(&self.serdes);
        let base = self.graph.borrow_mut().name("KSTREAM-REPARTITION", name);
        let topic = self.graph.borrow_mut().repartition_topic(&base);
        self.sink(
            TopicName::Internal(topic.clone()),
            serdes.clone(),
            Some(&format!("{base}-sink")),
            "",
        );
        let consumed = Consumed {
            serdes,
            name: Some(format!("{base}-source")),
        };
        KStream::source(&self.graph, vec![TopicName::Internal(topic)], consumed)
    }

    /// Runs a processor of your own on each record. `make` builds one instance per task; it
    /// gets the task's [`Instantiation`](streams_core::Instantiation) (to open the `stores`
    /// given here, which are registered and connected to the node, and to schedule
    /// punctuations) and the downstream to forward to. The result may have new keys, so a later
    /// key-based operator repartitions.
    ///
    /// ```
    /// use streams_dsl::prelude::*;
    /// use streams_core::{Downstream, Processor, ProcessorContext, Rec, StringSerde, TestDriver};
    ///
    /// struct Upper(Downstream<String, String>);
    /// impl Processor<String, String> for Upper {
    ///     fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Rec<String, String>) -> streams_core::Result<()> {
    ///         let v = r.value.to_uppercase();
    ///         self.0.forward(ctx, r.with(r.key.clone(), v))
    ///     }
    /// }
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream::<String, String>("in", Consumed::default())
    ///     .process(vec![], |_, down| Ok(Upper(down)))
    ///     .to("out", Produced::default());
    /// let mut driver = TestDriver::new(&builder.build()?)?;
    /// driver.pipe_typed("in", &StringSerde, &StringSerde, &"k".to_string(), &"hi".to_string(), 1)?;
    /// assert_eq!(driver.read_output_typed("out", &StringSerde, &StringSerde)?[0].1, "HI");
    /// # Ok::<(), streams_core::Error>(())
    /// ```
    pub fn process<K2, V2, P, F>(
        &self,
        stores: Vec<streams_core::StoreSpec>,
        make: F,
    ) -> KStream<K2, V2>
    where
        K2: Clone + 'static,
        V2: Clone + 'static,
        P: streams_core::Processor<K, V> + 'static,
        F: Fn(&mut streams_core::Instantiation<'_>, Downstream<K2, V2>) -> streams_core::Result<P>
            + Send
            + Sync
            + 'static,
    {
        let node = self.add("KSTREAM-PROCESSOR", None, make);
        let mut s = self.graph.borrow_mut();
        for spec in stores {
            s.add_store_for(node.id, spec);
        }
        drop(s);
        self.derive(node, Serdes::none(), true)
    }

    /// Groups records by their current key, for aggregation.
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self.clone(), grouped)
    }

    /// Groups records by a new key computed from each record (repartitions).
    pub fn group_by<K2: Clone + 'static>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        self.select_key(f).group_by_key(grouped)
    }

    /// Inner join with a table: each record is joined with the table's current value for its
    /// key; records with no match are dropped, table updates alone emit nothing. A result
    /// carries the stream record's timestamp.
    pub fn join<T: Clone + 'static, R: Clone + 'static>(
        &self,
        table: &KTable<K, T>,
        joiner: impl Fn(&V, &T) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        self.table_join(
            table,
            Arc::new(move |_, v, t: Option<T>| t.map(|t| joiner(&v, &t))),
        )
    }

    /// Left join with a table: like [`KStream::join`], but records with no match are emitted
    /// with `None`.
    pub fn left_join<T: Clone + 'static, R: Clone + 'static>(
        &self,
        table: &KTable<K, T>,
        joiner: impl Fn(&V, Option<&T>) -> R + Send + Sync + 'static,
    ) -> KStream<K, R> {
        self.table_join(
            table,
            Arc::new(move |_, v, t: Option<T>| Some(joiner(&v, t.as_ref()))),
        )
    }

    /// Windowed inner join with another stream: each pair of records with equal keys whose
    /// timestamps are within `windows` (a right record in `[t - before, t + after]` of a left
    /// record at `t`) is joined once, when the later of the two arrives, and timestamped with
    /// the later timestamp. Both sides are buffered in window stores for the join window plus
    /// grace. See [`JoinWindows`] for lateness and for when unmatched records are emitted.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_dsl::prelude::*;
    /// use streams_dsl::{JoinWindows, StreamJoined};
    /// use streams_core::{StringSerde, TestDriver};
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders = builder.stream::<String, String>("orders", Consumed::default());
    /// let payments = builder.stream::<String, String>("payments", Consumed::default());
    /// orders
    ///     .join_stream(
    ///         &payments,
    ///         |o, p| format!("{o}+{p}"),
    ///         JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10)),
    ///         StreamJoined::inferred(),
    ///     )
    ///     .to("paid", Produced::default());
    /// let mut driver = TestDriver::new(&builder.build()?)?;
    /// let s = |x: &str| x.to_string();
    /// driver.pipe_typed("orders", &StringSerde, &StringSerde, &s("o1"), &s("book"), 100)?;
    /// driver.pipe_typed("payments", &StringSerde, &StringSerde, &s("o1"), &s("card"), 105)?;
    /// driver.pipe_typed("payments", &StringSerde, &StringSerde, &s("o1"), &s("late card"), 111)?;
    /// let out = driver.read_output_typed("paid", &StringSerde, &StringSerde)?;
    /// assert_eq!(out, vec![(s("o1"), s("book+card"), 105)]);
    /// # Ok::<(), streams_core::Error>(())
    /// ```
    pub fn join_stream<VO: Clone + 'static, R: Clone + 'static>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, &VO) -> R + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, R> {
        self.stream_join(
            other,
            windows,
            joined,
            (false, false),
            Arc::new(move |l: Option<&V>, r: Option<&VO>| l.zip(r).map(|(l, r)| joiner(l, r))),
        )
    }

    /// Windowed left join with another stream: like [`KStream::join_stream`], and a left
    /// record that matched nothing is emitted once with `None`, when its window plus grace has
    /// closed (`t + after + grace < stream time`, see [`JoinWindows`]), never in addition to
    /// an earlier match. A right record that arrives later than the grace allows can still
    /// match it afterwards, as in Kafka Streams.
    pub fn left_join_stream<VO: Clone + 'static, R: Clone + 'static>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> R + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, R> {
        self.stream_join(
            other,
            windows,
            joined,
            (true, false),
            Arc::new(move |l: Option<&V>, r: Option<&VO>| l.map(|l| joiner(l, r))),
        )
    }

    /// Windowed outer join with another stream: like [`KStream::left_join_stream`], for the
    /// records of both sides (a right record waits until `t + before + grace < stream time`).
    pub fn outer_join_stream<VO: Clone + 'static, R: Clone + 'static>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> R + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, R> {
        self.stream_join(
            other,
            windows,
            joined,
            (true, true),
            Arc::new(move |l: Option<&V>, r: Option<&VO>| Some(joiner(l, r))),
        )
    }

    fn table_join<T: Clone + 'static, R: Clone + 'static>(
        &self,
        table: &KTable<K, T>,
        joiner: crate::ops::join::StreamTableJoiner<K, V, T, R>,
    ) -> KStream<K, R> {
        let stream = if self.needs_repartition {
            self.through_repartition(Serdes::none(), None)
        } else {
            self.clone()
        };
        let (table, store) = table.materialized();
        let key_serde = stream
            .serdes
            .key
            .clone()
            .or_else(|| table.serdes.key.clone());
        let (Some(key_serde), Some(table_serde)) = (key_serde, table.serdes.value.clone()) else {
            self.graph
                .borrow_mut()
                .missing_serde("stream-table join", "key and table value");
            return stream.derive(NodeRef::dangling(), Serdes::none(), false);
        };
        let name = self.graph.borrow_mut().name("KSTREAM-JOIN", None);
        let store_name = store.clone();
        let node = stream.add("KSTREAM-JOIN", Some(&name), move |inst, down| {
            Ok(StreamTableJoin {
                name: inst.node_name().to_string(),
                table: inst.kv_store(&store_name)?,
                key_serde: key_serde.clone(),
                table_serde: table_serde.clone(),
                joiner: joiner.clone(),
                down,
            })
        });
        {
            let mut s = self.graph.borrow_mut();
            s.connect_store(node.id, &store);
            s.copartition(stream.node.id, table.node.id);
        }
        stream.derive(node, stream.same_key_serde(), false)
    }
}
