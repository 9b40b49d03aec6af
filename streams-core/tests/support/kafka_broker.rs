//! The broker the Kafka tests run against: `KAFKA_BOOTSTRAP_SERVERS` when it is set (as
//! scripts/test.sh does), otherwise one Tansu broker per test process, started through
//! scripts/kafka-broker.sh on a free port and stopped by the script once the process ends.
//! A broker that cannot be started fails the test; nothing is skipped.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use streams_core::{KafkaLog, KafkaLogConfig};

/// `host:port` of the test broker, starting it on first use.
pub(crate) fn bootstrap_servers() -> &'static str {
    static SERVERS: OnceLock<String> = OnceLock::new();
    SERVERS.get_or_init(|| {
        if let Ok(servers) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            if !servers.trim().is_empty() {
                return servers;
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port for the test broker");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-broker.sh");
        let dir = std::env::temp_dir().join(format!("kstreams-test-broker-{port}"));
        let out = Command::new("bash")
            .arg(script)
            .args(["start", "--port", &port.to_string(), "--owner"])
            .arg(std::process::id().to_string())
            .arg("--dir")
            .arg(&dir)
            .output()
            .expect("cannot run scripts/kafka-broker.sh");
        assert!(
            out.status.success(),
            "the test broker could not be started (scripts/kafka-broker.sh start): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("127.0.0.1:{port}")
    })
}

/// A configuration for the test broker with a short timeout, so that a failure shows quickly.
///
/// Tansu 0.6 stores a batch of several records as if it held one (the partition's end moves
/// by one), so the tests' producers send one record per batch.
pub(crate) fn config() -> KafkaLogConfig {
    KafkaLogConfig::new(bootstrap_servers())
        .with_timeout(Duration::from_secs(15))
        .with_producer_property("batch.num.messages", "1")
}

/// A connected log.
pub(crate) fn connect() -> KafkaLog {
    KafkaLog::connect(config()).expect("cannot connect to the test broker")
}

/// A name no other test (or earlier run against the same broker) uses.
pub(crate) fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
