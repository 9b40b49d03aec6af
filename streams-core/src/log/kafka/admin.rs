//! Topics: metadata, partition counts, waiting until a new topic is served, and the Kafka
//! topic configs of a [`TopicConfig`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;

use super::client::{kafka_error, retry_transient, timed_out};
use super::context::Fault;
use super::KafkaLog;
use crate::error::{Error, Result};
use crate::log::{Log, TopicConfig};
use crate::record::TopicPartition;

/// Kafka topic configs for a [`TopicConfig`].
pub(super) fn topic_configs(config: &TopicConfig) -> Vec<(&'static str, String)> {
    let policy = config.cleanup_policy.as_str();
    vec![
        ("cleanup.policy", policy.to_string()),
        (
            "retention.ms",
            config.retention_ms.unwrap_or(-1).to_string(),
        ),
        (
            "retention.bytes",
            config
                .retention_bytes
                .map_or_else(|| "-1".to_string(), |b| b.to_string()),
        ),
        (
            "delete.retention.ms",
            config.delete_retention_ms.to_string(),
        ),
        ("segment.bytes", config.segment_bytes.to_string()),
    ]
}

/// How long one metadata request of [`KafkaLog::wait_for_cluster`] waits before the log
/// looks at what its clients reported.
const CONNECT_SLICE: Duration = Duration::from_millis(250);

impl KafkaLog {
    /// The cluster's metadata. A connection the broker dropped (as for a while after it was
    /// frozen) is asked again, within the log's timeout, while librdkafka reconnects.
    pub(super) fn metadata(&self) -> Result<rdkafka::metadata::Metadata> {
        retry_transient(
            self.config.timeout,
            &[
                RDKafkaErrorCode::BrokerTransportFailure,
                RDKafkaErrorCode::AllBrokersDown,
            ],
            |left| self.admin.inner().fetch_metadata(None, left),
        )
        .inspect(|_| self.faults.clear())
        .map_err(|e| match self.faults.recent(self.config.timeout) {
            // No broker answered because none would let us in: say why.
            Some(fault) => self.fault_error(&fault),
            None => kafka_error(
                format!("fetch metadata from {}", self.config.bootstrap_servers),
                None,
                &e,
            ),
        })
    }

    /// Waits, within the log's timeout, until the cluster answers a metadata request. Fails
    /// as soon as a client reports that authentication or the TLS handshake failed: every
    /// connection would, and the request would only time out.
    pub(super) fn wait_for_cluster(&self) -> Result<()> {
        let deadline = Instant::now() + self.config.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = self
                .admin
                .inner()
                .fetch_metadata(None, left.min(CONNECT_SLICE));
            let error = match result {
                Ok(_) => {
                    self.faults.clear();
                    return Ok(());
                }
                Err(e) => e,
            };
            if let Some(fault) = self.faults.recent(self.config.timeout) {
                return Err(self.fault_error(&fault));
            }
            let transient = matches!(
                error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::BrokerTransportFailure
                        | RDKafkaErrorCode::AllBrokersDown
                        | RDKafkaErrorCode::OperationTimedOut
                        | RDKafkaErrorCode::RequestTimedOut
                )
            );
            if !transient || Instant::now() >= deadline {
                return Err(kafka_error(
                    format!("connect to {}", self.config.bootstrap_servers),
                    None,
                    &error,
                ));
            }
        }
    }

    /// The error for a call that failed because the cluster refused the log's credentials or
    /// its TLS handshake: not retriable, the configuration has to change.
    fn fault_error(&self, fault: &Fault) -> Error {
        Error::Kafka {
            operation: format!("connect to {}", self.config.bootstrap_servers),
            topic: None,
            partition: None,
            reason: fault.to_string(),
            retriable: false,
        }
    }

    /// Partition count of every topic, by a fresh metadata request.
    pub(super) fn partition_counts(&self) -> Result<BTreeMap<String, u32>> {
        let metadata = self.metadata()?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as u32))
            .collect())
    }

    /// Waits until the topic is in the metadata with a leader for every partition, and
    /// returns its partition count. Metadata reaches every broker a little after a creation
    /// is acknowledged, and a partition serves reads and writes only once it has a leader.
    pub(super) fn wait_until_served(&self, name: &str) -> Result<u32> {
        let deadline = Instant::now() + self.config.timeout;
        loop {
            let metadata = self.metadata()?;
            let served = metadata.topics().iter().find(|t| {
                t.name() == name
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions()
                        .iter()
                        .all(|p| p.error().is_none() && p.leader() >= 0)
            });
            if let Some(topic) = served {
                return Ok(topic.partitions().len() as u32);
            }
            if Instant::now() >= deadline {
                return Err(timed_out(
                    format!("waiting for every partition of topic {name} to have a leader"),
                    self.config.timeout,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The topic's configuration, cached after the first look.
    pub(super) fn topic(&self, topic: &str) -> Result<TopicConfig> {
        if let Some(c) = self.topics.lock().get(topic) {
            return Ok(c.clone());
        }
        self.describe_topic(topic)
    }

    /// Checks that the partition exists (refreshing a cached count that says it does not).
    pub(super) fn check_partition(&self, tp: &TopicPartition) -> Result<TopicConfig> {
        let mut config = self.topic(&tp.topic)?;
        if tp.partition >= config.partitions {
            self.topics.lock().remove(&tp.topic);
            config = self.topic(&tp.topic)?;
        }
        if tp.partition >= config.partitions {
            return Err(Error::PartitionOutOfRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                partitions: config.partitions,
            });
        }
        Ok(config)
    }
}
