//! [`Session`]: a handle on one connected peer, and what a session owns: the pool and
//! groups it belongs to (`pool`), its pending calls (`calls`), its outbound queue
//! (`outbound`), the rate limits of its error logs (`report`, `throttle`), the cheap
//! stop signals the driver polls (`signal`) and the errors of its operations
//! (`error`).
//!
//! A session is the same whatever carries it. It uses `wire/` (to encode what it
//! sends), `codec/`, and `settings` (what the sessions of a server share); it reaches
//! a transport's extra capabilities (QUIC datagrams and channels) only through the
//! [`LinkExtras`] its transport gives it. `service/`, `driver/` and `transport/` use
//! this folder; it uses none of them.

pub(crate) mod calls;
pub(crate) mod error;
pub(crate) mod limit;
pub(crate) mod outbound;
pub(crate) mod outbox;
pub(crate) mod pool;
pub(crate) mod report;
pub(crate) mod resume;
pub(crate) mod signal;
pub(crate) mod throttle;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use signal::Latch;

use crate::codec::{Body, Codec};
use crate::session::calls::{Calls, Outcome};
use crate::session::error::{CallError, SendError, SessionError, SessionErrorKind};
use crate::session::outbound::{OutQueue, PushError};
use crate::session::pool::SessionPool;
use crate::session::report::{ErrorLog, Verdict};
use crate::settings::Shared;
use crate::url::Transport;
use crate::wire::{self, Message, Wrap};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Why a session closed.
///
/// The close hook ([`Builder::on_close`](crate::Builder::on_close)) receives it, and
/// [`Session::closed`] returns it:
///
/// ```
/// use gonet::{Builder, CloseReason};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let server = Builder::new()
///     .on_close(move |_, reason| {
///         let _ = tx.send(reason.clone());
///     })
///     .serve("tcp://127.0.0.1:0")
///     .await?;
/// let client = Builder::new().dial(&server.url()).await?;
///
/// client.close("done");
/// assert!(matches!(client.closed().await, CloseReason::Local(why) if &*why == "done"));
/// // The server saw its peer close.
/// assert!(matches!(rx.recv().await, Some(CloseReason::PeerClosed)));
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the connection.
    PeerClosed,
    /// This side closed it with [`Session::close`]; for a server, the peer was kicked.
    Local(Arc<str>),
    /// The server shut down.
    ServerShutdown,
    /// The peer did not read what was sent to it (see `Builder::outbound_limit`).
    SlowPeer,
    /// A handler panicked and the panic policy closes the session.
    HandlerPanicked,
    /// Nothing came from the peer for the idle timeout (see `Builder::idle_timeout`):
    /// it vanished without closing, or stopped answering heartbeats.
    IdleTimeout,
    /// An error ended the session: malformed frames or an i/o error.
    Error(Arc<SessionError>),
    /// The session's user logged in again: a newer session bound the same user id
    /// (see [`Session::bind`]).
    Replaced,
    /// The handshake was refused, with this status (see
    /// [`Builder::on_handshake`](crate::Builder::on_handshake)).
    Refused(crate::wire::Status),
    /// The server drained ([`Server::drain`](crate::Server::drain)): this client
    /// finished its calls and closed, to connect again elsewhere (to the address the
    /// server gave, if any).
    GoAway(Option<Arc<str>>),
    /// The connection dropped and the session could not be resumed in time: on a
    /// server, the client did not come back within the grace period
    /// ([`Builder::resume`](crate::Builder::resume)); on a client, every attempt of
    /// its reconnect policy failed.
    Expired,
}

impl CloseReason {
    /// A short label of the reason, for metrics and logs: `peer_closed`, `local`,
    /// `server_shutdown`, `slow_peer`, `handler_panicked`, `idle_timeout`, `error`,
    /// `replaced`, `refused`, `go_away` or `expired`.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Local(_) => "local",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::SlowPeer => "slow_peer",
            CloseReason::HandlerPanicked => "handler_panicked",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Error(_) => "error",
            CloseReason::Replaced => "replaced",
            CloseReason::Refused(_) => "refused",
            CloseReason::GoAway(_) => "go_away",
            CloseReason::Expired => "expired",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::Local(reason) => write!(f, "closed: {reason}"),
            CloseReason::ServerShutdown => f.write_str("server shutdown"),
            CloseReason::SlowPeer => f.write_str("peer not reading"),
            CloseReason::HandlerPanicked => f.write_str("handler panicked"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::Error(err) => write!(f, "error: {err}"),
            CloseReason::Replaced => f.write_str("replaced by a newer login of the same user"),
            CloseReason::Refused(status) => write!(f, "handshake refused: {status}"),
            CloseReason::GoAway(Some(to)) => write!(f, "server going away (to {to})"),
            CloseReason::GoAway(None) => f.write_str("server going away"),
            CloseReason::Expired => f.write_str("connection lost and not resumed in time"),
        }
    }
}

/// How a closing session treats what it has not handled yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseMode {
    /// Stop reading; handle every message already read; flush replies.
    Graceful,
    /// Stop reading; skip messages not yet handled; flush what is queued.
    Discard,
    /// Stop at once; queued output is dropped.
    Abort,
}

