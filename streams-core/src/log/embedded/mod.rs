//! The embedded log: topics as segment files under a directory, in this process.
//!
//! Layout under the root directory:
//!
//! ```text
//! .lock                                  held (flock) while open; names the holder
//! meta.journal                           group offsets and transaction outcomes
//! topics/<topic>/topic.json              the topic's configuration
//! topics/<topic>/<partition>/<base>.log  segments: CRC-checked record batches
//! topics/<topic>/<partition>/<base>.index  sparse offset index of a closed segment
//! deleted/<topic>.<nanos>/               a deleted topic on its way out (removed on open)
//! ```
//!
//! It is a storage engine, not a server: one process opens a directory at a time, and a
//! second one gets [`Error::Locked`]. Appends are durable against a process crash as soon as
//! they return (the bytes are in the OS page cache, in order); against power loss once synced,
//! per [`FsyncPolicy`] or [`Log::sync`]. Lock order, to avoid deadlock: transaction state,
//! then the journal, then partitions.

mod batch;
mod journal;
mod open;
mod partition;
mod segment;

pub use self::open::LogRepair;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use self::journal::{offsets_vec, Entry, GroupState, Journal};
use self::partition::Partition;
use crate::error::{Error, Result};
use crate::log::{
    drop_offsets_of, metadata_in, open_txn_refusal, validate_topic_name, AppendInfo, CleanupPolicy,
    Fetch, GroupOffsets, IsolationLevel, Log, OffsetCommit, TopicConfig, TxnId,
};
use crate::record::{Record, TopicPartition};

/// When appended data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// Only on [`Log::sync`], segment roll and close. A process crash loses nothing; a power
    /// loss may lose what was not synced.
    Never,
    /// After every append and every commit: nothing acknowledged is lost, at a large cost.
    Always,
    /// On the first append after this much time has passed since the last sync.
    Interval(Duration),
}

/// Settings of an [`EmbeddedLog`]: `EmbeddedLogConfig::default()` and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmbeddedLogConfig {
    /// When appends are synced to disk.
    pub fsync: FsyncPolicy,
    /// Bytes of batches between two entries of a segment's offset index.
    pub index_interval_bytes: u64,
    /// How often a background thread runs retention and compaction; `None`: only when
    /// [`EmbeddedLog::maintain`] is called.
    pub cleaner_interval: Option<Duration>,
    /// The metadata journal is rewritten as a snapshot once it grows past this size.
    pub journal_snapshot_bytes: u64,
    /// Open without a lock and change no file: to look at a log while an application runs
    /// (every write is refused with [`Error::ReadOnly`]; a torn tail is left and skipped).
    pub read_only: bool,
}

impl Default for EmbeddedLogConfig {
    fn default() -> Self {
        EmbeddedLogConfig {
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            index_interval_bytes: 4096,
            cleaner_interval: Some(Duration::from_secs(30)),
            journal_snapshot_bytes: 8 << 20,
            read_only: false,
        }
    }
}

impl EmbeddedLogConfig {
    /// Sets when appends are synced to disk.
    pub fn with_fsync(mut self, fsync: FsyncPolicy) -> Self {
        self.fsync = fsync;
        self
    }

    /// Sets the bytes of batches between two entries of a segment's offset index.
    pub fn with_index_interval_bytes(mut self, bytes: u64) -> Self {
        self.index_interval_bytes = bytes;
        self
    }

    /// Sets how often the background cleaner runs; `None`: only on [`EmbeddedLog::maintain`].
    pub fn with_cleaner_interval(mut self, interval: Option<Duration>) -> Self {
        self.cleaner_interval = interval;
        self
    }

    /// Sets the size past which the metadata journal is rewritten as a snapshot.
    pub fn with_journal_snapshot_bytes(mut self, bytes: u64) -> Self {
        self.journal_snapshot_bytes = bytes;
        self
    }

    /// Opens the log read-only (see [`EmbeddedLogConfig::read_only`]).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}

/// What one run of [`EmbeddedLog::maintain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Segments deleted by retention.
    pub segments_deleted: usize,
    /// Segments rewritten by compaction.
    pub segments_compacted: usize,
    /// Records removed by compaction (superseded, expired tombstones, aborted).
    pub records_removed: u64,
}

