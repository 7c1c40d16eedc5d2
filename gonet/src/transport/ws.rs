//! WebSocket (`ws://host:port/path`) and WebSocket over TLS (`wss://`): one gonet packet
//! per binary message, header included, so a browser sends exactly the bytes a TCP peer
//! would.
//!
//! - The server answers the URL's path only; any other path gets HTTP 404, a
//!   disallowed `Origin` HTTP 403 (see `Builder::allowed_origins`).
//! - A text message, or a binary message that is not exactly one packet, closes the
//!   session with a close frame that says why (codes 1003 and 1007); a message longer
//!   than a packet can be, whole or in fragments, with code 1009 as soon as its
//!   length passes the limit, before it is buffered.
//! - Handshakes (TLS and the upgrade) are counted against
//!   `Builder::max_pending_handshakes` and given `Builder::handshake_timeout`.
//! - WebSocket pings are answered by tungstenite as it reads; gonet heartbeats travel
//!   as packets like on every transport.
//! - tungstenite's write buffer is unbounded unless configured: it is capped here, and
//!   the writer feeds a batch of messages and flushes once at its end.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, http};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{Listening, TransportSettings};
use crate::driver;
use crate::driver::link::{FrameSink, MAX_BATCH, MessageBatch, PacketSource, ReadEnd, poll_due};
use crate::session::error::SessionErrorKind;
use crate::session::outbound::{Batch, OutQueue};
use crate::session::{CloseReason, Session};
use crate::settings::Shared;
use crate::transport::error::{DialError, ServeError};
use crate::url::{Transport, Url};
use crate::wire::frame::{FrameError, HEADER_LEN, LEN_FIELD, Packet, split_message};

/// How long a closing session waits for the peer's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// WebSocket settings of a builder.
#[derive(Clone, Debug, Default)]
pub(crate) struct WsSettings {
    /// Accepted `Origin` values; empty accepts all.
    pub(crate) origins: Vec<String>,
}

/// What the WebSocket library reads at most at once. Its default, 128 KiB, is zeroed
/// before every read (the read that finds nothing at the end of a batch too), which cost
/// about a sixth of a busy session's CPU; 16 KiB holds several batches of small messages
/// and a larger message simply takes more reads.
const READ_BUFFER: usize = 16 * 1024;

fn ws_config(max_frame_len: usize) -> WebSocketConfig {
    // One packet per message: nothing longer than a frame is ever valid, so refuse it
    // before buffering it. The write buffer holds at most about two batches; the
    // writer flushes after every batch, so it never needs more.
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max_frame_len + 2))
        .max_frame_size(Some(max_frame_len + 2))
        .write_buffer_size(MAX_BATCH)
        .max_write_buffer_size(4 * MAX_BATCH + HEADER_LEN + max_frame_len)
}

pub(super) async fn listen(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
    stop: CancellationToken,
    tracker: TaskTracker,
    secure: bool,
) -> Result<Listening, ServeError> {
    let bind_err = |source| ServeError::Bind {
        url: raw.to_owned(),
        source,
    };
    #[cfg(feature = "wss")]
    let (acceptor, certificate) = if secure {
        let identity =
            crate::transport::tls::server_identity(options.server_tls.as_ref(), url.host())
                .and_then(|id| {
                    Ok((
                        id.config(&[b"http/1.1"], false)?,
                        id.certificate_der().to_vec(),
                    ))
                })
                .map_err(|source| ServeError::Tls {
                    url: raw.to_owned(),
                    source,
                })?;
        (
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(identity.0))),
            Some(identity.1),
        )
    } else {
        (None, None)
    };
    #[cfg(not(feature = "wss"))]
    let certificate = {
        let _ = secure;
        None
    };
    let listener = TcpListener::bind(url.authority()).await.map_err(bind_err)?;
    let local_addr = listener.local_addr().map_err(bind_err)?;
    let transport = url.transport();
    tracing::debug!(%local_addr, path = url.path(), "websocket path");
    let accept = Accept {
        path: url.path().to_owned(),
        origins: options.ws.origins.clone().into(),
        transport,
        shared,
        tracker: tracker.clone(),
        #[cfg(feature = "wss")]
        acceptor,
    };
    let mut listening =
        Listening::spawn(transport, local_addr, accept_loop(listener, accept, stop));
    listening.certificate = certificate;
    Ok(listening)
}

