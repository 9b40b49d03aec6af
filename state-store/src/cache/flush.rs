//! Flushing a namespace: each dirty entry is written once to the store below, then its change
//! `(key, new, old)` goes to the namespace's flush listener.
//!
//! Invariants: a failed write marks nothing clean, so a retried flush writes the same entries
//! again; the changelog sees each entry with its own record time (the clock is set per run of
//! equal timestamps and restored afterwards); listeners are called only outside the cache lock,
//! and a listener already running up the stack gets its change queued, not re-entered.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use super::namespace::{entry_size, Backing, FlushListener, Namespace};
use crate::changelog::RecordClock;
use crate::error::StoreError;

/// A flushed change waiting for its listener.
pub(super) struct Forward {
    listener: Arc<Mutex<FlushListener>>,
    key: Vec<u8>,
    new: Option<Vec<u8>>,
    old: Option<Vec<u8>>,
    /// The entry's own record time, put on the clock while its listener runs, so a
    /// forwarded change carries the timestamp of the write that made it.
    clock: RecordClock,
    timestamp: i64,
}

/// Hands each change to its listener, with the change's record time on the clock, and returns
/// the changes whose listener is already running up the stack (a cycle), in order, for later.
pub(super) fn deliver(batch: VecDeque<Forward>) -> VecDeque<Forward> {
    let mut blocked = VecDeque::new();
    for f in batch {
        let delivered = match f.listener.try_lock() {
            Some(mut listener) => {
                let saved = f.clock.get();
                f.clock.set(f.timestamp);
                (*listener)(&f.key, f.new.as_deref(), f.old.as_deref());
                f.clock.set(saved);
                true
            }
            None => false,
        };
        if !delivered {
            blocked.push_back(f);
        }
    }
    blocked
}

impl Namespace {
    /// Writes every dirty entry once to the store below and queues its listener calls on
    /// `outbox`. Flushed tombstones leave the cache: returns the LRU tick and charged size of
    /// each, for the cache to release.
    pub(super) fn flush(
        &mut self,
        outbox: &mut VecDeque<Forward>,
    ) -> Result<Vec<(u64, usize)>, StoreError> {
        let keys = std::mem::take(&mut self.dirty);
        let batch: Vec<FlushEntry<'_>> = keys
            .iter()
            .filter_map(|k| {
                self.entries
                    .get(k)
                    .filter(|e| e.dirty)
                    .map(|e| (k.as_slice(), e.value.as_deref(), e.timestamp))
            })
            .collect();
        let result = write_batch(
            &mut self.backing,
            &self.clock,
            &batch,
            self.listener.is_some(),
        );
        let olds = match result {
            Ok(olds) => olds,
            Err(e) => {
                // Nothing is marked clean: a retried flush writes the same entries again.
                drop(batch);
                self.dirty = keys;
                return Err(e);
            }
        };
        if let Some(listener) = &self.listener {
            for ((k, new, ts), old) in batch.iter().zip(olds) {
                outbox.push_back(Forward {
                    listener: listener.clone(),
                    key: k.to_vec(),
                    new: new.map(<[u8]>::to_vec),
                    clock: self.clock.clone(),
                    timestamp: *ts,
                    old,
                });
            }
        }
        drop(batch);
        let mut freed = Vec::new();
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
                    freed.push((e.tick, entry_size(k, &e.value)));
                }
            }
        }
        Ok(freed)
    }
}

/// One dirty entry being flushed: key, new value (`None` deletes), record timestamp.
type FlushEntry<'a> = (&'a [u8], Option<&'a [u8]>, i64);

/// Writes a flush batch below, stamping each run of equal timestamps on the clock (so the
/// changelog gets each entry's own record time), and returns the old values when wanted.
fn write_batch(
    backing: &mut Backing,
    clock: &RecordClock,
    batch: &[FlushEntry<'_>],
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
