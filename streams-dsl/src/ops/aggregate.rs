//! `count`, `reduce` and `aggregate` of a grouped stream (and, over add/subtract halves, of a
//! re-grouped table): read the key's aggregate, apply the record, write it back, forward the
//! change. With caching, the change is forwarded when the cache flushes (commit) or evicts,
//! merged over every update in between.
//!
//! Timestamps, as in Kafka Streams: the store keeps each aggregate behind its timestamp
//! (`[timestamp][aggregate]`); a key's first aggregate takes the record's time, every later
//! one the larger of the record's time and the previous aggregate's, so an out-of-order record
//! never moves an aggregate back in time. The change is forwarded with that timestamp.

use std::sync::Arc;

use streams_core::{
    Change, Downstream, KvStoreRef, Processor, ProcessorContext, Rec, Result, Serde,
};

use super::encode;
use super::stamped::{encode_stamped, get_stamped};

/// `(key, value, previous aggregate or None) -> new aggregate`.
pub(crate) type AggregateFn<K, V, A> = Arc<dyn Fn(&K, V, Option<A>) -> A + Send + Sync>;

pub(crate) struct Aggregate<K, V, A> {
    pub(crate) name: String,
    /// A timestamped store.
    pub(crate) store: KvStoreRef,
    pub(crate) store_name: String,
    /// Whether the store is cached: then its changes are forwarded as its cache writes them
    /// through, taken from the store.
    pub(crate) cached: bool,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<A>>,
    pub(crate) f: AggregateFn<K, V, A>,
    pub(crate) down: Downstream<K, Change<A>>,
}

impl<K: Clone + 'static, V: 'static, A: Clone + 'static> Aggregate<K, V, A> {
    /// Forwards the changes the cache wrote through (flushed or evicted).
    fn forward_flushed(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        super::forward_flushed(
            &self.store,
            &self.store_name,
            self.key_serde.as_ref(),
            self.agg_serde.as_ref(),
            &self.name,
            &self.down,
            ctx,
        )
    }
}

impl<K: Clone + 'static, V: 'static, A: Clone + 'static> Processor<K, V> for Aggregate<K, V, A> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let kb = encode(self.key_serde.as_ref(), &rec.key, &self.name)?;
        let (old, timestamp) =
            match get_stamped(&self.store, &kb, self.agg_serde.as_ref(), &self.name)? {
                Some((agg, ts)) => (Some(agg), rec.timestamp.max(ts)),
                None => (None, rec.timestamp),
            };
        let new = (self.f)(&rec.key, rec.value, old.clone());
        let nb = encode_stamped(self.agg_serde.as_ref(), &new, timestamp, &self.name)?;
        self.store.borrow_mut().put(&kb, &nb)?;
        if self.cached {
            self.forward_flushed(ctx)
        } else {
            self.down.forward(
                ctx,
                Rec::new(rec.key, Change::new(Some(new), old), timestamp),
            )
        }
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        if super::flush_cached(&self.store, self.cached)? {
            self.forward_flushed(ctx)?;
        }
        Ok(())
    }
}

/// The aggregate function of a count.
pub(crate) fn count_fn<K, V>() -> AggregateFn<K, V, i64> {
    Arc::new(|_, _, old: Option<i64>| old.unwrap_or(0) + 1)
}

/// The aggregate function of a reduce: the first value as is, then `reducer(aggregate, value)`.
pub(crate) fn reduce_fn<K, V: 'static>(
    reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
) -> AggregateFn<K, V, V> {
    Arc::new(move |_, v, old: Option<V>| match old {
        Some(agg) => reducer(agg, v),
        None => v,
    })
}

/// The aggregate function of an aggregate: `aggregator(key, value, aggregate or initializer())`.
pub(crate) fn aggregate_fn<K, V, A: 'static>(
    initializer: impl Fn() -> A + Send + Sync + 'static,
    aggregator: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
) -> AggregateFn<K, V, A> {
    Arc::new(move |k, v, old: Option<A>| aggregator(k, v, old.unwrap_or_else(&initializer)))
}

#[cfg(test)]
mod tests {
    //! A store error raised inside an aggregation keeps its class: a transient one is retried
    //! by the runtime, and every error names the task it happened in.

    use std::cell::RefCell;
    use std::ops::Bound;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use state_store::{
        ChangelogRecord, KeyValueIter, KeyValueStore, ReadOnlyKeyValueStore, StateStore,
        StoreBuilder, StoreError,
    };
    use streams_core::{
        Change, DriverConfig, EmbeddedLog, Error, I64Serde, IsolationLevel, Log, Processor,
        ProcessorContext, Rec, Record, Serde, StoreSpec, Streams, StreamsConfig, StreamsState,
        StringSerde, TaskId, TestDriver, TopicConfig, TopicName, TopicPartition, Topology,
        TopologyBuilder,
    };

    use super::{count_fn, Aggregate};

    /// An in-memory key-value store whose next `failures` writes fail with a transient
    /// changelog error, as a changelog that cannot be reached for a moment reports it.
    struct Flaky {
        inner: Box<dyn KeyValueStore>,
        failures: Arc<AtomicU32>,
    }

