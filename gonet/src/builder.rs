//! [`Builder`]: configuration shared by servers and clients; [`Server`]: a running
//! listener.
//!
//! The top of the runtime: the builder turns its options into the [`Settings`] and
//! [`Shared`] state of `settings` and hands them to a transport to serve or dial. No
//! other module imports this one.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::Codec;
use crate::service::router::Router;
use crate::session::error::SessionError;
use crate::session::outbox::Outbox;
use crate::session::pool::SessionPool;
use crate::session::{CloseMode, CloseReason, Session};
use crate::settings::{Hooks, PanicPolicy, Settings, Shared};
use crate::transport::error::{DialError, ServeError};
use crate::transport::{self, TransportSettings};
use crate::url::{Transport, Url};
use crate::wire::frame::MAX_FRAME_LEN;

/// Configures and starts servers ([`serve`](Self::serve)) and clients
/// ([`dial`](Self::dial)). Both ends are peers: a client's router handles what the
/// server pushes.
///
/// ```no_run
/// use gonet::{Builder, Codec, Router};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Builder::new()
///     .codec(Codec::Protobuf)
///     .router(Router::new())
///     .on_connect(|s| tracing::info!(session = s.id(), "connected"))
///     .serve("tcp://127.0.0.1:7000")
///     .await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// client.close("done");
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Builder {
    settings: Settings,
    /// The options only some transports read.
    transport: TransportSettings,
    router: Router,
    hooks: Hooks,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("settings", &self.settings)
            .field("transport", &self.transport)
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder with the defaults: the first compiled codec, 64 KiB frames, an inbound
    /// queue of 128 messages, a 4 MiB outbound limit, a 30 s write timeout, a 10 s call
    /// timeout, a 10 s connect timeout, 100,000 sessions, a 30 s frame timeout, 1024
    /// pending handshakes with a 10 s handshake timeout, and the transport's heartbeat
    /// defaults (see [`heartbeat`](Self::heartbeat)); on QUIC 100 channels per session
    /// and a 4 MiB receive window.
    pub fn new() -> Self {
        Self::default()
    }

    /// The codec of message bodies.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.settings.codec = codec;
        self
    }

    /// The handlers.
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// The largest frame length field accepted and sent (4 to 65535). A longer frame
    /// from the peer closes the session with a frame error.
    pub fn max_frame_len(mut self, len: usize) -> Self {
        self.settings.max_frame_len = len.clamp(crate::wire::frame::MIN_FRAME_LEN, MAX_FRAME_LEN);
        self
    }

    /// Messages read but waiting for their turn, per session: while a handler awaits
    /// something, the messages behind it queue. When the queue is full the session
    /// stops reading its socket until the handler catches up (backpressure); nothing is
    /// dropped. Default 128.
    ///
    /// On QUIC the bound is the session's, whatever the number of channels the peer
    /// opens: their messages waiting share it (each channel's reader may take one more
    /// when it reads at the same moment as another).
    pub fn inbound_queue(mut self, messages: usize) -> Self {
        self.settings.inbound_queue = messages.max(1);
        self
    }

    /// Bytes queued for one peer before it counts as not reading. A send that would pass
    /// the limit fails with [`SendError::QueueFull`](crate::SendError::QueueFull) and
    /// closes the session with [`CloseReason::SlowPeer`]. A single frame larger than the
    /// limit is still taken when the queue is empty.
    pub fn outbound_limit(mut self, bytes: usize) -> Self {
        self.settings.outbound_limit = bytes;
        self
    }

    /// How long one batched write (at most 64 KiB) may take. A peer that takes nothing
    /// for this long is closed with [`CloseReason::SlowPeer`].
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.settings.write_timeout = timeout;
        self
    }

    /// The default timeout of [`Session::call`].
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.settings.call_timeout = timeout;
        self
    }

    /// How long [`dial`](Self::dial) may take to connect, including TLS and WebSocket
    /// handshakes (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// What happens to a session whose handler panicked.
    pub fn panic_policy(mut self, policy: PanicPolicy) -> Self {
        self.settings.panic_policy = policy;
        self
    }

    /// The most sessions a server holds; a connection over the limit is closed at once
    /// and logged. Ignored by [`dial`](Self::dial).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.settings.max_sessions = max;
        self
    }

    /// The most connections a server holds while their handshake runs (default 1024):
    /// the WebSocket upgrade of `ws://`, the TLS and WebSocket handshakes of `wss://`,
    /// the QUIC handshake and the wait for the session's stream on `quic://`. A
    /// connection over the limit is refused at once, before it costs a task or a
    /// buffer: a TCP connection is accepted and closed, a QUIC one refused with a
    /// `CONNECTION_REFUSED` close. Refusals are logged once per 10 s, with their count.
    /// TCP, UDP and KCP have no handshake. Ignored by [`dial`](Self::dial).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = gonet::Builder::new()
    ///     .max_pending_handshakes(256)
    ///     .handshake_timeout(Duration::from_secs(5));
    /// # let _ = builder;
    /// ```
    pub fn max_pending_handshakes(mut self, max: usize) -> Self {
        self.settings.max_pending_handshakes = max;
        self
    }

    /// How long a server waits for a connection's handshake (the same ones as
    /// [`max_pending_handshakes`](Self::max_pending_handshakes)), and for a client's
    /// own handshake when it asks for one ([`on_handshake`](Self::on_handshake)), before
    /// it closes the connection (default 10 s). A client that sends a handshake
    /// ([`hello`](Self::hello)) waits as long for the answer.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// Pings a peer that has been silent for `interval` (and again every `interval`
    /// while it stays silent); the peer's reader answers with a pong. `Duration::ZERO`
    /// turns pings off.
    ///
    /// Default: off on TCP, WebSocket and QUIC; 5 s on UDP and KCP, whose sessions have
    /// no other way to learn that a peer is gone. Heartbeats are frames of the
    /// framework's reserved id range (see `PROTOCOL.md`): in [plain mode](Self::plain)
    /// (a UDP or KCP server's default) a peer is pinged only once it has used the extension itself,
    /// so a plain gonet v3 peer never receives one; every gonet-rs peer answers them.
    ///
    /// The first ping goes out exactly `interval` after the peer was last heard, and one
    /// more every `interval` while it stays silent.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.settings.heartbeat = Some(interval);
        self
    }

    /// Closes a session with [`CloseReason::IdleTimeout`] when nothing at all (no
    /// message, no heartbeat) came from the peer for `timeout`. `Duration::ZERO` turns it
    /// off. Pair it with a [`heartbeat`](Self::heartbeat) well below it, so that a quiet
    /// but live peer is pinged and answers.
    ///
    /// Default: off on TCP and WebSocket, 15 s on UDP and KCP. On QUIC it also sets the
    /// connection's idle timeout (default 30 s there, with a 5 s keep-alive).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.idle_timeout = Some(timeout);
        self
    }

    /// Plain mode: the framework sends a peer nothing outside gonet v3's plain frames
    /// until that peer has itself sent a frame of the protocol extension (a call, a ping,
    /// a handshake: see `PROTOCOL.md`). No ping, no bye, nothing a Go gonet peer would
    /// take for an unknown message id. The [idle timeout](Self::idle_timeout) still
    /// applies: a plain peer that falls silent for it is closed with
    /// [`CloseReason::IdleTimeout`].
    ///
    /// What the application asks for itself (a [`Session::call`], a handshake, metadata)
    /// is sent in either mode: it is the application's choice to speak the extension.
    ///
    /// Default: **on for a server's sessions on UDP and KCP**, where heartbeats are on
    /// by default and any peer may be a Go gonet client (a gonet-rs client pings and
    /// says bye, which tells the server it may do the same); off on TCP, WebSocket and
    /// QUIC, whose heartbeats are off unless set (turn it on there too if a server with
    /// heartbeats serves Go gonet clients), and off for a client's sessions (it speaks
    /// first, and a gonet-rs server knows every frame). Turn it on for a client that
    /// talks to a Go gonet server over UDP or KCP:
    ///
    /// ```
    /// # #[cfg(feature = "udp")]
    /// # async fn example() -> Result<(), gonet::DialError> {
    /// // Nothing but plain frames towards a Go gonet v3 UDP server.
    /// let session = gonet::Builder::new()
    ///     .plain(true)
    ///     .dial("udp://127.0.0.1:9000")
    ///     .await?;
    /// # drop(session);
    /// # Ok(())
    /// # }
    /// ```
    pub fn plain(mut self, on: bool) -> Self {
        self.settings.plain = Some(on);
        self
    }

    /// How long a frame may take to arrive on a stream transport (TCP, KCP, a QUIC
    /// stream or channel) once its first byte has. A frame still incomplete after it
    /// closes the session with a [`SessionErrorKind::FrameTimeout`](crate::SessionErrorKind::FrameTimeout)
    /// error naming the frame's size and how much of it came: this is what ends a
    /// peer that trickles a byte at a time (slowloris) or stops mid-frame.
    /// `Duration::ZERO` turns it off.
    ///
    /// On WebSocket it bounds a message the same way, from its first byte to its last
    /// (the session closes with code 1008 and a
    /// [`SessionErrorKind::MessageTimeout`](crate::SessionErrorKind::MessageTimeout)
    /// error); UDP datagrams arrive whole.
    ///
    /// Default: 30 s. A session between frames is not timed by it (see
    /// [`idle_timeout`](Self::idle_timeout)). Only a wait with part of a frame buffered
    /// arms the timer, so whole frames cost nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = gonet::Builder::new().frame_timeout(Duration::from_secs(5));
    /// # let _ = builder;
    /// ```
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.settings.frame_timeout = timeout;
        self
    }

    /// The certificate a `wss://` or `quic://` server presents. Without one, the server
    /// generates a self-signed development certificate at start-up (logged as a
    /// warning); [`Server::certificate`] returns it so a client can trust it.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "wss", feature = "quic"))))]
    pub fn server_tls(mut self, tls: crate::transport::tls::ServerTls) -> Self {
        self.transport.server_tls = Some(tls);
        self
    }

    /// Whom a `wss://` or `quic://` client trusts. Dialing such a URL without it fails
    /// with [`TlsError::NoTrust`](crate::TlsError::NoTrust).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "wss", feature = "quic"))))]
    pub fn client_tls(mut self, tls: crate::transport::tls::ClientTls) -> Self {
        self.transport.client_tls = Some(tls);
        self
    }

    /// The `Origin` header values a WebSocket server accepts (exact match, such as
    /// `https://game.example.com`). Empty (the default) accepts every origin and
    /// requests without one; otherwise a handshake with another or no origin gets
    /// HTTP 403.
    #[cfg(feature = "ws")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.transport.ws.origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The most channels ([`Session::open_channel`]) a QUIC peer may have open at once
    /// on one session (default 100). A peer over the limit waits (QUIC's stream limit)
    /// until one of its channels finishes. Each open channel holds its own reader: a
    /// read buffer of up to 64 KiB and the message its handler is running.
    ///
    /// The messages waiting behind running handlers are counted for the whole session,
    /// whichever channel they came on: [`inbound_queue`](Self::inbound_queue) bounds
    /// them all.
    #[cfg(feature = "quic")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
    pub fn quic_max_channels(mut self, channels: u32) -> Self {
        self.transport.quic.max_channels = channels;
        self
    }

    /// The most bytes a QUIC peer may have sent on one connection, over all its streams,
    /// that the session has not read yet (QUIC's connection flow-control window; default
    /// 4 MiB, at least 64 KiB). One stream may take at most a quarter of it (and no
    /// more than 1.25 MB), so one stalled channel alone never holds up the others. A
    /// larger window carries more on a path with a long round trip; it is also what a
    /// peer can make the server buffer for one connection, however many channels it
    /// opens.
    #[cfg(feature = "quic")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
    pub fn quic_receive_window(mut self, bytes: u32) -> Self {
        self.transport.quic.receive_window = bytes;
        self
    }

    /// The ALPN protocol ids a QUIC client offers or a QUIC server accepts, in order of
    /// preference (default: `gonet`). TLS refuses a connection whose two ends share
    /// none. Go gonet v3's QUIC transport uses `quic-echo-example`:
    ///
    /// ```
    /// let builder = gonet::Builder::new().quic_alpn(["quic-echo-example"]);
    /// # drop(builder);
    /// ```
    #[cfg(feature = "quic")]
    #[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
    pub fn quic_alpn<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Vec<u8>>,
    {
        self.transport.quic.alpn = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// KCP tuning; the default is the fast preset [`KcpSettings::fast`](crate::KcpSettings::fast).
    #[cfg(feature = "kcp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kcp")))]
    pub fn kcp(mut self, settings: crate::transport::kcp::KcpSettings) -> Self {
        self.transport.kcp = settings;
        self
    }

    /// How long [`Server::shutdown`] waits for handlers to finish and replies to be
    /// written before it stops the remaining sessions at once (handlers still running
    /// are cancelled).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Called when a session connects, before its first message is handled.
    ///
    /// Hooks add up: every hook given is called, in the order given (a cluster node
    /// adds its own beside the application's).
    pub fn on_connect(mut self, hook: impl Fn(&Session) + Send + Sync + 'static) -> Self {
        self.hooks.on_connect = Some(match self.hooks.on_connect.take() {
            None => Arc::new(hook),
            Some(first) => Arc::new(move |s: &Session| {
                first(s);
                hook(s);
            }),
        });
        self
    }

    /// Called once a session has closed, with the reason. Hooks add up, like
    /// [`on_connect`](Self::on_connect)'s.
    pub fn on_close(
        mut self,
        hook: impl Fn(&Session, &CloseReason) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_close = Some(match self.hooks.on_close.take() {
            None => Arc::new(hook),
            Some(first) => Arc::new(move |s: &Session, r: &CloseReason| {
                first(s, r);
                hook(s, r);
            }),
        });
        self
    }

    /// Called for every error of a session (also logged through `tracing`). Hooks add
    /// up, like [`on_connect`](Self::on_connect)'s.
    pub fn on_error(
        mut self,
        hook: impl Fn(&Session, &SessionError) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_error = Some(match self.hooks.on_error.take() {
            None => Arc::new(hook),
            Some(first) => Arc::new(move |s: &Session, e: &SessionError| {
                first(s, e);
                hook(s, e);
            }),
        });
        self
    }

    /// Called when a session is bound to a user id ([`Session::bind`]), after an older
    /// session of the same user in the pool was closed. Hooks add up, like
    /// [`on_connect`](Self::on_connect)'s.
    ///
    /// ```
    /// let builder = gonet::Builder::new().on_bind(|session, uid| {
    ///     tracing::info!(session = session.id(), uid, "logged in");
    /// });
    /// # drop(builder);
    /// ```
    pub fn on_bind(mut self, hook: impl Fn(&Session, &str) + Send + Sync + 'static) -> Self {
        self.hooks.on_bind = Some(match self.hooks.on_bind.take() {
            None => Arc::new(hook),
            Some(first) => Arc::new(move |s: &Session, uid: &str| {
                first(s, uid);
                hook(s, uid);
            }),
        });
        self
    }

    /// Asks every client of the servers this builder starts for a handshake before
    /// anything else: the client's version, platform and a payload of type `T` (a token)
    /// reach `hook`, which accepts the session (`Ok`, after binding a user or storing
    /// data on it if it likes) or refuses it with a [`Status`](crate::Status) that the
    /// client receives as [`DialError::Refused`]. Until the hook accepts, no message of
    /// the session is handled, nothing is broadcast to it and the connect hook has not
    /// run; a client that sends no handshake within
    /// [`handshake_timeout`](Self::handshake_timeout) is refused. Plain gonet v3
    /// clients cannot connect to such a server; serve them on another listener.
    ///
    /// ```
    /// use gonet::{Builder, Code, DialError, Handshake, Session, Status};
    ///
    /// #[derive(Clone, PartialEq, prost::Message)]
    /// struct Token {
    ///     #[prost(string, tag = "1")]
    ///     secret: String,
    /// }
    /// gonet::message!(Token = 1, prost);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Builder::new()
    ///     .on_handshake(|session: Session, hello: Handshake<Token>| async move {
    ///         if hello.payload.secret != "open sesame" {
    ///             return Err(Status::unauthenticated("bad token"));
    ///         }
    ///         session.bind("ada");
    ///         Ok(())
    ///     })
    ///     .serve("tcp://127.0.0.1:0")
    ///     .await?;
    ///
    /// let good = Token { secret: "open sesame".into() };
    /// let client = Builder::new().hello("1.0.0", "cli", &good).dial(&server.url()).await?;
    /// assert!(server.pool().user("ada").is_some());
    ///
    /// let bad = Token { secret: "guess".into() };
    /// match Builder::new().hello("1.0.0", "cli", &bad).dial(&server.url()).await {
    ///     Err(DialError::Refused { status, .. }) => assert_eq!(status.code(), Code::Unauthenticated),
    ///     other => panic!("{other:?}"),
    /// }
    /// # drop(client);
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_handshake<T, F, Fut>(mut self, hook: F) -> Self
    where
        T: crate::Message,
        F: Fn(Session, crate::settings::Handshake<T>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), crate::Status>> + Send + 'static,
    {
        let hook = Arc::new(hook);
        self.hooks.on_handshake = Some(Arc::new(
            move |session: Session, parts: crate::settings::HelloParts| {
                let hook = hook.clone();
                Box::pin(async move {
                    if parts.payload_id != T::ID {
                        return Err(crate::Status::invalid_argument(format!(
                            "the handshake carries message {}, not {} ({})",
                            parts.payload_id,
                            T::ID,
                            T::NAME
                        )));
                    }
                    let payload =
                        T::decode_body(session.codec(), crate::codec::Body::new(&parts.payload))
                            .map_err(|e| {
                                crate::Status::invalid_argument(format!("handshake payload: {e}"))
                            })?;
                    let hello = crate::settings::Handshake {
                        client_version: parts.client_version,
                        platform: parts.platform,
                        payload,
                    };
                    hook(session, hello).await
                }) as crate::settings::HandshakeFuture
            },
        ));
        self
    }

    /// Makes every client this builder dials start with a handshake: its version, its
    /// platform (each up to 255 bytes) and `payload` (a token), for a server that asks
    /// for one ([`on_handshake`](Self::on_handshake)). [`dial`](Self::dial) returns
    /// once the server accepted, or [`DialError::Refused`] with its status.
    pub fn hello<T: crate::Message + Clone>(
        mut self,
        client_version: impl Into<String>,
        platform: impl Into<String>,
        payload: &T,
    ) -> Self {
        let payload = payload.clone();
        self.settings.hello = Some(crate::settings::ClientHello {
            client_version: client_version.into(),
            platform: platform.into(),
            payload: Arc::new(move |codec| {
                let mut body = bytes::BytesMut::new();
                payload.encode_body(codec, &mut body)?;
                Ok((T::ID, body.freeze()))
            }),
        });
        self
    }

    /// Keeps the sessions of the servers this builder starts across a dropped
    /// connection: a client with a [`reconnect`](Self::reconnect) policy comes back on
    /// a new connection within `grace` and resumes its session (same id, data, groups
    /// and user) with nothing lost either way; a session whose client does not come
    /// back closes with [`CloseReason::Expired`](crate::CloseReason::Expired).
    ///
    /// Every client then makes a handshake (without a hook of the application's
    /// ([`on_handshake`](Self::on_handshake)) every handshake is accepted), so plain
    /// gonet v3 clients cannot connect; serve them on another listener. Resume works on
    /// the stream transports: `tcp://`, `ws://` and `wss://`. Each session keeps what
    /// it sent until the client acknowledges it (an acknowledgement rides on the next
    /// batch the client writes, or comes alone within 20 ms), up to
    /// [`replay_limit`](Self::replay_limit) bytes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gonet::{Builder, LinkEvent, Reconnect};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Builder::new()
    ///     .resume(Duration::from_secs(30))
    ///     .on_link(|session, event| tracing::info!(session = session.id(), ?event, "link"))
    ///     .serve("tcp://127.0.0.1:0")
    ///     .await?;
    /// let client = Builder::new()
    ///     .reconnect(Reconnect::new().max_elapsed(Duration::from_secs(60)))
    ///     .dial(&server.url())
    ///     .await?;
    /// # drop(client);
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn resume(mut self, grace: Duration) -> Self {
        let replay_limit = self
            .settings
            .resume
            .map_or(crate::session::resume::DEFAULT_REPLAY_LIMIT, |r| {
                r.replay_limit
            });
        self.settings.resume = Some(crate::session::resume::ResumeSettings {
            grace,
            replay_limit,
        });
        self
    }

    /// Bytes a server's resumable session keeps, sent and not yet acknowledged (default
    /// 4 MiB): a session past it (its client neither reads nor comes back) closes as
    /// [`CloseReason::SlowPeer`](crate::CloseReason::SlowPeer). Takes effect with
    /// [`resume`](Self::resume).
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        let grace = self.settings.resume.map_or(Duration::ZERO, |r| r.grace);
        self.settings.resume = Some(crate::session::resume::ResumeSettings {
            grace,
            replay_limit: bytes.max(1),
        });
        self
    }

    /// Turns the runtime's metrics on (or off), for the whole process: the sessions,
    /// messages, bytes, handler times, queues, limits and refusals of every server and
    /// client, under the names of the README's "Operating it" table, recorded through
    /// the [`metrics`](https://docs.rs/metrics) facade into whatever recorder the
    /// application installed (a Prometheus exporter, statsd, ...): install it first,
    /// since the runtime keeps the handles it gets. Off (the default), they cost a
    /// relaxed atomic load at each place they would be counted.
    ///
    /// ```
    /// let server = gonet::Builder::new().metrics(true);
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(self, on: bool) -> Self {
        crate::telemetry::enable(on);
        self
    }

    /// Passes every application frame that the sessions of this builder's servers (or
    /// clients) queue for their peer through `layer` (see
    /// [`Outbound`](crate::Outbound)). Layers add up, in the order given. Without
    /// one, nothing is added to the send path.
    pub fn outbound(mut self, layer: impl crate::Outbound) -> Self {
        let mut layers: Vec<Arc<dyn crate::Outbound>> = self
            .hooks
            .outbound
            .as_deref()
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        layers.push(Arc::new(layer));
        self.hooks.outbound = Some(layers.into());
        self
    }

    /// Limits the rate of every session of the servers this builder starts: messages
    /// and bytes per second, with bursts, and what happens past them (see
    /// [`RateLimit`](crate::RateLimit) and [`RatePolicy`](crate::RatePolicy)). A
    /// message past the limit is reported to the error hook (and logged at a bounded
    /// rate per session) as
    /// [`SessionErrorKind::RateLimited`](crate::SessionErrorKind::RateLimited); other
    /// sessions are not affected. The buckets are refilled once per read, so the limit
    /// costs no clock read per message. Each QUIC channel has a bucket of its own.
    pub fn rate_limit(mut self, limit: crate::RateLimit) -> Self {
        self.settings.rate_limit = Some(limit);
        self
    }

    /// Limits what one remote address may open on the servers this builder starts:
    /// new connections per second and live sessions (see
    /// [`IpLimit`](crate::IpLimit)). A connection past it is refused before it becomes
    /// a session and logged at a bounded rate.
    pub fn ip_limit(mut self, limit: crate::IpLimit) -> Self {
        self.settings.ip_limit = Some(limit);
        self
    }

    /// Makes the clients this builder dials connect again when their connection drops,
    /// as `policy` says, and resume their session on a server that keeps sessions
    /// ([`resume`](Self::resume)): the [`Session`] handle stays valid, and what either
    /// side sent meanwhile arrives once, in order. Where the server has no session to
    /// resume (it expired, or the server restarted), the client starts a fresh one on
    /// the same handle and the link hook hears
    /// [`LinkEvent::Restarted`](crate::LinkEvent::Restarted). A deliberate close
    /// ([`Session::close`], a kick, a drain's go-away) is never taken for a drop.
    /// Works on `tcp://`, `ws://` and `wss://`.
    pub fn reconnect(mut self, policy: crate::Reconnect) -> Self {
        self.settings.reconnect = Some(policy);
        self
    }

    /// Called when the connection under a resumable session drops, is resumed, or (a
    /// client's) is replaced by a fresh session: see [`LinkEvent`](crate::LinkEvent).
    /// A session that is not resumed in time closes with
    /// [`CloseReason::Expired`](crate::CloseReason::Expired), which the close hook
    /// sees. Hooks add up, like [`on_connect`](Self::on_connect)'s.
    pub fn on_link(
        mut self,
        hook: impl Fn(&Session, &crate::LinkEvent) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_link = Some(match self.hooks.on_link.take() {
            None => Arc::new(hook),
            Some(first) => Arc::new(move |s: &Session, e: &crate::LinkEvent| {
                first(s, e);
                hook(s, e);
            }),
        });
        self
    }

    /// A session with no connection of its own: what it sends collects in the
    /// returned [`Outbox`], for its owner to carry to the peer some other way. A
    /// cluster node gives handlers such a session for a client connected to another
    /// node, and [`Router::dispatch`](crate::Router::dispatch) runs them.
    ///
    /// Calls made through a detached session are never answered (nothing delivers the
    /// replies): they end with [`CallError::Timeout`](crate::CallError::Timeout).
    ///
    /// ```
    /// use gonet::{Builder, Transport};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (session, mut outbox) = Builder::new().detached("127.0.0.1:9".parse()?, Transport::Tcp);
    /// session.send_raw(7, b"hello")?;
    /// let mut frames = Vec::new();
    /// assert!(outbox.next(&mut frames).await);
    /// assert_eq!(&frames[0][6..], b"hello");
    ///
    /// session.close("done");
    /// assert!(!outbox.next(&mut frames).await);
    /// # Ok(())
    /// # }
    /// ```
    pub fn detached(&self, peer: SocketAddr, transport: Transport) -> (Session, Outbox) {
        let session = Session::new(self.shared(None), peer, peer, transport);
        (session.clone(), Outbox::new(session))
    }

    fn shared(&self, pool: Option<SessionPool>) -> Arc<Shared> {
        let mut hooks = self.hooks.clone();
        if pool.is_some() && self.settings.resume.is_some() && hooks.on_handshake.is_none() {
            // A client resumes in place of its handshake, so a server that resumes
            // sessions asks for one; without a hook of the application's, every
            // handshake is accepted.
            hooks.on_handshake = Some(Arc::new(|_, _| {
                Box::pin(async { Ok(()) }) as crate::settings::HandshakeFuture
            }));
        }
        Arc::new(Shared {
            settings: self.settings.clone(),
            router: self.router.clone(),
            hooks,
            pool,
            kill: crate::session::signal::Signal::default(),
        })
    }

    /// Listens on `url` (`tcp://127.0.0.1:0` picks a free port) and serves sessions
    /// until [`Server::shutdown`] or until the `Server` is dropped.
    pub async fn serve(&self, url: &str) -> Result<Server, ServeError> {
        let parsed: Url = url.parse()?;
        let pool = SessionPool::new(self.settings.max_sessions, self.settings.ip_limit);
        let shared = self.shared(Some(pool.clone()));
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let kill = shared.kill.clone();
        let listener = transport::listen(
            &parsed,
            url,
            shared,
            &self.transport,
            stop.clone(),
            tracker.clone(),
        )
        .await?;
        Ok(Server {
            kill,
            shutdown_timeout: self.settings.shutdown_timeout,
            url: parsed,
            local_addr: listener.local_addr,
            certificate: listener.certificate,
            finish: listener.finish,
            pool,
            stop,
            tracker,
            accept: Some(listener.task),
            #[cfg(feature = "kcp")]
            kcp: listener.kcp,
        })
    }

    /// Connects to `url` and returns the session. The builder's router handles what the
    /// server sends that is not a reply to a call.
    pub async fn dial(&self, url: &str) -> Result<Session, DialError> {
        let parsed: Url = url.parse()?;
        let timeout = self.settings.connect_timeout;
        let session = tokio::time::timeout(
            timeout,
            transport::dial(&parsed, url, self.shared(None), &self.transport),
        )
        .await
        .map_err(|_| DialError::Timeout {
            url: url.to_owned(),
            after: timeout,
        })??;
        match (&self.settings.hello, &self.settings.reconnect) {
            (None, None) => Ok(session),
            (Some(hello), _) => self.handshake(session, Some(hello), url).await,
            // A client that resumes makes a handshake, with no payload if none was set.
            (None, Some(_)) => self.handshake(session, None, url).await,
        }
    }

    /// Sends the client's handshake and waits for the server's answer.
    async fn handshake(
        &self,
        session: Session,
        hello: Option<&crate::settings::ClientHello>,
        url: &str,
    ) -> Result<Session, DialError> {
        use crate::session::Welcome;
        let failed = |reason: String| {
            session.close("handshake failed");
            DialError::Handshake {
                url: url.to_owned(),
                reason,
            }
        };
        if let Some(hello) = hello {
            (hello.payload)(session.codec())
                .map_err(|e| failed(format!("the handshake payload does not encode: {e}")))?;
        }
        let frame = session.hello_frame().ok_or_else(|| {
            failed("the handshake does not fit (version or platform over 255 bytes, or payload over the frame limit)".into())
        })?;
        let answer = session.expect_welcome();
        session.send_control(frame);
        let timeout = self.settings.handshake_timeout;
        // A connection that closes without an answer ends the wait at once.
        let answer = async {
            tokio::select! {
                biased;
                answer = answer => answer.ok(),
                reason = session.closed() => {
                    tracing::debug!(%reason, "closed during the handshake");
                    None
                }
            }
        };
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(failed(format!(
                "no answer to the handshake within {timeout:?} (does the server ask for one?)"
            ))),
            Ok(None) => Err(failed("the connection closed during the handshake".into())),
            Ok(Some(Welcome::Refused(status))) => {
                session.close("handshake refused");
                Err(DialError::Refused {
                    url: url.to_owned(),
                    status,
                })
            }
            Ok(Some(Welcome::Accepted { version })) if version != crate::wire::PROTOCOL_VERSION => {
                Err(failed(format!(
                    "the server speaks handshake version {version}, this client {}",
                    crate::wire::PROTOCOL_VERSION
                )))
            }
            Ok(Some(Welcome::Accepted { .. })) => Ok(session),
        }
    }
}

