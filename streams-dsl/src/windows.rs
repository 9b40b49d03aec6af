//! Window definitions ([`TimeWindows`], [`SlidingWindows`], [`SessionWindows`],
//! [`JoinWindows`]).
//!
//! Every window here is a half-open interval `[start, end)` of event time in milliseconds, so a
//! record at `end` is not in the window. Sliding windows, which Kafka Streams describes as
//! `[t - difference, t]` with both ends inclusive, are therefore `[t - difference, t + 1)`, and
//! a session whose first and last records are at `s` and `e` is `[s, e + 1)`. With that one
//! convention a window is closed, for every kind of window, once
//! `end + grace <= stream time`; a record that would only update closed windows is dropped as
//! late (counted under the reason `"late"`).

use std::fmt;
use std::time::Duration;

/// A duration in whole milliseconds, saturating at `i64::MAX`.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `Ok` when the sum of `parts` (ms) fits in an `i64`; otherwise an error naming `what`.
pub(crate) fn fits(what: &str, parts: &[i64]) -> Result<(), String> {
    match parts.iter().try_fold(0i64, |sum, p| sum.checked_add(*p)) {
        Some(_) => Ok(()),
        None => Err(format!(
            "{what} ({} ms) is longer than the largest time span (i64::MAX ms)",
            parts
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" + ")
        )),
    }
}

/// A half-open interval `[start, end)` of event time, in ms since the Unix epoch.
///
/// ```
/// use streams_dsl::Window;
///
/// let w = Window::new(0, 10);
/// assert!(w.contains(0) && w.contains(9) && !w.contains(10));
/// assert_eq!(w.to_string(), "[1970-01-01T00:00:00.000Z,1970-01-01T00:00:00.010Z)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl Window {
    /// The window `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        Window { start, end }
    }

    /// Whether `timestamp` falls in the window.
    pub fn contains(&self, timestamp: i64) -> bool {
        self.start <= timestamp && timestamp < self.end
    }

    /// Whether the window is closed at `stream_time` given `grace`: `end + grace <= stream_time`.
    pub(crate) fn closed(&self, grace_ms: i64, stream_time: i64) -> bool {
        self.end.saturating_add(grace_ms) <= stream_time
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{},{})",
            Rfc3339Millis(self.start),
            Rfc3339Millis(self.end)
        )
    }
}

/// A timestamp shown as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
///
/// Computed here (days-to-civil, proleptic Gregorian calendar) rather than with `chrono`, which
/// this crate does not depend on; a unit test checks it against known dates.
struct Rfc3339Millis(i64);

