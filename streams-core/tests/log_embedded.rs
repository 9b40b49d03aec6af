//! The embedded log end to end: round trips across segment rolls and reopen, reads with
//! limits, offsets by time, retention, group offsets, topic creation and input errors.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use streams_core::{
    EmbeddedLog, EmbeddedLogConfig, Error, IsolationLevel, Log, MemoryLog, OffsetCommit, Record,
    StoredRecord, TopicConfig, TopicPartition, MAX_IN_PROCESS_PARTITIONS,
};
use tempfile::TempDir;

const RU: IsolationLevel = IsolationLevel::ReadUncommitted;
const RC: IsolationLevel = IsolationLevel::ReadCommitted;

fn open(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open_with(
        dir,
        EmbeddedLogConfig::default().with_cleaner_interval(None),
    )
    .unwrap()
}

/// A varied record: headers, null keys, tombstones, empty values, distinct timestamps.
fn record(i: u64) -> Record {
    let ts = 1_000 + i as i64 * 10;
    match i % 5 {
        0 => Record::new(
            format!("key-{i}"),
            format!("value-{i}-{}", "x".repeat(i as usize % 40)),
            ts,
        ),
        1 => Record::unkeyed(format!("unkeyed-{i}"), ts).with_header("h1", format!("{i}")),
        2 => Record::tombstone(format!("key-{i}"), ts),
        3 => Record::new(format!("key-{i}"), Vec::new(), ts)
            .with_header("a", "1")
            .with_header("b", Vec::new()),
        _ => {
            let mut r = Record::new(vec![0u8, 255, i as u8], vec![i as u8; 17], ts);
            r.headers.push(streams_core::Header {
                key: "null".into(),
                value: None,
            });
            r
        }
    }
}

/// Reads everything from `from` to the end in chunks of `chunk`, following `next_offset`.
fn read_all(log: &dyn Log, tp: &TopicPartition, from: u64, chunk: usize) -> Vec<StoredRecord> {
    let end = log.end_offset(tp, RU).unwrap();
    let mut out = Vec::new();
    let mut at = from;
    while at < end {
        let fetch = log.read(tp, at, chunk, RU).unwrap();
        assert!(
            fetch.records.len() <= chunk,
            "read returned more than max_records"
        );
        assert!(fetch.next_offset > at, "no progress at {at}");
        out.extend(fetch.records);
        at = fetch.next_offset;
    }
    out
}

fn expected(range: std::ops::Range<u64>) -> Vec<StoredRecord> {
    range
        .map(|i| StoredRecord {
            offset: i,
            record: record(i),
        })
        .collect()
}

#[test]
fn round_trip_across_rolls_and_reopen() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("events", 1);
    let mut next = 0u64;
    {
        let log = open(dir.path());
        log.create_topic("events", TopicConfig::new(2).with_segment_bytes(1024))
            .unwrap();
        // Batches of varying sizes, including one larger than a segment.
        for size in [1usize, 3, 7, 2, 40, 1, 5, 11, 9, 13, 2, 6] {
            let batch: Vec<Record> = (next..next + size as u64).map(record).collect();
            let info = log.append(&tp, &batch).unwrap();
            assert_eq!(info.base_offset, next);
            assert_eq!(info.next_offset, next + size as u64);
            next += size as u64;
        }
        // An empty append changes nothing.
        let info = log.append(&tp, &[]).unwrap();
        assert_eq!((info.base_offset, info.next_offset), (next, next));
        assert!(
            log.segment_count(&tp).unwrap() > 3,
            "segments should have rolled"
        );
        assert_eq!(read_all(&log, &tp, 0, 1000), expected(0..next));
        // The other partition is untouched.
        let other = TopicPartition::new("events", 0);
        assert_eq!(log.end_offset(&other, RU).unwrap(), 0);
        assert!(log.read(&other, 0, 10, RU).unwrap().records.is_empty());
    }
    for round in 0..3 {
        let log = open(dir.path());
        assert_eq!(log.list_topics().unwrap(), vec!["events".to_string()]);
        assert_eq!(log.describe_topic("events").unwrap().segment_bytes, 1024);
        assert_eq!(log.start_offset(&tp).unwrap(), 0);
        assert_eq!(log.end_offset(&tp, RU).unwrap(), next);
        assert_eq!(log.end_offset(&tp, RC).unwrap(), next);
        assert_eq!(
            read_all(&log, &tp, 0, 3),
            expected(0..next),
            "round {round}"
        );
        let batch: Vec<Record> = (next..next + 4).map(record).collect();
        assert_eq!(
            log.append(&tp, &batch).unwrap().base_offset,
            next,
            "round {round}"
        );
        next += 4;
        assert_eq!(
            read_all(&log, &tp, 0, 7),
            expected(0..next),
            "round {round}"
        );
    }
}

