//! Hand-written baselines: the least work that produces the same result as each engine
//! scenario, with the same log, the same serdes and the same RocksDB options, and none of the
//! engine's machinery (tasks, processors, caches with LRU order, changelogs, commits).

use std::time::{Duration, Instant};

use hashbrown::HashMap;
use rocksdb::{IteratorMode, WriteBatch, DB};
use state_store::{decode_timestamp, encode_timestamp, rocksdb_write_options, RocksDbMemory};
use streams_core::{
    partition_for_key, I64Serde, Log, Record, Serde, StoredRecord, StringSerde, TopicConfig,
    TopicPartition,
};

use crate::workload::Digest;
use crate::BenchError;

/// Per-entry bookkeeping the baseline cache charges, as the engine's record cache does.
pub(crate) const ENTRY_OVERHEAD: usize = 64;

/// Calls `f` with each batch of up to `batch` records of every partition of `topic`.
fn for_each_batch(
    log: &dyn Log,
    topic: &str,
    batch: usize,
    mut f: impl FnMut(&[StoredRecord]) -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    let partitions = log.describe_topic(topic)?.partitions;
    for p in 0..partitions {
        crate::workload::read_partition(log, &TopicPartition::new(topic, p), batch, &mut f)?;
    }
    Ok(())
}

fn decode(r: &StoredRecord) -> Result<(String, i64), BenchError> {
    let key = StringSerde.deserialize(r.record.key.as_deref().unwrap_or_default())?;
    let value = I64Serde.deserialize(r.record.value.as_deref().unwrap_or_default())?;
    Ok((key, value))
}

/// Appends records produced from one input batch, grouped by the partition of their key.
struct Appender {
    tps: Vec<TopicPartition>,
    pending: Vec<Vec<Record>>,
}

impl Appender {
    fn new(log: &dyn Log, topic: &str, partitions: u32) -> Result<Self, BenchError> {
        log.create_topic(topic, TopicConfig::new(partitions))?;
        Ok(Appender {
            tps: (0..partitions)
                .map(|p| TopicPartition::new(topic, p))
                .collect(),
            pending: vec![Vec::new(); partitions as usize],
        })
    }

    fn push(&mut self, key: String, value: i64, timestamp: i64) -> Result<(), BenchError> {
        let mut k = Vec::with_capacity(key.len());
        StringSerde.serialize_into(&key, &mut k)?;
        let mut v = Vec::with_capacity(8);
        I64Serde.serialize_into(&value, &mut v)?;
        let p = partition_for_key(&k, self.tps.len() as u32) as usize;
        self.pending[p].push(Record::new(k, v, timestamp));
        Ok(())
    }

    fn flush(&mut self, log: &dyn Log) -> Result<(), BenchError> {
        for (tp, records) in self.tps.iter().zip(&mut self.pending) {
            if !records.is_empty() {
                log.append(tp, records)?;
                records.clear();
            }
        }
        Ok(())
    }
}

/// S1: read + decode, filter, map the value, encode + append, one input batch at a time.
pub(crate) fn stateless(
    log: &dyn Log,
    input: &str,
    output: &str,
    partitions: u32,
    batch: usize,
) -> Result<Duration, BenchError> {
    let start = Instant::now();
    let mut out = Appender::new(log, output, partitions)?;
    for_each_batch(log, input, batch, |records| {
        for r in records {
            let (key, value) = decode(r)?;
            if crate::workload::s1_keep(value) {
                out.push(key, crate::workload::s1_map(value), r.record.timestamp)?;
            }
        }
        out.flush(log)
    })?;
    Ok(start.elapsed())
}

/// Options of the counting baseline.
#[derive(Debug, Clone)]
pub struct CountOptions {
    /// Where its RocksDB lives.
    pub path: std::path::PathBuf,
    /// The RocksDB budget (the engine's options come from it).
    pub memory: RocksDbMemory,
    /// Bytes the write-back cache may hold before it is emptied after a flush.
    pub cache_bytes: usize,
    /// Records between flushes of dirty entries to RocksDB.
    pub flush_every: u64,
    /// Tumbling window size, for a windowed count.
    pub window_ms: Option<i64>,
    /// Records read per poll.
    pub batch: usize,
}

