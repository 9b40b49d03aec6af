//! The [`Log`] trait over a Kafka cluster, through librdkafka (feature `kafka`).
//!
//! One [`KafkaLog`] holds a few clients, each used the way the trait needs it:
//!
//! - an admin client creates, describes and lists topics and lists groups;
//! - a producer appends: every call sends its records to the one partition asked for and
//!   waits for each delivery report, so an append returns the offsets the records got;
//! - readers (consumers that never subscribe) are assigned the partition and offset a read
//!   asks for; one per isolation level, pooled so that threads do not wait on each other. A
//!   read-committed reader's high watermark is the last stable offset;
//! - a consumer per group, which never joins it, commits and fetches the group's offsets;
//! - transactional producers, one per open transaction (`transactional.id` =
//!   `<prefix>-<slot>`, reused after a commit), for exactly-once.
//!
//! Every call is bounded by [`KafkaLogConfig::timeout`]: a broker that does not answer is an
//! error ([`Error::Timeout`] or a retriable [`Error::Kafka`]), never a hang.
//!
//! Offsets of an append are those of its own records; another writer may append to the same
//! partition between them. An append that fails may have delivered some of its records (as
//! with any Kafka producer without transactions).

mod client;
mod member;

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use self::client::{
    code, kafka_error, partition_i32, retry_transient, timed_out, topic_error, wait,
};
use super::{
    validate_topic_name, AppendInfo, CleanupPolicy, Fetch, GroupMembership, GroupOffsets,
    IsolationLevel, Log, RebalanceListener, TopicConfig, TxnId,
};
use crate::error::{Error, Result};
use crate::record::{Header, Record, StoredRecord, TopicPartition};

/// How to reach the cluster, and any librdkafka property.
///
/// ```
/// use std::time::Duration;
/// use streams_core::KafkaLogConfig;
///
/// let config = KafkaLogConfig::new("127.0.0.1:9092")
///     .with_property("client.id", "word-count")
///     .with_producer_property("linger.ms", "5")
///     .with_timeout(Duration::from_secs(10));
/// assert_eq!(config.properties["client.id"], "word-count");
/// assert_eq!(config.producer_properties["linger.ms"], "5");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaLogConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// librdkafka properties given to every client (admin, producers, consumers), after the
    /// log's own defaults, so they override them. Properties meant for another kind of client
    /// are ignored by librdkafka with a warning.
    pub properties: BTreeMap<String, String>,
    /// Properties for producers only, applied after `properties`.
    pub producer_properties: BTreeMap<String, String>,
    /// Properties for consumers only, applied after `properties`.
    pub consumer_properties: BTreeMap<String, String>,
    /// The longest any one call may take.
    pub timeout: Duration,
    /// Replication factor of topics the log creates; `-1` leaves it to the broker's default.
    pub replication_factor: i32,
    /// Prefix of the `transactional.id`s of transactional producers.
    pub transactional_id_prefix: String,
    /// `group.instance.id` of the group member (static membership): a member that restarts
    /// with the same id within `session_timeout` gets its partitions back without a
    /// rebalance. Set only on the member, never on the log's other clients.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms` of the group member: how long the coordinator waits for a
    /// member that stopped sending heartbeats before it gives its partitions to the others.
    pub session_timeout: Duration,
}

impl KafkaLogConfig {
    /// A configuration with the given bootstrap servers, a 30 s timeout and the broker's
    /// default replication factor.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaLogConfig {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            timeout: Duration::from_secs(30),
            replication_factor: -1,
            transactional_id_prefix: format!("kstreams-{}", std::process::id()),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
        }
    }

    /// Sets `group.instance.id` (static membership).
    pub fn with_group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.group_instance_id = Some(id.into());
        self
    }

    /// Sets the member's `session.timeout.ms`.
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Sets a librdkafka property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Sets the longest any one call may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the replication factor of topics the log creates.
    pub fn with_replication_factor(mut self, factor: i32) -> Self {
        self.replication_factor = factor;
        self
    }

    /// Sets the prefix of `transactional.id`s (stable across restarts, so a restarted
    /// instance fences its predecessor's open transactions).
    pub fn with_transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.transactional_id_prefix = prefix.into();
        self
    }

    /// Sets a librdkafka property for producers only (`batch.num.messages`, `linger.ms`...),
    /// so that consumers do not warn about a property they ignore.
    pub fn with_producer_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.producer_properties.insert(key.into(), value.into());
        self
    }

    /// Sets a librdkafka property for consumers only (the readers, the group member).
    pub fn with_consumer_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.consumer_properties.insert(key.into(), value.into());
        self
    }

    /// A librdkafka configuration for a client of `kind`: the log's defaults, then the
    /// user's properties for every client, then those for that kind.
    fn client_config(&self, kind: ClientKind, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        let ms = self.timeout.as_millis().to_string();
        config.set("socket.timeout.ms", &ms);
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        let own = match kind {
            ClientKind::Admin => None,
            ClientKind::Producer => Some(&self.producer_properties),
            ClientKind::Consumer => Some(&self.consumer_properties),
        };
        for (k, v) in self.properties.iter().chain(own.into_iter().flatten()) {
            config.set(k, v);
        }
        config
    }
}