#[test]
fn read_limits_and_continuation() {
    let dir = TempDir::new().unwrap();
    let log = open(dir.path());
    let tp = TopicPartition::new("t", 0);
    log.create_topic("t", TopicConfig::new(1).with_segment_bytes(1024))
        .unwrap();
    for chunk in (0..60u64).collect::<Vec<_>>().chunks(6) {
        let batch: Vec<Record> = chunk.iter().map(|&i| record(i)).collect();
        log.append(&tp, &batch).unwrap();
    }
    // Every start offset and limit: exactly the next `max` records, next_offset after them.
    for from in 0..=60u64 {
        for max in [1usize, 2, 5, 6, 7, 100] {
            let fetch = log.read(&tp, from, max, RU).unwrap();
            let want = expected(from..(from + max as u64).min(60));
            assert_eq!(fetch.records, want, "from {from} max {max}");
            assert_eq!(
                fetch.next_offset,
                from + want.len() as u64,
                "from {from} max {max}"
            );
        }
    }
    let fetch = log.read(&tp, 10, 0, RU).unwrap();
    assert!(fetch.records.is_empty());
    assert_eq!(fetch.next_offset, 10);
    assert!(matches!(
        log.read(&tp, 61, 10, RU),
        Err(Error::OffsetOutOfRange {
            offset: 61,
            start: 0,
            end: 60,
            ..
        })
    ));
}

#[test]
fn offset_for_timestamp_matches_a_scan() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("t", 0);
    // Timestamps out of order, with repeats.
    let ts: Vec<i64> = (0..80).map(|i: i64| (i * 37) % 101 + 5).collect();
    let check = |log: &EmbeddedLog| {
        for probe in -1..=110 {
            let want = ts.iter().position(|&t| t >= probe).map(|i| i as u64);
            assert_eq!(
                log.offset_for_timestamp(&tp, probe).unwrap(),
                want,
                "timestamp {probe}"
            );
        }
    };
    {
        let log = open(dir.path());
        log.create_topic("t", TopicConfig::new(1).with_segment_bytes(1024))
            .unwrap();
        assert_eq!(log.offset_for_timestamp(&tp, 0).unwrap(), None);
        for chunk in ts.chunks(3) {
            let batch: Vec<Record> = chunk
                .iter()
                .map(|&t| Record::new("k", format!("v{t}"), t))
                .collect();
            log.append(&tp, &batch).unwrap();
        }
        assert!(log.segment_count(&tp).unwrap() > 2);
        check(&log);
    }
    check(&open(dir.path()));
}

fn fill(log: &EmbeddedLog, tp: &TopicPartition, n: u64) {
    for i in 0..n {
        let r = Record::new(format!("k{i}"), vec![b'v'; 100], i as i64);
        assert_eq!(log.append(tp, &[r]).unwrap().base_offset, i);
    }
}

