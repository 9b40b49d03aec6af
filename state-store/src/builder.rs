//! Store assembly: the one place where layers are stacked, always in the same order:
//!
//! ```text
//! caching (optional) → changelogging (optional) → backend (RocksDB or in-memory)
//! ```
//!
//! Builders are consumed by `build()`. Restore and wipe go through the stack to the backend
//! without touching the changelog.

use std::path::PathBuf;

use crate::cache::{CachingKeyValueStore, CachingWindowStore, Flushed, RecordCache};
use crate::changelog::{
    ChangelogSink, LoggedKeyValueStore, LoggedSessionStore, LoggedWindowStore, RecordClock,
};
use crate::error::StoreError;
use crate::memory::InMemoryKeyValueStore;
use crate::rocks::{RocksDbKeyValueStore, RocksDbMemory};
use crate::segments::{default_segment_interval, SegmentBackend};
use crate::session::{SegmentedSessionStore, SessionStore};
use crate::store::KeyValueStore;
use crate::window::{SegmentedWindowStore, WindowStore};

/// Entry point for building stores.
///
/// ```
/// use state_store::{KeyValueStore, ReadOnlyKeyValueStore, RecordCache, StoreBuilder};
///
/// let cache = RecordCache::new(1 << 20);
/// let mut changelog = Vec::new();
/// let mut store = StoreBuilder::key_value("counts")
///     .in_memory()
///     .with_logging(move |k: &[u8], v: Option<&[u8]>, _ts: i64| {
///         changelog.push((k.to_vec(), v.map(<[u8]>::to_vec)));
///         Ok(())
///     })
///     .with_caching(&cache)
///     .build()?;
/// store.put(b"a", b"1")?;
/// assert_eq!(store.get(b"a")?, Some(b"1".to_vec()));
/// store.flush()?;
/// # Ok::<(), state_store::StoreError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StoreBuilder;

impl StoreBuilder {
    /// A key-value store named `name` (in memory unless [`KeyValueStoreBuilder::persistent`]).
    pub fn key_value(name: impl Into<String>) -> KeyValueStoreBuilder {
        KeyValueStoreBuilder {
            layers: Layers::new(name.into()),
        }
    }

    /// A window store keeping windows for `retention_ms` of stream time.
    pub fn window(name: impl Into<String>, retention_ms: i64) -> WindowStoreBuilder {
        WindowStoreBuilder {
            layers: Layers::new(name.into()),
            retention_ms,
            segment_interval_ms: None,
            retain_duplicates: false,
        }
    }

