//! Checkpoint files: how far each store of a task has been restored from its changelog.
//!
//! One file per task, `<state.dir>/<app-id>/<task-id>/.checkpoint`, mapping changelog
//! partition → next offset to restore from, and the id of the store the offset was written for
//! (see [`new_store_id`](crate::new_store_id)). Text format:
//!
//! ```text
//! kstreams-checkpoint 2
//! <topic> <partition> <offset> [<store-id>]      (one line per entry)
//! crc32c <8 hex digits over every preceding byte>
//! ```
//!
//! Version 1 files (entries without store ids) are still read; an entry without a store id
//! names no store, so a runtime that checks ids restores that store from its changelog.
//!
//! Written atomically (temp file, fsync, rename, fsync of the directory), so a reader sees the
//! old file or the new one, never a mix. A file that is missing, has another version, or fails
//! its CRC counts as no checkpoint: the stores are wiped and restored from offset 0.
//!
//! Contract with the runtime under at-least-once: delete the checkpoint when a task starts
//! processing (its local stores will run ahead of any offset we could name) and write it on
//! every commit after flushing stores and changelogs; on clean close, flush and write it. Then
//! a crash leaves no checkpoint and forces a full restore, while a clean restart replays only
//! the changelog tail.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StoreError;

const HEADER: &str = "kstreams-checkpoint 2";
const HEADER_V1: &str = "kstreams-checkpoint 1";
const FILE_NAME: &str = ".checkpoint";
const STORE: &str = "checkpoint";

/// A changelog topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChangelogPartition {
    /// Topic name (Kafka topic-name characters only; no whitespace).
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

impl ChangelogPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        ChangelogPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// `<state_dir>/<app_id>/<task_id>`: where a task keeps its stores and checkpoint.
pub fn task_dir(state_dir: &Path, application_id: &str, task_id: &str) -> PathBuf {
    state_dir.join(application_id).join(task_id)
}

/// `<state_dir>/<app_id>/<task_id>/<store>`: a persistent store's directory.
pub fn store_dir(state_dir: &Path, application_id: &str, task_id: &str, store: &str) -> PathBuf {
    task_dir(state_dir, application_id, task_id).join(store)
}

/// The restored-up-to offsets of one task's stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    offsets: BTreeMap<ChangelogPartition, (u64, Option<String>)>,
}

impl Checkpoint {
    /// An empty checkpoint.
    pub fn new() -> Self {
        Checkpoint::default()
    }

    /// The next offset to restore from for `partition`.
    pub fn offset(&self, partition: &ChangelogPartition) -> Option<u64> {
        self.offsets.get(partition).map(|(o, _)| *o)
    }

    /// The id of the store the offset of `partition` was written for, if it names one.
    pub fn store_id(&self, partition: &ChangelogPartition) -> Option<&str> {
        self.offsets
            .get(partition)
            .and_then(|(_, id)| id.as_deref())
    }

    /// Records that `partition` is restored up to (not including) `next_offset`.
    pub fn set_offset(&mut self, partition: ChangelogPartition, next_offset: u64) {
        self.offsets.insert(partition, (next_offset, None));
    }

    /// Records that the store with id `store_id` is restored from `partition` up to (not
    /// including) `next_offset`.
    pub fn set_store_offset(
        &mut self,
        partition: ChangelogPartition,
        next_offset: u64,
        store_id: impl Into<String>,
    ) {
        self.offsets
            .insert(partition, (next_offset, Some(store_id.into())));
    }

    /// Forgets `partition` (e.g. its store was removed).
    pub fn remove(&mut self, partition: &ChangelogPartition) -> Option<u64> {
        self.offsets.remove(partition).map(|(o, _)| o)
    }

    /// All entries, ordered by topic and partition.
    pub fn iter(&self) -> impl Iterator<Item = (&ChangelogPartition, u64)> {
        self.offsets.iter().map(|(p, (o, _))| (p, *o))
    }

    /// The checkpoint file of a task directory.
    pub fn path(task_dir: &Path) -> PathBuf {
        task_dir.join(FILE_NAME)
    }