#[derive(Clone)]
struct Accept {
    path: String,
    /// Accepted `Origin` values; empty accepts all.
    origins: Arc<[String]>,
    transport: Transport,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    #[cfg(feature = "wss")]
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

async fn accept_loop(listener: TcpListener, accept: Accept, stop: CancellationToken) {
    let handshakes = super::Handshakes::new(accept.shared.settings.max_pending_handshakes);
    let timeout = accept.shared.settings.handshake_timeout;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Over the limit, the connection is closed before it costs anything
                // more than its accept.
                let Some(pending) = handshakes.start(peer) else {
                    drop(stream);
                    continue;
                };
                // Handshakes run on their own tasks so a slow client never holds up
                // the accept loop.
                let accept = accept.clone();
                let span = tracing::debug_span!("handshake", %peer);
                let tracker = accept.tracker.clone();
                let stop = stop.clone();
                tracker.spawn(
                    async move {
                        let _pending = pending;
                        let handshake = tokio::time::timeout(timeout, accept.start(stream, peer));
                        // A handshake still running at shutdown is given up.
                        let done = tokio::select! {
                            biased;
                            _ = stop.cancelled() => return,
                            done = handshake => done,
                        };
                        match done {
                            Ok(Ok(())) => {}
                            Ok(Err(err)) => tracing::debug!(error = %err, "handshake failed"),
                            Err(_) => tracing::debug!(?timeout, "handshake timed out"),
                        }
                    }
                    .instrument(span),
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

impl Accept {
    async fn start(self, stream: TcpStream, peer: SocketAddr) -> Result<(), tungstenite::Error> {
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        #[cfg(feature = "wss")]
        if let Some(acceptor) = &self.acceptor {
            let tls = acceptor.accept(stream).await?;
            return self.upgrade(tls, peer, local).await;
        }
        self.upgrade(stream, peer, local).await
    }

    async fn upgrade<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Result<(), tungstenite::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let origins = &self.origins;
        #[allow(
            clippy::result_large_err,
            reason = "the signature is tungstenite's Callback"
        )]
        let check = |req: &http::Request<()>, resp| check_request(req, resp, &self.path, origins);
        let config = ws_config(self.shared.settings.max_frame_len);
        let ws = tokio_tungstenite::accept_hdr_async_with_config(
            Counted::new(stream),
            check,
            Some(config),
        )
        .await?;
        let session = Session::new(self.shared.clone(), peer, local, self.transport);
        if let Some(pool) = &self.shared.pool {
            if let Err(why) = pool.try_insert(&session) {
                pool.refused(peer, why);
                let mut ws = ws;
                let _ = ws
                    .close(Some(CloseFrame {
                        code: CloseCode::Again,
                        reason: "session limit reached".into(),
                    }))
                    .await;
                return Ok(());
            }
        }
        start_session(session, ws, Some(&self.tracker));
        Ok(())
    }
}

fn reject(status: http::StatusCode, text: String) -> http::Response<Option<String>> {
    let mut resp = http::Response::new(Some(text));
    *resp.status_mut() = status;
    resp
}

// The callback's error type is tungstenite's; it is built once per refused handshake.
#[allow(
    clippy::result_large_err,
    reason = "the signature is tungstenite's Callback"
)]
fn check_request(
    req: &http::Request<()>,
    resp: http::Response<()>,
    path: &str,
    origins: &[String],
) -> Result<http::Response<()>, http::Response<Option<String>>> {
    if req.uri().path() != path {
        return Err(reject(
            http::StatusCode::NOT_FOUND,
            format!("no websocket endpoint at {}", req.uri().path()),
        ));
    }
    if !origins.is_empty() {
        let origin = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        if !origin.is_some_and(|o| origins.iter().any(|allowed| allowed == o)) {
            return Err(reject(
                http::StatusCode::FORBIDDEN,
                format!("origin {origin:?} is not allowed"),
            ));
        }
    }
    Ok(resp)
}