/// The kinds of librdkafka client the log makes.
#[derive(Clone, Copy)]
enum ClientKind {
    Admin,
    Producer,
    Consumer,
}

/// Where a delivery report goes: the call that sent the record, and the record's index.
struct Slot {
    reports: mpsc::Sender<(usize, KafkaResult<i64>)>,
    index: usize,
}

/// Hands each delivery report to the append call waiting for it.
struct DeliveryContext;

impl ClientContext for DeliveryContext {}

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

type DeliveryProducer = ThreadedProducer<DeliveryContext>;

/// A consumer of a group that never joins it: fetches the group's offsets, and commits them
/// while the group has no members.
type GroupConsumer = BaseConsumer;
type Reader = BaseConsumer;

/// A transactional producer and the `transactional.id` slot it uses.
struct TxnProducer {
    producer: DeliveryProducer,
    slot: usize,
}

#[derive(Default)]
struct Transactions {
    next_id: u64,
    next_slot: usize,
    open: HashMap<u64, Arc<TxnProducer>>,
    /// Producers whose last transaction committed; their `init_transactions` is done.
    idle: Vec<TxnProducer>,
}

/// A reader left assigned to one partition after a read that stopped short of its end,
/// positioned where that read stopped. The next read from that offset goes on from what
/// librdkafka fetched ahead instead of asking for the partition's offsets and assigning
/// again (each a round trip to the broker).
struct Cursor {
    reader: Reader,
    next: u64,
    used: Instant,
    /// When a read from it last returned records.
    fed: Instant,
}

/// A cursor unused for this long is released (its partition's task has likely moved).
const CURSOR_IDLE: Duration = Duration::from_secs(30);

/// A cursor that has returned nothing for this long is released: the next read starts over
/// and checks the offset against the partition's range (a broker that lost the partition's
/// records may answer a fetch past its end with nothing rather than an error).
const CURSOR_DRY: Duration = Duration::from_secs(1);

/// How long a read from a cursor waits for records when none are queued.
const CURSOR_WAIT: Duration = Duration::from_millis(10);

