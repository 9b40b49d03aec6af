//! The scenarios: each writes its input, runs the engine, then the baseline, and returns both
//! times and both result digests. S1–S7 run on the embedded log; K1 runs through a Kafka
//! broker and is chosen explicitly, with the broker's address.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use state_store::RocksDbMemory;
use streams_core::{
    EmbeddedLog, I64Serde, Log, Record, Serde, StringSerde, TopicConfig, TopicPartition, Topology,
};
use streams_core::{ProcessingGuarantee, Streams, StreamsConfig, StreamsState};
use streams_dsl::prelude::*;

use crate::baseline::{self, CountOptions};
use crate::rss::peak_rss_mib;
use crate::workload::{
    open_log, s1_keep, s1_map, s4_join, user_key, Digest, Keys, Workload, BASE_TIMESTAMP,
};
use crate::BenchError;

/// A named scenario of the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Stateless filter → map_values → to, against read + decode + append by hand.
    S1,
    /// Count by key in RocksDB, changelogged, cached, at-least-once, against a hand-written
    /// read-modify-write loop over a hashbrown cache and RocksDB.
    S2,
    /// S2 under exactly-once.
    S2e,
    /// S2 with the in-memory store (same baseline).
    S2m,
    /// Tumbling 1 s windowed count by key, against the S2 loop keyed by (key, window start).
    S3,
    /// Stream–table join against a hashbrown lookup join.
    S4,
    /// Restore of a store from its changelog, against a raw read of the changelog.
    S5,
    /// S2 over 4 partitions: 2 stream threads (engine column) against 1 (baseline column).
    S6,
    /// S2 over distinct keys within an application-wide memory bound: peak RSS.
    S7,
    /// S1's topology end to end through a Kafka broker, against a librdkafka loop doing the
    /// same consume → filter/map → produce → commit (and a plain consumer's read, as a second
    /// baseline).
    K1,
    /// S2's count by key through a Kafka broker (changelog and output on Kafka), against a
    /// librdkafka loop counting in a hashbrown cache over RocksDB that produces the changelog
    /// and the output and commits offsets.
    K2,
}

impl Scenario {
    /// The scenarios on the embedded log, in report order: a run without a broker runs these.
    pub const ALL: [Scenario; 9] = [
        Scenario::S1,
        Scenario::S2,
        Scenario::S2e,
        Scenario::S2m,
        Scenario::S3,
        Scenario::S4,
        Scenario::S5,
        Scenario::S6,
        Scenario::S7,
    ];

    /// Scenarios that need a Kafka broker (`Params::bootstrap_servers`): run when one is given.
    pub const WITH_BROKER: [Scenario; 2] = [Scenario::K1, Scenario::K2];

    /// Whether the scenario needs a Kafka broker.
    pub fn needs_broker(self) -> bool {
        Scenario::WITH_BROKER.contains(&self)
    }

    /// The scenario's name as the command line and the report spell it.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::S1 => "S1",
            Scenario::S2 => "S2",
            Scenario::S2e => "S2e",
            Scenario::S2m => "S2m",
            Scenario::S3 => "S3",
            Scenario::S4 => "S4",
            Scenario::S5 => "S5",
            Scenario::S6 => "S6",
            Scenario::S7 => "S7",
            Scenario::K1 => "K1",
            Scenario::K2 => "K2",
        }
    }

    /// One line on what is compared.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::S1 => "stateless filter/map_values/to vs read+decode+append",
            Scenario::S2 => {
                "count, RocksDB, logged, cached, at-least-once vs hashbrown+RocksDB loop"
            }
            Scenario::S2e => "S2 under exactly-once vs the same loop",
            Scenario::S2m => "S2 with the in-memory store vs the same loop",
            Scenario::S3 => "tumbling 1 s window count, RocksDB vs loop keyed by (key, window)",
            Scenario::S4 => "stream-table join vs hashbrown lookup join",
            Scenario::S5 => "restore a store from its changelog vs raw read of the changelog",
            Scenario::S6 => "S2 over 4 partitions: 2 threads (engine) vs 1 thread (baseline)",
            Scenario::S7 => "S2 over distinct keys, memory-bounded; RSS vs the bound",
            Scenario::K1 => "S1 through a Kafka broker vs a librdkafka consume-produce loop",
            Scenario::K2 => "S2 through a Kafka broker vs a librdkafka count loop over RocksDB",
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scenario {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, BenchError> {
        Scenario::ALL
            .into_iter()
            .chain(Scenario::WITH_BROKER)
            .find(|sc| sc.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| BenchError::Harness(format!("unknown scenario `{s}`")))
    }
}

