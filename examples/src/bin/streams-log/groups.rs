//! `groups`, `offsets` and `reset-offsets`: consumer groups' committed positions.
//!
//! A group's position on a partition is what the runtime resumes from: the committed offset,
//! raised to the partition's start if retention deleted past it, or the start if nothing was
//! committed (`auto.offset.reset=earliest`). Lag is the log end offset minus that position.

use std::collections::BTreeSet;

use clap::{ArgGroup, Args};
use streams_core::{IsolationLevel, Log, TopicPartition};

use crate::output::{line, Table};
use crate::{partitions, ToolError};

/// Arguments of `offsets`.
#[derive(Args, Debug)]
pub(crate) struct OffsetsArgs {
    /// The group (for a streams application: its application id).
    group: String,
}

/// Arguments of `reset-offsets`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("to").required(true).multiple(false)))]
#[command(
    after_help = "Stop the application first: the log admits one process at a time, \
    and the application resumes from the new offsets when it starts again."
)]
pub(crate) struct ResetArgs {
    /// The group (for a streams application: its application id).
    group: String,
    /// The topic whose offsets to set.
    #[arg(long, value_name = "T")]
    topic: String,
    /// Only this partition (default: every partition of the topic).
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// To the first offset still in the log: replay everything.
    #[arg(long, group = "to")]
    to_earliest: bool,
    /// To the end of the log: skip everything not yet read.
    #[arg(long, group = "to")]
    to_latest: bool,
    /// To the first record whose timestamp is at least MS (the end if there is none).
    #[arg(long, value_name = "MS", group = "to", allow_negative_numbers = true)]
    to_timestamp: Option<i64>,
    /// To this offset, which must lie between each partition's start and end.
    #[arg(long, value_name = "O", group = "to")]
    to_offset: Option<u64>,
    /// Print what would change without committing it.
    #[arg(long)]
    dry_run: bool,
}

/// A group's standing on one partition.
struct Standing {
    tp: TopicPartition,
    committed: Option<u64>,
    end: u64,
    lag: u64,
}

