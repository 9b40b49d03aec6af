//! One store's part of the record cache (Kafka Streams' NamedCache): its entries, their
//! least-recently-used order, its dirty keys and the store below it.
//!
//! Invariants: every key of `dirty` names an entry that was dirty when it was pushed (a key is
//! pushed once per clean-to-dirty change); `lru` holds exactly one key per entry, under the
//! entry's own `tick`; `EntryMap`'s ordered key set, once a range scan has built it, holds the
//! same keys as its hash map.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use hashbrown::HashMap;

use crate::changelog::RecordClock;
use crate::error::StoreError;
use crate::keys::split_window_key;
use crate::store::{KeyValueStore, StateStore};
use crate::window::{WindowStore, WindowWrite};

/// Bytes charged per entry beyond its key and value (map nodes, LRU link, dirty list).
const ENTRY_OVERHEAD: usize = 64;

/// The store below a namespace.
pub(super) enum Backing {
    Kv(Box<dyn KeyValueStore>),
    Window(Box<dyn WindowStore>),
}

impl Backing {
    pub(super) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Backing::Kv(s) => s.get(key),
            Backing::Window(s) => match split_window_key(key, false) {
                Some((k, start)) => s.fetch_one(k, start),
                None => Ok(None),
            },
        }
    }

    pub(super) fn write(&mut self, entries: &[(&[u8], Option<&[u8]>)]) -> Result<(), StoreError> {
        match self {
            Backing::Kv(s) => s.put_all(entries),
            Backing::Window(s) => {
                let writes: Vec<WindowWrite<'_>> = entries
                    .iter()
                    .filter_map(|(key, value)| {
                        split_window_key(key, false).map(|(k, start)| (k, start, *value))
                    })
                    .collect();
                s.put_all(&writes)
            }
        }
    }

    /// The store below as a [`StateStore`], for its lifecycle methods.
    pub(super) fn state(&mut self) -> &mut dyn StateStore {
        match self {
            Backing::Kv(s) => &mut **s,
            Backing::Window(s) => &mut **s,
        }
    }
}

/// A namespace's entries: hashed for the lookups and updates every record makes, with the
/// keys also kept in order for range scans. The ordered set is built by the first range scan
/// and kept from then on (touched only when a key comes or goes): a store read only by key
/// (a tumbling or hopping window aggregation, a key-value store without range queries) never
/// pays for ordering its keys, which with a new key per record was a fifth of a windowed
/// count's time.
#[derive(Default)]
pub(super) struct EntryMap {
    map: HashMap<Vec<u8>, Entry>,
    order: Option<BTreeSet<Vec<u8>>>,
}

impl EntryMap {
    pub(super) fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    pub(super) fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.map.get_mut(key)
    }

    pub(super) fn insert(&mut self, key: Vec<u8>, entry: Entry) -> Option<Entry> {
        if let Some(order) = &mut self.order {
            if !self.map.contains_key(key.as_slice()) {
                order.insert(key.clone());
            }
        }
        self.map.insert(key, entry)
    }

    pub(super) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        if let Some(order) = &mut self.order {
            order.remove(key);
        }
        Some(entry)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.map.values()
    }

    /// Entries with keys in `bounds`, in key order (the first call orders the keys).
    pub(super) fn range<'a>(
        &'a mut self,
        bounds: (Bound<&[u8]>, Bound<&[u8]>),
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a {
        let map = &self.map;
        let order: &'a BTreeSet<Vec<u8>> = self
            .order
            .get_or_insert_with(|| map.keys().cloned().collect());
        order
            .range::<[u8], _>(bounds)
            .filter_map(move |k| map.get(k.as_slice()).map(|e| (k, e)))
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = (Vec<u8>, Entry)> + '_ {
        self.order = None;
        self.map.drain()
    }
}

/// One store's namespace in the cache.
pub(super) struct Namespace {
    pub(super) name: String,
    pub(super) entries: EntryMap,
    /// Access order: tick → key. The first entry is the namespace's least recently used.
    pub(super) lru: BTreeMap<u64, Vec<u8>>,
    /// Keys that became dirty since the last flush, in that order.
    pub(super) dirty: Vec<Vec<u8>>,
    pub(super) backing: Backing,
    pub(super) clock: RecordClock,
    /// Whether a flush hands out its changes (reading each key's old value below first).
    pub(super) keep_flushed: bool,
}

/// A cached value (`None`: a delete not yet flushed), with the record time of its last write
/// and its place in the LRU order.
pub(super) struct Entry {
    pub(super) value: Option<Vec<u8>>,
    pub(super) dirty: bool,
    pub(super) timestamp: i64,
    pub(super) tick: u64,
}

/// The bytes an entry is charged against the bound.
pub(super) fn entry_size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    // The key is stored twice: in the namespace map and in the LRU index.
    2 * key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}
