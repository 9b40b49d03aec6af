//! Opening an embedded log: the directory lock, replaying the journal, opening every topic's
//! partitions, and what recovery repaired on the way.
//!
//! A read-only open ([`EmbeddedLogConfig::read_only`]) takes no lock and changes no file, so
//! it can look at a log an application is writing: it sees the log as it was when it opened,
//! ignores a torn tail (reporting it as a repair a writer would make) and refuses every write
//! with [`Error::ReadOnly`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::journal::Journal;
use super::partition::{OpenMode, Partition};
use super::{now_ms, spawn_cleaner, EmbeddedLog, EmbeddedLogConfig, Inner, Topic, TxnState};
use crate::error::{Error, Result};
use crate::log::{CleanupPolicy, TopicConfig};
use crate::record::TopicPartition;

/// Something recovery found damaged at the end of a file when the log opened: a batch or
/// journal entry a crash left half-written. A writer cuts it ([`LogRepair::applied`]); a
/// read-only open leaves the file as it is and reads up to `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRepair {
    /// The file.
    pub path: PathBuf,
    /// Where the damage starts: the bytes before it are kept.
    pub position: u64,
    /// Bytes from `position` to the end of the file.
    pub bytes: u64,
    /// What was found.
    pub reason: String,
    /// Whether the bytes were cut (false for a read-only open).
    pub applied: bool,
}

impl fmt::Display for LogRepair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = if self.applied {
            "cut"
        } else {
            "left (read-only)"
        };
        write!(
            f,
            "{}: {} at byte {}: {} bytes {done}",
            self.path.display(),
            self.reason,
            self.position,
            self.bytes
        )
    }
}

fn lock_dir(root: &Path) -> Result<File> {
    let path = root.join(".lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::Locked {
                path,
                holder: if holder.is_empty() {
                    "holder unknown".into()
                } else {
                    holder.into()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
    }
    let text = format!("pid {} since {} ms", std::process::id(), now_ms());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()))
        .map_err(|e| Error::io("write lock file", &path, e))?;
    Ok(file)
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `root` with default settings.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(root, EmbeddedLogConfig::default())
    }

    /// Opens (creating if needed) the log in `root`, recovering from a crash if the last run
    /// did not close cleanly: torn batches at the end of partitions are truncated, transactions
    /// left open are aborted ([`EmbeddedLog::repairs`] lists what was cut). With
    /// [`EmbeddedLogConfig::read_only`] nothing is created or changed and no lock is taken: the
    /// log must exist.
    pub fn open_with(root: impl AsRef<Path>, config: EmbeddedLogConfig) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let topics_dir = root.join("topics");
        let lock = if config.read_only {
            if !topics_dir.is_dir() {
                return Err(Error::io(
                    "open the log (read-only)",
                    &topics_dir,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            None
        } else {
            std::fs::create_dir_all(&topics_dir)
                .map_err(|e| Error::io("create log directory", &root, e))?;
            let lock = lock_dir(&root)?;
            // What a delete_topic moved out of `topics/` but did not finish removing.
            let trash = root.join("deleted");
            if trash.is_dir() {
                if let Err(e) = std::fs::remove_dir_all(&trash) {
                    tracing::warn!(dir = %trash.display(), error = %e, "cannot remove deleted topics' files");
                }
            }
            Some(lock)
        };
        let (journal, replayed, journal_repair) = Journal::open(
            root.join("meta.journal"),
            config.journal_snapshot_bytes,
            config.read_only,
        )?;
        let mut repairs: Vec<LogRepair> = journal_repair.into_iter().collect();
        let txns = TxnState {
            next_id: replayed.next_txn_id.max(1),
            // Only a read-only open keeps transactions the journal leaves unfinished: a writer
            // may still end them.
            open: replayed.unfinished.iter().copied().collect::<HashSet<_>>(),
            aborted: replayed.aborted,
            touched: BTreeMap::new(),
        };
        let mut topics = BTreeMap::new();
        let entries =
            std::fs::read_dir(&topics_dir).map_err(|e| Error::io("list", &topics_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &topics_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.path().join("topic.json");
            if !meta.exists() {
                continue;
            }
            let text = std::fs::read(&meta).map_err(|e| Error::io("read", &meta, e))?;
            let topic_config: TopicConfig =
                serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
                    path: meta.clone(),
                    position: e.column() as u64,
                    reason: format!("topic configuration is not valid: {e}"),
                })?;
            let (topic, found) = Self::open_topic(&root, &config, &name, topic_config)?;
            if !txns.open.is_empty() {
                for p in &topic.partitions {
                    p.lock().find_open_txns(&txns.open)?;
                }
            }
            repairs.extend(found);
            topics.insert(name, Arc::new(topic));
        }
        let inner = Arc::new(Inner {
            root,
            config: config.clone(),
            topics: RwLock::new(topics),
            txns: RwLock::new(txns),
            journal: Mutex::new(journal),
            groups: Mutex::new(replayed.groups),
            repairs,
            _lock: lock,
        });
        if let (Some(every), false) = (config.cleaner_interval, config.read_only) {
            spawn_cleaner(Arc::downgrade(&inner), every);
        }
        Ok(EmbeddedLog { inner })
    }

    /// What recovery found damaged when this log opened: torn batches and journal entries,
    /// cut by a writer, left in place by a read-only open.
    pub fn repairs(&self) -> &[LogRepair] {
        &self.inner.repairs
    }

    /// Fails with [`Error::ReadOnly`] when the log was opened read-only.
    pub(super) fn check_writable(&self, operation: &str) -> Result<()> {
        if self.inner.config.read_only {
            return Err(Error::ReadOnly {
                path: self.inner.root.clone(),
                operation: operation.to_string(),
            });
        }
        Ok(())
    }

    pub(super) fn open_topic(
        root: &Path,
        config: &EmbeddedLogConfig,
        name: &str,
        topic_config: TopicConfig,
    ) -> Result<(Topic, Vec<LogRepair>)> {
        let dir = root.join("topics").join(name);
        let mode = OpenMode {
            read_only: config.read_only,
            compacted: topic_config.cleanup_policy == CleanupPolicy::Compact,
        };
        let mut repairs = Vec::new();
        let mut partitions = Vec::new();
        for p in 0..topic_config.partitions {
            let (partition, found) = Partition::open(
                dir.join(p.to_string()),
                TopicPartition::new(name, p),
                config.index_interval_bytes,
                config.fsync,
                mode,
            )?;
            repairs.extend(found);
            partitions.push(Mutex::new(partition));
        }
        Ok((
            Topic {
                config: topic_config,
                partitions,
                deleted: Default::default(),
            },
            repairs,
        ))
    }
}