/// Sizes and settings of a run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Events of S1–S4 and S6.
    pub events: u64,
    /// Distinct user ids the events are drawn from.
    pub keys: u64,
    /// Seed of the workload generator.
    pub seed: u64,
    /// Rows of the S4 table.
    pub table_rows: u64,
    /// Keys of the S5 store.
    pub restore_keys: u64,
    /// Events (each with its own key) of S7.
    pub memory_keys: u64,
    /// The S7 application-wide memory bound (RocksDB + record cache).
    pub memory_bound_bytes: usize,
    /// Partitions of S6.
    pub scaling_partitions: u32,
    /// Commit interval of every engine run; `None`: the engine's default (30 s, or 100 ms
    /// under exactly-once; a thread that catches up commits at once either way).
    pub commit_interval: Option<Duration>,
    /// How long an engine run may take before the scenario fails.
    pub timeout: Duration,
    /// Whether the embedded log's background cleaner (retention, compaction) runs, as it
    /// does by default in an application. Off only to measure what it costs.
    pub log_cleaner: bool,
    /// `host:port` of the Kafka broker K1 and K2 run through.
    pub bootstrap_servers: Option<String>,
    /// librdkafka properties of the Kafka scenarios' clients (engine and loops), after their
    /// defaults.
    pub kafka_properties: Vec<(String, String)>,
    /// Events of K1 and K2.
    pub kafka_events: u64,
    /// Partitions of the input topics of K1 and K2.
    pub kafka_partitions: u32,
}

impl Default for Params {
    /// The standard sizes: 2M events over 10k keys, a 10k-row table, a 1M-key restore,
    /// 10M keys in 256 MiB; K1 and K2 (when a broker is given) 200k events over 4 partitions.
    fn default() -> Self {
        Params {
            events: 2_000_000,
            keys: 10_000,
            seed: 42,
            table_rows: 10_000,
            restore_keys: 1_000_000,
            memory_keys: 10_000_000,
            memory_bound_bytes: 256 << 20,
            scaling_partitions: 4,
            commit_interval: None,
            timeout: Duration::from_secs(3_600),
            log_cleaner: true,
            bootstrap_servers: None,
            kafka_properties: Vec::new(),
            kafka_events: 200_000,
            kafka_partitions: 4,
        }
    }
}

impl Params {
    /// A tiny run for CI: every scenario in a second or two.
    pub fn tiny() -> Self {
        Params {
            events: 20_000,
            keys: 1_000,
            table_rows: 1_000,
            restore_keys: 20_000,
            memory_keys: 20_000,
            memory_bound_bytes: 16 << 20,
            kafka_events: 5_000,
            timeout: Duration::from_secs(120),
            ..Params::default()
        }
    }

    fn workload(&self) -> Workload {
        Workload {
            events: self.events,
            keys: Keys::Uniform(self.keys),
            seed: self.seed,
        }
    }
}