#[test]
fn retention_by_size() {
    let dir = TempDir::new().unwrap();
    let log = open(dir.path());
    let tp = TopicPartition::new("sized", 0);
    let config = TopicConfig::new(1)
        .with_segment_bytes(1024)
        .with_retention_ms(None)
        .with_retention_bytes(Some(3000));
    log.create_topic("sized", config).unwrap();
    fill(&log, &tp, 100);
    let before = log.partition_size(&tp).unwrap();
    let segments_before = log.segment_count(&tp).unwrap();
    assert!(before > 3000);
    let report = log.maintain(i64::MAX / 2).unwrap();
    assert!(report.segments_deleted > 0);
    let after = log.partition_size(&tp).unwrap();
    assert_eq!(
        log.segment_count(&tp).unwrap(),
        segments_before - report.segments_deleted
    );
    // At least the limit is kept, and no more than one segment beyond it.
    assert!(after >= 3000, "kept {after} bytes");
    assert!(after < 3000 + 1024, "kept {after} bytes");
    let start = log.start_offset(&tp).unwrap();
    assert!(start > 0);
    assert_eq!(log.end_offset(&tp, RU).unwrap(), 100);
    let rest = read_all(&log, &tp, start, 1000);
    assert_eq!(rest.first().map(|r| r.offset), Some(start));
    assert_eq!(rest.len() as u64, 100 - start);
    for r in &rest {
        assert_eq!(
            r.record.key.as_deref(),
            Some(format!("k{}", r.offset).as_bytes())
        );
    }
    match log.read(&tp, start - 1, 10, RU) {
        Err(e @ Error::OffsetOutOfRange { .. }) => {
            assert!(e.to_string().contains("sized"), "{e}");
        }
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    // A second run has nothing left to delete; the state survives reopen.
    assert_eq!(log.maintain(i64::MAX / 2).unwrap().segments_deleted, 0);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.start_offset(&tp).unwrap(), start);
    assert_eq!(read_all(&log, &tp, start, 1000), rest);
    assert_eq!(
        log.append(&tp, &[Record::unkeyed("x", 0)])
            .unwrap()
            .base_offset,
        100
    );
}

#[test]
fn retention_by_time() {
    let dir = TempDir::new().unwrap();
    let log = open(dir.path());
    let tp = TopicPartition::new("timed", 0);
    let keep = TopicPartition::new("kept", 0);
    log.create_topic(
        "timed",
        TopicConfig::new(1)
            .with_segment_bytes(1024)
            .with_retention_ms(Some(0)),
    )
    .unwrap();
    log.create_topic(
        "kept",
        TopicConfig::new(1)
            .with_segment_bytes(1024)
            .with_retention_ms(None),
    )
    .unwrap();
    fill(&log, &tp, 50);
    fill(&log, &keep, 50);
    let segments = log.segment_count(&tp).unwrap();
    assert!(segments > 2);
    // Nothing was appended before the epoch: no segment is older than `now - 0` then.
    assert_eq!(log.maintain(0).unwrap().segments_deleted, 0);
    assert_eq!(log.start_offset(&tp).unwrap(), 0);
    // In the future everything closed has expired; the active segment stays.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let report = log.maintain(now + 60_000).unwrap();
    assert_eq!(report.segments_deleted, segments - 1);
    assert_eq!(log.segment_count(&tp).unwrap(), 1);
    let start = log.start_offset(&tp).unwrap();
    assert!(start > 0 && start < 50);
    assert!(
        matches!(log.read(&tp, 0, 10, RU), Err(Error::OffsetOutOfRange { start: s, .. }) if s == start)
    );
    assert_eq!(read_all(&log, &tp, start, 10).len() as u64, 50 - start);
    // retention_ms = None keeps everything.
    assert_eq!(log.start_offset(&keep).unwrap(), 0);
    assert_eq!(read_all(&log, &keep, 0, 100).len(), 50);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.start_offset(&tp).unwrap(), start);
    assert_eq!(log.end_offset(&tp, RU).unwrap(), 50);
}

