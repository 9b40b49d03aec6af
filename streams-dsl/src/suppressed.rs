//! Options of [`KTable::suppress`](crate::KTable::suppress): what to hold back and how much.

use std::sync::Arc;
use std::time::Duration;

use crate::windowed::Windowed;
use crate::windows::millis;

/// What a full suppression buffer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BufferFull {
    /// Emit the oldest buffered update early, before its time (allowed only with
    /// [`Suppressed::until_time_limit`]: a final result cannot be emitted early).
    EmitEarly,
    /// Fail the task with an error naming the suppress node.
    Fail,
}

/// Bounds of a suppression buffer, in records and in bytes (key and value as their serdes
/// encode them), and what happens when an update does not fit.
///
/// ```
/// use streams_dsl::{BufferConfig, BufferFull};
///
/// let b = BufferConfig::max_records(1_000).fail_when_full();
/// assert_eq!(b.when_full(), Some(BufferFull::Fail));
/// assert_eq!(BufferConfig::unbounded().when_full(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferConfig {
    pub(crate) max_records: Option<usize>,
    pub(crate) max_bytes: Option<usize>,
    pub(crate) when_full: Option<BufferFull>,
}

impl BufferConfig {
    /// No bound: the buffer grows as needed.
    pub fn unbounded() -> Self {
        BufferConfig::default()
    }

    /// At most `n` buffered keys.
    pub fn max_records(n: usize) -> Self {
        BufferConfig::default().with_max_records(n)
    }

    /// At most `n` bytes of encoded keys and values.
    pub fn max_bytes(n: usize) -> Self {
        BufferConfig::default().with_max_bytes(n)
    }

    /// Adds a bound of `n` buffered keys.
    pub fn with_max_records(mut self, n: usize) -> Self {
        self.max_records = Some(n);
        self
    }

    /// Adds a bound of `n` bytes.
    pub fn with_max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = Some(n);
        self
    }

    /// When full, emit the oldest update early (the default of `until_time_limit`).
    pub fn emit_early_when_full(mut self) -> Self {
        self.when_full = Some(BufferFull::EmitEarly);
        self
    }

    /// When full, fail (the only choice of `until_window_closes`).
    pub fn fail_when_full(mut self) -> Self {
        self.when_full = Some(BufferFull::Fail);
        self
    }

    /// The behaviour chosen for a full buffer, if one was chosen.
    pub fn when_full(&self) -> Option<BufferFull> {
        self.when_full
    }
}

/// The buffer time of a key: when its hold starts.
pub(crate) type TimeOf<K> = Arc<dyn Fn(&K, i64) -> i64 + Send + Sync>;

/// How [`KTable::suppress`](crate::KTable::suppress) holds back updates.
///
/// - [`Suppressed::until_window_closes`]: on a windowed table, one final result per window,
///   emitted once stream time reaches `window end + grace` (the grace of the windowed
///   aggregation upstream); intermediate updates and deletions are never emitted.
/// - [`Suppressed::until_time_limit`]: on any table, at most one update per key per time
///   limit: a key's first update since its last emission starts a timer of `limit` (record
///   time), and its latest value is emitted when stream time reaches the timer's end.
///
/// Updates are emitted on the first commit once their time has come. The buffer lives in a
/// key-value store of the task named `<node name>-store` (the node is named with
/// [`Suppressed::named`], or `KTABLE-SUPPRESS-<index>`), changelogged to
/// `<application id>-<node name>-store-changelog` and restored like any store, so what is
/// buffered survives a crash, a restart and a task move. Naming the node keeps the store, and
/// so the buffer, across changes to the topology. The table needs key and value serdes (its
/// own or those of the aggregation it comes from) to store the buffer.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::prelude::*;
/// use streams_dsl::{BufferConfig, Suppressed, TimeWindows, Windowed, WindowedSerde};
/// use streams_core::{I64Serde, OptionSerde, StringSerde, TestDriver};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream::<String, String>("clicks", Consumed::default())
///     .group_by_key(Grouped::inferred())
///     .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(10)))
///     .count(Materialized::named("clicks-per-10ms"))
///     .suppress(Suppressed::until_window_closes(BufferConfig::unbounded()))
///     .to_stream()
///     .to("final-counts", Produced::inferred());
/// let mut driver = TestDriver::new(&builder.build()?)?;
/// for ts in [1, 3, 12] {
///     driver.pipe_typed("clicks", &StringSerde, &StringSerde, &"ann".to_string(), &String::new(), ts)?;
/// }
/// let keys = WindowedSerde::time(StringSerde, Duration::from_millis(10));
/// let out = driver.read_output_typed("final-counts", &keys, &OptionSerde(I64Serde))?;
/// assert_eq!(out.len(), 1, "only [0, 10) has closed");
/// assert_eq!(out[0].0.to_string(), "ann@[1970-01-01T00:00:00.000Z,1970-01-01T00:00:00.010Z)");
/// assert_eq!(out[0].1, Some(2));
/// # Ok::<(), streams_core::Error>(())
/// ```
pub struct Suppressed<K> {
    pub(crate) time: Option<TimeOf<K>>,
    pub(crate) limit_ms: i64,
    pub(crate) buffer: BufferConfig,
    pub(crate) name: Option<String>,
}

impl<K: 'static> Suppressed<Windowed<K>> {
    /// One final result per window, once it has closed.
    pub fn until_window_closes(buffer: BufferConfig) -> Self {
        Suppressed {
            time: Some(Arc::new(|k: &Windowed<K>, _| k.window.end)),
            limit_ms: 0,
            buffer,
            name: None,
        }
    }
}

impl<K> Suppressed<K> {
    /// At most one update per key per `limit` of stream time.
    pub fn until_time_limit(limit: Duration, buffer: BufferConfig) -> Self {
        Suppressed {
            time: None,
            limit_ms: millis(limit),
            buffer,
            name: None,
        }
    }

    /// Names the suppress node, and with it the buffer's store (`<name>-store`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether this emits final results of windows.
    pub(crate) fn final_results(&self) -> bool {
        self.time.is_some()
    }
}
