//! The key-value store behind the record cache (Kafka Streams' CachingKeyValueStore).
//!
//! Invariants: reads go to the cache first, so they see writes not yet flushed; a delete is a
//! cached tombstone until flushed; `approximate_num_entries` counts the store's entries plus the
//! dirty cached ones (an over-estimate when a dirty key is also stored, as the trait allows).

use std::ops::Bound;

use super::caching_store::{CachingStore, Shape};
use super::merge_iter::CachedRange;
use super::namespace::{Backing, FlushListener};
use super::record_cache::RecordCache;
use crate::changelog::RecordClock;
use crate::error::StoreError;
use crate::store::{KeyValueIter, KeyValueStore, ReadOnlyKeyValueStore};

/// A key-value store behind the record cache.
pub(crate) type CachingKeyValueStore = CachingStore<KeyValues>;

/// The key-value shape keeps nothing beside the cache.
pub(crate) struct KeyValues;

impl Shape for KeyValues {}

impl CachingKeyValueStore {
    pub(crate) fn new(
        inner: Box<dyn KeyValueStore>,
        cache: &RecordCache,
        clock: RecordClock,
        listener: Option<FlushListener>,
    ) -> Self {
        let name = inner.name().to_owned();
        CachingStore::register(name, Backing::Kv(inner), cache, clock, listener, KeyValues)
    }
}

impl ReadOnlyKeyValueStore for CachingKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(key)
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KeyValueIter<'_>, StoreError> {
        self.check_open()?;
        Ok(Box::new(CachedRange::new(
            self.cache.clone(),
            self.ns,
            from,
            to,
        )))
    }

    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        self.check_open()?;
        let mut g = self.cache.inner.lock();
        let n = g.ns(self.ns)?;
        let dirty_new = n.entries.values().filter(|e| e.dirty).count() as u64;
        match &n.backing {
            Backing::Kv(s) => Ok(s.approximate_num_entries()?.saturating_add(dirty_new)),
            Backing::Window(_) => Ok(dirty_new),
        }
    }
}

impl KeyValueStore for CachingKeyValueStore {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write(key, Some(value))
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.write(key, None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;
    use crate::memory::InMemoryKeyValueStore;
    use crate::store::{ChangelogRecord, StateStore};

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
}
