//! A stream thread: polls its tasks' partitions, processes, writes output, commits.
//!
//! The loop, once per iteration: answer queries; take up or give back tasks after a
//! rebalance; poll each input partition whose buffer has room; process up to
//! `max_poll_records` records per task in timestamp order; run wall-clock punctuations; append
//! what the tasks produced; commit when the interval has passed, or at once when the thread
//! has caught up with its input.
//!
//! A commit flushes the tasks (caches write through, stores produce their changelog records),
//! appends everything produced, then commits the input offsets — under exactly-once together
//! with the thread's transaction. Checkpoints, which make RocksDB durable, are written every
//! [`CHECKPOINT_RECORDS`] records and when a task is closed. A task deletes its checkpoint
//! before it changes local state, so after a crash its next owner restores from the
//! changelog rather than trust local state that ran ahead of it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use state_store::RecordCache;

use super::config::OffsetReset;
use super::metrics::{ThreadMetrics, PUBLISH_INTERVAL};
use super::positions::reset_position;
use super::{Request, Shared};
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::log::{IsolationLevel, TxnId};
use crate::record::TopicPartition;
use crate::task::{
    parse_stream_time_metadata, RestoreHooks, StoreResources, Task, TaskEnv, TaskStores,
};
use crate::throttle::Throttle;

/// A task this thread holds, with where its inputs are read from.
pub(crate) struct Active {
    pub(super) task: Task,
    /// Per input: the partition and the next offset to fetch.
    pub(super) positions: Vec<(TopicPartition, u64)>,
    /// Processed (or punctuated) since the last commit.
    pub(super) dirty: bool,
    /// A checkpoint file matches local state (deleted before the task processes again).
    checkpointed: bool,
    /// Records processed when the checkpoint was last written.
    processed_at_checkpoint: u64,
    /// Offsets as last committed, to skip commits that would change nothing.
    pub(super) committed: Vec<(TopicPartition, u64)>,
    pub(super) restored: u64,
    pub(super) restore_time: Duration,
    /// Per input: its end offset when the metrics were last published with the lag read.
    pub(super) ends: Vec<u64>,
}

impl Active {
    /// Before the task changes local state: its checkpoint no longer holds.
    fn touch(&mut self) -> Result<()> {
        self.dirty = true;
        if self.checkpointed {
            self.task.delete_checkpoint()?;
            self.checkpointed = false;
        }
        Ok(())
    }

    /// After a commit: writes the checkpoint (flushing RocksDB) once at least `every`
    /// records were processed since the last one.
    pub(super) fn checkpoint_if(&mut self, log: &dyn crate::log::Log, every: u64) -> Result<()> {
        let processed = self.task.metrics().processed;
        if !self.checkpointed && processed - self.processed_at_checkpoint >= every {
            self.task.write_checkpoint(log)?;
            self.checkpointed = true;
            self.processed_at_checkpoint = processed;
        }
        Ok(())
    }
}

/// The tasks of one thread, as a query running there sees them, and a task a query found
/// corrupt (the thread repairs it before its next batch).
pub(crate) struct ActiveTasks(
    pub(super) BTreeMap<TaskId, Active>,
    pub(super) RefCell<Option<Error>>,
);

impl ActiveTasks {
    pub(crate) fn stores(&self, task: TaskId) -> Option<&TaskStores> {
        self.0.get(&task).map(|a| a.task.stores())
    }

    /// A query read damaged local files of `task`.
    pub(crate) fn found_corrupt(&self, task: TaskId, mut error: Error) {
        if let Error::Store { task: t, .. } = &mut error {
            *t = Some(task);
        }
        self.1.borrow_mut().get_or_insert(error);
    }

