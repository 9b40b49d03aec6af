//! The embedded runtime over a real Kafka-protocol broker (feature `kafka`): a topology that
//! counts by key and joins a stream with a table gives the same output on Kafka as on the
//! embedded log, and exactly-once commits each record once.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../streams-core/tests/support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{decode, open_log, read_topic, reference_counts, write_input};
use streams_core::{
    I64Serde, KafkaLog, Log, OptionSerde, ProcessingGuarantee, StringSerde, Topology,
};
use streams_core::{Streams, StreamsConfig, StreamsState};
use streams_dsl::prelude::*;

const WAIT: Duration = Duration::from_secs(120);

/// Topic names of one run, unique on the shared broker.
struct Names {
    input: String,
    echo: String,
    counts: String,
    rates: String,
    joined: String,
}

impl Names {
    fn new(prefix: &str) -> Names {
        let base = kafka_broker::unique(prefix);
        Names {
            input: format!("{base}-input"),
            echo: format!("{base}-echo"),
            counts: format!("{base}-counts-out"),
            rates: format!("{base}-rates"),
            joined: format!("{base}-joined"),
        }
    }
}

/// The runtime tests' counting topology with these names: `input` → `echo` unchanged, and
/// `input` → count per key (store `counts`) → `counts-out`; with `join`, also `input` joined
/// with the table `rates` → `joined`.
fn counting_topology(names: &Names, join: bool) -> Topology {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, String>(names.input.as_str(), Consumed::default());
    input.to(names.echo.as_str(), Produced::default());
    if join {
        let rates = b.table::<String, String>(
            &names.rates,
            Consumed::default(),
            Materialized::named("rates"),
        );
        input
            .join(&rates, |v, r| format!("{v}@{r}"))
            .to(names.joined.as_str(), Produced::default());
    }
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
type Outputs = (
    BTreeMap<String, Vec<String>>,
    BTreeMap<String, i64>,
    BTreeMap<String, Vec<String>>,
);

/// Runs the topology over `log` until it has processed everything; returns (echo by key,
/// final counts, join outputs by key).
fn run(log: Arc<dyn Log>, names: &Names, app: &str, state: &std::path::Path) -> Outputs {
    let config = StreamsConfig::new(app, state)
        .with_threads(2)
        .with_commit_interval(Duration::from_millis(100));
    let streams = Streams::new(counting_topology(names, true), config, log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    streams.close().unwrap();
    let by_key = |topic: &str| {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for part in read_topic(&*log, topic) {
            for (k, v) in decode(&part, &StringSerde) {
                out.entry(k).or_default().push(v);
            }
        }
        out
    };
    let echo = by_key(&names.echo);
    let mut counts = BTreeMap::new();
    for part in read_topic(&*log, &names.counts) {
        for (k, v) in decode(&part, &I64Serde) {
            counts.insert(k, v);
        }
    }
    (echo, counts, by_key(&names.joined))
}

/// Rates for the first 30 of the 40 keys, at time 1 (before all but the first input record).
fn write_rates(log: &dyn Log, topic: &str, partitions: u32) -> BTreeMap<String, String> {
    log.create_topic(topic, streams_core::TopicConfig::new(partitions))
        .unwrap();
    let mut rates = BTreeMap::new();
    for k in 0..30 {
        let key = format!("k{k}");
        let rate = format!("rate{k}");
        let tp = streams_core::TopicPartition::new(
            topic,
            streams_core::partition_for_key(key.as_bytes(), partitions),
        );
        log.append(
            &tp,
            &[streams_core::Record::new(key.clone(), rate.clone(), 1)],
        )
        .unwrap();
        rates.insert(key, rate);
    }
    rates
}

#[test]
fn kafka_counting_topology_matches_the_embedded_log() {
    let names = Names::new("count");
    let (partitions, n, keys) = (4, 2_000, 40);

    let dir = tempfile::tempdir().unwrap();
    let embedded = open_log(dir.path());
    let rates = write_rates(&*embedded, &names.rates, partitions);
    let input = write_input(&*embedded, &names.input, partitions, n, keys);
    let on_embedded = run(embedded, &names, "count-embedded", &dir.path().join("a"));

    let kafka: Arc<dyn Log> = Arc::new(kafka_broker::connect());
    write_rates(&*kafka, &names.rates, partitions);
    let same_input = write_input(&*kafka, &names.input, partitions, n, keys);
    assert_eq!(input, same_input);
    let started = Instant::now();
    let app = kafka_broker::unique("count-app");
    let on_kafka = run(kafka.clone(), &names, &app, &dir.path().join("b"));
    eprintln!("{n} records through Kafka in {:?}", started.elapsed());

    assert_eq!(on_kafka.1, reference_counts(&input));
    // Every input record whose key has a rate is joined with it, in order (the first record
    // ties with the rates' time 1, and both logs break the tie the same way).
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &input[1..] {
        if let Some(r) = rates.get(k) {
            expected
                .entry(k.clone())
                .or_default()
                .push(format!("{v}@{r}"));
        }
    }
    let mut joined = on_kafka.2.clone();
    let (k0, v0) = &input[0];
    if let Some(first) = joined.get_mut(k0) {
        first.retain(|j| !j.starts_with(&format!("{v0}@")));
    }
    joined.retain(|_, v| !v.is_empty());
    assert_eq!(joined, expected, "join outputs");
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

/// Exactly-once on Kafka commits: every input record is echoed and counted once, as read
/// by a read-committed reader, and the group's offsets are those of the input's end.
#[test]
fn kafka_exactly_once_commits_each_record_once() {
    let names = Names::new("eos");
    let dir = tempfile::tempdir().unwrap();
    let log = KafkaLog::connect(
        kafka_broker::config().with_transactional_id_prefix(kafka_broker::unique("eos-txn")),
    )
    .unwrap();
    let log: Arc<dyn Log> = Arc::new(log);
    let partitions = 2;
    let input = write_input(&*log, &names.input, partitions, 400, 5);
    let app = kafka_broker::unique("eos-app");
    let config = StreamsConfig::new(&app, dir.path())
        .with_threads(2)
        .with_commit_interval(Duration::from_millis(100))
        .with_guarantee(ProcessingGuarantee::ExactlyOnce);
    let streams = Streams::new(counting_topology(&names, false), config, log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    assert_eq!(streams.state(), StreamsState::Running);
    streams.close().unwrap();
    // The coordinator writes the last commit's markers after the commit returns.
    for topic in [&names.counts, &names.echo] {
        wait_stable(&*log, topic);
    }

    let mut counts = BTreeMap::new();
    for part in read_topic(&*log, &names.counts) {
        for (k, v) in decode(&part, &I64Serde) {
            counts.insert(k, v);
        }
    }
    assert_eq!(counts, reference_counts(&input));
    let mut echoed: Vec<(String, String)> = read_topic(&*log, &names.echo)
        .iter()
        .flat_map(|part| decode(part, &StringSerde))
        .collect();
    echoed.sort();
    let mut expected = input.clone();
    expected.sort();
    assert_eq!(echoed, expected, "each input record echoed exactly once");
    // The input offsets went into the transactions.
    for p in 0..partitions {
        let tp = streams_core::TopicPartition::new(&names.input, p);
        assert_eq!(
            log.committed_offset(&app, &tp).unwrap(),
            Some(
                log.end_offset(&tp, streams_core::IsolationLevel::ReadCommitted)
                    .unwrap()
            ),
            "{tp}"
        );
    }
}

/// Waits until no transaction is open on any partition of `topic`: read-committed readers
/// see everything appended.
fn wait_stable(log: &dyn Log, topic: &str) {
    let partitions = log.describe_topic(topic).unwrap().partitions;
    let started = Instant::now();
    for p in 0..partitions {
        let tp = streams_core::TopicPartition::new(topic, p);
        loop {
            let stable = log
                .end_offset(&tp, streams_core::IsolationLevel::ReadCommitted)
                .unwrap();
            let end = log
                .end_offset(&tp, streams_core::IsolationLevel::ReadUncommitted)
                .unwrap();
            if stable == end {
                break;
            }
            assert!(
                started.elapsed() < WAIT,
                "{tp}: last stable offset {stable} < end {end} after {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An application reset on Kafka: refused while the application's group has members; once
/// it is closed, the input offsets go back to the start, the changelog is deleted, the local
/// state is removed, and a second run counts every record once again (not twice).
#[test]
fn kafka_reset_application_replays_to_the_same_result() {
    let names = Names::new("reset");
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = Arc::new(kafka_broker::connect());
    let input = write_input(&*log, &names.input, 2, 300, 10);
    let app = kafka_broker::unique("reset-app");
    let reset = streams_core::ApplicationReset::new(app.as_str(), [names.input.as_str()])
        .with_state_dir(dir.path());
    let run = |check_refusal: bool| -> BTreeMap<String, i64> {
        let config =
            StreamsConfig::new(&app, dir.path()).with_commit_interval(Duration::from_millis(100));
        let streams = Streams::new(counting_topology(&names, false), config, log.clone()).unwrap();
        streams.start().unwrap();
        streams.wait_until_caught_up(WAIT).unwrap();
        if check_refusal {
            match reset.plan(&*log) {
                Err(streams_core::Error::InvalidState { state, .. }) => {
                    assert!(state.contains("active member"), "{state}");
                }
                other => panic!("a reset of a running application: {other:?}"),
            }
        }
        let counts = streams
            .key_value_store("counts", Arc::new(StringSerde), Arc::new(I64Serde))
            .unwrap()
            .all()
            .unwrap()
            .into_iter()
            .collect();
        streams.close().unwrap();
        counts
    };
    let want = reference_counts(&input);
    assert_eq!(run(true), want);

    let done = reset.run(&*log).unwrap();
    assert_eq!(
        done.internal_topics,
        vec![format!("{app}-counts-changelog")]
    );
    assert!(done.offsets.iter().all(|m| m.new == 0 && m.old.is_some()));
    assert!(!done.local_state.is_empty());
    assert!(!log
        .list_topics()
        .unwrap()
        .contains(&format!("{app}-counts-changelog")));
    assert_eq!(run(false), want, "the replay counts each record once");
}
