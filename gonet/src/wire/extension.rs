//! The framework's protocol extension (see `PROTOCOL.md`): request/response correlation,
//! error replies and heartbeats, carried in frames whose ids lie in the reserved range.
//! Pure functions over bytes; no I/O.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::frame::{HEADER_LEN, MIN_FRAME_LEN};
use super::{Code, Message, Status};
use crate::codec::{Body, Codec, CodecError};

/// A correlated request: `call u32 LE | inner id u32 LE | inner body`.
pub(crate) const ID_REQUEST: u32 = 0xFFFF_FF01;
/// A correlated reply: `call u32 LE | inner id u32 LE | inner body`.
pub(crate) const ID_RESPONSE: u32 = 0xFFFF_FF02;
/// An error reply: `call u32 LE | code u16 LE | UTF-8 message`.
pub(crate) const ID_ERROR: u32 = 0xFFFF_FF03;
/// A heartbeat request; the peer answers with [`ID_PONG`]. Empty body.
pub(crate) const ID_PING: u32 = 0xFFFF_FF10;
/// A heartbeat answer. Empty body.
pub(crate) const ID_PONG: u32 = 0xFFFF_FF11;
/// The sender is closing the session. Empty body. Sent only on transports that have no
/// close of their own (UDP, KCP), so that the peer learns at once rather than after its
/// idle timeout.
pub(crate) const ID_BYE: u32 = 0xFFFF_FF12;

/// The client's handshake (opt-in per listener): `version u16 LE | client version
/// (u8 length, UTF-8) | platform (u8 length, UTF-8) | payload id u32 LE | payload body`.
pub(crate) const ID_HELLO: u32 = 0xFFFF_FF20;
/// The server accepted the handshake: `version u16 LE | session id u64 LE`, then the
/// resume token (16 bytes) when the server keeps sessions for a resume.
pub(crate) const ID_WELCOME: u32 = 0xFFFF_FF21;
/// The server refused the handshake: `code u16 LE | UTF-8 message`; it closes the
/// connection after it.
pub(crate) const ID_REFUSED: u32 = 0xFFFF_FF22;

/// The server drains: the client should finish its calls, close, and connect again,
/// to the address in the body (UTF-8, may be empty) if there is one. Sent only to
/// clients that made a handshake.
pub(crate) const ID_GOAWAY: u32 = 0xFFFF_FF23;

/// A client resumes a detached session on a new connection, in place of a hello:
/// `version u16 LE | session id u64 LE | token (16 bytes) | received u64 LE`.
pub(crate) const ID_RESUME: u32 = 0xFFFF_FF24;
/// The server resumed the session: `received u64 LE`, the counted bytes it had
/// received; each side then sends again what the other has not received.
pub(crate) const ID_RESUMED: u32 = 0xFFFF_FF25;
/// Counted bytes received so far on a resumable session: `received u64 LE`.
pub(crate) const ID_ACK: u32 = 0xFFFF_FF26;

/// Bytes of a resume token.
pub(crate) const TOKEN_LEN: usize = 16;

/// The version of the handshake and of the extension it announces.
pub(crate) const PROTOCOL_VERSION: u16 = 1;

/// Bytes the request and response envelopes add in front of the inner body.
pub(crate) const ENVELOPE_LEN: usize = 8;

/// How a message is wrapped on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wrap {
    /// A plain gonet v3 frame.
    Plain,
    /// A correlated request with this call number.
    Request(u32),
    /// The reply to the call with this number.
    Response(u32),
}

/// A frame after the extension has been looked at; bodies are borrowed from the frame.
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    /// An application message; `call` is set when the sender awaits a reply.
    Message {
        id: u32,
        body: Body<'a>,
        call: Option<u32>,
    },
    /// A reply to one of our calls.
    Response { call: u32, id: u32, body: Body<'a> },
    /// An error reply to one of our calls.
    Error { call: u32, status: Status },
    /// A heartbeat request.
    Ping,
    /// A heartbeat answer.
    Pong,
    /// The peer closed the session.
    Bye,
    /// A client's handshake.
    Hello(Hello<'a>),
    /// The server accepted our handshake.
    Welcome {
        version: u16,
        session: u64,
        token: Option<[u8; TOKEN_LEN]>,
    },
    /// A client resumes a session.
    Resume {
        version: u16,
        session: u64,
        token: [u8; TOKEN_LEN],
        received: u64,
    },
    /// The server resumed our session; it had received this many counted bytes.
    Resumed { received: u64 },
    /// The peer has received this many counted bytes.
    Ack { received: u64 },
    /// The metadata of the next message.
    Meta(super::Metadata),
    /// The server refused our handshake.
    Refused(Status),
    /// The server drains; connect again elsewhere (to this address, if given).
    GoAway(Option<String>),
}

/// A client's handshake, its strings and payload borrowed from the frame.
#[derive(Debug)]
pub(crate) struct Hello<'a> {
    pub(crate) version: u16,
    pub(crate) client_version: String,
    pub(crate) platform: String,
    pub(crate) payload_id: u32,
    pub(crate) payload: Body<'a>,
}

