//! Hand-written librdkafka baselines of the Kafka scenarios: a plain consumer (K1's second
//! baseline), a consume → filter/map → produce → commit loop (K1) and a count loop with its
//! state in RocksDB and its changelog on Kafka (K2).
//!
//! Each uses one consumer assigned every input partition from the beginning (its group is
//! only named, for the offset commits, never joined) and one producer, with the client
//! settings the engine's `KafkaLog` gives its readers and its producer (see
//! `streams-core/src/log/kafka/read.rs` and `produce.rs`), then the user's
//! `--kafka-property`s, as the engine applies them. Unlike the engine's appends, which wait
//! for their delivery reports, the loops send without waiting and flush the producer before
//! each commit of offsets, as a hand-written at-least-once program does. Timed from the
//! creation of the clients to the last offset commit (or the last record, for the consumer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use rocksdb::{WriteBatch, DB};
use state_store::{encode_timestamped, rocksdb_write_options};
use streams_core::{partition_for_key, I64Serde, Serde, StringSerde};

use crate::baseline::CountOptions;
use crate::workload::{s1_keep, s1_map, Digest};
use crate::BenchError;

/// How the baselines reach the broker.
pub(crate) struct Clients<'a> {
    /// `bootstrap.servers`.
    pub(crate) servers: &'a str,
    /// The user's librdkafka properties, applied last (as the engine applies them).
    pub(crate) properties: &'a [(String, String)],
    /// librdkafka's socket and message timeouts, and the longest a flush or commit may take:
    /// the engine's `KafkaLogConfig::timeout`.
    pub(crate) timeout: Duration,
    /// The longest a run may take.
    pub(crate) run_timeout: Duration,
}

impl Clients<'_> {
    fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.servers);
        config.set("socket.timeout.ms", self.timeout.as_millis().to_string());
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        for (k, v) in self.properties {
            config.set(k, v);
        }
        config
    }

    /// A consumer with the engine's reader settings, assigned every partition of `topic`
    /// from the beginning.
    fn consumer(&self, topic: &str, partitions: u32) -> Result<BaseConsumer, BenchError> {
        let consumer: BaseConsumer = self
            .config(&[
                ("group.id", &format!("{topic}-baseline")),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("fetch.wait.max.ms", "100"),
                ("queued.max.messages.kbytes", "8192"),
                ("queued.min.messages", "10000"),
                ("fetch.queue.backoff.ms", "10"),
            ])
            .create()?;
        let mut list = TopicPartitionList::with_capacity(partitions as usize);
        for p in 0..partitions {
            list.add_partition_offset(topic, partition_i32(p)?, Offset::Beginning)?;
        }
        consumer.assign(&list)?;
        Ok(consumer)
    }

    /// A producer with the engine's producer settings; delivery failures are counted.
    fn producer(&self) -> Result<ThreadedProducer<Deliveries>, BenchError> {
        let timeout = self.timeout.as_millis().to_string();
        Ok(self
            .config(&[
                ("linger.ms", "0"),
                ("acks", "all"),
                ("message.timeout.ms", &timeout),
            ])
            .create_with_context(Deliveries::default())?)
    }
}

fn partition_i32(p: u32) -> Result<i32, BenchError> {
    i32::try_from(p).map_err(|_| BenchError::Harness(format!("partition {p}")))
}

/// Counts failed deliveries and keeps the first error.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first: Mutex<Option<KafkaError>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first.lock() {
                first.get_or_insert_with(|| e.clone());
            }
        }
    }
}

/// Sends one record, waiting while librdkafka's queue is full.
fn send(
    producer: &ThreadedProducer<Deliveries>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), BenchError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Waits for every delivery, then commits `offsets` (partition → next offset) for the
/// consumer's group: an at-least-once commit.
fn commit(
    consumer: &BaseConsumer,
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    offsets: &[Option<i64>],
    timeout: Duration,
) -> Result<(), BenchError> {
    producer.flush(timeout)?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(BenchError::Harness(format!(
            "{failed} deliveries failed, the first: {:?}",
            producer.context().first.lock().ok().and_then(|e| e.clone())
        )));
    }
    let mut list = TopicPartitionList::new();
    for (p, next) in offsets.iter().enumerate() {
        if let Some(next) = next {
            list.add_partition_offset(topic, partition_i32(p as u32)?, Offset::Offset(*next))?;
        }
    }
    if list.count() > 0 {
        consumer.commit(&list, CommitMode::Sync)?;
    }
    Ok(())
}

/// The next message, `None` when none came within a short wait; fails after `deadline`.
fn next<'c>(
    consumer: &'c BaseConsumer,
    deadline: Instant,
    what: impl FnOnce() -> String,
) -> Result<Option<BorrowedMessage<'c>>, BenchError> {
    if Instant::now() >= deadline {
        return Err(BenchError::Harness(format!("timed out: {}", what())));
    }
    match consumer.poll(Duration::from_millis(10)) {
        None => Ok(None),
        Some(m) => Ok(Some(m?)),
    }
}