impl fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let days = ms.div_euclid(86_400_000);
        let in_day = ms.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            in_day / 3_600_000,
            in_day / 60_000 % 60,
            in_day / 1_000 % 60,
            in_day % 1_000
        )
    }
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Fixed-size windows aligned to the epoch: tumbling (`advance == size`, the default) or
/// hopping (`advance < size`, so windows overlap and a record falls in `size / advance` of
/// them). Window `[start, start + size)` exists for every `start` that is a multiple of
/// `advance`.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::{TimeWindows, Window};
///
/// let hopping = TimeWindows::of_size_and_grace(Duration::from_millis(10), Duration::from_millis(5))
///     .advance_by(Duration::from_millis(5));
/// let of_7: Vec<Window> = hopping.windows_for(7).collect();
/// assert_eq!(of_7, vec![Window::new(0, 10), Window::new(5, 15)]);
/// assert_eq!(hopping.grace_ms(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    size_ms: i64,
    advance_ms: i64,
    grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` that close as soon as stream time reaches their end.
    pub fn of_size_with_no_grace(size: Duration) -> Self {
        Self::of_size_and_grace(size, Duration::ZERO)
    }

    /// Tumbling windows of `size` that accept records until stream time reaches
    /// `end + grace`.
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Self {
        let size_ms = millis(size);
        TimeWindows {
            size_ms,
            advance_ms: size_ms,
            grace_ms: millis(grace),
        }
    }

    /// Hopping windows: a new window starts every `advance` (which must be in `(0, size]`).
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance_ms = millis(advance);
        self
    }

    /// Window size, ms.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// Advance between window starts, ms.
    pub fn advance_ms(&self) -> i64 {
        self.advance_ms
    }

    /// Grace period, ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The windows a record at `timestamp` falls in, by ascending start.
    pub fn windows_for(&self, timestamp: i64) -> impl Iterator<Item = Window> {
        let (size, advance) = (self.size_ms.max(1), self.advance_ms.max(1));
        let last = timestamp - timestamp.rem_euclid(advance);
        let lowest = timestamp.saturating_sub(size); // exclusive
        let count = (last - lowest - 1).max(0) / advance + 1;
        let first = last - (count - 1) * advance;
        // As in Kafka Streams, no window starts before the epoch.
        (0..count)
            .map(move |i| {
                let start = first + i * advance;
                Window::new(start, start.saturating_add(size))
            })
            .filter(|w| w.start >= 0)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.size_ms <= 0 {
            return Err(format!(
                "window size must be positive, got {} ms",
                self.size_ms
            ));
        }
        if self.advance_ms <= 0 || self.advance_ms > self.size_ms {
            return Err(format!(
                "advance must be in (0, size = {} ms], got {} ms",
                self.size_ms, self.advance_ms
            ));
        }
        // Every record updates size / advance windows (rounded up).
        let per_record = (self.size_ms - 1) / self.advance_ms + 1;
        if per_record > MAX_WINDOWS_PER_RECORD {
            return Err(format!(
                "a record would fall into {per_record} windows (size {} ms / advance {} ms); \
                 at most {MAX_WINDOWS_PER_RECORD}: use a larger advance or sliding windows",
                self.size_ms, self.advance_ms
            ));
        }
        fits("size + grace", &[self.size_ms, self.grace_ms])
    }
}

/// The most hopping windows one record may fall into (`size / advance`): each is a store
/// update and, without caching, a result, so more would stall the stream thread.
pub const MAX_WINDOWS_PER_RECORD: i64 = 10_000;

/// Sliding windows (Kafka's KIP-450): a window of fixed size `difference + 1` ms whose position
/// is set by the records themselves, so every distinct set of records at most `difference`
/// apart is aggregated exactly once. For each record at `t` there is a window ending at it,
/// `[t - difference, t + 1)`, and, when later records within `difference` exist, one starting
/// just after it, `[t + 1, t + difference + 2)`. Windows are not aligned to the epoch.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::SlidingWindows;
///
/// let w = SlidingWindows::of_time_difference_with_no_grace(Duration::from_secs(10));
/// assert_eq!(w.time_difference_ms(), 10_000);
/// assert_eq!(w.window_size_ms(), 10_001);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    difference_ms: i64,
    grace_ms: i64,
}

impl SlidingWindows {
    /// Windows of records at most `difference` apart, closed when stream time reaches their
    /// end.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }

    /// Windows of records at most `difference` apart, accepting records until stream time
    /// reaches `end + grace`.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        SlidingWindows {
            difference_ms: millis(difference),
            grace_ms: millis(grace),
        }
    }

    /// The largest time difference between two records of one window, ms.
    pub fn time_difference_ms(&self) -> i64 {
        self.difference_ms
    }

    /// Window size, ms: `difference + 1` (both ends of the difference are included).
    pub fn window_size_ms(&self) -> i64 {
        self.difference_ms.saturating_add(1)
    }

    /// Grace period, ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.difference_ms <= 0 {
            return Err(format!(
                "time difference must be positive, got {} ms",
                self.difference_ms
            ));
        }
        // The store keeps three differences plus grace (see the sliding aggregation).
        let d = self.difference_ms;
        fits(
            "3 × time difference + grace + 2",
            &[d, d, d, self.grace_ms, 2],
        )
    }
}

/// Session windows: a key's records belong to one session while each follows the previous by
/// at most `gap`; a record within `gap` of two sessions merges them. A session whose records
/// span `[s, e]` is the window `[s, e + 1)`.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::SessionWindows;
///
/// let w = SessionWindows::of_inactivity_gap_and_grace(Duration::from_secs(30), Duration::from_secs(5));
/// assert_eq!((w.gap_ms(), w.grace_ms()), (30_000, 5_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    gap_ms: i64,
    grace_ms: i64,
}

impl SessionWindows {
    /// Sessions split by `gap` of inactivity, closed when stream time reaches their end.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Self {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }

    /// Sessions split by `gap` of inactivity, accepting records until stream time reaches
    /// `end + grace`.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        SessionWindows {
            gap_ms: millis(gap),
            grace_ms: millis(grace),
        }
    }

    /// Inactivity gap, ms.
    pub fn gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// Grace period, ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.gap_ms <= 0 {
            return Err(format!(
                "inactivity gap must be positive, got {} ms",
                self.gap_ms
            ));
        }
        // The store keeps two gaps plus grace.
        fits(
            "2 × gap + grace + 1",
            &[self.gap_ms, self.gap_ms, self.grace_ms, 1],
        )
    }
}

/// The windows of a stream–stream join: a left record at `t` joins right records with
/// timestamps in `[t - before, t + after]` (both ends inclusive), and so a right record at `t`
/// joins left records in `[t - after, t + before]`.
///
/// `grace` bounds disorder, as in Kafka Streams. Each side keeps its records for
/// `before + after + grace` past the largest timestamp it has seen; a record is joined with
/// every record of the other side that is still kept and within its window, however late it
/// is itself. The join's stream time is the largest timestamp either side has seen. A left
/// (or outer) join emits a left record without a match once no right record that could match
/// it is expected any more: when `t + after + grace < stream time`; an outer join emits a
/// right record without a match when `t + before + grace < stream time`. A record whose window
/// (`t + after` for a left record, `t + before` for a right one) has already ended when it
/// arrives, and that matches nothing, is emitted without a match at once.
///
/// ```
/// use std::time::Duration;
/// use streams_dsl::JoinWindows;
///
/// let w = JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(10))
///     .before(Duration::from_millis(2));
/// assert_eq!((w.before_ms(), w.after_ms(), w.grace_ms()), (2, 10, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    before_ms: i64,
    after_ms: i64,
    grace_ms: i64,
}