/// The group's standing on every partition of every topic it committed offsets for.
fn standings(log: &dyn Log, group: &str) -> Result<Vec<Standing>, ToolError> {
    let committed = log.committed_offsets(group)?;
    let topics: BTreeSet<&str> = committed.iter().map(|(tp, _)| tp.topic.as_str()).collect();
    let mut rows = Vec::new();
    for topic in topics {
        for tp in partitions(log, topic, None)? {
            let committed = committed.iter().find(|(p, _)| *p == tp).map(|(_, o)| *o);
            let start = log.start_offset(&tp)?;
            let end = log.end_offset(&tp, IsolationLevel::ReadUncommitted)?;
            let position = committed.map_or(start, |c| c.max(start));
            rows.push(Standing {
                tp,
                committed,
                end,
                lag: end.saturating_sub(position),
            });
        }
    }
    Ok(rows)
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `groups`: one row per group.
pub(crate) fn list(log: &dyn Log) -> Result<(), ToolError> {
    let mut table = Table::new(&["GROUP", "TOPICS", "LAG"]);
    for group in log.list_groups()? {
        let rows = standings(log, &group)?;
        let topics: BTreeSet<&str> = rows.iter().map(|r| r.tp.topic.as_str()).collect();
        let lag: u64 = rows.iter().map(|r| r.lag).sum();
        let topics = topics.into_iter().collect::<Vec<_>>().join(",");
        table.row(vec![group, topics, lag.to_string()]);
    }
    table.print()
}

/// `offsets`: one row per partition, then the total lag.
pub(crate) fn offsets(log: &dyn Log, args: &OffsetsArgs) -> Result<(), ToolError> {
    let rows = standings(log, &args.group)?;
    if rows.is_empty() {
        return Err(unknown_group(&args.group));
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"]);
    for r in &rows {
        table.row(vec![
            r.tp.topic.clone(),
            r.tp.partition.to_string(),
            or_dash(r.committed),
            r.end.to_string(),
            r.lag.to_string(),
        ]);
    }
    table.print()?;
    line(format!(
        "total lag: {}",
        rows.iter().map(|r| r.lag).sum::<u64>()
    ))?;
    Ok(())
}

/// Refuses a group that has members, naming them.
fn refuse_members(log: &dyn Log, group: &str) -> Result<(), ToolError> {
    let Some(described) = log.describe_group(group)? else {
        return Ok(());
    };
    if described.members.is_empty() {
        return Ok(());
    }
    let clients: Vec<&str> = described
        .members
        .iter()
        .map(|m| m.client_id.as_str())
        .collect();
    Err(ToolError::Usage(format!(
        "group `{group}` has {} active member(s) ({}), in state {}: offsets can only be \
         reset while it has none; stop the application first",
        described.members.len(),
        clients.join(", "),
        described.state
    )))
}

/// Whether a commit was refused because the group has (or is getting) members: Kafka answers
/// a commit from outside a group that is not empty with one of these.
fn joining(e: &streams_core::Error) -> bool {
    let streams_core::Error::Kafka { reason, .. } = e else {
        return false;
    };
    [
        "UnknownMemberId",
        "RebalanceInProgress",
        "IllegalGeneration",
    ]
    .iter()
    .any(|code| reason.contains(code))
}

fn unknown_group(group: &str) -> ToolError {
    ToolError::Usage(format!(
        "group `{group}` has no committed offsets (see `streams-log groups`)"
    ))
}

/// `reset-offsets`: computes every new offset before committing any, in one commit.
pub(crate) fn reset(log: &dyn Log, args: &ResetArgs) -> Result<(), ToolError> {
    if args.group.is_empty() {
        return Err(ToolError::Usage("the group name must not be empty".into()));
    }
    // As Kafka's kafka-consumer-groups: a group with members would not take the commit
    // (and its members would overwrite it), so say so up front.
    refuse_members(log, &args.group)?;
    let mut table = Table::new(&["TOPIC", "PARTITION", "OLD", "NEW"]);
    let mut new_offsets = Vec::new();
    for tp in partitions(log, &args.topic, args.partition)? {
        let start = log.start_offset(&tp)?;
        let end = log.end_offset(&tp, IsolationLevel::ReadUncommitted)?;
        let new = if args.to_earliest {
            start
        } else if args.to_latest {
            end
        } else if let Some(ts) = args.to_timestamp {
            log.offset_for_timestamp(&tp, ts)?.unwrap_or(end)
        } else if let Some(offset) = args.to_offset {
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
        } else {
            // clap requires one of the four.
            return Err(ToolError::Usage(
                "say where to: --to-earliest, --to-latest, --to-timestamp or --to-offset".into(),
            ));
        };
        let old = log.committed_offset(&args.group, &tp)?;
        table.row(vec![
            tp.topic.clone(),
            tp.partition.to_string(),
            or_dash(old),
            new.to_string(),
        ]);
        new_offsets.push((tp, new));
    }
    table.print()?;
    if args.dry_run {
        line("dry run: nothing committed")?;
    } else {
        if let Err(e) = log.commit_offsets(&args.group, &new_offsets) {
            // A member that joined since the group was described: the broker refuses a
            // commit from outside the group then. Say who it is, as up front.
            if joining(&e) {
                refuse_members(log, &args.group)?;
                return Err(ToolError::Usage(format!(
                    "a member is joining group `{}` (the broker refused the commit: {}): \
                     offsets can only be reset while it has none; stop the application first",
                    args.group,
                    e.report()
                )));
            }
            return Err(e.into());
        }
        log.sync()?;
        line(format!(
            "committed {} offsets for group `{}`",
            new_offsets.len(),
            args.group
        ))?;
    }
    Ok(())
}
