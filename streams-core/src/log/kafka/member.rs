//! Consumer-group membership: a consumer that joins the application's group, subscribed to
//! the topics that decide where tasks run, and tells the runtime what this process holds.
//!
//! The member never hands records to the engine: it pauses every partition it is given, and
//! the stream threads read their partitions through the log as usual. It exists for the
//! group protocol — joining, heartbeats, rebalances, leaving — and so that offset commits
//! carry a member id and generation the coordinator accepts.
//!
//! A thread of its own polls the consumer, which serves heartbeats and runs the rebalance
//! callbacks. The revoke callback returns only once the runtime has committed and closed the
//! tasks of the revoked partitions, so their next owner starts from those commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, TopicPartitionList};

use super::client::{bounded, code, kafka_error};
use super::context::{self, ClientStats, Faults};
use super::offset_list;
use crate::error::{Error, Result};
use crate::log::OffsetCommit;
use crate::log::{GroupMembership, RebalanceListener};
use crate::record::TopicPartition;

/// Runs the rebalance callbacks of a member.
pub(crate) struct MemberContext {
    group: String,
    listener: Arc<dyn RebalanceListener>,
    faults: Arc<Faults>,
    stats: Arc<ClientStats>,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        context::log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.faults.report(&error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.stats.record(statistics);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let partitions = partitions(list);
                let lost = consumer.assignment_lost();
                tracing::info!(
                    group = %self.group, partitions = partitions.len(), lost, "partitions revoked"
                );
                self.listener.revoked(&partitions, lost);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "the group rebalance failed");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            // The stream threads read these partitions themselves.
            if let Err(e) = consumer.pause(list) {
                tracing::warn!(group = %self.group, error = %e, "pausing the member's partitions failed");
            }
            let partitions = partitions(list);
            tracing::info!(group = %self.group, partitions = partitions.len(), "partitions assigned");
            self.listener.assigned(&partitions);
        }
    }
}

pub(crate) type MemberConsumer = BaseConsumer<MemberContext>;

fn partitions(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition().max(0) as u32))
        .collect()
}

/// Makes the consumer that joins `group`; `config` already holds the log's properties.
pub(crate) fn create(
    mut config: rdkafka::config::ClientConfig,
    group: &str,
    topics: &[String],
    listener: Arc<dyn RebalanceListener>,
    (faults, stats): (Arc<Faults>, Arc<ClientStats>),
) -> Result<Arc<MemberConsumer>> {
    let operation = || format!("join group {group}");
    config.set("group.id", group);
    let consumer: MemberConsumer = config
        .create_with_context(MemberContext {
            group: group.to_string(),
            listener,
            faults,
            stats,
        })
        .map_err(|e| kafka_error(operation(), None, &e))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| kafka_error(operation(), None, &e))?;
    Ok(Arc::new(consumer))
}

/// Commits `offsets` synchronously through `consumer` (a member's commit carries its id and
/// generation), waiting at most `timeout` for the coordinator's answer.
pub(crate) fn commit<C: ConsumerContext + 'static>(
    consumer: Arc<BaseConsumer<C>>,
    group: &str,
    offsets: &[OffsetCommit],
    timeout: Duration,
) -> Result<()> {
    let operation = format!("commit offsets of group {group}");
    let list = offset_list(offsets).map_err(|e| kafka_error(&operation, None, &e))?;
    let op = operation.clone();
    bounded(operation, timeout, move || {
        consumer
            .commit(&list, CommitMode::Sync)
            .map_err(|e| kafka_error(op, None, &e))
    })
}

/// The polling thread of a member, and what stops it.
pub(crate) struct Member {
    pub(crate) group: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Told when the thread has dropped the consumer (left the group).
    left: mpsc::Receiver<()>,
    timeout: Duration,
    /// Called when the member is gone, so the log stops routing commits to it.
    on_leave: Option<Box<dyn FnOnce() + Send>>,
}

impl Member {
    /// Starts polling `consumer` on a thread of its own.
    pub(crate) fn start(
        group: &str,
        consumer: Arc<MemberConsumer>,
        listener: Arc<dyn RebalanceListener>,
        timeout: Duration,
        on_leave: Box<dyn FnOnce() + Send>,
    ) -> Result<Member> {
        let stop = Arc::new(AtomicBool::new(false));
        let (left_tx, left) = mpsc::channel();
        let name = format!("kafka-member-{group}");
        let thread_stop = stop.clone();
        let thread_group = group.to_string();
        let span = tracing::info_span!("group_member", group = %group);
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _span = span.entered();
                while !thread_stop.load(Ordering::SeqCst) {
                    match consumer.poll(Duration::from_millis(100)) {
                        None | Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            // Another process took this `group.instance.id`.
                            let fatal = matches!(
                                code(&e),
                                Some(rdkafka::error::RDKafkaErrorCode::FencedInstanceId)
                            );
                            tracing::warn!(group = %thread_group, error = %e, fatal, "group member error");
                            if fatal {
                                listener.failed(kafka_error(
                                    format!("stay a member of group {thread_group}"),
                                    None,
                                    &e,
                                ));
                            }
                        }
                    }
                }
                // Dropping the consumer closes it: a last revoke, then LeaveGroup.
                drop(consumer);
                let _ = left_tx.send(());
            })
            .map_err(|e| Error::io("spawn the group member thread", name, e))?;
        Ok(Member {
            group: group.to_string(),
            stop,
            thread: Some(thread),
            left,
            timeout,
            on_leave: Some(on_leave),
        })
    }
}

impl GroupMembership for Member {
    fn leave(mut self: Box<Self>) -> Result<()> {
        if let Some(f) = self.on_leave.take() {
            f();
        }
        self.stop.store(true, Ordering::SeqCst);
        match self.left.recv_timeout(self.timeout) {
            Ok(()) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                tracing::info!(group = %self.group, "left the group");
                Ok(())
            }
            // The thread goes on trying to close the consumer; the process need not wait.
            Err(_) => Err(Error::Timeout {
                operation: format!("kafka: leave group {}", self.group),
                after: self.timeout,
            }),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(f) = self.on_leave.take() {
            f();
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}
