//! Processors: the nodes records flow through inside a task.
//!
//! Records pass between the processors of one sub-topology as typed values ([`Rec`]), with no
//! serialization: a processor owns a [`Downstream`] of its children and calls
//! [`Downstream::forward`]. Bytes appear only at sources (which decode) and sinks (which encode).
//! Everything here runs on one stream thread: processors are neither `Send` nor `Sync`, and a
//! task that moves to another thread is rebuilt there from the topology.

mod collector;
mod context;
mod metrics;
mod nodes;
mod stores;

use std::cell::RefCell;
use std::rc::Rc;

pub(crate) use collector::{ChangelogBuffer, Output, RecordCollector};
pub use context::{ProcessorContext, PunctuationType, RecordMeta};
pub use metrics::TaskMetrics;
pub use nodes::SinkPartitioner;
pub(crate) use nodes::{Hooks, NodeHooks, RawSource, SinkNode, SourceNode};
pub(crate) use stores::StoreAccess;
pub use stores::{GlobalStoreRef, KvStoreRef, SessionStoreRef, WindowStoreRef};

use crate::error::Result;

/// A typed record inside a sub-topology: key, value and timestamp (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl<K, V> Rec<K, V> {
    /// A record.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Rec {
            key,
            value,
            timestamp,
        }
    }

    /// The same record with another key and value.
    pub fn with<K2, V2>(&self, key: K2, value: V2) -> Rec<K2, V2> {
        Rec {
            key,
            value,
            timestamp: self.timestamp,
        }
    }
}

/// A table update: the new value and, where known, the old one (`None`: absent or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// The value after the update; `None` is a deletion.
    pub new: Option<V>,
    /// The value before the update.
    pub old: Option<V>,
}

impl<V> Change<V> {
    /// An update from `old` to `new`.
    pub fn new(new: Option<V>, old: Option<V>) -> Self {
        Change { new, old }
    }
}

/// A node of a sub-topology that consumes typed records.
pub trait Processor<K, V> {
    /// Handles one record, forwarding whatever it produces to its children.
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()>;

    /// Called on commit, parents before children: forward anything held back (cached
    /// aggregates) so the commit covers it.
    fn flush(&mut self, _ctx: &mut ProcessorContext<'_>) -> Result<()> {
        Ok(())
    }

    /// Called for each schedule the processor registered, with the schedule's id and the time
    /// (stream or wall-clock) at which it fired.
    fn punctuate(
        &mut self,
        _ctx: &mut ProcessorContext<'_>,
        _schedule: u32,
        _timestamp: i64,
    ) -> Result<()> {
        Ok(())
    }
}

/// A processor shared by reference: what parents hold of their children.
pub(crate) type ProcessorRef<K, V> = Rc<RefCell<dyn Processor<K, V>>>;

/// The children of a processor, all taking the same record type.
pub struct Downstream<K, V> {
    children: Vec<ProcessorRef<K, V>>,
}

impl<K, V> Default for Downstream<K, V> {
    fn default() -> Self {
        Downstream {
            children: Vec::new(),
        }
    }
}

impl<K: Clone, V: Clone> Downstream<K, V> {
    /// Children to forward to.
    pub fn new(children: Vec<ProcessorRef<K, V>>) -> Self {
        Downstream { children }
    }

    /// One downstream per child, in the order the children were added (for operators that
    /// route each record to one child, like `split`).
    pub fn into_each(self) -> Vec<Downstream<K, V>> {
        self.children
            .into_iter()
            .map(|c| Downstream { children: vec![c] })
            .collect()
    }

    /// Whether there is nobody to forward to.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Sends `rec` to every child, cloning it for all but the last.
    pub fn forward(&self, ctx: &mut ProcessorContext<'_>, rec: Rec<K, V>) -> Result<()> {
        if let Some((last, rest)) = self.children.split_last() {
            for child in rest {
                child.borrow_mut().process(ctx, rec.clone())?;
            }
            last.borrow_mut().process(ctx, rec)?;
        }
        Ok(())
    }
}
