#![allow(clippy::unwrap_used)]
//! The metrics as exported: the OpenMetrics text of a running application, parsed line by
//! line against the format's grammar, checked family by family (type, labels) and against
//! `Streams::metrics()` after a known input: records processed, records dropped as late, a
//! restore of the whole changelog, histograms with one observation per commit, poll and record.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use streams_core::prometheus_client::encoding::text::encode;
use streams_core::prometheus_client::registry::Registry;
use streams_core::{
    I64Serde, Log, OptionSerde, Record, Streams, StreamsConfig, StreamsMetrics, StringSerde,
    TaskId, TaskSnapshot, ThreadMetrics, TopicConfig, TopicPartition,
};
use streams_dsl::prelude::*;

const WAIT: Duration = Duration::from_secs(120);
const APP: &str = "mx";

/// One sample line: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A metric family: its type and samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{a="x",b="y"} value` (labels optional), with the text format's three escapes in
/// label values.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("label without `=`")?;
            let key = &rest[..eq];
            if !is_name(key) || key.contains(':') {
                return Err(format!("bad label name {key:?}"));
            }
            let mut chars = rest[eq + 1..].char_indices();
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} not quoted"));
            }
            let mut value = String::new();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break eq + 1 + i + 1,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (_, '\n') => return Err("line feed in a label value".into()),
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            rest = &rest[end..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses OpenMetrics text: every line a `# HELP`, `# TYPE` or sample line of the family
/// declared last (with the suffixes its type allows), ending with `# EOF`.
fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line == "# EOF" {
            return match lines.next() {
                None => Ok(families),
                Some(_) => Err(at("text after # EOF".into())),
            };
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !is_name(name) {
                return Err(at("bad family name".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("no type".into()))?;
            if !["counter", "gauge", "histogram", "info", "unknown"].contains(&kind) {
                return Err(at(format!("bad type {kind}")));
            }
            let family = families.entry(name.to_string()).or_default();
            if !family.kind.is_empty() {
                return Err(at("family declared twice".into()));
            }
            family.kind = kind.to_string();
            current = Some(name.to_string());
            continue;
        }
        if line.starts_with('#') {
            return Err(at("unknown comment".into()));
        }
        let sample = parse_sample(line).map_err(at)?;
        let family_name = current
            .clone()
            .ok_or_else(|| at("sample before # TYPE".into()))?;
        let family = families.get_mut(&family_name).unwrap();
        let suffix = sample
            .name
            .strip_prefix(family_name.as_str())
            .ok_or_else(|| at(format!("sample outside family {family_name}")))?;
        let allowed: &[&str] = match family.kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            _ => &[""],
        };
        if !allowed.contains(&suffix) {
            return Err(at(format!("suffix {suffix:?} in a {}", family.kind)));
        }
        if suffix == "_bucket" && !sample.labels.contains_key("le") {
            return Err(at("bucket without le".into()));
        }
        family.samples.push(sample);
    }
    Err("no # EOF".into())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of `sample` in `family` with exactly `labels`.
fn value(
    families: &BTreeMap<String, Family>,
    sample: &str,
    labels: &BTreeMap<String, String>,
) -> f64 {
    let family = sample
        .trim_end_matches("_total")
        .trim_end_matches("_count")
        .trim_end_matches("_sum");
    let found: Vec<&Sample> = families
        .get(family)
        .unwrap_or_else(|| panic!("family {family} missing"))
        .samples
        .iter()
        .filter(|s| s.name == sample && &s.labels == labels)
        .collect();
    assert_eq!(found.len(), 1, "{sample} {labels:?}: {found:?}");
    found[0].value
}

fn topology() -> streams_core::Topology {
    let b = StreamsBuilder::new();
    let input = b.stream::<String, String>("input", Consumed::default());
    let grouped = || input.group_by_key(Grouped::inferred());
    grouped()
        .count(Materialized::named("counts"))
        .to_stream()
        .to(
            "counts-out",
            Produced::with(StringSerde, OptionSerde(I64Serde)),
        );
    grouped()
        .windowed_by(TimeWindows::of_size_and_grace(
            Duration::from_millis(10),
            Duration::ZERO,
        ))
        .count(Materialized::named("wcounts"))
        .to_stream()
        .to("wcounts-out", Produced::inferred());
    b.build().unwrap()
}

const ON_TIME: i64 = 200;
const LATE: i64 = 3;

/// `ON_TIME` records at 1000.., then `LATE` at time 0, behind the window's close.
fn write(log: &dyn Log) {
    log.create_topic("input", TopicConfig::new(1)).unwrap();
    let tp = TopicPartition::new("input", 0);
    let mut records: Vec<Record> = (0..ON_TIME)
        .map(|i| Record::new(format!("k{}", i % 10), "v", 1_000 + i))
        .collect();
    records.extend((0..LATE).map(|i| Record::new(format!("k{i}"), "late", 0)));
    log.append(&tp, &records).unwrap();
}

/// RocksDB's memory budget in these tests.
const ROCKSDB_BYTES: usize = 48 << 20;

fn config(dir: &std::path::Path) -> StreamsConfig {
    StreamsConfig::new(APP, dir)
        .with_threads(1)
        .with_commit_interval(Duration::from_millis(50))
        .with_rocksdb_memory(ROCKSDB_BYTES, 8 << 20)
}

fn thread_labels(t: &ThreadMetrics) -> BTreeMap<String, String> {
    labels(&[("application_id", APP), ("thread", &t.name)])
}

fn task_labels(id: &TaskId) -> BTreeMap<String, String> {
    labels(&[("application_id", APP), ("task", &id.to_string())])
}

/// Every family of `snapshot`'s text, with its type, labels and values.
fn check_snapshot(snapshot: &StreamsMetrics) {
    let text = snapshot.to_prometheus(APP);
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let kinds = |names: &[&str], kind: &str| {
        for name in names {
            let family = families
                .get(*name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(family.kind, kind, "{name}");
        }
    };
    kinds(
        &[
            "streams_thread_records_processed",
            "streams_thread_commits",
            "streams_thread_polls",
            "streams_thread_retries",
            "streams_thread_dropped_production_records",
            "streams_thread_cache_hits",
            "streams_thread_cache_misses",
            "streams_thread_cache_evictions",
            "streams_thread_cache_flushes",
            "streams_task_records_processed",
            "streams_task_skipped_deserialization",
            "streams_task_skipped_production",
            "streams_task_punctuations",
            "streams_task_dropped_records",
        ],
        "counter",
    );
    kinds(
        &[
            "streams_thread_process_rate",
            "streams_thread_commit_latency_max_seconds",
            "streams_thread_alive",
            "streams_thread_tasks",
            "streams_thread_cache_entries",
            "streams_thread_cache_bytes",
            "streams_task_lag_records",
            "streams_task_restored_records",
            "streams_task_restore_seconds",
            "streams_task_stream_time_seconds",
            "streams_rocksdb_block_cache_usage_bytes",
            "streams_rocksdb_memtable_bytes",
            "streams_rocksdb_memory_limit_bytes",
        ],
        "gauge",
    );
    // RocksDB's memory, application-wide: the budget as configured, the shared cache in use
    // (the memtables of a store that was written reserve their share of it), within it.
    let app = labels(&[("application_id", APP)]);
    let rocks = |name: &str| value(&families, name, &app);
    assert_eq!(
        rocks("streams_rocksdb_memory_limit_bytes"),
        ROCKSDB_BYTES as f64
    );
    let used = rocks("streams_rocksdb_block_cache_usage_bytes");
    assert!(used > 0.0, "{:?}", snapshot.rocksdb);
    assert!(used <= ROCKSDB_BYTES as f64 * 1.1, "{:?}", snapshot.rocksdb);
    assert_eq!(
        rocks("streams_rocksdb_memtable_bytes"),
        snapshot.rocksdb.memtable_bytes as f64
    );
    // RocksDB's own figures, per task and store: one series for each store of each task,
    // as the snapshot has them; the count store knows it holds keys.
    let stores: Vec<(&TaskId, &String, &streams_core::RocksDbStoreFigures)> = snapshot
        .tasks
        .iter()
        .flat_map(|(id, t)| t.rocksdb.iter().map(move |(s, f)| (id, s, f)))
        .collect();
    assert!(
        !stores.is_empty(),
        "no RocksDB store in {:?}",
        snapshot.tasks
    );
    for (id, store, f) in &stores {
        let l = labels(&[
            ("application_id", APP),
            ("task", &id.to_string()),
            ("store", store),
        ]);
        let keys = value(&families, "streams_rocksdb_estimated_keys", &l);
        assert_eq!(keys, f.estimated_keys as f64, "{id} {store}");
        assert_eq!(value(&families, "streams_rocksdb_write_stopped", &l), 0.0);
        assert_eq!(
            value(&families, "streams_rocksdb_pending_compaction_bytes", &l),
            f.pending_compaction_bytes as f64
        );
    }
    assert!(
        stores.iter().any(|(_, _, f)| f.estimated_keys > 0),
        "no store holds keys: {stores:?}"
    );
    assert_eq!(
        families["streams_rocksdb_live_sst_bytes"].samples.len(),
        stores.len()
    );
    kinds(
        &[
            "streams_thread_commit_latency_seconds",
            "streams_thread_poll_latency_seconds",
            "streams_thread_process_latency_seconds",
            "streams_thread_record_e2e_latency_seconds",
        ],
        "histogram",
    );
    assert_eq!(snapshot.threads.len(), 1);
    let t = &snapshot.threads[&0];
    let l = thread_labels(t);
    let counter = |name: &str| value(&families, &format!("{name}_total"), &l);
    assert_eq!(
        counter("streams_thread_records_processed"),
        t.processed as f64
    );
    assert_eq!(counter("streams_thread_commits"), t.commits as f64);
    assert_eq!(counter("streams_thread_polls"), t.polls as f64);
    assert_eq!(counter("streams_thread_retries"), 0.0);
    assert_eq!(counter("streams_thread_cache_hits"), t.cache.hits as f64);
    assert_eq!(
        counter("streams_thread_cache_misses"),
        t.cache.misses as f64
    );
    assert_eq!(
        counter("streams_thread_cache_evictions"),
        t.cache.evictions as f64
    );
    assert!(t.cache.misses > 0 && t.cache.hits > 0, "{:?}", t.cache);
    assert_eq!(value(&families, "streams_thread_alive", &l), 1.0);
    assert_eq!(
        value(&families, "streams_thread_cache_entries", &l),
        t.cache.entries as f64
    );

    // Histograms: one observation per commit, per read of the log, per record processed.
    let histogram = |name: &str, expected: u64| {
        let count = value(&families, &format!("{name}_count"), &l);
        assert_eq!(count, expected as f64, "{name}");
        let buckets: Vec<&Sample> = families[name]
            .samples
            .iter()
            .filter(|s| s.name.ends_with("_bucket"))
            .collect();
        assert_eq!(
            buckets.len(),
            streams_core::LATENCY_BUCKETS.len() + 1,
            "{name}"
        );
        let last = buckets.last().unwrap();
        assert_eq!(last.labels["le"], "+Inf");
        assert_eq!(
            last.value, expected as f64,
            "{name}: +Inf holds every observation"
        );
        assert!(
            buckets.windows(2).all(|w| w[0].value <= w[1].value),
            "{name}: cumulative"
        );
    };
    assert!(t.commits > 0 && t.polls > 0);
    histogram("streams_thread_commit_latency_seconds", t.commits);
    assert_eq!(t.commit_latency.count(), t.commits);
    histogram("streams_thread_poll_latency_seconds", t.polls);
    histogram("streams_thread_record_e2e_latency_seconds", t.processed);
    histogram(
        "streams_thread_process_latency_seconds",
        t.process_latency.count(),
    );
    assert!(t.process_latency.count() > 0);

    assert_eq!(snapshot.tasks.len(), 1);
    let (id, task): (&TaskId, &TaskSnapshot) = snapshot.tasks.iter().next().unwrap();
    let tl = task_labels(id);
    assert_eq!(
        value(&families, "streams_task_records_processed_total", &tl),
        task.counters.processed as f64
    );
    assert_eq!(
        value(&families, "streams_task_restored_records", &tl),
        task.restored as f64
    );
    assert_eq!(value(&families, "streams_task_lag_records", &tl), 0.0);
    assert_eq!(
        value(&families, "streams_task_stream_time_seconds", &tl),
        (1_000 + ON_TIME - 1) as f64 / 1000.0
    );
    let dropped = &families["streams_task_dropped_records"].samples;
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].labels["reason"], "late");
    assert_eq!(dropped[0].labels["task"], id.to_string());
    assert!(dropped[0].labels.contains_key("processor"));
    assert_eq!(dropped[0].value, LATE as f64);
}

