//! `suppress`: holds a table's updates back in a buffer ordered by buffer time, then by the
//! key's bytes (as Kafka Streams' time-ordered buffer), and emits a
//! key's latest update once stream time reaches `buffer time + delay`.
//!
//! Final results (`until_window_closes`): buffer time is the window's end and delay the grace
//! of the windowed aggregation, so an update leaves the buffer exactly when its window closes;
//! the aggregation accepts nothing for a closed window, so each window is emitted once.
//! Deletions (sessions merged away) are never emitted as final results. Time limit: buffer time
//! is the record time of the key's first update since it was last emitted.
//!
//! Updates whose time has come are emitted on commit (`flush`), never while an update is
//! being buffered: a cached aggregation upstream forwards its updates in batches (on commit,
//! or when the cache evicts), in the order its keys first became dirty, not in time order, so
//! stream time can pass a window's close while the window's last update still sits in that
//! cache. A commit flushes processors parents first, so when this one flushes, every update
//! of the interval has reached the buffer and a closed window's buffered value is final.
//! (Emitting on update, as this did before, emitted such a window early with a stale count,
//! and again when its last update arrived.) Bounds are enforced on every update, so a closed
//! window counts against them until the next commit.
//!
//! The buffer's contents live in a key-value store of the task, `<node name>-store`
//! (RocksDB, cached, changelogged to `<application id>-<node name>-store-changelog`), as
//! Kafka Streams keeps its time-ordered buffer in a changelogged store: a window still
//! buffered at a crash, a restart or a task move is restored with the task's other stores and
//! emitted later, and the buffer's changes are part of the commit that covers the updates
//! they came from (one transaction under exactly-once). The store is keyed by the key's
//! serde bytes; a value holds the buffer time, an insertion sequence number (the order of
//! keys with the same buffer time), the record timestamp and the change, old and new value
//! as their serdes encode them (see [`Entry`]). Emitting an entry deletes it. In memory the
//! operator keeps only the time order and the size of each key; it rebuilds them from the
//! store on its first call after the task's stores are restored (processors are built
//! before restore, so not in `new`).
//!
//! Bounds count what the buffer holds: keys, and encoded key + new value + 16 bytes per key.
//! After a restore they apply to the restored contents too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use streams_core::{
    Change, Downstream, Error, KvStoreRef, Processor, ProcessorContext, Rec, Result, Serde,
};

use super::{decode, encode, ObservedTime};
use crate::suppressed::{BufferFull, TimeOf};

/// Format version of a stored entry, its first byte.
const VERSION: u8 = 1;
/// Version, buffer time, sequence number, record timestamp.
const HEADER: usize = 1 + 8 + 8 + 8;

/// A stored entry, borrowed from its bytes:
/// `[version 1][buffer time i64 BE][seq u64 BE][timestamp i64 BE]`
/// `[old: 0 | 1 + length u32 BE + bytes][new: 0 | 1 + bytes to the end]`.
#[derive(Debug)]
struct Entry<'a> {
    time: i64,
    seq: u64,
    timestamp: i64,
    old: Option<&'a [u8]>,
    new: Option<&'a [u8]>,
}

impl<'a> Entry<'a> {
    fn write(&self) -> Vec<u8> {
        let len = HEADER + 6 + self.old.map_or(0, <[u8]>::len) + self.new.map_or(0, <[u8]>::len);
        let mut out = Vec::with_capacity(len);
        out.push(VERSION);
        out.extend_from_slice(&self.time.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        match self.old {
            Some(old) => {
                out.push(1);
                // An encoded value over 4 GiB cannot be buffered (nor stored by RocksDB).
                out.extend_from_slice(&(old.len() as u32).to_be_bytes());
                out.extend_from_slice(old);
            }
            None => out.push(0),
        }
        match self.new {
            Some(new) => {
                out.push(1);
                out.extend_from_slice(new);
            }
            None => out.push(0),
        }
        out
    }

    /// Parses an entry; `Err` says what is wrong with the bytes.
    fn read(bytes: &'a [u8]) -> std::result::Result<Self, String> {
        let short = || format!("{} bytes are too few for an entry", bytes.len());
        if bytes.len() < HEADER + 2 {
            return Err(short());
        }
        if bytes[0] != VERSION {
            return Err(format!("unknown entry format version {}", bytes[0]));
        }
        let int = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            b
        };
        let (time, seq, timestamp) = (
            i64::from_be_bytes(int(1)),
            u64::from_be_bytes(int(9)),
            i64::from_be_bytes(int(17)),
        );
        let mut at = HEADER;
        let old = match bytes[at] {
            0 => {
                at += 1;
                None
            }
            1 => {
                let len_bytes = bytes.get(at + 1..at + 5).ok_or_else(short)?;
                let mut b = [0u8; 4];
                b.copy_from_slice(len_bytes);
                let len = u32::from_be_bytes(b) as usize;
                let old = bytes.get(at + 5..at + 5 + len).ok_or_else(short)?;
                at += 5 + len;
                Some(old)
            }
            f => return Err(format!("bad old-value flag {f}")),
        };
        let new = match bytes.get(at) {
            Some(0) if at + 1 == bytes.len() => None,
            Some(1) => Some(&bytes[at + 1..]),
            Some(f) => return Err(format!("bad new-value flag {f} or trailing bytes")),
            None => return Err(short()),
        };
        Ok(Entry {
            time,
            seq,
            timestamp,
            old,
            new,
        })
    }
}

