//! An in-memory [`Log`]: the same semantics as the embedded log, nothing on disk.
//!
//! Meant for tests and the test driver. No retention or compaction runs here.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::log::{
    drop_offsets_of, metadata_in, open_txn_refusal, validate_topic_name, AppendInfo, CleanupPolicy,
    Fetch, GroupOffsets, IsolationLevel, Log, OffsetCommit, TopicConfig, TxnId,
};
use crate::record::{Record, StoredRecord, TopicPartition};

#[derive(Default)]
struct MemPartition {
    /// Records with the transaction that wrote them (0: none).
    records: Vec<(u64, StoredRecord)>,
    open_txns: BTreeMap<u64, u64>,
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, (TopicConfig, Vec<MemPartition>)>,
    groups: BTreeMap<String, BTreeMap<TopicPartition, (u64, String)>>,
    next_txn: u64,
    open: BTreeMap<u64, BTreeSet<TopicPartition>>,
    aborted: BTreeSet<u64>,
}

impl State {
    fn partition(&mut self, tp: &TopicPartition) -> Result<(&TopicConfig, &mut MemPartition)> {
        let (config, parts) =
            self.topics
                .get_mut(&tp.topic)
                .ok_or_else(|| Error::UnknownTopic {
                    topic: tp.topic.clone(),
                })?;
        let n = config.partitions;
        let part =
            parts
                .get_mut(tp.partition as usize)
                .ok_or_else(|| Error::PartitionOutOfRange {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    partitions: n,
                })?;
        Ok((config, part))
    }

    fn committed(&self, id: u64) -> bool {
        id == 0
            || (id < self.next_txn && !self.open.contains_key(&id) && !self.aborted.contains(&id))
    }

    fn append(&mut self, tp: &TopicPartition, records: &[Record], txn: u64) -> Result<AppendInfo> {
        let (config, part) = self.partition(tp)?;
        if config.cleanup_policy == CleanupPolicy::Compact {
            if let Some(i) = records.iter().position(|r| r.key.is_none()) {
                return Err(Error::InvalidRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    reason: format!(
                        "record {i} of the batch has no key; compacted topics need one"
                    ),
                });
            }
        }
        let base = part.records.len() as u64;
        for (i, r) in records.iter().enumerate() {
            part.records.push((
                txn,
                StoredRecord {
                    offset: base + i as u64,
                    record: r.clone(),
                },
            ));
        }
        if txn != 0 && !records.is_empty() {
            part.open_txns.entry(txn).or_insert(base);
        }
        Ok(AppendInfo {
            base_offset: base,
            next_offset: part.records.len() as u64,
        })
    }
}

/// A [`Log`] held in memory.
#[derive(Default)]
pub struct MemoryLog {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryLog")
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        MemoryLog {
            state: Mutex::new(State {
                next_txn: 1,
                ..State::default()
            }),
        }
    }
}

