//! A deterministic, single-threaded driver for testing topologies, like Kafka Streams'
//! `TopologyTestDriver`.
//!
//! It builds the same [`Task`]s the runtime builds (one per sub-topology, every topic with one
//! partition) and runs the same processors: records piped in are processed at once, records
//! written to a topic another sub-topology reads (repartition topics) are fed to it before
//! `pipe` returns, and everything written to other topics is kept for the test to read. No
//! threads, no sleeps; files only for RocksDB stores, in a temporary directory removed on
//! drop. By default every piped record is followed by a commit (caches flush), as in Kafka
//! Streams' driver; [`DriverConfig::commit_every_record`] turns that off to observe caching.
//!
//! Changelogs live in an in-memory log the driver keeps, so [`TestDriver::restart`] can
//! close the tasks and start them again on the same state, as a restarted application does,
//! and [`TestDriver::restart_without_local_state`] as a task moved to an instance without
//! its local stores does (everything restored from the changelogs).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use hashbrown::HashMap;
use state_store::{RecordCache, RocksDbMemory};

use crate::error::{Error, RecordPart, Result, SerdeError};
use crate::handler::RecordErrorHandler;
use crate::ids::{TaskId, TopicName};
use crate::log::{Log, MemoryLog, TopicConfig};
use crate::processor::{GlobalStoreRef, KvStoreRef, SessionStoreRef, TaskMetrics, WindowStoreRef};
use crate::record::{Record, StoredRecord};
use crate::serdes::Serde;
use crate::task::{apply_global, GlobalStores, GlobalUpdater, StoreResources, Task, TaskEnv};
use crate::topology::Topology;

/// Settings of a [`TestDriver`]: `DriverConfig::default()` and the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverConfig {
    /// Application id (prefix of internal topics).
    pub application_id: String,
    /// Commit (flush caches) after each piped record.
    pub commit_every_record: bool,
    /// Bytes of the record cache shared by all tasks.
    pub cache_bytes: usize,
    /// Handler for undecodable records.
    pub deserialization: RecordErrorHandler,
    /// Handler for records a sink cannot encode.
    pub production: RecordErrorHandler,
    /// Wall-clock time at start, in ms.
    pub initial_wall_clock: i64,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            application_id: "test-app".into(),
            commit_every_record: true,
            cache_bytes: 10 << 20,
            deserialization: RecordErrorHandler::Fail,
            production: RecordErrorHandler::Fail,
            initial_wall_clock: 0,
        }
    }
}

impl DriverConfig {
    /// Sets the application id (prefix of internal topics).
    pub fn with_application_id(mut self, id: impl Into<String>) -> Self {
        self.application_id = id.into();
        self
    }

    /// Commits (flushes caches) after each piped record, or only on `commit()`.
    pub fn with_commit_every_record(mut self, on: bool) -> Self {
        self.commit_every_record = on;
        self
    }

    /// Sets the bytes of the record cache shared by all tasks.
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Sets the handler for undecodable records.
    pub fn with_deserialization(mut self, handler: RecordErrorHandler) -> Self {
        self.deserialization = handler;
        self
    }

    /// Sets the handler for records a sink cannot encode.
    pub fn with_production(mut self, handler: RecordErrorHandler) -> Self {
        self.production = handler;
        self
    }

    /// Sets the wall-clock time at start, in ms.
    pub fn with_initial_wall_clock(mut self, ms: i64) -> Self {
        self.initial_wall_clock = ms;
        self
    }
}

/// Runs a topology's processors in the calling thread. See the module docs.
pub struct TestDriver {
    tasks: BTreeMap<u32, Task>,
    routes: HashMap<String, u32>,
    offsets: HashMap<String, u64>,
    outputs: BTreeMap<String, VecDeque<Record>>,
    globals: GlobalStores,
    /// (topic, global store) pairs.
    global_topics: Vec<(String, String)>,
    log: MemoryLog,
    config: DriverConfig,
    env: TaskEnv,
    wall_clock: i64,
    _state_dir: StateDir,
}

