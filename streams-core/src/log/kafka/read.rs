//! Reads: pooled readers (one pool per isolation level) assigned to the partition and offset
//! a read asks for, cursors that let the next read go on from what librdkafka fetched ahead,
//! watermarks, and the mapping of what a poll gave to records and errors.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{code, kafka_error, partition_i32, retry_transient, timed_out};
use super::config::ClientKind;
use super::context::LogContext;
use super::KafkaLog;
use crate::error::{Error, Result};
use crate::log::{Fetch, IsolationLevel};
use crate::record::{Header, Record, StoredRecord, TopicPartition};

pub(super) type Reader = BaseConsumer<LogContext>;

/// A reader left assigned to one partition after a read that stopped short of its end,
/// positioned where that read stopped. The next read from that offset goes on from what
/// librdkafka fetched ahead instead of asking for the partition's offsets and assigning
/// again (each a round trip to the broker).
pub(super) struct Cursor {
    pub(super) reader: Reader,
    pub(super) next: u64,
    pub(super) used: Instant,
    /// When a read from it last returned records.
    pub(super) fed: Instant,
}

/// A cursor unused for this long is released (its partition's task has likely moved).
pub(super) const CURSOR_IDLE: Duration = Duration::from_secs(30);

/// A cursor that has returned nothing for this long is released: the next read starts over
/// and checks the offset against the partition's range (a broker that lost the partition's
/// records may answer a fetch past its end with nothing rather than an error).
pub(super) const CURSOR_DRY: Duration = Duration::from_secs(1);

/// How long a read from a cursor waits for records when none are queued.
pub(super) const CURSOR_WAIT: Duration = Duration::from_millis(10);

/// Records a reader keeps fetched ahead per partition (librdkafka's `queued.min.messages`,
/// 100,000 by default): ten reads of the stream threads' default `max_poll_records`, so that
/// a cursor's next read finds its records queued. With librdkafka's default, a reader of
/// small records held ~30 MiB (its per-message bookkeeping is not counted by
/// `queued.max.messages.kbytes`): K1, four partitions of 30-byte records, peaked at ~190 MiB.
pub(super) const READ_AHEAD_RECORDS: &str = "10000";

/// How long a reader whose read-ahead is full waits before it fetches again
/// (`fetch.queue.backoff.ms`). librdkafka's 1 s is meant for its default read-ahead; with
/// [`READ_AHEAD_RECORDS`] a reader drains that in a few milliseconds and then sat idle: K1
/// and K2 read at half their speed. The cursor's own wait for records is as short.
pub(super) const READ_AHEAD_BACKOFF_MS: &str = "10";

/// Group id of readers. They never join or commit, but librdkafka routes fetched messages
/// through the group's queue only when a consumer has one.
pub(super) const READER_GROUP: &str = "kstreams-log-reader";

/// What one poll of a reader gave, for a read of `tp` that expects offset `next`.
pub(super) enum Polled {
    /// The next record.
    Record(StoredRecord),
    /// Nothing yet.
    Nothing,
    /// A record left over from an earlier assignment.
    Skipped,
    /// The partition's end as the fetcher saw it.
    End,
    /// Connections are down (librdkafka reconnects by itself); possibly queued on a pooled
    /// reader since an earlier outage.
    Transport,
    /// Any other error.
    Failed(KafkaError),
}

pub(super) fn polled(
    item: Option<KafkaResult<BorrowedMessage<'_>>>,
    tp: &TopicPartition,
    next: u64,
) -> Polled {
    let partition = partition_i32(tp.partition);
    match item {
        None => Polled::Nothing,
        Some(Ok(message)) => {
            if message.topic() != tp.topic
                || message.partition() != partition
                || (message.offset() as u64) < next
            {
                Polled::Skipped
            } else {
                Polled::Record(stored(&message))
            }
        }
        Some(Err(KafkaError::PartitionEOF(p))) if p == partition => Polled::End,
        Some(Err(e))
            if matches!(
                code(&e),
                Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
            ) =>
        {
            Polled::Transport
        }
        Some(Err(e)) => Polled::Failed(e),
    }
}

/// The error of a read of `tp` that failed at `next`; `range` gives the partition's
/// (start, end) when the offset turned out to be out of range.
pub(super) fn read_error(
    tp: &TopicPartition,
    next: u64,
    error: &KafkaError,
    range: impl FnOnce() -> Result<(u64, u64)>,
) -> Error {
    match code(error) {
        Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset) => {
            match range() {
                Ok((start, end)) => Error::OffsetOutOfRange {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: next,
                    start,
                    end,
                },
                Err(e) => e,
            }
        }
        _ => kafka_error(format!("read {tp}@{next}"), Some(tp), error),
    }
}

