#![allow(clippy::unwrap_used)]
//! The batch examples as processes on generated fixtures, each checked against a reference
//! computed here without the engine; and every example's `--describe` against a snapshot
//! (`UPDATE_SNAPSHOTS=1` rewrites them).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use common::*;
use streams_core::partition_for_key;

#[test]
fn lunch_abroad_prices_each_payment_with_the_latest_earlier_rate() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = LunchFixture::write(dir.path(), 300, 500);
    let (rates, payments, expected) = (&fixture.rates, &fixture.payments, &fixture.expected);
    for guarantee in ["at-least-once", "exactly-once"] {
        let state = dir.path().join(guarantee);
        let (ok, out, err) = run(
            env!("CARGO_BIN_EXE_lunch-abroad"),
            &[
                "--rates",
                rates,
                "--payments",
                payments,
                "--partitions",
                "3",
                "--threads",
                "2",
                "--guarantee",
                guarantee,
                "--state-dir",
                state.to_str().unwrap(),
            ],
            "",
        );
        assert!(ok, "{err}");
        assert_eq!(&sorted_lines(&out), expected);
        assert!(err.contains("rates:152: TS_MS `not` is not valid"), "{err}");
        assert!(err.contains("payments:501: expected 4 fields"), "{err}");
    }
}

#[test]
fn word_count_counts_lower_cased_words() {
    let text = "The cat sat.\nthe CAT, the mat!\n\nnaïve café-au-lait 42 42\n";
    let expected = word_counts(text);
    let (ok, out, err) = run(
        env!("CARGO_BIN_EXE_word-count"),
        &["--partitions", "3"],
        text,
    );
    assert!(ok, "{err}");
    assert_eq!(sorted_lines(&out), expected);
    assert!(out.contains("the,3\n") && out.contains("café,1\n"), "{out}");
}

/// Events in file order with bounded disorder: (ts, key, value).
fn events(seed: u64, n: usize) -> Vec<(i64, String, i64)> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let ts = (i as i64) * 37 + rng.below(1500) as i64;
            (ts, format!("k{}", rng.below(6)), rng.below(100) as i64 - 20)
        })
        .collect()
}

/// Kafka Streams' rules computed directly: per partition in file order, a record counts
/// toward window `[s, s+size)` (s a multiple of `advance`, s >= 0) iff `s + size > stream
/// time - grace`, stream time including the record.
fn reference_time_windows(
    events: &[(i64, String, i64)],
    partitions: u32,
    size: i64,
    advance: i64,
    grace: i64,
) -> Vec<String> {
    let mut stream_time: BTreeMap<u32, i64> = BTreeMap::new();
    let mut windows: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
    for (ts, key, value) in events {
        let p = partition_for_key(key.as_bytes(), partitions);
        let st = stream_time.entry(p).or_insert(i64::MIN);
        *st = (*st).max(*ts);
        let mut start = (ts - size + advance).max(0).div_euclid(advance) * advance;
        while start <= *ts {
            if start + size > *ts && start + size > *st - grace {
                let e = windows.entry((start, key.clone())).or_default();
                e.0 += 1;
                e.1 += value;
            }
            start += advance;
        }
    }
    let mut out: Vec<String> = windows
        .into_iter()
        .map(|((s, k), (n, sum))| format!("{s},{},{k},{n},{sum}", s + size))
        .collect();
    out.sort();
    out
}

fn csv(events: &[(i64, String, i64)]) -> String {
    let mut s = String::new();
    for (ts, k, v) in events {
        writeln!(s, "{ts},{k},{v}").unwrap();
    }
    s
}