struct StateDir(PathBuf);

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TestDriver {
    /// A driver with default settings.
    pub fn new(topology: &Topology) -> Result<Self> {
        Self::with_config(topology, DriverConfig::default())
    }

    /// A driver with the given settings.
    pub fn with_config(topology: &Topology, config: DriverConfig) -> Result<Self> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "streams-test-driver-{}-{unique}",
            std::process::id()
        ));
        let state_dir = StateDir(dir.clone());
        let app = config.application_id.clone();
        let log = MemoryLog::new();
        let mut partitions = HashMap::new();
        let mut routes = HashMap::new();
        for sub in topology.subtopologies() {
            for t in sub.source_topics.iter().chain(&sub.sink_topics) {
                partitions.insert(t.resolve(&app), 1);
            }
            for t in &sub.source_topics {
                routes.insert(t.resolve(&app), sub.id);
            }
        }
        for spec in topology.stores().values() {
            if let Some(t) = spec.changelog() {
                let name = t.resolve(&app);
                log.create_topic(&name, TopicConfig::compacted(1))?;
                partitions.insert(name, 1);
            }
        }
        for handler in [&config.deserialization, &config.production] {
            if let Some(t) = handler.dead_letter_topic() {
                partitions.insert(t.to_string(), 1);
            }
        }
        let rocksdb = RocksDbMemory::new(32 << 20, 8 << 20);
        let globals = GlobalUpdater::open(topology, &dir, &app, &rocksdb)?.stores();
        let global_topics: Vec<(String, String)> = topology
            .global_stores()
            .values()
            .map(|g| (g.topic.clone(), g.name.clone()))
            .collect();
        let env = TaskEnv {
            application_id: app,
            partitions: Arc::new(partitions),
            resources: StoreResources {
                state_dir: dir,
                rocksdb,
                cache: RecordCache::new(config.cache_bytes),
                globals: globals.clone(),
            },
            deserialization: config.deserialization.clone(),
            production: config.production.clone(),
        };
        let mut tasks = BTreeMap::new();
        for sub in topology.subtopologies() {
            let mut task = Task::new(topology, TaskId::new(sub.id, 0), &env)?;
            task.restore(&log)?;
            task.punctuate_wall_clock(config.initial_wall_clock)?;
            tasks.insert(sub.id, task);
        }
        let mut driver = TestDriver {
            tasks,
            routes,
            offsets: HashMap::new(),
            outputs: BTreeMap::new(),
            globals,
            global_topics,
            log,
            wall_clock: config.initial_wall_clock,
            config,
            env,
            _state_dir: state_dir,
        };
        // Wall-clock punctuations due at the start may have produced records.
        driver.run()?;
        Ok(driver)
    }

    /// Pipes an encoded record into `topic` and processes everything it causes.
    pub fn pipe(&mut self, topic: &str, record: Record) -> Result<()> {
        // A global table's topic updates its store at once, as the global thread would.
        let mut global = false;
        for (t, name) in &self.global_topics {
            if t == topic {
                let store = self.globals.get(name)?;
                let mut store = store.lock();
                apply_global(
                    store.as_mut(),
                    record.key.as_deref(),
                    record.value.as_deref(),
                )?;
                global = true;
            }
        }
        if global && !self.routes.contains_key(topic) {
            return Ok(());
        }
        if !self.routes.contains_key(topic) {
            return Err(Error::UnknownTopic {
                topic: format!("{topic} (no source of the topology reads it)"),
            });
        }
        self.deliver(topic, record);
        self.run()?;
        if self.config.commit_every_record {
            self.commit()?;
        }
        Ok(())
    }

    /// Encodes `key` and `value` with the serdes given and pipes them into `topic`.
    pub fn pipe_typed<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
        key: &K,
        value: &V,
        timestamp: i64,
    ) -> Result<()> {
        let encode = |e| Error::Serialization {
            topic: topic.to_string(),
            processor: "test input".into(),
            source: e,
        };
        let key = key_serde.serialize_nullable(key).map_err(encode)?;
        let value = value_serde.serialize_nullable(value).map_err(encode)?;
        self.pipe(
            topic,
            Record {
                key,
                value,
                timestamp,
                headers: Vec::new(),
            },
        )
    }

    fn deliver(&mut self, topic: &str, record: Record) {
        let Some(&sub) = self.routes.get(topic) else {
            return;
        };
        let offset = self.offsets.entry(topic.to_string()).or_insert(0);
        let stored = StoredRecord {
            offset: *offset,
            record,
        };
        *offset += 1;
        if let Some(task) = self.tasks.get_mut(&sub) {
            // Routes only point at topics tasks read, so this cannot fail.
            let _ = task.add_records(topic, [stored]);
        }
    }

    fn route_outputs(&mut self) -> Result<bool> {
        let mut moved = false;
        let ids: Vec<u32> = self.tasks.keys().copied().collect();
        for id in ids {
            let out = match self.tasks.get_mut(&id) {
                Some(t) => t.drain_output(),
                None => continue,
            };
            for (tp, record, _) in out {
                moved = true;
                if self.routes.contains_key(&tp.topic) {
                    self.deliver(&tp.topic, record);
                } else if self.log.describe_topic(&tp.topic).is_ok() {
                    self.log.append(&tp, std::slice::from_ref(&record))?;
                } else {
                    self.outputs.entry(tp.topic).or_default().push_back(record);
                }
            }
        }
        Ok(moved)
    }

    fn run(&mut self) -> Result<()> {
        loop {
            let mut progressed = false;
            for task in self.tasks.values_mut() {
                while task.process_next()? {
                    progressed = true;
                }
            }
            progressed |= self.route_outputs()?;
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Flushes every task (caches forward their merged updates) and processes what follows.
    pub fn commit(&mut self) -> Result<()> {
        for task in self.tasks.values_mut() {
            task.flush()?;
        }
        self.run()?;
        // Flushing may have produced records that filled downstream caches again.
        for task in self.tasks.values_mut() {
            task.flush()?;
        }
        self.run()
    }

    /// Closes the tasks as a clean shutdown does (a commit, then each task's checkpoint
    /// written and its stores closed) and starts them again from the same state directory
    /// and changelogs, as a restarted application does. `topology` must be the one the
    /// driver was made with, or one built the same way (same node and store names). Input
    /// offsets, unread output and the wall clock carry over; stream time starts again from
    /// the records piped next.
    pub fn restart(self, topology: &Topology) -> Result<Self> {
        self.reopen(topology, true)
    }

    /// [`TestDriver::restart`], but the tasks' local state is deleted in between, so every
    /// store is restored from its changelog, as when a task moves to an instance that does
    /// not have its state.
    pub fn restart_without_local_state(self, topology: &Topology) -> Result<Self> {
        self.reopen(topology, false)
    }

    fn reopen(mut self, topology: &Topology, keep_local_state: bool) -> Result<Self> {
        self.commit()?;
        for (_, task) in std::mem::take(&mut self.tasks) {
            task.write_checkpoint(&self.log)?;
            task.close()?;
        }
        let resources = &self.env.resources;
        for sub in topology.subtopologies() {
            let id = TaskId::new(sub.id, 0);
            if !keep_local_state {
                let dir = state_store::task_dir(
                    &resources.state_dir,
                    &self.env.application_id,
                    &id.to_string(),
                );
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("remove", dir, e)),
                }
            }
            let mut task = Task::new(topology, id, &self.env)?;
            task.restore(&self.log)?;
            task.punctuate_wall_clock(self.wall_clock)?;
            self.tasks.insert(sub.id, task);
        }
        self.run()?;
        Ok(self)
    }

    /// Moves the wall clock forward, running due wall-clock punctuations.
    pub fn advance_wall_clock(&mut self, ms: i64) -> Result<()> {
        self.wall_clock += ms;
        let now = self.wall_clock;
        for task in self.tasks.values_mut() {
            task.punctuate_wall_clock(now)?;
        }
        self.run()?;
        if self.config.commit_every_record {
            self.commit()?;
        }
        Ok(())
    }

    /// Takes every record written so far to `topic` (a topic no sub-topology reads).
    pub fn read_output(&mut self, topic: &str) -> Vec<Record> {
        self.outputs
            .get_mut(topic)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Takes and decodes every record written so far to `topic`: `(key, value, timestamp)`.
    pub fn read_output_typed<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        key_serde: &dyn Serde<K>,
        value_serde: &dyn Serde<V>,
    ) -> Result<Vec<(K, V, i64)>> {
        let records = self.read_output(topic);
        let mut out = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let at = |e: SerdeError, part| e.at(topic, 0, i as u64, part);
            let missing = |what| SerdeError::new(what, "null where the type has none");
            let key = key_serde
                .deserialize_nullable(r.key.as_deref())
                .map_err(|e| at(e, RecordPart::Key))?
                .ok_or_else(|| at(missing("key"), RecordPart::Key))?;
            let value = value_serde
                .deserialize_nullable(r.value.as_deref())
                .map_err(|e| at(e, RecordPart::Value))?
                .ok_or_else(|| at(missing("value"), RecordPart::Value))?;
            out.push((key, value, r.timestamp));
        }
        Ok(out)
    }

    fn task_with_store(&self, name: &str) -> Result<&Task> {
        self.tasks
            .values()
            .find(|t| t.stores().names().any(|n| n == name))
            .ok_or_else(|| Error::Config {
                key: format!("store `{name}`"),
                reason: "no task of the topology has it".into(),
            })
    }

    /// A key-value store, for reading its contents.
    pub fn kv_store(&self, name: &str) -> Result<KvStoreRef> {
        self.task_with_store(name)?.stores().kv(name)
    }

    /// A window store, for reading its contents.
    pub fn window_store(&self, name: &str) -> Result<WindowStoreRef> {
        self.task_with_store(name)?.stores().window(name)
    }

    /// A global store, for reading its contents.
    pub fn global_store(&self, name: &str) -> Result<GlobalStoreRef> {
        self.globals.get(name)
    }

    /// A session store, for reading its contents.
    pub fn session_store(&self, name: &str) -> Result<SessionStoreRef> {
        self.task_with_store(name)?.stores().session(name)
    }

    /// Counters of every task, added up.
    pub fn metrics(&self) -> TaskMetrics {
        let mut total = TaskMetrics::default();
        for t in self.tasks.values() {
            let m = t.metrics();
            total.processed += m.processed;
            total.skipped_deserialization += m.skipped_deserialization;
            total.skipped_production += m.skipped_production;
            total.punctuations += m.punctuations;
            for (k, n) in &m.dropped {
                *total.dropped.entry(k.clone()).or_insert(0) += n;
            }
        }
        total
    }

    /// The resolved name of an internal topic for this driver's application id.
    pub fn internal_topic(&self, name: &str) -> String {
        TopicName::Internal(name.to_string()).resolve(&self.config.application_id)
    }
}
