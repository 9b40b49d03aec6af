//! What the example programs share: the common command-line options (state directory,
//! threads, guarantee, `--describe`, and a Kafka cluster to run on instead of the embedded
//! log), reading CSV input with line-numbered error reports, and logging setup. What a
//! service of its own needs (signals, running until one, health routes) is in the library:
//! `streams_core::Shutdown`, `Streams::run_until`, `streams_core::http`.
//!
//! The examples use only the public API of the library, as a user's service would.
//!
//! A batch example (one that loads its input, runs once and prints) starts from empty topics.
//! On the embedded log a state directory made for the run sees to that. A Kafka cluster
//! outlives runs, so there each batch run is an application of its own (its consumer group
//! and internal topics are named after an application id unique to the run, unless
//! `--application-id` is given), and a run refuses input, output or internal topics that
//! already hold records: they would mix an earlier run's records with its own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use streams_core::TopicName;
use streams_core::{
    EmbeddedLog, IsolationLevel, KafkaLog, KafkaLogConfig, Log, Streams, TopicPartition, Topology,
};
use streams_core::{ExceptionResponse, ProcessingGuarantee, Properties, StreamsConfig};
/// Options every example takes. Each flag can also come from its environment variable
/// (`KSTREAMS_<KAFKA NAME>`, as `streams_core::Properties::from_env` reads them) or from a
/// properties file (`--config`); a flag (or its variable) wins over the file. Its `Debug`
/// output leaves the values of secret Kafka properties out ([`KafkaLogConfig::is_secret`]).
#[derive(clap::Args, Clone)]
pub struct CommonArgs {
    /// A Java properties file of settings by their Kafka Streams names (`application.id`,
    /// `num.stream.threads`, `bootstrap.servers`, `producer.linger.ms`, ...).
    #[arg(long, value_name = "FILE", env = "KSTREAMS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where local state and the embedded log live (default: a directory under the system
    /// temp dir named after the example). On Kafka it holds the stores only.
    #[arg(long, value_name = "DIR", env = "KSTREAMS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Stream threads [default: 2].
    #[arg(long, value_name = "N", env = "KSTREAMS_NUM_STREAM_THREADS")]
    pub threads: Option<usize>,
    /// `at-least-once` or `exactly-once` [default: at-least-once].
    #[arg(long, value_name = "GUARANTEE", env = "KSTREAMS_PROCESSING_GUARANTEE")]
    pub guarantee: Option<ProcessingGuarantee>,
    /// Print the topology instead of running: `text` (the default), `mermaid` or `dot`.
    #[arg(
        long,
        value_name = "FORMAT",
        num_args = 0..=1,
        default_missing_value = "text"
    )]
    pub describe: Option<DescribeFormat>,
    /// Run on the Kafka cluster at HOST:PORT[,HOST:PORT...] instead of the embedded log.
    #[arg(long, value_name = "HOST:PORT", env = "KSTREAMS_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// A librdkafka property for every Kafka client; repeatable.
    #[arg(
        long = "kafka-property",
        value_name = "KEY=VALUE",
        value_parser = parse_property
    )]
    pub kafka_properties: Vec<(String, String)>,
    /// Names the consumer group and prefixes internal topics. Default: the example's name;
    /// on Kafka, a batch example adds a suffix of its own for each run.
    #[arg(long, value_name = "ID", env = "KSTREAMS_APPLICATION_ID")]
    pub application_id: Option<String>,
    /// Prefix of the example's input and output topic names, to keep runs on a shared Kafka
    /// cluster apart.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        env = "KSTREAMS_TOPIC_PREFIX"
    )]
    pub topic_prefix: String,
}

impl std::fmt::Debug for CommonArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .kafka_properties
            .iter()
            .map(|(k, v)| {
                let shown = if KafkaLogConfig::is_secret(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("CommonArgs")
            .field("config", &self.config)
            .field("state_dir", &self.state_dir)
            .field("threads", &self.threads)
            .field("guarantee", &self.guarantee)
            .field("describe", &self.describe)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("kafka_properties", &properties)
            .field("application_id", &self.application_id)
            .field("topic_prefix", &self.topic_prefix)
            .finish()
    }
}

/// `KEY=VALUE` → (key, value).
fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// How `--describe` prints the topology.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescribeFormat {
    /// Kafka Streams' `describe()` text.
    Text,
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz digraph.
    Dot,
}

