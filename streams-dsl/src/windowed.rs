//! The windowed key [`Windowed<K>`] that windowed tables are keyed by, and its serde in Kafka
//! Streams' wire formats.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use streams_core::{Serde, SerdeError};

use crate::windows::{millis, Window};

/// A key together with the window its aggregate belongs to: the key type of windowed tables.
///
/// Displayed as `key@[start,end)` with UTC times; encoded by [`WindowedSerde`].
///
/// ```
/// use streams_dsl::{Window, Windowed};
///
/// let w = Windowed::new("sensor-1".to_string(), Window::new(60_000, 120_000));
/// assert_eq!(w.to_string(), "sensor-1@[1970-01-01T00:01:00.000Z,1970-01-01T00:02:00.000Z)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

impl<K> Windowed<K> {
    /// `key` in `window`.
    pub fn new(key: K, window: Window) -> Self {
        Windowed { key, window }
    }
}

impl<K: fmt::Display> fmt::Display for Windowed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.key, self.window)
    }
}

/// Which of Kafka Streams' two windowed key formats a [`WindowedSerde`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `[key][start]`; the end is `start + size`.
    Time { size_ms: i64 },
    /// `[key][end][start]`, the end being the session's last record time.
    Session,
}

impl Form {
    fn suffix(self) -> usize {
        match self {
            Form::Time { .. } => 8,
            Form::Session => 16,
        }
    }
}

/// The serde of [`Windowed<K>`] over a serde of `K`, in Kafka Streams' wire formats, so Java
/// consumers read the keys with Kafka's own `TimeWindowedDeserializer` and
/// `SessionWindowedDeserializer`, and keys they wrote read back here:
///
/// - [`WindowedSerde::time`] (tumbling, hopping and sliding windows): the key's bytes, then the
///   window start as an 8-byte big-endian integer. The end is not written; it is read back as
///   `start + size` (saturating at `i64::MAX`, as Kafka does).
/// - [`WindowedSerde::session`]: the key's bytes, then the end and the start, 8 bytes each. The
///   end written is the session's last record time (Kafka's inclusive end), one less than
///   [`Window::end`].
///
/// A windowed table's key serde is the one for its windows, so sinks and repartition topics of
/// windowed tables use it. Records with windowed keys are partitioned by the inner key alone
/// ([`Serde::partition_bytes`]), as Kafka Streams' windowed partitioner does: every window of
/// a key lands on the partition of the key.
///
/// ```
/// use std::time::Duration;
/// use streams_core::{Serde, StringSerde};
/// use streams_dsl::{Window, Windowed, WindowedSerde};
///
/// let serde = WindowedSerde::time(StringSerde, Duration::from_millis(10));
/// let w = Windowed::new("k".to_string(), Window::new(20, 30));
/// let bytes = serde.serialize(&w)?;
/// assert_eq!(bytes, [&b"k"[..], &20i64.to_be_bytes()].concat());
/// assert_eq!(serde.deserialize(&bytes)?, w);
/// assert_eq!(serde.partition_bytes(&bytes), b"k");
///
/// let sessions = WindowedSerde::session(StringSerde);
/// let s = Windowed::new("k".to_string(), Window::new(5, 8)); // records at 5 to 7
/// let bytes = sessions.serialize(&s)?;
/// assert_eq!(bytes, [&b"k"[..], &7i64.to_be_bytes(), &5i64.to_be_bytes()].concat());
/// assert_eq!(sessions.deserialize(&bytes)?, s);
/// # Ok::<(), streams_core::SerdeError>(())
/// ```
pub struct WindowedSerde<K> {
    inner: Arc<dyn Serde<K>>,
    form: Form,
}

impl<K> Clone for WindowedSerde<K> {
    fn clone(&self) -> Self {
        WindowedSerde {
            inner: self.inner.clone(),
            form: self.form,
        }
    }
}

