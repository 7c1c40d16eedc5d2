//! What the sessions of one server or client share: the settings a [`Builder`](crate::Builder)
//! collected ([`Settings`]), the router, the hooks and the pool ([`Shared`]), and the
//! defaults that depend on the transport.
//!
//! The builder fills these in and hands them down; nothing here imports the builder.
//! `session/`, `driver/` and `transport/` read [`Shared`] through the session they run.
//! It names the router (`service/`) and the pool, hook arguments and kill signal
//! (`session/`), because it is the one value that carries them to every session: a
//! session holds its `Shared`, and the router's handlers take sessions, so these three
//! know each other's types (the one loop left among the runtime's modules). The
//! transports' own options (`TransportSettings`) stay with the builder, which hands
//! them to the transport it starts.

use std::sync::Arc;
use std::time::Duration;

use crate::codec::Codec;
use crate::service::router::Router;
use crate::session::error::SessionError;
use crate::session::pool::SessionPool;
use crate::session::signal::Signal;
use crate::session::{CloseReason, Session};
use crate::url::Transport;
use crate::wire::Status;
use crate::wire::frame::MAX_FRAME_LEN;

/// What happens to a session whose handler panicked. The panic itself is always caught,
/// logged with the session, peer and message, and reported to the error hook; other
/// sessions never notice it.
///
/// With [`Continue`](Self::Continue), a caller whose request panicked the handler gets
/// an [`Internal`](crate::Code::Internal) status and the session goes on:
///
/// ```
/// use gonet::{Builder, Code, PanicPolicy, Router, Session};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Ping {
///     #[prost(uint32, tag = "1")]
///     n: u32,
/// }
/// gonet::message!(Ping = 1, prost);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new().route(|_: Session, ping: Ping| async move {
///     assert!(ping.n != 0, "n must not be 0");
///     ping
/// });
/// let server = Builder::new()
///     .panic_policy(PanicPolicy::Continue)
///     .router(router)
///     .serve("tcp://127.0.0.1:0")
///     .await?;
/// let client = Builder::new().dial(&server.url()).await?;
///
/// let err = client.call::<_, Ping>(&Ping { n: 0 }).await.unwrap_err();
/// assert_eq!(err.status().map(|s| s.code()), Some(Code::Internal));
/// let pong: Ping = client.call(&Ping { n: 1 }).await?; // still served
/// assert_eq!(pong.n, 1);
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// Close the session with [`CloseReason::HandlerPanicked`] (the default): its state
    /// may be inconsistent after a panic.
    #[default]
    CloseSession,
    /// Skip the message and go on with the next one.
    Continue,
}

/// The default of [`Builder::max_pending_handshakes`](crate::Builder::max_pending_handshakes).
const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;
/// The default of [`Builder::handshake_timeout`](crate::Builder::handshake_timeout).
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) codec: Codec,
    pub(crate) max_frame_len: usize,
    pub(crate) inbound_queue: usize,
    pub(crate) outbound_limit: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) panic_policy: PanicPolicy,
    pub(crate) max_sessions: usize,
    pub(crate) max_pending_handshakes: usize,
    pub(crate) handshake_timeout: Duration,
    /// `None`: the transport's default; a zero duration: off.
    pub(crate) heartbeat: Option<Duration>,
    /// `None`: the transport's default; a zero duration: off.
    pub(crate) idle_timeout: Option<Duration>,
    /// `None`: [`default_plain`].
    pub(crate) plain: Option<bool>,
    /// Zero: off.
    pub(crate) frame_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    /// Set on a client: it starts every session with this handshake.
    pub(crate) hello: Option<ClientHello>,
    /// Set on a server: its sessions outlive a dropped connection.
    pub(crate) resume: Option<crate::session::resume::ResumeSettings>,
    /// Set on a client: it connects again and resumes after a drop.
    pub(crate) reconnect: Option<crate::session::resume::Reconnect>,
    /// Each session's rate limit.
    pub(crate) rate_limit: Option<crate::session::limit::RateLimit>,
    /// Limits per remote address.
    pub(crate) ip_limit: Option<crate::session::limit::IpLimit>,
}

