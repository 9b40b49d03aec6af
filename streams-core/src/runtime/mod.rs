//! The runtime: a [`Streams`] application runs a [`Topology`] on N stream threads over a
//! [`Log`].
//!
//! At start the application creates its internal topics (repartition topics with the
//! partition count of the sub-topology that writes them, compacted changelogs with that of
//! the sub-topology that owns the store), checks co-partitioning, and lists its tasks
//! (sub-topology × partition). A sticky assignor spreads the tasks over the threads. A thread
//! only opens a task once its previous holder has committed and closed it, so two threads
//! never share a store. Each thread polls its tasks' partitions, processes records in
//! timestamp order, writes what they produce and commits every `commit_interval`.
//!
//! A failing thread (an error, or a panic caught at the task boundary) aborts its open
//! transaction, drops its tasks without committing, and asks the exception handler what to
//! do: replace the thread (its tasks move, restore from their changelogs and continue from
//! the last commit) or shut the application down.

mod assignor;
mod config;
#[cfg(feature = "http")]
pub mod http;
mod metrics;
mod query;
mod thread;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};
use parking_lot::{Condvar, Mutex};
use state_store::RocksDbMemory;

pub use crate::task::{DeserializationHandler, ProductionHandler};
pub use config::{ExceptionHandler, ExceptionResponse, ProcessingGuarantee, StreamsConfig};
pub use metrics::{StreamsMetrics, TaskSnapshot, ThreadMetrics};
pub use query::{KeyValueQuery, WindowQuery};

use crate::error::{Error, Result};
use crate::log::{IsolationLevel, Log, TopicConfig};
use crate::record::TopicPartition;
use crate::task::TaskId;
use crate::topology::{InternalTopicKind, TopicName, Topology};

/// The lifecycle of an application, as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamsState {
    /// Built, not started.
    Created,
    /// Tasks are being assigned, handed over or restored.
    Rebalancing,
    /// Every task is assigned, restored and processing.
    Running,
    /// `close` was called; threads are committing and stopping.
    PendingShutdown,
    /// Stopped cleanly.
    NotRunning,
    /// A thread failed and the handler chose to shut down; threads are stopping.
    PendingError,
    /// Stopped after a failure (see [`Streams::error`]).
    Error,
}

impl std::fmt::Display for StreamsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamsState::Created => "CREATED",
            StreamsState::Rebalancing => "REBALANCING",
            StreamsState::Running => "RUNNING",
            StreamsState::PendingShutdown => "PENDING_SHUTDOWN",
            StreamsState::NotRunning => "NOT_RUNNING",
            StreamsState::PendingError => "PENDING_ERROR",
            StreamsState::Error => "ERROR",
        })
    }
}

/// Called with (old, new) on every state change, in order, on the thread that caused it. It
/// must not call [`Streams::set_state_listener`].
pub type StateListener = Arc<dyn Fn(StreamsState, StreamsState) + Send + Sync>;

/// Work a query sends to the thread that owns a task: runs there, with the task's stores.
pub(crate) type Request = Box<dyn FnOnce(&thread::ActiveTasks) + Send>;

/// Who should hold which task, and who does.
#[derive(Default)]
struct Group {
    generation: u64,
    members: BTreeSet<usize>,
    /// The assignor's decision.
    assignment: BTreeMap<TaskId, usize>,
    /// The thread that has the task open (it may differ from the assignment until it
    /// commits and lets go).
    holders: HashMap<TaskId, usize>,
    /// Tasks restored and processing on their holder.
    ready: HashSet<TaskId>,
    /// On a log shared by several processes (Kafka): the tasks the consumer group gave this
    /// process. `None`: this process runs every task.
    owned: Option<BTreeSet<TaskId>>,
    /// Whether the group has given this process its first assignment.
    joined: bool,
    /// When this process lost its place in the group, until the group assigns it again.
    lost_at: Option<Instant>,
}