/// The [`Log`] over a Kafka cluster: an admin client for topics and groups, a producer that
/// waits for delivery reports, pooled consumers assigned per read, a consumer per group for
/// offsets, and a transactional producer per open transaction. Every call is bounded by
/// [`KafkaLogConfig::timeout`].
pub struct KafkaLog {
    config: KafkaLogConfig,
    admin: AdminClient<DefaultClientContext>,
    producer: DeliveryProducer,
    /// Idle readers: `[read uncommitted, read committed]`.
    readers: [Mutex<Vec<Reader>>; 2],
    /// Readers left assigned where a read stopped, per partition (same order).
    cursors: [Mutex<HashMap<TopicPartition, Cursor>>; 2],
    groups: Mutex<HashMap<String, Arc<GroupConsumer>>>,
    /// Topic configurations seen (partition counts do not shrink in Kafka).
    topics: Mutex<HashMap<String, TopicConfig>>,
    txns: Mutex<Transactions>,
    /// Groups this process has joined (see [`Log::join_group`]): their commits go through
    /// the member.
    members: Arc<Mutex<HashMap<String, Arc<member::MemberConsumer>>>>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("bootstrap_servers", &self.config.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

/// Group id of readers. They never join or commit, but librdkafka routes fetched messages
/// through the group's queue only when a consumer has one.
const READER_GROUP: &str = "kstreams-log-reader";

impl KafkaLog {
    /// Connects to the cluster and checks that it answers (a metadata request within the
    /// timeout).
    pub fn connect(config: KafkaLogConfig) -> Result<KafkaLog> {
        let client_error = |what: &str, e: KafkaError| Error::Kafka {
            operation: format!("create the {what} for {}", config.bootstrap_servers),
            topic: None,
            partition: None,
            reason: e.to_string(),
            retriable: false,
        };
        let admin: AdminClient<DefaultClientContext> = config
            .client_config(ClientKind::Admin, &[])
            .create()
            .map_err(|e| client_error("admin client", e))?;
        let producer = Self::new_producer(&config, &[]).map_err(|e| client_error("producer", e))?;
        let log = KafkaLog {
            config,
            admin,
            producer,
            readers: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            cursors: [Mutex::new(HashMap::new()), Mutex::new(HashMap::new())],
            groups: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            txns: Mutex::new(Transactions::default()),
            members: Arc::new(Mutex::new(HashMap::new())),
        };
        log.metadata()?;
        Ok(log)
    }

    /// The configuration the log was made with.
    pub fn config(&self) -> &KafkaLogConfig {
        &self.config
    }

    fn new_producer(
        config: &KafkaLogConfig,
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
            .create_with_context(DeliveryContext)
    }

    fn new_reader(&self, isolation: IsolationLevel) -> Result<Reader> {
        let level = match isolation {
            IsolationLevel::ReadUncommitted => "read_uncommitted",
            IsolationLevel::ReadCommitted => "read_committed",
        };
        self.config
            .client_config(
                ClientKind::Consumer,
                &[
                    ("group.id", READER_GROUP),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                    ("enable.partition.eof", "true"),
                    ("auto.offset.reset", "error"),
                    ("isolation.level", level),
                    ("fetch.wait.max.ms", "100"),
                    // A cursor fetches ahead while it waits for the next read: keep that bounded.
                    ("queued.max.messages.kbytes", "8192"),
                ],
            )
            .create()
            .map_err(|e| kafka_error("create a reader", None, &e))
    }

    /// Runs `f` with an idle reader of the isolation level (made when none is idle).
    fn with_reader<R>(
        &self,
        isolation: IsolationLevel,
        f: impl FnOnce(&Reader) -> Result<R>,
    ) -> Result<R> {
        let pool = &self.readers[isolation as usize];
        let reader = match pool.lock().pop() {
            Some(r) => r,
            None => self.new_reader(isolation)?,
        };
        let out = f(&reader);
        pool.lock().push(reader);
        out
    }

    fn group_consumer(&self, group: &str) -> Result<Arc<GroupConsumer>> {
        if let Some(c) = self.groups.lock().get(group) {
            return Ok(c.clone());
        }
        let consumer: GroupConsumer = self
            .config
            .client_config(
                ClientKind::Consumer,
                &[
                    ("group.id", group),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                ],
            )
            .create()
            .map_err(|e| kafka_error(format!("create a consumer for group {group}"), None, &e))?;
        let consumer = Arc::new(consumer);
        Ok(self
            .groups
            .lock()
            .entry(group.to_string())
            .or_insert(consumer)
            .clone())
    }

    fn metadata(&self) -> Result<rdkafka::metadata::Metadata> {
        self.admin
            .inner()
            .fetch_metadata(None, self.config.timeout)
            .map_err(|e| {
                kafka_error(
                    format!("fetch metadata from {}", self.config.bootstrap_servers),
                    None,
                    &e,
                )
            })
    }

    /// Partition count of every topic, by a fresh metadata request.
    fn partition_counts(&self) -> Result<BTreeMap<String, u32>> {
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
    fn wait_until_served(&self, name: &str) -> Result<u32> {
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
    fn topic(&self, topic: &str) -> Result<TopicConfig> {
        if let Some(c) = self.topics.lock().get(topic) {
            return Ok(c.clone());
        }
        self.describe_topic(topic)
    }

    /// Checks that the partition exists (refreshing a cached count that says it does not).
    fn check_partition(&self, tp: &TopicPartition) -> Result<TopicConfig> {
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

    /// (start, end) of a partition at an isolation level.
    fn watermarks(&self, tp: &TopicPartition, isolation: IsolationLevel) -> Result<(u64, u64)> {
        self.check_partition(tp)?;
        self.with_reader(isolation, |reader| self.watermarks_with(reader, tp))
    }

    /// (start, end) of a partition (which the callers have checked exists). A partition whose
    /// leadership is moving, that was just created (the broker lists the leader in its
    /// metadata a moment before it serves the partition), or whose broker is restarting (its
    /// metadata may lack the partition for a moment) is asked about again until the timeout.
    fn watermarks_with(&self, reader: &Reader, tp: &TopicPartition) -> Result<(u64, u64)> {
        let mut asked = false;
        let (low, high) = retry_transient(
            self.config.timeout,
            &[
                RDKafkaErrorCode::NotLeaderForPartition,
                RDKafkaErrorCode::LeaderNotAvailable,
                RDKafkaErrorCode::UnknownPartition,
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ],
            |left| {
                if asked {
                    // librdkafka finds the leader in its metadata cache, which may still hold
                    // what the broker said a moment ago (no such partition while it restarted,
                    // say): refresh it first.
                    let _ = reader.fetch_metadata(Some(&tp.topic), left);
                }
                asked = true;
                reader.fetch_watermarks(&tp.topic, partition_i32(tp.partition), left)
            },
        )
        .map_err(|e| kafka_error(format!("read the offsets of {tp}"), Some(tp), &e))?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }

    /// Sends `records` to `tp` through `producer` and waits for every delivery report.
    fn produce(
        &self,
        producer: &DeliveryProducer,
        tp: &TopicPartition,
        records: &[Record],
    ) -> Result<AppendInfo> {
        let config = self.check_partition(tp)?;
        for record in records {
            if config.cleanup_policy == CleanupPolicy::Compact && record.key.is_none() {
                return Err(Error::InvalidRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    reason: "a compacted topic needs keyed records".into(),
                });
            }
            if record.timestamp <= 0 {
                // librdkafka reads a timestamp of 0 as "now": the record would silently get
                // another time.
                return Err(Error::InvalidRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    reason: format!(
                        "timestamp {} cannot be sent to Kafka: negative times do not exist \
                         there, and librdkafka replaces 0 with the current time",
                        record.timestamp
                    ),
                });
            }
        }
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
        for (index, record) in records.iter().enumerate() {
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
                    Ok(()) => break,
                    Err((e, back))
                        if code(&e) == Some(RDKafkaErrorCode::QueueFull)
                            && Instant::now() < deadline =>
                    {
                        message = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(self.produce_error(tp, &e)),
                }
            }
        }
        drop(tx);
        let (mut first, mut last) = (u64::MAX, 0u64);
        for _ in 0..records.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((_, Ok(offset))) => {
                    let offset = offset.max(0) as u64;
                    first = first.min(offset);
                    last = last.max(offset);
                }
                Ok((index, Err(e))) => {
                    let mut error = self.produce_error(tp, &e);
                    if let Error::Kafka { reason, .. } = &mut error {
                        reason.push_str(&format!(" (record {index} of {})", records.len()));
                    }
                    return Err(error);
                }
                Err(_) => return Err(timed_out(operation(), self.config.timeout)),
            }
        }
        Ok(AppendInfo {
            base_offset: first,
            next_offset: last + 1,
        })
    }

