//! What happens to a record that cannot be handled as it is: one policy type for both places
//! where that can happen, decoding a source record and producing an output record.
//!
//! The same three choices apply to both (as in Kafka Streams' deserialization and production
//! exception handlers): fail, log and skip (counted), or send the record to a dead-letter
//! topic with the error in the headers of [`dead_letter_headers`].

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

/// Header names carried by dead-lettered records.
pub mod dead_letter_headers {
    /// The error message.
    pub const ERROR: &str = "streams.error";
    /// The source topic.
    pub const TOPIC: &str = "streams.source.topic";
    /// The source partition (decimal).
    pub const PARTITION: &str = "streams.source.partition";
    /// The source offset (decimal).
    pub const OFFSET: &str = "streams.source.offset";
}
