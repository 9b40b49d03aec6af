//! Compaction of the embedded log, checked against a plain model: the latest record of each
//! key survives at its original offset, tombstones go only after `delete.retention.ms`, and
//! nothing past the cleaned segments (active segment, open transactions) removes older data.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use streams_core::{
    EmbeddedLog, EmbeddedLogConfig, IsolationLevel, Log, Record, StoredRecord, TopicConfig,
    TopicPartition,
};
use tempfile::TempDir;

const RU: IsolationLevel = IsolationLevel::ReadUncommitted;
const RC: IsolationLevel = IsolationLevel::ReadCommitted;
const KEEP_TOMBSTONES: i64 = i64::MAX / 4;

fn open(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open_with(
        dir,
        EmbeddedLogConfig::default().with_cleaner_interval(None),
    )
    .unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A time at which every record appended so far is older than any `delete.retention.ms` of 0.
fn future() -> i64 {
    now_ms() + 24 * 3600 * 1000
}

/// Base offset of the active (last) segment, from the file names.
fn active_base(root: &Path, tp: &TopicPartition) -> u64 {
    let dir = root
        .join("topics")
        .join(&tp.topic)
        .join(tp.partition.to_string());
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log").map(|s| s.parse::<u64>().unwrap())
        })
        .max()
        .unwrap()
}

fn read_all(
    log: &EmbeddedLog,
    tp: &TopicPartition,
    chunk: usize,
    isolation: IsolationLevel,
) -> Vec<StoredRecord> {
    let end = log.end_offset(tp, isolation).unwrap();
    let mut at = log.start_offset(tp).unwrap();
    let mut out = Vec::new();
    while at < end {
        let fetch = log.read(tp, at, chunk, isolation).unwrap();
        assert!(fetch.next_offset > at, "no progress at {at}");
        assert!(fetch.records.len() <= chunk);
        out.extend(fetch.records);
        at = fetch.next_offset;
    }
    assert_eq!(at, end);
    out
}

/// The model: every record ever appended, and which offsets are still there.
#[derive(Default)]
struct Model {
    appended: Vec<Record>,
    alive: BTreeSet<u64>,
}

impl Model {
    fn append(&mut self, records: &[Record]) {
        for r in records {
            self.alive.insert(self.appended.len() as u64);
            self.appended.push(r.clone());
        }
    }

    /// Compaction of everything below `clean_end`: the latest record of each key among those
    /// still there survives, unless it is a tombstone and tombstones are dropped.
    fn compact(&mut self, clean_end: u64, drop_tombstones: bool) {
        let mut latest: BTreeMap<&[u8], u64> = BTreeMap::new();
        for &o in self.alive.range(..clean_end) {
            latest.insert(self.appended[o as usize].key.as_deref().unwrap(), o);
        }
        let appended = &self.appended;
        self.alive.retain(|&o| {
            let r = &appended[o as usize];
            o >= clean_end
                || (latest.get(r.key.as_deref().unwrap()) == Some(&o)
                    && !(drop_tombstones && r.value.is_none()))
        });
    }

    fn expected(&self) -> Vec<StoredRecord> {
        self.alive
            .iter()
            .map(|&o| StoredRecord {
                offset: o,
                record: self.appended[o as usize].clone(),
            })
            .collect()
    }

    /// The latest record of each key as a reader sees it after reading everything.
    fn final_state(&self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        let mut state = BTreeMap::new();
        for &o in &self.alive {
            let r = &self.appended[o as usize];
            state.insert(r.key.clone().unwrap(), r.value.clone());
        }
        state
    }
}

fn final_state(records: &[StoredRecord]) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    records
        .iter()
        .map(|r| (r.record.key.clone().unwrap(), r.record.value.clone()))
        .collect()
}

fn check(log: &EmbeddedLog, tp: &TopicPartition, model: &Model, chunk: usize) {
    let got = read_all(log, tp, chunk, RU);
    assert_eq!(got, model.expected());
    assert_eq!(log.end_offset(tp, RU).unwrap(), model.appended.len() as u64);
}

fn record(key: u8, value: Option<u16>, ts: i64) -> Record {
    match value {
        Some(v) => {
            Record::new(vec![b'k', key], format!("value-{v}"), ts).with_header("v", v.to_string())
        }
        None => Record::tombstone(vec![b'k', key], ts),
    }
}

