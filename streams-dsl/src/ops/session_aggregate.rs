//! Session-windowed `count`, `reduce` and `aggregate` over a session store.
//!
//! A record at `t` finds the key's sessions within the inactivity gap of `t` (ending at or
//! after `t - gap`, starting at or before `t + gap`), merges them and itself into one session,
//! and replaces them with it. Sessions that disappear are forwarded as deletions (`new: None`,
//! `old`: their aggregate). As in Kafka Streams, the record is late, and dropped, when the merged
//! session's last record plus gap plus grace is before stream time (`[start, end)` with `end`
//! one past the last record: closed once `end + gap + grace <= stream time`; `grace_ms` here
//! holds gap + grace). Forwarded timestamps are the session's last record time. Session
//! stores have no cache, so every update is forwarded.

use std::sync::Arc;

use streams_core::{
    Change, Downstream, Processor, ProcessorContext, Rec, Result, Serde, SessionStoreRef,
};

use super::aggregate::AggregateFn;
use super::{decode, encode, record_error, ObservedTime};
use crate::windowed::Windowed;
use crate::windows::Window;

/// `(key, aggregate, aggregate) -> merged aggregate`: combines two sessions a record bridges.
pub(crate) type MergerFn<K, A> = Arc<dyn Fn(&K, A, A) -> A + Send + Sync>;

pub(crate) struct SessionAggregate<K, V, A> {
    pub(crate) name: String,
    pub(crate) store: SessionStoreRef,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) agg_serde: Arc<dyn Serde<A>>,
    pub(crate) gap_ms: i64,
    pub(crate) grace_ms: i64,
    pub(crate) f: AggregateFn<K, V, A>,
    pub(crate) merger: MergerFn<K, A>,
    pub(crate) down: Downstream<Windowed<K>, Change<A>>,
    /// What closes sessions: the largest timestamp that reached this aggregation.
    pub(crate) observed: ObservedTime,
}

impl<K: Clone + 'static, V: 'static, A: Clone + 'static> SessionAggregate<K, V, A> {
    /// Sessions of `kb` a record at `t` falls within the gap of: `(start, last, aggregate)`.
    fn overlapping(&self, kb: &[u8], t: i64) -> Result<Vec<(i64, i64, A)>> {
        let store = self.store.borrow();
        let iter = store.find_sessions(
            kb,
            t.saturating_sub(self.gap_ms),
            t.saturating_add(self.gap_ms),
        )?;
        let mut out = Vec::new();
        for r in iter {
            let (s, bytes) = r?;
            let agg = decode(self.agg_serde.as_ref(), &bytes, &self.name)?;
            out.push((s.start, s.end, agg));
        }
        Ok(out)
    }
}

/// The window of a session whose records span `[start, last]`.
fn session_window(start: i64, last: i64) -> Window {
    Window::new(start, last.saturating_add(1))
}

impl<K: Clone + 'static, V: 'static, A: Clone + 'static> Processor<K, V>
    for SessionAggregate<K, V, A>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        let t = rec.timestamp;
        if t == i64::MAX {
            // Its session would end after it: `[t, t + 1)`.
            return Err(record_error(
                ctx,
                &self.name,
                t,
                "is the largest time (i64::MAX ms); a session cannot end after it",
            ));
        }
        let stream_time = self.observed.observe(ctx, t);
        let kb = encode(self.key_serde.as_ref(), &rec.key, &self.name)?;
        let found = self.overlapping(&kb, t)?;
        let start = found.iter().map(|s| s.0).fold(t, i64::min);
        let last = found.iter().map(|s| s.1).fold(t, i64::max);
        if session_window(start, last).closed(self.grace_ms, stream_time) {
            ctx.record_dropped(&self.name, "late");
            return Ok(());
        }
        let mut merged: Option<A> = None;
        let mut same_old = None;
        for (s, e, agg) in found {
            merged = Some(match merged {
                None => agg.clone(),
                Some(m) => (self.merger)(&rec.key, m, agg.clone()),
            });
            // As Kafka Streams: unless the record only repeats a session of one instant, every
            // session it touches is deleted (and the deletion forwarded), the one it falls
            // inside included, and the merged session written anew.
            if (s, e) == (start, last) && (s, e) == (t, t) {
                same_old = Some(agg);
                continue;
            }
            self.store.borrow_mut().remove(&kb, s, e)?;
            let key = Windowed::new(rec.key.clone(), session_window(s, e));
            self.down
                .forward(ctx, Rec::new(key, Change::new(None, Some(agg)), e))?;
        }
        let new = (self.f)(&rec.key, rec.value, merged);
        let nb = encode(self.agg_serde.as_ref(), &new, &self.name)?;
        self.store.borrow_mut().put(&kb, start, last, &nb)?;
        let key = Windowed::new(rec.key, session_window(start, last));
        self.down
            .forward(ctx, Rec::new(key, Change::new(Some(new), same_old), last))
    }
}