#[test]
fn exported_families_match_the_snapshot_after_a_known_input() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    write(&*log);
    let streams = Streams::new(topology(), config(dir.path()), log.clone()).unwrap();
    let mut registry = Registry::default();
    streams.register_metrics(&mut registry);
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();

    let snapshot = streams.metrics();
    assert_eq!(snapshot.processed(), (ON_TIME + LATE) as u64);
    assert_eq!(snapshot.dropped_for("late"), LATE as u64);
    check_snapshot(&snapshot);

    // The user's registry sees the same counts (those that no longer move once caught up).
    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let t = &snapshot.threads[&0];
    let processed = value(
        &families,
        "streams_thread_records_processed_total",
        &thread_labels(t),
    );
    assert_eq!(processed, (ON_TIME + LATE) as f64);
    let dropped = &families["streams_task_dropped_records"].samples;
    assert_eq!(dropped.iter().map(|s| s.value).sum::<f64>(), LATE as f64);
    streams.close().unwrap();
}

#[test]
fn a_scrape_sees_values_published_while_idle_and_restores_after_local_state_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    write(&*log);
    {
        let streams = Streams::new(topology(), config(dir.path()), log.clone()).unwrap();
        streams.start().unwrap();
        streams.wait_until_caught_up(WAIT).unwrap();
        // Idle, the thread still reads its input: the polls a scrape sees go up within a
        // publish interval or two, without a commit.
        let polls = |s: &Streams| s.metrics().threads[&0].polls;
        let before = polls(&streams);
        let deadline = std::time::Instant::now() + streams_core::PUBLISH_INTERVAL * 5;
        while polls(&streams) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no publish while idle"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        streams.close().unwrap();
    }
    // Without the checkpoint every changelog record is replayed, and the gauge says so.
    std::fs::remove_file(dir.path().join(APP).join("0_0").join(".checkpoint")).unwrap();
    let in_changelogs: u64 = ["mx-counts-changelog", "mx-wcounts-changelog"]
        .iter()
        .map(|t| read_topic(&*log, t).concat().len() as u64)
        .sum();
    assert!(in_changelogs > 0);
    let streams = Streams::new(topology(), config(dir.path()), log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let snapshot = streams.metrics();
    streams.close().unwrap();
    let id = TaskId::new(0, 0);
    assert_eq!(snapshot.tasks[&id].restored, in_changelogs);
    let families = parse(&snapshot.to_prometheus(APP)).unwrap();
    let restored = value(
        &families,
        "streams_task_restored_records",
        &task_labels(&id),
    );
    assert_eq!(restored, in_changelogs as f64);
}