#[test]
fn group_offsets_survive_reopen() {
    let dir = TempDir::new().unwrap();
    let a0 = TopicPartition::new("a", 0);
    let a1 = TopicPartition::new("a", 1);
    let b0 = TopicPartition::new("b", 0);
    {
        let log = open(dir.path());
        log.create_topic("a", TopicConfig::new(2)).unwrap();
        log.create_topic("b", TopicConfig::new(1)).unwrap();
        assert!(log.list_groups().unwrap().is_empty());
        assert!(log.committed_offsets("g1").unwrap().is_empty());
        log.commit_offsets("g1", &[(a0.clone(), 5), (a1.clone(), 7)])
            .unwrap();
        log.commit_offsets("g2", &[(b0.clone(), 1)]).unwrap();
        log.commit_offsets_with_metadata(
            "g3",
            &[OffsetCommit {
                tp: b0.clone(),
                offset: 4,
                metadata: "streams.stream-time=42".into(),
            }],
        )
        .unwrap();
        // A later commit overrides one partition and keeps the others.
        log.commit_offsets("g1", &[(a0.clone(), 9)]).unwrap();
        assert_eq!(log.committed_offset("g1", &a0).unwrap(), Some(9));
        assert_eq!(log.committed_offset("g1", &b0).unwrap(), None);
        // Bad offsets are refused and change nothing.
        assert!(matches!(
            log.commit_offsets("g1", &[(TopicPartition::new("a", 2), 1)]),
            Err(Error::PartitionOutOfRange { partitions: 2, .. })
        ));
        assert!(matches!(
            log.commit_offsets("g1", &[(TopicPartition::new("zz", 0), 1)]),
            Err(Error::UnknownTopic { .. })
        ));
    }
    let log = open(dir.path());
    assert_eq!(
        log.list_groups().unwrap(),
        vec!["g1".to_string(), "g2".to_string(), "g3".to_string()]
    );
    assert_eq!(
        log.committed_metadata("g3", std::slice::from_ref(&b0))
            .unwrap(),
        vec![(b0.clone(), "streams.stream-time=42".to_string())]
    );
    let mut g1 = log.committed_offsets("g1").unwrap();
    g1.sort();
    assert_eq!(g1, vec![(a0.clone(), 9), (a1.clone(), 7)]);
    assert_eq!(log.committed_offsets("g2").unwrap(), vec![(b0, 1)]);
    assert!(log.committed_offsets("nobody").unwrap().is_empty());
}

#[test]
fn many_offset_commits_survive_journal_snapshots() {
    let dir = TempDir::new().unwrap();
    let config = EmbeddedLogConfig::default()
        .with_cleaner_interval(None)
        .with_journal_snapshot_bytes(512);
    let tp = TopicPartition::new("t", 0);
    {
        let log = EmbeddedLog::open_with(dir.path(), config.clone()).unwrap();
        log.create_topic("t", TopicConfig::new(1)).unwrap();
        for i in 0..300u64 {
            log.commit_offsets(&format!("g{}", i % 7), &[(tp.clone(), i)])
                .unwrap();
        }
    }
    let journal = std::fs::metadata(dir.path().join("meta.journal"))
        .unwrap()
        .len();
    assert!(
        journal < 2048,
        "journal was not snapshotted: {journal} bytes"
    );
    let log = EmbeddedLog::open_with(dir.path(), config).unwrap();
    assert_eq!(log.list_groups().unwrap().len(), 7);
    for g in 0..7u64 {
        let last = (0..300u64).filter(|i| i % 7 == g).max().unwrap();
        assert_eq!(
            log.committed_offset(&format!("g{g}"), &tp).unwrap(),
            Some(last)
        );
    }
}

