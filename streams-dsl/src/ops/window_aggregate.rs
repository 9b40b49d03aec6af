//! Windowed `count`, `reduce` and `aggregate` over time windows (tumbling, hopping) and
//! sliding windows, kept in a window store keyed by `[key][window start]`.
//!
//! Store values are `[largest record timestamp of the window][aggregate]` (Kafka's timestamped
//! window store): the timestamp is what updates are forwarded with, and sliding windows need it
//! to know where the records of a window lie. Invariants: a window is written only while open
//! (`end + grace > stream time`); a record that reaches no open window is dropped as `"late"`.
//! Stream time here is the aggregation's own ([`ObservedTime`]), as in Kafka Streams.

use std::sync::Arc;

use state_store::{decode_timestamp, decode_timestamped, push_timestamp_prefix};
use streams_core::{
    Change, Downstream, Error, Processor, ProcessorContext, Rec, Result, Serde, WindowStoreRef,
};

use super::aggregate::AggregateFn;
use super::{decode, encode, forward_flushed_with, record_error, ObservedTime};
use crate::windowed::Windowed;
use crate::windows::{SlidingWindows, TimeWindows, Window};

fn corrupt(node: &str, what: &str) -> Error {
    Error::Processing {
        task: None,
        processor: node.to_string(),
        reason: format!("window store holds a malformed {what}"),
    }
}

fn split_time(bytes: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[at..at + 8]);
    decode_timestamp(a)
}

/// What windowed aggregations share: the store, its serdes, and forwarding (directly, or as
/// the store's cache writes changes through).
pub(crate) struct WindowedCore<K, A> {
    pub(crate) name: String,
    pub(crate) store: WindowStoreRef,
    /// Whether the store is cached: then changes are forwarded as its cache writes them
    /// through, taken from the store.
    pub(crate) cached: bool,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<A>>,
    /// Window length, so a window is known from its start.
    pub(crate) size_ms: i64,
    pub(crate) grace_ms: i64,
    pub(crate) down: Downstream<Windowed<K>, Change<A>>,
    /// What closes windows: the largest timestamp that reached this aggregation.
    pub(crate) observed: ObservedTime,
}

impl<K: Clone + 'static, A: Clone + 'static> WindowedCore<K, A> {
    fn unstamp(&self, bytes: &[u8]) -> Result<(i64, A)> {
        let (ts, agg) = decode_timestamped(&self.name, bytes)?;
        Ok((ts, decode(self.agg_serde.as_ref(), agg, &self.name)?))
    }

    fn window(&self, start: i64) -> Window {
        Window::new(start, start.saturating_add(self.size_ms))
    }

    /// The window of `kb` starting at `start`: `(largest timestamp, aggregate)`.
    fn get(&self, kb: &[u8], start: i64) -> Result<Option<(i64, A)>> {
        let bytes = self.store.borrow().fetch_one(kb, start)?;
        bytes.map(|b| self.unstamp(&b)).transpose()
    }

    /// Windows of `kb` starting in `[from, to]`: `(start, largest timestamp, aggregate)`.
    fn fetch(&self, kb: &[u8], from: i64, to: i64) -> Result<Vec<(i64, i64, A)>> {
        let store = self.store.borrow();
        let iter = store.fetch(kb, from, to)?;
        let mut out = Vec::new();
        for r in iter {
            let (start, bytes) = r?;
            let (ts, agg) = self.unstamp(&bytes)?;
            out.push((start, ts, agg));
        }
        Ok(out)
    }

    /// Writes a window's new aggregate and, without a cache, forwards the change.
    fn write(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: &K,
        kb: &[u8],
        start: i64,
        old: Option<A>,
        new: (i64, A),
    ) -> Result<()> {
        let (ts, agg) = new;
        let mut bytes = Vec::new();
        push_timestamp_prefix(ts, &mut bytes);
        self.agg_serde
            .serialize_into(&agg, &mut bytes)
            .map_err(|e| Error::Processing {
                task: None,
                processor: self.name.clone(),
                reason: format!("cannot encode a value for its store: {e}"),
            })?;
        self.store.borrow_mut().put(kb, Some(&bytes), start)?;
        if !self.cached {
            let key = Windowed::new(key.clone(), self.window(start));
            self.down
                .forward(ctx, Rec::new(key, Change::new(Some(agg), old), ts))?;
        }
        Ok(())
    }

