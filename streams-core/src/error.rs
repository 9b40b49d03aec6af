//! The crate's one error type.
//!
//! Every variant carries the context a reader needs to find the problem (topic, partition,
//! offset, file) and maps to an [`ErrorClass`] (the one class of the whole engine, shared with
//! `state-store`) that says whose fault it is; [`Error::is_retriable`] says whether trying
//! again can help. Errors raised inside a task name it: the task fills in
//! [`Error::task`] as the error leaves it.
//!
//! `Display` prints a variant's own level only; the error it wraps (a serde's, a store's, the
//! OS's, the last failure of a task) is its `source()`. [`Error::report`] (a [`Report`])
//! prints the whole chain with each cause once, and is what the engine uses wherever it shows
//! an error to a person: logs, HTTP error bodies, dead-letter headers; anyhow's `{:#}` prints
//! the same.

use std::path::PathBuf;

use crate::ids::TaskId;

pub use state_store::{ErrorClass, Report};

/// A failure to encode a value or decode bytes, without the record's coordinates.
///
/// Serdes return this; code that knows where the bytes came from turns it into
/// [`Error::Deserialization`] with [`SerdeError::at`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct SerdeError {
    /// What was being encoded or decoded (`"u64"`, `"String"`, `"json"`...).
    pub what: &'static str,
    /// Why it failed.
    pub reason: String,
}

impl SerdeError {
    /// An error for the named type or format.
    pub fn new(what: &'static str, reason: impl Into<String>) -> Self {
        SerdeError {
            what,
            reason: reason.into(),
        }
    }

    /// Attaches the coordinates of the record whose bytes failed to decode.
    pub fn at(self, topic: &str, partition: u32, offset: u64, part: RecordPart) -> Error {
        Error::Deserialization {
            topic: topic.to_string(),
            partition,
            offset,
            part,
            source: self,
        }
    }
}

/// Which half of a record failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPart {
    /// The key bytes.
    Key,
    /// The value bytes.
    Value,
}

impl std::fmt::Display for RecordPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordPart::Key => "key",
            RecordPart::Value => "value",
        })
    }
}

