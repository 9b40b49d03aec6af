#![allow(clippy::unwrap_used)]
//! Properties of windowed operators, each checked against a plain-Rust reference computed
//! from the same records: suppressed final window counts, sliding and session windows, and
//! stream–stream joins (a nested loop over both sides).

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use streams_core::{I64Serde, OptionSerde, StringSerde, TestDriver};
use streams_dsl::prelude::*;
use streams_dsl::{SessionStoreView, Window, WindowStoreView, WindowedSerde};

fn ms(n: i64) -> Duration {
    Duration::from_millis(n as u64)
}

/// Events `(key, timestamp)` with bounded disorder: times advance by `0..step` and each is
/// then moved back by up to `disorder`.
fn events(n: usize) -> impl Strategy<Value = Vec<(u8, i64)>> {
    (1i64..8, 0i64..25).prop_flat_map(move |(step, disorder)| {
        prop::collection::vec((0u8..3, 0..step, 0..=disorder), 1..n).prop_map(move |v| {
            let mut now = 100;
            v.into_iter()
                .map(|(k, adv, back)| {
                    now += adv;
                    (k, now - back)
                })
                .collect()
        })
    })
}

fn pipe(d: &mut TestDriver, topic: &str, key: &str, value: &str, ts: i64) {
    d.pipe_typed(
        topic,
        &StringSerde,
        &StringSerde,
        &key.to_string(),
        &value.to_string(),
        ts,
    )
    .unwrap();
}

