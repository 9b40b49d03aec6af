//! Warnings a stream of bad records would repeat once per record: the first is logged, then
//! at most one per [`WARNING_INTERVAL`], saying how many were held back since the last one.
//! The records themselves are still counted one by one in the task metrics.

use std::time::{Duration, Instant};

/// The shortest time between two warnings of one kind from one task or thread.
pub(crate) const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Decides which occurrences of one warning are logged.
#[derive(Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(WARNING_INTERVAL)
    }
}

impl Throttle {
    pub(crate) const fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: None,
            held_back: 0,
        }
    }

    /// Called once per occurrence: `Some(n)` when this one is to be logged, `n` being how many
    /// were held back since the last one logged; `None` when it is held back.
    pub(crate) fn admit(&mut self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.held_back = self.held_back.saturating_add(1);
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_then_one_per_interval_with_the_count_held_back() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(t.admit_at(at(0)), Some(0), "the first is logged");
        assert_eq!(t.admit_at(at(1)), None);
        assert_eq!(t.admit_at(at(9)), None);
        assert_eq!(
            t.admit_at(at(10)),
            Some(2),
            "an interval later, with the two held back"
        );
        assert_eq!(t.admit_at(at(11)), None);
        assert_eq!(t.admit_at(at(30)), Some(1));
        assert_eq!(t.admit_at(at(45)), Some(0), "nothing held back in between");
    }
}
