//! Interactive queries: read a materialized store of a running application.
//!
//! Stores belong to the stream thread that runs their task, so a query is sent to that
//! thread, runs between two batches there, and the answer comes back. A key is looked up in
//! the task its key bytes partition to (Kafka's partitioner, as for the topics); range and
//! full scans ask every task of the store and merge the answers in key order. Reads see the
//! latest values, including those still in the record cache. Values of timestamped stores
//! (the DSL's tables and windowed aggregations) are returned without their timestamp.

use std::ops::Bound;
use std::sync::Arc;

use super::{Shared, Streams};
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::partitioner::partition_for_key;
use crate::serdes::Serde;
use crate::topology::StoreKind;

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

/// Where a store lives: its sub-topology and how many tasks (partitions) it has.
struct Located {
    shared: Arc<Shared>,
    store: String,
    kind: StoreKind,
    subtopology: u32,
    partitions: u32,
}

impl Located {
    fn find(shared: &Arc<Shared>, store: &str, want_window: bool) -> Result<Located> {
        let shared = shared.clone();
        let spec = shared
            .topology
            .stores()
            .get(store)
            .ok_or_else(|| Error::Config {
                key: format!("store `{store}`"),
                reason: "the topology has no store of that name".into(),
            })?;
        let is_window = matches!(spec.kind, StoreKind::Window { .. });
        if is_window != want_window || matches!(spec.kind, StoreKind::Session { .. }) {
            return Err(Error::Config {
                key: format!("store `{store}`"),
                reason: format!("is a {:?} store", spec.kind),
            });
        }
        let subtopology = shared
            .topology
            .subtopologies()
            .iter()
            .find(|s| s.stores.iter().any(|s| s == store))
            .map(|s| s.id)
            .ok_or_else(|| Error::Config {
                key: format!("store `{store}`"),
                reason: "no processor uses it".into(),
            })?;
        let partitions = shared.task_counts.get(&subtopology).copied().unwrap_or(0);
        let kind = spec.kind.clone();
        Ok(Located {
            shared,
            store: store.to_string(),
            kind,
            subtopology,
            partitions,
        })
    }

    /// Runs `f` with the stores of the task `key` (encoded) partitions to, on its thread.
    fn ask_key<R: Send + 'static>(
        &self,
        key: Vec<u8>,
        f: impl FnOnce(&crate::task::TaskStores, &str, &[u8]) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let task = self.task_for(&key);
        let name = self.store.clone();
        self.shared
            .ask(&self.store, task, move |stores| f(stores, &name, &key))
    }

    fn task_for(&self, key: &[u8]) -> TaskId {
        TaskId::new(
            self.subtopology,
            partition_for_key(key, self.partitions.max(1)),
        )
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
            at: Located::find(shared, store, false)?,
            keys,
            values,
        })
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let bytes = encode(&*self.keys, key, &self.at.store)?;
        let raw = self.at.ask_key(bytes, |stores, name, key| {
            let store = stores.kv(name)?;
            let value = store.borrow().get(key).map_err(Error::from);
            value
        })?;
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

    /// Entries with `from <= key <= to` (in encoded-key order), from every task.
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>> {
        let from = encode(&*self.keys, from, &self.at.store)?;
        let to = encode(&*self.keys, to, &self.at.store)?;
        self.scan(Some((from, to)))
    }

    /// Every entry, in encoded-key order.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.scan(None)
    }

    fn scan(&self, bounds: Option<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(K, V)>> {
        let mut raw: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for task in self.at.tasks() {
            let name = self.at.store.clone();
            let bounds = bounds.clone();
            let part = self.at.shared.ask(&self.at.store, task, move |stores| {
                let store = stores.kv(&name)?;
                let store = store.borrow();
                let iter = match &bounds {
                    Some((from, to)) => store.range(
                        Bound::Included(from.as_slice()),
                        Bound::Included(to.as_slice()),
                    ),
                    None => store.all(),
                }
                .map_err(Error::from)?;
                let entries: std::result::Result<Vec<_>, _> = iter.collect();
                entries.map_err(Error::from)
            })?;
            raw.extend(part);
        }
        raw.sort_by(|a, b| a.0.cmp(&b.0));
        raw.into_iter()
            .map(|(k, v)| {
                Ok((
                    decode(&*self.keys, &k, &self.at.store, "key")?,
                    self.value(&v)?,
                ))
            })
            .collect()
    }
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
            at: Located::find(shared, store, true)?,
            keys,
            values,
        })
    }

    /// The windows of `key` starting in `[time_from, time_to]`, as (window start, value), in
    /// time order.
    pub fn fetch(&self, key: &K, time_from: i64, time_to: i64) -> Result<Vec<(i64, V)>> {
        let bytes = encode(&*self.keys, key, &self.at.store)?;
        let raw = self.at.ask_key(bytes, move |stores, name, key| {
            let store = stores.window(name)?;
            let store = store.borrow();
            let iter = store.fetch(key, time_from, time_to).map_err(Error::from)?;
            let entries: std::result::Result<Vec<_>, _> = iter.collect();
            entries.map_err(Error::from)
        })?;
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

impl Streams {
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
