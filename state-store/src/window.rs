//! Window stores: values keyed by (key, window start), kept for a retention period.
//!
//! Layout: `[key][window_start]` (+ `[seq]` with `retain_duplicates`), see [`crate::keys`], in
//! time segments ([`crate::segments`]). Stream time is the largest window start written; data
//! older than `stream_time - retention + 1` is neither returned nor accepted, and whole segments
//! behind it are dropped. With `retain_duplicates` (stream-stream join buffers) every put is a
//! new entry, told apart by a per-store sequence number, and a `None` put is ignored, as in Kafka
//! Streams. Sequence numbers restart at 0 when a store is reopened, so duplicates must live
//! shorter than a restart (true of join buffers, whose retention is the join window).

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::StoreError;
use crate::keys::{split_window_key, window_key};
use crate::segments::{KeySchema, SegmentBackend, SegmentedStore, Segments};
use crate::store::StateStore;

/// A key together with the start of its window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowedKey {
    /// The record key.
    pub key: Vec<u8>,
    /// Window start, ms.
    pub start: i64,
}

/// An iterator over `(window_start, value)` of one key, ascending by start.
pub type WindowIter<'a> = Box<dyn Iterator<Item = Result<(i64, Vec<u8>), StoreError>> + 'a>;

/// An iterator over `(windowed key, value)`.
pub type WindowedKeyValueIter<'a> =
    Box<dyn Iterator<Item = Result<(WindowedKey, Vec<u8>), StoreError>> + 'a>;

/// Read access to a window store. Time ranges are inclusive at both ends.
pub trait ReadOnlyWindowStore {
    /// The value of `key` in the window starting at `window_start` (with duplicates: the
    /// oldest one).
    fn fetch_one(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Windows of `key` starting in `[time_from, time_to]`, ascending by start.
    fn fetch(&self, key: &[u8], time_from: i64, time_to: i64)
        -> Result<WindowIter<'_>, StoreError>;

    /// Windows of all keys starting in `[time_from, time_to]`. Within one segment the order is
    /// by key, then start; across segments it is by segment, so sort if you need a total order.
    fn fetch_all(
        &self,
        time_from: i64,
        time_to: i64,
    ) -> Result<WindowedKeyValueIter<'_>, StoreError>;

    /// Every retained window.
    fn all(&self) -> Result<WindowedKeyValueIter<'_>, StoreError> {
        self.fetch_all(i64::MIN, i64::MAX)
    }
}

/// One write of [`WindowStore::put_all`]: key, window start, value (`None` deletes).
pub type WindowWrite<'a> = (&'a [u8], i64, Option<&'a [u8]>);

/// A window store.
pub trait WindowStore: ReadOnlyWindowStore + StateStore {
    /// Stores `value` for `key` in the window starting at `window_start`; `None` deletes it
    /// (ignored when duplicates are retained). Advances stream time to `window_start`; a put
    /// older than the retention period is dropped.
    fn put(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        window_start: i64,
    ) -> Result<(), StoreError>;

    /// Stores each `(key, window_start, value)` in order, exactly as that sequence of
    /// [`put`](WindowStore::put)s would; a store may write them in one batch.
    fn put_all(&mut self, writes: &[WindowWrite<'_>]) -> Result<(), StoreError> {
        for (key, start, value) in writes {
            self.put(key, *value, *start)?;
        }
        Ok(())
    }

    /// Retention period, ms.
    fn retention_ms(&self) -> i64;
}

/// The window store backend shared by RocksDB and memory: a set of time segments.
pub(crate) type SegmentedWindowStore = SegmentedStore<WindowKeySchema>;

/// Window keys, `[key][window_start]`, with a sequence number when duplicates are retained.
pub(crate) struct WindowKeySchema {
    retain_duplicates: bool,
    /// The sequence number of the last duplicate put.
    seq: u32,
}

impl KeySchema for WindowKeySchema {
    fn segment_time(&self, raw: &[u8]) -> Option<i64> {
        split_window_key(raw, self.retain_duplicates).map(|(_, ts)| ts)
    }
}

impl SegmentedWindowStore {
    pub(crate) fn open(
        name: &str,
        backend: SegmentBackend,
        retention: i64,
        segment_interval: i64,
        retain_duplicates: bool,
    ) -> Result<Self, StoreError> {
        Ok(SegmentedStore {
            segments: Segments::open(name, backend, retention, segment_interval)?,
            schema: WindowKeySchema {
                retain_duplicates,
                seq: 0,
            },
        })
    }

    #[cfg(test)]
    pub(crate) fn segment_ids(&self) -> Vec<i64> {
        self.segments.segment_ids()
    }

    fn seq_bounds(&self) -> (Option<u32>, Option<u32>) {
        if self.schema.retain_duplicates {
            (Some(0), Some(u32::MAX))
        } else {
            (None, None)
        }
    }

