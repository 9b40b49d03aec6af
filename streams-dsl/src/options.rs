//! Options passed to DSL operators: serdes at the boundaries, names, store settings.
//!
//! Each option type carries optional serdes; where one is missing, the operator uses the
//! serde the stream already knows (from its source or an earlier option), and `build()`
//! reports an error naming the operator if there is none.

use std::sync::Arc;

use streams_core::{DefaultSerde, Serde};

/// Optional serdes of a key-value pair.
pub(crate) struct Serdes<K, V> {
    pub(crate) key: Option<Arc<dyn Serde<K>>>,
    pub(crate) value: Option<Arc<dyn Serde<V>>>,
}

impl<K, V> Clone for Serdes<K, V> {
    fn clone(&self) -> Self {
        Serdes {
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

impl<K, V> Serdes<K, V> {
    pub(crate) fn none() -> Self {
        Serdes {
            key: None,
            value: None,
        }
    }

    pub(crate) fn or(self, other: &Serdes<K, V>) -> Self {
        Serdes {
            key: self.key.or_else(|| other.key.clone()),
            value: self.value.or_else(|| other.value.clone()),
        }
    }
}

macro_rules! serde_option {
    ($(#[$doc:meta])* $name:ident $(, $field:ident: $ty:ty = $default:expr)*) => {
        $(#[$doc])*
        pub struct $name<K, V> {
            pub(crate) serdes: Serdes<K, V>,
            pub(crate) name: Option<String>,
            $(pub(crate) $field: $ty,)*
        }

        impl<K: 'static, V: 'static> $name<K, V> {
            /// With both serdes given.
            pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
                $name {
                    serdes: Serdes { key: Some(Arc::new(key)), value: Some(Arc::new(value)) },
                    name: None,
                    $($field: $default,)*
                }
            }

            /// With no serdes: the stream's known ones are used.
            pub fn inferred() -> Self {
                $name { serdes: Serdes::none(), name: None, $($field: $default,)* }
            }

            /// Sets the key serde.
            pub fn with_key_serde(mut self, key: impl Serde<K>) -> Self {
                self.serdes.key = Some(Arc::new(key));
                self
            }

            /// Sets the value serde.
            pub fn with_value_serde(mut self, value: impl Serde<V>) -> Self {
                self.serdes.value = Some(Arc::new(value));
                self
            }

            /// Names the operator's node (and what derives from it).
            pub fn named(mut self, name: impl Into<String>) -> Self {
                self.name = Some(name.into());
                self
            }
        }

        impl<K: DefaultSerde, V: DefaultSerde> Default for $name<K, V> {
            /// The types' [`DefaultSerde`]s.
            fn default() -> Self {
                $name {
                    serdes: Serdes { key: Some(K::default_serde()), value: Some(V::default_serde()) },
                    name: None,
                    $($field: $default,)*
                }
            }
        }
    };
}

serde_option!(
    /// How a source topic is read: key and value serdes, source node name.
    ///
    /// ```
    /// use streams_dsl::prelude::*;
    /// use streams_core::{JsonSerde, StringSerde};
    ///
    /// // Values are JSON arrays of amounts; any serde type works the same way.
    /// let builder = StreamsBuilder::new();
    /// let payments = builder.stream::<String, Vec<i64>>(
    ///     "payments",
    ///     Consumed::with(StringSerde, JsonSerde::new()).named("payments-source"),
    /// );
    /// payments.to("copy", Produced::inferred());
    /// assert!(builder.build()?.describe().contains("payments-source"));
    /// # Ok::<(), streams_core::Error>(())
    /// ```
    Consumed
);
serde_option!(
    /// How a stream is written to a topic: key and value serdes, sink node name.
    ///
    /// ```
    /// use streams_dsl::prelude::*;
    /// use streams_core::{StringSerde, U64Serde};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream::<String, String>("lines", Consumed::default())
    ///     .map_values(|l| l.len() as u64)
    ///     .to("lengths", Produced::with(StringSerde, U64Serde).named("lengths-sink"));
    /// assert!(builder.build()?.describe().contains("Sink: lengths-sink (topic: lengths)"));
    /// # Ok::<(), streams_core::Error>(())
    /// ```
    Produced
);
serde_option!(
    /// How a stream is grouped: the serdes for the repartition topic a key change needs, and
    /// the name that topic derives from.
    ///
    /// ```
    /// use streams_dsl::prelude::*;
    /// use streams_core::{StringSerde, U64Serde};
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream::<String, u64>("sales", Consumed::default())
    ///     .group_by(|k, _| k.to_uppercase(), Grouped::with(StringSerde, U64Serde).named("by-region"))
    ///     .count(Materialized::inferred());
    /// assert!(builder.build()?.describe().contains("by-region-repartition"));
    /// # Ok::<(), streams_core::Error>(())
    /// ```
    Grouped
);
serde_option!(
    /// How a stream is repartitioned: serdes, the name of the repartition topic and,
    /// optionally, its partition count (by default the application chooses it at start: the
    /// count of the join's other inputs when the topic feeds a join, else that of the
    /// sub-topology writing it).
    ///
    /// ```
    /// use streams_dsl::prelude::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream::<String, String>("in", Consumed::default())
    ///     .repartition(Repartitioned::default().named("shuffle"))
    ///     .to("out", Produced::default());
    /// let topology = builder.build()?;
    /// assert_eq!(topology.subtopologies().len(), 2);
    /// assert!(topology.describe().contains("<app>-shuffle-repartition"));
    /// # Ok::<(), streams_core::Error>(())
    /// ```
    Repartitioned,
    partitions: Option<u32> = None
);

impl<K, V> Repartitioned<K, V> {
    /// Gives the repartition topic `partitions` partitions (so the sub-topology reading it
    /// runs that many tasks).
    ///
    /// ```
    /// use streams_dsl::prelude::*;
    ///
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream::<String, String>("in", Consumed::default())
    ///     .repartition(Repartitioned::default().named("spread").with_number_of_partitions(8))
    ///     .to("out", Produced::default());
    /// let topology = builder.build()?;
    /// assert_eq!(topology.partition_count_of("spread-repartition"), Some(8));
    /// # Ok::<(), streams_core::Error>(())
    /// ```
    pub fn with_number_of_partitions(mut self, partitions: u32) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

/// Where and how an operator's state is kept: a named, queryable store (or an internal one),
/// serdes for its keys and values, RocksDB or memory, caching, changelogging.
///
/// A table's key-value store keeps each value behind the timestamp of the update that wrote it
/// (`[timestamp][value]`, as Kafka Streams' timestamped key-value stores), and so does its
/// changelog, so a restored table knows how recent each row is. Queries through
/// [`Streams::key_value_store`](streams_core::Streams::key_value_store) and
/// [`KeyValueStoreView`](crate::KeyValueStoreView) return the values alone. Stores and
/// changelogs written by a version whose tables kept no timestamps cannot be read: reset the
/// application (state directory and internal topics) when upgrading.
///
/// ```
/// use streams_dsl::prelude::*;
/// use streams_dsl::KeyValueStoreView;
/// use streams_core::{StringSerde, I64Serde, TestDriver};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("clicks", Consumed::default())
///     .group_by_key(Grouped::inferred())
///     .count(Materialized::named("clicks-per-user").in_memory().with_caching(false));
/// let mut driver = TestDriver::new(&builder.build()?)?;
/// driver.pipe_typed("clicks", &StringSerde, &StringSerde, &"ann".to_string(), &"/".to_string(), 1)?;
/// let store = KeyValueStoreView::new(driver.kv_store("clicks-per-user")?, StringSerde, I64Serde);
/// assert_eq!(store.get(&"ann".to_string())?, Some(1));
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct Materialized<K, V> {
    pub(crate) serdes: Serdes<K, V>,
    pub(crate) store_name: Option<String>,
    pub(crate) in_memory: bool,
    pub(crate) caching: bool,
    pub(crate) logging: bool,
    pub(crate) retention_ms: Option<i64>,
}

impl<K: 'static, V: 'static> Materialized<K, V> {
    /// A store named `store_name` (queryable under that name).
    pub fn named(store_name: impl Into<String>) -> Self {
        Materialized {
            store_name: Some(store_name.into()),
            ..Self::inferred()
        }
    }

    /// An internal store with the stream's serdes.
    pub fn inferred() -> Self {
        Materialized {
            serdes: Serdes::none(),
            store_name: None,
            in_memory: false,
            caching: true,
            logging: true,
            retention_ms: None,
        }
    }

    /// An internal store with these serdes.
    pub fn with(key: impl Serde<K>, value: impl Serde<V>) -> Self {
        Materialized {
            serdes: Serdes {
                key: Some(Arc::new(key)),
                value: Some(Arc::new(value)),
            },
            ..Self::inferred()
        }
    }

    /// Sets the key serde.
    pub fn with_key_serde(mut self, key: impl Serde<K>) -> Self {
        self.serdes.key = Some(Arc::new(key));
        self
    }

    /// Sets the value serde.
    pub fn with_value_serde(mut self, value: impl Serde<V>) -> Self {
        self.serdes.value = Some(Arc::new(value));
        self
    }

    /// Keeps the store in memory instead of RocksDB (rebuilt from the changelog on restart).
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Turns the write-back cache on or off (on by default). Off, every update is forwarded.
    pub fn with_caching(mut self, on: bool) -> Self {
        self.caching = on;
        self
    }

    /// Turns the changelog on or off (on by default). Off, the state is lost with the disk.
    pub fn with_logging(mut self, on: bool) -> Self {
        self.logging = on;
        self
    }

    /// For windowed aggregations: how long windows are kept for queries, in stream time after
    /// their start (sessions: after their end). It must be at least what the windows need
    /// (time windows: size + grace; sliding: `3 × difference + grace + 2`; sessions:
    /// `2 × gap + grace + 1`), which is also the default. Windows are kept by their start, so
    /// with the default a window can be queried until it has closed; keep them longer to query
    /// closed windows.
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention_ms = Some(crate::windows::millis(retention));
        self
    }
}

impl<K, V> Materialized<K, V> {
    /// The key-value store these options describe, under `name`: timestamped, as every table's
    /// store is (values are `[timestamp][value]`).
    pub(crate) fn key_value_spec(&self, name: &str) -> streams_core::StoreSpec {
        streams_core::StoreSpec {
            name: name.to_string(),
            kind: streams_core::StoreKind::KeyValue { timestamped: true },
            persistent: !self.in_memory,
            logged: self.logging,
            cached: self.caching,
        }
    }

    /// The retention to use given the least the windows need, or why the chosen one is too
    /// short.
    pub(crate) fn retention(&self, least: i64) -> Result<i64, String> {
        match self.retention_ms {
            None => Ok(least),
            Some(r) if r >= least => Ok(r),
            Some(r) => Err(format!(
                "retention of {r} ms is shorter than the {least} ms the windows need"
            )),
        }
    }

    /// The window store these options describe (cached as chosen; no duplicates).
    pub(crate) fn window_spec(
        &self,
        name: &str,
        retention_ms: i64,
        window_size_ms: i64,
    ) -> streams_core::StoreSpec {
        streams_core::StoreSpec {
            kind: streams_core::StoreKind::Window {
                retention_ms,
                window_size_ms,
                retain_duplicates: false,
                timestamped: true,
            },
            ..self.key_value_spec(name)
        }
    }

    /// The session store these options describe (session stores have no cache).
    pub(crate) fn session_spec(&self, name: &str, retention_ms: i64) -> streams_core::StoreSpec {
        streams_core::StoreSpec {
            kind: streams_core::StoreKind::Session { retention_ms },
            cached: false,
            ..self.key_value_spec(name)
        }
    }
}

impl<K: DefaultSerde, V: DefaultSerde> Default for Materialized<K, V> {
    fn default() -> Self {
        Materialized {
            serdes: Serdes {
                key: Some(K::default_serde()),
                value: Some(V::default_serde()),
            },
            ..Self::inferred()
        }
    }
}

/// How a stream–stream join keeps its state: serdes of the key and of both sides' values (for
/// the window stores that buffer them), the name its stores and nodes derive from, RocksDB or
/// memory, changelogging.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::prelude::*;
/// use streams_dsl::{JoinWindows, StreamJoined};
/// use streams_core::{StringSerde, U64Serde};
///
/// let builder = StreamsBuilder::new();
/// let clicks = builder.stream::<String, u64>("clicks", Consumed::default());
/// let views = builder.stream::<String, u64>("views", Consumed::default());
/// clicks
///     .join_stream(
///         &views,
///         |c, v| c + v,
///         JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(1)),
///         StreamJoined::with(StringSerde, U64Serde, U64Serde).named("clicks-views").in_memory(),
///     )
///     .to("joined", Produced::default());
/// assert!(builder.build()?.describe().contains("clicks-views-this-store"));
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct StreamJoined<K, V, VO> {
    pub(crate) key: Option<Arc<dyn Serde<K>>>,
    pub(crate) value: Option<Arc<dyn Serde<V>>>,
    pub(crate) other_value: Option<Arc<dyn Serde<VO>>>,
    pub(crate) name: Option<String>,
    pub(crate) in_memory: bool,
    pub(crate) logging: bool,
}

impl<K: 'static, V: 'static, VO: 'static> StreamJoined<K, V, VO> {
    /// With the serdes the streams already know.
    pub fn inferred() -> Self {
        StreamJoined {
            key: None,
            value: None,
            other_value: None,
            name: None,
            in_memory: false,
            logging: true,
        }
    }

    /// With these serdes: key, this stream's values, the other stream's values.
    pub fn with(key: impl Serde<K>, value: impl Serde<V>, other_value: impl Serde<VO>) -> Self {
        StreamJoined {
            key: Some(Arc::new(key)),
            value: Some(Arc::new(value)),
            other_value: Some(Arc::new(other_value)),
            ..Self::inferred()
        }
    }

    /// Names the join: its nodes and stores are `<name>-this`, `<name>-other`,
    /// `<name>-this-store`, `<name>-other-store` and `<name>-unmatched-store`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Keeps the buffers in memory instead of RocksDB.
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// Turns the changelogs of the buffers on or off (on by default).
    pub fn with_logging(mut self, on: bool) -> Self {
        self.logging = on;
        self
    }
}

/// `materialized` with the `i64` serde a count uses when none is given.
pub(crate) fn count_materialized<K: 'static>(
    materialized: Materialized<K, i64>,
) -> Materialized<K, i64> {
    Materialized {
        serdes: Serdes {
            key: materialized.serdes.key,
            value: materialized
                .serdes
                .value
                .or_else(|| Some(Arc::new(streams_core::I64Serde))),
        },
        ..materialized
    }
}
