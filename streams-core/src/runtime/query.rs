//! Interactive queries: read a materialized store of a running application.
//!
//! Stores belong to the stream thread that runs their task, so a query is sent to that
//! thread, runs between two batches there, and the answer comes back. A key is looked up
//! first in the task its key bytes partition to (Kafka's partitioner, as for the topics).
//! When the topology itself partitions the store's input by that key (a DSL table or
//! aggregation behind a repartition topic), that task's answer is the answer. Otherwise (a
//! table read straight from a topic some producer partitioned, a store of a processor of
//! your own) a key missing there is looked for in every other local task of the store, and
//! "absent" is answered only when every one of them could be asked. Range and full scans ask
//! every task of the store and merge the answers in key order. Reads see the latest values,
//! including those still in the record cache. Values of timestamped stores (the DSL's tables
//! and windowed aggregations) are returned without their timestamp.
//!
//! Global stores are read in place, from any thread, once they were read to their topics'
//! end at start.

use std::sync::Arc;

use super::metadata::Route;
use super::page::{self, Cursor, Page, PageLimit, Part};
use super::{Shared, Streams, StreamsState};
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::ids::TopicName;
use crate::partitioner::partition_for_key;
use crate::serdes::Serde;
use crate::topology::{InternalTopicKind, StoreKind};

fn decode<T: 'static>(serde: &dyn Serde<T>, bytes: &[u8], store: &str, what: &str) -> Result<T> {
    serde.deserialize(bytes).map_err(|e| Error::Processing {
        task: None,
        processor: store.to_string(),
        reason: format!("cannot decode a {what} of the store: {e}"),
    })
}

fn encode<T: 'static>(serde: &dyn Serde<T>, value: &T, store: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    serde
        .serialize_into(value, &mut out)
        .map_err(|e| Error::Processing {
            task: None,
            processor: store.to_string(),
            reason: format!("cannot encode the key asked for: {e}"),
        })?;
    Ok(out)
}

/// Which kind of store a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    KeyValue,
    Window,
    Session,
}

/// Where a store lives: its sub-topology and how many tasks (partitions) it has.
struct Located {
    shared: Arc<Shared>,
    store: String,
    kind: StoreKind,
    subtopology: u32,
    partitions: u32,
    /// Whether a key is only ever in the task its bytes partition to (see the module docs).
    routed: bool,
}

impl Located {
    fn find(shared: &Arc<Shared>, store: &str, wanted: Wanted) -> Result<Located> {
        let shared = shared.clone();
        let topology = &shared.topology;
        let spec = topology.stores().get(store).ok_or_else(|| Error::Config {
            key: format!("store `{store}`"),
            reason: "the topology has no store of that name".into(),
        })?;
        let is = match spec.kind {
            StoreKind::KeyValue { .. } => Wanted::KeyValue,
            StoreKind::Window { .. } => Wanted::Window,
            StoreKind::Session { .. } => Wanted::Session,
        };
        if is != wanted {
            return Err(Error::Config {
                key: format!("store `{store}`"),
                reason: format!("is a {:?} store", spec.kind),
            });
        }
        let sub = topology
            .subtopologies()
            .iter()
            .find(|s| s.stores.iter().any(|s| s == store))
            .ok_or_else(|| Error::Config {
                key: format!("store `{store}`"),
                reason: "no processor uses it".into(),
            })?;
        let routed = topology.keyed_by_input.contains(store)
            && sub.source_topics.iter().all(|t| match t {
                TopicName::Internal(name) => {
                    topology.internal_topics().get(name) == Some(&InternalTopicKind::Repartition)
                }
                _ => false,
            });
        let subtopology = sub.id;
        let partitions = shared.task_counts.get(&subtopology).copied().unwrap_or(0);
        let kind = spec.kind.clone();
        Ok(Located {
            shared,
            store: store.to_string(),
            kind,
            subtopology,
            partitions,
            routed,
        })
    }

