//! The runtime: a [`Streams`] application runs a [`Topology`] on N stream threads over a
//! [`Log`].
//!
//! At start the application creates its internal topics (repartition topics with the
//! partition count of the join's other inputs when they feed a join, else of the
//! sub-topology that writes them, compacted changelogs with that of
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
//!
//! Failures end. A thread retries a transient error itself (the log unreachable for a
//! moment), pausing with exponential backoff, for at most `task_timeout`. Failures handed to
//! the handler are counted per task: a task that failed is opened again only after a backoff
//! that doubles with each failure in a row, and once it has failed `max_task_failures` times
//! with no commit moving it forward in between, the application stops with
//! [`Error::TaskFailed`], naming the task, the cause and what to do. A failure that will not go
//! away (a panic on one record, damaged local files) thus costs a handful of log lines and
//! seconds, never an endless stream of thread replacements.

mod assignor;
mod choices;
mod commit;
mod config;
mod exporter;
mod global_thread;
mod host;
mod instances;
mod layout;
mod metadata;
mod metrics;
pub(crate) mod page;
mod positions;
mod properties;
mod publish;
mod query;
mod rebalance;
mod reset;
mod restore;
#[cfg(feature = "tokio")]
mod service;
mod streams;
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

pub(crate) use config::check_bearer_token;
pub use config::{
    ExceptionHandler, ExceptionResponse, OffsetReset, ProcessingGuarantee, StreamsConfig,
};
#[cfg(feature = "http")]
pub(crate) use exporter::render as render_metrics;
pub use exporter::MetricsCollector;
pub use host::HostInfo;
#[cfg(feature = "http")]
pub(crate) use metadata::Route;
pub use metadata::{KeyQueryMetadata, StreamsMetadata};
pub use metrics::{
    LatencyHistogram, RestoreProgress, RocksDbFigures, StreamsMetrics, TaskSnapshot, ThreadMetrics,
    LATENCY_BUCKETS, PUBLISH_INTERVAL,
};
pub use page::{Cursor, Page, PageLimit};
pub use properties::{Properties, ENV_PREFIX};
pub use query::{GlobalQuery, KeyValueQuery, SessionQuery, WindowQuery};
pub use reset::{is_internal_topic, ApplicationReset, OffsetMove, ResetPlan, ResetTo};
pub use restore::StateRestoreListener;
#[cfg(feature = "tokio")]
pub use service::Shutdown;
pub use streams::Streams;

use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::log::{GroupMembership, Log};
use crate::record::TopicPartition;
use crate::task::{GlobalStores, GlobalUpdater};
use crate::topology::Topology;

/// The lifecycle of an application, as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
pub(crate) type StateListener = Arc<dyn Fn(StreamsState, StreamsState) + Send + Sync>;

/// One task's stores restoring: store → (offsets replayed, offsets to replay in all).
type StoresRestoring = BTreeMap<String, (u64, u64)>;

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

/// The failures in a row of one task (or, keyed `None`, of threads outside any task).
struct Failures {
    count: u32,
    /// Not opened again before this.
    retry_at: Instant,
}

/// A task found corrupt while running (see [`Shared::repair_corrupt`]).
struct Corruption {
    /// Why its stores are to be wiped when it opens next; empty once they were.
    reason: String,
    /// Times found corrupt with no progress between.
    count: u32,
}

/// Whether `error` says a store's local files are damaged (a checksum error, say): what
/// wiping the store and restoring it from its changelog repairs.
fn is_corruption(error: &Error) -> bool {
    matches!(error, Error::Store { source, .. } if source.is_corruption())
}

/// What to do about a failure that kept coming back.
fn advice(error: &Error, task: Option<TaskId>, config: &StreamsConfig) -> String {
    let task_dir = task.map_or_else(
        || config.app_state_dir(),
        |t| config.app_state_dir().join(t.to_string()),
    );
    let task_dir = task_dir.display();
    match error {
        Error::Processing { .. } => "The error comes from the application's code (a processor, \
             or a function given to the DSL): fix it, or make it skip the record that causes it, \
             then start the application again; the task resumes from its last commit."
            .to_string(),
        Error::Deserialization { .. } => "A record cannot be decoded: fix its producer or the \
             serde, or set a deserialization handler that skips such records or sends them to a \
             dead-letter topic (StreamsConfig::with_deserialization_handler)."
            .to_string(),
        Error::Store { source, .. } if source.is_corruption() => format!(
            "The task's local state is damaged: stop the application, delete {task_dir} (its \
             logged stores are then restored from their changelogs) and start it again."
        ),
        Error::Store { .. } | Error::Io { .. } => format!(
            "A file of the application's local state cannot be used (the error names it): fix \
             it (permissions, disk space, something else in its place), or delete {task_dir} so \
             that the task restores from its changelogs, then start the application again."
        ),
        Error::Corrupt { .. } => "The log data the error names is damaged: inspect it with the \
             streams-log tool, repair or remove the damaged file, then start the application \
             again."
            .to_string(),
        Error::OffsetOutOfRange { .. } | Error::NoValidOffset { .. } | Error::LostData { .. } => {
            "The input position is no \
             longer in the log: choose where to resume with auto.offset.reset \
             (StreamsConfig::with_offset_reset) or reset the group's offsets with the \
             streams-log tool, then start the application again."
                .to_string()
        }
        e if e.is_retriable() => "The failure is transient but outlasted every retry: check the \
             resource the error names (the disk, the broker), then start the application again."
            .to_string(),
        _ => "Fix the cause the error names, then start the application again.".to_string(),
    }
}