#[test]
fn keeps_the_latest_record_per_key_at_its_offset() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("table", 0);
    let mut model = Model::default();
    let log = open(dir.path());
    log.create_topic(
        "table",
        TopicConfig::compacted(1)
            .with_segment_bytes(1024)
            .with_delete_retention_ms(KEEP_TOMBSTONES),
    )
    .unwrap();
    // 8 keys, each updated many times; key 3 is deleted at the end of each round.
    for round in 0..12u16 {
        let batch: Vec<Record> = (0..8u8)
            .map(|k| {
                record(
                    k,
                    if k == 3 && round % 2 == 1 {
                        None
                    } else {
                        Some(round * 10 + u16::from(k))
                    },
                    round.into(),
                )
            })
            .collect();
        log.append(&tp, &batch).unwrap();
        model.append(&batch);
    }
    assert!(log.segment_count(&tp).unwrap() > 3);
    let clean_end = active_base(dir.path(), &tp);
    let report = log.maintain(future()).unwrap();
    model.compact(clean_end, false);
    assert!(report.segments_compacted > 0);
    assert_eq!(report.records_removed, 96 - model.alive.len() as u64);
    for chunk in [1, 3, 8, 1000] {
        check(&log, &tp, &model, chunk);
    }
    // Below the active segment each key appears once, in increasing offset order.
    let got = read_all(&log, &tp, 1000, RU);
    let below: Vec<_> = got.iter().filter(|r| r.offset < clean_end).collect();
    let keys: BTreeSet<_> = below.iter().map(|r| r.record.key.clone()).collect();
    assert_eq!(
        keys.len(),
        below.len(),
        "a key survived twice below the active segment"
    );
    assert!(got.windows(2).all(|w| w[0].offset < w[1].offset));
    // The reader's view of the table did not change.
    assert_eq!(final_state(&got), model.final_state());
    // Reads starting anywhere, including at removed offsets, continue to the right records.
    for from in 0..model.appended.len() as u64 {
        let fetch = log.read(&tp, from, 2, RU).unwrap();
        let want: Vec<_> = model
            .expected()
            .into_iter()
            .filter(|r| r.offset >= from)
            .take(2)
            .collect();
        assert_eq!(fetch.records, want, "from {from}");
        assert!(fetch.next_offset > from);
    }
    // Compacting again removes nothing more.
    assert_eq!(log.maintain(future()).unwrap().records_removed, 0);
    check(&log, &tp, &model, 5);
    // Appends continue at the end, and everything survives reopen.
    let more = [record(1, Some(999), 0), record(9, None, 0)];
    assert_eq!(log.append(&tp, &more).unwrap().base_offset, 96);
    model.append(&more);
    drop(log);
    let log = open(dir.path());
    check(&log, &tp, &model, 4);
    assert_eq!(
        log.offset_for_timestamp(&tp, 11).unwrap(),
        model
            .expected()
            .iter()
            .find(|r| r.record.timestamp >= 11)
            .map(|r| r.offset)
    );
    let clean_end = active_base(dir.path(), &tp);
    log.maintain(future()).unwrap();
    model.compact(clean_end, false);
    check(&log, &tp, &model, 7);
}

#[test]
fn tombstones_go_only_after_delete_retention() {
    for (retention, dropped) in [(KEEP_TOMBSTONES, false), (0, true)] {
        let dir = TempDir::new().unwrap();
        let tp = TopicPartition::new("t", 0);
        let log = open(dir.path());
        log.create_topic(
            "t",
            TopicConfig::compacted(1)
                .with_segment_bytes(1024)
                .with_delete_retention_ms(retention),
        )
        .unwrap();
        let mut model = Model::default();
        for i in 0..40u16 {
            let batch = [
                record((i % 4) as u8, Some(i), 0),
                record(10 + (i % 5) as u8, None, 0),
            ];
            log.append(&tp, &batch).unwrap();
            model.append(&batch);
        }
        let clean_end = active_base(dir.path(), &tp);
        // Not yet expired: `now` at the epoch is before every append, so nothing is dropped.
        log.maintain(0).unwrap();
        model.compact(clean_end, false);
        check(&log, &tp, &model, 1000);
        let tombstones_before = read_all(&log, &tp, 1000, RU)
            .iter()
            .filter(|r| r.record.value.is_none())
            .count();
        assert!(tombstones_before > 0);
        log.maintain(future()).unwrap();
        model.compact(clean_end, dropped);
        check(&log, &tp, &model, 1000);
        let survivors = read_all(&log, &tp, 1000, RU);
        let closed_tombstones = survivors
            .iter()
            .filter(|r| r.offset < clean_end && r.record.value.is_none())
            .count();
        assert_eq!(closed_tombstones == 0, dropped, "retention {retention}");
        drop(log);
        check(&open(dir.path()), &tp, &model, 3);
    }
}

