//! The throughput harness and helpers shared by the benchmarks in `benches/`.
//!
//! Every scenario runs the engine and, in the same process right after, a hand-written
//! baseline over the same input in the same embedded log (K1, K2: on the same Kafka broker);
//! the figure that matters is the ratio of the two. Input is written before timing starts; the engine's timed phase ends when
//! every input offset is committed (and so every output appended), the baseline's when its
//! loop has written its last output or flushed its last state. Both sides produce a
//! [`Digest`] of their results, and a scenario whose digests differ is reported as a failure:
//! that is the correctness check the tests (and CI) run at a tiny size.
//!
//! The `throughput` binary runs each scenario in a child process of its own, so that the peak
//! RSS it reports (`VmHWM`) belongs to that scenario alone.

#![warn(missing_docs)]

mod baseline;
mod kafka;
mod kafka_baseline;
mod report;
mod rss;
mod scenario;
mod workload;

pub use baseline::{window_digest_key, CountOptions};
pub use report::{Format, Row, Summary};
pub use rss::peak_rss_mib;
pub use scenario::{run_scenario, Outcome, Params, Scenario};
pub use workload::{mix64, user_key, Digest, Keys, SplitMix, Workload, BASE_TIMESTAMP};

/// What can stop a benchmark run. `Display` prints this level (and a leaf error's text); the
/// engine's error is the source: print the whole with `streams_core::Report`.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The engine (or its log) failed.
    #[error("engine")]
    Engine(#[from] streams_core::Error),
    /// A serde failed in a baseline.
    #[error("serde: {0}")]
    Serde(#[from] streams_core::SerdeError),
    /// RocksDB failed in a baseline.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// librdkafka failed in a baseline.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The harness was used wrongly, or a child process misbehaved.
    #[error("{0}")]
    Harness(String),
}
