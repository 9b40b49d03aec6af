//! The write-back record cache (Kafka Streams' ThreadCache + caching stores).
//!
//! One [`RecordCache`] holds the entries of many stores, each in its own namespace, under one
//! byte bound. Writes land in the cache as dirty entries; repeated writes to a key merge into
//! one entry. A namespace is flushed when its store is flushed (on commit) or when the cache is
//! over its bound and the least-recently-used entry is dirty: a flush writes every dirty key of
//! that namespace exactly once to the store below (changelogging, then the backend) and then
//! hands `(key, new, old)` to the namespace's flush listener, which forwards it downstream.
//!
//! Invariants:
//! - a read never sees a stale value: the cache is consulted first and deletes are cached as
//!   tombstones until flushed;
//! - the cache owns the store below each namespace, so an eviction triggered by one store can
//!   write another store's entries;
//! - listeners run after the cache lock is released, so a listener may write to other cached
//!   stores (that is how a KTable feeds a downstream aggregation). A change is delivered when
//!   its listener is free; one that arrives while that same listener is running (a cycle) is
//!   queued and delivered after it returns.
//!
//! One cache serialises the stores that share it, and listeners run on the thread that caused
//! the flush, so give each stream thread its own cache (split the application's budget with
//! [`RecordCache::split`]), as Kafka Streams does.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::changelog::RecordClock;
use crate::keys::{split_window_key, window_key};
use crate::store::{
    empty_range, owned_bound, ChangelogRecord, KeyValueIter, KeyValueStore, ReadOnlyKeyValueStore,
    StateStore,
};
use crate::window::{
    ReadOnlyWindowStore, WindowIter, WindowStore, WindowedKey, WindowedKeyValueIter,
};
use crate::StoreError;

/// Receives each flushed change: `(key, new value, old value)`; `None` means absent/deleted.
pub type FlushListener = Box<dyn FnMut(&[u8], Option<&[u8]>, Option<&[u8]>) + Send>;

/// Bytes charged per entry beyond its key and value (map nodes, LRU link, dirty list).
const ENTRY_OVERHEAD: usize = 64;
/// Entries fetched per lock acquisition by a cached range scan.
const RANGE_CHUNK: usize = 256;

/// Counters of a [`RecordCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that went to the store below.
    pub misses: u64,
    /// Entries evicted to stay under the bound.
    pub evictions: u64,
    /// Namespace flushes (commit or eviction).
    pub flushes: u64,
    /// Entries currently cached.
    pub entries: u64,
    /// Bytes currently charged.
    pub bytes: u64,
}

/// A byte-bounded write-back cache shared by the stores of one stream thread.
#[derive(Clone)]
pub struct RecordCache {
    inner: Arc<Mutex<CacheInner>>,
}

impl std::fmt::Debug for RecordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl RecordCache {
    /// A cache holding at most about `max_bytes` of keys, values and per-entry overhead.
    pub fn new(max_bytes: usize) -> Self {
        RecordCache {
            inner: Arc::new(Mutex::new(CacheInner {
                max_bytes,
                bytes: 0,
                tick: 0,
                next_ns: 0,
                namespaces: HashMap::new(),
                lru: BTreeMap::new(),
                outbox: VecDeque::new(),
                stats: CacheStats::default(),
            })),
        }
    }

    /// Splits an application-wide budget into one cache per stream thread, so the total stays
    /// within `total_bytes`.
    pub fn split(total_bytes: usize, threads: usize) -> Vec<RecordCache> {
        let threads = threads.max(1);
        (0..threads)
            .map(|_| RecordCache::new(total_bytes / threads))
            .collect()
    }

    /// The configured bound.
    pub fn max_bytes(&self) -> usize {
        self.inner.lock().max_bytes
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let g = self.inner.lock();
        let mut s = g.stats;
        s.entries = g.lru.len() as u64;
        s.bytes = g.bytes as u64;
        s
    }

    fn register(
        &self,
        name: &str,
        backing: Backing,
        clock: RecordClock,
        listener: Option<FlushListener>,
    ) -> u64 {
        let mut g = self.inner.lock();
        let id = g.next_ns;
        g.next_ns += 1;
        g.namespaces.insert(
            id,
            Namespace {
                name: name.to_owned(),
                entries: EntryMap::default(),
                dirty: Vec::new(),
                backing,
                clock,
                listener: listener.map(|l| Arc::new(Mutex::new(l))),
            },
        );
        id
    }

