#![allow(clippy::unwrap_used)]
//! Test-driver tests of windowed aggregations, suppression and stream–stream joins on
//! hand-made out-of-order inputs, with exact expected outputs: records exactly on window
//! boundaries and exactly at the grace limit included.

use std::time::Duration;

use streams_core::{
    DriverConfig, Error, I64Serde, InternalTopicKind, OptionSerde, StringSerde, TestDriver,
};
use streams_dsl::prelude::*;
use streams_dsl::{
    KGroupedStream, SessionStoreView, Window, WindowStoreView, WindowedSerde,
    MAX_WINDOWS_PER_RECORD,
};

fn s(x: &str) -> String {
    x.to_string()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pipe(d: &mut TestDriver, topic: &str, k: &str, v: &str, ts: i64) {
    d.pipe_typed(topic, &StringSerde, &StringSerde, &s(k), &s(v), ts)
        .unwrap();
}

/// `(key, start, end, count, timestamp)` of each windowed update written to `topic`.
fn time(size_ms: u64) -> WindowedSerde<String> {
    WindowedSerde::time(StringSerde, ms(size_ms))
}

fn session() -> WindowedSerde<String> {
    WindowedSerde::session(StringSerde)
}

/// Keys are read with `keys` (the format of the topic's windows).
fn windowed_out(
    d: &mut TestDriver,
    topic: &str,
    keys: WindowedSerde<String>,
) -> Vec<(String, i64, i64, Option<i64>, i64)> {
    d.read_output_typed(topic, &keys, &OptionSerde(I64Serde))
        .unwrap()
        .into_iter()
        .map(|(w, v, ts)| (w.key, w.window.start, w.window.end, v, ts))
        .collect()
}

/// A count per key over `windowed`, written uncached to `out`.
fn count_topology(
    windowed: impl FnOnce(KGroupedStream<String, String>) -> KTable<Windowed<String>, i64>,
) -> Topology {
    let b = StreamsBuilder::new();
    let grouped = b
        .stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred());
    windowed(grouped)
        .to_stream()
        .to("out", Produced::inferred());
    b.build().unwrap()
}

#[test]
fn tumbling_counts_with_grace_out_of_order() {
    let topo = count_topology(|g| {
        g.windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)))
            .count(Materialized::named("counts").with_caching(false))
    });
    let mut d = TestDriver::new(&topo).unwrap();
    // 10 starts the second window; 9 is 1 ms before the first one's end, in grace; the second
    // 9 arrives when stream time is 15 = end 10 + grace 5: late, exactly at the limit.
    for ts in [0, 10, 9, 15, 9, 14] {
        pipe(&mut d, "in", "a", "", ts);
    }
    assert_eq!(
        windowed_out(&mut d, "out", time(10)),
        vec![
            (s("a"), 0, 10, Some(1), 0),
            (s("a"), 10, 20, Some(1), 10),
            (s("a"), 0, 10, Some(2), 9),
            (s("a"), 10, 20, Some(2), 15),
            (s("a"), 10, 20, Some(3), 15),
        ]
    );
    assert_eq!(d.metrics().dropped_for("late"), 1);
}

#[test]
fn hopping_counts_only_open_windows() {
    let topo = count_topology(|g| {
        g.windowed_by(TimeWindows::of_size_with_no_grace(ms(10)).advance_by(ms(5)))
            .count(Materialized::named("counts").with_caching(false))
    });
    let mut d = TestDriver::new(&topo).unwrap();
    // At stream time 10, [0, 10) is closed (end + 0 <= 10): 4 reaches only closed windows
    // and is late; 5 starts [5, 15) (open) and also falls in closed [0, 10), which it skips.
    for ts in [7, 10, 4, 5] {
        pipe(&mut d, "in", "a", "", ts);
    }
    assert_eq!(
        windowed_out(&mut d, "out", time(10)),
        vec![
            (s("a"), 0, 10, Some(1), 7),
            (s("a"), 5, 15, Some(1), 7),
            (s("a"), 5, 15, Some(2), 10),
            (s("a"), 10, 20, Some(1), 10),
            (s("a"), 5, 15, Some(3), 10),
        ]
    );
    assert_eq!(d.metrics().dropped_for("late"), 1);
}

