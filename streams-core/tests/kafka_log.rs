//! The `Log` trait over a real Kafka-protocol broker (feature `kafka`): topics, appends and
//! reads, offsets, group offsets, the murmur2 partitioner against librdkafka's, and
//! transactions (committed, aborted, and what read-committed readers see of them).
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

#[path = "support/kafka_broker.rs"]
mod kafka_broker;
#[path = "support/read.rs"]
mod read;

use std::time::{Duration, Instant};

use kafka_broker::{bootstrap_servers, connect, unique};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use read::values;
use streams_core::{
    partition_for_key, CleanupPolicy, Error, IsolationLevel, KafkaLog, Log, Record, TopicConfig,
    TopicPartition,
};

const RU: IsolationLevel = IsolationLevel::ReadUncommitted;
const RC: IsolationLevel = IsolationLevel::ReadCommitted;

#[test]
fn kafka_topics_are_created_described_and_listed() {
    let log = connect();
    let plain = unique("topics-plain");
    let compact = unique("topics-compact");
    log.create_topic(&plain, TopicConfig::new(2)).unwrap();
    log.create_topic(&compact, TopicConfig::compacted(1))
        .unwrap();
    // Again with the same partition count: not an error.
    log.create_topic(&plain, TopicConfig::new(2)).unwrap();
    match log.create_topic(&plain, TopicConfig::new(3)) {
        Err(Error::TopicExists {
            existing: 2,
            requested: 3,
            ..
        }) => {}
        other => panic!("expected TopicExists, got {other:?}"),
    }
    let topics = log.list_topics().unwrap();
    assert!(
        topics.contains(&plain) && topics.contains(&compact),
        "{topics:?}"
    );
    let mut sorted = topics.clone();
    sorted.sort();
    assert_eq!(topics, sorted);

    let described = log.describe_topic(&plain).unwrap();
    assert_eq!(described.partitions, 2);
    assert_eq!(described.cleanup_policy, CleanupPolicy::Delete);
    let described = log.describe_topic(&compact).unwrap();
    assert_eq!(described.partitions, 1);
    assert_eq!(described.cleanup_policy, CleanupPolicy::Compact);

    // A second log (another process, say) sees the same.
    let other = connect();
    assert_eq!(other.describe_topic(&compact).unwrap(), described);

    let missing = unique("missing");
    let err = log.describe_topic(&missing).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownTopic { topic } if topic == &missing),
        "{err}"
    );
    for bad in ["", "..", "a b", "a/b"] {
        assert!(
            matches!(
                log.create_topic(bad, TopicConfig::new(1)),
                Err(Error::Config { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        log.append(&TopicPartition::new(&plain, 2), &[Record::new("k", "v", 1)]),
        Err(Error::PartitionOutOfRange {
            partition: 2,
            partitions: 2,
            ..
        })
    ));
    assert!(matches!(
        log.append(
            &TopicPartition::new(&compact, 0),
            &[Record::unkeyed("x", 1)]
        ),
        Err(Error::InvalidRecord { .. })
    ));
}

#[test]
fn kafka_appends_read_back_with_offsets_headers_and_timestamps() {
    let log = connect();
    let topic = unique("append");
    log.create_topic(&topic, TopicConfig::new(2)).unwrap();
    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);
    assert_eq!(log.start_offset(&p0).unwrap(), 0);
    assert_eq!(log.end_offset(&p0, RU).unwrap(), 0);
    assert_eq!(log.end_offset(&p0, RC).unwrap(), 0);

    let v = |s: &str, ts: i64| Record::new(s, s, ts);
    let info = log
        .append(&p0, &[v("r0", 30), v("r1", 10), v("r2", 20)])
        .unwrap();
    assert_eq!((info.base_offset, info.next_offset), (0, 3));
    let info = log.append(&p0, &[v("r3", 40)]).unwrap();
    assert_eq!((info.base_offset, info.next_offset), (3, 4));
    assert_eq!(log.end_offset(&p0, RU).unwrap(), 4);
    assert_eq!(log.end_offset(&p0, RC).unwrap(), 4);

    // No key, no value (a tombstone), repeated headers, one of them null.
    let odd = Record {
        key: None,
        value: None,
        timestamp: 5,
        headers: vec![],
    }
    .with_header("h", "1")
    .with_header("h", "2");
    let mut odd_with_null = odd.clone();
    odd_with_null.headers.push(streams_core::Header {
        key: "n".into(),
        value: None,
    });
    log.append(&p1, std::slice::from_ref(&odd_with_null))
        .unwrap();
    let back = log.read(&p1, 0, 10, RU).unwrap();
    assert_eq!(back.records.len(), 1);
    assert_eq!(back.records[0].record, odd_with_null);
    assert_eq!(back.next_offset, 1);

    let all = read::read_all(&log, &p0, 0, 2, RU);
    assert_eq!(
        all,
        vec![
            (0, "r0".to_string()),
            (1, "r1".to_string()),
            (2, "r2".to_string()),
            (3, "r3".to_string())
        ]
    );
    assert_eq!(read::read_all(&log, &p0, 2, 10, RU).len(), 2);
    let first = log.read(&p0, 1, 1, RC).unwrap();
    assert_eq!(values(&first.records), vec![(1, "r1".to_string())]);
    assert_eq!(first.records[0].record.timestamp, 10);
    assert_eq!(first.records[0].record.key.as_deref(), Some(&b"r1"[..]));

    assert!(matches!(
        log.read(&p0, 5, 10, RU),
        Err(Error::OffsetOutOfRange {
            offset: 5,
            start: 0,
            end: 4,
            ..
        })
    ));

    // Kafka's ListOffsets by time: the first offset whose timestamp is at least the one asked.
    assert_eq!(log.offset_for_timestamp(&p0, 0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(&p0, 35).unwrap(), Some(3));
    assert_eq!(log.offset_for_timestamp(&p0, 41).unwrap(), None);

    // librdkafka would send time 0 as "now": refused, and nothing is appended.
    for ts in [0, -1] {
        let refused = log.append(&p0, &[Record::new("k", "v", ts)]);
        assert!(
            matches!(&refused, Err(Error::InvalidRecord { reason, .. }) if reason.contains("timestamp")),
            "{refused:?}"
        );
    }
    assert_eq!(log.end_offset(&p0, RU).unwrap(), 4);

    // A producer delivers part of a batch: the refused records are named, the others are
    // appended once, in order.
    let too_large = Record::new("big", vec![7u8; 2_000_000], 50);
    let refused = log.append(
        &p0,
        &[
            v("r4", 41),
            too_large,
            v("r5", 42),
            Record::new("k", "v", 0),
            v("r6", 43),
        ],
    );
    match &refused {
        Err(Error::RecordsRefused {
            records: 5,
            refused,
            ..
        }) => {
            let at: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
            assert_eq!(at, vec![1, 3], "{refused:?}");
            assert!(refused
                .iter()
                .all(|(_, e)| matches!(e, Error::InvalidRecord { .. })));
        }
        other => panic!("expected RecordsRefused, got {other:?}"),
    }
    let tail: Vec<String> = read::read_all(&log, &p0, 4, 10, RU)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(tail, vec!["r4", "r5", "r6"]);
}

#[test]
fn kafka_group_offsets_are_committed_and_listed() {
    let log = connect();
    let topic = unique("offsets");
    let group = unique("group");
    log.create_topic(&topic, TopicConfig::new(3)).unwrap();
    let tp = |p| TopicPartition::new(&topic, p);
    for p in 0..3 {
        log.append(
            &tp(p),
            &[Record::new("k", "v", 1), Record::new("k", "w", 2)],
        )
        .unwrap();
    }
    assert_eq!(log.committed_offset(&group, &tp(0)).unwrap(), None);
    log.commit_offsets(&group, &[(tp(0), 1), (tp(2), 2)])
        .unwrap();
    log.commit_offsets(&group, &[(tp(0), 2)]).unwrap();
    assert_eq!(
        log.committed_offsets(&group).unwrap(),
        vec![(tp(0), 2), (tp(2), 2)]
    );
    assert_eq!(log.committed_offset(&group, &tp(2)).unwrap(), Some(2));
    assert_eq!(log.committed_offset(&group, &tp(1)).unwrap(), None);
    // Another log sees the group's commits.
    let other = connect();
    assert_eq!(other.committed_offset(&group, &tp(0)).unwrap(), Some(2));
    let groups = log.list_groups().unwrap();
    assert!(groups.contains(&group), "{group} not in {groups:?}");

    // Metadata travels with the offsets (the runtime keeps stream time there), is replaced
    // by the next commit of the partition, and rides along with a transaction's offsets.
    let at = |p, offset, metadata: &str| streams_core::OffsetCommit {
        tp: tp(p),
        offset,
        metadata: metadata.into(),
    };
    log.commit_offsets_with_metadata(&group, &[at(0, 2, "streams.stream-time=9"), at(1, 1, "x")])
        .unwrap();
    let all = [tp(0), tp(1), tp(2)];
    assert_eq!(
        other.committed_metadata(&group, &all).unwrap(),
        vec![(tp(0), "streams.stream-time=9".into()), (tp(1), "x".into())]
    );
    log.commit_offsets(&group, &[(tp(1), 2)]).unwrap();
    assert_eq!(
        other.committed_metadata(&group, &all).unwrap(),
        vec![(tp(0), "streams.stream-time=9".into())]
    );
    let txn = log.begin_transaction().unwrap();
    log.append_transactional(txn, &tp(2), &[Record::new("k", "t", 3)])
        .unwrap();
    log.commit_transaction_with_metadata(txn, Some((&group, &[at(2, 3, "streams.stream-time=3")])))
        .unwrap();
    assert_eq!(other.committed_offset(&group, &tp(2)).unwrap(), Some(3));
    assert_eq!(
        other.committed_metadata(&group, &[tp(2)]).unwrap(),
        vec![(tp(2), "streams.stream-time=3".into())]
    );
}

/// Keys produced by librdkafka's own murmur2 partitioner land where `partition_for_key` says.
#[test]
fn kafka_murmur2_partitioner_agrees_with_librdkafka() {
    let log = connect();
    let topic = unique("murmur2");
    let partitions = 7;
    log.create_topic(&topic, TopicConfig::new(partitions))
        .unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers())
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        producer
            .send(
                BaseRecord::to(&topic)
                    .key(key.as_str())
                    .payload(key.as_str()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(15)).unwrap();
    let mut seen = 0;
    for p in 0..partitions {
        let tp = TopicPartition::new(&topic, p);
        let end = log.end_offset(&tp, RU).unwrap();
        let mut at = 0;
        while at < end {
            let fetch = log.read(&tp, at, 100, RU).unwrap();
            for r in &fetch.records {
                let key = r.record.key.as_deref().unwrap();
                assert_eq!(
                    partition_for_key(key, partitions),
                    p,
                    "key {:?}",
                    String::from_utf8_lossy(key)
                );
                seen += 1;
            }
            at = fetch.next_offset;
        }
    }
    assert_eq!(seen, keys.len());
}

/// A committed transaction makes its records and the group's offsets visible together; an
/// aborted one leaves nothing for read-committed readers; an open one holds read-committed
/// readers back at its first record (the last stable offset).
#[test]
fn kafka_transactions_commit_and_abort() {
    let log = KafkaLog::connect(kafka_broker::config().with_transactional_id_prefix(unique("txn")))
        .unwrap();
    let topic = unique("txn-topic");
    let group = unique("txn-group");
    log.create_topic(&topic, TopicConfig::new(1)).unwrap();
    let tp = TopicPartition::new(&topic, 0);
    let v = |s: &str| Record::new(s, s, 1);

    let txn = log.begin_transaction().unwrap();
    let info = log
        .append_transactional(txn, &tp, &[v("c0"), v("c1")])
        .unwrap();
    assert_eq!((info.base_offset, info.next_offset), (0, 2));
    // Open: read-uncommitted readers see the records, read-committed ones stop before them.
    assert_eq!(log.end_offset(&tp, RU).unwrap(), 2);
    assert_eq!(log.end_offset(&tp, RC).unwrap(), 0);
    log.commit_transaction(txn, Some((&group, &[(tp.clone(), 7)])))
        .unwrap();
    // The coordinator writes the markers after the commit returns: read-committed readers
    // and the group's offsets see the transaction a moment later. The commit marker takes
    // an offset of its own.
    settles("the committed offset", Some(7), || {
        log.committed_offset(&group, &tp).unwrap()
    });
    settles("the last stable offset", 3, || {
        log.end_offset(&tp, RC).unwrap()
    });

    let txn = log.begin_transaction().unwrap();
    log.append_transactional(txn, &tp, &[v("a0")]).unwrap();
    log.abort_transaction(txn).unwrap();
    log.append(&tp, &[v("plain")]).unwrap();
    // c0 c1 commit-marker a0 abort-marker plain
    settles("the last stable offset", 6, || {
        log.end_offset(&tp, RC).unwrap()
    });
    let committed: Vec<String> = read::read_all(&log, &tp, 0, 10, RC)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(committed, ["c0", "c1", "plain"]);
    let all: Vec<String> = read::read_all(&log, &tp, 0, 10, RU)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(all, ["c0", "c1", "a0", "plain"]);
    // The group still has the committed transaction's offsets.
    assert_eq!(log.committed_offset(&group, &tp).unwrap(), Some(7));
}

/// Waits (15 s at most) until `get` returns `expected`.
fn settles<T: PartialEq + std::fmt::Debug>(what: &str, expected: T, get: impl Fn() -> T) {
    let started = Instant::now();
    loop {
        let got = get();
        if got == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what} is {got:?}, not {expected:?}, 15 s on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads that go on from where the last one stopped (served by a reader left assigned there)
/// see every record appended in between, in order; a read elsewhere starts over.
#[test]
fn kafka_consecutive_reads_see_records_appended_between_them() {
    let log = connect();
    let topic = unique("cursor");
    log.create_topic(&topic, TopicConfig::new(1)).unwrap();
    let tp = TopicPartition::new(&topic, 0);
    let mut expected = Vec::new();
    let mut got = Vec::new();
    let mut at = 0;
    for round in 0..5u64 {
        let batch: Vec<Record> = (0..20)
            .map(|i| Record::new(format!("k{i}"), format!("{round}-{i}"), 1 + i))
            .collect();
        log.append(&tp, &batch).unwrap();
        expected.extend((0..20).map(|i| (round * 20 + i, format!("{round}-{i}"))));
        // Small reads, so that most stop short of the end.
        let end = log.end_offset(&tp, RC).unwrap();
        let started = Instant::now();
        while at < end {
            assert!(started.elapsed() < Duration::from_secs(30), "stuck at {at}");
            let fetch = log.read(&tp, at, 7, RC).unwrap();
            assert!(fetch.records.len() <= 7);
            got.extend(values(&fetch.records));
            at = fetch.next_offset;
        }
    }
    assert_eq!(got, expected);
    // Back to an earlier offset, and to one past the end.
    assert_eq!(values(&log.read(&tp, 42, 3, RC).unwrap().records).len(), 3);
    assert_eq!(log.read(&tp, 42, 1, RC).unwrap().records[0].offset, 42);
    assert!(matches!(
        log.read(&tp, 101, 1, RC),
        Err(Error::OffsetOutOfRange { .. })
    ));
}

/// A deleted topic leaves the cluster's metadata before `delete_topic` returns, so its name
/// can be created again at once (empty, with another partition count); the group's offsets
/// in it go with it; deleting it again is an unknown topic.
#[test]
fn kafka_topics_are_deleted_and_can_be_created_again() {
    let log = connect();
    let topic = unique("deleted");
    let group = unique("deleted-group");
    log.create_topic(&topic, TopicConfig::new(2)).unwrap();
    let tp = TopicPartition::new(&topic, 0);
    log.append(&tp, &[Record::new("k", "v", 1)]).unwrap();
    log.commit_offsets(&group, &[(tp.clone(), 1)]).unwrap();
    assert_eq!(log.read(&tp, 0, 10, RU).unwrap().records.len(), 1);

    log.delete_topic(&topic).unwrap();
    assert!(!log.list_topics().unwrap().contains(&topic));
    assert!(matches!(
        log.describe_topic(&topic),
        Err(Error::UnknownTopic { .. })
    ));
    match log.delete_topic(&topic) {
        Err(Error::UnknownTopic { topic: t }) => assert_eq!(t, topic),
        other => panic!("a second delete: expected UnknownTopic, got {other:?}"),
    }

    log.create_topic(&topic, TopicConfig::new(3)).unwrap();
    assert_eq!(log.describe_topic(&topic).unwrap().partitions, 3);
    assert_eq!(log.end_offset(&tp, RU).unwrap(), 0);
    settles("the group's offsets in the deleted topic", None, || {
        log.committed_offset(&group, &tp).unwrap()
    });
}

#[test]
fn kafka_clients_report_their_statistics() {
    let config = kafka_broker::config().with_property("statistics.interval.ms", "200");
    let log = KafkaLog::connect(config).unwrap();
    let topic = unique("statistics");
    log.create_topic(&topic, TopicConfig::new(1)).unwrap();
    let tp = TopicPartition::new(topic.as_str(), 0);
    let records: Vec<Record> = (0..10)
        .map(|i| Record::new(format!("k{i}"), "v", 1 + i))
        .collect();
    log.append(&tp, &records).unwrap();
    // A read of the first 4 leaves a reader 6 records short of the end. A client reports
    // while it is polled, so the reader is asked for one more now and then.
    let fetch = log.read(&tp, 0, 4, RU).unwrap();
    assert_eq!(fetch.records.len(), 4);
    let mut next = fetch.next_offset;
    let key = (topic.clone(), 0);
    let started = Instant::now();
    loop {
        let figures = log.client_figures();
        let reader = figures
            .iter()
            .find(|c| c.kind == "consumer" && c.consumer_lag.contains_key(&key))
            .filter(|r| !r.broker_rtt.is_empty());
        if let Some(reader) = reader {
            assert!(
                reader
                    .broker_rtt
                    .values()
                    .all(|rtt| *rtt > 0.0 && *rtt < 60.0),
                "{reader:?}"
            );
            // From the offset the reader handed out last when it reported (statistics are up
            // to an interval old): at most the 6 left after the first read.
            let lag = reader.consumer_lag[&key];
            assert!((0..=6).contains(&lag), "lag {lag} at {next}: {figures:?}");
            assert!(figures.iter().any(|c| c.kind == "producer"), "{figures:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no statistics within 30 s: {figures:?}"
        );
        let fetch = log.read(&tp, next, 1, RU).unwrap();
        next = fetch.next_offset;
        std::thread::sleep(Duration::from_millis(100));
    }
}