    fn produce_error(&self, tp: &TopicPartition, e: &KafkaError) -> Error {
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

    /// A read that starts with an assignment: checks the offset against the partition's
    /// range, assigns the reader there and reads. Also says whether the reader is left
    /// assigned short of the partition's end, so that the next read can go on from it (see
    /// [`Cursor`]).
    fn first_read(
        &self,
        reader: &Reader,
        tp: &TopicPartition,
        offset: u64,
        max_records: usize,
    ) -> Result<(Fetch, bool)> {
        let (start, end) = self.watermarks_with(reader, tp)?;
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
                start,
                end,
            });
        }
        let empty = Fetch {
            records: Vec::new(),
            next_offset: offset,
        };
        if offset == end || max_records == 0 {
            return Ok((empty, false));
        }
        let partition = partition_i32(tp.partition);
        let assign_error = |e: KafkaError| kafka_error(format!("read {tp}@{offset}"), Some(tp), &e);
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&tp.topic, partition, Offset::Offset(offset as i64))
            .map_err(assign_error)?;
        reader.assign(&list).map_err(assign_error)?;
        let deadline = Instant::now() + self.config.timeout;
        let mut records = Vec::with_capacity(max_records.min(4096));
        let mut next = offset;
        let mut at_end = false;
        let outcome = loop {
            if records.len() >= max_records || next >= end {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break if records.is_empty() {
                    Err(timed_out(
                        format!("read {tp}@{offset}"),
                        self.config.timeout,
                    ))
                } else {
                    Ok(())
                };
            }
            match polled(reader.poll(left.min(Duration::from_millis(100))), tp, next) {
                Polled::Record(record) => {
                    next = record.offset + 1;
                    records.push(record);
                }
                Polled::Nothing | Polled::Skipped | Polled::Transport => {}
                Polled::End => {
                    at_end = true;
                    break Ok(());
                }
                Polled::Failed(e) => break Err(read_error(tp, next, &e, || Ok((start, end)))),
            }
        };
        if outcome.is_err() {
            let _ = reader.unassign();
        }
        outcome?;
        if at_end {
            // The fetcher reached the end as it was then, at least `end`: whatever lies
            // between the last record returned and there (control records, aborted
            // transactions) was skipped.
            next = next.max(end);
        }
        Ok((
            Fetch {
                records,
                next_offset: next,
            },
            !at_end,
        ))
    }

    /// Goes on reading from where the cursor's last read stopped: what librdkafka fetched
    /// ahead is already queued, so no offsets are asked for and nothing is assigned. Returns
    /// what is queued (waiting briefly when nothing is). The cursor is kept for the next read
    /// unless the partition's end was reached: a read at the end starts over, so that it
    /// checks the end offset (past control records) again.
    fn continue_read(
        &self,
        mut cursor: Cursor,
        tp: &TopicPartition,
        max_records: usize,
        isolation: IsolationLevel,
    ) -> Result<Fetch> {
        let mut records = Vec::with_capacity(max_records.min(4096));
        let mut next = cursor.next;
        let outcome = loop {
            if records.len() >= max_records {
                break Ok(true);
            }
            let wait = if records.is_empty() {
                CURSOR_WAIT
            } else {
                Duration::ZERO
            };
            match polled(cursor.reader.poll(wait), tp, next) {
                Polled::Record(record) => {
                    next = record.offset + 1;
                    records.push(record);
                }
                Polled::Skipped => {}
                Polled::Nothing | Polled::Transport => break Ok(true),
                Polled::End => break Ok(false),
                Polled::Failed(e) => {
                    let range = || self.watermarks_with(&cursor.reader, tp);
                    break Err(read_error(tp, next, &e, range));
                }
            }
        };
        match outcome {
            Ok(keep) => {
                if !records.is_empty() {
                    cursor.fed = Instant::now();
                }
                if keep && cursor.fed.elapsed() < CURSOR_DRY {
                    cursor.next = next;
                    cursor.used = Instant::now();
                    self.cursors[isolation as usize]
                        .lock()
                        .insert(tp.clone(), cursor);
                } else {
                    self.release(cursor.reader, isolation);
                }
                Ok(Fetch {
                    records,
                    next_offset: next,
                })
            }
            Err(e) => {
                self.release(cursor.reader, isolation);
                Err(e)
            }
        }
    }

    /// Stops a reader's fetching and returns it to the pool.
    fn release(&self, reader: Reader, isolation: IsolationLevel) {
        let _ = reader.unassign();
        self.readers[isolation as usize].lock().push(reader);
    }

    /// Opens a transactional producer (or takes an idle one) and begins a transaction on it.
    fn txn_producer(&self) -> Result<TxnProducer> {
        let idle = self.txns.lock().idle.pop();
        let txn = match idle {
            Some(p) => p,
            None => {
                let slot = {
                    let mut txns = self.txns.lock();
                    txns.next_slot += 1;
                    txns.next_slot - 1
                };
                let id = format!("{}-{slot}", self.config.transactional_id_prefix);
                let producer = Self::new_producer(&self.config, &[("transactional.id", &id)])
                    .map_err(|e| txn_error("create the transactional producer", &id, &e))?;
                producer
                    .init_transactions(self.config.timeout)
                    .map_err(|e| txn_error("initialise transactions", &id, &e))?;
                TxnProducer { producer, slot }
            }
        };
        txn.producer
            .begin_transaction()
            .map_err(|e| txn_error("begin a transaction", &self.txn_name(&txn), &e))?;
        Ok(txn)
    }

    fn txn_name(&self, txn: &TxnProducer) -> String {
        format!("{}-{}", self.config.transactional_id_prefix, txn.slot)
    }

    fn open_txn(&self, txn: TxnId) -> Result<Arc<TxnProducer>> {
        self.txns
            .lock()
            .open
            .get(&txn.0)
            .cloned()
            .ok_or_else(|| Error::Transaction {
                txn_id: txn.0,
                reason: "not open (committed, aborted or never begun)".into(),
            })
    }

    /// Removes an open transaction; its producer comes back once no append uses it.
    fn close_txn(&self, txn: TxnId) -> Result<TxnProducer> {
        let producer = self
            .txns
            .lock()
            .open
            .remove(&txn.0)
            .ok_or_else(|| Error::Transaction {
                txn_id: txn.0,
                reason: "not open (committed, aborted or never begun)".into(),
            })?;
        Arc::try_unwrap(producer).map_err(|_| Error::Transaction {
            txn_id: txn.0,
            reason: "ended while an append to it was still running".into(),
        })
    }
}

