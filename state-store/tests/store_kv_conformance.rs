//! The key-value store contract, run against every backend and layer stack.
#![allow(clippy::unwrap_used)]

use std::ops::Bound;
use std::path::Path;

use state_store::{KeyValueStore, RecordCache, RocksDbMemory, StoreBuilder, StoreError};
use tempfile::TempDir;

fn collect(it: state_store::KeyValueIter<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    it.map(|r| r.unwrap()).collect()
}

fn keys(it: state_store::KeyValueIter<'_>) -> Vec<Vec<u8>> {
    collect(it).into_iter().map(|(k, _)| k).collect()
}

fn put_get_delete(s: &mut dyn KeyValueStore) {
    assert_eq!(s.get(b"a").unwrap(), None);
    s.put(b"a", b"1").unwrap();
    s.put(b"b", b"2").unwrap();
    assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
    s.put(b"a", b"3").unwrap();
    assert_eq!(s.get(b"a").unwrap(), Some(b"3".to_vec()));
    s.delete(b"a").unwrap();
    assert_eq!(s.get(b"a").unwrap(), None);
    s.delete(b"never").unwrap();
    s.put(b"empty", b"").unwrap();
    assert_eq!(s.get(b"empty").unwrap(), Some(Vec::new()));
    s.flush().unwrap();
    assert_eq!(s.get(b"b").unwrap(), Some(b"2".to_vec()));
    assert_eq!(s.get(b"a").unwrap(), None);
}

fn ranges(s: &mut dyn KeyValueStore) {
    for k in [&b"a"[..], b"b", b"ba", b"bb", b"c", b"d"] {
        s.put(k, k).unwrap();
    }
    let inc = |k: &'static [u8]| Bound::Included(k);
    let exc = |k: &'static [u8]| Bound::Excluded(k);
    assert_eq!(
        keys(s.range(inc(b"b"), inc(b"c")).unwrap()),
        vec![b"b".to_vec(), b"ba".to_vec(), b"bb".to_vec(), b"c".to_vec()]
    );
    assert_eq!(
        keys(s.range(exc(b"b"), exc(b"c")).unwrap()),
        vec![b"ba".to_vec(), b"bb".to_vec()]
    );
    assert_eq!(
        keys(s.range(Bound::Unbounded, exc(b"b")).unwrap()),
        vec![b"a".to_vec()]
    );
    assert_eq!(
        keys(s.range(exc(b"c"), Bound::Unbounded).unwrap()),
        vec![b"d".to_vec()]
    );
    assert!(keys(s.range(inc(b"d"), inc(b"a")).unwrap()).is_empty());
    assert!(keys(s.range(exc(b"b"), exc(b"b")).unwrap()).is_empty());
    assert_eq!(
        keys(s.prefix_scan(b"b").unwrap()),
        vec![b"b".to_vec(), b"ba".to_vec(), b"bb".to_vec()]
    );
    assert!(keys(s.prefix_scan(b"x").unwrap()).is_empty());
    assert_eq!(keys(s.all().unwrap()).len(), 6);
    s.delete(b"ba").unwrap();
    assert_eq!(
        keys(s.prefix_scan(b"b").unwrap()),
        vec![b"b".to_vec(), b"bb".to_vec()]
    );
    let all = collect(s.all().unwrap());
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "ascending");
    assert!(all.iter().all(|(k, v)| k == v));
}

fn binary_keys_and_prefix_edge(s: &mut dyn KeyValueStore) {
    s.put(&[0xFF, 0xFF], b"x").unwrap();
    s.put(&[0xFF], b"y").unwrap();
    s.put(&[0x00], b"z").unwrap();
    assert_eq!(
        keys(s.prefix_scan(&[0xFF]).unwrap()),
        vec![vec![0xFF], vec![0xFF, 0xFF]]
    );
    assert_eq!(keys(s.prefix_scan(b"").unwrap()).len(), 3);
}

fn put_all_and_count(s: &mut dyn KeyValueStore) {
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..100u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![1]))
        .collect();
    let refs: Vec<(&[u8], Option<&[u8]>)> = entries
        .iter()
        .map(|(k, v)| (&k[..], Some(&v[..])))
        .collect();
    s.put_all(&refs).unwrap();
    s.put_all(&[(&0u32.to_be_bytes()[..], None)]).unwrap();
    assert_eq!(s.get(&0u32.to_be_bytes()).unwrap(), None);
    assert_eq!(keys(s.all().unwrap()).len(), 99);
    s.flush().unwrap();
    let n = s.approximate_num_entries().unwrap();
    assert!((90..=110).contains(&n), "approximate count {n}");
}

fn long_scan(s: &mut dyn KeyValueStore) {
    // Longer than the cache's range chunk, with a mix of flushed and cached entries.
    for i in 0..1000u32 {
        s.put(&i.to_be_bytes(), &i.to_le_bytes()).unwrap();
    }
    s.flush().unwrap();
    for i in (0..1000u32).step_by(3) {
        s.delete(&i.to_be_bytes()).unwrap();
    }
    for i in (1..1000u32).step_by(7) {
        s.put(&i.to_be_bytes(), b"new").unwrap();
    }
    let got = collect(s.all().unwrap());
    let want: Vec<(Vec<u8>, Vec<u8>)> = (0..1000u32)
        .filter(|i| i % 3 != 0 || i % 7 == 1)
        .map(|i| {
            (
                i.to_be_bytes().to_vec(),
                if i % 7 == 1 {
                    b"new".to_vec()
                } else {
                    i.to_le_bytes().to_vec()
                },
            )
        })
        .collect();
    assert_eq!(got, want);
}

