//! QUIC (`quic://host:port`) through quinn, on rustls with the ring provider.
//!
//! - **One bidirectional stream per session** carries its ordered messages, framed as
//!   on TCP. (A stream per message would cost 10–15x the throughput and stall at the
//!   peer's stream limit.) The client opens it and writes a pong frame at once, so the
//!   server's session starts at the handshake rather than at the first message.
//! - **Channels**: [`Session::open_channel`] opens a unidirectional stream with its own
//!   outbound queue. The peer reads each channel with its own reader and ordered
//!   worker, so messages on one channel never wait behind another's, neither in the
//!   network (no head-of-line blocking across QUIC streams) nor in the handlers.
//!   Replies to messages that came on a channel go back on the session's main stream.
//!   A peer may have `Builder::quic_max_channels` channels open at once, and the
//!   messages waiting on all of them share the session's `inbound_queue`.
//! - **Memory per connection** is bounded whatever the peer does: unread stream data by
//!   the connection's flow-control window (`Builder::quic_receive_window`, 4 MiB by
//!   default; a stream takes at most a quarter of it), messages waiting by the inbound
//!   queue, and each open channel adds a read buffer (up to 64 KiB) and the message
//!   its handler is running.
//! - **Unreliable sends**: [`Session::send_unreliable`] puts one packet in one QUIC
//!   datagram: no retransmission, no ordering, no congestion wait. A message larger
//!   than the path's datagram size (about 1,200 bytes) fails with
//!   [`SendError::DatagramTooLarge`](crate::SendError::DatagramTooLarge).
//! - **Liveness**: QUIC keep-alive runs every 5 s (or the builder's heartbeat) and the
//!   connection's idle timeout is 30 s (or the builder's idle timeout), so a vanished
//!   peer ends the session with [`CloseReason::IdleTimeout`].
//! - **Closing**: closing a QUIC connection discards data the peer has not read yet, so
//!   a session first finishes its stream and waits (bounded) until the peer has read
//!   it, then closes the connection. A server's shutdown waits for the endpoint to be
//!   idle.
//! - **TLS**: a development certificate is generated at start-up unless
//!   `Builder::server_tls` gives one; a client needs `Builder::client_tls`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream, VarInt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Listening, TransportSettings};
use crate::driver;
use crate::driver::link::{FrameSink, PacketSource, ReadEnd, StreamSink, StreamSource};
use crate::session::error::{SendError, SessionErrorKind};
use crate::session::outbound::{Batch, OutQueue, PushError};
use crate::session::{CloseReason, LinkExtras, Session};
use crate::settings::{Settings, Shared};
use crate::transport::error::{DialError, ServeError};
use crate::transport::tls::TlsError;
use crate::url::{Transport, Url};
use crate::wire::Message;
use crate::wire::frame::{Packet, split_message};
use crate::wire::{self, Wrap};

/// Why a QUIC connection could not be made, with a hint where TLS found no ALPN
/// protocol id in common (TLS alert 120, `no_application_protocol`).
fn connect_failure(e: &quinn::ConnectionError) -> String {
    let text = e.to_string();
    if text.contains("error 120") {
        format!(
            "{text} (no ALPN protocol id in common: the server accepts others; see `quic_alpn`)"
        )
    } else {
        text
    }
}

/// The ALPN protocol id of gonet over QUIC, unless `Builder::quic_alpn` sets others.
pub(crate) const ALPN: &[u8] = b"gonet";
/// How long a closing session waits for its peer to read what it sent.
const LINGER: Duration = Duration::from_secs(2);
/// How long a server waits for a refused client to read its refusal.
const REFUSAL_LINGER: Duration = Duration::from_secs(10);
/// How long a stopping server waits for its connections to drain.
const DRAIN: Duration = Duration::from_secs(3);

