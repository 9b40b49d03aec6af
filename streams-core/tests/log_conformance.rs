//! The semantics every [`Log`] must have, run against each backend through `&dyn Log`, and a
//! differential test: random operations give the same results on the embedded log and memory.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use streams_core::{
    EmbeddedLog, EmbeddedLogConfig, Error, IsolationLevel, Log, MemoryLog, OffsetCommit, Record,
    StoredRecord, TopicConfig, TopicPartition, TxnId,
};
use tempfile::TempDir;

#[path = "support/read.rs"]
mod read;
use read::{read_all, values};

const RU: IsolationLevel = IsolationLevel::ReadUncommitted;
const RC: IsolationLevel = IsolationLevel::ReadCommitted;

fn embedded(dir: &TempDir) -> EmbeddedLog {
    EmbeddedLog::open_with(
        dir.path(),
        EmbeddedLogConfig::default().with_cleaner_interval(None),
    )
    .unwrap()
}

fn v(s: &str, ts: i64) -> Record {
    Record::new(s, s, ts)
}

fn expect_txn_error<T: std::fmt::Debug>(r: streams_core::Result<T>, what: &str) {
    match r {
        Err(Error::Transaction { .. }) => {}
        other => panic!("{what}: expected Error::Transaction, got {other:?}"),
    }
}

