//! The errors of starting a server ([`ServeError`]) and of dialing one ([`DialError`]).

use std::time::Duration;

#[cfg(feature = "tls")]
use crate::transport::tls::TlsError;
use crate::url::UrlError;

/// Starting a server failed.
///
/// ```
/// use gonet::{Builder, ServeError, UrlErrorKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let first = Builder::new().serve("tcp://127.0.0.1:0").await?;
/// // The same address again: the port is in use.
/// match Builder::new().serve(&first.url()).await {
///     Err(ServeError::Bind { url, source }) => {
///         assert_eq!(url, first.url());
///         assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
///     }
///     other => panic!("{other:?}"),
/// }
/// match Builder::new().serve("tcp://127.0.0.1").await {
///     Err(ServeError::Url(err)) => assert!(matches!(err.kind(), UrlErrorKind::MissingPort)),
///     other => panic!("{other:?}"),
/// }
/// # first.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The URL is not valid.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Binding the listening socket failed.
    #[error("cannot listen on {url}: {source}")]
    Bind {
        /// The URL.
        url: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server's certificate or key cannot be used.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "wss", feature = "quic"))))]
    #[error("cannot listen on {url}: {source}")]
    Tls {
        /// The URL.
        url: String,
        /// The cause.
        source: TlsError,
    },
}

/// Connecting to a server failed.
///
/// ```
/// use gonet::{Builder, DialError, UrlErrorKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// match Builder::new().dial("http://127.0.0.1:80").await {
///     Err(DialError::Url(err)) => {
///         assert!(matches!(err.kind(), UrlErrorKind::UnknownScheme(s) if s == "http"));
///     }
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The URL is not valid.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The connection failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting took longer than the connect timeout.
    #[error("cannot connect to {url}: no connection after {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The connection was made but the server refused the transport's handshake (a
    /// WebSocket path it does not serve, a TLS certificate the client does not trust).
    #[error("cannot connect to {url}: handshake failed: {reason}")]
    Handshake {
        /// The URL.
        url: String,
        /// What the server or the TLS layer said.
        reason: String,
    },
    /// The server refused the client's handshake (see
    /// [`Builder::hello`](crate::Builder::hello)), with this status.
    #[error("{url} refused the handshake: {status}")]
    Refused {
        /// The URL.
        url: String,
        /// Why, as the server's hook said.
        status: crate::Status,
    },
    /// The client's TLS settings cannot be used.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "wss", feature = "quic"))))]
    #[error("cannot connect to {url}: {source}")]
    Tls {
        /// The URL.
        url: String,
        /// The cause.
        source: TlsError,
    },
}
