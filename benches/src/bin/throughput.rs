//! The throughput harness: runs scenarios S1–S7 (and K1 and K2, through a Kafka broker, when
//! given one), each beside its baseline, and prints records/s of both, their ratio and the
//! peak RSS.
//!
//! ```sh
//! CARGO_TARGET_DIR=... cargo run --release -p streams-benches --bin throughput -- --runs 3
//! CARGO_TARGET_DIR=... cargo run --release -p streams-benches --bin throughput -- \
//!     --scenarios K1,K2 --bootstrap-servers 127.0.0.1:9092 --runs 3
//! ```
//!
//! Each (scenario, run) is a child process of this binary (`--child <scenario>`), so that
//! `VmHWM` is that scenario's own peak.

use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use streams_benches::{run_scenario, BenchError, Format, Params, Row, Scenario, Summary};

#[derive(Debug, Parser)]
#[command(about = "Throughput and memory of the engine beside hand-written baselines")]
struct Args {
    /// Scenarios to run, comma-separated (S1,S2,S2e,S2m,S3,S4,S5,S6,S7,K1,K2); by default all
    /// of S1–S7, and K1 and K2 too with --bootstrap-servers.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Runs of each scenario; the table shows medians and the spread of the ratio.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// `table` or `csv`.
    #[arg(long, default_value = "table")]
    format: String,
    /// Tiny sizes (20,000 events) for a smoke run; size flags given as well override it.
    #[arg(long)]
    tiny: bool,
    /// Events of S1–S4 and S6 (default 2,000,000).
    #[arg(long)]
    events: Option<u64>,
    /// User ids the events are drawn from (default 10,000).
    #[arg(long)]
    keys: Option<u64>,
    /// Seed of the workload.
    #[arg(long)]
    seed: Option<u64>,
    /// Rows of the S4 table (default 10,000).
    #[arg(long)]
    table_rows: Option<u64>,
    /// Keys of the S5 store (default 1,000,000).
    #[arg(long)]
    restore_keys: Option<u64>,
    /// Distinct keys (= events) of S7 (default 10,000,000).
    #[arg(long)]
    memory_keys: Option<u64>,
    /// The S7 memory bound in MiB (default 256).
    #[arg(long)]
    memory_bound_mib: Option<usize>,
    /// Commit interval of the engine in ms (default: the engine's, 30 s or 100 ms under
    /// exactly-once).
    #[arg(long)]
    commit_interval_ms: Option<u64>,
    /// Turns the embedded log's background cleaner off (to measure what it costs).
    #[arg(long)]
    no_log_cleaner: bool,
    /// The Kafka broker K1 and K2 run through (`host:port`); they cannot run without one.
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_servers: Option<String>,
    /// A librdkafka property of the engine's and the loops' Kafka clients (repeatable).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// Events of K1 and K2 (default 200,000; 5,000 with --tiny).
    #[arg(long)]
    kafka_events: Option<u64>,
    /// Partitions of the input topics on Kafka (default 4).
    #[arg(long)]
    kafka_partitions: Option<u32>,
    /// Where scenarios put their state and logs (a temporary directory inside it; created when
    /// missing).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Runs one scenario in this process and prints its outcome line (used by the parent).
    #[arg(long, hide = true)]
    child: Option<String>,
}

impl Args {
    fn params(&self) -> Params {
        let mut p = if self.tiny {
            Params::tiny()
        } else {
            Params::default()
        };
        if let Some(v) = self.events {
            p.events = v;
        }
        if let Some(v) = self.keys {
            p.keys = v;
        }
        if let Some(v) = self.seed {
            p.seed = v;
        }
        if let Some(v) = self.table_rows {
            p.table_rows = v;
        }
        if let Some(v) = self.restore_keys {
            p.restore_keys = v;
        }
        if let Some(v) = self.memory_keys {
            p.memory_keys = v;
        }
        if let Some(v) = self.memory_bound_mib {
            p.memory_bound_bytes = v << 20;
        }
        if let Some(v) = self.commit_interval_ms {
            p.commit_interval = Some(Duration::from_millis(v));
        }
        p.log_cleaner = !self.no_log_cleaner;
        p.bootstrap_servers = self.bootstrap_servers.clone();
        p.kafka_properties = self.kafka_properties.clone();
        if let Some(v) = self.kafka_events {
            p.kafka_events = v;
        }
        if let Some(v) = self.kafka_partitions {
            p.kafka_partitions = v;
        }
        p
    }