    /// Forwards what the cache wrote through (flushed or evicted).
    fn forward_flushed(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        let this = &*self;
        forward_flushed_with(
            &this.store,
            &this.down,
            ctx,
            |raw| {
                let Some(key_len) = raw.len().checked_sub(8) else {
                    return Err(corrupt(&this.name, "key"));
                };
                let key = decode(this.key_serde.as_ref(), &raw[..key_len], &this.name)?;
                Ok(Windowed::new(key, this.window(split_time(raw, key_len))))
            },
            |bytes| {
                let (ts, agg) = this.unstamp(bytes)?;
                Ok((agg, Some(ts)))
            },
        )
    }

    fn after_writes(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        if self.cached {
            self.forward_flushed(ctx)?;
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        if super::flush_cached(&self.store, self.cached)? {
            self.forward_flushed(ctx)?;
        }
        Ok(())
    }
}

/// Tumbling and hopping windows: the record updates every open window it falls in.
pub(crate) struct TimeWindowAggregate<K, V, A> {
    pub(crate) core: WindowedCore<K, A>,
    pub(crate) windows: TimeWindows,
    pub(crate) f: AggregateFn<K, V, A>,
}

impl<K: Clone + 'static, V: Clone + 'static, A: Clone + 'static> Processor<K, V>
    for TimeWindowAggregate<K, V, A>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let stream_time = self.core.observed.observe(ctx, rec.timestamp);
        if rec.timestamp.checked_add(self.windows.size_ms()).is_none() {
            return Err(record_error(
                ctx,
                &self.core.name,
                rec.timestamp,
                &format!(
                    "falls in windows of {} ms that end after the largest time (i64::MAX ms)",
                    self.windows.size_ms()
                ),
            ));
        }
        let kb = encode(self.core.key_serde.as_ref(), &rec.key, &self.core.name)?;
        let mut updated = false;
        for window in self.windows.windows_for(rec.timestamp) {
            if window.closed(self.core.grace_ms, stream_time) {
                continue;
            }
            updated = true;
            let old = self.core.get(&kb, window.start)?;
            let ts = old
                .as_ref()
                .map_or(rec.timestamp, |(t, _)| rec.timestamp.max(*t));
            let old = old.map(|(_, agg)| agg);
            let new = (self.f)(&rec.key, rec.value.clone(), old.clone());
            self.core
                .write(ctx, &rec.key, &kb, window.start, old, (ts, new))?;
        }
        if !updated {
            ctx.record_dropped(&self.core.name, "late");
        }
        self.core.after_writes(ctx)
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        self.core.flush(ctx)
    }
}

/// Sliding windows, built incrementally as in Kafka Streams (KIP-450). For each key the store
/// holds, for every record at `t`, its left window `[t - d, t]` and, when a later record lies
/// within `d`, its right window `[t + 1, t + 1 + d]` (inclusive bounds, `d` the time
/// difference; store starts are the left bounds). A new record at `t`:
///
/// 1. is added to every existing window that contains it;
/// 2. gets its left window if missing, seeded with the aggregate of the window that ends last
///    before `t` (which holds exactly the records in `[t - d, t - 1]`, when any);
/// 3. creates the right window of the previous record `p` (the latest record before `t`)
///    when `p >= t - d` and it is missing: it holds only the new record;
/// 4. gets its own right window if missing and a later record lies within `d`, seeded with
///    the aggregate of the window that starts last at or before `t` (before adding the record),
///    which holds exactly the records in `(t, t + 1 + d]`.
pub(crate) struct SlidingWindowAggregate<K, V, A> {
    pub(crate) core: WindowedCore<K, A>,
    pub(crate) windows: SlidingWindows,
    pub(crate) f: AggregateFn<K, V, A>,
}

