//! Session stores: values keyed by (key, session start, session end).
//!
//! Layout: `[key][end][start]` as in Kafka Streams' session key schema, in time segments by
//! session end. Stream time is the largest session end written; sessions ending before
//! `stream_time - retention + 1` are neither returned nor accepted.

use std::ops::Bound;

use crate::error::StoreError;
use crate::keys::{encode_timestamp, session_key, split_session_key};
use crate::segments::{KeySchema, SegmentBackend, SegmentedStore, Segments};
use crate::store::StateStore;

/// A key together with its session's bounds (both inclusive, ms).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionKey {
    /// The record key.
    pub key: Vec<u8>,
    /// Timestamp of the session's first record.
    pub start: i64,
    /// Timestamp of the session's last record.
    pub end: i64,
}

/// An iterator over sessions and their values.
pub type SessionIter<'a> = Box<dyn Iterator<Item = Result<(SessionKey, Vec<u8>), StoreError>> + 'a>;

/// Read access to a session store.
pub trait ReadOnlySessionStore {
    /// Sessions of `key` with `end >= earliest_session_end` and `start <= latest_session_start`
    /// (the sessions a record at some time could merge with), ascending by end, then start.
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<SessionIter<'_>, StoreError>;

    /// The value of exactly this session.
    fn fetch_session(
        &self,
        key: &[u8],
        start: i64,
        end: i64,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every retained session of `key`.
    fn fetch(&self, key: &[u8]) -> Result<SessionIter<'_>, StoreError> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }
}

/// A session store.
pub trait SessionStore: ReadOnlySessionStore + StateStore {
    /// Stores `value` for the session; advances stream time to `end`. A session that ended
    /// before the retention period is dropped.
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<(), StoreError>;

    /// Removes the session (e.g. when it merged into a larger one).
    fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<(), StoreError>;
}

/// The session store backend shared by RocksDB and memory.
pub(crate) type SegmentedSessionStore = SegmentedStore<SessionKeySchema>;

/// Session keys, `[key][end][start]`, segmented by session end.
pub(crate) struct SessionKeySchema;

impl KeySchema for SessionKeySchema {
    fn segment_time(&self, raw: &[u8]) -> Option<i64> {
        split_session_key(raw).map(|(_, _, end)| end)
    }
}

impl SegmentedSessionStore {
    pub(crate) fn open(
        name: &str,
        backend: SegmentBackend,
        retention: i64,
        segment_interval: i64,
    ) -> Result<Self, StoreError> {
        Ok(SegmentedStore {
            segments: Segments::open(name, backend, retention, segment_interval)?,
            schema: SessionKeySchema,
        })
    }

    fn write(
        &mut self,
        key: &[u8],
        start: i64,
        end: i64,
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if value.is_some() {
            self.segments.observe(end)?;
        }
        let Some(segment) = self.segments.segment_for_write(end)? else {
            tracing::debug!(store = %self.segments.name(), end, "dropping write to expired session");
            return Ok(());
        };
        let raw = session_key(key, start, end);
        match value {
            Some(v) => segment.store_mut().put(&raw, v),
            None => segment.store_mut().delete(&raw),
        }
    }
}

impl ReadOnlySessionStore for SegmentedSessionStore {
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Result<SessionIter<'_>, StoreError> {
        let from = earliest_session_end.max(self.segments.min_live_time());
        // Scan [key][end >= from] up to the end of this key's sessions; start is checked
        // after decoding, since end is not bounded by the query.
        let mut lo = key.to_vec();
        lo.extend_from_slice(&encode_timestamp(from));
        let mut hi = key.to_vec();
        hi.extend_from_slice(&[0xFF; 16]);
        let mut iters = Vec::new();
        for segment in self.segments.segments_between(from, i64::MAX)? {
            iters.push(
                segment
                    .store()
                    .range(Bound::Included(&lo), Bound::Included(&hi))?,
            );
        }
        let key = key.to_vec();
        let name = self.segments.name();
        Ok(Box::new(iters.into_iter().flatten().filter_map(
            move |r| match r {
                Err(e) => Some(Err(e)),
                Ok((raw, value)) => match split_session_key(&raw) {
                    None => Some(Err(StoreError::corrupt(
                        name,
                        format!("session key of {} bytes", raw.len()),
                    ))),
                    Some((k, start, end)) => {
                        (k == key.as_slice() && end >= from && start <= latest_session_start).then(
                            || {
                                Ok((
                                    SessionKey {
                                        key: k.to_vec(),
                                        start,
                                        end,
                                    },
                                    value,
                                ))
                            },
                        )
                    }
                },
            },
        )))
    }

    fn fetch_session(
        &self,
        key: &[u8],
        start: i64,
        end: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self.segments.segment(end)? {
            Some(segment) => segment.store().get(&session_key(key, start, end)),
            None => Ok(None),
        }
    }
}

impl SessionStore for SegmentedSessionStore {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: &[u8]) -> Result<(), StoreError> {
        self.write(key, start, end, Some(value))
    }

    fn remove(&mut self, key: &[u8], start: i64, end: i64) -> Result<(), StoreError> {
        self.write(key, start, end, None)
    }
}