    /// A session store keeping sessions for `retention_ms` of stream time after they end.
    pub fn session(name: impl Into<String>, retention_ms: i64) -> SessionStoreBuilder {
        SessionStoreBuilder {
            layers: Layers::new(name.into()),
            retention_ms,
            segment_interval_ms: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Backend {
    InMemory,
    Persistent { dir: PathBuf, memory: RocksDbMemory },
}

/// Options shared by every kind of store.
struct Layers {
    name: String,
    backend: Backend,
    cache: Option<RecordCache>,
    flushed: Flushed,
    sink: Option<Box<dyn ChangelogSink>>,
    clock: RecordClock,
}

impl Layers {
    fn new(name: String) -> Self {
        Layers {
            name,
            backend: Backend::InMemory,
            cache: None,
            flushed: Flushed::Dropped,
            sink: None,
            clock: RecordClock::new(),
        }
    }

    /// Store names become directory and topic names: keep to Kafka's topic characters.
    fn validate(&self) -> Result<(), StoreError> {
        let ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && self.name != "."
            && self.name != "..";
        if !ok {
            return Err(StoreError::invalid(
                &self.name,
                "store names may use only [A-Za-z0-9._-]",
            ));
        }
        if self.cache.is_none() {
            let wanted = match self.flushed {
                Flushed::Dropped => None,
                Flushed::Kept => Some("keep_flushed()"),
                Flushed::Listener(_) => Some("a flush listener"),
            };
            if let Some(what) = wanted {
                return Err(StoreError::invalid(
                    &self.name,
                    format!("{what} needs with_caching()"),
                ));
            }
        }
        Ok(())
    }

    fn segment_backend(&self) -> SegmentBackend {
        match &self.backend {
            Backend::InMemory => SegmentBackend::Memory,
            Backend::Persistent { dir, memory } => SegmentBackend::RocksDb {
                dir: dir.clone(),
                memory: memory.clone(),
            },
        }
    }
}

/// Builder methods common to all store builders.
macro_rules! layer_methods {
    () => {
        /// Keep the data in memory (lost on restart, rebuilt from the changelog).
        pub fn in_memory(mut self) -> Self {
            self.layers.backend = Backend::InMemory;
            self
        }

        /// Keep the data in RocksDB under `dir` (the store's own directory, see
        /// [`store_dir`](crate::store_dir)), within the application's `memory` budget.
        pub fn persistent(mut self, dir: impl Into<PathBuf>, memory: &RocksDbMemory) -> Self {
            self.layers.backend = Backend::Persistent {
                dir: dir.into(),
                memory: memory.clone(),
            };
            self
        }

        /// Send every change that reaches the store to `sink` (the store's changelog).
        pub fn with_logging(mut self, sink: impl ChangelogSink + 'static) -> Self {
            self.layers.sink = Some(Box::new(sink));
            self
        }

        /// The clock the runtime sets to each record's timestamp; changelog records carry it.
        /// Defaults to a private clock reading 0.
        pub fn with_record_clock(mut self, clock: RecordClock) -> Self {
            self.layers.clock = clock;
            self
        }
    };
}

/// Builds a [`KeyValueStore`].
pub struct KeyValueStoreBuilder {
    layers: Layers,
}

impl KeyValueStoreBuilder {
    layer_methods!();

    /// Put the write-back `cache` in front of the store.
    pub fn with_caching(mut self, cache: &RecordCache) -> Self {
        self.layers.cache = Some(cache.clone());
        self
    }

    /// Keep every change the cache writes through (on a flush, or an eviction caused by a
    /// read or write of this store) until
    /// [`StateStore::take_flushed`](crate::StateStore::take_flushed) takes it: how the
    /// operator that owns the store forwards its changes (needs caching).
    pub fn keep_flushed(mut self) -> Self {
        self.layers.flushed = Flushed::Kept;
        self
    }

    /// Call `listener(key, new, old)` for every change the cache writes through, right after
    /// the store call that wrote it (instead of keeping it; needs caching).
    pub fn with_flush_listener(
        mut self,
        listener: impl FnMut(&[u8], Option<&[u8]>, Option<&[u8]>) + Send + 'static,
    ) -> Self {
        self.layers.flushed = Flushed::Listener(Box::new(listener));
        self
    }

    /// Opens the backend and stacks the layers.
    pub fn build(self) -> Result<Box<dyn KeyValueStore>, StoreError> {
        let l = self.layers;
        l.validate()?;
        let mut store: Box<dyn KeyValueStore> = match &l.backend {
            Backend::InMemory => Box::new(InMemoryKeyValueStore::new(l.name.clone())),
            Backend::Persistent { dir, memory } => {
                Box::new(RocksDbKeyValueStore::open(l.name.clone(), dir, memory)?)
            }
        };
        if let Some(sink) = l.sink {
            store = Box::new(LoggedKeyValueStore::new(store, sink, l.clock.clone()));
        }
        if let Some(cache) = &l.cache {
            store = Box::new(CachingKeyValueStore::new(store, cache, l.clock, l.flushed));
        }
        Ok(store)
    }
}

/// Builds a [`WindowStore`].
pub struct WindowStoreBuilder {
    layers: Layers,
    retention_ms: i64,
    segment_interval_ms: Option<i64>,
    retain_duplicates: bool,
}

impl WindowStoreBuilder {
    layer_methods!();

    /// Put the write-back `cache` in front of the store (not with duplicates).
    pub fn with_caching(mut self, cache: &RecordCache) -> Self {
        self.layers.cache = Some(cache.clone());
        self
    }

    /// Keep every change the cache writes through until
    /// [`StateStore::take_flushed`](crate::StateStore::take_flushed) takes it; keys are
    /// `[key][window_start]` as encoded by this crate (needs caching).
    pub fn keep_flushed(mut self) -> Self {
        self.layers.flushed = Flushed::Kept;
        self
    }

    /// Call `listener(window_key, new, old)` for every change the cache writes through, right
    /// after the store call that wrote it; the key is `[key][window_start]` as encoded by this
    /// crate (instead of keeping it; needs caching).
    pub fn with_flush_listener(
        mut self,
        listener: impl FnMut(&[u8], Option<&[u8]>, Option<&[u8]>) + Send + 'static,
    ) -> Self {
        self.layers.flushed = Flushed::Listener(Box::new(listener));
        self
    }

    /// Length of a time segment, ms. Default: `max(retention / 2, 60_000)`. Changing it for an
    /// existing persistent store requires wiping the store.
    pub fn segment_interval_ms(mut self, interval: i64) -> Self {
        self.segment_interval_ms = Some(interval);
        self
    }

    /// Keep every put as its own entry (stream-stream join buffers).
    pub fn retain_duplicates(mut self, retain: bool) -> Self {
        self.retain_duplicates = retain;
        self
    }

    /// Opens the backend and stacks the layers.
    pub fn build(self) -> Result<Box<dyn WindowStore>, StoreError> {
        let l = self.layers;
        l.validate()?;
        if self.retain_duplicates && l.cache.is_some() {
            return Err(StoreError::invalid(
                &l.name,
                "caching cannot be combined with retain_duplicates",
            ));
        }
        let interval = self
            .segment_interval_ms
            .unwrap_or_else(|| default_segment_interval(self.retention_ms));
        let mut store: Box<dyn WindowStore> = Box::new(SegmentedWindowStore::open(
            &l.name,
            l.segment_backend(),
            self.retention_ms,
            interval,
            self.retain_duplicates,
        )?);
        if let Some(sink) = l.sink {
            store = Box::new(LoggedWindowStore::new(
                store,
                sink,
                l.clock.clone(),
                self.retain_duplicates,
            ));
        }
        if let Some(cache) = &l.cache {
            store = Box::new(CachingWindowStore::new(store, cache, l.clock, l.flushed));
        }
        Ok(store)
    }
}

/// Builds a [`SessionStore`]. Session stores have no caching layer yet.
pub struct SessionStoreBuilder {
    layers: Layers,
    retention_ms: i64,
    segment_interval_ms: Option<i64>,
}

impl SessionStoreBuilder {
    layer_methods!();

    /// Length of a time segment, ms. Default: `max(retention / 2, 60_000)`.
    pub fn segment_interval_ms(mut self, interval: i64) -> Self {
        self.segment_interval_ms = Some(interval);
        self
    }

    /// Opens the backend and stacks the layers.
    pub fn build(self) -> Result<Box<dyn SessionStore>, StoreError> {
        let l = self.layers;
        l.validate()?;
        let interval = self
            .segment_interval_ms
            .unwrap_or_else(|| default_segment_interval(self.retention_ms));
        let mut store: Box<dyn SessionStore> = Box::new(SegmentedSessionStore::open(
            &l.name,
            l.segment_backend(),
            self.retention_ms,
            interval,
        )?);
        if let Some(sink) = l.sink {
            store = Box::new(LoggedSessionStore::new(store, sink, l.clock));
        }
        Ok(store)
    }
}