    /// Fails with what a query found corrupt, if it found anything.
    fn check_corrupt(&self) -> Result<()> {
        match self.1.borrow_mut().take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Records a task processes between checkpoints (as Kafka Streams, which checkpoints when
/// the changelog moved 10,000 records). A checkpoint flushes RocksDB's memtables, which is
/// too costly for every commit; without one, a crash restores the task from the changelog.
pub(super) const CHECKPOINT_RECORDS: u64 = 10_000;

pub(crate) struct StreamThread {
    pub(super) shared: Arc<Shared>,
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) requests: Receiver<Request>,
    pub(super) env: TaskEnv,
    pub(super) tasks: ActiveTasks,
    pub(super) generation: u64,
    pub(super) txn: Option<TxnId>,
    pub(super) last_commit: Instant,
    pub(super) processed_at_last_commit: u64,
    pub(super) metrics: ThreadMetrics,
    /// When the metrics were last published.
    pub(super) last_publish: Instant,
    /// The task being worked on, to name it when a panic is caught.
    pub(super) current: Option<TaskId>,
    /// When the thread first failed with a transient error since its last commit.
    pub(super) retrying_since: Option<Instant>,
    /// Transient errors retried since the last commit.
    pub(super) retry_attempts: u32,
    /// The warnings of records the log refused, at most one per interval.
    pub(super) refused_warnings: Throttle,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".into()
    }
}

impl StreamThread {
    pub(crate) fn new(
        shared: Arc<Shared>,
        index: usize,
        name: String,
        requests: Receiver<Request>,
    ) -> Self {
        let config = &shared.config;
        let env = TaskEnv {
            application_id: config.application_id.clone(),
            partitions: shared.partitions.clone(),
            resources: StoreResources {
                state_dir: config.state_dir.clone(),
                rocksdb: shared.rocksdb.clone(),
                cache: RecordCache::new(config.cache_max_bytes / config.threads.max(1)),
                globals: shared.globals.clone(),
            },
            deserialization: config.deserialization.clone(),
            production: config.production.clone(),
        };
        let metrics = ThreadMetrics {
            name: name.clone(),
            alive: true,
            ..ThreadMetrics::default()
        };
        StreamThread {
            shared,
            index,
            name,
            requests,
            env,
            tasks: ActiveTasks(BTreeMap::new(), RefCell::new(None)),
            generation: 0,
            txn: None,
            last_commit: Instant::now(),
            processed_at_last_commit: 0,
            metrics,
            last_publish: Instant::now(),
            current: None,
            retrying_since: None,
            retry_attempts: 0,
            refused_warnings: Throttle::default(),
        }
    }

    /// Runs until the application stops or the thread fails; then gives its tasks back.
    pub(crate) fn run(mut self) {
        tracing::info!(thread = %self.name, "stream thread started");
        let failure = loop {
            match self.guarded(|t| t.run_loop()) {
                Ok(()) => break None,
                Err(error) => {
                    let task = error.task().or(self.current);
                    self.abandon();
                    // Damaged local files: the task is opened again with its logged stores
                    // wiped, and restores them from the changelogs (as Kafka Streams does
                    // with a corrupted task).
                    let corrupt = task.filter(|_| super::is_corruption(&error));
                    if corrupt.is_some_and(|t| self.shared.repair_corrupt(t, &error)) {
                        continue;
                    }
                    if !self.retry_after(&error) {
                        break Some((error, task));
                    }
                }
            }
        };
        self.metrics.alive = false;
        self.publish_metrics();
        let shared = self.shared.clone();
        let index = self.index;
        drop(self);
        shared.thread_exited(index, failure);
    }

    /// After a transient error (the log is unreachable, the group membership was lost), and
    /// with the thread's tasks abandoned: whether to go on. The tasks are opened again on the
    /// next loop, restored from their changelogs and resumed from their last commit, as after
    /// a crash. Pauses with exponential backoff between attempts, and logs the 1st, 2nd, 4th,
    /// 8th… attempt only. Gives up once errors have lasted `task_timeout` without a commit
    /// between.
    fn retry_after(&mut self, error: &Error) -> bool {
        let timeout = self.shared.config.task_timeout;
        if !error.is_retriable() || self.shared.stopping() || timeout.is_zero() {
            return false;
        }
        let since = *self.retrying_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= timeout {
            tracing::error!(thread = %self.name, error = %error.report(), attempts = self.retry_attempts, after_ms = timeout.as_millis() as u64, "giving up after transient errors");
            return false;
        }
        self.retry_attempts = self.retry_attempts.saturating_add(1);
        let attempt = self.retry_attempts;
        let pause = self.shared.config.backoff(attempt).min(timeout);
        if attempt.is_power_of_two() {
            tracing::warn!(thread = %self.name, error = %error.report(), attempt, pause_ms = pause.as_millis() as u64, "transient error: reopening the thread's tasks (logged at attempts 1, 2, 4, 8...)");
        }
        self.metrics.retries += 1;
        self.publish_metrics();
        let deadline = Instant::now() + pause;
        while Instant::now() < deadline && !self.shared.stopping() {
            self.serve_requests();
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Runs `f`, turning a panic into an error that names the task being worked on.
    fn guarded<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(payload) => Err(Error::Processing {
                task: self.current,
                processor: "user code".into(),
                reason: format!("panicked: {}", panic_message(&*payload)),
            }),
        }
    }