/// A frame in the reserved range that is not well formed.
///
/// Such a frame is skipped and reported to the error hook; the session goes on. Here a
/// peer writes a frame with id `0xffffff77`, reserved but unused:
///
/// ```
/// use gonet::{Builder, ExtensionError, SessionError, SessionErrorKind};
/// use tokio::io::AsyncWriteExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let server = Builder::new()
///     .on_error(move |_, err: &SessionError| {
///         if let SessionErrorKind::Extension(ExtensionError::UnknownId(id)) = err.kind {
///             let _ = tx.send(id);
///         }
///     })
///     .serve("tcp://127.0.0.1:0")
///     .await?;
///
/// let mut peer = tokio::net::TcpStream::connect(server.local_addr()).await?;
/// let frame = gonet::frame::encode_frame(0xffff_ff77, b"")?;
/// peer.write_all(&frame).await?;
/// assert_eq!(rx.recv().await, Some(0xffff_ff77));
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The envelope is shorter than its fixed fields.
    #[error(
        "framework message {id:#010x} has a {len}-byte body, shorter than its {need}-byte envelope"
    )]
    Short {
        /// The frame id.
        id: u32,
        /// The body length.
        len: usize,
        /// The envelope length.
        need: usize,
    },
    /// The id is in the reserved range but means nothing.
    #[error("unknown framework message id {0:#010x} (ids from 0xffffff00 are reserved)")]
    UnknownId(u32),
    /// An envelope wraps an id outside the user range.
    #[error("framework message wraps reserved id {0:#010x}")]
    NestedReserved(u32),
    /// A handshake frame whose fields do not add up.
    #[error("malformed handshake frame {id:#010x}: {what}")]
    Malformed {
        /// The frame id.
        id: u32,
        /// What is wrong.
        what: &'static str,
    },
}

/// A message that could not be made into a frame. A session reports it as the
/// [`SendError`](crate::SendError) of the same name, with the same text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    /// The body could not be encoded.
    #[error(transparent)]
    Encode(#[from] CodecError),
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
}