    impl StateStore for Flaky {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn persistent(&self) -> bool {
            self.inner.persistent()
        }
        fn flush(&mut self) -> Result<(), StoreError> {
            self.inner.flush()
        }
        fn close(&mut self) -> Result<(), StoreError> {
            self.inner.close()
        }
        fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
            self.inner.restore_batch(batch)
        }
        fn wipe(&mut self) -> Result<(), StoreError> {
            self.inner.wipe()
        }
    }

    impl ReadOnlyKeyValueStore for Flaky {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn range(
            &self,
            from: Bound<&[u8]>,
            to: Bound<&[u8]>,
        ) -> Result<KeyValueIter<'_>, StoreError> {
            self.inner.range(from, to)
        }
        fn approximate_num_entries(&self) -> Result<u64, StoreError> {
            self.inner.approximate_num_entries()
        }
    }

    impl KeyValueStore for Flaky {
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err(StoreError::changelog(
                    "counts",
                    true,
                    "changelog unreachable",
                ));
            }
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
    }

    /// Forwards the new value of each change.
    struct NewValue(streams_core::Downstream<String, i64>);

    impl Processor<String, Change<i64>> for NewValue {
        fn process(
            &mut self,
            ctx: &mut ProcessorContext<'_>,
            rec: Rec<String, Change<i64>>,
        ) -> streams_core::Result<()> {
            match rec.value.new {
                Some(n) => self.0.forward(ctx, rec.with(rec.key.clone(), n)),
                None => Ok(()),
            }
        }
    }

    /// `in` → count per key (over a flaky store, not cached) → `out`, built on the
    /// topology builder with the DSL's aggregation processor.
    fn counting(failures: Arc<AtomicU32>) -> streams_core::Result<Topology> {
        let mut b = TopologyBuilder::new();
        let src = b.add_source::<String, String>(
            "src",
            vec![TopicName::User("in".into())],
            Arc::new(StringSerde),
            Arc::new(StringSerde),
        )?;
        // The task's own store is registered (for its changelog) but the processor counts in
        // the flaky one, which starts empty in every task instance.
        b.add_store(StoreSpec {
            persistent: false,
            cached: false,
            ..StoreSpec::key_value("counts")
        })?;
        let count = b.add_processor("count", &[src], move |inst, down| {
            inst.kv_store("counts")?;
            let inner = StoreBuilder::key_value("counts").in_memory().build()?;
            let store: Box<dyn KeyValueStore> = Box::new(Flaky {
                inner,
                failures: failures.clone(),
            });
            Ok(Aggregate {
                name: inst.node_name().to_string(),
                store: Rc::new(RefCell::new(store)),
                store_name: "counts".into(),
                cached: false,
                key_serde: Arc::new(StringSerde),
                agg_serde: Arc::new(I64Serde),
                f: count_fn::<String, String>(),
                down,
            })
        })?;
        b.connect_store(count.id, "counts")?;
        let values = b.add_processor("values", &[count], |_, down| Ok(NewValue(down)))?;
        b.add_sink(
            "sink",
            TopicName::User("out".into()),
            &[values],
            Arc::new(StringSerde),
            Arc::new(I64Serde),
            None,
        )?;
        b.build()
    }

    #[test]
    fn a_transient_store_error_stays_a_retriable_store_error_that_names_its_task() {
        let failures = Arc::new(AtomicU32::new(1));
        let topology = counting(failures).expect("topology");
        let mut driver =
            TestDriver::with_config(&topology, DriverConfig::default()).expect("driver");
        let err = driver
            .pipe("in", Record::new("k", "v", 1))
            .expect_err("the first write fails");
        assert!(matches!(err, Error::Store { .. }), "{err:?}");
        assert!(err.is_retriable(), "{err}");
        assert_eq!(err.task(), Some(TaskId::new(0, 0)), "{err}");
        assert!(err.to_string().contains("in task 0_0"), "{err}");
    }

    #[test]
    fn the_runtime_retries_a_transient_store_error_raised_in_an_aggregation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = StreamsConfig::new("flaky-count", dir.path())
            .with_commit_interval(Duration::from_millis(20))
            .with_task_timeout(Duration::from_secs(60));
        let log = Arc::new(EmbeddedLog::open(config.embedded_log_dir()).expect("log"));
        log.create_topic("in", TopicConfig::new(1)).expect("topic");
        let input: Vec<Record> = (0..20)
            .map(|i| Record::new(format!("k{}", i % 3), "v", i64::from(i) + 1))
            .collect();
        log.append(&TopicPartition::new("in", 0), &input)
            .expect("append");

        let failures = Arc::new(AtomicU32::new(1));
        let streams = Streams::new(
            counting(failures.clone()).expect("topology"),
            config,
            log.clone(),
        )
        .expect("streams");
        streams.start().expect("start");
        streams
            .wait_until_caught_up(Duration::from_secs(60))
            .expect("caught up");
        assert_eq!(failures.load(Ordering::SeqCst), 0, "the store failed once");
        assert_eq!(
            streams.state(),
            StreamsState::Running,
            "{:?}",
            streams.error()
        );
        streams.close().expect("close");

        // The last count written per key is its number of records: the failed attempt left
        // nothing behind, the retry counted every record once.
        let out = log
            .read(
                &TopicPartition::new("out", 0),
                0,
                1_000,
                IsolationLevel::ReadCommitted,
            )
            .expect("read");
        let mut last = std::collections::BTreeMap::new();
        for r in out.records {
            let key = String::from_utf8(r.record.key.expect("key")).expect("utf-8");
            let value = r.record.value.expect("value");
            let n = I64Serde.deserialize(&value).expect("an i64");
            last.insert(key, n);
        }
        let expected: std::collections::BTreeMap<String, i64> = [
            ("k0".to_string(), 7),
            ("k1".to_string(), 7),
            ("k2".to_string(), 6),
        ]
        .into();
        assert_eq!(last, expected);
    }
}