fn wipe_and_close(s: &mut dyn KeyValueStore) {
    s.put(b"a", b"1").unwrap();
    s.flush().unwrap();
    s.put(b"b", b"2").unwrap();
    s.wipe().unwrap();
    assert_eq!(s.get(b"a").unwrap(), None);
    assert_eq!(s.get(b"b").unwrap(), None);
    s.put(b"c", b"3").unwrap();
    assert_eq!(s.get(b"c").unwrap(), Some(b"3".to_vec()));
    s.close().unwrap();
    assert!(matches!(s.get(b"c"), Err(StoreError::Closed { .. })));
    assert!(matches!(s.put(b"c", b"4"), Err(StoreError::Closed { .. })));
}

macro_rules! kv_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            fn make(dir: &Path) -> Box<dyn KeyValueStore> {
                ($make)(dir)
            }

            #[test]
            fn put_get_delete() {
                let d = TempDir::new().unwrap();
                super::put_get_delete(make(d.path()).as_mut());
            }

            #[test]
            fn ranges() {
                let d = TempDir::new().unwrap();
                super::ranges(make(d.path()).as_mut());
            }

            #[test]
            fn binary_keys_and_prefix_edge() {
                let d = TempDir::new().unwrap();
                super::binary_keys_and_prefix_edge(make(d.path()).as_mut());
            }

            #[test]
            fn put_all_and_count() {
                let d = TempDir::new().unwrap();
                super::put_all_and_count(make(d.path()).as_mut());
            }

            #[test]
            fn long_scan() {
                let d = TempDir::new().unwrap();
                super::long_scan(make(d.path()).as_mut());
            }

            #[test]
            fn wipe_and_close() {
                let d = TempDir::new().unwrap();
                super::wipe_and_close(make(d.path()).as_mut());
            }
        }
    };
}

fn discard(_: &[u8], _: Option<&[u8]>, _: i64) -> Result<(), StoreError> {
    Ok(())
}

kv_suite!(in_memory, |_: &Path| StoreBuilder::key_value("kv")
    .in_memory()
    .build()
    .unwrap());
kv_suite!(rocksdb, |d: &Path| StoreBuilder::key_value("kv")
    .persistent(d.join("kv"), &RocksDbMemory::new(8 << 20, 2 << 20))
    .build()
    .unwrap());
kv_suite!(in_memory_cached_logged, |_: &Path| StoreBuilder::key_value(
    "kv"
)
.in_memory()
.with_logging(discard)
.with_caching(&RecordCache::new(16 << 10))
.build()
.unwrap());
kv_suite!(rocksdb_cached_logged, |d: &Path| StoreBuilder::key_value(
    "kv"
)
.persistent(d.join("kv"), &RocksDbMemory::new(8 << 20, 2 << 20))
.with_logging(discard)
.with_caching(&RecordCache::new(16 << 10))
.build()
.unwrap());

#[test]
fn rocksdb_data_survives_reopen_after_flush() {
    let d = TempDir::new().unwrap();
    let mem = RocksDbMemory::default();
    {
        let mut s = StoreBuilder::key_value("kv")
            .persistent(d.path().join("kv"), &mem)
            .build()
            .unwrap();
        s.put(b"k", b"v").unwrap();
        s.close().unwrap();
    }
    let s = StoreBuilder::key_value("kv")
        .persistent(d.path().join("kv"), &mem)
        .build()
        .unwrap();
    assert_eq!(s.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert!(s.persistent());
}

#[test]
fn bad_names_and_listener_without_cache_are_rejected() {
    assert!(StoreBuilder::key_value("a/b").build().is_err());
    assert!(StoreBuilder::key_value("").build().is_err());
    let e = StoreBuilder::key_value("ok")
        .with_flush_listener(|_, _, _| {})
        .build()
        .err()
        .unwrap();
    assert_eq!(e.class(), state_store::ErrorClass::User);
}

/// A wipe renames the directory aside before deleting it, so a crash mid-delete never leaves
/// a half-deleted RocksDB (CURRENT naming a MANIFEST that is gone); what a crash leaves aside
/// is removed on the next open.
#[test]
fn rocksdb_wipe_is_crash_safe() {
    let d = TempDir::new().unwrap();
    let mem = RocksDbMemory::default();
    let path = d.path().join("kv");
    let mut s = StoreBuilder::key_value("kv")
        .persistent(&path, &mem)
        .build()
        .unwrap();
    s.put(b"k", b"v").unwrap();
    s.flush().unwrap();
    s.wipe().unwrap();
    assert_eq!(s.get(b"k").unwrap(), None);
    s.put(b"k2", b"v2").unwrap();
    s.close().unwrap();
    drop(s);
    // What a crash after the rename leaves behind: a half-deleted copy aside.
    let aside = d.path().join("kv.deleting");
    std::fs::create_dir_all(&aside).unwrap();
    std::fs::write(aside.join("CURRENT"), "MANIFEST-000099\n").unwrap();
    let s = StoreBuilder::key_value("kv")
        .persistent(&path, &mem)
        .build()
        .unwrap();
    assert_eq!(s.get(b"k2").unwrap(), Some(b"v2".to_vec()));
    assert!(!aside.exists());
}
