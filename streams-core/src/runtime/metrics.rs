//! Metrics of a running application: per thread and per task, published by each thread after
//! every commit, when its tasks change, and at least every [`PUBLISH_INTERVAL`] while it runs
//! (so a snapshot is at most about that old), read as a snapshot through `Streams::metrics`.
//!
//! Latencies are counted in fixed buckets by the thread that measures them, with plain
//! arithmetic (no lock, no allocation): the thread owns its [`LatencyHistogram`]s and copies
//! them into the snapshot when it publishes.

use std::collections::BTreeMap;
use std::time::Duration;

use state_store::CacheStats;

use crate::ids::TaskId;
use crate::processor::TaskMetrics;

/// How often a running thread publishes its metrics at the least (it also publishes after
/// every commit and whenever its tasks change).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Upper bounds of the latency histograms' buckets, in seconds; a last bucket (`+Inf`) holds
/// everything above the last bound.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    300.0,
];

/// [`LATENCY_BUCKETS`] in microseconds, the unit observations are counted in.
const BOUNDS_MICROS: [u64; 16] = [
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    60_000_000,
    300_000_000,
];

/// Latencies counted in the buckets of [`LATENCY_BUCKETS`], with their number and sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: [u64; 17],
    count: u64,
    sum_micros: u64,
}

impl LatencyHistogram {
    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of all observations (to microseconds).
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros)
    }

    /// `(upper bound in seconds, observations at or below it)` per bucket, cumulative, the
    /// last with the bound `f64::INFINITY` and the count of all observations.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let mut total = 0u64;
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        bounds
            .zip(self.counts)
            .map(|(bound, n)| {
                total = total.saturating_add(n);
                (bound, total)
            })
            .collect()
    }

    /// Counts one latency.
    pub(crate) fn observe(&mut self, latency: Duration) {
        self.observe_micros(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Counts one latency given in microseconds.
    pub(crate) fn observe_micros(&mut self, micros: u64) {
        let bucket = BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
        self.count = self.count.saturating_add(1);
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Per bucket: observations in it, not cumulative, for the OpenMetrics encoder.
    pub(crate) fn per_bucket(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(self.counts)
    }
}

/// One stream thread's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadMetrics {
    /// The thread's name (`<app-id>-StreamThread-<n>`).
    pub name: String,
    /// Whether the thread is still running.
    pub alive: bool,
    /// Records processed by this thread since it started.
    pub processed: u64,
    /// Records per second over the last commit interval.
    pub process_rate: f64,
    /// Commits done.
    pub commits: u64,
    /// Duration of the last commit.
    pub last_commit_latency: Duration,
    /// Longest commit.
    pub max_commit_latency: Duration,
    /// Sum of all commit durations (divide by `commits` for the mean).
    pub total_commit_latency: Duration,
    /// Polls of the log.
    pub polls: u64,
    /// Records the log rejected or a sink could not encode, dropped by the production handler.
    pub dropped_production: u64,
    /// Times the thread reopened its tasks after a transient error (see
    /// [`StreamsConfig::task_timeout`](super::StreamsConfig::task_timeout)).
    pub retries: u64,
    /// Tasks the thread runs now.
    pub tasks: Vec<TaskId>,
    /// Commits, by how long each took (flush, write, offsets, checkpoints).
    pub commit_latency: LatencyHistogram,
    /// Reads of an input partition from the log, by how long each took.
    pub poll_latency: LatencyHistogram,
    /// Batches, by how long each took: a batch is the records one task processes in one pass
    /// of the thread's loop (up to `max_buffered_records`), observed once per batch.
    pub process_latency: LatencyHistogram,
    /// Records, by end-to-end latency: the wall clock when the record was processed minus its
    /// timestamp (read once per batch, at its start; a timestamp in the future counts as 0).
    pub end_to_end_latency: LatencyHistogram,
    /// The thread's record cache (shared by the cached stores of its tasks).
    pub cache: CacheStats,
}

/// One task's counters, as last published by the thread that runs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSnapshot {
    /// The thread running the task.
    pub thread: String,
    /// Processing counters (records processed, skipped, dropped by reason).
    pub counters: TaskMetrics,
    /// Records in the task's input partitions not yet processed (end offset − position).
    pub lag: u64,
    /// Changelog records replayed when the task last started.
    pub restored: u64,
    /// Time the last restore took.
    pub restore_time: Duration,
    /// Stream time of the task.
    pub stream_time: i64,
    /// RocksDB's own figures of each of the task's stores that keeps RocksDB, by store name.
    pub rocksdb: BTreeMap<String, state_store::RocksDbStoreFigures>,
}

/// How far the restore of one store of one task has got (see
/// [`Streams::restore_progress`](super::Streams::restore_progress)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreProgress {
    /// The task restoring.
    pub task: TaskId,
    /// The store restoring.
    pub store: String,
    /// Changelog records (offsets) replayed so far.
    pub restored: u64,
    /// Changelog records (offsets) to replay in all: from the checkpoint, or the changelog's
    /// start, to its end when the restore began.
    pub total: u64,
}

/// A snapshot of the application's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamsMetrics {
    /// Per thread, by index (failed threads stay, with `alive: false`).
    pub threads: BTreeMap<usize, ThreadMetrics>,
    /// Per task currently assigned.
    pub tasks: BTreeMap<TaskId, TaskSnapshot>,
    /// RocksDB's memory, application-wide (one budget shared by every store).
    pub rocksdb: RocksDbFigures,
    /// What the log's clients report (librdkafka's statistics, on Kafka).
    pub clients: Vec<crate::log::ClientFigures>,
}

/// RocksDB's use of the application's memory budget (`rocksdb.memory.bytes`), as its block
/// cache and write-buffer manager count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RocksDbFigures {
    /// Bytes charged to the shared block cache: data, index and filter blocks, and the
    /// memtables' reservations.
    pub block_cache_usage_bytes: u64,
    /// Bytes held by the memtables of every store.
    pub memtable_bytes: u64,
    /// The budget: `rocksdb.memory.bytes`.
    pub limit_bytes: u64,
}

impl StreamsMetrics {
    /// Records processed by all threads.
    pub fn processed(&self) -> u64 {
        self.threads.values().map(|t| t.processed).sum()
    }

    /// Total lag of all tasks.
    pub fn lag(&self) -> u64 {
        self.tasks.values().map(|t| t.lag).sum()
    }

    /// Records dropped by processors for `reason`, over all tasks.
    pub fn dropped_for(&self, reason: &str) -> u64 {
        self.tasks
            .values()
            .map(|t| t.counters.dropped_for(reason))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        let mut h = LatencyHistogram::default();
        for micros in [400, 500, 501, 2_000_000, u64::MAX] {
            h.observe_micros(micros);
        }
        h.observe(Duration::from_millis(1));
        let buckets = h.buckets();
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(
            buckets[0],
            (0.0005, 2),
            "400 µs and 500 µs (bounds are inclusive)"
        );
        assert_eq!(buckets[1], (0.001, 4), "501 µs and 1 ms");
        assert_eq!(buckets[11], (2.5, 5), "2 s");
        assert_eq!(buckets[16], (f64::INFINITY, 6), "above every bound");
        assert_eq!(h.count(), 6);
        assert_eq!(
            h.sum(),
            Duration::from_micros(u64::MAX),
            "the sum saturates"
        );
    }
}
