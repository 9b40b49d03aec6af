#![allow(missing_docs)]
//! Append and sequential-read throughput of the embedded log, 100-byte values.
//!
//! `cargo bench -p streams-benches --bench log`; figures in benches/README.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use streams_core::{
    EmbeddedLog, EmbeddedLogConfig, FsyncPolicy, IsolationLevel, Log, Record, TopicConfig,
    TopicPartition,
};

const RECORDS: usize = 100_000;
const BATCH: usize = 500;
const VALUE_BYTES: usize = 100;

fn records() -> Vec<Record> {
    (0..RECORDS)
        .map(|i| {
            Record::new(
                format!("key-{:06}", i % 10_000),
                vec![b'v'; VALUE_BYTES],
                i as i64,
            )
        })
        .collect()
}

fn open(dir: &std::path::Path) -> EmbeddedLog {
    let config = EmbeddedLogConfig::default()
        .with_fsync(FsyncPolicy::Never)
        .with_cleaner_interval(None);
    let log = EmbeddedLog::open_with(dir, config).expect("open log");
    log.create_topic("bench", TopicConfig::new(1))
        .expect("create topic");
    log
}

fn payload_bytes(records: &[Record]) -> u64 {
    records
        .iter()
        .map(|r| (r.key.as_ref().map_or(0, Vec::len) + VALUE_BYTES) as u64)
        .sum()
}

fn bench_append(c: &mut Criterion) {
    let input = records();
    let tp = TopicPartition::new("bench", 0);
    let mut group = c.benchmark_group("log_append");
    group.sample_size(10);
    for (name, throughput) in [
        ("records", Throughput::Elements(RECORDS as u64)),
        ("bytes", Throughput::Bytes(payload_bytes(&input))),
    ] {
        group.throughput(throughput);
        group.bench_function(format!("100B_values_batch{BATCH}/{name}"), |b| {
            b.iter_batched(
                || tempfile::tempdir().expect("tempdir"),
                |dir| {
                    let log = open(dir.path());
                    for chunk in input.chunks(BATCH) {
                        log.append(&tp, chunk).expect("append");
                    }
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    let input = records();
    let tp = TopicPartition::new("bench", 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    for chunk in input.chunks(BATCH) {
        log.append(&tp, chunk).expect("append");
    }
    let mut group = c.benchmark_group("log_read");
    group.sample_size(10);
    for (name, throughput) in [
        ("records", Throughput::Elements(RECORDS as u64)),
        ("bytes", Throughput::Bytes(payload_bytes(&input))),
    ] {
        group.throughput(throughput);
        group.bench_function(format!("sequential_100B_values/{name}"), |b| {
            b.iter(|| {
                let mut offset = 0;
                let mut n = 0;
                while n < RECORDS {
                    let fetch = log
                        .read(&tp, offset, 1000, IsolationLevel::ReadUncommitted)
                        .expect("read");
                    n += fetch.records.len();
                    offset = fetch.next_offset;
                }
                n
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_append, bench_read);
criterion_main!(benches);
