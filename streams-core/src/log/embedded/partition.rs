//! One partition of the embedded log: an ordered list of segments, the last one active.
//!
//! Invariants: offsets only grow; segment `i` holds offsets in
//! `[base_offset(i), base_offset(i + 1))`; only the active segment is written; compaction and
//! retention touch closed segments only. Compaction writes its result into a sibling
//! directory and swaps it in with renames, so a crash leaves either the old or the new set of
//! segments, never a mix (see [`Partition::open`] for how an interrupted swap is finished).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hashbrown::HashMap;
use std::collections::HashSet;

use super::batch;
use super::segment::{segment_paths, Segment};
use super::{FsyncPolicy, LogRepair, TxnState};
use crate::error::{Error, Result};
use crate::log::{AppendInfo, Fetch, TopicConfig};
use crate::record::{Record, StoredRecord, TopicPartition};

pub(crate) struct Partition {
    pub(crate) tp: TopicPartition,
    dir: PathBuf,
    segments: Vec<Segment>,
    index_interval: u64,
    fsync: FsyncPolicy,
    last_sync: Instant,
    unsynced: bool,
    /// Transactions with records here that are not yet committed or aborted, with the offset of
    /// their first record: the last stable offset is the smallest of these.
    pub(crate) open_txns: BTreeMap<u64, u64>,
    buf: Vec<u8>,
}

