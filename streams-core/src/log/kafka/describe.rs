//! A consumer group's members and their assignments, through DescribeGroups
//! (librdkafka's group list), with each member's assignment decoded from the consumer
//! protocol's bytes.
//!
//! The coordinator hands out member assignments only while the group is `Stable`; in any
//! other state it describes the members without them, so an assignment read here is always
//! that of the group's current generation.

use rdkafka::consumer::Consumer;

use super::client::kafka_error;
use super::KafkaLog;
use crate::error::{Error, Result};
use crate::log::{GroupDescription, GroupMember};
use crate::record::TopicPartition;

impl KafkaLog {
    pub(super) fn describe(&self, group: &str) -> Result<GroupDescription> {
        let operation = || format!("describe group {group}");
        let consumer = self.group_consumer(group)?;
        let list = consumer
            .fetch_group_list(Some(group), self.config.timeout)
            .map_err(|e| kafka_error(operation(), None, &e))?;
        let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
            // The coordinator knows no such group (yet): none of its members has joined.
            return Ok(GroupDescription {
                state: "Dead".into(),
                members: Vec::new(),
            });
        };
        let bad = |reason: String| Error::Kafka {
            operation: operation(),
            topic: None,
            partition: None,
            reason,
            retriable: false,
        };
        let mut members = Vec::with_capacity(info.members().len());
        for m in info.members() {
            // librdkafka's accessors insist on UTF-8 and panic otherwise.
            let strings = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (
                    m.id().to_string(),
                    m.client_id().to_string(),
                    m.client_host().to_string(),
                )
            }));
            let Ok((member_id, client_id, client_host)) = strings else {
                return Err(bad("a member's id, client id or host is not UTF-8".into()));
            };
            let assignment = match m.assignment() {
                None => Vec::new(),
                Some(bytes) => decode_assignment(bytes).map_err(|why| {
                    bad(format!(
                        "the assignment of member {member_id} (client id `{client_id}`) \
                         cannot be read: {why}"
                    ))
                })?,
            };
            members.push(GroupMember {
                member_id,
                client_id,
                client_host,
                assignment,
            });
        }
        Ok(GroupDescription {
            state: info.state().to_string(),
            members,
        })
    }
}

/// Reads a consumer protocol assignment: version (int16), then the assigned partitions as an
/// array of (topic string, array of int32); the user data after them is not needed. Newer
/// versions keep that prefix (the protocol promises it), so every version is read alike.
pub(super) fn decode_assignment(bytes: &[u8]) -> std::result::Result<Vec<TopicPartition>, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.i16("the version")?;
    if version < 0 {
        return Err(format!("version {version} is negative"));
    }
    let mut out = Vec::new();
    let topics = r.i32("the topic count")?;
    for _ in 0..topics.max(0) {
        let len = r.i16("a topic name's length")?;
        let len = usize::try_from(len).map_err(|_| format!("a topic name's length is {len}"))?;
        let name = r.take(len, "a topic name")?;
        let topic = std::str::from_utf8(name)
            .map_err(|_| "a topic name is not UTF-8".to_string())?
            .to_string();
        let partitions = r.i32("a partition count")?;
        for _ in 0..partitions.max(0) {
            let p = r.i32("a partition")?;
            let p = u32::try_from(p).map_err(|_| format!("topic {topic} has partition {p}"))?;
            out.push(TopicPartition::new(topic.clone(), p));
        }
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "it ends at byte {} before {what} ({n} bytes)",
                self.bytes.len()
            ));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i16(&mut self, what: &str) -> std::result::Result<i16, String> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> std::result::Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An assignment as a consumer encodes it: version, topics with partitions, user data.
    fn encode(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut out = version.to_be_bytes().to_vec();
        out.extend((topics.len() as i32).to_be_bytes());
        for (name, parts) in topics {
            out.extend((name.len() as i16).to_be_bytes());
            out.extend(name.as_bytes());
            out.extend((parts.len() as i32).to_be_bytes());
            for p in *parts {
                out.extend(p.to_be_bytes());
            }
        }
        match user_data {
            Some(d) => {
                out.extend((d.len() as i32).to_be_bytes());
                out.extend(d);
            }
            None => out.extend((-1i32).to_be_bytes()),
        }
        out
    }

    #[test]
    fn assignments_of_every_version_decode() {
        for version in [0, 1, 3, 7] {
            let bytes = encode(version, &[("a", &[0, 2]), ("bb", &[1])], Some(b"x"));
            assert_eq!(
                decode_assignment(&bytes),
                Ok(vec![
                    TopicPartition::new("a", 0),
                    TopicPartition::new("a", 2),
                    TopicPartition::new("bb", 1),
                ]),
                "version {version}"
            );
        }
        assert_eq!(decode_assignment(&encode(0, &[], None)), Ok(vec![]));
    }

    #[test]
    fn a_damaged_assignment_is_an_error_not_a_panic() {
        let bytes = encode(1, &[("topic", &[0, 1, 2])], None);
        for cut in 0..bytes.len() - 4 {
            let error = decode_assignment(&bytes[..cut]).unwrap_err();
            assert!(error.contains("ends at byte"), "cut at {cut}: {error}");
        }
        let negative = encode(0, &[("t", &[-3])], None);
        assert!(decode_assignment(&negative)
            .unwrap_err()
            .contains("partition -3"));
        let mut bad_len = encode(0, &[("t", &[0])], None);
        bad_len[6..8].copy_from_slice(&(-2i16).to_be_bytes());
        assert!(decode_assignment(&bad_len).unwrap_err().contains("-2"));
        assert!(decode_assignment(&(-1i16).to_be_bytes()).is_err());
    }
}