    fn run_loop(&mut self) -> Result<()> {
        loop {
            self.serve_requests();
            self.tasks.check_corrupt()?;
            if self.shared.stopping() {
                return self.shut_down();
            }
            self.sync_assignment()?;
            let polled = self.poll()?;
            let processed = self.process()?;
            self.punctuate()?;
            self.write_outputs()?;
            let idle = polled == 0 && processed == 0;
            // A thread that caught up commits at once rather than at the next interval:
            // nothing is gained by waiting, and output and offsets become visible sooner.
            let caught_up_dirty =
                idle && (self.txn.is_some() || self.tasks.0.values().any(|a| a.dirty));
            if caught_up_dirty || self.last_commit.elapsed() >= self.shared.config.commit_interval {
                self.commit()?;
            } else if self.last_publish.elapsed() >= PUBLISH_INTERVAL {
                self.publish_metrics_with(false);
            }
            if idle {
                match self.requests.recv_timeout(self.shared.config.poll_idle) {
                    Ok(request) => request(&self.tasks),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
                }
            }
        }
    }

    fn serve_requests(&mut self) {
        while let Ok(request) = self.requests.try_recv() {
            request(&self.tasks);
        }
    }

    /// Gives back tasks assigned elsewhere (after committing them) and opens the tasks
    /// assigned here once their previous holder has let go.
    fn sync_assignment(&mut self) -> Result<()> {
        let (generation, mine) = {
            let group = self.shared.group.lock();
            // A member that lost its place is normally given partitions again within a
            // rebalance; a coordinator that forgot the group (a broker restarted without its
            // data) may never do so, and the application would sit idle.
            let timeout = self.shared.config.task_timeout;
            if let Some(lost) = group.lost_at.filter(|l| l.elapsed() >= timeout) {
                return Err(Error::Kafka {
                    operation: format!("rejoin group {}", self.shared.config.application_id),
                    topic: None,
                    partition: None,
                    reason: format!(
                        "no partitions assigned in the {:?} since this member lost its \
                         assignment; the broker may have lost the group",
                        lost.elapsed()
                    ),
                    retriable: false,
                });
            }
            let mine: Vec<TaskId> = group
                .assignment
                .iter()
                .filter(|(_, &o)| o == self.index)
                .map(|(t, _)| *t)
                .collect();
            (group.generation, mine)
        };
        if generation != self.generation {
            let revoked: Vec<TaskId> = self
                .tasks
                .0
                .keys()
                .filter(|t| !mine.contains(t))
                .copied()
                .collect();
            if !revoked.is_empty() {
                self.commit()?;
                let log = self.shared.log.clone();
                for id in revoked {
                    if let Some(mut active) = self.tasks.0.remove(&id) {
                        active.checkpoint_if(&*log, 0)?;
                        active.task.close()?;
                    }
                    let mut group = self.shared.group.lock();
                    group.holders.remove(&id);
                    group.ready.remove(&id);
                    tracing::info!(thread = %self.name, task = %id, "task revoked");
                }
            }
            self.generation = generation;
            self.publish_metrics();
        }
        let mut opened = false;
        for id in mine {
            if self.tasks.0.contains_key(&id) {
                continue;
            }
            if !self.shared.may_open(id) {
                // Failed recently: backing off before the next attempt.
                continue;
            }
            let claimed = {
                let mut group = self.shared.group.lock();
                if group.holders.contains_key(&id) {
                    false
                } else {
                    group.holders.insert(id, self.index);
                    true
                }
            };
            if claimed {
                self.current = Some(id);
                let span = tracing::info_span!("task", task = %id);
                let opened_task = span.in_scope(|| self.open_task(id))?;
                let Some(active) = opened_task else {
                    // Closing: the restore stopped and checkpointed where it got.
                    self.shared.group.lock().holders.remove(&id);
                    break;
                };
                self.tasks.0.insert(id, active);
                self.shared.group.lock().ready.insert(id);
                opened = true;
            }
        }
        self.current = None;
        if opened {
            self.publish_metrics();
        }
        self.shared.check_running();
        Ok(())
    }