/// Which transactions are open and which were aborted; all others below `next_id` committed.
#[derive(Debug, Default)]
pub(crate) struct TxnState {
    next_id: u64,
    open: HashSet<u64>,
    aborted: BTreeSet<u64>,
    touched: BTreeMap<u64, BTreeSet<TopicPartition>>,
}

impl TxnState {
    pub(crate) fn is_committed(&self, id: u64) -> bool {
        id < self.next_id && !self.open.contains(&id) && !self.aborted.contains(&id)
    }
}

/// How a transaction ends: `None` aborts it, `Some(offsets)` commits it with those offsets.
type TxnOutcome<'a> = Option<Option<(&'a str, &'a [OffsetCommit])>>;

struct Topic {
    config: TopicConfig,
    partitions: Vec<Mutex<Partition>>,
    /// Set by `delete_topic` before it moves the files: whoever locks a partition after that
    /// (an append or a cleaner pass that found the topic just before) leaves it alone, so no
    /// write lands in a topic created again under the name.
    deleted: std::sync::atomic::AtomicBool,
}

impl Topic {
    fn is_deleted(&self) -> bool {
        self.deleted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct Inner {
    root: PathBuf,
    config: EmbeddedLogConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    txns: RwLock<TxnState>,
    journal: Mutex<Journal>,
    groups: Mutex<GroupState>,
    /// What recovery cut (or, read-only, would cut) when the log opened.
    repairs: Vec<LogRepair>,
    /// The directory lock; none when opened read-only.
    _lock: Option<File>,
}

/// The embedded, on-disk log. Cheap to clone; all clones share one open directory.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLog")
            .field("root", &self.inner.root)
            .finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl EmbeddedLog {
    /// The directory this log lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic {
                topic: name.to_string(),
            })
    }

    fn with_partition<T>(
        &self,
        tp: &TopicPartition,
        f: impl FnOnce(&mut Partition, &TopicConfig) -> Result<T>,
    ) -> Result<T> {
        let topic = self.topic(&tp.topic)?;
        let part = topic.partitions.get(tp.partition as usize).ok_or_else(|| {
            Error::PartitionOutOfRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                partitions: topic.config.partitions,
            }
        })?;
        let mut guard = part.lock();
        if topic.is_deleted() {
            return Err(Error::UnknownTopic {
                topic: tp.topic.clone(),
            });
        }
        f(&mut guard, &topic.config)
    }

    fn check_records(tp: &TopicPartition, config: &TopicConfig, records: &[Record]) -> Result<()> {
        if config.cleanup_policy == CleanupPolicy::Compact {
            if let Some(i) = records.iter().position(|r| r.key.is_none()) {
                return Err(Error::InvalidRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    reason: format!(
                        "record {i} of the batch has no key; compacted topics need one"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Runs retention on delete-policy topics and compaction on compacted topics.
    ///
    /// `now_ms` is the wall-clock time retention compares append times with. A background
    /// thread calls this every [`EmbeddedLogConfig::cleaner_interval`].
    pub fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport> {
        self.check_writable("run retention and compaction")?;
        maintain(&self.inner, now_ms)
    }

    /// Number of segment files of a partition (for tests and the log tool).
    pub fn segment_count(&self, tp: &TopicPartition) -> Result<usize> {
        self.with_partition(tp, |p, _| Ok(p.segment_count()))
    }

    /// Bytes on disk of a partition's segments.
    pub fn partition_size(&self, tp: &TopicPartition) -> Result<u64> {
        self.with_partition(tp, |p, _| Ok(p.size_bytes()))
    }

    fn end_txn(&self, txn: TxnId, commit: TxnOutcome<'_>) -> Result<()> {
        let id = txn.0;
        let mut txns = self.inner.txns.write();
        if !txns.open.contains(&id) {
            return Err(Error::Transaction {
                txn_id: id,
                reason: "is not open".into(),
            });
        }
        if let Some(Some((group, offsets))) = commit {
            self.check_offsets(offsets)?;
            let _ = group;
        }
        let touched = txns.touched.remove(&id).unwrap_or_default();
        let sync = self.inner.config.fsync != FsyncPolicy::Never;
        if sync && commit.is_some() {
            // The data must be durable before the record that makes it visible.
            for tp in &touched {
                self.with_partition(tp, |p, _| p.sync())?;
            }
        }
        let entry = match commit {
            Some(offsets) => Entry::TxnCommitWithMetadata {
                id,
                group: offsets.map(|(g, _)| g.to_string()),
                offsets: offsets.map(|(_, o)| offsets_vec(o)).unwrap_or_default(),
            },
            None => Entry::TxnAbort { id },
        };
        {
            let mut journal = self.inner.journal.lock();
            journal.append(&entry, sync)?;
            if let Some(Some((group, offsets))) = commit {
                let mut groups = self.inner.groups.lock();
                let g = groups.entry(group.to_string()).or_default();
                for c in offsets {
                    g.insert(c.tp.clone(), (c.offset, c.metadata.clone()));
                }
            }
        }
        txns.open.remove(&id);
        if commit.is_none() {
            txns.aborted.insert(id);
        }
        for tp in &touched {
            self.with_partition(tp, |p, _| {
                p.open_txns.remove(&id);
                Ok(())
            })?;
        }
        drop(txns);
        self.maybe_snapshot_journal()
    }

    fn check_offsets(&self, offsets: &[OffsetCommit]) -> Result<()> {
        for c in offsets {
            self.with_partition(&c.tp, |_, _| Ok(()))?;
        }
        Ok(())
    }

    fn maybe_snapshot_journal(&self) -> Result<()> {
        let txns = self.inner.txns.read();
        let mut journal = self.inner.journal.lock();
        if !journal.needs_snapshot() || !txns.open.is_empty() {
            // An open transaction's TxnBegin must stay in the journal until it ends.
            return Ok(());
        }
        let groups = self.inner.groups.lock();
        journal.snapshot(&groups, &txns.aborted, txns.next_id)
    }
}

fn maintain(inner: &Inner, now_ms: i64) -> Result<MaintenanceReport> {
    let mut report = MaintenanceReport::default();
    let topics: Vec<Arc<Topic>> = inner.topics.read().values().cloned().collect();
    for topic in topics {
        for part in &topic.partitions {
            match topic.config.cleanup_policy {
                CleanupPolicy::Delete => {
                    let mut part = part.lock();
                    if topic.is_deleted() {
                        break;
                    }
                    report.segments_deleted += part.apply_retention(now_ms, &topic.config)?;
                }
                CleanupPolicy::Compact => {
                    let txns = inner.txns.read();
                    let mut part = part.lock();
                    if topic.is_deleted() {
                        break;
                    }
                    let stats = part.compact(now_ms, &topic.config, &txns)?;
                    report.segments_compacted += stats.segments_cleaned;
                    report.records_removed += stats.records_removed;
                }
            }
        }
    }
    Ok(report)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync", dir, e))
}

fn spawn_cleaner(inner: Weak<Inner>, every: Duration) {
    let span = tracing::info_span!("log_cleaner");
    let spawned = std::thread::Builder::new()
        .name("log-cleaner".into())
        .spawn(move || {
            let _span = span.entered();
            loop {
                std::thread::sleep(every);
                let Some(inner) = inner.upgrade() else { return };
                if let Err(e) = maintain(&inner, now_ms()) {
                    tracing::error!(error = %e.report(), "log maintenance failed");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the log cleaner thread; retention and compaction run only when maintain() is called");
    }
}

impl Log for EmbeddedLog {
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        self.check_writable("create a topic")?;
        validate_topic_name(name)?;
        config.validate_in_process(name)?;
        let mut topics = self.inner.topics.write();
        if let Some(existing) = topics.get(name) {
            if existing.config.partitions != config.partitions {
                return Err(Error::TopicExists {
                    topic: name.to_string(),
                    existing: existing.config.partitions,
                    requested: config.partitions,
                });
            }
            return Ok(());
        }
        let dir = self.inner.root.join("topics").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create topic directory", &dir, e))?;
        let (topic, _) = match Self::open_topic(
            &self.inner.root,
            &self.inner.config,
            name,
            config.clone(),
        ) {
            Ok(opened) => opened,
            Err(e) => {
                // Leave no half-made topic behind (it has no topic.json yet).
                if let Err(rm) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %rm, "cannot remove a topic directory left by a failed create");
                }
                return Err(e);
            }
        };
        // The configuration is written last: a topic directory without it is ignored on open.
        let meta = dir.join("topic.json");
        let tmp = dir.join("topic.json.tmp");
        let text = serde_json::to_vec_pretty(&config).map_err(|e| Error::Config {
            key: name.to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &meta).map_err(|e| Error::io("rename", &meta, e))?;
        topics.insert(name.to_string(), Arc::new(topic));
        Ok(())
    }

    /// The topic leaves the log in three steps, each safe to stop after: a journal entry
    /// drops the groups' offsets in it; the topic leaves the map and is marked deleted, so
    /// every later call sees an unknown topic (one that found it just before gives up once it
    /// holds the partition); its directory is renamed out of `topics/` (atomic: an open never
    /// finds half a topic, and a topic created again under the name starts empty) and then
    /// removed. A crash before the rename leaves the topic without offsets, to delete again;
    /// one after it leaves files under `deleted/` that the next writable open removes.
    fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_writable("delete a topic")?;
        let txns = self.inner.txns.write();
        self.topic(name)?;
        let writer = txns
            .touched
            .iter()
            .find(|(_, touched)| touched.iter().any(|tp| tp.topic == name));
        if let Some((&txn, _)) = writer {
            return Err(open_txn_refusal(txn, name));
        }
        {
            let mut journal = self.inner.journal.lock();
            let entry = Entry::TopicDeleted {
                topic: name.to_string(),
            };
            journal.append(&entry, self.inner.config.fsync != FsyncPolicy::Never)?;
            drop_offsets_of(&mut self.inner.groups.lock(), name);
        }
        let topic = self.inner.topics.write().remove(name);
        drop(txns);
        if let Some(topic) = topic {
            topic
                .deleted
                .store(true, std::sync::atomic::Ordering::SeqCst);
            // Waits out whoever holds a partition now; later lockers see the flag.
            for part in &topic.partitions {
                drop(part.lock());
            }
        }
        let topics_dir = self.inner.root.join("topics");
        let dir = topics_dir.join(name);
        let trash = self.inner.root.join("deleted");
        std::fs::create_dir_all(&trash).map_err(|e| Error::io("create", &trash, e))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let gone = trash.join(format!("{name}.{nanos}"));
        std::fs::rename(&dir, &gone).map_err(|e| Error::io("move the deleted topic", &dir, e))?;
        sync_dir(&topics_dir)?;
        std::fs::remove_dir_all(&gone).map_err(|e| Error::io("remove", &gone, e))?;
        self.maybe_snapshot_journal()
    }

    fn describe_topic(&self, name: &str) -> Result<TopicConfig> {
        Ok(self.topic(name)?.config.clone())
    }

    fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.inner.topics.read().keys().cloned().collect())
    }

    fn append(&self, tp: &TopicPartition, records: &[Record]) -> Result<AppendInfo> {
        self.check_writable("append")?;
        self.with_partition(tp, |p, config| {
            Self::check_records(tp, config, records)?;
            p.append(records, 0, now_ms(), config.segment_bytes)
        })
    }

    fn read(
        &self,
        tp: &TopicPartition,
        offset: u64,
        max_records: usize,
        isolation: IsolationLevel,
    ) -> Result<Fetch> {
        match isolation {
            IsolationLevel::ReadUncommitted => {
                self.with_partition(tp, |p, _| p.read(offset, max_records, u64::MAX, |_| true))
            }
            IsolationLevel::ReadCommitted => {
                let txns = self.inner.txns.read();
                self.with_partition(tp, |p, _| {
                    p.read(offset, max_records, p.stable_offset(), |id| {
                        txns.is_committed(id)
                    })
                })
            }
        }
    }

    fn start_offset(&self, tp: &TopicPartition) -> Result<u64> {
        self.with_partition(tp, |p, _| Ok(p.start_offset()))
    }

    fn end_offset(&self, tp: &TopicPartition, isolation: IsolationLevel) -> Result<u64> {
        self.with_partition(tp, |p, _| {
            Ok(match isolation {
                IsolationLevel::ReadUncommitted => p.end_offset(),
                IsolationLevel::ReadCommitted => p.stable_offset(),
            })
        })
    }

    fn offset_for_timestamp(&self, tp: &TopicPartition, timestamp: i64) -> Result<Option<u64>> {
        self.with_partition(tp, |p, _| p.offset_for_timestamp(timestamp))
    }

    fn commit_offsets_with_metadata(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()> {
        if group.is_empty() {
            return Err(Error::Config {
                key: "group".into(),
                reason: "is empty".into(),
            });
        }
        self.check_writable("commit offsets")?;
        self.check_offsets(offsets)?;
        {
            let mut journal = self.inner.journal.lock();
            let entry = Entry::OffsetsWithMetadata {
                group: group.to_string(),
                offsets: offsets_vec(offsets),
            };
            journal.append(&entry, self.inner.config.fsync == FsyncPolicy::Always)?;
            let mut groups = self.inner.groups.lock();
            let g = groups.entry(group.to_string()).or_default();
            for c in offsets {
                g.insert(c.tp.clone(), (c.offset, c.metadata.clone()));
            }
        }
        self.maybe_snapshot_journal()
    }

    fn committed_offsets(&self, group: &str) -> Result<GroupOffsets> {
        Ok(self
            .inner
            .groups
            .lock()
            .get(group)
            .map(|g| g.iter().map(|(tp, (o, _))| (tp.clone(), *o)).collect())
            .unwrap_or_default())
    }

    fn committed_metadata(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, String)>> {
        Ok(metadata_in(self.inner.groups.lock().get(group), partitions))
    }

    fn list_groups(&self) -> Result<Vec<String>> {
        Ok(self.inner.groups.lock().keys().cloned().collect())
    }

    fn begin_transaction(&self) -> Result<TxnId> {
        self.check_writable("begin a transaction")?;
        let mut txns = self.inner.txns.write();
        let id = txns.next_id;
        // Written (and, unless syncing is off, synced) before any of the transaction's data:
        // otherwise a power loss could keep data whose transaction id the journal never saw,
        // and a later transaction reusing the id would make it visible.
        self.inner.journal.lock().append(
            &Entry::TxnBegin { id },
            self.inner.config.fsync != FsyncPolicy::Never,
        )?;
        txns.next_id += 1;
        txns.open.insert(id);
        Ok(TxnId(id))
    }

    fn append_transactional(
        &self,
        txn: TxnId,
        tp: &TopicPartition,
        records: &[Record],
    ) -> Result<AppendInfo> {
        let mut txns = self.inner.txns.write();
        if !txns.open.contains(&txn.0) {
            return Err(Error::Transaction {
                txn_id: txn.0,
                reason: "is not open".into(),
            });
        }
        let info = self.with_partition(tp, |p, config| {
            Self::check_records(tp, config, records)?;
            p.append(records, txn.0, now_ms(), config.segment_bytes)
        })?;
        txns.touched.entry(txn.0).or_default().insert(tp.clone());
        Ok(info)
    }

    fn commit_transaction_with_metadata(
        &self,
        txn: TxnId,
        offsets: Option<(&str, &[OffsetCommit])>,
    ) -> Result<()> {
        self.end_txn(txn, Some(offsets))
    }

    fn abort_transaction(&self, txn: TxnId) -> Result<()> {
        self.end_txn(txn, None)
    }

    fn sync(&self) -> Result<()> {
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        for topic in topics {
            for p in &topic.partitions {
                p.lock().sync()?;
            }
        }
        self.inner.journal.lock().sync()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: a clean close leaves nothing unsynced.
        for topic in self.topics.get_mut().values() {
            for p in &topic.partitions {
                if let Err(e) = p.lock().sync() {
                    tracing::warn!(error = %e.report(), "sync on close failed");
                }
            }
        }
        if let Err(e) = self.journal.get_mut().sync() {
            tracing::warn!(error = %e.report(), "journal sync on close failed");
        }
    }
}
