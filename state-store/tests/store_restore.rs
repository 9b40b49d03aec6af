//! Changelog + restore + checkpoint: a store rebuilt from its changelog equals a model.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use state_store::{
    restore, restore_start_offset, task_dir, ChangelogPartition, ChangelogRecord, Checkpoint,
    KeyValueStore, RecordCache, RecordClock, RestoreOptions, RocksDbMemory, StoreBuilder,
    StoreError,
};
use tempfile::TempDir;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    Delete(u8),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..24, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..24).prop_map(Op::Delete),
        1 => Just(Op::Flush),
    ]
}

type Log = Arc<Mutex<Vec<ChangelogRecord>>>;

/// A sink that appends to a Vec, numbering records like a log partition would.
fn capture(
    log: &Log,
) -> impl FnMut(&[u8], Option<&[u8]>, i64) -> Result<(), StoreError> + Send + 'static {
    let log = log.clone();
    move |k, v, _ts| {
        let mut l = log.lock().unwrap();
        let offset = l.len() as u64;
        l.push(ChangelogRecord {
            offset,
            key: k.to_vec(),
            value: v.map(<[u8]>::to_vec),
        });
        Ok(())
    }
}

fn contents(s: &dyn KeyValueStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
    s.all().unwrap().map(|r| r.unwrap()).collect()
}

/// Runs `ops` through cache + changelog + backend, returns the model and the changelog.
fn run(ops: &[Op], mut store: Box<dyn KeyValueStore>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                store.put(&[*k], v).unwrap();
                model.insert(vec![*k], v.clone());
            }
            Op::Delete(k) => {
                store.delete(&[*k]).unwrap();
                model.remove(&vec![*k]);
            }
            Op::Flush => store.flush().unwrap(),
        }
    }
    store.close().unwrap();
    model
}

fn records(log: &Log, from: u64) -> Vec<Result<ChangelogRecord, StoreError>> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| r.offset >= from)
        .cloned()
        .map(Ok)
        .collect()
}

fn small_batches() -> RestoreOptions {
    RestoreOptions {
        batch_size: 7,
        ..RestoreOptions::default()
    }
}