impl Group {
    /// The thread lets go of every task it holds (or claimed and never opened).
    fn release_all(&mut self, thread: usize) {
        let Group { holders, ready, .. } = self;
        holders.retain(|t, h| {
            let keep = *h != thread;
            if !keep {
                ready.remove(t);
            }
            keep
        });
    }
}

/// What every thread of the application shares.
pub(crate) struct Shared {
    config: StreamsConfig,
    /// Global stores, readable by every task.
    globals: crate::global::GlobalStores,
    /// Feeds the global stores; taken by the global thread at start.
    global_updater: Mutex<Option<crate::global::GlobalUpdater>>,
    topology: Arc<Topology>,
    log: Arc<dyn Log>,
    rocksdb: RocksDbMemory,
    /// Partition counts of every topic tasks write to (resolved names).
    partitions: Arc<HashMap<String, u32>>,
    /// Every task, in order.
    tasks: Vec<TaskId>,
    /// Partition count (= task count) per sub-topology.
    task_counts: BTreeMap<u32, u32>,
    /// The topic whose partitions decide where each sub-topology's tasks run, when
    /// processes share the work through a consumer group (topic → sub-topology).
    anchors: BTreeMap<String, u32>,
    /// This process's membership in the application's consumer group, if the log has one.
    membership: Mutex<Option<Box<dyn crate::log::GroupMembership>>>,
    group: Mutex<Group>,
    /// The highest offset this process has committed per input partition: a task opened
    /// later must find the group's commit at least there, or the log lost data.
    committed_high: Mutex<HashMap<TopicPartition, u64>>,
    state: Mutex<StreamsState>,
    state_changed: Condvar,
    listener: Mutex<Option<StateListener>>,
    handler: Mutex<ExceptionHandler>,
    stop: AtomicBool,
    fatal: Mutex<Option<Arc<Error>>>,
    metrics: Mutex<StreamsMetrics>,
    next_thread: AtomicUsize,
    handles: Mutex<Vec<JoinHandle<()>>>,
    senders: Mutex<HashMap<usize, mpsc::Sender<Request>>>,
}

/// A running (or runnable) stream-processing application.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use streams_core::runtime::{Streams, StreamsConfig};
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
    shared: Arc<Shared>,
}

impl Streams {
    /// Prepares an application: validates the configuration, creates internal topics and
    /// checks that source topics exist and joined inputs are co-partitioned.
    pub fn new(topology: Topology, config: StreamsConfig, log: Arc<dyn Log>) -> Result<Streams> {
        config.validate()?;
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
        let updater =
            crate::global::GlobalUpdater::open(&topology, &config.state_dir, &app, &rocksdb)?;
        let tasks = layout
            .task_counts
            .iter()
            .flat_map(|(&sub, &n)| (0..n).map(move |p| TaskId::new(sub, p)))
            .collect();
        let default_handler: ExceptionHandler = Arc::new(|_| ExceptionResponse::ShutdownClient);
        Ok(Streams {
            shared: Arc::new(Shared {
                globals: updater.stores(),
                global_updater: Mutex::new((!updater.is_empty()).then_some(updater)),
                config,
                topology: Arc::new(topology),
                log,
                rocksdb,
                partitions: Arc::new(layout.partitions),
                tasks,
                task_counts: layout.task_counts,
                anchors: layout.anchors,
                membership: Mutex::new(None),
                group: Mutex::new(Group::default()),
                committed_high: Mutex::new(HashMap::new()),
                state: Mutex::new(StreamsState::Created),
                state_changed: Condvar::new(),
                listener: Mutex::new(None),
                handler: Mutex::new(default_handler),
                stop: AtomicBool::new(false),
                fatal: Mutex::new(None),
                metrics: Mutex::new(StreamsMetrics::default()),
                next_thread: AtomicUsize::new(0),
                handles: Mutex::new(Vec::new()),
                senders: Mutex::new(HashMap::new()),
            }),
        })
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
                    task: "global".into(),
                    processor: "global stores".into(),
                    reason: format!("bootstrapping failed: {e}"),
                });
                self.shared.finish();
                return Err(e);
            }
            Shared::spawn_global_thread(&self.shared, updater)?;
        }
        self.join_group()?;
        for _ in 0..self.shared.config.threads {
            Shared::spawn_thread(&self.shared)?;
        }
        Ok(())
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
        match shared
            .log
            .join_group(&shared.config.application_id, &topics, listener)
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
                    task: "-".into(),
                    processor: "consumer group".into(),
                    reason: format!("joining the group failed: {e}"),
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
                tracing::warn!(error = %e, "leaving the consumer group failed");
            }
        }
        self.shared.finish();
        match self.shared.fatal.lock().clone() {
            Some(e) => Err(Error::Processing {
                task: "-".into(),
                processor: "-".into(),
                reason: format!("the application stopped after an error: {e}"),
            }),
            None => Ok(()),
        }
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
        Ok(inputs
            .iter()
            .zip(&after)
            .all(|(tp, &end)| end == 0 || committed.iter().any(|(p, o)| p == tp && *o >= end)))
    }

    /// A snapshot of the metrics.
    pub fn metrics(&self) -> StreamsMetrics {
        self.shared.metrics.lock().clone()
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
}