/// Errors of `streams-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record's key or value could not be decoded.
    #[error("cannot decode the {part} of {topic}-{partition}@{offset}")]
    Deserialization {
        /// Topic the record was read from.
        topic: String,
        /// Partition the record was read from.
        partition: u32,
        /// Offset of the record.
        offset: u64,
        /// Key or value.
        part: RecordPart,
        /// What went wrong.
        #[source]
        source: SerdeError,
    },
    /// A key or value could not be encoded for a sink.
    #[error("cannot encode a record for topic `{topic}` in `{processor}`")]
    Serialization {
        /// The target topic.
        topic: String,
        /// The sink node.
        processor: String,
        /// What went wrong.
        #[source]
        source: SerdeError,
    },
    /// A state store failed.
    #[error("state store failed{}", in_task(.task))]
    Store {
        /// The task whose store failed; `None` outside a task (a query, a global store).
        task: Option<TaskId>,
        /// The store's error.
        #[source]
        source: state_store::StoreError,
    },
    /// A processor failed (user code returned an error or panicked).
    #[error("processor `{processor}`{} failed: {reason}", in_task(.task))]
    Processing {
        /// The task the processor ran in, filled in by the task; `None` outside a task.
        task: Option<TaskId>,
        /// The processor.
        processor: String,
        /// What happened.
        reason: String,
    },
    /// The topic does not exist.
    #[error("unknown topic `{topic}`")]
    UnknownTopic {
        /// The topic that was asked for.
        topic: String,
    },
    /// The partition number is not below the topic's partition count.
    #[error("partition {partition} is out of range for topic `{topic}` ({partitions} partitions)")]
    PartitionOutOfRange {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// The topic exists with a different configuration than requested.
    #[error("topic `{topic}` already exists with {existing} partitions, {requested} requested")]
    TopicExists {
        /// The topic.
        topic: String,
        /// Partition count on disk.
        existing: u32,
        /// Partition count asked for.
        requested: u32,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration `{key}`: {reason}")]
    Config {
        /// The configuration key.
        key: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A record cannot be appended as it is.
    #[error("invalid record for {topic}-{partition}: {reason}")]
    InvalidRecord {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why it was refused.
        reason: String,
    },
    /// Some records of one append were refused and the others appended (a Kafka producer can
    /// deliver part of a batch). `refused` holds each refused record's index in the batch,
    /// ascending, with its error; every other record of the batch was appended.
    #[error(
        "{} of {records} records refused by {topic}-{partition}: {}",
        .refused.len(),
        first_refusal(.refused)
    )]
    RecordsRefused {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// How many records the append had.
        records: usize,
        /// The refused records: index in the append, and why.
        refused: Vec<(usize, Error)>,
    },
    /// The offset asked for is below the log start (deleted by retention) or past its end.
    #[error("offset {offset} is out of range for {topic}-{partition} (valid: {start}..={end})")]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// First offset still in the log.
        start: u64,
        /// The log end offset (next offset to be written).
        end: u64,
    },
    /// An input partition has no committed offset, or one outside the partition's range, and
    /// `auto.offset.reset` is `none`: there is nowhere the application may resume from.
    #[error(
        "no valid offset to resume {topic}-{partition} from: {}, the partition holds \
         {start}..{end}, and auto.offset.reset is none; commit a valid offset for the group \
         (streams-log) or choose earliest or latest (StreamsConfig::with_offset_reset)",
        .committed.map_or_else(|| "nothing was committed".to_string(), |c| format!("the committed offset is {c}"))
    )]
    NoValidOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The committed offset, if there is one.
        committed: Option<u64>,
        /// The first offset in the partition.
        start: u64,
        /// The partition's end offset.
        end: u64,
    },
    /// Another process holds the log directory.
    #[error("log directory {} is in use by another process ({holder})", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// The log was opened read-only (to look at it while an application runs) and was asked
    /// to change.
    #[error("cannot {operation}: the log at {} is open read-only", path.display())]
    ReadOnly {
        /// The log directory or file.
        path: PathBuf,
        /// What was asked.
        operation: String,
    },
    /// The log no longer holds what this application committed to it: a committed offset
    /// went back or vanished (a broker that restarted without its data, say).
    #[error("the log lost data of {topic}-{partition}: {reason}")]
    LostData {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What was found missing.
        reason: String,
    },
    /// Data on disk is damaged somewhere other than a torn tail.
    #[error("corrupt log data in {} at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position in the file where the damage was found.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A transaction was used after it ended, or conflicts with another.
    #[error("transaction {txn_id}: {reason}")]
    Transaction {
        /// The transaction id.
        txn_id: u64,
        /// What went wrong.
        reason: String,
    },
    /// An I/O operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done (`"open"`, `"append to"`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The application is not in a state that allows the operation.
    #[error("cannot {operation} while the application is {state}")]
    InvalidState {
        /// What was asked.
        operation: String,
        /// The application's state.
        state: String,
    },
    /// A store cannot answer now (its task is migrating or restoring); retry shortly.
    #[error("store `{store}` cannot be queried now: {reason}")]
    StoreUnavailable {
        /// The store.
        store: String,
        /// Why.
        reason: String,
    },
    /// Which instance holds a store's key is not known now: the consumer group rebalances,
    /// no instance holds the key's task, or the one that does cannot be pointed at; retry
    /// shortly (Kafka Streams' `KeyQueryMetadata.NOT_AVAILABLE`).
    #[error("where the application's stores live is not known now: {reason}")]
    MetadataUnavailable {
        /// Why.
        reason: String,
    },
    /// The Kafka cluster, or the client talking to it, failed (feature `kafka`).
    #[error("kafka: cannot {operation}: {reason}")]
    Kafka {
        /// What was being done, with the topic and partition it was about
        /// (`"append to orders-3"`).
        operation: String,
        /// The topic, if the operation was about one.
        topic: Option<String>,
        /// The partition, if the operation was about one.
        partition: Option<u32>,
        /// What the client or the broker said.
        reason: String,
        /// Whether the client classes the failure as transient (a broker down, a timeout, a
        /// leader moving).
        retriable: bool,
    },
    /// A task (or a stream thread outside any task) failed again and again without making
    /// progress in between, so the application stopped rather than retry forever.
    #[error(
        "{} failed {failures} times in a row without progress, so the application stopped. \
         {advice} Its last error",
        task_name(.task)
    )]
    TaskFailed {
        /// The task that kept failing; `None` for a stream thread failing outside any task.
        task: Option<TaskId>,
        /// Failures counted.
        failures: u32,
        /// The last failure: the error's source, which [`Error::report`] prints after this
        /// error's message ("… Its last error: …").
        #[source]
        source: Box<Error>,
        /// What to do about it.
        advice: String,
    },
    /// An operation did not finish in time.
    #[error("{operation} did not finish within {after:?}")]
    Timeout {
        /// What was waited for.
        operation: String,
        /// How long.
        after: std::time::Duration,
    },
}

