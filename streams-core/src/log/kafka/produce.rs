//! Appends: a producer that waits for each record's delivery report, so an append returns the
//! offsets its records got, and maps the broker's refusals to the log's errors.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::client::{code, kafka_error, partition_i32, timed_out};
use super::config::{ClientKind, KafkaLogConfig};
use super::context::{self, ClientStats, Faults};
use super::KafkaLog;
use crate::error::{Error, Result};
use crate::log::{AppendInfo, CleanupPolicy, IsolationLevel, Log, TopicConfig};
use crate::record::{Record, TopicPartition};

/// Where a delivery report goes: the call that sent the record, and the record's index.
pub(super) struct Slot {
    pub(super) reports: mpsc::Sender<(usize, KafkaResult<i64>)>,
    pub(super) index: usize,
}

/// Hands each delivery report to the append call waiting for it.
pub(super) struct DeliveryContext {
    faults: Arc<Faults>,
    stats: Arc<ClientStats>,
}

impl ClientContext for DeliveryContext {
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

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Box<Slot>) {
        let outcome = match result {
            Ok(message) => Ok(message.offset()),
            Err((error, _)) => Err(error.clone()),
        };
        // The caller may have given up (timed out); then nobody listens.
        let _ = slot.reports.send((slot.index, outcome));
    }
}

pub(super) type DeliveryProducer = ThreadedProducer<DeliveryContext>;

impl KafkaLog {
    pub(super) fn new_producer(
        config: &KafkaLogConfig,
        (faults, stats): (&Arc<Faults>, &Arc<ClientStats>),
        extra: &[(&str, &str)],
    ) -> KafkaResult<DeliveryProducer> {
        let timeout = config.timeout.as_millis().to_string();
        let mut defaults: Vec<(&str, &str)> = vec![
            // Appends wait for their delivery reports: batching more would only add latency.
            ("linger.ms", "0"),
            ("acks", "all"),
            ("message.timeout.ms", &timeout),
        ];
        defaults.extend_from_slice(extra);
        config
            .client_config(ClientKind::Producer, &defaults)
            .create_with_context(DeliveryContext {
                faults: faults.clone(),
                stats: stats.clone(),
            })
    }

    /// Why `record` cannot be sent to `tp` as it is, checked before sending.
    fn refusal(tp: &TopicPartition, config: &TopicConfig, record: &Record) -> Option<Error> {
        let invalid = |reason: String| Error::InvalidRecord {
            topic: tp.topic.clone(),
            partition: tp.partition,
            reason,
        };
        if config.cleanup_policy == CleanupPolicy::Compact && record.key.is_none() {
            return Some(invalid("a compacted topic needs keyed records".into()));
        }
        if record.timestamp <= 0 {
            // librdkafka reads a timestamp of 0 as "now": the record would silently get
            // another time.
            return Some(invalid(format!(
                "timestamp {} cannot be sent to Kafka: negative times do not exist there, and \
                 librdkafka replaces 0 with the current time",
                record.timestamp
            )));
        }
        None
    }

    /// Sends `records` to `tp` through `producer` and waits for every delivery report.
    ///
    /// A producer can deliver part of a batch: records it refuses (invalid, too large) do not
    /// stop the others. When some are refused and the rest delivered, the error is
    /// [`Error::RecordsRefused`] naming the refused ones (an append of a single record fails
    /// with that record's own error). Any other failure (a broker down, a timeout) returns at once;
    /// some records may have been delivered then.
    pub(super) fn produce(
        &self,
        producer: &DeliveryProducer,
        tp: &TopicPartition,
        records: &[Record],
    ) -> Result<AppendInfo> {
        let config = self.check_partition(tp)?;
        if records.is_empty() {
            let end = self.end_offset(tp, IsolationLevel::ReadUncommitted)?;
            return Ok(AppendInfo {
                base_offset: end,
                next_offset: end,
            });
        }
        let deadline = Instant::now() + self.config.timeout;
        let operation = || format!("append to {tp}");
        let (tx, rx) = mpsc::channel();
        let mut refused: Vec<(usize, Error)> = Vec::new();
        let mut sent = 0usize;
        for (index, record) in records.iter().enumerate() {
            if let Some(error) = Self::refusal(tp, &config, record) {
                refused.push((index, error));
                continue;
            }
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for h in &record.headers {
                headers = headers.insert(rdkafka::message::Header {
                    key: &h.key,
                    value: h.value.as_deref(),
                });
            }
            let slot = Box::new(Slot {
                reports: tx.clone(),
                index,
            });
            let mut message: BaseRecord<'_, [u8], [u8], Box<Slot>> =
                BaseRecord::with_opaque_to(&tp.topic, slot)
                    .partition(partition_i32(tp.partition))
                    .timestamp(record.timestamp)
                    .headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_slice());
            }
            loop {
                match producer.send(message) {
                    Ok(()) => {
                        sent += 1;
                        break;
                    }
                    Err((e, back))
                        if code(&e) == Some(RDKafkaErrorCode::QueueFull)
                            && Instant::now() < deadline =>
                    {
                        message = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        let error = self.produce_error(tp, &e);
                        if !matches!(error, Error::InvalidRecord { .. }) {
                            return Err(error);
                        }
                        refused.push((index, error));
                        break;
                    }
                }
            }
        }
        drop(tx);
        let (mut first, mut last) = (u64::MAX, 0u64);
        for _ in 0..sent {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((_, Ok(offset))) => {
                    let offset = u64::try_from(offset).unwrap_or(0);
                    first = first.min(offset);
                    last = last.max(offset);
                }
                Ok((index, Err(e))) => {
                    let mut error = self.produce_error(tp, &e);
                    match &mut error {
                        Error::InvalidRecord { .. } => refused.push((index, error)),
                        Error::Kafka { reason, .. } => {
                            reason.push_str(&format!(" (record {index} of {})", records.len()));
                            return Err(error);
                        }
                        _ => return Err(error),
                    }
                }
                Err(_) => return Err(timed_out(operation(), self.config.timeout)),
            }
        }
        if refused.is_empty() {
            return Ok(AppendInfo {
                base_offset: first,
                next_offset: last + 1,
            });
        }
        if refused.len() == 1 && records.len() == 1 {
            let (_, error) = refused.remove(0);
            return Err(error);
        }
        refused.sort_by_key(|(index, _)| *index);
        Err(Error::RecordsRefused {
            topic: tp.topic.clone(),
            partition: tp.partition,
            records: records.len(),
            refused,
        })
    }

    pub(super) fn produce_error(&self, tp: &TopicPartition, e: &KafkaError) -> Error {
        use RDKafkaErrorCode as C;
        match code(e) {
            Some(
                C::MessageSizeTooLarge | C::InvalidRecord | C::InvalidMessage | C::InvalidTimestamp,
            ) => Error::InvalidRecord {
                topic: tp.topic.clone(),
                partition: tp.partition,
                reason: e.to_string(),
            },
            Some(C::UnknownPartition) => {
                self.topics.lock().remove(&tp.topic);
                kafka_error(format!("append to {tp}"), Some(tp), e)
            }
            _ => kafka_error(format!("append to {tp}"), Some(tp), e),
        }
    }
}
