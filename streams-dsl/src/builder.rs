//! The entry point of the DSL: [`StreamsBuilder`] starts streams and tables on a shared
//! build graph (see `graph.rs`) and `build()` turns it into a [`Topology`].
//!
//! DSL calls cannot fail one by one: the first error (a bad name, a missing serde) is kept and
//! returned by `build()`, so a pipeline reads as one expression.

use streams_core::{Result, TopicName, Topology};

use crate::graph::{Graph, GraphRef};
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::options::{Consumed, Materialized};

/// Builds a topology with the typed DSL.
///
/// ```
/// use streams_dsl::prelude::*;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("words", Consumed::default())
///     .filter(|_, v| !v.is_empty())
///     .to("non-empty", Produced::default());
/// let topology = builder.build()?;
/// assert!(topology.describe().contains("Sub-topology: 0"));
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct StreamsBuilder {
    pub(crate) graph: GraphRef,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StreamsBuilder {
            graph: Graph::new_ref(),
        }
    }

    /// A stream of the records of `topic`.
    pub fn stream<K, V>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        self.stream_from(vec![TopicName::User(topic.to_string())], consumed)
    }

    /// A stream of the records of several topics, merged.
    pub fn streams<K, V>(&self, topics: &[&str], consumed: Consumed<K, V>) -> KStream<K, V>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        let topics = topics
            .iter()
            .map(|t| TopicName::User(t.to_string()))
            .collect();
        self.stream_from(topics, consumed)
    }

    pub(crate) fn stream_from<K, V>(
        &self,
        topics: Vec<TopicName>,
        consumed: Consumed<K, V>,
    ) -> KStream<K, V>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        KStream::source(&self.graph, topics, consumed)
    }

    /// A table of the latest value per key of the (compacted) topic `topic`, materialized in a
    /// store (named by `materialized`, or internal). Each row keeps the timestamp of the record
    /// that wrote it, and its updates are forwarded with that timestamp.
    pub fn table<K, V>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        KTable::source(
            &self.graph,
            TopicName::User(topic.to_string()),
            consumed,
            materialized,
        )
    }

    /// Freezes the graph into a topology, or returns the first error any operator hit.
    pub fn build(self) -> Result<Topology> {
        Graph::build(self.graph)
    }
}
