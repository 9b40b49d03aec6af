//! `streams-log`: look into and operate on an embedded log from the command line.
//!
//! Lists and creates topics, appends lines from stdin, prints records, and shows and moves
//! consumer groups' committed offsets (rewind and replay). Commands that only look (`topics`,
//! `describe`, `consume`, `groups`, `offsets`) open the log read-only: they work while an
//! application runs and never change a file (a torn tail is reported, not cut). Commands that
//! write (`create`, `produce`, `reset-offsets`) need the log to themselves: a log held by a
//! running application is an error (or, with `--lock-wait-ms`, a wait), never a second
//! writer. `consume --follow` reopens the log for each poll to see what was appended.

mod consume;
mod groups;
mod output;
mod produce;
mod topics;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use streams_core::{EmbeddedLog, EmbeddedLogConfig, Log, StreamsConfig, TopicPartition};

/// Inspect and operate on the embedded log of a stream-processing application.
///
/// Reading commands work while the application runs. Writing commands (`create`, `produce`,
/// `reset-offsets`) need the log to themselves: stop the application first (or pass
/// `--lock-wait-ms` to wait for it to let go).
#[derive(Parser, Debug)]
#[command(name = "streams-log", version)]
struct Cli {
    /// The log directory itself (the one holding `topics/` and `meta.journal`).
    #[arg(
        long,
        global = true,
        help_heading = "Log",
        value_name = "DIR",
        conflicts_with = "state_dir"
    )]
    log_dir: Option<PathBuf>,
    /// An application's state directory; the log is `DIR/log`.
    #[arg(long, global = true, help_heading = "Log", value_name = "DIR")]
    state_dir: Option<PathBuf>,
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
    /// Append records read from stdin, one per line (`KEY,VALUE` by default).
    Produce(produce::ProduceArgs),
    /// Print records as `partition,offset,timestamp,key,value` lines or JSON lines.
    Consume(consume::ConsumeArgs),
    /// List consumer groups (applications) that committed offsets, with their total lag.
    Groups,
    /// Show a group's committed offset, end offset and lag per partition.
    Offsets(groups::OffsetsArgs),
    /// Set a group's committed offsets on one topic: rewind to replay, or skip ahead.
    ResetOffsets(groups::ResetArgs),
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

fn run(cli: &Cli) -> Result<(), ToolError> {
    let target = LogTarget::from_cli(cli)?;
    match &cli.command {
        Command::Topics => topics::list(&target.open()?),
        Command::Create(args) => topics::create(&target.open_or_create()?, args),
        Command::Describe(args) => topics::describe(&target.open()?, args),
        Command::Produce(args) => produce::run(&target.open_for_writing()?, args),
        Command::Consume(args) => consume::run(&target, args),
        Command::Groups => groups::list(&target.open()?),
        Command::Offsets(args) => groups::offsets(&target.open()?, args),
        Command::ResetOffsets(args) => groups::reset(&target.open_for_writing()?, args),
    }
}

/// Where the log is and how long to wait for its lock.
#[derive(Debug)]
pub(crate) struct LogTarget {
    dir: PathBuf,
    lock_wait: Duration,
}

impl LogTarget {
    fn from_cli(cli: &Cli) -> Result<Self, ToolError> {
        let dir = match (&cli.log_dir, &cli.state_dir) {
            (Some(dir), _) => dir.clone(),
            // The runtime's layout, from the one place that defines it.
            (None, Some(state)) => StreamsConfig::new("streams-log", state).embedded_log_dir(),
            (None, None) => {
                return Err(ToolError::Usage(
                    "no log given: pass --log-dir DIR or --state-dir DIR".into(),
                ))
            }
        };
        Ok(LogTarget {
            dir,
            lock_wait: Duration::from_millis(cli.lock_wait_ms),
        })
    }

    /// Opens an existing log read-only: no lock, no file changed.
    pub(crate) fn open(&self) -> Result<EmbeddedLog, ToolError> {
        self.check_exists()?;
        let config = EmbeddedLogConfig::default()
            .with_cleaner_interval(None)
            .with_read_only(true);
        Ok(EmbeddedLog::open_with(&self.dir, config)?)
    }

    /// Opens an existing log to write to it (holding its lock).
    fn open_for_writing(&self) -> Result<EmbeddedLog, ToolError> {
        self.check_exists()?;
        self.open_or_create()
    }

    /// Refuses a directory that holds no log, rather than creating an empty log there (a
    /// mistyped path, or a state directory passed as `--log-dir`).
    fn check_exists(&self) -> Result<(), ToolError> {
        if !self.dir.join("topics").is_dir() {
            let hint = if self.dir.join("log").join("topics").is_dir() {
                "; it looks like a state directory: pass it as --state-dir"
            } else {
                "; `create` makes a new log"
            };
            return Err(ToolError::Usage(format!(
                "no embedded log at {}{hint}",
                self.dir.display()
            )));
        }
        Ok(())
    }

    fn open_or_create(&self) -> Result<EmbeddedLog, ToolError> {
        // No background cleaner: a tool that looks at a log must not also delete from it.
        let config = EmbeddedLogConfig::default().with_cleaner_interval(None);
        let deadline = Instant::now() + self.lock_wait;
        loop {
            match EmbeddedLog::open_with(&self.dir, config.clone()) {
                Err(streams_core::Error::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other.map_err(ToolError::from),
            }
        }
    }
}

/// The partitions of `topic`, or just `only` (checked against the partition count).
pub(crate) fn partitions(
    log: &EmbeddedLog,
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
