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
    file: File,
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
    /// Opens the journal, replaying it. A torn last entry is truncated; damage before it is an
    /// error naming the position.
    pub(crate) fn open(path: PathBuf, snapshot_bytes: u64) -> Result<(Journal, Replayed)> {
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let mut replayed = Replayed::default();
        let mut pos = 0usize;
        while pos < data.len() {
            let rest = &data[pos..];
            let torn = |reason: &str| {
                tracing::warn!(journal = %path.display(), position = pos, reason, "truncating a torn journal entry");
            };
            if rest.len() < 8 {
                torn("incomplete entry header");
                break;
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            if rest.len() < 8 + len {
                check_nothing_valid_after(&path, &data, pos, "entry length runs past the end")?;
                torn("incomplete entry");
                break;
            }
            let payload = &rest[8..8 + len];
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
                    check_nothing_valid_after(&path, &data, pos, &reason)?;
                    torn(&reason);
                    break;
                }
                Err(reason) => {
                    return Err(Error::Corrupt {
                        path,
                        position: pos as u64,
                        reason,
                    });
                }
            }
            pos += 8 + len;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        if (pos as u64) < data.len() as u64 {
            file.set_len(pos as u64)
                .map_err(|e| Error::io("truncate", &path, e))?;
        }
        let mut journal = Journal {
            path,
            file,
            size: pos as u64,
            snapshot_bytes,
        };
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
        Ok((journal, replayed))
    }

    pub(crate) fn append(&mut self, entry: &Entry, sync: bool) -> Result<()> {
        let frame = encode(entry)?;
        if let Err(e) = self.file.write_all(&frame) {
            let _ = self.file.set_len(self.size);
            return Err(Error::io("append to", &self.path, e));
        }
        self.size += frame.len() as u64;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.path, e))
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
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("open", &self.path, e))?;
        self.size = out.len() as u64;
        Ok(())
    }
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
    }
}
