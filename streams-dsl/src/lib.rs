//! The typed DSL of the stream-processing engine: [`StreamsBuilder`], [`KStream`],
//! [`KTable`], [`KGroupedStream`], and the options that go with them.
//!
//! The handles (streams, tables, grouped and windowed streams) only describe what was asked
//! for; one internal module, the build graph (`graph.rs`), writes it into a
//! `streams_core::TopologyBuilder`: node names, stores and the nodes that use them,
//! co-partitioning of joined inputs, merges and repartition topics. The processors themselves
//! live in `ops/`, one operator family per file. `StreamsBuilder::build()` yields the
//! `Topology` that tasks run. Records pass between operators of one sub-topology as typed
//! values; serdes are needed only where bytes appear (sources, sinks, repartition topics,
//! stores), and an operator uses the serdes the stream already knows unless given others.
//!
//! Start with `use streams_dsl::prelude::*;`: it brings the DSL, the runtime, the logs and the
//! built-in serdes.
//!
//! # Windows
//!
//! [`KGroupedStream::windowed_by`] (tumbling and hopping [`TimeWindows`]),
//! [`KGroupedStream::windowed_by_sliding`] ([`SlidingWindows`]) and
//! [`KGroupedStream::windowed_by_session`] ([`SessionWindows`]) aggregate into tables keyed by
//! [`Windowed<K>`]; [`KStream::join_stream`] and its left and outer forms join two streams
//! within [`JoinWindows`]. Semantics follow Kafka Streams, with these choices written down:
//!
//! - Every window is half-open, `[start, end)`: sliding windows (Kafka: `[t - d, t]`) end at
//!   `t + 1`, sessions one past their last record. A window is closed once
//!   `end + grace <= stream time`, where stream time is the task's (the largest timestamp it
//!   has processed, the current record included); a record that reaches only closed windows is
//!   dropped and counted under the reason `"late"` ([`streams_core::TaskMetrics`]).
//! - Windowed updates carry the largest record timestamp of their window (sessions: their last
//!   record's). As in Kafka Streams, a record deletes every session it touches (forwarding the
//!   deletions) and writes the merged one anew, even when it falls inside one session and the
//!   window stays the same; only a record that repeats a one-instant session updates it in
//!   place. Session stores keep a session for `gap + grace` after its end (by the latest session
//!   end written), as Kafka Streams' do, so a record at the very edge of its grace may start a
//!   session of its own instead of merging.
//! - Sliding windows are built as in KIP-450, but records before `time difference` (near the
//!   epoch) get windows with negative starts instead of Kafka's shared `[0, d]` window.
//! - [`KTable::suppress`] with [`Suppressed::until_window_closes`] emits each window once, at
//!   the first commit after it closes (only then has every update of a cached aggregation
//!   upstream reached the buffer). The buffer is kept in a changelogged key-value store of the
//!   task, `<suppress node name>-store`, so windows buffered at a crash, a restart or a task
//!   move are restored and emitted later: exactly once under exactly-once, at least once
//!   under at-least-once. Bounded buffers can fail or (time limit only) emit early; their
//!   bounds count the restored contents too.
//! - Stream–stream joins join a late record with whatever the other side still keeps, and
//!   emit a left/outer record without a match only once no match can arrive: a left record
//!   once `t + after + grace` is behind the join's stream time, a right record of an outer
//!   join once `t + before + grace` is; so never both unmatched and matched.
//! - Store retention defaults to what the windows need (see [`Materialized::with_retention`]);
//!   stores drop whole expired segments, so state stays bounded on an endless stream.

#![warn(missing_docs)]
// On docs.rs, every item a feature adds is marked with that feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod global_table;
mod graph;
mod kgrouped;
mod kgrouped_table;
mod kstream;
mod kstream_join;
mod ktable;
mod kwindowed;
mod ops;
mod options;
mod query;
mod suppressed;
mod windowed;
mod windows;

pub use builder::StreamsBuilder;
pub use global_table::GlobalKTable;
pub use kgrouped::KGroupedStream;
pub use kgrouped_table::KGroupedTable;
pub use kstream::KStream;
pub use ktable::KTable;
pub use kwindowed::{SessionWindowedKStream, TimeWindowedKStream};
pub use ops::BranchPredicate;
pub use options::{Consumed, Grouped, Materialized, Produced, Repartitioned, StreamJoined};
pub use query::{KeyValueStoreView, SessionStoreView, WindowStoreView};
pub use streams_core::TestDriver;
pub use suppressed::{BufferConfig, BufferFull, Suppressed};
pub use windowed::{Windowed, WindowedSerde};
pub use windows::{
    JoinWindows, SessionWindows, SlidingWindows, TimeWindows, Window, MAX_WINDOWS_PER_RECORD,
};

/// The engine underneath (records, serdes, logs, the runtime, processors of your own), so an
/// application depends on this crate alone; [`prelude`] holds what most of them use.
pub use streams_core;

/// The HTTP query server (feature `http`): store queries and health probes as an axum
/// router, or served on their own.
#[cfg(feature = "http")]
pub use streams_core::http;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Everything an application needs, in one import: the DSL, the runtime ([`Streams`](streams_core::Streams) and
/// its configuration), the logs, records and the built-in serdes; with feature `tokio` (or
/// `http`), [`Shutdown`](streams_core::Shutdown) too.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::prelude::*;
///
/// let dir = tempfile::tempdir()?;
/// let config = StreamsConfig::new("words", dir.path());
/// let log = std::sync::Arc::new(EmbeddedLog::open(config.embedded_log_dir())?);
/// log.create_topic("words", TopicConfig::new(1))?;
/// log.append(&TopicPartition::new("words", 0), &[Record::new("w", "hello", 1)])?;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("words", Consumed::with(StringSerde, StringSerde))
///     .to("copied", Produced::default());
/// let streams = Streams::new(builder.build()?, config, log.clone())?;
/// streams.start()?;
/// streams.wait_until_caught_up(Duration::from_secs(30))?;
/// streams.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod prelude {
    pub use crate::{
        BufferConfig, Consumed, GlobalKTable, Grouped, JoinWindows, KGroupedStream, KGroupedTable,
        KStream, KTable, Materialized, Produced, Repartitioned, SessionWindows, SlidingWindows,
        StreamJoined, StreamsBuilder, Suppressed, TimeWindows, Windowed,
    };
    #[cfg(feature = "tokio")]
    pub use streams_core::Shutdown;
    pub use streams_core::{
        BincodeSerde, BytesSerde, Change, DefaultSerde, EmbeddedLog, Error, I32Serde, I64Serde,
        JsonSerde, Log, MemoryLog, OptionSerde, ProcessingGuarantee, Record, RecordErrorHandler,
        Serde, Streams, StreamsConfig, StreamsState, StringSerde, TestDriver, TopicConfig,
        TopicPartition, Topology, U32Serde, U64Serde, UnitSerde,
    };
    pub use streams_core::{EmbeddedLogConfig, Properties};
    #[cfg(feature = "kafka")]
    pub use streams_core::{KafkaLog, KafkaLogConfig};
}
