//! The metadata journal of the embedded log: committed group offsets and transaction outcomes.
//!
//! An append-only file of CRC-framed entries, replayed on open. A transaction's commit is one
//! entry, so its offsets and its visibility change together: that entry is the atomic commit
//! record read-committed readers honour. When the file grows past a limit it is rewritten as a
//! snapshot (latest offsets, aborted transactions, next transaction id) and renamed over.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::LogRepair;
use crate::error::{Error, Result};
use crate::log::OffsetCommit;
use crate::record::TopicPartition;

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Entry {
    Offsets {
        group: String,
        offsets: Vec<(String, u32, u64)>,
    },
    TxnBegin {
        id: u64,
    },
    TxnCommit {
        id: u64,
        group: Option<String>,
        offsets: Vec<(String, u32, u64)>,
    },
    TxnAbort {
        id: u64,
    },
    NextTxnId {
        next: u64,
    },
    /// `Offsets` with metadata beside each offset (added last, so older journals still read).
    OffsetsWithMetadata {
        group: String,
        offsets: Vec<(String, u32, u64, String)>,
    },
    /// `TxnCommit` with metadata beside each offset.
    TxnCommitWithMetadata {
        id: u64,
        group: Option<String>,
        offsets: Vec<(String, u32, u64, String)>,
    },
    /// A topic was deleted: every group's offsets in it go.
    TopicDeleted {
        topic: String,
    },
}

/// A group's committed positions: per partition, the next offset and its metadata.
pub(crate) type GroupState = BTreeMap<String, BTreeMap<TopicPartition, (u64, String)>>;

/// What replaying the journal yields.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub(crate) groups: GroupState,
    pub(crate) next_txn_id: u64,
    pub(crate) aborted: BTreeSet<u64>,
    /// Begun but neither committed nor aborted: in flight when the process stopped.
    pub(crate) unfinished: BTreeSet<u64>,
}

pub(crate) struct Journal {
    path: PathBuf,
    /// `None` when the log was opened read-only.
    file: Option<File>,
    size: u64,
    snapshot_bytes: u64,
}

pub(crate) fn offsets_vec(offsets: &[OffsetCommit]) -> Vec<(String, u32, u64, String)> {
    offsets
        .iter()
        .map(|c| {
            (
                c.tp.topic.clone(),
                c.tp.partition,
                c.offset,
                c.metadata.clone(),
            )
        })
        .collect()
}