/// QUIC settings of a builder.
#[derive(Clone, Debug)]
pub(crate) struct QuicSettings {
    /// Channels (unidirectional streams) a peer may have open at once.
    pub(crate) max_channels: u32,
    /// Bytes a peer may have sent on a connection, over all its streams, that the
    /// session has not read yet.
    pub(crate) receive_window: u32,
    /// The ALPN protocol ids offered (a client) or accepted (a server); empty: [`ALPN`].
    pub(crate) alpn: Vec<Vec<u8>>,
}

impl QuicSettings {
    /// The ALPN protocol ids in force.
    fn alpn(&self) -> Vec<&[u8]> {
        if self.alpn.is_empty() {
            vec![ALPN]
        } else {
            self.alpn.iter().map(Vec::as_slice).collect()
        }
    }
}

/// The default of `Builder::quic_max_channels`.
pub(crate) const DEFAULT_MAX_CHANNELS: u32 = 100;
/// The default of `Builder::quic_receive_window`.
pub(crate) const DEFAULT_RECEIVE_WINDOW: u32 = 4 << 20;
/// The most one stream may hold of the connection's window: quinn's default stream
/// window (1.25 MB), so that one stalled stream never takes the whole window.
const MAX_STREAM_WINDOW: u32 = 1_250_000;
/// The smallest window taken: one largest frame and its header, so a frame always fits.
const MIN_RECEIVE_WINDOW: u32 = 64 * 1024 + 64;

impl Default for QuicSettings {
    fn default() -> Self {
        Self {
            max_channels: DEFAULT_MAX_CHANNELS,
            receive_window: DEFAULT_RECEIVE_WINDOW,
            alpn: Vec::new(),
        }
    }
}

/// A QUIC-only operation failed.
///
/// ```
/// use gonet::{Builder, QuicError, Transport};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Builder::new().serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// match client.open_channel().await {
///     Err(QuicError::NotQuic { transport, .. }) => assert_eq!(transport, Transport::Tcp),
///     other => panic!("{other:?}"),
/// }
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// The session does not run over QUIC.
    #[error("session {session} runs over {transport}, not quic")]
    NotQuic {
        /// The session id.
        session: u64,
        /// Its transport.
        transport: Transport,
    },
    /// The connection is closed.
    #[error("quic connection closed: {0}")]
    Closed(#[from] ConnectionError),
}

/// The QUIC connection of a session.
#[derive(Debug)]
pub(crate) struct QuicLink {
    conn: Connection,
    /// A client's own endpoint, kept alive with its one connection.
    _endpoint: Option<Endpoint>,
}

fn transport_config(
    settings: &Settings,
    quic: &QuicSettings,
) -> Result<quinn::TransportConfig, TlsError> {
    let mut config = quinn::TransportConfig::default();
    let keep_alive = settings
        .heartbeat
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(5));
    let idle = settings
        .idle_timeout
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(30));
    // What one connection may make us hold, whatever the peer does: its unread
    // stream data is bounded by the connection window (a stream's by at most a quarter
    // of it), its channels by the channel limit, and its session stream is its only
    // bidirectional one. Unread datagrams are bounded by quinn (1.25 MB, oldest
    // dropped first).
    let window = quic.receive_window.max(MIN_RECEIVE_WINDOW);
    config.receive_window(VarInt::from_u32(window));
    config.stream_receive_window(VarInt::from_u32(
        (window / 4).clamp(MIN_RECEIVE_WINDOW, MAX_STREAM_WINDOW),
    ));
    config.max_concurrent_uni_streams(VarInt::from_u32(quic.max_channels));
    config.max_concurrent_bidi_streams(VarInt::from_u32(1));
    config.keep_alive_interval(Some(keep_alive));
    config.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(idle).map_err(|e| TlsError::Config(e.to_string()))?,
    ));
    Ok(config)
}