#[test]
fn sliding_windows_follow_the_records() {
    let topo = count_topology(|g| {
        g.windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(ms(10), ms(20)))
            .count(Materialized::named("counts").with_caching(false))
    });
    let mut d = TestDriver::new(&topo).unwrap();
    for ts in [10, 15, 30, 12] {
        pipe(&mut d, "in", "a", "", ts);
    }
    // The latest window a record at -1 can be in, [-1, 9], ends (exclusive) at 10, and
    // 10 + grace 20 = 30 <= stream time 30: late, exactly at the limit.
    pipe(&mut d, "in", "a", "", -1);
    assert_eq!(
        windowed_out(&mut d, "out", time(11)),
        vec![
            // 10: its left window [0, 10].
            (s("a"), 0, 11, Some(1), 10),
            // In Kafka Streams' order: the existing windows a record joins, latest start
            // first, then the previous record's new right window, the record's left window
            // and its right window.
            // 15: right window of 10: [11, 21]; left window [5, 15] seeded from [0, 10].
            (s("a"), 11, 22, Some(1), 15),
            (s("a"), 5, 16, Some(2), 15),
            // 30: alone in [20, 30].
            (s("a"), 20, 31, Some(1), 30),
            // 12 (out of order): it joins [11, 21] and [5, 15]; its left window [2, 12]
            // holds 10 and 12; its right window [13, 23] holds 15.
            (s("a"), 11, 22, Some(2), 15),
            (s("a"), 5, 16, Some(3), 15),
            (s("a"), 2, 13, Some(2), 12),
            (s("a"), 13, 24, Some(1), 15),
        ]
    );
    assert_eq!(d.metrics().dropped_for("late"), 1);
}

#[test]
fn sessions_merge_and_respect_grace() {
    let topo = count_topology(|g| {
        g.windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(5), ms(5)))
            .count(Materialized::named("sessions"))
    });
    let mut d = TestDriver::new(&topo).unwrap();
    // The store keeps a session for gap + grace = 10 after its end, by the latest end written
    // (10): at 5, [0] ended 10 ago and is gone, as in Kafka Streams' session store, so 5 merges
    // with [10] only. 3 extends [5, 10]. 16 starts a new session (6 after 10). 4 falls inside
    // [3, 10]: its last record 10 + gap 5 + grace 5 = 20 is not before stream time 16 (Kafka
    // Streams' rule: late once end < stream time - grace - gap); the session is deleted and
    // written anew, as Kafka Streams does. 21 is exactly `gap` after 16 and extends its session.
    // 9 would extend [3, 10] again, but now 20 < stream time 21: late. (The same input through
    // Kafka Streams 4.4's TopologyTestDriver gives the same records.)
    for ts in [0, 10, 5, 3, 16, 4, 21, 9] {
        pipe(&mut d, "in", "a", "", ts);
    }
    assert_eq!(
        windowed_out(&mut d, "out", session()),
        vec![
            (s("a"), 0, 1, Some(1), 0),
            (s("a"), 10, 11, Some(1), 10),
            (s("a"), 10, 11, None, 10),
            (s("a"), 5, 11, Some(2), 10),
            (s("a"), 5, 11, None, 10),
            (s("a"), 3, 11, Some(3), 10),
            (s("a"), 16, 17, Some(1), 16),
            (s("a"), 3, 11, None, 10),
            (s("a"), 3, 11, Some(4), 10),
            (s("a"), 16, 17, None, 16),
            (s("a"), 16, 22, Some(2), 21),
        ]
    );
    assert_eq!(d.metrics().dropped_for("late"), 1);
    // [3, 10] ended more than gap + grace before the store's time, 21: no longer found.
    let view = SessionStoreView::new(d.session_store("sessions").unwrap(), StringSerde, I64Serde);
    assert_eq!(view.fetch(&s("a")).unwrap(), vec![(Window::new(16, 22), 2)]);
}

