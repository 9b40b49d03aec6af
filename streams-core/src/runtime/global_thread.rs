//! The global stream thread: keeps every global store following its topic (every
//! partition) after the bootstrap read at start, checkpointing as it goes, until the
//! application stops. Transient log errors are retried within `task.timeout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::error::{Error, Result};
use crate::task::GlobalUpdater;

impl Shared {
    /// Keeps the global stores following their topics until the application stops.
    pub(super) fn spawn_global_thread(
        shared: &Arc<Shared>,
        mut updater: GlobalUpdater,
    ) -> Result<()> {
        let name = format!("{}-GlobalStreamThread", shared.config.application_id);
        let worker = shared.clone();
        let span = tracing::info_span!("global_thread", thread = %name);
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _span = span.entered();
                let log = worker.log.clone();
                let mut last_checkpoint = Instant::now();
                // Transient log errors are retried, as the stream threads do, until they have
                // lasted `task_timeout`.
                let mut failing_since: Option<Instant> = None;
                let outcome = (|| -> Result<()> {
                    while !worker.stopping() {
                        let step = updater.poll(&*log).and_then(|applied| {
                            if last_checkpoint.elapsed() >= worker.config.commit_interval {
                                updater.checkpoint(&*log)?;
                                last_checkpoint = Instant::now();
                            }
                            Ok(applied)
                        });
                        match step {
                            Ok(applied) => {
                                failing_since = None;
                                if applied == 0 {
                                    std::thread::sleep(worker.config.poll_idle);
                                }
                            }
                            Err(e) if e.is_retriable() => {
                                let since = *failing_since.get_or_insert_with(Instant::now);
                                if since.elapsed() >= worker.config.task_timeout {
                                    return Err(e);
                                }
                                tracing::warn!(error = %e.report(), "global stores: transient error, retrying");
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    updater.close(&*log)
                })();
                if let Err(e) = outcome {
                    tracing::error!(error = %e.report(), "the global stream thread failed");
                    worker.fail(e);
                }
            })
            .map_err(|e| Error::io("spawn the global stream thread", name, e))?;
        shared.handles.lock().push(handle);
        Ok(())
    }
}