    /// Runs `f` with the stores of the tasks that may hold `key` (encoded), on their threads:
    /// the task `key` partitions to, then, unless the store is routed, every other local task
    /// until `found` says an answer holds something. An answer of nothing while some task
    /// could not be asked is that task's error: absence cannot be vouched for.
    fn ask_key<R: Send + 'static>(
        &self,
        key: Vec<u8>,
        f: impl Fn(&crate::task::TaskStores, &str, &[u8]) -> Result<R> + Send + Sync + 'static,
        found: impl Fn(&R) -> bool,
    ) -> Result<R> {
        let owner = self.task_for(&key);
        let f = Arc::new(f);
        let key = Arc::new(key);
        let ask = |task: TaskId| {
            let (f, key, name) = (f.clone(), key.clone(), self.store.clone());
            self.shared
                .ask(&self.store, task, move |stores| f(stores, &name, &key))
        };
        if self.routed {
            return ask(owner);
        }
        let others = self
            .tasks()
            .filter(|t| *t != owner && self.shared.is_local(*t));
        let mut unavailable = None;
        let mut nothing = None;
        for task in std::iter::once(owner).chain(others) {
            match ask(task) {
                Ok(answer) if found(&answer) => return Ok(answer),
                Ok(answer) => nothing = Some(answer),
                Err(e @ Error::StoreUnavailable { .. }) => {
                    unavailable.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match (unavailable, nothing) {
            (None, Some(answer)) => Ok(answer),
            (Some(e), _) => Err(e),
            (None, None) => Err(Error::StoreUnavailable {
                store: self.store.clone(),
                reason: "no task of it runs in this process".into(),
            }),
        }
    }

    fn task_for(&self, key: &[u8]) -> TaskId {
        TaskId::new(
            self.subtopology,
            partition_for_key(key, self.partitions.max(1)),
        )
    }

    /// Where a query of `key` (encoded) runs.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP server
    fn route(&self, key: &[u8]) -> Result<Route> {
        self.shared.route(&self.store, self.task_for(key))
    }

    fn tasks(&self) -> impl Iterator<Item = TaskId> + '_ {
        (0..self.partitions).map(|p| TaskId::new(self.subtopology, p))
    }
}

/// Reads a key-value store of a running application.
///
/// Obtained from [`Streams::key_value_store`]; keys and values are decoded with the serdes
/// given there (the ones the store was materialized with).
pub struct KeyValueQuery<K, V> {
    at: Located,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
}

impl<K: Send + 'static, V: Send + 'static> KeyValueQuery<K, V> {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        store: &str,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Result<Self> {
        Ok(KeyValueQuery {
            at: Located::find(shared, store, Wanted::KeyValue)?,
            keys,
            values,
        })
    }

    /// Where a query of `key` runs: here, or on the instance that holds it.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP server
    pub(crate) fn route(&self, key: &K) -> Result<Route> {
        self.at.route(&encode(&*self.keys, key, &self.at.store)?)
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let bytes = encode(&*self.keys, key, &self.at.store)?;
        let raw = self.at.ask_key(
            bytes,
            |stores, name, key| {
                let store = stores.kv(name)?;
                let value = store.borrow().get(key).map_err(Error::from);
                value
            },
            Option::is_some,
        )?;
        raw.map(|v| self.value(&v)).transpose()
    }

    /// Decodes a stored value, behind its timestamp in a timestamped store (the DSL's tables).
    fn value(&self, bytes: &[u8]) -> Result<V> {
        let bytes = if self.at.kind.timestamped() {
            state_store::decode_timestamped(&self.at.store, bytes)?.1
        } else {
            bytes
        };
        decode(&*self.values, bytes, &self.at.store, "value")
    }

    /// Entries with `from <= key <= to` (in encoded-key order), from every task, read a page
    /// at a time (see [`KeyValueQuery::range_page`]).
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let range = (self.encode_key(from)?, self.encode_key(to)?);
        self.scan(Some(range))
    }

    /// Every entry, in encoded-key order, read a page at a time (see
    /// [`KeyValueQuery::all_page`]).
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.scan(None)
    }

    /// One page of the store's entries, in encoded-key order, after `after` (`None`: from
    /// the first). Each task is read once, for at most one page, between two batches of
    /// its stream thread; the page's `next` goes on where it ended.
    pub fn all_page(&self, after: Option<&Cursor>, limit: PageLimit) -> Result<Page<K, V>> {
        let part = self.raw_page(&self.partitions(), None, after, limit)?;
        self.decode_page(part)
    }

    /// One page of the entries with `from <= key <= to`, as [`KeyValueQuery::all_page`].
    pub fn range_page(
        &self,
        from: &K,
        to: &K,
        after: Option<&Cursor>,
        limit: PageLimit,
    ) -> Result<Page<K, V>> {
        let range = (self.encode_key(from)?, self.encode_key(to)?);
        let part = self.raw_page(&self.partitions(), Some(range), after, limit)?;
        self.decode_page(part)
    }

    fn scan(&self, range: Option<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(K, V)>> {
        let limit = PageLimit {
            entries: PageLimit::MAX_ENTRIES,
            bytes: 4 << 20,
        };
        let partitions = self.partitions();
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let part = self.raw_page(&partitions, range.clone(), after.as_ref(), limit)?;
            after = part.next();
            for (k, v) in part.entries {
                out.push(self.decode_entry(&k, &v)?);
            }
            if after.is_none() {
                return Ok(out);
            }
        }
    }

    /// The store's partitions (one task each).
    pub(crate) fn partitions(&self) -> Vec<u32> {
        (0..self.at.partitions).collect()
    }

    /// `key` as the store holds it.
    pub(crate) fn encode_key(&self, key: &K) -> Result<Vec<u8>> {
        encode(&*self.keys, key, &self.at.store)
    }

    /// Where the task of `partition` runs: here, or on another instance.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP server
    pub(crate) fn route_partition(&self, partition: u32) -> Result<Route> {
        let task = TaskId::new(self.at.subtopology, partition);
        self.at.shared.route(&self.at.store, task)
    }

    /// One page (see [`crate::runtime::page`]) of the tasks of `partitions`, values as stored:
    /// every entry, or those in `range` (encoded bounds, both included), after `after`.
    pub(crate) fn raw_page(
        &self,
        partitions: &[u32],
        range: Option<(Vec<u8>, Vec<u8>)>,
        after: Option<&Cursor>,
        limit: PageLimit,
    ) -> Result<Part<Vec<u8>>> {
        let mut parts = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            if partition >= self.at.partitions {
                return Err(Error::Config {
                    key: format!("store `{}`", self.at.store),
                    reason: format!(
                        "has {} partitions; there is no partition {partition}",
                        self.at.partitions
                    ),
                });
            }
            let task = TaskId::new(self.at.subtopology, partition);
            let name = self.at.store.clone();
            let (range, after) = (range.clone(), after.cloned());
            let part = self.at.shared.ask(&self.at.store, task, move |stores| {
                let store = stores.kv(&name)?;
                let store = store.borrow();
                let range = range.as_ref().map(|(f, t)| (f.as_slice(), t.as_slice()));
                let (lower, upper) = page::bounds(range, after.as_ref());
                let iter = store.range(lower, upper).map_err(Error::from)?;
                page::read(iter, limit, entry_size).map_err(Error::from)
            })?;
            parts.push(part);
        }
        Ok(page::merge(parts, limit, entry_size))
    }

    /// An entry as the store holds it, decoded.
    pub(crate) fn decode_entry(&self, key: &[u8], value: &[u8]) -> Result<(K, V)> {
        Ok((
            decode(&*self.keys, key, &self.at.store, "key")?,
            self.value(value)?,
        ))
    }

    fn decode_page(&self, part: Part<Vec<u8>>) -> Result<Page<K, V>> {
        let next = part.next();
        let entries = part
            .entries
            .iter()
            .map(|(k, v)| self.decode_entry(k, v))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page { entries, next })
    }
}