#[test]
fn suppress_emits_one_final_result_per_window() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)))
        .count(Materialized::named("counts"))
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .to("out", Produced::inferred());
    let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
    for (k, ts) in [("a", 1), ("a", 12), ("a", 8), ("b", 3)] {
        pipe(&mut d, "in", k, "", ts);
    }
    assert!(d.read_output("out").is_empty(), "no window has closed yet");
    // Stream time 15 = end 10 + grace 5: [0, 10) closes for both keys.
    pipe(&mut d, "in", "a", "", 15);
    // Late for [0, 10), which has been emitted: changes nothing.
    pipe(&mut d, "in", "a", "", 9);
    pipe(&mut d, "in", "a", "", 30);
    assert_eq!(
        windowed_out(&mut d, "out", time(10)),
        vec![
            (s("a"), 0, 10, Some(2), 8),
            (s("b"), 0, 10, Some(1), 3),
            (s("a"), 10, 20, Some(2), 15),
        ]
    );
    assert_eq!(d.metrics().dropped_for("late"), 1);
}

/// Windowed counts of `in` (size 10, grace 5) suppressed until their windows close.
fn final_counts_topology() -> Topology {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)))
        .count(Materialized::named("counts"))
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()).named("final"))
        .to_stream()
        .to("out", Produced::inferred());
    b.build().unwrap()
}

#[test]
fn suppress_emits_windows_buffered_across_a_restart_once() {
    let topo = final_counts_topology();
    for local_state in [true, false] {
        let restart = |d: TestDriver| {
            if local_state {
                d.restart(&topo).unwrap()
            } else {
                d.restart_without_local_state(&topo).unwrap()
            }
        };
        let mut d = TestDriver::new(&topo).unwrap();
        for (k, ts) in [("a", 1), ("b", 3), ("a", 12)] {
            pipe(&mut d, "in", k, "", ts);
        }
        assert!(d.read_output("out").is_empty(), "no window has closed yet");
        let mut d = restart(d);
        assert!(
            d.read_output("out").is_empty(),
            "a restart closes no window"
        );
        // Stream time 15 closes [0, 10), 40 closes [10, 20): both were buffered before the
        // restart.
        pipe(&mut d, "in", "a", "", 15);
        pipe(&mut d, "in", "b", "", 40);
        assert_eq!(
            windowed_out(&mut d, "out", time(10)),
            vec![
                (s("a"), 0, 10, Some(1), 1),
                (s("b"), 0, 10, Some(1), 3),
                (s("a"), 10, 20, Some(2), 15),
            ],
            "local state kept: {local_state}"
        );
        // What was emitted left the buffer for good: after another restart only the window
        // still open then, [40, 50), is emitted.
        let mut d = restart(d);
        pipe(&mut d, "in", "a", "", 60);
        assert_eq!(
            windowed_out(&mut d, "out", time(10)),
            vec![(s("b"), 40, 50, Some(1), 40)],
            "local state kept: {local_state}"
        );
    }
    // The buffer's store is named after the node, and so is its changelog.
    let described = topo.describe().to_string();
    assert!(
        described.contains("Processor: final (stores: [final-store])"),
        "{described}"
    );
    assert_eq!(
        topo.internal_topics().get("final-store-changelog"),
        Some(&InternalTopicKind::Changelog)
    );
}

#[test]
fn suppress_waits_for_the_updates_a_cache_holds_back() {
    let topo = final_counts_topology();
    let config = DriverConfig::default().with_commit_every_record(false);
    let mut d = TestDriver::with_config(&topo, config).unwrap();
    pipe(&mut d, "in", "a", "", 1);
    d.commit().unwrap();
    // The count cache forwards in the order keys became dirty: b's [0, 10) before a's second
    // update, and b's [20, 30), whose record closed [0, 10), last.
    pipe(&mut d, "in", "b", "", 2);
    pipe(&mut d, "in", "a", "", 3);
    pipe(&mut d, "in", "b", "", 20);
    d.commit().unwrap();
    pipe(&mut d, "in", "c", "", 100);
    d.commit().unwrap();
    assert_eq!(
        windowed_out(&mut d, "out", time(10)),
        vec![
            (s("a"), 0, 10, Some(2), 3),
            (s("b"), 0, 10, Some(1), 2),
            (s("b"), 20, 30, Some(1), 20),
        ],
        "each window once, with every update counted"
    );
}

