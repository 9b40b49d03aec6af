//! Windowed stream–stream joins (inner, left, outer): one processor per side.
//!
//! Each side buffers its records in its own window store (duplicates kept, keyed by
//! `[key][timestamp][seq]`; retention `before + after + grace`, counted from the largest
//! timestamp that side has seen). A record at `t` on the left is joined with the right-side
//! records of its key from `t - before` to `t + after` that the right store still retains
//! (the right side looks from `t - after` to `t + before`), one result per match,
//! timestamped with the later of the two. A record is never dropped for being late: a late
//! record still joins with whatever the other side retains, as in Kafka Streams.
//!
//! Unmatched records, on a side whose unmatched records are emitted (the left side of a left
//! join, both sides of an outer join), wait in a key-value store keyed by
//! `[timestamp][side][key]` (the right side sorting first, as in Kafka Streams); a later
//! match removes them. The join's stream time is the largest timestamp either side of the
//! join has seen in the task (Kafka Streams' shared time tracker; records dropped before the
//! join do not move it). When a record moves it, waiting records whose window closed are
//! emitted (joined with `None`, with their own timestamp) before the record is joined: a left
//! record once `t + after + grace` is behind stream time, a right record once
//! `t + before + grace` is. An unmatched record whose window (`t + after`, from its side)
//! already ended is emitted at once instead of waiting. The join's stream time is kept in
//! memory: after a restart it starts again from the records that follow.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use state_store::{decode_timestamp, encode_timestamp};
use streams_core::{
    Downstream, Error, KvStoreRef, Processor, ProcessorContext, Rec, Result, Serde, TaskId,
    WindowStoreRef,
};

use super::{decode, encode};

/// `(this side's value, other side's value) -> result`, with `None` on a side that has no
/// match; returns `None` where the join kind emits nothing.
pub(crate) type SideJoiner<This, Other, R> =
    Arc<dyn Fn(Option<&This>, Option<&Other>) -> Option<R> + Send + Sync>;

/// Which side a processor (or a waiting record) is; the byte in a waiting record's key, so
/// that at one timestamp right-side records sort (and are emitted) first.
pub(crate) const LEFT: u8 = 1;
pub(crate) const RIGHT: u8 = 0;

/// The stream time of one join in each task, shared by its two side processors: the first
/// side opened in a task creates the clock, the second takes it (and the entry is gone, so a
/// task opened again starts a fresh clock).
#[derive(Default)]
pub(crate) struct JoinClocks {
    pending: Mutex<HashMap<TaskId, Arc<AtomicI64>>>,
}

impl JoinClocks {
    pub(crate) fn clock(&self, task: TaskId) -> Arc<AtomicI64> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.remove(&task) {
            Some(clock) => clock,
            None => {
                let clock = Arc::new(AtomicI64::new(i64::MIN));
                pending.insert(task, clock.clone());
                clock
            }
        }
    }
}

pub(crate) struct StreamJoinSide<K, This, Other, R> {
    pub(crate) name: String,
    pub(crate) side: u8,
    pub(crate) this_store: WindowStoreRef,
    pub(crate) other_store: WindowStoreRef,
    /// Records waiting to be emitted unmatched, when any side emits them.
    pub(crate) unmatched: Option<KvStoreRef>,
    /// Whether this side's unmatched records are emitted.
    pub(crate) emit_unmatched: bool,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) this_serde: Arc<dyn Serde<This>>,
    pub(crate) other_serde: Arc<dyn Serde<Other>>,
    /// Other-side records from `t - before` to `t + after` match a record at `t` (for the
    /// right side, the join windows' after and before).
    pub(crate) before_ms: i64,
    pub(crate) after_ms: i64,
    pub(crate) grace_ms: i64,
    /// The join's stream time in this task, shared with the other side.
    pub(crate) join_time: Arc<AtomicI64>,
    pub(crate) joiner: SideJoiner<This, Other, R>,
    pub(crate) down: Downstream<K, R>,
}

fn waiting_key(ts: i64, side: u8, kb: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + kb.len());
    k.extend_from_slice(&encode_timestamp(ts));
    k.push(side);
    k.extend_from_slice(kb);
    k
}

/// Values waiting under one key are a list of `[len: u32 BE][bytes]`.
/// `None` when the value is longer than `u32::MAX` bytes.
fn push_value(list: &mut Vec<u8>, value: &[u8]) -> Option<()> {
    list.extend_from_slice(&u32::try_from(value.len()).ok()?.to_be_bytes());
    list.extend_from_slice(value);
    Some(())
}

fn split_values(mut list: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !list.is_empty() {
        let (len, rest) = list.split_at_checked(4)?;
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        let (value, rest) = rest.split_at_checked(len)?;
        out.push(value);
        list = rest;
    }
    Some(out)
}