/// An error of the transactional path, saying what the broker must support.
fn txn_error(operation: &str, transactional_id: &str, e: &KafkaError) -> Error {
    Error::Kafka {
        operation: format!("{operation} (transactional.id {transactional_id})"),
        topic: None,
        partition: None,
        reason: format!(
            "{e}. Exactly-once needs a broker that implements Kafka transactions \
             (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn)"
        ),
        retriable: false,
    }
}

/// What one poll of a reader gave, for a read of `tp` that expects offset `next`.
enum Polled {
    /// The next record.
    Record(StoredRecord),
    /// Nothing yet.
    Nothing,
    /// A record left over from an earlier assignment.
    Skipped,
    /// The partition's end as the fetcher saw it.
    End,
    /// Connections are down (librdkafka reconnects by itself); possibly queued on a pooled
    /// reader since an earlier outage.
    Transport,
    /// Any other error.
    Failed(KafkaError),
}

fn polled(
    item: Option<KafkaResult<BorrowedMessage<'_>>>,
    tp: &TopicPartition,
    next: u64,
) -> Polled {
    let partition = partition_i32(tp.partition);
    match item {
        None => Polled::Nothing,
        Some(Ok(message)) => {
            if message.topic() != tp.topic
                || message.partition() != partition
                || (message.offset() as u64) < next
            {
                Polled::Skipped
            } else {
                Polled::Record(stored(&message))
            }
        }
        Some(Err(KafkaError::PartitionEOF(p))) if p == partition => Polled::End,
        Some(Err(e))
            if matches!(
                code(&e),
                Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
            ) =>
        {
            Polled::Transport
        }
        Some(Err(e)) => Polled::Failed(e),
    }
}

