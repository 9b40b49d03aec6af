//! Where topics live: the [`Log`] trait and its implementations.
//!
//! A log is a set of topics, each split into partitions; a partition is an append-only
//! sequence of records with dense offsets starting at 0. The engine reads its inputs and
//! writes its outputs, repartition topics and changelogs through this trait only, so the same
//! topology runs on the embedded on-disk log ([`EmbeddedLog`], the default), in memory
//! ([`MemoryLog`], for tests), or on Kafka (`KafkaLog`, feature `kafka`).
//!
//! Transactions make several appends and a consumer group's offset commit visible together or
//! not at all: readers that ask for [`IsolationLevel::ReadCommitted`] never see records of a
//! transaction that is open or was aborted.

pub(crate) mod embedded;
#[cfg(feature = "kafka")]
mod kafka;
mod memory;

pub use embedded::{EmbeddedLog, EmbeddedLogConfig, FsyncPolicy, LogRepair, MaintenanceReport};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaLog, KafkaLogConfig};
pub use memory::MemoryLog;

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::record::{Record, StoredRecord, TopicPartition};

/// What happens to old records of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CleanupPolicy {
    /// Old segments are deleted by age (`retention_ms`) and size (`retention_bytes`).
    Delete,
    /// Only the latest record of each key is kept; tombstones go after `delete_retention_ms`.
    Compact,
}

impl CleanupPolicy {
    /// The policy's name as Kafka's `cleanup.policy` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }
}

/// Configuration of one topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    /// Number of partitions (at least 1).
    pub partitions: u32,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms` for delete topics: segments whose newest batch was appended longer ago
    /// are deleted. `None` keeps them forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes` per partition for delete topics. `None`: no size limit.
    pub retention_bytes: Option<u64>,
    /// `delete.retention.ms` for compacted topics: how long a tombstone survives compaction.
    pub delete_retention_ms: i64,
    /// `segment.bytes`: a segment rolls once it reaches this size.
    pub segment_bytes: u64,
}

impl TopicConfig {
    /// A delete-policy topic with Kafka's defaults (7 days retention, 64 MiB segments here).
    pub fn new(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            delete_retention_ms: 24 * 3600 * 1000,
            segment_bytes: 64 << 20,
        }
    }

    /// A compacted topic (changelogs, tables).
    pub fn compacted(partitions: u32) -> Self {
        TopicConfig {
            cleanup_policy: CleanupPolicy::Compact,
            retention_ms: None,
            ..Self::new(partitions)
        }
    }

    /// Sets `segment.bytes`.
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Sets `retention.ms`.
    pub fn with_retention_ms(mut self, ms: Option<i64>) -> Self {
        self.retention_ms = ms;
        self
    }

    /// Sets `retention.bytes`.
    pub fn with_retention_bytes(mut self, bytes: Option<u64>) -> Self {
        self.retention_bytes = bytes;
        self
    }

    /// Sets `delete.retention.ms`.
    pub fn with_delete_retention_ms(mut self, ms: i64) -> Self {
        self.delete_retention_ms = ms;
        self
    }

    /// [`TopicConfig::validate`], and at most [`MAX_IN_PROCESS_PARTITIONS`] partitions: what
    /// the in-process logs (embedded and memory) check before they create a topic.
    pub(crate) fn validate_in_process(&self, topic: &str) -> Result<()> {
        self.validate(topic)?;
        if self.partitions > MAX_IN_PROCESS_PARTITIONS {
            return Err(Error::Config {
                key: format!("{topic}.partitions"),
                reason: format!(
                    "{} is above the {MAX_IN_PROCESS_PARTITIONS} partitions a topic of an \
                     in-process log may have",
                    self.partitions
                ),
            });
        }
        Ok(())
    }

    /// Checks the values, naming the first bad one.
    pub fn validate(&self, topic: &str) -> Result<()> {
        let bad = |key: &str, reason: String| {
            Err(Error::Config {
                key: format!("{topic}.{key}"),
                reason,
            })
        };
        if self.partitions == 0 {
            return bad("partitions", "must be at least 1".into());
        }
        if self.segment_bytes < 1024 {
            return bad(
                "segment.bytes",
                format!("{} is below the minimum 1024", self.segment_bytes),
            );
        }
        if self.delete_retention_ms < 0 {
            return bad("delete.retention.ms", "must not be negative".into());
        }
        if matches!(self.retention_ms, Some(ms) if ms < 0) {
            return bad(
                "retention.ms",
                "must not be negative (use None for no limit)".into(),
            );
        }
        Ok(())
    }
}

