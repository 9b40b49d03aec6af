//! `consume`: print records, partition by partition, optionally following the log.
//!
//! Reading never commits: a group's offsets only choose where to start. The log is opened
//! read-only, so this works beside the application writing it; a read-only open sees the log
//! as it was when it opened, so `--follow` opens it again for each poll (a Kafka connection
//! stays open).

use std::io::Write;
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};
use streams_core::{IsolationLevel, Log, TopicPartition};

use crate::formats::DataFormat;
use crate::output::{header_row, line_end, record_line, Decoding, Format};
use crate::{partitions, LogTarget, ToolError};

/// Arguments of `consume`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("start").multiple(false)))]
pub(crate) struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Read only this partition (default: all, one after the other).
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Start at this offset (needs --partition).
    #[arg(long, value_name = "O", group = "start", requires = "partition")]
    from_offset: Option<u64>,
    /// Start at the first record whose timestamp is at least MS.
    #[arg(
        long,
        value_name = "MS",
        group = "start",
        allow_negative_numbers = true
    )]
    from_timestamp: Option<i64>,
    /// Start at the first record still in the log (the default).
    #[arg(long, group = "start")]
    from_beginning: bool,
    /// Start at the group's committed offsets (does not commit anything).
    #[arg(long, value_name = "G", group = "start")]
    group: Option<String>,
    /// Stop after printing this many records.
    #[arg(long, value_name = "N")]
    max: Option<u64>,
    /// Keep polling for new records every 100 ms until interrupted (or --max is reached).
    #[arg(long)]
    follow: bool,
    /// Which records to show: `committed` hides records of open and aborted transactions.
    #[arg(long, value_enum, default_value_t = Isolation::Committed)]
    isolation: Isolation,
    /// Output format (`--format` is an older name of this option).
    #[arg(long, alias = "format", value_enum, default_value_t = Format::Text)]
    output: Format,
    /// How keys are decoded: with the library's serdes, as an application reads them.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = DataFormat::Raw)]
    key_format: DataFormat,
    /// How values are decoded. A record that does not decode is an error naming its topic,
    /// partition and offset; `bytes` shows anything, as hex.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = DataFormat::Raw)]
    value_format: DataFormat,
}

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Isolation {
    /// Read committed: what an exactly-once consumer sees.
    Committed,
    /// Read uncommitted: every record appended.
    Uncommitted,
}

impl From<Isolation> for IsolationLevel {
    fn from(i: Isolation) -> Self {
        match i {
            Isolation::Committed => IsolationLevel::ReadCommitted,
            Isolation::Uncommitted => IsolationLevel::ReadUncommitted,
        }
    }
}

const POLL: Duration = Duration::from_millis(100);
const READ_BATCH: u64 = 500;

/// Where each partition's reading starts.
fn start_positions(
    log: &dyn Log,
    args: &ConsumeArgs,
) -> Result<Vec<(TopicPartition, u64)>, ToolError> {
    let tps = partitions(log, &args.topic, args.partition)?;
    let committed = match &args.group {
        Some(group) => {
            let offsets = log.committed_offsets(group)?;
            if offsets.is_empty() {
                return Err(ToolError::Usage(format!(
                    "group `{group}` has no committed offsets (see `streams-log groups`)"
                )));
            }
            offsets
        }
        None => Vec::new(),
    };
    let mut positions = Vec::with_capacity(tps.len());
    for tp in tps {
        let start = log.start_offset(&tp)?;
        let end = log.end_offset(&tp, IsolationLevel::ReadUncommitted)?;
        let position = if let Some(offset) = args.from_offset {
            if offset < start || offset > end {
                return Err(streams_core::Error::OffsetOutOfRange {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset,
                    start,
                    end,
                }
                .into());
            }
            offset
        } else if let Some(ts) = args.from_timestamp {
            log.offset_for_timestamp(&tp, ts)?.unwrap_or(end)
        } else if args.group.is_some() {
            // As the runtime resumes: no commit means from the start, and a commit below the
            // start (deleted by retention) means from the start too.
            committed
                .iter()
                .find(|(p, _)| *p == tp)
                .map_or(start, |(_, o)| (*o).max(start))
        } else {
            start
        };
        positions.push((tp, position));
    }
    Ok(positions)
}

/// Prints everything from each position up to the current end; advances the positions.
/// Returns how many records were printed.
fn drain(
    log: &dyn Log,
    positions: &mut [(TopicPartition, u64)],
    args: &ConsumeArgs,
    mut budget: u64,
    out: &mut impl Write,
) -> Result<u64, ToolError> {
    let isolation = IsolationLevel::from(args.isolation);
    let decoding = Decoding {
        key: args.key_format,
        value: args.value_format,
    };
    let mut printed = 0;
    for (tp, position) in positions.iter_mut() {
        let start = log.start_offset(tp)?;
        if *position < start {
            eprintln!(
                "{tp}: offsets {}..{start} were deleted before they were read",
                *position
            );
            *position = start;
        }
        let end = log.end_offset(tp, isolation)?;
        while *position < end && budget > 0 {
            let fetch = log.read(tp, *position, budget.min(READ_BATCH) as usize, isolation)?;
            for r in &fetch.records {
                let line = record_line(args.output, decoding, &tp.topic, tp.partition, r)?;
                write!(out, "{line}{}", line_end(args.output))?;
            }
            printed += fetch.records.len() as u64;
            budget -= (fetch.records.len() as u64).min(budget);
            if fetch.next_offset <= *position {
                break;
            }
            *position = fetch.next_offset;
        }
    }
    out.flush()?;
    Ok(printed)
}

/// `consume`.
pub(crate) fn run(target: &LogTarget, args: &ConsumeArgs) -> Result<(), ToolError> {
    let mut budget = args.max.unwrap_or(u64::MAX);
    let mut out = std::io::stdout().lock();
    let mut log = target.open()?;
    let mut positions = start_positions(&*log, args)?;
    if let Some(header) = header_row(args.output)? {
        write!(out, "{header}{}", line_end(args.output))?;
    }
    budget -= drain(&*log, &mut positions, args, budget, &mut out)?;
    while args.follow && budget > 0 {
        std::thread::sleep(POLL);
        // A read-only embedded log sees the log as it was opened; Kafka sees appends.
        if !target.is_live() {
            log = target.open()?;
        }
        budget -= drain(&*log, &mut positions, args, budget, &mut out)?;
    }
    Ok(())
}
