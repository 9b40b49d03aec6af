//! The write-back cache never returns a stale value and forwards every final change.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use state_store::{KeyValueStore, RecordCache, RocksDbMemory, StoreBuilder};
use tempfile::TempDir;

#[derive(Debug, Clone)]
enum Op {
    Put(bool, u8, Vec<u8>),
    Delete(bool, u8),
    Get(bool, u8),
    Range(bool, u8, u8),
    Flush(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (any::<bool>(), 0u8..32, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(s, k, v)| Op::Put(s, k, v)),
        2 => (any::<bool>(), 0u8..32).prop_map(|(s, k)| Op::Delete(s, k)),
        4 => (any::<bool>(), 0u8..32).prop_map(|(s, k)| Op::Get(s, k)),
        1 => (any::<bool>(), 0u8..32, 0u8..32).prop_map(|(s, a, b)| Op::Range(s, a, b)),
        1 => any::<bool>().prop_map(Op::Flush),
    ]
}

type Forwarded = Arc<Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>>>;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Two stores share one tiny cache, so evictions of one store's entries are triggered by
    /// the other's writes; every read is checked against a model.
    #[test]
    fn never_stale(ops in proptest::collection::vec(op(), 0..300), persistent: bool, cache_bytes in 0usize..3000) {
        let d = TempDir::new().unwrap();
        let mem = RocksDbMemory::new(8 << 20, 2 << 20);
        let cache = RecordCache::new(cache_bytes);
        let mut stores: Vec<Box<dyn KeyValueStore>> = Vec::new();
        let mut forwarded: Vec<Forwarded> = Vec::new();
        for name in ["a", "b"] {
            let f: Forwarded = Arc::default();
            let f2 = f.clone();
            let b = StoreBuilder::key_value(name).with_caching(&cache).with_flush_listener(move |k, new, _old| {
                f2.lock().unwrap().insert(k.to_vec(), new.map(<[u8]>::to_vec));
            });
            stores.push(if persistent { b.persistent(d.path().join(name), &mem).build().unwrap() } else { b.build().unwrap() });
            forwarded.push(f);
        }
        let mut models = [BTreeMap::new(), BTreeMap::new()];
        for op in &ops {
            match op {
                Op::Put(s, k, v) => {
                    stores[*s as usize].put(&[*k], v).unwrap();
                    models[*s as usize].insert(vec![*k], v.clone());
                }
                Op::Delete(s, k) => {
                    stores[*s as usize].delete(&[*k]).unwrap();
                    models[*s as usize].remove(&vec![*k]);
                }
                Op::Get(s, k) => {
                    prop_assert_eq!(stores[*s as usize].get(&[*k]).unwrap(), models[*s as usize].get(&vec![*k]).cloned());
                }
                Op::Range(s, a, b) => {
                    let got: Vec<_> = stores[*s as usize]
                        .range(Bound::Included(&[*a][..]), Bound::Excluded(&[*b][..]))
                        .unwrap()
                        .map(|r| r.unwrap())
                        .collect();
                    let want: Vec<_> = if a < b {
                        models[*s as usize].range(vec![*a]..vec![*b]).map(|(k, v)| (k.clone(), v.clone())).collect()
                    } else {
                        Vec::new()
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Flush(s) => stores[*s as usize].flush().unwrap(),
            }
            prop_assert!(cache.stats().bytes as usize <= cache_bytes, "over bound: {:?}", cache.stats());
        }
        for (i, store) in stores.iter_mut().enumerate() {
            let all: BTreeMap<_, _> = store.all().unwrap().map(|r| r.unwrap()).collect();
            prop_assert_eq!(&all, &models[i]);
            store.flush().unwrap();
            // Downstream saw, for every key touched, its final value.
            let f = forwarded[i].lock().unwrap();
            for (k, v) in f.iter() {
                prop_assert_eq!(v.as_ref(), models[i].get(k));
            }
            for k in models[i].keys() {
                prop_assert!(f.contains_key(k));
            }
        }
    }
}

#[test]
fn repeated_writes_merge_into_one_changelog_record() {
    let sent = Arc::new(Mutex::new(0usize));
    let s2 = sent.clone();
    let cache = RecordCache::new(1 << 20);
    let mut store = StoreBuilder::key_value("counts")
        .with_logging(move |_: &[u8], _: Option<&[u8]>, _: i64| {
            *s2.lock().unwrap() += 1;
            Ok(())
        })
        .with_caching(&cache)
        .build()
        .unwrap();
    for i in 0..1000u32 {
        // Read-modify-write of 10 counters.
        let k = [(i % 10) as u8];
        let n = store
            .get(&k)
            .unwrap()
            .map_or(0, |v| u32::from_be_bytes(v.try_into().unwrap()));
        store.put(&k, &(n + 1).to_be_bytes()).unwrap();
    }
    assert_eq!(*sent.lock().unwrap(), 0);
    store.flush().unwrap();
    assert_eq!(*sent.lock().unwrap(), 10);
    assert_eq!(
        store.get(&[3]).unwrap(),
        Some(100u32.to_be_bytes().to_vec())
    );
    assert!(cache.stats().hits >= 990);
}
