//! The timestamped value layout: `[timestamp][value]`, as Kafka Streams' timestamped stores
//! keep it.
//!
//! A windowed aggregation stores each window's aggregate behind the largest record timestamp of
//! the window, so an update is forwarded with that time and sliding windows know where their
//! records lie. The timestamp takes [`TIMESTAMP_PREFIX_LEN`] bytes in the encoding of
//! [`encode_timestamp`] (big-endian with the sign bit flipped, the same as in store keys); the
//! value bytes follow unchanged. Invariant: every writer and reader of such values goes through
//! this module, so the layout is defined in one place.

use crate::error::StoreError;
use crate::keys::{decode_timestamp, encode_timestamp, TS_LEN};

/// Length of the timestamp in front of a timestamped value.
pub const TIMESTAMP_PREFIX_LEN: usize = TS_LEN;

/// `value` behind its timestamp `ts` (ms).
///
/// ```
/// use state_store::{decode_timestamped, encode_timestamped, TIMESTAMP_PREFIX_LEN};
///
/// let bytes = encode_timestamped(-5, b"agg");
/// assert_eq!(bytes.len(), TIMESTAMP_PREFIX_LEN + 3);
/// assert_eq!(decode_timestamped("counts", &bytes)?, (-5, &b"agg"[..]));
/// # Ok::<(), state_store::StoreError>(())
/// ```
pub fn encode_timestamped(ts: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TIMESTAMP_PREFIX_LEN + value.len());
    push_timestamp_prefix(ts, &mut out);
    out.extend_from_slice(value);
    out
}

/// Appends the timestamp prefix of `ts` to `out`; the caller appends the value after it (a
/// serializer can then write straight into `out`, without a second buffer).
///
/// ```
/// use state_store::{encode_timestamped, push_timestamp_prefix};
///
/// let mut out = Vec::new();
/// push_timestamp_prefix(42, &mut out);
/// out.extend_from_slice(b"agg");
/// assert_eq!(out, encode_timestamped(42, b"agg"));
/// ```
pub fn push_timestamp_prefix(ts: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&encode_timestamp(ts));
}

/// Splits a timestamped value of store `store` into its timestamp (ms) and value bytes.
///
/// Fails with [`StoreError::Corrupt`], naming the store and the length found, when `bytes` is
/// shorter than the timestamp.
///
/// ```
/// use state_store::{decode_timestamped, ErrorClass};
///
/// let err = decode_timestamped("counts", &[0; 3]).unwrap_err();
/// assert_eq!(err.store(), "counts");
/// assert_eq!(err.class(), ErrorClass::Internal);
/// ```
pub fn decode_timestamped<'a>(store: &str, bytes: &'a [u8]) -> Result<(i64, &'a [u8]), StoreError> {
    match bytes.split_first_chunk::<TIMESTAMP_PREFIX_LEN>() {
        Some((ts, value)) => Ok((decode_timestamp(*ts), value)),
        None => Err(StoreError::corrupt(
            store,
            format!(
                "a timestamped value of {} bytes, shorter than its {TIMESTAMP_PREFIX_LEN}-byte \
                 timestamp",
                bytes.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(ts: i64, value: Vec<u8>) {
            let bytes = encode_timestamped(ts, &value);
            prop_assert_eq!(decode_timestamped("s", &bytes).unwrap(), (ts, &value[..]));
        }

        /// The layout the windowed aggregations have written so far, byte for byte.
        #[test]
        fn layout_is_encoded_timestamp_then_value(ts: i64, value: Vec<u8>) {
            let mut expected = encode_timestamp(ts).to_vec();
            expected.extend_from_slice(&value);
            prop_assert_eq!(encode_timestamped(ts, &value), expected);
        }
    }

    #[test]
    fn sign_bit_is_flipped() {
        assert_eq!(encode_timestamped(0, b""), [0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            encode_timestamped(-1, b"v")[..8],
            [0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(&encode_timestamped(1, b"v")[8..], b"v");
    }

    #[test]
    fn timestamp_alone_is_an_empty_value() {
        let bytes = encode_timestamped(7, b"");
        assert_eq!(bytes.len(), TIMESTAMP_PREFIX_LEN);
        assert_eq!(decode_timestamped("s", &bytes).unwrap(), (7, &b""[..]));
    }

    #[test]
    fn shorter_than_the_timestamp_is_corrupt() {
        for len in 0..TIMESTAMP_PREFIX_LEN {
            let err = decode_timestamped("win", &vec![0; len]).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
            assert_eq!(err.store(), "win");
            let msg = err.to_string();
            assert!(msg.contains(&format!("{len} bytes")), "{msg}");
            assert!(msg.contains("8-byte timestamp"), "{msg}");
        }
    }
}
