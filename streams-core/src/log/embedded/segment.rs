//! One segment of a partition: a `.log` file of batches and its sparse offset index.
//!
//! A segment is appended to while it is the partition's last one (active) and immutable after
//! it rolls. On roll its index is written to `<base>.index` with the segment's size, end offset
//! and largest times, so a reopen needs no scan of closed segments; the active segment is
//! always rescanned on open (that is where a crash can leave a torn batch).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::batch::{self, BatchHeader, FrameError};
use super::LogRepair;
use crate::error::{Error, Result};

const INDEX_MAGIC: &[u8; 8] = b"KSIDX001";

/// Name of the files of the segment starting at `base`.
pub(crate) fn segment_paths(dir: &Path, base: u64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base:020}.log")),
        dir.join(format!("{base:020}.index")),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) offset: u64,
    pub(crate) position: u64,
}

pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    pub(crate) path: PathBuf,
    pub(crate) index_path: PathBuf,
    file: File,
    pub(crate) size: u64,
    /// Offset after the last record written to this segment (`base_offset` when empty).
    pub(crate) next_offset: u64,
    pub(crate) max_append_time: i64,
    pub(crate) max_timestamp: i64,
    index: Vec<IndexEntry>,
    bytes_since_index: u64,
    index_interval: u64,
    /// Whether `next_offset` was read from the index written when the segment closed (for a
    /// compacted segment that is where its records would have ended), not found by a scan.
    pub(crate) indexed: bool,
}

/// What a scan of a segment file found.
pub(crate) enum ScanEnd {
    /// Every byte belongs to a valid batch.
    Clean,
    /// The file ends in an incomplete or damaged batch starting at this position.
    TornTail { position: u64, reason: String },
}

impl Segment {
    /// Creates an empty segment file.
    pub(crate) fn create(dir: &Path, base: u64, index_interval: u64) -> Result<Self> {
        let (path, index_path) = segment_paths(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create segment", &path, e))?;
        Ok(Segment {
            base_offset: base,
            path,
            index_path,
            file,
            size: 0,
            next_offset: base,
            max_append_time: i64::MIN,
            max_timestamp: i64::MIN,
            index: Vec::new(),
            bytes_since_index: 0,
            index_interval,
            indexed: false,
        })
    }

    fn open_file(path: &Path, read_only: bool) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .append(!read_only)
            .open(path)
            .map_err(|e| Error::io("open segment", path, e))
    }

    /// Opens a closed segment from its index file, or by scanning it when the index is missing
    /// or unreadable (and, unless `read_only`, writing the index again). Any damage in a
    /// closed segment is an error: it is not the tail.
    pub(crate) fn open_closed(
        dir: &Path,
        base: u64,
        index_interval: u64,
        read_only: bool,
    ) -> Result<Self> {
        let (path, index_path) = segment_paths(dir, base);
        let file = Self::open_file(&path, read_only)?;
        let actual_size = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        let mut seg = Segment {
            base_offset: base,
            path,
            index_path,
            file,
            size: actual_size,
            next_offset: base,
            max_append_time: i64::MIN,
            max_timestamp: i64::MIN,
            index: Vec::new(),
            bytes_since_index: 0,
            index_interval,
            indexed: false,
        };
        match seg.load_index() {
            Ok(Some(expected_size)) => {
                if expected_size != actual_size {
                    return Err(Error::Corrupt {
                        path: seg.path.clone(),
                        position: actual_size.min(expected_size),
                        reason: format!(
                            "segment is {actual_size} bytes but its index says {expected_size}"
                        ),
                    });
                }
                seg.indexed = true;
                Ok(seg)
            }
            Ok(None) | Err(_) => {
                tracing::warn!(segment = %seg.path.display(), "segment index missing or unreadable; rebuilding it by scanning");
                match seg.scan()? {
                    ScanEnd::Clean => {}
                    ScanEnd::TornTail { position, reason } => {
                        return Err(Error::Corrupt {
                            path: seg.path.clone(),
                            position,
                            reason,
                        })
                    }
                }
                if !read_only {
                    seg.write_index()?;
                }
                Ok(seg)
            }
        }
    }

