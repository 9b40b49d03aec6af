//! `suppress`: holds a table's updates back in a buffer ordered by buffer time, then by the
//! key's bytes (as Kafka Streams' time-ordered buffer, so that windows closing together are
//! emitted in key order), and emits a key's latest update once stream time reaches
//! `buffer time + delay`.
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

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use streams_core::{Change, Downstream, Error, Processor, ProcessorContext, Rec, Result, Serde};

use super::encode;
use crate::suppressed::{BufferFull, TimeOf};

struct Entry<K, V> {
    key: K,
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
    /// The buffered updates by key bytes, each with its buffer time.
    buffer: HashMap<Vec<u8>, (i64, Entry<K, V>)>,
    /// Emission order: (buffer time, key bytes) of each buffered update.
    order: BTreeSet<(i64, Vec<u8>)>,
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
            buffer: HashMap::new(),
            order: BTreeSet::new(),
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

    /// Emits the first update in emission order, if any.
    fn emit_first(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        let Some((_, kb)) = self.order.pop_first() else {
            return Ok(());
        };
        let Some((_, e)) = self.buffer.remove(&kb) else {
            return Ok(());
        };
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
        while let Some((time, _)) = self.order.first() {
            if time.saturating_add(self.delay_ms) > stream_time {
                break;
            }
            self.emit_first(ctx)?;
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>> for Suppress<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, Change<V>>) -> Result<()> {
        let kb = encode(self.key_serde.as_ref(), &rec.key, &self.name)?;
        let bytes = self.size_of(&kb, rec.value.new.as_ref())?;
        match self.buffer.get_mut(&kb).map(|(_, e)| e) {
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
                self.order.insert((time, kb.clone()));
                self.bytes += bytes;
                self.buffer.insert(
                    kb,
                    (
                        time,
                        Entry {
                            key: rec.key,
                            change: rec.value,
                            timestamp: rec.timestamp,
                            bytes,
                        },
                    ),
                );
            }
        }
        self.evict(ctx)?;
        while self.full() {
            match self.when_full {
                BufferFull::EmitEarly => {
                    self.emit_first(ctx)?;
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
