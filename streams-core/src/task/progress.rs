//! What a task's restore tells the thread running it, and asks it: how far each store got
//! (for readiness probes and progress reports), and whether to stop (the application is
//! closing). A restore that stops early leaves each store consistent up to the offset it
//! reached and checkpoints that offset, so the next start replays only the rest.

use std::collections::BTreeMap;

/// Hooks a restore calls between two fetches from a changelog.
pub(crate) struct RestoreHooks<'a> {
    /// Asked before each fetch: `true` stops the restore where it is.
    pub(crate) stop: &'a (dyn Fn() -> bool + 'a),
    /// Told after each fetch: the store, changelog offsets replayed so far, and offsets to
    /// replay in all (both from the offset the restore started at).
    pub(crate) progress: &'a (dyn Fn(&str, u64, u64) + 'a),
}

impl RestoreHooks<'static> {
    /// Never stops, reports nothing.
    pub(crate) fn none() -> Self {
        RestoreHooks {
            stop: &|| false,
            progress: &|_, _, _| {},
        }
    }
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