/// What one scenario measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Which scenario.
    pub scenario: Scenario,
    /// Records each side processed.
    pub records: u64,
    /// The engine's timed phase.
    pub engine: Duration,
    /// The baseline's timed phase.
    pub baseline: Duration,
    /// The engine's results.
    pub engine_digest: Digest,
    /// The baseline's results.
    pub baseline_digest: Digest,
    /// Peak RSS of the process right after the engine phase, MiB.
    pub peak_rss_mib: f64,
    /// Anything worth printing beside the figures.
    pub note: String,
    /// A second baseline over the same records, where the scenario has one (K1: the plain
    /// consumer beside the consume-produce loop): its time and results.
    pub second_baseline: Option<(Duration, Digest)>,
    /// Peak RSS of the baseline's own process, where it runs in one, MiB.
    pub baseline_peak_rss_mib: Option<f64>,
}

impl Outcome {
    /// Engine records per second.
    pub fn engine_rate(&self) -> f64 {
        self.records as f64 / self.engine.as_secs_f64()
    }

    /// Baseline records per second.
    pub fn baseline_rate(&self) -> f64 {
        self.records as f64 / self.baseline.as_secs_f64()
    }

    /// Engine rate / baseline rate.
    pub fn ratio(&self) -> f64 {
        self.engine_rate() / self.baseline_rate()
    }

    /// Second baseline records per second, where there is one.
    pub fn second_baseline_rate(&self) -> Option<f64> {
        self.second_baseline
            .as_ref()
            .map(|(t, _)| self.records as f64 / t.as_secs_f64())
    }

    /// Whether engine and baseline (and the second baseline) produced the same results.
    pub fn results_match(&self) -> bool {
        self.engine_digest == self.baseline_digest
            && self
                .second_baseline
                .as_ref()
                .is_none_or(|(_, d)| *d == self.engine_digest)
    }
}

/// S3's tumbling window size.
const S3_WINDOW_MS: i64 = 1_000;

/// Runs one scenario in `dir` (an empty directory it may fill).
pub fn run_scenario(
    scenario: Scenario,
    params: &Params,
    dir: &Path,
) -> Result<Outcome, BenchError> {
    let h = Harness::new(params, dir)?;
    match scenario {
        Scenario::S1 => h.s1(),
        Scenario::S2 => h.s2(scenario, ProcessingGuarantee::AtLeastOnce, false),
        Scenario::S2e => h.s2(scenario, ProcessingGuarantee::ExactlyOnce, false),
        Scenario::S2m => h.s2(scenario, ProcessingGuarantee::AtLeastOnce, true),
        Scenario::S3 => h.s3(),
        Scenario::S4 => h.s4(),
        Scenario::S5 => h.s5(),
        Scenario::S6 => h.s6(),
        Scenario::S7 => h.s7(),
        Scenario::K1 => h.k1(),
        Scenario::K2 => h.k2(),
    }
}

pub(crate) struct Harness<'a> {
    pub(crate) params: &'a Params,
    pub(crate) dir: &'a Path,
    log: Arc<EmbeddedLog>,
}

/// A started engine whose inputs are all committed.
struct Ran {
    streams: Streams,
    elapsed: Duration,
}

impl<'a> Harness<'a> {
    pub(crate) fn new(params: &'a Params, dir: &'a Path) -> Result<Self, BenchError> {
        let log = open_log(
            &StreamsConfig::new("x", dir).embedded_log_dir(),
            params.log_cleaner,
        )?;
        Ok(Harness { params, dir, log })
    }

    pub(crate) fn config(&self, app: &str) -> StreamsConfig {
        self.with_commit_interval(StreamsConfig::new(app, self.dir))
    }

    /// Applies the commit interval asked for, if any (after the guarantee, which sets its
    /// own default).
    pub(crate) fn with_commit_interval(&self, config: StreamsConfig) -> StreamsConfig {
        match self.params.commit_interval {
            Some(interval) => config.with_commit_interval(interval),
            None => config,
        }
    }

    pub(crate) fn count_options(&self, config: &StreamsConfig, name: &str) -> CountOptions {
        CountOptions {
            path: self.dir.join("baseline").join(name),
            memory: RocksDbMemory::new(config.rocksdb_memory_bytes, config.rocksdb_memtable_bytes),
            cache_bytes: config.cache_max_bytes,
            flush_every: 10_000,
            window_ms: None,
            batch: config.max_poll_records,
        }
    }