/// Checks a topic name the way Kafka does: 1–249 characters of `[a-zA-Z0-9._-]`, not `.`/`..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > 249 {
        Some(format!("is {} characters long (at most 249)", name.len()))
    } else if name == "." || name == ".." {
        Some("cannot be `.` or `..`".to_string())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .map(|c| {
                format!("contains {c:?}; only ASCII letters, digits, `.`, `_` and `-` are allowed")
            })
    };
    match reason {
        Some(reason) => Err(Error::Config {
            key: format!("topic name `{name}`"),
            reason,
        }),
        None => Ok(()),
    }
}

/// Which records a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// Everything appended, including records of open or aborted transactions.
    #[default]
    ReadUncommitted,
    /// Only records outside transactions and of committed transactions; reading stops at the
    /// first record of a transaction that is still open.
    ReadCommitted,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: u64,
    /// Offset the next append will get.
    pub next_offset: u64,
}

/// The result of a read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fetch {
    /// Records in offset order.
    pub records: Vec<StoredRecord>,
    /// Where the next read should start: past every record returned and every record skipped
    /// (aborted, or removed by compaction).
    pub next_offset: u64,
}

/// A consumer group's committed positions: for each partition, the next offset to read.
pub type GroupOffsets = Vec<(TopicPartition, u64)>;

/// A group's position in one partition with the metadata committed beside it (Kafka's offset
/// metadata; the runtime keeps the partition's stream time there, as Kafka Streams does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// The partition.
    pub tp: TopicPartition,
    /// The next offset to read.
    pub offset: u64,
    /// Free text kept with the offset; empty for none.
    pub metadata: String,
}

impl OffsetCommit {
    /// Offset commits without metadata.
    pub fn plain(offsets: &[(TopicPartition, u64)]) -> Vec<OffsetCommit> {
        offsets
            .iter()
            .map(|(tp, offset)| OffsetCommit {
                tp: tp.clone(),
                offset: *offset,
                metadata: String::new(),
            })
            .collect()
    }
}

/// The most partitions a topic of the embedded or memory log may have (each embedded
/// partition is a directory of files; Kafka topics are bounded by the cluster instead).
pub const MAX_IN_PROCESS_PARTITIONS: u32 = 10_000;

/// The metadata a group committed in `partitions` (those where it is not empty), from a group's
/// positions kept as partition → (offset, metadata): the in-process logs' shared reading.
pub(crate) fn metadata_in(
    group: Option<&std::collections::BTreeMap<TopicPartition, (u64, String)>>,
    partitions: &[TopicPartition],
) -> Vec<(TopicPartition, String)> {
    let Some(g) = group else {
        return Vec::new();
    };
    partitions
        .iter()
        .filter_map(|tp| {
            let (_, m) = g.get(tp)?;
            (!m.is_empty()).then(|| (tp.clone(), m.clone()))
        })
        .collect()
}

/// Forgets every group's offsets in `topic` (deleted), and groups left with none: the
/// in-process logs' shared part of [`Log::delete_topic`].
pub(crate) fn drop_offsets_of(
    groups: &mut std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<TopicPartition, (u64, String)>,
    >,
    topic: &str,
) {
    for offsets in groups.values_mut() {
        offsets.retain(|tp, _| tp.topic != topic);
    }
    groups.retain(|_, offsets| !offsets.is_empty());
}

/// The open transaction that wrote to a topic being deleted, as the in-process logs refuse it.
pub(crate) fn open_txn_refusal(txn_id: u64, topic: &str) -> Error {
    Error::Transaction {
        txn_id,
        reason: format!(
            "is open and wrote to topic `{topic}`, which cannot be deleted until the \
             transaction ends"
        ),
    }
}

/// Identifies an open transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId(pub u64);

/// Told by a [`Log::join_group`] membership which partitions this process holds.
///
/// Both calls run on the membership's own thread while the group rebalances; the group waits
/// for `revoked` to return before it hands the partitions to another member.
pub trait RebalanceListener: Send + Sync {
    /// The partitions go elsewhere: returns once the work reading them committed and stopped.
    /// `lost`: the member lost its place in the group (its session timed out, or the
    /// coordinator forgot it), so the partitions may already be someone else's.
    fn revoked(&self, partitions: &[TopicPartition], lost: bool);

