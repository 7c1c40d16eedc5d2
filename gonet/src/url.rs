//! Endpoint URLs: `tcp://host:port`, `ws://host:port/path`, ...
//!
//! Outside `transport/` because more than the transports name a [`Transport`]: a
//! session knows its own, and its defaults and errors depend on it. Uses no other
//! module.

use std::fmt;
use std::str::FromStr;

/// The transport a URL names.
///
/// A session knows its own ([`Session::transport`](crate::Session::transport)), for
/// code that must tell a lossy transport from a reliable one:
///
/// ```
/// use gonet::{Transport, Url};
///
/// let url: Url = "kcp://127.0.0.1:7000".parse()?;
/// assert_eq!(url.transport(), Transport::Kcp);
/// assert_eq!(Transport::Kcp.feature(), "kcp"); // the cargo feature that compiles it in
/// assert_eq!(Transport::Wss.to_string(), "wss");
///
/// fn may_lose_messages(transport: Transport) -> bool {
///     matches!(transport, Transport::Udp)
/// }
/// assert!(!may_lose_messages(url.transport()));
/// # Ok::<(), gonet::UrlError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// `tcp://`
    Tcp,
    /// `udp://`
    Udp,
    /// `ws://`
    Ws,
    /// `wss://`
    Wss,
    /// `quic://`
    Quic,
    /// `kcp://`
    Kcp,
}

impl Transport {
    /// Whether a session on this transport can be resumed on a new connection (see
    /// [`Builder::resume`](crate::Builder::resume)): the stream transports `tcp`, `ws`
    /// and `wss`.
    pub const fn resumes(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Ws | Transport::Wss)
    }

    /// The URL scheme.
    pub const fn scheme(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Quic => "quic",
            Transport::Kcp => "kcp",
        }
    }

    /// The cargo feature of gonet that compiles this transport in.
    pub const fn feature(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Quic => "quic",
            Transport::Kcp => "kcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// A parsed endpoint URL.
///
/// ```
/// use gonet::{Transport, Url};
/// let url: Url = "ws://127.0.0.1:8080/game".parse()?;
/// assert_eq!(url.transport(), Transport::Ws);
/// assert_eq!(url.authority(), "127.0.0.1:8080");
/// assert_eq!(url.path(), "/game");
///
/// let err = "http://127.0.0.1:80".parse::<Url>().unwrap_err();
/// assert!(err.to_string().contains("unknown scheme \"http\""));
/// # Ok::<(), gonet::UrlError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    transport: Transport,
    host: String,
    port: u16,
    path: String,
    query: Option<String>,
}

impl Url {
    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The host, without brackets for IPv6.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path, `/` when none was given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query after `?`, if any: the transport's own parameters (only `kcp://`
    /// takes some, e.g. `kcp://host:port?crypt=aes&fec=10,3`).
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.transport, self.authority(), self.path)?;
        match &self.query {
            Some(query) => write!(f, "?{query}"),
            None => Ok(()),
        }
    }
}

/// A URL that cannot be used.
///
/// Its text quotes the URL and says what is wrong; [`kind`](Self::kind) is the part to
/// match on.
///
/// ```
/// use gonet::{Url, UrlErrorKind};
///
/// let err = "tcp://127.0.0.1".parse::<Url>().unwrap_err();
/// assert!(matches!(err.kind(), UrlErrorKind::MissingPort));
/// assert_eq!(
///     err.to_string(),
///     "bad url \"tcp://127.0.0.1\": missing port, expected host:port"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[error("bad url {url:?}: {kind}")]
pub struct UrlError {
    url: String,
    kind: UrlErrorKind,
}