impl CommonArgs {
    /// The settings given: the `--config` file, with the flags (or their environment
    /// variables) over it.
    pub fn properties(&self) -> streams_core::Result<Properties> {
        let mut p = match &self.config {
            Some(file) => Properties::from_file(file)?,
            None => Properties::default(),
        };
        if let Some(dir) = &self.state_dir {
            p.set_with_origin(
                "state.dir",
                dir.display().to_string(),
                "--state-dir (or KSTREAMS_STATE_DIR)",
            );
        }
        if let Some(n) = self.threads {
            p.set_with_origin(
                "num.stream.threads",
                n.to_string(),
                "--threads (or KSTREAMS_NUM_STREAM_THREADS)",
            );
        }
        if let Some(g) = self.guarantee {
            p.set_with_origin(
                "processing.guarantee",
                g.to_string(),
                "--guarantee (or KSTREAMS_PROCESSING_GUARANTEE)",
            );
        }
        if let Some(servers) = &self.bootstrap_servers {
            p.set_with_origin(
                "bootstrap.servers",
                servers.as_str(),
                "--bootstrap-servers (or KSTREAMS_BOOTSTRAP_SERVERS)",
            );
        }
        if let Some(id) = &self.application_id {
            p.set_with_origin(
                "application.id",
                id.as_str(),
                "--application-id (or KSTREAMS_APPLICATION_ID)",
            );
        }
        for (key, value) in &self.kafka_properties {
            p.set_with_origin(key.as_str(), value.as_str(), "--kafka-property");
        }
        if !self.kafka_properties.is_empty() && p.get("bootstrap.servers").is_none() {
            return Err(streams_core::Error::Config {
                key: "--kafka-property".into(),
                reason: "needs --bootstrap-servers (or bootstrap.servers in --config)".into(),
            });
        }
        Ok(p)
    }

    /// The state directory: the one given (flag, variable or file), or
    /// `<temp>/streams-<example>`.
    pub fn state_dir(&self, example: &str) -> streams_core::Result<PathBuf> {
        Ok(match self.properties()?.get("state.dir") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::temp_dir().join(format!("streams-{example}")),
        })
    }

    /// With `--describe`, prints the topology and returns true: the example then stops.
    pub fn print_description(&self, topology: &Topology) -> bool {
        let Some(format) = self.describe else {
            return false;
        };
        match format {
            DescribeFormat::Text => print!("{}", topology.describe()),
            DescribeFormat::Mermaid => print!("{}", topology.to_mermaid()),
            DescribeFormat::Dot => print!("{}", topology.to_dot()),
        }
        true
    }

    /// The name of the example's topic `name`: `--topic-prefix`, then `name`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// The configuration of a long-running example: the application id given or the
    /// example's name, the state directory given or `<temp>/streams-<example>`.
    pub fn config(&self, example: &str) -> streams_core::Result<StreamsConfig> {
        let props = self.properties()?;
        let id = props.get("application.id").unwrap_or(example).to_string();
        self.config_in(&id, self.state_dir(example)?)
    }

    /// For examples that load their input and run once: the configuration, the log, and
    /// (without `--state-dir`) a state directory made for this run. Fails when a topic that
    /// `topology` writes already holds records (see [`Run`]).
    pub fn batch_run(
        &self,
        example: &str,
        topology: &Topology,
    ) -> Result<Run, Box<dyn std::error::Error>> {
        let stamp = run_stamp();
        let props = self.properties()?;
        let id = match (props.get("application.id"), props.get("bootstrap.servers")) {
            (Some(id), _) => id.to_string(),
            (None, Some(_)) => format!("{example}-{stamp}"),
            (None, None) => example.to_string(),
        };
        let (dir, scratch) = match props.get("state.dir") {
            Some(dir) => (PathBuf::from(dir), ScratchDir(None)),
            None => {
                let dir = std::env::temp_dir().join(format!("streams-{example}-{stamp}"));
                (dir.clone(), ScratchDir(Some(dir)))
            }
        };
        let config = self.config_in(&id, dir)?;
        let log = self.open_log(&config)?;
        tracing::info!(application_id = %id, "batch run");
        let run = Run {
            config,
            log,
            cluster: props.get("bootstrap.servers").map(str::to_string),
            _scratch: scratch,
        };
        run.check_written_topics(topology)?;
        Ok(run)
    }

    /// The log to run on: the Kafka cluster of `bootstrap.servers` (with the Kafka client
    /// properties given), or the embedded log of the configured state directory.
    pub fn open_log(&self, config: &StreamsConfig) -> streams_core::Result<Arc<dyn Log>> {
        let props = self.properties()?;
        if props.get("bootstrap.servers").is_none() {
            return Ok(Arc::new(EmbeddedLog::open(config.embedded_log_dir())?));
        }
        let kafka = KafkaLogConfig::from_properties(&props, config)?;
        Ok(Arc::new(KafkaLog::connect(kafka)?))
    }

    /// The settings given, for `application_id` in `dir`, over the examples' defaults
    /// (2 threads, 100 ms commits).
    fn config_in(&self, application_id: &str, dir: PathBuf) -> streams_core::Result<StreamsConfig> {
        let defaults =
            Properties::from_map([("num.stream.threads", "2"), ("commit.interval.ms", "100")]);
        let mut props = defaults.merge(self.properties()?);
        props.set("application.id", application_id);
        props.set("state.dir", dir.display().to_string());
        StreamsConfig::from_properties(&props)
    }
}