    /// The partitions are this process's until they are revoked.
    fn assigned(&self, partitions: &[TopicPartition]);

    /// The membership failed in a way it cannot recover from (the member was fenced, or the
    /// group refused it).
    fn failed(&self, error: Error);
}

/// This process's membership in a consumer group, from [`Log::join_group`].
pub trait GroupMembership: Send {
    /// Leaves the group (after a final revoke), so that the other members take the
    /// partitions over at once. A static member (`group.instance.id`) keeps its partitions
    /// until its session times out, so that it can come back to them.
    fn leave(self: Box<Self>) -> Result<()>;
}

/// One member of a consumer group, as the group's coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupMember {
    /// The id the coordinator gave the member.
    pub member_id: String,
    /// The member's `client.id`.
    pub client_id: String,
    /// The address the coordinator sees the member connect from.
    pub client_host: String,
    /// The partitions the group's current generation assigned the member: empty unless the
    /// group is `Stable`.
    pub assignment: Vec<TopicPartition>,
}

/// A consumer group as its coordinator describes it at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupDescription {
    /// The coordinator's state of the group: `Stable` (every member has its assignment),
    /// `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead` (no such group).
    pub state: String,
    /// The members, with their assignments when the group is `Stable`.
    pub members: Vec<GroupMember>,
}

/// A partitioned, append-only record log: the embedded log, memory, or Kafka.
///
/// All methods take `&self`: a log is shared by every stream thread of an application.
pub trait Log: Send + Sync {
    /// Creates a topic. Creating one that exists with the same partition count is not an
    /// error; a different partition count is [`Error::TopicExists`].
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()>;

    /// Deletes a topic with its records, and every group's committed offsets in it (as Kafka
    /// drops the offsets of a deleted topic). Unknown topics are [`Error::UnknownTopic`].
    ///
    /// The in-process logs refuse while a transaction that wrote to the topic is open
    /// ([`Error::Transaction`]); the embedded log also needs the log to itself, as every write
    /// does (another process holding it is [`Error::Locked`] when it opens). Kafka deletes
    /// through the admin client and returns once the cluster's metadata no longer lists the
    /// topic, so that the name can be created again at once.
    fn delete_topic(&self, name: &str) -> Result<()>;

    /// The configuration of a topic.
    fn describe_topic(&self, name: &str) -> Result<TopicConfig>;

    /// Names of all topics, sorted.
    fn list_topics(&self) -> Result<Vec<String>>;

    /// Appends records to a partition, returning the offsets they got.
    ///
    /// On a refusal of records as they are (an error of class user), either none of the batch
    /// was appended, or the error is [`Error::RecordsRefused`], which names the refused
    /// records: all the others were appended (Kafka can deliver part of a batch; the embedded
    /// log appends a batch whole or not at all). After an external error (a broker down, a
    /// timeout) part of the batch may have been appended.
    fn append(&self, tp: &TopicPartition, records: &[Record]) -> Result<AppendInfo>;

    /// Reads up to `max_records` records starting at `offset`.
    fn read(
        &self,
        tp: &TopicPartition,
        offset: u64,
        max_records: usize,
        isolation: IsolationLevel,
    ) -> Result<Fetch>;

    /// The first offset still in the partition.
    fn start_offset(&self, tp: &TopicPartition) -> Result<u64>;

    /// The offset after the last record a reader at this isolation level may see (for
    /// read-committed: the first offset of the oldest open transaction, if any).
    fn end_offset(&self, tp: &TopicPartition, isolation: IsolationLevel) -> Result<u64>;

    /// The first offset whose record timestamp is at least `timestamp`, if any.
    fn offset_for_timestamp(&self, tp: &TopicPartition, timestamp: i64) -> Result<Option<u64>>;

    /// Durably records a group's positions (next offset to read) for some partitions, without
    /// metadata (a commit replaces the metadata committed before, as in Kafka).
    fn commit_offsets(&self, group: &str, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        self.commit_offsets_with_metadata(group, &OffsetCommit::plain(offsets))
    }

