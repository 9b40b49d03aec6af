#![allow(clippy::unwrap_used)]
//! Faults in local state and in the log, on real files: a counting application runs to the
//! end and stops; then a store directory, a RocksDB `CURRENT` file, the changelog's tail or the
//! checkpoint is damaged; the application restarts on the same state directory. What it serves
//! afterwards must be what the changelog holds, every value of it, and a warning must say why
//! the local state was not trusted.
//!
//! Failures end: a task that fails every time stops the application within a bounded number
//! of attempts and log lines, with one error naming the task, the cause and what to do; a
//! failure that goes away is retried and nothing is lost.
//!
//! Offsets out of range: a committed offset past the input's end (its tail cut by a torn
//! write) or below its start (retention deleted what it pointed at) follows
//! `auto.offset.reset`, with a warning naming the partition and the offsets, or, under `none`,
//! stops the application with an error that says so.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::logs::logs;
use common::*;
use state_store::{ChangelogPartition, Checkpoint};
use streams_core::{
    partition_for_key, EmbeddedLog, Error, I64Serde, IsolationLevel, Log, OffsetReset, OptionSerde,
    Record, Serde, StringSerde, TopicConfig, TopicPartition, Topology,
};
use streams_core::{ExceptionResponse, Streams, StreamsConfig, StreamsState};
use streams_dsl::prelude::*;

const WAIT: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 2;

/// The log lines that name `store` and contain `what`.
fn warnings_about(store: &str, what: &str) -> Vec<String> {
    let needle = format!("store={store}");
    logs()
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains(&needle) && l.contains(what))
        .map(str::to_string)
        .collect()
}

/// `input` → count per key in store `store`, no cache, so every update reaches the changelog.
fn counting(store: &str) -> Topology {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("input", Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named(store))
        .to_stream()
        .to(
            "counts-out",
            Produced::with(StringSerde, OptionSerde(I64Serde)),
        );
    b.build().unwrap()
}

fn config(dir: &Path, app: &str) -> StreamsConfig {
    let mut config = StreamsConfig::new(app, dir)
        .with_threads(2)
        .with_cache_max_bytes(0)
        .with_commit_interval(Duration::from_millis(50));
    // Small polls: the changelog is written in many batches, so a cut tail loses some.
    config.max_poll_records = 50;
    config.max_buffered_records = 100;
    config
}

/// What one run served and restored.
struct Run {
    /// Every entry of the store, queried after the application caught up.
    served: BTreeMap<String, i64>,
    /// Changelog records replayed into the stores at start.
    restored: u64,
}