impl Drop for Streams {
    fn drop(&mut self) {
        if !matches!(self.state(), StreamsState::NotRunning | StreamsState::Error) {
            if let Err(e) = self.close() {
                tracing::warn!(error = %e, "closing the application on drop failed");
            }
        }
    }
}

impl Shared {
    fn set_state(&self, new: StreamsState) {
        // Held across the change and the call, so listeners see changes in order.
        let listener = self.listener.lock();
        let old = {
            let mut state = self.state.lock();
            let old = *state;
            if old == new {
                return;
            }
            *state = new;
            old
        };
        self.state_changed.notify_all();
        tracing::info!(application_id = %self.config.application_id, from = %old, to = %new, "state change");
        if let Some(l) = &*listener {
            l(old, new);
        }
    }

    fn state(&self) -> StreamsState {
        *self.state.lock()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Starts one more stream thread and rebalances.
    fn spawn_thread(shared: &Arc<Shared>) -> Result<()> {
        let index = shared.next_thread.fetch_add(1, Ordering::SeqCst);
        let name = format!(
            "{}-StreamThread-{}",
            shared.config.application_id,
            index + 1
        );
        let (tx, rx) = mpsc::channel();
        shared.senders.lock().insert(index, tx);
        {
            let mut group = shared.group.lock();
            group.members.insert(index);
            shared.rebalance(&mut group);
        }
        let worker_shared = shared.clone();
        let worker_name = name.clone();
        // Tasks are not `Send`: the thread builds its own state.
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || thread::StreamThread::new(worker_shared, index, worker_name, rx).run())
            .map_err(|e| Error::io("spawn stream thread", name, e))?;
        shared.handles.lock().push(handle);
        Ok(())
    }