#[test]
fn suppression_buffer_bounds_count_what_a_restart_restored() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .suppress(Suppressed::until_time_limit(
            ms(100),
            BufferConfig::max_records(1),
        ))
        .to_stream()
        .to("out", Produced::with(StringSerde, OptionSerde(I64Serde)));
    let topo = b.build().unwrap();
    let mut d = TestDriver::new(&topo).unwrap();
    pipe(&mut d, "in", "a", "", 0);
    pipe(&mut d, "in", "a", "", 1);
    let mut d = d.restart_without_local_state(&topo).unwrap();
    pipe(&mut d, "in", "b", "", 2);
    let out = d
        .read_output_typed("out", &StringSerde, &OptionSerde(I64Serde))
        .unwrap();
    assert_eq!(out, vec![(s("a"), Some(2), 1)], "a is pushed out by b");
}

#[test]
fn suppress_final_results_of_sessions_skip_merged_ones() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(ms(5)))
        .count(Materialized::named("sessions"))
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .to("out", Produced::inferred());
    let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
    for ts in [0, 4, 2, 20, 40] {
        pipe(&mut d, "in", "a", "", ts);
    }
    assert_eq!(
        windowed_out(&mut d, "out", session()),
        vec![(s("a"), 0, 5, Some(3), 4), (s("a"), 20, 21, Some(1), 20)]
    );
}

#[test]
fn suppress_until_time_limit_rate_limits_each_key() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred())
        .count(Materialized::named("counts"))
        .suppress(Suppressed::until_time_limit(
            ms(10),
            BufferConfig::unbounded(),
        ))
        .to_stream()
        .to("out", Produced::with(StringSerde, OptionSerde(I64Serde)));
    let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
    for (k, ts) in [("a", 0), ("a", 5), ("b", 6), ("a", 10), ("a", 20)] {
        pipe(&mut d, "in", k, "", ts);
    }
    let out = d
        .read_output_typed("out", &StringSerde, &OptionSerde(I64Serde))
        .unwrap();
    // a's timer started at 0 and ends at 10; b's started at 6 and ends at 16 (reached at
    // 20); a's next update (20) starts a new timer.
    assert_eq!(out, vec![(s("a"), Some(3), 10), (s("b"), Some(1), 6)]);
}

#[test]
fn full_suppression_buffer_emits_early_or_fails_as_chosen() {
    let topology = |buffer: BufferConfig| {
        let b = StreamsBuilder::new();
        b.stream::<String, String>("in", Consumed::default())
            .group_by_key(Grouped::inferred())
            .count(Materialized::named("counts"))
            .suppress(Suppressed::until_time_limit(ms(100), buffer))
            .to_stream()
            .to("out", Produced::with(StringSerde, OptionSerde(I64Serde)));
        b.build().unwrap()
    };
    let mut d = TestDriver::new(&topology(BufferConfig::max_records(1))).unwrap();
    for (k, ts) in [("a", 0), ("a", 1), ("b", 2)] {
        pipe(&mut d, "in", k, "", ts);
    }
    let out = d
        .read_output_typed("out", &StringSerde, &OptionSerde(I64Serde))
        .unwrap();
    assert_eq!(out, vec![(s("a"), Some(2), 1)], "a is pushed out by b");

    let mut d = TestDriver::new(&topology(BufferConfig::max_records(1).fail_when_full())).unwrap();
    pipe(&mut d, "in", "a", "", 0);
    let err = d
        .pipe_typed("in", &StringSerde, &StringSerde, &s("b"), &s(""), 1)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Processing { reason, .. } if reason.contains("suppression buffer is full")),
        "{err}"
    );
}

