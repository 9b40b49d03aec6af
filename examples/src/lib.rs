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
    /// Print the topology instead of running.
    #[arg(long)]
    pub describe: bool,
}

impl CommonArgs {
    /// The state directory: the one given, or `<temp>/streams-<example>`.
    pub fn state_dir(&self, example: &str) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("streams-{example}")))
    }

    /// The application's configuration from these options.
    pub fn config(&self, application_id: &str) -> StreamsConfig {
        StreamsConfig::new(application_id, self.state_dir(application_id))
            .with_threads(self.threads)
            .with_guarantee(self.guarantee)
            .with_commit_interval(Duration::from_millis(100))
    }
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
