//! A store behind the record cache: its handle on its namespace, and the [`StateStore`]
//! lifecycle that both caching stores (key-value and window) share.
//!
//! Invariants: after `close` (or a drop) the namespace and its entries are gone from the cache,
//! so the bound no longer counts them; dropping without `close` loses unflushed writes, as a
//! crash would; a restore drops cached entries of the keys it writes, so none shadows them.

use super::namespace::{entry_size, Backing, FlushListener};
use super::record_cache::RecordCache;
use crate::changelog::RecordClock;
use crate::error::StoreError;
use crate::store::{ChangelogRecord, StateStore};

/// What a store shape keeps beside its namespace, and forgets when the store is wiped.
pub(crate) trait Shape: Send {
    /// Forgets what was derived from the data (the store is wiped before a full restore).
    fn wipe(&mut self) {}
}

/// A store of shape `S` behind the record cache: a handle on its namespace, which owns the
/// store below, plus what the shape keeps.
pub(crate) struct CachingStore<S> {
    pub(super) name: String,
    pub(super) ns: u64,
    pub(super) cache: RecordCache,
    clock: RecordClock,
    open: bool,
    pub(super) shape: S,
}

impl<S> CachingStore<S> {
    /// Registers `below` (named `name`) as a new namespace of `cache`.
    pub(super) fn register(
        name: String,
        below: Backing,
        cache: &RecordCache,
        clock: RecordClock,
        listener: Option<FlushListener>,
        shape: S,
    ) -> Self {
        let ns = cache.register(&name, below, clock.clone(), listener);
        CachingStore {
            name,
            ns,
            cache: cache.clone(),
            clock,
            open: true,
            shape,
        }
    }

    pub(super) fn check_open(&self) -> Result<(), StoreError> {
        StoreError::check_open(&self.name, self.open)
    }

    /// The value of raw key `key`, from the cache or else the store below.
    pub(super) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_open()?;
        self.cache.with(|c| c.get(self.ns, key))
    }

    /// Caches a write of raw key `key` (`None` deletes) at the clock's record time.
    pub(super) fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.check_open()?;
        let ts = self.clock.get();
        self.cache.with(|c| c.put(self.ns, key, value, ts))
    }
}

impl<S: Shape> StateStore for CachingStore<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn persistent(&self) -> bool {
        let mut g = self.cache.inner.lock();
        g.ns(self.ns)
            .map(|n| n.backing.state().persistent())
            .unwrap_or(false)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.check_open()?;
        self.cache.with(|c| {
            c.flush_ns(self.ns)?;
            c.ns(self.ns)?.backing.state().flush()
        })
    }

    fn flush_cache(&mut self) -> Result<(), StoreError> {
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

    fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
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

    fn wipe(&mut self) -> Result<(), StoreError> {
        self.shape.wipe();
        self.check_open()?;
        self.cache.with(|c| {
            c.drop_namespace_entries(self.ns);
            c.ns(self.ns)?.backing.state().wipe()
        })
    }
}

impl<S> Drop for CachingStore<S> {
    fn drop(&mut self) {
        // Dropped without close(): unflushed writes are lost, as in a crash; free the space.
        let mut g = self.cache.inner.lock();
        g.drop_namespace_entries(self.ns);
        g.namespaces.remove(&self.ns);
    }
}
