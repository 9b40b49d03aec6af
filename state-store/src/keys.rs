//! Byte layouts of store keys.
//!
//! Invariant: byte order of an encoded key equals the order we want scans in. Timestamps are
//! i64 milliseconds written big-endian with the sign bit flipped, so negative times sort before
//! positive ones. Window keys are `[key][start]` (plus `[seq u32 BE]` when duplicates are kept),
//! session keys are `[key][end][start]` as in Kafka Streams' session key schema. The suffix has a
//! fixed length, so the user key is recovered by length; a scan over one key's time range can
//! also meet longer keys that share its prefix, and readers filter those out by decoding.

/// Length of an encoded timestamp.
pub(crate) const TS_LEN: usize = 8;
/// Length of a window-key sequence number.
pub(crate) const SEQ_LEN: usize = 4;

/// Encodes a timestamp (ms) so that byte order equals numeric order.
pub fn encode_timestamp(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`encode_timestamp`].
pub fn decode_timestamp(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

fn ts_at(raw: &[u8], at: usize) -> i64 {
    let mut b = [0u8; TS_LEN];
    b.copy_from_slice(&raw[at..at + TS_LEN]);
    decode_timestamp(b)
}

/// `[key][start]` or `[key][start][seq]`.
pub(crate) fn window_key(key: &[u8], start: i64, seq: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + TS_LEN + SEQ_LEN);
    out.extend_from_slice(key);
    out.extend_from_slice(&encode_timestamp(start));
    if let Some(seq) = seq {
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out
}

/// Splits a window key into (key, start); `None` when it is too short to be one.
pub(crate) fn split_window_key(raw: &[u8], with_seq: bool) -> Option<(&[u8], i64)> {
    let suffix = TS_LEN + if with_seq { SEQ_LEN } else { 0 };
    let key_len = raw.len().checked_sub(suffix)?;
    Some((&raw[..key_len], ts_at(raw, key_len)))
}

/// `[key][end][start]`.
pub(crate) fn session_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 * TS_LEN);
    out.extend_from_slice(key);
    out.extend_from_slice(&encode_timestamp(end));
    out.extend_from_slice(&encode_timestamp(start));
    out
}

/// Splits a session key into (key, start, end).
pub(crate) fn split_session_key(raw: &[u8]) -> Option<(&[u8], i64, i64)> {
    let key_len = raw.len().checked_sub(2 * TS_LEN)?;
    Some((
        &raw[..key_len],
        ts_at(raw, key_len + TS_LEN),
        ts_at(raw, key_len),
    ))
}

/// The smallest byte string greater than every string starting with `prefix`; `None` when no
/// such string exists (empty prefix or all `0xFF`), i.e. the scan is unbounded above.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < u8::MAX {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn timestamp_order_is_byte_order(a: i64, b: i64) {
            prop_assert_eq!(a.cmp(&b), encode_timestamp(a).cmp(&encode_timestamp(b)));
            prop_assert_eq!(decode_timestamp(encode_timestamp(a)), a);
        }

        #[test]
        fn window_key_round_trip(key: Vec<u8>, start: i64, seq: u32) {
            let raw = window_key(&key, start, Some(seq));
            prop_assert_eq!(split_window_key(&raw, true), Some((&key[..], start)));
            let raw = window_key(&key, start, None);
            prop_assert_eq!(split_window_key(&raw, false), Some((&key[..], start)));
        }

        #[test]
        fn session_key_round_trip(key: Vec<u8>, start: i64, end: i64) {
            let raw = session_key(&key, start, end);
            prop_assert_eq!(split_session_key(&raw), Some((&key[..], start, end)));
        }

        #[test]
        fn successor_bounds_prefix(prefix: Vec<u8>, tail: Vec<u8>) {
            let mut k = prefix.clone();
            k.extend_from_slice(&tail);
            if let Some(s) = prefix_successor(&prefix) {
                prop_assert!(k < s);
                prop_assert!(prefix < s);
            }
        }
    }

    #[test]
    fn successor_edge_cases() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_successor(&[1, 0xFF]), Some(vec![2]));
    }
}
