//! The scenarios through a Kafka broker: K1 (S1's stateless topology) and K2 (S2's count by
//! key, its changelog on Kafka), each on a [`KafkaLog`] beside hand-written librdkafka loops
//! (`kafka_baseline`) over the same input topic, with the same client settings.
//!
//! Input is loaded into a topic of its own per run (untimed), named `<k1|k2>-<pid>-<nanos>`
//! so that runs on a shared broker never meet; topics are left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use streams_core::{
    I64Serde, IsolationLevel, KafkaLog, KafkaLogConfig, Log, Serde, StreamsConfig, StreamsState,
    TopicPartition, Topology,
};
use streams_core::{Streams, TopicConfig};
use streams_dsl::prelude::*;

use crate::kafka_baseline::{self, Clients, CountLoop};
use crate::rss::peak_rss_mib;
use crate::scenario::{Harness, Outcome, Scenario};
use crate::workload::{read_partition, s1_keep, s1_map, topic_digest, Digest, Keys, Workload};
use crate::BenchError;

/// The store K2 counts into (its changelog is `<app>-counts-changelog`).
const K2_STORE: &str = "counts";

impl Harness<'_> {
    /// K1: the workload is loaded into a topic on the broker (untimed); then, timed, S1's
    /// topology runs on it through a [`KafkaLog`] from `start()` until caught up, writing its
    /// output to the broker; then a librdkafka loop does the same consume → filter/map →
    /// produce → commit; then a plain librdkafka consumer reads the same topic. The engine's
    /// output and the loop's, read back, and the consumer's records, filtered and mapped as
    /// S1 does, must digest alike.
    pub(crate) fn k1(&self) -> Result<Outcome, BenchError> {
        let servers = self.bootstrap_servers(Scenario::K1)?;
        let run = unique_name("k1");
        let (input, output) = (format!("{run}-in"), format!("{run}-out"));
        let workload = self.kafka_workload();
        let partitions = self.params.kafka_partitions;
        self.load(servers, &input, &workload)?;

        let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(self.kafka_config(servers))?);
        let b = StreamsBuilder::new();
        b.stream::<String, i64>(input.as_str(), Consumed::default())
            .filter(|_, v| s1_keep(*v))
            .map_values(s1_map)
            .to(output.as_str(), Produced::default());
        let config = self.config(&run);
        let ran = self.run_on_kafka(b.build()?, config.clone(), log.clone(), workload.events)?;
        let engine = (ran.elapsed, topic_digest(&*log, &output)?);

        let clients = self.clients(servers);
        let loop_output = format!("{run}-loop-out");
        log.create_topic(&loop_output, TopicConfig::new(partitions))?;
        let t = kafka_baseline::stateless(
            &clients,
            &input,
            &loop_output,
            partitions,
            workload.events,
            config.commit_interval,
        )?;
        let base = (t, topic_digest(&*log, &loop_output)?);
        let consumer = kafka_baseline::consume(&clients, &input, partitions, workload.events)?;
        let mut outcome = self.outcome(Scenario::K1, workload.events, engine, base, ran.rss);
        outcome.second_baseline = Some(consumer);
        outcome.note = format!(
            "{partitions} partitions, 1 stream thread; baseline: consume-filter/map-produce loop; \
             baseline 2: plain consumer; engine running {:.2} s, all processed {:.2} s after \
             start()",
            ran.running.as_secs_f64(),
            ran.processed.as_secs_f64()
        );
        Ok(outcome)
    }

    /// K2: S2's count by key (RocksDB, cached, changelogged to Kafka, at-least-once) with
    /// every update sent on to an output topic, on a [`KafkaLog`], from `start()` until every
    /// input offset is committed; then a librdkafka loop that consumes, counts through a
    /// write-back map over RocksDB, and at each commit writes the dirty counts to RocksDB, sends
    /// them to its changelog and its output, waits for the deliveries and commits the offsets.
    /// The latest count of each key on each side's output topic must digest alike, and agree
    /// with its changelog.
    pub(crate) fn k2(&self) -> Result<Outcome, BenchError> {
        let servers = self.bootstrap_servers(Scenario::K2)?;
        let run = unique_name("k2");
        let (input, output) = (format!("{run}-in"), format!("{run}-out"));
        let workload = self.kafka_workload();
        let partitions = self.params.kafka_partitions;
        self.load(servers, &input, &workload)?;

        let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(self.kafka_config(servers))?);
        let b = StreamsBuilder::new();
        b.stream::<String, i64>(input.as_str(), Consumed::default())
            .group_by_key(Grouped::inferred())
            .count(Materialized::named(K2_STORE))
            .to_stream()
            .to(output.as_str(), Produced::default());
        let config = self.config(&run);
        let ran = self.run_on_kafka(b.build()?, config.clone(), log.clone(), workload.events)?;
        let changelog = state_store::changelog_topic(&run, K2_STORE);
        let engine = latest_counts(&*log, &output, &changelog)?;

        let (loop_output, loop_changelog) =
            (format!("{run}-loop-out"), format!("{run}-loop-changelog"));
        log.create_topic(&loop_output, TopicConfig::new(partitions))?;
        log.create_topic(&loop_changelog, TopicConfig::compacted(partitions))?;
        let options = self.count_options(&config, "k2");
        let t = kafka_baseline::count(
            &self.clients(servers),
            &CountLoop {
                input: &input,
                output: &loop_output,
                changelog: &loop_changelog,
                partitions,
                records: workload.events,
                commit_interval: config.commit_interval,
                options: &options,
            },
        )?;
        let base = latest_counts(&*log, &loop_output, &loop_changelog)?;
        let mut note = format!(
            "{partitions} partitions, 1 stream thread, commit interval {:?}; engine running {:.2} s, \
             all processed {:.2} s after start()",
            config.commit_interval,
            ran.running.as_secs_f64(),
            ran.processed.as_secs_f64()
        );
        for (side, (d, c)) in [("engine", &engine), ("loop", &base)] {
            if d != c {
                note.push_str(&format!(
                    "; {side}'s changelog ({c}) disagrees with its output ({d})"
                ));
            }
        }
        let consistent = engine.0 == engine.1 && base.0 == base.1;
        let mut outcome = self.outcome(
            Scenario::K2,
            workload.events,
            (ran.elapsed, engine.0),
            (t, base.0),
            ran.rss,
        );
        if !consistent {
            outcome.engine_digest.entries = u64::MAX;
        }
        outcome.note = note;
        Ok(outcome)
    }

    pub(crate) fn bootstrap_servers(&self, scenario: Scenario) -> Result<&str, BenchError> {
        self.params.bootstrap_servers.as_deref().ok_or_else(|| {
            BenchError::Harness(format!(
                "{scenario} needs a Kafka broker: --bootstrap-servers HOST:PORT"
            ))
        })
    }

    fn kafka_workload(&self) -> Workload {
        Workload {
            events: self.params.kafka_events,
            keys: Keys::Uniform(self.params.keys),
            seed: self.params.seed,
        }
    }

    /// Loads `workload` into a new topic of `kafka_partitions` partitions (untimed), and
    /// checks that the broker kept every record.
    pub(crate) fn load(
        &self,
        servers: &str,
        topic: &str,
        workload: &Workload,
    ) -> Result<(), BenchError> {
        let loader = KafkaLog::connect(self.kafka_config(servers))?;
        workload.write(&loader, topic, self.params.kafka_partitions)?;
        check_loaded(
            &loader,
            topic,
            self.params.kafka_partitions,
            workload.events,
        )
    }

    /// Starts `topology` on `log` and waits until every one of `records` input records is
    /// processed and its offset committed: the timed phase, from `start()`.
    pub(crate) fn run_on_kafka(
        &self,
        topology: Topology,
        config: StreamsConfig,
        log: Arc<dyn Log>,
        records: u64,
    ) -> Result<RanOnKafka, BenchError> {
        let streams = Streams::new(topology, config, log)?;
        let start = Instant::now();
        streams.start()?;
        let ran = self.until_committed(&streams, start, records)?;
        streams.close()?;
        Ok(ran)
    }

    /// Waits until `streams` has processed `records` records and committed every input
    /// offset, timed from `start`; the peak RSS is read then.
    pub(crate) fn until_committed(
        &self,
        streams: &Streams,
        start: Instant,
        records: u64,
    ) -> Result<RanOnKafka, BenchError> {
        streams.wait_for_state(StreamsState::Running, self.params.timeout)?;
        let running = start.elapsed();
        // On the application's own counters first: `wait_until_caught_up` asks the broker
        // for every partition's end and the group's offsets every 10 ms, which would load
        // the broker the engine reads from.
        while streams.metrics().processed() < records {
            if matches!(
                streams.state(),
                StreamsState::Error | StreamsState::NotRunning
            ) || start.elapsed() > self.params.timeout
            {
                break; // `wait_until_caught_up` says why
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let processed = start.elapsed();
        self.wait_until_caught_up(streams)?;
        Ok(RanOnKafka {
            elapsed: start.elapsed(),
            processed,
            running,
            rss: peak_rss_mib(),
        })
    }

    /// The engine's Kafka log with the properties given.
    pub(crate) fn kafka_config(&self, servers: &str) -> KafkaLogConfig {
        let mut config = KafkaLogConfig::new(servers);
        for (k, v) in &self.params.kafka_properties {
            config = config.with_property(k.as_str(), v.as_str());
        }
        config
    }

    fn clients<'a>(&'a self, servers: &'a str) -> Clients<'a> {
        Clients {
            servers,
            properties: &self.params.kafka_properties,
            timeout: self.kafka_config(servers).timeout,
            run_timeout: self.params.timeout,
        }
    }
}

/// An engine run through Kafka.
pub(crate) struct RanOnKafka {
    /// From `start()` until every input offset was committed.
    pub(crate) elapsed: Duration,
    /// From `start()` until the application's counters showed every record processed.
    pub(crate) processed: Duration,
    /// From `start()` until the application was running (its group joined).
    pub(crate) running: Duration,
    /// Peak RSS when caught up, MiB.
    pub(crate) rss: f64,
}

/// `<prefix>-<pid>-<nanoseconds>`: a name no earlier run on the same broker used.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Checks that the broker kept every record loaded into `topic`.
pub(crate) fn check_loaded(
    log: &dyn Log,
    topic: &str,
    partitions: u32,
    events: u64,
) -> Result<(), BenchError> {
    let mut kept = 0;
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        kept += log.end_offset(&tp, IsolationLevel::ReadCommitted)? - log.start_offset(&tp)?;
    }
    if kept != events {
        return Err(BenchError::Harness(format!(
            "the broker kept {kept} of the {events} records loaded into {topic}"
        )));
    }
    Ok(())
}

