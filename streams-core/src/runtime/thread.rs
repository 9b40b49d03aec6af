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

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hashbrown::HashMap;
use state_store::RecordCache;

use super::config::{OffsetReset, ProcessingGuarantee};
use super::metrics::{TaskSnapshot, ThreadMetrics};
use super::{Request, Shared};
use crate::error::{Error, Result};
use crate::handler::{push_dead_letter_headers, Origin, RecordErrorHandler};
use crate::ids::TaskId;
use crate::log::{IsolationLevel, TxnId};
use crate::record::{Record, TopicPartition};
use crate::task::{StoreResources, Task, TaskEnv, TaskStores};

/// A task this thread holds, with where its inputs are read from.
pub(crate) struct Active {
    task: Task,
    /// Per input: the partition and the next offset to fetch.
    positions: Vec<(TopicPartition, u64)>,
    /// Processed (or punctuated) since the last commit.
    dirty: bool,
    /// A checkpoint file matches local state (deleted before the task processes again).
    checkpointed: bool,
    /// Records processed when the checkpoint was last written.
    processed_at_checkpoint: u64,
    /// Offsets as last committed, to skip commits that would change nothing.
    committed: Vec<(TopicPartition, u64)>,
    restored: u64,
    restore_time: Duration,
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
    fn checkpoint_if(&mut self, log: &dyn crate::log::Log, every: u64) -> Result<()> {
        let processed = self.task.metrics().processed;
        if !self.checkpointed && processed - self.processed_at_checkpoint >= every {
            self.task.write_checkpoint(log)?;
            self.checkpointed = true;
            self.processed_at_checkpoint = processed;
        }
        Ok(())
    }
}

/// The tasks of one thread, as a query running there sees them.
pub(crate) struct ActiveTasks(BTreeMap<TaskId, Active>);

impl ActiveTasks {
    pub(crate) fn stores(&self, task: TaskId) -> Option<&TaskStores> {
        self.0.get(&task).map(|a| a.task.stores())
    }
}

/// Records a task processes between checkpoints (as Kafka Streams, which checkpoints when
/// the changelog moved 10,000 records). A checkpoint flushes RocksDB's memtables, which is
/// too costly for every commit; without one, a crash restores the task from the changelog.
const CHECKPOINT_RECORDS: u64 = 10_000;

