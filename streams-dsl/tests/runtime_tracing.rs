#![allow(clippy::unwrap_used)]
//! What an application logs, read as a user's subscriber sees it: the lines of stream threads,
//! tasks and restores carry their spans, children of the span that started the application;
//! a stream of bad records logs one warning per interval, not one per record.

mod common;

use std::time::Duration;

use common::logs::logs;
use common::*;
use streams_core::{
    partition_for_key, I64Serde, Log, Record, RecordErrorHandler, StringSerde, TopicConfig,
    TopicPartition,
};
use streams_core::{Streams, StreamsConfig};
use streams_dsl::prelude::*;

const WAIT: Duration = Duration::from_secs(120);

fn lines_with(what: &[&str]) -> Vec<String> {
    logs()
        .lines()
        .filter(|l| what.iter().all(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

fn append(log: &dyn Log, records: &[(String, Vec<u8>)]) {
    for (i, (key, value)) in records.iter().enumerate() {
        let p = partition_for_key(key.as_bytes(), 1);
        let record = Record::new(key.as_bytes().to_vec(), value.clone(), i as i64);
        log.append(&TopicPartition::new("input", p), &[record])
            .unwrap();
    }
}

#[test]
fn threads_tasks_and_restores_log_inside_their_spans_under_the_callers() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let app = "traced-app";
    let run = |restart: bool| {
        let log = open_log(dir.path());
        if !restart {
            write_input(&*log, "input", 1, 50, 5);
        }
        let config = StreamsConfig::new(app, dir.path());
        let streams = Streams::new(counting_topology(), config, log).unwrap();
        let service = tracing::info_span!("service", name = "counter");
        service.in_scope(|| streams.start()).unwrap();
        streams.wait_until_caught_up(WAIT).unwrap();
        streams.close().unwrap();
    };
    run(false);
    // Local state gone: the next start restores the counts from the changelog.
    std::fs::remove_dir_all(dir.path().join(app).join("0_0")).unwrap();
    run(true);

    let thread =
        format!("service{{name=\"counter\"}}:stream_thread{{thread={app}-StreamThread-1}}");
    let started = lines_with(&[&thread, "stream thread started"]);
    assert!(
        !started.is_empty(),
        "the thread's span is a child of the caller's:\n{}",
        logs()
    );
    let running = lines_with(&[
        &format!("{thread}:task{{task=0_0}}"),
        "task restored and running",
    ]);
    assert_eq!(
        running.len(),
        2,
        "a task's lines carry its span:\n{}",
        logs()
    );
    let replayed = lines_with(&[
        &format!(
            "{thread}:task{{task=0_0}}:restore{{store=counts changelog={app}-counts-changelog-0}}"
        ),
        "changelog replayed",
    ]);
    assert_eq!(
        replayed.len(),
        1,
        "the restore's lines carry its span:\n{}",
        logs()
    );
}

#[test]
fn a_stream_of_bad_records_logs_one_warning_per_interval() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let app = "bad-records-app";
    let log = open_log(dir.path());
    log.create_topic("input", TopicConfig::new(1)).unwrap();
    // Values of 3 bytes, where the topology reads 8-byte integers: every record is bad.
    let bad: Vec<(String, Vec<u8>)> = (0..1_000)
        .map(|i| (format!("k{i}"), vec![1, 2, 3]))
        .collect();
    append(&*log, &bad);
    let b = StreamsBuilder::new();
    b.stream::<String, i64>("input", Consumed::with(StringSerde, I64Serde))
        .to("out", Produced::with(StringSerde, I64Serde));
    let config = StreamsConfig::new(app, dir.path())
        .with_deserialization_handler(RecordErrorHandler::LogAndContinue);
    let streams = Streams::new(b.build().unwrap(), config, log).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    let skipped: u64 = streams
        .metrics()
        .tasks
        .values()
        .map(|t| t.counters.skipped_deserialization)
        .sum();
    streams.close().unwrap();

    assert_eq!(skipped, 1_000, "every bad record is counted");
    let warnings = lines_with(&[
        " WARN ",
        &format!("{app}-StreamThread"),
        "skipping a record",
    ]);
    // The run takes far less than the interval (10 s): one warning, the first.
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("held_back=0"), "{}", warnings[0]);
}
