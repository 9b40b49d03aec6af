//! The store handles processors hold, and how a node factory asks its task for them.
//!
//! A task owns its stores; its processors hold shared references to them. Everything runs on
//! the task's one thread (see the crate docs on threading), so a task store is an
//! `Rc<RefCell<_>>`. Global stores are read by every task of every thread, so they sit behind
//! a mutex.
//!
//! A cached store keeps the changes its cache writes through (on commit, or when a use of the
//! store evicts them) for the one processor that owns it: that processor takes them from its
//! own handle ([`state_store::StateStore::take_flushed`]) right after its write or flush and
//! forwards them, so nothing sits between the cache and the processor.

use std::cell::RefCell;
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
    /// The global store `name`.
    fn global(&self, name: &str) -> Result<GlobalStoreRef>;
}
