#![allow(clippy::unwrap_used)]
//! Exactly-once on Apache Kafka through crashes: a counting application runs in a child
//! process on the test broker and is killed with SIGKILL at random moments, several times,
//! then restarted on the same state directory and run to the end. Read committed, the output
//! holds every input exactly once, in key order, and the final counts equal the reference.
//!
//! This binary is its own child: with `KAFKA_CRASH_CHILD` set it runs the application instead
//! of the test (`harness = false`, see Cargo.toml). `KAFKA_CRASH_SEED` replays the kill times
//! of a failed run; the seed is printed.

mod common;
#[path = "../../streams-core/tests/support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{decode, read_topic, reference_counts, write_input};
use streams_core::{
    I64Serde, KafkaLog, KafkaLogConfig, Log, OptionSerde, ProcessingGuarantee, Streams,
    StreamsConfig, StringSerde, Topology,
};
use streams_dsl::prelude::*;

const RECORDS: usize = 300_000;
const KEYS: usize = 100;
const PARTITIONS: u32 = 4;
const KILLS: usize = 4;

/// Topic and application names of one run: `<prefix>-input`, `-echo`, `-counts`, and the
/// application `<prefix>-app`.
struct Names(String);

impl Names {
    fn topic(&self, name: &str) -> String {
        format!("{}-{name}", self.0)
    }

    fn app(&self) -> String {
        format!("{}-app", self.0)
    }
}

/// `input` → `echo` unchanged, and `input` → count per key → `counts`.
fn topology(names: &Names) -> Topology {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, String>(&names.topic("input"), Consumed::default());
    input.to(&names.topic("echo"), Produced::default());
    input
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            &names.topic("counts"),
            Produced::with(StringSerde, OptionSerde(I64Serde)),
        );
    b.build().unwrap()
}

fn log(servers: &str) -> KafkaLog {
    KafkaLog::connect(KafkaLogConfig::new(servers).with_timeout(Duration::from_secs(30))).unwrap()
}

