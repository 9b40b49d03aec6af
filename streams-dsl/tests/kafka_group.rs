#![allow(clippy::unwrap_used)]
//! Consumer-group tests on Apache Kafka (feature `kafka`), with real processes: several
//! instances of one application split the tasks, hand them over when one stops, restarts or
//! is killed, and take a newcomer in, without losing a record or a join match; and an
//! application whose broker freezes or restarts (on its durable data) reconnects and finishes
//! with nothing lost.
//!
//! The application: `payments` (4 partitions) joined with the table `rates` → `converted`,
//! and per key a count (`counts-out`) and the set of distinct payments seen (`distinct-out`).
//! The distinct set equals the reference whenever nothing was lost, even when records were
//! processed twice after a SIGKILL (at-least-once); counts and join outputs must then be
//! exact after clean handovers.
//!
//! This binary is its own child (`harness = false`): with `KAFKA_GROUP_CHILD` set it runs one
//! application instance, writes its tasks to a status file, and closes on SIGTERM.
//!
//! A child logs to `<name>.log` beside its status file; a failed wait shows the log's tail.
//! `KAFKA_GROUP_DEBUG=cgrp` (any librdkafka `debug` value) adds librdkafka's own logging.
//!
//! `cargo test --features streams-dsl/kafka --test kafka_group` runs every scenario;
//! `-- NAME...` runs those whose names contain one of the NAMEs.

mod common;
#[path = "../../streams-core/tests/support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{decode, read_topic};
use kafka_broker::Broker;
use streams_core::{
    partition_for_key, I64Serde, KafkaLog, KafkaLogConfig, Log, OptionSerde, Record, StringSerde,
    TopicConfig, TopicPartition, Topology,
};
use streams_core::{Streams, StreamsConfig, StreamsState};
use streams_dsl::prelude::*;

const PARTITIONS: u32 = 4;
const KEYS: u64 = 40;
/// Payments written per phase; a scenario writes three phases.
const PER_PHASE: u64 = 800;
const WAIT: Duration = Duration::from_secs(120);

/// Topic names of one scenario, unique on a shared broker.
#[derive(Clone)]
struct Names {
    base: String,
}

impl Names {
    fn topic(&self, name: &str) -> String {
        format!("{}-{name}", self.base)
    }
}

fn key_of(seq: u64) -> String {
    format!("k{}", (seq.wrapping_mul(2_654_435_761) >> 5) % KEYS)
}

fn rate_of(key: &str) -> String {
    format!("rate-of-{key}")
}

fn topology(names: &Names) -> Topology {
    let b = StreamsBuilder::new();
    let rates = b.table::<String, String>(
        &names.topic("rates"),
        Consumed::default(),
        Materialized::named("rates"),
    );
    let payments =
        b.stream::<String, String>(names.topic("payments").as_str(), Consumed::default());
    payments
        .join(&rates, |p, r| format!("{p}@{r}"))
        .to(names.topic("converted").as_str(), Produced::default());
    payments
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            names.topic("counts-out").as_str(),
            Produced::with(StringSerde, OptionSerde(I64Serde)),
        );
    payments
        .group_by_key(Grouped::inferred())
        .aggregate(
            String::new,
            |_, payment: String, seen: String| {
                if seen.split(',').any(|s| s == payment) {
                    seen
                } else if seen.is_empty() {
                    payment
                } else {
                    format!("{seen},{payment}")
                }
            },
            Materialized::named("distinct")
                .with_key_serde(StringSerde)
                .with_value_serde(StringSerde),
        )
        .to_stream()
        .to(
            names.topic("distinct-out").as_str(),
            Produced::with(StringSerde, OptionSerde(StringSerde)),
        );
    b.build().unwrap()
}

fn kafka_config(servers: &str, instance: Option<&str>) -> KafkaLogConfig {
    let mut config = KafkaLogConfig::new(servers)
        .with_timeout(Duration::from_secs(10))
        .with_session_timeout(Duration::from_secs(10));
    if let Some(id) = instance {
        config = config
            .with_group_instance_id(id)
            .with_session_timeout(Duration::from_secs(45));
    }
    config
}

