//! The record cache shared by the stores of one stream thread (Kafka Streams' ThreadCache):
//! its byte bound, its namespaces and least-recently-used eviction.
//!
//! Invariants: `bytes` is the sum of `entry_size` over every cached entry. Eviction, as in
//! Kafka Streams' `ThreadCache.maybeEvict`, takes entries only from the namespace being read or
//! written, least recently used first, until the cache is under its bound or that namespace is
//! empty; a dirty entry is never dropped, its namespace is flushed first (which may write
//! other keys of that namespace too), so the store below always has every write the cache let
//! go of. Since only the namespace in use grows and only it is evicted, the cache is under its
//! bound after every call, as it was before it; and a store's entries are written through only
//! by calls on that store, so its flushed changes reach the one that uses it, and no other.

use hashbrown::HashMap;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::namespace::{entry_size, Backing, Entry, EntryMap, Namespace};
use crate::changelog::RecordClock;
use crate::error::StoreError;
use crate::store::FlushedEntry;

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
    pub(super) inner: Arc<Mutex<CacheInner>>,
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
        s.entries = g.namespaces.values().map(|n| n.lru.len() as u64).sum();
        s.bytes = g.bytes as u64;
        s
    }

    pub(super) fn register(
        &self,
        name: &str,
        backing: Backing,
        clock: RecordClock,
        keep_flushed: bool,
    ) -> u64 {
        let mut g = self.inner.lock();
        let id = g.next_ns;
        g.next_ns += 1;
        g.namespaces.insert(
            id,
            Namespace {
                name: name.to_owned(),
                entries: EntryMap::default(),
                lru: BTreeMap::new(),
                dirty: Vec::new(),
                backing,
                clock,
                keep_flushed,
            },
        );
        id
    }

    /// Runs `f` under the lock.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut CacheInner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut self.inner.lock())
    }
}

/// What the cache lock guards.
pub(super) struct CacheInner {
    max_bytes: usize,
    pub(super) bytes: usize,
    tick: u64,
    next_ns: u64,
    pub(super) namespaces: HashMap<u64, Namespace>,
    stats: CacheStats,
}

fn closed(ns: u64) -> StoreError {
    StoreError::Closed {
        store: format!("cache namespace {ns}"),
    }
}

impl CacheInner {
    pub(super) fn ns(&mut self, ns: u64) -> Result<&mut Namespace, StoreError> {
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
        if let Some(link) = n.lru.remove(&old) {
            n.lru.insert(tick, link);
        }
        Ok(Some(e.value.clone()))
    }

    /// The value of `key` in namespace `ns`, from the cache or else the store below (then
    /// cached, which may evict: changes flushed by that go to `out`).
    pub(super) fn get(
        &mut self,
        ns: u64,
        key: &[u8],
        out: &mut Vec<FlushedEntry>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
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
            let n = self.ns(ns)?;
            n.entries.insert(key.to_vec(), entry);
            n.lru.insert(tick, key.to_vec());
            self.evict(ns, out)?;
        }
        Ok(value)
    }

    /// Caches a write of `key` in namespace `ns` (`None` deletes), which may evict: changes
    /// flushed by that go to `out`.
    pub(super) fn put(
        &mut self,
        ns: u64,
        key: &[u8],
        value: Option<&[u8]>,
        timestamp: i64,
        out: &mut Vec<FlushedEntry>,
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
                if let Some(link) = n.lru.remove(&old) {
                    n.lru.insert(tick, link);
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
                n.lru.insert(tick, key.to_vec());
            }
        }
        self.evict(ns, out)
    }

    /// Evicts least-recently-used entries of namespace `ns` until the cache is under its
    /// bound or `ns` is empty, flushing `ns` (into `out`) when the next one is dirty.
    fn evict(&mut self, ns: u64, out: &mut Vec<FlushedEntry>) -> Result<(), StoreError> {
        while self.bytes > self.max_bytes {
            let n = self.namespaces.get_mut(&ns).ok_or_else(|| closed(ns))?;
            let Some((&tick, key)) = n.lru.first_key_value() else {
                break;
            };
            if n.entries.get(key).is_some_and(|e| e.dirty) {
                // Leaves the entry clean (or removes it if it was a tombstone); loop again.
                self.flush_ns(ns, out)?;
                continue;
            }
            if let Some(key) = n.lru.remove(&tick) {
                if let Some(e) = n.entries.remove(&key) {
                    self.bytes -= entry_size(&key, &e.value);
                }
            }
            self.stats.evictions += 1;
        }
        Ok(())
    }

    /// Writes every dirty entry of `ns` once to the store below; its changes go to `out`
    /// when the namespace keeps them.
    pub(super) fn flush_ns(
        &mut self,
        ns: u64,
        out: &mut Vec<FlushedEntry>,
    ) -> Result<(), StoreError> {
        let n = self.namespaces.get_mut(&ns).ok_or_else(|| closed(ns))?;
        if n.dirty.is_empty() {
            return Ok(());
        }
        self.stats.flushes += 1;
        self.bytes -= n.flush(out)?;
        Ok(())
    }

    /// Drops the cached entry of `key` in `ns`, if any, dirty or not (a restore is writing the
    /// key below).
    pub(super) fn remove_entry(&mut self, ns: u64, key: &[u8]) -> Result<(), StoreError> {
        let n = self.namespaces.get_mut(&ns).ok_or_else(|| closed(ns))?;
        if let Some(e) = n.entries.remove(key) {
            n.dirty.retain(|k| k != key);
            n.lru.remove(&e.tick);
            self.bytes -= entry_size(key, &e.value);
        }
        Ok(())
    }

    pub(super) fn drop_namespace_entries(&mut self, ns: u64) {
        if let Some(n) = self.namespaces.get_mut(&ns) {
            for (k, e) in n.entries.drain() {
                self.bytes -= entry_size(&k, &e.value);
            }
            n.lru.clear();
            n.dirty.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_bounds_total() {
        let caches = RecordCache::split(100, 3);
        assert_eq!(caches.len(), 3);
        assert!(caches.iter().map(RecordCache::max_bytes).sum::<usize>() <= 100);
    }
}