fn start_session<S>(
    session: Session,
    ws: WebSocketStream<Counted<S>>,
    tracker: Option<&TaskTracker>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (source, sink) = link(&session, ws);
    driver::spawn(session, source, sink, tracker);
}

/// The packet source and frame sink of an upgraded connection.
fn link<S>(session: &Session, ws: WebSocketStream<Counted<S>>) -> (WsSource<S>, WsSink<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The upgrade's own bytes are not a message in progress.
    let arrival = ws.get_ref().arrival.clone();
    arrival.clear();
    let (sink, stream) = ws.split();
    let rest = Arc::new(Mutex::new(None));
    let source = WsSource {
        stream: Some(stream),
        max_frame_len: session.max_frame_len(),
        rest: rest.clone(),
        arrival,
        frame_timeout: session.frame_timeout(),
        deadline: None,
    };
    let sink = WsSink {
        sink,
        batch: MessageBatch::default(),
        rest,
    };
    (source, sink)
}

/// What a client needs to connect again.
#[derive(Clone)]
struct Dialer {
    url: Url,
    raw: String,
    config: WebSocketConfig,
    #[cfg(feature = "wss")]
    tls: Option<crate::transport::tls::ClientTls>,
}

impl Dialer {
    /// This dialer, or one for `to` (a URL of the same scheme a draining server gave).
    fn redirected(&self, to: Option<String>) -> Result<Dialer, DialError> {
        let Some(to) = to else {
            return Ok(self.clone());
        };
        match to.parse::<Url>() {
            Ok(url) if url.transport() == self.url.transport() => Ok(Dialer {
                url,
                raw: to,
                ..self.clone()
            }),
            Ok(url) => Err(DialError::Handshake {
                url: to,
                reason: format!(
                    "a {} client cannot connect to a {} URL",
                    self.url.transport(),
                    url.transport()
                ),
            }),
            Err(err) => Err(err.into()),
        }
    }

    async fn tcp(&self) -> Result<(TcpStream, SocketAddr, SocketAddr), DialError> {
        let connect_err = |source| DialError::Connect {
            url: self.raw.clone(),
            source,
        };
        let stream = TcpStream::connect(self.url.authority())
            .await
            .map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let peer = stream.peer_addr().map_err(connect_err)?;
        let local = stream.local_addr().map_err(connect_err)?;
        Ok((stream, peer, local))
    }

    async fn upgrade<S>(&self, stream: S) -> Result<WebSocketStream<Counted<S>>, DialError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let raw = &self.raw;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            self.url.to_string(),
            Counted::new(stream),
            Some(self.config),
        )
        .await
        .map_err(|e| match e {
            tungstenite::Error::Io(source) => DialError::Connect {
                url: raw.clone(),
                source,
            },
            tungstenite::Error::Http(resp) => DialError::Handshake {
                url: raw.clone(),
                reason: format!(
                    "HTTP {}{}",
                    resp.status(),
                    resp.body()
                        .as_deref()
                        .map(|b| format!(": {}", String::from_utf8_lossy(b)))
                        .unwrap_or_default()
                ),
            },
            other => DialError::Handshake {
                url: raw.clone(),
                reason: other.to_string(),
            },
        })?;
        Ok(ws)
    }

    #[cfg(feature = "wss")]
    async fn tls(
        &self,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, DialError> {
        let raw = &self.raw;
        let tls_err = |source| DialError::Tls {
            url: raw.clone(),
            source,
        };
        let tls =
            crate::transport::tls::client_identity(self.tls.as_ref(), raw).map_err(tls_err)?;
        let name = tls.name_for(self.url.host()).map_err(tls_err)?;
        let config_tls = tls.config(&[b"http/1.1"], false).map_err(tls_err)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config_tls));
        connector
            .connect(name, stream)
            .await
            .map_err(|e| DialError::Handshake {
                url: raw.clone(),
                reason: format!("tls: {e}"),
            })
    }
}

