//! An instance's `application.server`: [`HostInfo`].

use crate::error::{Error, Result};

/// Where an instance serves interactive queries: its `application.server`, `host:port`.
///
/// The host is a name or an IPv4 address (letters, digits, `.`, `-`, `_`), or an IPv6
/// address in brackets; the port is 1 to 65535. Other instances reach this one there, so it
/// is the address they can connect to, not a wildcard to bind.
///
/// ```
/// use streams_core::HostInfo;
///
/// let host: HostInfo = "orders-1.internal:7070".parse()?;
/// assert_eq!((host.host(), host.port()), ("orders-1.internal", 7070));
/// assert_eq!(host.to_string(), "orders-1.internal:7070");
/// assert_eq!("[::1]:80".parse::<HostInfo>()?.host(), "::1");
/// let error = "orders-1".parse::<HostInfo>().unwrap_err().to_string();
/// assert!(error.contains("application.server") && error.contains("host:port"), "{error}");
/// # Ok::<(), streams_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostInfo {
    host: String,
    port: u16,
}

impl HostInfo {
    /// Reads `host:port`, naming what is wrong with it in an [`Error::Config`] about
    /// `application.server`.
    pub fn parse(endpoint: &str) -> Result<HostInfo> {
        let bad = |why: &str| Error::Config {
            key: "application.server".into(),
            reason: format!(
                "`{endpoint}` is not host:port (the address other instances reach this \
                 one's query server at): {why}"
            ),
        };
        if endpoint.contains("://") {
            return Err(bad("give it without a scheme such as `http://`"));
        }
        let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| bad("an IPv6 address in brackets needs `]:port` after it"))?;
            let ok = !host.is_empty()
                && host.contains(':')
                && host
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '%'));
            if !ok {
                return Err(bad("the part in brackets is not an IPv6 address"));
            }
            (host, port)
        } else {
            let (host, port) = endpoint
                .rsplit_once(':')
                .ok_or_else(|| bad("there is no `:port`"))?;
            if host.is_empty() {
                return Err(bad("the host is empty"));
            }
            if host.contains(':') {
                return Err(bad("an IPv6 address goes in brackets: `[::1]:7070`"));
            }
            if let Some(c) = host
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            {
                return Err(bad(&format!(
                    "the host has {c:?}; a host name or address has only letters, digits, \
                     `.`, `-` and `_`"
                )));
            }
            (host, port)
        };
        if host.len() > 253 {
            return Err(bad("the host is longer than 253 characters"));
        }
        let port: u16 = port.parse().map_err(|_| {
            bad(&format!(
                "the port `{port}` is not a number from 1 to 65535"
            ))
        })?;
        if port == 0 {
            return Err(bad(
                "the port is 0; give the port the query server listens on",
            ));
        }
        Ok(HostInfo {
            host: host.to_string(),
            port,
        })
    }

    /// The host name or address (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::str::FromStr for HostInfo {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        HostInfo::parse(s)
    }
}

/// `host:port`, an IPv6 address in brackets.
impl std::fmt::Display for HostInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