impl<K: Clone + 'static, This: 'static, Other: 'static, R: Clone + 'static>
    StreamJoinSide<K, This, Other, R>
{
    fn corrupt(&self) -> Error {
        Error::Processing {
            task: None,
            processor: self.name.clone(),
            reason: "the store of unmatched join records holds a malformed entry".into(),
        }
    }

    /// How far past its own timestamp a waiting record of `side` can still be matched: its
    /// side's `after` (this processor's `after` for its own side, `before` for the other).
    fn reach(&self, side: u8) -> i64 {
        if side == self.side {
            self.after_ms
        } else {
            self.before_ms
        }
    }

    /// Emits (and forgets) the waiting records whose window closed before stream time `now`.
    fn emit_unmatched(&mut self, ctx: &mut ProcessorContext<'_>, now: i64) -> Result<()> {
        let Some(store) = self.unmatched.clone() else {
            return Ok(());
        };
        let closed =
            |ts: i64, reach: i64| ts.saturating_add(reach).saturating_add(self.grace_ms) < now;
        // Every closed record lies below the limit of the side that closes first.
        let nearest = self.after_ms.min(self.before_ms);
        let limit = encode_timestamp(now.saturating_sub(nearest).saturating_sub(self.grace_ms));
        let waiting: Vec<(Vec<u8>, Vec<u8>)> = {
            let s = store.borrow();
            let iter = s.range(Bound::Unbounded, Bound::Excluded(&limit))?;
            iter.collect::<std::result::Result<_, _>>()?
        };
        for (raw, list) in waiting {
            let Some((ts, rest)) = raw.split_first_chunk::<8>() else {
                return Err(self.corrupt());
            };
            let ts = decode_timestamp(*ts);
            let Some((&side, kb)) = rest.split_first() else {
                return Err(self.corrupt());
            };
            if !closed(ts, self.reach(side)) {
                continue;
            }
            store.borrow_mut().delete(&raw)?;
            let key = decode(self.key_serde.as_ref(), kb, &self.name)?;
            let values = split_values(&list).ok_or_else(|| self.corrupt())?;
            for v in values {
                let out = if side == self.side {
                    (self.joiner)(
                        Some(&decode(self.this_serde.as_ref(), v, &self.name)?),
                        None,
                    )
                } else {
                    (self.joiner)(
                        None,
                        Some(&decode(self.other_serde.as_ref(), v, &self.name)?),
                    )
                };
                if let Some(out) = out {
                    self.down.forward(ctx, Rec::new(key.clone(), out, ts))?;
                }
            }
        }
        Ok(())
    }
}

impl<K: Clone + 'static, This: 'static, Other: 'static, R: Clone + 'static> Processor<K, This>
    for StreamJoinSide<K, This, Other, R>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, This>) -> Result<()> {
        let t = rec.timestamp;
        let now = self.join_time.fetch_max(t, Ordering::Relaxed).max(t);
        if t == now {
            self.emit_unmatched(ctx, now)?;
        }
        let kb = encode(self.key_serde.as_ref(), &rec.key, &self.name)?;
        let vb = encode(self.this_serde.as_ref(), &rec.value, &self.name)?;
        let window_end = t.saturating_add(self.after_ms);
        let matches: Vec<(i64, Vec<u8>)> = {
            let other = self.other_store.borrow();
            let iter = other.fetch(&kb, t.saturating_sub(self.before_ms), window_end)?;
            iter.collect::<std::result::Result<_, _>>()?
        };
        let mut matched_at = Vec::new();
        for (ts, bytes) in &matches {
            let other = decode(self.other_serde.as_ref(), bytes, &self.name)?;
            if let Some(out) = (self.joiner)(Some(&rec.value), Some(&other)) {
                self.down
                    .forward(ctx, Rec::new(rec.key.clone(), out, t.max(*ts)))?;
            }
            if matched_at.last() != Some(ts) {
                matched_at.push(*ts);
            }
        }
        // The store drops the record when it is older than its retention.
        self.this_store.borrow_mut().put(&kb, Some(&vb), t)?;
        if let Some(store) = &self.unmatched {
            // The other side's records just matched stop waiting (all of one timestamp and
            // key match together).
            for ts in matched_at {
                store
                    .borrow_mut()
                    .delete(&waiting_key(ts, other_side(self.side), &kb))?;
            }
        }
        if !matches.is_empty() || !self.emit_unmatched {
            return Ok(());
        }
        match &self.unmatched {
            Some(store) if window_end >= now => {
                let mut store = store.borrow_mut();
                let wk = waiting_key(t, self.side, &kb);
                let mut list = store.get(&wk)?.unwrap_or_default();
                push_value(&mut list, &vb).ok_or_else(|| Error::Processing {
                    task: None,
                    processor: self.name.clone(),
                    reason: format!(
                        "a value of {} bytes is too large to wait for a match",
                        vb.len()
                    ),
                })?;
                store.put(&wk, &list)?;
            }
            // No record that could match it can arrive any more.
            _ => {
                if let Some(out) = (self.joiner)(Some(&rec.value), None) {
                    self.down.forward(ctx, Rec::new(rec.key, out, t))?;
                }
            }
        }
        Ok(())
    }
}

fn other_side(side: u8) -> u8 {
    if side == LEFT {
        RIGHT
    } else {
        LEFT
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn waiting_lists_round_trip() {
        let mut list = Vec::new();
        push_value(&mut list, b"ab").unwrap();
        push_value(&mut list, b"").unwrap();
        push_value(&mut list, b"c").unwrap();
        assert_eq!(
            split_values(&list).unwrap(),
            vec![&b"ab"[..], &b""[..], &b"c"[..]]
        );
        assert_eq!(split_values(&list[..3]), None);
    }
}