/// Classifies a frame.
pub(crate) fn classify(id: u32, mut body: Body<'_>) -> Result<Incoming<'_>, ExtensionError> {
    if super::is_user_id(id) || id == 0 {
        return Ok(Incoming::Message {
            id,
            body,
            call: None,
        });
    }
    let need = |n: usize, body: &Body<'_>| {
        if body.len() < n {
            Err(ExtensionError::Short {
                id,
                len: body.len(),
                need: n,
            })
        } else {
            Ok(())
        }
    };
    match id {
        ID_REQUEST | ID_RESPONSE => {
            need(ENVELOPE_LEN, &body)?;
            let call = body.get_u32_le();
            let inner = body.get_u32_le();
            if !super::is_user_id(inner) {
                return Err(ExtensionError::NestedReserved(inner));
            }
            Ok(if id == ID_REQUEST {
                Incoming::Message {
                    id: inner,
                    body,
                    call: Some(call),
                }
            } else {
                Incoming::Response {
                    call,
                    id: inner,
                    body,
                }
            })
        }
        ID_ERROR => {
            need(6, &body)?;
            let call = body.get_u32_le();
            let code = Code::from_u16(body.get_u16_le());
            let message = String::from_utf8_lossy(&body).into_owned();
            Ok(Incoming::Error {
                call,
                status: Status::new(code, message),
            })
        }
        ID_PING => Ok(Incoming::Ping),
        ID_PONG => Ok(Incoming::Pong),
        ID_BYE => Ok(Incoming::Bye),
        ID_HELLO => {
            let malformed = |what| ExtensionError::Malformed { id, what };
            need(2, &body)?;
            let version = body.get_u16_le();
            let mut text = |what| -> Result<String, ExtensionError> {
                if body.is_empty() {
                    return Err(malformed(what));
                }
                let len = usize::from(body.get_u8());
                if body.len() < len {
                    return Err(malformed(what));
                }
                let bytes = body.copy_to_bytes(len);
                String::from_utf8(bytes.to_vec()).map_err(|_| malformed("a field is not UTF-8"))
            };
            let client_version = text("client version cut short")?;
            let platform = text("platform cut short")?;
            if body.len() < 4 {
                return Err(malformed("payload id cut short"));
            }
            let payload_id = body.get_u32_le();
            Ok(Incoming::Hello(Hello {
                version,
                client_version,
                platform,
                payload_id,
                payload: body,
            }))
        }
        ID_WELCOME => {
            need(10, &body)?;
            let version = body.get_u16_le();
            let session = body.get_u64_le();
            let token = match body.len() {
                0 => None,
                TOKEN_LEN => Some(take_token(&mut body)),
                _ => {
                    return Err(ExtensionError::Malformed {
                        id,
                        what: "a resume token that is not 16 bytes",
                    });
                }
            };
            Ok(Incoming::Welcome {
                version,
                session,
                token,
            })
        }
        ID_RESUME => {
            need(2 + 8 + TOKEN_LEN + 8, &body)?;
            Ok(Incoming::Resume {
                version: body.get_u16_le(),
                session: body.get_u64_le(),
                token: take_token(&mut body),
                received: body.get_u64_le(),
            })
        }
        ID_RESUMED => {
            need(8, &body)?;
            Ok(Incoming::Resumed {
                received: body.get_u64_le(),
            })
        }
        ID_ACK => {
            need(8, &body)?;
            Ok(Incoming::Ack {
                received: body.get_u64_le(),
            })
        }
        super::ID_META => match super::Metadata::decode(body) {
            Ok(meta) => Ok(Incoming::Meta(meta)),
            Err(super::MetadataError::Malformed(what)) => {
                Err(ExtensionError::Malformed { id, what })
            }
            Err(super::MetadataError::TooLong { .. }) => Err(ExtensionError::Malformed {
                id,
                what: "a field too long",
            }),
        },
        ID_GOAWAY => {
            let to = String::from_utf8_lossy(&body).into_owned();
            Ok(Incoming::GoAway((!to.is_empty()).then_some(to)))
        }
        ID_REFUSED => {
            need(2, &body)?;
            let code = Code::from_u16(body.get_u16_le());
            let message = String::from_utf8_lossy(&body).into_owned();
            Ok(Incoming::Refused(Status::new(code, message)))
        }
        other => Err(ExtensionError::UnknownId(other)),
    }
}

fn take_token(body: &mut Body<'_>) -> [u8; TOKEN_LEN] {
    let mut token = [0; TOKEN_LEN];
    body.copy_to_slice(&mut token);
    token
}

/// Whether a frame counts towards a resumable session's received bytes: everything but
/// the frames of the link itself (heartbeats, handshake, resume, acknowledgements),
/// which are never replayed.
pub(crate) fn is_counted(id: u32) -> bool {
    !matches!(
        id,
        ID_PING | ID_PONG | ID_HELLO | ID_WELCOME | ID_REFUSED | ID_RESUME | ID_RESUMED | ID_ACK
    )
}

/// Bytes of a session's reply block.
const REPLY_BLOCK: usize = 8 * 1024;

/// Room below which a reply block is renewed before a reply is encoded into it.
const MIN_ROOM: usize = 512;

/// Where a session's replies are encoded while its driver runs a batch of messages.
///
/// Replies are appended back to back and queued together when the batch ends, as one
/// buffer: a reply costs no allocation, no reference count and no queue operation of
/// its own, and the writer sends a batch's replies from one contiguous buffer. Only the
/// session's own replies go there and they are written in order, so a block lives until
/// its last reply is written and a peer that does not read pins no other session's
/// memory. The driver lets the block go when the session runs out of messages, so an
/// idle session holds none.
#[derive(Debug, Default)]
pub(crate) struct ReplyBlock {
    buf: BytesMut,
    /// Frames in `buf`.
    frames: u64,
}

impl ReplyBlock {
    /// The replies encoded since the last take, as one buffer, and how many they are.
    pub(crate) fn take(&mut self) -> Option<(Bytes, u64)> {
        if self.buf.is_empty() {
            return None;
        }
        let frames = std::mem::take(&mut self.frames);
        let replies = self.buf.split().freeze();
        // A large reply (or one that failed to encode) grew the block: start a normal
        // one next time rather than keep the room.
        if self.buf.capacity() > 2 * REPLY_BLOCK {
            self.buf = BytesMut::new();
        }
        Some((replies, frames))
    }

    /// Lets the memory go (the replies must have been taken).
    pub(crate) fn release(&mut self) {
        debug_assert!(self.buf.is_empty());
        self.buf = BytesMut::new();
    }
}

struct Lent {
    session: u64,
    block: ReplyBlock,
}

