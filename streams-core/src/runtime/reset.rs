//! Application reset: what Kafka's `kafka-streams-application-reset` does, as a library call
//! (the log tool's `application-reset` is a front for it), so that an application can be run
//! again over its input from the start (or from a time) to the same result.
//!
//! See [`ApplicationReset`] for what it changes and in which order.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::log::{validate_topic_name, IsolationLevel, Log};
use crate::record::TopicPartition;

use super::StreamsConfig;

/// Where [`ApplicationReset`] moves the input topics' committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetTo {
    /// The first offset still in each partition: replay everything (the default).
    Earliest,
    /// The end of each partition: skip everything not yet read.
    Latest,
    /// The first record whose timestamp (ms since the epoch) is at least this; the end of a
    /// partition with none.
    Timestamp(i64),
}

/// One partition's committed offset before and after a reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetMove {
    /// The input partition.
    pub tp: TopicPartition,
    /// What the group had committed there, if anything.
    pub old: Option<u64>,
    /// What the reset commits.
    pub new: u64,
}

/// What a reset does (or, planned, would do).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResetPlan {
    /// The input partitions' offsets, by topic and partition.
    pub offsets: Vec<OffsetMove>,
    /// The internal topics deleted, sorted.
    pub internal_topics: Vec<String>,
    /// The local state removed: entries of `<state_dir>/<application_id>/`, sorted.
    pub local_state: Vec<PathBuf>,
}

/// Whether `topic` is one of `application_id`'s internal topics: a changelog or repartition
/// topic named with the application id as its prefix, as the runtime names them (and as
/// Kafka's reset tool recognises them).
///
/// ```
/// use streams_core::is_internal_topic;
/// assert!(is_internal_topic("app", "app-counts-changelog"));
/// assert!(is_internal_topic("app", "app-KSTREAM-REPARTITION-0000000001-repartition"));
/// assert!(!is_internal_topic("app", "app-output"));
/// assert!(!is_internal_topic("app", "other-counts-changelog"));
/// assert!(!is_internal_topic("app", "app-changelog"), "no name between prefix and suffix");
/// ```
pub fn is_internal_topic(application_id: &str, topic: &str) -> bool {
    let Some(rest) = topic
        .strip_prefix(application_id)
        .and_then(|r| r.strip_prefix('-'))
    else {
        return false;
    };
    ["-changelog", "-repartition"]
        .iter()
        .any(|suffix| rest.len() > suffix.len() && rest.ends_with(suffix))
}

/// Resets an application, as Kafka's `kafka-streams-application-reset` tool does.
///
/// A reset has three parts, done in this order:
///
/// 1. the group's committed offsets on every partition of the input topics move to the
///    earliest offset, the latest, or the first at a time (an offset committed this way
///    carries no metadata, so the partitions' stream time starts over too);
/// 2. the application's internal topics are deleted: changelogs (`<app>-<store>-changelog`)
///    and repartition topics (`<app>-<name>-repartition`); the next run creates them again,
///    empty, so no store restores the old counts and no stale record is re-read;
/// 3. with a state directory, the application's local state there is removed
///    ([`StreamsConfig::clean_up_local_state`]); every other instance must clean up its own
///    ([`Streams::clean_up`](crate::Streams::clean_up)) before it starts again.
///
/// The application must not run while it is reset. On Kafka a group with active members is
/// refused, as Kafka's tool refuses it; the embedded log admits one process at a time, so a
/// tool that opened it for writing knows the application is stopped. Output topics are not
/// touched: a replay appends its results to them again.
///
/// ```
/// use streams_core::{ApplicationReset, Log, MemoryLog, Record, ResetTo, TopicConfig, TopicPartition};
///
/// let log = MemoryLog::new();
/// log.create_topic("in", TopicConfig::new(1))?;
/// log.create_topic("app-counts-changelog", TopicConfig::compacted(1))?;
/// let tp = TopicPartition::new("in", 0);
/// log.append(&tp, &[Record::new("k", "v", 1)])?;
/// log.commit_offsets("app", &[(tp.clone(), 1)])?;
///
/// let reset = ApplicationReset::new("app", ["in"]).to(ResetTo::Earliest);
/// let done = reset.run(&log)?;
/// assert_eq!(done.internal_topics, vec!["app-counts-changelog".to_string()]);
/// assert_eq!(log.committed_offset("app", &tp)?, Some(0));
/// assert_eq!(log.list_topics()?, vec!["in".to_string()]);
/// # Ok::<(), streams_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ApplicationReset {
    application_id: String,
    input_topics: Vec<String>,
    to: ResetTo,
    state_dir: Option<PathBuf>,
}