fn decode(m: &BorrowedMessage<'_>) -> Result<(String, i64), BenchError> {
    let key = StringSerde.deserialize(m.key().unwrap_or_default())?;
    let value = I64Serde.deserialize(m.payload().unwrap_or_default())?;
    Ok((key, value))
}

fn timestamp(m: &BorrowedMessage<'_>) -> i64 {
    m.timestamp().to_millis().unwrap_or(-1)
}

/// K1's second baseline: a plain consumer polling until it has all `records` records of
/// `topic`; each is decoded, filtered and mapped as S1 does and digested. Timed from the
/// consumer's creation to its last record.
pub(crate) fn consume(
    clients: &Clients<'_>,
    topic: &str,
    partitions: u32,
    records: u64,
) -> Result<(Duration, Digest), BenchError> {
    let start = Instant::now();
    let consumer = clients.consumer(topic, partitions)?;
    let deadline = start + clients.run_timeout;
    let (mut digest, mut seen) = (Digest::default(), 0u64);
    while seen < records {
        let what = || format!("the consumer read {seen} of the {records} records of {topic}");
        let Some(message) = next(&consumer, deadline, what)? else {
            continue;
        };
        let (key, value) = decode(&message)?;
        if s1_keep(value) {
            digest.add(key.as_bytes(), s1_map(value));
        }
        seen += 1;
    }
    Ok((start.elapsed(), digest))
}

/// K1's baseline: consume every record of `input`, decode, filter and map it as S1 does,
/// encode and send it to the partition of its key in `output`; every `commit_interval`, when
/// no record is waiting and at the end, wait for the deliveries and commit the offsets.
pub(crate) fn stateless(
    clients: &Clients<'_>,
    input: &str,
    output: &str,
    partitions: u32,
    records: u64,
    commit_interval: Duration,
) -> Result<Duration, BenchError> {
    let start = Instant::now();
    let consumer = clients.consumer(input, partitions)?;
    let producer = clients.producer()?;
    let deadline = start + clients.run_timeout;
    let mut offsets: Vec<Option<i64>> = vec![None; partitions as usize];
    let (mut seen, mut uncommitted, mut last_commit) = (0u64, false, Instant::now());
    let (mut k, mut v) = (Vec::with_capacity(32), Vec::with_capacity(8));
    while seen < records {
        let what = || format!("the loop read {seen} of the {records} records of {input}");
        match next(&consumer, deadline, what)? {
            Some(m) => {
                let (key, value) = decode(&m)?;
                if s1_keep(value) {
                    k.clear();
                    v.clear();
                    StringSerde.serialize_into(&key, &mut k)?;
                    I64Serde.serialize_into(&s1_map(value), &mut v)?;
                    let p = partition_for_key(&k, partitions);
                    let record = BaseRecord::to(output)
                        .partition(partition_i32(p)?)
                        .key(k.as_slice())
                        .payload(v.as_slice())
                        .timestamp(timestamp(&m));
                    send(&producer, record)?;
                }
                let p = usize::try_from(m.partition()).unwrap_or(usize::MAX);
                let offset = offsets
                    .get_mut(p)
                    .ok_or_else(|| BenchError::Harness(format!("a record of partition {p}")))?;
                *offset = Some(m.offset() + 1);
                seen += 1;
                uncommitted = true;
                if last_commit.elapsed() < commit_interval {
                    continue;
                }
            }
            None if !uncommitted => continue,
            None => {}
        }
        commit(&consumer, &producer, input, &offsets, clients.timeout)?;
        (uncommitted, last_commit) = (false, Instant::now());
    }
    commit(&consumer, &producer, input, &offsets, clients.timeout)?;
    Ok(start.elapsed())
}

/// What K2's loop reads and writes.
pub(crate) struct CountLoop<'a> {
    /// The input topic.
    pub(crate) input: &'a str,
    /// Where every flushed count goes (`i64` values).
    pub(crate) output: &'a str,
    /// The compacted changelog (`[timestamp][count]` values, partition = input partition).
    pub(crate) changelog: &'a str,
    /// Partitions of all three.
    pub(crate) partitions: u32,
    /// Records to consume.
    pub(crate) records: u64,
    /// How often the dirty counts are flushed and the offsets committed.
    pub(crate) commit_interval: Duration,
    /// RocksDB's place and budget, and the cache's bound (`flush_every` is not used: the
    /// loop flushes at each commit, as the engine's cache does).
    pub(crate) options: &'a CountOptions,
}

/// One input partition's state: its RocksDB and its write-back cache.
struct Partition {
    db: DB,
    /// Store key → (count, timestamp of its last update, dirty).
    cache: HashMap<Vec<u8>, (i64, i64, bool)>,
    cached_bytes: usize,
}

