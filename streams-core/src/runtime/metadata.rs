//! Where the application's stores live: [`HostInfo`] (an instance's `application.server`),
//! [`StreamsMetadata`] (one instance: its tasks, partitions and stores) and
//! [`KeyQueryMetadata`] (the instance that holds a key), answered by
//! [`Streams::all_metadata`], [`Streams::all_metadata_for_store`] and
//! [`Streams::query_metadata_for_key`], as Kafka Streams' `metadataForAllStreamsClients`,
//! `streamsMetadataForStore` and `queryMetadataForKey`.
//!
//! The instances and their tasks come from the consumer group (see `instances`): on a log
//! one process owns (the embedded log, memory) the one instance is this one and holds every
//! task. A key belongs to the task its encoded bytes partition to with Kafka's default
//! partitioner (murmur2), in the sub-topology of the store, as in Kafka Streams.

use std::collections::BTreeSet;

use super::host::HostInfo;
use super::instances::{GroupView, ViewMember};
use super::{Shared, Streams, StreamsState};
use crate::error::{Error, Result};
use crate::ids::TaskId;
use crate::partitioner::partition_for_key;
use crate::record::TopicPartition;
use crate::serdes::Serde;

/// One instance of the application, as the group describes it: where it serves queries, the
/// tasks it runs, their input partitions and their stores.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamsMetadata {
    /// Its `application.server`; `None` when that instance set none (it cannot be asked).
    pub host: Option<HostInfo>,
    /// Its process id ([`StreamsConfig::process_id`](crate::StreamsConfig::process_id)),
    /// which tells instances apart whatever their endpoints.
    pub process_id: String,
    /// Whether it is this instance.
    pub local: bool,
    /// The tasks it runs (active; there are no standby replicas).
    pub tasks: BTreeSet<TaskId>,
    /// The input partitions of those tasks.
    pub partitions: BTreeSet<TopicPartition>,
    /// The stores it holds a part of, global stores included (every instance has those).
    pub stores: BTreeSet<String>,
}

/// Which instance holds a key of a store: ask its `active_host`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyQueryMetadata {
    /// The `application.server` of the instance running the key's task.
    pub active_host: HostInfo,
    /// Instances with a standby copy of the key's task: always empty, as this library keeps
    /// no standby replicas.
    pub standby_hosts: Vec<HostInfo>,
    /// The store partition (= task partition) of the key; `None` for a global store, which
    /// every instance holds whole.
    pub partition: Option<u32>,
    /// Whether the active host is this instance.
    pub local: bool,
}

impl Streams {
    /// This instance's `application.server`, if it set one.
    pub fn application_server(&self) -> Option<&HostInfo> {
        self.shared.endpoint.as_ref()
    }

    /// Every instance of the application (this one included), as the consumer group
    /// describes it now, sorted by endpoint. On a log one process owns, just this instance,
    /// holding every task.
    ///
    /// Fails with [`Error::MetadataUnavailable`] (retriable) while the group rebalances or
    /// its description does not match this instance's own assignment, and with
    /// [`Error::InvalidState`] unless the application is running or rebalancing.
    pub fn all_metadata(&self) -> Result<Vec<StreamsMetadata>> {
        self.shared.all_metadata()
    }

    /// The instances that hold a part of `store` (every instance, for a global store). An
    /// unknown store is an [`Error::Config`]; otherwise as [`Streams::all_metadata`].
    pub fn all_metadata_for_store(&self, store: &str) -> Result<Vec<StreamsMetadata>> {
        self.shared.all_metadata_for_store(store)
    }

    /// The instance that holds `key` of `store`: the one running the task `key` partitions
    /// to (its bytes encoded with `keys`, the store's key serde, then Kafka's default
    /// partitioner). The key need not exist: this says where it would be.
    ///
    /// For a global store the answer is this instance (every instance holds it whole).
    /// Fails with [`Error::MetadataUnavailable`] (retriable: ask again shortly) while the
    /// group rebalances, while no instance holds the task, or when the instance holding it
    /// set no `application.server`; with [`Error::Config`] for an unknown store, or when
    /// this instance holds the key and set no `application.server`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use streams_core::{Log, MemoryLog, StringSerde, Streams, StreamsConfig, TopicConfig};
    /// use streams_core::{StoreSpec, TopicName, TopologyBuilder};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let log = Arc::new(MemoryLog::new());
    /// log.create_topic("in", TopicConfig::new(4))?;
    /// let mut b = TopologyBuilder::new();
    /// let src = b.add_source::<String, String>("src", vec![TopicName::User("in".into())],
    ///     Arc::new(StringSerde), Arc::new(StringSerde))?;
    /// b.add_store(StoreSpec { persistent: false, ..StoreSpec::key_value("seen") })?;
    /// b.connect_store(src.id, "seen")?;
    /// let config = StreamsConfig::new("app", dir.path()).with_application_server("10.0.0.7:7070");
    /// let streams = Streams::new(b.build()?, config, log)?;
    /// streams.start()?;
    ///
    /// let owner = streams.query_metadata_for_key("seen", &"alice".to_string(), &StringSerde)?;
    /// assert_eq!(owner.active_host.to_string(), "10.0.0.7:7070");
    /// assert_eq!(owner.partition, Some(streams_core::partition_for_key(b"alice", 4)));
    /// assert!(owner.local);
    /// streams.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn query_metadata_for_key<K: 'static>(
        &self,
        store: &str,
        key: &K,
        keys: &dyn Serde<K>,
    ) -> Result<KeyQueryMetadata> {
        self.shared.query_metadata_for_key(store, key, keys)
    }
}