/// Starts the application on `dir`, waits until it caught up, queries the whole store and
/// stops. The log is opened for the run and closed after it, as a restarted process would.
fn run(dir: &Path, app: &str, store: &str) -> Run {
    let log = open_log(dir);
    let streams = Streams::new(counting(store), config(dir, app), log).unwrap();
    streams.start().unwrap();
    if let Err(e) = streams.wait_until_caught_up(WAIT) {
        panic!("{e}; cause: {:?}", streams.error());
    }
    let served = streams
        .key_value_store(store, Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect();
    let restored = streams.metrics().tasks.values().map(|t| t.restored).sum();
    streams.close().unwrap();
    Run { served, restored }
}

/// The changelog topic of `store`.
fn changelog(app: &str, store: &str) -> String {
    format!("{app}-{store}-changelog")
}

/// The last value per key in the store's changelog (values carry an 8-byte timestamp).
fn changelog_state(dir: &Path, app: &str, store: &str) -> BTreeMap<String, i64> {
    let log = open_log(dir);
    let mut state = BTreeMap::new();
    for part in read_topic(&*log, &changelog(app, store)) {
        for r in part {
            let key = StringSerde.deserialize(r.key.as_deref().unwrap()).unwrap();
            match r.value {
                Some(v) => state.insert(key, I64Serde.deserialize(&v[8..]).unwrap()),
                None => state.remove(&key),
            };
        }
    }
    state
}

fn changelog_len(dir: &Path, app: &str, store: &str, partition: u32) -> u64 {
    read_topic(&*open_log(dir), &changelog(app, store))[partition as usize].len() as u64
}

/// Writes the input and runs the application once, cleanly: every task checkpointed.
fn first_run(dir: &Path, app: &str, store: &str) -> BTreeMap<String, i64> {
    logs();
    let input = {
        let log = open_log(dir);
        write_input(&*log, "input", PARTITIONS, 3_000, 40)
    };
    let first = run(dir, app, store);
    let reference = reference_counts(&input);
    assert_eq!(first.served, reference);
    assert_eq!(changelog_state(dir, app, store), reference);
    for p in 0..PARTITIONS {
        assert!(
            Checkpoint::path(&task_dir(dir, app, p)).exists(),
            "task 0_{p} checkpointed"
        );
    }
    reference
}

fn task_dir(dir: &Path, app: &str, partition: u32) -> PathBuf {
    dir.join(app).join(format!("0_{partition}"))
}

#[test]
fn a_deleted_store_directory_is_restored_from_the_changelog() {
    let (app, store) = ("faults-dir", "counts-dir");
    let dir = tempfile::tempdir().unwrap();
    let reference = first_run(dir.path(), app, store);

    std::fs::remove_dir_all(task_dir(dir.path(), app, 0).join(store)).unwrap();
    let again = run(dir.path(), app, store);
    assert_eq!(
        again.served, reference,
        "every count, partition 0's restored"
    );
    assert!(again.restored >= changelog_len(dir.path(), app, store, 0));
    let warned = warnings_about(store, "is missing");
    assert!(!warned.is_empty(), "a warning says why: {}", logs());
    assert!(warned[0].contains("task=0_0"), "{}", warned[0]);

    // Restored and checkpointed again: the next start trusts it.
    let third = run(dir.path(), app, store);
    assert_eq!(third.served, reference);
    assert_eq!(third.restored, 0);
}

/// One thing a restore listener was told: what, changelog and store, and two numbers.
type Event = (String, String, u64, u64);

/// What a restore listener was told, in order.
#[derive(Clone, Default)]
struct Told(Arc<Mutex<Vec<Event>>>);

impl streams_core::StateRestoreListener for Told {
    fn on_restore_start(&self, changelog: &TopicPartition, store: &str, start: u64, end: u64) {
        let what = ("start".into(), format!("{changelog} {store}"), start, end);
        self.0.lock().unwrap().push(what);
    }
    fn on_batch_restored(&self, changelog: &TopicPartition, store: &str, end: u64, n: u64) {
        let what = ("batch".into(), format!("{changelog} {store}"), end, n);
        self.0.lock().unwrap().push(what);
    }
    fn on_restore_end(&self, changelog: &TopicPartition, store: &str, restored: u64) {
        let what = ("end".into(), format!("{changelog} {store}"), restored, 0);
        self.0.lock().unwrap().push(what);
    }
}

#[test]
fn a_restore_listener_is_told_the_start_each_batch_and_the_end() {
    let (app, store) = ("faults-listener", "counts-listener");
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path(), app, store);
    std::fs::remove_dir_all(task_dir(dir.path(), app, 0).join(store)).unwrap();

    let told = Told::default();
    let streams = Streams::new(
        counting(store),
        config(dir.path(), app),
        open_log(dir.path()),
    )
    .unwrap();
    streams.set_restore_listener(told.clone());
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let restored: u64 = streams.metrics().tasks.values().map(|t| t.restored).sum();
    streams.close().unwrap();
    drop(streams); // lets go of the log

    let events = told.0.lock().unwrap().clone();
    // Only partition 0's store had anything to replay: its whole changelog.
    let changelog_0 = format!("{}-0 {store}", changelog(app, store));
    assert!(events.iter().all(|e| e.1 == changelog_0), "{events:?}");
    let end = changelog_len(dir.path(), app, store, 0);
    assert_eq!(
        events.first(),
        Some(&("start".into(), changelog_0.clone(), 0, end))
    );
    let batches: Vec<_> = events.iter().filter(|e| e.0 == "batch").collect();
    assert!(!batches.is_empty());
    assert!(batches.windows(2).all(|w| w[0].2 < w[1].2), "{batches:?}");
    assert_eq!(batches.last().unwrap().2, end);
    let in_batches: u64 = batches.iter().map(|b| b.3).sum();
    assert_eq!(
        events.last(),
        Some(&("end".into(), changelog_0, in_batches, 0))
    );
    assert_eq!(in_batches, restored);
    assert_eq!(restored, end);
}

