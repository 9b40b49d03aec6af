//! The in-memory key-value backend: a `BTreeMap` of byte keys.
//!
//! Not persistent: after a restart it is empty and is rebuilt from its changelog in full.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::StoreError;
use crate::store::{
    ChangelogRecord, KeyValueIter, KeyValueStore, ReadOnlyKeyValueStore, StateStore,
};

/// A key-value store held in a `BTreeMap`.
#[derive(Debug)]
pub(crate) struct InMemoryKeyValueStore {
    name: String,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    open: bool,
}

impl InMemoryKeyValueStore {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        InMemoryKeyValueStore {
            name: name.into(),
            map: BTreeMap::new(),
            open: true,
        }
    }

    fn check_open(&self) -> Result<(), StoreError> {
        StoreError::check_open(&self.name, self.open)
    }
}

impl StateStore for InMemoryKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn persistent(&self) -> bool {
        false
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.check_open()
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.open = false;
        self.map = BTreeMap::new();
        Ok(())
    }

    fn restore_batch(&mut self, batch: &[ChangelogRecord]) -> Result<(), StoreError> {
        self.check_open()?;
        for r in batch {
            match &r.value {
                Some(v) => self.map.insert(r.key.clone(), v.clone()),
                None => self.map.remove(&r.key),
            };
        }
        Ok(())
    }

    fn wipe(&mut self) -> Result<(), StoreError> {
        self.check_open()?;
        self.map.clear();
        Ok(())
    }
}

impl ReadOnlyKeyValueStore for InMemoryKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_open()?;
        Ok(self.map.get(key).cloned())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<KeyValueIter<'_>, StoreError> {
        self.check_open()?;
        if crate::store::empty_range(from, to) {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(Box::new(
            self.map
                .range::<[u8], _>((from, to))
                .map(|(k, v)| Ok((k.clone(), v.clone()))),
        ))
    }

    fn approximate_num_entries(&self) -> Result<u64, StoreError> {
        self.check_open()?;
        Ok(self.map.len() as u64)
    }
}

impl KeyValueStore for InMemoryKeyValueStore {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.check_open()?;
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.check_open()?;
        self.map.remove(key);
        Ok(())
    }
}