impl<K: Clone + 'static, V: Clone + 'static, A: Clone + 'static> Processor<K, V>
    for SlidingWindowAggregate<K, V, A>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let stream_time = self.core.observed.observe(ctx, rec.timestamp);
        let (t, d) = (rec.timestamp, self.windows.time_difference_ms());
        // Its windows span `[t - d, t + d + 2)`.
        if t.checked_sub(d).is_none() || t.checked_add(d).and_then(|e| e.checked_add(2)).is_none() {
            return Err(record_error(
                ctx,
                &self.core.name,
                t,
                &format!("is within {d} ms (the time difference) of the range of i64 ms, where its windows cannot be represented"),
            ));
        }
        let grace = self.core.grace_ms;
        let closed = |start: i64| self.core.window(start).closed(grace, stream_time);
        // The latest window a record at `t` can be in starts at `t`; when even that one is
        // closed, the record is late (Kafka: `t + 1 + d + grace <= stream time`).
        if closed(t) {
            ctx.record_dropped(&self.core.name, "late");
            return Ok(());
        }
        let kb = encode(self.core.key_serde.as_ref(), &rec.key, &self.core.name)?;
        let existing = self.core.fetch(
            &kb,
            t.saturating_sub(d.saturating_mul(2)),
            t.saturating_add(1),
        )?;
        let mut writes: Vec<(i64, Option<A>, (i64, A))> = Vec::new();
        let mut left_exists = false;
        let mut right_exists = false;
        let mut ends_before: Option<(i64, A)> = None;
        let mut holds_after: Option<(i64, A)> = None;
        let mut previous: Option<i64> = None;
        let mut repeat = false;
        let mut starts = Vec::with_capacity(existing.len());
        for (start, max_ts, agg) in existing {
            starts.push(start);
            if max_ts < t {
                previous = previous.max(Some(max_ts));
            }
            let end = start.saturating_add(d); // inclusive
            if start == t.saturating_add(1) {
                right_exists = true;
                continue;
            }
            if end < t {
                ends_before = Some((max_ts, agg));
                continue;
            }
            if end == t {
                left_exists = true;
                // A record at `t` came before: the windows it needs exist or were closed.
                repeat |= max_ts >= t;
            } else {
                holds_after = Some((max_ts, agg.clone()));
            }
            if !closed(start) {
                let new = (self.f)(&rec.key, rec.value.clone(), Some(agg.clone()));
                writes.push((start, Some(agg), (max_ts.max(t), new)));
            }
        }
        // Updates go out in Kafka Streams' order: the existing windows latest start first (it
        // walks the store backwards), then the previous record's new right window, the
        // record's left window and its right window.
        writes.reverse();
        if !repeat {
            if let Some(p) = previous.filter(|p| *p >= t - d) {
                let start = p + 1;
                if !starts.contains(&start) && !closed(start) {
                    let new = (self.f)(&rec.key, rec.value.clone(), None);
                    writes.push((start, None, (t, new)));
                }
            }
            if !left_exists && !closed(t - d) {
                let seed = ends_before
                    .filter(|(max_ts, _)| *max_ts >= t - d)
                    .map(|(_, agg)| agg);
                let new = (self.f)(&rec.key, rec.value.clone(), seed);
                writes.push((t - d, None, (t, new)));
            }
            if !right_exists {
                if let Some((max_ts, agg)) = holds_after.filter(|(max_ts, _)| *max_ts > t) {
                    writes.push((t + 1, None, (max_ts, agg)));
                }
            }
        }
        for (start, old, new) in writes {
            self.core.write(ctx, &rec.key, &kb, start, old, new)?;
        }
        self.core.after_writes(ctx)
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<()> {
        self.core.flush(ctx)
    }
}