/// Calls `f` with every committed record of every partition of `topic`, 10,000 a read.
pub(crate) fn for_each_record(
    log: &dyn Log,
    topic: &str,
    mut f: impl FnMut(&streams_core::StoredRecord) -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    let partitions = log.describe_topic(topic)?.partitions;
    for p in 0..partitions {
        read_partition(log, &TopicPartition::new(topic, p), 10_000, |records| {
            records.iter().try_for_each(&mut f)
        })?;
    }
    Ok(())
}

/// The digest of the latest `i64` value of each key of `topic` (a table's updates, in
/// offset order within each partition; a key lives in one partition).
pub(crate) fn latest_digest(log: &dyn Log, topic: &str) -> Result<Digest, BenchError> {
    let mut latest: HashMap<Vec<u8>, Option<i64>> = HashMap::new();
    for_each_record(log, topic, |r| {
        let v = I64Serde.deserialize_nullable(r.record.value.as_deref())?;
        latest.insert(r.record.key.clone().unwrap_or_default(), v);
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

/// The latest counts of `output`, and those of `changelog` (`[timestamp][count]` values).
fn latest_counts(
    log: &dyn Log,
    output: &str,
    changelog: &str,
) -> Result<(Digest, Digest), BenchError> {
    Ok((
        latest_digest(log, output)?,
        crate::baseline::latest_digest(log, changelog)?,
    ))
}
