//! Settings by Kafka-style name (`application.id`, `num.stream.threads`, ...), from a map, a
//! Java properties file or environment variables, turned into a [`StreamsConfig`] and, on
//! Kafka, a [`KafkaLogConfig`](crate::KafkaLogConfig). Values are checked as the builder calls
//! check them, and a bad one is an [`Error::Config`] naming the key, where it came from and
//! the value.
//!
//! | key | sets | value |
//! |---|---|---|
//! | `application.id` | `application_id` (required) | a valid topic name |
//! | `state.dir` | `state_dir` | a path; default `<temp dir>/kafka-streams`, as Kafka Streams |
//! | `num.stream.threads` | `threads` | 1 to 256 |
//! | `commit.interval.ms` | `commit_interval` | a duration |
//! | `processing.guarantee` | `guarantee` | `at_least_once`, `exactly_once_v2` (also `exactly_once`, `at-least-once`, `exactly-once`) |
//! | `statestore.cache.max.bytes` (or `cache.max.bytes.buffering`) | `cache_max_bytes` | bytes |
//! | `rocksdb.memory.bytes`, `rocksdb.memtable.bytes` | RocksDB's memory bound and the memtables' share | bytes |
//! | `max.poll.records` | `max_poll_records` | a count |
//! | `buffered.records.per.partition` | `max_buffered_records` | a count |
//! | `poll.ms` | `poll_idle` | a duration |
//! | `task.timeout.ms` | `task_timeout` | a duration |
//! | `auto.offset.reset` | `offset_reset` | `earliest`, `latest`, `none` |
//! | `max.task.failures` | `max_task_failures` | a count |
//! | `retry.backoff.ms`, `retry.backoff.max.ms` | `retry_backoff`, `retry_backoff_max` | durations |
//! | `deserialization.exception.handler`, `production.exception.handler` | the handlers | `fail`, `log-and-continue` (or Kafka Streams' class names `LogAndFailExceptionHandler`, `LogAndContinueExceptionHandler`, `DefaultProductionExceptionHandler`), `dead-letter` |
//! | `errors.dead.letter.queue.topic.name` | the topic of `dead-letter` handlers (KIP-1034's name) | a topic |
//! | `application.server` | `application_server` | `host:port` where this instance serves queries (see [`HostInfo`](crate::HostInfo)); blank is unset |
//! | `http.bearer.token` | `http_bearer_token` | the HTTP query server's token (16 or more of RFC 6750's token characters); blank is unset |
//!
//! A duration is whole milliseconds (`30000`, as Kafka's `*.ms` settings) or a human one
//! (`30s`, `100ms`, `5min`, `1h 30m`).
//!
//! For a [`KafkaLogConfig`](crate::KafkaLogConfig): `bootstrap.servers` (required),
//! `replication.factor`, `group.instance.id`, `session.timeout.ms`, `default.api.timeout.ms`
//! (the log's bound on one call); properties starting with `producer.` go to the producers,
//! `consumer.`, `main.consumer.`, `restore.consumer.` and `global.consumer.` to the consumers
//! (prefix removed), and every other key that is not a setting above goes to every Kafka client
//! as it is (`client.id`, `security.protocol`, `sasl.*`, `admin.*` without its prefix), as
//! Kafka Streams passes client properties through; librdkafka rejects the ones it does not
//! know when the log connects. Without `bootstrap.servers` there is no client to pass them
//! to, so [`StreamsConfig::from_properties`] rejects keys it does not know: a misspelt setting
//! never goes unnoticed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::config::{OffsetReset, ProcessingGuarantee, StreamsConfig};
use crate::error::{Error, Result};
use crate::handler::RecordErrorHandler;

/// The prefix of the environment variables [`Properties::from_env`] reads.
pub const ENV_PREFIX: &str = "KSTREAMS_";

/// The keys [`StreamsConfig::from_properties`] reads.
const STREAMS_KEYS: &[&str] = &[
    "application.id",
    "state.dir",
    "num.stream.threads",
    "commit.interval.ms",
    "processing.guarantee",
    "statestore.cache.max.bytes",
    "cache.max.bytes.buffering",
    "rocksdb.memory.bytes",
    "rocksdb.memtable.bytes",
    "max.poll.records",
    "buffered.records.per.partition",
    "poll.ms",
    "task.timeout.ms",
    "auto.offset.reset",
    "max.task.failures",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "deserialization.exception.handler",
    "production.exception.handler",
    "errors.dead.letter.queue.topic.name",
    "application.server",
    "http.bearer.token",
];

