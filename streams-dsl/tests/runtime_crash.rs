#![allow(clippy::unwrap_used)]
//! Crash tests: a counting application runs in a child process that is killed with SIGKILL
//! at random moments, many times, then restarted on the same state directory and run to
//! the end. Final counts must equal the reference; under exactly-once the output must hold
//! every input exactly once (read committed), under at-least-once at least once.
//!
//! This binary is its own child: with `RUNTIME_CRASH_CHILD` set it runs the application
//! instead of the tests (`harness = false`, see Cargo.toml). Set `RUNTIME_CRASH_SEED` to
//! replay the kill times of a failed run; the seed is printed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use streams_core::{EmbeddedLog, Log, ProcessingGuarantee, StringSerde};
use streams_core::{Streams, StreamsConfig};

const RECORDS: usize = 400_000;
const KEYS: usize = 200;
const PARTITIONS: u32 = 4;
const KILLS: usize = 10;

fn config(dir: &Path, guarantee: ProcessingGuarantee) -> StreamsConfig {
    StreamsConfig::new("crash", dir)
        .with_threads(2)
        .with_guarantee(guarantee)
        .with_commit_interval(Duration::from_millis(40))
}

fn child(dir: &Path, guarantee: ProcessingGuarantee, finish: bool) {
    let log = open_log(dir);
    let streams = Streams::new(counting_topology(), config(dir, guarantee), log).unwrap();
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
        .env("RUNTIME_CRASH_CHILD", dir)
        .env("RUNTIME_CRASH_GUARANTEE", guarantee.to_string())
        .env("RUNTIME_CRASH_MODE", if finish { "finish" } else { "run" })
        .spawn()
        .unwrap()
}

/// Input records whose offsets the group has committed.
fn committed(log: &dyn Log) -> u64 {
    log.committed_offsets("crash")
        .unwrap()
        .into_iter()
        .filter(|(tp, _)| tp.topic == "input")
        .map(|(_, o)| o)
        .sum()
}

fn values_by_key(log: &dyn Log, topic: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in read_topic(log, topic) {
        for (k, v) in decode(&part, &StringSerde) {
            out.entry(k).or_default().push(v);
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
    let reference = reference_counts(&input);
    let counts = final_counts(&log);
    let echoed = values_by_key(&log, "echo");
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &input {
        expected.entry(k.clone()).or_default().push(v.clone());
    }
    if guarantee == ProcessingGuarantee::ExactlyOnce {
        assert_eq!(counts, reference, "final counts");
        assert_eq!(echoed, expected, "every input exactly once, in key order");
        // No count update was seen twice either: per key, values only grow.
        for part in read_topic(&log, "counts-out") {
            let mut last: BTreeMap<String, i64> = BTreeMap::new();
            for (k, v) in decode(&part, &streams_core::I64Serde) {
                let prev = last.insert(k.clone(), v).unwrap_or(0);
                assert!(v > prev, "{k}: count {v} after {prev}");
            }
        }
    } else {
        for (k, n) in &reference {
            assert!(
                counts[k] >= *n,
                "{k}: {} < {n}: a record was lost",
                counts[k]
            );
            let seen: std::collections::BTreeSet<&String> = echoed[k].iter().collect();
            for v in &expected[k] {
                assert!(seen.contains(v), "{v} never reached the output");
            }
        }
    }
    println!(
        "{guarantee:?}: {kills} kills ({mid_run_kills} mid-run), {} output records for {RECORDS} inputs",
        echoed.values().map(Vec::len).sum::<usize>()
    );
}

fn main() {
    if let Ok(dir) = std::env::var("RUNTIME_CRASH_CHILD") {
        let guarantee = std::env::var("RUNTIME_CRASH_GUARANTEE")
            .unwrap()
            .parse()
            .unwrap();
        let finish = std::env::var("RUNTIME_CRASH_MODE").as_deref() == Ok("finish");
        child(Path::new(&dir), guarantee, finish);
        return;
    }
    // `cargo test -- FILTER` passes the filter on; run only if it matches this file's tests.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let names = [
        ("kill_9_at_least_once", ProcessingGuarantee::AtLeastOnce),
        ("kill_9_exactly_once", ProcessingGuarantee::ExactlyOnce),
    ];
    let seed = std::env::var("RUNTIME_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("RUNTIME_CRASH_SEED={seed}");
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
