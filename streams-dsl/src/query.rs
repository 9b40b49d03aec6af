//! Typed, read-only views of the stores the DSL writes, for the test driver and user
//! processors: [`KeyValueStoreView`] (tables), [`WindowStoreView`] (time and sliding windows)
//! and [`SessionStoreView`].
//!
//! The views decode what the operators write: table values carry the timestamp of the update
//! that wrote them, window store values the largest record timestamp of their window, in front
//! of the value (8 bytes), which the views strip.

use std::sync::Arc;

use state_store::decode_timestamped;
use streams_core::{KvStoreRef, Result, Serde, SessionStoreRef, WindowStoreRef};

use crate::ops::stamped::decode_stamped;
use crate::ops::{decode, encode};
use crate::windowed::Windowed;
use crate::windows::Window;

const VIEW: &str = "window store query";
const KV_VIEW: &str = "key-value store query";

/// A typed, read-only view of a table's key-value store (an aggregation's, a source table's or
/// a materialized table's), whose values are kept behind their timestamp.
///
/// ```
/// use streams_dsl::prelude::*;
/// use streams_dsl::KeyValueStoreView;
/// use streams_core::{I64Serde, StringSerde, TestDriver};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("clicks", Consumed::default())
///     .group_by_key(Grouped::inferred())
///     .count(Materialized::named("clicks-per-user"));
/// let mut driver = TestDriver::new(&builder.build()?)?;
/// let ann = "ann".to_string();
/// for ts in [5, 3] {
///     driver.pipe_typed("clicks", &StringSerde, &StringSerde, &ann, &"/".to_string(), ts)?;
/// }
/// let view = KeyValueStoreView::new(driver.kv_store("clicks-per-user")?, StringSerde, I64Serde);
/// assert_eq!(view.get(&ann)?, Some(2));
/// // The count is as recent as its latest record, not its last one.
/// assert_eq!(view.get_with_timestamp(&ann)?, Some((2, 5)));
/// assert_eq!(view.all()?, vec![(ann, 2)]);
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct KeyValueStoreView<K, V> {
    store: KvStoreRef,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K: 'static, V: 'static> KeyValueStoreView<K, V> {
    /// A view of the table store `store`.
    pub fn new(store: KvStoreRef, key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        KeyValueStoreView {
            store,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }

    fn stamped(&self, bytes: &[u8]) -> Result<(V, i64)> {
        decode_stamped(
            self.value_serde.as_ref(),
            bytes,
            self.store.borrow().name(),
            KV_VIEW,
        )
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        Ok(self.get_with_timestamp(key)?.map(|(v, _)| v))
    }

    /// The value of `key` and the timestamp of the update that wrote it, if any.
    pub fn get_with_timestamp(&self, key: &K) -> Result<Option<(V, i64)>> {
        let kb = encode(self.key_serde.as_ref(), key, KV_VIEW)?;
        let bytes = self.store.borrow().get(&kb)?;
        bytes.map(|b| self.stamped(&b)).transpose()
    }

    /// Every entry, in encoded-key order.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        Ok(self
            .all_with_timestamps()?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect())
    }

    /// Every entry with its timestamp, in encoded-key order.
    pub fn all_with_timestamps(&self) -> Result<Vec<(K, V, i64)>> {
        let store = self.store.borrow();
        let mut raw = Vec::new();
        for r in store.all()? {
            raw.push(r?);
        }
        drop(store);
        raw.into_iter()
            .map(|(k, bytes)| {
                let (v, ts) = self.stamped(&bytes)?;
                Ok((decode(self.key_serde.as_ref(), &k, KV_VIEW)?, v, ts))
            })
            .collect()
    }
}

/// A typed, read-only view of the window store of a windowed aggregation.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::prelude::*;
/// use streams_dsl::{TimeWindows, Window, WindowStoreView};
/// use streams_core::{I64Serde, StringSerde, TestDriver};
///
/// let windows = TimeWindows::of_size_with_no_grace(Duration::from_millis(10));
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("views", Consumed::default())
///     .group_by_key(Grouped::inferred())
///     .windowed_by(windows)
///     .count(Materialized::named("view-counts").with_retention(Duration::from_secs(1)));
/// let mut driver = TestDriver::new(&builder.build()?)?;
/// for ts in [1, 2, 15] {
///     driver.pipe_typed("views", &StringSerde, &StringSerde, &"home".to_string(), &String::new(), ts)?;
/// }
/// let view = WindowStoreView::new(driver.window_store("view-counts")?, StringSerde, I64Serde, windows.size_ms());
/// let home = view.fetch(&"home".to_string(), 0, 100)?;
/// assert_eq!(home, vec![(Window::new(0, 10), 2), (Window::new(10, 20), 1)]);
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct WindowStoreView<K, V> {
    store: WindowStoreRef,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
    size_ms: i64,
}

