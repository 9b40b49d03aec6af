#![allow(clippy::unwrap_used)]
//! The embedded runtime: threads × partitions, repartitioning, interactive queries, state
//! transitions, clean restarts, failures and the record handlers.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use streams_core::dead_letter_headers;
use streams_core::{
    Error, I64Serde, Log, ProcessingGuarantee, Record, RecordErrorHandler, StringSerde,
    TopicConfig, TopicPartition,
};
use streams_core::{ExceptionResponse, Streams, StreamsConfig, StreamsState};
use streams_dsl::prelude::*;

const WAIT: Duration = Duration::from_secs(120);

fn config(dir: &std::path::Path, threads: usize) -> StreamsConfig {
    StreamsConfig::new("rt", dir)
        .with_threads(threads)
        .with_commit_interval(Duration::from_millis(50))
}

/// Values of a string topic grouped by key, in the order they appear.
fn values_by_key(log: &dyn Log, topic: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in read_topic(log, topic) {
        for (k, v) in decode(&part, &StringSerde) {
            out.entry(k).or_default().push(v);
        }
    }
    out
}

fn expected_by_key(input: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in input {
        out.entry(k.clone()).or_default().push(v.clone());
    }
    out
}

#[test]
fn threads_times_partitions_process_every_record_once_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let input = write_input(&*log, "input", 6, 6_000, 50);
    let streams = Streams::new(counting_topology(), config(dir.path(), 3), log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();

    // Six tasks (one sub-topology × six partitions), two per thread.
    let assignment = streams.assignment();
    assert_eq!(assignment.len(), 6);
    for thread in 0..3 {
        assert_eq!(assignment.values().filter(|&&t| t == thread).count(), 2);
    }
    let metrics = streams.metrics();
    let per_task: u64 = metrics.tasks.values().map(|t| t.counters.processed).sum();
    assert_eq!(
        per_task, 6_000,
        "every record processed by exactly one task"
    );
    assert_eq!(metrics.processed(), 6_000);
    assert_eq!(metrics.lag(), 0);
    streams.close().unwrap();
    assert_eq!(streams.state(), StreamsState::NotRunning);

    // Each record exactly once, and each key's records in input order.
    assert_eq!(values_by_key(&*log, "echo"), expected_by_key(&input));
    assert_eq!(final_counts(&*log), reference_counts(&input));
}

#[test]
fn repartitioned_counts_are_queryable_from_any_thread() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let input = write_input(&*log, "input", 4, 3_000, 40);
    let b = StreamsBuilder::new();
    // Re-key by the key's last digit: a repartition topic between two sub-topologies.
    b.stream::<String, String>("input", Consumed::default())
        .group_by(
            |k, _| format!("d{}", &k[k.len() - 1..]),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::named("by-digit"));
    let streams = Streams::new(b.build().unwrap(), config(dir.path(), 2), log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    // The repartition topic got the source's partition count.
    assert!(log
        .list_topics()
        .unwrap()
        .iter()
        .any(|t| t.starts_with("rt-") && t.ends_with("-repartition")));
    assert_eq!(
        streams.assignment().len(),
        8,
        "two sub-topologies × four partitions"
    );

    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (k, _) in &input {
        *expected
            .entry(format!("d{}", &k[k.len() - 1..]))
            .or_insert(0) += 1;
    }
    let store = streams
        .key_value_store("by-digit", Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap();
    let all: BTreeMap<String, i64> = store.all().unwrap().into_iter().collect();
    assert_eq!(all, expected);
    for (k, n) in &expected {
        assert_eq!(store.get(k).unwrap(), Some(*n), "point query of {k}");
    }
    assert_eq!(store.get(&"nope".to_string()).unwrap(), None);
    let range: Vec<String> = store
        .range(&"d2".to_string(), &"d4".to_string())
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(range, vec!["d2", "d3", "d4"]);
    streams.close().unwrap();
}

#[test]
fn state_listener_sees_the_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    write_input(&*log, "input", 2, 100, 5);
    let streams = Streams::new(counting_topology(), config(dir.path(), 1), log).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    streams.set_state_listener(move |old, new| s.lock().unwrap().push((old, new)));
    streams.start().unwrap();
    streams.wait_for_state(StreamsState::Running, WAIT).unwrap();
    streams.close().unwrap();
    {
        use StreamsState::*;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (Created, Rebalancing),
                (Rebalancing, Running),
                (Running, PendingShutdown),
                (PendingShutdown, NotRunning)
            ]
        );
    }
    assert!(matches!(streams.start(), Err(Error::InvalidState { .. })));
}

