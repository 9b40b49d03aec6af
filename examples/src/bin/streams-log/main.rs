//! `streams-log`: look into and operate on an embedded log, or a Kafka cluster
//! (`--bootstrap-servers`), from the command line.
//!
//! Lists, creates and deletes topics, appends lines from stdin, prints records (decoded with
//! the library's serdes, as text, JSON lines or CSV), shows and moves consumer groups'
//! committed offsets (rewind and replay), and resets an application (`application-reset`).
//! Commands that only look (`topics`, `describe`, `consume`, `groups`, `offsets`) open the
//! log read-only: they work while an application runs and never change a file (a torn tail
//! is reported, not cut). Commands that write (`create`, `delete`, `produce`,
//! `reset-offsets`, `application-reset`) need the log to themselves: a log held by a running
//! application is an error (or, with `--lock-wait-ms`, a wait), never a second writer.
//! `consume --follow` reopens the log for each poll to see what was appended.
//!
//! On Kafka the same commands go through the same `Log` trait (`KafkaLog`), so they print
//! the same tables; what only the embedded log has (a partition's segments and bytes in
//! `describe`, the lock) is left out there. `reset-offsets` and `application-reset` on Kafka
//! refuse a group with active members, as Kafka's own tools do.

mod consume;
mod formats;
mod groups;
mod output;
mod produce;
mod reset;
mod topics;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use streams_core::{
    EmbeddedLog, EmbeddedLogConfig, KafkaLog, KafkaLogConfig, Log, StreamsConfig, TopicPartition,
};