impl UrlError {
    pub(crate) fn new(url: impl Into<String>, kind: UrlErrorKind) -> Self {
        Self {
            url: url.into(),
            kind,
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> &UrlErrorKind {
        &self.kind
    }
}

/// What is wrong with a URL.
///
/// ```
/// use gonet::{Url, UrlErrorKind};
///
/// for (url, want) in [("tcp://127.0.0.1:99999", "99999"), ("tcp://127.0.0.1:http", "http")] {
///     match url.parse::<Url>().map_err(|err| err.kind().to_string()) {
///         Err(kind) => assert_eq!(kind, format!("invalid port {want:?}")),
///         Ok(url) => panic!("{url} parsed"),
///     }
/// }
/// let err = "ws2://127.0.0.1:80".parse::<Url>().unwrap_err();
/// assert!(matches!(err.kind(), UrlErrorKind::UnknownScheme(scheme) if scheme == "ws2"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlErrorKind {
    /// No `scheme://`.
    #[error("missing scheme, expected e.g. tcp://127.0.0.1:7000")]
    MissingScheme,
    /// A scheme gonet does not know.
    #[error("unknown scheme {0:?}, expected one of tcp, udp, ws, wss, quic, kcp")]
    UnknownScheme(String),
    /// The transport exists but this build does not include it.
    #[error(
        "the {transport} transport is not compiled in: enable the `{feature}` feature of gonet"
    )]
    FeatureDisabled {
        /// The transport.
        transport: Transport,
        /// The feature to enable.
        feature: &'static str,
    },
    /// No host.
    #[error("missing host")]
    MissingHost,
    /// No port.
    #[error("missing port, expected host:port")]
    MissingPort,
    /// The port is not a number from 0 to 65535.
    #[error("invalid port {0:?}")]
    BadPort(String),
    /// A path on a transport that has none.
    #[error("the {0} transport takes no path")]
    UnexpectedPath(Transport),
    /// A query (`?...`) on a transport that takes no parameters.
    #[error("the {0} transport takes no query parameters")]
    UnexpectedQuery(Transport),
    /// A query parameter the transport does not know, or a bad value for one.
    #[error("parameter `{name}`: {reason}")]
    BadParameter {
        /// The parameter's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl FromStr for Url {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let err = |kind| UrlError::new(s, kind);
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| err(UrlErrorKind::MissingScheme))?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            "quic" => Transport::Quic,
            "kcp" => Transport::Kcp,
            _ => return Err(err(UrlErrorKind::UnknownScheme(scheme.to_owned()))),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        if query.is_some() && transport != Transport::Kcp {
            return Err(err(UrlErrorKind::UnexpectedQuery(transport)));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let takes_path = matches!(transport, Transport::Ws | Transport::Wss);
        if !takes_path && !path.is_empty() && path != "/" {
            return Err(err(UrlErrorKind::UnexpectedPath(transport)));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| err(UrlErrorKind::MissingHost))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| err(UrlErrorKind::MissingPort))?;
            (host, port)
        } else {
            authority
                .rsplit_once(':')
                .ok_or_else(|| err(UrlErrorKind::MissingPort))?
        };
        if host.is_empty() {
            return Err(err(UrlErrorKind::MissingHost));
        }
        if port.is_empty() {
            return Err(err(UrlErrorKind::MissingPort));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| err(UrlErrorKind::BadPort(port.to_owned())))?;
        Ok(Url {
            transport,
            host: host.to_owned(),
            port,
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
            query: query.filter(|q| !q.is_empty()).map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme_and_ipv6() {
        let url: Url = "tcp://[::1]:7000".parse().unwrap();
        assert_eq!(url.host(), "::1");
        assert_eq!(url.authority(), "[::1]:7000");
        assert_eq!(url.to_string(), "tcp://[::1]:7000/");
        for (s, t) in [
            ("udp://a:1", Transport::Udp),
            ("WS://a:1/x", Transport::Ws),
            ("wss://a:1", Transport::Wss),
            ("quic://a:1", Transport::Quic),
            ("kcp://a:1", Transport::Kcp),
        ] {
            assert_eq!(s.parse::<Url>().unwrap().transport(), t);
        }
        let url: Url = "kcp://a:1?crypt=aes&fec=10,3".parse().unwrap();
        assert_eq!(url.query(), Some("crypt=aes&fec=10,3"));
        assert_eq!(url.authority(), "a:1");
        assert_eq!(url.to_string(), "kcp://a:1/?crypt=aes&fec=10,3");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let cases = [
            ("127.0.0.1:7000", "missing scheme"),
            ("http://a:1", "unknown scheme \"http\""),
            ("tcp://:7000", "missing host"),
            ("tcp://host", "missing port"),
            ("tcp://host:", "missing port"),
            ("tcp://host:99999", "invalid port \"99999\""),
            ("tcp://host:1/chat", "the tcp transport takes no path"),
            ("tcp://[::1", "missing host"),
            (
                "tcp://host:1?crypt=aes",
                "the tcp transport takes no query parameters",
            ),
        ];
        for (url, want) in cases {
            let err = url.parse::<Url>().unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(err.contains(url), "{url}: {err}");
        }
    }
}
