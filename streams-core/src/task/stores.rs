//! A task's state stores: built from the topology's specs in the one fixed layer order
//! (cache → changelog → backend, see `state-store`), restored from their changelogs before
//! the task processes anything, flushed and checkpointed on commit.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use parking_lot::Mutex;
use state_store::{
    ChangelogPartition, ChangelogRecord, ChangelogSink, Checkpoint, RecordCache, RecordClock,
    RestoreOptions, RocksDbMemory, RocksDbStoreFigures, StateStore, StoreBuilder, StoreError,
    StoreLayout,
};

use super::global::GlobalStores;
use super::progress::{RestoreEvent, RestoreHooks, Restored};
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::log::{IsolationLevel, Log};
use crate::processor::{
    ChangelogBuffer, GlobalStoreRef, KvStoreRef, SessionStoreRef, StoreAccess, WindowStoreRef,
};
use crate::record::{Record, TopicPartition};
use crate::topology::{StoreKind, StoreSpec};

struct BufferSink {
    tp: TopicPartition,
    buffer: ChangelogBuffer,
}

impl ChangelogSink for BufferSink {
    fn send(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> Result<(), StoreError> {
        let record = Record {
            key: Some(key.to_vec()),
            value: value.map(<[u8]>::to_vec),
            timestamp,
            headers: Vec::new(),
        };
        self.buffer.lock().push((self.tp.clone(), record));
        Ok(())
    }
}

enum AnyStore {
    Kv(KvStoreRef),
    Window(WindowStoreRef),
    Session(SessionStoreRef),
}

impl AnyStore {
    fn with<T>(&self, f: impl FnOnce(&mut dyn StateStore) -> T) -> T {
        match self {
            AnyStore::Kv(s) => f(s.borrow_mut().as_mut()),
            AnyStore::Window(s) => f(s.borrow_mut().as_mut()),
            AnyStore::Session(s) => f(s.borrow_mut().as_mut()),
        }
    }
}

struct Entry {
    spec: StoreSpec,
    /// The store's directory (persistent stores).
    dir: PathBuf,
    store: AnyStore,
    changelog: Option<TopicPartition>,
    /// The id of the persistent store's local data (see `state_store::new_store_id`).
    identity: Option<String>,
    /// Why the local data cannot be what a checkpoint describes, when that was found at open.
    distrust: Option<String>,
}

/// Reads a changelog partition from a position up to a fixed end, as restore input.
struct ChangelogReader<'a> {
    log: &'a dyn Log,
    tp: &'a TopicPartition,
    store: &'a str,
    position: u64,
    end: u64,
    buffered: VecDeque<ChangelogRecord>,
    /// Where the restore started, for progress.
    from: u64,
    hooks: &'a RestoreHooks<'a>,
    /// Set when `hooks.stop` ended the read before `end`.
    stopped: bool,
}

impl ChangelogReader<'_> {
    fn fail(
        &self,
        retriable: bool,
        source: Box<dyn std::error::Error + Send + Sync>,
    ) -> StoreError {
        StoreError::Changelog {
            store: self.store.to_string(),
            retriable,
            source,
        }
    }
}

impl Iterator for ChangelogReader<'_> {
    type Item = Result<ChangelogRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.buffered.is_empty() && self.position < self.end {
            if (self.hooks.stop)() {
                // Everything before `position` was handed out: the store holds it.
                self.stopped = true;
                break;
            }
            let fetch = match self.log.read(
                self.tp,
                self.position,
                10_000,
                IsolationLevel::ReadCommitted,
            ) {
                Ok(f) => f,
                Err(e) => {
                    self.position = self.end;
                    let retriable = e.is_retriable();
                    return Some(Err(self.fail(retriable, Box::new(e))));
                }
            };
            if fetch.next_offset <= self.position {
                break;
            }
            self.position = fetch.next_offset.min(self.end);
            (self.hooks.progress)(
                self.store,
                self.position - self.from,
                self.end.saturating_sub(self.from),
            );
            let records = fetch
                .records
                .iter()
                .take_while(|r| r.offset < self.end)
                .count() as u64;
            (self.hooks.events)(RestoreEvent::Batch {
                changelog: self.tp,
                store: self.store,
                batch_end: self.position,
                records,
            });
            for r in fetch.records {
                if r.offset >= self.end {
                    break;
                }
                let Some(key) = r.record.key else {
                    self.position = self.end;
                    let reason = format!("{}@{} has no key", self.tp, r.offset);
                    return Some(Err(self.fail(false, reason.into())));
                };
                self.buffered.push_back(ChangelogRecord {
                    offset: r.offset,
                    key,
                    value: r.record.value,
                });
            }
        }
        self.buffered.pop_front().map(Ok)
    }
}

