//! Transactions of the embedded log across reopen and crashes: records and group offsets of a
//! transaction become visible together or not at all, and a transaction left open by a run
//! that stopped is aborted. (Trait-level semantics on every backend: `log_conformance.rs`.)
#![allow(clippy::unwrap_used)]

use std::path::Path;

use streams_core::{
    EmbeddedLog, EmbeddedLogConfig, Error, IsolationLevel, Log, Record, TopicConfig, TopicPartition,
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

fn read_values(log: &EmbeddedLog, tp: &TopicPartition, iso: IsolationLevel) -> Vec<String> {
    let end = log.end_offset(tp, iso).unwrap();
    let mut at = log.start_offset(tp).unwrap();
    let mut out = Vec::new();
    while at < end {
        let fetch = log.read(tp, at, 2, iso).unwrap();
        assert!(fetch.next_offset > at);
        // With writers running, a read may see past the `end` taken above; stop there, so
        // the result is the log up to one consistent point.
        out.extend(
            fetch
                .records
                .into_iter()
                .filter(|r| r.offset < end)
                .map(|r| String::from_utf8(r.record.value.unwrap()).unwrap()),
        );
        at = fetch.next_offset;
    }
    out
}

fn rec(s: &str) -> Record {
    Record::new(s, s, 0)
}

#[test]
fn outcomes_survive_reopen_and_open_transactions_are_aborted() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("t", 0);
    let open_id;
    {
        let log = open(dir.path());
        log.create_topic("t", TopicConfig::new(1).with_segment_bytes(1024))
            .unwrap();
        log.append(&tp, &[rec("plain-1")]).unwrap();
        let committed = log.begin_transaction().unwrap();
        log.append_transactional(committed, &tp, &[rec("committed")])
            .unwrap();
        let aborted = log.begin_transaction().unwrap();
        log.append_transactional(aborted, &tp, &[rec("aborted")])
            .unwrap();
        log.commit_transaction(committed, Some(("g", &[(tp.clone(), 1)])))
            .unwrap();
        log.abort_transaction(aborted).unwrap();
        let left_open = log.begin_transaction().unwrap();
        open_id = left_open.0;
        log.append_transactional(left_open, &tp, &[rec("open-1"), rec("open-2")])
            .unwrap();
        log.append(&tp, &[rec("plain-2")]).unwrap();
        assert_eq!(log.end_offset(&tp, RC).unwrap(), 3);
        assert_eq!(read_values(&log, &tp, RC), vec!["plain-1", "committed"]);
        // Dropped with the transaction still open, as a crash would leave it.
    }
    for round in 0..2 {
        let log = open(dir.path());
        assert_eq!(log.end_offset(&tp, RU).unwrap(), 6, "round {round}");
        assert_eq!(
            log.end_offset(&tp, RC).unwrap(),
            6,
            "the open transaction was aborted"
        );
        assert_eq!(
            read_values(&log, &tp, RC),
            vec!["plain-1", "committed", "plain-2"]
        );
        assert_eq!(read_values(&log, &tp, RU).len(), 6);
        assert_eq!(log.committed_offset("g", &tp).unwrap(), Some(1));
        // Transaction ids are never reused: an old id cannot be revived.
        let next = log.begin_transaction().unwrap();
        assert!(
            next.0 > open_id,
            "id {} reused (open one was {open_id})",
            next.0
        );
        match log.append_transactional(streams_core::TxnId(open_id), &tp, &[rec("zombie")]) {
            Err(e @ Error::Transaction { .. }) => {
                assert!(e.to_string().contains(&open_id.to_string()))
            }
            other => panic!("expected a Transaction error, got {other:?}"),
        }
        log.abort_transaction(next).unwrap();
    }
}