#[test]
fn create_topic_is_idempotent_and_checked() {
    let dir = TempDir::new().unwrap();
    {
        let log = open(dir.path());
        log.create_topic("t", TopicConfig::new(3)).unwrap();
        log.create_topic("t", TopicConfig::new(3)).unwrap();
        match log.create_topic("t", TopicConfig::new(4)) {
            Err(Error::TopicExists {
                topic,
                existing: 3,
                requested: 4,
            }) => assert_eq!(topic, "t"),
            other => panic!("expected TopicExists, got {other:?}"),
        }
        assert_eq!(log.describe_topic("t").unwrap().partitions, 3);
    }
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::new(3)).unwrap();
    assert!(matches!(
        log.create_topic("t", TopicConfig::new(1)),
        Err(Error::TopicExists { .. })
    ));
    assert_eq!(log.list_topics().unwrap(), vec!["t".to_string()]);
    // Bad topic configurations are refused before anything is written.
    assert!(matches!(
        log.create_topic("zero", TopicConfig::new(0)),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        log.create_topic("small", TopicConfig::new(1).with_segment_bytes(100)),
        Err(Error::Config { .. })
    ));
    assert_eq!(log.list_topics().unwrap(), vec!["t".to_string()]);
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = TempDir::new().unwrap();
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::new(2)).unwrap();
    log.create_topic("c", TopicConfig::compacted(1)).unwrap();

    let missing = TopicPartition::new("no-such-topic", 0);
    let results = [
        log.append(&missing, &[Record::unkeyed("v", 0)]).map(|_| ()),
        log.read(&missing, 0, 1, RU).map(|_| ()),
        log.start_offset(&missing).map(|_| ()),
        log.end_offset(&missing, RC).map(|_| ()),
        log.offset_for_timestamp(&missing, 0).map(|_| ()),
        log.describe_topic("no-such-topic").map(|_| ()),
    ];
    for r in results {
        match r {
            Err(e @ Error::UnknownTopic { .. }) => {
                assert!(e.to_string().contains("no-such-topic"), "{e}")
            }
            other => panic!("expected UnknownTopic, got {other:?}"),
        }
    }

    let out_of_range = TopicPartition::new("t", 2);
    let results = [
        log.append(&out_of_range, &[Record::unkeyed("v", 0)])
            .map(|_| ()),
        log.read(&out_of_range, 0, 1, RU).map(|_| ()),
        log.end_offset(&out_of_range, RU).map(|_| ()),
    ];
    for r in results {
        match r {
            Err(
                e @ Error::PartitionOutOfRange {
                    partition: 2,
                    partitions: 2,
                    ..
                },
            ) => {
                assert!(e.to_string().contains("`t`"), "{e}")
            }
            other => panic!("expected PartitionOutOfRange, got {other:?}"),
        }
    }

    for name in [
        "",
        ".",
        "..",
        "has space",
        "slash/y",
        "../escape",
        "ünïcode",
        &"x".repeat(250),
    ] {
        match log.create_topic(name, TopicConfig::new(1)) {
            Err(Error::Config { .. }) => {}
            other => panic!("topic name {name:?}: expected Config error, got {other:?}"),
        }
    }
    log.create_topic(&"x".repeat(249), TopicConfig::new(1))
        .unwrap();
    log.create_topic("ok.name_with-chars", TopicConfig::new(1))
        .unwrap();

    // A null key on a compacted topic is refused, and nothing of the batch is written.
    let c = TopicPartition::new("c", 0);
    let batch = [Record::new("k", "v", 0), Record::unkeyed("v", 0)];
    match log.append(&c, &batch) {
        Err(e @ Error::InvalidRecord { .. }) => assert!(e.to_string().contains("key"), "{e}"),
        other => panic!("expected InvalidRecord, got {other:?}"),
    }
    assert_eq!(log.end_offset(&c, RU).unwrap(), 0);
    // Tombstones are fine on compacted topics.
    log.append(&c, &[Record::tombstone("k", 0)]).unwrap();
    assert!(matches!(
        log.commit_offsets("", &[]),
        Err(Error::Config { .. })
    ));
}