/// Inspect and operate on the embedded log of a stream-processing application, or on a Kafka
/// cluster.
///
/// Reading commands work while the application runs. Writing commands (`create`, `delete`,
/// `produce`, `reset-offsets`, `application-reset`) need the embedded log to themselves: stop
/// the application first (or pass `--lock-wait-ms` to wait for it to let go).
#[derive(Parser)]
#[command(name = "streams-log", version)]
struct Cli {
    /// The log directory itself (the one holding `topics/` and `meta.journal`).
    #[arg(
        long,
        global = true,
        help_heading = "Log",
        value_name = "DIR",
        conflicts_with_all = ["state_dir", "bootstrap_servers"]
    )]
    log_dir: Option<PathBuf>,
    /// An application's state directory; the log is `DIR/log`. With --bootstrap-servers,
    /// only for `application-reset`: where the application's local state is.
    #[arg(long, global = true, help_heading = "Log", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Work on the Kafka cluster at HOST:PORT[,HOST:PORT...] instead of an embedded log.
    #[arg(long, global = true, help_heading = "Kafka", value_name = "HOST:PORT")]
    bootstrap_servers: Option<String>,
    /// A librdkafka property for every Kafka client (`security.protocol=SASL_SSL`,
    /// `sasl.password=...`); repeatable.
    #[arg(
        long = "kafka-property",
        global = true,
        help_heading = "Kafka",
        value_name = "KEY=VALUE",
        value_parser = parse_property,
        requires = "bootstrap_servers"
    )]
    kafka_properties: Vec<(String, String)>,
    /// How long any one Kafka call may take.
    #[arg(
        long,
        global = true,
        help_heading = "Kafka",
        value_name = "MS",
        default_value_t = 30_000
    )]
    kafka_timeout_ms: u64,
    /// If another process holds the log, a writing command retries for up to this long
    /// before giving up.
    #[arg(
        long,
        global = true,
        help_heading = "Log",
        value_name = "MS",
        default_value_t = 0
    )]
    lock_wait_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List topics with their partition counts and cleanup policies.
    Topics,
    /// Create a topic (and the log directory, if there is none yet).
    Create(topics::CreateArgs),
    /// Show a topic's configuration and each partition's offsets.
    Describe(topics::DescribeArgs),
    /// Delete a topic with its records and the groups' offsets in it.
    Delete(topics::DeleteArgs),
    /// Append records read from stdin, one per line (`KEY,VALUE` by default).
    Produce(produce::ProduceArgs),
    /// Print records as `partition,offset,timestamp,key,value` lines, JSON lines or CSV.
    Consume(consume::ConsumeArgs),
    /// List consumer groups (applications) that committed offsets, with their total lag.
    Groups,
    /// Show a group's committed offset, end offset and lag per partition.
    Offsets(groups::OffsetsArgs),
    /// Set a group's committed offsets on one topic: rewind to replay, or skip ahead.
    ResetOffsets(groups::ResetArgs),
    /// Reset an application to run it again: its input offsets to the earliest (or latest, or
    /// a time), its internal topics deleted, its local state removed.
    ApplicationReset(reset::ResetArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // What recovery finds (a torn tail, a transaction left open) is said on stderr.
    streams_examples::init_tracing();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `streams-log consume ... | head`: the reader has gone, which is not a failure.
        Err(ToolError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `KEY=VALUE` → (key, value).
fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn run(cli: &Cli) -> Result<(), ToolError> {
    let target = LogTarget::from_cli(cli)?;
    match &cli.command {
        Command::Topics => topics::list(&*target.open()?),
        Command::Create(args) => topics::create(&*target.open_or_create()?, args),
        Command::Describe(args) => {
            let log = target.open()?;
            topics::describe(&*log, log.embedded(), args)
        }
        Command::Produce(args) => produce::run(&*target.open_for_writing()?, args),
        Command::Consume(args) => consume::run(&target, args),
        Command::Groups => groups::list(&*target.open()?),
        Command::Offsets(args) => groups::offsets(&*target.open()?, args),
        Command::ResetOffsets(args) => groups::reset(&*target.open_for_writing()?, args),
        Command::Delete(args) => topics::delete(&*target.open_for_writing()?, args),
        Command::ApplicationReset(args) => {
            reset::run(&*target.open_for_writing()?, args, cli.state_dir.as_deref())
        }
    }
}

/// The log a command works on.
pub(crate) enum Opened {
    Embedded(EmbeddedLog),
    Kafka(Box<KafkaLog>),
}

impl Opened {
    /// The embedded log, for what only it has.
    fn embedded(&self) -> Option<&EmbeddedLog> {
        match self {
            Opened::Embedded(log) => Some(log),
            Opened::Kafka(_) => None,
        }
    }
}

impl std::ops::Deref for Opened {
    type Target = dyn Log;

    fn deref(&self) -> &(dyn Log + 'static) {
        match self {
            Opened::Embedded(log) => log,
            Opened::Kafka(log) => &**log,
        }
    }
}

/// Where the log is: an embedded log's directory and how long to wait for its lock, or a
/// Kafka cluster.
#[derive(Debug)]
pub(crate) enum LogTarget {
    Embedded { dir: PathBuf, lock_wait: Duration },
    Kafka(KafkaLogConfig),
}

impl LogTarget {
    fn from_cli(cli: &Cli) -> Result<Self, ToolError> {
        if let Some(servers) = &cli.bootstrap_servers {
            if cli.state_dir.is_some() && !matches!(cli.command, Command::ApplicationReset(_)) {
                return Err(ToolError::Usage(
                    "--state-dir names an embedded log; with --bootstrap-servers only \
                     application-reset takes it (for the application's local state)"
                        .into(),
                ));
            }
            let mut config = KafkaLogConfig::new(servers.as_str())
                .with_property("client.id", "streams-log")
                .with_timeout(Duration::from_millis(cli.kafka_timeout_ms));
            for (key, value) in &cli.kafka_properties {
                config = config.with_property(key.as_str(), value.as_str());
            }
            return Ok(LogTarget::Kafka(config));
        }
        let dir = match (&cli.log_dir, &cli.state_dir) {
            (Some(dir), _) => dir.clone(),
            // The runtime's layout, from the one place that defines it.
            (None, Some(state)) => StreamsConfig::new("streams-log", state).embedded_log_dir(),
            (None, None) => {
                return Err(ToolError::Usage(
                    "no log given: pass --log-dir DIR, --state-dir DIR or --bootstrap-servers \
                     HOST:PORT"
                        .into(),
                ))
            }
        };
        Ok(LogTarget::Embedded {
            dir,
            lock_wait: Duration::from_millis(cli.lock_wait_ms),
        })
    }

    /// Whether the log sees what others append without being opened again.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self, LogTarget::Kafka(_))
    }

    /// Opens an existing log read-only (no lock, no file changed), or connects to Kafka.
    pub(crate) fn open(&self) -> Result<Opened, ToolError> {
        let dir = match self {
            LogTarget::Kafka(config) => {
                return Ok(Opened::Kafka(Box::new(KafkaLog::connect(config.clone())?)))
            }
            LogTarget::Embedded { dir, .. } => dir,
        };
        self.check_exists(dir)?;
        let config = EmbeddedLogConfig::default()
            .with_cleaner_interval(None)
            .with_read_only(true);
        Ok(Opened::Embedded(EmbeddedLog::open_with(dir, config)?))
    }

    /// Opens an existing log to write to it (holding its lock), or connects to Kafka.
    fn open_for_writing(&self) -> Result<Opened, ToolError> {
        if let LogTarget::Embedded { dir, .. } = self {
            self.check_exists(dir)?;
        }
        self.open_or_create()
    }

    /// Refuses a directory that holds no log, rather than creating an empty log there (a
    /// mistyped path, or a state directory passed as `--log-dir`).
    fn check_exists(&self, dir: &std::path::Path) -> Result<(), ToolError> {
        if !dir.join("topics").is_dir() {
            let hint = if dir.join("log").join("topics").is_dir() {
                "; it looks like a state directory: pass it as --state-dir"
            } else {
                "; `create` makes a new log"
            };
            return Err(ToolError::Usage(format!(
                "no embedded log at {}{hint}",
                dir.display()
            )));
        }
        Ok(())
    }

    fn open_or_create(&self) -> Result<Opened, ToolError> {
        let (dir, lock_wait) = match self {
            LogTarget::Kafka(config) => {
                return Ok(Opened::Kafka(Box::new(KafkaLog::connect(config.clone())?)))
            }
            LogTarget::Embedded { dir, lock_wait } => (dir, *lock_wait),
        };
        // No background cleaner: a tool that looks at a log must not also delete from it.
        let config = EmbeddedLogConfig::default().with_cleaner_interval(None);
        let deadline = Instant::now() + lock_wait;
        loop {
            match EmbeddedLog::open_with(dir, config.clone()) {
                Err(streams_core::Error::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other.map(Opened::Embedded).map_err(ToolError::from),
            }
        }
    }
}

/// The partitions of `topic`, or just `only` (checked against the partition count).
pub(crate) fn partitions(
    log: &dyn Log,
    topic: &str,
    only: Option<u32>,
) -> Result<Vec<TopicPartition>, ToolError> {
    let count = log.describe_topic(topic)?.partitions;
    match only {
        Some(p) if p >= count => Err(streams_core::Error::PartitionOutOfRange {
            topic: topic.to_string(),
            partition: p,
            partitions: count,
        }
        .into()),
        Some(p) => Ok(vec![TopicPartition::new(topic, p)]),
        None => Ok((0..count).map(|p| TopicPartition::new(topic, p)).collect()),
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Why a command failed; printed as one line.
#[derive(Debug)]
pub(crate) enum ToolError {
    /// The log refused (unknown topic, locked, corrupt...).
    Log(streams_core::Error),
    /// Arguments or input that cannot work.
    Usage(String),
    /// Reading stdin or writing stdout failed.
    Io(std::io::Error),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Log(e @ streams_core::Error::Locked { .. }) => write!(
                f,
                "{}; stop the application (or pass --lock-wait-ms) and try again",
                e.report()
            ),
            ToolError::Log(e) => write!(f, "{}", e.report()),
            ToolError::Usage(reason) => f.write_str(reason),
            ToolError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<streams_core::Error> for ToolError {
    fn from(e: streams_core::Error) -> Self {
        ToolError::Log(e)
    }
}

impl From<std::io::Error> for ToolError {
    fn from(e: std::io::Error) -> Self {
        ToolError::Io(e)
    }
}