#[test]
fn a_deleted_current_file_is_restored_from_the_changelog() {
    let (app, store) = ("faults-current", "counts-current");
    let dir = tempfile::tempdir().unwrap();
    let reference = first_run(dir.path(), app, store);

    std::fs::remove_file(task_dir(dir.path(), app, 1).join(store).join("CURRENT")).unwrap();
    let again = run(dir.path(), app, store);
    assert_eq!(again.served, reference);
    assert!(again.restored >= changelog_len(dir.path(), app, store, 1));
    let warned = warnings_about(store, "CURRENT");
    assert!(!warned.is_empty(), "a warning says why: {}", logs());
    assert!(warned[0].contains("task=0_1"), "{}", warned[0]);
}

#[test]
fn a_store_whose_files_are_damaged_is_restored_from_the_changelog() {
    let (app, store) = ("faults-manifest", "counts-manifest");
    let dir = tempfile::tempdir().unwrap();
    let reference = first_run(dir.path(), app, store);

    let db = task_dir(dir.path(), app, 0).join(store);
    std::fs::write(db.join("CURRENT"), b"garbage").unwrap();
    let again = run(dir.path(), app, store);
    assert_eq!(again.served, reference);
    assert!(
        !warnings_about(store, "damaged").is_empty(),
        "a warning says why: {}",
        logs()
    );
}

/// Flips bytes inside the first data block of every table file of `db`: a checksum error on
/// the first read of it, while opening the store still works.
fn damage_table_files(db: &Path) -> usize {
    let mut damaged = 0;
    for entry in std::fs::read_dir(db).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sst") {
            let mut bytes = std::fs::read(&path).unwrap();
            for b in &mut bytes[16..24] {
                *b ^= 0x5a;
            }
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    damaged
}