impl ApplicationReset {
    /// A reset of `application_id` (its consumer group) whose input topics are these, to the
    /// earliest offsets, leaving local state alone.
    pub fn new<T: Into<String>>(
        application_id: impl Into<String>,
        input_topics: impl IntoIterator<Item = T>,
    ) -> Self {
        ApplicationReset {
            application_id: application_id.into(),
            input_topics: input_topics.into_iter().map(Into::into).collect(),
            to: ResetTo::Earliest,
            state_dir: None,
        }
    }

    /// Sets where the input offsets go.
    pub fn to(mut self, to: ResetTo) -> Self {
        self.to = to;
        self
    }

    /// Also removes the application's local state under this state directory (the
    /// `state.dir` it runs with).
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// What [`ApplicationReset::run`] would do, changing nothing. Fails as `run` would
    /// before changing anything: a bad application id, an unknown input topic, an
    /// application with active members.
    pub fn plan(&self, log: &dyn Log) -> Result<ResetPlan> {
        let app = &self.application_id;
        validate_topic_name(app).map_err(|e| Error::Config {
            key: "application.id".into(),
            reason: format!("names the group and prefixes internal topics: {e}"),
        })?;
        if let Some(group) = log.describe_group(app)? {
            if !group.members.is_empty() {
                let clients: Vec<&str> =
                    group.members.iter().map(|m| m.client_id.as_str()).collect();
                return Err(Error::InvalidState {
                    operation: format!("reset application `{app}`"),
                    state: format!(
                        "running: its group has {} active member(s) ({}); stop every instance \
                         and wait for the group to empty",
                        group.members.len(),
                        clients.join(", ")
                    ),
                });
            }
        }
        let mut plan = ResetPlan::default();
        for topic in &self.input_topics {
            if is_internal_topic(app, topic) {
                return Err(Error::Config {
                    key: "input topics".into(),
                    reason: format!(
                        "`{topic}` is an internal topic of `{app}`, which a reset deletes"
                    ),
                });
            }
            let partitions = log
                .describe_topic(topic)
                .map_err(|e| match e {
                    Error::UnknownTopic { .. } => Error::UnknownTopic {
                        topic: format!("{topic} (an input topic of `{app}`)"),
                    },
                    other => other,
                })?
                .partitions;
            let tps: Vec<TopicPartition> = (0..partitions)
                .map(|p| TopicPartition::new(topic.as_str(), p))
                .collect();
            let committed = log.committed_offsets_of(app, &tps)?;
            for tp in tps {
                let new = match self.to {
                    ResetTo::Earliest => log.start_offset(&tp)?,
                    ResetTo::Latest => log.end_offset(&tp, IsolationLevel::ReadUncommitted)?,
                    ResetTo::Timestamp(ts) => match log.offset_for_timestamp(&tp, ts)? {
                        Some(offset) => offset,
                        None => log.end_offset(&tp, IsolationLevel::ReadUncommitted)?,
                    },
                };
                let old = committed.iter().find(|(p, _)| *p == tp).map(|(_, o)| *o);
                plan.offsets.push(OffsetMove { tp, old, new });
            }
        }
        plan.internal_topics = log
            .list_topics()?
            .into_iter()
            .filter(|t| is_internal_topic(app, t) && !self.input_topics.contains(t))
            .collect();
        if let Some(dir) = &self.state_dir {
            plan.local_state = StreamsConfig::new(app.as_str(), dir).local_state()?;
        }
        Ok(plan)
    }

    /// Resets the application: commits the new input offsets, deletes the internal topics,
    /// removes the local state; returns what it did. A failure part way names what failed;
    /// running the reset again finishes it.
    pub fn run(&self, log: &dyn Log) -> Result<ResetPlan> {
        let plan = self.plan(log)?;
        let offsets: Vec<(TopicPartition, u64)> =
            plan.offsets.iter().map(|m| (m.tp.clone(), m.new)).collect();
        log.commit_offsets(&self.application_id, &offsets)?;
        for topic in &plan.internal_topics {
            match log.delete_topic(topic) {
                // Gone since the plan (another reset): what was wanted.
                Ok(()) | Err(Error::UnknownTopic { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        log.sync()?;
        if let Some(dir) = &self.state_dir {
            StreamsConfig::new(self.application_id.as_str(), dir).clean_up_local_state()?;
        }
        Ok(plan)
    }
}
