//! `word-count`: the classic. Lines from stdin go to the topic `lines` (after
//! `--topic-prefix`); the application splits them into lower-cased words (on anything not
//! alphanumeric), re-keys by word (through a repartition topic), counts per word, and prints
//! the final table as `WORD,COUNT`, read from the count store with an interactive query.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use streams_core::{I64Serde, StringSerde};
use streams_dsl::prelude::*;
use streams_examples::{load, CommonArgs};

/// Count the words of stdin and print `WORD,COUNT` lines.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Partitions of the `lines` topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    #[command(flatten)]
    common: CommonArgs,
}

const APP: &str = "word-count";
const STORE: &str = "word-counts";

fn topology(lines: &str) -> streams_core::Result<streams_core::Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>(lines, Consumed::with(StringSerde, StringSerde))
        .flat_map_values(|line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word: &String| word.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Materialized::named(STORE));
    builder.build()
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let lines_topic = args.common.topic("lines");
    let topology = topology(&lines_topic)?;
    if args.common.print_description(&topology) {
        return Ok(());
    }
    let run = args.common.batch_run(APP, &topology)?;
    run.create_input_topic(&lines_topic, args.partitions)?;
    // Lines are keyed by their number, so they spread over the partitions.
    let mut lines = Vec::new();
    for (i, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        match String::from_utf8(line?) {
            Ok(text) => lines.push((
                (i + 1).to_string(),
                text.trim_end_matches('\r').as_bytes().to_vec(),
                // The line number: Kafka cannot carry time 0.
                i as i64 + 1,
            )),
            Err(_) => eprintln!("stdin:{}: not UTF-8, skipped", i + 1),
        }
    }
    load(&*run.log, &lines_topic, args.partitions, lines)?;
    let streams = streams_examples::start(topology, run.config.clone(), run.log.clone())?;
    streams.wait_until_caught_up(Duration::from_secs(3600))?;
    let counts = streams.key_value_store(STORE, Arc::new(StringSerde), Arc::new(I64Serde))?;
    let all = counts.all()?;
    streams.close()?;
    streams_examples::print_lines(all.iter().map(|(word, n)| format!("{word},{n}")))?;
    Ok(())
}

fn main() -> ExitCode {
    streams_examples::main("word-count", run)
}