#[test]
fn clean_close_then_restart_replays_only_the_changelog_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut input = write_input(&*log, "input", 2, 2_000, 30);
    let run = |log: &Arc<streams_core::EmbeddedLog>| {
        let streams =
            Streams::new(counting_topology(), config(dir.path(), 2), log.clone()).unwrap();
        streams.start().unwrap();
        streams.wait_until_caught_up(WAIT).unwrap();
        let restored: u64 = streams.metrics().tasks.values().map(|t| t.restored).sum();
        streams.close().unwrap();
        restored
    };
    assert_eq!(run(&log), 0, "a first start has nothing to restore");
    // Restarted after a clean close: the checkpoints cover the whole changelog.
    assert_eq!(run(&log), 0);

    // More input while stopped; the restart replays nothing, then counts on.
    for i in 0..10 {
        let key = format!("k{i}");
        log.append(
            &TopicPartition::new("input", streams_core::partition_for_key(key.as_bytes(), 2)),
            &[Record::new(key.clone(), "x", 10_000 + i)],
        )
        .unwrap();
        input.push((key, "x".into()));
    }
    assert_eq!(run(&log), 0);
    assert_eq!(final_counts(&*log), reference_counts(&input));

    // Without task 0_0's checkpoint the whole of its changelog partition is replayed.
    std::fs::remove_file(dir.path().join("rt").join("0_0").join(".checkpoint")).unwrap();
    let in_changelog = read_topic(&*log, "rt-counts-changelog")[0].len() as u64;
    assert!(in_changelog > 0);
    assert_eq!(run(&log), in_changelog);
    assert_eq!(final_counts(&*log), reference_counts(&input));
}

static POISON_FIRED: AtomicBool = AtomicBool::new(false);
static POISON_FIRED_EOS: AtomicBool = AtomicBool::new(false);

fn panicking_topology(flag: &'static AtomicBool) -> streams_core::Topology {
    let b = StreamsBuilder::new();
    let input = b
        .stream::<String, String>("input", Consumed::default())
        .peek(move |_, v| {
            // The first time only: the replacement thread gets past it.
            if v == "k3:40" && !flag.swap(true, Ordering::SeqCst) {
                panic!("user code failed on {v}");
            }
        });
    input.to("echo", Produced::default());
    input
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            "counts-out",
            Produced::with(StringSerde, streams_core::OptionSerde(I64Serde)),
        );
    b.build().unwrap()
}