/// The keys the Kafka log's own settings use (not passed on as client properties).
const KAFKA_KEYS: &[&str] = &[
    "bootstrap.servers",
    "replication.factor",
    "group.instance.id",
    "session.timeout.ms",
    "default.api.timeout.ms",
];

/// Settings by name, each with where it came from (for error messages). Later sources
/// override earlier ones with [`Properties::merge`].
///
/// ```
/// use streams_core::{Properties, StreamsConfig};
///
/// let props = Properties::from_map([
///     ("application.id", "word-count"),
///     ("state.dir", "/var/lib/word-count"),
///     ("num.stream.threads", "4"),
///     ("commit.interval.ms", "1s"),
/// ]);
/// let config = StreamsConfig::from_properties(&props)?;
/// assert_eq!(config.threads, 4);
/// assert_eq!(config.commit_interval, std::time::Duration::from_secs(1));
///
/// let bad = Properties::from_map([("application.id", "a"), ("num.stream.threads", "lots")]);
/// let error = StreamsConfig::from_properties(&bad).unwrap_err().to_string();
/// assert!(error.contains("num.stream.threads") && error.contains("lots"), "{error}");
/// # Ok::<(), streams_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    values: BTreeMap<String, (String, String)>,
}

impl Properties {
    /// Properties from `(key, value)` pairs.
    pub fn from_map<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut p = Properties::default();
        for (k, v) in pairs {
            p.set_from(k.into(), v.into(), "the map given".to_string());
        }
        p
    }

    /// Properties read from a Java properties file (`key=value`, `key: value` or
    /// `key value` lines, `#` and `!` comments, `\` continuations and escapes).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let map =
            java_properties::read(std::io::BufReader::new(file)).map_err(|e| Error::Config {
                key: format!("the properties file {}", path.display()),
                reason: e.to_string(),
            })?;
        let mut p = Properties::default();
        for (k, v) in map {
            p.set_from(k, v, format!("file {}", path.display()));
        }
        Ok(p)
    }

    /// Properties from this process's environment variables starting with `KSTREAMS_`
    /// ([`ENV_PREFIX`]): `KSTREAMS_APPLICATION_ID` sets `application.id`,
    /// `KSTREAMS_PRODUCER_LINGER_MS` sets `producer.linger.ms` (the rest of the name lower-cased,
    /// `_` read as `.`). Variables that are not UTF-8 are skipped.
    pub fn from_env() -> Self {
        Properties::from_env_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// [`Properties::from_env`] over the variables given (name, value).
    pub fn from_env_vars<K: AsRef<str>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut p = Properties::default();
        for (name, value) in vars {
            let name = name.as_ref();
            if let Some(key) = env_key(name) {
                p.set_from(key, value.into(), format!("environment variable {name}"));
            }
        }
        p
    }

    /// These properties with `later`'s on top (a key in both takes `later`'s value).
    pub fn merge(mut self, later: Properties) -> Self {
        self.values.extend(later.values);
        self
    }

    /// Sets one property.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.set_from(
            key.into(),
            value.into(),
            "a call to Properties::set".to_string(),
        );
    }

    /// Sets one property, saying where it came from (`--threads`, say) for error messages.
    pub fn set_with_origin(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        origin: impl Into<String>,
    ) {
        self.set_from(key.into(), value.into(), origin.into());
    }

    fn set_from(&mut self, key: String, value: String, origin: String) {
        self.values
            .insert(key.trim().to_string(), (value.trim().to_string(), origin));
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    /// Every key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }

    /// An error about `key`'s value, naming where it came from.
    fn bad(&self, key: &str, why: impl std::fmt::Display) -> Error {
        let (value, origin) = self
            .values
            .get(key)
            .map_or(("", "nowhere"), |(v, o)| (v.as_str(), o.as_str()));
        // A secret's value stays out of messages, which end up in logs.
        let secret = ["token", "password", "secret", "passphrase", "private.key"];
        let lower = key.to_ascii_lowercase();
        let value = if secret.iter().any(|w| lower.contains(w)) {
            "[redacted]"
        } else {
            value
        };
        Error::Config {
            key: key.to_string(),
            reason: format!("`{value}` (from {origin}) {why}"),
        }
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|_| self.bad(key, format_args!("is not {what}"))),
        }
    }

    fn duration(&self, key: &str) -> Result<Option<Duration>> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        if let Ok(ms) = raw.parse::<u64>() {
            return Ok(Some(Duration::from_millis(ms)));
        }
        humantime::parse_duration(raw).map(Some).map_err(|e| {
            self.bad(
                key,
                format_args!("is neither milliseconds nor a duration such as `30s` ({e})"),
            )
        })
    }

    fn handler(&self, key: &str) -> Result<Option<RecordErrorHandler>> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        let short = raw.rsplit('.').next().unwrap_or(raw);
        match short {
            "fail" | "LogAndFailExceptionHandler" | "DefaultProductionExceptionHandler" => {
                Ok(Some(RecordErrorHandler::Fail))
            }
            "log-and-continue" | "LogAndContinueExceptionHandler" => {
                Ok(Some(RecordErrorHandler::LogAndContinue))
            }
            "dead-letter" => match self.get("errors.dead.letter.queue.topic.name") {
                Some(topic) => Ok(Some(RecordErrorHandler::DeadLetter(topic.to_string()))),
                None => Err(self.bad(
                    key,
                    "needs the topic in errors.dead.letter.queue.topic.name",
                )),
            },
            _ => Err(self.bad(key, "is not `fail`, `log-and-continue` or `dead-letter`")),
        }
    }
}

