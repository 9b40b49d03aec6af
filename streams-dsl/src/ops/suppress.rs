//! `suppress`: holds a table's updates back in a buffer ordered by buffer time and emits a
//! key's latest update once stream time reaches `buffer time + delay`.
//!
//! Final results (`until_window_closes`): buffer time is the window's end and delay the grace
//! of the windowed aggregation, so an update leaves the buffer exactly when its window closes;
//! the aggregation accepts nothing for a closed window, so each window is emitted once.
//! Deletions (sessions merged away) are never emitted as final results. Time limit: buffer time
//! is the record time of the key's first update since it was last emitted.
//!
//! The buffer is checked on every update and on every commit (`flush`), so a window closed by
//! the records of other keys is emitted at the next commit at the latest. It lives in memory:
//! what it holds at a crash is lost (see the crate docs).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use streams_core::{Change, Downstream, Error, Processor, ProcessorContext, Rec, Result, Serde};

use super::encode;
use crate::suppressed::{BufferFull, TimeOf};

struct Entry<K, V> {
    key: K,
    kb: Vec<u8>,
    change: Change<V>,
    timestamp: i64,
    bytes: usize,
}

pub(crate) struct Suppress<K, V> {
    name: String,
    key_serde: Arc<dyn Serde<K>>,
    /// Needed only to count bytes.
    value_serde: Option<Arc<dyn Serde<V>>>,
    /// Buffer time of a key (window end); `None`: the record time.
    time: Option<TimeOf<K>>,
    delay_ms: i64,
    final_results: bool,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    when_full: BufferFull,
    buffer: BTreeMap<(i64, u64), Entry<K, V>>,
    index: HashMap<Vec<u8>, (i64, u64)>,
    seq: u64,
    bytes: usize,
    down: Downstream<K, Change<V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> Suppress<K, V> {
    pub(crate) fn new(
        name: String,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Option<Arc<dyn Serde<V>>>,
        suppressed: &crate::Suppressed<K>,
        delay_ms: i64,
        down: Downstream<K, Change<V>>,
    ) -> Self {
        let b = suppressed.buffer;
        Suppress {
            name,
            key_serde,
            value_serde,
            time: suppressed.time.clone(),
            delay_ms,
            final_results: suppressed.final_results(),
            max_records: b.max_records,
            max_bytes: b.max_bytes,
            when_full: b.when_full.unwrap_or(if suppressed.final_results() {
                BufferFull::Fail
            } else {
                BufferFull::EmitEarly
            }),
            buffer: BTreeMap::new(),
            index: HashMap::new(),
            seq: 0,
            bytes: 0,
            down,
        }
    }

    fn size_of(&self, kb: &[u8], value: Option<&V>) -> Result<usize> {
        let value_len = match (&self.value_serde, value, self.max_bytes) {
            (Some(serde), Some(v), Some(_)) => encode(serde.as_ref(), v, &self.name)?.len(),
            _ => 0,
        };
        Ok(kb.len() + value_len + 16)
    }

    fn full(&self) -> bool {
        self.max_records.is_some_and(|n| self.buffer.len() > n)
            || self.max_bytes.is_some_and(|n| self.bytes > n)
    }

    fn emit(&mut self, ctx: &mut ProcessorContext<'_>, slot: (i64, u64)) -> Result<()> {
        let Some(e) = self.buffer.remove(&slot) else {
            return Ok(());
        };
        self.index.remove(&e.kb);
        self.bytes -= e.bytes;
        let deletion = e.change.new.is_none();
        if deletion && (self.final_results || e.change.old.is_none()) {
            return Ok(());
        }
        self.down
            .forward(ctx, Rec::new(e.key, e.change, e.timestamp))
    }

    /// Emits every update whose time has come.
    fn evict(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        let stream_time = ctx.stream_time();
        while let Some(&slot) = self.buffer.keys().next() {
            if slot.0.saturating_add(self.delay_ms) > stream_time {
                break;
            }
            self.emit(ctx, slot)?;
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>> for Suppress<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, Change<V>>) -> Result<()> {
        let kb = encode(self.key_serde.as_ref(), &rec.key, &self.name)?;
        let bytes = self.size_of(&kb, rec.value.new.as_ref())?;
        match self
            .index
            .get(&kb)
            .and_then(|slot| self.buffer.get_mut(slot))
        {
            // Keep the first buffered old value: downstream has not seen anything since.
            Some(e) => {
                e.change.new = rec.value.new;
                e.timestamp = rec.timestamp;
                self.bytes = self.bytes - e.bytes + bytes;
                e.bytes = bytes;
            }
            None => {
                let time = match &self.time {
                    Some(f) => f(&rec.key, rec.timestamp),
                    None => rec.timestamp,
                };
                self.seq += 1;
                let slot = (time, self.seq);
                self.index.insert(kb.clone(), slot);
                self.bytes += bytes;
                self.buffer.insert(
                    slot,
                    Entry {
                        key: rec.key,
                        kb,
                        change: rec.value,
                        timestamp: rec.timestamp,
                        bytes,
                    },
                );
            }
        }
        self.evict(ctx)?;
        while self.full() {
            match self.when_full {
                BufferFull::EmitEarly => {
                    if let Some(&slot) = self.buffer.keys().next() {
                        self.emit(ctx, slot)?;
                    }
                }
                BufferFull::Fail => {
                    return Err(Error::Processing {
                        task: Some(ctx.task_id()),
                        processor: self.name.clone(),
                        reason: format!(
                            "suppression buffer is full ({} records, {} bytes; bounds {:?} records, {:?} bytes)",
                            self.buffer.len(),
                            self.bytes,
                            self.max_records,
                            self.max_bytes
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        self.evict(ctx)
    }
}
