//! The RocksDB key-value backend and the application-wide RocksDB memory bound.
//!
//! Invariants: every RocksDB instance opened by this crate shares the block cache and the write
//! buffer manager of one [`RocksDbMemory`], and the write buffer manager charges memtables to
//! that cache, so block cache + memtables of the whole application stay near one configured
//! number. The WAL is off (the changelog is the durability mechanism, as in Kafka Streams), so
//! `flush()` flushes memtables: after it returns, local data matches what the checkpoint claims.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DBCompressionType, Direction, IteratorMode,
    Options, ReadOptions, WriteBatch, WriteBufferManager, WriteOptions, DB,
};

use crate::error::StoreError;
use crate::store::{
    ChangelogRecord, KeyValueIter, KeyValueStore, ReadOnlyKeyValueStore, RocksDbStoreFigures,
    StateStore,
};

/// Default bound for block cache + memtables of the whole application: 64 MiB.
pub const DEFAULT_ROCKSDB_MEMORY_BYTES: usize = 64 << 20;
/// Default share of that bound that memtables may use: 16 MiB.
pub const DEFAULT_ROCKSDB_MEMTABLE_BYTES: usize = 16 << 20;

/// The RocksDB memory budget of one application: one LRU block cache and one write buffer
/// manager charged to it, handed to every RocksDB store the application opens.
///
/// Create it once per application (cloning is cheap and shares the budget). The bound covers
/// block cache, index and filter blocks and memtables; it does not cover RocksDB's per-instance
/// fixed overhead, iterators pinned by open scans, or the write-back [`RecordCache`](crate::RecordCache).
#[derive(Clone)]
pub struct RocksDbMemory {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    cache: Cache,
    write_buffers: WriteBufferManager,
    total_bytes: usize,
    memtable_bytes: usize,
}

impl fmt::Debug for RocksDbMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbMemory")
            .field("total_bytes", &self.inner.total_bytes)
            .field("memtable_bytes", &self.inner.memtable_bytes)
            .field("cache_usage", &self.inner.cache.get_usage())
            .finish()
    }
}

impl Default for RocksDbMemory {
    fn default() -> Self {
        RocksDbMemory::new(DEFAULT_ROCKSDB_MEMORY_BYTES, DEFAULT_ROCKSDB_MEMTABLE_BYTES)
    }
}

impl RocksDbMemory {
    /// A budget of `total_bytes` for block cache plus memtables, of which memtables may use up
    /// to `memtable_bytes` (clamped to `total_bytes`).
    pub fn new(total_bytes: usize, memtable_bytes: usize) -> Self {
        let memtable_bytes = memtable_bytes.min(total_bytes);
        let cache = Cache::new_lru_cache(total_bytes);
        // allow_stall = false: a stalled writer would block the stream thread; instead RocksDB
        // flushes early when the memtables pass their share.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            memtable_bytes,
            false,
            cache.clone(),
        );
        RocksDbMemory {
            inner: Arc::new(MemoryInner {
                cache,
                write_buffers,
                total_bytes,
                memtable_bytes,
            }),
        }
    }

    /// The configured bound in bytes.
    pub fn total_bytes(&self) -> usize {
        self.inner.total_bytes
    }

    /// Bytes currently charged to the shared cache (blocks and memtable reservations).
    pub fn usage_bytes(&self) -> usize {
        self.inner.cache.get_usage()
    }

    /// Bytes currently used by memtables of all stores.
    pub fn memtable_usage_bytes(&self) -> usize {
        self.inner.write_buffers.get_usage()
    }

    /// Options for one RocksDB instance, wired to the shared budget: what every store of the
    /// engine opens with. Public so that benchmark baselines and tools can open RocksDB exactly
    /// as the engine does.
    pub fn db_options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.inner.cache);
        // Index and filter blocks go through the cache too, or they would grow outside the bound.
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_bloom_filter(10.0, false);
        table.set_block_size(16 << 10);
        // Partitioned index and filters (Kafka Streams' bounded-memory recipe): a full filter
        // block of a large SST (1.2 MB per million keys) is bigger than one shard of the LRU
        // cache, so it was never kept and every `get` read and checksummed it from the file
        // again (seen in S7 of the throughput harness: >90% of the time). Partitions are small
        // blocks that cache normally; only the top-level index stays pinned.
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4 << 10);
        table.set_pin_top_level_index_and_filter(true);

        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_manager(&self.inner.write_buffers);
        // Small memtables per instance: there are many instances (stores × tasks × segments),
        // and the manager bounds their sum anyway.
        opts.set_write_buffer_size((self.inner.memtable_bytes / 4).clamp(256 << 10, 16 << 20));
        opts.set_max_write_buffer_number(2);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_max_background_jobs(2);
        opts
    }
}

/// Write options shared by all stores: no WAL, see the module docs. Public for the same reason
/// as [`RocksDbMemory::db_options`].
pub fn rocksdb_write_options() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.disable_wal(true);
    w
}

/// A key-value store in one RocksDB instance in its own directory.
pub(crate) struct RocksDbKeyValueStore {
    name: String,
    path: PathBuf,
    memory: RocksDbMemory,
    db: Option<DB>,
    write_opts: WriteOptions,
}

impl fmt::Debug for RocksDbKeyValueStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbKeyValueStore")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish()
    }
}