/// Everything the trait promises, checked on an empty log.
fn conformance(log: &dyn Log) {
    // Topics.
    assert!(log.list_topics().unwrap().is_empty());
    log.create_topic("b", TopicConfig::new(2)).unwrap();
    log.create_topic("a", TopicConfig::compacted(1)).unwrap();
    log.create_topic("b", TopicConfig::new(2)).unwrap();
    assert!(matches!(
        log.create_topic("b", TopicConfig::new(3)),
        Err(Error::TopicExists {
            existing: 2,
            requested: 3,
            ..
        })
    ));
    assert_eq!(
        log.list_topics().unwrap(),
        vec!["a".to_string(), "b".to_string()]
    );
    assert_eq!(log.describe_topic("a").unwrap(), TopicConfig::compacted(1));
    for bad in ["", "..", "a b", "a/b"] {
        assert!(
            matches!(
                log.create_topic(bad, TopicConfig::new(1)),
                Err(Error::Config { .. })
            ),
            "{bad:?}"
        );
    }
    let err = log.describe_topic("nope").unwrap_err();
    assert!(
        matches!(err, Error::UnknownTopic { .. }) && err.to_string().contains("nope"),
        "{err}"
    );
    assert!(matches!(
        log.append(&TopicPartition::new("b", 2), &[v("x", 0)]),
        Err(Error::PartitionOutOfRange {
            partition: 2,
            partitions: 2,
            ..
        })
    ));
    assert!(matches!(
        log.append(&TopicPartition::new("a", 0), &[Record::unkeyed("x", 0)]),
        Err(Error::InvalidRecord { .. })
    ));

    // Appends and reads.
    let p0 = TopicPartition::new("b", 0);
    let p1 = TopicPartition::new("b", 1);
    assert_eq!(log.start_offset(&p0).unwrap(), 0);
    assert_eq!(log.end_offset(&p0, RU).unwrap(), 0);
    let info = log
        .append(&p0, &[v("r0", 30), v("r1", 10), v("r2", 20)])
        .unwrap();
    assert_eq!((info.base_offset, info.next_offset), (0, 3));
    let info = log.append(&p0, &[v("r3", 40)]).unwrap();
    assert_eq!((info.base_offset, info.next_offset), (3, 4));
    let with_everything = Record {
        key: None,
        value: None,
        timestamp: -1,
        headers: vec![],
    }
    .with_header("h", "1")
    .with_header("h", "2");
    assert_eq!(
        log.append(&p1, std::slice::from_ref(&with_everything))
            .unwrap()
            .base_offset,
        0
    );
    let back = log.read(&p1, 0, 10, RU).unwrap();
    assert_eq!(
        back.records,
        vec![StoredRecord {
            offset: 0,
            record: with_everything
        }]
    );
    assert_eq!(back.next_offset, 1);
    let fetch = log.read(&p0, 1, 2, RU).unwrap();
    assert_eq!(
        values(&fetch.records),
        vec![(1, "r1".into()), (2, "r2".into())]
    );
    assert_eq!(fetch.next_offset, 3);
    assert!(matches!(
        log.read(&p0, 5, 1, RU),
        Err(Error::OffsetOutOfRange {
            offset: 5,
            end: 4,
            ..
        })
    ));
    assert_eq!(log.offset_for_timestamp(&p0, 15).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(&p0, 31).unwrap(), Some(3));
    assert_eq!(log.offset_for_timestamp(&p0, 41).unwrap(), None);

    // Group offsets.
    assert!(log.list_groups().unwrap().is_empty());
    log.commit_offsets("g", &[(p0.clone(), 2), (p1.clone(), 1)])
        .unwrap();
    log.commit_offsets("g", &[(p0.clone(), 4)]).unwrap();
    assert_eq!(log.committed_offset("g", &p0).unwrap(), Some(4));
    assert_eq!(log.committed_offset("g", &p1).unwrap(), Some(1));
    assert!(matches!(
        log.commit_offsets("g", &[(TopicPartition::new("zz", 0), 1)]),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        log.commit_offsets("", &[(p0.clone(), 1)]),
        Err(Error::Config { .. })
    ));
    assert_eq!(log.list_groups().unwrap(), vec!["g".to_string()]);

    // An open transaction is invisible to read-committed and holds back its end offset.
    let t1 = log.begin_transaction().unwrap();
    let info = log
        .append_transactional(t1, &p0, &[v("t1a", 50), v("t1b", 50)])
        .unwrap();
    assert_eq!(info.base_offset, 4);
    log.append(&p0, &[v("plain", 60)]).unwrap();
    assert_eq!(log.end_offset(&p0, RU).unwrap(), 7);
    assert_eq!(
        log.end_offset(&p0, RC).unwrap(),
        4,
        "LSO is the open transaction's first offset"
    );
    assert_eq!(
        log.end_offset(&p1, RC).unwrap(),
        1,
        "other partitions are not held back"
    );
    assert_eq!(read_all(log, &p0, 4, 10, RC), vec![]);
    assert_eq!(read_all(log, &p0, 4, 10, RU).len(), 3);
    let fetch = log.read(&p0, 0, 100, RC).unwrap();
    assert_eq!(fetch.records.len(), 4);
    assert_eq!(fetch.next_offset, 4);
    // Committing makes the records and the offsets visible together.
    log.commit_transaction(t1, Some(("txn-group", &[(p0.clone(), 7)])))
        .unwrap();
    assert_eq!(log.committed_offset("txn-group", &p0).unwrap(), Some(7));
    assert_eq!(log.end_offset(&p0, RC).unwrap(), 7);
    assert_eq!(
        read_all(log, &p0, 4, 1, RC),
        vec![(4, "t1a".into()), (5, "t1b".into()), (6, "plain".into())]
    );

    // Aborted records are skipped by read-committed, seen by read-uncommitted.
    let t2 = log.begin_transaction().unwrap();
    assert_ne!(t1, t2);
    log.append_transactional(t2, &p0, &[v("t2a", 70), v("t2b", 70)])
        .unwrap();
    log.append_transactional(t2, &p1, &[v("t2c", 70)]).unwrap();
    assert_eq!(log.end_offset(&p1, RC).unwrap(), 1);
    log.abort_transaction(t2).unwrap();
    log.append(&p0, &[v("after", 80)]).unwrap();
    assert_eq!(log.end_offset(&p0, RC).unwrap(), 10);
    assert_eq!(read_all(log, &p0, 7, 1, RC), vec![(9, "after".into())]);
    assert_eq!(read_all(log, &p0, 7, 100, RU).len(), 3);
    let fetch = log.read(&p0, 7, 100, RC).unwrap();
    assert_eq!(
        (values(&fetch.records), fetch.next_offset),
        (vec![(9, "after".into())], 10)
    );
    assert_eq!(read_all(log, &p1, 0, 10, RC).len(), 1);
    assert_eq!(log.committed_offset("txn-group", &p0).unwrap(), Some(7));

    // Interleaved transactions: the older open one bounds what read-committed sees.
    let t3 = log.begin_transaction().unwrap();
    let t4 = log.begin_transaction().unwrap();
    log.append_transactional(t3, &p0, &[v("t3", 90)]).unwrap();
    log.append_transactional(t4, &p0, &[v("t4", 90)]).unwrap();
    log.commit_transaction(t4, None).unwrap();
    assert_eq!(log.end_offset(&p0, RC).unwrap(), 10);
    assert_eq!(read_all(log, &p0, 10, 10, RC), vec![]);
    log.abort_transaction(t3).unwrap();
    assert_eq!(log.end_offset(&p0, RC).unwrap(), 12);
    assert_eq!(read_all(log, &p0, 10, 10, RC), vec![(11, "t4".into())]);
    // A transaction that wrote nothing commits its offsets all the same.
    let t5 = log.begin_transaction().unwrap();
    log.commit_transaction(t5, Some(("empty", &[(p1.clone(), 3)])))
        .unwrap();
    assert_eq!(log.committed_offset("empty", &p1).unwrap(), Some(3));

    // Misuse.
    expect_txn_error(log.commit_transaction(t1, None), "commit twice");
    expect_txn_error(log.abort_transaction(t1), "abort after commit");
    expect_txn_error(log.commit_transaction(t2, None), "commit after abort");
    expect_txn_error(
        log.append_transactional(t1, &p0, &[v("late", 0)]),
        "append after commit",
    );
    expect_txn_error(
        log.append_transactional(TxnId(987_654), &p0, &[v("x", 0)]),
        "unknown id",
    );
    expect_txn_error(
        log.commit_transaction(TxnId(987_654), None),
        "commit unknown id",
    );
    assert_eq!(
        log.end_offset(&p0, RU).unwrap(),
        12,
        "misuse appended nothing"
    );
    // Bad input inside a transaction fails and leaves the transaction usable.
    let t6 = log.begin_transaction().unwrap();
    assert!(matches!(
        log.append_transactional(t6, &TopicPartition::new("nope", 0), &[v("x", 0)]),
        Err(Error::UnknownTopic { .. })
    ));
    log.append_transactional(t6, &p1, &[v("t6", 0)]).unwrap();
    log.commit_transaction(t6, None).unwrap();
    assert_eq!(
        read_all(log, &p1, 0, 10, RC),
        vec![(0, String::new()), (2, "t6".into())]
    );
    offset_metadata(log, &p0, &p1);
    log.sync().unwrap();
}