/// Runs a client's session; one that resumes connects again with `connect`.
fn start_client<S, F, Fut>(session: Session, ws: WebSocketStream<Counted<S>>, connect: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Option<String>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<
            Output = Result<(WebSocketStream<Counted<S>>, SocketAddr, SocketAddr), DialError>,
        > + Send
        + 'static,
{
    let (source, sink) = link(&session, ws);
    let connect = Arc::new(connect);
    let redial: driver::Redial<_, _> = Box::new(move |session: Session, to: Option<String>| {
        let connect = connect.clone();
        Box::pin(async move {
            let (ws, peer, local) = connect(to).await?;
            session.set_addrs(peer, local);
            Ok(link(&session, ws))
        })
    });
    driver::spawn_client(session, source, sink, redial);
}

pub(super) async fn dial(
    url: &Url,
    raw: &str,
    shared: Arc<Shared>,
    options: &TransportSettings,
    secure: bool,
) -> Result<Session, DialError> {
    // Only `wss://` reads the options (whom to trust).
    #[cfg(not(feature = "wss"))]
    let _ = options;
    let dialer = Dialer {
        url: url.clone(),
        raw: raw.to_owned(),
        config: ws_config(shared.settings.max_frame_len),
        #[cfg(feature = "wss")]
        tls: options.client_tls.clone(),
    };
    let timeout = shared.settings.connect_timeout;
    let (stream, peer, local) = dialer.tcp().await?;
    let session = Session::new(shared, peer, local, url.transport());
    let timed_out = move |raw: &str| DialError::Timeout {
        url: raw.to_owned(),
        after: timeout,
    };
    if secure {
        #[cfg(feature = "wss")]
        {
            let ws = dialer.upgrade(dialer.tls(stream).await?).await?;
            start_client(session.clone(), ws, move |to| {
                let dialer = dialer.redirected(to);
                async move {
                    let dialer = dialer?;
                    tokio::time::timeout(timeout, async {
                        let (stream, peer, local) = dialer.tcp().await?;
                        let ws = dialer.upgrade(dialer.tls(stream).await?).await?;
                        Ok((ws, peer, local))
                    })
                    .await
                    .map_err(|_| timed_out(&dialer.raw))?
                }
            });
            return Ok(session);
        }
    }
    let ws = dialer.upgrade(stream).await?;
    start_client(session.clone(), ws, move |to| {
        let dialer = dialer.redirected(to);
        async move {
            let dialer = dialer?;
            tokio::time::timeout(timeout, async {
                let (stream, peer, local) = dialer.tcp().await?;
                Ok((dialer.upgrade(stream).await?, peer, local))
            })
            .await
            .map_err(|_| timed_out(&dialer.raw))?
        }
    });
    Ok(session)
}

/// The read half of a WebSocket once the session has stopped reading, kept for the
/// closing handshake.
type Rest<S> = Arc<Mutex<Option<SplitStream<WebSocketStream<Counted<S>>>>>>;

struct WsSource<S> {
    /// Always `Some` until the source is dropped.
    stream: Option<SplitStream<WebSocketStream<Counted<S>>>>,
    max_frame_len: usize,
    /// Where the read half goes when reading stops: the writer reads the peer's close
    /// frame from it after sending its own.
    rest: Rest<S>,
    /// The peer's bytes since its last whole message.
    arrival: Arc<Arrival>,
    /// How long a message may take once its first byte is in; `None`: forever.
    frame_timeout: Option<Duration>,
    /// The frame timeout's one timer, made the first time it is needed.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Drop for WsSource<S> {
    fn drop(&mut self) {
        *self.rest.lock().unwrap_or_else(|e| e.into_inner()) = self.stream.take();
    }
}

impl<S> PacketSource for WsSource<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn next_packet(&mut self, _: &Session) -> Result<Packet, ReadEnd> {
        loop {
            // Cancel safe: a message is returned only from a completed poll.
            let Some(stream) = self.stream.as_mut() else {
                return Err(ReadEnd::Closed(CloseReason::PeerClosed));
            };
            let msg = match self.frame_timeout {
                None => stream.next().await,
                Some(timeout) => {
                    // Cancel safe: a message is taken only by a completed poll; the
                    // timer is kept in the source.
                    let (arrival, deadline) = (&self.arrival, &mut self.deadline);
                    let mut next = stream.next();
                    let timed = std::future::poll_fn(|cx| {
                        if let Poll::Ready(msg) = next.poll_unpin(cx) {
                            return Poll::Ready(Some(msg));
                        }
                        match arrival.first() {
                            Some(first) => poll_due(deadline, first + timeout, cx).map(|()| None),
                            None => Poll::Pending,
                        }
                    })
                    .await;
                    match timed {
                        Some(msg) => msg,
                        None => return Err(self.arrival.timed_out()),
                    }
                }
            };
            if let Some(next) = self.packet(msg) {
                return next;
            }
        }
    }

    fn try_next(&mut self, _: &Session) -> Option<Result<Packet, ReadEnd>> {
        // Messages already received, so that a batch of them is handled (and answered)
        // together. A pending poll leaves nothing behind: the reader polls
        // `next_packet` again, with its own waker, before it waits.
        loop {
            let msg = self.stream.as_mut()?.next().now_or_never()?;
            if let Some(next) = self.packet(msg) {
                return Some(next);
            }
        }
    }
}

