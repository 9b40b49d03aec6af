//! The broker the Kafka tests run against: `KAFKA_BOOTSTRAP_SERVERS` when it is set (as
//! scripts/test.sh does), otherwise one Apache Kafka broker per test process, started through
//! scripts/kafka-broker.sh on a free port and stopped by the script once the process ends.
//! A broker that cannot be started fails the test (in CI and everywhere else); nothing is
//! skipped. The broker started here also has a SASL_SSL listener ([`sasl_ssl`]), with the
//! test CA and users scripts/kafka-broker.sh makes.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
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
        own_broker().servers()
    })
}

/// The broker this process starts (once), with a SASL_SSL listener beside the plaintext one.
fn own_broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        remove_stale_broker_dirs();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{port}"));
        Broker::start_on(port, &dir, Some(free_port()))
    })
}

/// The test broker's SASL_SSL listener: where it is and the CA that signed its certificate.
/// Its users (scripts/kafka-broker.sh): `alice`/`alice-secret` (SCRAM-SHA-512),
/// `bob`/`bob-secret` (PLAIN), any name with an unsecured JWT (OAUTHBEARER).
pub(crate) struct SaslSsl {
    /// `host:port` of the listener.
    pub(crate) servers: String,
    /// The test CA's certificate (PEM).
    pub(crate) ca_location: PathBuf,
}

/// The SASL_SSL listener: `KAFKA_SASL_SSL_SERVERS` and `KAFKA_SSL_CA_LOCATION` when both are
/// set, else that of the broker this process starts.
pub(crate) fn sasl_ssl() -> &'static SaslSsl {
    static LISTENER: OnceLock<SaslSsl> = OnceLock::new();
    LISTENER.get_or_init(|| {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
        if let (Some(servers), Some(ca)) =
            (env("KAFKA_SASL_SSL_SERVERS"), env("KAFKA_SSL_CA_LOCATION"))
        {
            return SaslSsl {
                servers,
                ca_location: PathBuf::from(ca),
            };
        }
        let broker = own_broker();
        let port = broker
            .sasl_ssl_port
            .expect("the test broker has a SASL_SSL port");
        SaslSsl {
            servers: format!("127.0.0.1:{port}"),
            ca_location: broker.dir.join("tls").join("ca.pem"),
        }
    })
}

/// A configuration for the SASL_SSL listener with SCRAM-SHA-512 as `user`/`password`,
/// trusting the test CA.
pub(crate) fn scram_config(user: &str, password: &str) -> KafkaLogConfig {
    let listener = sasl_ssl();
    KafkaLogConfig::new(listener.servers.as_str())
        .with_timeout(Duration::from_secs(15))
        .with_property("security.protocol", "SASL_SSL")
        .with_property("sasl.mechanism", "SCRAM-SHA-512")
        .with_property("sasl.username", user)
        .with_property("sasl.password", password)
        .with_property("ssl.ca.location", listener.ca_location.to_string_lossy())
}

/// Directories of the brokers started for test processes: `<tmp>/<prefix><port>`.
const DIR_PREFIX: &str = "kstreams-test-broker-";

/// Removes the data of brokers that earlier test processes started and that are gone (no
/// running process, nothing logged for ten minutes), so that runs do not fill the disk.
fn remove_stale_broker_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_broker_dir = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        if !is_broker_dir {
            continue;
        }
        let running = std::fs::read_to_string(path.join("broker.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        let quiet = std::fs::metadata(path.join("broker.log"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age > Duration::from_secs(600));
        if !running && quiet {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port for the test broker")
}

/// An Apache Kafka broker of this test process (scripts/kafka-broker.sh), with its data in
/// `dir`: stopped when the process ends, restartable on the same data.
pub(crate) struct Broker {
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
    /// The port of its SASL_SSL listener, if it has one.
    pub(crate) sasl_ssl_port: Option<u16>,
}

impl Broker {
    fn script() -> &'static str {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-broker.sh")
    }

    /// Starts a broker on a free port with its data in `dir`.
    pub(crate) fn start(dir: &Path) -> Broker {
        Broker::start_on(free_port(), dir, None)
    }

    fn start_on(port: u16, dir: &Path, sasl_ssl_port: Option<u16>) -> Broker {
        let broker = Broker {
            port,
            dir: dir.to_path_buf(),
            sasl_ssl_port,
        };
        broker.run("start");
        broker
    }

    /// Starts the broker again (same port, same data) after [`Broker::stop`].
    pub(crate) fn restart(&self) {
        self.run("start");
    }

    /// Stops the broker cleanly.
    pub(crate) fn stop(&self) {
        self.run("stop");
    }

    fn run(&self, command: &str) {
        let mut c = Command::new("bash");
        c.arg(Self::script())
            .arg(command)
            .args(["--port", &self.port.to_string(), "--dir"])
            .arg(&self.dir);
        if command == "start" {
            c.args(["--owner", &std::process::id().to_string()]);
            if let Some(port) = self.sasl_ssl_port {
                c.args(["--sasl-ssl-port", &port.to_string()]);
            }
        }
        let out = c
            .output()
            .expect("cannot run scripts/kafka-broker.sh (is bash installed?)");
        assert!(
            out.status.success(),
            "the test broker could not be {} (scripts/kafka-broker.sh {command}): {}",
            if command == "start" {
                "started"
            } else {
                "stopped"
            },
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...) to the broker's process.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.dir.join("broker.pid")).unwrap();
        let ok = Command::new("kill")
            .args([signal, pid.trim()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {signal} of the broker failed");
    }
}

/// A configuration for the test broker with a short timeout, so that a failure shows quickly.
pub(crate) fn config() -> KafkaLogConfig {
    KafkaLogConfig::new(bootstrap_servers()).with_timeout(Duration::from_secs(15))
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