/// `KSTREAMS_NUM_STREAM_THREADS` → `num.stream.threads`.
fn env_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    (!rest.is_empty()).then(|| rest.to_ascii_lowercase().replace('_', "."))
}

impl StreamsConfig {
    /// A configuration from Kafka-style properties (see the table in
    /// [`Properties`]' module docs, and the README's configuration reference): the settings
    /// given, Kafka Streams' defaults for the rest, validated as [`StreamsConfig::validate`]
    /// does. An error names the key, where it came from, and the bad value.
    pub fn from_properties(props: &Properties) -> Result<StreamsConfig> {
        let id = props.get("application.id").ok_or_else(|| Error::Config {
            key: "application.id".into(),
            reason: "is required".into(),
        })?;
        let dir = props.get("state.dir").map_or_else(
            || std::env::temp_dir().join("kafka-streams"),
            std::path::PathBuf::from,
        );
        let mut c = StreamsConfig::new(id, dir);
        if let Some(n) = props.parse("num.stream.threads", "a whole number")? {
            c = c.with_threads(n);
        }
        if let Some(g) = props.get("processing.guarantee") {
            let g: ProcessingGuarantee = match g {
                "at_least_once" => ProcessingGuarantee::AtLeastOnce,
                other => other.parse().map_err(|_| {
                    props.bad(
                        "processing.guarantee",
                        "is not `at_least_once` or `exactly_once_v2`",
                    )
                })?,
            };
            c = c.with_guarantee(g);
        }
        if let Some(d) = props.duration("commit.interval.ms")? {
            c = c.with_commit_interval(d);
        }
        for key in ["cache.max.bytes.buffering", "statestore.cache.max.bytes"] {
            if let Some(b) = props.parse(key, "a number of bytes")? {
                c = c.with_cache_max_bytes(b);
            }
        }
        let total = props.parse("rocksdb.memory.bytes", "a number of bytes")?;
        let memtables = props.parse("rocksdb.memtable.bytes", "a number of bytes")?;
        let (total, memtables) = (
            total.unwrap_or(c.rocksdb_memory_bytes),
            memtables.unwrap_or(c.rocksdb_memtable_bytes),
        );
        c = c.with_rocksdb_memory(total, memtables);
        if let Some(n) = props.parse("max.poll.records", "a whole number")? {
            c.max_poll_records = n;
        }
        if let Some(n) = props.parse("buffered.records.per.partition", "a whole number")? {
            c.max_buffered_records = n;
        }
        if let Some(d) = props.duration("poll.ms")? {
            c.poll_idle = d;
        }
        if let Some(d) = props.duration("task.timeout.ms")? {
            c = c.with_task_timeout(d);
        }
        if let Some(r) = props.get("auto.offset.reset") {
            let r: OffsetReset = r.parse().map_err(|_| {
                props.bad("auto.offset.reset", "is not `earliest`, `latest` or `none`")
            })?;
            c = c.with_offset_reset(r);
        }
        if let Some(n) = props.parse("max.task.failures", "a whole number")? {
            c = c.with_max_task_failures(n);
        }
        let first = props.duration("retry.backoff.ms")?;
        let max = props.duration("retry.backoff.max.ms")?;
        let (first, max) = (
            first.unwrap_or(c.retry_backoff),
            max.unwrap_or(c.retry_backoff_max),
        );
        c = c.with_retry_backoff(first, max);
        if let Some(h) = props.handler("deserialization.exception.handler")? {
            c = c.with_deserialization_handler(h);
        }
        if let Some(h) = props.handler("production.exception.handler")? {
            c = c.with_production_handler(h);
        }
        // Blank is unset, as in Kafka Streams.
        if let Some(endpoint) = props.get("application.server").filter(|e| !e.is_empty()) {
            c = c.with_application_server(endpoint);
        }
        if let Some(token) = props.get("http.bearer.token").filter(|t| !t.is_empty()) {
            c = c.with_http_bearer_token(token);
        }
        if props.get("bootstrap.servers").is_none() {
            if let Some((key, _)) = props.iter().find(|(k, _)| !STREAMS_KEYS.contains(k)) {
                return Err(props.bad(
                    key,
                    "is the value of no StreamsConfig setting, and without bootstrap.servers \
                     there is no Kafka client to pass it to",
                ));
            }
        }
        // The builder calls' checks, with the key's origin and value in the message.
        c.validate().map_err(|e| match e {
            Error::Config { key, reason } if props.get(&key).is_some() => {
                props.bad(&key, format_args!("is invalid: {reason}"))
            }
            other => other,
        })?;
        Ok(c)
    }
}

