//! Tasks: one sub-topology × one partition, with its own processors, stores and buffers.
//!
//! A task owns partition `p` of every input topic of its sub-topology and partition `p` of
//! each of its stores' changelogs. It buffers records per input partition and always
//! processes the buffered head with the smallest timestamp (as Kafka Streams' partition group
//! does), so a stream–table join sees the table as of the stream record's time. Stream time
//! is the largest timestamp processed; it drives windows and stream-time punctuation.

mod global;
mod progress;
mod stores;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use hashbrown::HashMap;

pub(crate) use self::global::{apply_global, GlobalStores, GlobalUpdater};
pub(crate) use self::progress::{RestoreEvent, RestoreHooks, Restored};
pub(crate) use self::stores::{StoreResources, TaskStores};
use crate::error::{Error, Result};
use crate::handler::{push_dead_letter_headers, Origin, RecordErrorHandler};
use crate::ids::TaskId;
use crate::log::Log;
use crate::processor::{
    NodeHooks, Output, ProcessorContext, PunctuationType, RawSource, RecordCollector, RecordMeta,
    TaskMetrics,
};
use crate::record::{Record, StoredRecord, TopicPartition};
use crate::throttle::Throttle;
use crate::topology::Instantiation;
use crate::topology::{NodeKind, Topology};

/// The context processors see, borrowed field by field from a task (a method would borrow
/// the whole task, and the hooks being called live in it too).
macro_rules! context {
    ($task:expr) => {
        ProcessorContext {
            application_id: &$task.application_id,
            task_id: $task.id,
            meta: &$task.meta,
            stream_time: $task.stream_time,
            resumed_stream_time: $task.resumed_stream_time,
            wall_clock: $task.wall_clock,
            collector: &mut $task.collector,
            metrics: &mut $task.metrics,
        }
    };
}

/// Everything a task needs from its surroundings.
#[derive(Clone)]
pub(crate) struct TaskEnv {
    /// The application id: prefix of internal topics, name of the state subdirectory.
    pub(crate) application_id: String,
    /// Partition counts of every topic the task may write to (resolved names).
    pub(crate) partitions: Arc<HashMap<String, u32>>,
    /// Where local state lives and the shared memory budgets.
    pub(crate) resources: StoreResources,
    /// How undecodable records are handled.
    pub(crate) deserialization: RecordErrorHandler,
    /// How records a sink cannot encode are handled.
    pub(crate) production: RecordErrorHandler,
}

/// An input topic of the task: its source, buffered records and consumed position.
struct Input {
    topic: Arc<str>,
    /// An internal topic (a repartition topic) of the application.
    internal: bool,
    source: Rc<RefCell<dyn RawSource>>,
    queue: VecDeque<StoredRecord>,
    /// Next offset to commit, once anything was processed or a position was set.
    consumed: Option<u64>,
    /// The log holds records of this partition that were not fetched yet.
    fetch_pending: bool,
}

struct Schedule {
    hook: usize,
    interval: i64,
    kind: PunctuationType,
    id: u32,
    /// When it fires next; `None` for a wall-clock schedule until the task first sees the
    /// clock, which starts it one interval later (as Kafka Streams does). Stream-time
    /// schedules start due, so the first record fires them.
    due: Option<i64>,
}

/// One running task.
pub(crate) struct Task {
    id: TaskId,
    application_id: String,
    /// One entry per input topic, in topic-name order.
    inputs: Vec<Input>,
    hooks: Vec<Box<dyn NodeHooks>>,
    hook_names: Vec<String>,
    schedules: Vec<Schedule>,
    stream_time: i64,
    /// The stream time the task resumed from (`i64::MIN` for a task that starts afresh).
    resumed_stream_time: i64,
    wall_clock: i64,
    collector: RecordCollector,
    metrics: TaskMetrics,
    stores: TaskStores,
    deserialization: RecordErrorHandler,
    production: RecordErrorHandler,
    meta: RecordMeta,
    /// The warnings of skipped and dead-lettered records, at most one per interval.
    bad_record_warnings: Throttle,
}