/// The size of a stored entry, as page bounds count it.
#[allow(clippy::ptr_arg)] // the entries' type is Vec<u8>
fn entry_size(key: &[u8], value: &Vec<u8>) -> usize {
    key.len().saturating_add(value.len())
}

/// Reads a window store of a running application.
pub struct WindowQuery<K, V> {
    at: Located,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
}

impl<K: Send + 'static, V: Send + 'static> WindowQuery<K, V> {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        store: &str,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Result<Self> {
        Ok(WindowQuery {
            at: Located::find(shared, store, Wanted::Window)?,
            keys,
            values,
        })
    }

    /// Where a query of `key` runs: here, or on the instance that holds it.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP server
    pub(crate) fn route(&self, key: &K) -> Result<Route> {
        self.at.route(&encode(&*self.keys, key, &self.at.store)?)
    }

    /// The windows of `key` starting in `[time_from, time_to]`, as (window start, value), in
    /// time order.
    pub fn fetch(&self, key: &K, time_from: i64, time_to: i64) -> Result<Vec<(i64, V)>> {
        let bytes = encode(&*self.keys, key, &self.at.store)?;
        let raw = self.at.ask_key(
            bytes,
            move |stores, name, key| {
                let store = stores.window(name)?;
                let store = store.borrow();
                let iter = store.fetch(key, time_from, time_to).map_err(Error::from)?;
                let entries: std::result::Result<Vec<_>, _> = iter.collect();
                entries.map_err(Error::from)
            },
            |found: &Vec<_>| !found.is_empty(),
        )?;
        // DSL windowed aggregations keep the window's latest record timestamp in front.
        let timestamped = self.at.kind.timestamped();
        raw.into_iter()
            .map(|(start, v)| {
                let v = if timestamped {
                    state_store::decode_timestamped(&self.at.store, &v)?.1
                } else {
                    &v[..]
                };
                Ok((start, decode(&*self.values, v, &self.at.store, "value")?))
            })
            .collect()
    }
}

/// Reads a session store of a running application.
///
/// Obtained from [`Streams::session_store`]. Sessions are `(start, end, value)`, `end` being
/// the time of the session's last record (as in Kafka Streams' session windows).
pub struct SessionQuery<K, V> {
    at: Located,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
}

