//! The record model: what a log stores and what a processor reads.
//!
//! Bytes appear only here and at other boundaries (sources, sinks, changelogs, stores);
//! typed code sees `K` and `V` through a [`Serde`](crate::Serde).

use std::fmt;

/// One record header: a name and optional bytes, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value; `None` is a null header value.
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record as written to a log: optional key, optional value (`None` is a tombstone),
/// timestamp in milliseconds since the epoch, and headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Key bytes; `None` for an unkeyed record.
    pub key: Option<Vec<u8>>,
    /// Value bytes; `None` is a tombstone (a deletion on compacted topics).
    pub value: Option<Vec<u8>>,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl Record {
    /// A keyed record with a value.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, timestamp: i64) -> Self {
        Record {
            key: Some(key.into()),
            value: Some(value.into()),
            timestamp,
            headers: Vec::new(),
        }
    }

    /// A tombstone for `key`.
    pub fn tombstone(key: impl Into<Vec<u8>>, timestamp: i64) -> Self {
        Record {
            key: Some(key.into()),
            value: None,
            timestamp,
            headers: Vec::new(),
        }
    }

    /// An unkeyed record.
    pub fn unkeyed(value: impl Into<Vec<u8>>, timestamp: i64) -> Self {
        Record {
            key: None,
            value: Some(value.into()),
            timestamp,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// The first header with this name.
    pub fn header(&self, key: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.key == key)
    }

    /// Bytes this record takes in a batch, roughly; used for size-based limits.
    pub fn size_estimate(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| 8 + h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum();
        24 + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + headers
    }
}

/// A record read back from a log, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's offset in its partition.
    pub offset: u64,
    /// The record.
    pub record: Record,
}

/// A topic name and partition number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// A topic-partition.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