fn panic_replaces_thread(guarantee: ProcessingGuarantee, flag: &'static AtomicBool) {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let input = write_input(&*log, "input", 4, 8_000, 20);
    let streams = Streams::new(
        panicking_topology(flag),
        config(dir.path(), 2)
            .with_guarantee(guarantee)
            .with_commit_interval(Duration::from_millis(50)),
        log.clone(),
    )
    .unwrap();
    streams.set_uncaught_exception_handler(|_| ExceptionResponse::ReplaceThread);
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    assert!(flag.load(Ordering::SeqCst), "the poison record was reached");
    assert_eq!(streams.live_threads(), 2, "the failed thread was replaced");
    let metrics = streams.metrics();
    assert_eq!(metrics.threads.len(), 3);
    assert_eq!(metrics.threads.values().filter(|t| !t.alive).count(), 1);
    assert_eq!(streams.state(), StreamsState::Running);
    let store = streams
        .key_value_store("counts", Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap();
    let queried: BTreeMap<String, i64> = store.all().unwrap().into_iter().collect();
    streams.close().unwrap();

    let reference = reference_counts(&input);
    let echoed = values_by_key(&*log, "echo");
    let expected = expected_by_key(&input);
    match guarantee {
        ProcessingGuarantee::ExactlyOnce => {
            assert_eq!(queried, reference);
            assert_eq!(final_counts(&*log), reference);
            assert_eq!(echoed, expected, "each input exactly once in the output");
        }
        _ => {
            // Nothing lost; records since the failed thread's last commit may count twice.
            for (k, n) in &reference {
                assert!(queried[k] >= *n, "{k}: {} < {n}", queried[k]);
                let seen: std::collections::BTreeSet<&String> = echoed[k].iter().collect();
                assert!(
                    expected[k].iter().all(|v| seen.contains(v)),
                    "{k} lost output"
                );
            }
        }
    }
}

#[test]
fn a_panicking_thread_is_replaced_and_nothing_is_lost_at_least_once() {
    panic_replaces_thread(ProcessingGuarantee::AtLeastOnce, &POISON_FIRED);
}

#[test]
fn a_panicking_thread_is_replaced_with_no_loss_or_duplicate_exactly_once() {
    panic_replaces_thread(ProcessingGuarantee::ExactlyOnce, &POISON_FIRED_EOS);
}

#[test]
fn a_failure_under_shutdown_client_stops_the_application_with_the_error() {
    static FIRED: AtomicBool = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    write_input(&*log, "input", 2, 1_000, 10);
    let streams = Streams::new(panicking_topology(&FIRED), config(dir.path(), 2), log).unwrap();
    streams.start().unwrap();
    let err = streams.wait_until_caught_up(WAIT).unwrap_err();
    assert!(matches!(err, Error::InvalidState { .. }), "{err}");
    assert_eq!(streams.state(), StreamsState::Error);
    let cause = streams.error().unwrap().to_string();
    assert!(
        cause.contains("panicked: user code failed on k3:40"),
        "{cause}"
    );
    assert!(streams.close().is_err());
}

/// A topic of i64 values with one record of three bytes at partition 0, offset 2.
fn poison_input(log: &dyn Log) {
    log.create_topic("numbers", TopicConfig::new(1)).unwrap();
    let good = |k: &str, v: i64| {
        let mut bytes = Vec::new();
        I64Serde.serialize_into(&v, &mut bytes).unwrap();
        Record::new(k, bytes, 1)
    };
    let mut bad = Record::new("c", "xyz", 3);
    bad.headers
        .push(streams_core::Header::new("origin", "test"));
    log.append(
        &TopicPartition::new("numbers", 0),
        &[good("a", 1), good("b", 2), bad, good("d", 4)],
    )
    .unwrap();
}

fn sum_topology() -> streams_core::Topology {
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("numbers", Consumed::with(StringSerde, I64Serde))
        .to("copied", Produced::with(StringSerde, I64Serde));
    b.build().unwrap()
}

#[test]
fn poison_record_fails_the_application_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    poison_input(&*log);
    let streams = Streams::new(sum_topology(), config(dir.path(), 1), log).unwrap();
    streams.start().unwrap();
    assert!(streams.wait_until_caught_up(WAIT).is_err());
    let cause = streams.error().unwrap();
    assert!(
        matches!(&*cause, Error::Deserialization { topic, partition: 0, offset: 2, .. } if topic == "numbers"),
        "{cause}"
    );
}