impl JoinWindows {
    /// Records at most `difference` apart (either way) join; no grace.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }

    /// Records at most `difference` apart (either way) join; records are accepted until their
    /// window has been closed for `grace`.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        let d = millis(difference);
        JoinWindows {
            before_ms: d,
            after_ms: d,
            grace_ms: millis(grace),
        }
    }

    /// How far before a left record right records may be.
    pub fn before(mut self, before: Duration) -> Self {
        self.before_ms = millis(before);
        self
    }

    /// How far after a left record right records may be.
    pub fn after(mut self, after: Duration) -> Self {
        self.after_ms = millis(after);
        self
    }

    /// `before`, ms.
    pub fn before_ms(&self) -> i64 {
        self.before_ms
    }

    /// `after`, ms.
    pub fn after_ms(&self) -> i64 {
        self.after_ms
    }

    /// Grace period, ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn times_are_shown_in_utc() {
        let show = |ms| Rfc3339Millis(ms).to_string();
        assert_eq!(show(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(show(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(show(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(show(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn tumbling_boundaries() {
        let w = TimeWindows::of_size_with_no_grace(Duration::from_millis(10));
        assert_eq!(
            w.windows_for(0).collect::<Vec<_>>(),
            vec![Window::new(0, 10)]
        );
        assert_eq!(
            w.windows_for(9).collect::<Vec<_>>(),
            vec![Window::new(0, 10)]
        );
        assert_eq!(
            w.windows_for(10).collect::<Vec<_>>(),
            vec![Window::new(10, 20)]
        );
        // As in Kafka Streams, no window starts before the epoch.
        assert_eq!(w.windows_for(-1).collect::<Vec<_>>(), vec![]);
    }

    proptest! {
        #[test]
        fn windows_for_is_every_aligned_window_containing_the_time(
            ts in -1_000i64..1_000, size in 1i64..50, advance_frac in 1i64..50,
        ) {
            let advance = advance_frac.min(size);
            let w = TimeWindows::of_size_with_no_grace(Duration::from_millis(size as u64))
                .advance_by(Duration::from_millis(advance as u64));
            let got: Vec<Window> = w.windows_for(ts).collect();
            let expected: Vec<Window> = (-2_000i64..2_000)
                .filter(|s| *s >= 0 && s.rem_euclid(advance) == 0 && *s <= ts && ts < s + size)
                .map(|s| Window::new(s, s + size))
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}
