//! How a [`KafkaLog`](super::KafkaLog) reaches the cluster: bootstrap servers, timeouts, the
//! transactional id prefix and any librdkafka property, for every client or for one kind.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;

/// How to reach the cluster, and any librdkafka property.
///
/// ```
/// use std::time::Duration;
/// use streams_core::KafkaLogConfig;
///
/// let config = KafkaLogConfig::new("127.0.0.1:9092")
///     .with_property("client.id", "word-count")
///     .with_producer_property("linger.ms", "5")
///     .with_timeout(Duration::from_secs(10));
/// assert_eq!(config.properties["client.id"], "word-count");
/// assert_eq!(config.producer_properties["linger.ms"], "5");
/// ```
///
/// Its `Debug` output shows every property but the secrets ([`KafkaLogConfig::is_secret`]),
/// whose values read `[redacted]`:
///
/// ```
/// use streams_core::KafkaLogConfig;
///
/// let config = KafkaLogConfig::new("broker:9093")
///     .with_property("security.protocol", "SASL_SSL")
///     .with_property("sasl.mechanism", "SCRAM-SHA-512")
///     .with_property("sasl.username", "alice")
///     .with_property("sasl.password", "alice-secret");
/// let debug = format!("{config:?}");
/// assert!(debug.contains("SCRAM-SHA-512") && !debug.contains("alice-secret"), "{debug}");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KafkaLogConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// librdkafka properties given to every client (admin, producers, consumers), after the
    /// log's own defaults, so they override them. Properties meant for another kind of client
    /// are ignored by librdkafka with a warning.
    pub properties: BTreeMap<String, String>,
    /// Properties for producers only, applied after `properties`.
    pub producer_properties: BTreeMap<String, String>,
    /// Properties for consumers only, applied after `properties`.
    pub consumer_properties: BTreeMap<String, String>,
    /// The longest any one call may take.
    pub timeout: Duration,
    /// Replication factor of topics the log creates; `-1` leaves it to the broker's default.
    pub replication_factor: i32,
    /// Prefix of the `transactional.id`s of transactional producers (`<prefix>-<slot>`, one
    /// slot per transaction open at once, so per stream thread). It must differ between
    /// processes that run at the same time, or they fence each other's transactions; by
    /// default it is random per configuration. Give a stable one per instance, such as
    /// `<application id>-<StreamsConfig::process_id>`, so that a restarted instance fences
    /// what its predecessor left open.
    pub transactional_id_prefix: String,
    /// `group.instance.id` of the group member (static membership): a member that restarts
    /// with the same id within `session_timeout` gets its partitions back without a
    /// rebalance. Set only on the member, never on the log's other clients.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms` of the group member: how long the coordinator waits for a
    /// member that stopped sending heartbeats before it gives its partitions to the others.
    pub session_timeout: Duration,
}

/// librdkafka's sensitive properties (those it never prints itself), by name.
const SECRETS: &[&str] = &[
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.keystore.password",
    "ssl.ca.pem",
];

impl std::fmt::Debug for KafkaLogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLogConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &Redacted(&self.properties))
            .field("producer_properties", &Redacted(&self.producer_properties))
            .field("consumer_properties", &Redacted(&self.consumer_properties))
            .field("timeout", &self.timeout)
            .field("replication_factor", &self.replication_factor)
            .field("transactional_id_prefix", &self.transactional_id_prefix)
            .field("group_instance_id", &self.group_instance_id)
            .field("session_timeout", &self.session_timeout)
            .finish()
    }
}

/// Properties as a map, with the values of secrets left out.
struct Redacted<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown: &dyn std::fmt::Debug = if KafkaLogConfig::is_secret(k) {
                    &"[redacted]"
                } else {
                    v
                };
                (k, shown)
            }))
            .finish()
    }
}

/// `kstreams-` and 16 random hex digits (the process id if no randomness is to be had).
fn random_prefix() -> String {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("kstreams-{hex}")
        }
        Err(_) => format!("kstreams-{}", std::process::id()),
    }
}

