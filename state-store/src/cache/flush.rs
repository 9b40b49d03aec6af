//! Flushing a namespace: each dirty entry is written once to the store below, and, when the
//! namespace keeps its flushed changes, its change `(key, new, old, timestamp)` is handed out
//! for the namespace's store to give to its owner.
//!
//! Invariants: a failed write marks nothing clean and hands nothing out, so a retried flush
//! writes the same entries again and each change is handed out once, after the write that
//! made it durable below succeeded; the changelog sees each entry with its own record time (the
//! clock is set per run of equal timestamps and restored afterwards).

use super::namespace::{entry_size, Backing, Namespace};
use crate::changelog::RecordClock;
use crate::error::StoreError;
use crate::store::FlushedEntry;

impl Namespace {
    /// Writes every dirty entry once to the store below and, if the namespace keeps its
    /// flushed changes, appends them to `out` in the order the keys became dirty. Flushed
    /// tombstones leave the cache: returns the bytes they were charged, for the cache to
    /// release.
    pub(super) fn flush(&mut self, out: &mut Vec<FlushedEntry>) -> Result<usize, StoreError> {
        let keys = std::mem::take(&mut self.dirty);
        let batch: Vec<FlushBatchEntry<'_>> = keys
            .iter()
            .filter_map(|k| {
                self.entries
                    .get(k)
                    .filter(|e| e.dirty)
                    .map(|e| (k.as_slice(), e.value.as_deref(), e.timestamp))
            })
            .collect();
        let result = write_batch(&mut self.backing, &self.clock, &batch, self.keep_flushed);
        let olds = match result {
            Ok(olds) => olds,
            Err(e) => {
                // Nothing is marked clean: a retried flush writes the same entries again.
                drop(batch);
                self.dirty = keys;
                return Err(e);
            }
        };
        if self.keep_flushed {
            out.reserve(batch.len());
            for ((k, new, ts), old) in batch.iter().zip(olds) {
                out.push(FlushedEntry {
                    key: k.to_vec(),
                    new: new.map(<[u8]>::to_vec),
                    old,
                    timestamp: *ts,
                });
            }
        }
        drop(batch);
        let mut freed = 0;
        for k in &keys {
            let tombstone = match self.entries.get_mut(k) {
                Some(e) => {
                    e.dirty = false;
                    e.value.is_none()
                }
                None => false,
            };
            // A flushed tombstone says nothing the store below cannot; free its space.
            if tombstone {
                if let Some(e) = self.entries.remove(k) {
                    self.lru.remove(&e.tick);
                    freed += entry_size(k, &e.value);
                }
            }
        }
        Ok(freed)
    }
}

/// One dirty entry being flushed: key, new value (`None` deletes), record timestamp.
type FlushBatchEntry<'a> = (&'a [u8], Option<&'a [u8]>, i64);

/// Writes a flush batch below, stamping each run of equal timestamps on the clock (so the
/// changelog gets each entry's own record time), and returns the old values when wanted.
fn write_batch(
    backing: &mut Backing,
    clock: &RecordClock,
    batch: &[FlushBatchEntry<'_>],
    want_old: bool,
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let olds = if want_old {
        batch
            .iter()
            .map(|(k, _, _)| backing.read(k))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let saved = clock.get();
    let mut result = Ok(());
    for run in batch.chunk_by(|a, b| a.2 == b.2) {
        clock.set(run[0].2);
        let entries: Vec<(&[u8], Option<&[u8]>)> = run.iter().map(|(k, v, _)| (*k, *v)).collect();
        result = backing.write(&entries);
        if result.is_err() {
            break;
        }
    }
    clock.set(saved);
    result.map(|()| olds)
}
