#![allow(clippy::unwrap_used)]
//! A repartition topic that feeds a join is sized like the join's other input, as in Kafka
//! Streams: payments keyed by id on 2 partitions are re-keyed by currency, repartitioned and
//! joined with a rates table on 4 partitions. The repartition topic gets 4 partitions, the co-partitioning
//! check passes, and every payment meets its currency's rate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use streams_core::{partition_for_key, I64Serde, IsolationLevel, OptionSerde, Serde};
use streams_dsl::prelude::*;
use streams_dsl::{TimeWindows, WindowedSerde};

const CURRENCIES: [&str; 5] = ["EUR", "GBP", "JPY", "CHF", "USD"];

#[test]
fn a_repartition_topic_feeding_a_join_gets_the_other_inputs_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = StreamsConfig::new("repartition-join", dir.path())
        .with_threads(2)
        .with_commit_interval(Duration::from_millis(50));
    let log = Arc::new(EmbeddedLog::open(config.embedded_log_dir()).unwrap());
    log.create_topic("rates", TopicConfig::compacted(4))
        .unwrap();
    log.create_topic("payments", TopicConfig::new(2)).unwrap();
    for (i, currency) in CURRENCIES.iter().enumerate() {
        let p = partition_for_key(currency.as_bytes(), 4);
        let rate = format!("{}", i + 1);
        log.append(
            &TopicPartition::new("rates", p),
            &[Record::new(*currency, rate.as_str(), 1)],
        )
        .unwrap();
    }
    // Payment `id` is in currency `id % 5`, keyed by its id, timestamped after the rates.
    let mut expected = BTreeMap::new();
    for id in 0..200u32 {
        let key = format!("payment-{id}");
        let currency = CURRENCIES[(id % 5) as usize];
        let value = format!("{currency}:{id}");
        let p = partition_for_key(key.as_bytes(), 2);
        log.append(
            &TopicPartition::new("payments", p),
            &[Record::new(
                key.as_str(),
                value.as_str(),
                10 + i64::from(id),
            )],
        )
        .unwrap();
        expected.insert(id, format!("{id} at {}", id % 5 + 1));
    }

    let builder = StreamsBuilder::new();
    let rates = builder.table::<String, String>(
        "rates",
        Consumed::with(StringSerde, StringSerde),
        Materialized::named("rates-store"),
    );
    builder
        .stream::<String, String>("payments", Consumed::with(StringSerde, StringSerde))
        .select_key(|_, v| v.split(':').next().unwrap_or_default().to_string())
        .repartition(Repartitioned::with(StringSerde, StringSerde).named("by-currency"))
        .join(&rates, |payment, rate| {
            let id = payment.split(':').nth(1).unwrap_or_default();
            format!("{id} at {rate}")
        })
        .to("priced", Produced::with(StringSerde, StringSerde));
    let topology = builder.build().unwrap();
    let repartition = "by-currency-repartition";
    assert!(topology.internal_topics().contains_key(repartition));

    let streams = Streams::new(topology, config, log.clone()).unwrap();
    streams.start().unwrap();
    streams
        .wait_until_caught_up(Duration::from_secs(120))
        .unwrap();
    streams.close().unwrap();

    let topic = format!("repartition-join-{repartition}");
    assert_eq!(log.describe_topic(&topic).unwrap().partitions, 4);
    let mut priced = BTreeMap::new();
    for p in 0..log.describe_topic("priced").unwrap().partitions {
        let fetch = log
            .read(
                &TopicPartition::new("priced", p),
                0,
                10_000,
                IsolationLevel::ReadCommitted,
            )
            .unwrap();
        for r in fetch.records {
            let value = StringSerde.deserialize(&r.record.value.unwrap()).unwrap();
            let id: u32 = value.split(' ').next().unwrap().parse().unwrap();
            assert!(priced.insert(id, value).is_none(), "payment {id} twice");
        }
    }
    assert_eq!(priced, expected);
}