#[test]
fn a_store_found_corrupt_while_running_is_wiped_restored_and_not_served_meanwhile() {
    let (app, store) = ("faults-running", "counts-running");
    let dir = tempfile::tempdir().unwrap();
    let reference = first_run(dir.path(), app, store);
    let db = task_dir(dir.path(), app, 0).join(store);
    assert!(
        damage_table_files(&db) > 0,
        "the clean close flushed the store to table files"
    );

    // The store opens (the checkpoint is trusted); its first read meets the damage.
    let log = open_log(dir.path());
    let streams = Streams::new(counting(store), config(dir.path(), app), log.clone()).unwrap();
    let states = Arc::new(Mutex::new(Vec::new()));
    let seen = states.clone();
    streams.set_state_listener(move |_, new| seen.lock().unwrap().push(new));
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let query = streams
        .key_value_store(store, Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap();
    let mut refused = None;
    let started = Instant::now();
    let served: BTreeMap<String, i64> = loop {
        match query.all() {
            Ok(all) if refused.is_some() => break all.into_iter().collect(),
            Ok(all) => panic!("served {} entries from a damaged store", all.len()),
            Err(e @ Error::StoreUnavailable { .. }) => {
                refused.get_or_insert(e.to_string());
            }
            Err(e) => panic!("a damaged store is unavailable while it is repaired, not {e}"),
        }
        assert!(started.elapsed() < WAIT, "not repaired: {refused:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let refused = refused.unwrap();
    assert!(
        refused.contains("restored from its changelogs"),
        "{refused}"
    );
    assert!(refused.to_lowercase().contains("corrupt"), "{refused}");
    assert_eq!(
        served, reference,
        "every count, partition 0's restored from its changelog"
    );
    let warned = warnings_about(store, "restore it from its changelog");
    assert!(warned.iter().any(|w| w.contains("task=0_0")), "{}", logs());
    // The application said it was not serving everything while the task restored.
    let states = states.lock().unwrap().clone();
    let rebalancing = states.iter().rposition(|s| *s == StreamsState::Rebalancing);
    assert!(rebalancing.is_some(), "{states:?}");
    assert_eq!(states.last(), Some(&StreamsState::Running), "{states:?}");

    // Processing goes on from the repaired store: new records count on top.
    let more = write_input(&*log, "input", PARTITIONS, 500, 40);
    streams.wait_until_caught_up(WAIT).unwrap();
    let expected = add(&reference, &reference_counts(&more));
    let after: BTreeMap<String, i64> = query.all().unwrap().into_iter().collect();
    assert_eq!(after, expected);
    streams.close().unwrap();
}

#[test]
fn a_changelog_that_lost_its_tail_is_what_the_store_serves_after_a_restart() {
    let (app, store) = ("faults-torn", "counts-torn");
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path(), app, store);
    let before = changelog_len(dir.path(), app, store, 0);

    // A torn write: the last segment of partition 0 loses the last 40% of its bytes.
    let partition_dir = dir
        .path()
        .join("log")
        .join("topics")
        .join(changelog(app, store))
        .join("0");
    cut_last_segment(&partition_dir, 6);
    let after = changelog_len(dir.path(), app, store, 0);
    assert!(after < before, "the cut lost records: {after} of {before}");

    let reference = changelog_state(dir.path(), app, store);
    let again = run(dir.path(), app, store);
    assert_eq!(
        again.served, reference,
        "the store serves what the changelog holds"
    );
    assert!(
        !warnings_about(store, "past the changelog's end").is_empty(),
        "a warning says why: {}",
        logs()
    );
}

#[test]
fn a_checkpoint_offset_past_the_changelog_end_is_not_trusted() {
    let (app, store) = ("faults-crafted", "counts-crafted");
    let dir = tempfile::tempdir().unwrap();
    let reference = first_run(dir.path(), app, store);

    let task = task_dir(dir.path(), app, 0);
    let mut checkpoint = Checkpoint::read(&task).unwrap().unwrap();
    let partition = ChangelogPartition::new(changelog(app, store), 0);
    let offset = checkpoint.offset(&partition).unwrap();
    let id = checkpoint.store_id(&partition).map(str::to_string);
    match id {
        Some(id) => checkpoint.set_store_offset(partition, offset + 1_000_000, id),
        None => checkpoint.set_offset(partition, offset + 1_000_000),
    }
    checkpoint.write(&task).unwrap();

    let again = run(dir.path(), app, store);
    assert_eq!(again.served, reference);
    assert_eq!(
        again.restored,
        changelog_len(dir.path(), app, store, 0),
        "partition 0 restored from the start of its changelog"
    );
    let warned = warnings_about(store, "past the changelog's end");
    assert!(!warned.is_empty(), "a warning says why: {}", logs());
    assert!(
        warned[0].contains(&format!("{}", offset + 1_000_000)),
        "{}",
        warned[0]
    );
}

/// The log lines of application `app` that contain `what`.
fn lines_of(app: &str, what: &str) -> usize {
    let needle = format!("application_id={app}");
    logs()
        .lines()
        .filter(|l| l.contains(&needle) && l.contains(what))
        .count()
}

/// `input` → count, through a function that panics on record `k3:40` while `panics` (a
/// counter of the panics still to come) is above zero.
fn panicking(panics: &'static AtomicU32) -> Topology {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("input", Consumed::default())
        .peek(move |_, v| {
            if v == "k3:40" && panics.load(Ordering::SeqCst) > 0 {
                panics.fetch_sub(1, Ordering::SeqCst);
                panic!("user code failed on {v}");
            }
        })
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            "counts-out",
            Produced::with(StringSerde, OptionSerde(I64Serde)),
        );
    b.build().unwrap()
}

#[test]
fn a_task_that_always_fails_stops_the_application_with_one_clear_error() {
    static PANICS: AtomicU32 = AtomicU32::new(u32::MAX);
    logs();
    let app = "faults-poison";
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    write_input(&*log, "input", PARTITIONS, 2_000, 20);
    // No commit before the thread reaches the poison record: every attempt fails with no
    // progress since the one before.
    let config = config(dir.path(), app).with_commit_interval(Duration::from_secs(600));
    let streams = Streams::new(panicking(&PANICS), config, log).unwrap();
    streams.set_uncaught_exception_handler(|_| ExceptionResponse::ReplaceThread);
    streams.start().unwrap();
    let started = Instant::now();
    streams
        .wait_for_state(StreamsState::Error, Duration::from_secs(60))
        .unwrap();
    println!("stopped after {:?}", started.elapsed());

    let task = format!("task 0_{}", partition_for_key(b"k3", PARTITIONS));
    let error = streams.error().unwrap();
    // The error with its causes, as the application's log shows it.
    let text = error.report().to_string();
    println!("{text}");
    assert!(text.contains(&task), "names the task: {text}");
    assert!(
        text.contains("panicked: user code failed on k3:40"),
        "names the cause: {text}"
    );
    assert!(text.contains("fix it"), "says what to do: {text}");
    assert!(
        matches!(*error, Error::TaskFailed { failures: 5, .. }),
        "{error:?}"
    );
    let failed = u32::MAX - PANICS.load(Ordering::SeqCst);
    assert_eq!(
        failed, 5,
        "the poison record was tried max_task_failures times"
    );
    // Two threads, and one replacement per failure but the last.
    assert_eq!(streams.metrics().threads.len(), 2 + 4);
    assert_eq!(lines_of(app, "stream thread failed"), 5);
    assert_eq!(lines_of(app, "stopping the application"), 1);
    assert!(streams.close().is_err());
}

#[test]
fn a_failure_that_goes_away_is_retried_with_backoff_and_nothing_is_lost() {
    static PANICS: AtomicU32 = AtomicU32::new(3);
    logs();
    let app = "faults-flaky";
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let input = write_input(&*log, "input", PARTITIONS, 2_000, 20);
    let streams = Streams::new(panicking(&PANICS), config(dir.path(), app), log.clone()).unwrap();
    streams.set_uncaught_exception_handler(|_| ExceptionResponse::ReplaceThread);
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "three failures, then none"
    );
    assert_eq!(streams.state(), StreamsState::Running);
    let served: BTreeMap<String, i64> = streams
        .key_value_store("counts", Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect();
    streams.close().unwrap();
    // At least once: nothing lost, records since a failed attempt's last commit may count
    // twice.
    for (k, n) in reference_counts(&input) {
        assert!(served[&k] >= n, "{k}: {} < {n}", served[&k]);
    }
    assert_eq!(lines_of(app, "stream thread failed"), 3);
}

#[test]
fn a_checkpoint_path_that_is_a_directory_ends_in_an_error_naming_it() {
    let (app, store) = ("faults-cpdir", "counts-cpdir");
    let dir = tempfile::tempdir().unwrap();
    first_run(dir.path(), app, store);
    let checkpoint = Checkpoint::path(&task_dir(dir.path(), app, 1));
    std::fs::remove_file(&checkpoint).unwrap();
    std::fs::create_dir_all(checkpoint.join("x")).unwrap();

    let streams = Streams::new(
        counting(store),
        config(dir.path(), app),
        open_log(dir.path()),
    )
    .unwrap();
    streams.set_uncaught_exception_handler(|_| ExceptionResponse::ReplaceThread);
    streams.start().unwrap();
    streams
        .wait_for_state(StreamsState::Error, Duration::from_secs(60))
        .unwrap();
    let text = streams.error().unwrap().report().to_string();
    println!("{text}");
    assert!(text.contains("task 0_1"), "{text}");
    assert!(text.contains(&checkpoint.display().to_string()), "{text}");
    assert!(text.contains("delete"), "says what to do: {text}");
}

/// Appends `n` records to the single-partition topic `input` (created with small segments if
/// missing), keys `k0`..`k9`, and returns their keys.
fn append_input(log: &dyn Log, n: usize) -> Vec<String> {
    if log.describe_topic("input").is_err() {
        log.create_topic("input", TopicConfig::new(1).with_segment_bytes(4096))
            .unwrap();
    }
    let keys: Vec<String> = (0..n).map(|i| format!("k{}", i % 10)).collect();
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Record::new(k.clone(), "v", i as i64 + 1))
        .collect();
    for chunk in records.chunks(100) {
        log.append(&TopicPartition::new("input", 0), chunk).unwrap();
    }
    keys
}