/// The offset metadata the runtime commits with a task's input offsets: the task's stream time.
/// Plain text, so tools listing a group's offsets show it.
pub(crate) fn stream_time_metadata(stream_time: i64) -> String {
    format!("{STREAM_TIME_METADATA}{stream_time}")
}

/// The stream time in offset metadata the runtime committed, if `metadata` is that.
pub(crate) fn parse_stream_time_metadata(metadata: &str) -> Option<i64> {
    metadata.strip_prefix(STREAM_TIME_METADATA)?.parse().ok()
}

const STREAM_TIME_METADATA: &str = "streams.stream-time=";

impl Task {
    /// Deletes the local files of the task's logged persistent stores (`reason` says why),
    /// so that the task, opened next, restores them from their changelogs. Stores without a
    /// changelog are kept: nothing could restore them.
    pub(crate) fn wipe_logged_stores(
        topology: &Topology,
        id: TaskId,
        env: &TaskEnv,
        reason: &str,
    ) -> Result<()> {
        let Some(sub) = topology.subtopologies.get(id.subtopology as usize) else {
            return Ok(());
        };
        let task_name = id.to_string();
        for spec in sub.stores.iter().filter_map(|s| topology.stores.get(s)) {
            if !spec.persistent || spec.changelog().is_none() {
                continue;
            }
            let dir = state_store::store_dir(
                &env.resources.state_dir,
                &env.application_id,
                &task_name,
                &spec.name,
            );
            tracing::warn!(task = %id, store = %spec.name, path = %dir.display(), %reason, "deleting the store's local files to restore it from its changelog");
            state_store::destroy_store_dir(&spec.name, &dir).map_err(|e| Error::Store {
                task: Some(id),
                source: e,
            })?;
        }
        Ok(())
    }

    /// Builds the task's stores and processors. Stores still need [`Task::restore`].
    pub(crate) fn new(topology: &Topology, id: TaskId, env: &TaskEnv) -> Result<Task> {
        let sub = topology
            .subtopologies
            .get(id.subtopology as usize)
            .ok_or_else(|| Error::Config {
                key: format!("task {id}"),
                reason: format!(
                    "the topology has {} sub-topologies",
                    topology.subtopologies.len()
                ),
            })?;
        let specs: Vec<_> = sub
            .stores
            .iter()
            .filter_map(|s| topology.stores.get(s))
            .collect();
        let stores = TaskStores::open(id, &env.application_id, &specs, &env.resources)?;
        let (hooks, hook_nodes, sources, specs) = {
            let mut inst = Instantiation::new(topology, &env.application_id, id, &stores);
            for &node in &sub.nodes {
                if matches!(topology.nodes[node].kind, NodeKind::Source { .. }) {
                    inst.build(node)?;
                }
            }
            let mut hooks = Vec::new();
            let mut hook_nodes = Vec::new();
            // Children finish building before parents: reversed, parents come first.
            for (node, h) in std::mem::take(&mut inst.hooks).into_iter().rev() {
                hook_nodes.push(node);
                hooks.push(h);
            }
            (
                hooks,
                hook_nodes,
                std::mem::take(&mut inst.sources),
                std::mem::take(&mut inst.schedules),
            )
        };
        let mut by_topic: BTreeMap<String, (Rc<RefCell<dyn RawSource>>, bool)> = BTreeMap::new();
        for (node, src) in sources {
            if let NodeKind::Source { topics } = &topology.nodes[node].kind {
                for t in topics {
                    let internal = matches!(t, crate::ids::TopicName::Internal(_));
                    by_topic.insert(t.resolve(&env.application_id), (src.clone(), internal));
                }
            }
        }
        let inputs = by_topic
            .into_iter()
            .map(|(topic, (source, internal))| Input {
                topic: Arc::from(topic),
                internal,
                source,
                queue: VecDeque::new(),
                consumed: None,
                fetch_pending: false,
            })
            .collect();
        let schedules = specs
            .into_iter()
            .filter_map(|s| {
                hook_nodes
                    .iter()
                    .position(|&n| n == s.node)
                    .map(|hook| Schedule {
                        hook,
                        interval: s.interval_ms,
                        kind: s.kind,
                        id: s.id,
                        due: match s.kind {
                            PunctuationType::StreamTime => Some(0),
                            PunctuationType::WallClockTime => None,
                        },
                    })
            })
            .collect();
        Ok(Task {
            id,
            application_id: env.application_id.clone(),
            inputs,
            hooks,
            hook_names: hook_nodes
                .iter()
                .map(|&n| topology.nodes[n].name.clone())
                .collect(),
            schedules,
            stream_time: i64::MIN,
            resumed_stream_time: i64::MIN,
            wall_clock: 0,
            collector: RecordCollector::new(env.partitions.clone()),
            metrics: TaskMetrics::default(),
            stores,
            deserialization: env.deserialization.clone(),
            production: env.production.clone(),
            meta: RecordMeta::default(),
            bad_record_warnings: Throttle::default(),
        })
    }

