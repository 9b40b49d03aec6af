//! Store identity: which incarnation of a persistent store's local data a checkpoint speaks for.
//!
//! A persistent store's directory holds a `.store-id` file with a random id, made when the
//! store's local data starts from nothing: the directory was missing, a RocksDB instance in it
//! had lost its `CURRENT` file (RocksDB then starts it empty), the store could not be opened and
//! was deleted, or it was wiped. A task's [`Checkpoint`](crate::Checkpoint) records the id of
//! each store next to its offset, and the runtime trusts an offset only for the store whose id
//! it names: local data recreated behind the checkpoint's back carries another id, so it is
//! wiped and restored from the changelog instead of being served as if it were complete.
//!
//! [`missing_local_data`] must run before the store is opened, because opening creates what is
//! missing.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StoreError;

/// The identity file in a persistent store's directory.
pub const STORE_ID_FILE: &str = ".store-id";

/// How a persistent store lays out its RocksDB instances in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLayout {
    /// One RocksDB instance in the store directory itself (key-value stores).
    Single,
    /// One RocksDB instance per time segment, in `segment.<id>` subdirectories (window and
    /// session stores).
    Segmented,
}

/// Why a persistent store's local data is not what RocksDB last wrote there, judged before the
/// store is opened; `None` when every RocksDB instance of the store is still there.
pub fn missing_local_data(dir: &Path, layout: StoreLayout) -> Option<String> {
    if !dir.is_dir() {
        return Some(format!("its directory {} is missing", dir.display()));
    }
    let lost_current = |db: &Path| {
        let current = db.join("CURRENT");
        (!current.is_file()).then(|| format!("{} is missing", current.display()))
    };
    match layout {
        StoreLayout::Single => lost_current(dir),
        StoreLayout::Segmented => {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) => return Some(format!("{} cannot be listed: {e}", dir.display())),
            };
            let mut segments: Vec<_> = entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with(crate::segments::SEGMENT_DIR_PREFIX))
                })
                .map(|e| e.path())
                .collect();
            segments.sort();
            segments.iter().find_map(|s| lost_current(s))
        }
    }
}

/// The id recorded in a store directory; `None` when there is none (or it is unreadable as an
/// id, which means the same: the data cannot be matched to a checkpoint).
pub fn read_store_id(store: &str, dir: &Path) -> Result<Option<String>, StoreError> {
    let path = dir.join(STORE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit());
            Ok(valid.then(|| id.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(StoreError::io(store, &path, e)),
    }
}

/// Gives the store in `dir` a new id (its local data starts from nothing) and returns it.
pub fn new_store_id(store: &str, dir: &Path) -> Result<String, StoreError> {
    let id = random_id();
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(store, dir, e))?;
    let path = dir.join(STORE_ID_FILE);
    let tmp = dir.join(format!("{STORE_ID_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(format!("{id}\n").as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| StoreError::io(store, &path, e))?;
    Ok(id)
}

/// Deletes a persistent store's directory (all of it or, after a crash part-way, none).
pub fn destroy_store_dir(store: &str, dir: &Path) -> Result<(), StoreError> {
    crate::rocks::remove_dir(store, dir)
}

/// 128 random bits as hex, from the standard library's randomly keyed hasher (fresh keys per
/// call), the time and a counter.
fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u64(count);
        h.write_u32(std::process::id());
        h.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_new_each_time_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_store_id("s", dir.path()).unwrap(), None);
        let a = new_store_id("s", dir.path()).unwrap();
        assert_eq!(read_store_id("s", dir.path()).unwrap(), Some(a.clone()));
        let b = new_store_id("s", dir.path()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        std::fs::write(dir.path().join(STORE_ID_FILE), "not an id").unwrap();
        assert_eq!(read_store_id("s", dir.path()).unwrap(), None);
    }

    #[test]
    fn a_missing_directory_or_current_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("counts");
        let reason = missing_local_data(&store, StoreLayout::Single).unwrap();
        assert!(reason.contains("directory"), "{reason}");
        std::fs::create_dir_all(&store).unwrap();
        let reason = missing_local_data(&store, StoreLayout::Single).unwrap();
        assert!(reason.contains("CURRENT"), "{reason}");
        std::fs::write(store.join("CURRENT"), "MANIFEST-000001\n").unwrap();
        assert_eq!(missing_local_data(&store, StoreLayout::Single), None);

        let windows = dir.path().join("windows");
        std::fs::create_dir_all(windows.join("segment.1")).unwrap();
        std::fs::write(windows.join("segment.1").join("CURRENT"), "x").unwrap();
        assert_eq!(missing_local_data(&windows, StoreLayout::Segmented), None);
        std::fs::create_dir_all(windows.join("segment.2")).unwrap();
        let reason = missing_local_data(&windows, StoreLayout::Segmented).unwrap();
        assert!(reason.contains("segment.2"), "{reason}");
    }
}
