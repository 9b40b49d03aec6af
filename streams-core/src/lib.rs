//! The core of the stream-processing engine: records and serdes, the [`Log`] that topics live
//! in, the [`Topology`] of processors, the tasks that run it and the [`Streams`] runtime.
//!
//! The modules are layers; each imports only from its own layer or those below it:
//!
//! | layer | modules | holds |
//! |---|---|---|
//! | top | `http`, `driver` | the HTTP query server (feature `http`); the [`TestDriver`] |
//! | runtime | `runtime/` | [`Streams`], stream threads, the group of threads, the assignor, the global thread, queries, [`StreamsConfig`], metrics |
//! | task | `task/` | one sub-topology × one partition: input buffers, its stores and their restore, global stores |
//! | topology | `topology/` | [`TopologyBuilder`], node definitions and factories ([`Instantiation`]), store specs, `describe` |
//! | processor | `processor/` | the [`Processor`] trait, its context, source and sink nodes, the record collector, [`TaskMetrics`], store handles |
//! | log | `log/` | the [`Log`] trait and its backends: memory, embedded (on-disk), Kafka (feature `kafka`) |
//! | bottom | `ids`, `record`, `serdes`, `partitioner`, `handler`, `error` | [`TaskId`], [`TopicName`], [`Record`], serdes, Kafka's partitioner, the bad-record policy, [`Error`] |
//!
//! Everything public is re-exported here, flat; modules are private.
//!
//! # Threading
//!
//! A task is owned by one stream thread at a time and runs there: its processors and stores
//! are reached through `Rc<RefCell<_>>` and are neither shared nor sent while it runs. A task
//! that moves to another thread is closed on the first (after a commit) and rebuilt on the
//! second from the immutable [`Topology`], its stores reopened from disk or restored from
//! their changelogs. Only application-wide things cross threads: the log, the global stores
//! (behind a mutex), the thread caches' shared memory budget and metrics. A cached store hands
//! the changes its cache writes through to the processor that owns it, which forwards them
//! right after the write or flush that produced them: nothing is queued between the two.
//!
//! # The embedded log
//!
//! Start with [`EmbeddedLog`], the on-disk log that needs no server:
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
// On docs.rs, every item a feature adds is marked with that feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod driver;
mod error;
mod handler;
#[cfg(feature = "http")]
pub mod http;
mod ids;
mod log;
mod partitioner;
mod processor;
mod record;
mod runtime;
mod serdes;
mod task;
mod throttle;
mod topology;

pub use driver::{DriverConfig, TestDriver};
pub use error::{Error, ErrorClass, RecordPart, Report, Result, SerdeError};
pub use handler::{dead_letter_headers, RecordErrorHandler};
pub use ids::{TaskId, TopicName};
pub use log::{
    validate_topic_name, AppendInfo, CleanupPolicy, ClientFigures, EmbeddedLog, EmbeddedLogConfig,
    Fetch, FsyncPolicy, GroupDescription, GroupMember, GroupMembership, GroupOffsets,
    IsolationLevel, Log, LogRepair, MaintenanceReport, MemoryLog, OffsetCommit, RebalanceListener,
    TopicConfig, TxnId, MAX_IN_PROCESS_PARTITIONS,
};
#[cfg(feature = "kafka")]
pub use log::{KafkaLog, KafkaLogConfig};
pub use partitioner::{murmur2, partition_for_key, to_positive};
pub use processor::{
    Change, Downstream, GlobalStoreRef, KvStoreRef, Processor, ProcessorContext, PunctuationType,
    Rec, RecordMeta, SessionStoreRef, SinkPartitioner, TaskMetrics, WindowStoreRef,
};
/// The `prometheus-client` crate the metrics are registered through, for a `Registry` of the
/// same version.
pub use prometheus_client;
pub use record::{Header, Record, StoredRecord, TopicPartition};
#[cfg(feature = "tokio")]
pub use runtime::Shutdown;
pub use runtime::ENV_PREFIX;
pub use runtime::{is_internal_topic, ApplicationReset, OffsetMove, ResetPlan, ResetTo};
pub use runtime::{
    Cursor, ExceptionHandler, ExceptionResponse, GlobalQuery, HostInfo, KeyQueryMetadata,
    KeyValueQuery, LatencyHistogram, MetricsCollector, OffsetReset, Page, PageLimit,
    ProcessingGuarantee, Properties, RestoreProgress, RocksDbFigures, SessionQuery,
    StateRestoreListener, Streams, StreamsConfig, StreamsMetadata, StreamsMetrics, StreamsState,
    TaskSnapshot, ThreadMetrics, WindowQuery, LATENCY_BUCKETS, PUBLISH_INTERVAL,
};
pub use serdes::{
    BincodeSerde, BytesSerde, DefaultSerde, I32Serde, I64Serde, JsonSerde, OptionSerde, Serde,
    StringSerde, U32Serde, U64Serde, UnitSerde,
};
pub use state_store::RocksDbStoreFigures;
pub use topology::{
    GlobalStoreSpec, Instantiation, InternalTopicKind, NodeId, NodeRef, StoreKind, StoreSpec,
    SubTopology, Topology, TopologyBuilder,
};
