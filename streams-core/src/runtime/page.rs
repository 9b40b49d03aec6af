//! Paged reads of key-value stores: a page is at most so many entries and so many bytes,
//! and a cursor (the encoded key of the page's last entry) says where the next one starts.
//!
//! A read over several parts (the tasks of a store, or the instances of an application)
//! asks each part for its own page after the cursor and merges them. A part's page holds
//! every entry of that part up to its last key, and says whether more follow; the merged
//! page therefore ends at the smallest last key among the parts that have more, so no entry
//! of a part cut short is ever skipped. Each part reads at most one page, so a read holds a
//! stream thread for one page of a task, never for a whole partition.

use std::ops::Bound;

use crate::error::{Error, Result};

/// The bounds of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    /// At most this many entries (a page holds at least one, whatever this says).
    pub entries: usize,
    /// At most about this many bytes of stored keys and values: a page ends after the entry
    /// that reaches it, so a page holds at least one entry whatever its size.
    pub bytes: usize,
}

impl PageLimit {
    /// The most entries a page may be asked for.
    pub const MAX_ENTRIES: usize = 1000;

    /// `entries` entries and 1 MiB; an error unless `1 <= entries <= MAX_ENTRIES`.
    pub fn entries(entries: usize) -> Result<PageLimit> {
        if entries == 0 || entries > Self::MAX_ENTRIES {
            return Err(Error::Config {
                key: "page limit".into(),
                reason: format!(
                    "{entries} entries: a page holds 1 to {} entries",
                    Self::MAX_ENTRIES
                ),
            });
        }
        Ok(PageLimit {
            entries,
            ..PageLimit::default()
        })
    }
}

impl Default for PageLimit {
    /// 100 entries, 1 MiB.
    fn default() -> Self {
        PageLimit {
            entries: 100,
            bytes: 1 << 20,
        }
    }
}

/// Where a paged read goes on: after the key (encoded, as stored) of the last entry read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(Vec<u8>);

impl Cursor {
    /// The cursor after the encoded key `key`.
    pub fn after(key: Vec<u8>) -> Cursor {
        Cursor(key)
    }

    /// The encoded key the next page starts after.
    pub fn key(&self) -> &[u8] {
        &self.0
    }

    /// The cursor as text (lowercase hex), as the HTTP server hands it out.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// Reads a cursor written by [`Cursor::to_hex`]; an error says why it is not one.
    pub fn from_hex(text: &str) -> Result<Cursor> {
        hex::decode(text).map(Cursor).map_err(|e| Error::Config {
            key: "cursor".into(),
            reason: format!("`{text}` is not a cursor this server handed out: {e}"),
        })
    }
}

/// One page of a paged read: the entries, and the cursor of the next page when more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<K, V> {
    /// The entries, in encoded-key order.
    pub entries: Vec<(K, V)>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<Cursor>,
}

/// One part's page: entries by encoded key, and whether the part has more after them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part<T> {
    pub(crate) entries: Vec<(Vec<u8>, T)>,
    pub(crate) more: bool,
}

impl<T> Part<T> {
    /// The cursor after this page, when more follow.
    pub(crate) fn next(&self) -> Option<Cursor> {
        match (self.more, self.entries.last()) {
            (true, Some((key, _))) => Some(Cursor::after(key.clone())),
            _ => None,
        }
    }
}

/// The bounds of a read after `after`, within `[from, to]` when given.
pub(crate) fn bounds<'a>(
    range: Option<(&'a [u8], &'a [u8])>,
    after: Option<&'a Cursor>,
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let upper = range.map_or(Bound::Unbounded, |(_, to)| Bound::Included(to));
    let lower = match (range, after) {
        (Some((from, _)), Some(after)) if after.key() < from => Bound::Included(from),
        (_, Some(after)) => Bound::Excluded(after.key()),
        (Some((from, _)), None) => Bound::Included(from),
        (None, None) => Bound::Unbounded,
    };
    (lower, upper)
}

/// Reads one part's page from entries in key order: up to `limit`, then looks one further
/// to tell whether more follow.
pub(crate) fn read<T, E>(
    entries: impl Iterator<Item = std::result::Result<(Vec<u8>, T), E>>,
    limit: PageLimit,
    size: impl Fn(&[u8], &T) -> usize,
) -> std::result::Result<Part<T>, E> {
    let mut part = Part {
        entries: Vec::new(),
        more: false,
    };
    let mut bytes = 0usize;
    for entry in entries {
        let (key, value) = entry?;
        if !part.entries.is_empty() && (part.entries.len() >= limit.entries || bytes >= limit.bytes)
        {
            part.more = true;
            break;
        }
        bytes = bytes.saturating_add(size(&key, &value));
        part.entries.push((key, value));
    }
    Ok(part)
}

