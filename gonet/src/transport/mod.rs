//! Transports: thin adapters that turn a URL into connections and hand each connection
//! to the session driver as a packet source and a frame sink (module `link`).
//!
//! | scheme | shape | module |
//! |---|---|---|
//! | `tcp://` | byte stream, frame codec | `tcp` |
//! | `udp://` | one packet per datagram | `udp` |
//! | `ws://`, `wss://` | one packet per binary message | `ws` |
//! | `quic://` | byte stream per session (+ channels, datagrams) | `quic` |
//! | `kcp://` | one packet per KCP message (or a KCP byte stream) | `kcp` |
//!
//! Beside the transports: `tls` (certificates for `wss://` and `quic://`) and `error`
//! (what starting a server or dialing one can fail with). The URL and the
//! [`Transport`] names live in the crate's `url` module, since every session knows its
//! transport.
//!
//! The top of the runtime: a transport uses `driver/` (to run each connection),
//! `session/`, `wire/`, `codec/`, `url` and `settings`; nothing below imports it. Only
//! the builder calls [`listen`] and [`dial`], with the transports' own options
//! ([`TransportSettings`]). A session reaches what only its transport offers (QUIC
//! datagrams and channels) through the `LinkExtras` the transport gives it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::session::Session;
use crate::settings::Shared;
use crate::url::{Transport, Url, UrlError, UrlErrorKind};
use error::{DialError, ServeError};

pub(crate) mod error;
#[cfg(feature = "kcp")]
pub(crate) mod kcp;
#[cfg(feature = "quic")]
pub(crate) mod quic;
#[cfg(feature = "tcp")]
mod tcp;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(feature = "udp")]
pub(crate) mod udp;
#[cfg(feature = "ws")]
pub(crate) mod ws;

/// Settings only some transports read, kept by the builder and handed to [`listen`]
/// and [`dial`]. Each field exists when its feature does.
#[derive(Clone, Debug, Default)]
pub(crate) struct TransportSettings {
    #[cfg(feature = "ws")]
    pub(crate) ws: ws::WsSettings,
    #[cfg(feature = "tls")]
    pub(crate) server_tls: Option<crate::transport::tls::ServerTls>,
    #[cfg(feature = "tls")]
    pub(crate) client_tls: Option<crate::transport::tls::ClientTls>,
    #[cfg(feature = "kcp")]
    pub(crate) kcp: kcp::KcpSettings,
    #[cfg(feature = "quic")]
    pub(crate) quic: quic::QuicSettings,
}

/// A bound listener's address and its accept task.
pub(crate) struct Listening {
    pub(crate) local_addr: SocketAddr,
    pub(crate) task: JoinHandle<()>,
    /// The certificate a TLS listener presents (DER), so that a development client can
    /// trust exactly it.
    pub(crate) certificate: Option<Vec<u8>>,
    /// Run by `Server::shutdown` once every session has closed (QUIC waits for its
    /// endpoint to be idle).
    pub(crate) finish: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// A KCP listener's engine, for `Server::kcp_stats`.
    #[cfg(feature = "kcp")]
    pub(crate) kcp: Option<kcp::KcpProbe>,
}

impl Listening {
    /// Logs the bound address and runs `accept` (a transport's accept or receive loop)
    /// in a `listener` span that every session it starts inherits.
    pub(crate) fn spawn(
        transport: Transport,
        local_addr: SocketAddr,
        accept: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        tracing::info!(%local_addr, "{transport} listening");
        let span = tracing::info_span!("listener", %transport, %local_addr);
        Self {
            local_addr,
            task: tokio::spawn(tracing::Instrument::instrument(accept, span)),
            certificate: None,
            finish: None,
            #[cfg(feature = "kcp")]
            kcp: None,
        }
    }
}

/// The handshakes a listener is running, counted against
/// `Builder::max_pending_handshakes`, and its refusals, logged once per interval.
#[cfg(any(feature = "ws", feature = "quic"))]
#[derive(Clone, Debug)]
pub(crate) struct Handshakes(Arc<HandshakesInner>);

#[cfg(any(feature = "ws", feature = "quic"))]
#[derive(Debug)]
struct HandshakesInner {
    pending: std::sync::atomic::AtomicUsize,
    limit: usize,
    refused: crate::session::throttle::LogEvery,
}

/// A handshake counted as pending until this is dropped.
#[cfg(any(feature = "ws", feature = "quic"))]
#[derive(Debug)]
pub(crate) struct Pending(Arc<HandshakesInner>);

