//! `KafkaLog` with production settings against the test broker's SASL_SSL listener (a test CA
//! and users made by scripts/kafka-broker.sh): SCRAM-SHA-512, PLAIN and OAUTHBEARER connect;
//! a wrong password and an untrusted certificate fail promptly with errors that name the
//! cause; secrets stay out of `Debug` output and log lines; every compression codec
//! librdkafka is built with round-trips. The broker fails the tests when it cannot start.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

#[path = "support/kafka_broker.rs"]
mod kafka_broker;
#[path = "support/read.rs"]
mod read;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kafka_broker::{sasl_ssl, scram_config, unique};
use read::read_all;
use streams_core::{Error, IsolationLevel, KafkaLog, KafkaLogConfig, Log, Record, TopicConfig};
use streams_core::{ErrorClass, TopicPartition};

/// Log lines of every test in this binary (a `tracing` subscriber writing here).
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .init();
        lines
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Creates a topic, appends to it and reads it back through `log`.
fn round_trip(log: &KafkaLog, prefix: &str) {
    let topic = unique(prefix);
    log.create_topic(&topic, TopicConfig::new(1)).unwrap();
    let tp = TopicPartition::new(&topic, 0);
    let records: Vec<Record> = (1..=20)
        .map(|i| Record::new(format!("k{i}"), format!("value {i}"), i))
        .collect();
    log.append(&tp, &records).unwrap();
    let got = read_all(log, &tp, 0, 100, IsolationLevel::ReadCommitted);
    let expected: Vec<(u64, String)> = (1..=20).map(|i| (i - 1, format!("value {i}"))).collect();
    assert_eq!(got, expected);
}

/// What a connect that must fail gave, and how long it took.
fn failed_connect(config: KafkaLogConfig) -> (Error, Duration) {
    let timeout = config.timeout;
    let started = Instant::now();
    let err = KafkaLog::connect(config).expect_err("the connect should fail");
    let took = started.elapsed();
    // Promptly: it did not just wait for the broker until the timeout.
    assert!(
        took < timeout / 2,
        "it took {took:?} to fail (timeout {timeout:?}): {err}"
    );
    (err, took)
}

#[test]
fn kafka_sasl_ssl_with_scram_connects_appends_and_reads() {
    captured();
    let log = KafkaLog::connect(scram_config("alice", "alice-secret")).unwrap();
    round_trip(&log, "scram");
    assert!(log
        .list_topics()
        .unwrap()
        .iter()
        .any(|t| t.starts_with("scram-")));
}

#[test]
fn kafka_sasl_ssl_with_plain_and_oauthbearer_connect() {
    captured();
    let listener = sasl_ssl();
    let base = || {
        KafkaLogConfig::new(listener.servers.as_str())
            .with_timeout(Duration::from_secs(15))
            .with_property("security.protocol", "SASL_SSL")
            .with_property("ssl.ca.location", listener.ca_location.to_string_lossy())
    };
    let plain = base()
        .with_property("sasl.mechanism", "PLAIN")
        .with_property("sasl.username", "bob")
        .with_property("sasl.password", "bob-secret");
    round_trip(&KafkaLog::connect(plain).unwrap(), "plain");
    // An unsecured JWT, which the test broker's default validator accepts.
    let oauth = base()
        .with_property("sasl.mechanism", "OAUTHBEARER")
        .with_property("enable.sasl.oauthbearer.unsecure.jwt", "true")
        .with_property("sasl.oauthbearer.config", "principal=carol");
    round_trip(&KafkaLog::connect(oauth).unwrap(), "oauth");
}

#[test]
fn kafka_a_wrong_password_fails_promptly_naming_authentication() {
    captured();
    let (err, _) = failed_connect(scram_config("alice", "wrong-secret"));
    let text = err.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains(&sasl_ssl().servers), "{text}");
    assert!(!text.contains("wrong-secret"), "{text}");
    assert_eq!(err.class(), ErrorClass::External);
    assert!(!err.is_retriable(), "{err:?}");
    // An unknown user too.
    let (err, _) = failed_connect(scram_config("mallory", "alice-secret"));
    assert!(err.to_string().contains("authentication failed"), "{err}");
}

