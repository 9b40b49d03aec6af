//! Crash recovery of the embedded log: torn batches at the end of the active segment are cut,
//! damage anywhere else is reported as `Error::Corrupt` naming the file and position, and the
//! metadata journal loses at most its torn last entry.
#![allow(clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use streams_core::{
    EmbeddedLog, EmbeddedLogConfig, Error, IsolationLevel, Log, Record, StoredRecord, TopicConfig,
    TopicPartition,
};
use tempfile::TempDir;

const RU: IsolationLevel = IsolationLevel::ReadUncommitted;

fn open(dir: &Path) -> streams_core::Result<EmbeddedLog> {
    EmbeddedLog::open_with(
        dir,
        EmbeddedLogConfig::default().with_cleaner_interval(None),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Segment files of a partition, sorted by base offset.
fn segment_files(root: &Path, topic: &str, partition: u32) -> Vec<PathBuf> {
    let dir = root.join("topics").join(topic).join(partition.to_string());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn record(i: u64) -> Record {
    let r = Record::new(format!("key-{i}"), format!("value-{i}"), 1_000 + i as i64);
    match i % 3 {
        0 => r.with_header("n", i.to_string()),
        1 => Record::tombstone(format!("key-{i}"), 7),
        _ => Record::unkeyed(vec![i as u8; (i % 11) as usize], -5),
    }
}

fn read_everything(
    log: &EmbeddedLog,
    tp: &TopicPartition,
) -> streams_core::Result<Vec<StoredRecord>> {
    let mut out = Vec::new();
    let mut at = log.start_offset(tp)?;
    let end = log.end_offset(tp, RU)?;
    while at < end {
        let fetch = log.read(tp, at, 1000, RU)?;
        assert!(fetch.next_offset > at);
        out.extend(fetch.records);
        at = fetch.next_offset;
    }
    Ok(out)
}

fn expected(range: std::ops::Range<u64>) -> Vec<StoredRecord> {
    range
        .map(|i| StoredRecord {
            offset: i,
            record: record(i),
        })
        .collect()
}

/// A log with closed segments and, in its active segment, batches whose byte ranges and
/// offset ranges are returned: `(file, [(start, end, first_offset, next_offset)])`.
struct Fixture {
    dir: TempDir,
    tp: TopicPartition,
    active: PathBuf,
    batches: Vec<(u64, u64, u64, u64)>,
}

fn fixture(batch_sizes: &[u64]) -> Fixture {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("t", 0);
    let log = open(dir.path()).unwrap();
    log.create_topic("t", TopicConfig::new(1).with_segment_bytes(1024))
        .unwrap();
    let mut next = 0;
    // Fill a few segments first, so the active one does not start at 0.
    while segment_files(dir.path(), "t", 0).len() < 3 {
        log.append(&tp, &[record(next)]).unwrap();
        next += 1;
    }
    let active = segment_files(dir.path(), "t", 0).pop().unwrap();
    let mut batches = Vec::new();
    for &n in batch_sizes {
        let start = std::fs::metadata(&active).unwrap().len();
        let batch: Vec<Record> = (next..next + n).map(record).collect();
        log.append(&tp, &batch).unwrap();
        log.sync().unwrap();
        let end = std::fs::metadata(&active).unwrap().len();
        batches.push((start, end, next, next + n));
        next += n;
    }
    assert_eq!(
        segment_files(dir.path(), "t", 0).last(),
        Some(&active),
        "fixture rolled"
    );
    drop(log);
    Fixture {
        dir,
        tp,
        active,
        batches,
    }
}

impl Fixture {
    /// A fresh copy of the log, with `damage` applied to the copy's active segment.
    fn damaged_copy(&self, damage: impl FnOnce(&Path)) -> (TempDir, PathBuf) {
        let copy = TempDir::new().unwrap();
        copy_dir(self.dir.path(), copy.path());
        let active = copy
            .path()
            .join(self.active.strip_prefix(self.dir.path()).unwrap());
        damage(&active);
        (copy, active)
    }
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip_bit(path: &Path, position: u64, bit: u8) {
    let mut data = std::fs::read(path).unwrap();
    data[position as usize] ^= 1 << bit;
    std::fs::write(path, data).unwrap();
}

#[test]
fn a_torn_last_batch_is_cut_at_every_byte() {
    let fx = fixture(&[2, 1, 3]);
    let &(last_start, last_end, last_first, _) = fx.batches.last().unwrap();
    let (_, _, _, total) = *fx.batches.last().unwrap();
    // Sanity: the untouched log has everything.
    assert_eq!(
        read_everything(&open(fx.dir.path()).unwrap(), &fx.tp).unwrap(),
        expected(0..total)
    );
    for cut in last_start..last_end {
        let (copy, active) = fx.damaged_copy(|f| truncate(f, cut));
        {
            let log = open(copy.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(
                log.end_offset(&fx.tp, RU).unwrap(),
                last_first,
                "cut at {cut}"
            );
            assert_eq!(
                read_everything(&log, &fx.tp).unwrap(),
                expected(0..last_first),
                "cut at {cut}"
            );
            assert_eq!(
                std::fs::metadata(&active).unwrap().len(),
                last_start,
                "cut at {cut}"
            );
            // Appends continue right after the last complete batch.
            let info = log
                .append(&fx.tp, &[record(last_first), record(last_first + 1)])
                .unwrap();
            assert_eq!(info.base_offset, last_first, "cut at {cut}");
        }
        let log = open(copy.path()).unwrap();
        assert_eq!(
            read_everything(&log, &fx.tp).unwrap(),
            expected(0..last_first + 2),
            "cut at {cut}, after reopen"
        );
    }
}

#[test]
fn zeros_after_the_last_batch_are_cut() {
    // What a power loss can leave when the file size was persisted before its data.
    let fx = fixture(&[2, 3]);
    let total = fx.batches.last().unwrap().3;
    for zeros in [1usize, 7, 8, 100, 5000] {
        let (copy, active) = fx.damaged_copy(|f| {
            OpenOptions::new()
                .append(true)
                .open(f)
                .unwrap()
                .write_all(&vec![0; zeros])
                .unwrap();
        });
        let log = open(copy.path()).unwrap();
        assert_eq!(
            read_everything(&log, &fx.tp).unwrap(),
            expected(0..total),
            "{zeros} zeros"
        );
        assert_eq!(
            std::fs::metadata(&active).unwrap().len(),
            fx.batches.last().unwrap().1
        );
        assert_eq!(
            log.append(&fx.tp, &[record(total)]).unwrap().base_offset,
            total
        );
    }
}

fn assert_corrupt_at(
    result: streams_core::Result<EmbeddedLog>,
    file: &Path,
    position: u64,
    what: &str,
) {
    match result {
        Err(e @ Error::Corrupt { .. }) => {
            let Error::Corrupt {
                path, position: at, ..
            } = &e
            else {
                unreachable!()
            };
            assert!(
                path.ends_with(file.file_name().unwrap()),
                "{what}: wrong file in {e}"
            );
            assert_eq!(*at, position, "{what}: {e}");
            let text = e.to_string();
            assert!(
                text.contains(&file.file_name().unwrap().to_string_lossy().to_string()),
                "{text}"
            );
            assert!(text.contains(&format!("byte {position}")), "{text}");
        }
        Err(e) => panic!("{what}: expected Error::Corrupt, got {e}"),
        Ok(_) => panic!("{what}: open succeeded on a damaged log"),
    }
}

#[test]
fn a_flipped_bit_before_the_last_batch_fails_open() {
    let fx = fixture(&[1, 2, 2]);
    let n = fx.batches.len();
    for &(start, end, _, _) in &fx.batches[..n - 1] {
        // Every bit of the frame header (length and CRC), one bit of every fifth byte after.
        for pos in (start..end).filter(|p| p - start < 8 || p % 5 == 0) {
            let bits: Vec<u8> = if pos - start < 8 {
                (0..8).collect()
            } else {
                vec![(pos % 8) as u8]
            };
            for bit in bits {
                let (copy, active) = fx.damaged_copy(|f| flip_bit(f, pos, bit));
                let what = format!("bit {bit} of byte {pos} (batch at {start}..{end})");
                assert_corrupt_at(open(copy.path()), &active, start, &what);
            }
        }
    }
}

#[test]
fn a_flipped_bit_in_the_last_batch_never_yields_wrong_data() {
    let fx = fixture(&[1, 2]);
    let &(start, end, first, total) = fx.batches.last().unwrap();
    assert!(first < total);
    for pos in start..end {
        let bit = (pos % 8) as u8;
        let (copy, _) = fx.damaged_copy(|f| flip_bit(f, pos, bit));
        let what = format!("bit {bit} of byte {pos}");
        match open(copy.path()) {
            // Indistinguishable from a torn write: the batch is dropped, nothing else.
            Ok(log) => {
                assert_eq!(
                    read_everything(&log, &fx.tp).unwrap(),
                    expected(0..first),
                    "{what}"
                );
                assert_eq!(log.end_offset(&fx.tp, RU).unwrap(), first, "{what}");
            }
            Err(Error::Corrupt { .. }) => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[test]
fn damage_in_a_closed_segment_is_reported_on_read() {
    let fx = fixture(&[1]);
    let closed = segment_files(fx.dir.path(), "t", 0)[1].clone();
    let size = std::fs::metadata(&closed).unwrap().len();
    let total = fx.batches.last().unwrap().3;
    // Frame headers (length, CRC) of every batch, and every ninth byte in between.
    let data = std::fs::read(&closed).unwrap();
    let mut headers = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        headers.extend(at..at + 8);
        at += 4 + u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    }
    assert_eq!(at, data.len());
    let positions: Vec<u64> = (0..size)
        .filter(|&p| headers.contains(&(p as usize)) || p % 9 == 0)
        .collect();
    for pos in positions {
        let bit = (pos * 5 % 8) as u8;
        let copy = TempDir::new().unwrap();
        copy_dir(fx.dir.path(), copy.path());
        let target = copy
            .path()
            .join(closed.strip_prefix(fx.dir.path()).unwrap());
        flip_bit(&target, pos, bit);
        let what = format!("bit {bit} of byte {pos} of {}", target.display());
        // Closed segments are checked lazily (through their index): open may succeed, but no
        // read may return data from the damaged batch.
        let log = match open(copy.path()) {
            Ok(log) => log,
            Err(e @ Error::Corrupt { .. }) => {
                assert!(e
                    .to_string()
                    .contains(&target.file_name().unwrap().to_string_lossy().to_string()));
                continue;
            }
            Err(e) => panic!("{what}: {e}"),
        };
        match read_everything(&log, &fx.tp) {
            Err(e @ Error::Corrupt { .. }) => {
                let Error::Corrupt { path, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(path, &target, "{what}: {e}");
                assert!(e.to_string().contains(&target.display().to_string()), "{e}");
            }
            Err(e) => panic!("{what}: expected Corrupt, got {e}"),
            Ok(records) => panic!(
                "{what}: read {} records from a damaged segment",
                records.len()
            ),
        }
        // Other segments still read fine.
        let active_base = log.end_offset(&fx.tp, RU).unwrap() - 1;
        assert_eq!(
            log.read(&fx.tp, active_base, 10, RU).unwrap().records,
            expected(active_base..total)
        );
    }
}

#[test]
fn a_closed_segment_whose_size_differs_from_its_index_fails_open() {
    let fx = fixture(&[1]);
    let closed = segment_files(fx.dir.path(), "t", 0)[0].clone();
    let size = std::fs::metadata(&closed).unwrap().len();
    for new_len in [0, 1, size / 2, size - 1, size + 1, size + 100] {
        let copy = TempDir::new().unwrap();
        copy_dir(fx.dir.path(), copy.path());
        let target = copy
            .path()
            .join(closed.strip_prefix(fx.dir.path()).unwrap());
        truncate(&target, new_len);
        match open(copy.path()) {
            Err(e @ Error::Corrupt { .. }) => {
                assert!(e.to_string().contains(&target.display().to_string()), "{e}");
            }
            Err(e) => panic!("length {new_len}: expected Corrupt, got {e}"),
            Ok(_) => panic!("length {new_len}: open succeeded"),
        }
    }
}

#[test]
fn a_missing_index_is_rebuilt() {
    let fx = fixture(&[3]);
    let total = fx.batches.last().unwrap().3;
    let copy = TempDir::new().unwrap();
    copy_dir(fx.dir.path(), copy.path());
    for f in segment_files(copy.path(), "t", 0) {
        let _ = std::fs::remove_file(f.with_extension("index"));
    }
    let log = open(copy.path()).unwrap();
    assert_eq!(read_everything(&log, &fx.tp).unwrap(), expected(0..total));
    assert_eq!(log.offset_for_timestamp(&fx.tp, 1_003).unwrap(), Some(3));
}

#[test]
fn a_torn_journal_tail_is_cut_and_earlier_commits_survive() {
    let dir = TempDir::new().unwrap();
    let journal = dir.path().join("meta.journal");
    let tp = TopicPartition::new("t", 0);
    let before_last;
    let after_last;
    {
        let log = open(dir.path()).unwrap();
        log.create_topic("t", TopicConfig::new(1)).unwrap();
        for i in 1..=5u64 {
            log.commit_offsets("g", &[(tp.clone(), i * 10)]).unwrap();
            log.commit_offsets(&format!("other{i}"), &[(tp.clone(), i)])
                .unwrap();
        }
        log.sync().unwrap();
        before_last = std::fs::metadata(&journal).unwrap().len();
        log.commit_offsets("g", &[(tp.clone(), 999)]).unwrap();
        after_last = std::fs::metadata(&journal).unwrap().len();
    }
    assert!(after_last > before_last);
    for cut in before_last..after_last {
        let copy = TempDir::new().unwrap();
        copy_dir(dir.path(), copy.path());
        truncate(&copy.path().join("meta.journal"), cut);
        {
            let log = open(copy.path()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(
                log.committed_offset("g", &tp).unwrap(),
                Some(50),
                "cut at {cut}"
            );
            assert_eq!(log.list_groups().unwrap().len(), 6);
            assert_eq!(log.committed_offset("other3", &tp).unwrap(), Some(3));
            assert_eq!(
                std::fs::metadata(copy.path().join("meta.journal"))
                    .unwrap()
                    .len(),
                before_last,
                "cut at {cut}"
            );
            log.commit_offsets("g", &[(tp.clone(), 77)]).unwrap();
        }
        let log = open(copy.path()).unwrap();
        assert_eq!(
            log.committed_offset("g", &tp).unwrap(),
            Some(77),
            "cut at {cut}"
        );
        assert_eq!(log.committed_offset("other5", &tp).unwrap(), Some(5));
    }
}

#[test]
fn a_flipped_bit_in_an_earlier_journal_entry_fails_open() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("t", 0);
    let journal = dir.path().join("meta.journal");
    let mut ends = vec![0u64];
    {
        let log = open(dir.path()).unwrap();
        // A new journal starts with an entry of its own.
        ends.push(std::fs::metadata(&journal).unwrap().len());
        log.create_topic("t", TopicConfig::new(1)).unwrap();
        for i in 1..=3u64 {
            log.commit_offsets("g", &[(tp.clone(), i)]).unwrap();
            ends.push(std::fs::metadata(&journal).unwrap().len());
        }
    }
    // Damage to any entry but the last must not silently drop the entries after it.
    for pos in 0..ends[3] {
        // Every bit of the entry headers (length, CRC), two bits of each payload byte.
        let in_header = ends.iter().any(|&e| pos >= e && pos < e + 8);
        let bits: Vec<u8> = if in_header {
            (0..8).collect()
        } else {
            vec![(pos % 8) as u8, 7]
        };
        for bit in bits {
            let copy = TempDir::new().unwrap();
            copy_dir(dir.path(), copy.path());
            flip_bit(&copy.path().join("meta.journal"), pos, bit);
            let entry_start = *ends.iter().filter(|&&e| e <= pos).max().unwrap();
            match open(copy.path()) {
                Err(e @ Error::Corrupt { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains("meta.journal"), "{text}");
                    assert!(text.contains(&format!("byte {entry_start}")), "{text}");
                }
                Err(e) => panic!("bit {bit} of byte {pos}: {e}"),
                Ok(log) => panic!(
                    "bit {bit} of byte {pos}: open succeeded; g is at {:?}",
                    log.committed_offset("g", &tp).unwrap()
                ),
            }
        }
    }
}

#[test]
fn a_read_only_open_refuses_writes_and_keeps_open_transactions_invisible() {
    let dir = TempDir::new().unwrap();
    let tp = TopicPartition::new("t", 0);
    let writer = open(dir.path()).unwrap();
    writer.create_topic("t", TopicConfig::new(1)).unwrap();
    writer
        .append(&tp, &[Record::new("a", "1", 1), Record::new("b", "2", 2)])
        .unwrap();
    let txn = writer.begin_transaction().unwrap();
    writer
        .append_transactional(txn, &tp, &[Record::new("c", "3", 3)])
        .unwrap();
    // The writer holds the lock; a read-only open needs none.
    let reader = EmbeddedLog::open_with(
        dir.path(),
        EmbeddedLogConfig::default().with_read_only(true),
    )
    .unwrap();
    assert_eq!(
        reader
            .end_offset(&tp, IsolationLevel::ReadUncommitted)
            .unwrap(),
        3
    );
    assert_eq!(
        reader
            .end_offset(&tp, IsolationLevel::ReadCommitted)
            .unwrap(),
        2
    );
    let refused = [
        reader.append(&tp, &[Record::new("d", "4", 4)]).unwrap_err(),
        reader.create_topic("u", TopicConfig::new(1)).unwrap_err(),
        reader.commit_offsets("g", &[(tp.clone(), 1)]).unwrap_err(),
        reader.begin_transaction().unwrap_err(),
        reader.maintain(0).unwrap_err(),
    ];
    for e in refused {
        assert!(matches!(e, Error::ReadOnly { .. }), "{e}");
        assert!(e.to_string().contains("open read-only"), "{e}");
    }
    // The writer goes on as if nothing had looked.
    writer.commit_transaction(txn, None).unwrap();
    assert_eq!(
        writer
            .end_offset(&tp, IsolationLevel::ReadCommitted)
            .unwrap(),
        3
    );
    assert!(reader.repairs().is_empty());
}