/// Shared, application-wide resources stores draw on.
#[derive(Clone)]
pub(crate) struct StoreResources {
    /// Root of local state: stores live under `<state_dir>/<app-id>/<task>/<store>/`.
    pub(crate) state_dir: PathBuf,
    /// RocksDB's shared block cache and write-buffer budget.
    pub(crate) rocksdb: RocksDbMemory,
    /// The record cache of the stream thread that runs the task.
    pub(crate) cache: RecordCache,
    /// The application's global stores, readable by every task.
    pub(crate) globals: GlobalStores,
}

/// The stores of one task.
pub(crate) struct TaskStores {
    pub(crate) globals: GlobalStores,
    task: TaskId,
    task_dir: PathBuf,
    entries: BTreeMap<String, Entry>,
    pub(crate) clock: RecordClock,
    pub(crate) buffer: ChangelogBuffer,
}

fn store_err(task: TaskId) -> impl Fn(StoreError) -> Error {
    move |source| Error::Store {
        task: Some(task),
        source,
    }
}

/// Builds one store in the fixed layer order: cache (keeping its flushed changes for the
/// processor that owns the store) over changelogging (into `buffer`) over the backend.
fn build_store(
    spec: &StoreSpec,
    dir: &Path,
    changelog: Option<&TopicPartition>,
    buffer: &ChangelogBuffer,
    clock: &RecordClock,
    resources: &StoreResources,
) -> Result<AnyStore, StoreError> {
    let sink = changelog.map(|tp| BufferSink {
        tp: tp.clone(),
        buffer: buffer.clone(),
    });
    macro_rules! layers {
        ($b:expr) => {{
            let mut b = $b.with_record_clock(clock.clone());
            b = if spec.persistent {
                b.persistent(dir, &resources.rocksdb)
            } else {
                b.in_memory()
            };
            if let Some(sink) = sink {
                b = b.with_logging(sink);
            }
            b
        }};
    }
    Ok(match &spec.kind {
        StoreKind::KeyValue { .. } => {
            let mut b = layers!(StoreBuilder::key_value(spec.name.clone()));
            if spec.cached {
                b = b.with_caching(&resources.cache).keep_flushed();
            }
            AnyStore::Kv(Rc::new(RefCell::new(b.build()?)))
        }
        StoreKind::Window {
            retention_ms,
            retain_duplicates,
            ..
        } => {
            let mut b = layers!(StoreBuilder::window(spec.name.clone(), *retention_ms))
                .retain_duplicates(*retain_duplicates);
            if spec.cached {
                b = b.with_caching(&resources.cache).keep_flushed();
            }
            AnyStore::Window(Rc::new(RefCell::new(b.build()?)))
        }
        StoreKind::Session { retention_ms } => {
            let b = layers!(StoreBuilder::session(spec.name.clone(), *retention_ms));
            AnyStore::Session(Rc::new(RefCell::new(b.build()?)))
        }
    })
}

