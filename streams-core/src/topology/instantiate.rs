//! Turning a topology's node factories into one task's processors.
//!
//! Factories run children first (a parent needs its children to forward to), memoized by node
//! so a node with two parents (a merge) is built once and shared. The order in which nodes
//! finish building, reversed, is a topological order: commits flush parents before children.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::{NodeId, NodeKind, Topology};
use crate::error::{Error, Result};
use crate::ids::{TaskId, TopicName};
use crate::processor::{
    Downstream, GlobalStoreRef, Hooks, KvStoreRef, NodeHooks, Processor, ProcessorRef,
    PunctuationType, RawSource, SessionStoreRef, StoreAccess, WindowStoreRef,
};

/// What a node factory produced.
pub(crate) enum Instantiated {
    /// A source.
    Source(Rc<RefCell<dyn RawSource>>),
    /// A processor or sink: a `ProcessorRef<K, V>` behind `Any`, and its hooks.
    Processor(Box<dyn Any>, Box<dyn NodeHooks>),
}

pub(crate) struct ScheduleSpec {
    pub(crate) node: NodeId,
    pub(crate) interval_ms: i64,
    pub(crate) kind: PunctuationType,
    pub(crate) id: u32,
}

/// One task's view of the topology while its processors are built: the stores it owns and
/// the schedules processors register. Node factories receive it.
pub struct Instantiation<'a> {
    topology: &'a Topology,
    application_id: &'a str,
    task_id: TaskId,
    stores: &'a dyn StoreAccess,
    current: NodeId,
    built: HashMap<NodeId, Box<dyn Any>>,
    pub(crate) hooks: Vec<(NodeId, Box<dyn NodeHooks>)>,
    pub(crate) sources: Vec<(NodeId, Rc<RefCell<dyn RawSource>>)>,
    pub(crate) schedules: Vec<ScheduleSpec>,
}

impl<'a> Instantiation<'a> {
    pub(crate) fn new(
        topology: &'a Topology,
        application_id: &'a str,
        task_id: TaskId,
        stores: &'a dyn StoreAccess,
    ) -> Self {
        Instantiation {
            topology,
            application_id,
            task_id,
            stores,
            current: 0,
            built: HashMap::new(),
            hooks: Vec::new(),
            sources: Vec::new(),
            schedules: Vec::new(),
        }
    }

    /// Builds `node` (and, first, everything below it) unless already built.
    pub(crate) fn build(&mut self, node: NodeId) -> Result<()> {
        if self.built.contains_key(&node) || self.sources.iter().any(|(n, _)| *n == node) {
            return Ok(());
        }
        let factory = self.topology.nodes[node].factory.clone();
        let saved = std::mem::replace(&mut self.current, node);
        let made = factory(self);
        self.current = saved;
        match made? {
            Instantiated::Source(s) => self.sources.push((node, s)),
            Instantiated::Processor(any, hooks) => {
                self.built.insert(node, any);
                self.hooks.push((node, hooks));
            }
        }
        Ok(())
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        self.application_id
    }

    /// The task being built.
    pub fn task_id(&self) -> TaskId {
        self.task_id
    }

    /// The name of the node being built.
    pub fn node_name(&self) -> &str {
        &self.topology.nodes[self.current].name
    }

    /// The real name of a topic for this application.
    pub fn resolve_topic(&self, topic: &TopicName) -> String {
        topic.resolve(self.application_id)
    }

    /// The children of the node being built, built first.
    pub fn downstream<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
    ) -> Result<Downstream<K, V>> {
        let me = self.current;
        let children = self.topology.children[me].clone();
        let mut refs = Vec::with_capacity(children.len());
        for child in children {
            if matches!(self.topology.nodes[child].kind, NodeKind::Source { .. }) {
                continue;
            }
            self.build(child)?;
            let any = self
                .built
                .get(&child)
                .ok_or_else(|| self.mismatch(me, child))?;
            let r = any
                .downcast_ref::<ProcessorRef<K, V>>()
                .ok_or_else(|| self.mismatch(me, child))?;
            refs.push(r.clone());
        }
        Ok(Downstream::new(refs))
    }

    fn mismatch(&self, parent: NodeId, child: NodeId) -> Error {
        Error::Config {
            key: format!("node `{}`", self.topology.nodes[child].name),
            reason: format!(
                "does not take the record type that `{}` forwards",
                self.topology.nodes[parent].name
            ),
        }
    }

    pub(crate) fn source(&mut self, s: impl RawSource + 'static) -> Instantiated {
        Instantiated::Source(Rc::new(RefCell::new(s)))
    }

    pub(crate) fn processor<K: 'static, V: 'static, P: Processor<K, V> + 'static>(
        &mut self,
        p: P,
    ) -> Instantiated {
        let r: ProcessorRef<K, V> = Rc::new(RefCell::new(p));
        Instantiated::Processor(Box::new(r.clone()), Box::new(Hooks(r)))
    }

    fn check_store_access(&self, name: &str) -> Result<()> {
        if self.topology.nodes[self.current]
            .stores
            .iter()
            .any(|s| s == name)
        {
            Ok(())
        } else {
            Err(Error::Config {
                key: format!("node `{}`", self.node_name()),
                reason: format!("uses store `{name}` without being connected to it"),
            })
        }
    }

    /// A key-value store connected to the node being built. When the store is cached
    /// ([`StoreSpec::cached`](crate::StoreSpec)), the node owns the changes its cache writes
    /// through: it takes them ([`state_store::StateStore::take_flushed`]) after each write
    /// and in [`Processor::flush`], and forwards them; a commit drops what is left.
    pub fn kv_store(&self, name: &str) -> Result<KvStoreRef> {
        self.check_store_access(name)?;
        self.stores.kv(name)
    }

    /// A global store: any node may read it.
    pub fn global_store(&self, name: &str) -> Result<GlobalStoreRef> {
        self.stores.global(name)
    }

    /// A window store connected to the node being built; when cached, its flushed changes
    /// are the node's to take, as with [`Instantiation::kv_store`].
    pub fn window_store(&self, name: &str) -> Result<WindowStoreRef> {
        self.check_store_access(name)?;
        self.stores.window(name)
    }

    /// A session store connected to the node being built.
    pub fn session_store(&self, name: &str) -> Result<SessionStoreRef> {
        self.check_store_access(name)?;
        self.stores.session(name)
    }

    /// Asks for [`Processor::punctuate`] with `id` every `interval_ms` of stream or wall-clock
    /// time. As in Kafka Streams, a stream-time schedule first fires on the task's first
    /// record, a wall-clock schedule one interval after the task opens.
    pub fn schedule(&mut self, interval_ms: i64, kind: PunctuationType, id: u32) -> Result<()> {
        if interval_ms <= 0 {
            return Err(Error::Config {
                key: format!("punctuation of `{}`", self.node_name()),
                reason: format!("interval must be positive, got {interval_ms} ms"),
            });
        }
        self.schedules.push(ScheduleSpec {
            node: self.current,
            interval_ms,
            kind,
            id,
        });
        Ok(())
    }
}