/// How a partition is opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenMode {
    /// Change no file.
    pub(crate) read_only: bool,
    /// The topic is compacted: cleaned segments may end before the next one starts.
    pub(crate) compacted: bool,
}

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompactionStats {
    pub(crate) segments_cleaned: usize,
    pub(crate) records_removed: u64,
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    dir.with_file_name(name)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

impl Partition {
    /// Opens (or creates) the partition directory, finishing an interrupted compaction swap and
    /// recovering the active segment's tail; returns what recovery cut. `mode` says how: a
    /// read-only open changes no file (it reads the directory a writer would end up with and
    /// ignores a torn tail), and fails on a partition with no segment.
    ///
    /// A missing segment is corruption, never skipped: a gap between segments of a
    /// delete-policy topic (compaction records where a cleaned segment ended in its index, so
    /// in a compacted topic only a segment whose index was rebuilt may end early), an index
    /// without its segment, or a closed last segment (its successor, the active one, is gone).
    pub(crate) fn open(
        dir: PathBuf,
        tp: TopicPartition,
        index_interval: u64,
        fsync: FsyncPolicy,
        mode: OpenMode,
    ) -> Result<(Self, Vec<LogRepair>)> {
        let read_dir = if mode.read_only {
            Self::readable_dir(&dir)
        } else {
            Self::finish_swap(&dir)?;
            std::fs::create_dir_all(&dir).map_err(io("create partition dir", &dir))?;
            dir.clone()
        };
        let (bases, indexes) = Self::list(&read_dir, mode.read_only)?;
        if let Some(orphan) = indexes.iter().find(|b| bases.binary_search(b).is_err()) {
            let (log, index) = segment_paths(&read_dir, *orphan);
            return Err(Error::Corrupt {
                path: log,
                position: 0,
                reason: format!(
                    "segment file is missing (its index {} is there)",
                    index.display()
                ),
            });
        }
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut repairs = Vec::new();
        if bases.is_empty() {
            if mode.read_only {
                return Err(Error::Corrupt {
                    path: read_dir,
                    position: 0,
                    reason: "partition directory holds no segment".into(),
                });
            }
            segments.push(Segment::create(&dir, 0, index_interval)?);
        }
        let last = bases.len().saturating_sub(1);
        for (i, &base) in bases.iter().enumerate() {
            let seg = if i == last {
                let (seg, repair) =
                    Segment::open_active(&read_dir, base, index_interval, mode.read_only)?;
                repairs.extend(repair);
                seg
            } else {
                Segment::open_closed(&read_dir, base, index_interval, mode.read_only)?
            };
            if let Some(prev) = segments.last_mut() {
                Self::check_contiguous(prev, &seg, mode)?;
            }
            segments.push(seg);
        }
        let partition = Partition {
            tp,
            dir,
            segments,
            index_interval,
            fsync,
            last_sync: Instant::now(),
            unsynced: false,
            open_txns: BTreeMap::new(),
            buf: Vec::new(),
        };
        Ok((partition, repairs))
    }

    /// The base offsets of the segment files and of the index files in `dir`, sorted
    /// (removing leftover temporary files unless `read_only`).
    fn list(dir: &Path, read_only: bool) -> Result<(Vec<u64>, Vec<u64>)> {
        let (mut bases, mut indexes) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
            let entry = entry.map_err(io("list", dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let (stem, list) = if let Some(stem) = name.strip_suffix(".log") {
                (stem, &mut bases)
            } else if let Some(stem) = name.strip_suffix(".index") {
                (stem, &mut indexes)
            } else {
                if name.ends_with(".tmp") && !read_only {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            };
            let base = stem.parse::<u64>().map_err(|_| Error::Corrupt {
                path: entry.path(),
                position: 0,
                reason: "segment file name is not an offset".into(),
            })?;
            list.push(base);
        }
        bases.sort_unstable();
        indexes.sort_unstable();
        Ok((bases, indexes))
    }

    /// Checks that `seg` starts where `prev` ends (see [`Partition::open`]); a compacted
    /// segment rescanned without its index is taken to end where `seg` starts.
    fn check_contiguous(prev: &mut Segment, seg: &Segment, mode: OpenMode) -> Result<()> {
        let (end, next) = (prev.next_offset, seg.base_offset);
        if end > next {
            return Err(Error::Corrupt {
                path: seg.path.clone(),
                position: 0,
                reason: format!(
                    "segment starts at offset {next} but the previous one ends at {end}"
                ),
            });
        }
        if end < next {
            if mode.compacted && !prev.indexed {
                prev.next_offset = next;
                if !mode.read_only {
                    prev.write_index()?;
                }
                return Ok(());
            }
            return Err(Error::Corrupt {
                path: seg.path.clone(),
                position: 0,
                reason: format!(
                    "offsets {end}..{next} are missing: {} ends at {end}, so a segment \
                     between it and this one is gone",
                    prev.path.display()
                ),
            });
        }
        Ok(())
    }

    /// The directory a read-only open reads: the partition's, or the result of a compaction
    /// swap a crash interrupted (what [`Partition::finish_swap`] would rename into place).
    fn readable_dir(dir: &Path) -> PathBuf {
        if dir.exists() {
            return dir.to_path_buf();
        }
        [".swap", ".old"]
            .iter()
            .map(|s| sibling(dir, s))
            .find(|d| d.exists())
            .unwrap_or_else(|| dir.to_path_buf())
    }

    /// Completes or undoes a compaction swap that a crash interrupted.
    fn finish_swap(dir: &Path) -> Result<()> {
        let (cleaning, swap, old) = (
            sibling(dir, ".cleaning"),
            sibling(dir, ".swap"),
            sibling(dir, ".old"),
        );
        if cleaning.exists() {
            std::fs::remove_dir_all(&cleaning).map_err(io("remove", &cleaning))?;
        }
        if swap.exists() {
            if dir.exists() {
                // The old directory was never moved aside: drop the new one.
                std::fs::remove_dir_all(&swap).map_err(io("remove", &swap))?;
            } else {
                std::fs::rename(&swap, dir).map_err(io("rename", &swap))?;
            }
        }
        if old.exists() {
            if dir.exists() {
                std::fs::remove_dir_all(&old).map_err(io("remove", &old))?;
            } else {
                std::fs::rename(&old, dir).map_err(io("rename", &old))?;
            }
        }
        Ok(())
    }

    fn active(&self) -> &Segment {
        // A partition always has at least one segment: open() and compaction guarantee it.
        &self.segments[self.segments.len() - 1]
    }

    pub(crate) fn start_offset(&self) -> u64 {
        self.segments[0].base_offset
    }

    pub(crate) fn end_offset(&self) -> u64 {
        self.active().next_offset
    }

    /// Finds where the transactions in `open` (left open in the journal, seen by a read-only
    /// open) start in this partition, so that the last stable offset stops there. Reads every
    /// batch header; only done when the journal has open transactions.
    pub(crate) fn find_open_txns(&mut self, open: &HashSet<u64>) -> Result<()> {
        let found = &mut self.open_txns;
        for seg in &self.segments {
            seg.for_each_batch(seg.base_offset, |h, _| {
                if open.contains(&h.txn_id) {
                    found.entry(h.txn_id).or_insert(h.base_offset);
                }
                Ok(true)
            })?;
        }
        Ok(())
    }

    /// The last stable offset: readers that see only committed data stop here.
    pub(crate) fn stable_offset(&self) -> u64 {
        self.open_txns
            .values()
            .min()
            .copied()
            .unwrap_or_else(|| self.end_offset())
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub(crate) fn append(
        &mut self,
        records: &[Record],
        txn_id: u64,
        now: i64,
        segment_bytes: u64,
    ) -> Result<AppendInfo> {
        let base = self.end_offset();
        if records.is_empty() {
            return Ok(AppendInfo {
                base_offset: base,
                next_offset: base,
            });
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        batch::encode_batch(&mut buf, (base..).zip(records.iter()), txn_id, now);
        let result = self.append_frame(&buf, segment_bytes);
        self.buf = buf;
        result?;
        if txn_id != 0 {
            self.open_txns.entry(txn_id).or_insert(base);
        }
        Ok(AppendInfo {
            base_offset: base,
            next_offset: self.end_offset(),
        })
    }

    fn append_frame(&mut self, frame: &[u8], segment_bytes: u64) -> Result<()> {
        let (header, _) = batch::check_frame(frame).map_err(|e| Error::Corrupt {
            path: self.active().path.clone(),
            position: self.active().size,
            reason: format!("freshly encoded batch does not check: {e:?}"),
        })?;
        if self.active().size > 0 && self.active().size + frame.len() as u64 > segment_bytes {
            self.roll()?;
        }
        let last = self.segments.len() - 1;
        self.segments[last].append_frame(frame, &header)?;
        self.unsynced = true;
        match self.fsync {
            FsyncPolicy::Always => self.sync()?,
            FsyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync()?,
            _ => {}
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<()> {
        let active = self.active();
        if self.fsync != FsyncPolicy::Never {
            active.sync()?;
        }
        let next = active.next_offset;
        // The next segment exists before this one is marked closed, so a closed last segment
        // always means its successor was lost (see `Segment::open_active`).
        let seg = Segment::create(&self.dir, next, self.index_interval)?;
        active.write_index()?;
        self.segments.push(seg);
        Ok(())
    }

    pub(crate) fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.active().sync()?;
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Reads records in `[from, bound)`, skipping batches of transactions `visible` rejects.
    pub(crate) fn read(
        &self,
        from: u64,
        max_records: usize,
        bound: u64,
        visible: impl Fn(u64) -> bool,
    ) -> Result<Fetch> {
        let (start, end) = (self.start_offset(), self.end_offset());
        if from < start || from > end {
            return Err(Error::OffsetOutOfRange {
                topic: self.tp.topic.clone(),
                partition: self.tp.partition,
                offset: from,
                start,
                end,
            });
        }
        let bound = bound.min(end);
        let mut fetch = Fetch {
            records: Vec::new(),
            next_offset: from,
        };
        if from >= bound || max_records == 0 {
            return Ok(fetch);
        }
        let first = self
            .segments
            .partition_point(|s| s.base_offset <= from)
            .saturating_sub(1);
        let mut done = false;
        for seg in &self.segments[first..] {
            if done || seg.base_offset >= bound {
                break;
            }
            seg.for_each_batch(from, |h, frame| {
                if h.base_offset >= bound {
                    done = true;
                    return Ok(false);
                }
                if h.txn_id != 0 && !visible(h.txn_id) {
                    fetch.next_offset = h.next_offset();
                    return Ok(true);
                }
                let mut decoded = Vec::new();
                batch::decode_records(frame, h, |r| decoded.push(r)).map_err(|e| {
                    Error::Corrupt {
                        path: seg.path.clone(),
                        position: 0,
                        reason: format!("batch at offset {}: {e:?}", h.base_offset),
                    }
                })?;
                for r in decoded {
                    if r.offset < from || r.offset >= bound {
                        continue;
                    }
                    fetch.next_offset = r.offset + 1;
                    fetch.records.push(r);
                    if fetch.records.len() >= max_records {
                        done = true;
                        return Ok(false);
                    }
                }
                fetch.next_offset = fetch.next_offset.max(h.next_offset().min(bound));
                Ok(true)
            })?;
        }
        if !done {
            // Everything below the bound was read: skip any gap compaction left before it.
            fetch.next_offset = fetch.next_offset.max(bound);
        }
        Ok(fetch)
    }

    pub(crate) fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        for seg in &self.segments {
            if seg.max_timestamp < timestamp {
                continue;
            }
            let mut found = None;
            seg.for_each_batch(seg.base_offset, |h, frame| {
                if h.max_timestamp < timestamp {
                    return Ok(true);
                }
                batch::decode_records(frame, h, |r| {
                    if found.is_none() && r.record.timestamp >= timestamp {
                        found = Some(r.offset);
                    }
                })
                .map_err(|e| Error::Corrupt {
                    path: seg.path.clone(),
                    position: 0,
                    reason: format!("{e:?}"),
                })?;
                Ok(found.is_none())
            })?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Deletes closed segments older than `retention.ms` or beyond `retention.bytes`.
    pub(crate) fn apply_retention(&mut self, now: i64, config: &TopicConfig) -> Result<usize> {
        let mut deleted = 0;
        if let Some(ms) = config.retention_ms {
            let horizon = now.saturating_sub(ms);
            while self.segments.len() > 1 && self.segments[0].max_append_time < horizon {
                self.segments.remove(0).delete()?;
                deleted += 1;
            }
        }
        if let Some(limit) = config.retention_bytes {
            let mut total = self.size_bytes();
            while self.segments.len() > 1 && total - self.segments[0].size >= limit {
                total -= self.segments[0].size;
                self.segments.remove(0).delete()?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Keeps only the latest record of each key in the closed segments below the last stable
    /// offset, dropping tombstones appended more than `delete.retention.ms` ago and records of
    /// aborted transactions. Offsets of kept records do not change.
    pub(crate) fn compact(
        &mut self,
        now: i64,
        config: &TopicConfig,
        txns: &TxnState,
    ) -> Result<CompactionStats> {
        let lso = self.stable_offset();
        let cleanable = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.next_offset <= lso)
            .count();
        if cleanable == 0 {
            return Ok(CompactionStats::default());
        }
        // Pass 1: the latest committed offset of every key in the segments being cleaned.
        // Records past them (the active segment, anything beyond the last stable offset) must
        // not remove older ones: a read-committed reader stops at the last stable offset and
        // would find the key missing, a state the log never had. Kafka bounds its offset map
        // the same way (at the first uncleanable offset).
        let mut latest: HashMap<Vec<u8>, u64> = HashMap::new();
        for seg in &self.segments[..cleanable] {
            self.each_record(seg, txns, |r| {
                if let Some(k) = r.record.key {
                    latest.insert(k, r.offset);
                }
            })?;
        }
        // Pass 2: write the kept records of the cleanable segments into a new directory.
        let cleaning = sibling(&self.dir, ".cleaning");
        if cleaning.exists() {
            std::fs::remove_dir_all(&cleaning).map_err(io("remove", &cleaning))?;
        }
        std::fs::create_dir_all(&cleaning).map_err(io("create", &cleaning))?;
        let tombstone_horizon = now.saturating_sub(config.delete_retention_ms);
        let mut stats = CompactionStats {
            segments_cleaned: cleanable,
            records_removed: 0,
        };
        let mut out =
            Segment::create(&cleaning, self.segments[0].base_offset, self.index_interval)?;
        let mut frame = Vec::new();
        for seg in &self.segments[..cleanable] {
            let mut batches: Vec<(batch::BatchHeader, Vec<StoredRecord>)> = Vec::new();
            seg.for_each_batch(seg.base_offset, |h, f| {
                let mut records = Vec::new();
                batch::decode_records(f, h, |r| records.push(r)).map_err(|e| Error::Corrupt {
                    path: seg.path.clone(),
                    position: 0,
                    reason: format!("{e:?}"),
                })?;
                batches.push((*h, records));
                Ok(true)
            })?;
            for (h, records) in batches {
                let total = records.len() as u64;
                if h.txn_id != 0 && !txns.is_committed(h.txn_id) {
                    stats.records_removed += total;
                    continue;
                }
                let kept: Vec<StoredRecord> = records
                    .into_iter()
                    .filter(|r| {
                        let is_latest = r
                            .record
                            .key
                            .as_ref()
                            .is_some_and(|k| latest.get(k) == Some(&r.offset));
                        let expired_tombstone =
                            r.record.value.is_none() && h.append_time < tombstone_horizon;
                        is_latest && !expired_tombstone
                    })
                    .collect();
                stats.records_removed += total - kept.len() as u64;
                if kept.is_empty() {
                    continue;
                }
                frame.clear();
                // Committed transactional records become plain ones: nothing left to decide.
                batch::encode_batch(
                    &mut frame,
                    kept.iter().map(|r| (r.offset, &r.record)),
                    0,
                    h.append_time,
                );
                let (header, _) = batch::check_frame(&frame).map_err(|e| Error::Corrupt {
                    path: out.path.clone(),
                    position: out.size,
                    reason: format!("re-encoded batch does not check: {e:?}"),
                })?;
                if out.size > 0 && out.size + frame.len() as u64 > config.segment_bytes {
                    // The offsets removed up to this batch belong to the segment before it,
                    // so the segments stay contiguous (a gap would be a lost segment).
                    out.next_offset = out.next_offset.max(header.base_offset);
                    out.sync()?;
                    out.write_index()?;
                    out = Segment::create(&cleaning, header.base_offset, self.index_interval)?;
                }
                out.append_frame(&frame, &header)?;
            }
        }
        // The cleaned output ends where the last cleaned segment ended, so a read resumes
        // at the right place even if its last records were removed.
        out.next_offset = out
            .next_offset
            .max(self.segments[cleanable - 1].next_offset);
        out.sync()?;
        out.write_index()?;
        drop(out);
        for seg in &self.segments[cleanable..] {
            let (log, index) = segment_paths(&cleaning, seg.base_offset);
            std::fs::hard_link(&seg.path, &log).map_err(io("link", &seg.path))?;
            if seg.index_path.exists() {
                std::fs::hard_link(&seg.index_path, &index).map_err(io("link", &seg.index_path))?;
            }
        }
        std::fs::File::open(&cleaning)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &cleaning))?;
        let (swap, old) = (sibling(&self.dir, ".swap"), sibling(&self.dir, ".old"));
        std::fs::rename(&cleaning, &swap).map_err(io("rename", &cleaning))?;
        std::fs::rename(&self.dir, &old).map_err(io("rename", &self.dir))?;
        std::fs::rename(&swap, &self.dir).map_err(io("rename", &swap))?;
        std::fs::remove_dir_all(&old).map_err(io("remove", &old))?;
        let open_txns = std::mem::take(&mut self.open_txns);
        // The active segment is the same file: appends not yet synced still need a sync.
        let (unsynced, last_sync) = (self.unsynced, self.last_sync);
        // The cleaned output was just written: nothing to recover in it.
        let (reopened, _) = Partition::open(
            self.dir.clone(),
            self.tp.clone(),
            self.index_interval,
            self.fsync,
            OpenMode {
                read_only: false,
                compacted: true,
            },
        )?;
        *self = reopened;
        self.open_txns = open_txns;
        self.unsynced = unsynced;
        self.last_sync = last_sync;
        Ok(stats)
    }

    /// Calls `f` for each record of `seg` that is outside transactions or committed.
    fn each_record(
        &self,
        seg: &Segment,
        txns: &TxnState,
        mut f: impl FnMut(StoredRecord),
    ) -> Result<()> {
        seg.for_each_batch(seg.base_offset, |h, frame| {
            if h.txn_id != 0 && !txns.is_committed(h.txn_id) {
                return Ok(true);
            }
            batch::decode_records(frame, h, &mut f).map_err(|e| Error::Corrupt {
                path: seg.path.clone(),
                position: 0,
                reason: format!("{e:?}"),
            })?;
            Ok(true)
        })
    }
}