/// Counters of one session.
///
/// The inbound counts are added up once per batch of messages (what one read brought),
/// so while a batch runs they may trail it: a handler does not see its own message
/// counted yet.
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
/// let router = Router::new().route(|_: Session, ping: Ping| async move { ping });
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// for n in 0..3 {
///     let _: Ping = client.call(&Ping { n }).await?;
/// }
/// let stats = client.stats();
/// assert_eq!(stats.sent, 3);
/// assert_eq!(stats.dropped, 0);
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Application messages read from the peer (queued or handled).
    pub received: u64,
    /// Application messages whose handler has finished.
    pub handled: u64,
    /// Frames queued for the peer.
    pub sent: u64,
    /// Bytes waiting in the outbound queue.
    pub queued_bytes: usize,
    /// Messages dropped on arrival because the inbound queue was full. Only UDP drops
    /// (see the `udp` transport); every other transport stops reading instead.
    pub dropped: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) handled: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

/// The messages of a session waiting behind a running handler, counted over all its
/// inbound parts (a QUIC session has one per channel), so that the session's bound is
/// one bound whatever the number of channels. Only messages that actually queue are
/// counted: one handled at once never touches it.
#[derive(Debug, Default)]
pub(crate) struct InboundCount {
    pub(crate) waiting: AtomicUsize,
    /// Inbound parts besides the session's own (QUIC channels). Without any, a part
    /// waiting for room is woken by its own handler and nothing is notified.
    pub(crate) extra_parts: AtomicUsize,
    /// Notified when a message leaves a full queue, for the parts waiting for room.
    pub(crate) room: tokio::sync::Notify,
}

#[derive(Default)]
struct Extensions(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

pub(crate) struct Inner {
    pub(crate) id: u64,
    /// The peer's address and this side's: those of the connection now (a resumed
    /// session's may change).
    addrs: Mutex<(SocketAddr, SocketAddr)>,
    pub(crate) transport: Transport,
    pub(crate) shared: Arc<Shared>,
    pub(crate) out: OutQueue,
    pub(crate) calls: Calls,
    pub(crate) counters: Counters,
    pub(crate) inbound: InboundCount,
    pub(crate) groups: Mutex<Vec<Arc<str>>>,
    /// Raised when the session stops reading (it is closing).
    pub(crate) stop_reading: Latch,
    /// Raised once the session is fully closed.
    pub(crate) done: Latch,
    discard: AtomicBool,
    reason: OnceLock<CloseReason>,
    extensions: Mutex<Extensions>,
    /// The log rate limit of the session's errors.
    errors: ErrorLog,
    /// What only some transports offer (QUIC channels and datagrams), set by the
    /// transport when the session starts.
    pub(crate) link: OnceLock<Box<dyn LinkExtras>>,
    /// The user id bound with [`Session::bind`].
    uid: Mutex<Option<Arc<str>>>,
    /// Set while the server waits for the client's handshake: nothing is broadcast to it.
    pub(crate) unwelcome: AtomicBool,
    /// The client made a handshake: it knows the extension's later frames (go-away).
    pub(crate) greeted: AtomicBool,
    /// Plain mode: the framework sends the peer none of the extension's frames of its
    /// own accord (ping, bye) until the peer has used the extension itself.
    plain: bool,
    /// The peer has sent a frame of the extension (a call, a ping, a handshake...).
    pub(crate) extended: AtomicBool,
    /// Where a client's handshake answer goes.
    pub(crate) welcome: Mutex<Option<tokio::sync::oneshot::Sender<Welcome>>>,
    /// The address the pool admitted the session from (see `IpLimit`).
    pub(crate) admitted: OnceLock<std::net::IpAddr>,
    /// Set on a session that may outlive its connection (a server's with resume on, a
    /// client's with a reconnect policy).
    /// Boxed: most sessions never resume, and every session's state is kept.
    pub(crate) resume: Option<Box<resume::Resume>>,
}

/// The server's answer to a client's handshake.
#[derive(Debug)]
pub(crate) enum Welcome {
    Accepted { version: u16 },
    Refused(crate::wire::Status),
}

/// What a session's transport offers beyond sending and receiving frames, given to the
/// session by the transport that runs it (QUIC: datagrams and channels). The session
/// reaches these capabilities through this seam and never names a transport.
pub(crate) trait LinkExtras: Send + Sync + fmt::Debug {
    /// Sends one complete frame, the message `id` (`name`) encoded, as one unreliable
    /// datagram.
    fn send_datagram(
        &self,
        session: &Session,
        id: u32,
        name: &'static str,
        frame: Bytes,
    ) -> Result<(), SendError>;

    /// The transport's own link, for the operations it adds to [`Session`] (QUIC's
    /// `open_channel`).
    #[cfg_attr(not(feature = "quic"), allow(dead_code, reason = "only quic reads it"))]
    fn as_any(&self) -> &dyn Any;
}

/// One connected peer: a cheap, cloneable handle.
///
/// A `Session` is handed to every handler and hook, returned by
/// [`Builder::dial`](crate::Builder::dial), and found in the [`SessionPool`]. Sending
/// through it never waits: frames go to a bounded outbound queue that a writer task
/// drains.
///
/// ```
/// use gonet::{Builder, Codec, Router, Session, Transport};
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
/// let router = Router::new().route(|session: Session, ping: Ping| async move {
///     // The server's side of the session: who sent it, and over what.
///     assert_eq!(session.transport(), Transport::Tcp);
///     Ping { n: ping.n + 1 }
/// });
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
///
/// let client: Session = Builder::new().dial(&server.url()).await?;
/// assert_eq!(client.peer_addr(), server.local_addr());
/// assert_eq!(client.codec(), Codec::Protobuf);
/// let pong: Ping = client.call(&Ping { n: 1 }).await?;
/// assert_eq!(pong.n, 2);
///
/// client.close("done");
/// client.closed().await;
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.id)
            .field("peer", &self.peer_addr())
            .field("transport", &self.inner.transport)
            .finish_non_exhaustive()
    }
}