thread_local! {
    /// The reply block of the session whose handlers this thread is running, if any.
    static LENT: std::cell::RefCell<Option<Lent>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a batch of a session's handlers) with `block` as the buffer the replies of
/// `session` are encoded into (see [`ReplyBlock`]).
pub(crate) fn with_reply_block<R>(
    session: u64,
    block: &mut ReplyBlock,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<'a> {
        block: &'a mut ReplyBlock,
        outer: Option<Lent>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let ours = LENT.with(|slot| slot.replace(self.outer.take()));
            *self.block = ours.map(|lent| lent.block).unwrap_or_default();
        }
    }
    let lent = Lent {
        session,
        block: std::mem::take(block),
    };
    let outer = LENT.with(|slot| slot.replace(Some(lent)));
    let _restore = Restore { block, outer };
    f()
}

/// The replies of `session` waiting in its lent block, taken so that a frame queued
/// now goes out after them.
pub(crate) fn take_lent(session: u64) -> Option<(Bytes, u64)> {
    LENT.with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        match slot.as_mut() {
            Some(lent) if lent.session == session => lent.block.take(),
            _ => None,
        }
    })
}

/// Encodes a handler's reply to `session`: into the session's block when the thread
/// runs its handlers (see [`with_reply_block`]), and then nothing is returned because
/// the frame goes out with the block; else as a frame of its own.
pub(crate) fn encode_reply<M: Message>(
    msg: &M,
    codec: Codec,
    wrap: Wrap,
    max_frame_len: usize,
    session: u64,
) -> Result<Option<Bytes>, EncodeError> {
    LENT.with(|slot| {
        // Busy only if encoding a body encodes a reply on the same thread.
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return encode_message(msg, codec, wrap, max_frame_len).map(Some);
        };
        let Some(lent) = slot.as_mut().filter(|lent| lent.session == session) else {
            return encode_message(msg, codec, wrap, max_frame_len).map(Some);
        };
        let block = &mut lent.block;
        if block.buf.capacity() - block.buf.len() < MIN_ROOM {
            // A new block, with what is not queued yet moved over.
            block
                .buf
                .reserve(REPLY_BLOCK.max(block.buf.len() + MIN_ROOM));
        }
        encode_into(msg, codec, wrap, max_frame_len, &mut block.buf)?;
        block.frames += 1;
        Ok(None)
    })
}

/// Encodes `msg` into one complete frame of its own, wrapped as asked.
pub(crate) fn encode_message<M: Message>(
    msg: &M,
    codec: Codec,
    wrap: Wrap,
    max_frame_len: usize,
) -> Result<Bytes, EncodeError> {
    let mut dst = BytesMut::with_capacity(64);
    encode_into(msg, codec, wrap, max_frame_len, &mut dst).map(|()| dst.freeze())
}

/// Appends the frame of `msg` to `dst`; on failure (or a panic of the body's encoder)
/// `dst` is left as it was.
fn encode_into<M: Message>(
    msg: &M,
    codec: Codec,
    wrap: Wrap,
    max_frame_len: usize,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    /// Cuts off a partly encoded frame unless disarmed.
    struct Undo<'a> {
        dst: &'a mut BytesMut,
        start: usize,
        armed: bool,
    }
    impl Drop for Undo<'_> {
        fn drop(&mut self) {
            if self.armed {
                self.dst.truncate(self.start);
            }
        }
    }
    let start = dst.len();
    let prefix = HEADER_LEN
        + match wrap {
            Wrap::Plain => 0,
            Wrap::Request(_) | Wrap::Response(_) => ENVELOPE_LEN,
        };
    let (id, call) = match wrap {
        Wrap::Plain => (M::ID, None),
        Wrap::Request(call) => (ID_REQUEST, Some(call)),
        Wrap::Response(call) => (ID_RESPONSE, Some(call)),
    };
    let mut undo = Undo {
        dst,
        start,
        armed: true,
    };
    // The length is written once the body is there.
    undo.dst.put_u16_le(0);
    undo.dst.put_u32_le(id);
    if let Some(call) = call {
        undo.dst.put_u32_le(call);
        undo.dst.put_u32_le(M::ID);
    }
    msg.encode_body(codec, undo.dst)?;
    let len = undo.dst.len() - start;
    let frame_len = len - 2;
    if frame_len > max_frame_len {
        return Err(EncodeError::TooLarge {
            id: M::ID,
            name: M::NAME,
            len: len - prefix,
            max: max_frame_len - (prefix - 2),
        });
    }
    undo.armed = false;
    undo.dst[start..start + 2].copy_from_slice(&(frame_len as u16).to_le_bytes());
    Ok(())
}

