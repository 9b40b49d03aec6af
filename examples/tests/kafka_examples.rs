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

/// Runs `streams-log` with `args` on `log` (`--log-dir DIR` or `--bootstrap-servers ...`).
fn log_tool(log: &[String], args: &[&str], stdin: &str) -> String {
    let mut all: Vec<&str> = log.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    let (ok, out, err) = run(env!("CARGO_BIN_EXE_streams-log"), &all, stdin);
    assert!(ok, "streams-log {all:?} failed: {err}");
    assert_eq!(err, "", "streams-log {all:?} complained");
    out
}

/// The whitespace-separated fields of the row of `table` whose first field is `first`.
fn row(table: &str, first: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|fields| fields.first().is_some_and(|f| f == first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{table}"))
}

#[test]
fn kafka_log_tool_commands_print_what_they_print_on_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = vec![
        "--log-dir".to_string(),
        dir.path().join("log").display().to_string(),
    ];
    let kafka = vec![
        "--bootstrap-servers".to_string(),
        kafka_broker::bootstrap_servers().to_string(),
    ];
    let topic = kafka_broker::unique("tool");
    let compacted = kafka_broker::unique("tool-compact");
    let group = kafka_broker::unique("tool-group");
    let input = "a,1\nb,2\nc,3\na,4\nd,5\n";
    // `partition,offset,timestamp,key,value` of each record, as `consume` prints them.
    let mut expected: Vec<String> = Vec::new();
    for p in 0..3 {
        let mut offset = 0;
        for l in input.lines() {
            let (k, v) = l.split_once(',').unwrap();
            if streams_core::partition_for_key(k.as_bytes(), 3) == p {
                expected.push(format!("{p},{offset},1000,{k},{v}"));
                offset += 1;
            }
        }
    }
    let ends: Vec<usize> = (0..3u32)
        .map(|p| {
            expected
                .iter()
                .filter(|l| l.starts_with(&format!("{p},")))
                .count()
        })
        .collect();
    let busiest = (0..3).max_by_key(|&p| ends[p]).unwrap().to_string();
    // One session of commands, run on both logs: every output must be the same.
    let session = |log: &[String]| -> Vec<String> {
        let mut outputs = vec![
            log_tool(log, &["create", &topic, "--partitions", "3"], ""),
            log_tool(
                log,
                &["create", &topic, "--partitions", "3", "--if-not-exists"],
                "",
            ),
            log_tool(
                log,
                &["create", &compacted, "--partitions", "1", "--compact"],
                "",
            ),
            log_tool(log, &["produce", &topic, "--timestamp-ms", "1000"], input),
            log_tool(
                log,
                &["produce", &compacted, "--timestamp-ms", "2000"],
                "k,v\n",
            ),
            log_tool(log, &["consume", &topic], ""),
            log_tool(log, &["consume", &compacted, "--format", "json"], ""),
            log_tool(
                log,
                &["consume", &topic, "--from-timestamp", "1000", "--max", "2"],
                "",
            ),
        ];
        // Offsets: a rewind of one partition, then another to the end.
        outputs.push(log_tool(
            log,
            &[
                "reset-offsets",
                &group,
                "--topic",
                &topic,
                "--to-earliest",
                "--dry-run",
            ],
            "",
        ));
        outputs.push(log_tool(
            log,
            &[
                "reset-offsets",
                &group,
                "--topic",
                &topic,
                "--to-offset",
                "1",
                "--partition",
                &busiest,
            ],
            "",
        ));
        outputs.push(log_tool(log, &["offsets", &group], ""));
        outputs.push(log_tool(log, &["consume", &topic, "--group", &group], ""));
        outputs.push(log_tool(
            log,
            &["reset-offsets", &group, "--topic", &topic, "--to-latest"],
            "",
        ));
        outputs.push(log_tool(log, &["offsets", &group], ""));
        outputs
    };
    let on_embedded = session(&embedded);
    let on_kafka = session(&kafka);
    for (i, (e, k)) in on_embedded.iter().zip(&on_kafka).enumerate() {
        assert_eq!(k, e, "command {i} printed differently on Kafka");
    }
    // What the session printed, checked exactly where it does not depend on the log.
    assert_eq!(
        on_kafka[0],
        format!(
            "created topic `{topic}`: 3 partitions, cleanup.policy=delete, retention.ms=604800000\n"
        )
    );
    assert_eq!(on_kafka[3], format!("appended 5 records to `{topic}`\n"));
    assert_eq!(on_kafka[5], format!("{}\n", expected.join("\n")));
    assert_eq!(
        on_kafka[6],
        "{\"partition\":0,\"offset\":0,\"timestamp\":2000,\"key\":\"k\",\"value\":\"v\",\"headers\":[]}\n"
    );

    // Describe: the same settings and offsets; Kafka has no segments or bytes to show.
    let described = log_tool(&kafka, &["describe", &topic], "");
    let settings: Vec<&str> = described.lines().take(7).collect();
    assert_eq!(
        settings,
        [
            format!("topic                {topic}").as_str(),
            "partitions           3",
            "cleanup.policy       delete",
            "retention.ms         604800000",
            "retention.bytes      none",
            "delete.retention.ms  86400000",
            "segment.bytes        67108864",
        ]
    );
    let mut partitions = String::from("PARTITION  START  END  STABLE-END\n");
    for (p, end) in ends.iter().enumerate() {
        partitions.push_str(&format!("{p}          0      {end}    {end}\n"));
    }
    assert!(
        described.ends_with(&format!("\n{partitions}")),
        "{described}"
    );

    // Listings hold other tests' topics and groups too: this test's rows.
    let topics = log_tool(&kafka, &["topics"], "");
    assert_eq!(row(&topics, "TOPIC"), ["TOPIC", "PARTITIONS", "CLEANUP"]);
    assert_eq!(row(&topics, &topic), [topic.as_str(), "3", "delete"]);
    assert_eq!(
        row(&topics, &compacted),
        [compacted.as_str(), "1", "compact"]
    );
    let groups = log_tool(&kafka, &["groups"], "");
    assert_eq!(row(&groups, "GROUP"), ["GROUP", "TOPICS", "LAG"]);
    assert_eq!(row(&groups, &group), [group.as_str(), topic.as_str(), "0"]);

    // Over SASL_SSL with SCRAM, through --kafka-property: the same description.
    let listener = kafka_broker::sasl_ssl();
    let ca = format!("ssl.ca.location={}", listener.ca_location.display());
    let secure = [
        "--bootstrap-servers",
        &listener.servers,
        "--kafka-property",
        "security.protocol=SASL_SSL",
        "--kafka-property",
        "sasl.mechanism=SCRAM-SHA-512",
        "--kafka-property",
        "sasl.username=alice",
        "--kafka-property",
        "sasl.password=alice-secret",
        "--kafka-property",
        &ca,
    ]
    .map(String::from);
    assert_eq!(log_tool(&secure, &["describe", &topic], ""), described);

    // An unknown topic: the same error on both.
    let unknown = kafka_broker::unique("tool-missing");
    let failed = |log: &[String]| {
        let mut all: Vec<&str> = log.iter().map(String::as_str).collect();
        all.extend(["describe", &unknown]);
        let (ok, _, err) = run(env!("CARGO_BIN_EXE_streams-log"), &all, "");
        assert!(!ok);
        err
    };
    assert_eq!(failed(&kafka), failed(&embedded));
}

