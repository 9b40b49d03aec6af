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
//! - a consumer per group, which never joins it, commits and fetches the group's offsets
//!   and describes the group;
//! - transactional producers, one per open transaction (`transactional.id` =
//!   `<prefix>-<slot>`, reused after a commit), for exactly-once.
//!
//! Every call is bounded by [`KafkaLogConfig::timeout`]: a broker that does not answer is an
//! error ([`Error::Timeout`] or a retriable [`Error::Kafka`]), never a hang.
//!
//! The parts live beside this file: `config` (how to reach the cluster), `admin` (topics),
//! `produce` (appends and delivery reports), `read` (readers, cursors, watermarks),
//! `groups` (group offsets), `transactions`, `member` (consumer-group membership),
//! `describe` (a group's members and assignments) and `client` (bounded calls and the
//! mapping of librdkafka's errors).
//!
//! Offsets of an append are those of its own records; another writer may append to the same
//! partition between them. An append that fails may have delivered some of its records (as
//! with any Kafka producer without transactions).

mod admin;
mod client;
mod config;
mod context;
mod describe;
mod groups;
mod member;
mod produce;
mod read;
mod transactions;

use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use self::client::{kafka_error, partition_i32, timed_out, topic_error, wait};
use super::{
    validate_topic_name, AppendInfo, CleanupPolicy, Fetch, GroupDescription, GroupMembership,
    GroupOffsets, IsolationLevel, Log, OffsetCommit, RebalanceListener, TopicConfig, TxnId,
};
use crate::error::{Error, Result};
use crate::record::{Record, TopicPartition};

use self::admin::*;
use self::config::ClientKind;
pub use self::config::KafkaLogConfig;
use self::context::{ClientStats, Faults, LogContext};
use self::groups::*;
use self::produce::*;
use self::read::*;
use self::transactions::*;

/// The [`Log`] over a Kafka cluster: an admin client for topics and groups, a producer that
/// waits for delivery reports, pooled consumers assigned per read, a consumer per group for
/// offsets, and a transactional producer per open transaction. Every call is bounded by
/// [`KafkaLogConfig::timeout`].
pub struct KafkaLog {
    config: KafkaLogConfig,
    /// Authentication and TLS failures the clients reported (see `context`).
    faults: Arc<Faults>,
    /// The clients' latest statistics (see `context`), for [`Log::client_figures`].
    stats: Arc<ClientStats>,
    admin: AdminClient<LogContext>,
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
        // The configuration's `Debug` leaves its secrets out.
        f.debug_struct("KafkaLog")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

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
        let faults = Arc::new(Faults::default());
        let stats = Arc::new(ClientStats::default());
        let admin: AdminClient<LogContext> = config
            .client_config(ClientKind::Admin, &[])
            .create_with_context(LogContext {
                faults: faults.clone(),
                stats: stats.clone(),
            })
            .map_err(|e| client_error("admin client", e))?;
        let producer = Self::new_producer(&config, (&faults, &stats), &[])
            .map_err(|e| client_error("producer", e))?;
        let log = KafkaLog {
            config,
            faults,
            stats,
            admin,
            producer,
            readers: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            cursors: [Mutex::new(HashMap::new()), Mutex::new(HashMap::new())],
            groups: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            txns: Mutex::new(Transactions::default()),
            members: Arc::new(Mutex::new(HashMap::new())),
        };
        log.wait_for_cluster()?;
        Ok(log)
    }

    /// The context of a new reader or group consumer: it reports into the log's faults.
    fn context(&self) -> LogContext {
        LogContext {
            faults: self.faults.clone(),
            stats: self.stats.clone(),
        }
    }

    /// The configuration the log was made with.
    pub fn config(&self) -> &KafkaLogConfig {
        &self.config
    }
}

impl Log for KafkaLog {
    fn client_figures(&self) -> Vec<crate::log::ClientFigures> {
        // A client that missed three reports in a row is gone.
        self.stats
            .figures(self.config.statistics_interval().saturating_mul(3))
    }

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

    fn delete_topic(&self, name: &str) -> Result<()> {
        validate_topic_name(name)?;
        let options = AdminOptions::new()
            .request_timeout(Some(self.config.timeout))
            .operation_timeout(Some(self.config.timeout));
        let operation = format!("delete topic {name}");
        let results = wait(
            self.admin.delete_topics(&[name], &options),
            self.config.timeout,
        )
        .ok_or_else(|| timed_out(&operation, self.config.timeout))?
        .map_err(|e| kafka_error(&operation, None, &e))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    return Err(Error::UnknownTopic {
                        topic: name.to_string(),
                    })
                }
                Err((_, code)) => {
                    return Err(topic_error(
                        &operation,
                        name,
                        format!("the broker said {code}"),
                    ))
                }
            }
        }
        self.topics.lock().remove(name);
        for isolation in [
            IsolationLevel::ReadUncommitted,
            IsolationLevel::ReadCommitted,
        ] {
            let cursors = &self.cursors[isolation as usize];
            let gone: Vec<Cursor> = {
                let mut cursors = cursors.lock();
                let tps: Vec<TopicPartition> = cursors
                    .keys()
                    .filter(|tp| tp.topic == name)
                    .cloned()
                    .collect();
                tps.iter().filter_map(|tp| cursors.remove(tp)).collect()
            };
            for cursor in gone {
                self.release(cursor.reader, isolation);
            }
        }
        // The controller acknowledges before every broker has forgotten the topic; a create
        // of the same name in between would fail.
        let deadline = Instant::now() + self.config.timeout;
        while self.partition_counts()?.contains_key(name) {
            if Instant::now() >= deadline {
                return Err(timed_out(
                    format!("waiting for deleted topic {name} to leave the metadata"),
                    self.config.timeout,
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
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
                self.release_after(reader, isolation, &other);
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

    fn commit_offsets_with_metadata(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()> {
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
        let mut out: GroupOffsets = self
            .fetch_committed(group, partitions)?
            .into_iter()
            .map(|c| (c.tp, c.offset))
            .collect();
        out.sort();
        Ok(out)
    }

    fn committed_metadata(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, String)>> {
        Ok(self
            .fetch_committed(group, partitions)?
            .into_iter()
            .filter(|c| !c.metadata.is_empty())
            .map(|c| (c.tp, c.metadata))
            .collect())
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

    fn commit_transaction_with_metadata(
        &self,
        txn: TxnId,
        offsets: Option<(&str, &[OffsetCommit])>,
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
        member_tag: &str,
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
        // Every member sees the others' client ids in a description of the group.
        let base = self
            .config
            .consumer_properties
            .get("client.id")
            .or_else(|| self.config.properties.get("client.id"))
            .map_or(group, String::as_str);
        let client_id = format!("{base}@{member_tag}");
        let mut config = self.config.client_config(ClientKind::Consumer, &defaults);
        config.set("client.id", &client_id);
        let consumer = member::create(
            config,
            group,
            topics,
            listener.clone(),
            (self.faults.clone(), self.stats.clone()),
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

    fn describe_group(&self, group: &str) -> Result<Option<GroupDescription>> {
        self.describe(group).map(Some)
    }
}
