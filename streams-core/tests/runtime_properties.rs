//! `StreamsConfig` (and `KafkaLogConfig`) from Kafka-style properties: every documented key
//! from a map, a Java properties file and environment variables; bad values rejected naming
//! the key, its origin and the value; durations as milliseconds or in human form.

use std::time::Duration;

use streams_core::{
    Error, OffsetReset, ProcessingGuarantee, Properties, RecordErrorHandler, StreamsConfig,
};

/// Every key of the documented table, each with a value other than its default.
const ALL: &[(&str, &str)] = &[
    ("application.id", "orders"),
    ("state.dir", "/var/lib/orders"),
    ("num.stream.threads", "3"),
    ("commit.interval.ms", "250"),
    ("processing.guarantee", "exactly_once_v2"),
    ("statestore.cache.max.bytes", "1048576"),
    ("rocksdb.memory.bytes", "33554432"),
    ("rocksdb.memtable.bytes", "8388608"),
    ("max.poll.records", "200"),
    ("buffered.records.per.partition", "400"),
    ("poll.ms", "7"),
    ("task.timeout.ms", "2min"),
    ("auto.offset.reset", "latest"),
    ("max.task.failures", "9"),
    ("retry.backoff.ms", "50ms"),
    ("retry.backoff.max.ms", "3s"),
    (
        "deserialization.exception.handler",
        "LogAndContinueExceptionHandler",
    ),
    ("production.exception.handler", "dead-letter"),
    ("errors.dead.letter.queue.topic.name", "orders-dlq"),
];

/// The settings of `c` that `ALL` sets, as text, to compare configurations.
fn fields(c: &StreamsConfig) -> Vec<String> {
    vec![
        c.application_id.clone(),
        c.state_dir.display().to_string(),
        c.threads.to_string(),
        format!("{:?}", c.commit_interval),
        c.guarantee.to_string(),
        c.cache_max_bytes.to_string(),
        c.rocksdb_memory_bytes.to_string(),
        c.rocksdb_memtable_bytes.to_string(),
        c.max_poll_records.to_string(),
        c.max_buffered_records.to_string(),
        format!("{:?}", c.poll_idle),
        format!("{:?}", c.task_timeout),
        format!("{:?}", c.offset_reset),
        c.max_task_failures.to_string(),
        format!("{:?}", c.retry_backoff),
        format!("{:?}", c.retry_backoff_max),
        format!("{:?}", c.deserialization),
        format!("{:?}", c.production),
    ]
}

fn env_name(key: &str) -> String {
    format!("KSTREAMS_{}", key.to_uppercase().replace('.', "_"))
}

#[test]
fn every_documented_property_from_a_map() {
    let c =
        StreamsConfig::from_properties(&Properties::from_map(ALL.iter().copied())).expect("valid");
    assert_eq!(c.application_id, "orders");
    assert_eq!(c.state_dir, std::path::PathBuf::from("/var/lib/orders"));
    assert_eq!(c.threads, 3);
    assert_eq!(c.commit_interval, Duration::from_millis(250));
    assert_eq!(c.guarantee, ProcessingGuarantee::ExactlyOnce);
    assert_eq!(c.cache_max_bytes, 1 << 20);
    assert_eq!(c.rocksdb_memory_bytes, 32 << 20);
    assert_eq!(c.rocksdb_memtable_bytes, 8 << 20);
    assert_eq!(c.max_poll_records, 200);
    assert_eq!(c.max_buffered_records, 400);
    assert_eq!(c.poll_idle, Duration::from_millis(7));
    assert_eq!(c.task_timeout, Duration::from_secs(120));
    assert_eq!(c.offset_reset, OffsetReset::Latest);
    assert_eq!(c.max_task_failures, 9);
    assert_eq!(c.retry_backoff, Duration::from_millis(50));
    assert_eq!(c.retry_backoff_max, Duration::from_secs(3));
    assert_eq!(c.deserialization, RecordErrorHandler::LogAndContinue);
    assert_eq!(
        c.production,
        RecordErrorHandler::DeadLetter("orders-dlq".into())
    );
}

