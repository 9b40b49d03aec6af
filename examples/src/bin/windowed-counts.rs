//! `windowed-counts`: count and sum per key and window, printing only final results.
//!
//! `--input FILE|-` holds `TS_MS,KEY,VALUE` lines (VALUE an integer). They are written to the
//! topic `events` (after `--topic-prefix`; results go to `window-results`) in file order (key → partition by Kafka's murmur2 partitioner over the key's
//! UTF-8 bytes), then processed with tumbling, hopping or session windows and a grace period.
//! Results are suppressed until their window closes, so each window prints once:
//! `WINDOW_START_MS,WINDOW_END_MS,KEY,COUNT,SUM` (sessions print their first and last
//! record's timestamps). Line order is free.
//!
//! Lateness follows Kafka Streams: a record counts toward a time window only if
//! `window_end > stream_time − grace`, stream time being the largest timestamp its task
//! (partition) has seen, this record included. At the end of the input, still-open windows
//! are closed by one marker record per partition stamped after every window's end plus
//! grace; the markers' own windows are not printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use streams_core::{partition_for_key, JsonSerde, Record, StringSerde, TopicPartition};
use streams_dsl::prelude::*;
use streams_dsl::BufferConfig;
use streams_examples::{expect_fields, field, input, load, read_csv, CommonArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Tumbling,
    Hopping,
    Session,
}

/// Count and sum per key and window; print each window's final result.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// File of `TS_MS,KEY,VALUE` lines; `-` reads stdin.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    input: PathBuf,
    /// Window kind.
    #[arg(long, value_enum, default_value = "tumbling")]
    windows: Kind,
    /// Window size (tumbling, hopping).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    size_ms: u64,
    /// Advance of hopping windows.
    #[arg(long, value_name = "MS")]
    advance_ms: Option<u64>,
    /// Inactivity gap of sessions.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    gap_ms: u64,
    /// How long after its end a window still accepts records.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    grace_ms: u64,
    /// Partitions of the `events` topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    #[command(flatten)]
    common: CommonArgs,
}

const APP: &str = "windowed-counts";
/// Marker keys start with a byte no CSV field can hold, so they never meet real keys.
const MARKER: &str = "\u{0}end-of-input";

/// Count and sum of a window. The sum is an `i128`: a sum of fewer than 2^63 `i64` values
/// cannot overflow it, so no input makes it wrap or fail.
type CountSum = (u64, i128);

fn topology(args: &Args, events: &str, results: &str) -> Result<streams_core::Topology, String> {
    let ms = Duration::from_millis;
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream::<String, i64>(events, Consumed::with(StringSerde, JsonSerde::new()))
        .group_by_key(Grouped::with(StringSerde, JsonSerde::new()));
    let materialized = || {
        Materialized::<String, CountSum>::named("window-counts")
            .with_key_serde(StringSerde)
            .with_value_serde(JsonSerde::new())
    };
    // A count cannot pass u64::MAX records; the sum of i64s fits in i128 (see CountSum).
    let add = |_: &String, v: i64, (n, sum): CountSum| (n.saturating_add(1), sum + i128::from(v));
    let table = match args.windows {
        Kind::Tumbling | Kind::Hopping => {
            let mut windows = TimeWindows::of_size_and_grace(ms(args.size_ms), ms(args.grace_ms));
            match (args.windows, args.advance_ms) {
                (Kind::Hopping, Some(a)) => windows = windows.advance_by(ms(a)),
                (Kind::Hopping, None) => return Err("--windows hopping needs --advance-ms".into()),
                _ => {}
            }
            grouped
                .windowed_by(windows)
                .aggregate(|| (0, 0), add, materialized())
        }
        Kind::Session => grouped
            .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(
                ms(args.gap_ms),
                ms(args.grace_ms),
            ))
            .aggregate(
                || (0, 0),
                add,
                |_, (n1, s1): CountSum, (n2, s2): CountSum| {
                    (n1.saturating_add(n2), s1.saturating_add(s2))
                },
                materialized(),
            ),
    };
    let session = args.windows == Kind::Session;
    table
        .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
        .to_stream()
        .flat_map(move |w: Windowed<String>, v: Option<CountSum>| {
            let (key, window) = (w.key, w.window);
            let Some((count, sum)) = v else {
                return Vec::new();
            };
            if key.starts_with('\u{0}') {
                return Vec::new();
            }
            // Sessions are stored half-open too: their last record is at `end - 1`.
            let end = if session { window.end - 1 } else { window.end };
            vec![(
                key.clone(),
                format!("{},{end},{key},{count},{sum}", window.start),
            )]
        })
        .to(results, Produced::with(StringSerde, StringSerde));
    builder.build().map_err(|e| e.report().to_string())
}

/// A key that lands in partition `p`.
fn marker_key(p: u32, partitions: u32) -> String {
    (0..)
        .map(|i| format!("{MARKER}-{i}"))
        .find(|k| partition_for_key(k.as_bytes(), partitions) == p)
        .unwrap_or_else(|| MARKER.to_string())
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (events_topic, results_topic) = (
        args.common.topic("events"),
        args.common.topic("window-results"),
    );
    let topology = topology(&args, &events_topic, &results_topic)?;
    if args.common.print_description(&topology) {
        return Ok(());
    }
    // The input is opened before anything starts, so a wrong path fails at once.
    let lines = input(Some(&args.input))?;
    let run = args.common.batch_run(APP, &topology)?;
    run.create_input_topic(&events_topic, args.partitions)?;
    let mut events = Vec::new();
    read_csv(
        lines,
        "input",
        |f| {
            expect_fields(f, 3, "TS_MS,KEY,VALUE")?;
            let ts: i64 = field(f, 0, "TS_MS")?;
            let value: i64 = field(f, 2, "VALUE")?;
            if f[1].is_empty() {
                return Err("empty KEY".into());
            }
            Ok((f[1].to_string(), value.to_string().into_bytes(), ts))
        },
        |e| events.push(e),
    )?;
    let last = events.iter().map(|e| e.2).max().unwrap_or(0);
    load(&*run.log, &events_topic, args.partitions, events)?;
    // Stamped after every window's end plus grace, so every window closes.
    let close_all = [
        args.size_ms.max(args.gap_ms),
        args.advance_ms.unwrap_or(0),
        args.grace_ms,
        2,
    ]
    .into_iter()
    .try_fold(0i64, |sum, ms| sum.checked_add(i64::try_from(ms).ok()?))
    .and_then(|span| last.checked_add(span))
    .ok_or_else(|| {
        format!(
            "the input's last timestamp ({last} ms) plus the windows' span (--size-ms or --gap-ms, \
             --advance-ms, --grace-ms) is past the largest time (i64::MAX ms)"
        )
    })?;
    for p in 0..args.partitions {
        let marker = Record::new(marker_key(p, args.partitions), "0", close_all);
        run.log
            .append(&TopicPartition::new(events_topic.as_str(), p), &[marker])?;
    }

    let streams = streams_examples::start(topology, run.config.clone(), run.log.clone())?;
    streams.wait_until_caught_up(Duration::from_secs(3600))?;
    streams.close()?;
    let lines = streams_examples::read_values(&*run.log, &results_topic)?;
    streams_examples::print_lines(lines.into_iter().map(|(_, line)| line))?;
    Ok(())
}

fn main() -> ExitCode {
    streams_examples::main("windowed-counts", run)
}