#[test]
fn windowed_counts_match_a_reference_for_tumbling_and_hopping_windows() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(11, 400);
    let mut text = csv(&events);
    text.push_str("17,missing-value\n");
    let input = write(dir.path(), "events.csv", &text);
    for (args, size, advance, grace) in [
        (
            vec!["--windows", "tumbling", "--size-ms", "1000"],
            1000,
            1000,
            0,
        ),
        (
            vec![
                "--windows",
                "tumbling",
                "--size-ms",
                "1000",
                "--grace-ms",
                "700",
            ],
            1000,
            1000,
            700,
        ),
        (
            vec![
                "--windows",
                "hopping",
                "--size-ms",
                "1000",
                "--advance-ms",
                "300",
                "--grace-ms",
                "500",
            ],
            1000,
            300,
            500,
        ),
    ] {
        let mut all = vec!["--input", &input, "--partitions", "3"];
        all.extend(args.iter().copied());
        let (ok, out, err) = run(env!("CARGO_BIN_EXE_windowed-counts"), &all, "");
        assert!(ok, "{err}");
        assert_eq!(
            sorted_lines(&out),
            reference_time_windows(&events, 3, size, advance, grace),
            "{args:?}"
        );
        assert!(err.contains("input:401: expected 3 fields"), "{err}");
    }
}

#[test]
fn windowed_counts_sums_past_i64_and_refuses_spans_past_the_range_of_time() {
    let dir = tempfile::tempdir().unwrap();
    // Three values of i64::MAX in one window: the sum is exact, neither wrapped nor saturated.
    let events: Vec<(i64, String, i64)> = (0..3).map(|i| (i, "k".to_string(), i64::MAX)).collect();
    let input = write(dir.path(), "events.csv", &csv(&events));
    let (ok, out, err) = run(
        env!("CARGO_BIN_EXE_windowed-counts"),
        &["--input", &input, "--size-ms", "10", "--partitions", "1"],
        "",
    );
    assert!(ok, "{err}");
    let sum = 3 * i128::from(i64::MAX);
    assert_eq!(out, format!("0,10,k,3,{sum}\n"));

    let (ok, _, err) = run(
        env!("CARGO_BIN_EXE_windowed-counts"),
        &[
            "--input",
            &input,
            "--size-ms",
            "10",
            "--grace-ms",
            &(u64::MAX / 2).to_string(),
        ],
        "",
    );
    assert!(!ok);
    assert!(err.contains("size + grace"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_input_file_fails_at_once_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-events.csv");
    let missing = missing.to_str().unwrap();
    let state = dir.path().join("state");
    let (ok, out, err) = run(
        env!("CARGO_BIN_EXE_windowed-counts"),
        &[
            "--input",
            missing,
            "--size-ms",
            "10",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        "",
    );
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("cannot open input file {missing}")),
        "{err}"
    );
    // Nothing was started: no log, no state.
    assert!(!state.exists(), "{err}");
}

#[test]
fn windowed_counts_sessions_match_a_reference() {
    let dir = tempfile::tempdir().unwrap();
    // In time order, so nothing is late: sessions are runs of a key's times at most `gap`
    // apart.
    let mut rng = Rng(5);
    let mut ts = 0;
    let mut events = Vec::new();
    for _ in 0..300 {
        ts += rng.below(400) as i64;
        events.push((ts, format!("k{}", rng.below(4)), rng.below(10) as i64));
    }
    let gap = 500;
    let mut by_key: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for (t, k, v) in &events {
        by_key.entry(k).or_default().push((*t, *v));
    }
    let mut expected = Vec::new();
    for (k, rows) in by_key {
        let (mut start, mut last, mut n, mut sum) = (rows[0].0, rows[0].0, 0, 0);
        for (t, v) in rows {
            if t - last > gap {
                expected.push(format!("{start},{last},{k},{n},{sum}"));
                (start, n, sum) = (t, 0, 0);
            }
            last = t;
            n += 1;
            sum += v;
        }
        expected.push(format!("{start},{last},{k},{n},{sum}"));
    }
    expected.sort();
    let input = write(dir.path(), "events.csv", &csv(&events));
    let (ok, out, err) = run(
        env!("CARGO_BIN_EXE_windowed-counts"),
        &[
            "--input",
            &input,
            "--windows",
            "session",
            "--gap-ms",
            "500",
            "--partitions",
            "2",
        ],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(sorted_lines(&out), expected);
}

#[test]
fn describe_output_matches_the_snapshots() {
    let snapshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let cases: [(&str, &str, &[&str]); 6] = [
        ("exchange-rates", env!("CARGO_BIN_EXE_exchange-rates"), &[]),
        ("lunch-abroad", env!("CARGO_BIN_EXE_lunch-abroad"), &[]),
        ("word-count", env!("CARGO_BIN_EXE_word-count"), &[]),
        (
            "windowed-counts-tumbling",
            env!("CARGO_BIN_EXE_windowed-counts"),
            &[],
        ),
        (
            "windowed-counts-hopping",
            env!("CARGO_BIN_EXE_windowed-counts"),
            &["--windows", "hopping", "--advance-ms", "250"],
        ),
        (
            "windowed-counts-session",
            env!("CARGO_BIN_EXE_windowed-counts"),
            &["--windows", "session"],
        ),
    ];
    for (name, bin, extra) in cases {
        let mut args = vec!["--describe"];
        args.extend_from_slice(extra);
        let (ok, out, err) = run(bin, &args, "");
        assert!(ok, "{name}: {err}");
        let path = snapshots.join(format!("{name}.txt"));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(&snapshots).unwrap();
            std::fs::write(&path, &out).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "no snapshot {}; run with UPDATE_SNAPSHOTS=1",
                path.display()
            )
        });
        assert_eq!(
            out, want,
            "{name}: --describe changed (UPDATE_SNAPSHOTS=1 to accept)"
        );
    }
}