/// A record as the log returns it.
pub(super) fn stored(message: &BorrowedMessage<'_>) -> StoredRecord {
    let timestamp = match message.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
        Timestamp::NotAvailable => -1,
    };
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    StoredRecord {
        offset: message.offset().max(0) as u64,
        record: Record {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            timestamp,
            headers,
        },
    }
}

impl KafkaLog {
    pub(super) fn new_reader(&self, isolation: IsolationLevel) -> Result<Reader> {
        let level = match isolation {
            IsolationLevel::ReadUncommitted => "read_uncommitted",
            IsolationLevel::ReadCommitted => "read_committed",
        };
        self.config
            .client_config(
                ClientKind::Consumer,
                &[
                    ("group.id", READER_GROUP),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                    ("enable.partition.eof", "true"),
                    ("auto.offset.reset", "error"),
                    ("isolation.level", level),
                    ("fetch.wait.max.ms", "100"),
                    // A cursor fetches ahead while it waits for the next read: keep that bounded,
                    // in bytes and in records.
                    ("queued.max.messages.kbytes", "8192"),
                    ("queued.min.messages", READ_AHEAD_RECORDS),
                    ("fetch.queue.backoff.ms", READ_AHEAD_BACKOFF_MS),
                ],
            )
            .create_with_context(self.context())
            .map_err(|e| kafka_error("create a reader", None, &e))
    }

    /// Runs `f` with an idle reader of the isolation level (made when none is idle).
    pub(super) fn with_reader<R>(
        &self,
        isolation: IsolationLevel,
        f: impl FnOnce(&Reader) -> Result<R>,
    ) -> Result<R> {
        let pool = &self.readers[isolation as usize];
        let reader = match pool.lock().pop() {
            Some(r) => r,
            None => self.new_reader(isolation)?,
        };
        let out = f(&reader);
        match &out {
            // As in `release_after`: no stale client back into the pool.
            Err(e) if e.is_retriable() => drop(reader),
            _ => pool.lock().push(reader),
        }
        out
    }

    /// (start, end) of a partition at an isolation level.
    pub(super) fn watermarks(
        &self,
        tp: &TopicPartition,
        isolation: IsolationLevel,
    ) -> Result<(u64, u64)> {
        self.check_partition(tp)?;
        self.with_reader(isolation, |reader| self.watermarks_with(reader, tp))
    }

    /// (start, end) of a partition (which the callers have checked exists). A partition whose
    /// leadership is moving, that was just created (the broker lists the leader in its
    /// metadata a moment before it serves the partition), or whose broker is restarting (its
    /// metadata may lack the partition for a moment) is asked about again until the timeout.
    pub(super) fn watermarks_with(
        &self,
        reader: &Reader,
        tp: &TopicPartition,
    ) -> Result<(u64, u64)> {
        let mut asked = false;
        let (low, high) = retry_transient(
            self.config.timeout,
            &[
                RDKafkaErrorCode::NotLeaderForPartition,
                RDKafkaErrorCode::LeaderNotAvailable,
                RDKafkaErrorCode::UnknownPartition,
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ],
            |left| {
                if asked {
                    // librdkafka finds the leader in its metadata cache, which may still hold
                    // what the broker said a moment ago (no such partition while it restarted,
                    // say): refresh it first.
                    let _ = reader.fetch_metadata(Some(&tp.topic), left);
                }
                asked = true;
                reader.fetch_watermarks(&tp.topic, partition_i32(tp.partition), left)
            },
        )
        .map_err(|e| kafka_error(format!("read the offsets of {tp}"), Some(tp), &e))?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }

