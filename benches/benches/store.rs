//! State store micro-benchmarks: each backend side by side, cached vs uncached
//! read-modify-write, and restore throughput.
//!
//! Run: `cargo bench -p streams-benches --bench store`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use state_store::{
    restore, ChangelogRecord, KeyValueStore, RecordCache, RestoreOptions, RocksDbMemory,
    StoreBuilder,
};
use tempfile::TempDir;

const KEYS: u64 = 100_000;
const VALUE: [u8; 100] = [7; 100];

fn key(i: u64) -> [u8; 8] {
    // Spread consecutive indices over the key space, like hashed record keys.
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % KEYS).to_be_bytes()
}

struct Backend {
    name: &'static str,
    _dir: TempDir,
    store: Box<dyn KeyValueStore>,
}

fn backends(memory: &RocksDbMemory) -> Vec<Backend> {
    let mem_dir = TempDir::new().unwrap();
    let rocks_dir = TempDir::new().unwrap();
    let rocks = StoreBuilder::key_value("bench")
        .persistent(rocks_dir.path().join("bench"), memory)
        .build()
        .unwrap();
    vec![
        Backend {
            name: "in_memory",
            _dir: mem_dir,
            store: StoreBuilder::key_value("bench").build().unwrap(),
        },
        Backend {
            name: "rocksdb",
            _dir: rocks_dir,
            store: rocks,
        },
    ]
}

fn put_get(c: &mut Criterion) {
    let memory = RocksDbMemory::default();
    let mut group = c.benchmark_group("kv");
    group.throughput(Throughput::Elements(1));
    for mut b in backends(&memory) {
        let mut i = 0u64;
        group.bench_function(BenchmarkId::new("put", b.name), |bench| {
            bench.iter(|| {
                i += 1;
                b.store.put(&key(i), &VALUE).unwrap();
            })
        });
        for j in 0..KEYS {
            b.store.put(&key(j), &VALUE).unwrap();
        }
        b.store.flush().unwrap();
        group.bench_function(BenchmarkId::new("get", b.name), |bench| {
            bench.iter(|| {
                i += 1;
                assert!(b.store.get(&key(i)).unwrap().is_some());
            })
        });
    }
    group.finish();
}

/// Counting over 1,000 hot keys, committing (flushing) every 10,000 updates: the cache merges
/// the repeated writes, the uncached store writes RocksDB and the changelog every time.
fn read_modify_write(c: &mut Criterion) {
    let memory = RocksDbMemory::default();
    let mut group = c.benchmark_group("rmw_rocksdb_logged");
    group.throughput(Throughput::Elements(1));
    for cached in [false, true] {
        let dir = TempDir::new().unwrap();
        let mut builder = StoreBuilder::key_value("counts")
            .persistent(dir.path().join("counts"), &memory)
            .with_logging(|_: &[u8], _: Option<&[u8]>, _: i64| Ok(()));
        if cached {
            builder = builder.with_caching(&RecordCache::new(10 << 20));
        }
        let mut store = builder.build().unwrap();
        let mut i = 0u64;
        let name = if cached { "cached" } else { "uncached" };
        group.bench_function(name, |bench| {
            bench.iter(|| {
                i += 1;
                let k = (i % 1_000).to_be_bytes();
                let n = store
                    .get(&k)
                    .unwrap()
                    .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
                store.put(&k, &(n + 1).to_be_bytes()).unwrap();
                if i.is_multiple_of(10_000) {
                    store.flush().unwrap();
                }
            })
        });
    }
    group.finish();
}

fn restore_throughput(c: &mut Criterion) {
    const N: u64 = 100_000;
    let memory = RocksDbMemory::default();
    let records: Vec<ChangelogRecord> = (0..N)
        .map(|i| ChangelogRecord {
            offset: i,
            key: key(i).to_vec(),
            value: Some(VALUE.to_vec()),
        })
        .collect();
    let mut group = c.benchmark_group("restore");
    group.throughput(Throughput::Elements(N));
    for persistent in [false, true] {
        let dir = TempDir::new().unwrap();
        let name = if persistent { "rocksdb" } else { "in_memory" };
        group.bench_function(name, |bench| {
            bench.iter_batched(
                || {
                    let b = StoreBuilder::key_value("r");
                    let mut s = if persistent {
                        b.persistent(dir.path().join("r"), &memory).build().unwrap()
                    } else {
                        b.build().unwrap()
                    };
                    s.wipe().unwrap();
                    s
                },
                |mut s| {
                    let summary = restore(
                        s.as_mut(),
                        records.iter().cloned().map(Ok),
                        &RestoreOptions::default(),
                    )
                    .unwrap();
                    assert_eq!(summary.records, N);
                    s
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = put_get, read_modify_write, restore_throughput
}
criterion_main!(benches);