pub(super) async fn listen(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
    stop: CancellationToken,
    tracker: TaskTracker,
) -> Result<Listening, ServeError> {
    let tls_err = |source| ServeError::Tls {
        url: raw.to_owned(),
        source,
    };
    let bind_err = |source| ServeError::Bind {
        url: raw.to_owned(),
        source,
    };
    let identity = crate::transport::tls::server_identity(options.server_tls.as_ref(), url.host())
        .map_err(tls_err)?;
    let tls = identity
        .config(&options.quic.alpn(), true)
        .map_err(tls_err)?;
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|e| tls_err(TlsError::Config(e.to_string())))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(
        transport_config(&shared.settings, &options.quic).map_err(tls_err)?,
    ));
    let addr = tokio::net::lookup_host(url.authority())
        .await
        .map_err(bind_err)?
        .next()
        .ok_or_else(|| bind_err(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let endpoint = Endpoint::server(config, addr).map_err(bind_err)?;
    let local_addr = endpoint.local_addr().map_err(bind_err)?;
    let mut listening = Listening::spawn(
        Transport::Quic,
        local_addr,
        accept_loop(endpoint.clone(), local_addr, shared, stop, tracker),
    );
    listening.certificate = Some(identity.certificate_der().to_vec());
    listening.finish = Some(Box::pin(async move {
        endpoint.close(VarInt::from_u32(0), b"server shutdown");
        let _ = tokio::time::timeout(DRAIN, endpoint.wait_idle()).await;
    }));
    Ok(listening)
}

async fn accept_loop(
    endpoint: Endpoint,
    local: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let handshakes = super::Handshakes::new(shared.settings.max_pending_handshakes);
    let timeout = shared.settings.handshake_timeout;
    loop {
        let incoming = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { return };
        // Over the limit, the connection is refused before its handshake costs
        // anything (no crypto, no task).
        let Some(pending) = handshakes.start(incoming.remote_address()) else {
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        let tracker2 = tracker.clone();
        // The handshake and the wait for the session stream run on their own task.
        let stop2 = stop.clone();
        tracker.spawn(async move {
            let peer = incoming.remote_address();
            let deadline = tokio::time::Instant::now() + timeout;
            // A client that connects but never opens its stream is given up at the
            // handshake timeout, or at shutdown if that comes first.
            let opened = tokio::select! {
                biased;
                _ = stop2.cancelled() => return,
                opened = async {
                    let conn = match tokio::time::timeout_at(deadline, incoming).await {
                        Ok(conn) => conn.map_err(|e| format!("handshake failed: {e}"))?,
                        // Dropping the handshake closes the connection.
                        Err(_) => return Err(format!("handshake timed out after {timeout:?}")),
                    };
                    match tokio::time::timeout_at(deadline, conn.accept_bi()).await {
                        Ok(Ok(streams)) => Ok((conn, streams)),
                        Ok(Err(e)) => Err(format!("no session stream: {e}")),
                        Err(_) => {
                            conn.close(VarInt::from_u32(2), b"handshake timeout");
                            Err(format!("no session stream within {timeout:?}"))
                        }
                    }
                } => opened,
            };
            drop(pending);
            let (conn, (send, recv)) = match opened {
                Ok(opened) => opened,
                Err(what) => {
                    tracing::debug!(%peer, "{what}");
                    return;
                }
            };
            if stop2.is_cancelled() {
                conn.close(VarInt::from_u32(0), b"server shutdown");
                return;
            }
            let session = Session::new(shared.clone(), peer, local, Transport::Quic);
            if let Some(pool) = &shared.pool {
                if let Err(why) = pool.try_insert(&session) {
                    pool.refused(peer, why);
                    conn.close(VarInt::from_u32(1), b"session limit reached");
                    return;
                }
            }
            start(session, conn, None, send, recv, Some(&tracker2));
        });
    }
}

fn start(
    session: Session,
    conn: Connection,
    endpoint: Option<Endpoint>,
    send: SendStream,
    recv: RecvStream,
    tracker: Option<&TaskTracker>,
) {
    let _ = session.inner.link.set(Box::new(QuicLink {
        conn: conn.clone(),
        _endpoint: endpoint,
    }));
    let source = QuicSource {
        stream: StreamSource::for_session(recv, &session),
        conn: conn.clone(),
    };
    let sink = QuicSink {
        stream: StreamSink::new(send),
        conn,
    };
    driver::spawn(session, source, sink, tracker);
}

pub(super) async fn dial(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
) -> Result<Session, DialError> {
    let connect_err = |source| DialError::Connect {
        url: raw.to_owned(),
        source,
    };
    let tls_err = |source| DialError::Tls {
        url: raw.to_owned(),
        source,
    };
    let handshake_err = |reason: String| DialError::Handshake {
        url: raw.to_owned(),
        reason,
    };
    let tls = crate::transport::tls::client_identity(options.client_tls.as_ref(), raw)
        .map_err(tls_err)?;
    // Checked here so that a bad name is a TLS error, not a handshake failure.
    tls.name_for(url.host()).map_err(tls_err)?;
    let crypto =
        QuicClientConfig::try_from(tls.config(&options.quic.alpn(), true).map_err(tls_err)?)
            .map_err(|e| tls_err(TlsError::Config(e.to_string())))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(
        transport_config(&shared.settings, &options.quic).map_err(tls_err)?,
    ));
    let target = tokio::net::lookup_host(url.authority())
        .await
        .map_err(connect_err)?
        .next()
        .ok_or_else(|| connect_err(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let bind = super::client_bind_addr(target).await.map_err(connect_err)?;
    let mut endpoint = Endpoint::client(bind).map_err(connect_err)?;
    endpoint.set_default_client_config(config);
    let name = tls_name(&tls, url.host());
    let conn = endpoint
        .connect(target, &name)
        .map_err(|e| handshake_err(e.to_string()))?
        .await
        .map_err(|e| handshake_err(connect_failure(&e)))?;
    let (mut send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| handshake_err(e.to_string()))?;
    // A stream is invisible to the peer until something is written on it: a pong
    // (which a reader ignores) makes the server's session start now. A plain client
    // sends nothing of the extension: its stream starts with its first message.
    if shared.settings.plain != Some(true) {
        send.write_all(&wire::encode_control(wire::ID_PONG))
            .await
            .map_err(|e| handshake_err(e.to_string()))?;
    }
    let local = endpoint.local_addr().map_err(connect_err)?;
    let session = Session::new(shared, target, local, Transport::Quic);
    start(session.clone(), conn, Some(endpoint), send, recv, None);
    Ok(session)
}

fn tls_name(tls: &crate::transport::tls::ClientTls, host: &str) -> String {
    match tls.name_for(host) {
        Ok(rustls::pki_types::ServerName::DnsName(name)) => name.as_ref().to_owned(),
        _ => host.to_owned(),
    }
}

/// Why the connection ended, as a session close.
fn connection_end(err: &ConnectionError) -> ReadEnd {
    match err {
        ConnectionError::TimedOut => ReadEnd::Closed(CloseReason::IdleTimeout),
        ConnectionError::ApplicationClosed(_)
        | ConnectionError::ConnectionClosed(_)
        | ConnectionError::Reset
        | ConnectionError::LocallyClosed => ReadEnd::Closed(CloseReason::PeerClosed),
        other => SessionErrorKind::Protocol(format!("quic: {other}")).into(),
    }
}

/// The session's stream, its datagrams, and the channels the peer opens.
struct QuicSource {
    stream: StreamSource<RecvStream>,
    conn: Connection,
}

impl PacketSource for QuicSource {
    fn try_next(&mut self, _: &Session) -> Option<Result<Packet, ReadEnd>> {
        self.stream.buffered()
    }

    fn drain(
        &mut self,
        session: &Session,
        take: &mut dyn FnMut(u32, crate::codec::Body<'_>) -> bool,
    ) -> Option<ReadEnd> {
        self.stream.drain(session, take)
    }

    fn is_busy(&self) -> bool {
        self.stream.is_busy()
    }

    async fn next_packet(&mut self, session: &Session) -> Result<Packet, ReadEnd> {
        loop {
            // Each branch is cancel safe: the stream read appends to its buffer or does
            // nothing; a datagram or stream is taken only by a completed poll. The
            // branches are polled in random order, so a busy stream cannot starve
            // datagrams or new channels.
            tokio::select! {
                packet = self.stream.next_packet(session) => {
                    return match packet {
                        Err(ReadEnd::Failed(SessionErrorKind::Io(err))) => {
                            match self.conn.close_reason() {
                                Some(reason) => Err(connection_end(&reason)),
                                None => Err(SessionErrorKind::Io(err).into()),
                            }
                        }
                        other => other,
                    };
                }
                datagram = self.conn.read_datagram() => match datagram {
                    Ok(datagram) => match split_message(datagram, session.max_frame_len()) {
                        Ok(packet) => return Ok(packet),
                        // A datagram stands alone: skip it, keep the session.
                        Err(err) => {
                            session.report(SessionErrorKind::Frame(err));
                        }
                    },
                    Err(err) => return Err(connection_end(&err)),
                },
                channel = self.conn.accept_uni() => match channel {
                    Ok(recv) => {
                        let source = StreamSource::for_session(recv, session);
                        driver::spawn_lane(session.clone(), source);
                    }
                    Err(err) => return Err(connection_end(&err)),
                },
            }
        }
    }
}

struct QuicSink {
    stream: StreamSink<SendStream>,
    conn: Connection,
}

impl FrameSink for QuicSink {
    async fn take(&mut self, out: &OutQueue) -> Batch {
        self.stream.take(out).await
    }

    fn pending(&self) -> usize {
        self.stream.pending()
    }

    async fn write(&mut self) -> io::Result<()> {
        self.stream.write().await
    }

    async fn shutdown(&mut self, reason: Option<&CloseReason>, _: bool) {
        let send = self.stream.writer_mut();
        if send.finish().is_ok() {
            // Closing the connection discards what the peer has not read: wait until it
            // has read the stream to its end (or stopped reading it). A refused client
            // closes as soon as it has read the refusal, which it must not miss: give it
            // longer.
            let linger = match reason {
                Some(CloseReason::Refused(_)) => REFUSAL_LINGER,
                _ => LINGER,
            };
            let _ = tokio::time::timeout(linger, send.stopped()).await;
        }
    }
}

impl Drop for QuicSink {
    fn drop(&mut self) {
        self.conn.close(VarInt::from_u32(0), b"session closed");
    }
}

fn link(session: &Session) -> Result<&QuicLink, QuicError> {
    session
        .inner
        .link
        .get()
        .and_then(|link| link.as_any().downcast_ref::<QuicLink>())
        .ok_or_else(|| QuicError::NotQuic {
            session: session.id(),
            transport: session.transport(),
        })
}

/// A QUIC channel of a session: a stream of its own, so its messages never wait behind
/// the session's other messages. Open one with [`Session::open_channel`]. Dropping the
/// last clone finishes the channel after what is queued has been sent.
///
/// ```
/// use gonet::{Builder, ClientTls, Router, Session};
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
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let router = Router::new().route(move |_: Session, ping: Ping| {
///     let tx = tx.clone();
///     async move {
///         let _ = tx.send(ping.n);
///     }
/// });
/// // A development certificate, trusted by the client below.
/// let server = Builder::new().router(router).serve("quic://127.0.0.1:0").await?;
/// let trust = ClientTls::trust_der(server.certificate().expect("a quic server has one"))?;
/// let client = Builder::new().client_tls(trust).dial(&server.url()).await?;
///
/// let positions = client.open_channel().await?;
/// for n in 1..=3 {
///     positions.send(&Ping { n })?;
/// }
/// for n in 1..=3 {
///     assert_eq!(rx.recv().await, Some(n)); // in order within the channel
/// }
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Channel {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    session: Session,
    out: Arc<OutQueue>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.out.finish();
    }
}

impl Channel {
    /// Encodes `msg` with the session's codec and queues it on this channel.
    pub fn send<M: Message>(&self, msg: &M) -> Result<(), SendError> {
        let session = &self.handle.session;
        if session.is_closed() {
            return Err(SendError::Closed {
                session: session.id(),
            });
        }
        let frame =
            wire::encode_message(msg, session.codec(), Wrap::Plain, session.max_frame_len())?;
        match self.handle.out.push(frame) {
            Ok(()) => Ok(()),
            Err(PushError::Closed | PushError::Disconnected) => Err(SendError::Closed {
                session: session.id(),
            }),
            Err(PushError::Full { queued }) => {
                session.queue_full(queued);
                Err(SendError::QueueFull {
                    session: session.id(),
                    queued,
                    limit: self.handle.out.limit(),
                })
            }
        }
    }
}

impl Session {
    /// Opens a QUIC channel: a stream of its own beside the session's main stream.
    /// Messages sent on it are handled by the peer in order with each other, and in
    /// parallel with the session's other messages; a lost packet on one channel holds
    /// up no other. Replies to them come back on the main stream.
    ///
    /// Waits while the peer's limit of concurrent channels is reached (QUIC's stream
    /// limit: [`Builder::quic_max_channels`](crate::Builder::quic_max_channels) of the
    /// peer, 100 by default); finish channels by dropping them. Fails on other transports
    /// with [`QuicError::NotQuic`].
    #[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
    pub async fn open_channel(&self) -> Result<Channel, QuicError> {
        let link = link(self)?;
        let send = link.conn.open_uni().await?;
        let out = Arc::new(OutQueue::new(self.inner.shared.settings.outbound_limit));
        let channel = Channel {
            handle: Arc::new(Handle {
                session: self.clone(),
                out: out.clone(),
            }),
        };
        let timeout = self.inner.shared.settings.write_timeout;
        let session = self.clone();
        tokio::spawn(async move {
            let done = &session.inner.done;
            let mut sink = StreamSink::new(send);
            loop {
                let batch = tokio::select! {
                    batch = sink.take(&out) => batch,
                    () = done.wait() => Batch::Done,
                };
                if batch == Batch::Done {
                    break;
                }
                if !matches!(
                    tokio::time::timeout(timeout, sink.write()).await,
                    Ok(Ok(()))
                ) {
                    return;
                }
            }
            let _ = sink.writer_mut().finish();
        });
        Ok(channel)
    }
}

/// [`Session::send_unreliable`] on QUIC: one packet in one datagram.
impl LinkExtras for QuicLink {
    fn send_datagram(
        &self,
        session: &Session,
        id: u32,
        name: &'static str,
        frame: Bytes,
    ) -> Result<(), SendError> {
        let len = frame.len();
        let too_large = |max| SendError::DatagramTooLarge { id, name, len, max };
        let max = self.conn.max_datagram_size().unwrap_or(0);
        if len > max {
            return Err(too_large(max));
        }
        send_datagram(session, &self.conn, frame, too_large(max))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn send_datagram(
    session: &Session,
    conn: &Connection,
    frame: Bytes,
    too_large: SendError,
) -> Result<(), SendError> {
    use quinn::SendDatagramError as E;
    match conn.send_datagram(frame) {
        Ok(()) => Ok(()),
        Err(E::TooLarge) => Err(too_large),
        Err(E::ConnectionLost(_)) => Err(SendError::Closed {
            session: session.id(),
        }),
        Err(E::UnsupportedByPeer | E::Disabled) => Err(SendError::Unsupported {
            what: "datagrams (the peer disabled them)",
            transport: Transport::Quic,
        }),
    }
}
