//! The consumer group's side of task placement: which tasks this process runs, as the
//! group assigns and revokes partitions of the anchor topics.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::Shared;
use crate::error::Error;
use crate::ids::TaskId;
use crate::log::RebalanceListener;
use crate::record::TopicPartition;

/// Hears from the consumer group which tasks this process runs.
///
/// Task `(s, p)` belongs to the member holding partition `p` of sub-topology `s`'s anchor
/// topic, so a task's inputs always move together, whatever assignor the group uses.
pub(super) struct GroupListener {
    pub(super) shared: std::sync::Weak<Shared>,
}

/// How long a revoke waits for the threads to commit and close the revoked tasks.
const REVOKE_WAIT: Duration = Duration::from_secs(120);

impl GroupListener {
    fn tasks(shared: &Shared, partitions: &[TopicPartition]) -> Vec<TaskId> {
        partitions
            .iter()
            .filter_map(|tp| {
                shared
                    .anchors
                    .get(&tp.topic)
                    .map(|&sub| TaskId::new(sub, tp.partition))
            })
            .collect()
    }
}

impl RebalanceListener for GroupListener {
    fn revoked(&self, partitions: &[TopicPartition], lost: bool) {
        let _span = tracing::info_span!("rebalance", revoked = partitions.len(), lost).entered();
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let tasks = Self::tasks(&shared, partitions);
        {
            let mut group = shared.group.lock();
            shared.instances.rebalanced();
            if lost {
                group.lost_at.get_or_insert_with(Instant::now);
            }
            if let Some(owned) = &mut group.owned {
                for t in &tasks {
                    owned.remove(t);
                }
            }
            shared.rebalance(&mut group);
        }
        // The group hands the partitions on when this returns: their tasks must have
        // committed and closed by then.
        let deadline = Instant::now() + REVOKE_WAIT;
        loop {
            let held = {
                let group = shared.group.lock();
                tasks
                    .iter()
                    .filter(|t| group.holders.contains_key(*t))
                    .count()
            };
            if held == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    held,
                    "revoked tasks were not closed in time; the group moves on"
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn assigned(&self, partitions: &[TopicPartition]) {
        let _span = tracing::info_span!("rebalance", assigned = partitions.len()).entered();
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let tasks = Self::tasks(&shared, partitions);
        {
            let mut group = shared.group.lock();
            shared.instances.rebalanced();
            if !tasks.is_empty() {
                group.lost_at = None;
            }
            group.owned.get_or_insert_with(BTreeSet::new).extend(tasks);
            group.joined = true;
            shared.rebalance(&mut group);
        }
        shared.check_running();
    }

    fn failed(&self, error: Error) {
        if let Some(shared) = self.shared.upgrade() {
            shared.fail(error);
        }
    }
}