    /// Starts the engine and waits until every input offset is committed: the timed phase.
    fn run(&self, topology: Topology, config: StreamsConfig) -> Result<Ran, BenchError> {
        let streams = Streams::new(topology, config, self.log.clone())?;
        let start = Instant::now();
        streams.start()?;
        self.wait_until_caught_up(&streams)?;
        Ok(Ran {
            elapsed: start.elapsed(),
            streams,
        })
    }

    pub(crate) fn wait_until_caught_up(&self, streams: &Streams) -> Result<(), BenchError> {
        streams
            .wait_until_caught_up(self.params.timeout)
            .map_err(|e| match streams.error() {
                // Say why the application stopped, not only that it did.
                Some(cause) => BenchError::Harness(format!("{}: {}", e.report(), cause.report())),
                None => e.into(),
            })
    }

    pub(crate) fn outcome(
        &self,
        scenario: Scenario,
        records: u64,
        engine: (Duration, Digest),
        baseline: (Duration, Digest),
        peak_rss_mib: f64,
    ) -> Outcome {
        Outcome {
            scenario,
            records,
            engine: engine.0,
            baseline: baseline.0,
            engine_digest: engine.1,
            baseline_digest: baseline.1,
            peak_rss_mib,
            note: String::new(),
            second_baseline: None,
            baseline_peak_rss_mib: None,
        }
    }

    fn s1(&self) -> Result<Outcome, BenchError> {
        self.params.workload().write(&*self.log, "s1-in", 1)?;
        let b = StreamsBuilder::new();
        b.stream::<String, i64>("s1-in", Consumed::default())
            .filter(|_, v| s1_keep(*v))
            .map_values(s1_map)
            .to("s1-engine-out", Produced::default());
        let config = self.config("s1");
        let batch = config.max_poll_records;
        let ran = self.run(b.build()?, config)?;
        let rss = peak_rss_mib();
        ran.streams.close()?;
        let engine = (
            ran.elapsed,
            crate::workload::topic_digest(&*self.log, "s1-engine-out")?,
        );
        let t = baseline::stateless(&*self.log, "s1-in", "s1-baseline-out", 1, batch)?;
        let base = (
            t,
            crate::workload::topic_digest(&*self.log, "s1-baseline-out")?,
        );
        Ok(self.outcome(Scenario::S1, self.params.events, engine, base, rss))
    }

    fn s2(
        &self,
        scenario: Scenario,
        guarantee: ProcessingGuarantee,
        in_memory: bool,
    ) -> Result<Outcome, BenchError> {
        self.params.workload().write(&*self.log, "s2-in", 1)?;
        let config = self.with_commit_interval(self.config("s2").with_guarantee(guarantee));
        let (engine, rss) =
            self.engine_count(count_topology("s2-in", in_memory)?, config.clone())?;
        let base = baseline::count(&*self.log, "s2-in", &self.count_options(&config, "s2"))?;
        Ok(self.outcome(scenario, self.params.events, engine, base, rss))
    }

    /// Runs a counting topology, then digests its `counts` store.
    fn engine_count(
        &self,
        topology: Topology,
        config: StreamsConfig,
    ) -> Result<((Duration, Digest), f64), BenchError> {
        let ran = self.run(topology, config)?;
        let rss = peak_rss_mib();
        let digest = count_digest(&ran.streams)?;
        ran.streams.close()?;
        Ok(((ran.elapsed, digest), rss))
    }