    /// Keeps the global stores following their topics until the application stops.
    fn spawn_global_thread(
        shared: &Arc<Shared>,
        mut updater: crate::global::GlobalUpdater,
    ) -> Result<()> {
        let name = format!("{}-GlobalStreamThread", shared.config.application_id);
        let worker = shared.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let log = worker.log.clone();
                let mut last_checkpoint = Instant::now();
                // Transient log errors are retried, as the stream threads do, until they have
                // lasted `task_timeout`.
                let mut failing_since: Option<Instant> = None;
                let outcome = (|| -> Result<()> {
                    while !worker.stopping() {
                        let step = updater.poll(&*log).and_then(|applied| {
                            if last_checkpoint.elapsed() >= worker.config.commit_interval {
                                updater.checkpoint(&*log)?;
                                last_checkpoint = Instant::now();
                            }
                            Ok(applied)
                        });
                        match step {
                            Ok(applied) => {
                                failing_since = None;
                                if applied == 0 {
                                    std::thread::sleep(worker.config.poll_idle);
                                }
                            }
                            Err(e) if e.is_retriable() => {
                                let since = *failing_since.get_or_insert_with(Instant::now);
                                if since.elapsed() >= worker.config.task_timeout {
                                    return Err(e);
                                }
                                tracing::warn!(error = %e, "global stores: transient error, retrying");
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    updater.close(&*log)
                })();
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "the global stream thread failed");
                    worker.fail(e);
                }
            })
            .map_err(|e| Error::io("spawn the global stream thread", name, e))?;
        shared.handles.lock().push(handle);
        Ok(())
    }

    fn rebalance(&self, group: &mut Group) {
        let members: Vec<usize> = group.members.iter().copied().collect();
        let tasks: Vec<TaskId> = match &group.owned {
            Some(owned) => owned.iter().copied().collect(),
            None => self.tasks.clone(),
        };
        group.assignment = assignor::assign(&tasks, &members, &group.assignment);
        group.generation += 1;
        if matches!(self.state(), StreamsState::Running) {
            self.set_state(StreamsState::Rebalancing);
        }
    }

    /// Moves to `Running` when every task is open and restored on its assigned thread.
    fn check_running(&self) {
        let done = {
            let group = self.group.lock();
            !group.members.is_empty()
                && (group.owned.is_none() || group.joined)
                && group.assignment.iter().all(|(t, owner)| {
                    group.holders.get(t) == Some(owner) && group.ready.contains(t)
                })
        };
        if done && self.state() == StreamsState::Rebalancing {
            self.set_state(StreamsState::Running);
        }
    }

    /// A thread is gone: it let go of its tasks (cleanly or not). With `failure`, the
    /// exception handler decides what happens next.
    fn thread_exited(self: &Arc<Self>, index: usize, failure: Option<Error>) {
        self.senders.lock().remove(&index);
        {
            let mut group = self.group.lock();
            group.members.remove(&index);
            group.release_all(index);
        }
        if let Some(m) = self.metrics.lock().threads.get_mut(&index) {
            m.alive = false;
            m.tasks.clear();
        }
        if let Some(error) = failure {
            let response = if self.stopping() {
                ExceptionResponse::ShutdownClient
            } else {
                let handler = self.handler.lock().clone();
                handler(&error)
            };
            tracing::error!(thread = index, %error, ?response, "stream thread failed");
            match response {
                ExceptionResponse::ReplaceThread if !self.stopping() => {
                    if let Err(e) = Shared::spawn_thread(self) {
                        self.fail(e);
                    }
                }
                _ => self.fail(error),
            }
        } else if !self.stopping() {
            // A thread left without being asked to: give its tasks to the others.
            let mut group = self.group.lock();
            self.rebalance(&mut group);
        }
        let last = self.group.lock().members.is_empty();
        if last && self.stopping() {
            self.finish();
        }
    }

    /// Stops the application with an error.
    fn fail(&self, error: Error) {
        {
            let mut fatal = self.fatal.lock();
            if fatal.is_none() {
                *fatal = Some(Arc::new(error));
            }
        }
        if !matches!(self.state(), StreamsState::Error) {
            self.set_state(StreamsState::PendingError);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The final state once every thread is gone.
    fn finish(&self) {
        match self.state() {
            StreamsState::PendingError => self.set_state(StreamsState::Error),
            StreamsState::Error | StreamsState::NotRunning => {}
            _ => self.set_state(StreamsState::NotRunning),
        }
    }

    /// Every input partition of every task.
    fn input_partitions(&self) -> Vec<TopicPartition> {
        let app = &self.config.application_id;
        let mut out = Vec::new();
        for sub in self.topology.subtopologies() {
            let n = self.task_counts.get(&sub.id).copied().unwrap_or(0);
            for t in &sub.source_topics {
                let name = t.resolve(app);
                out.extend((0..n).map(|p| TopicPartition::new(name.clone(), p)));
            }
        }
        out
    }

    /// Runs `f` with the stores of `task` on the thread that holds it, and waits for the
    /// answer.
    fn ask<R: Send + 'static>(
        &self,
        store: &str,
        task: TaskId,
        f: impl FnOnce(&crate::task::stores::TaskStores) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let unavailable = |reason: String| Error::StoreUnavailable {
            store: store.to_string(),
            reason,
        };
        let holder = {
            let group = self.group.lock();
            match group.holders.get(&task) {
                Some(&h) if group.ready.contains(&task) => h,
                _ => {
                    return Err(unavailable(format!(
                        "task {task} is being assigned or restored"
                    )))
                }
            }
        };
        let sender = self
            .senders
            .lock()
            .get(&holder)
            .cloned()
            .ok_or_else(|| unavailable(format!("the thread holding task {task} stopped")))?;
        let (reply_tx, reply_rx) = mpsc::channel();
        let request: Request = Box::new(move |tasks: &thread::ActiveTasks| {
            let answer = match tasks.stores(task) {
                Some(stores) => f(stores),
                None => Err(Error::StoreUnavailable {
                    store: String::new(),
                    reason: format!("task {task} moved"),
                }),
            };
            let _ = reply_tx.send(answer);
        });
        sender
            .send(request)
            .map_err(|_| unavailable(format!("the thread holding task {task} stopped")))?;
        match reply_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(answer) => answer.map_err(|e| match e {
                Error::StoreUnavailable { reason, .. } => unavailable(reason),
                other => other,
            }),
            Err(_) => Err(unavailable(format!(
                "the thread holding task {task} did not answer"
            ))),
        }
    }
}

