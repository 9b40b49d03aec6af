//! A first look at the engine's embedded log: publish exchange-rate updates to a compacted,
//! partitioned topic, read them back as a consumer group would, and build the latest rate per
//! pair, a materialized view in miniature. Run it twice on the same `--state-dir`: the second
//! run resumes from the committed offsets and reads only what is new.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use streams_core::{
    partition_for_key, EmbeddedLog, IsolationLevel, Log, Record, TopicConfig, TopicPartition,
};

/// Publish exchange rates to the embedded log and read back the latest rate per pair.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Where the log lives (default: a directory under the system temp dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Partitions of the `rates` topic when it is created.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
}

const UPDATES: &[(&str, Option<&str>)] = &[
    ("USD/GBP", Some("0.79")),
    ("EUR/GBP", Some("0.86")),
    ("JPY/GBP", Some("0.0053")),
    ("USD/GBP", Some("0.78")),
    ("CHF/GBP", Some("0.90")),
    ("JPY/GBP", None),
    ("EUR/GBP", Some("0.85")),
];

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {}", streams_core::Report::new(e.as_ref()));
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("kstreams-demo"));
    let log = EmbeddedLog::open(dir.join("log"))?;
    log.create_topic("rates", TopicConfig::compacted(args.partitions))?;
    let partitions = log.describe_topic("rates")?.partitions;
    println!("log directory: {}", dir.join("log").display());

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for (i, (pair, rate)) in UPDATES.iter().enumerate() {
        let tp = TopicPartition::new("rates", partition_for_key(pair.as_bytes(), partitions));
        let record = match rate {
            Some(r) => Record::new(*pair, *r, now + i as i64),
            None => Record::tombstone(*pair, now + i as i64),
        };
        let at = log.append(&tp, &[record])?;
        println!(
            "published {pair} = {} to {tp}@{}",
            rate.unwrap_or("(deleted)"),
            at.base_offset
        );
    }

    // Read every partition from the group's committed position, as a consumer would.
    let group = "demo-view";
    let mut view: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut read = 0;
    for p in 0..partitions {
        let tp = TopicPartition::new("rates", p);
        let mut position = log.committed_offset(group, &tp)?.unwrap_or(0);
        loop {
            let fetch = log.read(&tp, position, 500, IsolationLevel::ReadCommitted)?;
            for r in &fetch.records {
                let key = String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default());
                let value = r
                    .record
                    .value
                    .as_deref()
                    .map(|v| String::from_utf8_lossy(v).into());
                view.insert(key.into_owned(), value);
                read += 1;
            }
            if fetch.next_offset == position {
                break;
            }
            position = fetch.next_offset;
        }
        log.commit_offsets(group, &[(tp, position)])?;
    }
    println!("read {read} new records; latest rates seen by this run:");
    for (pair, rate) in &view {
        match rate {
            Some(rate) => println!("  {pair} {rate}"),
            None => println!("  {pair} (deleted)"),
        }
    }
    log.sync()?;
    Ok(())
}
