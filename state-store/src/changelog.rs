//! Changelogging: the layer that sends every change reaching a store to its changelog.
//!
//! The changelog is a compacted topic `<app-id>-<store>-changelog` whose partition equals the
//! task's partition; this crate does not know the log, it writes through [`ChangelogSink`],
//! which the runtime implements. Invariant: a change is sent after the inner store accepted it,
//! so a failed write is never logged; keys are raw store keys (window and session stores log
//! their encoded window/session keys), so restore writes them back byte for byte.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::error::StoreError;
use crate::keys::{session_key, window_key};
use crate::session::{ReadOnlySessionStore, SessionIter, SessionStore};
use crate::store::{
    ChangelogRecord, KeyValueIter, KeyValueStore, ReadOnlyKeyValueStore, StateStore,
};
use crate::window::{
    ReadOnlyWindowStore, WindowIter, WindowStore, WindowWrite, WindowedKeyValueIter,
};

/// Where a logged store sends its changes. The runtime implements it over the log.
///
/// Closures `FnMut(&[u8], Option<&[u8]>, i64) -> Result<(), StoreError>` implement it too.
pub trait ChangelogSink: Send {
    /// Sends one change: `value == None` is a deletion (a tombstone on the compacted topic).
    fn send(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> Result<(), StoreError>;

    /// Called by the store's `flush()` after the store itself flushed. Default: nothing.
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl<F> ChangelogSink for F
where
    F: FnMut(&[u8], Option<&[u8]>, i64) -> Result<(), StoreError> + Send,
{
    fn send(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> Result<(), StoreError> {
        self(key, value, timestamp)
    }
}

/// The name of a store's changelog topic: `<app-id>-<store>-changelog`.
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// The timestamp of the record being processed, shared by the runtime (which sets it before
/// each record) and the store layers (which stamp changelog records with it). The caching
/// layer sets it to each entry's own timestamp while it flushes, as Kafka Streams does with the
/// record context.
#[derive(Debug, Clone, Default)]
pub struct RecordClock(Arc<AtomicI64>);

impl RecordClock {
    /// A clock reading 0.
    pub fn new() -> Self {
        RecordClock::default()
    }

    /// Sets the current record timestamp (ms).
    pub fn set(&self, timestamp: i64) {
        self.0.store(timestamp, Ordering::Relaxed);
    }

    /// The current record timestamp (ms).
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Forwards the [`StateStore`] methods to `self.inner`, flushing the sink after the store.
macro_rules! delegate_state_store {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }

        fn persistent(&self) -> bool {
            self.inner.persistent()
        }

        fn flush(&mut self) -> Result<(), StoreError> {
            self.inner.flush()?;
            self.sink.flush()
        }

        fn flush_cache(&mut self) -> Result<(), StoreError> {
            self.inner.flush_cache()?;
            self.sink.flush()
        }

        fn close(&mut self) -> Result<(), StoreError> {
            self.inner.flush()?;
            self.sink.flush()?;
            self.inner.close()
        }

        fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
            self.inner.restore_batch(batch)
        }

        fn rocksdb_figures(&self) -> Option<crate::store::RocksDbStoreFigures> {
            self.inner.rocksdb_figures()
        }

        fn wipe(&mut self) -> Result<(), StoreError> {
            self.inner.wipe()
        }
    };
}

/// Logs every change of a key-value store.
pub(crate) struct LoggedKeyValueStore {
    inner: Box<dyn KeyValueStore>,
    sink: Box<dyn ChangelogSink>,
    clock: RecordClock,
}

impl LoggedKeyValueStore {
    pub(crate) fn new(
        inner: Box<dyn KeyValueStore>,
        sink: Box<dyn ChangelogSink>,
        clock: RecordClock,
    ) -> Self {
        LoggedKeyValueStore { inner, sink, clock }
    }
}

impl StateStore for LoggedKeyValueStore {
    delegate_state_store!();
}

impl ReadOnlyKeyValueStore for LoggedKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn range(
        &self,
        from: std::ops::Bound<&[u8]>,
        to: std::ops::Bound<&[u8]>,
    ) -> Result<KeyValueIter<'_>, StoreError> {
        self.inner.range(from, to)
    }

    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIter<'_>, StoreError> {
        self.inner.prefix_scan(prefix)
    }

    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        self.inner.approximate_num_entries()
    }
}