impl TaskStores {
    pub(crate) fn open(
        task: TaskId,
        application_id: &str,
        specs: &[&StoreSpec],
        resources: &StoreResources,
    ) -> Result<Self> {
        let task_name = task.to_string();
        let task_dir = state_store::task_dir(&resources.state_dir, application_id, &task_name);
        let clock = RecordClock::new();
        let buffer: ChangelogBuffer = Arc::new(Mutex::new(Vec::new()));
        let mut entries = BTreeMap::new();
        let err = store_err(task);
        for spec in specs {
            let changelog = spec
                .changelog()
                .map(|t| TopicPartition::new(t.resolve(application_id), task.partition));
            let dir = state_store::store_dir(
                &resources.state_dir,
                application_id,
                &task_name,
                &spec.name,
            );
            let layout = match spec.kind {
                StoreKind::KeyValue { .. } => StoreLayout::Single,
                StoreKind::Window { .. } | StoreKind::Session { .. } => StoreLayout::Segmented,
            };
            // Judged before opening: opening creates whatever is missing.
            let mut distrust = if spec.persistent {
                state_store::missing_local_data(&dir, layout)
            } else {
                None
            };
            let build = || build_store(spec, &dir, changelog.as_ref(), &buffer, &clock, resources);
            let store = match build() {
                Ok(store) => store,
                // Damaged local files of a logged store: its changelog holds the data.
                Err(e) if spec.persistent && changelog.is_some() && e.is_corruption() => {
                    let reason = match distrust.take() {
                        Some(missing) => {
                            format!("{missing}, and it could not be opened ({})", e.report())
                        }
                        None => format!("it could not be opened ({})", e.report()),
                    };
                    tracing::warn!(
                        task = %task, store = %spec.name, path = %dir.display(), %reason,
                        "the store's local files are damaged: deleting them to restore the \
                         store from its changelog"
                    );
                    state_store::destroy_store_dir(&spec.name, &dir).map_err(&err)?;
                    distrust = Some(reason);
                    build().map_err(&err)?
                }
                Err(e) => return Err(err(e)),
            };
            let identity = if spec.persistent {
                let found = state_store::read_store_id(&spec.name, &dir).map_err(&err)?;
                match (&distrust, found) {
                    (None, Some(id)) => Some(id),
                    (None, None) => {
                        distrust = Some("it carries no store id".into());
                        Some(state_store::new_store_id(&spec.name, &dir).map_err(&err)?)
                    }
                    (Some(_), _) => {
                        Some(state_store::new_store_id(&spec.name, &dir).map_err(&err)?)
                    }
                }
            } else {
                None
            };
            entries.insert(
                spec.name.clone(),
                Entry {
                    spec: (*spec).clone(),
                    dir,
                    store,
                    changelog,
                    identity,
                    distrust,
                },
            );
        }
        Ok(TaskStores {
            globals: resources.globals.clone(),
            task,
            task_dir,
            entries,
            clock,
            buffer,
        })
    }

    fn missing(&self, name: &str, what: &str) -> Error {
        Error::Config {
            key: format!("store `{name}`"),
            reason: format!("is not a {what} store of task {}", self.task),
        }
    }

    /// RocksDB's figures of each store of the task that keeps RocksDB, by store name.
    pub(crate) fn rocksdb_figures(&self) -> BTreeMap<String, RocksDbStoreFigures> {
        self.entries
            .iter()
            .filter_map(|(name, e)| {
                let figures = match &e.store {
                    AnyStore::Kv(s) => s.borrow().rocksdb_figures(),
                    AnyStore::Window(s) => s.borrow().rocksdb_figures(),
                    AnyStore::Session(s) => s.borrow().rocksdb_figures(),
                };
                Some((name.clone(), figures?))
            })
            .collect()
    }

    pub(crate) fn kv(&self, name: &str) -> Result<KvStoreRef> {
        match self.entries.get(name).map(|e| &e.store) {
            Some(AnyStore::Kv(s)) => Ok(s.clone()),
            _ => Err(self.missing(name, "key-value")),
        }
    }

    pub(crate) fn window(&self, name: &str) -> Result<WindowStoreRef> {
        match self.entries.get(name).map(|e| &e.store) {
            Some(AnyStore::Window(s)) => Ok(s.clone()),
            _ => Err(self.missing(name, "window")),
        }
    }

    pub(crate) fn session(&self, name: &str) -> Result<SessionStoreRef> {
        match self.entries.get(name).map(|e| &e.store) {
            Some(AnyStore::Session(s)) => Ok(s.clone()),
            _ => Err(self.missing(name, "session")),
        }
    }

    /// Names of the task's stores.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes every store's cache through (changelog records are buffered), then drops
    /// changes no processor took. After the processors' own flushes (which take and forward
    /// their stores' changes) there are none for the DSL's operators; a processor of the
    /// user's over a cached store that never takes them would otherwise pile them up.
    pub(crate) fn flush_caches(&self) -> Result<()> {
        for e in self.entries.values() {
            e.store
                .with(|s| {
                    s.flush_cache()?;
                    drop(s.take_flushed());
                    Ok(())
                })
                .map_err(store_err(self.task))?;
        }
        Ok(())
    }