#[test]
fn repartitioned_sets_the_partition_count_and_so_the_task_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = StreamsConfig::new("repartition-count", dir.path())
        .with_commit_interval(Duration::from_millis(50));
    let log = Arc::new(EmbeddedLog::open(config.embedded_log_dir()).unwrap());
    log.create_topic("words", TopicConfig::new(2)).unwrap();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..300u32 {
        let word = format!("w{}", i % 17);
        *expected.entry(word.clone()).or_default() += 1;
        let key = format!("line-{i}");
        let p = partition_for_key(key.as_bytes(), 2);
        log.append(
            &TopicPartition::new("words", p),
            &[Record::new(key.as_str(), word.as_str(), 1 + i64::from(i))],
        )
        .unwrap();
    }

    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("words", Consumed::with(StringSerde, StringSerde))
        .select_key(|_, w| w.clone())
        .repartition(
            Repartitioned::with(StringSerde, StringSerde)
                .named("by-word")
                .with_number_of_partitions(3),
        )
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("word-counts"))
        .to_stream()
        .to("counts", Produced::with(StringSerde, OptionSerde(I64Serde)));
    let topology = builder.build().unwrap();
    assert_eq!(topology.partition_count_of("by-word-repartition"), Some(3));

    let streams = Streams::new(topology, config, log.clone()).unwrap();
    streams.start().unwrap();
    streams
        .wait_until_caught_up(Duration::from_secs(120))
        .unwrap();
    // Two tasks read `words`, three read the repartition topic.
    let mut per_subtopology = BTreeMap::new();
    for task in streams.assignment().keys() {
        *per_subtopology.entry(task.subtopology).or_insert(0) += 1;
    }
    assert_eq!(
        per_subtopology.values().copied().collect::<Vec<_>>(),
        vec![2, 3]
    );
    streams.close().unwrap();

    assert_eq!(
        log.describe_topic("repartition-count-by-word-repartition")
            .unwrap()
            .partitions,
        3
    );
    let mut last = BTreeMap::new();
    for p in 0..log.describe_topic("counts").unwrap().partitions {
        let fetch = log
            .read(
                &TopicPartition::new("counts", p),
                0,
                10_000,
                IsolationLevel::ReadCommitted,
            )
            .unwrap();
        for r in fetch.records {
            let key = StringSerde.deserialize(&r.record.key.unwrap()).unwrap();
            let n = I64Serde.deserialize(&r.record.value.unwrap()).unwrap();
            last.insert(key, n);
        }
    }
    assert_eq!(last, expected);
}

#[test]
fn a_partition_count_of_zero_is_a_build_error() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::with(StringSerde, StringSerde))
        .repartition(
            Repartitioned::inferred()
                .named("none")
                .with_number_of_partitions(0),
        )
        .to("out", Produced::inferred());
    let err = builder.build().unwrap_err().to_string();
    assert!(
        err.contains("none-repartition") && err.contains("at least 1"),
        "{err}"
    );
}

#[test]
fn windowed_keys_are_written_to_the_partition_of_their_inner_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = StreamsConfig::new("windowed-partitions", dir.path())
        .with_commit_interval(Duration::from_millis(50));
    let log = Arc::new(EmbeddedLog::open(config.embedded_log_dir()).unwrap());
    log.create_topic("clicks", TopicConfig::new(2)).unwrap();
    log.create_topic("counts", TopicConfig::new(3)).unwrap();
    let users: Vec<String> = (0..12).map(|u| format!("user-{u}")).collect();
    for i in 0..240i64 {
        let user = &users[(i % 12) as usize];
        let p = partition_for_key(user.as_bytes(), 2);
        log.append(
            &TopicPartition::new("clicks", p),
            &[Record::new(user.as_str(), "", i)],
        )
        .unwrap();
    }
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("clicks", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
            10,
        )))
        .count(Materialized::named("clicks-per-10ms"))
        .to_stream()
        .to("counts", Produced::inferred());
    let streams = Streams::new(builder.build().unwrap(), config, log.clone()).unwrap();
    streams.start().unwrap();
    streams
        .wait_until_caught_up(Duration::from_secs(120))
        .unwrap();
    streams.close().unwrap();

    let keys = WindowedSerde::time(StringSerde, Duration::from_millis(10));
    let mut windows_of: BTreeMap<String, BTreeMap<i64, u32>> = BTreeMap::new();
    for p in 0..3 {
        let fetch = log
            .read(
                &TopicPartition::new("counts", p),
                0,
                10_000,
                IsolationLevel::ReadCommitted,
            )
            .unwrap();
        for r in fetch.records {
            let key = keys.deserialize(&r.record.key.unwrap()).unwrap();
            assert_eq!(
                p,
                partition_for_key(key.key.as_bytes(), 3),
                "{key} on partition {p}"
            );
            windows_of
                .entry(key.key)
                .or_default()
                .insert(key.window.start, p);
        }
    }
    // Every window of every user was written, each on the user's partition.
    assert_eq!(windows_of.len(), users.len());
    for (u, user) in users.iter().enumerate() {
        let starts: std::collections::BTreeSet<i64> = (0..240i64)
            .filter(|i| i % 12 == u as i64)
            .map(|i| i - i % 10)
            .collect();
        let written: std::collections::BTreeSet<i64> = windows_of[user].keys().copied().collect();
        assert_eq!(written, starts, "{user}");
    }
}
