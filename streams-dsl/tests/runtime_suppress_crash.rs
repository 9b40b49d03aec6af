#![allow(clippy::unwrap_used)]
//! Crash tests of `suppress(until_window_closes)`: a windowed count whose final results are
//! suppressed runs in a child process that is killed with SIGKILL at random moments (every
//! key always has a window in the suppression buffer, and the windows that ended but are in
//! their grace period wait only there), then restarted on the same state directory and run
//! to the end of its input. Every window that closed must have been emitted with its count
//! as a plain-Rust reference computes it: exactly once under exactly-once (read committed),
//! at least once under at-least-once.
//!
//! This binary is its own child: with `SUPPRESS_CRASH_CHILD` set it runs the application
//! instead of the tests (`harness = false`, see Cargo.toml). Set `SUPPRESS_CRASH_SEED` to
//! replay the kill times of a failed run; the seed is printed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use streams_core::{
    partition_for_key, EmbeddedLog, I64Serde, Log, ProcessingGuarantee, StringSerde, Topology,
};
use streams_core::{Streams, StreamsConfig};
use streams_dsl::prelude::*;
use streams_dsl::{BufferConfig, Suppressed, TimeWindows};

const RECORDS: usize = 400_000;
const KEYS: usize = 50;
const PARTITIONS: u32 = 4;
const KILLS: usize = 8;
/// Window size and grace, in ms; input timestamps are 1 ms apart.
const SIZE: i64 = 1_000;
const GRACE: i64 = 500;

/// `input` → count per key and window (store `counts`) → final results only → `final`,
/// keyed `<key>@<window start>`.
fn topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("input", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_millis(SIZE as u64),
            Duration::from_millis(GRACE as u64),
        ))
        .count(Materialized::named("counts"))
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()).named("final"))
        .to_stream()
        .map(|w, n| (format!("{}@{}", w.key, w.window.start), n.unwrap_or(-1)))
        .to("final", Produced::with(StringSerde, I64Serde));
    b.build().unwrap()
}

fn config(dir: &Path, guarantee: ProcessingGuarantee) -> StreamsConfig {
    StreamsConfig::new("suppress-crash", dir)
        .with_threads(2)
        .with_guarantee(guarantee)
        .with_commit_interval(Duration::from_millis(40))
}

fn child(dir: &Path, guarantee: ProcessingGuarantee, finish: bool) {
    let log = open_log(dir);
    let streams = Streams::new(topology(), config(dir, guarantee), log).unwrap();
    streams.start().unwrap();
    if finish {
        if let Err(e) = streams.wait_until_caught_up(Duration::from_secs(300)) {
            panic!("{e}; cause: {:?}", streams.error());
        }
        streams.close().unwrap();
        std::process::exit(0);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn spawn(dir: &Path, guarantee: ProcessingGuarantee, finish: bool) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env("SUPPRESS_CRASH_CHILD", dir)
        .env("SUPPRESS_CRASH_GUARANTEE", guarantee.to_string())
        .env("SUPPRESS_CRASH_MODE", if finish { "finish" } else { "run" })
        .spawn()
        .unwrap()
}

/// Input records whose offsets the group has committed.
fn committed(log: &dyn Log) -> u64 {
    log.committed_offsets("suppress-crash")
        .unwrap()
        .into_iter()
        .filter(|(tp, _)| tp.topic == "input")
        .map(|(_, o)| o)
        .sum()
}

/// The final results of `input` (record `i` at time `i + 1`): the count of each key and
/// window that closed, that is whose `end + grace` its partition's stream time reached at
/// the end of the input (the largest timestamp of the partition, the input being in time
/// order).
fn reference(input: &[(String, String)]) -> BTreeMap<String, i64> {
    let mut stream_time: BTreeMap<u32, i64> = BTreeMap::new();
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (i, (k, _)) in input.iter().enumerate() {
        let ts = i as i64 + 1;
        let p = partition_for_key(k.as_bytes(), PARTITIONS);
        stream_time.insert(p, ts);
        *counts.entry((k.clone(), ts - ts % SIZE)).or_insert(0) += 1;
    }
    counts
        .into_iter()
        .filter(|((k, start), _)| {
            start + SIZE + GRACE <= stream_time[&partition_for_key(k.as_bytes(), PARTITIONS)]
        })
        .map(|((k, start), n)| (format!("{k}@{start}"), n))
        .collect()
}

/// Every count written to `final` (read committed), per `<key>@<window start>`.
fn emitted(log: &dyn Log) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for part in read_topic(log, "final") {
        for (k, n) in decode(&part, &I64Serde) {
            out.entry(k).or_default().push(n);
        }
    }
    out
}