/// Encodes a raw body with the given id as a plain frame.
pub(crate) fn encode_raw(id: u32, body: &[u8], max_frame_len: usize) -> Result<Bytes, EncodeError> {
    if MIN_FRAME_LEN + body.len() > max_frame_len {
        return Err(EncodeError::TooLarge {
            id,
            name: "raw",
            len: body.len(),
            max: max_frame_len - MIN_FRAME_LEN,
        });
    }
    super::frame::encode_frame(id, body).map_err(|_| EncodeError::TooLarge {
        id,
        name: "raw",
        len: body.len(),
        max: max_frame_len - MIN_FRAME_LEN,
    })
}

/// Encodes a raw body with the given id as a request of call `call`.
pub(crate) fn encode_raw_request(
    id: u32,
    call: u32,
    body: &[u8],
    max_frame_len: usize,
) -> Result<Bytes, EncodeError> {
    let frame_len = MIN_FRAME_LEN + ENVELOPE_LEN + body.len();
    if frame_len > max_frame_len || frame_len > usize::from(u16::MAX) {
        return Err(EncodeError::TooLarge {
            id,
            name: "raw",
            len: body.len(),
            max: max_frame_len
                .min(usize::from(u16::MAX))
                .saturating_sub(MIN_FRAME_LEN + ENVELOPE_LEN),
        });
    }
    let mut dst = BytesMut::with_capacity(HEADER_LEN + ENVELOPE_LEN + body.len());
    super::frame::put_header(&mut dst, ID_REQUEST, ENVELOPE_LEN + body.len());
    dst.put_u32_le(call);
    dst.put_u32_le(id);
    dst.extend_from_slice(body);
    Ok(dst.freeze())
}

/// An error reply to call `call`.
pub(crate) fn encode_error(call: u32, status: &Status) -> Bytes {
    // Long messages are cut at a character boundary so the frame always fits.
    let mut message = status.message();
    let room = super::frame::MAX_BODY_LEN - 6;
    if message.len() > room {
        let mut end = room;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message = &message[..end];
    }
    let mut dst = BytesMut::with_capacity(HEADER_LEN + 6 + message.len());
    super::frame::put_header(&mut dst, ID_ERROR, 6 + message.len());
    dst.put_u32_le(call);
    dst.put_u16_le(status.code().to_u16());
    dst.extend_from_slice(message.as_bytes());
    dst.freeze()
}

/// A client's handshake frame; `None` when a field does not fit its length byte or the
/// frame limit.
pub(crate) fn encode_hello(
    client_version: &str,
    platform: &str,
    payload_id: u32,
    payload: &[u8],
) -> Option<Bytes> {
    let cv = u8::try_from(client_version.len()).ok()?;
    let pf = u8::try_from(platform.len()).ok()?;
    let len = 2 + 1 + client_version.len() + 1 + platform.len() + 4 + payload.len();
    if MIN_FRAME_LEN + len > super::frame::MAX_FRAME_LEN {
        return None;
    }
    let mut dst = BytesMut::with_capacity(HEADER_LEN + len);
    super::frame::put_header(&mut dst, ID_HELLO, len);
    dst.put_u16_le(PROTOCOL_VERSION);
    dst.put_u8(cv);
    dst.extend_from_slice(client_version.as_bytes());
    dst.put_u8(pf);
    dst.extend_from_slice(platform.as_bytes());
    dst.put_u32_le(payload_id);
    dst.extend_from_slice(payload);
    Some(dst.freeze())
}

/// The server's acceptance of a handshake, with the token of a resumable session.
pub(crate) fn encode_welcome(session: u64, token: Option<&[u8; TOKEN_LEN]>) -> Bytes {
    let len = 10 + token.map_or(0, |t| t.len());
    let mut dst = BytesMut::with_capacity(HEADER_LEN + len);
    super::frame::put_header(&mut dst, ID_WELCOME, len);
    dst.put_u16_le(PROTOCOL_VERSION);
    dst.put_u64_le(session);
    if let Some(token) = token {
        dst.extend_from_slice(token);
    }
    dst.freeze()
}

/// A client's resume of a session on a new connection.
pub(crate) fn encode_resume(session: u64, token: &[u8; TOKEN_LEN], received: u64) -> Bytes {
    let len = 2 + 8 + TOKEN_LEN + 8;
    let mut dst = BytesMut::with_capacity(HEADER_LEN + len);
    super::frame::put_header(&mut dst, ID_RESUME, len);
    dst.put_u16_le(PROTOCOL_VERSION);
    dst.put_u64_le(session);
    dst.extend_from_slice(token);
    dst.put_u64_le(received);
    dst.freeze()
}

