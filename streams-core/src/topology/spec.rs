//! What a topology declares besides its nodes: the stores tasks build, global stores, and the
//! internal topics the application owns. Plain data; the task layer turns them into stores.

use crate::ids::TopicName;

/// The shape of a state store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// Key-value.
    KeyValue {
        /// Whether values start with the 8-byte timestamp of the update that wrote them
        /// (`[timestamp][value]`, the DSL's tables, as Kafka's timestamped key-value stores).
        timestamped: bool,
    },
    /// Window store.
    Window {
        /// How long windows are kept, in ms.
        retention_ms: i64,
        /// Window size in ms (for descriptions and interactive queries).
        window_size_ms: i64,
        /// Whether several values per key and window are kept (stream–stream join buffers).
        retain_duplicates: bool,
        /// Whether values start with the 8-byte timestamp of the window's latest record (the
        /// DSL's windowed aggregations, as Kafka's timestamped window stores).
        timestamped: bool,
    },
    /// Session store.
    Session {
        /// How long sessions are kept, in ms.
        retention_ms: i64,
    },
}

impl StoreKind {
    /// Whether the store's values start with a timestamp (`[timestamp][value]`, see
    /// `state_store::encode_timestamped`), which readers strip.
    pub fn timestamped(&self) -> bool {
        match self {
            StoreKind::KeyValue { timestamped } | StoreKind::Window { timestamped, .. } => {
                *timestamped
            }
            StoreKind::Session { .. } => false,
        }
    }
}

/// How a store is built for each task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// The store's name: its directory and changelog topic derive from it.
    pub name: String,
    /// Key-value, window or session.
    pub kind: StoreKind,
    /// RocksDB (`true`) or in memory.
    pub persistent: bool,
    /// Whether changes go to a changelog topic `<app-id>-<name>-changelog`.
    pub logged: bool,
    /// Whether a write-back cache sits in front of it.
    pub cached: bool,
}

impl StoreSpec {
    /// A persistent, logged, cached key-value store of plain values (no timestamps).
    pub fn key_value(name: impl Into<String>) -> Self {
        StoreSpec {
            name: name.into(),
            kind: StoreKind::KeyValue { timestamped: false },
            persistent: true,
            logged: true,
            cached: true,
        }
    }

    /// The name of the changelog topic before the application id is prefixed.
    pub fn changelog(&self) -> Option<TopicName> {
        self.logged
            .then(|| TopicName::Internal(format!("{}-changelog", self.name)))
    }
}

/// What a global store is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalStoreSpec {
    /// The store's name.
    pub name: String,
    /// The (user) topic it copies.
    pub topic: String,
    /// RocksDB (true) or memory.
    pub persistent: bool,
}

/// What an internal topic is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InternalTopicKind {
    /// Re-keyed records between sub-topologies (`delete` policy).
    Repartition,
    /// A store's changelog (`compact` policy).
    Changelog,
}
