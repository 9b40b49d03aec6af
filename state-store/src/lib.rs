//! Byte-level state stores for the stream-processing engine.
//!
//! Three shapes of store — key-value, window, session — over two backends — RocksDB and
//! in-memory — with two optional layers on top: a write-back [`RecordCache`] that merges
//! repeated writes between commits, and changelogging that sends every change to a
//! [`ChangelogSink`]. A caching store keeps what its cache writes through (on a flush, or when
//! a use of that store evicts) as [`FlushedEntry`]s for the one that owns the store to take
//! ([`StateStore::take_flushed`]) and forward. [`StoreBuilder`] stacks them in the fixed order
//! cache → changelogging → backend. [`restore`] replays a changelog into a store and
//! [`Checkpoint`] records how far each store is restored.
//!
//! Semantics follow Kafka Streams: keys are ordered bytes; timestamps are i64 ms, encoded
//! big-endian with the sign bit flipped ([`encode_timestamp`]); window keys are
//! `[key][window_start]` (+ sequence number with duplicates) and session keys
//! `[key][end][start]`; windowed aggregates are stored as timestamped values
//! `[timestamp][value]` ([`encode_timestamped`]); window and session stores drop expired data a
//! time segment at a time; RocksDB runs without a WAL (the changelog is the durability
//! mechanism) within one application-wide memory budget ([`RocksDbMemory`]).
//!
//! This crate knows nothing of records, topics or the log: the runtime implements
//! [`ChangelogSink`] and feeds [`restore`] with [`ChangelogRecord`]s.

#![warn(missing_docs)]

mod builder;
mod cache;
mod changelog;
mod checkpoint;
mod error;
mod identity;
mod keys;
mod memory;
mod restore;
mod rocks;
mod segments;
mod session;
mod store;
mod timestamped;
mod window;

pub use builder::{KeyValueStoreBuilder, SessionStoreBuilder, StoreBuilder, WindowStoreBuilder};
pub use cache::{CacheStats, FlushListener, RecordCache};
pub use changelog::{changelog_topic, ChangelogSink, RecordClock};
pub use checkpoint::{store_dir, task_dir, ChangelogPartition, Checkpoint};
pub use error::{ErrorClass, Report, StoreError};
pub use identity::{
    destroy_store_dir, missing_local_data, new_store_id, read_store_id, StoreLayout, STORE_ID_FILE,
};
pub use keys::{decode_timestamp, encode_timestamp};
pub use restore::{restore, restore_start_offset, RestoreOptions, RestoreSummary};
pub use rocks::{
    rocksdb_write_options, RocksDbMemory, DEFAULT_ROCKSDB_MEMORY_BYTES,
    DEFAULT_ROCKSDB_MEMTABLE_BYTES,
};
pub use session::{ReadOnlySessionStore, SessionIter, SessionKey, SessionStore};
pub use store::{
    ChangelogRecord, FlushedEntry, KeyValueIter, KeyValueStore, ReadOnlyKeyValueStore,
    RocksDbStoreFigures, StateStore,
};
pub use timestamped::{
    decode_timestamped, encode_timestamped, push_timestamp_prefix, TIMESTAMP_PREFIX_LEN,
};
pub use window::{
    ReadOnlyWindowStore, WindowIter, WindowStore, WindowWrite, WindowedKey, WindowedKeyValueIter,
};