fn crash_and_recover(guarantee: ProcessingGuarantee, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let input = {
        let log = EmbeddedLog::open(dir.path().join("log")).unwrap();
        write_input(&log, "input", PARTITIONS, RECORDS, KEYS)
    };
    let mut rng = seed;
    let mut next = move |lo: u64, hi: u64| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lo + (rng >> 33) % (hi - lo)
    };
    let mut mid_run_kills = 0;
    let mut kills = 0;
    let mut last = 0;
    // Kill delays adapt to the machine: longer after a run that committed nothing (a loaded
    // machine), shorter after one that got far, so the kills land while work remains.
    let mut scale = 1.0f64;
    while mid_run_kills < KILLS && kills < 3 * KILLS && (last as usize) < RECORDS {
        let mut c = spawn(dir.path(), guarantee, false);
        let delay = (next(100, 500) as f64 * scale) as u64;
        std::thread::sleep(Duration::from_millis(delay));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        kills += 1;
        let log = EmbeddedLog::open(dir.path().join("log")).unwrap();
        let done = committed(&log);
        println!("killed after {delay} ms with {done} input records committed");
        if done > last && (done as usize) < RECORDS {
            mid_run_kills += 1;
        }
        if done == last {
            scale = (scale * 2.0).min(16.0);
        } else if (done - last) as usize > RECORDS / 16 {
            scale = (scale / 2.0).max(0.1);
        }
        last = done;
    }
    let mut c = spawn(dir.path(), guarantee, true);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the final run did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "final run failed: {status}");

    let log = EmbeddedLog::open(dir.path().join("log")).unwrap();
    assert_eq!(committed(&log) as usize, RECORDS);
    assert!(
        mid_run_kills >= 3,
        "only {mid_run_kills} of {kills} kills landed while records were being processed"
    );
    let reference = reference(&input);
    let emitted = emitted(&log);
    let missing: Vec<&String> = reference
        .keys()
        .filter(|w| !emitted.contains_key(*w))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} final results never emitted, first {:?}",
        missing.len(),
        reference.len(),
        &missing[..missing.len().min(5)]
    );
    for (w, counts) in &emitted {
        let Some(&n) = reference.get(w) else {
            panic!("{w} emitted {counts:?} but has not closed");
        };
        match guarantee {
            ProcessingGuarantee::ExactlyOnce => {
                assert_eq!(counts, &vec![n], "{w}: one final result, the right count");
            }
            // Besides duplicates, at-least-once can emit a window again with a smaller count:
            // records re-read after a crash may fall into a window the restored window store
            // already dropped as expired (the store's own time runs ahead of the committed
            // stream time the task resumes from), and count from zero. That is the aggregation's, not the buffer's; what must hold is
            // that the window's full count was emitted.
            _ => {
                assert!(
                    counts.iter().any(|&c| c >= n),
                    "{w}: {counts:?}: no emission counted all {n} records"
                );
            }
        }
    }
    println!(
        "{guarantee:?}: {kills} kills ({mid_run_kills} mid-run), {} final results emitted for {} closed windows",
        emitted.values().map(Vec::len).sum::<usize>(),
        reference.len()
    );
}

fn main() {
    if let Ok(dir) = std::env::var("SUPPRESS_CRASH_CHILD") {
        let guarantee = std::env::var("SUPPRESS_CRASH_GUARANTEE")
            .unwrap()
            .parse()
            .unwrap();
        let finish = std::env::var("SUPPRESS_CRASH_MODE").as_deref() == Ok("finish");
        child(Path::new(&dir), guarantee, finish);
        return;
    }
    // `cargo test -- FILTER` passes the filter on; run only if it matches this file's tests.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let names = [
        (
            "suppress_kill_9_at_least_once",
            ProcessingGuarantee::AtLeastOnce,
        ),
        (
            "suppress_kill_9_exactly_once",
            ProcessingGuarantee::ExactlyOnce,
        ),
    ];
    let seed = std::env::var("SUPPRESS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("SUPPRESS_CRASH_SEED={seed}");
    for (name, guarantee) in names {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        crash_and_recover(guarantee, seed);
        println!(
            "test {name} ... ok ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
}