#[test]
fn newer_records_past_the_last_stable_offset_do_not_remove_older_ones() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("t", 0);
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::compacted(1).with_segment_bytes(1024))
        .unwrap();
    let filler = |log: &EmbeddedLog, n: u16| {
        for i in 0..n {
            log.append(&tp, &[record(100, Some(i), 0)]).unwrap();
        }
    };
    log.append(&tp, &[record(1, Some(1), 0)]).unwrap();
    filler(&log, 30);
    // An open transaction pins the last stable offset; a newer value of key 1 follows it.
    let txn = log.begin_transaction().unwrap();
    let lso = log
        .append_transactional(txn, &tp, &[record(2, Some(2), 0)])
        .unwrap()
        .base_offset;
    log.append(&tp, &[record(1, Some(2), 0)]).unwrap();
    filler(&log, 30);
    assert!(
        active_base(dir.path(), &tp) > lso + 2,
        "the newer value should be in a closed segment"
    );
    assert_eq!(log.end_offset(&tp, RC).unwrap(), lso);
    log.maintain(future()).unwrap();
    // A read-committed reader still sees key 1 as it was at the last stable offset.
    let committed = read_all(&log, &tp, 1000, RC);
    let state = final_state(&committed);
    assert_eq!(state.get(&b"k\x01"[..]), Some(&Some(b"value-1".to_vec())));
    assert_eq!(state.get(&b"k\x64"[..]), Some(&Some(b"value-29".to_vec())));
    assert!(!state.contains_key(&b"k\x02"[..]));
    // Once the transaction commits, compaction can move on.
    log.commit_transaction(txn, None).unwrap();
    log.maintain(future()).unwrap();
    let all = read_all(&log, &tp, 1000, RC);
    let state = final_state(&all);
    assert_eq!(state.get(&b"k\x01"[..]), Some(&Some(b"value-2".to_vec())));
    assert_eq!(state.get(&b"k\x02"[..]), Some(&Some(b"value-2".to_vec())));
    assert_eq!(
        all.iter()
            .filter(|r| r.record.key.as_deref() == Some(&b"k\x01"[..]))
            .count(),
        1
    );
}

#[test]
fn aborted_records_are_removed_and_never_resurface() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("t", 0);
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::compacted(1).with_segment_bytes(1024))
        .unwrap();
    log.append(&tp, &[record(1, Some(1), 0)]).unwrap();
    let txn = log.begin_transaction().unwrap();
    log.append_transactional(
        txn,
        &tp,
        &[record(1, Some(666), 0), record(2, Some(666), 0)],
    )
    .unwrap();
    log.abort_transaction(txn).unwrap();
    let txn = log.begin_transaction().unwrap();
    log.append_transactional(txn, &tp, &[record(3, Some(3), 0)])
        .unwrap();
    log.commit_transaction(txn, None).unwrap();
    for i in 0..40 {
        log.append(&tp, &[record(100, Some(i), 0)]).unwrap();
    }
    let before = final_state(&read_all(&log, &tp, 1000, RC));
    assert_eq!(before.get(&b"k\x01"[..]), Some(&Some(b"value-1".to_vec())));
    let report = log.maintain(future()).unwrap();
    assert!(report.records_removed >= 3, "{report:?}");
    for isolation in [RC, RU] {
        let after = read_all(&log, &tp, 1000, isolation);
        assert_eq!(final_state(&after), before, "{isolation:?}");
        assert!(after
            .iter()
            .all(|r| r.record.value.as_deref() != Some(&b"value-666"[..])));
    }
    drop(log);
    let log = open(dir.path());
    assert_eq!(final_state(&read_all(&log, &tp, 1000, RU)), before);
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(u8, Option<u16>)>),
    Maintain,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec((0u8..6, prop::option::weighted(0.8, any::<u16>())), 1..8)
            .prop_map(Op::Append),
        2 => Just(Op::Maintain),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn compaction_matches_the_model(
        ops in prop::collection::vec(op(), 1..60),
        drop_tombstones in any::<bool>(),
    ) {
        let dir = TempDir::new().unwrap();
        let tp = TopicPartition::new("t", 0);
        let retention = if drop_tombstones { 0 } else { KEEP_TOMBSTONES };
        let mut log = open(dir.path());
        log.create_topic(
            "t",
            TopicConfig::compacted(1).with_segment_bytes(1024).with_delete_retention_ms(retention),
        )
        .unwrap();
        let mut model = Model::default();
        let mut ts = 0i64;
        for op in ops {
            match op {
                Op::Append(batch) => {
                    let records: Vec<Record> = batch
                        .into_iter()
                        .map(|(k, v)| {
                            ts += 1;
                            record(k, v, ts)
                        })
                        .collect();
                    let info = log.append(&tp, &records).unwrap();
                    prop_assert_eq!(info.base_offset, model.appended.len() as u64);
                    model.append(&records);
                }
                Op::Maintain => {
                    let clean_end = active_base(dir.path(), &tp);
                    log.maintain(future()).unwrap();
                    model.compact(clean_end, drop_tombstones);
                    let got = read_all(&log, &tp, 1000, RU);
                    let below: Vec<_> = got.iter().filter(|r| r.offset < clean_end).collect();
                    let keys: BTreeSet<_> = below.iter().map(|r| r.record.key.clone()).collect();
                    prop_assert_eq!(keys.len(), below.len());
                }
                Op::Reopen => {
                    drop(log);
                    log = open(dir.path());
                }
            }
            let got = read_all(&log, &tp, 5, RU);
            prop_assert_eq!(&got, &model.expected());
            prop_assert!(got.windows(2).all(|w| w[0].offset < w[1].offset));
            // What a reader rebuilding the table sees never changes through compaction,
            // except for keys whose tombstone was dropped (they read as absent).
            let mut full = BTreeMap::new();
            for r in &model.appended {
                full.insert(r.key.clone().unwrap(), r.value.clone());
            }
            let state = final_state(&got);
            for (k, v) in &full {
                match state.get(k) {
                    Some(seen) => prop_assert_eq!(seen, v),
                    None => prop_assert!(drop_tombstones && v.is_none()),
                }
            }
        }
    }
}
