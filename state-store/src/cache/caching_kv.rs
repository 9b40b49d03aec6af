//! The key-value store behind the record cache (Kafka Streams' CachingKeyValueStore).
//!
//! Invariants: reads go to the cache first, so they see writes not yet flushed; a delete is a
//! cached tombstone until flushed; `approximate_num_entries` counts the store's entries plus the
//! dirty cached ones (an over-estimate when a dirty key is also stored, as the trait allows).

use std::ops::Bound;

use super::caching_store::{CachingStore, Flushed, Shape};
use super::merge_iter::CachedRange;
use super::namespace::Backing;
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
        flushed: Flushed,
    ) -> Self {
        let name = inner.name().to_owned();
        CachingStore::register(name, Backing::Kv(inner), cache, clock, flushed, KeyValues)
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

    use std::collections::BTreeMap;

    use super::*;
    use crate::cache::FlushListener;
    use crate::memory::InMemoryKeyValueStore;
    use crate::store::{ChangelogRecord, FlushedEntry, StateStore};

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
        let mut store = CachingKeyValueStore::new(
            inner,
            &cache,
            RecordClock::new(),
            Flushed::Listener(listener),
        );
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
    fn eviction_takes_only_from_the_store_in_use_and_bounds_bytes() {
        let cache = RecordCache::new(4 << 10);
        let (a_inner, a_writes) = counting("a");
        let (b_inner, b_writes) = counting("b");
        let mut a = CachingKeyValueStore::new(a_inner, &cache, RecordClock::new(), Flushed::Kept);
        let mut b = CachingKeyValueStore::new(b_inner, &cache, RecordClock::new(), Flushed::Kept);
        a.put(b"x", &[0; 100]).unwrap();
        for i in 0..200u32 {
            b.put(&i.to_be_bytes(), &[1; 100]).unwrap();
            assert!(cache.stats().bytes <= 4 << 10);
        }
        // As in Kafka Streams, `b`'s writes evicted `b`'s own entries only: `a`'s older entry
        // is still cached and dirty, and `a` has no change waiting.
        assert_eq!(a_writes.load(Ordering::Relaxed), 0);
        assert!(a.take_flushed().is_empty());
        assert!(b_writes.load(Ordering::Relaxed) > 0);
        assert_eq!(a.get(b"x").unwrap(), Some(vec![0; 100]));
        for i in 0..200u32 {
            assert_eq!(b.get(&i.to_be_bytes()).unwrap(), Some(vec![1; 100]));
        }
        assert!(cache.stats().evictions > 0);
        a.flush().unwrap();
        assert_eq!(a_writes.load(Ordering::Relaxed), 1);
    }

    /// What each write of `writes` leaves for `take_flushed`, taken right after it, together
    /// with what a final flush leaves.
    fn taken_after_each_write(
        store: &mut CachingKeyValueStore,
        clock: &RecordClock,
        writes: &[(u8, Option<u8>)],
    ) -> Vec<FlushedEntry> {
        let mut taken = Vec::new();
        for (i, (k, v)) in writes.iter().enumerate() {
            clock.set(i as i64);
            match v {
                Some(v) => store.put(&[*k], &[*v; 40]).unwrap(),
                None => store.delete(&[*k]).unwrap(),
            }
            taken.extend(store.take_flushed());
        }
        store.flush().unwrap();
        taken.extend(store.take_flushed());
        taken
    }

    #[test]
    fn evicted_and_flushed_changes_are_taken_once_in_order_and_chain() {
        // Room for about three entries: most writes evict, some of them dirty keys.
        let cache = RecordCache::new(3 * (2 + 40 + 64));
        let clock = RecordClock::new();
        let (inner, _) = counting("s");
        let mut store = CachingKeyValueStore::new(inner, &cache, clock.clone(), Flushed::Kept);
        let mut writes = Vec::new();
        let mut x = 7u32;
        for _ in 0..400 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let key = (x >> 16) as u8 % 8;
            let value = (!((x >> 8) as u8).is_multiple_of(5)).then_some((x >> 24) as u8);
            writes.push((key, value));
        }
        let taken = taken_after_each_write(&mut store, &clock, &writes);
        assert!(
            taken.len() > 8,
            "evictions handed out changes: {}",
            taken.len()
        );
        assert!(
            store.take_flushed().is_empty(),
            "each change is given out once"
        );
        // Per key, each change starts where the previous one ended (none lost, none twice), the
        // last ends at the key's final value, and each carries the time of its latest write.
        let mut last: BTreeMap<u8, Option<Vec<u8>>> = BTreeMap::new();
        let mut latest_write: BTreeMap<u8, i64> = BTreeMap::new();
        let mut final_value: BTreeMap<u8, Option<Vec<u8>>> = BTreeMap::new();
        for (i, (k, v)) in writes.iter().enumerate() {
            final_value.insert(*k, v.map(|v| vec![v; 40]));
            latest_write.insert(*k, i as i64);
        }
        for c in &taken {
            let k = c.key[0];
            let previous = last.get(&k).cloned().unwrap_or(None);
            assert_eq!(c.old, previous, "key {k}: old is the previous change's new");
            assert!(c.timestamp <= latest_write[&k]);
            last.insert(k, c.new.clone());
        }
        for (k, v) in &final_value {
            assert_eq!(last.get(k).cloned().unwrap_or(None), *v, "key {k}");
            assert_eq!(store.get(&[*k]).unwrap(), *v);
        }
    }

    #[test]
    fn a_read_that_evicts_keeps_the_changes_for_the_owner() {
        // Room for two entries.
        let cache = RecordCache::new(2 * (2 + 40 + 64));
        let (inner, _) = counting("s");
        let mut store = CachingKeyValueStore::new(inner, &cache, RecordClock::new(), Flushed::Kept);
        store.put(b"c", &[9; 40]).unwrap();
        store.put(b"a", &[1; 40]).unwrap();
        store.flush().unwrap();
        assert_eq!(store.take_flushed().len(), 2);
        // Evicts `c`, clean: nothing is written through.
        store.put(b"b", &[2; 40]).unwrap();
        assert!(store.take_flushed().is_empty());
        store.put(b"a", &[3; 40]).unwrap();
        // Reading `c` from below caches it, which evicts the least recently used entry, `b`,
        // dirty: the read writes both dirty entries through, and their changes wait for the
        // store's owner, in the order the keys became dirty.
        assert_eq!(store.get(b"c").unwrap(), Some(vec![9; 40]));
        let change = |k: &[u8], new: u8, old: Option<u8>| FlushedEntry {
            key: k.to_vec(),
            new: Some(vec![new; 40]),
            old: old.map(|o| vec![o; 40]),
            timestamp: 0,
        };
        assert_eq!(
            store.take_flushed(),
            vec![change(b"b", 2, None), change(b"a", 3, Some(1))]
        );
        assert!(store.take_flushed().is_empty());
    }

    #[test]
    fn a_store_that_does_not_keep_changes_has_none_to_take() {
        let cache = RecordCache::new(0);
        let (inner, writes) = counting("s");
        let mut store =
            CachingKeyValueStore::new(inner, &cache, RecordClock::new(), Flushed::Dropped);
        store.put(b"a", b"1").unwrap();
        store.flush().unwrap();
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        assert!(store.take_flushed().is_empty());
    }

    #[test]
    fn listener_may_write_to_another_cached_store() {
        let cache = RecordCache::new(1 << 20);
        let (down_inner, _) = counting("down");
        let down = Arc::new(Mutex::new(CachingKeyValueStore::new(
            down_inner,
            &cache,
            RecordClock::new(),
            Flushed::Dropped,
        )));
        let d = down.clone();
        let listener: FlushListener =
            Box::new(move |k: &[u8], new: Option<&[u8]>, _old: Option<&[u8]>| {
                if let Some(v) = new {
                    d.lock().put(k, v).unwrap();
                }
            });
        let (up_inner, _) = counting("up");
        let mut up = CachingKeyValueStore::new(
            up_inner,
            &cache,
            RecordClock::new(),
            Flushed::Listener(listener),
        );
        up.put(b"k", b"v").unwrap();
        up.flush().unwrap();
        assert_eq!(down.lock().get(b"k").unwrap(), Some(b"v".to_vec()));
    }
}
