//! Reading and writing the timestamped key-value stores behind tables: each value is kept as
//! `[timestamp][value]` (state-store's timestamped layout, as Kafka Streams'
//! `TimestampedKeyValueStore`), the timestamp being the one the update that wrote it was
//! forwarded with.
//!
//! Invariant: every DSL operator that reads or writes a table's key-value store goes through
//! these functions, so a store never holds a value without its timestamp. A store (or
//! changelog) written before tables kept timestamps must be reset: a value of it shorter than
//! the timestamp is reported as corrupt, naming the store, and one whose remainder the serde
//! rejects (an 8-byte count) fails to decode, but a longer value cannot be told apart.

use state_store::{decode_timestamped, push_timestamp_prefix};
use streams_core::{Error, KvStoreRef, Result, Serde};

use super::decode;

/// Encodes `value` behind `ts` for a timestamped store, naming the node on failure.
pub(crate) fn encode_stamped<T: 'static>(
    serde: &dyn Serde<T>,
    value: &T,
    ts: i64,
    node: &str,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    push_timestamp_prefix(ts, &mut out);
    serde
        .serialize_into(value, &mut out)
        .map_err(|e| Error::Processing {
            task: None,
            processor: node.to_string(),
            reason: format!("cannot encode a value for its store: {e}"),
        })?;
    Ok(out)
}

/// Decodes a value of the timestamped store `store` into `(value, timestamp)`.
pub(crate) fn decode_stamped<T: 'static>(
    serde: &dyn Serde<T>,
    bytes: &[u8],
    store: &str,
    node: &str,
) -> Result<(T, i64)> {
    let (ts, value) = decode_timestamped(store, bytes)?;
    Ok((decode(serde, value, node)?, ts))
}

/// The value and timestamp of the encoded key `kb` in a timestamped store, if any.
pub(crate) fn get_stamped<T: 'static>(
    store: &KvStoreRef,
    kb: &[u8],
    serde: &dyn Serde<T>,
    node: &str,
) -> Result<Option<(T, i64)>> {
    let store = store.borrow();
    let Some(bytes) = store.get(kb)? else {
        return Ok(None);
    };
    decode_stamped(serde, &bytes, store.name(), node).map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use streams_core::{I64Serde, StringSerde};

    #[test]
    fn round_trip_keeps_value_and_timestamp() {
        let bytes = encode_stamped(&StringSerde, &"v".to_string(), -3, "node").unwrap();
        assert_eq!(
            decode_stamped(&StringSerde, &bytes, "store", "node").unwrap(),
            ("v".to_string(), -3)
        );
    }

    /// A count written by a version without timestamps is 8 bytes of big-endian i64, which
    /// would read as a timestamp and an empty value: the empty value fails to decode rather
    /// than passing as a count. Shorter values fail on the timestamp, naming the store.
    #[test]
    fn a_value_without_timestamp_is_not_misread() {
        let old = I64Serde.serialize(&5).unwrap();
        let err = decode_stamped(&I64Serde, &old, "counts", "node").unwrap_err();
        assert!(err.to_string().contains("node"), "{err}");
        // The store is named by the store error, the cause.
        let err = decode_stamped(&StringSerde, b"abc", "counts", "node").unwrap_err();
        assert!(
            err.report().to_string().contains("counts"),
            "{}",
            err.report()
        );
    }
}