    /// Runs `f` under the lock, then delivers queued changes to listeners outside it.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut CacheInner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = f(&mut self.inner.lock());
        self.deliver();
        out
    }

    fn deliver(&self) {
        loop {
            let batch = std::mem::take(&mut self.inner.lock().outbox);
            if batch.is_empty() {
                return;
            }
            let mut blocked = VecDeque::new();
            let total = batch.len();
            for f in batch {
                // A listener that is already running up the stack (a cycle) gets it later.
                let delivered = match f.listener.try_lock() {
                    Some(mut listener) => {
                        let saved = f.clock.get();
                        f.clock.set(f.timestamp);
                        (*listener)(&f.key, f.new.as_deref(), f.old.as_deref());
                        f.clock.set(saved);
                        true
                    }
                    None => false,
                };
                if !delivered {
                    blocked.push_back(f);
                }
            }
            if !blocked.is_empty() {
                let stuck = blocked.len() == total;
                let mut g = self.inner.lock();
                blocked.append(&mut g.outbox);
                g.outbox = blocked;
                if stuck {
                    return;
                }
            }
        }
    }
}

/// The store below a namespace.
enum Backing {
    Kv(Box<dyn KeyValueStore>),
    Window(Box<dyn WindowStore>),
}

impl Backing {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Backing::Kv(s) => s.get(key),
            Backing::Window(s) => match split_window_key(key, false) {
                Some((k, start)) => s.fetch_one(k, start),
                None => Ok(None),
            },
        }
    }

    fn write(&mut self, entries: &[(&[u8], Option<&[u8]>)]) -> Result<(), StoreError> {
        match self {
            Backing::Kv(s) => s.put_all(entries),
            Backing::Window(s) => {
                for (key, value) in entries {
                    if let Some((k, start)) = split_window_key(key, false) {
                        s.put(k, *value, start)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn state(&mut self) -> &mut dyn StateStoreMut {
        match self {
            Backing::Kv(s) => s,
            Backing::Window(s) => s,
        }
    }
}

/// The [`StateStore`] methods on either kind of backing, without trait upcasting.
trait StateStoreMut {
    fn flush(&mut self) -> Result<(), StoreError>;
    fn flush_cache(&mut self) -> Result<(), StoreError>;
    fn close(&mut self) -> Result<(), StoreError>;
    fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError>;
    fn wipe(&mut self) -> Result<(), StoreError>;
    fn persistent(&self) -> bool;
}

impl<S: StateStore + ?Sized> StateStoreMut for Box<S> {
    fn flush(&mut self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn flush_cache(&mut self) -> Result<(), StoreError> {
        (**self).flush_cache()
    }
    fn close(&mut self) -> Result<(), StoreError> {
        (**self).close()
    }
    fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
        (**self).restore_batch(batch)
    }
    fn wipe(&mut self) -> Result<(), StoreError> {
        (**self).wipe()
    }
    fn persistent(&self) -> bool {
        (**self).persistent()
    }
}

/// A namespace's entries: hashed for the lookups and updates every record makes, with the
/// keys also kept in order for range scans (maintained only when a key comes or goes).
#[derive(Default)]
struct EntryMap {
    map: HashMap<Vec<u8>, Entry>,
    order: std::collections::BTreeSet<Vec<u8>>,
}

impl EntryMap {
    fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.map.get_mut(key)
    }

    fn insert(&mut self, key: Vec<u8>, entry: Entry) -> Option<Entry> {
        if !self.map.contains_key(key.as_slice()) {
            self.order.insert(key.clone());
        }
        self.map.insert(key, entry)
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        self.order.remove(key);
        Some(entry)
    }

    fn values(&self) -> impl Iterator<Item = &Entry> {
        self.map.values()
    }

    /// Entries with keys in `bounds`, in key order.
    fn range<'a>(
        &'a self,
        bounds: (Bound<&[u8]>, Bound<&[u8]>),
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a {
        self.order
            .range::<[u8], _>(bounds)
            .filter_map(move |k| self.map.get(k.as_slice()).map(|e| (k, e)))
    }

    fn drain(&mut self) -> impl Iterator<Item = (Vec<u8>, Entry)> + '_ {
        self.order.clear();
        self.map.drain()
    }
}

struct Namespace {
    name: String,
    entries: EntryMap,
    /// Keys that became dirty since the last flush, in that order.
    dirty: Vec<Vec<u8>>,
    backing: Backing,
    clock: RecordClock,
    listener: Option<Arc<Mutex<FlushListener>>>,
}

struct Entry {
    value: Option<Vec<u8>>,
    dirty: bool,
    timestamp: i64,
    tick: u64,
}

struct Forward {
    listener: Arc<Mutex<FlushListener>>,
    key: Vec<u8>,
    new: Option<Vec<u8>>,
    old: Option<Vec<u8>>,
    /// The entry's own record time, put on the clock while its listener runs, so a
    /// forwarded change carries the timestamp of the write that made it.
    clock: RecordClock,
    timestamp: i64,
}

struct CacheInner {
    max_bytes: usize,
    bytes: usize,
    tick: u64,
    next_ns: u64,
    namespaces: HashMap<u64, Namespace>,
    /// Access order: tick → (namespace, key). The first entry is the least recently used.
    lru: BTreeMap<u64, (u64, Vec<u8>)>,
    outbox: VecDeque<Forward>,
    stats: CacheStats,
}

fn entry_size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    // The key is stored twice: in the namespace map and in the LRU index.
    2 * key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

fn closed(ns: u64) -> StoreError {
    StoreError::Closed {
        store: format!("cache namespace {ns}"),
    }
}

impl CacheInner {
    fn ns(&mut self, ns: u64) -> Result<&mut Namespace, StoreError> {
        self.namespaces.get_mut(&ns).ok_or_else(|| closed(ns))
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The cached value: `Some(Some(v))` value, `Some(None)` cached tombstone, `None` miss.
    fn lookup(&mut self, ns: u64, key: &[u8]) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        let tick = self.next_tick();
        let n = self.namespaces.get_mut(&ns).ok_or_else(|| closed(ns))?;
        let Some(e) = n.entries.get_mut(key) else {
            return Ok(None);
        };
        let old = std::mem::replace(&mut e.tick, tick);
        if let Some(link) = self.lru.remove(&old) {
            self.lru.insert(tick, link);
        }
        Ok(Some(e.value.clone()))
    }

    fn get(&mut self, ns: u64, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.lookup(ns, key)? {
            self.stats.hits += 1;
            return Ok(v);
        }
        self.stats.misses += 1;
        let value = self.ns(ns)?.backing.read(key)?;
        if let Some(v) = &value {
            let tick = self.next_tick();
            let entry = Entry {
                value: Some(v.clone()),
                dirty: false,
                timestamp: 0,
                tick,
            };
            self.bytes += entry_size(key, &entry.value);
            self.ns(ns)?.entries.insert(key.to_vec(), entry);
            self.lru.insert(tick, (ns, key.to_vec()));
            self.evict()?;
        }
        Ok(value)
    }

    fn put(
        &mut self,
        ns: u64,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Result<(), StoreError> {
        let tick = self.next_tick();
        let n = self.namespaces.get_mut(&ns).ok_or_else(|| closed(ns))?;
        let value = value.map(<[u8]>::to_vec);
        match n.entries.get_mut(key) {
            Some(e) => {
                self.bytes = self.bytes - entry_size(key, &e.value) + entry_size(key, &value);
                e.value = value;
                e.timestamp = timestamp;
                if !e.dirty {
                    e.dirty = true;
                    n.dirty.push(key.to_vec());
                }
                let old = std::mem::replace(&mut e.tick, tick);
                if let Some(link) = self.lru.remove(&old) {
                    self.lru.insert(tick, link);
                }
            }
            None => {
                self.bytes += entry_size(key, &value);
                n.entries.insert(
                    key.to_vec(),
                    Entry {
                        value,
                        dirty: true,
                        timestamp,
                        tick,
                    },
                );
                n.dirty.push(key.to_vec());
                self.lru.insert(tick, (ns, key.to_vec()));
            }
        }
        self.evict()
    }

    /// Evicts least-recently-used entries until under the bound, flushing the namespace of a
    /// dirty one first.
    fn evict(&mut self) -> Result<(), StoreError> {
        while self.bytes > self.max_bytes {
            let Some((&tick, (ns, key))) = self.lru.first_key_value() else {
                break;
            };
            let ns = *ns;
            let dirty = self
                .namespaces
                .get(&ns)
                .and_then(|n| n.entries.get(key))
                .is_some_and(|e| e.dirty);
            if dirty {
                // Leaves the entry clean (or removes it if it was a tombstone); loop again.
                self.flush_ns(ns)?;
                continue;
            }
            if let Some((ns, key)) = self.lru.remove(&tick) {
                if let Some(e) = self
                    .namespaces
                    .get_mut(&ns)
                    .and_then(|n| n.entries.remove(&key))
                {
                    self.bytes -= entry_size(&key, &e.value);
                }
            }
            self.stats.evictions += 1;
        }
        Ok(())
    }

    /// Writes every dirty entry of `ns` once to the store below and queues its listener calls.
    fn flush_ns(&mut self, ns: u64) -> Result<(), StoreError> {
        let n = self.namespaces.get_mut(&ns).ok_or_else(|| closed(ns))?;
        if n.dirty.is_empty() {
            return Ok(());
        }
        self.stats.flushes += 1;
        let keys = std::mem::take(&mut n.dirty);
        let batch: Vec<FlushEntry<'_>> = keys
            .iter()
            .filter_map(|k| {
                n.entries
                    .get(k)
                    .filter(|e| e.dirty)
                    .map(|e| (k.as_slice(), e.value.as_deref(), e.timestamp))
            })
            .collect();
        let result = write_batch(&mut n.backing, &n.clock, &batch, n.listener.is_some());
        let olds = match result {
            Ok(olds) => olds,
            Err(e) => {
                // Nothing is marked clean: a retried flush writes the same entries again.
                drop(batch);
                n.dirty = keys;
                return Err(e);
            }
        };
        if let Some(listener) = &n.listener {
            for ((k, new, ts), old) in batch.iter().zip(olds) {
                self.outbox.push_back(Forward {
                    listener: listener.clone(),
                    key: k.to_vec(),
                    new: new.map(<[u8]>::to_vec),
                    clock: n.clock.clone(),
                    timestamp: *ts,
                    old,
                });
            }
        }
        drop(batch);
        for k in &keys {
            let tombstone = match n.entries.get_mut(k) {
                Some(e) => {
                    e.dirty = false;
                    e.value.is_none()
                }
                None => false,
            };
            // A flushed tombstone says nothing the store below cannot; free its space.
            if tombstone {
                if let Some(e) = n.entries.remove(k) {
                    self.lru.remove(&e.tick);
                    self.bytes -= entry_size(k, &e.value);
                }
            }
        }
        Ok(())
    }

    fn drop_namespace_entries(&mut self, ns: u64) {
        if let Some(n) = self.namespaces.get_mut(&ns) {
            for (k, e) in n.entries.drain() {
                self.lru.remove(&e.tick);
                self.bytes -= entry_size(&k, &e.value);
            }
            n.dirty.clear();
        }
    }
}

/// One dirty entry being flushed: key, new value (`None` deletes), record timestamp.
type FlushEntry<'a> = (&'a [u8], Option<&'a [u8]>, i64);

/// Writes a flush batch below, stamping each run of equal timestamps on the clock (so the
/// changelog gets each entry's own record time), and returns the old values when wanted.
fn write_batch(
    backing: &mut Backing,
    clock: &RecordClock,
    batch: &[FlushEntry<'_>],
    want_old: bool,
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let olds = if want_old {
        batch
            .iter()
            .map(|(k, _, _)| backing.read(k))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let saved = clock.get();
    let mut result = Ok(());
    for run in batch.chunk_by(|a, b| a.2 == b.2) {
        clock.set(run[0].2);
        let entries: Vec<(&[u8], Option<&[u8]>)> = run.iter().map(|(k, v, _)| (*k, *v)).collect();
        result = backing.write(&entries);
        if result.is_err() {
            break;
        }
    }
    clock.set(saved);
    result.map(|()| olds)
}

/// A handle on one namespace; shared code of the caching key-value and window stores.
struct Handle {
    name: String,
    ns: u64,
    cache: RecordCache,
    clock: RecordClock,
    open: bool,
}

impl Handle {
    fn check_open(&self) -> Result<(), StoreError> {
        if self.open {
            Ok(())
        } else {
            Err(StoreError::Closed {
                store: self.name.clone(),
            })
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_open()?;
        self.cache.with(|c| c.get(self.ns, key))
    }

    fn put(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.check_open()?;
        let ts = self.clock.get();
        self.cache.with(|c| c.put(self.ns, key, value, ts))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.cache.with(|c| {
            c.flush_ns(self.ns)?;
            c.ns(self.ns)?.backing.state().flush()
        })
    }

    fn flush_cache(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.cache.with(|c| {
            c.flush_ns(self.ns)?;
            c.ns(self.ns)?.backing.state().flush_cache()
        })
    }

    fn close(&mut self) -> Result<(), StoreError> {
        if !self.open {
            return Ok(());
        }
        self.flush()?;
        self.cache
            .with(|c| c.ns(self.ns)?.backing.state().close())?;
        self.open = false;
        let mut g = self.cache.inner.lock();
        g.drop_namespace_entries(self.ns);
        g.namespaces.remove(&self.ns);
        Ok(())
    }

    fn restore_batch(&self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
        self.check_open()?;
        self.cache.with(|c| {
            // Restore runs before processing, so normally nothing is cached; drop anything that
            // is, or it would shadow the restored value.
            for r in batch {
                let n = c.ns(self.ns)?;
                if let Some(e) = n.entries.remove(&r.key) {
                    n.dirty.retain(|k| k != &r.key);
                    c.lru.remove(&e.tick);
                    c.bytes -= entry_size(&r.key, &e.value);
                }
            }
            c.ns(self.ns)?.backing.state().restore_batch(batch)
        })
    }

    fn wipe(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.cache.with(|c| {
            c.drop_namespace_entries(self.ns);
            c.ns(self.ns)?.backing.state().wipe()
        })
    }

    fn persistent(&self) -> bool {
        let mut g = self.cache.inner.lock();
        g.ns(self.ns)
            .map(|n| n.backing.state().persistent())
            .unwrap_or(false)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Dropped without close(): unflushed writes are lost, as in a crash; free the space.
        let mut g = self.cache.inner.lock();
        g.drop_namespace_entries(self.ns);
        g.namespaces.remove(&self.ns);
    }
}

/// A key-value store behind the record cache.
pub(crate) struct CachingKeyValueStore {
    handle: Handle,
}

impl CachingKeyValueStore {
    pub(crate) fn new(
        inner: Box<dyn KeyValueStore>,
        cache: &RecordCache,
        clock: RecordClock,
        listener: Option<FlushListener>,
    ) -> Self {
        let name = inner.name().to_owned();
        let ns = cache.register(&name, Backing::Kv(inner), clock.clone(), listener);
        CachingKeyValueStore {
            handle: Handle {
                name,
                ns,
                cache: cache.clone(),
                clock,
                open: true,
            },
        }
    }
}

impl StateStore for CachingKeyValueStore {
    fn name(&self) -> &str {
        &self.handle.name
    }
    fn persistent(&self) -> bool {
        self.handle.persistent()
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.handle.flush()
    }
    fn flush_cache(&mut self) -> Result<(), StoreError> {
        self.handle.flush_cache()
    }
    fn close(&mut self) -> Result<(), StoreError> {
        self.handle.close()
    }
    fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
        self.handle.restore_batch(batch)
    }
    fn wipe(&mut self) -> Result<(), StoreError> {
        self.handle.wipe()
    }
}

impl ReadOnlyKeyValueStore for CachingKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.handle.get(key)
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KeyValueIter<'_>, StoreError> {
        self.handle.check_open()?;
        Ok(Box::new(CachedRange {
            cache: self.handle.cache.clone(),
            ns: self.handle.ns,
            from: owned_bound(from),
            to: owned_bound(to),
            buf: VecDeque::new(),
            done: empty_range(from, to),
        }))
    }

    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        self.handle.check_open()?;
        let mut g = self.handle.cache.inner.lock();
        let n = g.ns(self.handle.ns)?;
        let dirty_new = n.entries.values().filter(|e| e.dirty).count() as u64;
        match &n.backing {
            Backing::Kv(s) => Ok(s.approximate_num_entries()?.saturating_add(dirty_new)),
            Backing::Window(_) => Ok(dirty_new),
        }
    }
}

impl KeyValueStore for CachingKeyValueStore {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.handle.put(key, Some(value))
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.handle.put(key, None)
    }
}

/// A range scan over cache + store that takes the lock once per chunk, merging the two sorted
/// streams (the cache wins on equal keys; cached tombstones hide store entries).
struct CachedRange {
    cache: RecordCache,
    ns: u64,
    from: Bound<Vec<u8>>,
    to: Bound<Vec<u8>>,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl CachedRange {
    fn fetch_chunk(&mut self) -> Result<(), StoreError> {
        let mut g = self.cache.inner.lock();
        let n = g.ns(self.ns)?;
        let bounds = (as_ref_bound(&self.from), as_ref_bound(&self.to));
        let cached: Vec<(Vec<u8>, Option<Vec<u8>>)> = n
            .entries
            .range(bounds)
            .take(RANGE_CHUNK)
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect();
        let Backing::Kv(store) = &n.backing else {
            return Err(StoreError::corrupt(
                &n.name,
                "range scan on a window namespace",
            ));
        };
        let mut stored = Vec::new();
        for r in store.range(bounds.0, bounds.1)?.take(RANGE_CHUNK) {
            stored.push(r?);
        }
        drop(g);
        // Keys up to `limit` are complete on both sides; beyond it one side was cut short.
        let limit = [
            (cached.len() == RANGE_CHUNK)
                .then(|| cached.last().map(|(k, _)| k.clone()))
                .flatten(),
            (stored.len() == RANGE_CHUNK)
                .then(|| stored.last().map(|(k, _)| k.clone()))
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .min();
        let within = |k: &Vec<u8>| limit.as_ref().is_none_or(|l| k <= l);
        let mut c = cached.into_iter().filter(|(k, _)| within(k)).peekable();
        let mut s = stored.into_iter().filter(|(k, _)| within(k)).peekable();
        loop {
            let take_cache = match (c.peek(), s.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((ck, _)), Some((sk, _))) => match ck.cmp(sk) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Greater => false,
                    std::cmp::Ordering::Equal => {
                        // The cached entry shadows the stored one.
                        s.next();
                        true
                    }
                },
            };
            if take_cache {
                if let Some((k, Some(v))) = c.next() {
                    self.buf.push_back((k, v));
                }
            } else if let Some(kv) = s.next() {
                self.buf.push_back(kv);
            }
        }
        match limit {
            Some(l) => self.from = Bound::Excluded(l),
            None => self.done = true,
        }
        Ok(())
    }
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Iterator for CachedRange {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(kv) = self.buf.pop_front() {
                return Some(Ok(kv));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fetch_chunk() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

/// A window store behind the record cache, keyed by `[key][window_start]`.
pub(crate) struct CachingWindowStore {
    handle: Handle,
    retention: i64,
    /// Largest window start seen, including writes still only in the cache.
    stream_time: i64,
}

impl CachingWindowStore {
    pub(crate) fn new(
        inner: Box<dyn WindowStore>,
        cache: &RecordCache,
        clock: RecordClock,
        listener: Option<FlushListener>,
    ) -> Self {
        let name = inner.name().to_owned();
        let retention = inner.retention_ms();
        let ns = cache.register(&name, Backing::Window(inner), clock.clone(), listener);
        CachingWindowStore {
            handle: Handle {
                name,
                ns,
                cache: cache.clone(),
                clock,
                open: true,
            },
            retention,
            stream_time: i64::MIN,
        }
    }

    fn min_live_time(&self) -> i64 {
        self.stream_time
            .saturating_sub(self.retention)
            .saturating_add(1)
    }

    /// Cached entries (values and tombstones) in the raw key range, and the store's windows.
    fn merged(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        keep: impl Fn(&[u8], i64) -> bool,
        from_store: impl FnOnce(&dyn WindowStore) -> Result<Vec<(WindowedKey, Vec<u8>)>, StoreError>,
    ) -> Result<Vec<(WindowedKey, Vec<u8>)>, StoreError> {
        self.handle.check_open()?;
        let mut g = self.handle.cache.inner.lock();
        let n = g.ns(self.handle.ns)?;
        let Backing::Window(store) = &n.backing else {
            return Err(StoreError::corrupt(
                &n.name,
                "window fetch on a key-value namespace",
            ));
        };
        let mut merged: BTreeMap<WindowedKey, Option<Vec<u8>>> = from_store(store.as_ref())?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        for (raw, e) in n.entries.range((lo, hi)) {
            if let Some((k, start)) = split_window_key(raw, false) {
                if keep(k, start) {
                    merged.insert(
                        WindowedKey {
                            key: k.to_vec(),
                            start,
                        },
                        e.value.clone(),
                    );
                }
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }
}

impl StateStore for CachingWindowStore {
    fn name(&self) -> &str {
        &self.handle.name
    }
    fn persistent(&self) -> bool {
        self.handle.persistent()
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.handle.flush()
    }
    fn flush_cache(&mut self) -> Result<(), StoreError> {
        self.handle.flush_cache()
    }
    fn close(&mut self) -> Result<(), StoreError> {
        self.handle.close()
    }
    fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
        self.handle.restore_batch(batch)
    }
    fn wipe(&mut self) -> Result<(), StoreError> {
        self.stream_time = i64::MIN;
        self.handle.wipe()
    }
}

impl ReadOnlyWindowStore for CachingWindowStore {
    fn fetch_one(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>, StoreError> {
        if window_start < self.min_live_time() {
            return Ok(None);
        }
        self.handle.get(&window_key(key, window_start, None))
    }

    fn fetch(
        &self,
        key: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<WindowIter<'_>, StoreError> {
        let from = time_from.max(self.min_live_time());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        let lo = window_key(key, from, None);
        let hi = window_key(key, time_to, None);
        let items = self.merged(
            Bound::Included(&lo),
            Bound::Included(&hi),
            |k, _| k == key,
            |s| {
                s.fetch(key, from, time_to)?
                    .map(|r| {
                        r.map(|(start, v)| {
                            (
                                WindowedKey {
                                    key: key.to_vec(),
                                    start,
                                },
                                v,
                            )
                        })
                    })
                    .collect()
            },
        )?;
        Ok(Box::new(items.into_iter().map(|(k, v)| Ok((k.start, v)))))
    }

    fn fetch_all(
        &self,
        time_from: i64,
        time_to: i64,
    ) -> Result<WindowedKeyValueIter<'_>, StoreError> {
        let from = time_from.max(self.min_live_time());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        let items = self.merged(
            Bound::Unbounded,
            Bound::Unbounded,
            |_, start| start >= from && start <= time_to,
            |s| s.fetch_all(from, time_to)?.collect(),
        )?;
        Ok(Box::new(items.into_iter().map(Ok)))
    }
}

impl WindowStore for CachingWindowStore {
    fn put(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        window_start: i64,
    ) -> Result<(), StoreError> {
        self.stream_time = self.stream_time.max(window_start);
        if window_start < self.min_live_time() {
            return Ok(());
        }
        self.handle.put(&window_key(key, window_start, None), value)
    }

    fn retention_ms(&self) -> i64 {
        self.retention
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::memory::InMemoryKeyValueStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts writes that reach it.
    struct Counting {
        inner: InMemoryKeyValueStore,
        writes: Arc<AtomicUsize>,
    }

    impl StateStore for Counting {
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn persistent(&self) -> bool {
            false
        }
        fn flush(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn close(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn restore_batch(&mut self, b: &[ChangelogRecord]) -> Result<(), StoreError> {
            self.inner.restore_batch(b)
        }
        fn wipe(&mut self) -> Result<(), StoreError> {
            self.inner.wipe()
        }
    }
    impl ReadOnlyKeyValueStore for Counting {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn range(&self, f: Bound<&[u8]>, t: Bound<&[u8]>) -> Result<KeyValueIter<'_>, StoreError> {
            self.inner.range(f, t)
        }
        fn approximate_num_entries(&self) -> Result<u64, StoreError> {
            self.inner.approximate_num_entries()
        }
    }
    impl KeyValueStore for Counting {
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.inner.put(key, value)
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.inner.delete(key)
        }
    }

    fn counting(name: &str) -> (Box<dyn KeyValueStore>, Arc<AtomicUsize>) {
        let writes = Arc::new(AtomicUsize::new(0));
        (
            Box::new(Counting {
                inner: InMemoryKeyValueStore::new(name),
                writes: writes.clone(),
            }),
            writes,
        )
    }

    #[test]
    fn flush_writes_each_dirty_key_once() {
        let cache = RecordCache::new(1 << 20);
        let (inner, writes) = counting("s");
        let forwarded = Arc::new(Mutex::new(Vec::new()));
        let f = forwarded.clone();
        let listener: FlushListener =
            Box::new(move |k: &[u8], new: Option<&[u8]>, old: Option<&[u8]>| {
                f.lock()
                    .push((k.to_vec(), new.map(<[u8]>::to_vec), old.map(<[u8]>::to_vec)))
            });
        let mut store =
            CachingKeyValueStore::new(inner, &cache, RecordClock::new(), Some(listener));
        for i in 0..100u32 {
            store
                .put(format!("k{}", i % 10).as_bytes(), &i.to_be_bytes())
                .unwrap();
        }
        store.delete(b"k3").unwrap();
        assert_eq!(writes.load(Ordering::Relaxed), 0);
        assert_eq!(store.get(b"k3").unwrap(), None);
        assert_eq!(
            store.get(b"k4").unwrap(),
            Some(94u32.to_be_bytes().to_vec())
        );
        store.flush().unwrap();
        assert_eq!(writes.load(Ordering::Relaxed), 10);
        let fw = forwarded.lock().clone();
        assert_eq!(fw.len(), 10);
        assert!(fw.iter().all(|(_, _, old)| old.is_none()));
        assert!(fw.contains(&(b"k3".to_vec(), None, None)));
        // A second flush with nothing dirty writes nothing.
        store.flush().unwrap();
        assert_eq!(writes.load(Ordering::Relaxed), 10);
        // Old values are what the store held before.
        store.put(b"k4", b"new").unwrap();
        store.flush().unwrap();
        let last = forwarded.lock().last().cloned().unwrap();
        assert_eq!(
            last,
            (
                b"k4".to_vec(),
                Some(b"new".to_vec()),
                Some(94u32.to_be_bytes().to_vec())
            )
        );
    }

    #[test]
    fn eviction_flushes_other_namespaces_and_bounds_bytes() {
        let cache = RecordCache::new(4 << 10);
        let (a_inner, a_writes) = counting("a");
        let (b_inner, _b_writes) = counting("b");
        let mut a = CachingKeyValueStore::new(a_inner, &cache, RecordClock::new(), None);
        let mut b = CachingKeyValueStore::new(b_inner, &cache, RecordClock::new(), None);
        a.put(b"x", &[0; 100]).unwrap();
        for i in 0..200u32 {
            b.put(&i.to_be_bytes(), &[1; 100]).unwrap();
            assert!(cache.stats().bytes <= 4 << 10);
        }
        // `a`'s entry was the oldest: flushing it was the price of evicting it.
        assert_eq!(a_writes.load(Ordering::Relaxed), 1);
        assert_eq!(a.get(b"x").unwrap(), Some(vec![0; 100]));
        for i in 0..200u32 {
            assert_eq!(b.get(&i.to_be_bytes()).unwrap(), Some(vec![1; 100]));
        }
        assert!(cache.stats().evictions > 0);
    }

    #[test]
    fn listener_may_write_to_another_cached_store() {
        let cache = RecordCache::new(1 << 20);
        let (down_inner, _) = counting("down");
        let down = Arc::new(Mutex::new(CachingKeyValueStore::new(
            down_inner,
            &cache,
            RecordClock::new(),
            None,
        )));
        let d = down.clone();
        let listener: FlushListener =
            Box::new(move |k: &[u8], new: Option<&[u8]>, _old: Option<&[u8]>| {
                if let Some(v) = new {
                    d.lock().put(k, v).unwrap();
                }
            });
        let (up_inner, _) = counting("up");
        let mut up =
            CachingKeyValueStore::new(up_inner, &cache, RecordClock::new(), Some(listener));
        up.put(b"k", b"v").unwrap();
        up.flush().unwrap();
        assert_eq!(down.lock().get(b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn split_bounds_total() {
        let caches = RecordCache::split(100, 3);
        assert_eq!(caches.len(), 3);
        assert!(caches.iter().map(RecordCache::max_bytes).sum::<usize>() <= 100);
    }
}