fn encode(entry: &Entry) -> Result<Vec<u8>> {
    let payload =
        bincode::serde::encode_to_vec(entry, bincode::config::standard()).map_err(|e| {
            Error::Corrupt {
                path: PathBuf::new(),
                position: 0,
                reason: format!("encode: {e}"),
            }
        })?;
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

impl Journal {
    /// Opens the journal, replaying it. A torn last entry is truncated (with `read_only`,
    /// ignored) and returned as a repair; damage before it, or in the first entry, is an error
    /// naming the position. A new journal is created with a first entry written whole (a
    /// temporary file renamed into place), so a first entry that does not read is damage,
    /// never a torn write. With `read_only` no file is changed and transactions left open
    /// stay in [`Replayed::unfinished`].
    pub(crate) fn open(
        path: PathBuf,
        snapshot_bytes: u64,
        read_only: bool,
    ) -> Result<(Journal, Replayed, Option<LogRepair>)> {
        let mut data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        if data.is_empty() && !read_only {
            data = encode(&Entry::NextTxnId { next: 1 })?;
            let tmp = path.with_extension("tmp");
            write_synced(&tmp, &data)?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
        }
        let (replayed, pos, torn) = replay(&path, &data)?;
        let repair = torn.map(|reason| LogRepair {
            path: path.clone(),
            position: pos as u64,
            bytes: (data.len() - pos) as u64,
            reason: format!("torn journal entry ({reason})"),
            applied: !read_only,
        });
        let file = if read_only {
            None
        } else {
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            Some(file)
        };
        let mut journal = Journal {
            path,
            file,
            size: pos as u64,
            snapshot_bytes,
        };
        if read_only {
            if let Some(r) = &repair {
                tracing::warn!(repair = %r, "ignoring a torn journal entry (the log is open read-only)");
            }
            return Ok((journal, replayed, repair));
        }
        if let Some(r) = &repair {
            tracing::warn!(repair = %r, "truncating a torn journal entry");
            journal
                .writable()?
                .set_len(pos as u64)
                .map_err(|e| Error::io("truncate", &journal.path, e))?;
        }
        let mut replayed = replayed;
        // Transactions that were open when the process stopped can never commit now.
        for id in std::mem::take(&mut replayed.unfinished) {
            tracing::warn!(
                txn = id,
                "aborting a transaction left open by an earlier run"
            );
            journal.append(&Entry::TxnAbort { id }, true)?;
            replayed.aborted.insert(id);
        }
        if journal.size > journal.snapshot_bytes {
            journal.snapshot(&replayed.groups, &replayed.aborted, replayed.next_txn_id)?;
        }
        Ok((journal, replayed, repair))
    }

    /// The file to write to; none when the log was opened read-only.
    fn writable(&mut self) -> Result<&mut File> {
        self.file.as_mut().ok_or_else(|| Error::ReadOnly {
            path: self.path.clone(),
            operation: "write the journal".into(),
        })
    }

    pub(crate) fn append(&mut self, entry: &Entry, sync: bool) -> Result<()> {
        let frame = encode(entry)?;
        let size = self.size;
        let file = self.writable()?;
        if let Err(e) = file.write_all(&frame) {
            let _ = file.set_len(size);
            return Err(Error::io("append to", &self.path, e));
        }
        self.size += frame.len() as u64;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        match &self.file {
            Some(file) => file
                .sync_data()
                .map_err(|e| Error::io("sync", &self.path, e)),
            None => Ok(()),
        }
    }

    pub(crate) fn needs_snapshot(&self) -> bool {
        self.size > self.snapshot_bytes
    }

    /// Rewrites the journal as the minimal set of entries that replays to the same state.
    pub(crate) fn snapshot(
        &mut self,
        groups: &GroupState,
        aborted: &BTreeSet<u64>,
        next_txn_id: u64,
    ) -> Result<()> {
        self.writable()?;
        let mut out = encode(&Entry::NextTxnId { next: next_txn_id })?;
        for id in aborted {
            out.extend(encode(&Entry::TxnAbort { id: *id })?);
        }
        for (group, offsets) in groups {
            let offsets = offsets
                .iter()
                .map(|(tp, (o, m))| (tp.topic.clone(), tp.partition, *o, m.clone()))
                .collect();
            out.extend(encode(&Entry::OffsetsWithMetadata {
                group: group.clone(),
                offsets,
            })?);
        }
        let tmp = self.path.with_extension("tmp");
        write_synced(&tmp, &out)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| Error::io("rename", &tmp, e))?;
        self.file = Some(
            OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(|e| Error::io("open", &self.path, e))?,
        );
        self.size = out.len() as u64;
        Ok(())
    }
}