/// Forgets a pending call when the caller stops waiting.
struct PendingCall<'a> {
    calls: &'a Calls,
    call: u32,
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        self.calls.cancel(self.call);
    }
}

/// `frame` with its metadata frame in front, in one buffer so that nothing queued
/// from elsewhere comes between them.
fn with_meta(meta: &crate::Metadata, frame: Bytes) -> Result<Bytes, SendError> {
    let head = meta.encode()?;
    let mut both = bytes::BytesMut::with_capacity(head.len() + frame.len());
    both.extend_from_slice(&head);
    both.extend_from_slice(&frame);
    Ok(both.freeze())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // No user code runs under these locks, so a poisoned one holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) -> Self {
        let out = OutQueue::new(shared.settings.outbound_limit);
        let unwelcome = shared.hooks.on_handshake.is_some() && shared.pool.is_some();
        let resume = match (
            &shared.pool,
            &shared.settings.resume,
            &shared.settings.reconnect,
        ) {
            _ if !transport.resumes() => None,
            (Some(_), Some(_), _) => Some(Box::default()),
            (None, _, Some(policy)) => {
                // A client keeps what it sends from the start: its first frame after
                // the hello is counted by the server.
                out.start_log(None, policy.replay_limit);
                Some(Box::new(resume::Resume {
                    client: true,
                    fail_fast: policy.fail_fast,
                    ..resume::Resume::default()
                }))
            }
            _ => None,
        };
        let plain = shared
            .settings
            .plain
            .unwrap_or_else(|| crate::settings::default_plain(transport, shared.pool.is_some()));
        Session {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                addrs: Mutex::new((peer, local)),
                transport,
                shared,
                out,
                calls: Calls::default(),
                counters: Counters::default(),
                inbound: InboundCount::default(),
                groups: Mutex::new(Vec::new()),
                stop_reading: Latch::default(),
                done: Latch::default(),
                discard: AtomicBool::new(false),
                reason: OnceLock::new(),
                extensions: Mutex::new(Extensions::default()),
                errors: ErrorLog::default(),
                link: OnceLock::new(),
                uid: Mutex::new(None),
                unwelcome: AtomicBool::new(unwelcome),
                greeted: AtomicBool::new(false),
                plain,
                extended: AtomicBool::new(false),
                welcome: Mutex::new(None),
                resume,
                admitted: OnceLock::new(),
            }),
        }
    }

    /// The session id, unique within the process.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The peer's address (of the connection now, for a session resumed on a new one).
    pub fn peer_addr(&self) -> SocketAddr {
        lock(&self.inner.addrs).0
    }

    /// This side's address (of the connection now).
    pub fn local_addr(&self) -> SocketAddr {
        lock(&self.inner.addrs).1
    }

    /// A resumed session's new connection.
    pub(crate) fn set_addrs(&self, peer: SocketAddr, local: SocketAddr) {
        *lock(&self.inner.addrs) = (peer, local);
    }

    /// The transport the session runs on.
    pub fn transport(&self) -> Transport {
        self.inner.transport
    }

    /// The codec of message bodies on this session.
    pub fn codec(&self) -> Codec {
        self.inner.shared.settings.codec
    }

    /// The pool the session belongs to (a server's sessions do; a dialed one does not).
    pub fn pool(&self) -> Option<&SessionPool> {
        self.inner.shared.pool.as_ref()
    }

    /// Encodes `msg` with the session's codec and queues it as a plain frame.
    ///
    /// Fails if the session is closed, the message does not encode or fit in a frame, or
    /// the peer is not reading (the session is then closed, see
    /// [`CloseReason::SlowPeer`]).
    pub fn send<M: Message>(&self, msg: &M) -> Result<(), SendError> {
        let frame = wire::encode_message(msg, self.codec(), Wrap::Plain, self.max_frame_len())?;
        self.send_frame(frame)?;
        crate::telemetry::message_out(M::NAME);
        Ok(())
    }

    /// Sends `msg` without delivery or ordering guarantees: on QUIC as one datagram
    /// (feature `quic`), on UDP as the datagram every message already is. Meant for
    /// small, frequent, replaceable data (positions, input). Fails with
    /// [`SendError::DatagramTooLarge`] when the packet does not fit in one QUIC
    /// datagram (about 1,200 bytes), and with [`SendError::Unsupported`] on transports
    /// without datagrams.
    pub fn send_unreliable<M: Message>(&self, msg: &M) -> Result<(), SendError> {
        match (self.transport(), self.inner.link.get()) {
            (Transport::Udp, _) => self.send(msg),
            (_, Some(link)) => {
                let frame =
                    wire::encode_message(msg, self.codec(), Wrap::Plain, self.max_frame_len())?;
                link.send_datagram(self, M::ID, M::NAME, frame)
            }
            (other, None) => Err(SendError::Unsupported {
                what: "unreliable sends",
                transport: other,
            }),
        }
    }

    /// Queues a plain frame with an id and an already encoded body.
    pub fn send_raw(&self, id: u32, body: &[u8]) -> Result<(), SendError> {
        if !crate::wire::is_user_id(id) {
            return Err(SendError::ReservedId(id));
        }
        let frame = wire::encode_raw(id, body, self.max_frame_len())?;
        self.send_frame(frame)
    }

    /// [`send_raw`](Self::send_raw) with [`Metadata`](crate::Metadata) for the peer's
    /// handler (a relay passes on what the message it relays came with).
    pub fn send_raw_with(
        &self,
        id: u32,
        body: &[u8],
        meta: &crate::Metadata,
    ) -> Result<(), SendError> {
        if !crate::wire::is_user_id(id) {
            return Err(SendError::ReservedId(id));
        }
        let frame = wire::encode_raw(id, body, self.max_frame_len())?;
        self.send_frame(with_meta(meta, frame)?)
    }

    /// Queues one complete frame, as it is: a frame encoded once and sent to many
    /// sessions, or relayed from another process. The frame must be a whole gonet frame
    /// (header and body) in this session's codec; it is not checked.
    ///
    /// ```
    /// use gonet::{Builder, Router, Session};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let router = Router::new().fallback(move |_: Session, packet: gonet::Packet| {
    ///     let _ = tx.send(packet);
    ///     async {}
    /// });
    /// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
    /// let client = Builder::new().dial(&server.url()).await?;
    /// client.send_frame(gonet::frame::encode_frame(42, b"hi")?)?;
    /// let got = rx.recv().await.unwrap();
    /// assert_eq!((got.id, &got.body[..]), (42, &b"hi"[..]));
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_frame(&self, frame: Bytes) -> Result<(), SendError> {
        match self.queue_frame(frame) {
            Ok(()) => Ok(()),
            Err(PushError::Closed) => Err(SendError::Closed { session: self.id() }),
            Err(PushError::Disconnected) => Err(SendError::Disconnected { session: self.id() }),
            Err(PushError::Full { queued }) => {
                self.queue_full(queued);
                Err(SendError::QueueFull {
                    session: self.id(),
                    queued,
                    limit: self.inner.out.limit(),
                })
            }
        }
    }

    /// Queues a frame without acting on a full queue (see [`Self::queue_full`]).
    pub(crate) fn queue_frame(&self, frame: Bytes) -> Result<(), PushError> {
        if let Some(resume) = &self.inner.resume
            && resume.fail_fast
            && resume.is_detached()
        {
            return Err(PushError::Disconnected);
        }
        // Replies this thread has encoded for the session but not queued yet go first:
        // a handler's sends and replies leave in the order it made them.
        if let Some((replies, count)) = wire::take_lent(self.id()) {
            self.queue_replies(replies, count, None)?;
        }
        let frame = match &self.inner.shared.hooks.outbound {
            None => frame,
            Some(layers) => self.through(layers, frame),
        };
        self.inner.out.push(frame)?;
        self.inner.counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Passes a frame through the outbound layers.
    fn through(&self, layers: &crate::settings::OutboundLayers, mut frame: Bytes) -> Bytes {
        let id = match frame.get(2..6) {
            Some(id) => u32::from_le_bytes([id[0], id[1], id[2], id[3]]),
            None => return frame,
        };
        for layer in layers.iter() {
            frame = layer.frame(self, id, frame);
        }
        frame
    }

    /// Whether the framework may send the peer a frame of the protocol extension of its
    /// own accord (a ping, a bye): not in plain mode, or the peer has used the extension
    /// itself, so it knows the frames.
    pub(crate) fn may_extend(&self) -> bool {
        !self.inner.plain || self.inner.extended.load(Ordering::Relaxed)
    }

    /// Notes a frame of the extension from the peer (see [`may_extend`](Self::may_extend)).
    #[inline]
    pub(crate) fn peer_extends(&self) {
        if !self.inner.extended.load(Ordering::Relaxed) {
            self.inner.extended.store(true, Ordering::Relaxed);
        }
    }

    /// Queues a frame of the connection itself (heartbeat, handshake, acknowledgement):
    /// never kept for a resume.
    pub(crate) fn send_control(&self, frame: Bytes) {
        match self.inner.out.push_control(frame) {
            Ok(()) | Err(PushError::Closed | PushError::Disconnected) => {}
            Err(PushError::Full { queued }) => self.queue_full(queued),
        }
    }

    /// Whether a lost connection detaches the session rather than closing it.
    pub(crate) fn is_resumable(&self) -> bool {
        self.inner
            .resume
            .as_ref()
            .is_some_and(|r| r.client || r.is_active())
            && self.inner.reason.get().is_none()
    }

    /// The connection is lost: a resumable session detaches (its writer stops, what it
    /// sends from now on is kept) and true is returned; any other is left to close.
    pub(crate) fn link_lost(&self) -> bool {
        let Some(resume) = &self.inner.resume else {
            return false;
        };
        if !self.is_resumable() {
            return false;
        }
        resume.detached.store(true, Ordering::Release);
        self.inner.out.detach();
        resume.wake.notify_one();
        true
    }

    /// Tells the link hook what happened to the connection.
    pub(crate) fn link_event(&self, event: resume::LinkEvent) {
        crate::telemetry::link_event(match &event {
            resume::LinkEvent::Detached => "detached",
            resume::LinkEvent::Resumed => "resumed",
            resume::LinkEvent::Expired => "expired",
            resume::LinkEvent::Restarted(_) => "restarted",
        });
        if let Some(hook) = &self.inner.shared.hooks.on_link {
            hook(self, &event);
        }
    }

    /// A client's handshake frame, as its builder configured it (an empty payload when
    /// it set none).
    pub(crate) fn hello_frame(&self) -> Option<Bytes> {
        match &self.inner.shared.settings.hello {
            Some(hello) => {
                let (id, payload) = (hello.payload)(self.codec()).ok()?;
                wire::encode_hello(&hello.client_version, &hello.platform, id, &payload)
            }
            None => wire::encode_hello("", "", 0, &[]),
        }
    }

    /// Queues `count` replies encoded back to back in one buffer.
    pub(crate) fn queue_replies(
        &self,
        replies: Bytes,
        count: u64,
        ack: Option<u64>,
    ) -> Result<(), PushError> {
        if let Some(layers) = &self.inner.shared.hooks.outbound {
            if let Some(received) = ack {
                self.inner.out.ack_later(received);
            }
            // Each reply of the block passes the layers on its own.
            let mut rest = replies;
            while rest.len() >= wire::frame::HEADER_LEN {
                let len =
                    usize::from(u16::from_le_bytes([rest[0], rest[1]])) + wire::frame::LEN_FIELD;
                let frame = rest.split_to(len.min(rest.len()));
                self.inner.out.push(self.through(layers, frame))?;
            }
            self.inner.counters.sent.fetch_add(count, Ordering::Relaxed);
            return Ok(());
        }
        self.inner.out.push_acking(replies, ack)?;
        self.inner.counters.sent.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    /// The peer is not reading: close the session as slow.
    pub(crate) fn queue_full(&self, queued: usize) {
        crate::telemetry::backpressure("outbound");
        let limit = self.inner.out.limit();
        self.fail(
            SessionErrorKind::SlowPeer(format!(
                "outbound queue holds {queued} bytes, over the limit of {limit}"
            )),
            CloseReason::SlowPeer,
            CloseMode::Abort,
        );
    }

    /// Sends `req` and waits for the typed reply, up to the configured call timeout.
    ///
    /// The request travels in the correlation envelope of `PROTOCOL.md`; the peer's
    /// handler runs as for a plain message and its reply (or error status) comes back
    /// tagged with this call's number.
    pub async fn call<Req: Message, Resp: Message>(&self, req: &Req) -> Result<Resp, CallError> {
        self.call_timeout(req, self.inner.shared.settings.call_timeout)
            .await
    }

    /// [`call`](Self::call) with an explicit timeout.
    pub async fn call_timeout<Req: Message, Resp: Message>(
        &self,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.call_meta(req, timeout, None).await
    }

    /// [`call`](Self::call) with [`Metadata`](crate::Metadata) for the handler, its
    /// layers and its log span (a `trace-id` crosses cluster hops).
    pub async fn call_with<Req: Message, Resp: Message>(
        &self,
        req: &Req,
        meta: &crate::Metadata,
    ) -> Result<Resp, CallError> {
        let timeout = self.inner.shared.settings.call_timeout;
        self.call_meta(req, timeout, Some(meta)).await
    }

    /// [`send`](Self::send) with [`Metadata`](crate::Metadata) for the handler.
    pub fn send_with<M: Message>(&self, msg: &M, meta: &crate::Metadata) -> Result<(), SendError> {
        let frame = wire::encode_message(msg, self.codec(), Wrap::Plain, self.max_frame_len())?;
        self.send_frame(with_meta(meta, frame)?)?;
        crate::telemetry::message_out(M::NAME);
        Ok(())
    }

    async fn call_meta<Req: Message, Resp: Message>(
        &self,
        req: &Req,
        timeout: Duration,
        meta: Option<&crate::Metadata>,
    ) -> Result<Resp, CallError> {
        let closed = || CallError::Closed {
            name: Req::NAME,
            session: self.id(),
        };
        let send = |source: SendError| CallError::Send {
            name: Req::NAME,
            source,
        };
        let (call, rx) = self.inner.calls.start().ok_or_else(closed)?;
        let _pending = PendingCall {
            calls: &self.inner.calls,
            call,
        };
        let mut frame =
            wire::encode_message(req, self.codec(), Wrap::Request(call), self.max_frame_len())
                .map_err(|err| send(err.into()))?;
        if let Some(meta) = meta {
            frame = with_meta(meta, frame).map_err(send)?;
        }
        self.send_frame(frame).map_err(send)?;
        crate::telemetry::message_out(Req::NAME);
        let outcome = match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                return Err(CallError::Timeout {
                    name: Req::NAME,
                    session: self.id(),
                    after: timeout,
                });
            }
            Ok(Err(_)) => return Err(closed()),
            Ok(Ok(outcome)) => outcome,
        };
        match outcome {
            Outcome::Error(status) => Err(CallError::Status {
                name: Req::NAME,
                status,
            }),
            Outcome::Reply { id, .. } if id != Resp::ID => Err(CallError::UnexpectedReply {
                name: Req::NAME,
                expected: Resp::ID,
                expected_name: Resp::NAME,
                got: id,
            }),
            Outcome::Reply { body, .. } => Resp::decode_body(self.codec(), Body::new(&body))
                .map_err(|source| CallError::Decode {
                    name: Req::NAME,
                    source,
                }),
        }
    }

    /// Sends a request with an id and an already encoded body and waits for the reply,
    /// as a [`Packet`](crate::Packet) (the reply's id and body, in this session's codec).
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
    /// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
    /// let client = Builder::new().dial(&server.url()).await?;
    /// let reply = client.call_raw(1, &[0x08, 0x01], std::time::Duration::from_secs(5)).await?;
    /// assert_eq!((reply.id, &reply.body[..]), (1, &[0x08, 0x02][..]));
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_raw(
        &self,
        id: u32,
        body: &[u8],
        timeout: Duration,
    ) -> Result<crate::Packet, CallError> {
        self.call_raw_meta(id, body, timeout, None).await
    }

    /// [`call_raw`](Self::call_raw) with [`Metadata`](crate::Metadata) for the peer's
    /// handler (a relay passes on what the message it relays came with).
    pub async fn call_raw_with(
        &self,
        id: u32,
        body: &[u8],
        timeout: Duration,
        meta: &crate::Metadata,
    ) -> Result<crate::Packet, CallError> {
        self.call_raw_meta(id, body, timeout, Some(meta)).await
    }

    async fn call_raw_meta(
        &self,
        id: u32,
        body: &[u8],
        timeout: Duration,
        meta: Option<&crate::Metadata>,
    ) -> Result<crate::Packet, CallError> {
        const NAME: &str = "raw";
        let closed = || CallError::Closed {
            name: NAME,
            session: self.id(),
        };
        let send = |source: SendError| CallError::Send { name: NAME, source };
        if !crate::wire::is_user_id(id) {
            return Err(send(SendError::ReservedId(id)));
        }
        let (call, rx) = self.inner.calls.start().ok_or_else(closed)?;
        let _pending = PendingCall {
            calls: &self.inner.calls,
            call,
        };
        let mut frame = wire::encode_raw_request(id, call, body, self.max_frame_len())
            .map_err(|err| send(err.into()))?;
        if let Some(meta) = meta {
            frame = with_meta(meta, frame).map_err(send)?;
        }
        self.send_frame(frame).map_err(send)?;
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(CallError::Timeout {
                name: NAME,
                session: self.id(),
                after: timeout,
            }),
            Ok(Err(_)) => Err(closed()),
            Ok(Ok(Outcome::Error(status))) => Err(CallError::Status { name: NAME, status }),
            Ok(Ok(Outcome::Reply { id, body })) => Ok(crate::Packet { id, body }),
        }
    }

    /// Binds the session to a user id, for unique login: a session of the same pool
    /// already bound to `uid` is closed with [`CloseReason::Replaced`], never this one,
    /// however close in time the two logins are. [`SessionPool::user`] finds the
    /// session of a user; the bind hook ([`Builder::on_bind`](crate::Builder::on_bind))
    /// sees every bind.
    ///
    /// ```
    /// use gonet::{Builder, CloseReason, Router, Session};
    ///
    /// #[derive(Clone, PartialEq, prost::Message)]
    /// struct Login {
    ///     #[prost(string, tag = "1")]
    ///     user: String,
    /// }
    /// gonet::message!(Login = 1, prost);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let router = Router::new().route(|session: Session, login: Login| async move {
    ///     session.bind(login.user.as_str());
    ///     login
    /// });
    /// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
    /// let first = Builder::new().dial(&server.url()).await?;
    /// let _: Login = first.call(&Login { user: "ada".into() }).await?;
    /// let second = Builder::new().dial(&server.url()).await?;
    /// let _: Login = second.call(&Login { user: "ada".into() }).await?;
    ///
    /// // The older login is closed; the pool finds the newer one.
    /// first.closed().await;
    /// let bound = server.pool().user("ada").unwrap();
    /// assert_eq!(bound.uid().as_deref(), Some("ada"));
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn bind(&self, uid: impl Into<Arc<str>>) {
        let uid: Arc<str> = uid.into();
        let previous = lock(&self.inner.uid).replace(uid.clone());
        if let Some(pool) = self.pool() {
            if let Some(old) = previous.filter(|old| *old != uid) {
                pool.unbind(&old, self);
            }
            if let Some(older) = pool.bind(uid.clone(), self) {
                older.close_replaced();
            }
        }
        if let Some(hook) = &self.inner.shared.hooks.on_bind {
            hook(self, &uid);
        }
    }

    /// The user id bound with [`bind`](Self::bind).
    pub fn uid(&self) -> Option<Arc<str>> {
        lock(&self.inner.uid).clone()
    }

    /// The server drains: make no new calls, finish those in flight, then close, so the
    /// application connects again elsewhere.
    ///
    /// A client with a reconnect policy does not close: it leaves the server (a bye,
    /// which the server closes the session on) and starts a fresh session on the same
    /// handle, at `to` if given; its calls fail at once until that session is open.
    pub(crate) fn go_away(&self, to: Option<String>) {
        tracing::info!(to = to.as_deref().unwrap_or(""), "server going away");
        let session = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = session.inner.calls.wind_down() => {}
                () = session.inner.done.wait() => return,
            }
            match &session.inner.resume {
                Some(resume) if resume.client => {
                    resume.set_token(None);
                    if let Some(to) = &to {
                        *lock(&resume.redirect) = Some(to.clone());
                    }
                    session.link_event(resume::LinkEvent::Restarted(
                        crate::wire::Status::unavailable(match &to {
                            Some(to) => format!("the server is going away; connecting to {to}"),
                            None => "the server is going away".to_owned(),
                        }),
                    ));
                    session.send_control(wire::encode_control(wire::ID_BYE));
                }
                _ => {
                    let reason = CloseReason::GoAway(to.map(Into::into));
                    session.close_with(reason, CloseMode::Graceful);
                }
            }
        });
    }

    /// Waits for the server's answer to this client's handshake from now on.
    pub(crate) fn expect_welcome(&self) -> tokio::sync::oneshot::Receiver<Welcome> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *lock(&self.inner.welcome) = Some(tx);
        rx
    }

    /// The server answered this client's handshake.
    pub(crate) fn welcome(&self, answer: Welcome) {
        match lock(&self.inner.welcome).take() {
            Some(tx) => {
                let _ = tx.send(answer);
            }
            None => {
                self.report(SessionErrorKind::Extension(
                    crate::wire::ExtensionError::Malformed {
                        id: crate::wire::ID_WELCOME,
                        what: "a handshake answer nobody asked for",
                    },
                ));
            }
        }
    }

    /// Closes the session with [`CloseReason::Replaced`]: its user logged in again
    /// elsewhere. Used by unique login across processes; [`bind`](Self::bind) does it
    /// within one pool.
    pub fn close_replaced(&self) {
        self.close_with(CloseReason::Replaced, CloseMode::Discard);
    }

    /// Closes the session: reading stops, messages not yet handled are skipped, what is
    /// already queued for the peer is still written, then the connection closes. The
    /// close hook sees [`CloseReason::Local`] with `reason`.
    pub fn close(&self, reason: impl Into<String>) {
        let reason: String = reason.into();
        self.close_with(CloseReason::Local(reason.into()), CloseMode::Discard);
    }

    /// Whether the session is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.reason.get().is_some() || self.inner.done.is_raised()
    }

    /// Why the session closed, once it is closing.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.reason.get().cloned()
    }

    /// Waits until the session is fully closed and returns why it closed.
    pub async fn closed(&self) -> CloseReason {
        self.inner.done.wait().await;
        self.close_reason().unwrap_or(CloseReason::PeerClosed)
    }

    /// Joins a named group of the session's pool; no-op for a session without a pool.
    pub fn join(&self, group: &str) {
        if let Some(pool) = self.pool() {
            pool.join(group, self);
        }
    }

    /// Leaves a named group of the session's pool.
    pub fn leave(&self, group: &str) {
        if let Some(pool) = self.pool() {
            pool.leave(group, self);
        }
    }

    /// The groups the session is in.
    pub fn groups(&self) -> Vec<String> {
        lock(&self.inner.groups)
            .iter()
            .map(|g| g.to_string())
            .collect()
    }

    /// Stores a value of type `T` with the session, returning the previous one.
    ///
    /// ```
    /// # fn demo(session: &gonet::Session) {
    /// #[derive(Clone)]
    /// struct Player { name: String }
    /// session.insert(Player { name: "ada".into() });
    /// assert_eq!(session.get::<Player>().unwrap().name, "ada");
    /// session.with(|p: &mut Player| p.name.push('!'));
    /// # }
    /// ```
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        lock(&self.inner.extensions)
            .0
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// A clone of the stored value of type `T`.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.extensions)
            .0
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }

    /// Runs `f` on the stored value of type `T`, if there is one.
    pub fn with<T: Send + Sync + 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        lock(&self.inner.extensions)
            .0
            .get_mut(&TypeId::of::<T>())
            .and_then(|v| v.downcast_mut::<T>())
            .map(f)
    }

    /// Removes and returns the stored value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&self) -> Option<T> {
        lock(&self.inner.extensions)
            .0
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// The session's counters.
    pub fn stats(&self) -> SessionStats {
        let c = &self.inner.counters;
        SessionStats {
            received: c.received.load(Ordering::Relaxed),
            handled: c.handled.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            queued_bytes: self.inner.out.queued_bytes(),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// The heartbeat interval and idle timeout in force on this session.
    pub(crate) fn heartbeat(&self) -> (Option<Duration>, Option<Duration>) {
        let s = &self.inner.shared.settings;
        let (ping, idle) = crate::settings::default_heartbeat(self.inner.transport);
        // An explicit zero turns the default off.
        let pick = |set: Option<Duration>, default| set.or(default).filter(|d| !d.is_zero());
        (pick(s.heartbeat, ping), pick(s.idle_timeout, idle))
    }

    /// How long a frame may take once its first byte has arrived; `None`: forever.
    pub(crate) fn frame_timeout(&self) -> Option<Duration> {
        Some(self.inner.shared.settings.frame_timeout).filter(|d| !d.is_zero())
    }

    /// The largest frame length field this session sends and accepts: the configured
    /// one, or less where the transport carries less (a UDP datagram).
    pub(crate) fn max_frame_len(&self) -> usize {
        let max = self.inner.shared.settings.max_frame_len;
        match self.inner.transport {
            // 65,507 bytes of UDP payload, less the 2-byte length field.
            Transport::Udp => max.min(65_505),
            _ => max,
        }
    }

    pub(crate) fn discarding(&self) -> bool {
        self.inner.discard.load(Ordering::Relaxed)
    }

    /// Starts closing; the first reason given wins.
    pub(crate) fn close_with(&self, reason: CloseReason, mode: CloseMode) {
        let first = self.inner.reason.set(reason).is_ok();
        if first {
            tracing::debug!(reason = %self.inner.reason.get().expect("just set"), "session closing");
        }
        match mode {
            CloseMode::Graceful => {}
            CloseMode::Discard => self.inner.discard.store(true, Ordering::Relaxed),
            CloseMode::Abort => {
                self.inner.discard.store(true, Ordering::Relaxed);
                self.inner.out.abort();
            }
        }
        self.inner.stop_reading.raise();
    }

    /// Logs an error of this session (the first always; then at most a few per
    /// interval, with a count of the rest, see `report`) and hands it to the error
    /// hook (every one).
    pub(crate) fn report(&self, kind: SessionErrorKind) -> SessionError {
        self.report_as(kind, false)
    }

    /// [`report`](Self::report); an error that ends the session (`ending`) is logged
    /// whatever came before it, unless the session was already closing.
    fn report_as(&self, kind: SessionErrorKind, ending: bool) -> SessionError {
        let err = SessionError {
            session: self.id(),
            peer: self.peer_addr(),
            kind,
        };
        let verdict = if ending && self.inner.reason.get().is_none() {
            let (suppressed, over) = self.inner.errors.take_suppressed().unwrap_or_default();
            Verdict::Log { suppressed, over }
        } else {
            self.inner.errors.admit()
        };
        match verdict {
            Verdict::Log { suppressed: 0, .. } => tracing::warn!(error = %err, "session error"),
            Verdict::Log { suppressed, over } => tracing::warn!(
                error = %err,
                suppressed,
                "session error, and {suppressed} more errors of session {} suppressed in the last {over:?}",
                self.id(),
            ),
            Verdict::Suppress => {}
        }
        if let Some(hook) = &self.inner.shared.hooks.on_error {
            hook(self, &err);
        }
        err
    }

    /// Logs the count of errors whose lines were suppressed since the last one, if
    /// any: the session's last word in the log.
    pub(crate) fn log_suppressed(&self) {
        if let Some((suppressed, over)) = self.inner.errors.take_suppressed() {
            tracing::warn!(
                suppressed,
                "session {} ({}) ended with {suppressed} more errors suppressed in the last {over:?}",
                self.id(),
                self.peer_addr(),
            );
        }
    }

    /// Reports an error and closes the session because of it.
    pub(crate) fn fail(&self, kind: SessionErrorKind, reason: CloseReason, mode: CloseMode) {
        self.report_as(kind, true);
        self.close_with(reason, mode);
    }

    /// Reports an error that ends the session with [`CloseReason::Error`].
    pub(crate) fn fail_with_error(&self, kind: SessionErrorKind, mode: CloseMode) {
        let err = self.report_as(kind, true);
        self.close_with(CloseReason::Error(Arc::new(err)), mode);
    }
}