/// Merges the parts' pages into one page of at most `limit` (see the module docs).
pub(crate) fn merge<T>(
    parts: Vec<Part<T>>,
    limit: PageLimit,
    size: impl Fn(&[u8], &T) -> usize,
) -> Part<T> {
    // Past the last key of a part that has more, that part's entries are unknown.
    let horizon: Option<Vec<u8>> = parts
        .iter()
        .filter(|p| p.more)
        .filter_map(|p| p.entries.last().map(|(k, _)| k.clone()))
        .min();
    let cut_short = parts.iter().any(|p| p.more);
    let mut all: Vec<(Vec<u8>, T)> = parts.into_iter().flat_map(|p| p.entries).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Part {
        entries: Vec::new(),
        more: cut_short,
    };
    let mut bytes = 0usize;
    for (key, value) in all {
        let past_horizon = horizon.as_ref().is_some_and(|h| key > *h);
        let full =
            !out.entries.is_empty() && (out.entries.len() >= limit.entries || bytes >= limit.bytes);
        if past_horizon || full {
            out.more = true;
            break;
        }
        bytes = bytes.saturating_add(size(&key, &value));
        out.entries.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[allow(clippy::ptr_arg)] // the entries' type is Vec<u8>
    fn size(k: &[u8], v: &Vec<u8>) -> usize {
        k.len() + v.len()
    }

    /// Pages through parts (disjoint maps) by merging each part's page, as the server does:
    /// the parts read pages of `read_limit`, the merge (as the HTTP server's, which counts
    /// JSON bytes) bounds them by `limit`.
    fn paged(
        parts: &[BTreeMap<Vec<u8>, Vec<u8>>],
        read_limit: PageLimit,
        limit: PageLimit,
    ) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        let mut after: Option<Cursor> = None;
        for _ in 0..10_000 {
            let pages: Vec<Part<Vec<u8>>> = parts
                .iter()
                .map(|p| {
                    let (lower, upper) = bounds(None, after.as_ref());
                    let iter = p
                        .range::<[u8], _>((lower, upper))
                        .map(|(k, v)| Ok::<_, ()>((k.clone(), v.clone())));
                    read(iter, read_limit, size).unwrap()
                })
                .collect();
            let page = merge(pages, limit, size);
            assert!(page.entries.len() <= limit.entries);
            let bytes: usize = page.entries.iter().map(|(k, v)| size(k, v)).sum();
            let last = page.entries.last().map_or(0, |(k, v)| size(k, v));
            assert!(
                bytes < limit.bytes + last,
                "a page went past its byte bound"
            );
            seen.extend(page.entries.iter().map(|(k, _)| k.clone()));
            match page.next() {
                Some(next) => {
                    assert!(!page.entries.is_empty(), "an empty page promised more");
                    after = Some(next);
                }
                None => return seen,
            }
        }
        panic!("paging did not end");
    }

    proptest! {
        /// Paging through any split of a map, under any bound, reads every entry once, in
        /// key order.
        #[test]
        fn paging_reads_every_entry_once_in_order(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..4),
                proptest::collection::vec(any::<u8>(), 0..40),
                0..60,
            ),
            split in proptest::collection::vec(0usize..4, 60),
            parts in 1usize..4,
            per_page in 1usize..7,
            bytes in 1usize..120,
            read_per_page in 1usize..7,
            read_bytes in 1usize..120,
        ) {
            let mut maps = vec![BTreeMap::new(); parts];
            for (i, (k, v)) in entries.iter().enumerate() {
                maps[split[i] % parts].insert(k.clone(), v.clone());
            }
            let limit = PageLimit { entries: per_page, bytes };
            let read_limit = PageLimit { entries: read_per_page, bytes: read_bytes };
            let keys: Vec<Vec<u8>> = entries.keys().cloned().collect();
            prop_assert_eq!(paged(&maps, read_limit, limit), keys.clone());
            prop_assert_eq!(paged(&maps, limit, limit), keys);
        }
    }

    #[test]
    fn a_range_starts_at_from_or_after_the_cursor_whichever_is_later() {
        let (from, to) = (&b"b"[..], &b"d"[..]);
        let early = Cursor::after(b"a".to_vec());
        let late = Cursor::after(b"c".to_vec());
        assert_eq!(
            bounds(Some((from, to)), Some(&early)),
            (Bound::Included(from), Bound::Included(to))
        );
        assert_eq!(
            bounds(Some((from, to)), Some(&late)),
            (Bound::Excluded(&b"c"[..]), Bound::Included(to))
        );
        assert_eq!(bounds(None, None), (Bound::Unbounded, Bound::Unbounded));
    }

    #[test]
    fn cursors_round_trip_as_hex_and_bad_ones_say_so() {
        let c = Cursor::after(vec![0, 0xab, 0xff]);
        assert_eq!(c.to_hex(), "00abff");
        assert_eq!(Cursor::from_hex("00abff").unwrap(), c);
        for bad in ["0", "zz", "00ab f"] {
            let e = Cursor::from_hex(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        assert!(PageLimit::entries(0).is_err());
        assert!(PageLimit::entries(1001).is_err());
        assert_eq!(PageLimit::entries(1000).unwrap().entries, 1000);
    }
}
