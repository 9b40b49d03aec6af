//! The core of the stream-processing engine: records and serdes, Kafka's partitioner, and the
//! [`Log`] that topics live in.
//!
//! The layers above (`state-store` for local state, `streams-dsl` for the typed DSL) build on
//! these types. Start with [`EmbeddedLog`], the on-disk log that needs no server:
//!
//! ```
//! use streams_core::{EmbeddedLog, IsolationLevel, Log, Record, TopicConfig, TopicPartition};
//!
//! let dir = tempfile::tempdir()?;
//! let log = EmbeddedLog::open(dir.path())?;
//! log.create_topic("rates", TopicConfig::compacted(4))?;
//! let tp = TopicPartition::new("rates", streams_core::partition_for_key(b"USD/GBP", 4));
//! log.append(&tp, &[Record::new("USD/GBP", "0.71", 1_700_000_000_000)])?;
//! let fetch = log.read(&tp, 0, 100, IsolationLevel::ReadCommitted)?;
//! assert_eq!(fetch.records[0].record.value.as_deref(), Some(&b"0.71"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod driver;
mod error;
pub mod global;
pub mod log;
mod partitioner;
mod processor;
mod record;
pub mod runtime;
mod serdes;
pub mod task;
pub mod topology;

pub use driver::{DriverConfig, TestDriver};
pub use error::{Error, ErrorClass, RecordPart, Result, SerdeError};
pub use global::{GlobalStoreRef, GlobalStoreSpec, GlobalStores, GlobalUpdater};
pub use log::{
    validate_topic_name, AppendInfo, CleanupPolicy, EmbeddedLog, EmbeddedLogConfig, Fetch,
    FsyncPolicy, GroupMembership, GroupOffsets, IsolationLevel, Log, MaintenanceReport, MemoryLog,
    RebalanceListener, TopicConfig, TxnId,
};
#[cfg(feature = "kafka")]
pub use log::{KafkaLog, KafkaLogConfig};
pub use partitioner::{murmur2, partition_for_key, to_positive};
pub use processor::{
    Change, Downstream, Processor, ProcessorContext, ProcessorRef, PunctuationType, Rec, RecordMeta,
};
pub use record::{Header, Record, StoredRecord, TopicPartition};
pub use runtime::{ProcessingGuarantee, Streams, StreamsConfig, StreamsState};
pub use serdes::{
    BincodeSerde, BytesSerde, DefaultSerde, I32Serde, I64Serde, JsonSerde, OptionSerde, Serde,
    StringSerde, U32Serde, U64Serde, UnitSerde,
};
pub use task::collector::RecordCollector;
pub use task::instantiate::{Instantiated, Instantiation, SinkPartitioner};
pub use task::metrics::TaskMetrics;
pub use task::stores::{
    FlushQueue, FlushedChange, KvStoreRef, SessionStoreRef, StoreResources, TaskStores,
    WindowStoreRef,
};
pub use task::{DeserializationHandler, ProductionHandler, Task, TaskEnv, TaskId};
pub use topology::{
    InternalTopicKind, NodeId, NodeRef, StoreKind, StoreSpec, SubTopology, TopicName, Topology,
    TopologyBuilder,
};