impl KeyValueStore for LoggedKeyValueStore {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, value)?;
        self.sink.send(key, Some(value), self.clock.get())
    }

    fn put_all(&mut self, entries: &[(&[u8], Option<&[u8]>)]) -> Result<(), StoreError> {
        self.inner.put_all(entries)?;
        let ts = self.clock.get();
        for (k, v) in entries {
            self.sink.send(k, *v, ts)?;
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.delete(key)?;
        self.sink.send(key, None, self.clock.get())
    }
}

/// Logs every change of a window store, keyed by the encoded window key.
pub(crate) struct LoggedWindowStore {
    inner: Box<dyn WindowStore>,
    sink: Box<dyn ChangelogSink>,
    clock: RecordClock,
    /// `Some` when duplicates are retained: the changelog needs a distinct key per put, or
    /// compaction would keep only the last duplicate.
    seq: Option<u32>,
}

impl LoggedWindowStore {
    pub(crate) fn new(
        inner: Box<dyn WindowStore>,
        sink: Box<dyn ChangelogSink>,
        clock: RecordClock,
        retain_duplicates: bool,
    ) -> Self {
        LoggedWindowStore {
            inner,
            sink,
            clock,
            seq: retain_duplicates.then_some(0),
        }
    }
}

impl StateStore for LoggedWindowStore {
    delegate_state_store!();
}

impl ReadOnlyWindowStore for LoggedWindowStore {
    fn fetch_one(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.fetch_one(key, window_start)
    }

    fn fetch(
        &self,
        key: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<WindowIter<'_>, StoreError> {
        self.inner.fetch(key, time_from, time_to)
    }

    fn fetch_all(
        &self,
        time_from: i64,
        time_to: i64,
    ) -> Result<WindowedKeyValueIter<'_>, StoreError> {
        self.inner.fetch_all(time_from, time_to)
    }
}

impl WindowStore for LoggedWindowStore {
    fn put(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        window_start: i64,
    ) -> Result<(), StoreError> {
        if self.seq.is_some() && value.is_none() {
            return Ok(());
        }
        self.inner.put(key, value, window_start)?;
        // Same numbering as the segmented store: incremented before use, per accepted put.
        let seq = self.seq.map(|s| s.wrapping_add(1));
        self.seq = seq;
        self.sink
            .send(&window_key(key, window_start, seq), value, self.clock.get())
    }

    fn put_all(&mut self, writes: &[WindowWrite<'_>]) -> Result<(), StoreError> {
        if self.seq.is_some() {
            for (key, start, value) in writes {
                self.put(key, *value, *start)?;
            }
            return Ok(());
        }
        self.inner.put_all(writes)?;
        let ts = self.clock.get();
        for (key, start, value) in writes {
            self.sink.send(&window_key(key, *start, None), *value, ts)?;
        }
        Ok(())
    }

    fn retention_ms(&self) -> i64 {
        self.inner.retention_ms()
    }
}

/// Logs every change of a session store, keyed by the encoded session key.
pub(crate) struct LoggedSessionStore {
    inner: Box<dyn SessionStore>,
    sink: Box<dyn ChangelogSink>,
    clock: RecordClock,
}

impl LoggedSessionStore {
    pub(crate) fn new(
        inner: Box<dyn SessionStore>,
        sink: Box<dyn ChangelogSink>,
        clock: RecordClock,
    ) -> Self {
        LoggedSessionStore { inner, sink, clock }
    }
}

impl StateStore for LoggedSessionStore {
    delegate_state_store!();
}

impl ReadOnlySessionStore for LoggedSessionStore {
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<SessionIter<'_>, StoreError> {
        self.inner
            .find_sessions(key, earliest_session_end, latest_session_start)
    }

    fn fetch_session(
        &self,
        key: &[u8],
        start: i64,
        end: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.fetch_session(key, start, end)
    }
}

impl SessionStore for LoggedSessionStore {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, start, end, value)?;
        self.sink
            .send(&session_key(key, start, end), Some(value), self.clock.get())
    }

    fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<(), StoreError> {
        self.inner.remove(key, start, end)?;
        self.sink
            .send(&session_key(key, start, end), None, self.clock.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name() {
        assert_eq!(changelog_topic("app", "counts"), "app-counts-changelog");
    }
}