impl RocksDbKeyValueStore {
    /// Opens (creating if needed) the store in directory `path`.
    pub(crate) fn open(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        memory: &RocksDbMemory,
    ) -> Result<Self, StoreError> {
        let name = name.into();
        let path = path.into();
        let db = open_db(&name, &path, memory)?;
        Ok(RocksDbKeyValueStore {
            name,
            path,
            memory: memory.clone(),
            db: Some(db),
            write_opts: rocksdb_write_options(),
        })
    }

    fn db(&self) -> Result<&DB, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Closed {
            store: self.name.clone(),
        })
    }

    fn err(&self, e: rocksdb::Error) -> StoreError {
        StoreError::rocks(&self.name, &self.path, e)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.db()?
            .write_opt(batch, &self.write_opts)
            .map_err(|e| self.err(e))
    }

    /// Closes the instance and deletes its directory.
    pub(crate) fn destroy(mut self) -> Result<(), StoreError> {
        self.db = None;
        remove_dir(&self.name, &self.path)
    }
}

fn open_db(name: &str, path: &Path, memory: &RocksDbMemory) -> Result<DB, StoreError> {
    // A deletion cut short by a crash left its directory aside: finish it.
    remove_all(name, &aside(path))?;
    std::fs::create_dir_all(path).map_err(|e| StoreError::io(name, path, e))?;
    DB::open(&memory.db_options(), path).map_err(|e| StoreError::rocks(name, path, e))
}

/// Where a directory goes while it is being deleted.
fn aside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".deleting");
    path.with_file_name(name)
}

/// Deletes a store directory so that a crash part-way leaves all of it or none: RocksDB
/// cannot open a directory whose files were half deleted (CURRENT naming a MANIFEST that is
/// gone). The directory is renamed aside first (atomic), then removed.
pub(crate) fn remove_dir(name: &str, path: &Path) -> Result<(), StoreError> {
    let aside = aside(path);
    remove_all(name, &aside)?;
    match std::fs::rename(path, &aside) {
        Ok(()) => remove_all(name, &aside),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(name, path, e)),
    }
}

fn remove_all(name: &str, path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(name, path, e)),
    }
}

impl StateStore for RocksDbKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn rocksdb_figures(&self) -> Option<RocksDbStoreFigures> {
        let db = self.db.as_ref()?;
        // A property RocksDB cannot give reads as 0: these are figures, not facts to act on.
        let int = |name: &str| db.property_int_value(name).ok().flatten().unwrap_or(0);
        Some(RocksDbStoreFigures {
            pending_compaction_bytes: int("rocksdb.estimate-pending-compaction-bytes"),
            running_compactions: int("rocksdb.num-running-compactions"),
            write_stopped: int("rocksdb.is-write-stopped") != 0,
            delayed_write_rate: int("rocksdb.actual-delayed-write-rate"),
            live_sst_bytes: int("rocksdb.live-sst-files-size"),
            estimated_keys: int("rocksdb.estimate-num-keys"),
        })
    }

    fn persistent(&self) -> bool {
        true
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.db()?.flush().map_err(|e| self.err(e))
    }

    fn close(&mut self) -> Result<(), StoreError> {
        if self.db.is_some() {
            self.flush()?;
            self.db = None;
        }
        Ok(())
    }

    fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for r in batch {
            match &r.value {
                Some(v) => wb.put(&r.key, v),
                None => wb.delete(&r.key),
            }
        }
        self.write(wb)
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        self.db()?;
        self.db = None;
        remove_dir(&self.name, &self.path)?;
        self.db = Some(open_db(&self.name, &self.path, &self.memory)?);
        Ok(())
    }
}

impl ReadOnlyKeyValueStore for RocksDbKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db()?.get(key).map_err(|e| self.err(e))
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KeyValueIter<'_>, StoreError> {
        let db = self.db()?;
        if crate::store::empty_range(from, to) {
            return Ok(Box::new(std::iter::empty()));
        }
        let mut ro = ReadOptions::default();
        match to {
            // The smallest key above `k` is `k` followed by a zero byte.
            Bound::Included(k) => {
                let mut upper = k.to_vec();
                upper.push(0);
                ro.set_iterate_upper_bound(upper);
            }
            Bound::Excluded(k) => ro.set_iterate_upper_bound(k.to_vec()),
            Bound::Unbounded => {}
        }
        let (mode, skip) = match from {
            Bound::Included(k) => (IteratorMode::From(k, Direction::Forward), None),
            Bound::Excluded(k) => (IteratorMode::From(k, Direction::Forward), Some(k.to_vec())),
            Bound::Unbounded => (IteratorMode::Start, None),
        };
        let iter = db.iterator_opt(mode, ro);
        Ok(Box::new(
            iter.map(move |r| match r {
                Ok((k, v)) => Ok((k.into_vec(), v.into_vec())),
                Err(e) => Err(self.err(e)),
            })
            .filter(move |r| match (r, &skip) {
                (Ok((k, _)), Some(s)) => k != s,
                _ => true,
            }),
        ))
    }

    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        let db = self.db()?;
        Ok(db
            .property_int_value("rocksdb.estimate-num-keys")
            .map_err(|e| self.err(e))?
            .unwrap_or(0))
    }
}

impl KeyValueStore for RocksDbKeyValueStore {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db()?
            .put_opt(key, value, &self.write_opts)
            .map_err(|e| self.err(e))
    }

    fn put_all(&mut self, entries: &[(&[u8], Option<&[u8]>)]) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for (k, v) in entries {
            match v {
                Some(v) => wb.put(k, v),
                None => wb.delete(k),
            }
        }
        self.write(wb)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.db()?
            .delete_opt(key, &self.write_opts)
            .map_err(|e| self.err(e))
    }
}