    /// A read that starts with an assignment: checks the offset against the partition's
    /// range, assigns the reader there and reads. Also says whether the reader is left
    /// assigned short of the partition's end, so that the next read can go on from it (see
    /// [`Cursor`]).
    pub(super) fn first_read(
        &self,
        reader: &Reader,
        tp: &TopicPartition,
        offset: u64,
        max_records: usize,
    ) -> Result<(Fetch, bool)> {
        let (start, end) = self.watermarks_with(reader, tp)?;
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
                start,
                end,
            });
        }
        let empty = Fetch {
            records: Vec::new(),
            next_offset: offset,
        };
        if offset == end || max_records == 0 {
            return Ok((empty, false));
        }
        let partition = partition_i32(tp.partition);
        let assign_error = |e: KafkaError| kafka_error(format!("read {tp}@{offset}"), Some(tp), &e);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&tp.topic, partition, Offset::Offset(offset as i64))
            .map_err(assign_error)?;
        reader.assign(&list).map_err(assign_error)?;
        let deadline = Instant::now() + self.config.timeout;
        let mut records = Vec::with_capacity(max_records.min(4096));
        let mut next = offset;
        let mut at_end = false;
        let outcome = loop {
            if records.len() >= max_records || next >= end {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break if records.is_empty() {
                    Err(timed_out(
                        format!("read {tp}@{offset}"),
                        self.config.timeout,
                    ))
                } else {
                    Ok(())
                };
            }
            match polled(reader.poll(left.min(Duration::from_millis(100))), tp, next) {
                Polled::Record(record) => {
                    next = record.offset + 1;
                    records.push(record);
                }
                Polled::Nothing | Polled::Skipped | Polled::Transport => {}
                Polled::End => {
                    at_end = true;
                    break Ok(());
                }
                Polled::Failed(e) => break Err(read_error(tp, next, &e, || Ok((start, end)))),
            }
        };
        if outcome.is_err() {
            let _ = reader.unassign();
        }
        outcome?;
        if at_end {
            // The fetcher reached the end as it was then, at least `end`: whatever lies
            // between the last record returned and there (control records, aborted
            // transactions) was skipped.
            next = next.max(end);
        }
        Ok((
            Fetch {
                records,
                next_offset: next,
            },
            !at_end,
        ))
    }

    /// Goes on reading from where the cursor's last read stopped: what librdkafka fetched
    /// ahead is already queued, so no offsets are asked for and nothing is assigned. Returns
    /// what is queued (waiting briefly when nothing is). The cursor is kept for the next read
    /// unless the partition's end was reached: a read at the end starts over, so that it
    /// checks the end offset (past control records) again.
    pub(super) fn continue_read(
        &self,
        mut cursor: Cursor,
        tp: &TopicPartition,
        max_records: usize,
        isolation: IsolationLevel,
    ) -> Result<Fetch> {
        let mut records = Vec::with_capacity(max_records.min(4096));
        let mut next = cursor.next;
        let outcome = loop {
            if records.len() >= max_records {
                break Ok(true);
            }
            let wait = if records.is_empty() {
                CURSOR_WAIT
            } else {
                Duration::ZERO
            };
            match polled(cursor.reader.poll(wait), tp, next) {
                Polled::Record(record) => {
                    next = record.offset + 1;
                    records.push(record);
                }
                Polled::Skipped => {}
                Polled::Nothing | Polled::Transport => break Ok(true),
                Polled::End => break Ok(false),
                Polled::Failed(e) => {
                    let range = || self.watermarks_with(&cursor.reader, tp);
                    break Err(read_error(tp, next, &e, range));
                }
            }
        };
        match outcome {
            Ok(keep) => {
                if !records.is_empty() {
                    cursor.fed = Instant::now();
                }
                if keep && cursor.fed.elapsed() < CURSOR_DRY {
                    cursor.next = next;
                    cursor.used = Instant::now();
                    self.cursors[isolation as usize]
                        .lock()
                        .insert(tp.clone(), cursor);
                } else {
                    self.release(cursor.reader, isolation);
                }
                Ok(Fetch {
                    records,
                    next_offset: next,
                })
            }
            Err(e) => {
                let out = Err(e);
                self.release_after(cursor.reader, isolation, &out);
                out
            }
        }
    }

    /// Stops a reader's fetching and returns it to the pool.
    pub(super) fn release(&self, reader: Reader, isolation: IsolationLevel) {
        let _ = reader.unassign();
        self.readers[isolation as usize].lock().push(reader);
    }

    /// Returns a reader to the pool after a call, unless the call failed with a transient
    /// error: a client that lost its broker can keep a stale view for minutes (after a broker
    /// freeze, "Local: Unknown partition" for a partition the broker serves again, metadata
    /// refreshes notwithstanding), so the next call gets a new client instead.
    pub(super) fn release_after<T>(
        &self,
        reader: Reader,
        isolation: IsolationLevel,
        outcome: &Result<T>,
    ) {
        match outcome {
            Err(e) if e.is_retriable() => {
                tracing::debug!(error = %e.report(), "dropping a reader client after a transient error");
            }
            _ => self.release(reader, isolation),
        }
    }
}