/// A running server. Dropping it stops accepting new connections; call
/// [`shutdown`](Self::shutdown) to also finish and close the live sessions.
///
/// ```
/// use gonet::{Builder, Router, Session};
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
/// let router = Router::new().route(|_: Session, ping: Ping| async move { Ping { n: ping.n + 1 } });
/// // Port 0: the system picks a free port; `url()` says which.
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// assert_ne!(server.local_addr().port(), 0);
///
/// let client = Builder::new().dial(&server.url()).await?;
/// let pong: Ping = client.call(&Ping { n: 1 }).await?;
/// assert_eq!(pong.n, 2);
/// assert_eq!(server.pool().len(), 1);
///
/// // Answers what was already read, then closes every session.
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct Server {
    url: Url,
    local_addr: SocketAddr,
    certificate: Option<Vec<u8>>,
    finish: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    pool: SessionPool,
    stop: CancellationToken,
    kill: crate::session::signal::Signal,
    shutdown_timeout: Duration,
    tracker: TaskTracker,
    accept: Option<JoinHandle<()>>,
    #[cfg(feature = "kcp")]
    kcp: Option<crate::transport::kcp::KcpProbe>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url())
            .field("sessions", &self.pool.len())
            .finish()
    }
}

impl Server {
    /// The bound address (with the real port when the URL asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients dial: the served URL with the bound address.
    pub fn url(&self) -> String {
        let mut url = format!("{}://{}", self.url.transport(), self.local_addr);
        if self.url.path() != "/" {
            url.push_str(self.url.path());
        }
        // KCP's parameters (crypt, FEC, mode) must be the client's too.
        if let Some(query) = self.url.query() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The certificate (DER) a `wss://` or `quic://` server presents: the configured
    /// one, or the development certificate it generated. `None` for other transports.
    pub fn certificate(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }

    /// The live sessions.
    pub fn pool(&self) -> &SessionPool {
        &self.pool
    }

    /// What a `kcp://` server's engine holds (its conversations) and has dropped
    /// (datagrams that were not valid, or opened nothing); `None` for other transports.
    #[cfg(feature = "kcp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kcp")))]
    pub fn kcp_stats(&self) -> Option<crate::KcpStats> {
        self.kcp.as_ref().map(|probe| probe.stats())
    }

    /// Drains the server before it stops, losing no request it accepted: it stops
    /// accepting, tells every client that made a handshake
    /// ([`Builder::hello`](crate::Builder::hello)) to go elsewhere (to `redirect`, if
    /// given: the client sees it in [`CloseReason::GoAway`]), and keeps serving them while
    /// they finish their calls and close; then it shuts down ([`shutdown`](Self::shutdown))
    /// what is left (plain gonet v3 peers, and clients still there after the shutdown
    /// timeout).
    ///
    /// A client told to go away gets the replies of every call it already made (the
    /// server reads and handles until the client closes), then closes with
    /// [`CloseReason::GoAway`]; calls it makes after the go-away fail at once with
    /// [`CallError::Closed`](crate::CallError::Closed), never half-done, so the
    /// application can make them again on a new connection.
    ///
    /// ```
    /// use gonet::{Builder, CloseReason, Session};
    ///
    /// #[derive(Clone, PartialEq, prost::Message)]
    /// struct Hi {}
    /// gonet::message!(Hi = 1, prost);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let old = Builder::new().serve("tcp://127.0.0.1:0").await?;
    /// let new = Builder::new().serve("tcp://127.0.0.1:0").await?;
    /// let client = Builder::new().hello("1.0", "cli", &Hi {}).dial(&old.url()).await?;
    ///
    /// let to = new.url();
    /// old.drain(Some(&to)).await;
    /// match client.closed().await {
    ///     CloseReason::GoAway(Some(url)) => assert_eq!(&*url, to),
    ///     other => panic!("{other:?}"),
    /// }
    /// # new.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn drain(mut self, redirect: Option<&str>) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        let goaway = crate::wire::encode_goaway(redirect);
        let greeted: Vec<Session> = self
            .pool
            .sessions()
            .into_iter()
            .filter(|s| s.inner.greeted.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        tracing::info!(
            told_to_go = greeted.len(),
            sessions = self.pool.len(),
            "draining: clients that made a handshake are told to go elsewhere"
        );
        for session in &greeted {
            let _ = session.send_frame(goaway.clone());
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        for session in &greeted {
            if tokio::time::timeout_at(deadline, session.closed())
                .await
                .is_err()
            {
                break;
            }
        }
        self.shutdown().await;
    }

    /// Shuts down gracefully: stops accepting, stops reading from every session, lets
    /// every message already read be handled and every reply be written, then closes
    /// each session with [`CloseReason::ServerShutdown`]. Returns when all are closed.
    ///
    /// Sessions still busy after the shutdown timeout
    /// ([`Builder::shutdown_timeout`]) are stopped at once: running handlers are
    /// cancelled and unwritten replies dropped.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            // The accept loop ends at the cancellation; a panic there was already logged.
            let _ = accept.await;
        }
        for session in self.pool.sessions() {
            session.close_with(CloseReason::ServerShutdown, CloseMode::Graceful);
        }
        self.tracker.close();
        if tokio::time::timeout(self.shutdown_timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                sessions = self.pool.len(),
                timeout = ?self.shutdown_timeout,
                "shutdown timed out; stopping the remaining sessions"
            );
            self.kill.raise();
            // A session's reader waits for the stop-everything once it stops reading,
            // which every session in the pool was told to above.
            for session in self.pool.sessions() {
                session.close_with(CloseReason::ServerShutdown, CloseMode::Abort);
            }
            self.tracker.wait().await;
        }
        // Transports that must drain after their sessions (QUIC waits for its
        // endpoint to be idle; KCP keeps its listener until now).
        if let Some(finish) = self.finish.take() {
            finish.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
