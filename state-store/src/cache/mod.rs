//! The write-back record cache (Kafka Streams' ThreadCache + caching stores).
//!
//! One [`RecordCache`] holds the entries of many stores, each in its own namespace, under one
//! byte bound. Writes land in the cache as dirty entries; repeated writes to a key merge into
//! one entry. A namespace is flushed when its store is flushed (on commit) or when a read or
//! write of that store puts the cache over its bound and the store's least-recently-used entry
//! is dirty (as in Kafka Streams, eviction takes only from the store in use): a flush writes
//! every dirty key of that namespace exactly once to the store below (changelogging, then the
//! backend). A store built with `keep_flushed()` then keeps each change `(key, new, old,
//! timestamp)` for its owner to take ([`StateStore::take_flushed`](crate::StateStore::take_flushed)) and
//! forward downstream, right after the put or flush that wrote it through: the one hop of
//! Kafka Streams' flush listener, with no queue between the cache and the operator.
//!
//! Invariants:
//! - a read never sees a stale value: the cache is consulted first and deletes are cached as
//!   tombstones until flushed;
//! - the cache owns the store below each namespace, and writes a namespace through only during
//!   a call on that namespace's own store, so one store's eviction never writes another's;
//! - a flushed change is given out once, in flush order; a listener (`with_flush_listener`),
//!   instead of the buffer, gets it after the cache lock is released, so it may write to other
//!   cached stores.
//!
//! One cache serialises the stores that share it, so give each stream thread its own cache
//! (split the application's budget with [`RecordCache::split`]), as Kafka Streams does.
//!
//! The parts, from the bottom up (each uses only the ones before it):
//! - `namespace`: one store's entries (hashed; their keys also kept in order once a range scan
//!   asks), their LRU order and the store below it;
//! - `flush`: writing a namespace's dirty entries below and handing out their changes;
//! - `record_cache`: the shared cache, its byte bound and per-namespace LRU eviction;
//! - `caching_store`: a store's handle on its namespace, its flushed changes and the
//!   `StateStore` lifecycle, the part both caching stores share;
//! - `merge_iter`: a range scan merging cached entries over the store's;
//! - `caching_kv`, `caching_window`: the caching key-value and window stores.

mod caching_kv;
mod caching_store;
mod caching_window;
mod flush;
mod merge_iter;
mod namespace;
mod record_cache;

pub(crate) use caching_kv::CachingKeyValueStore;
pub use caching_store::FlushListener;
pub(crate) use caching_store::Flushed;
pub(crate) use caching_window::CachingWindowStore;
pub use record_cache::{CacheStats, RecordCache};