/// Where a buffered key sits in the time order, and what it counts against the bounds.
struct Slot {
    time: i64,
    seq: u64,
    bytes: usize,
}

/// Bytes a buffered key counts against `max_bytes`.
fn size_of(kb: &[u8], new: Option<&[u8]>) -> usize {
    kb.len() + new.map_or(0, <[u8]>::len) + 16
}

pub(crate) struct Suppress<K, V> {
    name: String,
    store_name: String,
    store: KvStoreRef,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
    /// Buffer time of a key (window end); `None`: the record time.
    time: Option<TimeOf<K>>,
    delay_ms: i64,
    final_results: bool,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    when_full: BufferFull,
    /// Whether `order` and `index` were rebuilt from the store.
    loaded: bool,
    /// Emission order: `(buffer time, key bytes)` → key bytes. Windows closing together
    /// leave in key order, as from Kafka Streams' time-ordered buffer.
    order: BTreeMap<(i64, Vec<u8>), Vec<u8>>,
    index: HashMap<Vec<u8>, Slot>,
    seq: u64,
    bytes: usize,
    down: Downstream<K, Change<V>>,
    /// What decides when an update's time has come: the largest timestamp that reached
    /// this operator (Kafka Streams' `observedStreamTime`), not the task's stream time.
    observed: ObservedTime,
}

/// What a [`Suppress`] is made of besides its options.
pub(crate) struct SuppressParts<K, V> {
    pub(crate) name: String,
    pub(crate) store_name: String,
    pub(crate) store: KvStoreRef,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
    pub(crate) down: Downstream<K, Change<V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> Suppress<K, V> {
    pub(crate) fn new(
        parts: SuppressParts<K, V>,
        suppressed: &crate::Suppressed<K>,
        delay_ms: i64,
    ) -> Self {
        let b = suppressed.buffer;
        Suppress {
            name: parts.name,
            store_name: parts.store_name,
            store: parts.store,
            key_serde: parts.key_serde,
            value_serde: parts.value_serde,
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
            loaded: false,
            order: BTreeMap::new(),
            index: HashMap::new(),
            seq: 0,
            observed: ObservedTime::default(),
            bytes: 0,
            down: parts.down,
        }
    }

    /// The error for a stored entry that cannot be read.
    fn corrupt(&self, kb: &[u8], reason: impl std::fmt::Display) -> Error {
        Error::Processing {
            task: None,
            processor: self.name.clone(),
            reason: format!(
                "store `{}`: the buffered entry of key {kb:02x?}: {reason}",
                self.store_name
            ),
        }
    }

    /// Rebuilds the time order from the store, once, before anything else touches it.
    fn load(&mut self) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        let mut order = BTreeMap::new();
        let mut index = HashMap::new();
        let (mut seq, mut bytes) = (0, 0);
        {
            let store = self.store.borrow();
            for item in store.all()? {
                let (kb, value) = item?;
                let e = Entry::read(&value).map_err(|r| self.corrupt(&kb, r))?;
                let size = size_of(&kb, e.new);
                seq = seq.max(e.seq);
                bytes += size;
                order.insert((e.time, kb.clone()), kb.clone());
                index.insert(
                    kb,
                    Slot {
                        time: e.time,
                        seq: e.seq,
                        bytes: size,
                    },
                );
            }
        }
        (self.order, self.index, self.seq, self.bytes) = (order, index, seq, bytes);
        self.loaded = true;
        Ok(())
    }

    fn full(&self) -> bool {
        self.max_records.is_some_and(|n| self.order.len() > n)
            || self.max_bytes.is_some_and(|n| self.bytes > n)
    }

    /// Takes the key at `slot` out of the buffer (and its store) and forwards its change.
    fn emit(&mut self, ctx: &mut ProcessorContext<'_>, slot: (i64, Vec<u8>)) -> Result<()> {
        let Some(kb) = self.order.remove(&slot) else {
            return Ok(());
        };
        if let Some(s) = self.index.remove(&kb) {
            self.bytes -= s.bytes;
        }
        let stored = self.store.borrow().get(&kb)?;
        let stored = stored.ok_or_else(|| self.corrupt(&kb, "missing from the store"))?;
        self.store.borrow_mut().delete(&kb)?;
        let e = Entry::read(&stored).map_err(|r| self.corrupt(&kb, r))?;
        if e.new.is_none() && (self.final_results || e.old.is_none()) {
            return Ok(());
        }
        let value = |b: &[u8]| decode(self.value_serde.as_ref(), b, &self.name);
        let change = Change::new(e.new.map(value).transpose()?, e.old.map(value).transpose()?);
        let key = decode(self.key_serde.as_ref(), &kb, &self.name)?;
        self.down.forward(ctx, Rec::new(key, change, e.timestamp))
    }