    fn s3(&self) -> Result<Outcome, BenchError> {
        self.params.workload().write(&*self.log, "s3-in", 1)?;
        let b = StreamsBuilder::new();
        b.stream::<String, i64>("s3-in", Consumed::default())
            .group_by_key(Grouped::inferred())
            .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
                S3_WINDOW_MS as u64,
            )))
            // Retain every window of the run (Kafka's default retention, one day, would too),
            // so the query afterwards sees them all.
            .count(
                Materialized::named("window-counts").with_retention(Duration::from_millis(
                    self.params.events + 2 * S3_WINDOW_MS as u64,
                )),
            );
        let config = self.config("s3");
        let ran = self.run(b.build()?, config.clone())?;
        let rss = peak_rss_mib();
        let q =
            ran.streams
                .window_store("window-counts", Arc::new(StringSerde), Arc::new(I64Serde))?;
        let mut digest = Digest::default();
        let last = BASE_TIMESTAMP + self.params.events as i64;
        for id in 0..self.params.keys {
            let key = user_key(id);
            for (start, n) in q.fetch(&key, BASE_TIMESTAMP - S3_WINDOW_MS, last)? {
                digest.add(&baseline::window_digest_key(key.as_bytes(), start), n);
            }
        }
        ran.streams.close()?;
        let mut options = self.count_options(&config, "s3");
        options.window_ms = Some(S3_WINDOW_MS);
        let base = baseline::count(&*self.log, "s3-in", &options)?;
        Ok(self.outcome(
            Scenario::S3,
            self.params.events,
            (ran.elapsed, digest),
            base,
            rss,
        ))
    }

    fn s4(&self) -> Result<Outcome, BenchError> {
        let rows = self.params.table_rows;
        self.log.create_topic("s4-users", TopicConfig::new(1))?;
        let tp = TopicPartition::new("s4-users", 0);
        let mut batch = Vec::with_capacity(1_000);
        for id in 0..rows {
            let mut v = Vec::new();
            I64Serde.serialize_into(&(id as i64), &mut v)?;
            // Before every event, so each event sees the whole table.
            batch.push(Record::new(user_key(id), v, BASE_TIMESTAMP - 1));
            if batch.len() == 1_000 {
                self.log.append(&tp, &batch)?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.log.append(&tp, &batch)?;
        }
        self.params.workload().write(&*self.log, "s4-in", 1)?;

        let b = StreamsBuilder::new();
        let table = b.table::<String, i64>(
            "s4-users",
            Consumed::default(),
            Materialized::named("users"),
        );
        b.stream::<String, i64>("s4-in", Consumed::default())
            .join(&table, |v, t| s4_join(*v, *t))
            .to("s4-engine-out", Produced::default());
        let config = self.config("s4");
        let batch = config.max_poll_records;
        let ran = self.run(b.build()?, config)?;
        let rss = peak_rss_mib();
        ran.streams.close()?;
        let engine = (
            ran.elapsed,
            crate::workload::topic_digest(&*self.log, "s4-engine-out")?,
        );
        let t = baseline::join(&*self.log, "s4-users", "s4-in", "s4-baseline-out", 1, batch)?;
        let base = (
            t,
            crate::workload::topic_digest(&*self.log, "s4-baseline-out")?,
        );
        Ok(self.outcome(Scenario::S4, self.params.events, engine, base, rss))
    }

    fn s5(&self) -> Result<Outcome, BenchError> {
        Workload {
            events: self.params.restore_keys,
            keys: Keys::Distinct,
            seed: self.params.seed,
        }
        .write(&*self.log, "s5-in", 1)?;
        let config = self.config("s5");
        // Untimed: build the store and its changelog.
        let ran = self.run(count_topology("s5-in", false)?, config.clone())?;
        ran.streams.close()?;
        drop(ran);
        // Lose the local state: the next start restores from the changelog's beginning.
        let app_dir = self.dir.join("s5");
        std::fs::remove_dir_all(&app_dir)?;

        let log: Arc<dyn Log> = self.log.clone();
        let streams = Streams::new(count_topology("s5-in", false)?, config, log)?;
        let start = Instant::now();
        streams.start()?;
        streams.wait_for_state(StreamsState::Running, self.params.timeout)?;
        let elapsed = start.elapsed();
        let rss = peak_rss_mib();
        let restored = wait_for_restored(&streams)?;
        let digest = count_digest(&streams)?;
        streams.close()?;

        let changelog = state_store::changelog_topic("s5", "counts");
        // The engine restores in reads of 10,000 records; the baseline reads the same way.
        let (t, read) = baseline::raw_read(&*self.log, &changelog, 10_000)?;
        let base_digest = baseline::latest_digest(&*self.log, &changelog)?;
        let mut outcome =
            self.outcome(Scenario::S5, read, (elapsed, digest), (t, base_digest), rss);
        if restored != read {
            outcome.note = format!("engine restored {restored} records, the changelog has {read}");
            outcome.engine_digest.entries = u64::MAX;
        }
        Ok(outcome)
    }

    fn s6(&self) -> Result<Outcome, BenchError> {
        let partitions = self.params.scaling_partitions;
        self.params
            .workload()
            .write(&*self.log, "s6-in", partitions)?;
        let one = self.config("s6-one").with_threads(1);
        let ((t1, d1), _) = self.engine_count(count_topology("s6-in", false)?, one)?;
        let two = self.config("s6-two").with_threads(2);
        let ((t2, d2), rss) = self.engine_count(count_topology("s6-in", false)?, two)?;
        let mut outcome = self.outcome(Scenario::S6, self.params.events, (t2, d2), (t1, d1), rss);
        outcome.note = format!("{partitions} partitions; baseline column = the engine on 1 thread");
        Ok(outcome)
    }

    fn s7(&self) -> Result<Outcome, BenchError> {
        let n = self.params.memory_keys;
        Workload {
            events: n,
            keys: Keys::Distinct,
            seed: self.params.seed,
        }
        .write(&*self.log, "s7-in", 1)?;
        let bound = self.params.memory_bound_bytes;
        // The record cache takes 1/16 of the bound, RocksDB (block cache + memtables) the rest,
        // of which memtables may use a quarter.
        let cache = bound / 16;
        let rocks = bound - cache;
        let config = self
            .config("s7")
            .with_cache_max_bytes(cache)
            .with_rocksdb_memory(rocks, rocks / 4);
        let (engine, rss) = self.engine_count(count_topology("s7-in", false)?, config.clone())?;
        let base = baseline::count(&*self.log, "s7-in", &self.count_options(&config, "s7"))?;
        let mut outcome = self.outcome(Scenario::S7, n, engine, base, rss);
        let bound_mib = bound as f64 / (1 << 20) as f64;
        outcome.note = format!(
            "bound {bound_mib:.0} MiB (target: peak RSS <= {:.0} MiB)",
            bound_mib + 64.0
        );
        Ok(outcome)
    }
}

