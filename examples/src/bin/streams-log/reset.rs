//! `application-reset`: what Kafka's `kafka-streams-application-reset` does, through the
//! library's [`ApplicationReset`]: the application's committed offsets on its input topics
//! move (to the earliest by default), its internal topics (changelogs, repartition topics)
//! are deleted, and its local state under `--state-dir` is removed.
//!
//! The application must be stopped: on the embedded log the tool takes the log's lock (a
//! running application holds it), on Kafka a group with active members is refused.

use clap::{ArgGroup, Args};
use streams_core::{ApplicationReset, Log, ResetTo};

use crate::output::{line, Table};
use crate::ToolError;

/// Arguments of `application-reset`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("to").multiple(false)))]
#[command(
    after_help = "Stop every instance of the application first. Output topics are \
    not touched: a replay appends its results to them again. Without --state-dir the local \
    state stays: call Streams::clean_up() in each instance before it starts again, or it \
    restores nothing (the changelogs are gone) but keeps its old stores.\n\n\
    The local state is <state-dir>/<application-id>/ (its process-id file stays). With an \
    embedded log, --state-dir also says where the log is (<state-dir>/log); with \
    --bootstrap-servers it is only the local state."
)]
pub(crate) struct ResetArgs {
    /// The application id (its consumer group, and the prefix of its internal topics).
    #[arg(long, value_name = "ID")]
    application_id: String,
    /// The application's input topics, whose committed offsets move; comma-separated.
    #[arg(long, value_name = "T1,T2", value_delimiter = ',')]
    input_topics: Vec<String>,
    /// To the first offset still in each partition: replay everything (the default).
    #[arg(long, group = "to")]
    to_earliest: bool,
    /// To the end of each partition: skip everything not yet read.
    #[arg(long, group = "to")]
    to_latest: bool,
    /// To the first record at or after this time, RFC 3339 (`2026-03-01T12:00:00Z`,
    /// `2026-03-01T13:00:00.500+01:00`); the end of a partition with none.
    #[arg(long, value_name = "DATETIME", group = "to", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// To the first record whose timestamp is at least MS (ms since the epoch).
    #[arg(long, value_name = "MS", group = "to", allow_negative_numbers = true)]
    to_timestamp: Option<i64>,
    /// Print what would change, changing nothing.
    #[arg(long)]
    dry_run: bool,
}

/// An RFC 3339 date and time → ms since the epoch.
fn parse_datetime(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            format!("`{s}` is not an RFC 3339 date and time like 2026-03-01T12:00:00Z ({e})")
        })
}

/// `application-reset`. `state_dir`: where the local state is, when the command was given one.
pub(crate) fn run(
    log: &dyn Log,
    args: &ResetArgs,
    state_dir: Option<&std::path::Path>,
) -> Result<(), ToolError> {
    let to = if args.to_latest {
        ResetTo::Latest
    } else if let Some(ms) = args.to_datetime.or(args.to_timestamp) {
        ResetTo::Timestamp(ms)
    } else {
        ResetTo::Earliest
    };
    let mut reset = ApplicationReset::new(args.application_id.as_str(), &args.input_topics).to(to);
    if let Some(dir) = state_dir {
        reset = reset.with_state_dir(dir);
    }
    let plan = if args.dry_run {
        reset.plan(log)?
    } else {
        reset.run(log)?
    };
    let app = &args.application_id;
    let (moved, deleted, removed) = if args.dry_run {
        ("would move", "would delete", "would remove")
    } else {
        ("moved", "deleted", "removed")
    };

    if plan.offsets.is_empty() {
        line("no input topics given: no offsets moved")?;
    } else {
        line(format!("{moved} offsets of group `{app}`:"))?;
        let mut table = Table::new(&["TOPIC", "PARTITION", "OLD", "NEW"]);
        for m in &plan.offsets {
            table.row(vec![
                m.tp.topic.clone(),
                m.tp.partition.to_string(),
                m.old.map_or_else(|| "-".to_string(), |o| o.to_string()),
                m.new.to_string(),
            ]);
        }
        table.print()?;
    }

    if plan.internal_topics.is_empty() {
        line(format!("no internal topics of `{app}` to delete"))?;
    } else {
        line(format!("{deleted} internal topics:"))?;
        for topic in &plan.internal_topics {
            line(format!("  {topic}"))?;
        }
    }

    match state_dir {
        None => line("local state not touched (pass --state-dir to remove it)")?,
        Some(dir) => {
            let dir = dir.join(app);
            if plan.local_state.is_empty() {
                line(format!("no local state in {}", dir.display()))?;
            } else {
                line(format!("{removed} local state in {}:", dir.display()))?;
                for path in &plan.local_state {
                    let name = path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    line(format!("  {name}"))?;
                }
            }
        }
    }
    if args.dry_run {
        line("dry run: nothing changed")?;
    }
    Ok(())
}