    /// Opens a task, restored; `None` when the application began closing during the
    /// restore (the task is closed again, its checkpoint written where the restore got).
    fn open_task(&mut self, id: TaskId) -> Result<Option<Active>> {
        let shared = self.shared.clone();
        let log = &*shared.log;
        let app = &shared.config.application_id;
        if let Some(reason) = shared.take_corrupt(id) {
            Task::wipe_logged_stores(&shared.topology, id, &self.env, &reason)?;
        }
        let mut task = Task::new(&shared.topology, id, &self.env)?;
        let started = Instant::now();
        let stop = || shared.stopping();
        let progress = |store: &str, done: u64, total: u64| {
            let mut restoring = shared.restoring.lock();
            let stores = restoring.entry(id).or_default();
            stores.insert(store.to_string(), (done, total));
        };
        let listener = shared.restore_listener.lock().clone();
        let events = |event: crate::task::RestoreEvent<'_>| {
            if let Some(l) = &listener {
                super::restore::tell(&**l, event);
            }
        };
        let hooks = RestoreHooks {
            stop: &stop,
            progress: &progress,
            events: &events,
        };
        let replayed = task.restore_with(log, &hooks);
        shared.restoring.lock().remove(&id);
        let replayed = replayed?;
        if !replayed.complete {
            task.close()?;
            tracing::info!(thread = %self.name, task = %id, "restore stopped by close: checkpointed where it got");
            return Ok(None);
        }
        let restored: u64 = replayed.records.values().sum();
        let restore_time = started.elapsed();
        // Local state now matches the changelog's end.
        task.write_checkpoint(log)?;
        let topics: Vec<String> = task.input_topics().map(str::to_string).collect();
        let mut positions = Vec::with_capacity(topics.len());
        let mut committed = Vec::new();
        for topic in topics {
            let tp = TopicPartition::new(topic.clone(), id.partition);
            let start = log.start_offset(&tp)?;
            let found = log.committed_offset(app, &tp)?;
            let known = self.shared.committed_high.lock().get(&tp).copied();
            if let Some(known) = known {
                if found.is_none_or(|c| c < known) {
                    return Err(Error::LostData {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        reason: format!(
                            "this application committed offset {known}, and the group's \
                             commit is now {}",
                            found.map_or_else(|| "missing".to_string(), |c| c.to_string())
                        ),
                    });
                }
            }
            let end = log.end_offset(&tp, IsolationLevel::ReadUncommitted)?;
            let policy = self.reset_policy(&task, &topic);
            let position = match found {
                Some(c) if (start..=end).contains(&c) => {
                    task.set_consumed(&topic, c)?;
                    committed.push((tp.clone(), c));
                    c
                }
                Some(c) => {
                    let p = reset_position(&tp, policy, Some(c), start, end)?;
                    task.set_consumed(&topic, p)?;
                    committed.push((tp.clone(), c));
                    p
                }
                // No commit yet: from the beginning with `earliest`, the default.
                None if policy == OffsetReset::Earliest => start,
                None => {
                    let p = reset_position(&tp, policy, None, start, end)?;
                    task.set_consumed(&topic, p)?;
                    p
                }
            };
            positions.push((tp, position));
        }
        let inputs: Vec<TopicPartition> = positions.iter().map(|(tp, _)| tp.clone()).collect();
        let resumed = log
            .committed_metadata(app, &inputs)?
            .iter()
            .filter_map(|(_, m)| parse_stream_time_metadata(m))
            .max();
        if let Some(stream_time) = resumed {
            task.resume_stream_time(stream_time);
        }
        task.punctuate_wall_clock(now_ms())?;
        tracing::info!(
            thread = %self.name, task = %id, restored, restore_ms = restore_time.as_millis() as u64,
            "task restored and running"
        );
        Ok(Some(Active {
            task,
            positions,
            dirty: false,
            checkpointed: true,
            processed_at_checkpoint: 0,
            committed,
            restored,
            restore_time,
            ends: Vec::new(),
        }))
    }

    /// `auto.offset.reset` for an input of `task`: internal topics always start from the
    /// earliest offset (the application wrote all of them), as in Kafka Streams.
    fn reset_policy(&self, task: &Task, topic: &str) -> OffsetReset {
        if task.is_internal_input(topic) {
            OffsetReset::Earliest
        } else {
            self.shared.config.offset_reset
        }
    }