    /// Opens the active (last) segment, scanning it fully. A torn tail is truncated, or with
    /// `read_only` left in the file and ignored; either way it is returned as a repair.
    pub(crate) fn open_active(
        dir: &Path,
        base: u64,
        index_interval: u64,
        read_only: bool,
    ) -> Result<(Self, Option<LogRepair>)> {
        let (path, index_path) = segment_paths(dir, base);
        let file = Self::open_file(&path, read_only)?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        let mut seg = Segment {
            base_offset: base,
            path,
            index_path,
            file,
            size,
            next_offset: base,
            max_append_time: i64::MIN,
            max_timestamp: i64::MIN,
            index: Vec::new(),
            bytes_since_index: 0,
            index_interval,
            indexed: false,
        };
        // A roll creates the next segment before it writes this one's index, so an index
        // here means the segment was closed and the ones after it are gone.
        if seg.index_path.exists() {
            return Err(Error::Corrupt {
                path: seg.index_path.clone(),
                position: 0,
                reason: format!(
                    "segment {} was closed (it has an index) but no segment follows it: the \
                     partition's last segment is missing",
                    seg.path.display()
                ),
            });
        }
        let mut repair = None;
        if let ScanEnd::TornTail { position, reason } = seg.scan()? {
            let cut = LogRepair {
                path: seg.path.clone(),
                position,
                bytes: size - position,
                reason: format!("torn batch at the end of the log ({reason})"),
                applied: !read_only,
            };
            if read_only {
                tracing::warn!(repair = %cut, "ignoring a torn batch (the log is open read-only)");
            } else {
                tracing::warn!(repair = %cut, "truncating a torn batch at the end of the log");
                seg.file
                    .set_len(position)
                    .map_err(|e| Error::io("truncate", &seg.path, e))?;
                seg.file
                    .sync_all()
                    .map_err(|e| Error::io("sync", &seg.path, e))?;
            }
            seg.size = position;
            repair = Some(cut);
        }
        Ok((seg, repair))
    }

    /// Walks every batch, rebuilding the index and end offset. Damage followed by valid-looking
    /// bytes is corruption (an error); damage that runs to the end of the file is a torn tail.
    fn scan(&mut self) -> Result<ScanEnd> {
        self.index.clear();
        self.bytes_since_index = 0;
        self.next_offset = self.base_offset;
        let size = self.size;
        let mut pos = 0u64;
        let mut buf = Vec::new();
        while pos < size {
            let header = match self.read_frame_at(pos, size, &mut buf) {
                Ok(h) => h,
                Err(FrameError::Truncated) => {
                    // A length field that runs past the end is a torn write, or a damaged
                    // length in front of more batches: only the first may be cut.
                    self.check_nothing_valid_after(pos, size, "batch length runs past the end")?;
                    return Ok(ScanEnd::TornTail {
                        position: pos,
                        reason: "incomplete batch".into(),
                    });
                }
                Err(FrameError::Invalid(reason)) => {
                    // A complete-looking last batch with a bad CRC is a write that did not
                    // finish; anything followed by more data is damage to keep, not cut.
                    if self.rest_is_zero(pos, size)? {
                        return Ok(ScanEnd::TornTail {
                            position: pos,
                            reason,
                        });
                    }
                    let is_last = batch::frame_len(&buf).is_ok_and(|l| pos + l as u64 >= size);
                    if is_last {
                        self.check_nothing_valid_after(pos, size, &reason)?;
                        return Ok(ScanEnd::TornTail {
                            position: pos,
                            reason,
                        });
                    }
                    return Err(Error::Corrupt {
                        path: self.path.clone(),
                        position: pos,
                        reason,
                    });
                }
            };
            if header.base_offset < self.next_offset {
                return Err(Error::Corrupt {
                    path: self.path.clone(),
                    position: pos,
                    reason: format!(
                        "batch offset {} goes backwards (expected at least {})",
                        header.base_offset, self.next_offset
                    ),
                });
            }
            let len = buf.len() as u64;
            self.note_batch(&header, pos, len);
            pos += len;
        }
        Ok(ScanEnd::Clean)
    }

