//! Helpers shared by the runtime tests: input generation, reading topics back, a reference
//! count.
#![allow(dead_code, clippy::unwrap_used)]

pub(crate) mod logs;

use std::collections::BTreeMap;
use std::sync::Arc;

use streams_core::{
    partition_for_key, EmbeddedLog, I64Serde, IsolationLevel, Log, OptionSerde, Record, Serde,
    StringSerde, TopicConfig, TopicPartition, Topology,
};
use streams_dsl::prelude::*;

/// `n` records over `keys` keys (`k0`..), values `k<i>:<seq>` numbering each key's records,
/// timestamps 1 ms apart. Returned in input order, and appended to `topic` by key.
pub(crate) fn write_input(
    log: &dyn Log,
    topic: &str,
    partitions: u32,
    n: usize,
    keys: usize,
) -> Vec<(String, String)> {
    log.create_topic(topic, TopicConfig::new(partitions))
        .unwrap();
    let mut per_key = vec![0usize; keys];
    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    let mut all = Vec::with_capacity(n);
    // A fixed LCG keeps the input the same on every run without another dependency.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..n {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let k = ((x >> 33) as usize) % keys;
        let key = format!("k{k}");
        let value = format!("{key}:{}", per_key[k]);
        per_key[k] += 1;
        let p = partition_for_key(key.as_bytes(), partitions);
        by_partition
            .entry(p)
            .or_default()
            // From 1: Kafka cannot carry time 0 (librdkafka sends it as "now").
            .push(Record::new(key.clone(), value.clone(), i as i64 + 1));
        all.push((key, value));
    }
    for (p, records) in by_partition {
        for chunk in records.chunks(500) {
            log.append(&TopicPartition::new(topic, p), chunk).unwrap();
        }
    }
    all
}

/// Every record of a topic visible to read-committed readers, per partition in offset order,
/// up to each partition's last stable offset (an empty fetch before it, as a Kafka consumer
/// polls past aborted transactions, does not end the read).
pub(crate) fn read_topic(log: &dyn Log, topic: &str) -> Vec<Vec<Record>> {
    let partitions = log.describe_topic(topic).unwrap().partitions;
    (0..partitions)
        .map(|p| {
            let tp = TopicPartition::new(topic, p);
            let end = log.end_offset(&tp, IsolationLevel::ReadCommitted).unwrap();
            let mut offset = log.start_offset(&tp).unwrap();
            let mut out = Vec::new();
            let started = std::time::Instant::now();
            while offset < end {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(120),
                    "reading {tp} stalled at {offset} of {end}"
                );
                let fetch = log
                    .read(&tp, offset, 10_000, IsolationLevel::ReadCommitted)
                    .unwrap();
                offset = fetch.next_offset;
                out.extend(fetch.records.into_iter().map(|r| r.record));
            }
            out
        })
        .collect()
}

/// Decodes a string-keyed topic.
pub(crate) fn decode<V: 'static>(records: &[Record], values: &dyn Serde<V>) -> Vec<(String, V)> {
    records
        .iter()
        .map(|r| {
            (
                StringSerde.deserialize(r.key.as_deref().unwrap()).unwrap(),
                values.deserialize(r.value.as_deref().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Records per key.
pub(crate) fn reference_counts(input: &[(String, String)]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for (k, _) in input {
        *counts.entry(k.clone()).or_insert(0) += 1;
    }
    counts
}

/// `input` → `echo` unchanged, and `input` → count per key (store `counts`) → `counts-out`.
pub(crate) fn counting_topology() -> Topology {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, String>("input", Consumed::default());
    input.to("echo", Produced::default());
    input
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            "counts-out",
            Produced::with(StringSerde, OptionSerde(I64Serde)),
        );
    b.build().unwrap()
}

/// The last value per key in `counts-out`.
pub(crate) fn final_counts(log: &dyn Log) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for part in read_topic(log, "counts-out") {
        for (k, v) in decode(&part, &I64Serde) {
            out.insert(k, v);
        }
    }
    out
}

/// Opens the embedded log of a state directory.
pub(crate) fn open_log(state_dir: &std::path::Path) -> Arc<EmbeddedLog> {
    Arc::new(EmbeddedLog::open(state_dir.join("log")).unwrap())
}
