#![allow(clippy::unwrap_used)]
//! Interactive queries across instances on Apache Kafka (feature `kafka`): two instances of
//! one application, each with its own `application.server` and HTTP query server, answer
//! every key from either instance (the one that does not hold it forwards the request), the
//! metadata names the instance that runs each key's task, and once one instance closes the
//! survivor holds every task and says so. While the tasks move, no query is answered wrong:
//! each is the right count, or 503.
//!
//! Instance A runs in this process (so the test calls `Streams::query_metadata_for_key` and
//! `Streams::all_metadata` itself); instance B is this binary run again as a child process
//! (`KAFKA_QUERIES_CHILD` set), which binds its HTTP server on a free port, writes its port
//! and tasks to a status file, and closes on SIGTERM. Both read their settings from
//! `Properties`, `application.server` included.
//!
//! `cargo test --features streams-dsl/kafka --test kafka_queries`.

#[path = "../../streams-core/tests/support/kafka_broker.rs"]
mod kafka_broker;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streams_core::http::QueryServer;
use streams_core::{
    partition_for_key, Error, I64Serde, KafkaLog, KafkaLogConfig, Log, Properties, Record,
    StringSerde, TopicConfig, TopicPartition, Topology,
};
use streams_core::{Streams, StreamsConfig, StreamsState};
use streams_dsl::prelude::*;

const PARTITIONS: u32 = 4;
const KEYS: usize = 40;
const WAIT: Duration = Duration::from_secs(120);
/// Both instances' `http.bearer.token`: they forward with it, and every request carries it.
const TOKEN: &str = "kafka-queries-token-0123456789";

fn topology(input: &str) -> Topology {
    let b = StreamsBuilder::new();
    b.stream::<String, String>(input, Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"));
    b.build().unwrap()
}

/// An instance's settings, by their Kafka Streams names.
fn properties(app: &str, state: &Path, servers: &str, port: u16) -> Properties {
    Properties::from_map([
        ("application.id", app.to_string()),
        ("state.dir", state.display().to_string()),
        ("bootstrap.servers", servers.to_string()),
        ("application.server", format!("127.0.0.1:{port}")),
        ("commit.interval.ms", "100".to_string()),
        ("session.timeout.ms", "10000".to_string()),
        ("default.api.timeout.ms", "10000".to_string()),
        ("http.bearer.token", TOKEN.to_string()),
    ])
}

/// Starts an instance and its query server on `listener` (bound before the start, as a
/// service does), on a runtime of its own thread.
fn start_instance(props: &Properties, input: &str, listener: std::net::TcpListener) -> Streams {
    let config = StreamsConfig::from_properties(props).unwrap();
    let log = Arc::new(
        KafkaLog::connect(KafkaLogConfig::from_properties(props, &config).unwrap()).unwrap(),
    );
    let streams = Streams::new(topology(input), config, log).unwrap();
    let server = QueryServer::new(&streams)
        .key_value::<String, i64>("counts", Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            server
                .serve(listener, std::future::pending())
                .await
                .unwrap();
        });
    });
    streams.start().unwrap();
    streams
}

/// Tasks this instance runs now, as `0_1`.
fn tasks_of(streams: &Streams) -> BTreeSet<String> {
    streams
        .metrics()
        .tasks
        .keys()
        .map(|t| t.to_string())
        .collect()
}

fn bind() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

// ---------------------------------------------------------------------------------------
// The child: instance B.

