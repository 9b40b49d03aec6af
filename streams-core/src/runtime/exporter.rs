//! The metrics as OpenMetrics families, through `prometheus-client`: a [`MetricsCollector`]
//! that a user registers into their own `Registry`, and the library's own registry behind the
//! HTTP server's `/metrics`.
//!
//! The collector holds no metric objects: at each scrape it reads the latest snapshot the
//! stream threads published (see [`PUBLISH_INTERVAL`](super::PUBLISH_INTERVAL)) and encodes
//! it, so a scrape costs one copy of the snapshot and the stream threads never wait on it.
//! Every series carries the `application_id` label; label values are escaped here, as the
//! crate's text encoder writes them as given.

use std::fmt::Write;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::metrics::{LatencyHistogram, StreamsMetrics, TaskSnapshot, ThreadMetrics};

/// The application's metrics as a `prometheus-client` [`Collector`], read from the stream
/// threads' latest published snapshot at each scrape (see [`Streams::metrics_collector`]).
///
/// [`Streams::metrics_collector`]: super::Streams::metrics_collector
#[derive(Clone)]
pub struct MetricsCollector {
    pub(super) metrics: Arc<Mutex<StreamsMetrics>>,
    pub(super) application_id: String,
}

impl std::fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsCollector")
            .field("application_id", &self.application_id)
            .finish_non_exhaustive()
    }
}

impl Collector for MetricsCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let snapshot = self.metrics.lock().clone();
        encode(&snapshot, &self.application_id, encoder)
    }
}

/// One published snapshot, encoded as it is (for [`StreamsMetrics::to_prometheus`]).
#[derive(Debug)]
struct SnapshotCollector {
    snapshot: StreamsMetrics,
    application_id: String,
}

impl Collector for SnapshotCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        encode(&self.snapshot, &self.application_id, encoder)
    }
}

/// A registry holding only `collector`.
pub(super) fn registry_of(collector: MetricsCollector) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    registry
}

/// `registry` as OpenMetrics text.
pub(crate) fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String fails only if an encoder does; ours do not.
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        tracing::warn!("encoding the metrics failed");
    }
    out
}

impl StreamsMetrics {
    /// Renders the metrics as OpenMetrics text (which Prometheus scrapes), the families
    /// [`MetricsCollector`] exports, each series labelled with `application_id`.
    pub fn to_prometheus(&self, application_id: &str) -> String {
        render_snapshot(self, application_id)
    }
}

fn render_snapshot(snapshot: &StreamsMetrics, application_id: &str) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        snapshot: snapshot.clone(),
        application_id: application_id.to_string(),
    }));
    render(&registry)
}

/// A label value escaped for the text formats: `\`, `"` and line feed as `\\`, `\"`, `\n`.
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

type Labels<'a> = Vec<(&'static str, Escaped<'a>)>;

enum Value<'a> {
    Counter(u64),
    Gauge(f64),
    Histogram(&'a LatencyHistogram),
}

fn family<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, kind): (&str, &str, MetricType),
    rows: impl Iterator<Item = (Labels<'a>, Value<'a>)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in rows {
        let mut series = metric.encode_family(&labels)?;
        match value {
            Value::Counter(v) => series.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
            Value::Gauge(v) => series.encode_gauge(&v)?,
            Value::Histogram(h) => {
                let buckets: Vec<(f64, u64)> = h.per_bucket().collect();
                let sum = h.sum().as_secs_f64();
                series.encode_histogram::<NoLabelSet>(sum, h.count(), &buckets, None)?;
            }
        }
    }
    Ok(())
}

type ThreadValue = for<'t> fn(&'t ThreadMetrics) -> Value<'t>;
type TaskValue = for<'t> fn(&'t TaskSnapshot) -> Value<'t>;

const COUNTER: MetricType = MetricType::Counter;
const GAUGE: MetricType = MetricType::Gauge;
const HISTOGRAM: MetricType = MetricType::Histogram;