#[test]
fn final_results_cannot_be_emitted_early() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_with_no_grace(ms(10)))
        .count(Materialized::inferred())
        .suppress(Suppressed::until_window_closes(
            BufferConfig::max_records(10).emit_early_when_full(),
        ));
    assert!(matches!(b.build(), Err(Error::Config { .. })));

    // A table keyed by windows that no windowed aggregation made has no windows to close.
    let b = StreamsBuilder::new();
    b.table::<Windowed<String>, i64>(
        "t",
        Consumed::with(time(10), I64Serde),
        Materialized::inferred(),
    )
    .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()));
    let err = b.build().unwrap_err();
    assert!(err.to_string().contains("windowed aggregation"), "{err}");
}

#[test]
fn retention_shorter_than_the_windows_need_is_rejected() {
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)))
        .count(Materialized::named("counts").with_retention(ms(14)));
    let err = b.build().unwrap_err();
    assert!(err.to_string().contains("shorter than the 15 ms"), "{err}");

    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::default())
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_with_no_grace(ms(10)).advance_by(ms(11)))
        .count(Materialized::inferred());
    assert!(matches!(b.build(), Err(Error::Config { .. })));
}

#[test]
fn hopping_windows_that_would_stall_the_thread_are_refused() {
    let windows = |advance| {
        let b = StreamsBuilder::new();
        b.stream::<String, String>("in", Consumed::default())
            .group_by_key(Grouped::inferred())
            .windowed_by(
                TimeWindows::of_size_with_no_grace(ms(100_000_000)).advance_by(ms(advance)),
            )
            .count(Materialized::inferred());
        b.build()
    };
    let err = windows(1).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("100000000 windows"), "{text}");
    assert!(
        text.contains(&format!("at most {MAX_WINDOWS_PER_RECORD}")),
        "{text}"
    );
    // The most windows per record that is allowed builds.
    assert!(windows(100_000_000 / MAX_WINDOWS_PER_RECORD as u64).is_ok());
}

#[test]
fn cached_windowed_counts_merge_between_commits() {
    let topo = count_topology(|g| {
        g.windowed_by(TimeWindows::of_size_with_no_grace(ms(10)))
            .count(Materialized::named("counts").in_memory())
    });
    let config = DriverConfig::default().with_commit_every_record(false);
    let mut d = TestDriver::with_config(&topo, config).unwrap();
    for ts in [1, 2, 3, 11] {
        pipe(&mut d, "in", "a", "", ts);
    }
    assert!(d.read_output("out").is_empty());
    d.commit().unwrap();
    let mut out = windowed_out(&mut d, "out", time(10));
    out.sort();
    assert_eq!(
        out,
        vec![(s("a"), 0, 10, Some(3), 3), (s("a"), 10, 20, Some(1), 11)]
    );
    let view = WindowStoreView::new(d.window_store("counts").unwrap(), StringSerde, I64Serde, 10);
    assert_eq!(
        view.fetch(&s("a"), 0, 100).unwrap(),
        vec![(Window::new(10, 20), 1)]
    );
    assert_eq!(view.latest_timestamp(&s("a"), 10).unwrap(), Some(11));
}

/// Number of `segment.*` directories of RocksDB store `store` in this process's test drivers.
fn segment_dirs(store: &str) -> usize {
    let prefix = format!("streams-test-driver-{}-", std::process::id());
    let mut n = 0;
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let dir = entry.path().join("test-app").join("0_0").join(store);
        if let Ok(segments) = std::fs::read_dir(dir) {
            n += segments
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("segment."))
                })
                .count();
        }
    }
    n
}

#[test]
fn window_store_stays_bounded_on_an_endless_stream() {
    const MINUTE: i64 = 60_000;
    let topo = count_topology(|g| {
        g.windowed_by(TimeWindows::of_size_with_no_grace(ms(MINUTE as u64)))
            .count(Materialized::named("bounded-counts-rocks"))
    });
    let mut d = TestDriver::new(&topo).unwrap();
    let keys = ["a", "b", "c", "d", "e"];
    let mut most_entries = 0;
    let mut most_segments = 0;
    for window in 0..120 {
        for (i, k) in keys.iter().enumerate() {
            for j in 0..3 {
                pipe(
                    &mut d,
                    "in",
                    k,
                    "",
                    window * MINUTE + (i as i64) * 1_000 + j * 10_000,
                );
            }
        }
        let store = d.window_store("bounded-counts-rocks").unwrap();
        let entries = store.borrow().all().unwrap().count();
        most_entries = most_entries.max(entries);
        most_segments = most_segments.max(segment_dirs("bounded-counts-rocks"));
    }
    // Retention = size + grace = 1 minute, segments of 1 minute: at most two windows per key
    // are ever kept, and at most three segments exist on disk, whatever the stream's length.
    assert!(most_entries <= 2 * keys.len(), "{most_entries} entries");
    assert!((1..=3).contains(&most_segments), "{most_segments} segments");
    let out = windowed_out(&mut d, "out", time(MINUTE as u64));
    assert_eq!(out.len(), 120 * keys.len() * 3);
}