/// `input` grouped by key and counted into the store `counts`.
fn count_topology(input: &str, in_memory: bool) -> Result<Topology, BenchError> {
    let b = StreamsBuilder::new();
    let mut counts = Materialized::<String, i64>::named("counts");
    if in_memory {
        counts = counts.in_memory();
    }
    b.stream::<String, i64>(input, Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(counts);
    Ok(b.build()?)
}

/// The digest of the `counts` store, read a key prefix at a time (keys are `user-` and a
/// decimal or hex digit string) so that no more than a sixteenth of it is in memory at once.
fn count_digest(streams: &Streams) -> Result<Digest, BenchError> {
    let q = streams.key_value_store("counts", Arc::new(StringSerde), Arc::new(I64Serde))?;
    let mut digest = Digest::default();
    for c in "0123456789abcdef".chars() {
        for (k, v) in q.range(&format!("user-{c}"), &format!("user-{c}\u{7f}"))? {
            digest.add(k.as_bytes(), v);
        }
    }
    Ok(digest)
}

/// Records restored by all tasks, once the threads have published it.
fn wait_for_restored(streams: &Streams) -> Result<u64, BenchError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let restored: u64 = streams.metrics().tasks.values().map(|t| t.restored).sum();
        if restored > 0 || Instant::now() >= deadline {
            return Ok(restored);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
