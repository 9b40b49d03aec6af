//! `soak`: an application killed with SIGKILL at random moments and restarted, again and
//! again, and a check of everything it produced.
//!
//! The input is a checkable stream: each key's records carry its sequence numbers 0, 1, 2…
//! in order. The application counts them per key, sums them per key, and joins each record
//! with a table of per-key weights. Between runs more input is appended (the embedded log
//! admits one writer, so input arrives while no run holds it); each run is killed once it has
//! committed part of what is there, at a random moment. A last run reads to the end, and the
//! check reads every output topic and the final stores:
//!
//! - nothing lost: every (key, sequence number) is in the join's output, every key's count and
//!   sum reach their totals;
//! - nothing twice under exactly-once: each sequence number joined once, each count from 1 to
//!   the total emitted once, the stores exact (at-least-once may repeat, never lose);
//! - per-key order kept: the join's output and the counts of a key go up in input order
//!   (under at-least-once a replay may go back to a committed point, then up again).
//!
//! It prints records, kills, restarts, restore times and what it found; it exits 1 when
//! anything was lost, duplicated under exactly-once, out of order or wrong.

mod check;
mod child;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use streams_core::{
    EmbeddedLog, EmbeddedLogConfig, I64Serde, Log, ProcessingGuarantee, Record, Serde,
    StreamsConfig, TopicConfig, TopicPartition,
};