/// The error of a read of `tp` that failed at `next`; `range` gives the partition's
/// (start, end) when the offset turned out to be out of range.
fn read_error(
    tp: &TopicPartition,
    next: u64,
    error: &KafkaError,
    range: impl FnOnce() -> Result<(u64, u64)>,
) -> Error {
    match code(error) {
        Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset) => {
            match range() {
                Ok((start, end)) => Error::OffsetOutOfRange {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: next,
                    start,
                    end,
                },
                Err(e) => e,
            }
        }
        _ => kafka_error(format!("read {tp}@{next}"), Some(tp), error),
    }
}

/// A record as the log returns it.
fn stored(message: &BorrowedMessage<'_>) -> StoredRecord {
    let timestamp = match message.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
        Timestamp::NotAvailable => -1,
    };
    let headers = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default();
    StoredRecord {
        offset: message.offset().max(0) as u64,
        record: Record {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            timestamp,
            headers,
        },
    }
}

/// Kafka topic configs for a [`TopicConfig`].
fn topic_configs(config: &TopicConfig) -> Vec<(&'static str, String)> {
    let policy = match config.cleanup_policy {
        CleanupPolicy::Delete => "delete",
        CleanupPolicy::Compact => "compact",
    };
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

impl Log for KafkaLog {
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        validate_topic_name(name)?;
        config.validate(name)?;
        let partitions = i32::try_from(config.partitions).map_err(|_| Error::Config {
            key: format!("{name}.partitions"),
            reason: format!("{} is more than Kafka allows", config.partitions),
        })?;
        let values = topic_configs(&config);
        let mut topic = NewTopic::new(
            name,
            partitions,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        for (k, v) in &values {
            topic = topic.set(k, v);
        }
        let options = AdminOptions::new()
            .request_timeout(Some(self.config.timeout))
            .operation_timeout(Some(self.config.timeout));
        let operation = format!("create topic {name}");
        let results = wait(
            self.admin.create_topics([&topic], &options),
            self.config.timeout,
        )
        .ok_or_else(|| timed_out(&operation, self.config.timeout))?
        .map_err(|e| kafka_error(&operation, None, &e))?;
        let mut created = true;
        for result in results {
            match result {
                Ok(_) => {}
                // Another process created it, perhaps a moment ago.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => created = false,
                Err((_, code)) => {
                    return Err(topic_error(
                        &operation,
                        name,
                        format!("the broker said {code}"),
                    ))
                }
            }
        }
        let partitions = self.wait_until_served(name)?;
        if !created {
            let existing = self.describe_topic(name)?;
            if existing.partitions != config.partitions {
                return Err(Error::TopicExists {
                    topic: name.to_string(),
                    existing: existing.partitions,
                    requested: config.partitions,
                });
            }
            return Ok(());
        }
        if partitions != config.partitions {
            return Err(topic_error(
                &operation,
                name,
                format!(
                    "created with {} partitions, the broker lists {partitions}",
                    config.partitions
                ),
            ));
        }
        self.topics.lock().insert(name.to_string(), config);
        Ok(())
    }

    fn describe_topic(&self, name: &str) -> Result<TopicConfig> {
        let counts = self.partition_counts()?;
        let Some(&partitions) = counts.get(name) else {
            return Err(Error::UnknownTopic {
                topic: name.to_string(),
            });
        };
        let options = AdminOptions::new().request_timeout(Some(self.config.timeout));
        let operation = format!("describe topic {name}");
        let resources = wait(
            self.admin
                .describe_configs([&ResourceSpecifier::Topic(name)], &options),
            self.config.timeout,
        )
        .ok_or_else(|| timed_out(&operation, self.config.timeout))?
        .map_err(|e| kafka_error(&operation, None, &e))?;
        let mut config = TopicConfig::new(partitions);
        for resource in resources {
            let resource = resource
                .map_err(|code| topic_error(&operation, name, format!("the broker said {code}")))?;
            let get = |key: &str| resource.get(key).and_then(|e| e.value.clone());
            let number = |key: &str| get(key).and_then(|v| v.trim().parse::<i64>().ok());
            if let Some(policy) = get("cleanup.policy") {
                config.cleanup_policy = if policy.split(',').any(|p| p.trim() == "compact") {
                    CleanupPolicy::Compact
                } else {
                    CleanupPolicy::Delete
                };
            }
            if let Some(ms) = number("retention.ms") {
                config.retention_ms = (ms >= 0).then_some(ms);
            }
            if let Some(bytes) = number("retention.bytes") {
                config.retention_bytes = u64::try_from(bytes).ok();
            }
            if let Some(ms) = number("delete.retention.ms") {
                config.delete_retention_ms = ms;
            }
            if let Some(bytes) = number("segment.bytes").and_then(|b| u64::try_from(b).ok()) {
                config.segment_bytes = bytes;
            }
        }
        self.topics.lock().insert(name.to_string(), config.clone());
        Ok(config)
    }

    fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.partition_counts()?.into_keys().collect())
    }

    fn append(&self, tp: &TopicPartition, records: &[Record]) -> Result<AppendInfo> {
        self.produce(&self.producer, tp, records)
    }

    fn read(
        &self,
        tp: &TopicPartition,
        offset: u64,
        max_records: usize,
        isolation: IsolationLevel,
    ) -> Result<Fetch> {
        self.check_partition(tp)?;
        let cursors = &self.cursors[isolation as usize];
        let cursor = {
            let mut cursors = cursors.lock();
            // A partition nobody read for a while (its task moved): stop fetching it.
            let stale: Vec<TopicPartition> = cursors
                .iter()
                .filter(|(_, c)| c.used.elapsed() > CURSOR_IDLE)
                .map(|(tp, _)| tp.clone())
                .collect();
            for stale in stale {
                if let Some(c) = cursors.remove(&stale) {
                    self.release(c.reader, isolation);
                }
            }
            cursors.remove(tp)
        };
        if let Some(cursor) = cursor {
            if cursor.next == offset {
                return self.continue_read(cursor, tp, max_records, isolation);
            }
            self.release(cursor.reader, isolation);
        }
        let reader = match self.readers[isolation as usize].lock().pop() {
            Some(r) => r,
            None => self.new_reader(isolation)?,
        };
        match self.first_read(&reader, tp, offset, max_records) {
            Ok((fetch, true)) => {
                let cursor = Cursor {
                    reader,
                    next: fetch.next_offset,
                    used: Instant::now(),
                    fed: Instant::now(),
                };
                cursors.lock().insert(tp.clone(), cursor);
                Ok(fetch)
            }
            other => {
                self.release(reader, isolation);
                other.map(|(fetch, _)| fetch)
            }
        }
    }

    fn start_offset(&self, tp: &TopicPartition) -> Result<u64> {
        Ok(self.watermarks(tp, IsolationLevel::ReadUncommitted)?.0)
    }

    fn end_offset(&self, tp: &TopicPartition, isolation: IsolationLevel) -> Result<u64> {
        Ok(self.watermarks(tp, isolation)?.1)
    }

    fn offset_for_timestamp(&self, tp: &TopicPartition, timestamp: i64) -> Result<Option<u64>> {
        self.check_partition(tp)?;
        let operation = || format!("look up the offset of time {timestamp} in {tp}");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(
            &tp.topic,
            partition_i32(tp.partition),
            Offset::Offset(timestamp.max(0)),
        )
        .map_err(|e| kafka_error(operation(), Some(tp), &e))?;
        let found = self.with_reader(IsolationLevel::ReadUncommitted, |reader| {
            reader
                .offsets_for_times(list, self.config.timeout)
                .map_err(|e| kafka_error(operation(), Some(tp), &e))
        })?;
        let offset = found
            .elements()
            .first()
            .map(|e| e.offset())
            .unwrap_or(Offset::End);
        Ok(match offset {
            Offset::Offset(o) if o >= 0 => Some(o as u64),
            _ => None,
        })
    }

    fn commit_offsets(&self, group: &str, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let timeout = self.config.timeout;
        let member = self.members.lock().get(group).cloned();
        match member {
            Some(member) => member::commit(member, group, offsets, timeout),
            // Outside the group (a tool resetting offsets): accepted while it has no members.
            None => member::commit(self.group_consumer(group)?, group, offsets, timeout),
        }
    }

    fn committed_offsets(&self, group: &str) -> Result<GroupOffsets> {
        let mut partitions = Vec::new();
        for (topic, n) in self.partition_counts()? {
            if topic.starts_with("__") {
                continue; // the broker's own topics
            }
            partitions.extend((0..n).map(|p| TopicPartition::new(topic.clone(), p)));
        }
        self.committed_offsets_of(group, &partitions)
    }

    /// One OffsetFetch for just these partitions (the default asks for every partition of
    /// every topic on the cluster).
    fn committed_offsets_of(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<GroupOffsets> {
        let operation = || format!("fetch the committed offsets of group {group}");
        let mut list = TopicPartitionList::with_capacity(partitions.len());
        for tp in partitions {
            list.add_partition(&tp.topic, partition_i32(tp.partition));
        }
        if list.count() == 0 {
            return Ok(Vec::new());
        }
        let consumer = self.group_consumer(group)?;
        // The group's coordinator moves (or loads the offsets) while a broker restarts.
        let found = retry_transient(
            self.config.timeout,
            &[
                RDKafkaErrorCode::NotCoordinator,
                RDKafkaErrorCode::CoordinatorNotAvailable,
                RDKafkaErrorCode::CoordinatorLoadInProgress,
            ],
            |left| consumer.committed_offsets(list.clone(), left),
        )
        .map_err(|e| kafka_error(operation(), None, &e))?;
        let mut out: GroupOffsets = found
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some((
                    TopicPartition::new(e.topic(), e.partition().max(0) as u32),
                    o as u64,
                )),
                _ => None,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn list_groups(&self) -> Result<Vec<String>> {
        let groups = self
            .admin
            .inner()
            .fetch_group_list(None, self.config.timeout)
            .map_err(|e| kafka_error("list groups", None, &e))?;
        let mut names: Vec<String> = groups
            .groups()
            .iter()
            .map(|g| g.name().to_string())
            .filter(|g| g != READER_GROUP)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn begin_transaction(&self) -> Result<TxnId> {
        let producer = self.txn_producer()?;
        let mut txns = self.txns.lock();
        let id = txns.next_id;
        txns.next_id += 1;
        txns.open.insert(id, Arc::new(producer));
        Ok(TxnId(id))
    }

    fn append_transactional(
        &self,
        txn: TxnId,
        tp: &TopicPartition,
        records: &[Record],
    ) -> Result<AppendInfo> {
        let producer = self.open_txn(txn)?;
        self.produce(&producer.producer, tp, records)
    }

    fn commit_transaction(
        &self,
        txn: TxnId,
        offsets: Option<(&str, &[(TopicPartition, u64)])>,
    ) -> Result<()> {
        let producer = self.close_txn(txn)?;
        let name = self.txn_name(&producer);
        let timeout = self.config.timeout;
        let committed = (|| {
            if let Some((group, offsets)) = offsets.filter(|(_, o)| !o.is_empty()) {
                let list = offset_list(offsets)
                    .map_err(|e| txn_error("send offsets to the transaction", &name, &e))?;
                // The member's id and generation fence a zombie's offsets.
                let member = self.members.lock().get(group).cloned();
                let metadata = match member {
                    Some(member) => member.group_metadata(),
                    None => self.group_consumer(group)?.group_metadata(),
                };
                let metadata = metadata.ok_or_else(|| Error::Kafka {
                    operation: format!("commit transaction {}", txn.0),
                    topic: None,
                    partition: None,
                    reason: format!("no group metadata for group {group}"),
                    retriable: false,
                })?;
                producer
                    .producer
                    .send_offsets_to_transaction(&list, &metadata, timeout)
                    .map_err(|e| txn_error("send offsets to the transaction", &name, &e))?;
            }
            producer
                .producer
                .commit_transaction(timeout)
                .map_err(|e| txn_error("commit the transaction", &name, &e))
        })();
        match committed {
            Ok(()) => {
                self.txns.lock().idle.push(producer);
                Ok(())
            }
            Err(e) => {
                // The producer's state is unknown now: a new one (same transactional.id) will
                // fence it and abort whatever it left open.
                if let Err(abort) = producer.producer.abort_transaction(timeout) {
                    tracing::warn!(transactional_id = %name, error = %abort, "aborting after a failed commit failed too");
                }
                Err(e)
            }
        }
    }

    fn abort_transaction(&self, txn: TxnId) -> Result<()> {
        let producer = self.close_txn(txn)?;
        let name = self.txn_name(&producer);
        producer
            .producer
            .abort_transaction(self.config.timeout)
            .map_err(|e| txn_error("abort the transaction", &name, &e))?;
        self.txns.lock().idle.push(producer);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        // Appends return once acknowledged (`acks=all`): durability is the cluster's.
        self.producer
            .flush(self.config.timeout)
            .map_err(|e| kafka_error("flush the producer", None, &e))
    }

    fn join_group(
        &self,
        group: &str,
        topics: &[String],
        listener: Arc<dyn RebalanceListener>,
    ) -> Result<Option<Box<dyn GroupMembership>>> {
        if self.members.lock().contains_key(group) {
            return Err(Error::InvalidState {
                operation: format!("join group {group}"),
                state: "this log already has a member in the group".into(),
            });
        }
        let session = self.config.session_timeout.as_millis().to_string();
        let mut defaults: Vec<(&str, &str)> = vec![
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            // Partition p of every anchor topic goes to the same member, whatever the
            // topics' names (see the runtime's notes on assignment).
            ("partition.assignment.strategy", "range"),
            ("session.timeout.ms", &session),
        ];
        let instance;
        if let Some(id) = &self.config.group_instance_id {
            instance = id.clone();
            defaults.push(("group.instance.id", &instance));
        }
        let consumer = member::create(
            self.config.client_config(ClientKind::Consumer, &defaults),
            group,
            topics,
            listener.clone(),
        )?;
        self.members
            .lock()
            .insert(group.to_string(), consumer.clone());
        let members = self.members.clone();
        let name = group.to_string();
        let on_leave = Box::new(move || {
            members.lock().remove(&name);
        });
        let started =
            member::Member::start(group, consumer, listener, self.config.timeout, on_leave);
        match started {
            Ok(m) => Ok(Some(Box::new(m))),
            Err(e) => {
                self.members.lock().remove(group);
                Err(e)
            }
        }
    }
}

/// A librdkafka offset list.
fn offset_list(offsets: &[(TopicPartition, u64)]) -> KafkaResult<TopicPartitionList> {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for (tp, offset) in offsets {
        list.add_partition_offset(
            &tp.topic,
            partition_i32(tp.partition),
            Offset::Offset(i64::try_from(*offset).unwrap_or(i64::MAX)),
        )?;
    }
    Ok(list)
}