    fn poll(&mut self) -> Result<usize> {
        let log = self.shared.log.clone();
        let (max_poll, max_buffered) = (
            self.shared.config.max_poll_records,
            self.shared.config.max_buffered_records,
        );
        // Never read open or aborted transactions (of this application under exactly-once,
        // or of any other writer).
        let isolation = IsolationLevel::ReadCommitted;
        let mut polled = 0;
        for (id, active) in self.tasks.0.iter_mut() {
            self.current = Some(*id);
            for (index, (tp, position)) in active.positions.iter_mut().enumerate() {
                if active.task.buffered_for(&tp.topic) + max_poll > max_buffered {
                    continue;
                }
                let started = Instant::now();
                let read = log.read(tp, *position, max_poll, isolation);
                self.metrics.poll_latency.observe(started.elapsed());
                let fetch = match read {
                    Ok(fetch) => fetch,
                    // The partition moved under the position (retention deleted records not
                    // read yet, or the topic lost its tail): `auto.offset.reset` decides.
                    Err(Error::OffsetOutOfRange {
                        offset, start, end, ..
                    }) => {
                        let policy = if active.task.is_internal_input(&tp.topic) {
                            OffsetReset::Earliest
                        } else {
                            self.shared.config.offset_reset
                        };
                        *position = reset_position(tp, policy, Some(offset), start, end)?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                self.metrics.polls += 1;
                polled += fetch.records.len();
                *position = fetch.next_offset;
                // While the log holds more of this partition, the task waits for it rather
                // than running ahead on its other inputs. A read that returned records may
                // have more behind it: the task waits for the next read, which asks for the
                // end offset only if it comes back empty (on Kafka a round trip per read).
                let pending = !fetch.records.is_empty()
                    || fetch.next_offset < log.end_offset(tp, isolation)?;
                active.task.set_fetch_pending(index, pending);
                if !fetch.records.is_empty() {
                    active.task.add_records(&tp.topic, fetch.records)?;
                }
            }
        }
        self.current = None;
        Ok(polled)
    }

    fn process(&mut self) -> Result<usize> {
        // Everything buffered, unless an input runs dry with more to fetch.
        let max = self.shared.config.max_buffered_records;
        let mut total = 0;
        let ids: Vec<TaskId> = self.tasks.0.keys().copied().collect();
        for id in ids {
            self.current = Some(id);
            let Some(active) = self.tasks.0.get_mut(&id) else {
                continue;
            };
            if active.task.buffered() == 0 {
                continue;
            }
            active.touch()?;
            let _span = tracing::debug_span!("task", task = %id).entered();
            let started = Instant::now();
            let now = now_ms();
            let mut n = 0;
            while n < max {
                let Some(timestamp) = active.task.process_next_timestamp()? else {
                    break;
                };
                let late_ms = u64::try_from(now.saturating_sub(timestamp)).unwrap_or(0);
                let e2e = &mut self.metrics.end_to_end_latency;
                e2e.observe_micros(late_ms.saturating_mul(1000));
                n += 1;
            }
            if n > 0 {
                self.metrics.process_latency.observe(started.elapsed());
            }
            total += n;
        }
        self.current = None;
        self.metrics.processed += total as u64;
        Ok(total)
    }

    fn punctuate(&mut self) -> Result<()> {
        let now = now_ms();
        for (id, active) in &mut self.tasks.0 {
            self.current = Some(*id);
            let _span = tracing::debug_span!("task", task = %id).entered();
            if active.task.punctuate_wall_clock(now)? > 0 {
                active.touch()?;
            }
        }
        self.current = None;
        Ok(())
    }

    /// A clean stop: a final commit, then every task closed with its checkpoint written.
    fn shut_down(&mut self) -> Result<()> {
        self.commit()?;
        let log = self.shared.log.clone();
        let tasks = std::mem::take(&mut self.tasks.0);
        for (id, mut active) in tasks {
            active.checkpoint_if(&*log, 0)?;
            active.task.close()?;
            tracing::info!(thread = %self.name, task = %id, "task closed");
        }
        Ok(())
    }

    /// After a failure: abort the open transaction and drop the tasks without committing.
    /// Their checkpoints were deleted before they changed local state, so the next owner
    /// restores from the changelog.
    fn abandon(&mut self) {
        if let Some(txn) = self.txn.take() {
            if let Err(e) = self.shared.log.abort_transaction(txn) {
                tracing::warn!(thread = %self.name, error = %e.report(), "aborting the transaction failed");
            }
        }
        let tasks = std::mem::take(&mut self.tasks.0);
        for (id, active) in tasks {
            // Closing releases the RocksDB lock; a panic may have left a store unusable.
            let closed = catch_unwind(AssertUnwindSafe(|| active.task.close()));
            if !matches!(closed, Ok(Ok(()))) {
                tracing::warn!(thread = %self.name, task = %id, "closing a failed task did not finish cleanly");
            }
        }
        // Including a task whose opening failed: claimed, but never in `tasks`.
        self.shared.group.lock().release_all(self.index);
        // Whatever the thread held is reopened on its next assignment check.
        self.generation = 0;
        self.publish_metrics();
    }
}
