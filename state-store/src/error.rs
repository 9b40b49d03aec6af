//! The crate's one error type, and [`Report`], the way to show an error of the engine to a
//! person.
//!
//! Every variant names the store it came from (and the path where there is one) and has a
//! [`ErrorClass`] that says whose fault it is, plus [`StoreError::is_retriable`], so the runtime
//! can decide between failing the task, retrying, and reporting a user mistake. `Display`
//! prints the variant's own level only; the error below it (RocksDB's, the OS's, the
//! changelog's) is its `source()`, so a chain printer ([`Report`], anyhow's `{:#}`) prints each
//! cause once.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;

/// An error with the chain of its causes, each printed once: the error's own message, then
/// `": "` and each cause's down to the root, as anyhow's `{:#}` prints them.
///
/// The engine's errors (this crate's [`StoreError`] and `streams_core::Error`) print only their
/// own level in `Display` and return the error below from `source()`; show them to a person
/// through this (`StoreError::report`, `streams_core::Error::report`).
///
/// ```
/// use state_store::{Report, StoreError};
///
/// let e = StoreError::changelog("counts", true, "broker down");
/// assert_eq!(e.to_string(), "store `counts`: changelog error");
/// assert_eq!(
///     Report::new(&e).to_string(),
///     "store `counts`: changelog error: broker down"
/// );
/// ```
#[derive(Clone, Copy)]
pub struct Report<'a>(&'a (dyn StdError + 'static));

impl<'a> Report<'a> {
    /// The chain of `error` and its sources.
    pub fn new(error: &'a (dyn StdError + 'static)) -> Self {
        Report(error)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The caller asked for something invalid (bad configuration, misuse of a closed store).
    User,
    /// Something outside this process failed: the disk, RocksDB, the changelog.
    External,
    /// A bug or corrupt local data that this crate wrote itself.
    Internal,
}

/// An error from a state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB reported an error.
    #[error("store `{store}`: RocksDB error at {}", .path.display())]
    RocksDb {
        /// Store name.
        store: String,
        /// Directory of the RocksDB instance.
        path: PathBuf,
        /// The RocksDB error.
        #[source]
        source: rocksdb::Error,
    },
    /// A file-system operation failed.
    #[error("store `{store}`: I/O error at {}", .path.display())]
    Io {
        /// Store name (or `checkpoint` for checkpoint files).
        store: String,
        /// File or directory involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Sending a change to the changelog (or reading it during restore) failed.
    #[error("store `{store}`: changelog error")]
    Changelog {
        /// Store name.
        store: String,
        /// Whether retrying the operation may succeed.
        retriable: bool,
        /// The error reported by the changelog implementation.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// Local data does not have the shape this crate writes (e.g. a window key too short).
    #[error("store `{store}`: corrupt data: {reason}")]
    Corrupt {
        /// Store name.
        store: String,
        /// What was wrong.
        reason: String,
    },
    /// The store was configured or used in a way it does not support.
    #[error("store `{store}`: invalid use: {reason}")]
    InvalidUse {
        /// Store name.
        store: String,
        /// What was wrong.
        reason: String,
    },
    /// The store was used after `close()`.
    #[error("store `{store}` is closed")]
    Closed {
        /// Store name.
        store: String,
    },
}

impl StoreError {
    /// The error and its causes, each once: how to show it to a person.
    pub fn report(&self) -> Report<'_> {
        Report::new(self)
    }

    /// Whose fault the error is.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::RocksDb { source, .. } => match source.kind() {
                rocksdb::ErrorKind::Corruption => ErrorClass::Internal,
                rocksdb::ErrorKind::InvalidArgument | rocksdb::ErrorKind::NotSupported => {
                    ErrorClass::User
                }
                _ => ErrorClass::External,
            },
            StoreError::Io { .. } | StoreError::Changelog { .. } => ErrorClass::External,
            StoreError::Corrupt { .. } => ErrorClass::Internal,
            StoreError::InvalidUse { .. } | StoreError::Closed { .. } => ErrorClass::User,
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            StoreError::RocksDb { source, .. } => matches!(
                source.kind(),
                rocksdb::ErrorKind::Busy
                    | rocksdb::ErrorKind::TryAgain
                    | rocksdb::ErrorKind::TimedOut
                    | rocksdb::ErrorKind::Incomplete
            ),
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            ),
            StoreError::Changelog { retriable, .. } => *retriable,
            StoreError::Corrupt { .. }
            | StoreError::InvalidUse { .. }
            | StoreError::Closed { .. } => false,
        }
    }

    /// Whether the error says the store's local files are damaged or incomplete (RocksDB
    /// reports corruption: a garbled `CURRENT` or `MANIFEST`, a missing `.sst`, a `CURRENT`
    /// lost while other files stayed). Such data cannot be trusted; only a wipe and a restore
    /// from the changelog bring the store back. A lock held by another user is not this.
    pub fn is_corruption(&self) -> bool {
        match self {
            StoreError::RocksDb { source, .. } => source.kind() == rocksdb::ErrorKind::Corruption,
            StoreError::Corrupt { .. } => true,
            _ => false,
        }
    }

    /// The name of the store the error came from.
    pub fn store(&self) -> &str {
        match self {
            StoreError::RocksDb { store, .. }
            | StoreError::Io { store, .. }
            | StoreError::Changelog { store, .. }
            | StoreError::Corrupt { store, .. }
            | StoreError::InvalidUse { store, .. }
            | StoreError::Closed { store } => store,
        }
    }

    /// Wraps an error of a [`ChangelogSink`](crate::ChangelogSink) or of the log a restore reads.
    pub fn changelog(
        store: impl Into<String>,
        retriable: bool,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StoreError::Changelog {
            store: store.into(),
            retriable,
            source: source.into(),
        }
    }

    pub(crate) fn rocks(store: &str, path: &std::path::Path, source: rocksdb::Error) -> Self {
        StoreError::RocksDb {
            store: store.to_owned(),
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn io(store: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        StoreError::Io {
            store: store.to_owned(),
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn corrupt(store: &str, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            store: store.to_owned(),
            reason: reason.into(),
        }
    }

    /// `Ok(())` while store `store` is `open`; [`StoreError::Closed`] once it is closed.
    pub(crate) fn check_open(store: &str, open: bool) -> Result<(), Self> {
        if open {
            Ok(())
        } else {
            Err(StoreError::Closed {
                store: store.to_owned(),
            })
        }
    }

    pub(crate) fn invalid(store: &str, reason: impl Into<String>) -> Self {
        StoreError::InvalidUse {
            store: store.to_owned(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let e = StoreError::changelog("s", true, "broker down");
        assert_eq!(e.class(), ErrorClass::External);
        assert!(e.is_retriable());
        assert_eq!(e.store(), "s");
        let e = StoreError::Closed { store: "t".into() };
        assert_eq!(e.class(), ErrorClass::User);
        assert!(!e.is_retriable());
        assert_eq!(
            StoreError::corrupt("x", "short key").class(),
            ErrorClass::Internal
        );
    }

    /// How often `needle` occurs in `text`.
    fn occurrences(text: &str, needle: &str) -> usize {
        text.matches(needle).count()
    }

    #[test]
    fn display_is_one_level_and_the_report_names_each_cause_once() {
        let e = StoreError::io(
            "counts",
            std::path::Path::new("/state/counts"),
            std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left"),
        );
        assert_eq!(e.to_string(), "store `counts`: I/O error at /state/counts");
        let report = e.report().to_string();
        assert_eq!(
            report,
            "store `counts`: I/O error at /state/counts: no space left"
        );
        assert_eq!(occurrences(&report, "no space left"), 1, "{report}");
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::StorageFull)
        );
    }

    #[test]
    fn a_rocksdb_error_is_the_source_and_printed_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kv");
        std::fs::create_dir_all(&path).expect("store dir");
        // A CURRENT that names no manifest: RocksDB refuses to open the store.
        std::fs::write(path.join("CURRENT"), "garbage").expect("CURRENT");
        let e = crate::StoreBuilder::key_value("kv")
            .persistent(&path, &crate::RocksDbMemory::default())
            .build()
            .err()
            .expect("opening fails");
        assert!(matches!(e, StoreError::RocksDb { .. }), "{e:?}");
        let rocks = e
            .source()
            .and_then(|s| s.downcast_ref::<rocksdb::Error>())
            .expect("the source is RocksDB's error");
        let rocks_text = rocks.to_string();
        assert!(!e.to_string().contains(&rocks_text), "{e}");
        let report = e.report().to_string();
        assert_eq!(report, format!("{e}: {rocks_text}"));
        assert_eq!(occurrences(&report, &rocks_text), 1, "{report}");
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<StoreError>();
    }
}
