#![allow(clippy::unwrap_used)]
//! Stream time survives a restart: the runtime commits each task's stream time with its
//! input offsets (as Kafka Streams keeps partition time in offset metadata) and resumes from
//! it, so a record that is late before a restart is late after it too, and a closed window
//! is never reopened.

mod common;

use std::time::Duration;

use common::{open_log, read_topic};
use streams_core::{I64Serde, OptionSerde, ProcessingGuarantee, Serde, Streams, StreamsConfig};
use streams_dsl::prelude::*;
use streams_dsl::{TimeWindows, WindowedSerde};

const WAIT: Duration = Duration::from_secs(60);

fn run(dir: &std::path::Path, log: std::sync::Arc<EmbeddedLog>, guarantee: ProcessingGuarantee) {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("clicks", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(
            10,
        )))
        .count(Materialized::named("clicks-per-10ms").with_caching(false))
        .to_stream()
        .to("counts", Produced::inferred());
    let config = StreamsConfig::new("stream-time", dir)
        .with_guarantee(guarantee)
        .with_commit_interval(Duration::from_millis(20));
    let streams = Streams::new(b.build().unwrap(), config, log).unwrap();
    streams.start().unwrap();
    streams.wait_until_caught_up(WAIT).unwrap();
    streams.close().unwrap();
}

/// `(window start, count)` of every update written for key `k`.
fn updates(log: &EmbeddedLog) -> Vec<(i64, Option<i64>)> {
    let keys = WindowedSerde::time(StringSerde, Duration::from_millis(10));
    read_topic(log, "counts")
        .concat()
        .iter()
        .map(|r| {
            let w = keys.deserialize(r.key.as_deref().unwrap()).unwrap();
            let n = OptionSerde(I64Serde)
                .deserialize_nullable(r.value.as_deref())
                .unwrap()
                .flatten();
            (w.window.start, n)
        })
        .collect()
}

#[test]
fn a_record_late_before_a_restart_is_late_after_it() {
    for guarantee in [
        ProcessingGuarantee::AtLeastOnce,
        ProcessingGuarantee::ExactlyOnce,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path());
        log.create_topic("clicks", TopicConfig::new(1)).unwrap();
        let clicks = TopicPartition::new("clicks", 0);
        log.append(
            &clicks,
            &[Record::new("k", "", 1), Record::new("k", "", 100)],
        )
        .unwrap();
        run(dir.path(), log.clone(), guarantee);
        assert_eq!(updates(&log), vec![(0, Some(1)), (100, Some(1))]);

        // Window [0, 10) closed at stream time 100: a record at 5 is late, restart or not.
        log.append(
            &clicks,
            &[Record::new("k", "", 5), Record::new("k", "", 101)],
        )
        .unwrap();
        run(dir.path(), log.clone(), guarantee);
        assert_eq!(
            updates(&log),
            vec![(0, Some(1)), (100, Some(1)), (100, Some(2))],
            "{guarantee:?}"
        );
    }
}