/// Offset metadata is kept beside each offset, replaced by every commit of that partition
/// (a commit without metadata clears it), and committed with a transaction's offsets.
fn offset_metadata(log: &dyn Log, p0: &TopicPartition, p1: &TopicPartition) {
    let at = |tp: &TopicPartition, offset, metadata: &str| OffsetCommit {
        tp: tp.clone(),
        offset,
        metadata: metadata.into(),
    };
    let both = [p0.clone(), p1.clone()];
    log.commit_offsets_with_metadata("meta", &[at(p0, 3, "t=10"), at(p1, 1, "t=7")])
        .unwrap();
    assert_eq!(log.committed_offset("meta", p0).unwrap(), Some(3));
    assert_eq!(
        log.committed_metadata("meta", &both).unwrap(),
        vec![(p0.clone(), "t=10".into()), (p1.clone(), "t=7".into())]
    );
    log.commit_offsets("meta", &[(p1.clone(), 2)]).unwrap();
    assert_eq!(
        log.committed_metadata("meta", &both).unwrap(),
        vec![(p0.clone(), "t=10".into())]
    );
    let txn = log.begin_transaction().unwrap();
    log.append_transactional(txn, p1, &[v("m", 0)]).unwrap();
    log.commit_transaction_with_metadata(txn, Some(("meta", &[at(p1, 3, "t=12")])))
        .unwrap();
    assert_eq!(log.committed_offset("meta", p1).unwrap(), Some(3));
    assert_eq!(
        log.committed_metadata("meta", std::slice::from_ref(p1))
            .unwrap(),
        vec![(p1.clone(), "t=12".into())]
    );
    assert!(log.committed_metadata("nobody", &both).unwrap().is_empty());
}

