//! Typed interactive queries over the stores of windowed aggregations: [`WindowStoreView`]
//! (time and sliding windows) and [`SessionStoreView`].
//!
//! The views decode what the aggregations write: window store values carry the largest record
//! timestamp of their window in front of the aggregate (8 bytes), which the view strips.

use std::sync::Arc;

use state_store::decode_timestamped;
use streams_core::{Result, Serde, SessionStoreRef, WindowStoreRef};

use crate::ops::{decode, encode};
use crate::windowed::Windowed;
use crate::windows::Window;

const VIEW: &str = "window store query";

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
