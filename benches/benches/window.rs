//! Windowed count throughput beside its baseline, a plain (unwindowed) count of the same
//! records: tumbling and hopping windows, RocksDB and in-memory stores, through the test
//! driver (the real processors and stores, committing every 1,000 records).
//!
//! Run: `cargo bench -p streams-benches --bench window`.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use streams_core::{DriverConfig, Record, TestDriver, Topology};
use streams_dsl::prelude::*;

const RECORDS: i64 = 20_000;
const KEYS: i64 = 100;

/// 20,000 records over 100 keys, one per millisecond: 20 one-second windows.
fn input() -> Vec<Record> {
    (0..RECORDS)
        .map(|i| {
            let key = format!("key-{:03}", (i * 37) % KEYS);
            Record::new(key, "v", i)
        })
        .collect()
}

fn topology(windows: Option<TimeWindows>, in_memory: bool) -> Topology {
    let b = StreamsBuilder::new();
    let grouped = b
        .stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred());
    let mut materialized = Materialized::named("counts");
    if in_memory {
        materialized = materialized.in_memory();
    }
    match windows {
        Some(w) => grouped
            .windowed_by(w)
            .count(materialized)
            .to_stream()
            .to("out", Produced::inferred()),
        None => grouped
            .count(materialized)
            .to_stream()
            .to("out", Produced::inferred()),
    }
    b.build().unwrap()
}

/// A fresh driver (built outside the timed part: opening RocksDB is not what is measured).
fn driver(topology: &Topology) -> TestDriver {
    let config = DriverConfig::default().with_commit_every_record(false);
    TestDriver::with_config(topology, config).unwrap()
}

/// Pipes the input, committing every 1,000 records; returns the driver so that dropping it
/// (and its stores) happens outside the timed part.
fn run(mut d: TestDriver, input: &[Record]) -> TestDriver {
    for (i, r) in input.iter().enumerate() {
        d.pipe("in", r.clone()).unwrap();
        if i % 1_000 == 999 {
            d.commit().unwrap();
        }
    }
    d.commit().unwrap();
    assert!(!d.read_output("out").is_empty());
    d
}

fn windowed_count(c: &mut Criterion) {
    let input = input();
    let second = Duration::from_secs(1);
    let cases = [
        ("count", None),
        (
            "tumbling_1s",
            Some(TimeWindows::of_size_with_no_grace(second)),
        ),
        (
            "hopping_1s_by_250ms",
            Some(TimeWindows::of_size_with_no_grace(second).advance_by(second / 4)),
        ),
    ];
    let mut group = c.benchmark_group("windowed_count");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS as u64));
    for in_memory in [false, true] {
        let backend = if in_memory { "in_memory" } else { "rocksdb" };
        for (name, windows) in cases {
            let topo = topology(windows, in_memory);
            group.bench_function(format!("{name}/{backend}"), |bench| {
                bench.iter_batched(
                    || driver(&topo),
                    |d| run(d, &input),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, windowed_count);
criterion_main!(benches);
