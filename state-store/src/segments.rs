//! Time segments: the storage under window and session stores.
//!
//! A segmented store is a set of key-value stores, one per time interval of
//! `segment_interval` ms (segment id = `timestamp.div_euclid(interval)`). Stream time only
//! grows; when it advances, every segment that lies entirely before
//! `stream_time - retention + 1` is dropped whole: closed and its directory deleted (RocksDB) or
//! its map freed (memory). That is why expiry costs one directory removal, not a delete per key.
//! On RocksDB each segment is its own instance in `<store dir>/segment.<id>/`; the shared
//! [`RocksDbMemory`] bounds their memory together. A `SegmentedStore` pairs the segments with a
//! store shape's key schema (window or session keys); its lifecycle is the segments'.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::StoreError;
use crate::memory::InMemoryKeyValueStore;
use crate::rocks::{RocksDbKeyValueStore, RocksDbMemory};
use crate::store::{ChangelogRecord, KeyValueStore, RocksDbStoreFigures, StateStore};

/// Where segments live.
#[derive(Debug, Clone)]
pub(crate) enum SegmentBackend {
    Memory,
    RocksDb { dir: PathBuf, memory: RocksDbMemory },
}

/// One segment: an in-memory map or a RocksDB instance.
pub(crate) enum Segment {
    Memory(InMemoryKeyValueStore),
    RocksDb(RocksDbKeyValueStore),
}

impl Segment {
    pub(crate) fn store(&self) -> &dyn KeyValueStore {
        match self {
            Segment::Memory(s) => s,
            Segment::RocksDb(s) => s,
        }
    }

    pub(crate) fn store_mut(&mut self) -> &mut dyn KeyValueStore {
        match self {
            Segment::Memory(s) => s,
            Segment::RocksDb(s) => s,
        }
    }

    fn destroy(self) -> Result<(), StoreError> {
        match self {
            Segment::Memory(_) => Ok(()),
            Segment::RocksDb(s) => s.destroy(),
        }
    }
}

pub(crate) const SEGMENT_DIR_PREFIX: &str = "segment.";

/// The default segment interval for a retention period, as in Kafka Streams.
pub(crate) fn default_segment_interval(retention_ms: i64) -> i64 {
    (retention_ms / 2).max(60_000)
}

/// Where a store shape keeps the segment time in its raw keys (Kafka Streams' KeySchema).
pub(crate) trait KeySchema: Send {
    /// The time that picks the segment of raw key `raw` (window start, session end); `None`
    /// when the key is too short to hold one.
    fn segment_time(&self, raw: &[u8]) -> Option<i64>;
}

/// A window or session store: its segments, and its key schema with what that adds. The
/// [`StateStore`] lifecycle is the segments'; the shapes add reads and writes.
pub(crate) struct SegmentedStore<S> {
    pub(crate) segments: Segments,
    pub(crate) schema: S,
}

impl<S: KeySchema> StateStore for SegmentedStore<S> {
    fn name(&self) -> &str {
        self.segments.name()
    }

    fn persistent(&self) -> bool {
        self.segments.persistent()
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.segments.flush()
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.segments.close()
    }

    fn rocksdb_figures(&self) -> Option<RocksDbStoreFigures> {
        self.segments.rocksdb_figures()
    }

    fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
        let schema = &self.schema;
        self.segments
            .restore_batch(batch, |k| schema.segment_time(k))
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        self.segments.wipe()
    }
}

/// The segments of one window or session store.
pub(crate) struct Segments {
    name: String,
    backend: SegmentBackend,
    interval: i64,
    retention: i64,
    segments: BTreeMap<i64, Segment>,
    stream_time: i64,
    /// No segment holds a time later than this: the largest time written (put or restored)
    /// since the segments were opened or wiped, or, for segments found on disk, the end of
    /// the newest one. Lets a point lookup of a newer window answer without a read.
    newest: i64,
    open: bool,
}

