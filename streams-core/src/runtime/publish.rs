//! How a stream thread publishes its metrics and its tasks' into the application's snapshot
//! (read by `Streams::metrics` and the exporter).

use std::time::Instant;

use super::metrics::TaskSnapshot;
use super::thread::StreamThread;
use crate::log::IsolationLevel;

impl StreamThread {
    /// Publishes this thread's metrics and those of its tasks. With `refresh_lag`, the end
    /// offsets of the inputs are read again (a round trip per partition on Kafka); otherwise
    /// the lag is computed from the end offsets last read.
    pub(super) fn publish_metrics_with(&mut self, refresh_lag: bool) {
        let log = self.shared.log.clone();
        self.metrics.tasks = self.tasks.0.keys().copied().collect();
        self.metrics.cache = self.env.resources.cache.stats();
        let mut snapshots = Vec::with_capacity(self.tasks.0.len());
        for (id, active) in self.tasks.0.iter_mut() {
            let mut lag = 0u64;
            active.ends.resize(active.positions.len(), 0);
            for ((tp, position), end) in active.positions.iter().zip(active.ends.iter_mut()) {
                if refresh_lag || *end == 0 {
                    *end = log
                        .end_offset(tp, IsolationLevel::ReadCommitted)
                        .unwrap_or(*position);
                }
                let buffered = active.task.buffered_for(&tp.topic) as u64;
                lag = lag
                    .saturating_add(end.saturating_sub(*position))
                    .saturating_add(buffered);
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
                    rocksdb: active.task.stores().rocksdb_figures(),
                },
            ));
        }
        self.last_publish = Instant::now();
        let memory = &self.env.resources.rocksdb;
        let rocksdb = super::metrics::RocksDbFigures {
            block_cache_usage_bytes: memory.usage_bytes() as u64,
            memtable_bytes: memory.memtable_usage_bytes() as u64,
            limit_bytes: memory.total_bytes() as u64,
        };
        let clients = log.client_figures();
        let mut metrics = self.shared.metrics.lock();
        metrics.rocksdb = rocksdb;
        metrics.clients = clients;
        metrics.threads.insert(self.index, self.metrics.clone());
        metrics.tasks.retain(|_, t| t.thread != self.name);
        metrics.tasks.extend(snapshots);
    }

    /// Publishes with the lag read afresh (after a commit, a change of tasks, a failure).
    pub(super) fn publish_metrics(&mut self) {
        self.publish_metrics_with(true);
    }
}