#[test]
fn a_properties_file_and_the_environment_give_the_same() {
    let from_map =
        StreamsConfig::from_properties(&Properties::from_map(ALL.iter().copied())).expect("map");

    // The Java format: separators `=`, `:` and space, comments, a continuation line.
    let mut text = String::from("# orders service\n! another comment\n\n");
    for (i, (k, v)) in ALL.iter().enumerate() {
        match i % 3 {
            0 => text.push_str(&format!("{k} = {v}\n")),
            1 => text.push_str(&format!("{k}: {v}\n")),
            _ => text.push_str(&format!("{k} {v}\n")),
        }
    }
    text = text.replace("application.id = orders", "application.id = ord\\\n    ers");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("streams.properties");
    std::fs::write(&path, text).expect("write");
    let from_file =
        StreamsConfig::from_properties(&Properties::from_file(&path).expect("read")).expect("file");
    assert_eq!(fields(&from_file), fields(&from_map));

    let vars: Vec<(String, String)> = ALL
        .iter()
        .map(|(k, v)| (env_name(k), v.to_string()))
        .chain([("PATH".to_string(), "/bin".to_string())])
        .collect();
    let from_env =
        StreamsConfig::from_properties(&Properties::from_env_vars(vars)).expect("environment");
    assert_eq!(fields(&from_env), fields(&from_map));
}

#[test]
fn later_sources_override_earlier_ones() {
    let file = Properties::from_map([("application.id", "a"), ("num.stream.threads", "2")]);
    let env = Properties::from_env_vars([("KSTREAMS_NUM_STREAM_THREADS", "5")]);
    let c = StreamsConfig::from_properties(&file.merge(env)).expect("valid");
    assert_eq!((c.application_id.as_str(), c.threads), ("a", 5));
}

#[test]
fn durations_as_milliseconds_or_in_human_form() {
    for (raw, want) in [
        ("30000", Duration::from_secs(30)),
        ("30s", Duration::from_secs(30)),
        ("100ms", Duration::from_millis(100)),
        ("1m 30s", Duration::from_secs(90)),
        ("2h", Duration::from_secs(7200)),
    ] {
        let props = Properties::from_map([("application.id", "a"), ("commit.interval.ms", raw)]);
        let c = StreamsConfig::from_properties(&props).expect(raw);
        assert_eq!(c.commit_interval, want, "{raw}");
    }
}

