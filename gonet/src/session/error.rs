//! The errors of a session's operations: a send ([`SendError`]), a call
//! ([`CallError`]), and what goes wrong while it runs ([`SessionError`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::codec::CodecError;
use crate::url::Transport;
use crate::wire::frame::FrameError;
use crate::wire::{EncodeError, ExtensionError, Status};

/// Sending a message to a session failed.
///
/// ```
/// use gonet::{Builder, SendError};
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
/// let server = Builder::new().serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// client.close("done");
/// client.closed().await;
/// match client.send(&Ping { n: 1 }) {
///     Err(SendError::Closed { session }) => assert_eq!(session, client.id()),
///     other => panic!("{other:?}"),
/// }
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closed or closing.
    #[error("session {session} is closed")]
    Closed {
        /// The session id.
        session: u64,
    },
    /// The connection dropped and the client connects again; its reconnect policy fails
    /// sends meanwhile (see
    /// [`Reconnect::fail_while_disconnected`](crate::Reconnect::fail_while_disconnected)).
    #[error("session {session} is disconnected, connecting again")]
    Disconnected {
        /// The session id.
        session: u64,
    },
    /// The peer is not reading: the outbound queue is over its limit. The session is
    /// closed with [`CloseReason::SlowPeer`](crate::CloseReason::SlowPeer).
    #[error(
        "session {session}: outbound queue full ({queued} bytes queued, limit {limit}); the peer is not reading"
    )]
    QueueFull {
        /// The session id.
        session: u64,
        /// Bytes queued when the frame was refused.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] CodecError),
    /// Its metadata does not fit the metadata frame.
    #[error(transparent)]
    Metadata(#[from] crate::wire::MetadataError),
    /// The encoded message does not fit in one frame.
    #[error("message {id} ({name}) body of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// The message id.
        id: u32,
        /// The message name.
        name: &'static str,
        /// The body length.
        len: usize,
        /// The largest body allowed.
        max: usize,
    },
    /// An unreliable send does not fit in one datagram.
    #[error("message {id} ({name}) is {len} bytes as a packet; one datagram holds at most {max}")]
    DatagramTooLarge {
        /// The message id.
        id: u32,
        /// The message name.
        name: &'static str,
        /// The packet length.
        len: usize,
        /// The largest datagram the path carries now.
        max: usize,
    },
    /// The session's transport cannot do this.
    #[error("{what} are not supported on {transport}")]
    Unsupported {
        /// What was asked.
        what: &'static str,
        /// The session's transport.
        transport: Transport,
    },
    /// A raw send used an id from the reserved range.
    #[error("message id {0:#x} is reserved for the framework (user ids are 1..=0xfffffeff)")]
    ReservedId(u32),
}

impl From<EncodeError> for SendError {
    fn from(err: EncodeError) -> Self {
        match err {
            EncodeError::Encode(err) => SendError::Encode(err),
            EncodeError::TooLarge { id, name, len, max } => {
                SendError::TooLarge { id, name, len, max }
            }
        }
    }
}

/// A request/response call failed.
///
/// Match on the variant: here a peer that does not answer in time gives
/// [`Timeout`](Self::Timeout). A handler's error comes back as [`Status`](Self::Status)
/// (see [`status`](Self::status)).
///
/// ```
/// use std::time::Duration;
///
/// use gonet::{Builder, CallError, Router, Session};
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
/// // A handler that never finishes.
/// let router = Router::new().route(|_: Session, _: Ping| std::future::pending::<Ping>());
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
///
/// let wait = Duration::from_millis(100);
/// match client.call_timeout::<_, Ping>(&Ping { n: 1 }, wait).await {
///     Err(CallError::Timeout { name, after, .. }) => assert_eq!((name, after), ("Ping", wait)),
///     other => panic!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The request could not be sent.
    #[error("call {name}: {source}")]
    Send {
        /// The request's message name.
        name: &'static str,
        /// Why sending failed.
        source: SendError,
    },
    /// No reply came in time.
    #[error("call {name} to session {session} timed out after {after:?}")]
    Timeout {
        /// The request's message name.
        name: &'static str,
        /// The session id.
        session: u64,
        /// The timeout that expired.
        after: Duration,
    },
    /// The session closed before the reply came.
    #[error("call {name}: session {session} closed before the reply came")]
    Closed {
        /// The request's message name.
        name: &'static str,
        /// The session id.
        session: u64,
    },
    /// The peer answered with an error status.
    #[error("call {name} failed: {status}")]
    Status {
        /// The request's message name.
        name: &'static str,
        /// The status the peer sent.
        status: Status,
    },
    /// The reply has another message id than the one expected.
    #[error("call {name}: expected reply {expected_name} (id {expected}), got id {got}")]
    UnexpectedReply {
        /// The request's message name.
        name: &'static str,
        /// The expected reply id.
        expected: u32,
        /// The expected reply name.
        expected_name: &'static str,
        /// The id that came.
        got: u32,
    },
    /// The reply body did not decode.
    #[error("call {name}: reply did not decode: {source}")]
    Decode {
        /// The request's message name.
        name: &'static str,
        /// The decode error.
        source: CodecError,
    },
}