    fn decode<'a>(&self, raw: &'a [u8]) -> Result<(&'a [u8], i64), StoreError> {
        split_window_key(raw, self.schema.retain_duplicates).ok_or_else(|| {
            StoreError::corrupt(
                self.segments.name(),
                format!("window key of {} bytes", raw.len()),
            )
        })
    }
}

impl ReadOnlyWindowStore for SegmentedWindowStore {
    fn fetch_one(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(segment) = self.segments.segment(window_start)? else {
            return Ok(None);
        };
        if !self.schema.retain_duplicates {
            return segment.store().get(&window_key(key, window_start, None));
        }
        let (lo, hi) = self.seq_bounds();
        let lo = window_key(key, window_start, lo);
        let hi = window_key(key, window_start, hi);
        match segment
            .store()
            .range(Bound::Included(&lo), Bound::Included(&hi))?
            .next()
        {
            Some(r) => Ok(Some(r?.1)),
            None => Ok(None),
        }
    }

    fn fetch(
        &self,
        key: &[u8],
        time_from: i64,
        time_to: i64,
    ) -> Result<WindowIter<'_>, StoreError> {
        let from = time_from.max(self.segments.min_live_time());
        let (seq_lo, seq_hi) = self.seq_bounds();
        let lo = window_key(key, from, seq_lo);
        let hi = window_key(key, time_to, seq_hi);
        let mut iters = Vec::new();
        for segment in self.segments.segments_between(from, time_to)? {
            iters.push(
                segment
                    .store()
                    .range(Bound::Included(&lo), Bound::Included(&hi))?,
            );
        }
        let key = key.to_vec();
        Ok(Box::new(iters.into_iter().flatten().filter_map(move |r| {
            match r {
                Err(e) => Some(Err(e)),
                Ok((raw, value)) => match self.decode(&raw) {
                    Err(e) => Some(Err(e)),
                    // Longer keys sharing `key` as a prefix fall in the byte range too.
                    Ok((k, ts)) => (k == key.as_slice() && ts >= from && ts <= time_to)
                        .then_some(Ok((ts, value))),
                },
            }
        })))
    }

    fn fetch_all(
        &self,
        time_from: i64,
        time_to: i64,
    ) -> Result<WindowedKeyValueIter<'_>, StoreError> {
        let from = time_from.max(self.segments.min_live_time());
        let mut iters = Vec::new();
        for segment in self.segments.segments_between(from, time_to)? {
            iters.push(segment.store().all()?);
        }
        Ok(Box::new(iters.into_iter().flatten().filter_map(
            move |r| match r {
                Err(e) => Some(Err(e)),
                Ok((raw, value)) => match self.decode(&raw) {
                    Err(e) => Some(Err(e)),
                    Ok((k, ts)) => (ts >= from && ts <= time_to).then(|| {
                        Ok((
                            WindowedKey {
                                key: k.to_vec(),
                                start: ts,
                            },
                            value,
                        ))
                    }),
                },
            },
        )))
    }
}

impl WindowStore for SegmentedWindowStore {
    fn put(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        window_start: i64,
    ) -> Result<(), StoreError> {
        if self.schema.retain_duplicates && value.is_none() {
            return Ok(());
        }
        self.segments.observe(window_start)?;
        let seq = if self.schema.retain_duplicates {
            self.schema.seq = self.schema.seq.wrapping_add(1);
            Some(self.schema.seq)
        } else {
            None
        };
        let Some(segment) = self.segments.segment_for_write(window_start)? else {
            tracing::debug!(store = %self.segments.name(), window_start, "dropping put into expired window");
            return Ok(());
        };
        let raw = window_key(key, window_start, seq);
        match value {
            Some(v) => segment.store_mut().put(&raw, v),
            None => segment.store_mut().delete(&raw),
        }
    }