#[cfg(feature = "kafka")]
impl crate::log::KafkaLogConfig {
    /// The Kafka log's configuration from Kafka-style properties (see [`Properties`]' module
    /// docs): `bootstrap.servers` and the log's own settings, then every property that is not
    /// a [`StreamsConfig`] setting passed to the Kafka clients (`producer.`/`consumer.`
    /// prefixed ones to producers or consumers only). `client.id` defaults to the
    /// application id, and the transactional ids are `<application id>-<process id>-<n>`
    /// ([`StreamsConfig::process_id`]): stable across restarts of this instance, so it fences
    /// what its predecessor left open, and different between replicas.
    pub fn from_properties(props: &Properties, streams: &StreamsConfig) -> Result<Self> {
        let servers = props
            .get("bootstrap.servers")
            .ok_or_else(|| Error::Config {
                key: "bootstrap.servers".into(),
                reason: "is required to run on Kafka".into(),
            })?;
        let prefix = format!("{}-{}", streams.application_id, streams.process_id()?);
        let mut c = crate::log::KafkaLogConfig::new(servers)
            .with_property("client.id", streams.application_id.as_str())
            .with_transactional_id_prefix(prefix);
        if let Some(f) = props.parse("replication.factor", "a whole number")? {
            c = c.with_replication_factor(f);
        }
        if let Some(id) = props.get("group.instance.id") {
            c = c.with_group_instance_id(id);
        }
        if let Some(d) = props.duration("session.timeout.ms")? {
            c = c.with_session_timeout(d);
        }
        if let Some(d) = props.duration("default.api.timeout.ms")? {
            c = c.with_timeout(d);
        }
        for (key, value) in props.iter() {
            if STREAMS_KEYS.contains(&key) || KAFKA_KEYS.contains(&key) {
                continue;
            }
            let consumer = [
                "consumer.",
                "main.consumer.",
                "restore.consumer.",
                "global.consumer.",
            ]
            .iter()
            .find_map(|p| key.strip_prefix(p));
            if let Some(k) = key.strip_prefix("producer.") {
                c = c.with_producer_property(k, value);
            } else if let Some(k) = consumer {
                c = c.with_consumer_property(k, value);
            } else {
                let k = key.strip_prefix("admin.").unwrap_or(key);
                c = c.with_property(k, value);
            }
        }
        Ok(c)
    }
}