    /// Makes local state durable: caches write through and RocksDB memtables are written
    /// (the WAL is off). Needed before a checkpoint can claim it.
    pub(crate) fn flush(&self) -> Result<()> {
        self.flush_caches()?;
        for e in self.entries.values() {
            e.store.with(|s| s.flush()).map_err(store_err(self.task))?;
        }
        Ok(())
    }

    pub(crate) fn close(&self) -> Result<()> {
        for e in self.entries.values() {
            e.store.with(|s| s.close()).map_err(store_err(self.task))?;
        }
        Ok(())
    }

    /// Replays each logged store's changelog from its checkpoint (or, with none, wipes the
    /// store and replays from the start). Returns records replayed per store. When
    /// `hooks.stop` ends it early, writes a checkpoint of where each store got (stores not
    /// reached keep their earlier entries) and returns `complete: false`.
    ///
    /// A checkpointed offset is trusted only for the store it was written for (the store id it
    /// names is the store's, and nothing was found missing when the store was opened) and only
    /// inside the changelog's current range. Otherwise the store is wiped and restored from the
    /// start, with a warning that says why: local data the checkpoint does not describe, or a
    /// changelog that no longer holds what the store holds, must never be served.
    pub(crate) fn restore(&mut self, log: &dyn Log, hooks: &RestoreHooks<'_>) -> Result<Restored> {
        let task = self.task;
        let err = store_err(task);
        let checkpoint = Checkpoint::read(&self.task_dir).map_err(&err)?;
        let mut replayed = BTreeMap::new();
        // Where each store got, for the checkpoint of a restore that is stopped.
        let mut reached = Checkpoint::new();
        let mut stopped = false;
        for (name, e) in &mut self.entries {
            let Some(tp) = &e.changelog else { continue };
            let cp = ChangelogPartition::new(tp.topic.clone(), tp.partition);
            if stopped {
                // Not reached: its local data is as the earlier checkpoint describes.
                if let Some(c) = &checkpoint {
                    match (c.offset(&cp), c.store_id(&cp)) {
                        (Some(o), Some(id)) => reached.set_store_offset(cp, o, id.to_string()),
                        (Some(o), None) => reached.set_offset(cp, o),
                        _ => {}
                    }
                }
                continue;
            }
            let entry = match (&checkpoint, e.spec.persistent) {
                (Some(c), true) => c.offset(&cp).map(|o| (o, c.store_id(&cp))),
                _ => None,
            };
            let log_start = log.start_offset(tp)?;
            let trusted = match entry {
                None => None,
                Some((offset, id)) => {
                    let log_end = log.end_offset(tp, IsolationLevel::ReadUncommitted)?;
                    let why = distrust_reason(
                        offset,
                        id,
                        e.identity.as_deref(),
                        e.distrust.as_deref(),
                        (log_start, log_end),
                    );
                    match why {
                        None => Some(offset),
                        Some(why) => {
                            tracing::warn!(
                                task = %task, store = %name, changelog = %tp, reason = %why,
                                "not trusting the task's checkpoint for this store: wiping the \
                                 store and restoring it from its changelog"
                            );
                            None
                        }
                    }
                }
            };
            let _span = tracing::info_span!("restore", store = %name, changelog = %tp).entered();
            let start = e
                .store
                .with(|s| state_store::restore_start_offset(s, trusted))
                .map_err(&err)?;
            if trusted.is_none() && e.spec.persistent {
                // Wiped: the local data starts again from nothing.
                e.identity = Some(state_store::new_store_id(name, &e.dir).map_err(&err)?);
            }
            e.distrust = None;
            let end = log.end_offset(tp, IsolationLevel::ReadCommitted)?;
            let position = start.max(log_start);
            let options = RestoreOptions {
                total: Some(end.saturating_sub(position)),
                ..RestoreOptions::default()
            };
            if position < end {
                (hooks.events)(RestoreEvent::Start {
                    changelog: tp,
                    store: name,
                    start: position,
                    end,
                });
            }
            let mut reader = ChangelogReader {
                log,
                tp,
                store: name,
                position,
                end,
                buffered: VecDeque::new(),
                from: position,
                hooks,
                stopped: false,
            };
            let summary = e
                .store
                .with(|s| state_store::restore(s, &mut reader, &options))
                .map_err(&err)?;
            // Restored writes skip RocksDB's WAL: flush them before a checkpoint can claim them.
            e.store.with(|s| s.flush()).map_err(&err)?;
            replayed.insert(name.clone(), summary.records);
            stopped = reader.stopped;
            if position < end {
                (hooks.events)(RestoreEvent::End {
                    changelog: tp,
                    store: name,
                    restored: summary.records,
                    complete: !stopped,
                });
                tracing::info!(
                    records = summary.records,
                    complete = !stopped,
                    "changelog replayed"
                );
            }
            if e.spec.persistent {
                match &e.identity {
                    Some(id) => reached.set_store_offset(cp, reader.position, id.clone()),
                    None => reached.set_offset(cp, reader.position),
                }
            }
        }
        if stopped {
            reached.write(&self.task_dir).map_err(&err)?;
        }
        Ok(Restored {
            records: replayed,
            complete: !stopped,
        })
    }