#[test]
fn stream_joins_inner_left_outer() {
    fn show(v: Option<&String>) -> String {
        v.cloned().unwrap_or_else(|| s("-"))
    }
    let run = |kind: &str| {
        let b = StreamsBuilder::new();
        let left = b.stream::<String, String>("left", Consumed::default());
        let right = b.stream::<String, String>("right", Consumed::default());
        let windows = JoinWindows::of_time_difference_with_no_grace(ms(10));
        let joined = match kind {
            "inner" => left.join_stream(
                &right,
                |l, r| format!("{l}+{r}"),
                windows,
                StreamJoined::inferred(),
            ),
            "left" => left.left_join_stream(
                &right,
                |l, r| format!("{l}+{}", show(r)),
                windows,
                StreamJoined::inferred(),
            ),
            _ => left.outer_join_stream(
                &right,
                |l, r| format!("{}+{}", show(l), show(r)),
                windows,
                StreamJoined::inferred().in_memory(),
            ),
        };
        joined.to("out", Produced::default());
        let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
        // Join windows of 10 ms either way, no grace: each side keeps 20 ms.
        pipe(&mut d, "left", "k", "a", 0);
        pipe(&mut d, "right", "k", "x", 5); // joins a
        pipe(&mut d, "left", "j", "b", 20); // no match yet: waits until 20 + 10 < stream time
        pipe(&mut d, "right", "k", "y", 12); // out of order, within its window; no match
        pipe(&mut d, "left", "k", "c", 25); // no match; y's window closed (12 + 10 < 25)
        pipe(&mut d, "right", "j", "z", 31); // b's window closed (20 + 10 < 31)
        pipe(&mut d, "left", "k", "d", 14); // late, but y (12) is still kept: joins y
        pipe(&mut d, "left", "m", "f", 15); // window ended (15 + 10 < 31), no match: at once
        d.read_output_typed("out", &StringSerde, &StringSerde)
            .unwrap()
    };
    assert_eq!(
        run("inner"),
        vec![(s("k"), s("a+x"), 5), (s("k"), s("d+y"), 14)]
    );
    assert_eq!(
        run("left"),
        vec![
            (s("k"), s("a+x"), 5),
            (s("j"), s("b+-"), 20),
            (s("k"), s("d+y"), 14),
            (s("m"), s("f+-"), 15)
        ]
    );
    assert_eq!(
        run("outer"),
        vec![
            (s("k"), s("a+x"), 5),
            (s("k"), s("-+y"), 12),
            (s("j"), s("b+-"), 20),
            (s("k"), s("d+y"), 14),
            (s("m"), s("f+-"), 15)
        ]
    );
}

#[test]
fn stream_join_sides_wait_for_their_own_window() {
    // before 2, after 10, grace 3: a left record waits for right records up to t + 10 (+ 3),
    // a right record for left records up to t + 2 (+ 3).
    let b = StreamsBuilder::new();
    let left = b.stream::<String, String>("left", Consumed::default());
    let right = b.stream::<String, String>("right", Consumed::default());
    let windows = JoinWindows::of_time_difference_and_grace(ms(10), ms(3)).before(ms(2));
    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| s("-"));
    left.outer_join_stream(
        &right,
        move |l, r| format!("{}+{}", show(l), show(r)),
        windows,
        StreamJoined::inferred(),
    )
    .to("out", Produced::default());
    let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
    pipe(&mut d, "left", "a", "l", 100);
    pipe(&mut d, "right", "b", "r", 100);
    let steps = [
        (105, vec![]),
        (106, vec![(s("b"), s("-+r"), 100)]),
        (113, vec![]),
        (114, vec![(s("a"), s("l+-"), 100)]),
    ];
    for (t, closes) in steps {
        pipe(&mut d, "left", "tick", "t", t);
        let out = d
            .read_output_typed("out", &StringSerde, &StringSerde)
            .unwrap();
        let out: Vec<_> = out.into_iter().filter(|(k, _, _)| k != "tick").collect();
        assert_eq!(out, closes, "at stream time {t}");
    }
}