fn gauge_u64(v: u64) -> Value<'static> {
    Value::Gauge(v as f64)
}

/// Per thread: (name, help, type, value).
const THREAD_FAMILIES: &[(&str, &str, MetricType, ThreadValue)] = &[
    (
        "streams_thread_records_processed",
        "Records processed by the thread.",
        COUNTER,
        |t| Value::Counter(t.processed),
    ),
    (
        "streams_thread_process_rate",
        "Records per second over the last commit interval.",
        GAUGE,
        |t| Value::Gauge(t.process_rate),
    ),
    ("streams_thread_commits", "Commits.", COUNTER, |t| {
        Value::Counter(t.commits)
    }),
    (
        "streams_thread_commit_latency_max_seconds",
        "Longest commit.",
        GAUGE,
        |t| Value::Gauge(t.max_commit_latency.as_secs_f64()),
    ),
    (
        "streams_thread_alive",
        "1 while the thread runs.",
        GAUGE,
        |t| Value::Gauge(f64::from(u8::from(t.alive))),
    ),
    (
        "streams_thread_polls",
        "Reads of input partitions from the log.",
        COUNTER,
        |t| Value::Counter(t.polls),
    ),
    (
        "streams_thread_retries",
        "Times the thread reopened its tasks after a transient error.",
        COUNTER,
        |t| Value::Counter(t.retries),
    ),
    (
        "streams_thread_dropped_production_records",
        "Records the log rejected or a sink could not encode, dropped by the production handler.",
        COUNTER,
        |t| Value::Counter(t.dropped_production),
    ),
    (
        "streams_thread_tasks",
        "Tasks the thread runs.",
        GAUGE,
        |t| gauge_u64(t.tasks.len() as u64),
    ),
    (
        "streams_thread_commit_latency_seconds",
        "Commits by duration.",
        HISTOGRAM,
        |t| Value::Histogram(&t.commit_latency),
    ),
    (
        "streams_thread_poll_latency_seconds",
        "Reads of an input partition by duration.",
        HISTOGRAM,
        |t| Value::Histogram(&t.poll_latency),
    ),
    (
        "streams_thread_process_latency_seconds",
        "Batches (the records one task processes in one pass of the thread's loop) by duration.",
        HISTOGRAM,
        |t| Value::Histogram(&t.process_latency),
    ),
    (
        "streams_thread_record_e2e_latency_seconds",
        "Records by wall-clock time when processed minus the record's timestamp.",
        HISTOGRAM,
        |t| Value::Histogram(&t.end_to_end_latency),
    ),
    (
        "streams_thread_cache_hits",
        "Reads answered by the thread's record cache.",
        COUNTER,
        |t| Value::Counter(t.cache.hits),
    ),
    (
        "streams_thread_cache_misses",
        "Reads the record cache passed to the store below.",
        COUNTER,
        |t| Value::Counter(t.cache.misses),
    ),
    (
        "streams_thread_cache_evictions",
        "Entries evicted from the record cache to stay under its bound.",
        COUNTER,
        |t| Value::Counter(t.cache.evictions),
    ),
    (
        "streams_thread_cache_flushes",
        "Flushes of record-cache namespaces (at commits and evictions).",
        COUNTER,
        |t| Value::Counter(t.cache.flushes),
    ),
    (
        "streams_thread_cache_entries",
        "Entries in the record cache.",
        GAUGE,
        |t| gauge_u64(t.cache.entries),
    ),
    (
        "streams_thread_cache_bytes",
        "Bytes charged to the record cache.",
        GAUGE,
        |t| gauge_u64(t.cache.bytes),
    ),
];

