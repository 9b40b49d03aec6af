//! The store handles processors hold, and how a node factory asks its task for them.
//!
//! A task owns its stores; its processors hold shared references to them. Everything runs on
//! the task's one thread (see the crate docs on threading), so a task store is an
//! `Rc<RefCell<_>>`. Global stores are read by every task of every thread, so they sit behind
//! a mutex.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use parking_lot::Mutex;
use state_store::{KeyValueStore, SessionStore, WindowStore};

use crate::error::Result;

/// A key-value store as processors hold it.
pub type KvStoreRef = Rc<RefCell<Box<dyn KeyValueStore>>>;
/// A window store as processors hold it.
pub type WindowStoreRef = Rc<RefCell<Box<dyn WindowStore>>>;
/// A session store as processors hold it.
pub type SessionStoreRef = Rc<RefCell<Box<dyn SessionStore>>>;

/// One entry a store's cache flushed or evicted: the merged change of a key since the last
/// flush, and the timestamp of its latest write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushedChange {
    /// Raw store key.
    pub key: Vec<u8>,
    /// The value written; `None` for a deletion.
    pub new: Option<Vec<u8>>,
    /// The value the store held before.
    pub old: Option<Vec<u8>>,
    /// Timestamp of the record that made the change.
    pub timestamp: i64,
}

/// Changes waiting to be forwarded by the processor that owns a cached store.
pub type FlushQueue = Arc<Mutex<VecDeque<FlushedChange>>>;

/// A global store, shared by every task.
pub type GlobalStoreRef = Arc<Mutex<Box<dyn KeyValueStore>>>;

/// What a node factory may ask of the task it is built for: the stores the task opened.
/// Implemented by the task layer; the topology layer only sees this trait.
pub(crate) trait StoreAccess {
    /// The key-value store `name`.
    fn kv(&self, name: &str) -> Result<KvStoreRef>;
    /// The window store `name`.
    fn window(&self, name: &str) -> Result<WindowStoreRef>;
    /// The session store `name`.
    fn session(&self, name: &str) -> Result<SessionStoreRef>;
    /// The queue of changes the cache of store `name` flushed.
    fn flush_queue(&self, name: &str) -> Result<FlushQueue>;
    /// The global store `name`.
    fn global(&self, name: &str) -> Result<GlobalStoreRef>;
}
