//! Micro-benchmarks of the per-record hot paths not covered by `log` and `store`: decoding a
//! polled batch into typed records, the built-in serdes, a cache hit, and window-store
//! lookups.
//!
//! Run: `cargo bench -p streams-benches --bench hot_paths`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use state_store::{RecordCache, RocksDbMemory, StoreBuilder, WindowStore};
use streams_core::{
    EmbeddedLog, I64Serde, IsolationLevel, Log, Record, Serde, StringSerde, TopicConfig,
    TopicPartition,
};
use tempfile::TempDir;

const BATCH: usize = 1_000;

fn key(i: u64) -> String {
    format!("user-{:08}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000)
}

/// What a source does with a poll: read a batch of 1,000 records from the embedded log and
/// decode keys (String) and values (i64).
fn batch_decode(c: &mut Criterion) {
    let dir = TempDir::new().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::new(1)).unwrap();
    let tp = TopicPartition::new("t", 0);
    let records: Vec<Record> = (0..BATCH as u64)
        .map(|i| {
            let mut v = Vec::new();
            I64Serde
                .serialize_into(&((i % 100) as i64), &mut v)
                .unwrap();
            Record::new(key(i), v, 1_700_000_000_000 + i as i64)
        })
        .collect();
    log.append(&tp, &records).unwrap();

    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("read", |b| {
        b.iter(|| {
            let fetch = log
                .read(&tp, 0, BATCH, IsolationLevel::ReadCommitted)
                .unwrap();
            assert_eq!(fetch.records.len(), BATCH);
            fetch
        })
    });
    group.bench_function("read_and_decode", |b| {
        b.iter(|| {
            let fetch = log
                .read(&tp, 0, BATCH, IsolationLevel::ReadCommitted)
                .unwrap();
            let mut sum = 0i64;
            for r in &fetch.records {
                let k = StringSerde
                    .deserialize(r.record.key.as_deref().unwrap())
                    .unwrap();
                let v = I64Serde
                    .deserialize(r.record.value.as_deref().unwrap())
                    .unwrap();
                sum += v + k.len() as i64;
            }
            sum
        })
    });
    group.finish();
}

fn serdes(c: &mut Criterion) {
    let mut group = c.benchmark_group("serde");
    group.throughput(Throughput::Elements(1));
    let k = key(42);
    let mut buf = Vec::with_capacity(64);
    group.bench_function("string_serialize", |b| {
        b.iter(|| {
            buf.clear();
            StringSerde.serialize_into(black_box(&k), &mut buf).unwrap();
        })
    });
    let bytes = k.clone().into_bytes();
    group.bench_function("string_deserialize", |b| {
        b.iter(|| StringSerde.deserialize(black_box(&bytes)).unwrap())
    });
    group.bench_function("i64_serialize", |b| {
        b.iter(|| {
            buf.clear();
            I64Serde
                .serialize_into(black_box(&12_345), &mut buf)
                .unwrap();
        })
    });
    let mut v = Vec::new();
    I64Serde.serialize_into(&12_345, &mut v).unwrap();
    group.bench_function("i64_deserialize", |b| {
        b.iter(|| I64Serde.deserialize(black_box(&v)).unwrap())
    });
    group.finish();
}

/// Reads and writes of keys the write-back cache already holds (1,000 hot keys), over an
/// in-memory and a RocksDB backend: the cache alone should set the cost.
fn cache_hit(c: &mut Criterion) {
    let memory = RocksDbMemory::default();
    let mut group = c.benchmark_group("cache_hit");
    group.throughput(Throughput::Elements(1));
    for persistent in [false, true] {
        let dir = TempDir::new().unwrap();
        let mut b = StoreBuilder::key_value("c").with_caching(&RecordCache::new(10 << 20));
        if persistent {
            b = b.persistent(dir.path().join("c"), &memory);
        }
        let mut store = b.build().unwrap();
        let keys: Vec<Vec<u8>> = (0..1_000u64).map(|i| key(i).into_bytes()).collect();
        for k in &keys {
            store.put(k, &0i64.to_be_bytes()).unwrap();
        }
        let name = if persistent { "rocksdb" } else { "in_memory" };
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("get", name), |bench| {
            bench.iter(|| {
                i = (i + 1) % keys.len();
                store.get(&keys[i]).unwrap().unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("put", name), |bench| {
            bench.iter(|| {
                i = (i + 1) % keys.len();
                store.put(&keys[i], &(i as i64).to_be_bytes()).unwrap();
            })
        });
    }
    group.finish();
}

/// Window-store lookups: 1,000 keys × 60 one-second windows in RocksDB (uncached), then the
/// value of one window (`fetch_one`) and the windows of one key over 10 s (`fetch`).
fn window_lookup(c: &mut Criterion) {
    const KEYS: u64 = 1_000;
    const WINDOWS: i64 = 60;
    let memory = RocksDbMemory::default();
    let dir = TempDir::new().unwrap();
    let mut store: Box<dyn WindowStore> = StoreBuilder::window("w", 3_600_000)
        .persistent(dir.path().join("w"), &memory)
        .build()
        .unwrap();
    let base = 1_700_000_000_000i64;
    for w in 0..WINDOWS {
        for k in 0..KEYS {
            store
                .put(
                    key(k).as_bytes(),
                    Some(&1i64.to_be_bytes()),
                    base + w * 1_000,
                )
                .unwrap();
        }
    }
    store.flush().unwrap();
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("fetch_one", |b| {
        b.iter(|| {
            i += 1;
            let w = (i % WINDOWS as u64) as i64;
            store
                .fetch_one(key(i % KEYS).as_bytes(), base + w * 1_000)
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("fetch_10_windows", |b| {
        b.iter(|| {
            i += 1;
            let n = store
                .fetch(key(i % KEYS).as_bytes(), base + 10_000, base + 19_000)
                .unwrap()
                .count();
            assert_eq!(n, 10);
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = batch_decode, serdes, cache_hit, window_lookup
}
criterion_main!(benches);