/// Per task: (name, help, type, value).
const TASK_FAMILIES: &[(&str, &str, MetricType, TaskValue)] = &[
    (
        "streams_task_records_processed",
        "Records processed by the task.",
        COUNTER,
        |t| Value::Counter(t.counters.processed),
    ),
    (
        "streams_task_lag_records",
        "Records in the task's inputs not yet processed.",
        GAUGE,
        |t| gauge_u64(t.lag),
    ),
    (
        "streams_task_restored_records",
        "Changelog records replayed at the task's last start.",
        GAUGE,
        |t| gauge_u64(t.restored),
    ),
    (
        "streams_task_restore_seconds",
        "Time the task's last restore took.",
        GAUGE,
        |t| Value::Gauge(t.restore_time.as_secs_f64()),
    ),
    (
        "streams_task_skipped_deserialization",
        "Records skipped because they could not be decoded.",
        COUNTER,
        |t| Value::Counter(t.counters.skipped_deserialization),
    ),
    (
        "streams_task_skipped_production",
        "Records skipped because a sink could not encode what they produced.",
        COUNTER,
        |t| Value::Counter(t.counters.skipped_production),
    ),
    (
        "streams_task_punctuations",
        "Punctuations run.",
        COUNTER,
        |t| Value::Counter(t.counters.punctuations),
    ),
];

fn encode(
    metrics: &StreamsMetrics,
    application_id: &str,
    mut encoder: DescriptorEncoder<'_>,
) -> std::fmt::Result {
    let app = || ("application_id", Escaped(application_id));
    for &(name, help, kind, value) in THREAD_FAMILIES {
        let rows = metrics.threads.values().map(|t| {
            let labels = vec![app(), ("thread", Escaped(&t.name))];
            (labels, value(t))
        });
        family(&mut encoder, (name, help, kind), rows)?;
    }
    let ids: Vec<(String, &TaskSnapshot)> = metrics
        .tasks
        .iter()
        .map(|(id, t)| (id.to_string(), t))
        .collect();
    for &(name, help, kind, value) in TASK_FAMILIES {
        let rows = ids
            .iter()
            .map(|(id, t)| (vec![app(), ("task", Escaped(id))], value(t)));
        family(&mut encoder, (name, help, kind), rows)?;
    }
    // Stream time only once a task has seen a record.
    let rows = ids
        .iter()
        .filter(|(_, t)| t.stream_time > i64::MIN)
        .map(|(id, t)| {
            let seconds = t.stream_time as f64 / 1000.0;
            (vec![app(), ("task", Escaped(id))], Value::Gauge(seconds))
        });
    let desc = (
        "streams_task_stream_time_seconds",
        "The task's stream time (the largest record timestamp it processed), in seconds since the epoch.",
        GAUGE,
    );
    family(&mut encoder, desc, rows)?;
    let rows = ids.iter().flat_map(|(id, t)| {
        t.counters
            .dropped
            .iter()
            .map(move |((processor, reason), n)| {
                let labels = vec![
                    app(),
                    ("task", Escaped(id)),
                    ("processor", Escaped(processor)),
                    ("reason", Escaped(reason)),
                ];
                (labels, Value::Counter(*n))
            })
    });
    let desc = (
        "streams_task_dropped_records",
        "Records dropped by processors, by reason.",
        COUNTER,
    );
    family(&mut encoder, desc, rows)?;
    encode_store_figures(&ids, application_id, &mut encoder)?;
    let r = &metrics.rocksdb;
    for (name, help, value) in [
        (
            "streams_rocksdb_block_cache_usage_bytes",
            "Bytes charged to RocksDB's shared block cache (blocks and memtable reservations).",
            r.block_cache_usage_bytes,
        ),
        (
            "streams_rocksdb_memtable_bytes",
            "Bytes held by the memtables of every RocksDB store.",
            r.memtable_bytes,
        ),
        (
            "streams_rocksdb_memory_limit_bytes",
            "RocksDB's memory budget (rocksdb.memory.bytes).",
            r.limit_bytes,
        ),
    ] {
        let rows = std::iter::once((vec![app()], gauge_u64(value)));
        family(&mut encoder, (name, help, GAUGE), rows)?;
    }
    encode_clients(&metrics.clients, application_id, &mut encoder)
}

type StoreValue = fn(&state_store::RocksDbStoreFigures) -> u64;

