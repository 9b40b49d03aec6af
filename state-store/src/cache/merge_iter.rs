//! A range scan over a cached key-value store: the namespace's entries merged over the store's,
//! in key order (Kafka Streams' MergedSortedCacheKeyValueBytesStoreIterator).
//!
//! Invariants: the cache wins on equal keys and a cached tombstone hides the stored entry; the
//! lock is taken once per chunk, not per entry, and the scan resumes after the last key that was
//! complete on both sides, so writes between chunks are seen where the scan has not been yet.

use std::collections::VecDeque;
use std::ops::Bound;

use super::namespace::Backing;
use super::record_cache::RecordCache;
use crate::error::StoreError;
use crate::store::{empty_range, owned_bound};

/// Entries fetched per lock acquisition by a cached range scan.
const RANGE_CHUNK: usize = 256;

/// A range scan over cache + store that takes the lock once per chunk, merging the two sorted
/// streams (the cache wins on equal keys; cached tombstones hide store entries).
pub(super) struct CachedRange {
    cache: RecordCache,
    ns: u64,
    from: Bound<Vec<u8>>,
    to: Bound<Vec<u8>>,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl CachedRange {
    /// Scans namespace `ns` of `cache` between `from` and `to`.
    pub(super) fn new(cache: RecordCache, ns: u64, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Self {
        CachedRange {
            cache,
            ns,
            from: owned_bound(from),
            to: owned_bound(to),
            buf: VecDeque::new(),
            done: empty_range(from, to),
        }
    }

    fn fetch_chunk(&mut self) -> Result<(), StoreError> {
        let mut g = self.cache.inner.lock();
        let n = g.ns(self.ns)?;
        let bounds = (as_ref_bound(&self.from), as_ref_bound(&self.to));
        let cached: Vec<(Vec<u8>, Option<Vec<u8>>)> = n
            .entries
            .range(bounds)
            .take(RANGE_CHUNK)
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect();
        let Backing::Kv(store) = &n.backing else {
            return Err(StoreError::corrupt(
                &n.name,
                "range scan on a window namespace",
            ));
        };
        let mut stored = Vec::new();
        for r in store.range(bounds.0, bounds.1)?.take(RANGE_CHUNK) {
            stored.push(r?);
        }
        drop(g);
        // Keys up to `limit` are complete on both sides; beyond it one side was cut short.
        let limit = [
            (cached.len() == RANGE_CHUNK)
                .then(|| cached.last().map(|(k, _)| k.clone()))
                .flatten(),
            (stored.len() == RANGE_CHUNK)
                .then(|| stored.last().map(|(k, _)| k.clone()))
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .min();
        let within = |k: &Vec<u8>| limit.as_ref().is_none_or(|l| k <= l);
        let mut c = cached.into_iter().filter(|(k, _)| within(k)).peekable();
        let mut s = stored.into_iter().filter(|(k, _)| within(k)).peekable();
        loop {
            let take_cache = match (c.peek(), s.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((ck, _)), Some((sk, _))) => match ck.cmp(sk) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Greater => false,
                    std::cmp::Ordering::Equal => {
                        // The cached entry shadows the stored one.
                        s.next();
                        true
                    }
                },
            };
            if take_cache {
                if let Some((k, Some(v))) = c.next() {
                    self.buf.push_back((k, v));
                }
            } else if let Some(kv) = s.next() {
                self.buf.push_back(kv);
            }
        }
        match limit {
            Some(l) => self.from = Bound::Excluded(l),
            None => self.done = true,
        }
        Ok(())
    }
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Iterator for CachedRange {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(kv) = self.buf.pop_front() {
                return Some(Ok(kv));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fetch_chunk() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}
