//! The embedded runtime over a real Kafka-protocol broker (feature `kafka`): a counting
//! topology gives the same output on Kafka as on the embedded log, and exactly-once, which the
//! test broker cannot commit, stops the application with an error that says why.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../streams-core/tests/support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{decode, open_log, read_topic, reference_counts, write_input};
use streams_core::runtime::{Streams, StreamsConfig, StreamsState};
use streams_core::{
    I64Serde, KafkaLog, Log, OptionSerde, ProcessingGuarantee, StringSerde, Topology,
};
use streams_dsl::prelude::*;

const WAIT: Duration = Duration::from_secs(120);

/// Topic names of one run, unique on the shared broker.
struct Names {
    input: String,
    echo: String,
    counts: String,
}

impl Names {
    fn new(prefix: &str) -> Names {
        let base = kafka_broker::unique(prefix);
        Names {
            input: format!("{base}-input"),
            echo: format!("{base}-echo"),
            counts: format!("{base}-counts-out"),
        }
    }
}

/// The runtime tests' counting topology with these names: `input` → `echo` unchanged, and
/// `input` → count per key (store `counts`) → `counts-out`.
fn counting_topology(names: &Names) -> Topology {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, String>(names.input.as_str(), Consumed::default());
    input.to(names.echo.as_str(), Produced::default());
    input
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            names.counts.as_str(),
            Produced::with(StringSerde, OptionSerde(I64Serde)),
        );
    b.build().unwrap()
}

/// Runs the topology over `log` until it has processed everything; returns (echo by key,
/// final counts).
fn run(
    log: Arc<dyn Log>,
    names: &Names,
    app: &str,
    state: &std::path::Path,
) -> (BTreeMap<String, Vec<String>>, BTreeMap<String, i64>) {
    let config = StreamsConfig::new(app, state)
        .with_threads(2)
        .with_commit_interval(Duration::from_millis(100));
    let streams = Streams::new(counting_topology(names), config, log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    streams.close().unwrap();
    let mut echo: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in read_topic(&*log, &names.echo) {
        for (k, v) in decode(&part, &StringSerde) {
            echo.entry(k).or_default().push(v);
        }
    }
    let mut counts = BTreeMap::new();
    for part in read_topic(&*log, &names.counts) {
        for (k, v) in decode(&part, &I64Serde) {
            counts.insert(k, v);
        }
    }
    (echo, counts)
}

#[test]
fn kafka_counting_topology_matches_the_embedded_log() {
    let names = Names::new("count");
    let (partitions, n, keys) = (4, 2_000, 40);

    let dir = tempfile::tempdir().unwrap();
    let embedded = open_log(dir.path());
    let input = write_input(&*embedded, &names.input, partitions, n, keys);
    let on_embedded = run(embedded, &names, "count-embedded", &dir.path().join("a"));

    let kafka: Arc<dyn Log> = Arc::new(kafka_broker::connect());
    let same_input = write_input(&*kafka, &names.input, partitions, n, keys);
    assert_eq!(input, same_input);
    let started = Instant::now();
    let app = kafka_broker::unique("count-app");
    let on_kafka = run(kafka.clone(), &names, &app, &dir.path().join("b"));
    eprintln!("{n} records through Kafka in {:?}", started.elapsed());

    assert_eq!(on_kafka.1, reference_counts(&input));
    assert_eq!(on_kafka, on_embedded);
    // The changelog is a compacted topic on the broker.
    let changelog = kafka
        .describe_topic(&format!("{app}-counts-changelog"))
        .unwrap();
    assert_eq!(changelog.partitions, partitions);
    assert_eq!(
        changelog.cleanup_policy,
        streams_core::CleanupPolicy::Compact
    );
}

#[test]
fn kafka_exactly_once_stops_with_the_brokers_missing_support() {
    let names = Names::new("eos");
    let dir = tempfile::tempdir().unwrap();
    let log = KafkaLog::connect(
        kafka_broker::config()
            .with_timeout(Duration::from_secs(10))
            .with_transactional_id_prefix(kafka_broker::unique("eos-txn")),
    )
    .unwrap();
    let log: Arc<dyn Log> = Arc::new(log);
    write_input(&*log, &names.input, 2, 20, 5);
    let config = StreamsConfig::new(kafka_broker::unique("eos-app"), dir.path())
        .with_commit_interval(Duration::from_millis(100))
        .with_guarantee(ProcessingGuarantee::ExactlyOnce);
    let streams = Streams::new(counting_topology(&names), config, log).unwrap();
    streams.start().unwrap();
    let started = Instant::now();
    while !matches!(streams.state(), StreamsState::Error) {
        assert!(
            started.elapsed() < WAIT,
            "still {} after {WAIT:?}",
            streams.state()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let error = streams.error().unwrap().to_string();
    assert!(error.contains("EndTxn"), "{error}");
    assert!(streams.close().is_err());
}