impl Segments {
    /// Opens the segments of a store, reopening those a RocksDB store left on disk.
    pub(crate) fn open(
        name: &str,
        backend: SegmentBackend,
        retention: i64,
        interval: i64,
    ) -> Result<Self, StoreError> {
        if retention < 0 || interval <= 0 {
            return Err(StoreError::invalid(
                name,
                format!("retention ({retention} ms) must be >= 0 and segment interval ({interval} ms) > 0"),
            ));
        }
        let mut segments = BTreeMap::new();
        if let SegmentBackend::RocksDb { dir, memory } = &backend {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(name, dir, e))?;
            let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(name, dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io(name, dir, e))?;
                let file_name = entry.file_name();
                let Some(id) = file_name
                    .to_str()
                    .and_then(|n| n.strip_prefix(SEGMENT_DIR_PREFIX))
                    .and_then(|n| n.parse::<i64>().ok())
                else {
                    continue;
                };
                let store = RocksDbKeyValueStore::open(name, entry.path(), memory)?;
                segments.insert(id, Segment::RocksDb(store));
            }
        }
        // Until records arrive, the newest segment's start is a safe lower bound for stream
        // time: it never makes live data look expired.
        let stream_time = segments
            .keys()
            .next_back()
            .map_or(i64::MIN, |id| id.saturating_mul(interval));
        let newest = segments.keys().next_back().map_or(i64::MIN, |id| {
            id.saturating_add(1)
                .saturating_mul(interval)
                .saturating_sub(1)
        });
        Ok(Segments {
            name: name.to_owned(),
            backend,
            interval,
            retention,
            segments,
            stream_time,
            newest,
            open: true,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn persistent(&self) -> bool {
        matches!(self.backend, SegmentBackend::RocksDb { .. })
    }

    pub(crate) fn retention(&self) -> i64 {
        self.retention
    }

    fn check_open(&self) -> Result<(), StoreError> {
        StoreError::check_open(&self.name, self.open)
    }

    pub(crate) fn segment_id(&self, ts: i64) -> i64 {
        ts.div_euclid(self.interval)
    }

    /// Ids of the live segments, ascending.
    #[cfg(test)]
    pub(crate) fn segment_ids(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// The segment of id `id`, live or not yet dropped.
    #[cfg(test)]
    pub(crate) fn segment_by_id(&self, id: i64) -> Option<&Segment> {
        self.segments.get(&id)
    }

    /// The oldest timestamp still retained.
    pub(crate) fn min_live_time(&self) -> i64 {
        self.stream_time
            .saturating_sub(self.retention)
            .saturating_add(1)
    }

    /// Advances stream time to `ts` (if later) and drops segments that fell out of retention.
    pub(crate) fn observe(&mut self, ts: i64) -> Result<(), StoreError> {
        self.check_open()?;
        if ts <= self.stream_time {
            return Ok(());
        }
        self.stream_time = ts;
        let min_live_segment = self.segment_id(self.min_live_time());
        let live = self.segments.split_off(&min_live_segment);
        let expired = std::mem::replace(&mut self.segments, live);
        for (id, segment) in expired {
            tracing::debug!(store = %self.name, segment = id, "dropping expired segment");
            segment.destroy()?;
        }
        Ok(())
    }

    /// The segment holding `ts`, created if needed; `None` when `ts` is already expired.
    pub(crate) fn segment_for_write(
        &mut self,
        ts: i64,
    ) -> Result<Option<&mut Segment>, StoreError> {
        self.check_open()?;
        if ts < self.min_live_time() {
            return Ok(None);
        }
        self.newest = self.newest.max(ts);
        let id = self.segment_id(ts);
        if !self.segments.contains_key(&id) {
            let segment = match &self.backend {
                SegmentBackend::Memory => {
                    Segment::Memory(InMemoryKeyValueStore::new(self.name.clone()))
                }
                SegmentBackend::RocksDb { dir, memory } => {
                    Segment::RocksDb(RocksDbKeyValueStore::open(
                        self.name.clone(),
                        dir.join(format!("{SEGMENT_DIR_PREFIX}{id}")),
                        memory,
                    )?)
                }
            };
            self.segments.insert(id, segment);
        }
        Ok(self.segments.get_mut(&id))
    }

    /// The segment holding `ts`, if it exists and is live and may hold `ts`: a time later
    /// than any written has nothing stored, so it costs no read.
    pub(crate) fn segment(&self, ts: i64) -> Result<Option<&Segment>, StoreError> {
        self.check_open()?;
        if ts < self.min_live_time() || ts > self.newest {
            return Ok(None);
        }
        Ok(self.segments.get(&self.segment_id(ts)))
    }

    /// Live segments that may hold timestamps in `[from, to]`, ascending.
    pub(crate) fn segments_between(&self, from: i64, to: i64) -> Result<Vec<&Segment>, StoreError> {
        self.check_open()?;
        let from = from.max(self.min_live_time());
        if from > to {
            return Ok(Vec::new());
        }
        Ok(self
            .segments
            .range(self.segment_id(from)..=self.segment_id(to))
            .map(|(_, s)| s)
            .collect())
    }

    /// Writes restored records, each to the segment of `ts_of(key)`; expired ones are skipped.
    pub(crate) fn restore_batch(
        &mut self,
        batch: &[ChangelogRecord],
        ts_of: impl Fn(&[u8]) -> Option<i64>,
    ) -> Result<(), StoreError> {
        // Records of one segment keep their changelog order; the max timestamp of a group
        // decides whether the segment is still live once the whole batch has been seen.
        let mut grouped: BTreeMap<i64, (i64, Vec<ChangelogRecord>)> = BTreeMap::new();
        for r in batch {
            let ts = ts_of(&r.key).ok_or_else(|| {
                StoreError::corrupt(
                    &self.name,
                    format!("changelog key of {} bytes is too short", r.key.len()),
                )
            })?;
            self.observe(ts)?;
            let group = grouped
                .entry(self.segment_id(ts))
                .or_insert((ts, Vec::new()));
            group.0 = group.0.max(ts);
            group.1.push(r.clone());
        }
        for (_, (max_ts, records)) in grouped {
            if let Some(segment) = self.segment_for_write(max_ts)? {
                segment.store_mut().restore_batch(&records)?;
            }
        }
        Ok(())
    }

    /// RocksDB's figures summed over the segments; `None` for in-memory segments.
    pub(crate) fn rocksdb_figures(&self) -> Option<RocksDbStoreFigures> {
        if !matches!(self.backend, SegmentBackend::RocksDb { .. }) {
            return None;
        }
        let all = self
            .segments
            .values()
            .filter_map(|s| s.store().rocksdb_figures());
        Some(all.fold(RocksDbStoreFigures::default(), RocksDbStoreFigures::combine))
    }

    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        self.check_open()?;
        for segment in self.segments.values_mut() {
            segment.store_mut().flush()?;
        }
        Ok(())
    }

    pub(crate) fn close(&mut self) -> Result<(), StoreError> {
        if !self.open {
            return Ok(());
        }
        for segment in self.segments.values_mut() {
            segment.store_mut().close()?;
        }
        self.segments.clear();
        self.open = false;
        Ok(())
    }

    pub(crate) fn wipe(&mut self) -> Result<(), StoreError> {
        self.check_open()?;
        for (_, segment) in std::mem::take(&mut self.segments) {
            segment.destroy()?;
        }
        self.stream_time = i64::MIN;
        self.newest = i64::MIN;
        Ok(())
    }
}
