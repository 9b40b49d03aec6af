//! The processors behind DSL operators, one family per file, named after the verb.

pub(crate) mod aggregate;
#[cfg(test)]
mod cached_forwarding_tests;
pub(crate) mod filter;
pub(crate) mod join;
pub(crate) mod map;
pub(crate) mod passthrough;
pub(crate) mod peek;
pub(crate) mod session_aggregate;
pub(crate) mod stamped;
pub(crate) mod stream_join;
pub(crate) mod suppress;
pub(crate) mod table;
pub(crate) mod window_aggregate;

use std::cell::RefCell;
use std::sync::Arc;

use state_store::StateStore;
use streams_core::{Change, Downstream, Error, ProcessorContext, Rec, Serde};

/// A record predicate.
pub(crate) type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;
/// A function that looks at a record.
pub(crate) type Inspector<K, V> = Arc<dyn Fn(&K, &V) + Send + Sync>;
/// A function from key and value to a new value.
pub(crate) type ValueMapper<K, V, V2> = Arc<dyn Fn(&K, &V) -> V2 + Send + Sync>;
/// A predicate choosing a branch of [`KStream::split`](crate::KStream::split).
pub type BranchPredicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Encodes a value for a store, naming the node on failure.
/// The largest timestamp that reached one operator: Kafka Streams' `observedStreamTime` of
/// its window and session aggregations and of `suppress`, which close windows by it. Records
/// the task read that never reached the operator (dropped at the source, filtered out, on
/// another branch) do not move it. It starts from the task's resumed stream time, so a window
/// closed before a restart or a move stays closed after it.
#[derive(Debug, Default)]
pub(crate) struct ObservedTime(Option<i64>);

impl ObservedTime {
    /// Takes in a record at `timestamp`; the time now.
    pub(crate) fn observe(&mut self, ctx: &ProcessorContext<'_>, timestamp: i64) -> i64 {
        let now = self.now(ctx).max(timestamp);
        self.0 = Some(now);
        now
    }

    /// The largest timestamp seen so far.
    pub(crate) fn now(&self, ctx: &ProcessorContext<'_>) -> i64 {
        self.0.unwrap_or_else(|| ctx.resumed_stream_time())
    }
}

pub(crate) fn encode<T: 'static>(
    serde: &dyn Serde<T>,
    value: &T,
    node: &str,
) -> streams_core::Result<Vec<u8>> {
    serde.serialize(value).map_err(|e| Error::Processing {
        task: None,
        processor: node.to_string(),
        reason: format!("cannot encode a value for its store: {e}"),
    })
}

/// An error about the record being processed: names the processor and the record (source
/// topic, partition and offset when it came from a topic, and its timestamp).
pub(crate) fn record_error(
    ctx: &ProcessorContext<'_>,
    node: &str,
    timestamp: i64,
    what: &str,
) -> Error {
    let meta = ctx.record_meta();
    let at = match (&meta.topic, meta.offset) {
        (Some(topic), Some(offset)) => format!(" at {topic}-{}@{offset}", meta.partition),
        _ => String::new(),
    };
    Error::Processing {
        task: None,
        processor: node.to_string(),
        reason: format!("the record{at} with timestamp {timestamp} ms {what}"),
    }
}

/// Decodes a value read from a store, naming the node on failure.
pub(crate) fn decode<T: 'static>(
    serde: &dyn Serde<T>,
    bytes: &[u8],
    node: &str,
) -> streams_core::Result<T> {
    serde.deserialize(bytes).map_err(|e| Error::Processing {
        task: None,
        processor: node.to_string(),
        reason: format!("cannot decode a value from its store: {e}"),
    })
}

/// On commit, for an operator over a cached store (`cached`): writes its cache through, which
/// leaves the changes in the store for the operator to take (RocksDB is made durable later, at
/// a checkpoint). Returns whether there are changes to forward.
pub(crate) fn flush_cached<S: StateStore + ?Sized>(
    store: &RefCell<Box<S>>,
    cached: bool,
) -> streams_core::Result<bool> {
    if !cached {
        return Ok(false);
    }
    store.borrow_mut().flush_cache()?;
    Ok(true)
}

/// Forwards the changes a cached timestamped key-value store (a table's, `store_name`) wrote
/// through since they were last taken, decoded, each with the timestamp its new value carries
/// (a deletion: the time of the write that made it). Changes from absent to absent are
/// skipped.
pub(crate) fn forward_flushed<K: Clone + 'static, V: Clone + 'static, S: StateStore + ?Sized>(
    store: &RefCell<Box<S>>,
    store_name: &str,
    key_serde: &dyn Serde<K>,
    value_serde: &dyn Serde<V>,
    node: &str,
    down: &Downstream<K, Change<V>>,
    ctx: &mut ProcessorContext<'_>,
) -> streams_core::Result<()> {
    forward_flushed_with(
        store,
        down,
        ctx,
        |b| decode(key_serde, b, node),
        |b| {
            let (v, ts) = stamped::decode_stamped(value_serde, b, store_name, node)?;
            Ok((v, Some(ts)))
        },
    )
}

/// [`forward_flushed`] for stores whose raw keys and values are not plain serde output
/// (window stores: `[key][start]` keys and timestamped values). `decode_value` may return the
/// timestamp the value carries, which then replaces the write's.
///
/// The changes go from the store's cache to `down` in this one call: the store hands them
/// out once, oldest first ([`StateStore::take_flushed`]), so none is forwarded twice and a
/// key's changes keep their order.
pub(crate) fn forward_flushed_with<
    K: Clone + 'static,
    V: Clone + 'static,
    S: StateStore + ?Sized,
>(
    store: &RefCell<Box<S>>,
    down: &Downstream<K, Change<V>>,
    ctx: &mut ProcessorContext<'_>,
    decode_key: impl Fn(&[u8]) -> streams_core::Result<K>,
    decode_value: impl Fn(&[u8]) -> streams_core::Result<(V, Option<i64>)>,
) -> streams_core::Result<()> {
    let changes = store.borrow_mut().take_flushed();
    for c in changes {
        let key = decode_key(&c.key)?;
        let new = c.new.as_deref().map(&decode_value).transpose()?;
        let old = c.old.as_deref().map(&decode_value).transpose()?;
        let timestamp = new.as_ref().and_then(|(_, ts)| *ts).unwrap_or(c.timestamp);
        if new.is_none() && old.is_none() {
            continue;
        }
        let change = Change::new(new.map(|(v, _)| v), old.map(|(v, _)| v));
        down.forward(ctx, Rec::new(key, change, timestamp))?;
    }
    Ok(())
}
