//! Metrics of a running application: per thread and per task, published by each thread after
//! every commit (and when it goes idle), read as a snapshot through `Streams::metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ids::TaskId;
use crate::processor::TaskMetrics;

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

    /// Renders the metrics in Prometheus' text exposition format.
    pub fn to_prometheus(&self, application_id: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let app = application_id;
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{{application_id=\"{app}\",{labels}}} {v}");
            }
        };
        let threads = |f: &dyn Fn(&ThreadMetrics) -> f64| {
            self.threads
                .values()
                .map(|t| (format!("thread=\"{}\"", t.name), f(t)))
                .collect::<Vec<_>>()
        };
        family(
            "streams_thread_records_processed_total",
            "counter",
            "Records processed by the thread.",
            threads(&|t| t.processed as f64),
        );
        family(
            "streams_thread_process_rate",
            "gauge",
            "Records per second over the last commit interval.",
            threads(&|t| t.process_rate),
        );
        family(
            "streams_thread_commits_total",
            "counter",
            "Commits.",
            threads(&|t| t.commits as f64),
        );
        family(
            "streams_thread_commit_latency_max_seconds",
            "gauge",
            "Longest commit.",
            threads(&|t| t.max_commit_latency.as_secs_f64()),
        );
        family(
            "streams_thread_alive",
            "gauge",
            "1 while the thread runs.",
            threads(&|t| f64::from(u8::from(t.alive))),
        );
        let tasks = |f: &dyn Fn(&TaskSnapshot) -> f64| {
            self.tasks
                .iter()
                .map(|(id, t)| (format!("task=\"{id}\""), f(t)))
                .collect::<Vec<_>>()
        };
        family(
            "streams_task_records_processed_total",
            "counter",
            "Records processed by the task.",
            tasks(&|t| t.counters.processed as f64),
        );
        family(
            "streams_task_lag_records",
            "gauge",
            "Records in the task's inputs not yet processed.",
            tasks(&|t| t.lag as f64),
        );
        family(
            "streams_task_restored_records",
            "gauge",
            "Changelog records replayed at the task's last start.",
            tasks(&|t| t.restored as f64),
        );
        family(
            "streams_task_skipped_deserialization_total",
            "counter",
            "Records skipped because they could not be decoded.",
            tasks(&|t| t.counters.skipped_deserialization as f64),
        );
        let mut dropped = Vec::new();
        for (id, t) in &self.tasks {
            for ((processor, reason), n) in &t.counters.dropped {
                dropped.push((
                    format!("task=\"{id}\",processor=\"{processor}\",reason=\"{reason}\""),
                    *n as f64,
                ));
            }
        }
        family(
            "streams_task_dropped_records_total",
            "counter",
            "Records dropped by processors, by reason.",
            dropped,
        );
        out
    }
}
