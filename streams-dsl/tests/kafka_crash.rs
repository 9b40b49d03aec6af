#![allow(clippy::unwrap_used)]
//! Exactly-once on Apache Kafka through crashes: a counting application runs in a child
//! process on the test broker and is killed with SIGKILL at random moments, several times,
//! then restarted on the same state directory and run to the end. Read committed, the output
//! holds every input exactly once, in key order, and the final counts equal the reference.
//!
//! Beside it, two replicas of one application under exactly-once (each with its own state
//! directory, so its own process id and transactional ids) run side by side on one input:
//! both keep tasks, neither is fenced, and the output holds every input exactly once.
//!
//! This binary is its own child: with `KAFKA_CRASH_CHILD` set it runs the application instead
//! of the test (`harness = false`, see Cargo.toml). `KAFKA_CRASH_SEED` replays the kill times
//! of a failed run; the seed is printed.

mod common;
#[path = "../../streams-core/tests/support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{decode, read_topic, reference_counts, write_input};
use streams_core::{
    partition_for_key, I64Serde, KafkaLog, KafkaLogConfig, Log, OptionSerde, ProcessingGuarantee,
    Record, Streams, StreamsConfig, StringSerde, TopicConfig, TopicPartition, Topology,
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

/// The application of one instance, on its state directory `dir`.
fn streams(dir: &Path, servers: &str, names: &Names) -> Streams {
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
    Streams::new(topology(names), config, Arc::new(log)).unwrap()
}

fn child(dir: &Path, servers: &str, names: &Names, finish: bool) {
    let streams = streams(dir, servers, names);
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

/// A replica of the side-by-side test: logs to standard error, prints `tasks N` whenever the
/// number of tasks it holds changes, and once `<dir>/stop` exists prints `done tasks N
/// processed M` and closes.
fn replica(dir: &Path, servers: &str, names: &Names) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,librdkafka=warn,rdkafka=warn",
        ))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let streams = streams(dir, servers, names);
    streams.start().unwrap();
    let mut held = None;
    while !dir.join("stop").exists() {
        if let Some(e) = streams.error() {
            eprintln!("the replica failed: {e}");
            std::process::exit(1);
        }
        let tasks = streams.assignment().len();
        if held != Some(tasks) {
            println!("tasks {tasks}");
            held = Some(tasks);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tasks = streams.assignment().len();
    println!(
        "done tasks {tasks} processed {}",
        streams.metrics().processed()
    );
    streams.close().unwrap();
    std::process::exit(0);
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
    assert_exactly_once(&kafka, &names, &input);
    println!(
        "exactly-once on Kafka: {kills} kills ({mid_run_kills} mid-run), {RECORDS} inputs each \
         once in the output"
    );
}

/// Read committed, `echo` holds every input exactly once in key order, and the last count of
/// each key in `counts` is the reference's, every update seen once.
fn assert_exactly_once(kafka: &dyn Log, names: &Names, input: &[(String, String)]) {
    let mut echoed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in read_topic(kafka, &names.topic("echo")) {
        for (k, v) in decode(&part, &StringSerde) {
            echoed.entry(k).or_default().push(v);
        }
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in input {
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
    for part in read_topic(kafka, &names.topic("counts")) {
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
    assert_eq!(counts, reference_counts(input), "final counts");
}

/// Appends `n` records numbered from `from` (key `k<i % KEYS>`, value `r<i>`, time `i + 1`)
/// to the partitions of `topic` their keys go to, and returns them.
fn append_numbered(kafka: &dyn Log, topic: &str, from: usize, n: usize) -> Vec<(String, String)> {
    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    let mut all = Vec::with_capacity(n);
    for i in from..from + n {
        let key = format!("k{}", i % KEYS);
        let value = format!("r{i}");
        let p = partition_for_key(key.as_bytes(), PARTITIONS);
        by_partition.entry(p).or_default().push(Record::new(
            key.clone(),
            value.clone(),
            i as i64 + 1,
        ));
        all.push((key, value));
    }
    for (p, records) in by_partition {
        for chunk in records.chunks(500) {
            kafka.append(&TopicPartition::new(topic, p), chunk).unwrap();
        }
    }
    all
}

/// A replica process with what it printed so far (stdout lines; stderr lines).
struct Replica {
    child: Child,
    dir: tempfile::TempDir,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    fn spawn(servers: &str, names: &Names) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("KAFKA_CRASH_CHILD", dir.path())
            .env("KAFKA_CRASH_SERVERS", servers)
            .env("KAFKA_CRASH_NAMES", &names.0)
            .env("KAFKA_CRASH_MODE", "replica")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Replica {
            child,
            dir,
            out,
            err,
        }
    }

    /// The number of tasks it said it holds last.
    fn tasks(&self) -> usize {
        self.out
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("tasks ")?.parse().ok())
            .unwrap_or(0)
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }
}

/// Waits up to `limit` for `done`, failing with `what` (and the replicas' logs) otherwise.
fn wait_for(what: &str, limit: Duration, replicas: &[&Replica], mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            let logs: Vec<String> = replicas.iter().map(|r| r.stderr()).collect();
            panic!(
                "{what} within {limit:?}; the replicas' logs:\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn two_replicas_side_by_side(servers: &str) {
    const BATCH: usize = 10_000;
    let names = Names(kafka_broker::unique("replicas"));
    let kafka = log(servers);
    let input_topic = names.topic("input");
    kafka
        .create_topic(&input_topic, TopicConfig::new(PARTITIONS))
        .unwrap();
    let mut input = append_numbered(&kafka, &input_topic, 0, BATCH);

    let a = Replica::spawn(servers, &names);
    wait_for(
        "the first replica got no tasks",
        Duration::from_secs(90),
        &[&a],
        || a.tasks() > 0,
    );
    let b = Replica::spawn(servers, &names);
    wait_for(
        "the two replicas did not share the tasks",
        Duration::from_secs(90),
        &[&a, &b],
        || a.tasks() > 0 && b.tasks() > 0,
    );
    // More input while both run, each committing its own transactions.
    for batch in 1..4 {
        input.extend(append_numbered(&kafka, &input_topic, batch * BATCH, BATCH));
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for(
        "the replicas did not commit all of the input",
        Duration::from_secs(180),
        &[&a, &b],
        || committed(&kafka, &names) as usize == input.len(),
    );
    for r in [&a, &b] {
        std::fs::write(r.dir.path().join("stop"), b"").unwrap();
    }
    for (name, mut r) in [("first", a), ("second", b)] {
        let started = Instant::now();
        let status = loop {
            if let Some(s) = r.child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > Duration::from_secs(60) {
                r.child.kill().unwrap();
                panic!("the {name} replica did not close:\n{}", r.stderr());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let log = r.stderr();
        assert!(
            status.success(),
            "the {name} replica failed ({status}):\n{log}"
        );
        let done = r.out.lock().unwrap().last().cloned().unwrap_or_default();
        let (tasks, processed) = done
            .strip_prefix("done tasks ")
            .and_then(|rest| rest.split_once(" processed "))
            .and_then(|(t, p)| Some((t.parse::<usize>().ok()?, p.parse::<u64>().ok()?)))
            .unwrap_or_else(|| panic!("the {name} replica's last line: {done:?}"));
        assert!(tasks > 0 && processed > 0, "the {name} replica: {done}");
        let lower = log.to_lowercase();
        assert!(
            !lower.contains("fenc") && !lower.contains("producerepoch"),
            "the {name} replica was fenced:\n{log}"
        );
        println!("{name} replica: {done}");
    }
    assert_exactly_once(&kafka, &names, &input);
    println!(
        "two replicas under exactly-once: {} inputs each once in the output",
        input.len()
    );
}

fn main() {
    if let Ok(dir) = std::env::var("KAFKA_CRASH_CHILD") {
        let servers = std::env::var("KAFKA_CRASH_SERVERS").unwrap();
        let names = Names(std::env::var("KAFKA_CRASH_NAMES").unwrap());
        match std::env::var("KAFKA_CRASH_MODE").as_deref() {
            Ok("replica") => replica(Path::new(&dir), &servers, &names),
            mode => child(Path::new(&dir), &servers, &names, mode == Ok("finish")),
        }
        return;
    }
    // `cargo test -- FILTER` passes the filter on; run only the tests it matches.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let name = "two_replicas_exactly_once_side_by_side_on_kafka";
    if wanted(name) {
        let started = Instant::now();
        two_replicas_side_by_side(kafka_broker::bootstrap_servers());
        println!(
            "test {name} ... ok ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    let name = "kill_9_exactly_once_on_kafka";
    if !wanted(name) {
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