#[test]
fn clones_share_one_log_and_threads_append_concurrently() {
    let dir = TempDir::new().unwrap();
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::new(1).with_segment_bytes(1024))
        .unwrap();
    let tp = TopicPartition::new("t", 0);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let log = log.clone();
            let tp = tp.clone();
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    log.append(&tp, &[Record::new(vec![t], vec![i], 0)])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = read_all(&log, &tp, 0, 1000);
    assert_eq!(
        all.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..200).collect::<Vec<_>>()
    );
    // Each thread's records appear in the order it appended them.
    for t in 0..4u8 {
        let values: Vec<u8> = all
            .iter()
            .filter(|r| r.record.key.as_deref() == Some(&[t][..]))
            .map(|r| r.record.value.as_ref().unwrap()[0])
            .collect();
        assert_eq!(values, (0..50).collect::<Vec<_>>());
    }
}

#[test]
fn partition_counts_are_bounded_and_a_refused_topic_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open_with(
        dir.path(),
        EmbeddedLogConfig::default().with_cleaner_interval(None),
    )
    .unwrap();
    let memory = MemoryLog::new();
    for huge in [MAX_IN_PROCESS_PARTITIONS + 1, u32::MAX] {
        for err in [
            log.create_topic("t", TopicConfig::new(huge)).unwrap_err(),
            memory
                .create_topic("t", TopicConfig::new(huge))
                .unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(text.contains("t.partitions"), "{text}");
            assert!(text.contains(&huge.to_string()), "{text}");
        }
    }
    assert!(!dir.path().join("topics").join("t").exists());
    log.create_topic("t", TopicConfig::new(3)).unwrap();
}

/// A deletion survives a reopen: the topic's files are gone, the groups' offsets in it do not
/// come back from the journal (also after a snapshot rewrote it), and a topic created again
/// under the name starts empty. A read-only log refuses to delete.
#[test]
fn deleted_topics_stay_deleted_across_reopen() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("gone", 0);
    let kept = TopicPartition::new("kept", 0);
    {
        let log = open(dir.path());
        log.create_topic("gone", TopicConfig::new(1)).unwrap();
        log.create_topic("kept", TopicConfig::new(1)).unwrap();
        log.append(&tp, &[record(0), record(1)]).unwrap();
        log.append(&kept, &[record(2)]).unwrap();
        log.commit_offsets("app", &[(tp.clone(), 2), (kept.clone(), 1)])
            .unwrap();
        log.delete_topic("gone").unwrap();
        assert!(!dir.path().join("topics").join("gone").exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("deleted"))
                .unwrap()
                .count(),
            0,
            "the deleted topic's files are removed, not only moved"
        );
    }
    {
        let reader = EmbeddedLog::open_with(
            dir.path(),
            EmbeddedLogConfig::default().with_read_only(true),
        )
        .unwrap();
        match reader.delete_topic("kept") {
            Err(Error::ReadOnly { .. }) => {}
            other => panic!("a read-only log must refuse to delete, got {other:?}"),
        }
    }
    // A deletion stopped after the rename: the next writable open removes what is left.
    let leftover = dir.path().join("deleted").join("gone.1");
    std::fs::create_dir_all(leftover.join("0")).unwrap();
    std::fs::write(leftover.join("0").join("00000000000000000000.log"), b"x").unwrap();
    let log = open(dir.path());
    assert!(!leftover.exists());
    assert_eq!(log.list_topics().unwrap(), vec!["kept".to_string()]);
    assert_eq!(
        log.committed_offsets("app").unwrap(),
        vec![(kept.clone(), 1)]
    );
    log.create_topic("gone", TopicConfig::new(1)).unwrap();
    assert_eq!(log.end_offset(&tp, RU).unwrap(), 0);
    drop(log);

    // Again through a journal snapshot.
    let log = EmbeddedLog::open_with(
        dir.path(),
        EmbeddedLogConfig::default()
            .with_cleaner_interval(None)
            .with_journal_snapshot_bytes(1),
    )
    .unwrap();
    log.commit_offsets("app", &[(tp.clone(), 0)]).unwrap();
    log.delete_topic("gone").unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.committed_offsets("app").unwrap(), vec![(kept, 1)]);
    assert!(matches!(
        log.describe_topic("gone"),
        Err(Error::UnknownTopic { .. })
    ));
}
