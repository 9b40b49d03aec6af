//! Told about restores: [`StateRestoreListener`], as Kafka Streams' listener of the same name.

use crate::record::TopicPartition;
use crate::task::RestoreEvent;

/// Told when a store's restore from its changelog starts, after each batch it replays, and
/// when it ends; set with [`Streams::set_restore_listener`](crate::Streams::set_restore_listener)
/// before `start`. Called on the stream thread doing the restore, so keep it quick (a progress
/// bar, a metric, a log line). Only restores with something to replay are reported. Global
/// stores, read to their topics' end inside `start`, are not.
pub trait StateRestoreListener: Send + Sync {
    /// `store` will replay offsets `start..end` of `changelog`.
    fn on_restore_start(&self, changelog: &TopicPartition, store: &str, start: u64, end: u64) {
        let _ = (changelog, store, start, end);
    }

    /// A batch of `records` records was replayed, up to (not including) offset `batch_end`.
    fn on_batch_restored(
        &self,
        changelog: &TopicPartition,
        store: &str,
        batch_end: u64,
        records: u64,
    ) {
        let _ = (changelog, store, batch_end, records);
    }

    /// The store reached the changelog's end, having replayed `restored` records.
    fn on_restore_end(&self, changelog: &TopicPartition, store: &str, restored: u64) {
        let _ = (changelog, store, restored);
    }

    /// The restore stopped before the end because the application is closing, after
    /// `restored` records (it resumes from there at the next start).
    fn on_restore_suspended(&self, changelog: &TopicPartition, store: &str, restored: u64) {
        let _ = (changelog, store, restored);
    }
}

/// Passes one restore event to `listener`.
pub(super) fn tell(listener: &dyn StateRestoreListener, event: RestoreEvent<'_>) {
    match event {
        RestoreEvent::Start {
            changelog,
            store,
            start,
            end,
        } => listener.on_restore_start(changelog, store, start, end),
        RestoreEvent::Batch {
            changelog,
            store,
            batch_end,
            records,
        } => listener.on_batch_restored(changelog, store, batch_end, records),
        RestoreEvent::End {
            changelog,
            store,
            restored,
            complete: true,
        } => listener.on_restore_end(changelog, store, restored),
        RestoreEvent::End {
            changelog,
            store,
            restored,
            complete: false,
        } => listener.on_restore_suspended(changelog, store, restored),
    }
}