/// `<pid>-<nanoseconds>`: tells this run's names from other runs'.
fn run_stamp() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// A batch example's run: its configuration and log, and the state directory made for it
/// (removed when the run drops).
pub struct Run {
    /// The application's configuration.
    pub config: StreamsConfig,
    /// The log it runs on.
    pub log: Arc<dyn Log>,
    /// The Kafka cluster's bootstrap servers, when it runs on one.
    cluster: Option<String>,
    _scratch: ScratchDir,
}

impl Run {
    /// Creates `topic` for input that is about to be loaded; a topic that already holds
    /// records (an earlier run's) is an error, as loading again would process the old records
    /// with the new.
    pub fn create_input_topic(&self, topic: &str, partitions: u32) -> Result<(), String> {
        self.log
            .create_topic(topic, streams_core::TopicConfig::new(partitions))
            .map_err(|e| e.report().to_string())?;
        if self.holds_records(topic)? {
            return Err(self.refusal(topic, &TopicName::User(topic.to_string())));
        }
        Ok(())
    }

    /// Checks that no topic `topology` writes (output, repartition, changelog) holds records.
    fn check_written_topics(&self, topology: &Topology) -> Result<(), String> {
        let sinks = topology
            .subtopologies()
            .iter()
            .flat_map(|s| s.sink_topics.iter().cloned());
        let changelogs = topology.stores().values().filter_map(|s| s.changelog());
        for name in sinks.chain(changelogs) {
            let topic = name.resolve(&self.config.application_id);
            if self.holds_records(&topic)? {
                return Err(self.refusal(&topic, &name));
            }
        }
        Ok(())
    }

    /// Why `topic` (named `name` in the topology) cannot be used, and what to do instead.
    fn refusal(&self, topic: &str, name: &TopicName) -> String {
        let Some(servers) = &self.cluster else {
            return format!(
                "topic `{topic}` of this state directory already holds records; use a fresh --state-dir"
            );
        };
        let fix = match name {
            TopicName::User(_) => {
                "give this run's topics another --topic-prefix, or delete the topic".to_string()
            }
            TopicName::Internal(_) => format!(
                "application `{}` ran before and its state would mix with this run's; \
                 give another --application-id (without one, each run has its own)",
                self.config.application_id
            ),
        };
        format!("topic `{topic}` on {servers} already holds records; {fix}")
    }

