//! What every librdkafka client of one log reports back: its log lines go to `tracing`
//! (target `librdkafka`), and the failures librdkafka only reports through its error callback,
//! not through the call that waits on the cluster, are kept in [`Faults`] so that the waiting
//! call can name them. A wrong password or an untrusted certificate makes every connection
//! fail; the call would otherwise only see that no broker answered before its timeout. Their
//! statistics are kept in [`ClientStats`], for the metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use crate::log::ClientFigures;

/// Why connections to the cluster fail whatever the call: a setting the user must fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// SASL authentication was refused (wrong user or password, unknown mechanism).
    Authentication,
    /// The TLS handshake failed (an untrusted or mismatched certificate, TLS against a
    /// plaintext listener).
    Tls,
}

impl FaultKind {
    fn of(error: &KafkaError, reason: &str) -> Option<FaultKind> {
        use RDKafkaErrorCode as C;
        match error.rdkafka_error_code()? {
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState => Some(FaultKind::Authentication),
            C::SSL => Some(FaultKind::Tls),
            // TLS against a plaintext listener: the broker hangs up mid-handshake, which
            // librdkafka reports as a transport failure with this hint.
            C::BrokerTransportFailure if reason.contains(PLAINTEXT_HINT) => Some(FaultKind::Tls),
            _ => None,
        }
    }

    /// What the user reads first: the cause, in the words they would search for.
    pub(crate) fn cause(self) -> &'static str {
        match self {
            FaultKind::Authentication => "authentication failed",
            FaultKind::Tls => "TLS handshake failed",
        }
    }
}

/// What librdkafka adds to a TLS handshake the broker ended without a word.
const PLAINTEXT_HINT: &str = "connecting to a PLAINTEXT broker listener?";

/// The last connection-wide failure a client of the log reported.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) kind: FaultKind,
    /// librdkafka's words (broker, mechanism, OpenSSL's reason); never a secret.
    pub(crate) reason: String,
    at: Instant,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.cause(), self.reason)
    }
}

/// Shared by the clients of one log.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    last: Mutex<Option<Fault>>,
}

impl Faults {
    fn record(&self, kind: FaultKind, reason: String) {
        *self.last.lock() = Some(Fault {
            kind,
            reason,
            at: Instant::now(),
        });
    }

    /// Forgets the last fault (the cluster answered since).
    pub(crate) fn clear(&self) {
        *self.last.lock() = None;
    }

    /// The fault reported within the last `within`, if any.
    pub(crate) fn recent(&self, within: Duration) -> Option<Fault> {
        self.last
            .lock()
            .as_ref()
            .filter(|f| f.at.elapsed() <= within)
            .cloned()
    }
}

/// The latest statistics of each client of one log (librdkafka's, every
/// `statistics.interval.ms`), as [`ClientFigures`].
#[derive(Debug, Default)]
pub(crate) struct ClientStats {
    latest: Mutex<BTreeMap<String, (Instant, ClientFigures)>>,
}

impl ClientStats {
    /// What a client's statistics callback does with librdkafka's JSON. Only the fields
    /// the figures need are read, so a field librdkafka adds or changes does not lose them;
    /// statistics that do not read are skipped (a debug line says why).
    pub(crate) fn record(&self, json: &[u8]) {
        let raw: RawStatistics = match serde_json::from_slice(json) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::debug!(target: "librdkafka", error = %e, "statistics that do not read");
                return;
            }
        };
        let broker_rtt = raw
            .brokers
            .into_values()
            .filter_map(|b| Some((b.name, b.rtt?)))
            // librdkafka counts microseconds; a broker not asked this interval has no mean.
            .filter(|(_, rtt)| rtt.cnt > 0)
            .map(|(name, rtt)| (name, rtt.avg as f64 / 1e6))
            .collect();
        let consumer_lag = raw
            .topics
            .into_values()
            .flat_map(|t| {
                let topic = t.topic;
                t.partitions.into_values().filter_map(move |p| {
                    // -1 is librdkafka's internal partition, and an offset it does not know.
                    // Its own `consumer_lag` counts from the committed offset, which readers
                    // never commit: the lag here counts from the offset the reader handed out
                    // last, to the last stable offset (the high watermark without one).
                    let partition = u32::try_from(p.partition).ok()?;
                    let end = if p.ls_offset >= 0 {
                        p.ls_offset
                    } else {
                        p.hi_offset
                    };
                    let lag = end
                        .checked_sub(p.app_offset)
                        .filter(|_| p.app_offset >= 0)?;
                    (end >= 0 && lag >= 0).then(|| ((topic.clone(), partition), lag))
                })
            })
            .collect();
        let figures = ClientFigures {
            client: raw.name.clone(),
            kind: raw.kind,
            queued_messages: raw.msg_cnt,
            broker_rtt,
            consumer_lag,
        };
        self.latest
            .lock()
            .insert(raw.name, (Instant::now(), figures));
    }

    /// The figures of the clients that reported within `within` (a closed client's go).
    pub(crate) fn figures(&self, within: Duration) -> Vec<ClientFigures> {
        let mut latest = self.latest.lock();
        latest.retain(|_, (at, _)| at.elapsed() <= within);
        latest.values().map(|(_, f)| f.clone()).collect()
    }
}

/// The parts of librdkafka's statistics JSON the figures read.
#[derive(serde::Deserialize)]
struct RawStatistics {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    msg_cnt: u64,
    #[serde(default)]
    brokers: HashMap<String, RawBroker>,
    #[serde(default)]
    topics: HashMap<String, RawTopic>,
}

#[derive(serde::Deserialize)]
struct RawBroker {
    name: String,
    rtt: Option<RawWindow>,
}

#[derive(serde::Deserialize)]
struct RawWindow {
    avg: i64,
    cnt: i64,
}

#[derive(serde::Deserialize)]
struct RawTopic {
    topic: String,
    #[serde(default)]
    partitions: HashMap<String, RawPartition>,
}

#[derive(serde::Deserialize)]
struct RawPartition {
    partition: i64,
    #[serde(default = "unknown")]
    app_offset: i64,
    #[serde(default = "unknown")]
    hi_offset: i64,
    #[serde(default = "unknown")]
    ls_offset: i64,
}

/// librdkafka's word for an offset it does not know.
fn unknown() -> i64 {
    -1
}

/// The context of the log's admin client, readers and group consumers.
#[derive(Clone)]
pub(crate) struct LogContext {
    pub(crate) faults: Arc<Faults>,
    pub(crate) stats: Arc<ClientStats>,
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.faults.report(&error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.stats.record(statistics);
    }
}

impl ConsumerContext for LogContext {}

impl Faults {
    /// What a client's error callback does: log the error, and keep it when it is one of
    /// the connection-wide [`FaultKind`]s (librdkafka has logged those already, as errors).
    pub(crate) fn report(&self, error: &KafkaError, reason: &str) {
        match FaultKind::of(error, reason) {
            Some(kind) => {
                tracing::debug!(target: "librdkafka", error = %error, "{}: {reason}", kind.cause());
                self.record(kind, reason.to_string());
            }
            // The readers ask for end-of-partition events; they are no failure.
            None if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(target: "librdkafka", error = %error, "{reason}")
            }
            None => tracing::warn!(target: "librdkafka", error = %error, "{reason}"),
        }
    }
}

/// librdkafka's log line to `tracing`, at the matching level.
pub(crate) fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", facility = fac, "{message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", facility = fac, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", facility = fac, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
    }
}