    /// Emits every update whose time has come.
    fn evict(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        let stream_time = self.observed.now(ctx);
        while let Some(slot) = self.order.keys().next().cloned() {
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
        self.load()?;
        self.observed.observe(ctx, rec.timestamp);
        let kb = encode(self.key_serde.as_ref(), &rec.key, &self.name)?;
        let value = |v: &V| encode(self.value_serde.as_ref(), v, &self.name);
        let new = rec.value.new.as_ref().map(value).transpose()?;
        let bytes = size_of(&kb, new.as_deref());
        if let Some(slot) = self.index.get(&kb) {
            // Keep the first buffered old value: downstream has not seen anything since.
            let stored = self.store.borrow().get(&kb)?;
            let stored = stored.ok_or_else(|| self.corrupt(&kb, "missing from the store"))?;
            let old = Entry::read(&stored).map_err(|r| self.corrupt(&kb, r))?.old;
            let entry = Entry {
                time: slot.time,
                seq: slot.seq,
                timestamp: rec.timestamp,
                old,
                new: new.as_deref(),
            };
            self.store.borrow_mut().put(&kb, &entry.write())?;
            self.bytes = self.bytes - slot.bytes + bytes;
            if let Some(slot) = self.index.get_mut(&kb) {
                slot.bytes = bytes;
            }
        } else {
            let time = match &self.time {
                Some(f) => f(&rec.key, rec.timestamp),
                None => rec.timestamp,
            };
            let old = rec.value.old.as_ref().map(value).transpose()?;
            self.seq += 1;
            let entry = Entry {
                time,
                seq: self.seq,
                timestamp: rec.timestamp,
                old: old.as_deref(),
                new: new.as_deref(),
            };
            self.store.borrow_mut().put(&kb, &entry.write())?;
            self.order.insert((time, kb.clone()), kb.clone());
            self.index.insert(
                kb,
                Slot {
                    time,
                    seq: self.seq,
                    bytes,
                },
            );
            self.bytes += bytes;
        }
        // No time-based emission here: see the module docs.
        while self.full() {
            match self.when_full {
                BufferFull::EmitEarly => {
                    if let Some(slot) = self.order.keys().next().cloned() {
                        self.emit(ctx, slot)?;
                    }
                }
                BufferFull::Fail => {
                    return Err(Error::Processing {
                        task: Some(ctx.task_id()),
                        processor: self.name.clone(),
                        reason: format!(
                            "suppression buffer is full ({} records, {} bytes; bounds {:?} records, {:?} bytes)",
                            self.order.len(),
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
        self.load()?;
        self.evict(ctx)
    }
}

#[cfg(test)]
mod tests {
    //! The stored entry format: what is written reads back, damaged bytes are refused.
    #![allow(clippy::unwrap_used)]

    use super::Entry;

    #[test]
    fn entries_read_back_as_written() {
        for (old, new) in [
            (None, None),
            (Some(&b""[..]), Some(&b""[..])),
            (Some(&b"old"[..]), None),
            (None, Some(&b"new"[..])),
            (Some(&b"o"[..]), Some(&b"nn"[..])),
        ] {
            let bytes = Entry {
                time: -5,
                seq: 7,
                timestamp: i64::MAX,
                old,
                new,
            }
            .write();
            let e = Entry::read(&bytes).unwrap();
            assert_eq!((e.time, e.seq, e.timestamp), (-5, 7, i64::MAX));
            assert_eq!((e.old, e.new), (old, new));
        }
    }

    #[test]
    fn damaged_entries_are_refused() {
        let good = Entry {
            time: 1,
            seq: 2,
            timestamp: 3,
            old: Some(b"old"),
            new: Some(b"new"),
        }
        .write();
        for cut in 0..HEADER_AND_OLD {
            assert!(Entry::read(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_version = good.clone();
        bad_version[0] = 9;
        assert!(Entry::read(&bad_version).unwrap_err().contains("version 9"));
        let mut trailing = Entry {
            time: 1,
            seq: 2,
            timestamp: 3,
            old: None,
            new: None,
        }
        .write();
        trailing.push(0);
        assert!(Entry::read(&trailing).is_err());
    }

    /// Header, old flag, length and the 3 old bytes: every shorter prefix is incomplete.
    const HEADER_AND_OLD: usize = super::HEADER + 1 + 4 + 3 + 1;
}