/// Hears from the consumer group which tasks this process runs.
///
/// Task `(s, p)` belongs to the member holding partition `p` of sub-topology `s`'s anchor
/// topic, so a task's inputs always move together, whatever assignor the group uses.
struct GroupListener {
    shared: std::sync::Weak<Shared>,
}

/// How long a revoke waits for the threads to commit and close the revoked tasks.
const REVOKE_WAIT: Duration = Duration::from_secs(120);

impl GroupListener {
    fn tasks(shared: &Shared, partitions: &[TopicPartition]) -> Vec<TaskId> {
        partitions
            .iter()
            .filter_map(|tp| {
                shared
                    .anchors
                    .get(&tp.topic)
                    .map(|&sub| TaskId::new(sub, tp.partition))
            })
            .collect()
    }
}

impl crate::log::RebalanceListener for GroupListener {
    fn revoked(&self, partitions: &[TopicPartition], lost: bool) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let tasks = Self::tasks(&shared, partitions);
        {
            let mut group = shared.group.lock();
            if lost {
                group.lost_at.get_or_insert_with(Instant::now);
            }
            if let Some(owned) = &mut group.owned {
                for t in &tasks {
                    owned.remove(t);
                }
            }
            shared.rebalance(&mut group);
        }
        // The group hands the partitions on when this returns: their tasks must have
        // committed and closed by then.
        let deadline = Instant::now() + REVOKE_WAIT;
        loop {
            let held = {
                let group = shared.group.lock();
                tasks
                    .iter()
                    .filter(|t| group.holders.contains_key(*t))
                    .count()
            };
            if held == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    held,
                    "revoked tasks were not closed in time; the group moves on"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn assigned(&self, partitions: &[TopicPartition]) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let tasks = Self::tasks(&shared, partitions);
        {
            let mut group = shared.group.lock();
            if !tasks.is_empty() {
                group.lost_at = None;
            }
            group.owned.get_or_insert_with(BTreeSet::new).extend(tasks);
            group.joined = true;
            shared.rebalance(&mut group);
        }
        shared.check_running();
    }

    fn failed(&self, error: Error) {
        if let Some(shared) = self.shared.upgrade() {
            shared.fail(error);
        }
    }
}

/// Partition counts of every topic, and how many tasks each sub-topology has.
struct TopicLayout {
    partitions: HashMap<String, u32>,
    task_counts: BTreeMap<u32, u32>,
    anchors: BTreeMap<String, u32>,
}