impl<S> WsSource<S> {
    /// The packet in a received message, if it carries one.
    fn packet(
        &self,
        msg: Option<Result<Message, tungstenite::Error>>,
    ) -> Option<Result<Packet, ReadEnd>> {
        let Some(msg) = msg else {
            return Some(Err(ReadEnd::Closed(CloseReason::PeerClosed)));
        };
        self.arrival.clear();
        match msg {
            Ok(Message::Binary(bytes)) => Some(
                split_message(bytes, self.max_frame_len)
                    .map_err(|e| SessionErrorKind::Frame(e).into()),
            ),
            Ok(Message::Text(text)) => Some(Err(SessionErrorKind::Protocol(format!(
                "received a {}-byte text message; gonet packets travel in binary messages",
                text.len()
            ))
            .into())),
            Ok(Message::Close(_)) => Some(Err(ReadEnd::Closed(CloseReason::PeerClosed))),
            // Pings are answered by tungstenite itself; pongs and raw frames carry
            // nothing for us.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => None,
            Err(err) => Some(Err(read_error(err))),
        }
    }
}

fn read_error(err: tungstenite::Error) -> ReadEnd {
    use tungstenite::error::ProtocolError;
    match err {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            ReadEnd::Closed(CloseReason::PeerClosed)
        }
        tungstenite::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
            ) =>
        {
            ReadEnd::Closed(CloseReason::PeerClosed)
        }
        tungstenite::Error::Io(e) => SessionErrorKind::Io(e).into(),
        // A message (or the fragments of one so far) longer than a packet: refused
        // before it is buffered. The sizes count the packet's length field.
        tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
            size,
            max_size,
        }) => SessionErrorKind::Frame(FrameError::LengthTooLarge {
            len: size.saturating_sub(LEN_FIELD),
            max: max_size.saturating_sub(LEN_FIELD),
        })
        .into(),
        other => SessionErrorKind::Protocol(other.to_string()).into(),
    }
}

struct WsSink<S> {
    sink: SplitSink<WebSocketStream<Counted<S>>, Message>,
    batch: MessageBatch,
    rest: Rest<S>,
}

/// When the peer's bytes since its last whole message began to arrive, and how many
/// there are: a message trickled in (slowloris) is timed like a frame on a stream,
/// although the WebSocket library buffers it out of sight.
#[derive(Debug)]
pub(super) struct Arrival {
    base: Instant,
    /// Milliseconds after `base` at which the first byte arrived, plus one; 0: none.
    first: AtomicU64,
    bytes: AtomicU64,
}

impl Arrival {
    fn new() -> Self {
        Arrival {
            base: Instant::now(),
            first: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Bytes arrived (one read): the first after a whole message starts the clock.
    fn note(&self, n: usize) {
        if self.first.load(Ordering::Relaxed) == 0 {
            let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            self.first.store(ms + 1, Ordering::Relaxed);
        }
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A whole message (or the end) came.
    fn clear(&self) {
        if self.first.load(Ordering::Relaxed) != 0 {
            self.first.store(0, Ordering::Relaxed);
            self.bytes.store(0, Ordering::Relaxed);
        }
    }

    fn first(&self) -> Option<Instant> {
        match self.first.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms - 1)),
        }
    }