impl<K: 'static> WindowedSerde<K> {
    /// Keys of time windows of length `size` (for sliding windows: the time difference plus
    /// 1 ms, see [`crate::SlidingWindows`]), as Kafka's `TimeWindowedSerde`.
    pub fn time(inner: impl Serde<K>, size: Duration) -> Self {
        Self::time_from_arc(Arc::new(inner), millis(size))
    }

    /// Keys of session windows, as Kafka's `SessionWindowedSerde`.
    pub fn session(inner: impl Serde<K>) -> Self {
        Self::session_from_arc(Arc::new(inner))
    }

    pub(crate) fn time_from_arc(inner: Arc<dyn Serde<K>>, size_ms: i64) -> Self {
        WindowedSerde {
            inner,
            form: Form::Time { size_ms },
        }
    }

    pub(crate) fn session_from_arc(inner: Arc<dyn Serde<K>>) -> Self {
        WindowedSerde {
            inner,
            form: Form::Session,
        }
    }
}

fn time_at(bytes: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(bytes);
    i64::from_be_bytes(a)
}

impl<K: 'static> Serde<Windowed<K>> for WindowedSerde<K> {
    fn serialize_into(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.inner.serialize_into(&value.key, out)?;
        let w = value.window;
        match self.form {
            Form::Time { .. } => out.extend_from_slice(&w.start.to_be_bytes()),
            Form::Session => {
                if w.end <= w.start {
                    return Err(SerdeError::new(
                        "Windowed",
                        format!("session window {w} holds no record time"),
                    ));
                }
                // The last record time: the end is exclusive here, inclusive in Kafka.
                out.extend_from_slice(&(w.end - 1).to_be_bytes());
                out.extend_from_slice(&w.start.to_be_bytes());
            }
        }
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        let suffix = self.form.suffix();
        let Some(key_len) = bytes.len().checked_sub(suffix) else {
            return Err(SerdeError::new(
                "Windowed",
                format!(
                    "{} bytes is shorter than the {suffix}-byte window",
                    bytes.len()
                ),
            ));
        };
        let (key, times) = bytes.split_at(key_len);
        let window = match self.form {
            Form::Time { size_ms } => {
                let start = time_at(times);
                Window::new(start, start.saturating_add(size_ms))
            }
            Form::Session => {
                let (last, start) = (time_at(&times[..8]), time_at(&times[8..]));
                if last < start {
                    return Err(SerdeError::new(
                        "Windowed",
                        format!("session window ends at {last}, before its start {start}"),
                    ));
                }
                Window::new(start, last.saturating_add(1))
            }
        };
        Ok(Windowed {
            key: self.inner.deserialize(key)?,
            window,
        })
    }

    fn partition_bytes<'a>(&self, encoded: &'a [u8]) -> &'a [u8] {
        let len = encoded.len().saturating_sub(self.form.suffix());
        &encoded[..len]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use streams_core::StringSerde;

    #[test]
    fn windowed_bytes_are_kafkas() {
        let serde = WindowedSerde::time(StringSerde, Duration::from_millis(1));
        let bytes = serde
            .serialize(&Windowed::new("a".to_string(), Window::new(-1, 0)))
            .unwrap();
        // Java's ByteBuffer.putLong: plain big-endian two's complement.
        assert_eq!(bytes, b"a\xff\xff\xff\xff\xff\xff\xff\xff");
        assert!(serde.deserialize(&bytes[..7]).is_err());
        let sessions = WindowedSerde::session(StringSerde);
        assert!(sessions
            .serialize(&Windowed::new("a".to_string(), Window::new(3, 3)))
            .is_err());
        let mut reversed = b"a".to_vec();
        reversed.extend_from_slice(&2i64.to_be_bytes());
        reversed.extend_from_slice(&3i64.to_be_bytes());
        assert!(sessions.deserialize(&reversed).is_err());
    }

    proptest! {
        #[test]
        fn windowed_round_trip(key in ".*", start: i64, size in 1i64..1_000_000) {
            let end = start.saturating_add(size);
            let w = Windowed::new(key, Window::new(start, end));
            let time = WindowedSerde::time(StringSerde, Duration::from_millis(size as u64));
            let bytes = time.serialize(&w).unwrap();
            prop_assert_eq!(time.partition_bytes(&bytes), w.key.as_bytes());
            prop_assert_eq!(time.deserialize(&bytes).unwrap(), w.clone());
            if end > start {
                let session = WindowedSerde::session(StringSerde);
                let bytes = session.serialize(&w).unwrap();
                prop_assert_eq!(session.partition_bytes(&bytes), w.key.as_bytes());
                prop_assert_eq!(session.deserialize(&bytes).unwrap(), w);
            }
        }
    }
}