#[cfg(any(feature = "ws", feature = "quic"))]
impl Handshakes {
    pub(crate) fn new(limit: usize) -> Self {
        Self(Arc::new(HandshakesInner {
            pending: Default::default(),
            limit,
            refused: Default::default(),
        }))
    }

    /// Counts a new handshake, unless the limit is reached: then the refusal is
    /// counted (and logged once per interval) and the caller refuses the connection.
    pub(crate) fn start(&self, peer: SocketAddr) -> Option<Pending> {
        use std::sync::atomic::Ordering;
        let inner = &self.0;
        // Only the accept loop adds, so a load then an add cannot pass the limit.
        let pending = inner.pending.load(Ordering::Acquire);
        if pending < inner.limit {
            inner.pending.fetch_add(1, Ordering::AcqRel);
            return Some(Pending(inner.clone()));
        }
        crate::telemetry::connection_refused("handshakes");
        if let Some(due) = inner.refused.hit() {
            tracing::warn!(
                %peer,
                pending,
                limit = inner.limit,
                refused = due.count,
                "refused {} connection(s){}: {pending} handshakes pending (the last from {peer})",
                due.count,
                due.window(),
            );
        }
        None
    }
}

#[cfg(any(feature = "ws", feature = "quic"))]
impl Drop for Pending {
    fn drop(&mut self) {
        self.0
            .pending
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The local address to bind a client's UDP socket to so that it reaches `target`:
/// the address the system routes from (127.0.0.1 for a loopback target), port 0. Found
/// by connecting a throwaway socket, which sends nothing.
#[cfg(any(feature = "quic", feature = "kcp"))]
pub(crate) async fn client_bind_addr(target: SocketAddr) -> std::io::Result<SocketAddr> {
    let any: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = tokio::net::UdpSocket::bind(any).await?;
    probe.connect(target).await?;
    Ok(SocketAddr::new(probe.local_addr()?.ip(), 0))
}

fn not_compiled(url: &str, transport: Transport) -> UrlError {
    UrlError::new(
        url,
        UrlErrorKind::FeatureDisabled {
            transport,
            feature: transport.feature(),
        },
    )
}

pub(crate) async fn listen(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> Result<Listening, ServeError> {
    let _ = (&shared, options, &stop, &tracker);
    match url.transport() {
        #[cfg(feature = "tcp")]
        Transport::Tcp => tcp::listen(url, raw, shared, stop, tracker).await,
        #[cfg(feature = "udp")]
        Transport::Udp => udp::listen(url, raw, shared, stop, tracker).await,
        #[cfg(feature = "ws")]
        Transport::Ws => ws::listen(url, raw, shared, options, stop, tracker, false).await,
        #[cfg(feature = "wss")]
        Transport::Wss => ws::listen(url, raw, shared, options, stop, tracker, true).await,
        #[cfg(feature = "quic")]
        Transport::Quic => quic::listen(url, raw, shared, options, stop, tracker).await,
        #[cfg(feature = "kcp")]
        Transport::Kcp => kcp::listen(url, raw, shared, options, stop, tracker).await,
        #[allow(
            unreachable_patterns,
            reason = "reached when a transport feature is off"
        )]
        other => Err(not_compiled(raw, other).into()),
    }
}

pub(crate) async fn dial(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
) -> Result<Session, DialError> {
    let _ = (&shared, options);
    match url.transport() {
        #[cfg(feature = "tcp")]
        Transport::Tcp => tcp::dial(url, raw, shared).await,
        #[cfg(feature = "udp")]
        Transport::Udp => udp::dial(url, raw, shared).await,
        #[cfg(feature = "ws")]
        Transport::Ws => ws::dial(url, raw, shared, options, false).await,
        #[cfg(feature = "wss")]
        Transport::Wss => ws::dial(url, raw, shared, options, true).await,
        #[cfg(feature = "quic")]
        Transport::Quic => quic::dial(url, raw, shared, options).await,
        #[cfg(feature = "kcp")]
        Transport::Kcp => kcp::dial(url, raw, shared, options).await,
        #[allow(
            unreachable_patterns,
            reason = "reached when a transport feature is off"
        )]
        other => Err(not_compiled(raw, other).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_transport_names_its_feature() {
        for transport in [
            Transport::Tcp,
            Transport::Udp,
            Transport::Ws,
            Transport::Wss,
            Transport::Quic,
            Transport::Kcp,
        ] {
            let url = format!("{transport}://127.0.0.1:1");
            let err = not_compiled(&url, transport).to_string();
            assert!(
                err.contains(&format!(
                    "enable the `{}` feature of gonet",
                    transport.feature()
                )),
                "{err}"
            );
            assert!(err.contains(&url), "{err}");
        }
    }
}
