//! The build graph: the one place where DSL calls are written into the topology.
//!
//! The handles ([`KStream`](crate::KStream), [`KTable`](crate::KTable), the grouped and
//! windowed streams) describe what the user asked for and hand it to the [`Graph`]: node
//! names, processors, sources and sinks, stores and which nodes use them, co-partitioning of
//! joined inputs, merges and repartition topics. The graph keeps the first error any of these
//! hit and returns it from `build()`, so a pipeline reads as one expression; after an error a
//! call returns a dangling node (`NodeRef::dangling`), under which every later node fails too.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use streams_core::{
    Downstream, Error, GlobalStoreSpec, Instantiation, InternalTopicKind, NodeId, NodeRef,
    Processor, Result, Serde, StoreSpec, TopicName, Topology, TopologyBuilder,
};

use crate::ops::passthrough::Passthrough;

/// The logical graph of one [`StreamsBuilder`](crate::StreamsBuilder), shared by every
/// handle built from it.
pub(crate) type GraphRef = Rc<RefCell<Graph>>;

/// The topology being built, node names handed out so far, and the first error.
#[derive(Default)]
pub(crate) struct Graph {
    topo: TopologyBuilder,
    index: usize,
    error: Option<Error>,
}

impl Graph {
    /// A new, empty graph to share between handles.
    pub(crate) fn new_ref() -> GraphRef {
        Rc::new(RefCell::new(Graph::default()))
    }

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

    /// Keeps the error of `r`, if any.
    fn keep(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.fail(e);
        }
    }

    /// Keeps a configuration error about `key`.
    pub(crate) fn invalid(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.fail(Error::Config {
            key: key.into(),
            reason: reason.into(),
        });
    }

    /// Keeps the error that `operator` has no serde for `what`.
    pub(crate) fn missing_serde(&mut self, operator: &str, what: &str) {
        self.invalid(
            format!("operator `{operator}`"),
            format!("needs a {what} serde: pass one in its options or earlier in the pipeline"),
        );
    }

    /// Adds a source of `topics`; a dangling node on error.
    pub(crate) fn add_source<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: String,
        topics: Vec<TopicName>,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
    ) -> NodeRef<K, V> {
        match self.topo.add_source(name, topics, key_serde, value_serde) {
            Ok(n) => n,
            Err(e) => {
                self.fail(e);
                NodeRef::dangling()
            }
        }
    }

    /// Adds a processor under `parents`, named by the user or after `prefix`; a dangling node
    /// on error.
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

    /// Adds a sink writing `parent`'s records to `topic`.
    pub(crate) fn add_sink<K: 'static, V: 'static>(
        &mut self,
        name: String,
        topic: TopicName,
        parent: NodeRef<K, V>,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
    ) {
        let r = self
            .topo
            .add_sink(name, topic, &[parent], key_serde, value_serde, None)
            .map(|_| ());
        self.keep(r);
    }

    /// Merges `parents` into one node that forwards whatever any of them forwards.
    pub(crate) fn merge<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        prefix: &str,
        name: Option<&str>,
        parents: &[NodeRef<K, V>],
    ) -> NodeRef<K, V> {
        self.add_processor(prefix, name, parents, |_, down| Ok(Passthrough { down }))
    }

    /// Registers a store of the topology.
    pub(crate) fn add_store(&mut self, spec: StoreSpec) {
        let r = self.topo.add_store(spec);
        self.keep(r);
    }

    /// Registers a global store.
    pub(crate) fn add_global_store(&mut self, spec: GlobalStoreSpec) {
        let r = self.topo.add_global_store(spec);
        self.keep(r);
    }

    /// Gives `node` access to `store`.
    pub(crate) fn connect_store(&mut self, node: NodeId, store: &str) {
        let r = self.topo.connect_store(node, store);
        self.keep(r);
    }

    /// Registers `spec` and gives `node` access to it.
    pub(crate) fn add_store_for(&mut self, node: NodeId, spec: StoreSpec) {
        let name = spec.name.clone();
        self.add_store(spec);
        self.connect_store(node, &name);
    }

    /// [`Graph::add_store_for`] for a store that holds its task's records under their own
    /// keys (a table or an aggregation), so queries can find a key by its partition.
    pub(crate) fn add_keyed_store_for(&mut self, node: NodeId, spec: StoreSpec) {
        let name = spec.name.clone();
        self.add_store_for(node, spec);
        let r = self.topo.store_keyed_by_input(&name);
        self.keep(r);
    }

    /// Declares that the inputs of `a` and `b` must be co-partitioned (they are joined).
    pub(crate) fn copartition(&mut self, a: NodeId, b: NodeId) {
        let mut topics = self.topo.source_topics_of(a);
        topics.extend(self.topo.source_topics_of(b));
        self.topo.copartition(topics);
    }

    /// Registers an internal repartition topic named `<base>-repartition` and returns its name.
    pub(crate) fn repartition_topic(&mut self, base: &str) -> String {
        let topic = format!("{base}-repartition");
        self.topo
            .add_internal_topic(topic.clone(), InternalTopicKind::Repartition);
        topic
    }

    /// Gives the repartition topic that the source `node` reads a fixed partition count.
    pub(crate) fn set_partitions(&mut self, node: NodeId, partitions: u32) {
        for topic in self.topo.source_topics_of(node) {
            if let TopicName::Internal(name) = topic {
                let r = self.topo.set_partition_count(&name, partitions);
                self.keep(r);
            }
        }
    }

    /// Freezes the graph into a topology, or returns the first error any operator hit.
    pub(crate) fn build(graph: GraphRef) -> Result<Topology> {
        let graph = Rc::try_unwrap(graph)
            .map(RefCell::into_inner)
            // Streams and tables still hold the builder: take the graph out of it.
            .unwrap_or_else(|shared| std::mem::take(&mut *shared.borrow_mut()));
        if let Some(e) = graph.error {
            return Err(e);
        }
        graph.topo.build()
    }
}