/// S2/S3/S7: read + decode, then read-modify-write a count per key (or per key and window)
/// through a hashbrown write-back cache over RocksDB, writing dirty entries in one batch every
/// `flush_every` records. Returns the time and the digest of the final counts.
pub(crate) fn count(
    log: &dyn Log,
    input: &str,
    options: &CountOptions,
) -> Result<(Duration, Digest), BenchError> {
    let start = Instant::now();
    std::fs::create_dir_all(&options.path)?;
    let db = DB::open(&options.memory.db_options(), &options.path)?;
    let write_options = rocksdb_write_options();
    // Store key → (count, dirty).
    let mut cache: HashMap<Vec<u8>, (i64, bool)> = HashMap::new();
    let mut cached_bytes = 0usize;
    let mut seen = 0u64;
    let mut store_key = Vec::with_capacity(64);
    let flush = |cache: &mut HashMap<Vec<u8>, (i64, bool)>| -> Result<(), BenchError> {
        let mut wb = WriteBatch::default();
        let mut value = Vec::with_capacity(8);
        for (k, (n, dirty)) in cache.iter_mut() {
            if *dirty {
                value.clear();
                I64Serde.serialize_into(n, &mut value)?;
                wb.put(k, &value);
                *dirty = false;
            }
        }
        db.write_opt(wb, &write_options)?;
        Ok(())
    };
    for_each_batch(log, input, options.batch, |records| {
        for r in records {
            let (key, _value) = decode(r)?;
            store_key.clear();
            StringSerde.serialize_into(&key, &mut store_key)?;
            if let Some(size) = options.window_ms {
                let window_start = r.record.timestamp - r.record.timestamp.rem_euclid(size);
                store_key.extend_from_slice(&encode_timestamp(window_start));
            }
            match cache.get_mut(store_key.as_slice()) {
                Some((n, dirty)) => {
                    *n += 1;
                    *dirty = true;
                }
                None => {
                    let old = match db.get_pinned(&store_key)? {
                        Some(v) => I64Serde.deserialize(&v)?,
                        None => 0,
                    };
                    cached_bytes += store_key.len() + 8 + ENTRY_OVERHEAD;
                    cache.insert(store_key.clone(), (old + 1, true));
                }
            }
            seen += 1;
            if seen.is_multiple_of(options.flush_every) {
                flush(&mut cache)?;
                if cached_bytes > options.cache_bytes {
                    cache.clear();
                    cached_bytes = 0;
                }
            }
        }
        Ok(())
    })?;
    flush(&mut cache)?;
    let elapsed = start.elapsed();
    drop(cache);

    let mut digest = Digest::default();
    for entry in db.iterator(IteratorMode::Start) {
        let (k, v) = entry?;
        let n = I64Serde.deserialize(&v)?;
        match options.window_ms {
            Some(_) if k.len() >= 8 => {
                let (key, start) = k.split_at(k.len() - 8);
                let start = <[u8; 8]>::try_from(start).unwrap_or([0; 8]);
                digest.add(&window_digest_key(key, decode_timestamp(start)), n);
            }
            _ => digest.add(&k, n),
        }
    }
    Ok((elapsed, digest))
}

/// The key a windowed count is digested under: key bytes, then the window start big-endian.
pub fn window_digest_key(key: &[u8], window_start: i64) -> Vec<u8> {
    let mut k = key.to_vec();
    k.extend_from_slice(&window_start.to_be_bytes());
    k
}

/// S4: load the table into a hashbrown map, then join each event with it (inner join),
/// encode and append the output.
pub(crate) fn join(
    log: &dyn Log,
    table: &str,
    input: &str,
    output: &str,
    partitions: u32,
    batch: usize,
) -> Result<Duration, BenchError> {
    let start = Instant::now();
    let mut rows: HashMap<String, i64> = HashMap::new();
    for_each_batch(log, table, batch, |records| {
        for r in records {
            let (k, v) = decode(r)?;
            rows.insert(k, v);
        }
        Ok(())
    })?;
    let mut out = Appender::new(log, output, partitions)?;
    for_each_batch(log, input, batch, |records| {
        for r in records {
            let (key, value) = decode(r)?;
            if let Some(t) = rows.get(&key) {
                out.push(key, crate::workload::s4_join(value, *t), r.record.timestamp)?;
            }
        }
        out.flush(log)
    })?;
    Ok(start.elapsed())
}

/// S5: a raw read of every record of a (changelog) topic. Returns the time and the count.
pub(crate) fn raw_read(
    log: &dyn Log,
    topic: &str,
    batch: usize,
) -> Result<(Duration, u64), BenchError> {
    let start = Instant::now();
    let mut n = 0u64;
    for_each_batch(log, topic, batch, |records| {
        n += records.len() as u64;
        Ok(())
    })?;
    Ok((start.elapsed(), n))
}

/// The latest value of each key of a table's changelog (key → `[timestamp][i64]`), digested.
/// Not timed.
pub(crate) fn latest_digest(log: &dyn Log, topic: &str) -> Result<Digest, BenchError> {
    let mut latest: HashMap<Vec<u8>, Option<i64>> = HashMap::new();
    for_each_batch(log, topic, 10_000, |records| {
        for r in records {
            // A table's changelog holds `[timestamp][count]`.
            let v = match r.record.value.as_deref() {
                Some(v) => {
                    let (_, count) = state_store::decode_timestamped(topic, v)
                        .map_err(streams_core::Error::from)?;
                    Some(I64Serde.deserialize(count)?)
                }
                None => None,
            };
            latest.insert(r.record.key.clone().unwrap_or_default(), v);
        }
        Ok(())
    })?;
    let mut digest = Digest::default();
    for (k, v) in latest {
        if let Some(v) = v {
            digest.add(&k, v);
        }
    }
    Ok(digest)
}