    /// Input topics (resolved names); the task reads partition `id().partition` of each.
    pub(crate) fn input_topics(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| &*i.topic)
    }

    /// Whether input `topic` is an internal topic of the application (a repartition topic).
    pub(crate) fn is_internal_input(&self, topic: &str) -> bool {
        self.inputs.iter().any(|i| &*i.topic == topic && i.internal)
    }

    fn input_mut(&mut self, topic: &str) -> Result<&mut Input> {
        let id = self.id;
        self.inputs
            .iter_mut()
            .find(|i| &*i.topic == topic)
            .ok_or_else(|| Error::UnknownTopic {
                topic: format!("{topic} (not an input of task {id})"),
            })
    }

    /// The task's stores.
    pub(crate) fn stores(&self) -> &TaskStores {
        &self.stores
    }

    /// Counters.
    pub(crate) fn metrics(&self) -> &TaskMetrics {
        &self.metrics
    }

    /// Stream time: the largest timestamp processed, `i64::MIN` before the first record.
    pub(crate) fn stream_time(&self) -> i64 {
        self.stream_time
    }

    /// Resumes from the stream time committed with the task's input offsets (the largest
    /// timestamp processed before them), so records that were late before a restart or a
    /// move are late after it too, as in Kafka Streams.
    pub(crate) fn resume_stream_time(&mut self, committed: i64) {
        self.stream_time = self.stream_time.max(committed);
        self.resumed_stream_time = self.resumed_stream_time.max(committed);
    }

    /// Replays the stores' changelogs (only the tail past a valid checkpoint). Returns the
    /// records replayed per store.
    pub(crate) fn restore(&mut self, log: &dyn Log) -> Result<BTreeMap<String, u64>> {
        Ok(self.stores.restore(log, &RestoreHooks::none())?.records)
    }

    /// [`Task::restore`], telling `hooks` how far it got and stopping when they say so.
    pub(crate) fn restore_with(
        &mut self,
        log: &dyn Log,
        hooks: &RestoreHooks<'_>,
    ) -> Result<Restored> {
        self.stores.restore(log, hooks)
    }

    /// Buffers records read from `topic` (this task's partition), in offset order.
    pub(crate) fn add_records(
        &mut self,
        topic: &str,
        records: impl IntoIterator<Item = StoredRecord>,
    ) -> Result<()> {
        self.input_mut(topic)?.queue.extend(records);
        Ok(())
    }

    /// Records buffered and not yet processed.
    pub(crate) fn buffered(&self) -> usize {
        self.inputs.iter().map(|i| i.queue.len()).sum()
    }

    /// Records buffered for one input topic.
    pub(crate) fn buffered_for(&self, topic: &str) -> usize {
        self.inputs
            .iter()
            .find(|i| &*i.topic == topic)
            .map_or(0, |i| i.queue.len())
    }

    /// The next offset to commit for each input partition that has seen records.
    pub(crate) fn consumed_offsets(&self) -> Vec<(TopicPartition, u64)> {
        self.inputs
            .iter()
            .filter_map(|i| {
                i.consumed
                    .map(|o| (TopicPartition::new(&*i.topic, self.id.partition), o))
            })
            .collect()
    }

    /// Sets where consumption resumes for an input (after a restart or rebalance), so the
    /// next commit does not move the offset backwards when nothing was processed.
    pub(crate) fn set_consumed(&mut self, topic: &str, next_offset: u64) -> Result<()> {
        self.input_mut(topic)?.consumed = Some(next_offset);
        Ok(())
    }

    /// Sets the wall-clock time the task sees and runs due wall-clock punctuations.
    pub(crate) fn punctuate_wall_clock(&mut self, now_ms: i64) -> Result<usize> {
        self.wall_clock = now_ms;
        let id = self.id;
        self.punctuate(PunctuationType::WallClockTime, now_ms)
            .map_err(|e| e.in_task(id))
    }

    /// Tells the task whether input `index` (in [`Task::input_topics`] order) has records in
    /// the log that were not fetched yet. While such an input's buffer is empty the task
    /// waits for the fetch instead of processing other inputs past it, which keeps
    /// processing in timestamp order across inputs (Kafka Streams' task idling).
    pub(crate) fn set_fetch_pending(&mut self, index: usize, pending: bool) {
        if let Some(input) = self.inputs.get_mut(index) {
            input.fetch_pending = pending;
        }
    }

    /// Processes the buffered record with the smallest timestamp. Returns `false` when
    /// nothing is buffered, or when an input with nothing buffered still has records to
    /// fetch (see [`Task::set_fetch_pending`]).
    pub(crate) fn process_next(&mut self) -> Result<bool> {
        Ok(self.process_next_timestamp()?.is_some())
    }

    /// As [`process_next`](Self::process_next), answering the timestamp of the record
    /// processed (`None`: nothing was).
    pub(crate) fn process_next_timestamp(&mut self) -> Result<Option<i64>> {
        // The buffered head with the smallest timestamp; ties go to the first input.
        let mut best: Option<(i64, usize)> = None;
        for (i, input) in self.inputs.iter().enumerate() {
            match input.queue.front() {
                Some(r) if best.is_none_or(|(ts, _)| r.record.timestamp < ts) => {
                    best = Some((r.record.timestamp, i));
                }
                Some(_) => {}
                None if input.fetch_pending => return Ok(None),
                None => {}
            }
        }
        let Some((timestamp, index)) = best else {
            return Ok(None);
        };
        let Some(rec) = self.inputs[index].queue.pop_front() else {
            return Ok(None);
        };
        let id = self.id;
        self.process_record(index, rec).map_err(|e| e.in_task(id))?;
        Ok(Some(timestamp))
    }

    fn process_record(&mut self, index: usize, rec: StoredRecord) -> Result<()> {
        let ts = rec.record.timestamp;
        self.stream_time = self.stream_time.max(ts);
        self.stores.clock.set(ts);
        let input = &self.inputs[index];
        let source = input.source.clone();
        self.meta.topic = Some(input.topic.clone());
        self.meta.partition = self.id.partition;
        let offset = rec.offset;
        self.meta.offset = Some(offset);
        self.meta.headers.clone_from(&rec.record.headers);
        let result = {
            let mut ctx = context!(self);
            let r = source.borrow_mut().process_raw(&mut ctx, &rec);
            r
        };
        match result {
            Ok(()) => {}
            Err(e @ Error::Deserialization { .. }) => {
                self.metrics.skipped_deserialization += 1;
                let handler = self.deserialization.clone();
                self.handle_bad_record(e, &handler, index, rec)?
            }
            Err(e @ Error::Serialization { .. }) => {
                self.metrics.skipped_production += 1;
                let handler = self.production.clone();
                self.handle_bad_record(e, &handler, index, rec)?
            }
            Err(e) => return Err(e),
        }
        self.inputs[index].consumed = Some(offset + 1);
        self.metrics.processed += 1;
        self.punctuate(PunctuationType::StreamTime, self.stream_time)?;
        Ok(())
    }

    /// Applies a handler's decision to a record that failed: fail the task, skip the record,
    /// or send the raw input record to the dead-letter topic with the error in headers.
    fn handle_bad_record(
        &mut self,
        error: Error,
        handler: &RecordErrorHandler,
        index: usize,
        rec: StoredRecord,
    ) -> Result<()> {
        let topic = self.inputs[index].topic.clone();
        match handler {
            RecordErrorHandler::Fail => Err(error),
            RecordErrorHandler::LogAndContinue => {
                if let Some(held_back) = self.bad_record_warnings.admit() {
                    tracing::warn!(task = %self.id, error = %error.report(), held_back, "skipping a record");
                }
                Ok(())
            }
            RecordErrorHandler::DeadLetter(dlq) => {
                if let Some(held_back) = self.bad_record_warnings.admit() {
                    tracing::warn!(task = %self.id, error = %error.report(), dead_letter_topic = %dlq, held_back, "sending a record to the dead-letter topic");
                }
                let origin = Origin {
                    topic,
                    partition: self.id.partition,
                    offset: rec.offset,
                };
                let mut record: Record = rec.record;
                push_dead_letter_headers(&mut record.headers, &error, Some(&origin));
                self.collector.send(dlq, None, record, Some(origin))
            }
        }
    }

    fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<usize> {
        let mut fired = 0;
        for i in 0..self.schedules.len() {
            let s = &self.schedules[i];
            if s.kind != kind {
                continue;
            }
            let Some(due) = s.due else {
                self.schedules[i].due = Some(now.saturating_add(s.interval));
                continue;
            };
            if now < due {
                continue;
            }
            let (hook, id, interval) = (s.hook, s.id, s.interval);
            // Next due time stays on the schedule's grid, skipping missed ticks.
            let next = now - (now - due).rem_euclid(interval) + interval;
            self.schedules[i].due = Some(next);
            self.meta = RecordMeta::default();
            let mut ctx = context!(self);
            self.hooks[hook].punctuate(&mut ctx, id, now)?;
            self.metrics.punctuations += 1;
            fired += 1;
        }
        Ok(fired)
    }

    /// Commit, first half: processors forward what they hold back (parents first), store
    /// caches write through (producing changelog records). Afterwards [`Task::drain_output`]
    /// holds everything the commit must write. Local durability (RocksDB memtables) waits
    /// for [`Task::write_checkpoint`].
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.meta = RecordMeta::default();
        for (i, hook) in self.hooks.iter().enumerate() {
            let mut ctx = context!(self);
            hook.flush(&mut ctx).map_err(|e| match e {
                Error::Processing { .. } | Error::Store { .. } => e.in_task(self.id),
                other => Error::Processing {
                    task: Some(self.id),
                    processor: self.hook_names[i].clone(),
                    reason: other.report().to_string(),
                },
            })?;
        }
        self.stores.flush_caches().map_err(|e| e.in_task(self.id))
    }

    /// Takes the records produced so far: sink output first in production order, then the
    /// changelog records of the stores.
    pub(crate) fn drain_output(&mut self) -> Vec<Output> {
        let mut out = self.collector.drain();
        out.extend(
            self.stores
                .buffer
                .lock()
                .drain(..)
                .map(|(tp, r)| (tp, r, None)),
        );
        out
    }

    /// Makes local state durable and writes the task's checkpoint: local stores are
    /// consistent with their changelogs up to the changelogs' current end. Call after the
    /// commit's records were appended.
    pub(crate) fn write_checkpoint(&self, log: &dyn Log) -> Result<()> {
        self.stores.write_checkpoint(log)
    }

    /// Deletes the checkpoint (at-least-once: from here until the next commit the local
    /// stores may hold changes the changelog lacks, so a crash must restore from scratch).
    pub(crate) fn delete_checkpoint(&self) -> Result<()> {
        self.stores.delete_checkpoint()
    }

    /// Closes the stores (after a final flush and commit by the caller).
    pub(crate) fn close(self) -> Result<()> {
        self.stores.close()
    }
}
