//! Per-task counters: records processed, records dropped by processor and reason.

use std::collections::BTreeMap;

/// Counters of one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// Records taken from the task's input partitions and run through its processors.
    pub processed: u64,
    /// Records that could not be decoded and were skipped by the handler.
    pub skipped_deserialization: u64,
    /// Records skipped because a sink could not encode what they produced.
    pub skipped_production: u64,
    /// Records dropped by processors, by (processor, reason).
    pub dropped: BTreeMap<(String, &'static str), u64>,
    /// Punctuations run.
    pub punctuations: u64,
}

impl TaskMetrics {
    pub(crate) fn dropped(&mut self, processor: &str, reason: &'static str) {
        match self.dropped.get_mut(&(processor.to_string(), reason)) {
            Some(n) => *n += 1,
            None => {
                self.dropped.insert((processor.to_string(), reason), 1);
            }
        }
    }

    /// Records dropped for `reason` by any processor.
    pub fn dropped_for(&self, reason: &str) -> u64 {
        self.dropped
            .iter()
            .filter(|((_, r), _)| *r == reason)
            .map(|(_, n)| n)
            .sum()
    }
}
