//! [`Streams`], the application handle: built from a topology, a configuration and a log;
//! started, queried, watched and closed by the user. Everything it does goes through the
//! [`Shared`] state its threads see.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::{Condvar, Mutex};
use state_store::RocksDbMemory;

use super::exporter::{self, MetricsCollector};
use super::layout::TopicLayout;
use super::rebalance::GroupListener;
use super::{
    ExceptionHandler, ExceptionResponse, Group, RestoreProgress, Shared, StreamsConfig,
    StreamsMetrics, StreamsState,
};
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::log::{IsolationLevel, Log};
use crate::record::TopicPartition;
use crate::task::GlobalUpdater;
use crate::topology::Topology;

/// A running (or runnable) stream-processing application.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use streams_core::{Streams, StreamsConfig};
/// use streams_core::{EmbeddedLog, Log, Record, StringSerde, TopicConfig, TopicPartition, TopologyBuilder, TopicName};
///
/// let dir = tempfile::tempdir()?;
/// let config = StreamsConfig::new("copy", dir.path()).with_commit_interval(Duration::from_millis(50));
/// let log = Arc::new(EmbeddedLog::open(config.embedded_log_dir())?);
/// log.create_topic("in", TopicConfig::new(2))?;
/// log.append(&TopicPartition::new("in", 0), &[Record::new("k", "v", 1)])?;
///
/// let mut b = TopologyBuilder::new();
/// let src = b.add_source::<String, String>("src", vec![TopicName::User("in".into())],
///     Arc::new(StringSerde), Arc::new(StringSerde))?;
/// b.add_sink("sink", TopicName::User("out".into()), &[src], Arc::new(StringSerde), Arc::new(StringSerde), None)?;
///
/// let streams = Streams::new(b.build()?, config, log.clone())?;
/// streams.start()?;
/// streams.wait_until_caught_up(Duration::from_secs(30))?;
/// streams.close()?;
/// let out = log.read(&TopicPartition::new("out", streams_core::partition_for_key(b"k", 2)), 0, 10,
///     streams_core::IsolationLevel::ReadCommitted)?;
/// assert_eq!(out.records.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Streams {
    pub(crate) shared: Arc<Shared>,
    /// Whether dropping this handle closes the application: true for the user's, false for
    /// the handles async methods move onto the blocking pool.
    closes_on_drop: bool,
}

impl Streams {
    /// Prepares an application: validates the configuration, creates internal topics and
    /// checks that source topics exist and joined inputs are co-partitioned.
    pub fn new(topology: Topology, config: StreamsConfig, log: Arc<dyn Log>) -> Result<Streams> {
        config.validate()?;
        let endpoint = config.application_server()?;
        let process_id = config.process_id()?;
        let app = config.application_id.clone();
        let layout = TopicLayout::prepare(&topology, &app, &config, &*log)?;
        let rocksdb =
            RocksDbMemory::new(config.rocksdb_memory_bytes, config.rocksdb_memtable_bytes);
        for g in topology.global_stores().values() {
            log.describe_topic(&g.topic).map_err(|e| match e {
                Error::UnknownTopic { .. } => Error::UnknownTopic {
                    topic: format!(
                        "{} (the topic of global table `{}`; create it before starting)",
                        g.topic, g.name
                    ),
                },
                other => other,
            })?;
        }
        let updater = GlobalUpdater::open(&topology, &config.state_dir, &app, &rocksdb)?;
        let tasks = layout
            .task_counts
            .iter()
            .flat_map(|(&sub, &n)| (0..n).map(move |p| TaskId::new(sub, p)))
            .collect();
        let default_handler: ExceptionHandler = Arc::new(|_| ExceptionResponse::ShutdownClient);
        let metrics = Arc::new(Mutex::new(StreamsMetrics::default()));
        let registry = exporter::registry_of(MetricsCollector {
            metrics: metrics.clone(),
            application_id: app.clone(),
        });
        Ok(Streams {
            shared: Arc::new(Shared {
                globals: updater.stores(),
                global_updater: Mutex::new((!updater.is_empty()).then_some(updater)),
                globals_ready: AtomicBool::new(false),
                config,
                topology: Arc::new(topology),
                log,
                rocksdb,
                partitions: Arc::new(layout.partitions),
                tasks,
                task_counts: layout.task_counts,
                anchors: layout.anchors,
                membership: Mutex::new(None),
                endpoint,
                process_id,
                instances: Default::default(),
                group: Mutex::new(Group::default()),
                committed_high: Mutex::new(HashMap::new()),
                state: Mutex::new(StreamsState::Created),
                state_changed: Condvar::new(),
                #[cfg(feature = "tokio")]
                state_watch: tokio::sync::watch::Sender::new(StreamsState::Created),
                restoring: Mutex::new(BTreeMap::new()),
                restore_listener: Mutex::new(None),
                listener: Mutex::new(None),
                handler: Mutex::new(default_handler),
                failures: Mutex::new(HashMap::new()),
                corrupt: Arc::new(Mutex::new(HashMap::new())),
                stop: AtomicBool::new(false),
                fatal: Mutex::new(None),
                metrics,
                registry,
                next_thread: AtomicUsize::new(0),
                handles: Mutex::new(Vec::new()),
                senders: Mutex::new(HashMap::new()),
            }),
            closes_on_drop: true,
        })
    }