/// The heartbeat interval and idle timeout of a transport when the builder sets none.
///
/// TCP, WebSocket and QUIC report a peer that closes or resets, and QUIC has its own
/// keep-alive and idle timeout; their defaults are off. UDP and KCP have no connection
/// to lose: a silent peer is the only sign that it is gone, so they ping after 5 s of
/// silence and close after 15 s (in plain mode, their servers' default, only a peer that
/// has used the extension is pinged).
pub(crate) fn default_heartbeat(t: Transport) -> (Option<Duration>, Option<Duration>) {
    match t {
        Transport::Udp | Transport::Kcp => {
            (Some(Duration::from_secs(5)), Some(Duration::from_secs(15)))
        }
        _ => (None, None),
    }
}

/// Whether a session is in plain mode when the builder does not say (see
/// `Builder::plain`): a server's sessions on UDP and KCP, whose heartbeats are on by
/// default and whose Go gonet peers know no frame of the extension.
pub(crate) fn default_plain(t: Transport, server: bool) -> bool {
    server && matches!(t, Transport::Udp | Transport::Kcp)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            codec: Codec::default(),
            max_frame_len: MAX_FRAME_LEN,
            inbound_queue: 128,
            outbound_limit: 4 << 20,
            write_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            panic_policy: PanicPolicy::default(),
            max_sessions: 100_000,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            heartbeat: None,
            idle_timeout: None,
            plain: None,
            frame_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            hello: None,
            resume: None,
            reconnect: None,
            rate_limit: None,
            ip_limit: None,
        }
    }
}

type SessionHook = Arc<dyn Fn(&Session) + Send + Sync>;
type CloseHook = Arc<dyn Fn(&Session, &CloseReason) + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&Session, &SessionError) + Send + Sync>;
type BindHook = Arc<dyn Fn(&Session, &str) + Send + Sync>;
/// The outbound layers of a server or client, in the order added.
pub(crate) type OutboundLayers = crate::service::layer::OutboundLayers;
type LinkHook = Arc<dyn Fn(&Session, &crate::session::resume::LinkEvent) + Send + Sync>;
pub(crate) type HandshakeFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Status>> + Send>>;
pub(crate) type HandshakeHook = Arc<dyn Fn(Session, HelloParts) -> HandshakeFuture + Send + Sync>;

/// A client's handshake as the server's hook receives it (see
/// [`Builder::on_handshake`](crate::Builder::on_handshake)): what the client said about
/// itself, and its application payload (a token, typed by the application).
#[derive(Debug)]
#[non_exhaustive]
pub struct Handshake<T> {
    /// The client's version, as its application gave it.
    pub client_version: String,
    /// The client's platform (`ios`, `web`, ...), as its application gave it.
    pub platform: String,
    /// The application's payload.
    pub payload: T,
}

/// A handshake before its payload is decoded.
#[derive(Debug)]
pub(crate) struct HelloParts {
    pub(crate) version: u16,
    pub(crate) client_version: String,
    pub(crate) platform: String,
    pub(crate) payload_id: u32,
    pub(crate) payload: bytes::Bytes,
}

/// Encodes a client's handshake payload in the codec of the session.
pub(crate) type PayloadEncoder =
    Arc<dyn Fn(Codec) -> Result<(u32, bytes::Bytes), crate::codec::CodecError> + Send + Sync>;

/// What a client sends in its handshake (see [`Builder::hello`](crate::Builder::hello)).
#[derive(Clone)]
pub(crate) struct ClientHello {
    pub(crate) client_version: String,
    pub(crate) platform: String,
    pub(crate) payload: PayloadEncoder,
}

impl std::fmt::Debug for ClientHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHello")
            .field("client_version", &self.client_version)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_connect: Option<SessionHook>,
    pub(crate) on_close: Option<CloseHook>,
    pub(crate) on_error: Option<ErrorHook>,
    pub(crate) on_bind: Option<BindHook>,
    pub(crate) on_link: Option<LinkHook>,
    /// Layers on every application frame leaving a session.
    pub(crate) outbound: Option<OutboundLayers>,
    /// Set on a server: every session starts with the client's handshake.
    pub(crate) on_handshake: Option<HandshakeHook>,
}

/// Everything the sessions of one server or client share.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) router: Router,
    pub(crate) hooks: Hooks,
    pub(crate) pool: Option<SessionPool>,
    /// Cancelled when a shutdown runs out of time: every session stops at once, even
    /// inside a handler.
    pub(crate) kill: Signal,
}