#[test]
fn a_torn_commit_record_aborts_data_and_offsets_together() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("out", 0);
    let input = TopicPartition::new("in", 0);
    let journal = dir.path().join("meta.journal");
    let (before, after);
    {
        let log = open(dir.path());
        log.create_topic("out", TopicConfig::new(1)).unwrap();
        log.create_topic("in", TopicConfig::new(1)).unwrap();
        log.commit_offsets("app", &[(input.clone(), 5)]).unwrap();
        let txn = log.begin_transaction().unwrap();
        log.append_transactional(txn, &tp, &[rec("a"), rec("b")])
            .unwrap();
        log.append_transactional(txn, &input, &[rec("c")]).unwrap();
        log.sync().unwrap();
        before = std::fs::metadata(&journal).unwrap().len();
        log.commit_transaction(txn, Some(("app", &[(input.clone(), 10)])))
            .unwrap();
        after = std::fs::metadata(&journal).unwrap().len();
    }
    assert!(after > before);
    for cut in before..=after {
        let copy = TempDir::new().unwrap();
        for rel in [
            "meta.journal",
            "topics/out/topic.json",
            "topics/in/topic.json",
        ] {
            std::fs::create_dir_all(copy.path().join(rel).parent().unwrap()).unwrap();
            std::fs::copy(dir.path().join(rel), copy.path().join(rel)).unwrap();
        }
        for (topic, p) in [("out", 0), ("in", 0)] {
            let from = dir.path().join(format!("topics/{topic}/{p}"));
            let to = copy.path().join(format!("topics/{topic}/{p}"));
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(from).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(copy.path().join("meta.journal"))
            .unwrap()
            .set_len(cut)
            .unwrap();
        let log = open(copy.path());
        let committed = cut == after;
        let data = read_values(&log, &tp, RC);
        let offset = log.committed_offset("app", &input).unwrap();
        if committed {
            assert_eq!(
                (data, offset),
                (vec!["a".to_string(), "b".to_string()], Some(10))
            );
            assert_eq!(read_values(&log, &input, RC), vec!["c"]);
        } else {
            assert_eq!(
                (data, offset),
                (Vec::<String>::new(), Some(5)),
                "cut at {cut}"
            );
            assert!(read_values(&log, &input, RC).is_empty(), "cut at {cut}");
            assert_eq!(read_values(&log, &tp, RU).len(), 2, "cut at {cut}");
        }
        assert_eq!(log.end_offset(&tp, RC).unwrap(), 2, "cut at {cut}");
    }
}

#[test]
fn concurrent_readers_see_whole_transactions_only() {
    let dir = TempDir::new().unwrap();
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::new(2).with_segment_bytes(1024))
        .unwrap();
    let tps = [TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
    const TXNS: u32 = 60;
    let writer = {
        let log = log.clone();
        let tps = tps.clone();
        std::thread::spawn(move || {
            for i in 0..TXNS {
                let txn = log.begin_transaction().unwrap();
                // Three records per partition, in two appends each.
                for tp in &tps {
                    log.append_transactional(
                        txn,
                        tp,
                        &[rec(&format!("{i}")), rec(&format!("{i}"))],
                    )
                    .unwrap();
                    log.append_transactional(txn, tp, &[rec(&format!("{i}"))])
                        .unwrap();
                }
                if i % 3 == 2 {
                    log.abort_transaction(txn).unwrap();
                } else {
                    log.commit_transaction(txn, Some(("g", &[(tps[0].clone(), u64::from(i))])))
                        .unwrap();
                }
            }
        })
    };
    let check = |final_check: bool| {
        // Read partition 0 first: anything visible there was committed before partition 1 was
        // read, so partition 1 must hold at least those transactions, whole.
        let seen: Vec<Vec<String>> = tps.iter().map(|tp| read_values(&log, tp, RC)).collect();
        for values in &seen {
            for chunk in values.chunks(3) {
                assert_eq!(
                    chunk.len(),
                    3,
                    "a partial transaction is visible: {values:?}"
                );
                assert!(chunk.iter().all(|v| v == &chunk[0]), "{values:?}");
                let i: u32 = chunk[0].parse().unwrap();
                assert_ne!(i % 3, 2, "an aborted transaction is visible");
            }
        }
        assert!(seen[1].len() >= seen[0].len());
        assert_eq!(seen[1][..seen[0].len()], seen[0][..]);
        if final_check {
            assert_eq!(seen[0].len() as u32, TXNS / 3 * 2 * 3);
        }
    };
    while !writer.is_finished() {
        check(false);
    }
    writer.join().unwrap();
    check(true);
    assert_eq!(
        log.committed_offset("g", &tps[0]).unwrap(),
        Some(u64::from(TXNS - 2))
    );
}