/// `application-reset` and `delete` on Kafka: the group's input offsets go back to the start,
/// the application's internal topics are deleted (and only those), the local state under
/// `--state-dir` is removed; other commands refuse `--state-dir` beside
/// `--bootstrap-servers`.
#[test]
fn kafka_log_tool_resets_an_application_and_deletes_topics() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = vec![
        "--bootstrap-servers".to_string(),
        kafka_broker::bootstrap_servers().to_string(),
    ];
    let app = kafka_broker::unique("reset-tool");
    let input = format!("{app}-in");
    let changelog = format!("{app}-counts-changelog");
    let repartition = format!("{app}-by-word-repartition");
    let output = format!("{app}-output");
    log_tool(&kafka, &["create", &input, "--partitions", "1"], "");
    log_tool(
        &kafka,
        &["create", &changelog, "--partitions", "1", "--compact"],
        "",
    );
    log_tool(&kafka, &["create", &repartition, "--partitions", "1"], "");
    log_tool(&kafka, &["create", &output, "--partitions", "1"], "");
    log_tool(
        &kafka,
        &["produce", &input, "--timestamp-ms", "1000"],
        "a,1\nb,2\n",
    );
    log_tool(
        &kafka,
        &["reset-offsets", &app, "--topic", &input, "--to-latest"],
        "",
    );
    let local = dir.path().join(&app);
    std::fs::create_dir_all(local.join("0_0").join("counts")).unwrap();

    let state = dir.path().display().to_string();
    let mut refused: Vec<&str> = kafka.iter().map(String::as_str).collect();
    refused.extend(["--state-dir", &state, "topics"]);
    let (ok, _, err) = run(env!("CARGO_BIN_EXE_streams-log"), &refused, "");
    assert!(!ok);
    assert!(err.contains("only application-reset takes it"), "{err}");

    let reset = [
        "--state-dir",
        &state,
        "application-reset",
        "--application-id",
        &app,
        "--input-topics",
        &input,
    ];
    let out = log_tool(&kafka, &reset, "");
    let mut internal = [repartition.clone(), changelog.clone()];
    internal.sort();
    assert_eq!(
        out,
        format!(
            "moved offsets of group `{app}`:\n\
             TOPIC{pad}  PARTITION  OLD  NEW\n\
             {input}  0          2    0\n\
             deleted internal topics:\n  {}\n  {}\n\
             removed local state in {}:\n  0_0\n",
            internal[0],
            internal[1],
            local.display(),
            pad = " ".repeat(input.len() - "TOPIC".len()),
        )
    );
    assert!(!local.join("0_0").exists());
    let topics = log_tool(&kafka, &["topics"], "");
    assert!(
        topics.contains(&input) && topics.contains(&output),
        "{topics}"
    );
    assert!(
        !topics.contains(&changelog) && !topics.contains(&repartition),
        "{topics}"
    );
    assert_eq!(
        row(&log_tool(&kafka, &["offsets", &app], ""), &input)[2],
        "0"
    );

    assert_eq!(
        log_tool(&kafka, &["delete", &output], ""),
        format!("deleted topic `{output}`\n")
    );
    assert!(!log_tool(&kafka, &["topics"], "").contains(&output));

    // A member in the group (as a running instance would be): both resets refuse, naming it.
    struct Quiet;
    impl streams_core::RebalanceListener for Quiet {
        fn revoked(&self, _: &[streams_core::TopicPartition], _: bool) {}
        fn assigned(&self, _: &[streams_core::TopicPartition]) {}
        fn failed(&self, _: streams_core::Error) {}
    }
    let member_log = kafka_broker::connect();
    let membership = streams_core::Log::join_group(
        &member_log,
        &app,
        std::slice::from_ref(&input),
        "test-member",
        std::sync::Arc::new(Quiet),
    )
    .unwrap()
    .unwrap();
    let started = std::time::Instant::now();
    let refusal = |args: &[&str]| -> Option<String> {
        let mut all: Vec<&str> = kafka.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        let (ok, _, err) = run(env!("CARGO_BIN_EXE_streams-log"), &all, "");
        (!ok).then_some(err)
    };
    let offsets_reset = ["reset-offsets", &app, "--topic", &input, "--to-earliest"];
    // The member is in the group's description once its join completes; while it joins,
    // the broker refuses the tool's commit instead, which the tool says too.
    let err = loop {
        match refusal(&offsets_reset) {
            Some(err) if err.contains("is joining group") => {}
            Some(err) => break err,
            None => {}
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "reset-offsets kept succeeding with a member in the group"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        err.contains("active member") && err.contains("test-member"),
        "{err}"
    );
    let err = refusal(&reset).unwrap_or_else(|| panic!("application-reset with a member"));
    assert!(
        err.contains("active member") && err.contains("test-member"),
        "{err}"
    );
    membership.leave().unwrap();
}