impl KafkaLogConfig {
    /// A configuration with the given bootstrap servers, a 30 s timeout and the broker's
    /// default replication factor.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaLogConfig {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            timeout: Duration::from_secs(30),
            replication_factor: -1,
            transactional_id_prefix: random_prefix(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
        }
    }

    /// Whether the librdkafka property `key` holds a secret (a password, a private key or
    /// where it is, a client secret, a SASL user name): `Debug` output leaves its value out.
    /// These are librdkafka's own sensitive properties, and any other whose name speaks of a
    /// password, a secret or a passphrase.
    ///
    /// ```
    /// use streams_core::KafkaLogConfig;
    ///
    /// assert!(KafkaLogConfig::is_secret("sasl.password"));
    /// assert!(KafkaLogConfig::is_secret("ssl.key.pem"));
    /// assert!(!KafkaLogConfig::is_secret("sasl.mechanism"));
    /// ```
    pub fn is_secret(key: &str) -> bool {
        let key = key.trim().to_ascii_lowercase();
        SECRETS.contains(&key.as_str())
            || ["password", "secret", "passphrase", "private.key"]
                .iter()
                .any(|word| key.contains(word))
    }

    /// Sets `group.instance.id` (static membership).
    pub fn with_group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.group_instance_id = Some(id.into());
        self
    }

    /// Sets the member's `session.timeout.ms`.
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Sets a librdkafka property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Sets the longest any one call may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the replication factor of topics the log creates.
    pub fn with_replication_factor(mut self, factor: i32) -> Self {
        self.replication_factor = factor;
        self
    }

    /// Sets the prefix of `transactional.id`s: unique per running instance, and stable across
    /// its restarts so a restarted instance fences its predecessor's open transactions (see
    /// [`KafkaLogConfig::transactional_id_prefix`]).
    pub fn with_transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.transactional_id_prefix = prefix.into();
        self
    }

    /// Sets a librdkafka property for producers only (`batch.num.messages`, `linger.ms`...),
    /// so that consumers do not warn about a property they ignore.
    pub fn with_producer_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.producer_properties.insert(key.into(), value.into());
        self
    }

    /// Sets a librdkafka property for consumers only (the readers, the group member).
    pub fn with_consumer_property(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.consumer_properties.insert(key.into(), value.into());
        self
    }

    /// A librdkafka configuration for a client of `kind`: the log's defaults, then the
    /// user's properties for every client, then those for that kind.
    pub(super) fn client_config(
        &self,
        kind: ClientKind,
        defaults: &[(&str, &str)],
    ) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        let ms = self.timeout.as_millis().to_string();
        config.set("socket.timeout.ms", &ms);

        for (k, v) in defaults {
            config.set(*k, *v);
        }
        let own = match kind {
            ClientKind::Admin => None,
            ClientKind::Producer => Some(&self.producer_properties),
            ClientKind::Consumer => Some(&self.consumer_properties),
        };
        for (k, v) in self.properties.iter().chain(own.into_iter().flatten()) {
            config.set(k, v);
        }
        if matches!(kind, ClientKind::Admin) {
            // Nothing polls the admin client's main queue, where its statistics would pile up.
            config.set("statistics.interval.ms", "0");
        }
        config
    }
}

impl KafkaLogConfig {
    /// How often the clients report their statistics (`statistics.interval.ms`, librdkafka's
    /// default 0: they do not).
    pub(super) fn statistics_interval(&self) -> Duration {
        let set = self
            .properties
            .get("statistics.interval.ms")
            .and_then(|v| v.trim().parse::<u64>().ok());
        Duration::from_millis(set.unwrap_or(0))
    }
}

/// The kinds of librdkafka client the log makes.
#[derive(Clone, Copy)]
pub(super) enum ClientKind {
    Admin,
    Producer,
    Consumer,
}
