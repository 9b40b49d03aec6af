//! Application configuration: what `Streams` needs before it starts, checked in one place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::handler::RecordErrorHandler;
use crate::log::validate_topic_name;

pub use super::choices::{ExceptionHandler, ExceptionResponse, OffsetReset, ProcessingGuarantee};

/// Configuration of a [`Streams`](super::Streams) application.
///
/// ```
/// use std::time::Duration;
/// use streams_core::{ProcessingGuarantee, StreamsConfig};
///
/// let config = StreamsConfig::new("word-count", std::env::temp_dir().join("word-count"))
///     .with_threads(2)
///     .with_guarantee(ProcessingGuarantee::ExactlyOnce)
///     .with_commit_interval(Duration::from_millis(200));
/// config.validate()?;
/// # Ok::<(), streams_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct StreamsConfig {
    /// Names the consumer group, prefixes internal topics and names the state subdirectory.
    pub application_id: String,
    /// Root of local state (stores under `<state_dir>/<application_id>/<task>/`).
    pub state_dir: PathBuf,
    /// Stream threads to run.
    pub threads: usize,
    /// How often each thread commits (Kafka's defaults: 30 s, and 100 ms under exactly-once).
    /// Set it with [`StreamsConfig::with_commit_interval`], so that choosing a guarantee
    /// keeps it.
    pub commit_interval: Duration,
    /// At-least-once or exactly-once.
    pub guarantee: ProcessingGuarantee,
    /// Record-cache bytes for the whole application, split evenly between threads.
    pub cache_max_bytes: usize,
    /// RocksDB block cache plus memtables, for the whole application.
    pub rocksdb_memory_bytes: usize,
    /// The part of `rocksdb_memory_bytes` memtables may use.
    pub rocksdb_memtable_bytes: usize,
    /// Records read from one partition per poll.
    pub max_poll_records: usize,
    /// A partition is not polled again while this many of its records wait in the task.
    pub max_buffered_records: usize,
    /// How long an idle thread waits before polling again.
    pub poll_idle: Duration,
    /// `task.timeout.ms`: how long a thread keeps retrying after errors the log calls
    /// transient (a broker that is down or restarting, a lost group membership) before it
    /// fails. Each retry closes the thread's tasks without committing and opens them again,
    /// restored from their changelogs and resumed from their last commit.
    pub task_timeout: Duration,
    /// `auto.offset.reset`: where to read an input partition without a committed offset, or
    /// whose committed offset is out of its range.
    pub offset_reset: OffsetReset,
    /// How many times in a row a task may fail, with no commit that moves it forward in
    /// between, while the exception handler replaces failed threads. At the limit the
    /// application stops with [`Error::TaskFailed`], which names the task, the cause and what
    /// to do, instead of replacing threads forever.
    pub max_task_failures: u32,
    /// `retry.backoff.ms`: the pause before a failed task is retried (or a thread retries a
    /// transient error); it doubles with each failure in a row, up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest pause between retries.
    pub retry_backoff_max: Duration,
    /// What happens to records that cannot be decoded.
    pub deserialization: RecordErrorHandler,
    /// What happens to records that cannot be encoded or appended.
    pub production: RecordErrorHandler,
    /// `application.server`: the `host:port` where this instance serves interactive queries,
    /// told to the other instances through the consumer group so that any of them can say
    /// which instance holds a key ([`Streams::query_metadata_for_key`]). `None`: this
    /// instance can run tasks, but no instance can point at it.
    ///
    /// [`Streams::query_metadata_for_key`]: super::Streams::query_metadata_for_key
    pub application_server: Option<String>,
    /// `http.bearer.token`: the token the HTTP query server asks every request for (except
    /// the probes), as `Authorization: Bearer <token>`, and sends to the other instances when
    /// it forwards a query. `None`: the server answers anyone who reaches it. Never printed.
    pub http_bearer_token: Option<String>,
    /// Whether `with_commit_interval` chose the commit interval (the guarantee's default
    /// applies otherwise).
    commit_interval_chosen: bool,
}

