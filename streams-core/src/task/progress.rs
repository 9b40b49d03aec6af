//! What a task's restore tells the thread running it, and asks it: how far each store got
//! (for readiness probes and progress reports), and whether to stop (the application is
//! closing). A restore that stops early leaves each store consistent up to the offset it
//! reached and checkpoints that offset, so the next start replays only the rest.

use std::collections::BTreeMap;

use crate::record::TopicPartition;

/// Hooks a restore calls between two fetches from a changelog.
pub(crate) struct RestoreHooks<'a> {
    /// Asked before each fetch: `true` stops the restore where it is.
    pub(crate) stop: &'a (dyn Fn() -> bool + 'a),
    /// Told after each fetch: the store, changelog offsets replayed so far, and offsets to
    /// replay in all (both from the offset the restore started at).
    pub(crate) progress: &'a (dyn Fn(&str, u64, u64) + 'a),
    /// Told where each store's restore starts, what each fetch replayed and how it ended.
    pub(crate) events: &'a (dyn Fn(RestoreEvent<'_>) + 'a),
}

impl RestoreHooks<'static> {
    /// Never stops, reports nothing.
    pub(crate) fn none() -> Self {
        RestoreHooks {
            stop: &|| false,
            progress: &|_, _, _| {},
            events: &|_| {},
        }
    }
}

/// One step of a store's restore from its changelog partition, for a
/// [`StateRestoreListener`](crate::StateRestoreListener). Only stores with something to
/// replay (start below end) have any.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RestoreEvent<'a> {
    /// The restore replays `start..end` of `changelog` into `store`.
    Start {
        changelog: &'a TopicPartition,
        store: &'a str,
        start: u64,
        end: u64,
    },
    /// One fetch replayed `records` records, up to (not including) `batch_end`.
    Batch {
        changelog: &'a TopicPartition,
        store: &'a str,
        batch_end: u64,
        records: u64,
    },
    /// The store reached the end (`complete`) or the restore was stopped by a close.
    End {
        changelog: &'a TopicPartition,
        store: &'a str,
        restored: u64,
        complete: bool,
    },
}

/// What a restore did.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// Records replayed per store.
    pub(crate) records: BTreeMap<String, u64>,
    /// Whether every store reached its changelog's end (else the restore was stopped, and a
    /// checkpoint of where each store got was written).
    pub(crate) complete: bool,
}