    /// Reads the task's checkpoint. `Ok(None)` when there is none or it is invalid (logged at
    /// `warn`); errors only when the file exists but cannot be read.
    pub fn read(task_dir: &Path) -> Result<Option<Checkpoint>, StoreError> {
        let path = Self::path(task_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(STORE, &path, e)),
        };
        match Self::decode(&bytes) {
            Ok(c) => Ok(Some(c)),
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason, "ignoring invalid checkpoint file");
                Ok(None)
            }
        }
    }

    /// Writes the checkpoint atomically, creating the task directory if needed.
    pub fn write(&self, task_dir: &Path) -> Result<(), StoreError> {
        for (p, (_, id)) in &self.offsets {
            if p.topic.is_empty() || p.topic.chars().any(char::is_whitespace) {
                return Err(StoreError::invalid(
                    STORE,
                    format!("topic name {:?} cannot be checkpointed", p.topic),
                ));
            }
            if let Some(id) = id {
                if id.is_empty() || id.chars().any(char::is_whitespace) {
                    return Err(StoreError::invalid(
                        STORE,
                        format!("store id {id:?} cannot be checkpointed"),
                    ));
                }
            }
        }
        std::fs::create_dir_all(task_dir).map_err(|e| StoreError::io(STORE, task_dir, e))?;
        let path = Self::path(task_dir);
        let tmp = task_dir.join(format!("{FILE_NAME}.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(&self.encode()).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(task_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(task_dir))?;
        Ok(())
    }

    /// Deletes the task's checkpoint file (a no-op when absent).
    pub fn delete(task_dir: &Path) -> Result<(), StoreError> {
        let path = Self::path(task_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(STORE, &path, e)),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut body = format!("{HEADER}\n");
        for (p, (o, id)) in &self.offsets {
            match id {
                Some(id) => body.push_str(&format!("{} {} {} {}\n", p.topic, p.partition, o, id)),
                None => body.push_str(&format!("{} {} {}\n", p.topic, p.partition, o)),
            }
        }
        let crc = crc32c::crc32c(body.as_bytes());
        body.push_str(&format!("crc32c {crc:08x}\n"));
        body.into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Checkpoint, &'static str> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or("truncated")?;
        let (body, crc_line) = text.split_at(body_end);
        let crc_hex = crc_line
            .trim_end()
            .strip_prefix("crc32c ")
            .ok_or("missing crc line")?;
        let crc = u32::from_str_radix(crc_hex, 16).map_err(|_| "bad crc")?;
        if crc != crc32c::crc32c(body.as_bytes()) {
            return Err("crc mismatch");
        }
        let mut lines = body.lines();
        let with_ids = match lines.next() {
            Some(HEADER) => true,
            Some(HEADER_V1) => false,
            _ => return Err("unknown version"),
        };
        let mut checkpoint = Checkpoint::new();
        for line in lines {
            let mut parts = line.split(' ');
            let (Some(topic), Some(partition), Some(offset), id, None) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return Err("bad entry");
            };
            if id.is_some() && !with_ids {
                return Err("bad entry");
            }
            let partition = partition.parse().map_err(|_| "bad partition")?;
            let offset = offset.parse().map_err(|_| "bad offset")?;
            let partition = ChangelogPartition::new(topic, partition);
            match id {
                Some(id) => checkpoint.set_store_offset(partition, offset, id),
                None => checkpoint.set_offset(partition, offset),
            }
        }
        Ok(checkpoint)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::io(STORE, path, e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Checkpoint {
        let mut c = Checkpoint::new();
        c.set_store_offset(
            ChangelogPartition::new("app-counts-changelog", 3),
            42,
            "ab12",
        );
        c.set_offset(ChangelogPartition::new("app-win-changelog", 3), 7);
        c
    }

    #[test]
    fn entries_keep_their_store_ids_and_version_1_files_still_read() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path()).unwrap();
        let read = Checkpoint::read(dir.path()).unwrap().unwrap();
        let counts = ChangelogPartition::new("app-counts-changelog", 3);
        assert_eq!(read.store_id(&counts), Some("ab12"));
        assert_eq!(read.offset(&counts), Some(42));
        assert_eq!(
            read.store_id(&ChangelogPartition::new("app-win-changelog", 3)),
            None
        );
        let body = "kstreams-checkpoint 1\nt 0 5\n";
        let v1 = format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()));
        std::fs::write(Checkpoint::path(dir.path()), v1).unwrap();
        let read = Checkpoint::read(dir.path()).unwrap().unwrap();
        let t = ChangelogPartition::new("t", 0);
        assert_eq!((read.offset(&t), read.store_id(&t)), (Some(5), None));
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let task = task_dir(dir.path(), "app", "0_3");
        assert_eq!(Checkpoint::read(&task).unwrap(), None);
        sample().write(&task).unwrap();
        assert_eq!(Checkpoint::read(&task).unwrap(), Some(sample()));
        assert!(!task.join(".checkpoint.tmp").exists());
        Checkpoint::delete(&task).unwrap();
        assert_eq!(Checkpoint::read(&task).unwrap(), None);
    }

    #[test]
    fn corrupt_file_is_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path()).unwrap();
        let path = Checkpoint::path(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip one digit of an offset: still parses, but the CRC no longer matches.
        let pos = bytes.iter().position(|b| *b == b'4').unwrap();
        bytes[pos] = b'5';
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
        std::fs::write(&path, b"").unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
        std::fs::write(&path, b"kstreams-checkpoint 3\ncrc32c 00000000\n").unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
    }

    #[test]
    fn rejects_unencodable_topic() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Checkpoint::new();
        c.set_offset(ChangelogPartition::new("a b", 0), 1);
        assert!(c.write(dir.path()).is_err());
    }
}