impl std::fmt::Debug for StreamsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsConfig")
            .field("application_id", &self.application_id)
            .field("state_dir", &self.state_dir)
            .field("threads", &self.threads)
            .field("commit_interval", &self.commit_interval)
            .field("guarantee", &self.guarantee)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("rocksdb_memory_bytes", &self.rocksdb_memory_bytes)
            .field("application_server", &self.application_server)
            .field(
                "http_bearer_token",
                &self.http_bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl StreamsConfig {
    /// Kafka Streams' defaults: one thread, at-least-once, 30 s commits, a 10 MiB cache.
    pub fn new(application_id: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        StreamsConfig {
            application_id: application_id.into(),
            state_dir: state_dir.into(),
            threads: 1,
            commit_interval: Duration::from_secs(30),
            guarantee: ProcessingGuarantee::AtLeastOnce,
            cache_max_bytes: 10 << 20,
            rocksdb_memory_bytes: 64 << 20,
            rocksdb_memtable_bytes: 16 << 20,
            max_poll_records: 1000,
            max_buffered_records: 2000,
            poll_idle: Duration::from_millis(5),
            task_timeout: Duration::from_secs(300),
            offset_reset: OffsetReset::Earliest,
            max_task_failures: 5,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            deserialization: RecordErrorHandler::Fail,
            production: RecordErrorHandler::Fail,
            application_server: None,
            http_bearer_token: None,
            commit_interval_chosen: false,
        }
    }

    /// Sets the number of stream threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Sets the guarantee. Unless a commit interval was chosen with
    /// [`StreamsConfig::with_commit_interval`] (before or after this call), the interval
    /// becomes the guarantee's default, as in Kafka Streams: 100 ms under exactly-once, 30 s
    /// under at-least-once.
    pub fn with_guarantee(mut self, guarantee: ProcessingGuarantee) -> Self {
        if !self.commit_interval_chosen {
            self.commit_interval = match guarantee {
                ProcessingGuarantee::ExactlyOnce => Duration::from_millis(100),
                ProcessingGuarantee::AtLeastOnce => Duration::from_secs(30),
            };
        }
        self.guarantee = guarantee;
        self
    }

    /// Sets how often each thread commits; a guarantee set later keeps it.
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self.commit_interval_chosen = true;
        self
    }

    /// Sets the application-wide record-cache size (0 turns caching off).
    pub fn with_cache_max_bytes(mut self, bytes: usize) -> Self {
        self.cache_max_bytes = bytes;
        self
    }

    /// Sets the application-wide RocksDB memory bound and the memtables' share of it.
    pub fn with_rocksdb_memory(mut self, total_bytes: usize, memtable_bytes: usize) -> Self {
        self.rocksdb_memory_bytes = total_bytes;
        self.rocksdb_memtable_bytes = memtable_bytes;
        self
    }

    /// Sets the deserialization handler.
    pub fn with_deserialization_handler(mut self, handler: RecordErrorHandler) -> Self {
        self.deserialization = handler;
        self
    }

    /// Sets the production handler.
    pub fn with_production_handler(mut self, handler: RecordErrorHandler) -> Self {
        self.production = handler;
        self
    }

    /// Sets `application.server`: the `host:port` other instances reach this one's query
    /// server at (checked by [`StreamsConfig::validate`]; see [`HostInfo`]).
    ///
    /// [`HostInfo`]: super::HostInfo
    pub fn with_application_server(mut self, endpoint: impl Into<String>) -> Self {
        self.application_server = Some(endpoint.into());
        self
    }

    /// Sets `http.bearer.token`, the token the HTTP query server asks for (checked by
    /// [`StreamsConfig::validate`]: RFC 6750's token characters, at least 16 of them).
    pub fn with_http_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.http_bearer_token = Some(token.into());
        self
    }

    /// `application.server`, read; an error names what is wrong with it.
    pub fn application_server(&self) -> Result<Option<super::HostInfo>> {
        self.application_server
            .as_deref()
            .map(super::HostInfo::parse)
            .transpose()
    }

    /// Where the embedded log of this state directory lives (`<state_dir>/log`).
    pub fn embedded_log_dir(&self) -> PathBuf {
        self.state_dir.join("log")
    }

    /// Sets `task.timeout.ms` (zero: fail at the first transient error).
    pub fn with_task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = timeout;
        self
    }

    /// Sets `auto.offset.reset`.
    pub fn with_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.offset_reset = reset;
        self
    }

    /// Sets how many failures in a row a task may have before the application stops.
    pub fn with_max_task_failures(mut self, failures: u32) -> Self {
        self.max_task_failures = failures;
        self
    }

    /// Sets the first and the longest pause between retries.
    pub fn with_retry_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.retry_backoff = first;
        self.retry_backoff_max = max;
        self
    }

    /// The pause before retry number `attempt` (1 for the first): `retry_backoff` doubled
    /// for each earlier attempt, at most `retry_backoff_max`.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.retry_backoff
            .saturating_mul(factor)
            .min(self.retry_backoff_max)
    }

    /// Checks every setting, naming the first that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: String| {
            Err(Error::Config {
                key: key.into(),
                reason,
            })
        };
        if self.application_id.is_empty() {
            return bad("application.id", "must not be empty".into());
        }
        if let Err(e) = validate_topic_name(&self.application_id) {
            return bad(
                "application.id",
                format!("prefixes internal topic names, so it must be a valid topic name: {e}"),
            );
        }
        if self.state_dir.as_os_str().is_empty() {
            return bad("state.dir", "must not be empty".into());
        }
        if self.threads == 0 {
            return bad("num.stream.threads", "must be at least 1".into());
        }
        if self.threads > 256 {
            return bad(
                "num.stream.threads",
                format!("{} is more than the 256 supported", self.threads),
            );
        }
        if self.commit_interval.is_zero() {
            return bad("commit.interval.ms", "must be positive".into());
        }
        if self.max_poll_records == 0 {
            return bad("max.poll.records", "must be at least 1".into());
        }
        if self.max_buffered_records < self.max_poll_records {
            return bad(
                "buffered.records.per.partition",
                format!(
                    "{} is below max.poll.records ({})",
                    self.max_buffered_records, self.max_poll_records
                ),
            );
        }
        if self.max_task_failures == 0 {
            return bad("max.task.failures", "must be at least 1".into());
        }
        if self.retry_backoff_max < self.retry_backoff {
            return bad(
                "retry.backoff.max.ms",
                format!(
                    "{:?} is below retry.backoff.ms ({:?})",
                    self.retry_backoff_max, self.retry_backoff
                ),
            );
        }
        if self.rocksdb_memory_bytes < 1 << 20 {
            return bad(
                "rocksdb.memory.bytes",
                format!("{} is below the 1 MiB minimum", self.rocksdb_memory_bytes),
            );
        }
        if self.rocksdb_memtable_bytes > self.rocksdb_memory_bytes {
            return bad(
                "rocksdb.memtable.bytes",
                format!(
                    "{} exceeds rocksdb.memory.bytes ({})",
                    self.rocksdb_memtable_bytes, self.rocksdb_memory_bytes
                ),
            );
        }
        self.application_server()?;
        if let Some(token) = &self.http_bearer_token {
            check_bearer_token(token)?;
        }
        for (key, handler_topic) in [
            (
                "deserialization.exception.handler",
                self.deserialization.dead_letter_topic(),
            ),
            (
                "production.exception.handler",
                self.production.dead_letter_topic(),
            ),
        ] {
            if let Some(topic) = handler_topic {
                if let Err(e) = validate_topic_name(topic) {
                    return bad(key, format!("dead-letter topic: {e}"));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn app_state_dir(&self) -> PathBuf {
        Path::new(&self.state_dir).join(&self.application_id)
    }

    /// What [`StreamsConfig::clean_up_local_state`] would remove: every entry of
    /// `<state_dir>/<application_id>/` (task directories with their stores and checkpoints,
    /// global stores) except the `process-id` file, sorted. Empty when the directory does not
    /// exist.
    ///
    /// Fails when the application's directory is the embedded log's (an application id
    /// `log`): its entries are topics, which a clean-up must never remove.
    pub fn local_state(&self) -> Result<Vec<PathBuf>> {
        let dir = self.app_state_dir();
        if dir == self.embedded_log_dir() {
            return Err(Error::Config {
                key: "application.id".into(),
                reason: format!(
                    "`{}` names the embedded log's directory {}, so its local state cannot be \
                     told apart from the log's topics: remove its task directories by hand",
                    self.application_id,
                    dir.display()
                ),
            });
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            if entry.file_name() != "process-id" {
                found.push(entry.path());
            }
        }
        found.sort();
        Ok(found)
    }

    /// Removes this application's local state: everything [`StreamsConfig::local_state`]
    /// lists, returning it. What Kafka Streams' `cleanUp()` does, for an application that is
    /// not running (see [`Streams::clean_up`](crate::Streams::clean_up), which checks that
    /// for its own instance): its next start restores every store from its changelog, or,
    /// after an application reset deleted the changelogs, starts the stores empty.
    ///
    /// The process id stays, so the instance keeps its identity (on Kafka its transactional
    /// ids still fence a zombie of itself). Nothing outside `<state_dir>/<application_id>/`
    /// is touched: the embedded log under `<state_dir>/log` keeps every topic.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let config = streams_core::StreamsConfig::new("app", dir.path());
    /// let id = config.process_id()?;
    /// std::fs::create_dir_all(dir.path().join("app").join("0_0").join("counts"))?;
    /// assert_eq!(config.clean_up_local_state()?, vec![dir.path().join("app").join("0_0")]);
    /// assert!(config.local_state()?.is_empty());
    /// assert_eq!(config.process_id()?, id, "the process id stays");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clean_up_local_state(&self) -> Result<Vec<PathBuf>> {
        let found = self.local_state()?;
        for path in &found {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", path, e)),
            }
        }
        Ok(found)
    }

    /// This instance's process id: 32 random hex digits, made on first use and kept in
    /// `<state_dir>/<application_id>/process-id`, so it stays the same across restarts and
    /// differs between replicas (each has its own state directory), as Kafka Streams' process
    /// id does. Use it where instances must not collide, such as the prefix of Kafka
    /// `transactional.id`s: `<application_id>-<process id>`.
    ///
    /// Fails, naming the file, when it cannot be read or written, or holds something else.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let config = streams_core::StreamsConfig::new("app", dir.path());
    /// let id = config.process_id()?;
    /// assert_eq!(id.len(), 32);
    /// assert_eq!(config.process_id()?, id, "kept in the state directory");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn process_id(&self) -> Result<String> {
        let dir = self.app_state_dir();
        let path = dir.join("process-id");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let id = text.trim();
                if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(id.to_string());
                }
                Err(Error::Corrupt {
                    path,
                    position: 0,
                    reason: "a process id is 32 hex digits".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes).map_err(|e| Error::Io {
                    op: "draw a random process id for",
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, format!("{id}\n")).map_err(|e| Error::io("write", &tmp, e))?;
                std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
                Ok(id)
            }
            Err(e) => Err(Error::io("read", &path, e)),
        }
    }
}