pub(crate) struct StreamThread {
    shared: Arc<Shared>,
    index: usize,
    name: String,
    requests: Receiver<Request>,
    env: TaskEnv,
    tasks: ActiveTasks,
    generation: u64,
    txn: Option<TxnId>,
    last_commit: Instant,
    processed_at_last_commit: u64,
    metrics: ThreadMetrics,
    /// The task being worked on, to name it when a panic is caught.
    current: Option<TaskId>,
    /// When the thread first failed with a transient error since its last commit.
    retrying_since: Option<Instant>,
    /// Transient errors retried since the last commit.
    retry_attempts: u32,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where to read `tp` from when its committed offset is missing or outside the partition's
/// range `start..=end`, by `auto.offset.reset`; an offset out of range is warned about.
fn reset_position(
    tp: &TopicPartition,
    policy: OffsetReset,
    committed: Option<u64>,
    start: u64,
    end: u64,
) -> Result<u64> {
    let position = match policy {
        OffsetReset::Earliest => start,
        OffsetReset::Latest => end,
        OffsetReset::None => {
            return Err(Error::NoValidOffset {
                topic: tp.topic.clone(),
                partition: tp.partition,
                committed,
                start,
                end,
            })
        }
    };
    match committed {
        Some(offset) => tracing::warn!(
            topic = %tp.topic, partition = tp.partition, offset, start, end, reset_to = position,
            policy = ?policy,
            "the offset to resume from is outside the partition: resuming where \
             auto.offset.reset says"
        ),
        None => tracing::info!(
            topic = %tp.topic, partition = tp.partition, start, end, reset_to = position,
            policy = ?policy, "no committed offset: starting where auto.offset.reset says"
        ),
    }
    Ok(position)
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
            tasks: ActiveTasks(BTreeMap::new()),
            generation: 0,
            txn: None,
            last_commit: Instant::now(),
            processed_at_last_commit: 0,
            metrics,
            current: None,
            retrying_since: None,
            retry_attempts: 0,
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
            tracing::error!(thread = %self.name, %error, attempts = self.retry_attempts, after_ms = timeout.as_millis() as u64, "giving up after transient errors");
            return false;
        }
        self.retry_attempts = self.retry_attempts.saturating_add(1);
        let attempt = self.retry_attempts;
        let pause = self.shared.config.backoff(attempt).min(timeout);
        if attempt.is_power_of_two() {
            tracing::warn!(thread = %self.name, %error, attempt, pause_ms = pause.as_millis() as u64, "transient error: reopening the thread's tasks (logged at attempts 1, 2, 4, 8...)");
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
                let active = self.open_task(id)?;
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

    fn open_task(&mut self, id: TaskId) -> Result<Active> {
        let shared = self.shared.clone();
        let log = &*shared.log;
        let app = &shared.config.application_id;
        let mut task = Task::new(&shared.topology, id, &self.env)?;
        let started = Instant::now();
        let replayed = task.restore(log)?;
        let restored: u64 = replayed.values().sum();
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
        task.punctuate_wall_clock(now_ms())?;
        tracing::info!(
            thread = %self.name, task = %id, restored, restore_ms = restore_time.as_millis() as u64,
            "task restored and running"
        );
        Ok(Active {
            task,
            positions,
            dirty: false,
            checkpointed: true,
            processed_at_checkpoint: 0,
            committed,
            restored,
            restore_time,
        })
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
                let fetch = match log.read(tp, *position, max_poll, isolation) {
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
            let mut n = 0;
            while n < max && active.task.process_next()? {
                n += 1;
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
            if active.task.punctuate_wall_clock(now)? > 0 {
                active.touch()?;
            }
        }
        self.current = None;
        Ok(())
    }

    /// Appends everything the tasks produced (under exactly-once, inside the thread's
    /// transaction, begun on first use).
    ///
    /// When the log refuses records (too large, say) and the production handler does not
    /// fail, each refused record is dropped or dead-lettered, and only those: a log that
    /// appended part of a batch says which records it refused
    /// ([`Error::RecordsRefused`]), and nothing it appended is written again. A log that
    /// refuses a batch as a whole appended none of it; its records are then tried one by one.
    fn write_outputs(&mut self) -> Result<()> {
        let mut by_partition: HashMap<TopicPartition, (Vec<Record>, Vec<Option<Origin>>)> =
            HashMap::new();
        for active in self.tasks.0.values_mut() {
            for (tp, record, origin) in active.task.drain_output() {
                let (records, origins) = by_partition.entry(tp).or_default();
                records.push(record);
                origins.push(origin);
            }
        }
        if by_partition.is_empty() {
            return Ok(());
        }
        let log = self.shared.log.clone();
        let exactly_once = self.shared.config.guarantee == ProcessingGuarantee::ExactlyOnce;
        if exactly_once && self.txn.is_none() {
            self.txn = Some(log.begin_transaction()?);
        }
        let txn = self.txn;
        let handler = self.shared.config.production.clone();
        for (tp, (records, origins)) in by_partition {
            let append = |records: &[Record]| match txn {
                Some(txn) => log.append_transactional(txn, &tp, records),
                None => log.append(&tp, records),
            };
            let Err(error) = append(&records) else {
                continue;
            };
            if handler == RecordErrorHandler::Fail
                || !matches!(error.class(), crate::error::ErrorClass::User)
            {
                return Err(error);
            }
            let mut outputs = records
                .into_iter()
                .zip(origins)
                .map(Some)
                .collect::<Vec<_>>();
            if let Error::RecordsRefused { refused, .. } = error {
                for (index, error) in refused {
                    let output = outputs.get_mut(index).and_then(Option::take);
                    let Some((record, origin)) = output else {
                        return Err(Error::Processing {
                            task: None,
                            processor: format!("the writer of {tp}"),
                            reason: format!(
                                "the log refused record {index} of a batch of {}",
                                outputs.len()
                            ),
                        });
                    };
                    self.drop_produced(&tp, record, origin.as_ref(), &error, &handler)?;
                }
                continue;
            }
            for (record, origin) in outputs.into_iter().flatten() {
                if let Err(error) = append(std::slice::from_ref(&record)) {
                    if !matches!(error.class(), crate::error::ErrorClass::User) {
                        return Err(error);
                    }
                    self.drop_produced(&tp, record, origin.as_ref(), &error, &handler)?;
                }
            }
        }
        Ok(())
    }

    /// Drops (counted) or dead-letters one record the log refused: the record as produced,
    /// key and value included, with the dead-letter headers naming the error and the input
    /// record that produced it. When the dead-letter topic refuses it too (a record too
    /// large for any topic), it goes there without key and value, with the same headers.
    fn drop_produced(
        &mut self,
        tp: &TopicPartition,
        mut record: Record,
        origin: Option<&Origin>,
        error: &Error,
        handler: &RecordErrorHandler,
    ) -> Result<()> {
        self.metrics.dropped_production += 1;
        tracing::warn!(thread = %self.name, topic = %tp.topic, partition = tp.partition, %error, "dropping a record the log refused");
        let RecordErrorHandler::DeadLetter(topic) = handler else {
            return Ok(());
        };
        push_dead_letter_headers(&mut record.headers, error, origin);
        let dlq = TopicPartition::new(topic.clone(), 0);
        let log = self.shared.log.clone();
        let write = |record: &Record| match self.txn {
            Some(txn) => log.append_transactional(txn, &dlq, std::slice::from_ref(record)),
            None => log.append(&dlq, std::slice::from_ref(record)),
        };
        if let Err(e) = write(&record) {
            tracing::warn!(thread = %self.name, error = %e, "the dead-letter topic refused the record; sending its headers alone");
            record.key = None;
            record.value = None;
            if let Err(e) = write(&record) {
                tracing::warn!(thread = %self.name, error = %e, "the dead-letter topic refused the record's headers too");
            }
        }
        Ok(())
    }

    /// Flush, write, commit offsets (with the transaction under exactly-once), checkpoint.
    fn commit(&mut self) -> Result<()> {
        let started = Instant::now();
        let ids: Vec<TaskId> = self.tasks.0.keys().copied().collect();
        for id in &ids {
            self.current = Some(*id);
            if let Some(active) = self.tasks.0.get_mut(id) {
                if active.dirty {
                    active.task.flush()?;
                }
            }
        }
        self.current = None;
        self.write_outputs()?;
        let mut offsets = Vec::new();
        let mut changed = self.txn.is_some();
        for active in self.tasks.0.values_mut() {
            // Inputs read to the end may have skipped records nobody processes (aborted
            // transactions): committing the read position keeps lag honest.
            for (tp, position) in &active.positions {
                if active.task.buffered_for(&tp.topic) == 0 {
                    active.task.set_consumed(&tp.topic, *position)?;
                }
            }
            let consumed = active.task.consumed_offsets();
            if consumed != active.committed || active.dirty {
                changed = true;
            }
            offsets.extend(consumed);
        }
        if !changed {
            self.last_commit = Instant::now();
            return Ok(());
        }
        let log = self.shared.log.clone();
        let app = self.shared.config.application_id.clone();
        match self.txn.take() {
            Some(txn) => log.commit_transaction(txn, Some((&app, &offsets)))?,
            None if !offsets.is_empty() => log.commit_offsets(&app, &offsets)?,
            None => {}
        }
        {
            let mut high = self.shared.committed_high.lock();
            for (tp, offset) in &offsets {
                let known = high.entry(tp.clone()).or_insert(0);
                *known = (*known).max(*offset);
            }
        }
        let mut progressed = Vec::new();
        for (id, active) in self.tasks.0.iter_mut() {
            active.dirty = false;
            let consumed = active.task.consumed_offsets();
            if consumed != active.committed {
                progressed.push(*id);
            }
            active.committed = consumed;
            active.checkpoint_if(&*log, CHECKPOINT_RECORDS)?;
        }
        self.shared.progressed(&progressed);
        let latency = started.elapsed();
        let interval = self.last_commit.elapsed().as_secs_f64();
        self.metrics.commits += 1;
        self.metrics.last_commit_latency = latency;
        self.metrics.max_commit_latency = self.metrics.max_commit_latency.max(latency);
        self.metrics.total_commit_latency += latency;
        let since = self.metrics.processed - self.processed_at_last_commit;
        self.metrics.process_rate = if interval > 0.0 {
            since as f64 / interval
        } else {
            0.0
        };
        self.processed_at_last_commit = self.metrics.processed;
        self.last_commit = Instant::now();
        self.retrying_since = None;
        self.retry_attempts = 0;
        tracing::debug!(
            thread = %self.name, records = since, latency_us = latency.as_micros() as u64,
            "committed"
        );
        self.publish_metrics();
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
                tracing::warn!(thread = %self.name, error = %e, "aborting the transaction failed");
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

    fn publish_metrics(&mut self) {
        let log = self.shared.log.clone();
        self.metrics.tasks = self.tasks.0.keys().copied().collect();
        let mut snapshots = Vec::with_capacity(self.tasks.0.len());
        for (id, active) in &self.tasks.0 {
            let mut lag = 0;
            for (tp, position) in &active.positions {
                let end = log
                    .end_offset(tp, IsolationLevel::ReadCommitted)
                    .unwrap_or(*position);
                lag += end.saturating_sub(*position) + active.task.buffered_for(&tp.topic) as u64;
            }
            snapshots.push((
                *id,
                TaskSnapshot {
                    thread: self.name.clone(),
                    counters: active.task.metrics().clone(),
                    lag,
                    restored: active.restored,
                    restore_time: active.restore_time,
                    stream_time: active.task.stream_time(),
                },
            ));
        }
        let mut metrics = self.shared.metrics.lock();
        metrics.threads.insert(self.index, self.metrics.clone());
        metrics.tasks.retain(|_, t| t.thread != self.name);
        metrics.tasks.extend(snapshots);
    }
}