#[test]
fn label_values_with_quotes_backslashes_and_line_feeds_are_escaped() {
    let mut snapshot = StreamsMetrics::default();
    let name = "odd \"thread\" \\ 1\nnext".to_string();
    snapshot.threads.insert(
        0,
        ThreadMetrics {
            name: name.clone(),
            processed: 7,
            ..ThreadMetrics::default()
        },
    );
    let app = "app \"x\" \\ y";
    let text = snapshot.to_prometheus(app);
    assert!(
        text.contains(r#"thread="odd \"thread\" \\ 1\nnext""#),
        "{text}"
    );
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let l = labels(&[("application_id", app), ("thread", &name)]);
    assert_eq!(
        value(&families, "streams_thread_records_processed_total", &l),
        7.0
    );
}

#[test]
fn what_the_log_clients_report_is_exported_per_client_broker_and_partition() {
    let mut snapshot = StreamsMetrics::default();
    let mut consumer = streams_core::ClientFigures::default();
    consumer.client = "rdkafka#consumer-2".into();
    consumer.kind = "consumer".into();
    consumer
        .broker_rtt
        .insert("127.0.0.1:9092/1".into(), 0.0025);
    consumer.consumer_lag.insert(("in\"put".into(), 3), 42);
    let mut producer = streams_core::ClientFigures::default();
    producer.client = "rdkafka#producer-1".into();
    producer.kind = "producer".into();
    producer.queued_messages = 7;
    snapshot.clients = vec![consumer, producer];
    let text = snapshot.to_prometheus(APP);
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let rtt = labels(&[
        ("application_id", APP),
        ("client", "rdkafka#consumer-2"),
        ("broker", "127.0.0.1:9092/1"),
    ]);
    assert_eq!(
        value(&families, "streams_kafka_broker_rtt_seconds", &rtt),
        0.0025
    );
    let lag = labels(&[
        ("application_id", APP),
        ("client", "rdkafka#consumer-2"),
        ("topic", "in\"put"),
        ("partition", "3"),
    ]);
    assert_eq!(
        value(&families, "streams_kafka_consumer_lag_records", &lag),
        42.0
    );
    let queue = labels(&[("application_id", APP), ("client", "rdkafka#producer-1")]);
    assert_eq!(
        value(&families, "streams_kafka_producer_queue_messages", &queue),
        7.0
    );
    let queues = &families["streams_kafka_producer_queue_messages"].samples;
    assert_eq!(queues.len(), 1, "only producers have a queue: {queues:?}");
}
