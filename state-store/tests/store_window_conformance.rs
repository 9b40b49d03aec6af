//! The window store contract, run against both backends, with and without cache + changelog.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use state_store::{RecordCache, RocksDbMemory, StoreBuilder, StoreError, WindowStore, WindowedKey};
use tempfile::TempDir;

fn fetch(s: &dyn WindowStore, key: &[u8], from: i64, to: i64) -> Vec<(i64, Vec<u8>)> {
    s.fetch(key, from, to)
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn fetch_all(s: &dyn WindowStore, from: i64, to: i64) -> Vec<(WindowedKey, Vec<u8>)> {
    let mut v: Vec<_> = s.fetch_all(from, to).unwrap().map(|r| r.unwrap()).collect();
    v.sort();
    v
}

fn basic(s: &mut dyn WindowStore) {
    s.put(b"a", Some(b"1"), 100).unwrap();
    s.put(b"a", Some(b"2"), 200).unwrap();
    s.put(b"a", Some(b"3"), -100).unwrap();
    // A key that has "a" as prefix must not leak into "a"'s fetches.
    s.put(b"ab", Some(b"x"), 150).unwrap();
    s.put(b"b", Some(b"y"), 150).unwrap();
    assert_eq!(
        fetch(s, b"a", i64::MIN, i64::MAX),
        vec![
            (-100, b"3".to_vec()),
            (100, b"1".to_vec()),
            (200, b"2".to_vec())
        ]
    );
    assert_eq!(fetch(s, b"a", 100, 199), vec![(100, b"1".to_vec())]);
    assert_eq!(fetch(s, b"a", 100, 200).len(), 2);
    assert!(fetch(s, b"a", 201, 300).is_empty());
    assert!(fetch(s, b"a", 300, 100).is_empty());
    assert_eq!(s.fetch_one(b"a", 200).unwrap(), Some(b"2".to_vec()));
    assert_eq!(s.fetch_one(b"a", 201).unwrap(), None);
    s.put(b"a", Some(b"4"), 200).unwrap();
    assert_eq!(s.fetch_one(b"a", 200).unwrap(), Some(b"4".to_vec()));
    let all = fetch_all(s, 100, 150);
    let wk = |k: &[u8], start| WindowedKey {
        key: k.to_vec(),
        start,
    };
    assert_eq!(
        all,
        vec![
            (wk(b"a", 100), b"1".to_vec()),
            (wk(b"ab", 150), b"x".to_vec()),
            (wk(b"b", 150), b"y".to_vec())
        ]
    );
    s.put(b"a", None, 100).unwrap();
    assert_eq!(s.fetch_one(b"a", 100).unwrap(), None);
    s.flush().unwrap();
    assert_eq!(fetch(s, b"a", i64::MIN, i64::MAX).len(), 2);
    assert_eq!(s.all().unwrap().count(), 4);
}

fn retention(s: &mut dyn WindowStore) {
    // Built with retention 1000 and segment interval 500.
    assert_eq!(s.retention_ms(), 1000);
    for t in (0..=3000i64).step_by(100) {
        s.put(b"k", Some(&t.to_be_bytes()), t).unwrap();
    }
    s.flush().unwrap();
    // Stream time 3000: windows before 2001 are gone.
    let got: Vec<i64> = fetch(s, b"k", 0, 5000)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(got, (2100..=3000).step_by(100).collect::<Vec<_>>());
    assert_eq!(s.fetch_one(b"k", 1000).unwrap(), None);
    assert!(fetch_all(s, 0, 2000).is_empty());
    // A late put for an expired window is dropped.
    s.put(b"late", Some(b"v"), 500).unwrap();
    assert_eq!(s.fetch_one(b"late", 500).unwrap(), None);
    s.flush().unwrap();
    assert_eq!(s.fetch_one(b"late", 500).unwrap(), None);
}

fn close(s: &mut dyn WindowStore) {
    s.put(b"a", Some(b"1"), 1).unwrap();
    s.close().unwrap();
    assert!(matches!(
        s.fetch_one(b"a", 1),
        Err(StoreError::Closed { .. })
    ));
}

macro_rules! window_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            fn make(dir: &Path) -> Box<dyn WindowStore> {
                ($make)(dir)
            }

            #[test]
            fn basic() {
                let d = TempDir::new().unwrap();
                super::basic(make(d.path()).as_mut());
            }

            #[test]
            fn retention() {
                let d = TempDir::new().unwrap();
                super::retention(make(d.path()).as_mut());
            }

            #[test]
            fn close() {
                let d = TempDir::new().unwrap();
                super::close(make(d.path()).as_mut());
            }
        }
    };
}