/// Per task and store: (name, help, value); all gauges.
const STORE_FAMILIES: &[(&str, &str, StoreValue)] = &[
    (
        "streams_rocksdb_pending_compaction_bytes",
        "Bytes RocksDB's compaction would rewrite to bring the store's levels within their targets.",
        |f| f.pending_compaction_bytes,
    ),
    (
        "streams_rocksdb_running_compactions",
        "Compactions running in the store.",
        |f| f.running_compactions,
    ),
    (
        "streams_rocksdb_write_stopped",
        "1 while RocksDB stops writes to the store (a write stall).",
        |f| u64::from(f.write_stopped),
    ),
    (
        "streams_rocksdb_delayed_write_rate_bytes",
        "Bytes per second RocksDB slows the store's writes to (0: not slowed).",
        |f| f.delayed_write_rate,
    ),
    (
        "streams_rocksdb_live_sst_bytes",
        "Bytes of the SST files the store uses.",
        |f| f.live_sst_bytes,
    ),
    (
        "streams_rocksdb_estimated_keys",
        "RocksDB's estimate of the keys the store holds.",
        |f| f.estimated_keys,
    ),
];

/// RocksDB's own figures, per task and store.
fn encode_store_figures(
    tasks: &[(String, &TaskSnapshot)],
    application_id: &str,
    encoder: &mut DescriptorEncoder<'_>,
) -> std::fmt::Result {
    for &(name, help, value) in STORE_FAMILIES {
        let rows = tasks.iter().flat_map(|(id, t)| {
            t.rocksdb.iter().map(move |(store, figures)| {
                let labels = vec![
                    ("application_id", Escaped(application_id)),
                    ("task", Escaped(id)),
                    ("store", Escaped(store)),
                ];
                (labels, gauge_u64(value(figures)))
            })
        });
        family(encoder, (name, help, GAUGE), rows)?;
    }
    Ok(())
}

/// What the log's clients report (librdkafka's statistics, on Kafka).
fn encode_clients(
    clients: &[crate::log::ClientFigures],
    application_id: &str,
    encoder: &mut DescriptorEncoder<'_>,
) -> std::fmt::Result {
    let app = || ("application_id", Escaped(application_id));
    let rows = clients.iter().flat_map(|c| {
        c.broker_rtt.iter().map(move |(broker, rtt)| {
            let labels = vec![
                app(),
                ("client", Escaped(&c.client)),
                ("broker", Escaped(broker)),
            ];
            (labels, Value::Gauge(*rtt))
        })
    });
    let desc = (
        "streams_kafka_broker_rtt_seconds",
        "Mean round-trip time of a client's requests to a broker over the last statistics interval.",
        GAUGE,
    );
    family(encoder, desc, rows)?;
    let partitions: Vec<(&crate::log::ClientFigures, &String, String, i64)> = clients
        .iter()
        .flat_map(|c| {
            c.consumer_lag
                .iter()
                .map(move |((topic, p), lag)| (c, topic, p.to_string(), *lag))
        })
        .collect();
    let rows = partitions.iter().map(|(c, topic, p, lag)| {
        let labels = vec![
            app(),
            ("client", Escaped(&c.client)),
            ("topic", Escaped(topic)),
            ("partition", Escaped(p)),
        ];
        (labels, Value::Gauge(*lag as f64))
    });
    let desc = (
        "streams_kafka_consumer_lag_records",
        "Records between the offset a reader handed out last and the partition's last stable offset, as the reader knows them.",
        GAUGE,
    );
    family(encoder, desc, rows)?;
    let rows = clients.iter().filter(|c| c.kind == "producer").map(|c| {
        let labels = vec![app(), ("client", Escaped(&c.client))];
        (labels, gauge_u64(c.queued_messages))
    });
    let desc = (
        "streams_kafka_producer_queue_messages",
        "Messages waiting in a producer's queues.",
        GAUGE,
    );
    family(encoder, desc, rows)
}