    /// Fails with [`Error::Corrupt`] at `pos` when a complete, valid batch that continues the
    /// offsets read so far starts anywhere in `(pos, to)`. A torn write leaves a prefix of a
    /// single batch; a valid batch after the damage means the damage is in the middle of the
    /// segment (for example a flipped bit in a length field), and cutting there would silently
    /// drop acknowledged data.
    fn check_nothing_valid_after(&self, pos: u64, to: u64, reason: &str) -> Result<()> {
        let min_frame = (batch::FRAME_HEADER + batch::BODY_HEADER) as u64;
        if to.saturating_sub(pos) <= min_frame {
            return Ok(());
        }
        let mut rest = vec![0u8; (to - pos - 1) as usize];
        self.file
            .read_exact_at(&mut rest, pos + 1)
            .map_err(|e| Error::io("read", &self.path, e))?;
        let found = (0..rest.len()).find(|&i| {
            batch::check_frame(&rest[i..]).is_ok_and(|(h, _)| h.base_offset >= self.next_offset)
        });
        match found {
            None => Ok(()),
            Some(i) => Err(Error::Corrupt {
                path: self.path.clone(),
                position: pos,
                reason: format!(
                    "{reason}, but a valid batch follows at byte {}",
                    pos + 1 + i as u64
                ),
            }),
        }
    }

    fn rest_is_zero(&self, from: u64, to: u64) -> Result<bool> {
        let mut buf = vec![0u8; (to - from).min(1 << 20) as usize];
        let mut pos = from;
        while pos < to {
            let n = ((to - pos) as usize).min(buf.len());
            self.file
                .read_exact_at(&mut buf[..n], pos)
                .map_err(|e| Error::io("read", &self.path, e))?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            pos += n as u64;
        }
        Ok(true)
    }

    /// Reads the frame at `pos` into `buf` (whole frame) and checks it.
    pub(crate) fn read_frame_at(
        &self,
        pos: u64,
        limit: u64,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<BatchHeader, FrameError> {
        let avail = limit.saturating_sub(pos);
        buf.clear();
        if avail < batch::FRAME_HEADER as u64 {
            buf.resize(avail as usize, 0);
            let _ = self.file.read_exact_at(buf, pos);
            return Err(FrameError::Truncated);
        }
        buf.resize(batch::FRAME_HEADER, 0);
        self.file
            .read_exact_at(buf, pos)
            .map_err(|e| FrameError::Invalid(format!("read failed: {e}")))?;
        let total = batch::frame_len(buf)?;
        if total as u64 > avail {
            return Err(FrameError::Truncated);
        }
        buf.resize(total, 0);
        self.file
            .read_exact_at(
                &mut buf[batch::FRAME_HEADER..],
                pos + batch::FRAME_HEADER as u64,
            )
            .map_err(|e| FrameError::Invalid(format!("read failed: {e}")))?;
        batch::check_frame(buf).map(|(h, _)| h)
    }

    fn note_batch(&mut self, header: &BatchHeader, pos: u64, len: u64) {
        if self.index.is_empty() || self.bytes_since_index >= self.index_interval {
            self.index.push(IndexEntry {
                offset: header.base_offset,
                position: pos,
            });
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        self.next_offset = header.next_offset();
        self.max_append_time = self.max_append_time.max(header.append_time);
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
    }

    /// Appends an encoded frame (one batch) whose header is `header`.
    pub(crate) fn append_frame(&mut self, frame: &[u8], header: &BatchHeader) -> Result<()> {
        let pos = self.size;
        if let Err(e) = self.file.write_all(frame) {
            // Leave no partial batch behind for readers of this process; a crash here is
            // handled by tail recovery.
            let _ = self.file.set_len(pos);
            return Err(Error::io("append to", &self.path, e));
        }
        self.size += frame.len() as u64;
        self.note_batch(header, pos, frame.len() as u64);
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.path, e))
    }

