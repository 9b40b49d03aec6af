//! What every librdkafka client of one log reports back: its log lines go to `tracing`
//! (target `librdkafka`), and the failures librdkafka only reports through its error callback,
//! not through the call that waits on the cluster, are kept in [`Faults`] so that the waiting
//! call can name them. A wrong password or an untrusted certificate makes every connection
//! fail; the call would otherwise only see that no broker answered before its timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

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

/// The context of the log's admin client, readers and group consumers.
#[derive(Clone)]
pub(crate) struct LogContext {
    pub(crate) faults: Arc<Faults>,
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.faults.report(&error, reason);
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
