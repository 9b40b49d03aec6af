//! The processors behind DSL operators, one family per file, named after the verb.

pub(crate) mod aggregate;
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

use std::sync::Arc;

use streams_core::{Change, Downstream, Error, FlushQueue, ProcessorContext, Rec, Serde};

/// A record predicate.
pub(crate) type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;
/// A function that looks at a record.
pub(crate) type Inspector<K, V> = Arc<dyn Fn(&K, &V) + Send + Sync>;
/// A function from key and value to a new value.
pub(crate) type ValueMapper<K, V, V2> = Arc<dyn Fn(&K, &V) -> V2 + Send + Sync>;
/// A predicate choosing a branch of [`KStream::split`](crate::KStream::split).
pub type BranchPredicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Encodes a value for a store, naming the node on failure.
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

/// The flush queue of `store` when it is cached: where an operator over it finds the changes
/// to forward.
pub(crate) fn cache_queue(
    inst: &streams_core::Instantiation<'_>,
    store: &str,
    cached: bool,
) -> streams_core::Result<Option<FlushQueue>> {
    cached.then(|| inst.flush_queue(store)).transpose()
}

/// On commit, for an operator over a cached store: writes its cache through, which fills
/// the queue (RocksDB is made durable later, at a checkpoint).
/// Returns whether there is a queue to drain.
pub(crate) fn flush_cached<S: state_store::StateStore + ?Sized>(
    store: &std::cell::RefCell<Box<S>>,
    queue: Option<&FlushQueue>,
) -> streams_core::Result<bool> {
    if queue.is_none() {
        return Ok(false);
    }
    store.borrow_mut().flush_cache()?;
    Ok(true)
}

/// Forwards the changes a cached timestamped key-value store (a table's, `store`) flushed or
/// evicted, decoded, each with the timestamp its new value carries (a deletion: the time of
/// the write that made it). Changes from absent to absent are skipped.
pub(crate) fn forward_flushed<K: Clone + 'static, V: Clone + 'static>(
    queue: Option<&FlushQueue>,
    store: &str,
    key_serde: &dyn Serde<K>,
    value_serde: &dyn Serde<V>,
    node: &str,
    down: &Downstream<K, Change<V>>,
    ctx: &mut ProcessorContext<'_>,
) -> streams_core::Result<()> {
    forward_flushed_with(
        queue,
        down,
        ctx,
        |b| decode(key_serde, b, node),
        |b| {
            let (v, ts) = stamped::decode_stamped(value_serde, b, store, node)?;
            Ok((v, Some(ts)))
        },
    )
}

/// [`forward_flushed`] for stores whose raw keys and values are not plain serde output
/// (window stores: `[key][start]` keys and timestamped values). `decode_value` may return the
/// timestamp the value carries, which then replaces the write's.
pub(crate) fn forward_flushed_with<K: Clone + 'static, V: Clone + 'static>(
    queue: Option<&FlushQueue>,
    down: &Downstream<K, Change<V>>,
    ctx: &mut ProcessorContext<'_>,
    decode_key: impl Fn(&[u8]) -> streams_core::Result<K>,
    decode_value: impl Fn(&[u8]) -> streams_core::Result<(V, Option<i64>)>,
) -> streams_core::Result<()> {
    let Some(queue) = queue else {
        return Ok(());
    };
    let changes: Vec<_> = queue.lock().drain(..).collect();
    for c in changes {
        let key = decode_key(&c.key)?;
        let new = c.new.map(|b| decode_value(&b)).transpose()?;
        let old = c.old.map(|b| decode_value(&b)).transpose()?;
        let timestamp = new.as_ref().and_then(|(_, ts)| *ts).unwrap_or(c.timestamp);
        if new.is_none() && old.is_none() {
            continue;
        }
        let change = Change::new(new.map(|(v, _)| v), old.map(|(v, _)| v));
        down.forward(ctx, Rec::new(key, change, timestamp))?;
    }
    Ok(())
}
