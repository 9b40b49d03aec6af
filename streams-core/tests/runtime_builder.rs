//! The runtime without the DSL: a topology built with `TopologyBuilder`, a processor of the
//! caller's own over a persistent, changelogged store, run by `Streams` on the embedded log
//! with two threads; after its local state is deleted, a second run restores the store from
//! the changelog and goes on counting where the first stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use streams_core::{
    EmbeddedLog, I64Serde, IsolationLevel, Log, Record, Result, StoreSpec, Streams, StreamsConfig,
    StringSerde, TopicConfig, TopicName, TopicPartition, Topology, TopologyBuilder,
};

#[path = "support/counter.rs"]
mod counter;
use counter::{decode_count, Counter};

const PARTITIONS: u32 = 3;

fn counting() -> Result<Topology> {
    let mut b = TopologyBuilder::new();
    let src = b.add_source::<String, String>(
        "src",
        vec![TopicName::User("events".into())],
        Arc::new(StringSerde),
        Arc::new(StringSerde),
    )?;
    b.add_store(StoreSpec::key_value("counts"))?;
    let count = b.add_processor("count", &[src], |inst, down| {
        Ok(Counter {
            store: inst.kv_store("counts")?,
            total: 0,
            down,
        })
    })?;
    b.connect_store(count.id, "counts")?;
    b.add_sink(
        "sink",
        TopicName::User("counts-out".into()),
        &[count],
        Arc::new(StringSerde),
        Arc::new(I64Serde),
        None,
    )?;
    b.build()
}

fn run(config: &StreamsConfig, log: &Arc<EmbeddedLog>) -> Result<()> {
    let streams = Streams::new(counting()?, config.clone(), log.clone())?;
    streams.start()?;
    streams.wait_until_caught_up(Duration::from_secs(60))?;
    streams.close()
}

fn append(log: &EmbeddedLog, from: u32, to: u32) -> Result<()> {
    for i in from..to {
        let key = format!("k{}", i % 7);
        let p = streams_core::partition_for_key(key.as_bytes(), PARTITIONS);
        log.append(
            &TopicPartition::new("events", p),
            &[Record::new(key, "e", i64::from(i) + 1)],
        )?;
    }
    Ok(())
}

/// The last count written per key, over every partition of the output.
fn last_counts(log: &EmbeddedLog) -> Result<BTreeMap<String, i64>> {
    let mut last = BTreeMap::new();
    for p in 0..PARTITIONS {
        let tp = TopicPartition::new("counts-out", p);
        let fetch = log.read(&tp, 0, 100_000, IsolationLevel::ReadCommitted)?;
        for r in fetch.records {
            let key = String::from_utf8(r.record.key.unwrap_or_default()).unwrap_or_default();
            let value = r.record.value.unwrap_or_default();
            last.insert(key, decode_count(&value)?);
        }
    }
    Ok(last)
}

#[test]
fn counts_survive_lost_local_state_through_the_changelog(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = StreamsConfig::new("builder-count", dir.path())
        .with_threads(2)
        .with_commit_interval(Duration::from_millis(50));
    let log = Arc::new(EmbeddedLog::open(config.embedded_log_dir())?);
    log.create_topic("events", TopicConfig::new(PARTITIONS))?;

    append(&log, 0, 300)?;
    run(&config, &log)?;

    // Every task's local state goes; the changelog stays.
    let app_dir = dir.path().join("builder-count");
    let mut removed = 0;
    for entry in std::fs::read_dir(&app_dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("0_") {
            std::fs::remove_dir_all(&path)?;
            removed += 1;
        }
    }
    assert_eq!(removed, PARTITIONS, "one state directory per task");

    append(&log, 300, 500)?;
    run(&config, &log)?;

    let mut expected = BTreeMap::new();
    for i in 0..500u32 {
        *expected.entry(format!("k{}", i % 7)).or_insert(0) += 1;
    }
    assert_eq!(last_counts(&log)?, expected);
    Ok(())
}

#[test]
#[allow(clippy::unwrap_used)]
fn process_ids_are_kept_per_state_directory_and_differ_between_them() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let id = StreamsConfig::new("app", a.path()).process_id().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(
        StreamsConfig::new("app", a.path()).process_id().unwrap(),
        id
    );
    assert_ne!(
        StreamsConfig::new("app", b.path()).process_id().unwrap(),
        id
    );
    // Another application in the same directory is another instance.
    assert_ne!(
        StreamsConfig::new("other", a.path()).process_id().unwrap(),
        id
    );
    // A damaged file is an error naming it, not a new identity.
    std::fs::write(a.path().join("app").join("process-id"), "not hex").unwrap();
    let err = StreamsConfig::new("app", a.path())
        .process_id()
        .unwrap_err();
    assert!(err.to_string().contains("process-id"), "{err}");
}