impl<K: 'static, V: 'static> WindowStoreView<K, V> {
    /// A view of `store`, whose windows are `window_size_ms` long (see
    /// [`TimeWindows::size_ms`](crate::TimeWindows::size_ms) and
    /// [`SlidingWindows::window_size_ms`](crate::SlidingWindows::window_size_ms)).
    pub fn new(
        store: WindowStoreRef,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        window_size_ms: i64,
    ) -> Self {
        WindowStoreView {
            store,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            size_ms: window_size_ms,
        }
    }

    fn value(&self, bytes: &[u8]) -> Result<V> {
        let (_, agg) = decode_timestamped(self.store.borrow().name(), bytes)?;
        decode(self.value_serde.as_ref(), agg, VIEW)
    }

    fn window(&self, start: i64) -> Window {
        Window::new(start, start.saturating_add(self.size_ms))
    }

    /// The windows of `key` that start in `[time_from, time_to]`, ascending.
    pub fn fetch(&self, key: &K, time_from: i64, time_to: i64) -> Result<Vec<(Window, V)>> {
        let kb = encode(self.key_serde.as_ref(), key, VIEW)?;
        let store = self.store.borrow();
        let mut out = Vec::new();
        for r in store.fetch(&kb, time_from, time_to)? {
            let (start, bytes) = r?;
            out.push((self.window(start), self.value(&bytes)?));
        }
        Ok(out)
    }

    /// The windows of every key that start in `[time_from, time_to]`, by window start, then
    /// key bytes.
    pub fn fetch_all(&self, time_from: i64, time_to: i64) -> Result<Vec<(Windowed<K>, V)>> {
        let store = self.store.borrow();
        let mut raw = Vec::new();
        for r in store.fetch_all(time_from, time_to)? {
            raw.push(r?);
        }
        raw.sort_by(|a, b| (a.0.start, &a.0.key).cmp(&(b.0.start, &b.0.key)));
        raw.into_iter()
            .map(|(k, bytes)| {
                let key = decode(self.key_serde.as_ref(), &k.key, VIEW)?;
                Ok((
                    Windowed::new(key, self.window(k.start)),
                    self.value(&bytes)?,
                ))
            })
            .collect()
    }

    /// The largest record timestamp of `key`'s window starting at `start`, if it exists.
    pub fn latest_timestamp(&self, key: &K, start: i64) -> Result<Option<i64>> {
        let kb = encode(self.key_serde.as_ref(), key, VIEW)?;
        let bytes = self.store.borrow().fetch_one(&kb, start)?;
        let name = self.store.borrow().name().to_string();
        bytes
            .map(|b| Ok(decode_timestamped(&name, &b)?.0))
            .transpose()
    }
}

/// A typed, read-only view of the session store of a session-windowed aggregation.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::prelude::*;
/// use streams_dsl::{SessionStoreView, SessionWindows, Window};
/// use streams_core::{I64Serde, StringSerde, TestDriver};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("clicks", Consumed::default())
///     .group_by_key(Grouped::inferred())
///     .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_millis(5)))
///     .count(Materialized::named("sessions").with_retention(Duration::from_secs(1)));
/// let mut driver = TestDriver::new(&builder.build()?)?;
/// for ts in [1, 4, 20] {
///     driver.pipe_typed("clicks", &StringSerde, &StringSerde, &"u".to_string(), &String::new(), ts)?;
/// }
/// let view = SessionStoreView::new(driver.session_store("sessions")?, StringSerde, I64Serde);
/// assert_eq!(view.fetch(&"u".to_string())?, vec![(Window::new(1, 5), 2), (Window::new(20, 21), 1)]);
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct SessionStoreView<K, V> {
    store: SessionStoreRef,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K: 'static, V: 'static> SessionStoreView<K, V> {
    /// A view of `store`.
    pub fn new(
        store: SessionStoreRef,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Self {
        SessionStoreView {
            store,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }

    /// Every retained session of `key`, by end then start, as windows `[first, last + 1)`.
    pub fn fetch(&self, key: &K) -> Result<Vec<(Window, V)>> {
        let kb = encode(self.key_serde.as_ref(), key, VIEW)?;
        let store = self.store.borrow();
        let mut out = Vec::new();
        for r in store.fetch(&kb)? {
            let (s, bytes) = r?;
            let v = decode(self.value_serde.as_ref(), &bytes, VIEW)?;
            out.push((Window::new(s.start, s.end.saturating_add(1)), v));
        }
        Ok(out)
    }
}