impl TopicLayout {
    /// Creates internal and missing output topics and checks the inputs.
    fn prepare(
        topology: &Topology,
        app: &str,
        config: &StreamsConfig,
        log: &dyn Log,
    ) -> Result<TopicLayout> {
        let mut counts: HashMap<String, u32> = HashMap::new();
        for topic in topology.user_source_topics() {
            let described = log.describe_topic(&topic).map_err(|e| match e {
                Error::UnknownTopic { .. } => Error::UnknownTopic {
                    topic: format!(
                        "{topic} (a source topic of the topology; create it before starting)"
                    ),
                },
                other => other,
            })?;
            counts.insert(topic, described.partitions);
        }
        let internal = topology.internal_topics();
        let repartition: HashSet<String> = internal
            .iter()
            .filter(|(_, k)| **k == InternalTopicKind::Repartition)
            .map(|(n, _)| TopicName::Internal(n.clone()).resolve(app))
            .collect();
        // A repartition topic gets the partition count of the sub-topology writing it, which
        // may itself read a repartition topic: settle counts until nothing changes.
        let mut task_counts: BTreeMap<u32, u32> = BTreeMap::new();
        for _ in 0..=topology.subtopologies().len() {
            let mut changed = false;
            for sub in topology.subtopologies() {
                let n = sub
                    .source_topics
                    .iter()
                    .filter_map(|t| counts.get(&t.resolve(app)).copied())
                    .max();
                let Some(n) = n else { continue };
                if task_counts.insert(sub.id, n) != Some(n) {
                    changed = true;
                }
                for t in &sub.sink_topics {
                    let name = t.resolve(app);
                    if repartition.contains(&name) && !counts.contains_key(&name) {
                        counts.insert(name, n);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for sub in topology.subtopologies() {
            if !task_counts.contains_key(&sub.id) {
                return Err(Error::Config {
                    key: format!("sub-topology {}", sub.id),
                    reason: "none of its source topics has a known partition count".into(),
                });
            }
        }
        topology.check_copartitioning(app, |t| counts.get(t).copied())?;
        for name in &repartition {
            if let Some(&n) = counts.get(name) {
                log.create_topic(name, TopicConfig::new(n))?;
            }
        }
        for sub in topology.subtopologies() {
            let n = task_counts[&sub.id];
            for store in &sub.stores {
                if let Some(t) = topology.stores().get(store).and_then(|s| s.changelog()) {
                    let name = t.resolve(app);
                    log.create_topic(&name, TopicConfig::compacted(n))?;
                    counts.insert(name, n);
                }
            }
            // Output topics that do not exist are created like Kafka's auto-creation would,
            // with the partition count of the sub-topology writing them.
            for t in &sub.sink_topics {
                let name = t.resolve(app);
                if counts.contains_key(&name) {
                    continue;
                }
                match log.describe_topic(&name) {
                    Ok(c) => {
                        counts.insert(name, c.partitions);
                    }
                    Err(Error::UnknownTopic { .. }) => {
                        log.create_topic(&name, TopicConfig::new(n))?;
                        counts.insert(name, n);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let dead_letter = [
            match &config.deserialization {
                DeserializationHandler::DeadLetter(t) => Some(t.clone()),
                _ => None,
            },
            match &config.production {
                ProductionHandler::DeadLetter(t) => Some(t.clone()),
                _ => None,
            },
        ];
        for t in dead_letter.into_iter().flatten() {
            let n = match log.describe_topic(&t) {
                Ok(c) => c.partitions,
                Err(Error::UnknownTopic { .. }) => {
                    log.create_topic(&t, TopicConfig::new(1))?;
                    1
                }
                Err(e) => return Err(e),
            };
            counts.insert(t, n);
        }
        // Per sub-topology, the first source topic (by name) with as many partitions as it
        // has tasks. The same on every process, so the group agrees on where tasks run.
        let mut anchors = BTreeMap::new();
        for sub in topology.subtopologies() {
            let n = task_counts[&sub.id];
            let anchor = sub
                .source_topics
                .iter()
                .map(|t| t.resolve(app))
                .filter(|t| counts.get(t) == Some(&n))
                .min();
            if let Some(anchor) = anchor {
                anchors.insert(anchor, sub.id);
            }
        }
        Ok(TopicLayout {
            partitions: counts,
            task_counts,
            anchors,
        })
    }
}