/// Counts per key of the records of `input` in `[from, to)`.
fn counts_between(log: &dyn Log, from: u64, to: u64) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    let fetch = log
        .read(
            &TopicPartition::new("input", 0),
            from,
            (to - from) as usize,
            IsolationLevel::ReadCommitted,
        )
        .unwrap();
    for r in fetch.records.into_iter().filter(|r| r.offset < to) {
        let key = String::from_utf8(r.record.key.unwrap()).unwrap();
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn add(a: &BTreeMap<String, i64>, b: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    let mut sum = a.clone();
    for (k, n) in b {
        *sum.entry(k.clone()).or_insert(0) += n;
    }
    sum
}

/// Starts the counting application with `reset`; returns it once it caught up, or ended.
fn start_with(dir: &Path, app: &str, store: &str, reset: OffsetReset) -> Streams {
    let config = config(dir, app).with_offset_reset(reset);
    let streams = Streams::new(counting(store), config, open_log(dir)).unwrap();
    streams.start().unwrap();
    if reset != OffsetReset::None {
        streams.wait_until_caught_up(WAIT).unwrap();
    }
    streams
}

fn served(streams: &Streams, store: &str) -> BTreeMap<String, i64> {
    streams
        .key_value_store(store, Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect()
}

/// Runs the application to the end of 1,000 records; then `fault` moves the partition's range
/// away from the committed offset (1,000); then the application restarts under `reset`.
/// Returns the state directory, the restarted application (caught up, or failing under
/// `none`) and the counts of the first run.
fn out_of_range(
    app: &str,
    store: &str,
    reset: OffsetReset,
    fault: impl FnOnce(&Path, &EmbeddedLog),
) -> (tempfile::TempDir, Streams, BTreeMap<String, i64>) {
    logs();
    let dir = tempfile::tempdir().unwrap();
    append_input(&*open_log(dir.path()), 1_000);
    let first = start_with(dir.path(), app, store, OffsetReset::Earliest);
    let counts = served(&first, store);
    first.close().unwrap();
    drop(first);
    {
        let log = open_log(dir.path());
        assert_eq!(
            log.committed_offset(app, &input_partition()).unwrap(),
            Some(1_000)
        );
        fault(dir.path(), &log);
    }
    let streams = start_with(dir.path(), app, store, reset);
    (dir, streams, counts)
}

fn input_partition() -> TopicPartition {
    TopicPartition::new("input", 0)
}

/// A torn write: the input's last segment loses the last 60% of its bytes, so the partition
/// ends below the committed offset.
fn cut_input_tail(dir: &Path, _log: &EmbeddedLog) {
    cut_last_segment(&dir.join("log").join("topics").join("input").join("0"), 4);
}

/// Cuts the last segment file of an embedded-log partition directory to `tenths` of its
/// length, as a torn write would.
fn cut_last_segment(partition: &Path, tenths: u64) {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(partition)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len * tenths / 10)
        .unwrap();
}

/// Retention deletes the closed segments of `input`, and the group's offset is set to 0,
/// below the partition's new start.
fn below_start(log: &EmbeddedLog, app: &str) {
    log.maintain(i64::MAX / 2).unwrap();
    assert!(log.start_offset(&input_partition()).unwrap() > 0);
    log.commit_offsets(app, &[(input_partition(), 0)]).unwrap();
}

fn end_of(log: &dyn Log) -> u64 {
    log.end_offset(&input_partition(), IsolationLevel::ReadCommitted)
        .unwrap()
}

/// Warnings about resetting `input-0` that name `offset` and `bound` (`start=…`/`end=…`).
fn reset_warned(offset: u64, bound: &str) -> bool {
    logs().lines().any(|l| {
        l.contains(" WARN ")
            && l.contains("auto.offset.reset")
            && l.contains("topic=input partition=0")
            && l.contains(&format!("offset={offset}"))
            && l.contains(bound)
    })
}

#[test]
fn a_committed_offset_past_the_end_resumes_from_the_earliest_offset() {
    let app = "reset-end-earliest";
    let (_dir, streams, first) =
        out_of_range(app, "counts-ree", OffsetReset::Earliest, cut_input_tail);
    let log = streams.log().clone();
    let end = end_of(&*log);
    assert!(end < 1_000, "the cut moved the end back to {end}");
    // Everything the partition holds now is counted again, on top of the first run.
    assert_eq!(
        served(&streams, "counts-ree"),
        add(&first, &counts_between(&*log, 0, end))
    );
    assert!(
        reset_warned(1_000, &format!("end={end}")),
        "a warning names the partition and the offsets: {}",
        logs()
    );
    streams.close().unwrap();
}

#[test]
fn a_committed_offset_past_the_end_resumes_from_the_latest_offset() {
    let (_dir, streams, first) = out_of_range(
        "reset-end-latest",
        "counts-rel",
        OffsetReset::Latest,
        cut_input_tail,
    );
    let log = streams.log().clone();
    let end = end_of(&*log);
    assert!(end < 1_000);
    assert_eq!(served(&streams, "counts-rel"), first, "nothing read again");
    // Records appended from now on are counted.
    append_input(&*log, 30);
    streams.wait_until_caught_up(WAIT).unwrap();
    assert_eq!(
        served(&streams, "counts-rel"),
        add(&first, &counts_between(&*log, end, end + 30))
    );
    assert!(reset_warned(1_000, &format!("end={end}")), "{}", logs());
    streams.close().unwrap();
}

#[test]
fn a_committed_offset_below_the_start_resumes_from_the_earliest_offset() {
    let app = "reset-start-earliest";
    let (_dir, streams, first) =
        out_of_range(app, "counts-rse", OffsetReset::Earliest, |_, log| {
            below_start(log, app)
        });
    let log = streams.log().clone();
    let start = log.start_offset(&input_partition()).unwrap();
    assert_eq!(
        served(&streams, "counts-rse"),
        add(&first, &counts_between(&*log, start, 1_000))
    );
    assert!(
        reset_warned(0, &format!("start={start}")),
        "a warning names the partition and the offsets: {}",
        logs()
    );
    streams.close().unwrap();
}

#[test]
fn a_committed_offset_out_of_range_under_none_stops_with_a_clear_error() {
    for (app, store, below) in [
        ("reset-none-end", "counts-rne", false),
        ("reset-none-start", "counts-rns", true),
    ] {
        let (_dir, streams, _) = out_of_range(app, store, OffsetReset::None, |dir, log| {
            if below {
                below_start(log, app)
            } else {
                cut_input_tail(dir, log)
            }
        });
        streams
            .wait_for_state(StreamsState::Error, Duration::from_secs(60))
            .unwrap();
        let error = streams.error().unwrap();
        let text = error.to_string();
        println!("{text}");
        assert!(matches!(*error, Error::NoValidOffset { .. }), "{error:?}");
        assert!(text.contains("input-0"), "names the partition: {text}");
        let committed = if below { 0 } else { 1_000 };
        assert!(
            text.contains(&format!("committed offset is {committed}")),
            "{text}"
        );
        assert!(text.contains("auto.offset.reset is none"), "{text}");
    }
}

/// A tmpfs of `bytes` mounted at `path` for the life of the value: a disk that fills up. The
/// test machines run the suite as root, which mounting needs.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mounting a {bytes}-byte tmpfs at {} for the disk-full test failed (it needs root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    /// Fills what is left of the disk with one file; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", filler.display()),
            }
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[test]
fn a_full_disk_stops_the_application_with_a_clear_error_and_loses_nothing_once_space_returns() {
    let (app, store) = ("faults-full", "counts-full");
    logs();
    let state = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&state.path().join("disk"), 8 << 20);
    let log = Arc::new(EmbeddedLog::open(disk.path.join("log")).unwrap());
    let start = |timeout: Duration| {
        let config = config(state.path(), app).with_task_timeout(timeout);
        let streams = Streams::new(counting(store), config, log.clone()).unwrap();
        streams.start().unwrap();
        streams
    };
    // A first run on room to spare makes the topics; then more input comes, and the disk fills.
    let mut input = write_input(&*log, "input", PARTITIONS, 1_000, 20);
    let first = start(WAIT);
    first.wait_until_caught_up(WAIT).unwrap();
    first.close().unwrap();
    for (i, (k, v)) in (0..2_000)
        .map(|i| (format!("k{}", i % 20), format!("more{i}")))
        .enumerate()
    {
        let tp = TopicPartition::new("input", partition_for_key(k.as_bytes(), PARTITIONS));
        log.append(
            &tp,
            &[Record::new(k.as_str(), v.as_str(), 10_000 + i as i64)],
        )
        .unwrap();
        input.push((k, v));
    }
    let filler = disk.fill();

    // The changelog and output appends fail for want of space: retried, then, past the task
    // timeout, the application stops with an error that says so, without a flood of lines.
    let full = start(Duration::from_secs(3));
    let began = Instant::now();
    while full.state() != StreamsState::Error {
        assert!(
            began.elapsed() < WAIT,
            "still {} on a full disk after {WAIT:?}",
            full.state()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let error = full
        .error()
        .map(|e| e.report().to_string())
        .unwrap_or_default();
    assert!(
        error.contains("No space left on device") && error.contains(&*disk.path.to_string_lossy()),
        "the error does not name the full disk: {error}"
    );
    let _ = full.close();
    let lines = lines_of(app, "No space left on device");
    println!("a full disk: {lines} log lines, then: {error}");
    assert!(
        (1..=50).contains(&lines),
        "{lines} log lines about the full disk"
    );

    // Space comes back: a restart counts every record, none lost (at least once: some twice).
    std::fs::remove_file(&filler).unwrap();
    let again = start(WAIT);
    again.wait_until_caught_up(WAIT).unwrap();
    let served = served(&again, store);
    again.close().unwrap();
    for (k, n) in reference_counts(&input) {
        assert!(
            served[&k] >= n,
            "{k}: {} < {n}: a record was lost",
            served[&k]
        );
    }
}