#[test]
fn bad_values_are_rejected_naming_the_key_and_the_value() {
    let cases = [
        ("num.stream.threads", "lots"),
        ("num.stream.threads", "0"),
        ("num.stream.threads", "-1"),
        ("commit.interval.ms", "soon"),
        ("commit.interval.ms", "0"),
        ("processing.guarantee", "twice"),
        ("statestore.cache.max.bytes", "10MB"),
        ("cache.max.bytes.buffering", "-5"),
        ("rocksdb.memory.bytes", "12"),
        ("rocksdb.memtable.bytes", "999999999999"),
        ("max.poll.records", "0"),
        ("buffered.records.per.partition", "1"),
        ("poll.ms", "5 parsecs"),
        ("task.timeout.ms", "x"),
        ("auto.offset.reset", "smallest"),
        ("max.task.failures", "0"),
        ("retry.backoff.ms", "fast"),
        ("retry.backoff.max.ms", "-"),
        ("deserialization.exception.handler", "ignore"),
        ("production.exception.handler", "dead-letter"),
        ("application.id", "has space"),
        ("state.dir", ""),
        ("num.stream.thread", "2"),
    ];
    for (key, value) in cases {
        let mut props = Properties::from_map([("application.id", "app")]);
        props.set(key, value);
        match StreamsConfig::from_properties(&props) {
            Err(e @ Error::Config { .. }) => {
                let Error::Config { key: k, reason } = &e else {
                    unreachable!()
                };
                assert_eq!(k, key, "{e}");
                assert!(reason.contains(&format!("`{value}`")), "{key}={value}: {e}");
                assert!(e.to_string().contains(key), "{e}");
            }
            other => panic!("{key}={value}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn errors_say_where_a_value_came_from() {
    let props = Properties::from_env_vars([
        ("KSTREAMS_APPLICATION_ID", "app"),
        ("KSTREAMS_NUM_STREAM_THREADS", "many"),
    ]);
    let e = StreamsConfig::from_properties(&props)
        .expect_err("bad")
        .to_string();
    assert!(e.contains("num.stream.threads"), "{e}");
    assert!(e.contains("KSTREAMS_NUM_STREAM_THREADS"), "{e}");
    assert!(e.contains("`many`"), "{e}");

    let missing = StreamsConfig::from_properties(&Properties::default()).expect_err("no id");
    assert!(missing.to_string().contains("application.id"), "{missing}");

    let dir = tempfile::tempdir().expect("tempdir");
    let no_file = Properties::from_file(dir.path().join("nope.properties")).expect_err("missing");
    assert!(no_file.to_string().contains("nope.properties"), "{no_file}");
}

#[cfg(feature = "kafka")]
#[test]
fn kafka_client_properties_pass_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_str().expect("utf-8");
    let props = Properties::from_map([
        ("application.id", "orders"),
        ("state.dir", state),
        ("num.stream.threads", "2"),
        ("bootstrap.servers", "k1:9092,k2:9092"),
        ("replication.factor", "3"),
        ("group.instance.id", "orders-1"),
        ("session.timeout.ms", "10s"),
        ("default.api.timeout.ms", "20000"),
        ("security.protocol", "SASL_SSL"),
        ("producer.linger.ms", "5"),
        ("consumer.fetch.min.bytes", "1"),
        ("main.consumer.fetch.wait.max.ms", "100"),
        ("admin.retries", "2"),
    ]);
    let streams = StreamsConfig::from_properties(&props).expect("streams");
    let kafka = streams_core::KafkaLogConfig::from_properties(&props, &streams).expect("kafka");
    assert_eq!(kafka.bootstrap_servers, "k1:9092,k2:9092");
    assert_eq!(kafka.replication_factor, 3);
    assert_eq!(kafka.group_instance_id.as_deref(), Some("orders-1"));
    assert_eq!(kafka.session_timeout, Duration::from_secs(10));
    assert_eq!(kafka.timeout, Duration::from_secs(20));
    assert_eq!(kafka.properties["security.protocol"], "SASL_SSL");
    assert_eq!(kafka.properties["client.id"], "orders");
    assert_eq!(kafka.properties["retries"], "2");
    assert_eq!(kafka.producer_properties["linger.ms"], "5");
    assert_eq!(kafka.consumer_properties["fetch.min.bytes"], "1");
    assert_eq!(kafka.consumer_properties["fetch.wait.max.ms"], "100");
    // Streams settings are not client properties.
    assert!(!kafka.properties.contains_key("num.stream.threads"));
    assert!(!kafka.properties.contains_key("application.id"));
    assert!(!kafka.properties.contains_key("bootstrap.servers"));
    let prefix = format!("orders-{}", streams.process_id().expect("process id"));
    assert_eq!(kafka.transactional_id_prefix, prefix);

    let bad = props
        .clone()
        .merge(Properties::from_map([("session.timeout.ms", "later")]));
    match streams_core::KafkaLogConfig::from_properties(&bad, &streams) {
        Err(Error::Config { key, .. }) => assert_eq!(key, "session.timeout.ms"),
        other => panic!("{other:?}"),
    }
    let none = Properties::from_map([("application.id", "orders")]);
    match streams_core::KafkaLogConfig::from_properties(&none, &streams) {
        Err(Error::Config { key, .. }) => assert_eq!(key, "bootstrap.servers"),
        other => panic!("{other:?}"),
    }
}
