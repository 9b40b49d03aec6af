//! The write-back record cache (Kafka Streams' ThreadCache + caching stores).
//!
//! One [`RecordCache`] holds the entries of many stores, each in its own namespace, under one
//! byte bound. Writes land in the cache as dirty entries; repeated writes to a key merge into
//! one entry. A namespace is flushed when its store is flushed (on commit) or when the cache is
//! over its bound and the least-recently-used entry is dirty: a flush writes every dirty key of
//! that namespace exactly once to the store below (changelogging, then the backend) and then
//! hands `(key, new, old)` to the namespace's flush listener, which forwards it downstream.
//!
//! Invariants:
//! - a read never sees a stale value: the cache is consulted first and deletes are cached as
//!   tombstones until flushed;
//! - the cache owns the store below each namespace, so an eviction triggered by one store can
//!   write another store's entries;
//! - listeners run after the cache lock is released, so a listener may write to other cached
//!   stores (that is how a KTable feeds a downstream aggregation). A change is delivered when
//!   its listener is free; one that arrives while that same listener is running (a cycle) is
//!   queued and delivered after it returns.
//!
//! One cache serialises the stores that share it, and listeners run on the thread that caused
//! the flush, so give each stream thread its own cache (split the application's budget with
//! [`RecordCache::split`]), as Kafka Streams does.
//!
//! The parts, from the bottom up (each uses only the ones before it):
//! - `namespace`: one store's entries (hashed; their keys also kept in order once a range scan
//!   asks), its flush listener and the store below it;
//! - `flush`: writing a namespace's dirty entries below and delivering them to listeners;
//! - `record_cache`: the shared cache, its byte bound and LRU eviction;
//! - `caching_store`: a store's handle on its namespace and the `StateStore` lifecycle, the
//!   part both caching stores share;
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
pub(crate) use caching_window::CachingWindowStore;
pub use namespace::FlushListener;
pub use record_cache::{CacheStats, RecordCache};
