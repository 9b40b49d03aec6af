//! Topologies: the graph of sources, processors, sinks and stores a task runs.
//!
//! [`TopologyBuilder`] is the low-level, typed way to assemble one (the DSL in `streams-dsl`
//! writes into it). Every node holds a factory, so each task instantiates its own processors
//! and stores from the one shared, immutable [`Topology`]. `build()` splits the graph into
//! sub-topologies (nodes connected without crossing a topic, or sharing a store) and checks
//! names, stores and co-partitioning declarations.

mod describe;
mod instantiate;
mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ids::TopicName;
use crate::processor::{Downstream, Processor};
use crate::processor::{SinkNode, SinkPartitioner, SourceNode};
use crate::serdes::Serde;

pub(crate) use instantiate::Instantiated;
pub use instantiate::Instantiation;
pub use spec::{GlobalStoreSpec, InternalTopicKind, StoreKind, StoreSpec};

/// Index of a node in its topology.
pub type NodeId = usize;

/// A typed handle on a node, naming the type of records it forwards.
pub struct NodeRef<K, V> {
    /// The node.
    pub id: NodeId,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for NodeRef<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for NodeRef<K, V> {}

impl<K, V> NodeRef<K, V> {
    pub(crate) fn new(id: NodeId) -> Self {
        NodeRef {
            id,
            _types: PhantomData,
        }
    }

    /// A reference to no node. Builders return it after an error (which they report);
    /// any node added under it fails with "parent does not exist".
    pub fn dangling() -> Self {
        NodeRef {
            id: NodeId::MAX,
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for NodeRef<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeRef({})", self.id)
    }
}

pub(crate) type Factory = Arc<dyn Fn(&mut Instantiation<'_>) -> Result<Instantiated> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Source { topics: Vec<TopicName> },
    Processor,
    Sink { topic: TopicName },
}

pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<NodeId>,
    pub(crate) stores: Vec<String>,
    pub(crate) factory: Factory,
}

/// A sub-topology: nodes connected without crossing a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTopology {
    /// Its number, from 0, in order of first source.
    pub id: u32,
    /// Its nodes, in insertion order.
    pub nodes: Vec<NodeId>,
    /// Topics its sources read.
    pub source_topics: Vec<TopicName>,
    /// Topics its sinks write.
    pub sink_topics: Vec<TopicName>,
    /// Stores its processors use.
    pub stores: Vec<String>,
}

/// A low-level, typed builder of a [`Topology`].
#[derive(Default)]
pub struct TopologyBuilder {
    nodes: Vec<NodeDef>,
    names: BTreeMap<String, NodeId>,
    stores: BTreeMap<String, StoreSpec>,
    global_stores: BTreeMap<String, GlobalStoreSpec>,
    internal_topics: BTreeMap<String, InternalTopicKind>,
    partition_counts: BTreeMap<String, u32>,
    copartition_groups: Vec<BTreeSet<TopicName>>,
    keyed_by_input: BTreeSet<String>,
}