/// A frame carrying a count of received bytes ([`ID_RESUMED`] or [`ID_ACK`]).
pub(crate) fn encode_count(id: u32, received: u64) -> Bytes {
    let mut dst = BytesMut::with_capacity(HEADER_LEN + 8);
    super::frame::put_header(&mut dst, id, 8);
    dst.put_u64_le(received);
    dst.freeze()
}

/// A server's go-away, with the address to connect to instead (if any; cut to fit).
pub(crate) fn encode_goaway(to: Option<&str>) -> Bytes {
    let mut to = to.unwrap_or("");
    let room = super::frame::MAX_BODY_LEN;
    if to.len() > room {
        let mut end = room;
        while !to.is_char_boundary(end) {
            end -= 1;
        }
        to = &to[..end];
    }
    let mut dst = BytesMut::with_capacity(HEADER_LEN + to.len());
    super::frame::put_header(&mut dst, ID_GOAWAY, to.len());
    dst.extend_from_slice(to.as_bytes());
    dst.freeze()
}

/// The server's refusal of a handshake.
pub(crate) fn encode_refused(status: &Status) -> Bytes {
    let mut message = status.message();
    let room = super::frame::MAX_BODY_LEN - 2;
    if message.len() > room {
        let mut end = room;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message = &message[..end];
    }
    let mut dst = BytesMut::with_capacity(HEADER_LEN + 2 + message.len());
    super::frame::put_header(&mut dst, ID_REFUSED, 2 + message.len());
    dst.put_u16_le(status.code().to_u16());
    dst.extend_from_slice(message.as_bytes());
    dst.freeze()
}