/// A deleted topic is gone with its records and the groups' offsets in it; other topics and
/// other offsets stay; the name can be created again, empty; an open transaction that wrote to
/// the topic keeps it.
fn topic_deletion(log: &dyn Log) {
    let doomed = TopicPartition::new("doomed", 1);
    let kept = TopicPartition::new("kept", 0);
    log.create_topic("doomed", TopicConfig::new(2)).unwrap();
    log.create_topic("kept", TopicConfig::new(1)).unwrap();
    log.append(&doomed, &[v("a", 1), v("b", 2)]).unwrap();
    log.append(&kept, &[v("c", 3)]).unwrap();
    log.commit_offsets("app", &[(doomed.clone(), 2), (kept.clone(), 1)])
        .unwrap();
    log.commit_offsets("only-doomed", &[(doomed.clone(), 1)])
        .unwrap();

    let txn = log.begin_transaction().unwrap();
    log.append_transactional(txn, &doomed, &[v("t", 4)])
        .unwrap();
    match log.delete_topic("doomed") {
        Err(Error::Transaction { txn_id, reason }) => {
            assert_eq!(txn_id, txn.0);
            assert!(reason.contains("doomed"), "{reason}");
        }
        other => panic!("expected the open transaction to refuse, got {other:?}"),
    }
    log.abort_transaction(txn).unwrap();

    log.delete_topic("doomed").unwrap();
    assert_eq!(log.list_topics().unwrap(), vec!["kept".to_string()]);
    assert!(matches!(
        log.describe_topic("doomed"),
        Err(Error::UnknownTopic { .. })
    ));
    assert!(matches!(
        log.read(&doomed, 0, 10, RU),
        Err(Error::UnknownTopic { .. })
    ));
    assert_eq!(
        log.committed_offsets("app").unwrap(),
        vec![(kept.clone(), 1)]
    );
    assert_eq!(log.list_groups().unwrap(), vec!["app".to_string()]);
    match log.delete_topic("doomed") {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "doomed"),
        other => panic!("a second delete: expected UnknownTopic, got {other:?}"),
    }

    log.create_topic("doomed", TopicConfig::new(3)).unwrap();
    assert_eq!(log.end_offset(&doomed, RU).unwrap(), 0);
    assert_eq!(log.read(&doomed, 0, 10, RU).unwrap().records, vec![]);
    assert_eq!(read_all(log, &kept, 0, 10, RU), vec![(0, "c".to_string())]);
}

#[test]
fn memory_log_conforms() {
    conformance(&MemoryLog::new());
    topic_deletion(&MemoryLog::new());
}

#[test]
fn embedded_log_conforms() {
    let dir = TempDir::new().unwrap();
    conformance(&embedded(&dir));
    let dir = TempDir::new().unwrap();
    topic_deletion(&embedded(&dir));
}

#[test]
fn embedded_log_conforms_with_every_fsync_policy_and_tiny_segments() {
    for fsync in [
        streams_core::FsyncPolicy::Always,
        streams_core::FsyncPolicy::Never,
    ] {
        let dir = TempDir::new().unwrap();
        let log = EmbeddedLog::open_with(
            dir.path(),
            EmbeddedLogConfig::default()
                .with_cleaner_interval(None)
                .with_fsync(fsync)
                .with_index_interval_bytes(1),
        )
        .unwrap();
        conformance(&log);
    }
}

// ---- Differential: the same random operations on both backends give the same answers. ----

#[derive(Debug, Clone)]
enum Op {
    Append {
        p: u32,
        n: u8,
    },
    Begin,
    AppendTxn {
        txn: usize,
        p: u32,
        n: u8,
    },
    Commit {
        txn: usize,
        offset: Option<u64>,
    },
    Abort {
        txn: usize,
    },
    Read {
        p: u32,
        from: u64,
        max: usize,
        committed: bool,
    },
    CommitOffsets {
        p: u32,
        offset: u64,
    },
    /// Deletes the topic and, if that worked, creates it again (empty).
    Recreate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2u32, 1..5u8).prop_map(|(p, n)| Op::Append { p, n }),
        1 => Just(Op::Begin),
        3 => (0..6usize, 0..2u32, 1..4u8).prop_map(|(txn, p, n)| Op::AppendTxn { txn, p, n }),
        1 => (0..6usize, prop::option::of(0..50u64)).prop_map(|(txn, offset)| Op::Commit { txn, offset }),
        1 => (0..6usize).prop_map(|txn| Op::Abort { txn }),
        3 => (0..2u32, 0..60u64, 1..8usize, any::<bool>())
            .prop_map(|(p, from, max, committed)| Op::Read { p, from, max, committed }),
        1 => (0..2u32, 0..50u64).prop_map(|(p, offset)| Op::CommitOffsets { p, offset }),
        1 => Just(Op::Recreate),
    ]
}