fn discard(_: &[u8], _: Option<&[u8]>, _: i64) -> Result<(), StoreError> {
    Ok(())
}

window_suite!(in_memory, |_: &Path| StoreBuilder::window("w", 1000)
    .segment_interval_ms(500)
    .build()
    .unwrap());
window_suite!(rocksdb, |d: &Path| StoreBuilder::window("w", 1000)
    .segment_interval_ms(500)
    .persistent(d.join("w"), &RocksDbMemory::new(8 << 20, 2 << 20))
    .build()
    .unwrap());
window_suite!(in_memory_cached_logged, |_: &Path| StoreBuilder::window(
    "w", 1000
)
.segment_interval_ms(500)
.with_logging(discard)
.with_caching(&RecordCache::new(4 << 10))
.build()
.unwrap());
window_suite!(rocksdb_cached_logged, |d: &Path| StoreBuilder::window(
    "w", 1000
)
.segment_interval_ms(500)
.persistent(d.join("w"), &RocksDbMemory::new(8 << 20, 2 << 20))
.with_logging(discard)
.with_caching(&RecordCache::new(4 << 10))
.build()
.unwrap());

fn segment_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("segment."))
        .collect();
    v.sort();
    v
}

#[test]
fn rocksdb_expired_segments_are_deleted_from_disk() {
    let d = TempDir::new().unwrap();
    let dir = d.path().join("w");
    let mem = RocksDbMemory::new(8 << 20, 2 << 20);
    let mut s = StoreBuilder::window("w", 1000)
        .segment_interval_ms(500)
        .persistent(&dir, &mem)
        .build()
        .unwrap();
    for t in (0..1000).step_by(100) {
        s.put(b"k", Some(b"v"), t).unwrap();
    }
    assert_eq!(segment_dirs(&dir), vec!["segment.0", "segment.1"]);
    s.put(b"k", Some(b"v"), 2600).unwrap();
    // Stream time 2600, oldest live 1601 → segments 3 (1500..2000) and later are kept.
    assert_eq!(segment_dirs(&dir), vec!["segment.5"]);
    s.put(b"k", Some(b"v"), 1700).unwrap();
    assert_eq!(segment_dirs(&dir), vec!["segment.3", "segment.5"]);
    s.close().unwrap();
    // Reopening finds the segments again.
    let s = StoreBuilder::window("w", 1000)
        .segment_interval_ms(500)
        .persistent(&dir, &mem)
        .build()
        .unwrap();
    assert_eq!(s.fetch_one(b"k", 1700).unwrap(), Some(b"v".to_vec()));
    assert_eq!(s.fetch_one(b"k", 2600).unwrap(), Some(b"v".to_vec()));
}

#[test]
fn duplicates_are_retained_on_both_backends() {
    let d = TempDir::new().unwrap();
    let mem = RocksDbMemory::new(8 << 20, 2 << 20);
    for mut s in [
        StoreBuilder::window("j", 10_000)
            .retain_duplicates(true)
            .build()
            .unwrap(),
        StoreBuilder::window("j", 10_000)
            .retain_duplicates(true)
            .persistent(d.path().join("j"), &mem)
            .build()
            .unwrap(),
    ] {
        s.put(b"k", Some(b"1"), 5).unwrap();
        s.put(b"k", Some(b"2"), 5).unwrap();
        s.put(b"k", Some(b"3"), 6).unwrap();
        s.put(b"k", None, 5).unwrap();
        let got: Vec<Vec<u8>> = s
            .fetch(b"k", 0, 10)
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(got, vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
    }
    let cache = RecordCache::new(1024);
    assert!(StoreBuilder::window("j", 1)
        .retain_duplicates(true)
        .with_caching(&cache)
        .build()
        .is_err());
}

#[test]
fn default_segment_interval_follows_kafka() {
    // retention 10 min → interval 5 min: two puts 6 min apart land in different segments.
    let d = TempDir::new().unwrap();
    let dir = d.path().join("w");
    let mut s = StoreBuilder::window("w", 600_000)
        .persistent(&dir, &RocksDbMemory::default())
        .build()
        .unwrap();
    s.put(b"k", Some(b"v"), 0).unwrap();
    s.put(b"k", Some(b"v"), 299_999).unwrap();
    s.put(b"k", Some(b"v"), 300_000).unwrap();
    assert_eq!(segment_dirs(&dir), vec!["segment.0", "segment.1"]);
}
