//! The window store behind the record cache (Kafka Streams' CachingWindowStore), keyed in the
//! cache by `[key][window_start]`.
//!
//! Invariants: stream time counts writes still only in the cache, so a window older than the
//! retention period is neither returned nor accepted even before the store below has seen the
//! write that made it expire; a fetch merges cached windows (and tombstones) over the store's.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::caching_store::{CachingStore, Flushed, Shape};
use super::namespace::Backing;
use super::record_cache::RecordCache;
use crate::changelog::RecordClock;
use crate::error::StoreError;
use crate::keys::{split_window_key, window_key};
use crate::window::{
    ReadOnlyWindowStore, WindowIter, WindowStore, WindowedKey, WindowedKeyValueIter,
};

/// A window store behind the record cache, keyed by `[key][window_start]`.
pub(crate) type CachingWindowStore = CachingStore<Windows>;

/// The window shape keeps the retention period and the stream time.
pub(crate) struct Windows {
    retention: i64,
    /// Largest window start seen, including writes still only in the cache.
    stream_time: i64,
}

impl Shape for Windows {
    fn wipe(&mut self) {
        self.stream_time = i64::MIN;
    }
}

impl CachingWindowStore {
    pub(crate) fn new(
        inner: Box<dyn WindowStore>,
        cache: &RecordCache,
        clock: RecordClock,
        flushed: Flushed,
    ) -> Self {
        let name = inner.name().to_owned();
        let shape = Windows {
            retention: inner.retention_ms(),
            stream_time: i64::MIN,
        };
        CachingStore::register(name, Backing::Window(inner), cache, clock, flushed, shape)
    }

    fn min_live_time(&self) -> i64 {
        self.shape
            .stream_time
            .saturating_sub(self.shape.retention)
            .saturating_add(1)
    }

    /// Cached entries (values and tombstones) in the raw key range, and the store's windows.
    fn merged(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        keep: impl Fn(&[u8], i64) -> bool,
        from_store: impl FnOnce(&dyn WindowStore) -> Result<Vec<(WindowedKey, Vec<u8>)>, StoreError>,
    ) -> Result<Vec<(WindowedKey, Vec<u8>)>, StoreError> {
        self.check_open()?;
        let mut g = self.cache.inner.lock();
        let n = g.ns(self.ns)?;
        let Backing::Window(store) = &n.backing else {
            return Err(StoreError::corrupt(
                &n.name,
                "window fetch on a key-value namespace",
            ));
        };
        let mut merged: BTreeMap<WindowedKey, Option<Vec<u8>>> = from_store(store.as_ref())?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        for (raw, e) in n.entries.range((lo, hi)) {
            if let Some((k, start)) = split_window_key(raw, false) {
                if keep(k, start) {
                    merged.insert(
                        WindowedKey {
                            key: k.to_vec(),
                            start,
                        },
                        e.value.clone(),
                    );
                }
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }
}

impl ReadOnlyWindowStore for CachingWindowStore {
    fn fetch_one(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>, StoreError> {
        if window_start < self.min_live_time() {
            return Ok(None);
        }
        self.read(&window_key(key, window_start, None))
    }

    fn fetch(
        &self,
        key: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<WindowIter<'_>, StoreError> {
        let from = time_from.max(self.min_live_time());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        let lo = window_key(key, from, None);
        let hi = window_key(key, time_to, None);
        let items = self.merged(
            Bound::Included(&lo),
            Bound::Included(&hi),
            |k, _| k == key,
            |s| {
                s.fetch(key, from, time_to)?
                    .map(|r| {
                        r.map(|(start, v)| {
                            (
                                WindowedKey {
                                    key: key.to_vec(),
                                    start,
                                },
                                v,
                            )
                        })
                    })
                    .collect()
            },
        )?;
        Ok(Box::new(items.into_iter().map(|(k, v)| Ok((k.start, v)))))
    }

    fn fetch_all(
        &self,
        time_from: i64,
        time_to: i64,
    ) -> Result<WindowedKeyValueIter<'_>, StoreError> {
        let from = time_from.max(self.min_live_time());
        if from > time_to {
            return Ok(Box::new(std::iter::empty()));
        }
        let items = self.merged(
            Bound::Unbounded,
            Bound::Unbounded,
            |_, start| start >= from && start <= time_to,
            |s| s.fetch_all(from, time_to)?.collect(),
        )?;
        Ok(Box::new(items.into_iter().map(Ok)))
    }
}

impl WindowStore for CachingWindowStore {
    fn put(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        window_start: i64,
    ) -> Result<(), StoreError> {
        self.shape.stream_time = self.shape.stream_time.max(window_start);
        if window_start < self.min_live_time() {
            return Ok(());
        }
        self.write(&window_key(key, window_start, None), value)
    }

    fn retention_ms(&self) -> i64 {
        self.shape.retention
    }
}