/// Replays the entries of `data`: the state, where the valid entries end, and why the rest
/// (if any) is a torn last entry.
fn replay(path: &Path, data: &[u8]) -> Result<(Replayed, usize, Option<String>)> {
    let mut replayed = Replayed::default();
    let mut pos = 0usize;
    while pos < data.len() {
        let rest = &data[pos..];
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            position: pos as u64,
            reason: if pos == 0 {
                format!("the first entry is not valid ({reason}): the journal is damaged")
            } else {
                reason
            },
        };
        // Damage to the last entry is a torn write, unless it is the first entry (written
        // whole when the journal was made) or a valid entry follows it.
        let damaged = |reason: String| -> Result<()> {
            if pos == 0 {
                return Err(corrupt(reason));
            }
            check_nothing_valid_after(path, data, pos, &reason)
        };
        if rest.len() < 8 {
            damaged("incomplete entry header".into())?;
            return Ok((replayed, pos, Some("incomplete entry header".into())));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let Some(payload) = rest.get(8..).and_then(|r| r.get(..len)) else {
            damaged("entry length runs past the end".into())?;
            return Ok((replayed, pos, Some("incomplete entry".into())));
        };
        let entry = if crc32c::crc32c(payload) == crc {
            bincode::serde::decode_from_slice::<Entry, _>(payload, bincode::config::standard())
                .map(|(e, _)| e)
                .map_err(|e| e.to_string())
        } else {
            Err("CRC mismatch".to_string())
        };
        match entry {
            Ok(entry) => apply(&mut replayed, entry),
            Err(reason) if pos + 8 + len == data.len() => {
                damaged(reason.clone())?;
                return Ok((replayed, pos, Some(reason)));
            }
            Err(reason) => return Err(corrupt(reason)),
        }
        pos += 8 + len;
    }
    Ok((replayed, pos, None))
}

/// Decodes the entry framed at the start of `buf`, if it is complete and valid.
fn decode_frame(buf: &[u8]) -> Option<Entry> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    let payload = buf.get(8..8usize.checked_add(len)?)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    bincode::serde::decode_from_slice::<Entry, _>(payload, bincode::config::standard())
        .ok()
        .map(|(e, _)| e)
}

/// A torn write leaves a prefix of the last entry only. If a complete, valid entry starts
/// after the damaged one at `pos`, the damage is not a torn tail (a flipped bit in a length,
/// say), and cutting there would silently drop committed entries: fail instead.
fn check_nothing_valid_after(path: &Path, data: &[u8], pos: usize, reason: &str) -> Result<()> {
    match (pos + 1..data.len()).find(|&q| decode_frame(&data[q..]).is_some()) {
        None => Ok(()),
        Some(q) => Err(Error::Corrupt {
            path: path.to_path_buf(),
            position: pos as u64,
            reason: format!("{reason}, but a valid entry follows at byte {q}"),
        }),
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| Error::io("create", path, e))?;
    f.write_all(data).map_err(|e| Error::io("write", path, e))?;
    f.sync_all().map_err(|e| Error::io("sync", path, e))
}

fn apply(r: &mut Replayed, entry: Entry) {
    let put = |r: &mut Replayed, group: String, offsets: Vec<(String, u32, u64, String)>| {
        let g = r.groups.entry(group).or_default();
        for (topic, partition, offset, metadata) in offsets {
            g.insert(TopicPartition { topic, partition }, (offset, metadata));
        }
    };
    let plain = |offsets: Vec<(String, u32, u64)>| {
        offsets
            .into_iter()
            .map(|(t, p, o)| (t, p, o, String::new()))
            .collect()
    };
    let commit = |r: &mut Replayed, id: u64| {
        r.unfinished.remove(&id);
        r.next_txn_id = r.next_txn_id.max(id + 1);
    };
    match entry {
        Entry::Offsets { group, offsets } => put(r, group, plain(offsets)),
        Entry::OffsetsWithMetadata { group, offsets } => put(r, group, offsets),
        Entry::TxnBegin { id } => {
            r.unfinished.insert(id);
            r.next_txn_id = r.next_txn_id.max(id + 1);
        }
        Entry::TxnCommit { id, group, offsets } => {
            commit(r, id);
            if let Some(group) = group {
                put(r, group, plain(offsets));
            }
        }
        Entry::TxnCommitWithMetadata { id, group, offsets } => {
            commit(r, id);
            if let Some(group) = group {
                put(r, group, offsets);
            }
        }
        Entry::TxnAbort { id } => {
            r.unfinished.remove(&id);
            r.aborted.insert(id);
            r.next_txn_id = r.next_txn_id.max(id + 1);
        }
        Entry::NextTxnId { next } => r.next_txn_id = r.next_txn_id.max(next),
        Entry::TopicDeleted { topic } => crate::log::drop_offsets_of(&mut r.groups, &topic),
    }
}