    /// Byte position of the batch holding `offset`, or of the last batch before it.
    pub(crate) fn position_for(&self, offset: u64) -> u64 {
        match self.index.partition_point(|e| e.offset <= offset) {
            0 => 0,
            i => self.index[i - 1].position,
        }
    }

    /// Calls `f` for each batch from the one containing `from_offset` onwards, until it returns
    /// `false`. Damage is an error naming this file and the position.
    pub(crate) fn for_each_batch(
        &self,
        from_offset: u64,
        mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut pos = self.position_for(from_offset);
        let mut buf = Vec::new();
        while pos < self.size {
            let header = self.read_frame_at(pos, self.size, &mut buf).map_err(|e| {
                let reason = match e {
                    FrameError::Truncated => "batch runs past the end of the segment".into(),
                    FrameError::Invalid(r) => r,
                };
                Error::Corrupt {
                    path: self.path.clone(),
                    position: pos,
                    reason,
                }
            })?;
            pos += buf.len() as u64;
            if header.next_offset() <= from_offset {
                continue;
            }
            if !f(&header, &buf)? {
                break;
            }
        }
        Ok(())
    }

    /// Writes the index file, making this segment closed.
    pub(crate) fn write_index(&self) -> Result<()> {
        let mut out = Vec::with_capacity(64 + self.index.len() * 16);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.next_offset.to_le_bytes());
        out.extend_from_slice(&self.max_append_time.to_le_bytes());
        out.extend_from_slice(&self.max_timestamp.to_le_bytes());
        out.extend_from_slice(&(self.index.len() as u64).to_le_bytes());
        for e in &self.index {
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.position.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.index_path.with_extension("index.tmp");
        std::fs::write(&tmp, &out).map_err(|e| Error::io("write index", &tmp, e))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("sync index", &tmp, e))?;
        std::fs::rename(&tmp, &self.index_path)
            .map_err(|e| Error::io("rename index", &self.index_path, e))
    }

    /// Loads the index file; `Ok(None)` when there is none. Returns the segment size it records.
    fn load_index(&mut self) -> std::result::Result<Option<u64>, String> {
        let data = match std::fs::read(&self.index_path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if data.len() < 8 + 40 + 4 || &data[..8] != INDEX_MAGIC {
            return Err("bad index header".into());
        }
        let (body, crc) = data.split_at(data.len() - 4);
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != crc {
            return Err("index CRC mismatch".into());
        }
        let word = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&body[i..i + 8]);
            a
        };
        let size = u64::from_le_bytes(word(8));
        self.next_offset = u64::from_le_bytes(word(16));
        self.max_append_time = i64::from_le_bytes(word(24));
        self.max_timestamp = i64::from_le_bytes(word(32));
        let n = u64::from_le_bytes(word(40)) as usize;
        if body.len() != 48 + n * 16 {
            return Err("index length does not match its entry count".into());
        }
        self.index = (0..n)
            .map(|i| IndexEntry {
                offset: u64::from_le_bytes(word(48 + i * 16)),
                position: u64::from_le_bytes(word(56 + i * 16)),
            })
            .collect();
        Ok(Some(size))
    }

    /// Deletes the segment's files.
    pub(crate) fn delete(self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| Error::io("delete segment", &self.path, e))?;
        match std::fs::remove_file(&self.index_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("delete index", &self.index_path, e)),
        }
    }
}