impl Log for MemoryLog {
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        validate_topic_name(name)?;
        config.validate_in_process(name)?;
        let mut s = self.state.lock();
        if let Some((existing, _)) = s.topics.get(name) {
            if existing.partitions != config.partitions {
                return Err(Error::TopicExists {
                    topic: name.into(),
                    existing: existing.partitions,
                    requested: config.partitions,
                });
            }
            return Ok(());
        }
        let parts = (0..config.partitions)
            .map(|_| MemPartition::default())
            .collect();
        s.topics.insert(name.to_string(), (config, parts));
        Ok(())
    }

    fn delete_topic(&self, name: &str) -> Result<()> {
        let mut s = self.state.lock();
        if !s.topics.contains_key(name) {
            return Err(Error::UnknownTopic { topic: name.into() });
        }
        let writer = s
            .open
            .iter()
            .find(|(_, touched)| touched.iter().any(|tp| tp.topic == name));
        if let Some((&txn, _)) = writer {
            return Err(open_txn_refusal(txn, name));
        }
        s.topics.remove(name);
        drop_offsets_of(&mut s.groups, name);
        Ok(())
    }

    fn describe_topic(&self, name: &str) -> Result<TopicConfig> {
        self.state
            .lock()
            .topics
            .get(name)
            .map(|(c, _)| c.clone())
            .ok_or_else(|| Error::UnknownTopic { topic: name.into() })
    }

    fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.state.lock().topics.keys().cloned().collect())
    }

    fn append(&self, tp: &TopicPartition, records: &[Record]) -> Result<AppendInfo> {
        self.state.lock().append(tp, records, 0)
    }

    fn read(
        &self,
        tp: &TopicPartition,
        offset: u64,
        max_records: usize,
        isolation: IsolationLevel,
    ) -> Result<Fetch> {
        let mut s = self.state.lock();
        let visible: Box<dyn Fn(u64) -> bool> = match isolation {
            IsolationLevel::ReadUncommitted => Box::new(|_| true),
            IsolationLevel::ReadCommitted => {
                let (next, open, aborted) = (
                    s.next_txn,
                    s.open.keys().copied().collect::<BTreeSet<_>>(),
                    s.aborted.clone(),
                );
                Box::new(move |id| {
                    id == 0 || (id < next && !open.contains(&id) && !aborted.contains(&id))
                })
            }
        };
        let (_, part) = s.partition(tp)?;
        let end = part.records.len() as u64;
        if offset > end {
            return Err(Error::OffsetOutOfRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
                start: 0,
                end,
            });
        }
        let bound = match isolation {
            IsolationLevel::ReadUncommitted => end,
            IsolationLevel::ReadCommitted => part.open_txns.values().min().copied().unwrap_or(end),
        };
        let mut fetch = Fetch {
            records: Vec::new(),
            next_offset: offset,
        };
        for (txn, r) in &part.records[offset as usize..bound.max(offset) as usize] {
            if fetch.records.len() >= max_records {
                break;
            }
            fetch.next_offset = r.offset + 1;
            if visible(*txn) {
                fetch.records.push(r.clone());
            }
        }
        Ok(fetch)
    }

    fn start_offset(&self, tp: &TopicPartition) -> Result<u64> {
        self.state.lock().partition(tp).map(|_| 0)
    }

    fn end_offset(&self, tp: &TopicPartition, isolation: IsolationLevel) -> Result<u64> {
        let mut s = self.state.lock();
        let (_, part) = s.partition(tp)?;
        let end = part.records.len() as u64;
        Ok(match isolation {
            IsolationLevel::ReadUncommitted => end,
            IsolationLevel::ReadCommitted => part.open_txns.values().min().copied().unwrap_or(end),
        })
    }

    fn offset_for_timestamp(&self, tp: &TopicPartition, timestamp: i64) -> Result<Option<u64>> {
        let mut s = self.state.lock();
        let (_, part) = s.partition(tp)?;
        Ok(part
            .records
            .iter()
            .find(|(_, r)| r.record.timestamp >= timestamp)
            .map(|(_, r)| r.offset))
    }

    fn commit_offsets_with_metadata(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()> {
        // As the embedded log: an empty group name would be listed and looked up as a group.
        if group.is_empty() {
            return Err(Error::Config {
                key: "group".into(),
                reason: "is empty".into(),
            });
        }
        let mut s = self.state.lock();
        for c in offsets {
            s.partition(&c.tp)?;
        }
        let g = s.groups.entry(group.to_string()).or_default();
        for c in offsets {
            g.insert(c.tp.clone(), (c.offset, c.metadata.clone()));
        }
        Ok(())
    }

    fn committed_offsets(&self, group: &str) -> Result<GroupOffsets> {
        Ok(self
            .state
            .lock()
            .groups
            .get(group)
            .map(|g| g.iter().map(|(tp, (o, _))| (tp.clone(), *o)).collect())
            .unwrap_or_default())
    }

    fn committed_metadata(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, String)>> {
        Ok(metadata_in(self.state.lock().groups.get(group), partitions))
    }

    fn list_groups(&self) -> Result<Vec<String>> {
        Ok(self.state.lock().groups.keys().cloned().collect())
    }

    fn begin_transaction(&self) -> Result<TxnId> {
        let mut s = self.state.lock();
        let id = s.next_txn;
        s.next_txn += 1;
        s.open.insert(id, BTreeSet::new());
        Ok(TxnId(id))
    }

    fn append_transactional(
        &self,
        txn: TxnId,
        tp: &TopicPartition,
        records: &[Record],
    ) -> Result<AppendInfo> {
        let mut s = self.state.lock();
        if !s.open.contains_key(&txn.0) {
            return Err(Error::Transaction {
                txn_id: txn.0,
                reason: "is not open".into(),
            });
        }
        let info = s.append(tp, records, txn.0)?;
        s.open.entry(txn.0).or_default().insert(tp.clone());
        Ok(info)
    }

    fn commit_transaction_with_metadata(
        &self,
        txn: TxnId,
        offsets: Option<(&str, &[OffsetCommit])>,
    ) -> Result<()> {
        let mut s = self.state.lock();
        let Some(touched) = s.open.remove(&txn.0) else {
            return Err(Error::Transaction {
                txn_id: txn.0,
                reason: "is not open".into(),
            });
        };
        for tp in &touched {
            s.partition(tp)?.1.open_txns.remove(&txn.0);
        }
        if let Some((group, offsets)) = offsets {
            let g = s.groups.entry(group.to_string()).or_default();
            for c in offsets {
                g.insert(c.tp.clone(), (c.offset, c.metadata.clone()));
            }
        }
        debug_assert!(s.committed(txn.0));
        Ok(())
    }

    fn abort_transaction(&self, txn: TxnId) -> Result<()> {
        let mut s = self.state.lock();
        let Some(touched) = s.open.remove(&txn.0) else {
            return Err(Error::Transaction {
                txn_id: txn.0,
                reason: "is not open".into(),
            });
        };
        for tp in &touched {
            s.partition(tp)?.1.open_txns.remove(&txn.0);
        }
        s.aborted.insert(txn.0);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