#[test]
fn poison_record_is_skipped_and_counted_under_log_and_continue() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    poison_input(&*log);
    let streams = Streams::new(
        sum_topology(),
        config(dir.path(), 1).with_deserialization_handler(RecordErrorHandler::LogAndContinue),
        log.clone(),
    )
    .unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let skipped: u64 = streams
        .metrics()
        .tasks
        .values()
        .map(|t| t.counters.skipped_deserialization)
        .sum();
    streams.close().unwrap();
    assert_eq!(skipped, 1);
    let copied = decode(&read_topic(&*log, "copied")[0], &I64Serde);
    assert_eq!(
        copied,
        vec![("a".into(), 1), ("b".into(), 2), ("d".into(), 4)]
    );
}

#[test]
fn poison_record_goes_to_the_dead_letter_topic_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    poison_input(&*log);
    let streams = Streams::new(
        sum_topology(),
        config(dir.path(), 1)
            .with_deserialization_handler(RecordErrorHandler::DeadLetter("numbers-dlq".into())),
        log.clone(),
    )
    .unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    streams.close().unwrap();
    assert_eq!(read_topic(&*log, "copied")[0].len(), 3);
    let dlq = read_topic(&*log, "numbers-dlq");
    let dead: Vec<&Record> = dlq.iter().flatten().collect();
    assert_eq!(dead.len(), 1);
    let r = dead[0];
    assert_eq!(r.key.as_deref(), Some(&b"c"[..]));
    assert_eq!(
        r.value.as_deref(),
        Some(&b"xyz"[..]),
        "the raw bytes are kept"
    );
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("origin").as_deref(), Some("test"));
    assert_eq!(
        header(dead_letter_headers::TOPIC).as_deref(),
        Some("numbers")
    );
    assert_eq!(header(dead_letter_headers::PARTITION).as_deref(), Some("0"));
    assert_eq!(header(dead_letter_headers::OFFSET).as_deref(), Some("2"));
    let error = header(dead_letter_headers::MESSAGE).unwrap();
    assert!(error.contains("numbers-0@2"), "{error}");
    // Kafka Streams' names (KIP-1034), so tools written for its dead-letter topics read ours.
    assert_eq!(
        header("__streams.errors.exception").as_deref(),
        Some("streams_core::Error::Deserialization")
    );
    assert_eq!(header("__streams.errors.topic").as_deref(), Some("numbers"));
    assert_eq!(header("__streams.errors.offset").as_deref(), Some("2"));
    // The message is the error with its causes; the trace has each of them on a line.
    assert_eq!(
        header("__streams.errors.stacktrace")
            .unwrap()
            .replace("\ncaused by: ", ": "),
        error
    );
}

#[test]
fn start_checks_sources_and_co_partitioning() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let err = Streams::new(counting_topology(), config(dir.path(), 1), log.clone())
        .err()
        .unwrap();
    assert!(err.to_string().contains("input"), "{err}");

    log.create_topic("payments", TopicConfig::new(4)).unwrap();
    log.create_topic("rates", TopicConfig::new(2)).unwrap();
    let b = StreamsBuilder::new();
    let rates = b.table::<String, String>("rates", Consumed::default(), Materialized::named("r"));
    b.stream::<String, String>("payments", Consumed::default())
        .join(&rates, |p, r| format!("{p}{r}"))
        .to("joined", Produced::default());
    let err = Streams::new(b.build().unwrap(), config(dir.path(), 1), log)
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(
        text.contains("payments") && text.contains("rates"),
        "{text}"
    );
    assert!(text.contains("4") && text.contains("2"), "{text}");
}

/// Encodes strings, refusing the value "bad" (as a schema check would).
struct PickySerde;

