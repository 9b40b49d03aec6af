#![allow(clippy::unwrap_used)]
//! Resetting an application and running it again: the input offsets back to the start, the
//! internal topics deleted, the local state cleaned up, and the replay ends with the result
//! of the first run (not doubled counts restored from the old changelog or the old stores).
//! Also when `Streams::clean_up` may run.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use streams_core::{
    ApplicationReset, EmbeddedLog, Error, I64Serde, Log, OptionSerde, ResetTo, StringSerde,
    TopicPartition, Topology,
};
use streams_core::{Streams, StreamsConfig, StreamsState};
use streams_dsl::prelude::*;

const WAIT: Duration = Duration::from_secs(120);
const APP: &str = "replay";

fn config(dir: &std::path::Path) -> StreamsConfig {
    StreamsConfig::new(APP, dir)
        .with_threads(2)
        .with_commit_interval(Duration::from_millis(50))
}

/// Counts per last digit of the key: a repartition topic, then a logged store `by-digit`
/// whose updates go to `digit-counts`.
fn topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("input", Consumed::default())
        .group_by(
            |k, _| format!("d{}", &k[k.len() - 1..]),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::named("by-digit"))
        .to_stream()
        .to(
            "digit-counts",
            Produced::with(StringSerde, OptionSerde(I64Serde)),
        );
    b.build().unwrap()
}

fn expected(input: &[(String, String)]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (k, _) in input {
        *out.entry(format!("d{}", &k[k.len() - 1..])).or_insert(0) += 1;
    }
    out
}

/// Runs the application until it has read all its input; returns the store's contents and
/// the last count per key in the output topic.
fn run_once(
    dir: &std::path::Path,
    log: &Arc<EmbeddedLog>,
) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let streams = Streams::new(topology(), config(dir), log.clone()).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let store = streams
        .key_value_store("by-digit", Arc::new(StringSerde), Arc::new(I64Serde))
        .unwrap();
    let stored: BTreeMap<String, i64> = store.all().unwrap().into_iter().collect();
    streams.close().unwrap();
    let mut output = BTreeMap::new();
    for part in read_topic(&**log, "digit-counts") {
        for (k, v) in decode(&part, &I64Serde) {
            output.insert(k, v);
        }
    }
    (stored, output)
}

fn internal_topics(log: &dyn Log) -> Vec<String> {
    log.list_topics()
        .unwrap()
        .into_iter()
        .filter(|t| t.starts_with("replay-"))
        .collect()
}

#[test]
fn a_reset_application_replays_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let input = write_input(&*log, "input", 3, 2_000, 30);
    let want = expected(&input);

    let (stored, output) = run_once(dir.path(), &log);
    assert_eq!(stored, want);
    assert_eq!(output, want);
    let internal = internal_topics(&*log);
    assert_eq!(
        internal.len(),
        2,
        "a changelog and a repartition topic: {internal:?}"
    );
    assert!(!config(dir.path()).local_state().unwrap().is_empty());

    // Planned first: nothing changes.
    let reset = ApplicationReset::new(APP, ["input"])
        .to(ResetTo::Earliest)
        .with_state_dir(dir.path());
    let plan = reset.plan(&*log).unwrap();
    assert_eq!(plan.internal_topics, internal);
    assert_eq!(plan.offsets.len(), 3);
    for m in &plan.offsets {
        let end = log
            .end_offset(&m.tp, streams_core::IsolationLevel::ReadUncommitted)
            .unwrap();
        assert_eq!((m.old, m.new), (Some(end), 0), "{}", m.tp);
    }
    assert!(!plan.local_state.is_empty());
    assert_eq!(internal_topics(&*log), internal, "a plan deletes nothing");

    let done = reset.run(&*log).unwrap();
    assert_eq!(done, plan);
    assert!(internal_topics(&*log).is_empty());
    assert!(config(dir.path()).local_state().unwrap().is_empty());
    for p in 0..3 {
        let tp = TopicPartition::new("input", p);
        assert_eq!(log.committed_offset(APP, &tp).unwrap(), Some(0));
    }

    // The replay reads every input record again, into empty stores.
    let (stored, output) = run_once(dir.path(), &log);
    assert_eq!(stored, want, "the replay counts each record once");
    assert_eq!(output, want);

    // What the reset saves the replay from: offsets rewound alone, the changelog and the
    // local stores keep the old counts, and every count comes out doubled.
    let rewind: Vec<(TopicPartition, u64)> = (0..3)
        .map(|p| (TopicPartition::new("input", p), 0))
        .collect();
    log.commit_offsets(APP, &rewind).unwrap();
    let (stored, _) = run_once(dir.path(), &log);
    let doubled: BTreeMap<String, i64> = want.iter().map(|(k, n)| (k.clone(), 2 * n)).collect();
    assert_eq!(stored, doubled);
}

#[test]
fn clean_up_is_refused_while_the_application_runs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    write_input(&*log, "input", 2, 200, 10);
    let streams = Streams::new(topology(), config(dir.path()), log.clone()).unwrap();
    // Created: allowed (nothing there yet but the process id, which stays).
    let id = config(dir.path()).process_id().unwrap();
    streams.clean_up().unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    match streams.clean_up() {
        Err(Error::InvalidState { operation, state }) => {
            assert!(operation.contains("clean up"), "{operation}");
            assert_eq!(state, "RUNNING");
        }
        other => panic!("clean_up while running: expected InvalidState, got {other:?}"),
    }
    assert!(
        !config(dir.path()).local_state().unwrap().is_empty(),
        "a refused clean-up removes nothing"
    );
    streams.close().unwrap();
    assert_eq!(streams.state(), StreamsState::NotRunning);
    streams.clean_up().unwrap();
    assert!(config(dir.path()).local_state().unwrap().is_empty());
    assert_eq!(config(dir.path()).process_id().unwrap(), id);
    assert!(
        dir.path().join("log").join("topics").join("input").is_dir(),
        "the embedded log is not the application's local state"
    );
}