    /// Whether `topic` exists and holds records.
    fn holds_records(&self, topic: &str) -> Result<bool, String> {
        let partitions = match self.log.describe_topic(topic) {
            Ok(c) => c.partitions,
            Err(streams_core::Error::UnknownTopic { .. }) => return Ok(false),
            Err(e) => return Err(e.report().to_string()),
        };
        for p in 0..partitions {
            let tp = TopicPartition::new(topic, p);
            let end = self
                .log
                .end_offset(&tp, IsolationLevel::ReadUncommitted)
                .map_err(|e| e.report().to_string())?;
            if end > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A state directory made for one run, removed on drop.
struct ScratchDir(Option<PathBuf>);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Appends `(key, value, timestamp)` records to `topic`, each to its key's partition, in
/// the order given.
pub fn load(
    log: &dyn Log,
    topic: &str,
    partitions: u32,
    records: impl IntoIterator<Item = (String, Vec<u8>, i64)>,
) -> streams_core::Result<()> {
    let mut by_partition: Vec<Vec<streams_core::Record>> = vec![Vec::new(); partitions as usize];
    for (key, value, ts) in records {
        let p = streams_core::partition_for_key(key.as_bytes(), partitions) as usize;
        by_partition[p].push(streams_core::Record::new(key, value, ts));
    }
    for (p, records) in by_partition.iter().enumerate() {
        for chunk in records.chunks(1000) {
            log.append(&TopicPartition::new(topic, p as u32), chunk)?;
        }
    }
    Ok(())
}

/// An example's `main`: sets up logging, runs `run` and turns its error into a message on
/// stderr (prefixed with `name`, the error followed by its causes) and a failing exit code.
pub fn main<A: clap::Parser>(
    name: &str,
    run: impl FnOnce(A) -> Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    init_tracing();
    match run(A::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {}", streams_core::Report::new(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes `lines` to stdout, one per line, through one buffered lock.
pub fn print_lines<S: std::fmt::Display>(
    lines: impl IntoIterator<Item = S>,
) -> std::io::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for line in lines {
        writeln!(w, "{line}")?;
    }
    w.flush()
}

/// Logs to stderr; `RUST_LOG` overrides the default level (`warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A progress bar per store restoring from its changelog, on stderr when it is a terminal
/// (nothing otherwise): set it with `Streams::set_restore_listener`.
#[derive(Default)]
pub struct RestoreBars {
    bars: indicatif::MultiProgress,
    /// By changelog partition and store, with the offset the restore started at.
    active: std::sync::Mutex<std::collections::HashMap<String, (indicatif::ProgressBar, u64)>>,
}

impl RestoreBars {
    fn name(changelog: &streams_core::TopicPartition, store: &str) -> String {
        format!("{store} ({changelog})")
    }

    fn active(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (indicatif::ProgressBar, u64)>>
    {
        // A bar is only for show: a poisoned map is still good enough to draw from.
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl streams_core::StateRestoreListener for RestoreBars {
    fn on_restore_start(
        &self,
        changelog: &streams_core::TopicPartition,
        store: &str,
        start: u64,
        end: u64,
    ) {
        let bar = self
            .bars
            .add(indicatif::ProgressBar::new(end.saturating_sub(start)));
        let style = indicatif::ProgressStyle::with_template(
            "restoring {msg} {bar:30} {pos}/{len} records ({eta} left)",
        );
        if let Ok(style) = style {
            bar.set_style(style);
        }
        let name = Self::name(changelog, store);
        bar.set_message(name.clone());
        self.active().insert(name, (bar, start));
    }

    fn on_batch_restored(
        &self,
        changelog: &streams_core::TopicPartition,
        store: &str,
        batch_end: u64,
        _records: u64,
    ) {
        if let Some((bar, start)) = self.active().get(&Self::name(changelog, store)) {
            bar.set_position(batch_end.saturating_sub(*start));
        }
    }

    fn on_restore_end(&self, changelog: &streams_core::TopicPartition, store: &str, _: u64) {
        if let Some((bar, _)) = self.active().remove(&Self::name(changelog, store)) {
            bar.finish_and_clear();
        }
    }

    fn on_restore_suspended(&self, changelog: &streams_core::TopicPartition, store: &str, _: u64) {
        self.on_restore_end(changelog, store, 0);
    }
}

/// Starts `topology` on `log`, replacing failed threads, and waits until every task is
/// restored and running.
pub fn start(
    topology: Topology,
    config: StreamsConfig,
    log: Arc<dyn Log>,
) -> streams_core::Result<Streams> {
    let streams = Streams::new(topology, config, log)?;
    streams.set_uncaught_exception_handler(|_| ExceptionResponse::ReplaceThread);
    streams.set_restore_listener(RestoreBars::default());
    streams.start()?;
    streams.wait_for_state(
        streams_core::StreamsState::Running,
        Duration::from_secs(600),
    )?;
    Ok(streams)
}

/// Every record of `topic` visible to read-committed readers, as (key, value) text, partition
/// by partition in offset order.
pub fn read_values(log: &dyn Log, topic: &str) -> streams_core::Result<Vec<(String, String)>> {
    let partitions = log.describe_topic(topic)?.partitions;
    let text = |b: &Option<Vec<u8>>| {
        b.as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for p in 0..partitions {
        let tp = TopicPartition::new(topic, p);
        let mut offset = log.start_offset(&tp)?;
        loop {
            let fetch = log.read(&tp, offset, 10_000, IsolationLevel::ReadCommitted)?;
            if fetch.next_offset == offset {
                break;
            }
            offset = fetch.next_offset;
            out.extend(
                fetch
                    .records
                    .iter()
                    .map(|r| (text(&r.record.key), text(&r.record.value))),
            );
        }
    }
    Ok(out)
}

/// Lines of a file, or of stdin for `-` or no file. A file that cannot be opened is an error
/// naming its path.
pub fn input(path: Option<&Path>) -> std::io::Result<Box<dyn BufRead + Send>> {
    match path {
        Some(p) if p != Path::new("-") => {
            let file = std::fs::File::open(p).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot open input file {}: {e}", p.display()),
                )
            })?;
            Ok(Box::new(BufReader::new(file)))
        }
        _ => Ok(Box::new(BufReader::new(std::io::stdin()))),
    }
}

/// Reads CSV lines from `input`, calling `parse` on the fields of each non-empty line; a
/// line that is not UTF-8 or that `parse` rejects is reported on stderr with its number
/// (`<what>:<n>: <reason>: <line>`) and skipped. Returns the accepted values.
pub fn read_csv<T>(
    input: Box<dyn BufRead + Send>,
    what: &str,
    mut parse: impl FnMut(&[&str]) -> Result<T, String>,
    mut accept: impl FnMut(T),
) -> std::io::Result<Counts> {
    let mut counts = Counts::default();
    for (i, line) in input.split(b'\n').enumerate() {
        let raw = line?;
        let n = i + 1;
        let Ok(text) = std::str::from_utf8(&raw) else {
            eprintln!("{what}:{n}: not UTF-8, skipped");
            counts.skipped += 1;
            continue;
        };
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        match parse(&fields) {
            Ok(v) => {
                accept(v);
                counts.accepted += 1;
            }
            Err(reason) => {
                eprintln!("{what}:{n}: {reason}, skipped: {text}");
                counts.skipped += 1;
            }
        }
    }
    Ok(counts)
}

/// Lines accepted and skipped by [`read_csv`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Lines turned into records.
    pub accepted: u64,
    /// Malformed lines reported and skipped.
    pub skipped: u64,
}

/// Parses a field, naming it in the error.
pub fn field<T: std::str::FromStr>(fields: &[&str], index: usize, name: &str) -> Result<T, String> {
    let raw = fields
        .get(index)
        .ok_or_else(|| format!("missing field {name}"))?;
    raw.parse()
        .map_err(|_| format!("{name} `{raw}` is not valid"))
}

/// Checks the number of fields.
pub fn expect_fields(fields: &[&str], n: usize, format: &str) -> Result<(), String> {
    if fields.len() == n {
        Ok(())
    } else {
        Err(format!(
            "expected {n} fields ({format}), found {}",
            fields.len()
        ))
    }
}