impl streams_core::Serde<String> for PickySerde {
    fn serialize_into(
        &self,
        value: &String,
        out: &mut Vec<u8>,
    ) -> Result<(), streams_core::SerdeError> {
        if value == "bad" {
            return Err(streams_core::SerdeError::new("picky", "refuses `bad`"));
        }
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<String, streams_core::SerdeError> {
        StringSerde.deserialize(bytes)
    }
}

fn picky_run(
    handler: streams_core::RecordErrorHandler,
) -> (tempfile::TempDir, Arc<streams_core::EmbeddedLog>, Streams) {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic("words", TopicConfig::new(1)).unwrap();
    log.append(
        &TopicPartition::new("words", 0),
        &[
            Record::new("1", "good", 1),
            Record::new("2", "bad", 2),
            Record::new("3", "fine", 3),
        ],
    )
    .unwrap();
    let b = StreamsBuilder::new();
    b.stream::<String, String>("words", Consumed::default())
        .to("checked", Produced::with(StringSerde, PickySerde));
    let streams = Streams::new(
        b.build().unwrap(),
        config(dir.path(), 1).with_production_handler(handler),
        log.clone(),
    )
    .unwrap();
    streams.start().unwrap();
    (dir, log, streams)
}

#[test]
fn unencodable_output_fails_skips_or_goes_to_the_dead_letter_topic() {
    use streams_core::RecordErrorHandler;
    let (_dir, _, streams) = picky_run(RecordErrorHandler::Fail);
    assert!(streams.wait_until_caught_up(WAIT).is_err());
    let cause = streams.error().unwrap().report().to_string();
    assert!(
        cause.contains("checked") && cause.contains("refuses `bad`"),
        "{cause}"
    );

    let (_dir, log, streams) = picky_run(RecordErrorHandler::LogAndContinue);
    streams.wait_until_caught_up(WAIT).unwrap();
    let skipped: u64 = streams
        .metrics()
        .tasks
        .values()
        .map(|t| t.counters.skipped_production)
        .sum();
    streams.close().unwrap();
    assert_eq!(skipped, 1);
    let out = decode(&read_topic(&*log, "checked")[0], &StringSerde);
    assert_eq!(
        out,
        vec![("1".into(), "good".into()), ("3".into(), "fine".into())]
    );

    let (_dir, log, streams) = picky_run(RecordErrorHandler::DeadLetter("checked-dlq".into()));
    streams.wait_until_caught_up(WAIT).unwrap();
    streams.close().unwrap();
    assert_eq!(read_topic(&*log, "checked")[0].len(), 2);
    let dead = &read_topic(&*log, "checked-dlq")[0];
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(&b"bad"[..]));
    let header = |name: &str| {
        dead[0]
            .header(name)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert!(header(dead_letter_headers::MESSAGE)
        .unwrap()
        .contains("refuses"));
    assert_eq!(
        header(dead_letter_headers::EXCEPTION).as_deref(),
        Some("streams_core::Error::Serialization")
    );
    assert_eq!(header(dead_letter_headers::TOPIC).as_deref(), Some("words"));
    assert_eq!(header(dead_letter_headers::OFFSET).as_deref(), Some("1"));
}

/// The log refuses an unkeyed record for a compacted topic: with a dead-letter handler the
/// record goes there as produced (key and value), with the same headers as every other
/// dead-lettered record, naming the input record that produced it; the records around it
/// are written once.
#[test]
fn records_the_log_refuses_go_to_the_dead_letter_topic_with_their_input_record() {
    use streams_core::{OptionSerde, RecordErrorHandler};
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic("words", TopicConfig::new(1)).unwrap();
    log.create_topic("latest", TopicConfig::compacted(1))
        .unwrap();
    log.append(
        &TopicPartition::new("words", 0),
        &[
            Record::new("1", "good", 1),
            Record::new("-", "keyless", 2),
            Record::new("3", "fine", 3),
        ],
    )
    .unwrap();
    let b = StreamsBuilder::new();
    b.stream::<String, String>("words", Consumed::default())
        .map(|k, v| ((k != "-").then(|| k.clone()), v.clone()))
        .to(
            "latest",
            Produced::with(OptionSerde(StringSerde), StringSerde),
        );
    let streams = Streams::new(
        b.build().unwrap(),
        config(dir.path(), 1)
            .with_production_handler(RecordErrorHandler::DeadLetter("latest-dlq".into())),
        log.clone(),
    )
    .unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    streams.close().unwrap();
    let out = decode(&read_topic(&*log, "latest")[0], &StringSerde);
    assert_eq!(
        out,
        vec![("1".into(), "good".into()), ("3".into(), "fine".into())]
    );
    let dead = &read_topic(&*log, "latest-dlq")[0];
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, None);
    assert_eq!(dead[0].value.as_deref(), Some(&b"keyless"[..]));
    let header = |name: &str| {
        dead[0]
            .header(name)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(
        header(dead_letter_headers::EXCEPTION).as_deref(),
        Some("streams_core::Error::InvalidRecord")
    );
    assert!(header(dead_letter_headers::MESSAGE)
        .unwrap()
        .contains("latest-0"));
    assert_eq!(header(dead_letter_headers::TOPIC).as_deref(), Some("words"));
    assert_eq!(header(dead_letter_headers::PARTITION).as_deref(), Some("0"));
    assert_eq!(header(dead_letter_headers::OFFSET).as_deref(), Some("1"));
}

/// Rates every millisecond, payments every ten, fetched ten records at a time: a payment
/// must see the rate of the millisecond before it, so the task must wait for the rates
/// partition to be fetched rather than run ahead on payments (Kafka Streams' task idling).
#[test]
fn stream_table_join_sees_the_table_as_of_each_record_across_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic("rates", TopicConfig::new(2)).unwrap();
    log.create_topic("payments", TopicConfig::new(2)).unwrap();
    let mut expected = Vec::new();
    // Per partition, in time order (a partition is read in offset order).
    let mut rates: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    let mut payments: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for t in 0..3_000 {
        for currency in ["EUR", "USD", "JPY"] {
            let p = streams_core::partition_for_key(currency.as_bytes(), 2);
            rates
                .entry(p)
                .or_default()
                .push(Record::new(currency, format!("{currency}{t}"), t));
            if t % 10 == 5 {
                expected.push((currency.to_string(), format!("p{t}@{currency}{}", t - 1)));
                payments
                    .entry(p)
                    .or_default()
                    .push(Record::new(currency, format!("p{t}"), t));
            }
        }
    }
    for (topic, per_partition) in [("rates", rates), ("payments", payments)] {
        for (p, records) in per_partition {
            log.append(&TopicPartition::new(topic, p), &records)
                .unwrap();
        }
    }
    let b = StreamsBuilder::new();
    let rates =
        b.table::<String, String>("rates", Consumed::default(), Materialized::named("rates"));
    b.stream::<String, String>("payments", Consumed::default())
        .left_join(&rates, |p, r| {
            format!("{p}@{}", r.map_or("none", String::as_str))
        })
        .to("priced", Produced::default());
    let mut cfg = config(dir.path(), 2);
    cfg.max_poll_records = 10;
    cfg.max_buffered_records = 20;
    let streams = Streams::new(b.build().unwrap(), cfg, log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    streams.close().unwrap();
    let mut got: Vec<(String, String)> = read_topic(&*log, "priced")
        .iter()
        .flat_map(|p| decode(p, &StringSerde))
        .collect();
    got.sort();
    expected.sort();
    let wrong: Vec<_> = got.iter().filter(|g| !expected.contains(g)).collect();
    assert!(
        wrong.is_empty(),
        "{} wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(got.len(), expected.len());
}

/// A global table is complete in every task before processing starts: a stream over four
/// partitions joins a table spread over three, with no co-partitioning.
#[test]
fn global_table_joins_see_every_partition_of_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic("countries", TopicConfig::compacted(3))
        .unwrap();
    log.create_topic("payments", TopicConfig::new(4)).unwrap();
    let mut countries = BTreeMap::new();
    for i in 0..30 {
        let (currency, country) = (format!("C{i:02}"), format!("land-{i}"));
        let p = streams_core::partition_for_key(currency.as_bytes(), 3);
        log.append(
            &TopicPartition::new("countries", p),
            &[Record::new(currency.clone(), country.clone(), 0)],
        )
        .unwrap();
        countries.insert(currency, country);
    }
    let mut expected = Vec::new();
    for i in 0..400 {
        let (id, currency) = (format!("p{i}"), format!("C{:02}", (i * 7) % 40));
        let p = streams_core::partition_for_key(id.as_bytes(), 4);
        log.append(
            &TopicPartition::new("payments", p),
            &[Record::new(id.clone(), currency.clone(), i)],
        )
        .unwrap();
        let country = countries.get(&currency).map_or("?", String::as_str);
        expected.push((id, format!("{currency}@{country}")));
    }
    expected.sort();
    let topology = || {
        let b = StreamsBuilder::new();
        let countries = b.global_table::<String, String>(
            "countries",
            Consumed::default(),
            Materialized::named("countries"),
        );
        b.stream::<String, String>("payments", Consumed::default())
            .left_join_global(
                &countries,
                |_, c| c.clone(),
                |c, country| format!("{c}@{}", country.map_or("?", String::as_str)),
            )
            .to("located", Produced::default());
        b.build().unwrap()
    };
    assert!(topology()
        .describe()
        .contains("Global store: countries (topic: countries"));
    let streams = Streams::new(topology(), config(dir.path(), 2), log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    streams.close().unwrap();
    let mut got: Vec<(String, String)> = read_topic(&*log, "located")
        .iter()
        .flat_map(|p| decode(p, &StringSerde))
        .collect();
    got.sort();
    assert_eq!(got, expected);

    // A restart resumes the global store from its checkpoint; a missing topic is named.
    let streams = Streams::new(topology(), config(dir.path(), 1), log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    streams.close().unwrap();
    let other = tempfile::tempdir().unwrap();
    let empty = open_log(other.path());
    empty.create_topic("payments", TopicConfig::new(4)).unwrap();
    let err = Streams::new(topology(), config(other.path(), 1), empty)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("countries") && err.contains("global"), "{err}");
}

/// Window stores answer interactive queries by key and time range from the owning thread.
#[test]
fn window_stores_are_queryable_by_key_and_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    log.create_topic("clicks", TopicConfig::new(2)).unwrap();
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for i in 0..300i64 {
        let user = format!("u{}", i % 7);
        let ts = i * 37;
        let p = streams_core::partition_for_key(user.as_bytes(), 2);
        log.append(
            &TopicPartition::new("clicks", p),
            &[Record::new(user.clone(), "", ts)],
        )
        .unwrap();
        *expected.entry((user, ts - ts % 1000)).or_default() += 1;
    }
    let b = StreamsBuilder::new();
    b.stream::<String, String>("clicks", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_secs(1),
            Duration::from_secs(60),
        ))
        .count(Materialized::named("clicks-per-second"));
    let streams = Streams::new(b.build().unwrap(), config(dir.path(), 2), log).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let store = streams
        .window_store(
            "clicks-per-second",
            Arc::new(StringSerde),
            Arc::new(I64Serde),
        )
        .unwrap();
    for user in (0..7).map(|u| format!("u{u}")) {
        let got = store.fetch(&user, 2_000, 5_999).unwrap();
        let want: Vec<(i64, i64)> = expected
            .iter()
            .filter(|((u, start), _)| *u == user && (2_000..6_000).contains(start))
            .map(|((_, start), n)| (*start, *n))
            .collect();
        assert_eq!(got, want, "{user}");
        assert!(!got.is_empty());
    }
    assert!(matches!(
        streams.key_value_store(
            "clicks-per-second",
            Arc::new(StringSerde),
            Arc::new(I64Serde)
        ),
        Err(Error::Config { .. })
    ));
    streams.close().unwrap();
}