    /// Durably records a group's positions with metadata per partition.
    fn commit_offsets_with_metadata(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()>;

    /// The metadata the group committed with its positions in these partitions (those with
    /// metadata that is not empty).
    fn committed_metadata(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, String)>>;

    /// All positions committed by a group.
    fn committed_offsets(&self, group: &str) -> Result<GroupOffsets>;

    /// The group's committed positions for these partitions (those it committed), sorted.
    fn committed_offsets_of(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<GroupOffsets> {
        Ok(self
            .committed_offsets(group)?
            .into_iter()
            .filter(|(p, _)| partitions.contains(p))
            .collect())
    }

    /// The group's committed position for one partition.
    fn committed_offset(&self, group: &str, tp: &TopicPartition) -> Result<Option<u64>> {
        Ok(self
            .committed_offsets_of(group, std::slice::from_ref(tp))?
            .into_iter()
            .find(|(p, _)| p == tp)
            .map(|(_, o)| o))
    }

    /// Names of groups that committed offsets, sorted.
    fn list_groups(&self) -> Result<Vec<String>>;

    /// Starts a transaction.
    fn begin_transaction(&self) -> Result<TxnId>;

    /// Appends records as part of a transaction: read-committed readers see them only after
    /// [`Log::commit_transaction`].
    fn append_transactional(
        &self,
        txn: TxnId,
        tp: &TopicPartition,
        records: &[Record],
    ) -> Result<AppendInfo>;

    /// Makes the transaction's records, and the group offsets given, visible together.
    fn commit_transaction(
        &self,
        txn: TxnId,
        offsets: Option<(&str, &[(TopicPartition, u64)])>,
    ) -> Result<()> {
        match offsets {
            Some((group, offsets)) => self.commit_transaction_with_metadata(
                txn,
                Some((group, &OffsetCommit::plain(offsets))),
            ),
            None => self.commit_transaction_with_metadata(txn, None),
        }
    }

    /// [`Log::commit_transaction`] with metadata beside each offset.
    fn commit_transaction_with_metadata(
        &self,
        txn: TxnId,
        offsets: Option<(&str, &[OffsetCommit])>,
    ) -> Result<()>;

    /// Discards the transaction: its records stay invisible to read-committed readers.
    fn abort_transaction(&self, txn: TxnId) -> Result<()>;

    /// Makes everything appended and committed so far durable (survives power loss).
    fn sync(&self) -> Result<()>;

    /// Joins `group` as a member subscribed to `topics`, so that several processes split
    /// the topics' partitions; `listener` hears what this process holds, starting with its
    /// first assignment. Offsets the group commits through this log go through the member.
    ///
    /// The member's `client.id` is the log's own (or, without one, the group's name), then
    /// `@` and `member_tag`: every member sees it in [`Log::describe_group`], so a member can
    /// say there who it is (the runtime puts its process id and `application.server` there).
    ///
    /// Logs that one process owns (the embedded log, memory) return `None`: that process
    /// holds every partition.
    fn join_group(
        &self,
        group: &str,
        topics: &[String],
        member_tag: &str,
        listener: std::sync::Arc<dyn RebalanceListener>,
    ) -> Result<Option<Box<dyn GroupMembership>>> {
        let _ = (group, topics, member_tag, listener);
        Ok(None)
    }

    /// The group's members and their assignments as the group's coordinator sees them now
    /// (Kafka's DescribeGroups). Logs without groups (the embedded log, memory) return
    /// `None`.
    fn describe_group(&self, group: &str) -> Result<Option<GroupDescription>> {
        let _ = group;
        Ok(None)
    }

    /// What the log's network clients report about themselves (on Kafka, librdkafka's
    /// statistics, every `statistics.interval.ms` once that is set): one entry per client
    /// that reported lately. Logs without clients (the embedded log, memory) have none.
    fn client_figures(&self) -> Vec<ClientFigures> {
        Vec::new()
    }
}

/// What one client of a networked log last reported about itself.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ClientFigures {
    /// The client's name (librdkafka's handle name, `rdkafka#consumer-3`).
    pub client: String,
    /// `producer` or `consumer`.
    pub kind: String,
    /// Messages waiting in the producer's queues.
    pub queued_messages: u64,
    /// Per broker (`host:port/id`): the mean round-trip time of its requests over the last
    /// interval, in seconds.
    pub broker_rtt: BTreeMap<String, f64>,
    /// Per partition the client reads: the records between the offset it handed out last and
    /// the partition's end (its last stable offset), as the client knows them.
    pub consumer_lag: BTreeMap<(String, u32), i64>,
}
