//! Restore: replaying a changelog into a store before its task processes records.
//!
//! Records go straight to the backend ([`StateStore::restore_batch`]): not through the cache
//! (nothing to merge, and it would forward stale changes downstream) and not back to the
//! changelog. Writes are batched (one RocksDB `WriteBatch` per batch). Progress is reported
//! through `tracing` at `info` every N records or every T seconds, whichever comes first.

use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::store::{ChangelogRecord, StateStore};

/// How to run a restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Records per write batch.
    pub batch_size: usize,
    /// Log progress at least every this many records.
    pub progress_every_records: u64,
    /// Log progress at least this often.
    pub progress_every: Duration,
    /// Expected number of records (end offset minus start offset), for the progress line.
    pub total: Option<u64>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            batch_size: 10_000,
            progress_every_records: 1_000_000,
            progress_every: Duration::from_secs(10),
            total: None,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Records written to the store.
    pub records: u64,
    /// The offset to restore from next time (last restored offset + 1); `None` when no record
    /// was read. This is what goes into the checkpoint.
    pub next_offset: Option<u64>,
    /// Wall-clock time spent.
    pub elapsed: Duration,
}

/// Where to start restoring a store, given the offset its checkpoint names (if any).
///
/// With no valid checkpoint the local data cannot be trusted (it may hold writes past any
/// changelog position we know of, e.g. after a crash under at-least-once), so the store is
/// wiped and the whole changelog replayed from offset 0.
pub fn restore_start_offset<S: StateStore + ?Sized>(
    store: &mut S,
    checkpointed: Option<u64>,
) -> Result<u64, StoreError> {
    match checkpointed {
        Some(offset) => Ok(offset),
        None => {
            tracing::info!(
                store = store.name(),
                "no valid checkpoint: wiping local state"
            );
            store.wipe()?;
            Ok(0)
        }
    }
}

/// Replays `records` (changelog records from the start offset to the end) into `store`.
pub fn restore<S, I>(
    store: &mut S,
    records: I,
    options: &RestoreOptions,
) -> Result<RestoreSummary, StoreError>
where
    S: StateStore + ?Sized,
    I: IntoIterator<Item = Result<ChangelogRecord, StoreError>>,
{
    let started = Instant::now();
    let batch_size = options.batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size.min(100_000));
    let mut done = 0u64;
    let mut next_offset = None;
    let mut last_report = started;
    let mut reported_at = 0u64;
    tracing::info!(
        store = store.name(),
        total = options.total,
        "restore starting"
    );
    for record in records {
        let record = record?;
        next_offset = Some(record.offset + 1);
        batch.push(record);
        if batch.len() >= batch_size {
            store.restore_batch(&batch)?;
            done += batch.len() as u64;
            batch.clear();
            let now = Instant::now();
            if done - reported_at >= options.progress_every_records
                || now.duration_since(last_report) >= options.progress_every
            {
                report(
                    store.name(),
                    done,
                    options.total,
                    started,
                    "restore progress",
                );
                last_report = now;
                reported_at = done;
            }
        }
    }
    if !batch.is_empty() {
        store.restore_batch(&batch)?;
        done += batch.len() as u64;
    }
    report(store.name(), done, options.total, started, "restore done");
    Ok(RestoreSummary {
        records: done,
        next_offset,
        elapsed: started.elapsed(),
    })
}

fn report(store: &str, done: u64, total: Option<u64>, started: Instant, msg: &'static str) {
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    tracing::info!(
        store,
        records = done,
        total,
        records_per_sec = rate as u64,
        "{msg}"
    );
}