#[test]
fn window_spans_past_the_range_of_time_are_build_errors() {
    let huge = Duration::from_millis(i64::MAX as u64);
    let build_error = |add: &dyn Fn(KGroupedStream<String, String>)| {
        let b = StreamsBuilder::new();
        add(b
            .stream::<String, String>("in", Consumed::default())
            .group_by_key(Grouped::inferred()));
        match b.build() {
            Err(Error::Config { reason, .. }) => reason,
            other => panic!("expected a config error, got {other:?}"),
        }
    };
    let reason = build_error(&|g| {
        g.windowed_by(TimeWindows::of_size_and_grace(ms(10), huge))
            .count(Materialized::inferred());
    });
    assert!(reason.contains("size + grace"), "{reason}");
    let reason = build_error(&|g| {
        g.windowed_by_sliding(SlidingWindows::of_time_difference_with_no_grace(
            Duration::from_millis(i64::MAX as u64 / 2),
        ))
        .count(Materialized::inferred());
    });
    assert!(reason.contains("time difference"), "{reason}");
    let reason = build_error(&|g| {
        g.windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(5), huge))
            .count(Materialized::inferred());
    });
    assert!(reason.contains("gap + grace"), "{reason}");

    let b = StreamsBuilder::new();
    let l = b.stream::<String, String>("l", Consumed::default());
    let r = b.stream::<String, String>("r", Consumed::default());
    l.join_stream(
        &r,
        |a, b| format!("{a}{b}"),
        JoinWindows::of_time_difference_and_grace(ms(10), huge),
        StreamJoined::inferred(),
    )
    .to("out", Produced::default());
    let err = b.build().unwrap_err().to_string();
    assert!(err.contains("before + after + grace"), "{err}");
}

#[test]
fn records_whose_windows_pass_the_range_of_time_are_errors_naming_them() {
    let run = |add: &dyn Fn(KGroupedStream<String, String>), ts: i64| {
        let b = StreamsBuilder::new();
        add(b
            .stream::<String, String>("in", Consumed::default())
            .group_by_key(Grouped::inferred()));
        let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
        pipe(&mut d, "in", "k", "", 1_000);
        d.pipe_typed("in", &StringSerde, &StringSerde, &s("k"), &s(""), ts)
            .unwrap_err()
            .to_string()
    };
    let tumbling = |g: KGroupedStream<String, String>| {
        g.windowed_by(TimeWindows::of_size_with_no_grace(ms(10)))
            .count(Materialized::inferred());
    };
    let err = run(&tumbling, i64::MAX - 5);
    assert!(
        err.contains(&format!("timestamp {} ms", i64::MAX - 5)),
        "{err}"
    );
    assert!(err.contains("in-0@1"), "names the record: {err}");
    let sliding = |g: KGroupedStream<String, String>| {
        g.windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(
            ms(10),
            ms(i64::MAX as u64 / 4),
        ))
        .count(Materialized::inferred());
    };
    let err = run(&sliding, i64::MIN + 3);
    assert!(
        err.contains(&format!("timestamp {} ms", i64::MIN + 3)),
        "{err}"
    );
    let sessions = |g: KGroupedStream<String, String>| {
        g.windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(ms(10)))
            .count(Materialized::inferred());
    };
    let err = run(&sessions, i64::MAX);
    assert!(err.contains("i64::MAX"), "{err}");
}