    /// Another handle on the same application, which does not close it when dropped.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn handle(&self) -> Streams {
        Streams {
            shared: self.shared.clone(),
            closes_on_drop: false,
        }
    }

    /// Sets what is told about the restores of the tasks' stores (see
    /// [`StateRestoreListener`](crate::StateRestoreListener)); set it before `start`.
    pub fn set_restore_listener(&self, listener: impl crate::StateRestoreListener + 'static) {
        *self.shared.restore_listener.lock() = Some(Arc::new(listener));
    }

    /// Sets the function told about every state change. Set it before `start`.
    pub fn set_state_listener(
        &self,
        listener: impl Fn(StreamsState, StreamsState) + Send + Sync + 'static,
    ) {
        *self.shared.listener.lock() = Some(Arc::new(listener));
    }

    /// Sets what happens when a thread fails (default: shut the application down).
    pub fn set_uncaught_exception_handler(
        &self,
        handler: impl Fn(&Error) -> ExceptionResponse + Send + Sync + 'static,
    ) {
        *self.shared.handler.lock() = Arc::new(handler);
    }

    /// Starts the stream threads. The application moves to `Rebalancing`, then to
    /// `Running` once every task is restored.
    pub fn start(&self) -> Result<()> {
        {
            let state = *self.shared.state.lock();
            if state != StreamsState::Created {
                return Err(Error::InvalidState {
                    operation: "start".into(),
                    state: state.to_string(),
                });
            }
        }
        std::fs::create_dir_all(self.shared.config.app_state_dir()).map_err(|e| {
            Error::io(
                "create state directory",
                self.shared.config.app_state_dir(),
                e,
            )
        })?;
        self.shared.set_state(StreamsState::Rebalancing);
        let updater = self.shared.global_updater.lock().take();
        if let Some(mut updater) = updater {
            // Every task may read global tables: they are complete before any processes.
            if let Err(e) = updater.bootstrap(&*self.shared.log) {
                self.shared.fail(Error::Processing {
                    task: None,
                    processor: "global stores".into(),
                    reason: format!("bootstrapping failed: {}", e.report()),
                });
                self.shared.finish();
                return Err(e);
            }
            self.shared.globals_ready.store(true, Ordering::SeqCst);
            Shared::spawn_global_thread(&self.shared, updater)?;
        }
        self.fence_predecessors()?;
        self.join_group()?;
        for _ in 0..self.shared.config.threads {
            Shared::spawn_thread(&self.shared)?;
        }
        Ok(())
    }

    /// Under exactly-once: opens one transaction per stream thread, all at once, and aborts
    /// them. On Kafka that initialises every `transactional.id` this run can use
    /// (`<prefix>-0` up to one per thread) before anything is processed, which fences a
    /// crashed predecessor's producers and aborts what they left open; an id this run never
    /// needed would otherwise keep its predecessor's transaction open until the broker's
    /// transaction timeout, holding back every read-committed reader of its partitions.
    fn fence_predecessors(&self) -> Result<()> {
        if self.shared.config.guarantee != super::config::ProcessingGuarantee::ExactlyOnce {
            return Ok(());
        }
        let log = &self.shared.log;
        let mut opened = Vec::with_capacity(self.shared.config.threads);
        let mut outcome = Ok(());
        for _ in 0..self.shared.config.threads {
            match log.begin_transaction() {
                Ok(txn) => opened.push(txn),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        for txn in opened {
            if let Err(e) = log.abort_transaction(txn) {
                outcome = outcome.and(Err(e));
            }
        }
        outcome
    }

    /// On a log shared by several processes, joins the application's consumer group: this
    /// process then runs only the tasks whose anchor partitions the group gives it.
    fn join_group(&self) -> Result<()> {
        let shared = &self.shared;
        // No task runs before the first assignment.
        shared.group.lock().owned = Some(BTreeSet::new());
        let listener = Arc::new(GroupListener {
            shared: Arc::downgrade(shared),
        });
        let topics: Vec<String> = shared.anchors.keys().cloned().collect();
        let tag = super::instances::member_tag(&shared.process_id, shared.endpoint.as_ref());
        match shared
            .log
            .join_group(&shared.config.application_id, &topics, &tag, listener)
        {
            Ok(Some(membership)) => {
                *shared.membership.lock() = Some(membership);
                Ok(())
            }
            Ok(None) => {
                shared.group.lock().owned = None;
                Ok(())
            }
            Err(e) => {
                shared.fail(Error::Processing {
                    task: None,
                    processor: "consumer group".into(),
                    reason: format!("joining the group failed: {}", e.report()),
                });
                shared.stop.store(true, Ordering::SeqCst);
                for h in std::mem::take(&mut *shared.handles.lock()) {
                    let _ = h.join();
                }
                shared.finish();
                Err(e)
            }
        }
    }

    /// Stops every thread after a final commit (flushing caches, writing checkpoints), and
    /// waits for them. Returns the error that stopped the application, if one did.
    pub fn close(&self) -> Result<()> {
        {
            let state = *self.shared.state.lock();
            match state {
                StreamsState::Created => {
                    self.shared.set_state(StreamsState::NotRunning);
                    return Ok(());
                }
                StreamsState::NotRunning => return Ok(()),
                StreamsState::Rebalancing | StreamsState::Running => {
                    self.shared.set_state(StreamsState::PendingShutdown)
                }
                _ => {}
            }
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        loop {
            let handles: Vec<_> = std::mem::take(&mut *self.shared.handles.lock());
            if handles.is_empty() {
                break;
            }
            for h in handles {
                // A panic escaping a thread was already reported as its failure.
                let _ = h.join();
            }
        }
        // Every task committed and closed: leaving hands them to the other processes.
        let membership = self.shared.membership.lock().take();
        if let Some(membership) = membership {
            if let Err(e) = membership.leave() {
                tracing::warn!(error = %e.report(), "leaving the consumer group failed");
            }
        }
        self.shared.finish();
        match self.shared.fatal.lock().clone() {
            Some(e) => Err(Error::Processing {
                task: None,
                processor: "-".into(),
                reason: format!("the application stopped after an error: {}", e.report()),
            }),
            None => Ok(()),
        }
    }

    /// Removes this application's local state directory (its stores and checkpoints; see
    /// [`StreamsConfig::clean_up_local_state`]), as Kafka Streams' `cleanUp()` does: allowed
    /// before [`Streams::start`] and after the application stopped (`NOT_RUNNING`, `ERROR`),
    /// an [`Error::InvalidState`] while it runs or shuts down.
    ///
    /// A topology with persistent global stores opens them in the state directory already in
    /// [`Streams::new`], so before `start` it is refused too: clean up before building the
    /// `Streams` (with `StreamsConfig::clean_up_local_state`), or after `close`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use streams_core::{MemoryLog, Streams, StreamsConfig, StreamsState, TopologyBuilder,
    /// #     TopicName, StringSerde, Log, TopicConfig};
    /// # let dir = tempfile::tempdir()?;
    /// # let log = Arc::new(MemoryLog::new());
    /// # log.create_topic("in", TopicConfig::new(1))?;
    /// # let mut b = TopologyBuilder::new();
    /// # b.add_source::<String, String>("src", vec![TopicName::User("in".into())],
    /// #     Arc::new(StringSerde), Arc::new(StringSerde))?;
    /// let streams = Streams::new(b.build()?, StreamsConfig::new("app", dir.path()), log)?;
    /// streams.clean_up()?; // a fresh start: every store restores from its changelog
    /// streams.start()?;
    /// assert!(streams.clean_up().is_err(), "not while it runs");
    /// streams.close()?;
    /// streams.clean_up()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clean_up(&self) -> Result<()> {
        // Held throughout, so that the state cannot move on while the files go.
        let state = self.shared.state.lock();
        let refuse = |why: &str| {
            Err(Error::InvalidState {
                operation: format!("clean up the local state{why}"),
                state: state.to_string(),
            })
        };
        match *state {
            StreamsState::Created => {
                let persistent_globals = self
                    .shared
                    .topology
                    .global_stores()
                    .values()
                    .any(|g| g.persistent);
                if persistent_globals {
                    return refuse(
                        " (the persistent global stores opened by Streams::new live there: \
                         clean up before Streams::new, or after close)",
                    );
                }
            }
            StreamsState::NotRunning | StreamsState::Error => {}
            _ => return refuse(" (close the application first)"),
        }
        let removed = self.shared.config.clean_up_local_state()?;
        tracing::info!(
            application_id = %self.shared.config.application_id,
            removed = removed.len(),
            "local state cleaned up"
        );
        Ok(())
    }

    /// The current state.
    pub fn state(&self) -> StreamsState {
        *self.shared.state.lock()
    }

    /// The error that moved the application to `Error`, if any.
    pub fn error(&self) -> Option<Arc<Error>> {
        self.shared.fatal.lock().clone()
    }

    /// Waits until the state is `wanted` (or the application stopped), up to `timeout`.
    pub fn wait_for_state(&self, wanted: StreamsState, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        while *state != wanted {
            if matches!(*state, StreamsState::Error | StreamsState::NotRunning) {
                return Err(Error::InvalidState {
                    operation: format!("wait for {wanted}"),
                    state: state.to_string(),
                });
            }
            if self
                .shared
                .state_changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return Err(Error::Timeout {
                    operation: format!("waiting for state {wanted} (state is {})", *state),
                    after: timeout,
                });
            }
        }
        Ok(())
    }

    /// Waits until every record of every input partition (including repartition topics) has
    /// been processed and committed: the group's committed offsets reach the end offsets.
    pub fn wait_until_caught_up(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let inputs = self.shared.input_partitions();
        let app = &self.shared.config.application_id;
        loop {
            let state = self.state();
            if matches!(
                state,
                StreamsState::Error | StreamsState::NotRunning | StreamsState::Created
            ) {
                return Err(Error::InvalidState {
                    operation: "wait until caught up".into(),
                    state: state.to_string(),
                });
            }
            if state == StreamsState::Running && self.caught_up(&inputs, app)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    operation: format!("catching up (lag {})", self.metrics().lag()),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn caught_up(&self, inputs: &[TopicPartition], app: &str) -> Result<bool> {
        let log = &self.shared.log;
        let ends = |log: &Arc<dyn Log>| -> Result<Vec<u64>> {
            inputs
                .iter()
                .map(|tp| log.end_offset(tp, IsolationLevel::ReadCommitted))
                .collect()
        };
        // Ends read before and after the committed offsets: if they did not move, the
        // comparison saw one consistent moment.
        let before = ends(log)?;
        let committed = log.committed_offsets_of(app, inputs)?;
        let after = ends(log)?;
        if before != after {
            return Ok(false);
        }
        // A committed offset past the partition's end is not caught up: it is out of range,
        // and the application resumes elsewhere (`auto.offset.reset`) and commits again.
        let log_ends: Vec<u64> = inputs
            .iter()
            .map(|tp| log.end_offset(tp, IsolationLevel::ReadUncommitted))
            .collect::<Result<_>>()?;
        Ok(inputs
            .iter()
            .zip(after.iter().zip(&log_ends))
            .all(|(tp, (&end, &log_end))| {
                end == 0
                    || committed
                        .iter()
                        .any(|(p, o)| p == tp && *o >= end && *o <= log_end)
            }))
    }

    /// A snapshot of the metrics, as the stream threads last published them (after each
    /// commit, when their tasks change, and at least every [`PUBLISH_INTERVAL`](super::PUBLISH_INTERVAL) while they
    /// run).
    pub fn metrics(&self) -> StreamsMetrics {
        self.shared.metrics.lock().clone()
    }

    /// The metrics as a `prometheus-client` collector, to register into an application's own
    /// registry: each scrape encodes the latest published snapshot (see
    /// [`Streams::register_metrics`] and the README's metrics section for the families).
    pub fn metrics_collector(&self) -> MetricsCollector {
        MetricsCollector {
            metrics: self.shared.metrics.clone(),
            application_id: self.shared.config.application_id.clone(),
        }
    }

    /// Registers [`Streams::metrics_collector`] into `registry` (a sub-registry adds its
    /// prefix and labels to every family).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use prometheus_client::registry::Registry;
    /// use streams_core::{Log, MemoryLog, StringSerde, Streams, StreamsConfig, TopicConfig};
    /// use streams_core::{TopicName, TopologyBuilder};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let log = Arc::new(MemoryLog::new());
    /// log.create_topic("in", TopicConfig::new(1))?;
    /// let mut b = TopologyBuilder::new();
    /// b.add_source::<String, String>("src", vec![TopicName::User("in".into())],
    ///     Arc::new(StringSerde), Arc::new(StringSerde))?;
    /// let streams = Streams::new(b.build()?, StreamsConfig::new("my-app", dir.path()), log)?;
    ///
    /// let mut registry = Registry::default();
    /// streams.register_metrics(registry.sub_registry_with_prefix("myservice"));
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry)?;
    /// assert!(text.contains("# TYPE myservice_streams_thread_commits counter"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(self.metrics_collector()));
    }

    /// The log the application runs on.
    pub fn log(&self) -> &Arc<dyn Log> {
        &self.shared.log
    }

    /// The topology being run.
    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// Tasks per thread, by the assignor's last decision.
    pub fn assignment(&self) -> BTreeMap<TaskId, usize> {
        self.shared.group.lock().assignment.clone()
    }

    /// Live stream threads.
    pub fn live_threads(&self) -> usize {
        self.shared.group.lock().members.len()
    }

    /// The restores under way in this process, by task and store: what a readiness probe
    /// shows while the application is `Rebalancing`. Empty once every task is restored.
    pub fn restore_progress(&self) -> Vec<RestoreProgress> {
        self.shared.restore_progress()
    }
}

impl Shared {
    pub(crate) fn restore_progress(&self) -> Vec<RestoreProgress> {
        let restoring = self.restoring.lock();
        restoring
            .iter()
            .flat_map(|(task, stores)| {
                stores
                    .iter()
                    .map(move |(store, &(restored, total))| RestoreProgress {
                        task: *task,
                        store: store.clone(),
                        restored,
                        total,
                    })
            })
            .collect()
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        if self.closes_on_drop
            && !matches!(self.state(), StreamsState::NotRunning | StreamsState::Error)
        {
            if let Err(e) = self.close() {
                tracing::warn!(error = %e.report(), "closing the application on drop failed");
            }
        }
    }
}