fn child(dir: &Path, servers: &str, names: &Names, finish: bool) {
    let threads = std::env::var("KAFKA_CRASH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let config = StreamsConfig::new(names.app(), dir)
        .with_threads(threads)
        .with_guarantee(ProcessingGuarantee::ExactlyOnce)
        .with_commit_interval(Duration::from_millis(100));
    // Transactional ids of this instance's own, kept across its restarts: each restart
    // fences the transactions the killed process left open.
    let prefix = format!("{}-{}", names.app(), config.process_id().unwrap());
    // A killed member leaves the group only when its session times out: keep that short, so
    // the restarted process gets the tasks soon (the broker's minimum is 6 s).
    let log = KafkaLog::connect(
        KafkaLogConfig::new(servers)
            .with_timeout(Duration::from_secs(30))
            .with_session_timeout(Duration::from_secs(6))
            .with_transactional_id_prefix(prefix),
    )
    .unwrap();
    let streams = Streams::new(topology(names), config, Arc::new(log)).unwrap();
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

fn spawn(dir: &Path, servers: &str, names: &Names, finish: bool) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env("KAFKA_CRASH_CHILD", dir)
        .env("KAFKA_CRASH_SERVERS", servers)
        .env("KAFKA_CRASH_NAMES", &names.0)
        .env("KAFKA_CRASH_MODE", if finish { "finish" } else { "run" })
        .spawn()
        .unwrap()
}

/// The input records the application has committed. Right after a kill the broker holds
/// the killed run's open transaction, and a read of committed offsets waits for it to be
/// resolved (fenced by the next run, or aborted by its timeout): a read that times out
/// meanwhile is asked again.
fn committed(log: &dyn Log, names: &Names) -> u64 {
    let input = names.topic("input");
    let started = Instant::now();
    let offsets = loop {
        match log.committed_offsets(&names.app()) {
            Ok(offsets) => break offsets,
            Err(e) if e.is_retriable() && started.elapsed() < Duration::from_secs(180) => {
                println!("committed offsets not read yet: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("read the committed offsets: {e}"),
        }
    };
    offsets
        .into_iter()
        .filter(|(tp, _)| tp.topic == input)
        .map(|(_, o)| o)
        .sum()
}

fn crash_and_recover(servers: &str, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let names = Names(kafka_broker::unique("crash"));
    let kafka = log(servers);
    let input = write_input(&kafka, &names.topic("input"), PARTITIONS, RECORDS, KEYS);
    let mut rng = seed;
    let mut next = move |lo: u64, hi: u64| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        lo + (rng >> 33) % (hi - lo)
    };
    let (mut kills, mut mid_run_kills, mut last) = (0, 0, 0);
    // Each run is killed once it has committed another slice of the input (after a random
    // moment more), so the kills land mid-run however fast the machine is: while the
    // application has open transactions, uncommitted output and state changes.
    let step = (RECORDS / (KILLS + 2)) as u64;
    while mid_run_kills < KILLS && kills < 4 * KILLS && (last as usize) < RECORDS {
        let mut c = spawn(dir.path(), servers, &names, false);
        let started = Instant::now();
        while committed(&kafka, &names) < last + step && started.elapsed() < Duration::from_secs(90)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(next(0, 300)));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        kills += 1;
        let done = committed(&kafka, &names);
        println!(
            "killed after {} ms with {done} input records committed",
            started.elapsed().as_millis()
        );
        if done > last && (done as usize) < RECORDS {
            mid_run_kills += 1;
        }
        last = done;
    }
    let mut c = spawn(dir.path(), servers, &names, true);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the final run did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "final run failed: {status}");
    assert_eq!(committed(&kafka, &names) as usize, RECORDS);
    assert!(
        mid_run_kills >= 2,
        "only {mid_run_kills} of {kills} kills landed while records were being processed"
    );

    let mut echoed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in read_topic(&kafka, &names.topic("echo")) {
        for (k, v) in decode(&part, &StringSerde) {
            echoed.entry(k).or_default().push(v);
        }
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &input {
        expected.entry(k.clone()).or_default().push(v.clone());
    }
    // Per key: inputs missing from the output, and outputs seen more than once.
    let mut wrong = Vec::new();
    for (k, want) in &expected {
        let got = echoed.get(k).cloned().unwrap_or_default();
        if &got != want {
            let missing = want.iter().filter(|v| !got.contains(v)).count();
            let mut seen = std::collections::BTreeSet::new();
            let twice = got.iter().filter(|v| !seen.insert(*v)).count();
            wrong.push(format!(
                "{k}: {} out for {} in, {missing} missing, {twice} twice, first out {:?}",
                got.len(),
                want.len(),
                got.first()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not every input exactly once, in key order ({} keys):\n{}",
        wrong.len(),
        wrong
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut counts = BTreeMap::new();
    for part in read_topic(&kafka, &names.topic("counts")) {
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        for (k, v) in decode(&part, &I64Serde) {
            let prev = last.insert(k.clone(), v).unwrap_or(0);
            assert!(
                v > prev,
                "{k}: count {v} after {prev}: an update was seen twice"
            );
            counts.insert(k, v);
        }
    }
    assert_eq!(counts, reference_counts(&input), "final counts");
    println!(
        "exactly-once on Kafka: {kills} kills ({mid_run_kills} mid-run), {RECORDS} inputs each \
         once in the output"
    );
}

fn main() {
    if let Ok(dir) = std::env::var("KAFKA_CRASH_CHILD") {
        let servers = std::env::var("KAFKA_CRASH_SERVERS").unwrap();
        let names = Names(std::env::var("KAFKA_CRASH_NAMES").unwrap());
        let finish = std::env::var("KAFKA_CRASH_MODE").as_deref() == Ok("finish");
        child(Path::new(&dir), &servers, &names, finish);
        return;
    }
    // `cargo test -- FILTER` passes the filter on; run only if it matches this file's test.
    let name = "kill_9_exactly_once_on_kafka";
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    let seed = std::env::var("KAFKA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("seed {seed} (KAFKA_CRASH_SEED replays it)");
    let started = Instant::now();
    crash_and_recover(kafka_broker::bootstrap_servers(), seed);
    println!(
        "test {name} ... ok ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}