/// Kill an application with SIGKILL at random moments, restart it, and check its output.
#[derive(Parser, Debug, Clone)]
#[command(version)]
struct Args {
    /// Where the runs keep their state and the embedded log (default: a new temporary
    /// directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Input records in all.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100)]
    keys: u32,
    /// Partitions of the input topics.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Runs killed before the last one.
    #[arg(long, default_value_t = 10)]
    kills: u32,
    /// Processing guarantee of the application.
    #[arg(long, value_enum, default_value_t = Guarantee::ExactlyOnce)]
    guarantee: Guarantee,
    /// Seed of the keys and kill moments (printed, so a run can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// Stream threads of the application.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Only checks what an earlier soak left in `--state-dir` (give it the same `--seed`,
    /// `--records` and `--keys`).
    #[arg(long, requires_all = ["state_dir", "seed"])]
    check_only: bool,
    /// Runs the application itself (`run`: until killed; `finish`: to the end of the input).
    #[arg(long, value_enum, hide = true)]
    child: Option<Mode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Guarantee {
    AtLeastOnce,
    ExactlyOnce,
}

impl Guarantee {
    fn processing(self) -> ProcessingGuarantee {
        match self {
            Guarantee::AtLeastOnce => ProcessingGuarantee::AtLeastOnce,
            Guarantee::ExactlyOnce => ProcessingGuarantee::ExactlyOnce,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Run,
    Finish,
}

const APP: &str = "soak";
const INPUT: &str = "soak-input";
const WEIGHTS: &str = "soak-weights";
const COUNTS: &str = "soak-counts";
const SUMS: &str = "soak-sums";
const JOINED: &str = "soak-joined";
/// How long one run may take to commit what it is waited for, and the last run to finish.
const RUN_LIMIT: Duration = Duration::from_secs(300);

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match (args.child, &args.state_dir, args.seed) {
        (Some(mode), _, _) => child::run(&args, mode),
        (None, Some(state), Some(seed)) if args.check_only => {
            check::check(&args, state, seed).map(|report| {
                println!("{report}");
                report.passed(args.guarantee)
            })
        }
        _ => supervise(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", streams_core::Report::new(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// The key of record `i` of a run seeded with `seed`, and the weight of key `k`.
fn key_of(seed: u64, i: u64, keys: u32) -> u32 {
    let mut x = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % u64::from(keys.max(1))) as u32
}

fn weight_of(k: u32) -> i64 {
    i64::from(k) * 7 + 3
}

fn key_name(k: u32) -> String {
    format!("k{k:05}")
}

fn config(args: &Args, state: &Path) -> StreamsConfig {
    StreamsConfig::new(APP, state)
        .with_threads(args.threads)
        .with_guarantee(args.guarantee.processing())
        .with_cache_max_bytes(0)
        .with_commit_interval(Duration::from_millis(50))
}

fn log_dir(args: &Args, state: &Path) -> PathBuf {
    config(args, state).embedded_log_dir()
}

/// The log, opened to write (while no run holds it).
fn open_writer(args: &Args, state: &Path) -> Result<EmbeddedLog, Error> {
    let config = EmbeddedLogConfig::default().with_cleaner_interval(None);
    Ok(EmbeddedLog::open_with(log_dir(args, state), config)?)
}

/// The log, opened read-only beside a running application.
fn open_reader(args: &Args, state: &Path) -> Result<EmbeddedLog, Error> {
    let config = EmbeddedLogConfig::default()
        .with_cleaner_interval(None)
        .with_read_only(true);
    Ok(EmbeddedLog::open_with(log_dir(args, state), config)?)
}

/// The input records the application committed, read beside it (a read that meets a file
/// the run is changing is asked again).
fn committed(args: &Args, state: &Path) -> Result<u64, Error> {
    let mut last_error = None;
    for _ in 0..20 {
        match open_reader(args, state).and_then(|log| Ok(log.committed_offsets(APP)?)) {
            Ok(offsets) => {
                return Ok(offsets
                    .into_iter()
                    .filter(|(tp, _)| tp.topic == INPUT)
                    .map(|(_, o)| o)
                    .sum())
            }
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last_error.unwrap_or_else(|| "cannot read the committed offsets".into()))
}

/// Writes input records `from..to` (and, first, the weights table).
fn append_input(args: &Args, state: &Path, seed: u64, from: u64, to: u64) -> Result<(), Error> {
    let log = open_writer(args, state)?;
    let parts = args.partitions;
    let partition = |key: &str| streams_core::partition_for_key(key.as_bytes(), parts);
    if from == 0 {
        for topic in [INPUT, WEIGHTS] {
            log.create_topic(topic, TopicConfig::new(parts))?;
        }
        for k in 0..args.keys {
            let key = key_name(k);
            let value = I64Serde.serialize(&weight_of(k))?;
            let tp = TopicPartition::new(WEIGHTS, partition(&key));
            // Older than every input record: the join sees the whole table.
            log.append(&tp, &[Record::new(key.clone(), value, 1)])?;
        }
    }
    // Sequence numbers continue where the previous slice left them.
    let mut next_seq = vec![0i64; args.keys as usize];
    for i in 0..from {
        next_seq[key_of(seed, i, args.keys) as usize] += 1;
    }
    let mut batches: Vec<Vec<Record>> = vec![Vec::new(); parts as usize];
    for i in from..to {
        let k = key_of(seed, i, args.keys);
        let seq = next_seq[k as usize];
        next_seq[k as usize] += 1;
        let key = key_name(k);
        let p = partition(&key) as usize;
        let ts = 1_000 + i64::try_from(i)?;
        batches[p].push(Record::new(key, I64Serde.serialize(&seq)?, ts));
    }
    for (p, records) in batches.iter().enumerate() {
        for chunk in records.chunks(500) {
            log.append(&TopicPartition::new(INPUT, u32::try_from(p)?), chunk)?;
        }
    }
    log.sync()?;
    Ok(())
}

fn spawn(args: &Args, state: &Path, mode: Mode) -> Result<Child, Error> {
    let exe = std::env::current_exe()?;
    let mode = match mode {
        Mode::Run => "run",
        Mode::Finish => "finish",
    };
    let guarantee = match args.guarantee {
        Guarantee::AtLeastOnce => "at-least-once",
        Guarantee::ExactlyOnce => "exactly-once",
    };
    Ok(Command::new(exe)
        .arg("--state-dir")
        .arg(state)
        .args(["--guarantee", guarantee, "--child", mode])
        .args(["--threads", &args.threads.to_string()])
        .spawn()?)
}

/// A small deterministic generator for the kill moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

fn supervise(args: &Args) -> Result<bool, Error> {
    if args.partitions == 0 || args.keys == 0 || args.records == 0 {
        return Err("--partitions, --keys and --records must be at least 1".into());
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let temp;
    let state = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    println!(
        "soak: {:?}, {} records over {} keys in {} partitions, {} kills, seed {seed}",
        args.guarantee, args.records, args.keys, args.partitions, args.kills
    );
    let started = Instant::now();
    let mut rng = Rng(seed);
    let slices = u64::from(args.kills) + 1;
    let slice = args.records.div_ceil(slices);
    let (mut written, mut mid_run) = (0u64, 0u32);
    for _ in 0..args.kills {
        let to = (written + slice).min(args.records);
        append_input(args, &state, seed, written, to)?;
        let before = committed(args, &state)?;
        // Killed once it committed a random part of what is there, a moment later.
        let target = before + (to - before) * (20 + rng.below(70)) / 100;
        written = to;
        let mut child = spawn(args, &state, Mode::Run)?;
        let run_started = Instant::now();
        while committed(args, &state)? < target && run_started.elapsed() < RUN_LIMIT {
            if let Some(status) = child.try_wait()? {
                return Err(format!("a run ended by itself ({status})").into());
            }
            // Each look opens the log read-only: not too often, it competes with the run.
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(rng.below(200)));
        child.kill()?; // SIGKILL
        child.wait()?;
        let after = committed(args, &state)?;
        if after > before && after < written {
            mid_run += 1;
        }
    }
    append_input(args, &state, seed, written, args.records)?;
    let mut last = spawn(args, &state, Mode::Finish)?;
    let finish_started = Instant::now();
    let status = loop {
        if let Some(status) = last.try_wait()? {
            break status;
        }
        if finish_started.elapsed() > RUN_LIMIT {
            last.kill()?;
            return Err(format!("the last run did not finish within {RUN_LIMIT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        return Err(format!("the last run failed: {status}").into());
    }
    let report = check::check(args, &state, seed)?;
    let restores = child::restores(&state)?;
    println!(
        "runs: {} ({} killed, {mid_run} of them mid-run), {:.1} s",
        args.kills + 1,
        args.kills,
        started.elapsed().as_secs_f64()
    );
    let max_ms = restores.iter().map(|r| r.1).max().unwrap_or(0);
    let total: u64 = restores.iter().map(|r| r.0).sum();
    println!(
        "restores: {} runs, {total} changelog records in all, longest {max_ms} ms",
        restores.len()
    );
    println!("{report}");
    Ok(report.passed(args.guarantee))
}
