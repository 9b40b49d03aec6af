//! The entry point of the DSL: [`StreamsBuilder`] collects operators into a logical graph
//! and `build()` turns it into a [`Topology`].
//!
//! DSL calls cannot fail one by one: the first error (a bad name, a missing serde) is kept and
//! returned by `build()`, so a pipeline reads as one expression.

use std::cell::RefCell;
use std::rc::Rc;

use streams_core::{
    Downstream, Error, Instantiation, NodeRef, Processor, Result, TopicName, Topology,
    TopologyBuilder,
};

use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::options::{Consumed, Materialized};

pub(crate) struct State {
    pub(crate) topo: TopologyBuilder,
    index: usize,
    pub(crate) error: Option<Error>,
}

impl State {
    /// A node name: the user's, or `<PREFIX>-<10-digit index>` as Kafka Streams names them.
    pub(crate) fn name(&mut self, prefix: &str, given: Option<&str>) -> String {
        match given {
            Some(n) => n.to_string(),
            None => {
                let n = format!("{prefix}-{:010}", self.index);
                self.index += 1;
                n
            }
        }
    }

    /// Keeps the first error.
    pub(crate) fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Adds a processor under `parents`, named by the user or after `prefix`. On error, keeps
    /// it and returns a dangling node, so the pipeline can go on until `build()` reports it.
    pub(crate) fn add_processor<K, V, K2, V2, P, F>(
        &mut self,
        prefix: &str,
        name: Option<&str>,
        parents: &[NodeRef<K, V>],
        make: F,
    ) -> NodeRef<K2, V2>
    where
        K: 'static,
        V: 'static,
        K2: Clone + 'static,
        V2: Clone + 'static,
        P: Processor<K, V> + 'static,
        F: Fn(&mut Instantiation<'_>, Downstream<K2, V2>) -> Result<P> + Send + Sync + 'static,
    {
        let name = self.name(prefix, name);
        match self.topo.add_processor(name, parents, make) {
            Ok(n) => n,
            Err(e) => {
                self.fail(e);
                NodeRef::dangling()
            }
        }
    }

    pub(crate) fn missing_serde(&mut self, operator: &str, what: &str) {
        self.fail(Error::Config {
            key: format!("operator `{operator}`"),
            reason: format!(
                "needs a {what} serde: pass one in its options or earlier in the pipeline"
            ),
        });
    }
}

pub(crate) type Shared = Rc<RefCell<State>>;

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
    pub(crate) state: Shared,
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
            state: Rc::new(RefCell::new(State {
                topo: TopologyBuilder::new(),
                index: 0,
                error: None,
            })),
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
        KStream::source(&self.state, topics, consumed)
    }

    /// A table of the latest value per key of the (compacted) topic `topic`, materialized in a
    /// store (named by `materialized`, or internal).
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
            &self.state,
            TopicName::User(topic.to_string()),
            consumed,
            materialized,
        )
    }

    /// Freezes the graph into a topology, or returns the first error any operator hit.
    pub fn build(self) -> Result<Topology> {
        let state = Rc::try_unwrap(self.state)
            .map(RefCell::into_inner)
            .unwrap_or_else(|shared| {
                // Streams and tables still hold the builder: take the graph out of it.
                let mut s = shared.borrow_mut();
                State {
                    topo: std::mem::take(&mut s.topo),
                    index: s.index,
                    error: s.error.take(),
                }
            });
        if let Some(e) = state.error {
            return Err(e);
        }
        state.topo.build()
    }
}