/// What every thread of the application shares.
pub(crate) struct Shared {
    pub(crate) config: StreamsConfig,
    /// Global stores, readable by every task.
    globals: GlobalStores,
    /// Feeds the global stores; taken by the global thread at start.
    global_updater: Mutex<Option<GlobalUpdater>>,
    /// Whether the global stores were read to their topics' end at start (queries of them
    /// wait for it).
    globals_ready: AtomicBool,
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
    membership: Mutex<Option<Box<dyn GroupMembership>>>,
    /// This instance's `application.server`.
    pub(crate) endpoint: Option<HostInfo>,
    /// This instance's process id (see `StreamsConfig::process_id`).
    process_id: String,
    /// What the group says about every instance (see `instances`).
    instances: instances::Instances,
    group: Mutex<Group>,
    /// The highest offset this process has committed per input partition: a task opened
    /// later must find the group's commit at least there, or the log lost data.
    committed_high: Mutex<HashMap<TopicPartition, u64>>,
    pub(crate) state: Mutex<StreamsState>,
    state_changed: Condvar,
    /// The state, for async code (`Streams::state_changes`).
    #[cfg(feature = "tokio")]
    state_watch: tokio::sync::watch::Sender<StreamsState>,
    /// Restores under way: per task, per store, (offsets replayed, offsets in all).
    restoring: Mutex<BTreeMap<TaskId, StoresRestoring>>,
    /// Told about every task's restores.
    restore_listener: Mutex<Option<Arc<dyn StateRestoreListener>>>,
    listener: Mutex<Option<StateListener>>,
    handler: Mutex<ExceptionHandler>,
    /// Tasks that failed with no progress since, by task (`None`: outside any task).
    failures: Mutex<HashMap<Option<TaskId>, Failures>>,
    /// Tasks whose local state was found corrupt while running (by processing or by a
    /// query): why, and how many times in a row. Their logged stores are wiped when the task
    /// opens next, so that it restores them from the changelogs.
    corrupt: Arc<Mutex<HashMap<TaskId, Corruption>>>,
    stop: AtomicBool,
    pub(crate) fatal: Mutex<Option<Arc<Error>>>,
    pub(crate) metrics: Arc<Mutex<StreamsMetrics>>,
    /// The library's own registry, holding only this application's collector (for the
    /// HTTP server's `/metrics`).
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP server
    pub(crate) registry: prometheus_client::registry::Registry,
    next_thread: AtomicUsize,
    handles: Mutex<Vec<JoinHandle<()>>>,
    senders: Mutex<HashMap<usize, mpsc::Sender<Request>>>,
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
        #[cfg(feature = "tokio")]
        self.state_watch.send_replace(new);
        tracing::info!(application_id = %self.config.application_id, from = %old, to = %new, "state change");
        if let Some(l) = &*listener {
            l(old, new);
        }
    }

    fn state(&self) -> StreamsState {
        *self.state.lock()
    }

    /// Whether this process runs `task` (every task, unless a consumer group shares them).
    fn is_local(&self, task: TaskId) -> bool {
        let group = self.group.lock();
        group
            .owned
            .as_ref()
            .is_none_or(|owned| owned.contains(&task))
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
        // The thread's span is a child of the caller's (of whoever started the application).
        let span = tracing::info_span!("stream_thread", thread = %name);
        // Tasks are not `Send`: the thread builds its own state.
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _span = span.entered();
                thread::StreamThread::new(worker_shared, index, worker_name, rx).run()
            })
            .map_err(|e| Error::io("spawn stream thread", name, e))?;
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

    /// A thread is gone: it let go of its tasks (cleanly or not). With `failure` (the error,
    /// and the task it happened in), the exception handler decides what happens next.
    fn thread_exited(self: &Arc<Self>, index: usize, failure: Option<(Error, Option<TaskId>)>) {
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
        if let Some((error, task)) = failure {
            let response = if self.stopping() {
                ExceptionResponse::ShutdownClient
            } else {
                let handler = self.handler.lock().clone();
                handler(&error)
            };
            let failures = self.count_failure(task);
            let limit = self.config.max_task_failures;
            let task_name = task.map_or_else(|| "none".to_string(), |t| t.to_string());
            tracing::error!(
                application_id = %self.config.application_id, thread = index, task = %task_name,
                error = %error.report(), ?response, failures, limit, "stream thread failed"
            );
            match response {
                ExceptionResponse::ReplaceThread if !self.stopping() && failures < limit => {
                    if let Err(e) = Shared::spawn_thread(self) {
                        self.fail(e);
                    }
                }
                ExceptionResponse::ReplaceThread if !self.stopping() => {
                    let advice = advice(&error, task, &self.config);
                    let error = Error::TaskFailed {
                        task,
                        failures,
                        source: Box::new(error),
                        advice,
                    };
                    tracing::error!(
                        application_id = %self.config.application_id,
                        error = %error.report(), "stopping the application"
                    );
                    self.fail(error);
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

    /// Counts a failure of `task` in a row and sets when it may be tried again. Returns the
    /// failures in a row.
    fn count_failure(&self, task: Option<TaskId>) -> u32 {
        let mut failures = self.failures.lock();
        let entry = failures.entry(task).or_insert(Failures {
            count: 0,
            retry_at: Instant::now(),
        });
        entry.count = entry.count.saturating_add(1);
        entry.retry_at = Instant::now() + self.config.backoff(entry.count);
        entry.count
    }

    /// `task`'s local state is corrupt (`error` says how): marks it to be wiped and restored
    /// from its changelogs when it opens next, and reports the application as rebalancing
    /// until it runs again. Returns false once it was found corrupt more than
    /// `max_task_failures` times in a row: wiping does not help, and the failure stands.
    fn repair_corrupt(&self, task: TaskId, error: &Error) -> bool {
        let count = {
            let mut corrupt = self.corrupt.lock();
            let entry = corrupt.entry(task).or_insert(Corruption {
                reason: String::new(),
                count: 0,
            });
            entry.reason = error.report().to_string();
            entry.count = entry.count.saturating_add(1);
            entry.count
        };
        if count > self.config.max_task_failures {
            return false;
        }
        tracing::warn!(
            application_id = %self.config.application_id, task = %task,
            error = %error.report(), count,
            "the task's local state is corrupt: wiping its logged stores to restore them from \
             their changelogs"
        );
        if self.state() == StreamsState::Running {
            self.set_state(StreamsState::Rebalancing);
        }
        true
    }

    /// Why `task`'s local state must be wiped before it opens, if it must.
    fn take_corrupt(&self, task: TaskId) -> Option<String> {
        let mut corrupt = self.corrupt.lock();
        let entry = corrupt.get_mut(&task)?;
        // Kept with its count (cleared by progress), so repeated corruption ends.
        Some(std::mem::take(&mut entry.reason)).filter(|r| !r.is_empty())
    }

    /// Whether `task` may be opened now, or is still backing off after failures.
    fn may_open(&self, task: TaskId) -> bool {
        let failures = self.failures.lock();
        let now = Instant::now();
        [Some(task), None]
            .iter()
            .filter_map(|t| failures.get(t))
            .all(|f| f.retry_at <= now)
    }

    /// A commit moved `tasks` forward: their failures (and those outside tasks) no longer
    /// count as in a row.
    fn progressed(&self, tasks: &[TaskId]) {
        let mut failures = self.failures.lock();
        if failures.is_empty() {
            return;
        }
        failures.remove(&None);
        for t in tasks {
            failures.remove(&Some(*t));
        }
        drop(failures);
        let mut corrupt = self.corrupt.lock();
        for t in tasks {
            corrupt.remove(t);
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
        f: impl FnOnce(&crate::task::TaskStores) -> Result<R> + Send + 'static,
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
            // The thread repairs the task before its next batch; until then it is not served.
            let answer = match answer {
                Err(e) if is_corruption(&e) => {
                    let reason = format!(
                        "{}; task {task} is being restored from its changelogs",
                        e.report()
                    );
                    tasks.found_corrupt(task, e);
                    Err(Error::StoreUnavailable {
                        store: String::new(),
                        reason,
                    })
                }
                other => other,
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
