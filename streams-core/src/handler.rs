//! What happens to a record that cannot be handled as it is: one policy type for both places
//! where that can happen, decoding a source record and producing an output record.
//!
//! The same three choices apply to both (as in Kafka Streams' deserialization and production
//! exception handlers): fail, log and skip (counted), or send the record to a dead-letter
//! topic with the error in the headers of [`dead_letter_headers`].

use std::sync::Arc;

use crate::error::Error;
use crate::record::Header;

/// What to do with a record that cannot be decoded (a source's key or value) or produced (a
/// sink cannot encode it, or the log rejects it).
///
/// Used for both [`StreamsConfig::deserialization`](crate::StreamsConfig::deserialization)
/// and [`StreamsConfig::production`](crate::StreamsConfig::production).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecordErrorHandler {
    /// Stop with the error (the default, as in Kafka Streams): a decoding error stops the
    /// task, a production error the stream thread.
    #[default]
    Fail,
    /// Log a warning, count the record (skipped or dropped) and go on.
    LogAndContinue,
    /// Send the record to this topic with the error and its source in headers (those of
    /// [`dead_letter_headers`]), count it, and go on. For a decoding error that is the raw
    /// input record; for a production error, the input record that caused it.
    DeadLetter(String),
}

impl RecordErrorHandler {
    /// The dead-letter topic, if this handler has one.
    pub fn dead_letter_topic(&self) -> Option<&str> {
        match self {
            RecordErrorHandler::DeadLetter(topic) => Some(topic),
            _ => None,
        }
    }
}

/// Header names carried by dead-lettered records, as Kafka Streams' dead-letter queue
/// (KIP-1034) names them. Every dead-lettered record carries the same headers whatever the
/// cause, after the headers of the record itself; the source position is that of the input
/// record being processed (left out for records produced outside of one, by a punctuation).
pub mod dead_letter_headers {
    /// The kind of error ([`Error::kind`](crate::Error::kind)), where Kafka names the
    /// exception's class.
    pub const EXCEPTION: &str = "__streams.errors.exception";
    /// The error message, followed by its causes ([`Error::report`](crate::Error::report)).
    pub const MESSAGE: &str = "__streams.errors.message";
    /// The error and its causes, one per line (Kafka's stack trace).
    pub const STACKTRACE: &str = "__streams.errors.stacktrace";
    /// The input record's topic.
    pub const TOPIC: &str = "__streams.errors.topic";
    /// The input record's partition (decimal).
    pub const PARTITION: &str = "__streams.errors.partition";
    /// The input record's offset (decimal).
    pub const OFFSET: &str = "__streams.errors.offset";
}

/// Where a record came from: the input record whose processing produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) offset: u64,
}

/// Appends the dead-letter headers ([`dead_letter_headers`]) for `error` to `headers`.
pub(crate) fn push_dead_letter_headers(
    headers: &mut Vec<Header>,
    error: &Error,
    origin: Option<&Origin>,
) {
    let mut trace = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        trace.push_str("\ncaused by: ");
        trace.push_str(&c.to_string());
        cause = c.source();
    }
    headers.extend([
        Header::new(dead_letter_headers::EXCEPTION, error.kind()),
        Header::new(dead_letter_headers::MESSAGE, error.report().to_string()),
        Header::new(dead_letter_headers::STACKTRACE, trace),
    ]);
    if let Some(o) = origin {
        headers.extend([
            Header::new(dead_letter_headers::TOPIC, &*o.topic),
            Header::new(dead_letter_headers::PARTITION, o.partition.to_string()),
            Header::new(dead_letter_headers::OFFSET, o.offset.to_string()),
        ]);
    }
}