impl CallError {
    /// The status sent by the peer, if the call failed with one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            CallError::Status { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// Something went wrong on one session. Handed to the error hook and logged; it names
/// the session and peer, and the message where there is one.
///
/// ```
/// use gonet::{Builder, SessionError, SessionErrorKind};
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
/// let server = Builder::new()
///     .on_error(move |_, err: &SessionError| {
///         let unknown = matches!(err.kind, SessionErrorKind::UnknownMessage { id: 1 });
///         let _ = tx.send((err.peer, unknown));
///     })
///     .serve("tcp://127.0.0.1:0")
///     .await?;
///
/// // No route handles Ping on this server.
/// let client = Builder::new().dial(&server.url()).await?;
/// assert!(client.call::<_, Ping>(&Ping { n: 1 }).await.is_err());
/// assert_eq!(rx.recv().await, Some((client.local_addr(), true)));
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("session {session} ({peer}): {kind}")]
pub struct SessionError {
    /// The session id.
    pub session: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// What went wrong.
    pub kind: SessionErrorKind,
}

/// What went wrong on a session.
///
/// A peer that writes a frame whose length field is 2 (too short to hold a message id)
/// ends its session with a [`Frame`](Self::Frame) error:
///
/// ```
/// use gonet::{Builder, FrameError, SessionError, SessionErrorKind};
/// use tokio::io::AsyncWriteExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let server = Builder::new()
///     .on_error(move |_, err: &SessionError| {
///         if let SessionErrorKind::Frame(FrameError::LengthTooSmall { len }) = err.kind {
///             let _ = tx.send(len);
///         }
///     })
///     .serve("tcp://127.0.0.1:0")
///     .await?;
///
/// let mut peer = tokio::net::TcpStream::connect(server.local_addr()).await?;
/// peer.write_all(&[2, 0, 0, 0]).await?;
/// assert_eq!(rx.recv().await, Some(2));
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionErrorKind {
    /// The byte stream is not valid frames; the session is closed.
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    /// A frame in the reserved range is malformed; it is skipped.
    #[error("malformed framework message: {0}")]
    Extension(#[from] ExtensionError),
    /// No route and no fallback handles the id; the message is skipped.
    #[error("unknown message id {id}: no route handles it")]
    UnknownMessage {
        /// The message id.
        id: u32,
    },
    /// The body did not decode; the message is skipped.
    #[error("message {id} ({name}): {source}")]
    Decode {
        /// The message id.
        id: u32,
        /// The message name.
        name: &'static str,
        /// The codec error.
        source: CodecError,
    },
    /// A handler returned an error for a message that no caller awaits.
    #[error("message {id} ({name}): handler failed: {status}")]
    Handler {
        /// The message id.
        id: u32,
        /// The message name.
        name: &'static str,
        /// The handler's status.
        status: Status,
    },
    /// The reply of a handler could not be sent.
    #[error("message {id} ({name}): reply not sent: {source}")]
    Reply {
        /// The message id.
        id: u32,
        /// The message name.
        name: &'static str,
        /// Why it was not sent.
        source: SendError,
    },
    /// A handler panicked.
    #[error("message {id} ({name}): handler panicked: {panic}")]
    Panic {
        /// The message id.
        id: u32,
        /// The message name.
        name: &'static str,
        /// The panic payload, if it was a string.
        panic: String,
    },
    /// A reply arrived for a call nobody waits for (it timed out or was never made).
    #[error("reply to unknown call {call}")]
    StrayReply {
        /// The call number.
        call: u32,
    },
    /// A frame started arriving on a stream (TCP, KCP, a QUIC stream) and did not
    /// complete within the frame timeout (see `Builder::frame_timeout`): a peer
    /// trickling bytes, or one that stopped mid-frame. The session is closed.
    #[error(
        "a frame of {expected} bytes started {after:?} ago is still incomplete: {received} of {expected} bytes received"
    )]
    FrameTimeout {
        /// Bytes the frame declared (header included; the header's 6 bytes while the
        /// length field itself is incomplete).
        expected: usize,
        /// Bytes of it that arrived.
        received: usize,
        /// How long ago its first byte arrived.
        after: Duration,
    },
    /// A WebSocket message whose first bytes arrived this long ago is still incomplete
    /// (see `Builder::frame_timeout`); the session is closed.
    #[error("a websocket message started {after:?} ago is still incomplete after {received} bytes")]
    MessageTimeout {
        /// Bytes of it that arrived (frame headers included).
        received: usize,
        /// How long ago its first byte arrived.
        after: Duration,
    },
    /// Nothing came from the peer for this long; the session is closed with
    /// [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout).
    #[error("peer silent for {0:?}: idle timeout")]
    IdleTimeout(Duration),
    /// The peer broke the rules of the transport (a WebSocket text message, a QUIC
    /// stream it may not open); the text says what it did.
    #[error("transport protocol error: {0}")]
    Protocol(String),
    /// A message of a message transport (a UDP datagram, a WebSocket message) came while
    /// the session's inbound queue was full, and was dropped. Counted and reported; the
    /// session goes on.
    #[error("inbound queue full: dropped a message ({dropped} dropped so far)")]
    Dropped {
        /// Messages this session has dropped so far.
        dropped: u64,
    },
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not take our writes: the outbound queue passed its limit or a write
    /// made no progress within the write timeout.
    #[error("peer is not reading: {0}")]
    SlowPeer(String),
    /// A message went past the session's rate limit (see
    /// [`Builder::rate_limit`](crate::Builder::rate_limit)).
    #[error("message {id} ({name}) past the rate limit ({violations} times so far)")]
    RateLimited {
        /// The message id.
        id: u32,
        /// The message name.
        name: &'static str,
        /// Messages past the limit so far on this session.
        violations: u32,
    },
    /// A resume could not go on: the two ends disagree on what was sent.
    #[error("resume failed: {0}")]
    Resume(String),
}