/// K2's baseline: consume every record of `input`, count it by key through a hashbrown
/// write-back cache over one RocksDB per partition (the engine's RocksDB options and budget);
/// every `commit_interval`, when no record is waiting and at the end: write the dirty counts
/// to RocksDB in one batch per partition, send each to the changelog and to the output, wait
/// for the deliveries, commit the offsets.
pub(crate) fn count(clients: &Clients<'_>, l: &CountLoop<'_>) -> Result<Duration, BenchError> {
    let start = Instant::now();
    let consumer = clients.consumer(l.input, l.partitions)?;
    let producer = clients.producer()?;
    let mut parts = Vec::with_capacity(l.partitions as usize);
    for p in 0..l.partitions {
        let path = l.options.path.join(p.to_string());
        std::fs::create_dir_all(&path)?;
        parts.push(Partition {
            db: DB::open(&l.options.memory.db_options(), &path)?,
            cache: HashMap::new(),
            cached_bytes: 0,
        });
    }
    let deadline = start + clients.run_timeout;
    let mut offsets: Vec<Option<i64>> = vec![None; l.partitions as usize];
    let (mut seen, mut uncommitted, mut last_commit) = (0u64, false, Instant::now());
    let mut key_bytes = Vec::with_capacity(32);
    while seen < l.records {
        let what = || {
            format!(
                "the loop read {seen} of the {} records of {}",
                l.records, l.input
            )
        };
        match next(&consumer, deadline, what)? {
            Some(m) => {
                let (key, _value) = decode(&m)?;
                key_bytes.clear();
                StringSerde.serialize_into(&key, &mut key_bytes)?;
                let p = usize::try_from(m.partition()).unwrap_or(usize::MAX);
                let part = parts
                    .get_mut(p)
                    .ok_or_else(|| BenchError::Harness(format!("a record of partition {p}")))?;
                let ts = timestamp(&m);
                match part.cache.get_mut(key_bytes.as_slice()) {
                    Some((n, t, dirty)) => {
                        *n += 1;
                        *t = ts;
                        *dirty = true;
                    }
                    None => {
                        let old = match part.db.get_pinned(&key_bytes)? {
                            Some(v) => {
                                let (_, count) = state_store::decode_timestamped(l.input, &v)
                                    .map_err(streams_core::Error::from)?;
                                I64Serde.deserialize(count)?
                            }
                            None => 0,
                        };
                        part.cached_bytes += key_bytes.len() + 16 + crate::baseline::ENTRY_OVERHEAD;
                        part.cache.insert(key_bytes.clone(), (old + 1, ts, true));
                    }
                }
                offsets[p] = Some(m.offset() + 1);
                seen += 1;
                uncommitted = true;
                if last_commit.elapsed() < l.commit_interval {
                    continue;
                }
            }
            None if !uncommitted => continue,
            None => {}
        }
        flush_counts(
            &mut parts,
            &consumer,
            &producer,
            l,
            &offsets,
            clients.timeout,
        )?;
        (uncommitted, last_commit) = (false, Instant::now());
    }
    flush_counts(
        &mut parts,
        &consumer,
        &producer,
        l,
        &offsets,
        clients.timeout,
    )?;
    Ok(start.elapsed())
}

/// K2's loop's commit: the dirty counts of each partition into its RocksDB in one batch and
/// to the changelog and the output; then the deliveries and the offsets.
fn flush_counts(
    parts: &mut [Partition],
    consumer: &BaseConsumer,
    producer: &ThreadedProducer<Deliveries>,
    l: &CountLoop<'_>,
    offsets: &[Option<i64>],
    timeout: Duration,
) -> Result<(), BenchError> {
    let write_options = rocksdb_write_options();
    let mut value = Vec::with_capacity(8);
    // The engine splits its cache between threads; here between partitions.
    let bound = l.options.cache_bytes / parts.len().max(1);
    for (p, part) in parts.iter_mut().enumerate() {
        let mut wb = WriteBatch::default();
        for (k, (n, ts, dirty)) in part.cache.iter_mut() {
            if !*dirty {
                continue;
            }
            *dirty = false;
            value.clear();
            I64Serde.serialize_into(n, &mut value)?;
            let stored = encode_timestamped(*ts, &value);
            wb.put(k, &stored);
            let changelog = BaseRecord::to(l.changelog)
                .partition(partition_i32(p as u32)?)
                .key(k.as_slice())
                .payload(stored.as_slice())
                .timestamp(*ts);
            send(producer, changelog)?;
            let out = BaseRecord::to(l.output)
                .partition(partition_i32(partition_for_key(k, l.partitions))?)
                .key(k.as_slice())
                .payload(value.as_slice())
                .timestamp(*ts);
            send(producer, out)?;
        }
        part.db.write_opt(wb, &write_options)?;
        if part.cached_bytes > bound {
            part.cache.clear();
            part.cached_bytes = 0;
        }
    }
    commit(consumer, producer, l.input, offsets, timeout)
}
