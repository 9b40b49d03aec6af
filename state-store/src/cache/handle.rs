//! A caching store's handle on its namespace: the part the key-value and window caching
//! stores share (reads, writes, and the [`StateStore`] lifecycle passed to the store below).
//!
//! Invariants: after `close` (or a drop) the namespace and its entries are gone from the cache,
//! so the bound no longer counts them; dropping without `close` loses unflushed writes, as a
//! crash would; a restore drops cached entries of the keys it writes, so none shadows them.

use super::namespace::entry_size;
use super::record_cache::RecordCache;
use crate::changelog::RecordClock;
use crate::store::ChangelogRecord;
use crate::StoreError;

/// A handle on one namespace; shared code of the caching key-value and window stores.
pub(super) struct Handle {
    pub(super) name: String,
    pub(super) ns: u64,
    pub(super) cache: RecordCache,
    pub(super) clock: RecordClock,
    pub(super) open: bool,
}

impl Handle {
    pub(super) fn check_open(&self) -> Result<(), StoreError> {
        if self.open {
            Ok(())
        } else {
            Err(StoreError::Closed {
                store: self.name.clone(),
            })
        }
    }

    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_open()?;
        self.cache.with(|c| c.get(self.ns, key))
    }

    pub(super) fn put(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.check_open()?;
        let ts = self.clock.get();
        self.cache.with(|c| c.put(self.ns, key, value, ts))
    }

    pub(super) fn flush(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.cache.with(|c| {
            c.flush_ns(self.ns)?;
            c.ns(self.ns)?.backing.state().flush()
        })
    }

    pub(super) fn flush_cache(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.cache.with(|c| {
            c.flush_ns(self.ns)?;
            c.ns(self.ns)?.backing.state().flush_cache()
        })
    }

    pub(super) fn close(&mut self) -> Result<(), StoreError> {
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

    pub(super) fn restore_batch(&self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
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

    pub(super) fn wipe(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.cache.with(|c| {
            c.drop_namespace_entries(self.ns);
            c.ns(self.ns)?.backing.state().wipe()
        })
    }

    pub(super) fn persistent(&self) -> bool {
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
