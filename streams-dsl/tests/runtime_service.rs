//! Driving `Streams` from async code: the state watch channel, `run_until` with a
//! `Shutdown`, and the close that follows.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::open_log;
use streams_core::{
    partition_for_key, I64Serde, Log, Record, Shutdown, Streams, StreamsConfig, StreamsState,
    StringSerde, TopicConfig, TopicPartition,
};
use streams_dsl::prelude::*;

fn counting_app(dir: &std::path::Path) -> Streams {
    let log = open_log(dir);
    log.create_topic("words", TopicConfig::new(2))
        .expect("topic");
    for (i, w) in ["fox", "dog", "fox"].iter().enumerate() {
        let tp = TopicPartition::new("words", partition_for_key(w.as_bytes(), 2));
        log.append(&tp, &[Record::new(*w, "", i as i64 + 1)])
            .expect("append");
    }
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("words", Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"));
    let config = StreamsConfig::new("service", dir).with_commit_interval(Duration::from_millis(50));
    Streams::new(builder.build().expect("topology"), config, log).expect("streams")
}

/// Whether `part` appears in `whole` in the same order (not necessarily next to each other).
fn is_subsequence(part: &[StreamsState], whole: &[StreamsState]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_watch_sees_the_transitions_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let streams = counting_app(dir.path());
    // Every change, synchronously, as the reference.
    let all = Arc::new(Mutex::new(vec![StreamsState::Created]));
    let sink = all.clone();
    streams.set_state_listener(move |_, new| sink.lock().expect("lock").push(new));

    let shutdown = Shutdown::new();
    let mut states = streams.state_changes();
    // The watcher asks for the shutdown once it has seen RUNNING: a watch keeps only the
    // latest state, so a reader must be told apart from the state changes it waits for.
    let trigger = shutdown.clone();
    // Read before the watcher is spawned: the spawned task may first run after the
    // application already left CREATED.
    let first = *states.borrow_and_update();
    let watcher = tokio::spawn(async move {
        let mut seen = vec![first];
        while states.changed().await.is_ok() {
            let s = *states.borrow_and_update();
            seen.push(s);
            match s {
                StreamsState::Running => trigger.trigger(),
                StreamsState::NotRunning => break,
                _ => {}
            }
        }
        seen
    });
    tokio::time::timeout(Duration::from_secs(60), streams.run_until(shutdown.wait()))
        .await
        .expect("run_until returns after the shutdown")
        .expect("a clean close");
    assert_eq!(streams.state(), StreamsState::NotRunning);
    let seen = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("the watcher saw NOT_RUNNING")
        .expect("watcher");
    let all = all.lock().expect("lock").clone();
    assert_eq!(
        all,
        vec![
            StreamsState::Created,
            StreamsState::Rebalancing,
            StreamsState::Running,
            StreamsState::PendingShutdown,
            StreamsState::NotRunning
        ]
    );
    assert!(
        is_subsequence(&seen, &all),
        "watched {seen:?}, happened {all:?}"
    );
    assert_eq!(seen.first(), Some(&StreamsState::Created));
    assert!(seen.contains(&StreamsState::Running), "{seen:?}");
    assert_eq!(seen.last(), Some(&StreamsState::NotRunning));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_async_commits_what_ran() {
    let dir = tempfile::tempdir().expect("tempdir");
    let streams = counting_app(dir.path());
    streams.start_async().await.expect("start");
    let mut states = streams.state_changes();
    tokio::time::timeout(
        Duration::from_secs(60),
        states.wait_for(|s| *s == StreamsState::Running),
    )
    .await
    .expect("running in time")
    .expect("running");
    let counts = Arc::new(
        streams
            .key_value_store("counts", Arc::new(StringSerde), Arc::new(I64Serde))
            .expect("store"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = counts.clone();
        let fox = tokio::task::spawn_blocking(move || c.get(&"fox".to_string()))
            .await
            .expect("join");
        if let Ok(Some(2)) = fox {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fox never counted twice: {fox:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    streams.close_async().await.expect("close");
    assert_eq!(streams.state(), StreamsState::NotRunning);
    assert!(
        dir.path()
            .join("service")
            .join("0_0")
            .join(".checkpoint")
            .exists()
            || dir
                .path()
                .join("service")
                .join("0_1")
                .join(".checkpoint")
                .exists(),
        "the close wrote checkpoints"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_returns_the_error_that_stopped_the_application() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_log(dir.path());
    log.create_topic("in", TopicConfig::new(1)).expect("topic");
    log.append(&TopicPartition::new("in", 0), &[Record::new("k", "v", 1)])
        .expect("append");
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::default())
        .foreach(|_, _| panic!("boom"));
    let streams = Streams::new(
        builder.build().expect("topology"),
        StreamsConfig::new("failing", dir.path()),
        log,
    )
    .expect("streams");
    // Never triggered: the application stops by itself.
    let shutdown = Shutdown::new();
    let ran = tokio::time::timeout(Duration::from_secs(60), streams.run_until(shutdown.wait()))
        .await
        .expect("run_until returns once the application failed");
    let error = ran.expect_err("the failure is returned").to_string();
    assert!(error.contains("boom"), "{error}");
    assert_eq!(streams.state(), StreamsState::Error);
}
