//! Global stores: a key-value copy of a whole topic (every partition) that every task of an
//! application can read, as Kafka Streams' `GlobalKTable`.
//!
//! A global store holds the topic's raw key and value bytes (a tombstone deletes). It is not
//! changelogged: the topic itself is its changelog. The [`GlobalUpdater`] reads the topic:
//! first to its end before any task processes (bootstrap), then continuously. Its position
//! is checkpointed in `<state_dir>/<app-id>/global/.checkpoint` after the store is flushed;
//! the checkpoint is deleted before the store changes again, so after a crash the store is
//! rebuilt from the topic's start instead of trusting local state that ran ahead.
//!
//! Stores are shared between threads behind a mutex, taken once per lookup.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use state_store::{ChangelogPartition, Checkpoint, KeyValueStore, RocksDbMemory, StoreBuilder};

use crate::error::{Error, Result};
use crate::log::{IsolationLevel, Log};
use crate::processor::GlobalStoreRef;
use crate::record::TopicPartition;
use crate::topology::{GlobalStoreSpec, Topology};

/// The global stores of an application (or a test driver), by name.
#[derive(Clone, Default)]
pub(crate) struct GlobalStores(Arc<BTreeMap<String, GlobalStoreRef>>);

impl GlobalStores {
    /// The store named `name`.
    pub(crate) fn get(&self, name: &str) -> Result<GlobalStoreRef> {
        self.0.get(name).cloned().ok_or_else(|| Error::Config {
            key: format!("global store `{name}`"),
            reason: "the topology has no global store of that name".into(),
        })
    }
}

/// Applies one raw record to a global store.
pub(crate) fn apply_global(
    store: &mut dyn KeyValueStore,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<()> {
    // A record without a key cannot be looked up: skipped, as Kafka Streams does.
    let Some(key) = key else { return Ok(()) };
    match value {
        Some(v) => store.put(key, v),
        None => store.delete(key).map(|_| ()),
    }
    .map_err(Error::from)
}

/// Feeds the global stores from their topics.
pub(crate) struct GlobalUpdater {
    stores: GlobalStores,
    specs: Vec<GlobalStoreSpec>,
    dir: PathBuf,
    /// Per (store index, partition): the next offset to read.
    positions: Vec<(usize, TopicPartition, u64)>,
    checkpointed: bool,
}

impl GlobalUpdater {
    /// Opens the topology's global stores under `<state_dir>/<app-id>/global/`.
    pub(crate) fn open(
        topology: &Topology,
        state_dir: &std::path::Path,
        application_id: &str,
        rocksdb: &RocksDbMemory,
    ) -> Result<GlobalUpdater> {
        let dir = state_dir.join(application_id).join("global");
        let mut stores = BTreeMap::new();
        let mut specs = Vec::new();
        for spec in topology.global_stores().values() {
            let builder = StoreBuilder::key_value(spec.name.clone());
            let builder = if spec.persistent {
                builder.persistent(dir.join(&spec.name), rocksdb)
            } else {
                builder.in_memory()
            };
            let store = builder.build().map_err(Error::from)?;
            stores.insert(spec.name.clone(), Arc::new(Mutex::new(store)));
            specs.push(spec.clone());
        }
        Ok(GlobalUpdater {
            stores: GlobalStores(Arc::new(stores)),
            specs,
            dir,
            positions: Vec::new(),
            checkpointed: false,
        })
    }

    /// The stores, for tasks to read.
    pub(crate) fn stores(&self) -> GlobalStores {
        self.stores.clone()
    }

    /// Whether the topology has global stores at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Reads every global topic to its end (from the checkpoint, or from the start into an
    /// emptied store). Returns the records applied.
    pub(crate) fn bootstrap(&mut self, log: &dyn Log) -> Result<u64> {
        let checkpoint = Checkpoint::read(&self.dir).map_err(Error::from)?;
        self.positions.clear();
        for (i, spec) in self.specs.iter().enumerate() {
            let partitions = log
                .describe_topic(&spec.topic)
                .map_err(|e| match e {
                    Error::UnknownTopic { .. } => Error::UnknownTopic {
                        topic: format!(
                            "{} (the topic of global store `{}`; create it before starting)",
                            spec.topic, spec.name
                        ),
                    },
                    other => other,
                })?
                .partitions;
            let store = self.stores.get(&spec.name)?;
            let resumable = spec.persistent && checkpoint.is_some();
            if !resumable {
                store.lock().wipe().map_err(Error::from)?;
            }
            for p in 0..partitions {
                let tp = TopicPartition::new(spec.topic.clone(), p);
                let start = log.start_offset(&tp)?;
                let from = if resumable {
                    checkpoint
                        .as_ref()
                        .and_then(|c| c.offset(&ChangelogPartition::new(spec.topic.clone(), p)))
                        .unwrap_or(start)
                        .max(start)
                } else {
                    start
                };
                self.positions.push((i, tp, from));
            }
        }
        let mut applied = 0;
        loop {
            let n = self.poll(log)?;
            applied += n;
            if n == 0 {
                break;
            }
        }
        self.checkpoint(log)?;
        tracing::info!(records = applied, "global stores bootstrapped");
        Ok(applied)
    }

    /// Applies whatever the global topics gained since the last call. Returns the records
    /// applied.
    pub(crate) fn poll(&mut self, log: &dyn Log) -> Result<u64> {
        let mut applied = 0;
        for (i, tp, position) in &mut self.positions {
            let fetch = log.read(tp, *position, 1000, IsolationLevel::ReadCommitted)?;
            if fetch.records.is_empty() {
                *position = fetch.next_offset;
                continue;
            }
            if self.checkpointed {
                Checkpoint::delete(&self.dir).map_err(Error::from)?;
                self.checkpointed = false;
            }
            let spec = &self.specs[*i];
            let store = self.stores.get(&spec.name)?;
            let mut store = store.lock();
            for r in &fetch.records {
                apply_global(
                    store.as_mut(),
                    r.record.key.as_deref(),
                    r.record.value.as_deref(),
                )?;
            }
            applied += fetch.records.len() as u64;
            *position = fetch.next_offset;
        }
        Ok(applied)
    }

    /// Flushes the stores and records the positions, if anything changed since the last
    /// checkpoint.
    pub(crate) fn checkpoint(&mut self, _log: &dyn Log) -> Result<()> {
        if self.checkpointed {
            return Ok(());
        }
        let mut cp = Checkpoint::new();
        for spec in &self.specs {
            self.stores
                .get(&spec.name)?
                .lock()
                .flush()
                .map_err(Error::from)?;
        }
        for (_, tp, position) in &self.positions {
            cp.set_offset(
                ChangelogPartition::new(tp.topic.clone(), tp.partition),
                *position,
            );
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("create", &self.dir, e))?;
        cp.write(&self.dir).map_err(Error::from)?;
        self.checkpointed = true;
        Ok(())
    }

    /// Flushes, checkpoints and closes the stores.
    pub(crate) fn close(mut self, log: &dyn Log) -> Result<()> {
        self.checkpoint(log)?;
        for spec in &self.specs {
            self.stores
                .get(&spec.name)?
                .lock()
                .close()
                .map_err(Error::from)?;
        }
        Ok(())
    }
}