#[test]
fn every_example_has_help() {
    for bin in [
        env!("CARGO_BIN_EXE_exchange-rates"),
        env!("CARGO_BIN_EXE_lunch-abroad"),
        env!("CARGO_BIN_EXE_word-count"),
        env!("CARGO_BIN_EXE_windowed-counts"),
    ] {
        let (ok, out, _) = run(bin, &["--help"], "");
        assert!(ok);
        for option in [
            "--config",
            "KSTREAMS_NUM_STREAM_THREADS",
            "--state-dir",
            "--threads",
            "--guarantee",
            "--describe",
            "--bootstrap-servers",
            "--kafka-property",
            "--application-id",
            "--topic-prefix",
        ] {
            assert!(out.contains(option), "{bin} --help lacks {option}");
        }
    }
}

/// Settings from `--config FILE` and from environment variables (clap's `env`), a flag over
/// the file, and bad values reported with the key and where they came from.
#[test]
fn settings_come_from_a_config_file_and_the_environment() {
    let bin = env!("CARGO_BIN_EXE_word-count");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("from-file");
    let config = write(
        dir.path(),
        "wc.properties",
        &format!(
            "# word-count\nstate.dir = {}\nnum.stream.threads: 3\ncommit.interval.ms = 50ms\n",
            state.display()
        ),
    );
    let (ok, out, err) = run(bin, &["--config", &config], "the fox\nthe dog\n");
    assert!(ok, "{err}");
    assert_eq!(sorted_lines(&out), vec!["dog,1", "fox,1", "the,2"]);
    assert!(
        state.join("log").is_dir(),
        "the state dir of the file was used"
    );

    let bad = write(dir.path(), "bad.properties", "num.stream.threads=lots\n");
    let (ok, _, err) = run(bin, &["--config", &bad], "a\n");
    assert!(!ok);
    assert!(
        err.contains("num.stream.threads")
            && err.contains("`lots`")
            && err.contains("bad.properties"),
        "{err}"
    );
    // A flag wins over the file.
    let (ok, out, err) = run(bin, &["--config", &bad, "--threads", "1"], "a\n");
    assert!(ok, "{err}");
    assert_eq!(out, "a,1\n");

    let typo = write(dir.path(), "typo.properties", "num.stream.thread=2\n");
    let (ok, _, err) = run(bin, &["--config", &typo], "a\n");
    assert!(!ok);
    assert!(err.contains("num.stream.thread"), "{err}");

    let out = std::process::Command::new(bin)
        .env("KSTREAMS_NUM_STREAM_THREADS", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("num.stream.threads"), "{err}");
}