impl Error {
    /// The error and its causes, each once (`"state store failed in task 0_1: store `counts`:
    /// I/O error at …: No space left on device"`): how to show it to a person, since `Display`
    /// prints only the error's own level.
    pub fn report(&self) -> Report<'_> {
        Report::new(self)
    }

    /// Whose fault the error is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Deserialization { .. }
            | Error::Serialization { .. }
            | Error::Processing { .. }
            | Error::UnknownTopic { .. }
            | Error::PartitionOutOfRange { .. }
            | Error::TopicExists { .. }
            | Error::Config { .. }
            | Error::InvalidRecord { .. }
            | Error::RecordsRefused { .. }
            | Error::OffsetOutOfRange { .. }
            | Error::NoValidOffset { .. }
            | Error::Transaction { .. }
            | Error::InvalidState { .. }
            | Error::ReadOnly { .. } => ErrorClass::User,
            Error::Locked { .. }
            | Error::Io { .. }
            | Error::StoreUnavailable { .. }
            | Error::MetadataUnavailable { .. }
            | Error::Timeout { .. }
            | Error::Kafka { .. } => ErrorClass::External,
            Error::Corrupt { .. } | Error::LostData { .. } => ErrorClass::Internal,
            Error::Store { source, .. } => source.class(),
            Error::TaskFailed { source, .. } => source.class(),
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { retriable, .. } => *retriable,
            Error::Store { source, .. } => source.is_retriable(),
            _ => matches!(
                self,
                Error::Locked { .. }
                    | Error::Io { .. }
                    | Error::StoreUnavailable { .. }
                    | Error::MetadataUnavailable { .. }
                    | Error::Timeout { .. }
            ),
        }
    }

    /// The kind of error: `streams_core::Error::` and the variant's name (what a dead-letter
    /// record's `__streams.errors.exception` header holds).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Deserialization { .. } => "streams_core::Error::Deserialization",
            Error::Serialization { .. } => "streams_core::Error::Serialization",
            Error::Store { .. } => "streams_core::Error::Store",
            Error::Processing { .. } => "streams_core::Error::Processing",
            Error::UnknownTopic { .. } => "streams_core::Error::UnknownTopic",
            Error::PartitionOutOfRange { .. } => "streams_core::Error::PartitionOutOfRange",
            Error::TopicExists { .. } => "streams_core::Error::TopicExists",
            Error::Config { .. } => "streams_core::Error::Config",
            Error::InvalidRecord { .. } => "streams_core::Error::InvalidRecord",
            Error::RecordsRefused { .. } => "streams_core::Error::RecordsRefused",
            Error::OffsetOutOfRange { .. } => "streams_core::Error::OffsetOutOfRange",
            Error::NoValidOffset { .. } => "streams_core::Error::NoValidOffset",
            Error::Locked { .. } => "streams_core::Error::Locked",
            Error::ReadOnly { .. } => "streams_core::Error::ReadOnly",
            Error::LostData { .. } => "streams_core::Error::LostData",
            Error::Corrupt { .. } => "streams_core::Error::Corrupt",
            Error::Transaction { .. } => "streams_core::Error::Transaction",
            Error::Io { .. } => "streams_core::Error::Io",
            Error::InvalidState { .. } => "streams_core::Error::InvalidState",
            Error::StoreUnavailable { .. } => "streams_core::Error::StoreUnavailable",
            Error::MetadataUnavailable { .. } => "streams_core::Error::MetadataUnavailable",
            Error::Kafka { .. } => "streams_core::Error::Kafka",
            Error::Timeout { .. } => "streams_core::Error::Timeout",
            Error::TaskFailed { .. } => "streams_core::Error::TaskFailed",
        }
    }

    /// The task the error happened in, where the error names one.
    pub fn task(&self) -> Option<TaskId> {
        match self {
            Error::Store { task, .. }
            | Error::Processing { task, .. }
            | Error::TaskFailed { task, .. } => *task,
            _ => None,
        }
    }

    /// The same error, naming `task` if it does not name a task yet. A task calls this on
    /// every error that leaves it, so operators need not know which task runs them.
    pub(crate) fn in_task(mut self, id: TaskId) -> Self {
        if let Error::Store { task, .. } | Error::Processing { task, .. } = &mut self {
            task.get_or_insert(id);
        }
        self
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The first refused record of a [`Error::RecordsRefused`]: `record <index>: <error>`, with the
/// error's causes (the refusals are not the error's source).
fn first_refusal(refused: &[(usize, Error)]) -> String {
    refused
        .first()
        .map(|(i, e)| format!("record {i}: {}", e.report()))
        .unwrap_or_default()
}

/// `task <id>`, or `a stream thread` for a failure outside any task.
fn task_name(task: &Option<TaskId>) -> String {
    task.map_or_else(|| "a stream thread".to_string(), |t| format!("task {t}"))
}

/// ` in task <id>`, or nothing when the error happened outside a task.
fn in_task(task: &Option<TaskId>) -> String {
    task.map(|t| format!(" in task {t}")).unwrap_or_default()
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A store's error as the engine's: raised inside a processor, it keeps its class and
/// retriability, and the task it happened in is filled in as it leaves the task.
impl From<state_store::StoreError> for Error {
    fn from(source: state_store::StoreError) -> Self {
        Error::Store { task: None, source }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// The messages of `error` and of each of its sources, outermost first.
    fn levels(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
        let mut out = vec![error.to_string()];
        let mut cause = error.source();
        while let Some(c) = cause {
            out.push(c.to_string());
            cause = c.source();
        }
        out
    }

    #[test]
    fn the_report_names_each_cause_once_and_source_walks_to_the_root() {
        let task = TaskId::new(0, 1);
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device");
        let store = state_store::StoreError::Io {
            store: "counts".into(),
            path: "/state/app/0_1/counts".into(),
            source: io,
        };
        let failed = Error::TaskFailed {
            task: Some(task),
            failures: 3,
            source: Box::new(Error::Store {
                task: Some(task),
                source: store,
            }),
            advice: "Free some disk space.".into(),
        };
        assert_eq!(
            levels(&failed),
            [
                "task 0_1 failed 3 times in a row without progress, so the application stopped. \
                 Free some disk space. Its last error",
                "state store failed in task 0_1",
                "store `counts`: I/O error at /state/app/0_1/counts",
                "no space left on device",
            ]
        );
        let report = failed.report().to_string();
        assert_eq!(report, levels(&failed).join(": "));
        for part in [
            "failed 3 times",
            "state store failed",
            "store `counts`",
            "no space left on device",
        ] {
            assert_eq!(report.matches(part).count(), 1, "{part}: {report}");
        }
        // `source()` still walks to the OS error.
        let mut root: &(dyn std::error::Error + 'static) = &failed;
        while let Some(cause) = root.source() {
            root = cause;
        }
        let io = root.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
    }

    #[test]
    fn wrapping_variants_print_their_own_level_only() {
        let decode = SerdeError::new("u64", "expected 8 bytes, got 3").at(
            "numbers",
            0,
            2,
            RecordPart::Value,
        );
        assert_eq!(decode.to_string(), "cannot decode the value of numbers-0@2");
        assert_eq!(
            decode.report().to_string(),
            "cannot decode the value of numbers-0@2: u64: expected 8 bytes, got 3"
        );
        let encode = Error::Serialization {
            topic: "out".into(),
            processor: "sink".into(),
            source: SerdeError::new("json", "key must be a string"),
        };
        assert_eq!(
            encode.report().to_string(),
            "cannot encode a record for topic `out` in `sink`: json: key must be a string"
        );
        let io = Error::io(
            "open",
            "/state/app/.lock",
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied"),
        );
        assert_eq!(io.to_string(), "open /state/app/.lock");
        assert_eq!(
            io.report().to_string(),
            "open /state/app/.lock: permission denied"
        );
        // Refused records are not the error's source: its own message names the first one,
        // with its causes.
        let refused = Error::RecordsRefused {
            topic: "out".into(),
            partition: 0,
            records: 2,
            refused: vec![(1, decode)],
        };
        assert_eq!(
            refused.report().to_string(),
            "1 of 2 records refused by out-0: record 1: cannot decode the value of numbers-0@2: \
             u64: expected 8 bytes, got 3"
        );
        assert!(refused.source().is_none());
    }
}