    fn timed_out(&self) -> ReadEnd {
        let after = self.first().map_or(Duration::ZERO, |first| first.elapsed());
        SessionErrorKind::MessageTimeout {
            received: usize::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
            after,
        }
        .into()
    }
}

/// A connection whose reads are noted in an [`Arrival`].
#[derive(Debug)]
pub(super) struct Counted<S> {
    inner: S,
    arrival: Arc<Arrival>,
}

impl<S> Counted<S> {
    fn new(inner: S) -> Self {
        Counted {
            inner,
            arrival: Arc::new(Arrival::new()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.arrival.note(n);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether a send failed only because the closing handshake has begun.
fn is_closing(e: &tungstenite::Error) -> bool {
    use tungstenite::error::ProtocolError;
    matches!(
        e,
        tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(ProtocolError::SendAfterClosing)
    )
}

fn to_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// The close frame that tells the peer why its session ended. The reason text is cut to
/// the 123 bytes a close frame can carry.
fn close_frame(reason: Option<&CloseReason>) -> CloseFrame {
    let (code, text) = match reason {
        None | Some(CloseReason::PeerClosed) => (CloseCode::Normal, String::new()),
        Some(CloseReason::Local(text)) => (CloseCode::Normal, text.to_string()),
        Some(CloseReason::ServerShutdown) => (CloseCode::Away, "server shutdown".to_owned()),
        Some(CloseReason::IdleTimeout) => (CloseCode::Away, "idle timeout".to_owned()),
        Some(CloseReason::Error(err)) => {
            let code = match err.kind {
                SessionErrorKind::Frame(FrameError::LengthTooLarge { .. }) => CloseCode::Size,
                SessionErrorKind::Frame(_) => CloseCode::Invalid,
                SessionErrorKind::MessageTimeout { .. } => CloseCode::Policy,
                SessionErrorKind::Protocol(_) => CloseCode::Unsupported,
                _ => CloseCode::Error,
            };
            (code, err.kind.to_string())
        }
        Some(other) => (CloseCode::Error, other.to_string()),
    };
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame {
        code,
        reason: text[..end].into(),
    }
}

impl<S> FrameSink for WsSink<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn take(&mut self, out: &OutQueue) -> Batch {
        self.batch.take(out).await
    }

    fn pending(&self) -> usize {
        self.batch.bytes
    }

    async fn write(&mut self) -> io::Result<()> {
        let mut written = Ok(());
        for frame in self.batch.frames.drain(..) {
            written = self.sink.feed(Message::Binary(frame)).await;
            if written.is_err() {
                break;
            }
        }
        if written.is_ok() {
            written = self.sink.flush().await;
        }
        match written {
            Ok(()) => Ok(()),
            // The peer's close frame came first: tungstenite has answered it, and
            // nothing more may be sent. What was queued is dropped, as on any
            // transport whose peer has gone; the session ends as the peer closing it.
            Err(e) if is_closing(&e) => {
                self.batch.frames.clear();
                Ok(())
            }
            Err(e) => Err(to_io(e)),
        }
    }

    async fn shutdown(&mut self, reason: Option<&CloseReason>, _: bool) {
        let frame = close_frame(reason);
        // Fails when the peer's close frame came first: tungstenite has answered it.
        let _ = self.sink.send(Message::Close(Some(frame))).await;
        let _ = self.sink.flush().await;
        // The closing handshake: read until the peer's close frame (or the end), so
        // that the socket is not closed with the peer's bytes unread in it, which makes
        // the kernel reset the connection and the peer lose the close frame it was
        // about to read (a 1006 instead of the code sent).
        let rest = self.rest.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut stream) = rest {
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(msg)) = stream.next().await {
                    if msg.is_close() {
                        break;
                    }
                }
            })
            .await;
        }
        let _ = self.sink.close().await;
    }
}
