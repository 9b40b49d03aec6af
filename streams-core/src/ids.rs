//! Identifiers at the bottom of the crate: which task, which topic. Every layer above names
//! tasks and topics with these, so they depend on nothing but the standard library.

/// Identifies a task: sub-topology and partition. Displayed as `<subtopology>_<partition>`,
/// as in Kafka Streams, which is also the name of its state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology.
    pub subtopology: u32,
    /// The partition.
    pub partition: u32,
}

impl TaskId {
    /// A task id.
    pub fn new(subtopology: u32, partition: u32) -> Self {
        TaskId {
            subtopology,
            partition,
        }
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// Which topic a name refers to: one given by the user, or one the application owns, whose
/// real name is prefixed with the application id at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicName {
    /// A user topic, used as named.
    User(String),
    /// An internal topic: `<application-id>-<name>`.
    Internal(String),
}

impl TopicName {
    /// The topic's name in the log for an application.
    pub fn resolve(&self, application_id: &str) -> String {
        match self {
            TopicName::User(n) => n.clone(),
            TopicName::Internal(n) => format!("{application_id}-{n}"),
        }
    }
}

impl std::fmt::Display for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicName::User(n) => f.write_str(n),
            TopicName::Internal(n) => write!(f, "<app>-{n}"),
        }
    }
}