/// Tables keep each value's timestamp in their stores and changelogs. After a restart on the
/// same state, and again after the state is wiped and restored from the changelogs, a
/// table–table join and an aggregation stamp their updates with the restored rows' times when
/// those are later (Kafka Streams' rules: the later of both sides; the later of the record and
/// the previous aggregate), not with the new record's.
#[test]
fn restored_tables_keep_their_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    for topic in ["l", "r", "words"] {
        log.create_topic(topic, TopicConfig::new(1)).unwrap();
    }
    let topology = || {
        let b = StreamsBuilder::new();
        let l = b.table::<String, String>("l", Consumed::default(), Materialized::named("l"));
        let r = b.table::<String, String>("r", Consumed::default(), Materialized::named("r"));
        l.join(&r, |a, b| format!("{a}+{b}")).to_stream().to(
            "joined",
            Produced::with(StringSerde, OptionSerde(StringSerde)),
        );
        b.stream::<String, String>("words", Consumed::default())
            .group_by_key(Grouped::inferred())
            .count(Materialized::named("word-counts"))
            .to_stream()
            .to("counts", Produced::with(StringSerde, OptionSerde(I64Serde)));
        b.build().unwrap()
    };
    // Appends `records` (topic, key, value, timestamp), runs until caught up, and returns how
    // many changelog records were restored.
    let run = |records: &[(&str, &str, &str, i64)]| -> u64 {
        for (topic, k, v, ts) in records {
            log.append(&TopicPartition::new(*topic, 0), &[Record::new(*k, *v, *ts)])
                .unwrap();
        }
        let streams = Streams::new(topology(), config(dir.path(), 1), log.clone()).unwrap();
        streams.start().unwrap();
        streams.wait_until_caught_up(WAIT).unwrap();
        let restored = streams.metrics().tasks.values().map(|t| t.restored).sum();
        streams.close().unwrap();
        restored
    };
    let last = |topic: &str| -> (String, i64) {
        let records = read_topic(&*log, topic).concat();
        let r = records.last().unwrap();
        let value = r.value.as_deref().unwrap();
        (String::from_utf8(value.to_vec()).unwrap(), r.timestamp)
    };
    let last_count = || -> (i64, i64) {
        let records = read_topic(&*log, "counts").concat();
        let r = records.last().unwrap();
        (
            I64Serde.deserialize(r.value.as_deref().unwrap()).unwrap(),
            r.timestamp,
        )
    };

    run(&[("l", "k", "a", 100), ("words", "w", "", 100)]);
    assert_eq!(last_count(), (1, 100));

    // Restarted on the same state: the rows of 100 are read back with their time.
    run(&[("r", "k", "x", 50), ("words", "w", "", 40)]);
    assert_eq!(last("joined"), ("a+x".to_string(), 100));
    assert_eq!(last_count(), (2, 100));

    // Every task's state wiped: restored from the changelogs, timestamps included.
    let app_dir = dir.path().join("rt");
    let mut wiped = 0;
    for entry in std::fs::read_dir(&app_dir).unwrap() {
        let path = entry.unwrap().path();
        let is_task = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.split_once('_')
                .is_some_and(|(s, p)| s.parse::<u32>().is_ok() && p.parse::<u32>().is_ok())
        });
        if path.is_dir() && is_task {
            std::fs::remove_dir_all(&path).unwrap();
            wiped += 1;
        }
    }
    assert_eq!(wiped, 2, "one task per sub-topology");
    let restored = run(&[("r", "k", "y", 60), ("words", "w", "", 30)]);
    assert!(
        restored >= 3,
        "the stores were restored ({restored} records)"
    );
    assert_eq!(last("joined"), ("a+y".to_string(), 100));
    assert_eq!(last_count(), (3, 100));
}