/// A control frame with an empty body (ping, pong, bye).
pub(crate) fn encode_control(id: u32) -> Bytes {
    let mut dst = BytesMut::with_capacity(HEADER_LEN);
    crate::wire::frame::put_header(&mut dst, id, 0);
    dst.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trip() {
        let frame = encode_error(7, &Status::not_found("room"));
        let mut buf = BytesMut::from(&frame[..]);
        let packet = tokio_util::codec::Decoder::decode(
            &mut crate::wire::frame::FrameCodec::default(),
            &mut buf,
        )
        .unwrap()
        .unwrap();
        match classify(packet.id, Body::new(&packet.body)).unwrap() {
            Incoming::Error { call, status } => {
                assert_eq!(call, 7);
                assert_eq!(status, Status::not_found("room"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_extension_frames_are_named() {
        let short = classify(ID_REQUEST, Body::new(&Bytes::from_static(&[1, 2, 3]))).unwrap_err();
        assert_eq!(
            short.to_string(),
            "framework message 0xffffff01 has a 3-byte body, shorter than its 8-byte envelope"
        );
        let unknown = classify(0xFFFF_FF99, Body::new(&Bytes::new())).unwrap_err();
        assert!(matches!(unknown, ExtensionError::UnknownId(0xFFFF_FF99)));
        let mut nested = 1u32.to_le_bytes().to_vec();
        nested.extend_from_slice(&ID_PING.to_le_bytes());
        assert!(matches!(
            classify(ID_REQUEST, Body::new(&Bytes::from(nested))).unwrap_err(),
            ExtensionError::NestedReserved(ID_PING)
        ));
    }

    #[cfg(feature = "protobuf")]
    #[test]
    fn replies_go_back_to_back_into_their_own_session_block() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Note {
            #[prost(string, tag = "1")]
            text: String,
        }
        crate::message!(Note = 9, prost);
        let note = Note { text: "hi".into() };
        let reply = |session| encode_reply(&note, Codec::Protobuf, Wrap::Plain, 1024, session);
        let mut block = ReplyBlock::default();
        let (a, b, other, early) = with_reply_block(7, &mut block, || {
            let a = reply(7).unwrap();
            let early = take_lent(7);
            let b = reply(7).unwrap();
            (a, b, reply(8).unwrap(), early)
        });
        // Session 7's replies went into the block, session 8's is a frame of its own.
        assert!(a.is_none() && b.is_none());
        let other = other.expect("not session 8's block");
        assert_eq!(&other[..], &[8, 0, 9, 0, 0, 0, 10, 2, b'h', b'i']);
        // A take in between (a frame queued by the handler) gets what came before it.
        let (early, n) = early.expect("one reply before the take");
        assert_eq!((&early[..], n), (&other[..], 1));
        let (rest, n) = block.take().expect("the second reply");
        assert_eq!((&rest[..], n), (&other[..], 1));
        assert!(block.take().is_none());
        // Outside a batch a reply is a frame of its own.
        assert_eq!(reply(7).unwrap().as_deref(), Some(&other[..]));
    }

    #[cfg(feature = "json")]
    #[test]
    fn a_reply_that_fails_to_encode_leaves_nothing_behind() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Big {
            text: String,
        }
        crate::message!(Big = 10, serde);
        let mut block = ReplyBlock::default();
        with_reply_block(1, &mut block, || {
            let small = Big { text: "a".into() };
            let big = Big {
                text: "x".repeat(100),
            };
            assert!(encode_reply(&small, Codec::Json, Wrap::Plain, 64, 1).is_ok());
            let err = encode_reply(&big, Codec::Json, Wrap::Plain, 64, 1).unwrap_err();
            assert!(matches!(err, EncodeError::TooLarge { id: 10, .. }), "{err}");
        });
        let (frames, n) = block.take().expect("the small reply");
        assert_eq!(n, 1);
        assert_eq!(&frames[6..], br#"{"text":"a"}"#);
    }

    #[test]
    fn plain_ids_pass_through_untouched() {
        let x = Bytes::from_static(b"x");
        let got = classify(101, Body::new(&x)).unwrap();
        assert!(matches!(
            got,
            Incoming::Message {
                id: 101,
                call: None,
                ..
            }
        ));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Ids that reach every branch: any id, the reserved range, the envelopes.
        fn id() -> impl Strategy<Value = u32> {
            prop_oneof![
                any::<u32>(),
                crate::RESERVED_ID_START..=u32::MAX,
                Just(0),
                Just(ID_REQUEST),
                Just(ID_RESPONSE),
                Just(ID_ERROR),
                Just(ID_HELLO),
                Just(ID_WELCOME),
                Just(ID_REFUSED),
                Just(ID_GOAWAY),
                Just(ID_RESUME),
                Just(ID_RESUMED),
                Just(ID_ACK),
            ]
        }

        /// A body that is either arbitrary or starts with an envelope whose inner id is
        /// a user id.
        fn body() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                (
                    any::<u32>(),
                    1u32..crate::RESERVED_ID_START,
                    proptest::collection::vec(any::<u8>(), 0..40),
                )
                    .prop_map(|(call, inner, rest)| {
                        let mut body = call.to_le_bytes().to_vec();
                        body.extend_from_slice(&inner.to_le_bytes());
                        body.extend_from_slice(&rest);
                        body
                    }),
            ]
        }

        fn le32(b: &[u8]) -> u32 {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }

        proptest! {
            #![proptest_config(crate::fuzz::config(4_000))]

            /// `classify` never panics and does what PROTOCOL.md says for every id and
            /// body: application ids pass through, envelopes are unwrapped or named as
            /// short or wrapping a reserved id, unknown reserved ids are refused.
            #[test]
            fn classify_follows_the_protocol(id in id(), body in body()) {
                let bytes = Bytes::from(body.clone());
                let result = classify(id, Body::new(&bytes));
                match (id, result) {
                    (id, Ok(Incoming::Message { id: got, body: b, call: None }))
                        if crate::wire::is_user_id(id) || id == 0 =>
                    {
                        prop_assert_eq!(got, id);
                        prop_assert_eq!(&b[..], &body[..]);
                    }
                    (ID_REQUEST | ID_RESPONSE, Err(ExtensionError::Short { need, len, .. })) => {
                        prop_assert_eq!((need, len), (ENVELOPE_LEN, body.len()));
                        prop_assert!(body.len() < ENVELOPE_LEN);
                    }
                    (ID_REQUEST | ID_RESPONSE, Err(ExtensionError::NestedReserved(inner))) => {
                        prop_assert_eq!(inner, le32(&body[4..]));
                        prop_assert!(!crate::wire::is_user_id(inner));
                    }
                    (ID_REQUEST, Ok(Incoming::Message { id: inner, body: b, call: Some(call) }))
                    | (ID_RESPONSE, Ok(Incoming::Response { id: inner, body: b, call })) => {
                        prop_assert_eq!(call, le32(&body));
                        prop_assert_eq!(inner, le32(&body[4..]));
                        prop_assert!(crate::wire::is_user_id(inner));
                        prop_assert_eq!(&b[..], &body[ENVELOPE_LEN..]);
                    }
                    (ID_ERROR, Err(ExtensionError::Short { need: 6, len, .. })) => {
                        prop_assert_eq!(len, body.len());
                        prop_assert!(body.len() < 6);
                    }
                    (ID_ERROR, Ok(Incoming::Error { call, status })) => {
                        prop_assert_eq!(call, le32(&body));
                        prop_assert_eq!(status.code(), Code::from_u16(u16::from_le_bytes([body[4], body[5]])));
                        prop_assert_eq!(status.message(), String::from_utf8_lossy(&body[6..]));
                    }
                    (ID_PING, Ok(Incoming::Ping))
                    | (ID_PONG, Ok(Incoming::Pong))
                    | (ID_BYE, Ok(Incoming::Bye)) => {}
                    (ID_HELLO | ID_REFUSED, Err(ExtensionError::Short { need: 2, len, .. }))
                    | (ID_WELCOME, Err(ExtensionError::Short { need: 10, len, .. })) => {
                        prop_assert_eq!(len, body.len());
                    }
                    (ID_HELLO, Err(ExtensionError::Malformed { id, .. })) => {
                        prop_assert_eq!(id, ID_HELLO);
                    }
                    (ID_HELLO, Ok(Incoming::Hello(hello))) => {
                        // Reading it back writes the same bytes.
                        let again = encode_hello(&hello.client_version, &hello.platform, hello.payload_id, &hello.payload)
                            .expect("fits");
                        prop_assert_eq!(&again[HEADER_LEN + 2..], &body[2..]);
                    }
                    (ID_WELCOME, Ok(Incoming::Welcome { version, session, token })) => {
                        prop_assert_eq!(version, u16::from_le_bytes([body[0], body[1]]));
                        prop_assert_eq!(&session.to_le_bytes()[..], &body[2..10]);
                        prop_assert_eq!(token.map(|t| t.to_vec()), (body.len() == 26).then(|| body[10..].to_vec()));
                    }
                    (ID_WELCOME, Err(ExtensionError::Malformed { .. })) => {
                        prop_assert!(body.len() > 10 && body.len() != 26);
                    }
                    (ID_RESUME | ID_RESUMED | ID_ACK, Err(ExtensionError::Short { need, len, .. })) => {
                        prop_assert_eq!(len, body.len());
                        prop_assert!(body.len() < need);
                        prop_assert_eq!(need, if id == ID_RESUME { 34 } else { 8 });
                    }
                    (ID_RESUME, Ok(Incoming::Resume { version, session, token, received })) => {
                        let again = encode_resume(session, &token, received);
                        prop_assert_eq!(version, u16::from_le_bytes([body[0], body[1]]));
                        prop_assert_eq!(&again[HEADER_LEN + 2..], &body[2..34]);
                    }
                    (crate::wire::ID_META, Ok(Incoming::Meta(meta))) => {
                        let again = meta.encode().expect("read back");
                        prop_assert_eq!(crate::wire::Metadata::decode(&again[HEADER_LEN..]).unwrap(), meta);
                    }
                    (crate::wire::ID_META, Err(ExtensionError::Malformed { .. })) => {}
                    (ID_RESUMED, Ok(Incoming::Resumed { received }))
                    | (ID_ACK, Ok(Incoming::Ack { received })) => {
                        prop_assert_eq!(&encode_count(id, received)[HEADER_LEN..], &body[..8]);
                    }
                    (ID_REFUSED, Ok(Incoming::Refused(status))) => {
                        prop_assert_eq!(status.code(), Code::from_u16(u16::from_le_bytes([body[0], body[1]])));
                        prop_assert_eq!(status.message(), String::from_utf8_lossy(&body[2..]));
                    }
                    (ID_GOAWAY, Ok(Incoming::GoAway(to))) => {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        prop_assert_eq!(to, (!text.is_empty()).then_some(text));
                    }
                    (id, Err(ExtensionError::UnknownId(got))) => {
                        prop_assert_eq!(got, id);
                        prop_assert!(
                            ![ID_REQUEST, ID_RESPONSE, ID_ERROR, ID_PING, ID_PONG, ID_BYE,
                              ID_HELLO, ID_WELCOME, ID_REFUSED, ID_GOAWAY, ID_RESUME, ID_RESUMED,
                              ID_ACK, crate::wire::ID_META]
                                .contains(&id)
                        );
                    }
                    (id, other) => prop_assert!(false, "{:#010x} classified as {:?}", id, other),
                }
            }

            /// An error reply reads back as the status it was written from, whatever its
            /// text.
            #[test]
            fn error_replies_round_trip(call in any::<u32>(), code in any::<u16>(), text in ".{0,40}") {
                let status = Status::new(Code::from_u16(code), text);
                let frame = encode_error(call, &status);
                let body = frame.slice(HEADER_LEN..);
                match classify(ID_ERROR, Body::new(&body)) {
                    Ok(Incoming::Error { call: got, status: back }) => {
                        prop_assert_eq!(got, call);
                        prop_assert_eq!(back, status);
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
        }
    }
}
