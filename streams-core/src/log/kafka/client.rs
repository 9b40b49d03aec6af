//! What every Kafka client of the log shares: building librdkafka configurations, waiting on
//! admin futures without an async runtime, and turning client errors into [`Error`]s.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

use crate::error::Error;
use crate::record::TopicPartition;

/// Wakes the thread that waits in [`wait`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `future` on this thread until it finishes or `timeout` passes (`None`).
///
/// The admin client completes its futures from its own polling thread, so no executor is
/// needed: the future only has to be polled again when it is woken.
pub(crate) fn wait<F: Future>(future: F, timeout: Duration) -> Option<F::Output> {
    let deadline = Instant::now() + timeout;
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}

/// Runs `f` on a thread of its own and waits for it up to `timeout`: for librdkafka calls
/// that block until the cluster answers, however long that takes. On a timeout the call goes
/// on in the background and its result is dropped.
pub(crate) fn bounded<T: Send + 'static>(
    operation: String,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    // The call's log lines belong to the caller's span.
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("kafka-call".into())
        .spawn(move || {
            let _span = span.entered();
            let _ = tx.send(f());
        })
        .map_err(|e| Error::io("spawn a thread for a Kafka call", &operation, e))?;
    match rx.recv_timeout(timeout) {
        Ok(out) => out,
        Err(_) => Err(timed_out(operation, timeout)),
    }
}

/// Calls `f`, with the time left, again while it fails with one of the `transient` codes (a
/// partition's leadership or a group's coordinator moving, say) and `timeout` has not passed.
pub(crate) fn retry_transient<T>(
    timeout: Duration,
    transient: &[RDKafkaErrorCode],
    mut f: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match f(left) {
            Err(e) if left > RETRY_PAUSE && code(&e).is_some_and(|c| transient.contains(&c)) => {
                std::thread::sleep(RETRY_PAUSE);
            }
            other => return other,
        }
    }
}

/// How long [`retry_transient`] waits before asking again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The error code behind a client error, if it carries one.
pub(crate) fn code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    match error {
        KafkaError::Transaction(e) => Some(e.code()),
        other => other.rdkafka_error_code(),
    }
}

/// Whether librdkafka or the broker class the failure as transient.
fn retriable(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    if let KafkaError::Transaction(e) = error {
        return e.is_retriable();
    }
    matches!(
        code(error),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::OperationTimedOut
                | C::MessageTimedOut
                | C::QueueFull
                | C::Resolve
                | C::RequestTimedOut
                | C::NetworkException
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::RebalanceInProgress
                | C::UnknownTopicOrPartition
                // librdkafka's own "unknown partition": its metadata lacks the partition for
                // a while after the broker restarts or thaws from a freeze.
                | C::UnknownPartition
                | C::TimedOutQueue
                | C::WaitingForCoordinator
                | C::Retry
                // The member lost its place in the group: its partitions may have moved, and
                // the runtime reopens what it is given next.
                | C::UnknownMemberId
                | C::IllegalGeneration
                | C::AssignmentLost
        )
    )
}

/// An [`Error::Kafka`] for a failed operation on `tp` (or on the cluster, without one).
pub(crate) fn kafka_error(
    operation: impl Into<String>,
    tp: Option<&TopicPartition>,
    error: &KafkaError,
) -> Error {
    Error::Kafka {
        operation: operation.into(),
        topic: tp.map(|tp| tp.topic.clone()),
        partition: tp.map(|tp| tp.partition),
        reason: error.to_string(),
        retriable: retriable(error),
    }
}

/// An [`Error::Kafka`] for an operation on a whole topic.
pub(crate) fn topic_error(operation: impl Into<String>, topic: &str, reason: String) -> Error {
    Error::Kafka {
        operation: operation.into(),
        topic: Some(topic.to_string()),
        partition: None,
        reason,
        retriable: false,
    }
}

/// The error for an operation that did not finish within the configured timeout.
pub(crate) fn timed_out(operation: impl Into<String>, after: Duration) -> Error {
    Error::Timeout {
        operation: format!("kafka: {}", operation.into()),
        after,
    }
}

/// librdkafka partitions are `i32`; ours are `u32` below the topic's partition count.
pub(crate) fn partition_i32(partition: u32) -> i32 {
    i32::try_from(partition).unwrap_or(i32::MAX)
}