    /// Records, for each logged persistent store, that it is restored up to the changelog's
    /// current end, so a restart replays only what comes after.
    pub(crate) fn write_checkpoint(&self, log: &dyn Log) -> Result<()> {
        self.flush()?;
        let mut cp = Checkpoint::new();
        for e in self.entries.values() {
            if let (Some(tp), true) = (&e.changelog, e.spec.persistent) {
                let end = log.end_offset(tp, IsolationLevel::ReadUncommitted)?;
                let partition = ChangelogPartition::new(tp.topic.clone(), tp.partition);
                match &e.identity {
                    Some(id) => cp.set_store_offset(partition, end, id.clone()),
                    None => cp.set_offset(partition, end),
                }
            }
        }
        cp.write(&self.task_dir).map_err(store_err(self.task))
    }

    /// Removes the checkpoint: from now until the next commit, local state may run ahead of
    /// the changelog, so a crash must not trust it.
    pub(crate) fn delete_checkpoint(&self) -> Result<()> {
        Checkpoint::delete(&self.task_dir).map_err(store_err(self.task))
    }
}

/// Why a checkpointed offset cannot be trusted for a store, or `None` when it can: the
/// checkpoint names the store's id, nothing was missing when the store was opened, and the
/// offset lies within the changelog's current range `[start, end]`.
fn distrust_reason(
    offset: u64,
    checkpoint_id: Option<&str>,
    store_id: Option<&str>,
    lost: Option<&str>,
    (start, end): (u64, u64),
) -> Option<String> {
    if let Some(lost) = lost {
        return Some(format!(
            "the store's local data is not what the checkpoint describes: {lost}"
        ));
    }
    match (checkpoint_id, store_id) {
        (None, _) => {
            return Some("the checkpoint names no store id (written by an older version)".into())
        }
        (Some(c), Some(s)) if c == s => {}
        (Some(c), s) => {
            return Some(format!(
                "the checkpoint was written for store id {c}, and the store's id is {}",
                s.unwrap_or("unknown")
            ))
        }
    }
    if offset > end {
        return Some(format!(
            "the checkpointed offset {offset} is past the changelog's end {end} (the changelog \
             lost records the store holds, or the checkpoint is not of this changelog)"
        ));
    }
    if offset < start {
        return Some(format!(
            "the checkpointed offset {offset} is below the changelog's start {start} (records \
             the store needs were deleted)"
        ));
    }
    None
}

impl StoreAccess for TaskStores {
    fn kv(&self, name: &str) -> Result<KvStoreRef> {
        TaskStores::kv(self, name)
    }

    fn window(&self, name: &str) -> Result<WindowStoreRef> {
        TaskStores::window(self, name)
    }

    fn session(&self, name: &str) -> Result<SessionStoreRef> {
        TaskStores::session(self, name)
    }

    fn global(&self, name: &str) -> Result<GlobalStoreRef> {
        self.globals.get(name)
    }
}
