//! The settings' choices: the processing guarantee, the offset reset policy, what a failed
//! stream thread's handler answers.

use std::sync::Arc;

use crate::error::{Error, Result};

/// What a commit promises about output and state after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProcessingGuarantee {
    /// Nothing is lost; after a failure, records since the last commit are processed again,
    /// so output and aggregates may see them twice.
    #[default]
    AtLeastOnce,
    /// A commit's output records, changelog records and input offsets become visible together
    /// or not at all: read-committed consumers see every input's effect exactly once.
    ExactlyOnce,
}

/// The names `FromStr` reads: `at-least-once`, `exactly-once`.
impl std::fmt::Display for ProcessingGuarantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProcessingGuarantee::AtLeastOnce => "at-least-once",
            ProcessingGuarantee::ExactlyOnce => "exactly-once",
        })
    }
}

impl std::str::FromStr for ProcessingGuarantee {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "at-least-once" | "at_least_once" => Ok(ProcessingGuarantee::AtLeastOnce),
            "exactly-once" | "exactly_once" | "exactly_once_v2" => {
                Ok(ProcessingGuarantee::ExactlyOnce)
            }
            other => Err(Error::Config {
                key: "processing.guarantee".into(),
                reason: format!("`{other}` is neither `at-least-once` nor `exactly-once`"),
            }),
        }
    }
}

/// Where a task starts reading an input partition that has no committed offset, or whose
/// committed offset lies outside the partition (the topic was truncated below it by retention,
/// or lost its tail, or the offset was set past its end): Kafka's `auto.offset.reset`.
///
/// Internal topics (repartition topics) always start from the earliest offset, as in Kafka
/// Streams: the application wrote everything in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OffsetReset {
    /// From the first offset still in the partition (Kafka Streams' default).
    #[default]
    Earliest,
    /// From the partition's end: only records appended from now on.
    Latest,
    /// Nowhere: the application stops with an error naming the partition and the offsets.
    None,
}

impl std::str::FromStr for OffsetReset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "earliest" => Ok(OffsetReset::Earliest),
            "latest" => Ok(OffsetReset::Latest),
            "none" => Ok(OffsetReset::None),
            other => Err(Error::Config {
                key: "auto.offset.reset".into(),
                reason: format!("`{other}` is not `earliest`, `latest` or `none`"),
            }),
        }
    }
}

/// What the runtime does after a stream thread fails (an error or a panic in a task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExceptionResponse {
    /// Start a new thread in place of the failed one; the failed thread's tasks move to live
    /// threads, restore their state and continue from the last commit.
    ReplaceThread,
    /// Stop every thread and move the application to `Error`.
    ShutdownClient,
}

/// Decides, per failure, how the application reacts. The default shuts the client down.
pub type ExceptionHandler = Arc<dyn Fn(&Error) -> ExceptionResponse + Send + Sync>;