/// Whether `token` can be a bearer token (RFC 6750's `b64token`), long enough not to be
/// guessed; the error never shows the token.
pub(crate) fn check_bearer_token(token: &str) -> Result<()> {
    const MIN: usize = 16;
    let body = token.trim_end_matches('=');
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
    let reason = if token.len() < MIN {
        format!(
            "is {} characters long; a token needs at least {MIN}",
            token.len()
        )
    } else if body.is_empty() || !body.chars().all(allowed) {
        "holds a character a bearer token cannot (letters, digits and -._~+/ then any `=`)"
            .to_string()
    } else {
        return Ok(());
    };
    Err(Error::Config {
        key: "http.bearer.token".into(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(StreamsConfig::new("app", "/tmp/x").validate().is_ok());
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: Vec<(StreamsConfig, &str)> = vec![
            (StreamsConfig::new("", "/tmp/x"), "application.id"),
            (StreamsConfig::new("a b", "/tmp/x"), "application.id"),
            (StreamsConfig::new("app", ""), "state.dir"),
            (
                StreamsConfig::new("app", "/tmp/x").with_threads(0),
                "num.stream.threads",
            ),
            (
                StreamsConfig::new("app", "/tmp/x").with_commit_interval(Duration::ZERO),
                "commit.interval.ms",
            ),
            (
                StreamsConfig::new("app", "/tmp/x").with_max_task_failures(0),
                "max.task.failures",
            ),
            (
                StreamsConfig::new("app", "/tmp/x")
                    .with_retry_backoff(Duration::from_secs(2), Duration::from_secs(1)),
                "retry.backoff.max.ms",
            ),
            (
                StreamsConfig::new("app", "/tmp/x").with_rocksdb_memory(4 << 20, 8 << 20),
                "rocksdb.memtable.bytes",
            ),
            (
                StreamsConfig::new("app", "/tmp/x")
                    .with_production_handler(RecordErrorHandler::DeadLetter("bad topic".into())),
                "production.exception.handler",
            ),
            (
                StreamsConfig::new("app", "/tmp/x").with_application_server("localhost"),
                "application.server",
            ),
        ];
        for (config, key) in cases {
            match config.validate() {
                Err(Error::Config { key: k, .. }) => assert_eq!(k, key),
                other => panic!("expected a config error for {key}, got {other:?}"),
            }
        }
    }

    #[test]
    fn application_server_errors_say_what_is_wrong() {
        let cases = [
            ("", "no `:port`"),
            ("localhost", "no `:port`"),
            (":7070", "the host is empty"),
            ("host:", "the port `` is not a number"),
            ("host:http", "the port `http` is not a number"),
            ("host:70000", "the port `70000` is not a number"),
            ("host:0", "the port is 0"),
            ("::1:7070", "an IPv6 address goes in brackets"),
            ("[::1]7070", "`]:port`"),
            ("[host]:7070", "not an IPv6 address"),
            ("user@host:7070", "the host has '@'"),
            ("http://host:7070", "without a scheme"),
        ];
        for (endpoint, why) in cases {
            let config = StreamsConfig::new("app", "/tmp/x").with_application_server(endpoint);
            match config.validate() {
                Err(Error::Config { key, reason }) => {
                    assert_eq!(key, "application.server", "{endpoint}");
                    assert!(
                        reason.contains(why) && reason.contains(&format!("`{endpoint}`")),
                        "{endpoint}: {reason}"
                    );
                }
                other => panic!("{endpoint}: expected a config error, got {other:?}"),
            }
        }
        for endpoint in ["localhost:7070", "10.0.0.7:1", "[::1]:65535", "a-b_c.d:80"] {
            let config = StreamsConfig::new("app", "/tmp/x").with_application_server(endpoint);
            let host = config.application_server().ok().flatten();
            assert_eq!(
                host.map(|h| h.to_string()),
                Some(endpoint.to_string()),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn exactly_once_shortens_the_default_commit_interval() {
        let c = StreamsConfig::new("a", "/tmp/x").with_guarantee(ProcessingGuarantee::ExactlyOnce);
        assert_eq!(c.commit_interval, Duration::from_millis(100));
        let c = StreamsConfig::new("a", "/tmp/x")
            .with_commit_interval(Duration::from_secs(2))
            .with_guarantee(ProcessingGuarantee::ExactlyOnce);
        assert_eq!(c.commit_interval, Duration::from_secs(2));
        // An interval chosen explicitly is kept even when it equals the default.
        let c = StreamsConfig::new("a", "/tmp/x")
            .with_commit_interval(Duration::from_secs(30))
            .with_guarantee(ProcessingGuarantee::ExactlyOnce);
        assert_eq!(c.commit_interval, Duration::from_secs(30));
        let c = StreamsConfig::new("a", "/tmp/x")
            .with_guarantee(ProcessingGuarantee::ExactlyOnce)
            .with_guarantee(ProcessingGuarantee::AtLeastOnce);
        assert_eq!(c.commit_interval, Duration::from_secs(30));
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let c = StreamsConfig::new("a", "/tmp/x")
            .with_retry_backoff(Duration::from_millis(100), Duration::from_millis(700));
        let pauses: Vec<u128> = (1..=5).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(pauses, vec![100, 200, 400, 700, 700]);
        assert_eq!(c.backoff(u32::MAX), Duration::from_millis(700));
    }

    #[test]
    fn offset_reset_parses() {
        assert_eq!(
            "latest".parse::<OffsetReset>().ok(),
            Some(OffsetReset::Latest)
        );
        assert_eq!("none".parse::<OffsetReset>().ok(), Some(OffsetReset::None));
        assert!("smallest".parse::<OffsetReset>().is_err());
    }

    #[test]
    fn guarantee_parses() {
        assert_eq!(
            "exactly-once".parse::<ProcessingGuarantee>().ok(),
            Some(ProcessingGuarantee::ExactlyOnce)
        );
        assert!("twice".parse::<ProcessingGuarantee>().is_err());
    }
}
