//! What the example programs share: the common command-line options (state directory,
//! threads, guarantee, `--describe`, and a Kafka cluster to run on instead of the embedded
//! log), reading CSV input with line-numbered error reports, logging setup, and waiting for
//! SIGINT/SIGTERM.
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
use streams_core::{ExceptionResponse, ProcessingGuarantee, StreamsConfig};
/// Options every example takes. Its `Debug` output leaves the values of secret Kafka
/// properties out ([`KafkaLogConfig::is_secret`]).
#[derive(clap::Args, Clone)]
pub struct CommonArgs {
    /// Where local state and the embedded log live (default: a directory under the system
    /// temp dir named after the example). On Kafka it holds the stores only.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Stream threads.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// `at-least-once` or `exactly-once`.
    #[arg(long, value_name = "GUARANTEE", default_value = "at-least-once")]
    pub guarantee: ProcessingGuarantee,
    /// Print the topology instead of running: `text` (the default), `mermaid` or `dot`.
    #[arg(
        long,
        value_name = "FORMAT",
        num_args = 0..=1,
        default_missing_value = "text"
    )]
    pub describe: Option<DescribeFormat>,
    /// Run on the Kafka cluster at HOST:PORT[,HOST:PORT...] instead of the embedded log.
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_servers: Option<String>,
    /// A librdkafka property for every Kafka client; repeatable.
    #[arg(
        long = "kafka-property",
        value_name = "KEY=VALUE",
        value_parser = parse_property,
        requires = "bootstrap_servers"
    )]
    pub kafka_properties: Vec<(String, String)>,
    /// Names the consumer group and prefixes internal topics. Default: the example's name;
    /// on Kafka, a batch example adds a suffix of its own for each run.
    #[arg(long, value_name = "ID")]
    pub application_id: Option<String>,
    /// Prefix of the example's input and output topic names, to keep runs on a shared Kafka
    /// cluster apart.
    #[arg(long, value_name = "PREFIX", default_value = "")]
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
    /// The state directory: the one given, or `<temp>/streams-<example>`.
    pub fn state_dir(&self, example: &str) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("streams-{example}")))
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
    pub fn config(&self, example: &str) -> StreamsConfig {
        let id = self.application_id.as_deref().unwrap_or(example);
        self.config_in(id, self.state_dir(example))
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
        let id = match (&self.application_id, &self.bootstrap_servers) {
            (Some(id), _) => id.clone(),
            (None, Some(_)) => format!("{example}-{stamp}"),
            (None, None) => example.to_string(),
        };
        let (dir, scratch) = match &self.state_dir {
            Some(dir) => (dir.clone(), ScratchDir(None)),
            None => {
                let dir = std::env::temp_dir().join(format!("streams-{example}-{stamp}"));
                (dir.clone(), ScratchDir(Some(dir)))
            }
        };
        let config = self.config_in(&id, dir);
        let log = self.open_log(&config)?;
        tracing::info!(application_id = %id, "batch run");
        let run = Run {
            config,
            log,
            cluster: self.bootstrap_servers.clone(),
            _scratch: scratch,
        };
        run.check_written_topics(topology)?;
        Ok(run)
    }

    /// The log to run on: the Kafka cluster of `--bootstrap-servers` (with the
    /// `--kafka-property`s), or the embedded log of the configured state directory.
    pub fn open_log(&self, config: &StreamsConfig) -> streams_core::Result<Arc<dyn Log>> {
        let Some(servers) = &self.bootstrap_servers else {
            return Ok(Arc::new(EmbeddedLog::open(config.embedded_log_dir())?));
        };
        // Transactional ids of this instance's own (its process id is kept in its state
        // directory): a restarted instance fences the transactions its predecessor left
        // open, and two replicas never fence each other.
        let prefix = format!("{}-{}", config.application_id, config.process_id()?);
        let mut kafka = KafkaLogConfig::new(servers.as_str())
            .with_property("client.id", config.application_id.as_str())
            .with_transactional_id_prefix(prefix);
        for (key, value) in &self.kafka_properties {
            kafka = kafka.with_property(key.as_str(), value.as_str());
        }
        Ok(Arc::new(KafkaLog::connect(kafka)?))
    }

    fn config_in(&self, application_id: &str, dir: PathBuf) -> StreamsConfig {
        StreamsConfig::new(application_id, dir)
            .with_threads(self.threads)
            .with_guarantee(self.guarantee)
            .with_commit_interval(Duration::from_millis(100))
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
            .map_err(|e| e.to_string())?;
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
            Err(e) => return Err(e.to_string()),
        };
        for p in 0..partitions {
            let tp = TopicPartition::new(topic, p);
            let end = self
                .log
                .end_offset(&tp, IsolationLevel::ReadUncommitted)
                .map_err(|e| e.to_string())?;
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
/// stderr (prefixed with `name`) and a failing exit code.
pub fn main<A: clap::Parser>(
    name: &str,
    run: impl FnOnce(A) -> Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    init_tracing();
    match run(A::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
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

/// Starts `topology` on `log`, replacing failed threads, and waits until every task is
/// restored and running.
pub fn start(
    topology: Topology,
    config: StreamsConfig,
    log: Arc<dyn Log>,
) -> streams_core::Result<Streams> {
    let streams = Streams::new(topology, config, log)?;
    streams.set_uncaught_exception_handler(|_| ExceptionResponse::ReplaceThread);
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

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
