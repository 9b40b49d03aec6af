//! The topics an application needs, laid out at start: internal topics created with the
//! right partition counts and cleanup policies, missing output topics created, sources and
//! co-partitioning checked, and the anchor topic of each sub-topology chosen.

use std::collections::BTreeMap;

use hashbrown::{HashMap, HashSet};

use super::StreamsConfig;
use crate::error::{Error, Result};
use crate::ids::TopicName;
use crate::log::{Log, TopicConfig};
use crate::topology::{InternalTopicKind, Topology};

/// Partition counts of every topic, and how many tasks each sub-topology has.
pub(super) struct TopicLayout {
    pub(super) partitions: HashMap<String, u32>,
    pub(super) task_counts: BTreeMap<u32, u32>,
    pub(super) anchors: BTreeMap<String, u32>,
}

impl TopicLayout {
    /// Creates internal and missing output topics and checks the inputs.
    pub(super) fn prepare(
        topology: &Topology,
        app: &str,
        config: &StreamsConfig,
        log: &dyn Log,
    ) -> Result<TopicLayout> {
        let mut counts: HashMap<String, u32> = HashMap::new();
        for topic in topology.user_source_topics() {
            let described = log.describe_topic(&topic).map_err(|e| match e {
                Error::UnknownTopic { .. } => Error::UnknownTopic {
                    topic: format!(
                        "{topic} (a source topic of the topology; create it before starting)"
                    ),
                },
                other => other,
            })?;
            counts.insert(topic, described.partitions);
        }
        let internal = topology.internal_topics();
        let repartition: HashSet<String> = internal
            .iter()
            .filter(|(_, k)| **k == InternalTopicKind::Repartition)
            .map(|(n, _)| TopicName::Internal(n.clone()).resolve(app))
            .collect();
        // A repartition topic given a partition count keeps it.
        for (name, kind) in internal {
            if *kind == InternalTopicKind::Repartition {
                if let Some(n) = topology.partition_count_of(name) {
                    counts.insert(TopicName::Internal(name.clone()).resolve(app), n);
                }
            }
        }
        // A repartition topic that feeds a join is sized like the join's other inputs, as
        // Kafka Streams does: the largest partition count among the user topics it is
        // co-partitioned with (they must agree, which the co-partitioning check verifies).
        let mut joined: HashMap<String, u32> = HashMap::new();
        for group in topology.copartition_groups() {
            let fixed = group
                .iter()
                .map(|t| t.resolve(app))
                .filter(|t| !repartition.contains(t))
                .filter_map(|t| counts.get(&t).copied())
                .max();
            let Some(fixed) = fixed else { continue };
            for t in group.iter().map(|t| t.resolve(app)) {
                if repartition.contains(&t) {
                    let n = joined.entry(t).or_insert(fixed);
                    *n = (*n).max(fixed);
                }
            }
        }
        // Any other repartition topic gets the partition count of the sub-topology writing
        // it, which may itself read a repartition topic: settle counts until nothing changes.
        let mut task_counts: BTreeMap<u32, u32> = BTreeMap::new();
        for _ in 0..=topology.subtopologies().len() {
            let mut changed = false;
            for sub in topology.subtopologies() {
                let n = sub
                    .source_topics
                    .iter()
                    .filter_map(|t| counts.get(&t.resolve(app)).copied())
                    .max();
                let Some(n) = n else { continue };
                if task_counts.insert(sub.id, n) != Some(n) {
                    changed = true;
                }
                for t in &sub.sink_topics {
                    let name = t.resolve(app);
                    if repartition.contains(&name) && !counts.contains_key(&name) {
                        let n = joined.get(&name).copied().unwrap_or(n);
                        counts.insert(name, n);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for sub in topology.subtopologies() {
            if !task_counts.contains_key(&sub.id) {
                return Err(Error::Config {
                    key: format!("sub-topology {}", sub.id),
                    reason: "none of its source topics has a known partition count".into(),
                });
            }
        }
        topology.check_copartitioning(app, |t| counts.get(t).copied())?;
        for name in &repartition {
            if let Some(&n) = counts.get(name) {
                log.create_topic(name, TopicConfig::new(n))?;
            }
        }
        for sub in topology.subtopologies() {
            let n = task_counts[&sub.id];
            for store in &sub.stores {
                if let Some(t) = topology.stores().get(store).and_then(|s| s.changelog()) {
                    let name = t.resolve(app);
                    log.create_topic(&name, TopicConfig::compacted(n))?;
                    counts.insert(name, n);
                }
            }
            // Output topics that do not exist are created like Kafka's auto-creation would,
            // with the partition count of the sub-topology writing them.
            for t in &sub.sink_topics {
                let name = t.resolve(app);
                if counts.contains_key(&name) {
                    continue;
                }
                match log.describe_topic(&name) {
                    Ok(c) => {
                        counts.insert(name, c.partitions);
                    }
                    Err(Error::UnknownTopic { .. }) => {
                        log.create_topic(&name, TopicConfig::new(n))?;
                        counts.insert(name, n);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let dead_letter = [&config.deserialization, &config.production]
            .map(|h| h.dead_letter_topic().map(str::to_string));
        for t in dead_letter.into_iter().flatten() {
            let n = match log.describe_topic(&t) {
                Ok(c) => c.partitions,
                Err(Error::UnknownTopic { .. }) => {
                    log.create_topic(&t, TopicConfig::new(1))?;
                    1
                }
                Err(e) => return Err(e),
            };
            counts.insert(t, n);
        }
        // Per sub-topology, the first source topic (by name) with as many partitions as it
        // has tasks. The same on every process, so the group agrees on where tasks run.
        let mut anchors = BTreeMap::new();
        for sub in topology.subtopologies() {
            let n = task_counts[&sub.id];
            let anchor = sub
                .source_topics
                .iter()
                .map(|t| t.resolve(app))
                .filter(|t| counts.get(t) == Some(&n))
                .min();
            if let Some(anchor) = anchor {
                anchors.insert(anchor, sub.id);
            }
        }
        Ok(TopicLayout {
            partitions: counts,
            task_counts,
            anchors,
        })
    }
}
