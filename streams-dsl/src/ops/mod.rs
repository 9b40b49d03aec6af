//! The processors behind DSL operators, one family per file, named after the verb.

pub(crate) mod aggregate;
pub(crate) mod filter;
pub(crate) mod join;
pub(crate) mod map;
pub(crate) mod passthrough;
pub(crate) mod peek;
pub(crate) mod table;

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
        task: String::new(),
        processor: node.to_string(),
        reason: format!("cannot encode a value for its store: {e}"),
    })
}

/// Decodes a value read from a store, naming the node on failure.
pub(crate) fn decode<T: 'static>(
    serde: &dyn Serde<T>,
    bytes: &[u8],
    node: &str,
) -> streams_core::Result<T> {
    serde.deserialize(bytes).map_err(|e| Error::Processing {
        task: String::new(),
        processor: node.to_string(),
        reason: format!("cannot decode a value from its store: {e}"),
    })
}

/// A store failure inside a processor.
pub(crate) fn store_error(node: &str, e: state_store::StoreError) -> Error {
    Error::Processing {
        task: String::new(),
        processor: node.to_string(),
        reason: format!("state store: {e}"),
    }
}

/// Forwards the changes a cached store flushed or evicted, decoded, each with the timestamp
/// of the write that made it. Changes from absent to absent are skipped.
pub(crate) fn forward_flushed<K: Clone + 'static, V: Clone + 'static>(
    queue: Option<&FlushQueue>,
    key_serde: &dyn Serde<K>,
    value_serde: &dyn Serde<V>,
    node: &str,
    down: &Downstream<K, Change<V>>,
    ctx: &mut ProcessorContext<'_>,
) -> streams_core::Result<()> {
    let Some(queue) = queue else {
        return Ok(());
    };
    let changes: Vec<_> = queue.lock().drain(..).collect();
    for c in changes {
        let key = decode(key_serde, &c.key, node)?;
        let new = c.new.map(|b| decode(value_serde, &b, node)).transpose()?;
        let old = c.old.map(|b| decode(value_serde, &b, node)).transpose()?;
        if new.is_none() && old.is_none() {
            continue;
        }
        down.forward(ctx, Rec::new(key, Change::new(new, old), c.timestamp))?;
    }
    Ok(())
}