#[test]
fn kafka_an_untrusted_certificate_fails_promptly_naming_verification() {
    captured();
    // The system's trust store, which does not hold the test CA.
    let untrusted = KafkaLogConfig::new(sasl_ssl().servers.as_str())
        .with_timeout(Duration::from_secs(15))
        .with_property("security.protocol", "SASL_SSL")
        .with_property("sasl.mechanism", "SCRAM-SHA-512")
        .with_property("sasl.username", "alice")
        .with_property("sasl.password", "alice-secret");
    let (err, _) = failed_connect(untrusted);
    let text = err.to_string();
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert!(text.contains("certificate verify failed"), "{text}");
    assert!(!err.is_retriable(), "{err:?}");

    // TLS against the plaintext listener: the handshake fails too, and says so.
    let mut wrong_port = scram_config("alice", "alice-secret");
    wrong_port.bootstrap_servers = kafka_broker::bootstrap_servers().to_string();
    let (err, _) = failed_connect(wrong_port);
    let text = err.to_string();
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert!(text.contains("PLAINTEXT broker listener"), "{text}");
}

#[test]
fn kafka_secrets_stay_out_of_debug_output_and_log_lines() {
    let lines = captured();
    let config = scram_config("alice", "alice-secret")
        .with_property("ssl.key.password", "key-passphrase-1")
        .with_producer_property("ssl.keystore.password", "keystore-pass-2")
        .with_consumer_property("sasl.oauthbearer.client.secret", "client-secret-3");
    let secrets = [
        "alice-secret",
        "key-passphrase-1",
        "keystore-pass-2",
        "client-secret-3",
    ];
    let debug = format!("{config:?}");
    for secret in secrets {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(debug.contains("SCRAM-SHA-512"), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");

    // Connected with librdkafka's debug lines on, and its Debug.
    let log = KafkaLog::connect(
        scram_config("alice", "alice-secret").with_property("debug", "security,broker,protocol"),
    )
    .unwrap();
    round_trip(&log, "secrets");
    let debug = format!("{log:?}");
    assert!(!debug.contains("alice-secret"), "{debug}");
    assert!(debug.contains(&sasl_ssl().servers), "{debug}");
    drop(log);

    // A failed connect with debug logging, and its error.
    let wrong = scram_config("alice", "wrong-secret").with_property("debug", "security");
    let err = KafkaLog::connect(wrong).unwrap_err();
    assert!(!format!("{err:?}").contains("wrong-secret"), "{err:?}");

    let text = String::from_utf8_lossy(&lines.lock().unwrap()).into_owned();
    // librdkafka's lines came through (the SASL exchange among them).
    assert!(
        text.contains("librdkafka") && text.contains("SASL"),
        "no librdkafka lines captured"
    );
    for secret in secrets.iter().chain(&["wrong-secret"]) {
        assert!(
            !text.contains(secret),
            "{secret} in a log line: {}",
            text.lines()
                .find(|l| l.contains(secret))
                .unwrap_or_default()
        );
    }
}

#[test]
fn kafka_every_compression_codec_round_trips() {
    captured();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let config = kafka_broker::config()
            .with_producer_property("compression.type", codec)
            .with_producer_property("linger.ms", "5");
        let log = KafkaLog::connect(config).unwrap_or_else(|e| panic!("{codec}: {e}"));
        let topic = unique(&format!("codec-{codec}"));
        log.create_topic(&topic, TopicConfig::new(1)).unwrap();
        let tp = TopicPartition::new(&topic, 0);
        // Compressible values, in one batch.
        let records: Vec<Record> = (1..=200)
            .map(|i| {
                Record::new(
                    format!("k{i}"),
                    format!("{codec} {}", "x".repeat(i)),
                    i as i64,
                )
            })
            .collect();
        log.append(&tp, &records).unwrap();
        let got = read_all(&log, &tp, 0, 500, IsolationLevel::ReadUncommitted);
        let expected: Vec<(u64, String)> = (1..=200)
            .map(|i| (i as u64 - 1, format!("{codec} {}", "x".repeat(i))))
            .collect();
        assert_eq!(got, expected, "{codec}");
    }
}
