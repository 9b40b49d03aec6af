//! Reading a partition back in tests, the same way for every `Log`.
#![allow(dead_code, clippy::unwrap_used)]

use streams_core::{IsolationLevel, Log, StoredRecord, TopicPartition};

/// (offset, value as UTF-8) of each record.
pub(crate) fn values(fetch: &[StoredRecord]) -> Vec<(u64, String)> {
    fetch
        .iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8(r.record.value.clone().unwrap_or_default()).unwrap(),
            )
        })
        .collect()
}

/// Reads all visible records from `from` following `next_offset`, `chunk` at a time.
pub(crate) fn read_all(
    log: &dyn Log,
    tp: &TopicPartition,
    from: u64,
    chunk: usize,
    iso: IsolationLevel,
) -> Vec<(u64, String)> {
    let end = log.end_offset(tp, iso).unwrap();
    let mut at = from;
    let mut out = Vec::new();
    while at < end {
        let fetch = log.read(tp, at, chunk, iso).unwrap();
        assert!(fetch.next_offset > at, "no progress at {at}");
        assert!(fetch.records.len() <= chunk);
        out.extend(values(&fetch.records));
        at = fetch.next_offset;
    }
    assert_eq!(at, end.max(from));
    // Reading at the end returns nothing and stays there.
    let fetch = log.read(tp, at, chunk, iso).unwrap();
    assert!(fetch.records.is_empty());
    assert_eq!(fetch.next_offset, at);
    out
}
