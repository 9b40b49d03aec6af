#![allow(clippy::unwrap_used)]
//! The batch examples as processes on Apache Kafka (`--bootstrap-servers`): the
//! same input gives the same output as on the embedded log, and a run refuses topics an
//! earlier run filled. The broker is `KAFKA_BOOTSTRAP_SERVERS`, or one started for this test
//! binary; when none can be started the tests fail.

mod common;
#[path = "../../streams-core/tests/support/kafka_broker.rs"]
mod kafka_broker;

use std::fmt::Write as _;

use common::*;

/// The flags that put a run on the test broker, its topics behind a prefix no other run
/// uses.
fn on_kafka(prefix: &str) -> Vec<String> {
    vec![
        "--bootstrap-servers".into(),
        kafka_broker::bootstrap_servers().into(),
        "--topic-prefix".into(),
        format!("{}-", kafka_broker::unique(prefix)),
    ]
}

/// Runs `bin` with `args`, then again with `args` and `kafka`; both must succeed and print
/// the same lines (in any order). Returns them, sorted.
fn same_on_both(bin: &str, args: &[&str], kafka: &[String], stdin: &str) -> Vec<String> {
    let (ok, embedded, err) = run(bin, args, stdin);
    assert!(ok, "embedded: {err}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(kafka.iter().map(String::as_str));
    let (ok, on_kafka, err) = run(bin, &all, stdin);
    assert!(ok, "kafka: {err}");
    let lines = sorted_lines(&on_kafka);
    assert_eq!(lines, sorted_lines(&embedded), "kafka and embedded differ");
    lines
}

#[test]
fn kafka_lunch_abroad_prints_what_it_prints_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = LunchFixture::write(dir.path(), 120, 200);
    let args = [
        "--rates",
        &fixture.rates,
        "--payments",
        &fixture.payments,
        "--partitions",
        "3",
    ];
    let lines = same_on_both(
        env!("CARGO_BIN_EXE_lunch-abroad"),
        &args,
        &on_kafka("lunch"),
        "",
    );
    assert_eq!(lines, fixture.expected);
}

#[test]
fn kafka_word_count_prints_what_it_prints_on_the_embedded_log() {
    let mut rng = Rng(3);
    let words = ["alpha", "Beta", "GAMMA", "delta", "épée", "42"];
    let mut text = String::new();
    for _ in 0..200 {
        for _ in 0..rng.below(8) {
            write!(text, "{}, ", words[rng.below(words.len() as u64) as usize]).unwrap();
        }
        text.push('\n');
    }
    let lines = same_on_both(
        env!("CARGO_BIN_EXE_word-count"),
        &["--partitions", "3"],
        &on_kafka("words"),
        &text,
    );
    assert_eq!(lines, word_counts(&text));
}

/// Seeded event streams with out-of-order and late records, through tumbling, hopping and
/// session windows, on one and three partitions and two threads (so tasks move between
/// threads as they start): Kafka prints exactly the final results the embedded log prints.
#[test]
fn kafka_windowed_counts_prints_what_it_prints_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let kinds: [&[&str]; 3] = [
        &["--windows", "tumbling", "--size-ms", "1000"],
        &[
            "--windows",
            "hopping",
            "--size-ms",
            "1000",
            "--advance-ms",
            "250",
        ],
        &["--windows", "session", "--gap-ms", "300"],
    ];
    for (case, seed) in [11u64, 12, 13].into_iter().enumerate() {
        let mut rng = Rng(seed);
        let mut events = String::new();
        for i in 0..300 {
            // Up to 1.5 s out of order against 500 ms of grace: some records are late.
            let ts = 1 + i * 37 + rng.below(1500) as i64;
            writeln!(events, "{ts},k{},{}", rng.below(6), rng.below(100)).unwrap();
        }
        let input = write(dir.path(), &format!("events-{seed}.csv"), &events);
        for partitions in ["1", "3"] {
            let mut args = vec![
                "--input",
                &input,
                "--partitions",
                partitions,
                "--grace-ms",
                "500",
                "--threads",
                "2",
            ];
            args.extend_from_slice(kinds[case % kinds.len()]);
            let lines = same_on_both(
                env!("CARGO_BIN_EXE_windowed-counts"),
                &args,
                &on_kafka(&format!("windows-{seed}-{partitions}")),
                "",
            );
            assert!(lines.len() > 10, "{lines:?}");
            // Final results only: one line per key and window.
            let mut windows: Vec<&str> = lines
                .iter()
                .map(|l| l.rsplitn(3, ',').nth(2).unwrap_or_default())
                .collect();
            windows.dedup();
            assert_eq!(
                windows.len(),
                lines.len(),
                "a window printed twice: {lines:?}"
            );
        }
    }
}

#[test]
fn kafka_runs_refuse_topics_an_earlier_run_filled() {
    let bin = env!("CARGO_BIN_EXE_word-count");
    let text = "one two\nthree one\n";
    let kafka = on_kafka("again");
    let app = kafka_broker::unique("word-count-app");
    let with = |kafka: &[String], app: &str| {
        let mut args: Vec<String> = vec!["--partitions".into(), "2".into()];
        args.extend_from_slice(kafka);
        args.extend(["--application-id".into(), app.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(bin, &args, text)
    };
    let (ok, out, err) = with(&kafka, &app);
    assert!(ok, "{err}");
    assert_eq!(sorted_lines(&out), word_counts(text));

    // The same input topic: its records are the first run's.
    let (ok, _, err) = with(&kafka, &kafka_broker::unique("word-count-app"));
    assert!(!ok);
    assert!(
        err.contains("lines` on ") && err.contains("already holds records"),
        "{err}"
    );
    assert!(err.contains("--topic-prefix"), "{err}");

    // New topics, but the first run's application id: its repartition topic and changelog
    // hold the first run's records.
    let (ok, _, err) = with(&on_kafka("again"), &app);
    assert!(!ok);
    assert!(
        err.contains(&format!("application `{app}` ran before")),
        "{err}"
    );
    assert!(err.contains("--application-id"), "{err}");

    // New topics and no application id: a run of its own.
    let (ok, out, err) = run(
        bin,
        &on_kafka("again")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        text,
    );
    assert!(ok, "{err}");
    assert_eq!(sorted_lines(&out), word_counts(text));
}

#[test]
fn kafka_word_count_runs_over_sasl_ssl_with_scram() {
    let bin = env!("CARGO_BIN_EXE_word-count");
    let listener = kafka_broker::sasl_ssl();
    let text = "secure words\nwords over tls\n";
    let secure = |password: &str| {
        let ca = format!("ssl.ca.location={}", listener.ca_location.display());
        let password = format!("sasl.password={password}");
        let prefix = format!("{}-", kafka_broker::unique("secure"));
        let args: Vec<String> = [
            "--partitions",
            "2",
            "--bootstrap-servers",
            &listener.servers,
            "--topic-prefix",
            &prefix,
            "--kafka-property",
            "security.protocol=SASL_SSL",
            "--kafka-property",
            "sasl.mechanism=SCRAM-SHA-512",
            "--kafka-property",
            "sasl.username=alice",
            "--kafka-property",
            &password,
            "--kafka-property",
            &ca,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(bin, &args, text)
    };
    let (ok, out, err) = secure("alice-secret");
    assert!(ok, "{err}");
    assert_eq!(sorted_lines(&out), word_counts(text));
    assert!(!err.contains("alice-secret"), "{err}");

    // A wrong password: the run stops at once, saying why, without the password.
    let started = std::time::Instant::now();
    let (ok, _, err) = secure("not-the-secret");
    assert!(!ok);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}
