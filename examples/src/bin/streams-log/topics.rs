//! `topics`, `create`, `describe` and `delete`.

use clap::Args;
use streams_core::{CleanupPolicy, EmbeddedLog, IsolationLevel, Log, TopicConfig};

use crate::output::{line, Table};
use crate::{partitions, ToolError};

/// Arguments of `create`.
#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// Topic name: 1–249 characters of ASCII letters, digits, `.`, `_` and `-`.
    topic: String,
    /// Number of partitions.
    #[arg(long, value_name = "N")]
    partitions: u32,
    /// Keep only the latest record per key (cleanup.policy=compact) instead of deleting by age.
    #[arg(long)]
    compact: bool,
    /// Delete segments appended longer ago than this (default 7 days; -1: keep forever).
    #[arg(
        long,
        value_name = "MS",
        conflicts_with = "compact",
        allow_negative_numbers = true
    )]
    retention_ms: Option<i64>,
    /// Succeed without a change if the topic already exists.
    #[arg(long)]
    if_not_exists: bool,
}

/// Arguments of `describe`.
#[derive(Args, Debug)]
pub(crate) struct DescribeArgs {
    /// The topic.
    topic: String,
}

/// Arguments of `delete`.
#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    /// The topic: its records go, and every group's offsets in it.
    topic: String,
}

/// `delete`.
pub(crate) fn delete(log: &dyn Log, args: &DeleteArgs) -> Result<(), ToolError> {
    log.delete_topic(&args.topic)?;
    log.sync()?;
    line(format!("deleted topic `{}`", args.topic))
}

fn policy(p: CleanupPolicy) -> &'static str {
    p.as_str()
}

fn or_none<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// `topics`: one row per topic.
pub(crate) fn list(log: &dyn Log) -> Result<(), ToolError> {
    let mut table = Table::new(&["TOPIC", "PARTITIONS", "CLEANUP"]);
    for topic in log.list_topics()? {
        let config = log.describe_topic(&topic)?;
        table.row(vec![
            topic,
            config.partitions.to_string(),
            policy(config.cleanup_policy).to_string(),
        ]);
    }
    table.print()
}

/// `create`: refuses an existing topic unless `--if-not-exists`, because the log itself
/// accepts a re-creation with the same partition count and ignores the rest of the config.
pub(crate) fn create(log: &dyn Log, args: &CreateArgs) -> Result<(), ToolError> {
    if let Ok(existing) = log.describe_topic(&args.topic) {
        let what = format!(
            "topic `{}` already exists ({} partitions, cleanup.policy={})",
            args.topic,
            existing.partitions,
            policy(existing.cleanup_policy)
        );
        if args.if_not_exists {
            return line(what);
        }
        return Err(ToolError::Usage(what));
    }
    let config = if args.compact {
        TopicConfig::compacted(args.partitions)
    } else {
        match args.retention_ms {
            None => TopicConfig::new(args.partitions),
            Some(-1) => TopicConfig::new(args.partitions).with_retention_ms(None),
            Some(ms) => TopicConfig::new(args.partitions).with_retention_ms(Some(ms)),
        }
    };
    log.create_topic(&args.topic, config.clone())?;
    line(format!(
        "created topic `{}`: {} partitions, cleanup.policy={}, retention.ms={}",
        args.topic,
        config.partitions,
        policy(config.cleanup_policy),
        or_none(config.retention_ms)
    ))
}

/// `describe`: the configuration, then a row per partition (with its segments and bytes on
/// the embedded log, `embedded`).
pub(crate) fn describe(
    log: &dyn Log,
    embedded: Option<&EmbeddedLog>,
    args: &DescribeArgs,
) -> Result<(), ToolError> {
    let config = log.describe_topic(&args.topic)?;
    let mut settings = Table::new(&["topic", &args.topic]);
    for (key, value) in [
        ("partitions", config.partitions.to_string()),
        ("cleanup.policy", policy(config.cleanup_policy).to_string()),
        ("retention.ms", or_none(config.retention_ms)),
        ("retention.bytes", or_none(config.retention_bytes)),
        (
            "delete.retention.ms",
            config.delete_retention_ms.to_string(),
        ),
        ("segment.bytes", config.segment_bytes.to_string()),
    ] {
        settings.row(vec![key.to_string(), value]);
    }
    settings.print()?;
    line("")?;
    let mut columns = vec!["PARTITION", "START", "END", "STABLE-END"];
    if embedded.is_some() {
        columns.extend(["SEGMENTS", "BYTES"]);
    }
    let mut table = Table::new(&columns);
    for tp in partitions(log, &args.topic, None)? {
        let mut row = vec![
            tp.partition.to_string(),
            log.start_offset(&tp)?.to_string(),
            log.end_offset(&tp, IsolationLevel::ReadUncommitted)?
                .to_string(),
            log.end_offset(&tp, IsolationLevel::ReadCommitted)?
                .to_string(),
        ];
        if let Some(embedded) = embedded {
            row.push(embedded.segment_count(&tp)?.to_string());
            row.push(embedded.partition_size(&tp)?.to_string());
        }
        table.row(row);
    }
    table.print()
}
