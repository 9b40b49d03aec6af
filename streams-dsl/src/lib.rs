//! The typed DSL of the stream-processing engine: [`StreamsBuilder`], [`KStream`],
//! [`KTable`], [`KGroupedStream`], and the options that go with them.
//!
//! Each DSL call adds nodes to a `streams_core::TopologyBuilder`; `StreamsBuilder::build()`
//! yields the `Topology` that tasks run. Records pass between operators of one sub-topology as
//! typed values; serdes are needed only where bytes appear (sources, sinks, repartition topics,
//! stores), and an operator uses the serdes the stream already knows unless given others.
//!
//! Start with `use streams_dsl::prelude::*;`.

#![warn(missing_docs)]

mod builder;
mod kgrouped;
mod kstream;
mod ktable;
mod ops;
mod options;

pub use builder::StreamsBuilder;
pub use kgrouped::KGroupedStream;
pub use kstream::KStream;
pub use ktable::KTable;
pub use ops::BranchPredicate;
pub use options::{Consumed, Grouped, Materialized, Produced, Repartitioned};
pub use streams_core::TestDriver;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Everything a pipeline needs, in one import.
pub mod prelude {
    pub use crate::{
        Consumed, Grouped, KGroupedStream, KStream, KTable, Materialized, Produced, Repartitioned,
        StreamsBuilder,
    };
    pub use streams_core::{Change, DefaultSerde, Serde, Topology};
}
