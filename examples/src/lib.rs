//! What the example programs share: the common command-line options (state directory,
//! threads, guarantee, `--describe`), reading CSV input with line-numbered error reports,
//! logging setup, and waiting for SIGINT/SIGTERM.
//!
//! The examples use only the public API of the library, as a user's service would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use streams_core::runtime::{ExceptionResponse, ProcessingGuarantee, StreamsConfig};
use streams_core::{EmbeddedLog, Log, Streams, Topology};

/// Options every example takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Where local state and the embedded log live (default: a directory under the system
    /// temp dir named after the example).
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

    /// The application's configuration from these options.
    pub fn config(&self, application_id: &str) -> StreamsConfig {
        self.config_in(application_id, self.state_dir(application_id))
    }

    /// For examples that load their input and run once: the state directory given, or a new
    /// one for this run that is removed when the returned guard drops.
    pub fn batch_config(&self, application_id: &str) -> (StreamsConfig, ScratchDir) {
        match &self.state_dir {
            Some(dir) => (
                self.config_in(application_id, dir.clone()),
                ScratchDir(None),
            ),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let dir = std::env::temp_dir().join(format!(
                    "streams-{application_id}-{}-{nanos}",
                    std::process::id()
                ));
                (
                    self.config_in(application_id, dir.clone()),
                    ScratchDir(Some(dir)),
                )
            }
        }
    }

    fn config_in(&self, application_id: &str, dir: PathBuf) -> StreamsConfig {
        StreamsConfig::new(application_id, dir)
            .with_threads(self.threads)
            .with_guarantee(self.guarantee)
            .with_commit_interval(Duration::from_millis(100))
    }
}

/// A state directory made for one run, removed on drop.
pub struct ScratchDir(Option<PathBuf>);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Creates `topic` for input that is about to be loaded; a topic that already holds records
/// (a state directory reused from an earlier run) is an error, as loading again would
/// process the old records twice.
pub fn create_input_topic(log: &dyn Log, topic: &str, partitions: u32) -> Result<(), String> {
    log.create_topic(topic, streams_core::TopicConfig::new(partitions))
        .map_err(|e| e.to_string())?;
    for p in 0..partitions {
        let end = log
            .end_offset(
                &streams_core::TopicPartition::new(topic, p),
                streams_core::IsolationLevel::ReadCommitted,
            )
            .map_err(|e| e.to_string())?;
        if end > 0 {
            return Err(format!(
                "topic `{topic}` of this state directory already holds records; use a fresh --state-dir"
            ));
        }
    }
    Ok(())
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
            log.append(&streams_core::TopicPartition::new(topic, p as u32), chunk)?;
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

/// Opens the embedded log of the configured state directory.
pub fn open_log(config: &StreamsConfig) -> streams_core::Result<Arc<EmbeddedLog>> {
    Ok(Arc::new(EmbeddedLog::open(config.embedded_log_dir())?))
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
        let tp = streams_core::TopicPartition::new(topic, p);
        let mut offset = log.start_offset(&tp)?;
        loop {
            let fetch = log.read(
                &tp,
                offset,
                10_000,
                streams_core::IsolationLevel::ReadCommitted,
            )?;
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

/// Lines of a file, or of stdin for `-` or no file.
pub fn input(path: Option<&Path>) -> std::io::Result<Box<dyn BufRead + Send>> {
    match path {
        Some(p) if p != Path::new("-") => Ok(Box::new(BufReader::new(std::fs::File::open(p)?))),
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