fn child() {
    let env = |k: &str| std::env::var(k).unwrap();
    let status = PathBuf::from(env("KAFKA_QUERIES_STATUS"));
    let log_file = std::fs::File::create(status.with_extension("log")).unwrap();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,librdkafka=warn,rdkafka=warn",
        ))
        .with_writer(std::sync::Mutex::new(log_file))
        .with_ansi(false)
        .init();
    let (listener, port) = bind();
    let props = properties(
        &env("KAFKA_QUERIES_APP"),
        Path::new(&env("KAFKA_QUERIES_STATE")),
        &env("KAFKA_BOOTSTRAP_SERVERS"),
        port,
    );
    let streams = start_instance(&props, &env("KAFKA_QUERIES_CHILD"), listener);
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
    let write = |closed: bool| {
        let tasks: Vec<String> = tasks_of(&streams).into_iter().collect();
        let text = format!(
            "port={port}\ntasks={}\nstate={}\nclosed={closed}\n",
            tasks.join(","),
            streams.state()
        );
        let tmp = status.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &status).unwrap();
    };
    let parent = std::os::unix::process::parent_id();
    while !terminated.load(Ordering::SeqCst) {
        if std::os::unix::process::parent_id() != parent {
            std::process::exit(4);
        }
        write(false);
        if streams.state() == StreamsState::Error {
            eprintln!("child failed: {:?}", streams.error());
            std::process::exit(2);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = streams.close();
    write(true);
    if let Err(e) = closed {
        eprintln!("close failed: {e}");
        std::process::exit(3);
    }
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------
// The parent: instance A, and the checks.

struct ChildInstance {
    process: Child,
    status: PathBuf,
}

#[derive(Debug, Default)]
struct Status {
    port: Option<u16>,
    tasks: BTreeSet<String>,
}

impl ChildInstance {
    fn status(&mut self) -> Status {
        if let Some(code) = self.process.try_wait().unwrap() {
            let log =
                std::fs::read_to_string(self.status.with_extension("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "instance B exited with {code}; its log ends:\n{}",
                tail.join("\n")
            );
        }
        let mut s = Status::default();
        let Ok(text) = std::fs::read_to_string(&self.status) else {
            return s;
        };
        for line in text.lines() {
            match line.split_once('=') {
                Some(("port", v)) => s.port = v.parse().ok(),
                Some(("tasks", v)) => {
                    s.tasks = v
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect()
                }
                _ => {}
            }
        }
        s
    }

    fn terminate(&mut self) {
        let pid = self.process.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let started = Instant::now();
        loop {
            if let Some(code) = self.process.try_wait().unwrap() {
                assert!(
                    code.success(),
                    "instance B exited with {code} after SIGTERM"
                );
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "B did not stop in 90 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildInstance {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One HTTP/1.1 GET with the bearer token: status, headers (lower-cased names) and body.
fn http_get(
    port: u16,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, BTreeMap<String, String>, String) {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    http_get_as(port, path, &headers)
}

/// One HTTP/1.1 GET with exactly the `extra` headers.
fn http_get_as(
    port: u16,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, BTreeMap<String, String>, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in extra {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn key_of(i: usize) -> String {
    format!("k{i}")
}

/// Key `k<i>` has `i % 5 + 1` records.
fn expected() -> BTreeMap<String, i64> {
    (0..KEYS).map(|i| (key_of(i), (i % 5 + 1) as i64)).collect()
}

fn task_of(key: &str) -> String {
    format!("0_{}", partition_for_key(key.as_bytes(), PARTITIONS))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every key asked at `port` has its full count now (keys may still be counting
/// while the instances start).
fn all_counted(port: u16) -> bool {
    expected().into_iter().all(|(key, count)| {
        let (status, _, body) = http_get(port, &format!("/stores/counts/keys/{key}"), &[]);
        status == 200 && json(&body) == serde_json::json!({ "key": key, "value": count })
    })
}

/// Asks for every key at `port` once every key was counted: each answer is the right count
/// or, with `allow_503`, a 503; never another count or a 404. Returns the keys answered,
/// with the instance that served each.
fn ask_every_key(port: u16, allow_503: bool) -> BTreeMap<String, String> {
    let mut served = BTreeMap::new();
    for (key, count) in expected() {
        let (status, headers, body) = http_get(port, &format!("/stores/counts/keys/{key}"), &[]);
        match status {
            200 => {
                assert_eq!(
                    json(&body),
                    serde_json::json!({ "key": key, "value": count }),
                    "{key} asked at :{port}"
                );
                let by = headers.get("x-streams-served-by").cloned();
                served.insert(
                    key,
                    by.unwrap_or_else(|| panic!("no x-streams-served-by: {body}")),
                );
            }
            503 if allow_503 => {}
            _ => panic!("{key} asked at :{port}: {status} {body}"),
        }
    }
    served
}

/// Every entry of `counts` read at `port` in pages of `limit` (`from`/`to` for a range),
/// checking that the pages come in key order and none is larger than asked.
fn paged(port: u16, limit: usize, range: Option<(&str, &str)>) -> Vec<(String, i64)> {
    let base = match range {
        Some((from, to)) => format!("/stores/counts/range?from={from}&to={to}&limit={limit}"),
        None => format!("/stores/counts/all?limit={limit}"),
    };
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..KEYS * 2 + 2 {
        let path = match &cursor {
            Some(c) => format!("{base}&cursor={c}"),
            None => base.clone(),
        };
        let (status, _, body) = http_get(port, &path, &[]);
        assert_eq!(status, 200, "{path} at :{port}: {body}");
        let page = json(&body);
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= limit, "{path}: {body}");
        for e in entries {
            out.push((
                e["key"].as_str().unwrap().to_string(),
                e["value"].as_i64().unwrap(),
            ));
            assert!(
                e.get("raw_key").is_none(),
                "{path}: the merge leaked raw keys"
            );
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
    panic!("paging {base} at :{port} did not end");
}

fn run(servers: &str) {
    let base = kafka_broker::unique("queries");
    let input = format!("{base}-words");
    let app = format!("{base}-app");
    let log = KafkaLog::connect(KafkaLogConfig::new(servers).with_timeout(Duration::from_secs(10)))
        .unwrap();
    log.create_topic(&input, TopicConfig::new(PARTITIONS))
        .unwrap();
    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for (key, count) in expected() {
        let p = partition_for_key(key.as_bytes(), PARTITIONS);
        for n in 0..count {
            by_partition
                .entry(p)
                .or_default()
                .push(Record::new(key.as_str(), "w", 1 + n));
        }
    }
    for (p, records) in by_partition {
        log.append(&TopicPartition::new(input.as_str(), p), &records)
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();

    // Instance A, in this process.
    let (listener, a_port) = bind();
    let a_host = format!("127.0.0.1:{a_port}");
    let a = start_instance(
        &properties(&app, &dir.path().join("a"), servers, a_port),
        &input,
        listener,
    );
    assert_eq!(
        a.application_server().map(ToString::to_string),
        Some(a_host.clone())
    );

    // Instance B, a child process.
    let status = dir.path().join("b.status");
    let mut b = ChildInstance {
        process: Command::new(std::env::current_exe().unwrap())
            .env("KAFKA_QUERIES_CHILD", &input)
            .env("KAFKA_QUERIES_APP", &app)
            .env("KAFKA_QUERIES_STATE", dir.path().join("b"))
            .env("KAFKA_QUERIES_STATUS", &status)
            .env("KAFKA_BOOTSTRAP_SERVERS", servers)
            .spawn()
            .unwrap(),
        status,
    };
    let mut b_port = 0;
    wait_for(
        "the two instances to split the tasks and count every key",
        || {
            let s = b.status();
            b_port = s.port.unwrap_or(0);
            let a_tasks = tasks_of(&a);
            b_port != 0
                && !a_tasks.is_empty()
                && !s.tasks.is_empty()
                && a_tasks.len() + s.tasks.len() == PARTITIONS as usize
                && a_tasks.is_disjoint(&s.tasks)
                && a.state() == StreamsState::Running
                && all_counted(a_port)
        },
    );
    let b_host = format!("127.0.0.1:{b_port}");
    let a_tasks = tasks_of(&a);
    let b_tasks = b.status().tasks;
    let owner_of = |key: &str| {
        if a_tasks.contains(&task_of(key)) {
            a_host.clone()
        } else {
            assert!(b_tasks.contains(&task_of(key)));
            b_host.clone()
        }
    };
    println!("A ({a_host}) runs {a_tasks:?}, B ({b_host}) runs {b_tasks:?}");

    // The metadata, through the API: both instances, each with the tasks it runs.
    let all = retry_metadata(|| a.all_metadata());
    let hosts: Vec<(String, BTreeSet<String>, bool)> = all
        .iter()
        .map(|m| {
            let host = m.host.as_ref().map(ToString::to_string).unwrap();
            (
                host,
                m.tasks.iter().map(ToString::to_string).collect(),
                m.local,
            )
        })
        .collect();
    let mut want = vec![
        (a_host.clone(), a_tasks.clone(), true),
        (b_host.clone(), b_tasks.clone(), false),
    ];
    want.sort();
    assert_eq!(hosts, want, "all_metadata");
    for m in &all {
        assert!(m.stores.contains("counts"), "{m:?}");
        let partitions: BTreeSet<String> = m
            .partitions
            .iter()
            .map(|tp| format!("0_{}", tp.partition))
            .collect();
        assert_eq!(
            partitions,
            m.tasks.iter().map(ToString::to_string).collect(),
            "{m:?}"
        );
    }
    assert_eq!(
        retry_metadata(|| a.all_metadata_for_store("counts")).len(),
        2
    );
    assert!(matches!(
        a.all_metadata_for_store("nope"),
        Err(Error::Config { .. })
    ));
    for key in expected().keys() {
        let m = retry_metadata(|| a.query_metadata_for_key("counts", key, &StringSerde));
        assert_eq!(m.active_host.to_string(), owner_of(key), "owner of {key}");
        assert_eq!(m.local, owner_of(key) == a_host, "{key}");
        assert_eq!(
            m.partition,
            Some(partition_for_key(key.as_bytes(), PARTITIONS))
        );
        assert!(m.standby_hosts.is_empty());
    }

    // Every key from either instance, answered by its owner; the metadata over HTTP.
    for port in [a_port, b_port] {
        let served = ask_every_key(port, false);
        for (key, by) in &served {
            assert_eq!(
                by,
                &owner_of(key),
                "{key} asked at :{port} was answered by {by}"
            );
        }
        for key in expected().keys() {
            let (status, _, body) = http_get(port, &format!("/stores/counts/instances/{key}"), &[]);
            assert_eq!(status, 200, "{body}");
            let m = json(&body);
            assert_eq!(m["active_host"], owner_of(key).as_str(), "{key} at :{port}");
            assert_eq!(m["local"], owner_of(key) == format!("127.0.0.1:{port}"));
        }
        let (status, _, body) = http_get(port, "/instances", &[]);
        assert_eq!(status, 200, "{body}");
        let listed: BTreeMap<String, BTreeSet<String>> = json(&body)
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let tasks = m["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string());
                (m["host"].as_str().unwrap().to_string(), tasks.collect())
            })
            .collect();
        let want: BTreeMap<String, BTreeSet<String>> = [
            (a_host.clone(), a_tasks.clone()),
            (b_host.clone(), b_tasks.clone()),
        ]
        .into();
        assert_eq!(listed, want, "/instances at :{port}");
        // A key that is in no store: the owner says so, wherever it is asked.
        let absent = "absent-key";
        let (status, headers, body) = http_get(port, &format!("/stores/counts/keys/{absent}"), &[]);
        assert_eq!(status, 404, "{body}");
        assert_eq!(headers.get("x-streams-served-by"), Some(&owner_of(absent)));
    }

    // Full and range reads merge both instances' pages: every key once, in order, counted
    // right, from either instance and whatever the page size.
    let reference: Vec<(String, i64)> = expected().into_iter().collect();
    let (from, to) = (reference[5].0.clone(), reference[30].0.clone());
    for port in [a_port, b_port] {
        for limit in [1, 7, 100] {
            assert_eq!(
                paged(port, limit, None),
                reference,
                "/all at :{port}, limit {limit}"
            );
        }
        assert_eq!(
            paged(port, 4, Some((&from, &to))),
            reference[5..=30].to_vec(),
            "/range at :{port}"
        );
        // The token is asked for, and forwarding does not stand in for it.
        for path in ["/stores/counts/all", "/stores/counts/keys/k1", "/instances"] {
            let (status, headers, body) = http_get_as(port, path, &[]);
            assert_eq!(status, 401, "{path} at :{port} without the token: {body}");
            assert!(headers.contains_key("www-authenticate"), "{headers:?}");
            let forged = [("x-streams-forwarded-by", "127.0.0.1:1")];
            assert_eq!(http_get_as(port, path, &forged).0, 401, "{path}");
        }
    }

    // A forwarded request is answered where it lands or not at all: never sent on again.
    let remote_key = expected()
        .into_keys()
        .find(|k| owner_of(k) == b_host)
        .unwrap();
    let (status, headers, body) = http_get(
        a_port,
        &format!("/stores/counts/keys/{remote_key}"),
        &[("x-streams-forwarded-by", "127.0.0.1:1")],
    );
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(json(&body)["owner"], b_host.as_str(), "{body}");

    // B closes; while the tasks move, every answer at A is the right count or a 503.
    let stopping = std::thread::spawn(move || {
        b.terminate();
        b
    });
    let moved = Instant::now();
    let mut during = 0;
    while tasks_of(&a).len() < PARTITIONS as usize || a.state() != StreamsState::Running {
        assert!(moved.elapsed() < WAIT, "A did not take every task over");
        during += ask_every_key(a_port, true).len();
    }
    let _b = stopping.join().unwrap();
    println!(
        "the handover took {:?}; {during} answers meanwhile",
        moved.elapsed()
    );

    // The survivor holds everything, and the metadata says so.
    let all_tasks: BTreeSet<String> = (0..PARTITIONS).map(|p| format!("0_{p}")).collect();
    wait_for("A's metadata to show it alone", || match a.all_metadata() {
        Ok(all) => all.len() == 1,
        Err(Error::MetadataUnavailable { .. }) => false,
        Err(e) => panic!("all_metadata: {e}"),
    });
    let all = a.all_metadata().unwrap();
    assert_eq!(
        all[0].host.as_ref().map(ToString::to_string),
        Some(a_host.clone())
    );
    assert!(all[0].local);
    assert_eq!(
        all[0]
            .tasks
            .iter()
            .map(ToString::to_string)
            .collect::<BTreeSet<_>>(),
        all_tasks
    );
    for key in expected().keys() {
        let m = retry_metadata(|| a.query_metadata_for_key("counts", key, &StringSerde));
        assert_eq!(m.active_host.to_string(), a_host, "{key}");
        assert!(m.local);
    }
    wait_for("every key answered by A", || {
        ask_every_key(a_port, true).len() == KEYS
    });
    for (key, by) in ask_every_key(a_port, false) {
        assert_eq!(by, a_host, "{key}");
    }
    a.close().unwrap();
}

/// Retries while the metadata is not available (a rebalance settling), up to `WAIT`.
fn retry_metadata<T>(mut f: impl FnMut() -> streams_core::Result<T>) -> T {
    let started = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(Error::MetadataUnavailable { reason }) if started.elapsed() < WAIT => {
                println!("metadata not available yet: {reason}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("metadata: {e}"),
        }
    }
}

fn main() {
    if std::env::var("KAFKA_QUERIES_CHILD").is_ok() {
        child();
        return;
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty()
        && !filters
            .iter()
            .any(|f| "two_instances_answer_every_key".contains(f.as_str()))
    {
        return;
    }
    let started = Instant::now();
    println!("running two_instances_answer_every_key");
    run(kafka_broker::bootstrap_servers());
    println!(
        "two_instances_answer_every_key ok in {:?}",
        started.elapsed()
    );
    println!("kafka_queries: 1 passed, 0 failed");
}
