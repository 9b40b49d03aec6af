//! A store behind the record cache: its handle on its namespace, the changes its cache wrote
//! through, and the [`StateStore`] lifecycle that both caching stores (key-value and window)
//! share.
//!
//! Invariants: the cache writes a namespace's entries through only during a call on its own
//! store (eviction takes only from the namespace in use), and every change such a call flushes
//! is appended to the store's own `flushed` buffer before the call returns, oldest first;
//! [`StateStore::take_flushed`] moves them out, so each is given out once and a key's changes
//! in the order they were flushed. A listener, when there is one, gets them instead, right
//! after the call, outside the cache lock (so it may write to other cached stores). After
//! `close` (or a drop) the namespace and its entries are gone from the cache, so the bound no
//! longer counts them; dropping without `close` loses unflushed writes, as a crash would; a
//! restore drops cached entries of the keys it writes, so none shadows them.

use std::cell::RefCell;

use super::namespace::Backing;
use super::record_cache::{CacheInner, RecordCache};
use crate::changelog::RecordClock;
use crate::error::StoreError;
use crate::store::{ChangelogRecord, FlushedEntry, StateStore};

/// Receives each flushed change: `(key, new value, old value)`; `None` means absent/deleted.
/// The store's record clock reads the change's own record time while it runs.
pub type FlushListener = Box<dyn FnMut(&[u8], Option<&[u8]>, Option<&[u8]>) + Send>;

/// What a caching store does with the changes its cache writes through.
pub(crate) enum Flushed {
    /// Nothing: no one wants them, so no old values are read for them.
    Dropped,
    /// Kept until [`StateStore::take_flushed`] takes them.
    Kept,
    /// Handed to a listener right after the call that flushed them.
    Listener(FlushListener),
}

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
    /// Changes the cache wrote through and no one took yet, oldest first.
    flushed: RefCell<Vec<FlushedEntry>>,
    listener: Option<RefCell<FlushListener>>,
}

impl<S> CachingStore<S> {
    /// Registers `below` (named `name`) as a new namespace of `cache`.
    pub(super) fn register(
        name: String,
        below: Backing,
        cache: &RecordCache,
        clock: RecordClock,
        flushed: Flushed,
        shape: S,
    ) -> Self {
        let keep = !matches!(flushed, Flushed::Dropped);
        let ns = cache.register(&name, below, clock.clone(), keep);
        CachingStore {
            name,
            ns,
            cache: cache.clone(),
            clock,
            open: true,
            shape,
            flushed: RefCell::new(Vec::new()),
            listener: match flushed {
                Flushed::Listener(l) => Some(RefCell::new(l)),
                Flushed::Dropped | Flushed::Kept => None,
            },
        }
    }

    /// Runs `f` on the cache, under its lock, with this store's buffer of flushed changes to
    /// append to; then hands what was flushed to the listener, if there is one.
    fn cached<T>(
        &self,
        f: impl FnOnce(&mut CacheInner, &mut Vec<FlushedEntry>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = f(&mut self.cache.inner.lock(), &mut self.flushed.borrow_mut());
        if let Some(listener) = &self.listener {
            let changes = std::mem::take(&mut *self.flushed.borrow_mut());
            if !changes.is_empty() {
                let mut listener = listener.borrow_mut();
                let saved = self.clock.get();
                for c in changes {
                    self.clock.set(c.timestamp);
                    (*listener)(&c.key, c.new.as_deref(), c.old.as_deref());
                }
                self.clock.set(saved);
            }
        }
        out
    }

    pub(super) fn check_open(&self) -> Result<(), StoreError> {
        StoreError::check_open(&self.name, self.open)
    }

    /// The value of raw key `key`, from the cache or else the store below.
    pub(super) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_open()?;
        self.cached(|c, out| c.get(self.ns, key, out))
    }

    /// Caches a write of raw key `key` (`None` deletes) at the clock's record time.
    pub(super) fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        self.check_open()?;
        let ts = self.clock.get();
        self.cached(|c, out| c.put(self.ns, key, value, ts, out))
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

    fn rocksdb_figures(&self) -> Option<crate::store::RocksDbStoreFigures> {
        let mut g = self.cache.inner.lock();
        g.ns(self.ns).ok()?.backing.state().rocksdb_figures()
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.check_open()?;
        self.cached(|c, out| {
            c.flush_ns(self.ns, out)?;
            c.ns(self.ns)?.backing.state().flush()
        })
    }

    fn flush_cache(&mut self) -> Result<(), StoreError> {
        self.check_open()?;
        self.cached(|c, out| {
            c.flush_ns(self.ns, out)?;
            c.ns(self.ns)?.backing.state().flush_cache()
        })
    }

    fn take_flushed(&mut self) -> Vec<FlushedEntry> {
        std::mem::take(self.flushed.get_mut())
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
                c.remove_entry(self.ns, &r.key)?;
            }
            c.ns(self.ns)?.backing.state().restore_batch(batch)
        })
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        self.shape.wipe();
        // Changes of data that is being deleted are no longer anyone's to forward.
        self.flushed.get_mut().clear();
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