/// Final counts per (key, window) by stream-time rules: a record counts in each of its
/// windows still open when it arrives; a window is final once `end + grace <= stream time`.
fn reference_final_counts(
    events: &[(u8, i64)],
    windows: TimeWindows,
) -> BTreeMap<(String, i64, i64), i64> {
    let grace = windows.grace_ms();
    let mut stream_time = i64::MIN;
    let mut counts: BTreeMap<(String, i64, i64), i64> = BTreeMap::new();
    for &(k, ts) in events {
        stream_time = stream_time.max(ts);
        for w in windows.windows_for(ts) {
            if w.end + grace > stream_time {
                *counts.entry((k.to_string(), w.start, w.end)).or_default() += 1;
            }
        }
    }
    counts.retain(|&(_, _, end), _| end + grace <= stream_time);
    counts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn suppressed_final_counts_match_the_reference(
        events in events(60),
        size in 1i64..20,
        advance_div in 1i64..4,
        grace in 0i64..15,
        caching: bool,
    ) {
        let advance = (size / advance_div).max(1);
        let windows = TimeWindows::of_size_and_grace(ms(size), ms(grace)).advance_by(ms(advance));
        let b = StreamsBuilder::new();
        b.stream::<String, String>("in", Consumed::default())
            .group_by_key(Grouped::inferred())
            .windowed_by(windows)
            .count(Materialized::named("counts").in_memory().with_caching(caching))
            .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
            .to_stream()
            .to("out", Produced::inferred());
        let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
        for &(k, ts) in &events {
            pipe(&mut d, "in", &k.to_string(), "", ts);
        }
        let out = d
            .read_output_typed("out", &WindowedSerde::time(StringSerde, ms(size)), &OptionSerde(I64Serde))
            .unwrap();
        let mut got = BTreeMap::new();
        for (w, count, _) in out {
            let previous = got.insert((w.key, w.window.start, w.window.end), count.unwrap());
            prop_assert!(previous.is_none(), "a window was emitted twice");
        }
        prop_assert_eq!(got, reference_final_counts(&events, windows));
    }

    /// With a grace longer than the stream, sliding windows hold exactly KIP-450's windows:
    /// for each record time `t`, `[t - d, t]`, and `[t + 1, t + 1 + d]` when a record lies in
    /// `(t, t + d]`; each counting the records in it.
    #[test]
    fn sliding_windows_match_the_reference(
        times in prop::collection::vec(0i64..120, 1..40),
        d in 1i64..15,
    ) {
        let windows = SlidingWindows::of_time_difference_and_grace(ms(d), ms(1_000_000));
        let b = StreamsBuilder::new();
        b.stream::<String, String>("in", Consumed::default())
            .group_by_key(Grouped::inferred())
            .windowed_by_sliding(windows)
            .count(Materialized::named("sliding").in_memory());
        let mut d_ = TestDriver::new(&b.build().unwrap()).unwrap();
        for &ts in &times {
            pipe(&mut d_, "in", "k", "", ts);
        }
        let view = WindowStoreView::new(
            d_.window_store("sliding").unwrap(),
            StringSerde,
            I64Serde,
            windows.window_size_ms(),
        );
        let got: BTreeMap<(i64, i64), i64> = view
            .fetch(&"k".to_string(), i64::MIN / 2, i64::MAX / 2)
            .unwrap()
            .into_iter()
            .map(|(w, n)| ((w.start, w.end), n))
            .collect();
        let count_in = |lo: i64, hi: i64| times.iter().filter(|&&t| lo <= t && t <= hi).count() as i64;
        let mut expected = BTreeMap::new();
        for &t in &times {
            expected.insert((t - d, t + 1), count_in(t - d, t));
            if times.iter().any(|&u| t < u && u <= t + d) {
                expected.insert((t + 1, t + d + 2), count_in(t + 1, t + 1 + d));
            }
        }
        prop_assert_eq!(got, expected);
    }

    /// With a grace longer than the stream, sessions are the runs of sorted record times whose
    /// neighbours are at most `gap` apart.
    #[test]
    fn sessions_match_the_reference(
        times in prop::collection::vec(0i64..200, 1..40),
        gap in 1i64..15,
    ) {
        let b = StreamsBuilder::new();
        b.stream::<String, String>("in", Consumed::default())
            .group_by_key(Grouped::inferred())
            .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(gap), ms(1_000_000)))
            .count(Materialized::named("sessions").in_memory());
        let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
        for &ts in &times {
            pipe(&mut d, "in", "k", "", ts);
        }
        let view = SessionStoreView::new(d.session_store("sessions").unwrap(), StringSerde, I64Serde);
        let mut got = view.fetch(&"k".to_string()).unwrap();
        got.sort();
        let mut sorted = times.clone();
        sorted.sort();
        let mut expected: Vec<(Window, i64)> = Vec::new();
        for t in sorted {
            match expected.last_mut() {
                Some((w, n)) if t - (w.end - 1) <= gap => {
                    w.end = t + 1;
                    *n += 1;
                }
                _ => expected.push((Window::new(t, t + 1), 1)),
            }
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn stream_joins_match_the_reference(
        events in prop::collection::vec((any::<bool>(), 0u8..2, 0i64..6, 0i64..12), 1..40),
        before in 0i64..8,
        after in 0i64..8,
        grace in 0i64..6,
        kind in 0u8..3,
    ) {
        // Events: (left?, key, advance, lateness).
        let mut now = 50;
        let events: Vec<(bool, String, i64, String)> = events
            .into_iter()
            .enumerate()
            .map(|(i, (left, k, adv, back))| {
                now += adv;
                (left, k.to_string(), now - back, format!("{}{i}", if left { "L" } else { "R" }))
            })
            .collect();
        let b = StreamsBuilder::new();
        let l = b.stream::<String, String>("left", Consumed::default());
        let r = b.stream::<String, String>("right", Consumed::default());
        let windows = JoinWindows::of_time_difference_and_grace(ms(0), ms(grace))
            .before(ms(before))
            .after(ms(after));
        let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "-".to_string());
        let joined = match kind {
            0 => l.join_stream(&r, |a, b| format!("{a}+{b}"), windows, StreamJoined::inferred().in_memory()),
            1 => l.left_join_stream(&r, move |a, b| format!("{a}+{}", show(b)), windows, StreamJoined::inferred().in_memory()),
            _ => l.outer_join_stream(&r, move |a, b| format!("{}+{}", show(a), show(b)), windows, StreamJoined::inferred().in_memory()),
        };
        joined.to("out", Produced::default());
        let mut d = TestDriver::new(&b.build().unwrap()).unwrap();
        for (left, k, ts, v) in &events {
            pipe(&mut d, if *left { "left" } else { "right" }, k, v, *ts);
        }
        let mut got = d.read_output_typed("out", &StringSerde, &StringSerde).unwrap();
        got.sort();

        // Reference: Kafka Streams' rules (see `JoinWindows`), simulated record by record.
        // Each side keeps a record at t while t + before + after + grace is after the largest
        // timestamp it has seen (Kafka Streams' join buffers, retention before + after +
        // grace); the join's stream time is the largest timestamp of both sides.
        let span = before + after + grace;
        let emits = |left: bool| if left { kind >= 1 } else { kind == 2 };
        let unmatched = |left: bool, k: &str, ts: i64, v: &str| {
            let text = if left { format!("{v}+-") } else { format!("-+{v}") };
            (k.to_string(), text, ts)
        };
        let mut join_time = i64::MIN;
        let mut kept: [Vec<(String, i64, String)>; 2] = [Vec::new(), Vec::new()];
        let mut side_max = [i64::MIN; 2];
        // (left?, key, ts, value) of records waiting for a match.
        let mut waiting: Vec<(bool, String, i64, String)> = Vec::new();
        let mut expected = Vec::new();
        for (left, k, ts, v) in &events {
            let (left, ts) = (*left, *ts);
            join_time = join_time.max(ts);
            let (own, other) = if left { (0, 1) } else { (1, 0) };
            let (look_back, look_ahead) = if left { (before, after) } else { (after, before) };
            if ts == join_time {
                waiting.retain(|(wl, wk, wts, wv)| {
                    let reach = if *wl { after } else { before };
                    let closed = wts + reach + grace < join_time;
                    if closed {
                        expected.push(unmatched(*wl, wk, *wts, wv));
                    }
                    !closed
                });
            }
            let matches: Vec<(String, i64, String)> = kept[other]
                .iter()
                .filter(|(ok, ots, _)| {
                    ok == k
                        && *ots > side_max[other] - span
                        && *ots >= ts - look_back
                        && *ots <= ts + look_ahead
                })
                .cloned()
                .collect();
            for (_, ots, ov) in &matches {
                let text = if left { format!("{v}+{ov}") } else { format!("{ov}+{v}") };
                expected.push((k.clone(), text, ts.max(*ots)));
                waiting.retain(|(wl, wk, wts, _)| !(*wl != left && wk == k && wts == ots));
            }
            side_max[own] = side_max[own].max(ts);
            if ts >= side_max[own] - span {
                kept[own].push((k.clone(), ts, v.clone()));
            }
            if matches.is_empty() && emits(left) {
                if ts + look_ahead < join_time {
                    expected.push(unmatched(left, k, ts, v));
                } else {
                    waiting.push((left, k.clone(), ts, v.clone()));
                }
            }
        }
        expected.sort();
        prop_assert_eq!(got, expected);
    }
}