/// A join buffer keeps a record at `t` while `t + before + after + grace` is after the largest
/// timestamp its side has seen, as Kafka Streams' join window stores (retention
/// `before + after + grace`): a right record exactly that far behind is gone and joins nothing.
#[test]
fn stream_join_buffers_end_exactly_at_their_retention() {
    let b = StreamsBuilder::new();
    let left = b.stream::<String, String>("left", Consumed::default());
    let right = b.stream::<String, String>("right", Consumed::default());
    left.join_stream(
        &right,
        |l, r| format!("{l}+{r}"),
        JoinWindows::of_time_difference_and_grace(ms(5), ms(2)).after(ms(3)),
        StreamJoined::inferred(),
    )
    .to("out", Produced::default());
    let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
    pipe(&mut d, "right", "a", "r0", 100);
    // The right side's time reaches 100 + 5 + 3 + 2 = 110: r0 has left its buffer.
    pipe(&mut d, "right", "b", "r1", 110);
    pipe(&mut d, "left", "a", "l0", 99);
    // One millisecond earlier, r0 would still be there.
    pipe(&mut d, "right", "a", "r2", 101);
    pipe(&mut d, "right", "c", "r3", 110);
    pipe(&mut d, "left", "a", "l1", 100);
    assert_eq!(
        d.read_output_typed("out", &StringSerde, &StringSerde)
            .unwrap(),
        vec![(s("a"), s("l0+r2"), 101), (s("a"), s("l1+r2"), 101),]
    );
}

/// Windows that close together leave the suppression buffer in the order of their keys'
/// bytes, as from Kafka Streams' time-ordered buffer, whatever order they were updated in.
#[test]
fn suppressed_windows_closing_together_come_out_in_key_order() {
    let topo = count_topology(|g| {
        g.windowed_by(TimeWindows::of_size_with_no_grace(ms(10)))
            .count(Materialized::named("counts").with_caching(false))
            .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
    });
    let mut d = TestDriver::new(&topo).unwrap();
    for (k, ts) in [("c", 1), ("a", 2), ("b", 3), ("a", 4), ("z", 10)] {
        pipe(&mut d, "in", k, "", ts);
    }
    assert_eq!(
        windowed_out(&mut d, "out", time(10)),
        vec![
            (s("a"), 0, 10, Some(2), 4),
            (s("b"), 0, 10, Some(1), 3),
            (s("c"), 0, 10, Some(1), 1),
        ]
    );
}

/// Windowed aggregations and `suppress` close windows by the largest timestamp that reached
/// them, as Kafka Streams' do: a record the task read but filtered out before the
/// aggregation (here at 100) closes nothing.
#[test]
fn windows_close_by_the_time_that_reached_the_aggregation_not_the_task() {
    let b = StreamsBuilder::new();
    let counts = b
        .stream::<String, String>("in", Consumed::default())
        .filter(|_, v| v != "skip")
        .group_by_key(Grouped::inferred())
        .windowed_by(TimeWindows::of_size_with_no_grace(ms(10)))
        .count(Materialized::named("counts").with_caching(false));
    counts
        .to_stream()
        .to("out", Produced::with(time(10), OptionSerde(I64Serde)));
    counts
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .to("final", Produced::with(time(10), OptionSerde(I64Serde)));
    let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
    pipe(&mut d, "in", "a", "x", 5);
    pipe(&mut d, "in", "b", "skip", 100);
    // The task's stream time is 100, the aggregation's 5: [0, 10) is still open.
    pipe(&mut d, "in", "a", "x", 6);
    assert_eq!(
        windowed_out(&mut d, "out", time(10)),
        vec![(s("a"), 0, 10, Some(1), 5), (s("a"), 0, 10, Some(2), 6)]
    );
    assert_eq!(d.metrics().dropped_for("late"), 0);
    assert!(
        windowed_out(&mut d, "final", time(10)).is_empty(),
        "emitted before it closed"
    );
    // A record that reaches the aggregation at 10 closes [0, 10), and suppress emits it.
    pipe(&mut d, "in", "a", "x", 10);
    d.commit().unwrap();
    assert_eq!(
        windowed_out(&mut d, "final", time(10)),
        vec![(s("a"), 0, 10, Some(2), 6)]
    );
}
