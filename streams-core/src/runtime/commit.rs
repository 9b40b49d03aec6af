//! The stream thread's commit: what its tasks produced is appended (records the log refuses
//! go to the production handler), then their input offsets are committed with their stream
//! time (inside the thread's transaction under exactly-once), then stores are checkpointed.

use std::time::Instant;

use hashbrown::HashMap;

use super::thread::{StreamThread, CHECKPOINT_RECORDS};
use crate::error::{Error, Result};
use crate::handler::{push_dead_letter_headers, Origin, RecordErrorHandler};
use crate::ids::TaskId;
use crate::log::OffsetCommit;
use crate::record::{Record, TopicPartition};
use crate::runtime::config::ProcessingGuarantee;
use crate::task::stream_time_metadata;

impl StreamThread {
    /// Appends everything the tasks produced (under exactly-once, inside the thread's
    /// transaction, begun on first use).
    ///
    /// When the log refuses records (too large, say) and the production handler does not
    /// fail, each refused record is dropped or dead-lettered, and only those: a log that
    /// appended part of a batch says which records it refused
    /// ([`Error::RecordsRefused`]), and nothing it appended is written again. A log that
    /// refuses a batch as a whole appended none of it; its records are then tried one by one.
    pub(super) fn write_outputs(&mut self) -> Result<()> {
        // Partitions in the order a task first wrote to them: its output before its
        // changelogs (see `Task::drain_output`). Under at-least-once a crash between two
        // appends must not keep a state change (a suppressed window deleted from its buffer)
        // and lose the output it produced, which no replay would produce again.
        type Outputs = (TopicPartition, Vec<Record>, Vec<Option<Origin>>);
        let mut by_partition: Vec<Outputs> = Vec::new();
        let mut index: HashMap<TopicPartition, usize> = HashMap::new();
        for active in self.tasks.0.values_mut() {
            for (tp, record, origin) in active.task.drain_output() {
                let i = *index.entry(tp.clone()).or_insert_with(|| {
                    by_partition.push((tp, Vec::new(), Vec::new()));
                    by_partition.len() - 1
                });
                by_partition[i].1.push(record);
                by_partition[i].2.push(origin);
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
        for (tp, records, origins) in by_partition {
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
        if let Some(held_back) = self.refused_warnings.admit() {
            tracing::warn!(thread = %self.name, topic = %tp.topic, partition = tp.partition, error = %error.report(), held_back, "dropping a record the log refused");
        }
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
            tracing::warn!(thread = %self.name, error = %e.report(), "the dead-letter topic refused the record; sending its headers alone");
            record.key = None;
            record.value = None;
            if let Err(e) = write(&record) {
                tracing::warn!(thread = %self.name, error = %e.report(), "the dead-letter topic refused the record's headers too");
            }
        }
        Ok(())
    }

    /// Flush, write, commit offsets (with the transaction under exactly-once), checkpoint.
    pub(super) fn commit(&mut self) -> Result<()> {
        let _span = tracing::debug_span!("commit").entered();
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
        let mut commits = Vec::new();
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
            // Each input's offset carries the task's stream time, which a restart or the
            // task's next owner resumes from.
            let stream_time = active.task.stream_time();
            let metadata = if stream_time > i64::MIN {
                stream_time_metadata(stream_time)
            } else {
                String::new()
            };
            commits.extend(consumed.iter().map(|(tp, offset)| OffsetCommit {
                tp: tp.clone(),
                offset: *offset,
                metadata: metadata.clone(),
            }));
            offsets.extend(consumed);
        }
        if !changed {
            self.last_commit = Instant::now();
            return Ok(());
        }
        let log = self.shared.log.clone();
        let app = self.shared.config.application_id.clone();
        match self.txn.take() {
            Some(txn) => log.commit_transaction_with_metadata(txn, Some((&app, &commits)))?,
            None if !commits.is_empty() => log.commit_offsets_with_metadata(&app, &commits)?,
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
        self.metrics.commit_latency.observe(latency);
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
}
