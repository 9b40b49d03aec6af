//! The synthetic workload: seeded events over a key space, written to the embedded log
//! before any timing starts, and an order-independent digest that engine and baseline
//! results are compared with.

use std::sync::Arc;

use streams_core::{
    partition_for_key, EmbeddedLog, EmbeddedLogConfig, I64Serde, IsolationLevel, Log, Record,
    Serde, StoredRecord, StringSerde, TopicConfig, TopicPartition,
};

use crate::BenchError;

/// Event time of the first event (ms); later events are 1 ms apart.
pub const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

/// Records appended per `Log::append` while writing input.
const APPEND_BATCH: usize = 1_000;

/// How keys are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// One of `n` user ids (`user-00000042`), drawn uniformly by the seeded generator.
    Uniform(u64),
    /// A different key for every event (`user-<16 hex digits>`, a bijective scramble of the
    /// event index, so keys do not arrive in sorted order).
    Distinct,
}

/// N events over a key space, value = a small integer (0..100), timestamps 1 ms apart.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Number of events.
    pub events: u64,
    /// How keys are drawn.
    pub keys: Keys,
    /// Seed of the generator.
    pub seed: u64,
}

/// SplitMix64: a small, fast, seedable generator; its output function is a bijection of u64.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
}

/// SplitMix64's finalizer (a bijection).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of user `id` in the uniform key space.
pub fn user_key(id: u64) -> String {
    format!("user-{id:08}")
}

impl Workload {
    /// The events in order, as (key, value, timestamp), generated lazily.
    pub fn events(&self) -> impl Iterator<Item = (String, i64, i64)> {
        let mut rng = SplitMix::new(self.seed);
        let keys = self.keys;
        (0..self.events).map(move |i| {
            let r = rng.next_u64();
            let key = match keys {
                Keys::Uniform(n) => user_key(r % n.max(1)),
                Keys::Distinct => format!("user-{:016x}", mix64(i ^ 0x0005_DEEC_E66D)),
            };
            let value = ((r >> 40) % 100) as i64;
            (key, value, BASE_TIMESTAMP + i as i64)
        })
    }

    /// Creates `topic` with `partitions` partitions and appends the events to it, each to the
    /// partition of its key (Kafka's default partitioner), without holding them all in memory.
    pub fn write(&self, log: &dyn Log, topic: &str, partitions: u32) -> Result<(), BenchError> {
        log.create_topic(topic, TopicConfig::new(partitions))?;
        let mut pending: Vec<Vec<Record>> =
            vec![Vec::with_capacity(APPEND_BATCH); partitions as usize];
        let tps: Vec<TopicPartition> = (0..partitions)
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        let mut value = Vec::with_capacity(8);
        for (key, v, ts) in self.events() {
            let p = partition_for_key(key.as_bytes(), partitions) as usize;
            value.clear();
            I64Serde.serialize_into(&v, &mut value)?;
            pending[p].push(Record::new(key, value.clone(), ts));
            if pending[p].len() == APPEND_BATCH {
                log.append(&tps[p], &pending[p])?;
                pending[p].clear();
            }
        }
        for (p, records) in pending.iter().enumerate() {
            if !records.is_empty() {
                log.append(&tps[p], records)?;
            }
        }
        Ok(())
    }
}

/// An order-independent summary of a set of (key, value) pairs: equal sets give equal
/// digests, and a differing pair changes it with overwhelming probability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    /// Pairs added.
    pub entries: u64,
    /// Sum of the values.
    pub total: i64,
    /// Wrapping sum of a hash of each pair.
    pub hash: u64,
}

impl Digest {
    /// Adds one pair.
    pub fn add(&mut self, key: &[u8], value: i64) {
        // FNV-1a over the key, then mixed with the value.
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        for &b in key {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        self.entries += 1;
        self.total = self.total.wrapping_add(value);
        self.hash = self
            .hash
            .wrapping_add(mix64(h ^ mix64(value as u64 ^ 0xA5A5_A5A5)));
    }

    /// Combines two digests of disjoint sets.
    pub fn merge(&mut self, other: &Digest) {
        self.entries += other.entries;
        self.total = self.total.wrapping_add(other.total);
        self.hash = self.hash.wrapping_add(other.hash);
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries, total {}, hash {:016x}",
            self.entries, self.total, self.hash
        )
    }
}

/// Calls `f` with each read of up to `batch` records of `tp`, from its start to its end as
/// it is when the call begins. An empty read does not end it: a Kafka read returns nothing
/// when no fetched records are queued yet, at any offset. A read that brings nothing for
/// `STALL` fails.
pub(crate) fn read_partition(
    log: &dyn Log,
    tp: &TopicPartition,
    batch: usize,
    mut f: impl FnMut(&[StoredRecord]) -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    const STALL: std::time::Duration = std::time::Duration::from_secs(30);
    let end = log.end_offset(tp, IsolationLevel::ReadCommitted)?;
    let mut offset = log.start_offset(tp)?;
    let mut progress = std::time::Instant::now();
    while offset < end {
        let fetch = log.read(tp, offset, batch, IsolationLevel::ReadCommitted)?;
        if fetch.records.is_empty() && fetch.next_offset == offset {
            if progress.elapsed() > STALL {
                return Err(BenchError::Harness(format!(
                    "reading {tp} stopped at offset {offset}, short of its end {end}"
                )));
            }
            continue;
        }
        progress = std::time::Instant::now();
        offset = fetch.next_offset;
        f(&fetch.records)?;
    }
    Ok(())
}

/// Reads every committed record of `topic` and digests (key, i64 value) of each.
pub(crate) fn topic_digest(log: &dyn Log, topic: &str) -> Result<Digest, BenchError> {
    let partitions = log.describe_topic(topic)?.partitions;
    let mut digest = Digest::default();
    for p in 0..partitions {
        read_partition(log, &TopicPartition::new(topic, p), 10_000, |records| {
            for r in records {
                let key = r.record.key.as_deref().unwrap_or_default();
                // Keys are decoded as the engine would, so both sides go through the serde.
                let _ = StringSerde.deserialize(key)?;
                let v = I64Serde.deserialize_nullable(r.record.value.as_deref())?;
                digest.add(key, v.unwrap_or(i64::MIN));
            }
            Ok(())
        })?;
    }
    Ok(digest)
}

/// Opens the embedded log of a state directory, with or without its background cleaner.
pub(crate) fn open_log(
    dir: &std::path::Path,
    cleaner: bool,
) -> Result<Arc<EmbeddedLog>, BenchError> {
    let mut config = EmbeddedLogConfig::default();
    if !cleaner {
        config.cleaner_interval = None;
    }
    Ok(Arc::new(EmbeddedLog::open_with(dir, config)?))
}

/// S1's filter: keeps three values in four.
pub(crate) fn s1_keep(v: i64) -> bool {
    v % 4 != 0
}

/// S1's value mapping.
pub(crate) fn s1_map(v: i64) -> i64 {
    v * 10 + 1
}

/// S4's joiner.
pub(crate) fn s4_join(v: i64, t: i64) -> i64 {
    v + t * 1_000
}