/// Where a query of one key runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP server
pub(crate) enum Route {
    /// Here: this instance runs the key's task (it may still be restoring it).
    Local,
    /// On the instance serving queries there.
    Remote(HostInfo),
}

/// Metadata can be asked while the application runs or rebalances, as in Kafka Streams.
fn check_state(shared: &Shared, operation: &str) -> Result<()> {
    let state = shared.state();
    match state {
        StreamsState::Running | StreamsState::Rebalancing => Ok(()),
        _ => Err(Error::InvalidState {
            operation: operation.to_string(),
            state: state.to_string(),
        }),
    }
}

fn no_endpoint() -> Error {
    Error::Config {
        key: "application.server".into(),
        reason: "is not set on this instance, so no instance can be pointed at it \
                 (StreamsConfig::with_application_server)"
            .into(),
    }
}

impl Shared {
    pub(crate) fn all_metadata(&self) -> Result<Vec<StreamsMetadata>> {
        check_state(self, "describe the application's instances")?;
        let view = self.group_view()?;
        Ok(view.members.iter().map(|m| self.metadata_of(m)).collect())
    }

    pub(crate) fn all_metadata_for_store(&self, store: &str) -> Result<Vec<StreamsMetadata>> {
        check_state(self, "describe the instances of a store")?;
        if !self.topology.global_stores().contains_key(store) {
            self.subtopology_of(store)?;
        }
        let view = self.group_view()?;
        Ok(view
            .members
            .iter()
            .map(|m| self.metadata_of(m))
            .filter(|m| m.stores.contains(store))
            .collect())
    }

    pub(crate) fn query_metadata_for_key<K: 'static>(
        &self,
        store: &str,
        key: &K,
        keys: &dyn Serde<K>,
    ) -> Result<KeyQueryMetadata> {
        check_state(self, "locate a key")?;
        if self.topology.global_stores().contains_key(store) {
            return Ok(KeyQueryMetadata {
                active_host: self.endpoint.clone().ok_or_else(no_endpoint)?,
                standby_hosts: Vec::new(),
                partition: None,
                local: true,
            });
        }
        let task = self.task_of_key(store, key, keys)?;
        let view = self.group_view()?;
        let (owner, local) = self.owner_of(&view, task, store)?;
        Ok(KeyQueryMetadata {
            active_host: owner,
            standby_hosts: Vec::new(),
            partition: Some(task.partition),
            local,
        })
    }

    /// Where a query of `task`'s keys runs: here when this instance runs the task, else on
    /// the instance the group says runs it.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the HTTP server
    pub(crate) fn route(&self, store: &str, task: TaskId) -> Result<Route> {
        if self.is_local(task) {
            return Ok(Route::Local);
        }
        let view = self.group_view()?;
        match self.owner_of(&view, task, store)? {
            (_, true) => Ok(Route::Local),
            (host, false) => Ok(Route::Remote(host)),
        }
    }

    /// The endpoint of the instance running `task`, and whether that is this one.
    fn owner_of(&self, view: &GroupView, task: TaskId, store: &str) -> Result<(HostInfo, bool)> {
        let member = view.owner(task).ok_or_else(|| Error::MetadataUnavailable {
            reason: format!(
                "no instance holds task {task} (of store `{store}`) now; the group may be \
                 rebalancing"
            ),
        })?;
        match &member.host {
            Some(host) => Ok((host.clone(), member.local)),
            None if member.local => Err(no_endpoint()),
            None => Err(Error::MetadataUnavailable {
                reason: format!(
                    "task {task} (of store `{store}`) runs on instance {}, which set no \
                     application.server, so it cannot be pointed at",
                    member.process_id
                ),
            }),
        }
    }

    /// The task `key` of `store` partitions to.
    fn task_of_key<K: 'static>(&self, store: &str, key: &K, keys: &dyn Serde<K>) -> Result<TaskId> {
        let sub = self.subtopology_of(store)?;
        let mut bytes = Vec::new();
        keys.serialize_into(key, &mut bytes)
            .map_err(|e| Error::Processing {
                task: None,
                processor: store.to_string(),
                reason: format!("cannot encode the key asked for: {e}"),
            })?;
        let partitions = self.task_counts.get(&sub).copied().unwrap_or(0).max(1);
        Ok(TaskId::new(sub, partition_for_key(&bytes, partitions)))
    }

    /// The sub-topology of a store, or an error naming the store when the topology has none.
    fn subtopology_of(&self, store: &str) -> Result<u32> {
        self.topology
            .subtopologies()
            .iter()
            .find(|s| s.stores.iter().any(|s| s == store))
            .map(|s| s.id)
            .ok_or_else(|| Error::Config {
                key: format!("store `{store}`"),
                reason: "the topology has no store of that name".into(),
            })
    }

    fn metadata_of(&self, member: &ViewMember) -> StreamsMetadata {
        let app = &self.config.application_id;
        let mut partitions = BTreeSet::new();
        let mut stores: BTreeSet<String> = self.topology.global_stores().keys().cloned().collect();
        for sub in self.topology.subtopologies() {
            let tasks: Vec<&TaskId> = member
                .tasks
                .iter()
                .filter(|t| t.subtopology == sub.id)
                .collect();
            if tasks.is_empty() {
                continue;
            }
            stores.extend(sub.stores.iter().cloned());
            for topic in &sub.source_topics {
                let name = topic.resolve(app);
                partitions.extend(
                    tasks
                        .iter()
                        .map(|t| TopicPartition::new(name.clone(), t.partition)),
                );
            }
        }
        StreamsMetadata {
            host: member.host.clone(),
            process_id: member.process_id.clone(),
            local: member.local,
            tasks: member.tasks.clone(),
            partitions,
            stores,
        }
    }
}