    fn base_dir(&self) -> std::path::PathBuf {
        self.dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// `KEY=VALUE` → (key, value).
fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn child(args: &Args, scenario: &str) -> Result<(), BenchError> {
    let scenario: Scenario = scenario.parse()?;
    let base = args.base_dir();
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new()
        .prefix("kstreams-bench-")
        .tempdir_in(&base)?;
    let outcome = run_scenario(scenario, &args.params(), dir.path())?;
    if !outcome.results_match() {
        eprintln!(
            "{scenario}: results differ: engine {} / baseline {}",
            outcome.engine_digest, outcome.baseline_digest
        );
    }
    println!("{}", Summary::from(&outcome).to_line());
    Ok(())
}

fn parent(args: &Args) -> Result<bool, BenchError> {
    let format: Format = args.format.parse()?;
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        let mut all = Scenario::ALL.to_vec();
        if args.bootstrap_servers.is_some() {
            all.extend(Scenario::WITH_BROKER);
        }
        all
    } else {
        args.scenarios
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    };
    if let Some(sc) = scenarios.iter().find(|sc| sc.needs_broker()) {
        if args.bootstrap_servers.is_none() {
            return Err(BenchError::Harness(format!(
                "{sc} runs through a Kafka broker: give one with --bootstrap-servers HOST:PORT"
            )));
        }
    }
    let exe = std::env::current_exe()?;
    // The child gets the same arguments, minus the ones only the parent uses.
    let passthrough: Vec<String> = {
        let mut out = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let takes_value = ["--scenarios", "--runs", "--format"];
            if takes_value.contains(&a.as_str()) {
                it.next();
            } else if !takes_value.iter().any(|t| a.starts_with(&format!("{t}="))) {
                out.push(a);
            }
        }
        out
    };
    let mut rows: Vec<Row> = scenarios.iter().map(|_| Row { runs: Vec::new() }).collect();
    let mut ok = true;
    for run in 1..=args.runs.max(1) {
        for (i, sc) in scenarios.iter().enumerate() {
            eprintln!(
                "run {run}/{}: {sc} ({})",
                args.runs.max(1),
                sc.description()
            );
            let out = Command::new(&exe)
                .args(&passthrough)
                .args(["--child", sc.name()])
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            match (out.status.success(), Summary::from_output(&stdout)) {
                (true, Ok(s)) => {
                    eprintln!(
                        "  engine {:.0}/s, baseline {:.0}/s, ratio {:.2}, peak RSS {:.0} MiB{}",
                        s.engine_rate,
                        s.baseline_rate,
                        s.ratio(),
                        s.peak_rss_mib,
                        if s.results_match {
                            ""
                        } else {
                            ", RESULTS DIFFER"
                        }
                    );
                    ok &= s.results_match;
                    rows[i].runs.push(s);
                }
                _ => {
                    eprintln!("  {sc} failed ({})", out.status);
                    ok = false;
                }
            }
        }
    }
    let rows: Vec<Row> = rows.into_iter().filter(|r| !r.runs.is_empty()).collect();
    print!("{}", Row::render(&rows, format));
    Ok(ok)
}

fn main() {
    let args = Args::parse();
    let result = match &args.child {
        Some(sc) => child(&args, sc).map(|()| true),
        None => parent(&args),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {}", streams_core::Report::new(&e));
            std::process::exit(2);
        }
    }
}
