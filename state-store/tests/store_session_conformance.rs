//! The session store contract, run against both backends, with and without a changelog.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use state_store::{RocksDbMemory, SessionKey, SessionStore, StoreBuilder, StoreError};
use tempfile::TempDir;

fn sessions(it: state_store::SessionIter<'_>) -> Vec<(i64, i64)> {
    it.map(|r| {
        let (k, _) = r.unwrap();
        (k.start, k.end)
    })
    .collect()
}

fn basic(s: &mut dyn SessionStore) {
    s.put(b"a", 0, 10, b"s1").unwrap();
    s.put(b"a", 20, 30, b"s2").unwrap();
    s.put(b"a", 100, 100, b"s3").unwrap();
    s.put(b"ab", 0, 10, b"other").unwrap();
    assert_eq!(
        sessions(s.fetch(b"a").unwrap()),
        vec![(0, 10), (20, 30), (100, 100)]
    );
    // Sessions a record at t=25 with gap 10 could merge with: end >= 15, start <= 35.
    assert_eq!(
        sessions(s.find_sessions(b"a", 15, 35).unwrap()),
        vec![(20, 30)]
    );
    assert_eq!(
        sessions(s.find_sessions(b"a", 10, 20).unwrap()),
        vec![(0, 10), (20, 30)]
    );
    assert!(sessions(s.find_sessions(b"a", 31, 99).unwrap()).is_empty());
    assert_eq!(s.fetch_session(b"a", 20, 30).unwrap(), Some(b"s2".to_vec()));
    assert_eq!(s.fetch_session(b"a", 20, 31).unwrap(), None);
    let (key, value) = s.fetch(b"ab").unwrap().next().unwrap().unwrap();
    assert_eq!(
        key,
        SessionKey {
            key: b"ab".to_vec(),
            start: 0,
            end: 10
        }
    );
    assert_eq!(value, b"other".to_vec());
    // Merge: remove two sessions, put the merged one.
    s.remove(b"a", 0, 10).unwrap();
    s.remove(b"a", 20, 30).unwrap();
    s.put(b"a", 0, 30, b"merged").unwrap();
    s.flush().unwrap();
    assert_eq!(sessions(s.fetch(b"a").unwrap()), vec![(0, 30), (100, 100)]);
}

fn retention(s: &mut dyn SessionStore) {
    // Built with retention 1000, segment interval 500.
    for t in (0..=3000).step_by(100) {
        s.put(b"k", t, t + 50, b"v").unwrap();
    }
    let got = sessions(s.fetch(b"k").unwrap());
    // Stream time 3050: sessions ending before 2051 are gone.
    assert_eq!(got.first(), Some(&(2100, 2150)));
    assert_eq!(s.fetch_session(b"k", 0, 50).unwrap(), None);
    s.put(b"late", 0, 10, b"v").unwrap();
    assert_eq!(s.fetch_session(b"late", 0, 10).unwrap(), None);
}

fn close(s: &mut dyn SessionStore) {
    s.close().unwrap();
    assert!(matches!(
        s.put(b"a", 0, 1, b"v"),
        Err(StoreError::Closed { .. })
    ));
}

macro_rules! session_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[allow(clippy::redundant_closure_call)]
            fn make(dir: &Path) -> Box<dyn SessionStore> {
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

session_suite!(in_memory, |_: &Path| StoreBuilder::session("s", 1000)
    .segment_interval_ms(500)
    .build()
    .unwrap());
session_suite!(rocksdb, |d: &Path| StoreBuilder::session("s", 1000)
    .segment_interval_ms(500)
    .persistent(d.join("s"), &RocksDbMemory::new(8 << 20, 2 << 20))
    .build()
    .unwrap());
session_suite!(in_memory_logged, |_: &Path| StoreBuilder::session(
    "s", 1000
)
.segment_interval_ms(500)
.with_logging(discard)
.build()
.unwrap());
session_suite!(rocksdb_logged, |d: &Path| StoreBuilder::session("s", 1000)
    .segment_interval_ms(500)
    .persistent(d.join("s"), &RocksDbMemory::new(8 << 20, 2 << 20))
    .with_logging(discard)
    .build()
    .unwrap());
