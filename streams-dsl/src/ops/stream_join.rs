//! Windowed stream–stream joins (inner, left, outer): one processor per side.
//!
//! Each side buffers its records in its own window store (duplicates kept, keyed by
//! `[key][timestamp][seq]`) and, for each record, looks up the other side's store over the
//! record's join window and emits one result per match, timestamped with the later of the
//! two. Records with no match on a side whose unmatched records are emitted (the left side of
//! a left join, both sides of an outer join) wait in a shared key-value store keyed by
//! `[timestamp][side][key]`; a later match removes them, and they are emitted (joined with
//! `None`) once no record that could match them can arrive any more:
//! `timestamp + before + after + grace < stream time`. Records whose own window closed more
//! than `grace` ago are dropped as `"late"`, so a record emitted as unmatched never matches
//! later.

use std::ops::Bound;
use std::sync::Arc;

use state_store::{decode_timestamp, encode_timestamp};
use streams_core::{
    Downstream, Error, KvStoreRef, Processor, ProcessorContext, Rec, Result, Serde, WindowStoreRef,
};

use super::{decode, encode};

/// `(this side's value, other side's value) -> result`, with `None` on a side that has no
/// match; returns `None` where the join kind emits nothing.
pub(crate) type SideJoiner<This, Other, R> =
    Arc<dyn Fn(Option<&This>, Option<&Other>) -> Option<R> + Send + Sync>;

/// Which side a processor (or a waiting record) is.
pub(crate) const LEFT: u8 = 0;
pub(crate) const RIGHT: u8 = 1;

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
    /// Other-side records from `t - before` to `t + after` match a record at `t`.
    pub(crate) before_ms: i64,
    pub(crate) after_ms: i64,
    pub(crate) grace_ms: i64,
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
fn push_value(list: &mut Vec<u8>, value: &[u8]) {
    list.extend_from_slice(&(value.len() as u32).to_be_bytes());
    list.extend_from_slice(value);
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

    /// Emits (and forgets) the waiting records that can no longer be matched.
    fn emit_unmatched(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        let Some(store) = self.unmatched.clone() else {
            return Ok(());
        };
        let horizon = self
            .before_ms
            .saturating_add(self.after_ms)
            .saturating_add(self.grace_ms);
        let limit = encode_timestamp(ctx.stream_time().saturating_sub(horizon));
        let expired: Vec<(Vec<u8>, Vec<u8>)> = {
            let s = store.borrow();
            let iter = s.range(Bound::Unbounded, Bound::Excluded(&limit))?;
            iter.collect::<std::result::Result<_, _>>()?
        };
        for (raw, list) in expired {
            store.borrow_mut().delete(&raw)?;
            if raw.len() < 9 {
                return Err(self.corrupt());
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&raw[..8]);
            let ts = decode_timestamp(ts);
            let key = decode(self.key_serde.as_ref(), &raw[9..], &self.name)?;
            let values = split_values(&list).ok_or_else(|| self.corrupt())?;
            for v in values {
                let out = if raw[8] == self.side {
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
        let window_end = t
            .saturating_add(self.after_ms)
            .saturating_add(self.grace_ms);
        if window_end < ctx.stream_time() {
            ctx.record_dropped(&self.name, "late");
            return Ok(());
        }
        let kb = encode(self.key_serde.as_ref(), &rec.key, &self.name)?;
        let vb = encode(self.this_serde.as_ref(), &rec.value, &self.name)?;
        let matches: Vec<(i64, Vec<u8>)> = {
            let other = self.other_store.borrow();
            let iter = other.fetch(
                &kb,
                t.saturating_sub(self.before_ms),
                t.saturating_add(self.after_ms),
            )?;
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
        self.this_store.borrow_mut().put(&kb, Some(&vb), t)?;
        if let Some(store) = &self.unmatched {
            let mut store = store.borrow_mut();
            // The other side's records just matched stop waiting (all of one timestamp and
            // key match together).
            for ts in matched_at {
                store.delete(&waiting_key(ts, 1 - self.side, &kb))?;
            }
            if matches.is_empty() && self.emit_unmatched {
                let wk = waiting_key(t, self.side, &kb);
                let mut list = store.get(&wk)?;
                let list = list.get_or_insert_with(Vec::new);
                push_value(list, &vb);
                store.put(&wk, list)?;
            }
        }
        self.emit_unmatched(ctx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn waiting_lists_round_trip() {
        let mut list = Vec::new();
        push_value(&mut list, b"ab");
        push_value(&mut list, b"");
        push_value(&mut list, b"c");
        assert_eq!(
            split_values(&list).unwrap(),
            vec![&b"ab"[..], &b""[..], &b"c"[..]]
        );
        assert_eq!(split_values(&list[..3]), None);
    }
}