impl<K: Send + 'static, V: Send + 'static> SessionQuery<K, V> {
    /// Every session of `key`, ascending by end, then start.
    pub fn fetch(&self, key: &K) -> Result<Vec<(i64, i64, V)>> {
        let bytes = encode(&*self.keys, key, &self.at.store)?;
        let raw = self.at.ask_key(
            bytes,
            |stores, name, key| {
                let store = stores.session(name)?;
                let store = store.borrow();
                let iter = store.fetch(key).map_err(Error::from)?;
                let entries: std::result::Result<Vec<_>, _> = iter.collect();
                entries.map_err(Error::from)
            },
            |found: &Vec<_>| !found.is_empty(),
        )?;
        raw.into_iter()
            .map(|(s, v)| {
                let value = decode(&*self.values, &v, &self.at.store, "value")?;
                Ok((s.start, s.end, value))
            })
            .collect()
    }
}

/// Reads a global store (a [`GlobalKTable`]'s) of a running application, in place.
///
/// Obtained from [`Streams::global_store`]. Its answers are the table as the application's
/// global thread last read it.
///
/// [`GlobalKTable`]: https://docs.rs/streams-dsl/latest/streams_dsl/struct.GlobalKTable.html
pub struct GlobalQuery<K, V> {
    shared: Arc<Shared>,
    store: String,
    keys: Arc<dyn Serde<K>>,
    values: Arc<dyn Serde<V>>,
}

impl<K: 'static, V: 'static> GlobalQuery<K, V> {
    fn store(&self) -> Result<crate::processor::GlobalStoreRef> {
        let ready = self
            .shared
            .globals_ready
            .load(std::sync::atomic::Ordering::SeqCst);
        let state = self.shared.state();
        if !ready || !matches!(state, StreamsState::Running | StreamsState::Rebalancing) {
            return Err(Error::StoreUnavailable {
                store: self.store.clone(),
                reason: format!("the application is {state}, its global stores are not being kept"),
            });
        }
        self.shared.globals.get(&self.store)
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let bytes = encode(&*self.keys, key, &self.store)?;
        let raw = self.store()?.lock().get(&bytes).map_err(Error::from)?;
        raw.map(|v| decode(&*self.values, &v, &self.store, "value"))
            .transpose()
    }

    /// Every entry, in encoded-key order.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        let store = self.store()?;
        let raw: Vec<(Vec<u8>, Vec<u8>)> = {
            let store = store.lock();
            let iter = store.all().map_err(Error::from)?;
            let entries: std::result::Result<Vec<_>, _> = iter.collect();
            entries.map_err(Error::from)?
        };
        raw.into_iter()
            .map(|(k, v)| {
                Ok((
                    decode(&*self.keys, &k, &self.store, "key")?,
                    decode(&*self.values, &v, &self.store, "value")?,
                ))
            })
            .collect()
    }
}

impl Streams {
    /// Queries a session store by name. `keys` and `values` must be the serdes the store was
    /// materialized with.
    pub fn session_store<K: Send + 'static, V: Send + 'static>(
        &self,
        store: &str,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Result<SessionQuery<K, V>> {
        Ok(SessionQuery {
            at: Located::find(&self.shared, store, Wanted::Session)?,
            keys,
            values,
        })
    }

    /// Queries a global store by name. `keys` and `values` must be the serdes of its topic.
    pub fn global_store<K: 'static, V: 'static>(
        &self,
        store: &str,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Result<GlobalQuery<K, V>> {
        if !self.shared.topology.global_stores().contains_key(store) {
            return Err(Error::Config {
                key: format!("global store `{store}`"),
                reason: "the topology has no global store of that name".into(),
            });
        }
        Ok(GlobalQuery {
            shared: self.shared.clone(),
            store: store.to_string(),
            keys,
            values,
        })
    }

    /// Queries a key-value store by name. `keys` and `values` must be the serdes the store
    /// was materialized with.
    pub fn key_value_store<K: Send + 'static, V: Send + 'static>(
        &self,
        store: &str,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Result<KeyValueQuery<K, V>> {
        KeyValueQuery::new(&self.shared, store, keys, values)
    }

    /// Queries a window store by name. `keys` and `values` must be the serdes the store was
    /// materialized with.
    pub fn window_store<K: Send + 'static, V: Send + 'static>(
        &self,
        store: &str,
        keys: Arc<dyn Serde<K>>,
        values: Arc<dyn Serde<V>>,
    ) -> Result<WindowQuery<K, V>> {
        WindowQuery::new(&self.shared, store, keys, values)
    }
}