    /// Without duplicates: one batch per segment. Writes into a segment that a later write of
    /// the sequence expires are dropped with it, as the puts one by one would leave them.
    fn put_all(&mut self, writes: &[WindowWrite<'_>]) -> Result<(), StoreError> {
        if self.schema.retain_duplicates {
            for (key, start, value) in writes {
                self.put(key, *value, *start)?;
            }
            return Ok(());
        }
        // Segment id → (largest start, raw writes in order).
        type Pending<'a> = BTreeMap<i64, (i64, Vec<(Vec<u8>, Option<&'a [u8]>)>)>;
        let mut pending: Pending<'_> = BTreeMap::new();
        let mut min_live = self.segments.min_live_time();
        for (key, start, value) in writes {
            self.segments.observe(*start)?;
            if self.segments.min_live_time() != min_live {
                min_live = self.segments.min_live_time();
                // Observing may have dropped whole segments; their pending writes go with them.
                pending = pending.split_off(&self.segments.segment_id(min_live));
            }
            if *start < min_live {
                tracing::debug!(store = %self.segments.name(), window_start = start, "dropping put into expired window");
                continue;
            }
            let group = pending
                .entry(self.segments.segment_id(*start))
                .or_insert((*start, Vec::new()));
            group.0 = group.0.max(*start);
            group.1.push((window_key(key, *start, None), *value));
        }
        // Every pending segment is live; in the oldest, a write may have been accepted before
        // later ones moved the retention bound past it, and stays, as it would one by one.
        let min_live = self.segments.min_live_time();
        for (_, (max_start, raws)) in pending {
            let Some(segment) = self.segments.segment_for_write(max_start.max(min_live))? else {
                continue;
            };
            let entries: Vec<(&[u8], Option<&[u8]>)> =
                raws.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
            segment.store_mut().put_all(&entries)?;
        }
        Ok(())
    }

    fn retention_ms(&self) -> i64 {
        self.segments.retention()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn expired_segments_are_dropped_in_memory() {
        let mut s =
            SegmentedWindowStore::open("w", SegmentBackend::Memory, 1_000, 500, false).unwrap();
        for t in (0..5_000).step_by(100) {
            s.put(b"k", Some(b"v"), t).unwrap();
        }
        // stream time 4900, min live 3901 → segment 7 (3500..4000) onwards.
        assert_eq!(s.segment_ids(), vec![7, 8, 9]);
        let got: Vec<i64> = s
            .fetch(b"k", 0, 10_000)
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(got.first(), Some(&4000));
        assert_eq!(got.len(), 10);
    }

    #[test]
    fn duplicates_are_kept() {
        let mut s =
            SegmentedWindowStore::open("w", SegmentBackend::Memory, 1_000, 500, true).unwrap();
        s.put(b"k", Some(b"a"), 10).unwrap();
        s.put(b"k", Some(b"b"), 10).unwrap();
        s.put(b"k", None, 10).unwrap();
        let got: Vec<Vec<u8>> = s
            .fetch(b"k", 0, 100)
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(s.fetch_one(b"k", 10).unwrap(), Some(b"a".to_vec()));
    }

    fn all_of(s: &SegmentedWindowStore) -> Vec<(WindowedKey, Vec<u8>)> {
        let mut got: Vec<_> = s.all().unwrap().map(|r| r.unwrap()).collect();
        got.sort();
        got
    }

    #[test]
    fn put_all_stores_what_puts_one_by_one_store() {
        // Starts cross segments (interval 500) and expire some (retention 1,000) within the
        // batch; a key is written twice and deleted once.
        let writes: Vec<WindowWrite<'_>> = vec![
            (b"a", 100, Some(b"1")),
            (b"b", 600, Some(b"2")),
            (b"a", 100, Some(b"3")),
            (b"c", 1_200, Some(b"4")),
            (b"b", 600, None),
            (b"d", 2_400, Some(b"5")),
            (b"e", 1_300, Some(b"6")),
            (b"f", 1_600, Some(b"7")),
        ];
        let mut one_by_one =
            SegmentedWindowStore::open("w", SegmentBackend::Memory, 1_000, 500, false).unwrap();
        for (k, t, v) in &writes {
            one_by_one.put(k, *v, *t).unwrap();
        }
        let mut batched =
            SegmentedWindowStore::open("w", SegmentBackend::Memory, 1_000, 500, false).unwrap();
        batched.put_all(&writes).unwrap();
        assert_eq!(all_of(&batched), all_of(&one_by_one));
        assert_eq!(batched.segment_ids(), one_by_one.segment_ids());
        // Raw contents too, expired-but-kept rows included.
        for id in batched.segment_ids() {
            let raw = |s: &SegmentedWindowStore| -> Vec<(Vec<u8>, Vec<u8>)> {
                let seg = s.segments.segment_by_id(id).unwrap();
                seg.store().all().unwrap().map(|r| r.unwrap()).collect()
            };
            assert_eq!(raw(&batched), raw(&one_by_one), "segment {id}");
        }
    }

    #[test]
    fn windows_in_a_reopened_newest_segment_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let backend = || SegmentBackend::RocksDb {
            dir: dir.path().join("w"),
            memory: crate::RocksDbMemory::default(),
        };
        let mut s = SegmentedWindowStore::open("w", backend(), 10_000, 1_000, false).unwrap();
        s.put(b"k", Some(b"early"), 2_100).unwrap();
        s.put(b"k", Some(b"late"), 2_900).unwrap();
        // Later than anything written: answered without a read, and absent.
        assert_eq!(s.fetch_one(b"k", 2_901).unwrap(), None);
        s.close().unwrap();
        // Reopened, the store knows only that segment 2 (2,000..3,000) exists.
        let s = SegmentedWindowStore::open("w", backend(), 10_000, 1_000, false).unwrap();
        assert_eq!(s.fetch_one(b"k", 2_900).unwrap(), Some(b"late".to_vec()));
        assert_eq!(s.fetch_one(b"k", 2_100).unwrap(), Some(b"early".to_vec()));
        assert_eq!(s.fetch_one(b"k", 3_000).unwrap(), None);
    }
}