fn streams_config(app: &str, state: &Path) -> StreamsConfig {
    StreamsConfig::new(app, state)
        .with_threads(1)
        .with_commit_interval(Duration::from_millis(200))
        .with_task_timeout(Duration::from_secs(60))
}

// ---------------------------------------------------------------------------------------
// The child: one application instance.

fn child() {
    let env = |k: &str| std::env::var(k).unwrap();
    let names = Names {
        base: env("KAFKA_GROUP_CHILD"),
    };
    let status = PathBuf::from(env("KAFKA_GROUP_STATUS"));
    let log_file = std::fs::File::create(status.with_extension("log")).unwrap();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            if std::env::var("KAFKA_GROUP_DEBUG").is_ok() {
                "info"
            } else {
                "info,librdkafka=warn,rdkafka=warn"
            },
        ))
        .with_writer(std::sync::Mutex::new(log_file))
        .with_ansi(false)
        .init();
    let instance = std::env::var("KAFKA_GROUP_INSTANCE").ok();
    let mut config = kafka_config(&env("KAFKA_BOOTSTRAP_SERVERS"), instance.as_deref());
    if let Ok(s) = std::env::var("KAFKA_GROUP_SESSION_S") {
        config = config.with_session_timeout(Duration::from_secs(s.parse().unwrap()));
    }
    if let Ok(d) = std::env::var("KAFKA_GROUP_DEBUG") {
        config = config.with_property("debug", d);
    }
    let log = Arc::new(KafkaLog::connect(config).unwrap());
    let state = PathBuf::from(env("KAFKA_GROUP_STATE"));
    let streams = Streams::new(
        topology(&names),
        streams_config(&env("KAFKA_GROUP_APP"), &state),
        log,
    )
    .unwrap();
    let terminated = Arc::new(AtomicBool::new(false));
    let flag = terminated.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
        });
        flag.store(true, Ordering::SeqCst);
    });
    streams.start().unwrap();
    let mut restored: BTreeMap<String, u64> = BTreeMap::new();
    let write = |restored: &mut BTreeMap<String, u64>, closed: bool| {
        let metrics = streams.metrics();
        for (id, t) in &metrics.tasks {
            let r = restored.entry(id.to_string()).or_insert(0);
            *r = (*r).max(t.restored);
        }
        let tasks: Vec<String> = metrics.tasks.keys().map(|t| t.to_string()).collect();
        let text = format!(
            "tasks={}\nrestored={}\nstate={}\nclosed={closed}\n",
            tasks.join(","),
            restored.values().sum::<u64>(),
            streams.state(),
        );
        let tmp = status.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &status).unwrap();
    };
    let parent = std::os::unix::process::parent_id();
    while !terminated.load(Ordering::SeqCst) {
        if std::os::unix::process::parent_id() != parent {
            // The test died without stopping its children.
            std::process::exit(4);
        }
        write(&mut restored, false);
        if streams.state() == StreamsState::Error {
            eprintln!("child failed: {:?}", streams.error());
            std::process::exit(2);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = streams.close();
    write(&mut restored, true);
    if let Err(e) = closed {
        eprintln!("close failed: {e}");
        std::process::exit(3);
    }
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------
// The parent.

#[derive(Debug, Default, Clone)]
struct Status {
    tasks: BTreeSet<String>,
    restored: u64,
    state: String,
}

struct Instance {
    name: String,
    process: std::cell::RefCell<Child>,
    status: PathBuf,
    state: PathBuf,
    instance: Option<String>,
}

impl Instance {
    /// The last lines the instance logged.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.status.with_extension("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    fn status(&self) -> Status {
        let Ok(text) = std::fs::read_to_string(&self.status) else {
            return Status::default();
        };
        let mut s = Status::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("tasks", v)) => {
                    s.tasks = v
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect()
                }
                Some(("restored", v)) => s.restored = v.parse().unwrap(),
                Some(("state", v)) => s.state = v.to_string(),
                _ => {}
            }
        }
        s
    }

    /// Fails the test if the process has exited.
    fn check_alive(&self) {
        if let Some(code) = self.process.borrow_mut().try_wait().unwrap() {
            panic!(
                "{} exited unexpectedly with {code}; its log ends:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.process.borrow().id();
        let ok = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {signal} {} failed", self.name);
    }

    /// SIGTERM, then the exit status (the child closes cleanly and exits 0).
    fn terminate(self) -> Status {
        self.signal("-TERM");
        let started = Instant::now();
        loop {
            if let Some(code) = self.process.borrow_mut().try_wait().unwrap() {
                assert!(
                    code.success(),
                    "{} exited with {code} after SIGTERM",
                    self.name
                );
                return self.status();
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "{} did not stop within 90 s of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no commit, no leaving the group.
    fn kill(self) -> (PathBuf, Option<String>) {
        let mut process = self.process.borrow_mut();
        process.kill().unwrap();
        process.wait().unwrap();
        drop(process);
        (self.state.clone(), self.instance.clone())
    }
}

struct Scenario {
    servers: String,
    names: Names,
    app: String,
    dir: tempfile::TempDir,
    log: KafkaLog,
    written: u64,
    /// The children's session timeout, when not the default.
    session: Option<Duration>,
}

impl Scenario {
    fn new(servers: &str, prefix: &str) -> Scenario {
        let base = kafka_broker::unique(prefix);
        let log = KafkaLog::connect(kafka_config(servers, None)).unwrap();
        let names = Names { base };
        for t in ["rates", "payments"] {
            log.create_topic(&names.topic(t), TopicConfig::new(PARTITIONS))
                .unwrap();
        }
        // Every rate is in place (timestamp 1) before the first payment.
        for k in 0..KEYS {
            let key = format!("k{k}");
            let tp = TopicPartition::new(
                names.topic("rates"),
                partition_for_key(key.as_bytes(), PARTITIONS),
            );
            let rate = rate_of(&key);
            log.append(&tp, &[Record::new(key, rate, 1)]).unwrap();
        }
        Scenario {
            servers: servers.to_string(),
            app: format!("{}-app", names.base),
            names,
            dir: tempfile::tempdir().unwrap(),
            log,
            written: 0,
            session: None,
        }
    }

    /// Writes the next `PER_PHASE` payments (`p<seq>`, timestamps after every rate).
    fn phase(&mut self) {
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for seq in self.written..self.written + PER_PHASE {
            let key = key_of(seq);
            by_partition
                .entry(partition_for_key(key.as_bytes(), PARTITIONS))
                .or_default()
                .push(Record::new(key, format!("p{seq}"), 1_000 + seq as i64));
        }
        for (p, records) in by_partition {
            let tp = TopicPartition::new(self.names.topic("payments"), p);
            self.log.append(&tp, &records).unwrap();
        }
        self.written += PER_PHASE;
    }

    fn spawn(&self, name: &str, instance: Option<&str>) -> Instance {
        self.spawn_in(name, self.dir.path().join(name), instance)
    }

    fn spawn_in(&self, name: &str, state: PathBuf, instance: Option<&str>) -> Instance {
        let status = self.dir.path().join(format!("{name}.status"));
        let _ = std::fs::remove_file(&status);
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .env("KAFKA_GROUP_CHILD", &self.names.base)
            .env("KAFKA_GROUP_APP", &self.app)
            .env("KAFKA_GROUP_STATE", &state)
            .env("KAFKA_GROUP_STATUS", &status)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.servers);
        if let Some(id) = instance {
            command.env("KAFKA_GROUP_INSTANCE", id);
        }
        if let Some(session) = self.session {
            command.env("KAFKA_GROUP_SESSION_S", session.as_secs().to_string());
        }
        Instance {
            name: name.to_string(),
            process: std::cell::RefCell::new(command.spawn().unwrap()),
            status,
            state,
            instance: instance.map(String::from),
        }
    }

    /// Payments whose offsets the group committed; 0 while the broker cannot answer for a
    /// moment (a transient error, as right after it was paused), so waits ask again.
    fn committed(&self) -> u64 {
        let payments = self.names.topic("payments");
        let offsets = match self.log.committed_offsets(&self.app) {
            Ok(offsets) => offsets,
            Err(e) if e.is_retriable() => return 0,
            Err(e) => panic!("committed offsets of {}: {e}", self.app),
        };
        offsets
            .into_iter()
            .filter(|(tp, _)| tp.topic == payments)
            .map(|(_, o)| o)
            .sum()
    }

    fn wait_for(&self, what: &str, instances: &[&Instance], mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            for i in instances {
                i.check_alive();
            }
            if started.elapsed() > WAIT {
                let statuses: Vec<String> = instances
                    .iter()
                    .map(|i| format!("{}: {:?}\n{}", i.name, i.status(), i.log_tail()))
                    .collect();
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; committed {} of {};\n{}",
                    self.committed(),
                    self.written,
                    statuses.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts instances `a` and `b` (static members with these ids, if given) and waits
    /// until they split the tasks.
    fn two_members(&self, ids: Option<[&str; 2]>) -> (Instance, Instance) {
        let a = self.spawn("a", ids.map(|i| i[0]));
        let b = self.spawn("b", ids.map(|i| i[1]));
        self.wait_for("two members splitting the tasks", &[&a, &b], || {
            split_among(&[&a, &b])
        });
        (a, b)
    }

    /// Waits until the group has committed more than the first phase.
    fn wait_part_committed(&self, instances: &[&Instance]) {
        self.wait_for("part of the input committed", instances, || {
            self.committed() > PER_PHASE
        });
    }

    fn wait_caught_up(&self, instances: &[&Instance]) {
        self.wait_for("the group to commit every payment", instances, || {
            self.committed() == self.written
        });
    }

    /// Last value per key of an output topic.
    fn last_values<V: 'static>(
        &self,
        topic: &str,
        serde: &dyn streams_core::Serde<V>,
    ) -> BTreeMap<String, V> {
        let mut out = BTreeMap::new();
        for part in read_topic(&self.log, &self.names.topic(topic)) {
            for (k, v) in decode(&part, serde) {
                out.insert(k, v);
            }
        }
        out
    }

    fn reference(&self) -> BTreeMap<String, i64> {
        let mut counts = BTreeMap::new();
        for seq in 0..self.written {
            *counts.entry(key_of(seq)).or_insert(0) += 1;
        }
        counts
    }

    /// Checks the outputs against the reference. `exact`: every payment counted and joined
    /// exactly once (clean handovers only); otherwise at least once.
    fn verify(&self, exact: bool) {
        let reference = self.reference();
        let distinct: BTreeMap<String, i64> = self
            .last_values("distinct-out", &StringSerde)
            .into_iter()
            .map(|(k, v)| (k, v.split(',').count() as i64))
            .collect();
        assert_eq!(
            distinct, reference,
            "distinct payments per key: one was lost"
        );
        let counts = self.last_values("counts-out", &I64Serde);
        if exact {
            assert_eq!(counts, reference, "counts per key");
        } else {
            for (k, n) in &reference {
                assert!(counts[k] >= *n, "{k}: count {} < {n}", counts[k]);
            }
        }
        let mut joined: BTreeMap<u64, usize> = BTreeMap::new();
        for part in read_topic(&self.log, &self.names.topic("converted")) {
            for (k, v) in decode(&part, &StringSerde) {
                let (payment, rate) = v.split_once('@').unwrap();
                assert_eq!(rate, rate_of(&k), "{v} joined with the wrong rate");
                let seq: u64 = payment.trim_start_matches('p').parse().unwrap();
                assert_eq!(key_of(seq), k, "{v} under the wrong key");
                *joined.entry(seq).or_insert(0) += 1;
            }
        }
        let missing: Vec<u64> = (0..self.written)
            .filter(|seq| !joined.contains_key(seq))
            .collect();
        if !missing.is_empty() {
            println!(
                "{} of {} payments have no join output, first {:?}",
                missing.len(),
                self.written,
                &missing[..missing.len().min(20)]
            );
        }
        for seq in 0..self.written {
            let n = joined.get(&seq).copied().unwrap_or(0);
            assert!(
                n >= 1,
                "payment p{seq} has no join output: a match was lost"
            );
            if exact {
                assert_eq!(n, 1, "payment p{seq} joined {n} times");
            }
        }
    }
}

fn all_tasks(instances: &[&Instance]) -> (usize, BTreeSet<String>) {
    let mut union = BTreeSet::new();
    let mut total = 0;
    for i in instances {
        let tasks = i.status().tasks;
        total += tasks.len();
        union.extend(tasks);
    }
    (total, union)
}

/// Every task held by exactly one of `instances`, each of which holds at least one.
fn split_among(instances: &[&Instance]) -> bool {
    let (total, union) = all_tasks(instances);
    total == PARTITIONS as usize
        && union.len() == PARTITIONS as usize
        && instances.iter().all(|i| !i.status().tasks.is_empty())
}

/// Two instances; one stops cleanly mid-stream; the other takes every task over, restoring
/// the state from the changelogs; nothing is lost or counted twice.
fn sigterm_handover(servers: &str) {
    let mut s = Scenario::new(servers, "handover");
    s.phase();
    let (a, b) = s.two_members(None);
    s.phase();
    s.wait_part_committed(&[&a, &b]);
    let before = a.status().tasks;
    let stopped = a.terminate();
    assert!(
        stopped.tasks.is_empty(),
        "a closed with tasks {:?}",
        stopped.tasks
    );
    s.phase();
    s.wait_for("b holding every task", &[&b], || {
        b.status().tasks.len() == PARTITIONS as usize
    });
    s.wait_caught_up(&[&b]);
    let last = b.terminate();
    assert!(
        last.restored > 0,
        "b took over {before:?} without restoring their state"
    );
    s.verify(true);
    println!(
        "sigterm_handover: a held {before:?}; b restored {} records",
        last.restored
    );
}

/// Two static members; one is killed and restarted with the same `group.instance.id`: it
/// gets its own tasks back and nothing is lost.
fn static_member_restart(servers: &str) {
    let mut s = Scenario::new(servers, "static");
    s.phase();
    let (a, b) = s.two_members(Some(["member-a", "member-b"]));
    s.phase();
    s.wait_part_committed(&[&a, &b]);
    let a_tasks = a.status().tasks;
    let b_tasks = b.status().tasks;
    let (state, instance) = a.kill();
    let a = s.spawn_in("a", state, instance.as_deref());
    s.wait_for(
        "the restarted member holding its tasks again",
        &[&a, &b],
        || a.status().tasks == a_tasks,
    );
    assert_eq!(b.status().tasks, b_tasks, "the other member's tasks moved");
    s.phase();
    s.wait_caught_up(&[&a, &b]);
    let restarted = a.terminate();
    b.terminate();
    s.verify(false);
    println!(
        "static_member_restart: a held {a_tasks:?} before and after; restored {} records on restart",
        restarted.restored
    );
}

/// A third instance joins mid-stream and gets tasks; no join match is lost across the
/// rebalance, and with clean handovers nothing is processed twice.
fn third_member_joins(servers: &str) {
    let mut s = Scenario::new(servers, "third");
    s.phase();
    let (a, b) = s.two_members(None);
    s.phase();
    let c = s.spawn("c", None);
    s.wait_for("three members splitting the tasks", &[&a, &b, &c], || {
        split_among(&[&a, &b, &c])
    });
    let shares: Vec<usize> = [&a, &b, &c]
        .iter()
        .map(|i| i.status().tasks.len())
        .collect();
    s.phase();
    s.wait_caught_up(&[&a, &b, &c]);
    for i in [a, b, c] {
        i.terminate();
    }
    s.verify(true);
    println!("third_member_joins: tasks per member after the join {shares:?}");
}

/// One of two members is killed and not restarted: the broker evicts it after its session
/// timeout (short here), and the survivor takes its tasks over with nothing lost.
fn sigkill_eviction(servers: &str) {
    let mut s = Scenario::new(servers, "evict");
    s.session = Some(Duration::from_secs(6));
    s.phase();
    let (a, b) = s.two_members(None);
    s.phase();
    s.wait_part_committed(&[&a, &b]);
    a.kill();
    let killed = Instant::now();
    s.phase();
    s.wait_for("the survivor holding every task", &[&b], || {
        b.status().tasks.len() == PARTITIONS as usize
    });
    println!(
        "sigkill_eviction: the survivor held every task {:?} after the kill",
        killed.elapsed()
    );
    s.wait_caught_up(&[&b]);
    b.terminate();
    s.verify(false);
}

/// The broker freezes (SIGSTOP) mid-run for longer than the client timeouts and the member's
/// session, then resumes: the member is evicted and rejoins, the application's threads retry,
/// reopen their tasks and finish with nothing lost.
fn broker_pause(_: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let mut s = Scenario::new(&broker.servers(), "pause");
    s.phase();
    let a = s.spawn("a", None);
    s.wait_caught_up(&[&a]);
    s.phase();
    broker.signal("-STOP");
    std::thread::sleep(Duration::from_secs(15));
    broker.signal("-CONT");
    // A broker thawed after a freeze drops connections and fails metadata requests for a
    // while (seen: more than 10 s). The application under test rides that out with its task
    // timeout; the test's own writes wait until the broker answers a fresh client again
    // (asked with short timeouts: a first request of a new client can hang for minutes), and
    // then go through a client whose appends ride out what is left of it (seen: an append
    // timing out after 10 s though the metadata answered), idempotent so that its retries
    // add nothing.
    let thawed = Instant::now();
    loop {
        let answered = KafkaLog::connect(kafka_config(&broker.servers(), None)).and_then(|log| {
            log.describe_topic(&s.names.topic("payments"))?;
            Ok(log)
        });
        match answered {
            Ok(_) => break,
            Err(e) if e.is_retriable() && thawed.elapsed() < WAIT => {
                std::thread::sleep(Duration::from_millis(500))
            }
            Err(e) => panic!("the broker did not answer again after the freeze: {e}"),
        }
    }
    let writer = kafka_config(&broker.servers(), None)
        .with_timeout(WAIT)
        .with_producer_property("enable.idempotence", "true");
    s.log = KafkaLog::connect(writer).unwrap();
    s.phase();
    s.wait_caught_up(&[&a]);
    a.terminate();
    s.verify(false);
    broker.stop();
}

/// The broker stops cleanly mid-run and starts again on its data: the application reconnects
/// and finishes with nothing lost, the input written while the broker was away included.
fn broker_restart(_: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let mut s = Scenario::new(&broker.servers(), "restart");
    s.phase();
    let log = Arc::new(KafkaLog::connect(kafka_config(&broker.servers(), None)).unwrap());
    let streams = Streams::new(
        topology(&s.names),
        // Retries for as long as the test waits: on a loaded machine the broker's JVM can
        // take most of a minute to start again.
        streams_config(&s.app, &s.dir.path().join("app")).with_task_timeout(WAIT),
        log,
    )
    .unwrap();
    streams.start().unwrap();
    s.wait_caught_up(&[]);
    s.phase();
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart();
    let restarted = Instant::now();
    s.phase();
    loop {
        assert!(
            streams.state() != StreamsState::Error,
            "the application failed after the broker restarted: {:?}",
            streams.error()
        );
        if s.committed() == s.written {
            break;
        }
        assert!(
            restarted.elapsed() < WAIT,
            "the application did not catch up within {WAIT:?} of the broker's restart \
             (state {}, committed {} of {})",
            streams.state(),
            s.committed(),
            s.written
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "broker_restart: caught up {:?} after the broker restarted",
        restarted.elapsed()
    );
    streams.close().unwrap();
    s.verify(false);
    broker.stop();
}

fn main() {
    if std::env::var("KAFKA_GROUP_CHILD").is_ok() {
        child();
        return;
    }
    type Run = fn(&str);
    let scenarios: [(&str, Run); 6] = [
        ("sigterm_handover", sigterm_handover),
        ("static_member_restart", static_member_restart),
        ("third_member_joins", third_member_joins),
        ("sigkill_eviction", sigkill_eviction),
        ("broker_pause", broker_pause),
        ("broker_restart", broker_restart),
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<_> = scenarios
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        return;
    }
    let servers = kafka_broker::bootstrap_servers();
    for (name, run) in &selected {
        let started = Instant::now();
        println!("running {name}");
        run(servers);
        println!("{name} ok in {:?}", started.elapsed());
    }
    println!("kafka_group: {} passed, 0 failed", selected.len());
}