impl TopologyBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn add_node(
        &mut self,
        name: String,
        kind: NodeKind,
        parents: Vec<NodeId>,
        factory: Factory,
    ) -> Result<NodeId> {
        if self.names.contains_key(&name) {
            return Err(Error::Config {
                key: format!("node `{name}`"),
                reason: "a node with this name already exists; names must be unique".into(),
            });
        }
        for &p in &parents {
            if p >= self.nodes.len() {
                return Err(Error::Config {
                    key: format!("node `{name}`"),
                    reason: format!("parent {p} does not exist"),
                });
            }
            if matches!(self.nodes[p].kind, NodeKind::Sink { .. }) {
                return Err(Error::Config {
                    key: format!("node `{name}`"),
                    reason: format!(
                        "parent `{}` is a sink and forwards nothing",
                        self.nodes[p].name
                    ),
                });
            }
        }
        let id = self.nodes.len();
        self.nodes.push(NodeDef {
            name: name.clone(),
            kind,
            parents,
            stores: Vec::new(),
            factory,
        });
        self.names.insert(name, id);
        Ok(id)
    }

    /// Whether a node name is taken.
    pub fn has_node(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Adds a source reading `topics`, decoding keys and values with the serdes given.
    pub fn add_source<K, V>(
        &mut self,
        name: impl Into<String>,
        topics: Vec<TopicName>,
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
    ) -> Result<NodeRef<K, V>>
    where
        K: Clone + 'static,
        V: Clone + 'static,
    {
        let name = name.into();
        if topics.is_empty() {
            return Err(Error::Config {
                key: format!("source `{name}`"),
                reason: "reads no topic".into(),
            });
        }
        let node_name = name.clone();
        let factory: Factory = Arc::new(move |inst: &mut Instantiation<'_>| {
            let down = inst.downstream::<K, V>()?;
            Ok(inst.source(SourceNode::new(
                node_name.clone(),
                key_serde.clone(),
                value_serde.clone(),
                down,
            )))
        });
        let id = self.add_node(name, NodeKind::Source { topics }, Vec::new(), factory)?;
        Ok(NodeRef::new(id))
    }

    /// Adds a processor taking the records of `parents`. `make` builds one instance per task:
    /// it gets the task's [`Instantiation`] (stores, schedules) and the processor's children.
    pub fn add_processor<K, V, K2, V2, P, F>(
        &mut self,
        name: impl Into<String>,
        parents: &[NodeRef<K, V>],
        make: F,
    ) -> Result<NodeRef<K2, V2>>
    where
        K: 'static,
        V: 'static,
        K2: Clone + 'static,
        V2: Clone + 'static,
        P: Processor<K, V> + 'static,
        F: Fn(&mut Instantiation<'_>, Downstream<K2, V2>) -> Result<P> + Send + Sync + 'static,
    {
        let factory: Factory = Arc::new(move |inst: &mut Instantiation<'_>| {
            let down = inst.downstream::<K2, V2>()?;
            let p = make(inst, down)?;
            Ok(inst.processor::<K, V, P>(p))
        });
        let parents = parents.iter().map(|p| p.id).collect();
        let id = self.add_node(name.into(), NodeKind::Processor, parents, factory)?;
        Ok(NodeRef::new(id))
    }

    /// Adds a sink writing the records of `parents` to `topic`. `partitioner` picks the
    /// partition from the encoded key and value and the partition count; `None` uses Kafka's
    /// default (murmur2 of the key; round-robin for records without a key).
    #[allow(clippy::type_complexity)]
    pub fn add_sink<K, V>(
        &mut self,
        name: impl Into<String>,
        topic: TopicName,
        parents: &[NodeRef<K, V>],
        key_serde: Arc<dyn Serde<K>>,
        value_serde: Arc<dyn Serde<V>>,
        partitioner: Option<SinkPartitioner<K, V>>,
    ) -> Result<NodeId>
    where
        K: 'static,
        V: 'static,
    {
        let name = name.into();
        let node_name = name.clone();
        let sink_topic = topic.clone();
        let factory: Factory = Arc::new(move |inst: &mut Instantiation<'_>| {
            let topic = inst.resolve_topic(&sink_topic);
            Ok(inst.processor::<K, V, _>(SinkNode::new(
                node_name.clone(),
                topic,
                key_serde.clone(),
                value_serde.clone(),
                partitioner.clone(),
            )))
        });
        let parents: Vec<NodeId> = parents.iter().map(|p| p.id).collect();
        self.add_node(name, NodeKind::Sink { topic }, parents, factory)
    }

    /// Registers a store. Registering the same spec twice is allowed; a different spec under
    /// the same name is an error.
    pub fn add_store(&mut self, spec: StoreSpec) -> Result<()> {
        if let Some(existing) = self.stores.get(&spec.name) {
            if existing != &spec {
                return Err(Error::Config {
                    key: format!("store `{}`", spec.name),
                    reason: "registered twice with different settings".into(),
                });
            }
            return Ok(());
        }
        if let Some(TopicName::Internal(n)) = spec.changelog() {
            self.internal_topics.insert(n, InternalTopicKind::Changelog);
        }
        self.stores.insert(spec.name.clone(), spec);
        Ok(())
    }

    /// Declares that `store` (registered) holds the records of its task under their own keys,
    /// as the DSL's tables and aggregations do. A query for a key of such a store then asks
    /// only the task of the partition the key is written to, when the topology writes the
    /// store's input itself (a repartition topic, partitioned by murmur2 of the key). For any
    /// other store a key is looked for in that task first, then in every other task of the
    /// store, because its keys may lie anywhere.
    pub fn store_keyed_by_input(&mut self, store: &str) -> Result<()> {
        if !self.stores.contains_key(store) {
            return Err(Error::Config {
                key: format!("store `{store}`"),
                reason: "is not registered".into(),
            });
        }
        self.keyed_by_input.insert(store.to_string());
        Ok(())
    }

    /// Registers a global store: a copy of every partition of `spec.topic` that every task
    /// can read (a `GlobalKTable`).
    pub fn add_global_store(&mut self, spec: GlobalStoreSpec) -> Result<()> {
        if self.stores.contains_key(&spec.name)
            || self
                .global_stores
                .get(&spec.name)
                .is_some_and(|existing| existing != &spec)
        {
            return Err(Error::Config {
                key: format!("global store `{}`", spec.name),
                reason: "the name is already used by another store".into(),
            });
        }
        self.global_stores.insert(spec.name.clone(), spec);
        Ok(())
    }

    /// Gives a node access to a registered store.
    pub fn connect_store(&mut self, node: NodeId, store: &str) -> Result<()> {
        if !self.stores.contains_key(store) {
            return Err(Error::Config {
                key: format!("store `{store}`"),
                reason: "is not registered".into(),
            });
        }
        let def = self.nodes.get_mut(node).ok_or_else(|| Error::Config {
            key: format!("node {node}"),
            reason: "does not exist".into(),
        })?;
        if !def.stores.iter().any(|s| s == store) {
            def.stores.push(store.to_string());
        }
        Ok(())
    }

    /// Declares an internal topic (its real name gets the application id as prefix).
    pub fn add_internal_topic(&mut self, name: impl Into<String>, kind: InternalTopicKind) {
        self.internal_topics.insert(name.into(), kind);
    }

    /// Gives the internal repartition topic `name` a fixed partition count, instead of the
    /// one the application would choose at start (see `Repartitioned` in the DSL).
    pub fn set_partition_count(&mut self, name: &str, partitions: u32) -> Result<()> {
        if self.internal_topics.get(name) != Some(&InternalTopicKind::Repartition) {
            return Err(Error::Config {
                key: format!("topic `{name}`"),
                reason: "only a repartition topic of the topology can be given a partition count"
                    .into(),
            });
        }
        if partitions == 0 {
            return Err(Error::Config {
                key: format!("partitions of `{name}`"),
                reason: "must be at least 1".into(),
            });
        }
        self.partition_counts.insert(name.to_string(), partitions);
        Ok(())
    }

    /// Declares topics that must have the same partition count (the inputs of a join).
    pub fn copartition(&mut self, topics: impl IntoIterator<Item = TopicName>) {
        self.copartition_groups.push(topics.into_iter().collect());
    }

    /// The name of a node.
    pub fn node_name(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(node).map(|n| n.name.as_str())
    }

    /// Source topics that feed `node`, following parents back to sources.
    pub fn source_topics_of(&self, node: NodeId) -> BTreeSet<TopicName> {
        let mut out = BTreeSet::new();
        let mut stack = vec![node];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            if let Some(def) = self.nodes.get(n) {
                if let NodeKind::Source { topics } = &def.kind {
                    out.extend(topics.iter().cloned());
                }
                stack.extend(def.parents.iter().copied());
            }
        }
        out
    }

    /// Checks the graph and freezes it.
    pub fn build(self) -> Result<Topology> {
        let n = self.nodes.len();
        // Union-find over parent edges and shared stores.
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            let mut c = x;
            while p[c] != r {
                let next = p[c];
                p[c] = r;
                c = next;
            }
            r
        }
        let union = |p: &mut Vec<usize>, a: usize, b: usize| {
            let (ra, rb) = (find(p, a), find(p, b));
            if ra != rb {
                p[ra.max(rb)] = ra.min(rb);
            }
        };
        let mut store_owner: BTreeMap<&str, usize> = BTreeMap::new();
        for (id, def) in self.nodes.iter().enumerate() {
            for &p in &def.parents {
                union(&mut parent, id, p);
            }
            for s in &def.stores {
                match store_owner.get(s.as_str()) {
                    Some(&other) => union(&mut parent, id, other),
                    None => {
                        store_owner.insert(s, id);
                    }
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
        for id in 0..n {
            let root = find(&mut parent, id);
            groups.entry(root).or_default().push(id);
        }
        let mut subtopologies = Vec::new();
        for (_, nodes) in groups {
            let mut source_topics = Vec::new();
            let mut sink_topics = Vec::new();
            let mut stores = BTreeSet::new();
            for &id in &nodes {
                let def = &self.nodes[id];
                match &def.kind {
                    NodeKind::Source { topics } => source_topics.extend(topics.iter().cloned()),
                    NodeKind::Sink { topic } => sink_topics.push(topic.clone()),
                    NodeKind::Processor => {}
                }
                stores.extend(def.stores.iter().cloned());
            }
            if source_topics.is_empty() {
                let names: Vec<&str> = nodes.iter().map(|&i| self.nodes[i].name.as_str()).collect();
                return Err(Error::Config {
                    key: format!("nodes {names:?}"),
                    reason: "are not connected to any source".into(),
                });
            }
            subtopologies.push(SubTopology {
                id: subtopologies.len() as u32,
                nodes,
                source_topics,
                sink_topics,
                stores: stores.into_iter().collect(),
            });
        }
        let mut topic_owner: BTreeMap<&TopicName, u32> = BTreeMap::new();
        for st in &subtopologies {
            for t in &st.source_topics {
                if let Some(other) = topic_owner.insert(t, st.id) {
                    if other != st.id {
                        return Err(Error::Config {
                            key: format!("topic `{t}`"),
                            reason: format!(
                                "is read by sub-topologies {other} and {}; a topic can feed one sub-topology",
                                st.id
                            ),
                        });
                    }
                }
            }
        }
        let mut children = vec![Vec::new(); n];
        for (id, def) in self.nodes.iter().enumerate() {
            for &p in &def.parents {
                children[p].push(id);
            }
        }
        Ok(Topology {
            nodes: self.nodes,
            children,
            stores: self.stores,
            global_stores: self.global_stores,
            internal_topics: self.internal_topics,
            partition_counts: self.partition_counts,
            copartition_groups: self.copartition_groups,
            subtopologies,
            keyed_by_input: self.keyed_by_input,
        })
    }
}

/// An immutable, shareable processing graph. Tasks are instantiated from it.
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) children: Vec<Vec<NodeId>>,
    pub(crate) stores: BTreeMap<String, StoreSpec>,
    pub(crate) global_stores: BTreeMap<String, GlobalStoreSpec>,
    pub(crate) internal_topics: BTreeMap<String, InternalTopicKind>,
    pub(crate) partition_counts: BTreeMap<String, u32>,
    pub(crate) copartition_groups: Vec<BTreeSet<TopicName>>,
    pub(crate) subtopologies: Vec<SubTopology>,
    /// Stores declared with [`TopologyBuilder::store_keyed_by_input`].
    pub(crate) keyed_by_input: BTreeSet<String>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Topology {
    /// The sub-topologies, in order.
    pub fn subtopologies(&self) -> &[SubTopology] {
        &self.subtopologies
    }

    /// Store specifications by name.
    pub fn stores(&self) -> &BTreeMap<String, StoreSpec> {
        &self.stores
    }

    /// Global store specifications by name.
    pub fn global_stores(&self) -> &BTreeMap<String, GlobalStoreSpec> {
        &self.global_stores
    }

    /// Internal topics (without the application-id prefix) and what they are for.
    pub fn internal_topics(&self) -> &BTreeMap<String, InternalTopicKind> {
        &self.internal_topics
    }

    /// The partition count given to an internal topic with
    /// [`TopologyBuilder::set_partition_count`], if any.
    pub fn partition_count_of(&self, internal_topic: &str) -> Option<u32> {
        self.partition_counts.get(internal_topic).copied()
    }

    /// Groups of topics that must have equal partition counts.
    pub fn copartition_groups(&self) -> &[BTreeSet<TopicName>] {
        &self.copartition_groups
    }

    /// Checks that every co-partitioned group (the inputs of a join) has one partition count,
    /// given a lookup of partition counts by resolved topic name. Internal repartition topics
    /// that do not exist yet are skipped: the runtime creates them with the right count.
    pub fn check_copartitioning(
        &self,
        application_id: &str,
        partitions: impl Fn(&str) -> Option<u32>,
    ) -> Result<()> {
        for group in &self.copartition_groups {
            let counts: Vec<(String, u32)> = group
                .iter()
                .map(|t| t.resolve(application_id))
                .filter_map(|t| partitions(&t).map(|n| (t, n)))
                .collect();
            if let Some((first, n)) = counts.first() {
                if let Some((other, m)) = counts.iter().find(|(_, m)| m != n) {
                    return Err(Error::Config {
                        key: format!("co-partitioned topics `{first}` and `{other}`"),
                        reason: format!(
                            "are joined but have {n} and {m} partitions; joined inputs need equal \
                             partition counts (repartition one side to match)"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The name of a node.
    pub fn node_name(&self, id: NodeId) -> &str {
        &self.nodes[id].name
    }

    /// User topics read by any source (they must exist before the application starts).
    pub fn user_source_topics(&self) -> BTreeSet<String> {
        self.subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter())
            .filter_map(|t| match t {
                TopicName::User(n) => Some(n.clone()),
                TopicName::Internal(_) => None,
            })
            .collect()
    }

    /// The sub-topology that reads `topic`.
    pub fn subtopology_of_topic(&self, topic: &TopicName) -> Option<u32> {
        self.subtopologies
            .iter()
            .find(|s| s.source_topics.contains(topic))
            .map(|s| s.id)
    }
}
