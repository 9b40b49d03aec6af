//! The store traits: what every store layer (cache, changelogging, backend) implements.
//!
//! Reads and writes are separate traits, as in Kafka Streams: interactive queries get a
//! `ReadOnly*` view, processors get the full store. Keys and values are bytes; typed access is
//! the job of the layer above this crate. All stores are `Send`, and none is `Sync`: one thread
//! uses a store at a time. A task's stores are opened, used and closed on the thread that runs
//! the task (a task that moves is closed and its stores reopened on the new thread); `Send` is
//! what lets a global store, which every thread reads, sit behind a mutex.

use std::ops::Bound;

use crate::error::StoreError;

/// An iterator over `(key, value)` pairs in ascending key order.
pub type KeyValueIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a>;

/// One record of a changelog, as read back during restore. `value == None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// Offset of the record in its changelog partition.
    pub offset: u64,
    /// Raw store key (for window and session stores: the encoded window/session key).
    pub key: Vec<u8>,
    /// New value, or `None` for a deletion.
    pub value: Option<Vec<u8>>,
}

/// A change the record cache wrote through to the store below it, on a flush or an eviction:
/// the merged result of every write to one key since the key's previous flush.
///
/// A caching store built with `keep_flushed()` keeps these, oldest first, until its owner
/// takes them with [`StateStore::take_flushed`] and forwards them (Kafka Streams' flush
/// listener, whose `forward` this is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushedEntry {
    /// Raw store key (for window stores: `[key][window_start]`).
    pub key: Vec<u8>,
    /// The value written through; `None` for a deletion.
    pub new: Option<Vec<u8>>,
    /// What the store below held before the write; `None` if it held nothing.
    pub old: Option<Vec<u8>>,
    /// The record time of the key's latest write.
    pub timestamp: i64,
}

/// What every store (whatever its shape) offers to the runtime.
pub trait StateStore: Send {
    /// The store's name; the changelog topic and the directory derive from it.
    fn name(&self) -> &str;

    /// Whether the data survives a restart (RocksDB) or not (in-memory).
    fn persistent(&self) -> bool;

    /// Makes every write so far durable locally: flushes caches downstream and RocksDB memtables
    /// to disk (the WAL is off, so this is the only point where local data becomes durable).
    fn flush(&mut self) -> Result<(), StoreError>;

    /// Writes cached entries through to the layers below (their changelog records and flush
    /// listener calls happen now) without making the backend durable, which is what
    /// [`StateStore::flush`] adds. A commit needs this; a checkpoint needs `flush`.
    fn flush_cache(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The changes this store's cache wrote through since the last call, oldest first, each
    /// given out once. Only a caching store built with `keep_flushed()` has any: its cache
    /// writes a key through when the store is flushed, or when a read or write of this store
    /// evicts it (the cache evicts only from the store being used), so the one that uses
    /// the store finds the changes here right after the call that flushed them.
    fn take_flushed(&mut self) -> Vec<FlushedEntry> {
        Vec::new()
    }

    /// Flushes and releases resources. Further use returns [`StoreError::Closed`].
    fn close(&mut self) -> Result<(), StoreError>;

    /// Writes changelog records straight into the backend, bypassing cache and changelog.
    /// Used by [`restore`](crate::restore); the records' keys are raw store keys.
    fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError>;

    /// Deletes all local data (used when no valid checkpoint exists, before a full restore).
    fn wipe(&mut self) -> Result<(), StoreError>;

    /// RocksDB's own figures for this store, summed over its RocksDB instances (a window or
    /// session store has one per segment); `None` for a store that keeps no RocksDB.
    fn rocksdb_figures(&self) -> Option<RocksDbStoreFigures> {
        None
    }
}

/// What RocksDB reports about one store (its `rocksdb.*` properties).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RocksDbStoreFigures {
    /// Bytes compaction would have to rewrite to bring every level within its target
    /// (`rocksdb.estimate-pending-compaction-bytes`).
    pub pending_compaction_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
    /// Whether RocksDB stopped writes (too many memtables or level-0 files, too much pending
    /// compaction) in any of the store's instances.
    pub write_stopped: bool,
    /// The rate RocksDB slows writes to, bytes per second (0: not slowed), the lowest over the
    /// store's instances that slow them.
    pub delayed_write_rate: u64,
    /// Bytes of the SST files the store's current versions use.
    pub live_sst_bytes: u64,
    /// RocksDB's estimate of the keys the store holds.
    pub estimated_keys: u64,
}

impl RocksDbStoreFigures {
    /// The figures of two instances of one store, together.
    pub fn combine(self, other: RocksDbStoreFigures) -> RocksDbStoreFigures {
        let delayed = match (self.delayed_write_rate, other.delayed_write_rate) {
            (0, r) | (r, 0) => r,
            (a, b) => a.min(b),
        };
        RocksDbStoreFigures {
            pending_compaction_bytes: self
                .pending_compaction_bytes
                .saturating_add(other.pending_compaction_bytes),
            running_compactions: self
                .running_compactions
                .saturating_add(other.running_compactions),
            write_stopped: self.write_stopped || other.write_stopped,
            delayed_write_rate: delayed,
            live_sst_bytes: self.live_sst_bytes.saturating_add(other.live_sst_bytes),
            estimated_keys: self.estimated_keys.saturating_add(other.estimated_keys),
        }
    }
}

/// Read access to a key-value store.
pub trait ReadOnlyKeyValueStore {
    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Entries with keys between `from` and `to`, ascending. The iterator borrows only the
    /// store, not the bounds.
    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KeyValueIter<'_>, StoreError>;

    /// Entries whose key starts with `prefix`, ascending.
    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIter<'_>, StoreError> {
        match crate::keys::prefix_successor(prefix) {
            // `range` iterators borrow only `self`, never the bounds.
            Some(end) => self.range(Bound::Included(prefix), Bound::Excluded(&end)),
            None => self.range(Bound::Included(prefix), Bound::Unbounded),
        }
    }

    /// Every entry, ascending.
    fn all(&self) -> Result<KeyValueIter<'_>, StoreError> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// An estimate of the number of entries (exact for in-memory stores; RocksDB's estimate
    /// counts overwritten and deleted keys until compaction).
    fn approximate_num_entries(&self) -> Result<u64, StoreError>;
}

/// A key-value store: ordered byte keys to byte values.
pub trait KeyValueStore: ReadOnlyKeyValueStore + StateStore {
    /// Stores `value` under `key`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Stores or deletes (`None`) several entries; backends apply them as one batch.
    fn put_all(&mut self, entries: &[(&[u8], Option<&[u8]>)]) -> Result<(), StoreError> {
        for (k, v) in entries {
            match v {
                Some(v) => self.put(k, v)?,
                None => self.delete(k)?,
            }
        }
        Ok(())
    }

    /// Removes `key` (a no-op when absent).
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError>;
}

/// Collects a [`Bound`] over borrowed keys into one over owned keys.
pub(crate) fn owned_bound(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether `(from, to)` selects nothing. `BTreeMap::range` panics on such bounds, and a scan
/// with `from > to` is a caller's empty query, not a bug.
pub(crate) fn empty_range(from: Bound<&[u8]>, to: Bound<&[u8]>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}