fn logged_cached(
    name: &str,
    dir: Option<&Path>,
    mem: &RocksDbMemory,
    log: &Log,
    cache: &RecordCache,
) -> Box<dyn KeyValueStore> {
    let b = StoreBuilder::key_value(name)
        .with_logging(capture(log))
        .with_caching(cache);
    match dir {
        Some(d) => b.persistent(d, mem).build().unwrap(),
        None => b.in_memory().build().unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn restore_equals_model(ops in proptest::collection::vec(op(), 0..200), persistent: bool, cache_bytes in 256usize..4096) {
        let d = TempDir::new().unwrap();
        let mem = RocksDbMemory::new(8 << 20, 2 << 20);
        let log: Log = Arc::default();
        let cache = RecordCache::new(cache_bytes);
        let dir = persistent.then(|| d.path().join("kv"));
        let model = run(&ops, logged_cached("kv", dir.as_deref(), &mem, &log, &cache));

        // Rebuild: no checkpoint, so the store is wiped and the whole changelog replayed.
        let mut fresh = logged_cached("kv", dir.as_deref(), &mem, &Arc::default(), &cache);
        let start = restore_start_offset(fresh.as_mut(), None).unwrap();
        prop_assert_eq!(start, 0);
        let summary = restore(fresh.as_mut(), records(&log, start), &small_batches()).unwrap();
        let n = log.lock().unwrap().len() as u64;
        prop_assert_eq!(summary.records, n);
        prop_assert_eq!(summary.next_offset, (n > 0).then_some(n));
        prop_assert_eq!(contents(fresh.as_ref()), model);
    }

    #[test]
    fn checkpoint_replays_only_the_tail(
        ops in proptest::collection::vec(op(), 1..200),
        split in 0.0f64..1.0,
    ) {
        let d = TempDir::new().unwrap();
        let mem = RocksDbMemory::new(8 << 20, 2 << 20);
        let state = d.path().join("state");
        let task = task_dir(&state, "app", "0_0");
        let dir = task.join("kv");
        let partition = ChangelogPartition::new(state_store::changelog_topic("app", "kv"), 0);
        let log: Log = Arc::default();
        let model = run(&ops, logged_cached("kv", None, &mem, &log, &RecordCache::new(1024)));
        let n = log.lock().unwrap().len() as u64;
        let m = ((n as f64) * split) as u64;

        // First life: restore up to m, checkpoint, close cleanly.
        {
            let mut s = StoreBuilder::key_value("kv").persistent(&dir, &mem).build().unwrap();
            let prefix: Vec<_> = records(&log, 0).into_iter().take(m as usize).collect();
            let summary = restore(s.as_mut(), prefix, &small_batches()).unwrap();
            prop_assert_eq!(summary.records, m);
            s.close().unwrap();
            let mut c = Checkpoint::new();
            c.set_offset(partition.clone(), m);
            c.write(&task).unwrap();
        }
        // Second life: the checkpoint says m, so only n - m records are replayed.
        let mut s = StoreBuilder::key_value("kv").persistent(&dir, &mem).build().unwrap();
        let cp = Checkpoint::read(&task).unwrap().and_then(|c| c.offset(&partition));
        prop_assert_eq!(cp, Some(m));
        let start = restore_start_offset(s.as_mut(), cp).unwrap();
        let summary = restore(s.as_mut(), records(&log, start), &small_batches()).unwrap();
        prop_assert_eq!(summary.records, n - m);
        prop_assert_eq!(contents(s.as_ref()), model);
    }
}

#[test]
fn invalid_checkpoint_forces_full_restore() {
    let d = TempDir::new().unwrap();
    let mem = RocksDbMemory::new(8 << 20, 2 << 20);
    let task = task_dir(d.path(), "app", "1_2");
    let dir = task.join("kv");
    let log: Log = Arc::default();
    let ops: Vec<Op> = (0..50u8).map(|i| Op::Put(i % 10, vec![i])).collect();
    let model = run(
        &ops,
        logged_cached("kv", None, &mem, &log, &RecordCache::new(1 << 20)),
    );
    {
        // Local data ahead of any checkpoint (a crash under at-least-once) including a key the
        // changelog never saw: it must not survive.
        let mut s = StoreBuilder::key_value("kv")
            .persistent(&dir, &mem)
            .build()
            .unwrap();
        s.put(b"garbage", b"x").unwrap();
        s.close().unwrap();
    }
    std::fs::create_dir_all(&task).unwrap();
    std::fs::write(
        Checkpoint::path(&task),
        b"kstreams-checkpoint 1\nx 0 5\ncrc32c 00000000\n",
    )
    .unwrap();
    let cp = Checkpoint::read(&task).unwrap();
    assert_eq!(cp, None);
    let mut s = StoreBuilder::key_value("kv")
        .persistent(&dir, &mem)
        .build()
        .unwrap();
    let start = restore_start_offset(s.as_mut(), None).unwrap();
    let summary = restore(s.as_mut(), records(&log, start), &RestoreOptions::default()).unwrap();
    assert_eq!(summary.records, log.lock().unwrap().len() as u64);
    assert_eq!(contents(s.as_ref()), model);
}

#[test]
fn window_and_session_stores_restore_from_their_changelogs() {
    let d = TempDir::new().unwrap();
    let mem = RocksDbMemory::new(8 << 20, 2 << 20);
    let wlog: Log = Arc::default();
    let slog: Log = Arc::default();
    let clock = RecordClock::new();
    let cache = RecordCache::new(2048);
    let mut w = StoreBuilder::window("w", 10_000)
        .with_logging(capture(&wlog))
        .with_caching(&cache)
        .with_record_clock(clock.clone())
        .build()
        .unwrap();
    let mut s = StoreBuilder::session("s", 10_000)
        .with_logging(capture(&slog))
        .build()
        .unwrap();
    for t in 0..500i64 {
        clock.set(t);
        w.put(&[(t % 7) as u8], Some(&t.to_be_bytes()), (t / 10) * 10)
            .unwrap();
        s.put(&[(t % 5) as u8], t, t + 3, &t.to_be_bytes()).unwrap();
        if t % 3 == 0 {
            s.remove(&[(t % 5) as u8], t, t + 3).unwrap();
        }
    }
    w.flush().unwrap();
    s.flush().unwrap();
    let mut w2 = StoreBuilder::window("w", 10_000)
        .persistent(d.path().join("w"), &mem)
        .build()
        .unwrap();
    let mut s2 = StoreBuilder::session("s", 10_000)
        .persistent(d.path().join("s"), &mem)
        .build()
        .unwrap();
    restore(w2.as_mut(), records(&wlog, 0), &small_batches()).unwrap();
    restore(s2.as_mut(), records(&slog, 0), &small_batches()).unwrap();
    let mut a: Vec<_> = w.all().unwrap().map(|r| r.unwrap()).collect();
    let mut b: Vec<_> = w2.all().unwrap().map(|r| r.unwrap()).collect();
    a.sort();
    b.sort();
    assert_eq!(a.len(), 350);
    assert_eq!(a, b);
    for k in 0..5u8 {
        let x: Vec<_> = s.fetch(&[k]).unwrap().map(|r| r.unwrap()).collect();
        let y: Vec<_> = s2.fetch(&[k]).unwrap().map(|r| r.unwrap()).collect();
        assert!(!x.is_empty());
        assert_eq!(x, y);
    }
    // The cache merged repeated writes: fewer changelog records than puts.
    assert!(wlog.lock().unwrap().len() < 500);
}