/// The outcome of an operation, in a form both backends can be compared on.
fn outcome<T: std::fmt::Debug>(r: streams_core::Result<T>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(Error::Transaction { .. }) => "err transaction".into(),
        Err(Error::OffsetOutOfRange { start, end, .. }) => {
            format!("err out of range {start}..{end}")
        }
        Err(e) => format!("err {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn embedded_and_memory_agree(ops in prop::collection::vec(op(), 1..40)) {
        let dir = TempDir::new().unwrap();
        let emb = embedded(&dir);
        let mem = MemoryLog::new();
        let logs: [&dyn Log; 2] = [&emb, &mem];
        for log in logs {
            log.create_topic("t", TopicConfig::new(2).with_segment_bytes(1024)).unwrap();
        }
        let mut txns: Vec<[TxnId; 2]> = Vec::new();
        for (counter, op) in (1u32..).zip(ops) {
            let records = |n: u8| -> Vec<Record> {
                (0..n).map(|i| Record::new(format!("k{i}"), format!("{counter}-{i}"), i64::from(counter))).collect()
            };
            let results: Vec<String> = match &op {
                Op::Append { p, n } => logs.iter().map(|l| outcome(l.append(&TopicPartition::new("t", *p), &records(*n)))).collect(),
                Op::Begin => {
                    let ids = [emb.begin_transaction().unwrap(), mem.begin_transaction().unwrap()];
                    txns.push(ids);
                    vec![String::new(), String::new()]
                }
                Op::AppendTxn { txn, p, n } => match txns.get(*txn) {
                    None => continue,
                    Some(ids) => logs.iter().zip(ids).map(|(l, id)| outcome(l.append_transactional(*id, &TopicPartition::new("t", *p), &records(*n)))).collect(),
                },
                Op::Commit { txn, offset } => match txns.get(*txn) {
                    None => continue,
                    Some(ids) => logs.iter().zip(ids).map(|(l, id)| {
                        let offsets = offset.map(|o| vec![(TopicPartition::new("t", 0), o)]);
                        outcome(l.commit_transaction(*id, offsets.as_deref().map(|o| ("g", o))))
                    }).collect(),
                },
                Op::Abort { txn } => match txns.get(*txn) {
                    None => continue,
                    Some(ids) => logs.iter().zip(ids).map(|(l, id)| outcome(l.abort_transaction(*id))).collect(),
                },
                Op::Read { p, from, max, committed } => {
                    let iso = if *committed { RC } else { RU };
                    logs.iter().map(|l| outcome(l.read(&TopicPartition::new("t", *p), *from, *max, iso))).collect()
                }
                Op::CommitOffsets { p, offset } => logs.iter().map(|l| outcome(l.commit_offsets("g", &[(TopicPartition::new("t", *p), *offset)]))).collect(),
                Op::Recreate => logs.iter().map(|l| {
                    let deleted = l.delete_topic("t");
                    if deleted.is_ok() {
                        l.create_topic("t", TopicConfig::new(2).with_segment_bytes(1024)).unwrap();
                    }
                    outcome(deleted)
                }).collect(),
            };
            prop_assert_eq!(&results[0], &results[1], "{:?}", op);
            for p in 0..2 {
                let tp = TopicPartition::new("t", p);
                for iso in [RU, RC] {
                    prop_assert_eq!(emb.end_offset(&tp, iso).unwrap(), mem.end_offset(&tp, iso).unwrap());
                    prop_assert_eq!(read_all(&emb, &tp, 0, 3, iso), read_all(&mem, &tp, 0, 1000, iso));
                }
            }
            prop_assert_eq!(emb.committed_offsets("g").unwrap(), mem.committed_offsets("g").unwrap());
        }
    }
}
