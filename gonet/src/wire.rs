//! The framework's protocol extension (see `PROTOCOL.md`): request/response correlation,
//! error replies and heartbeats, carried in frames whose ids lie in the reserved range.
//! Pure functions over bytes; no I/O.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::Codec;
use crate::error::SendError;
use crate::frame::{HEADER_LEN, MIN_FRAME_LEN, Packet};
use crate::message::Message;
use crate::status::{Code, Status};

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

/// A frame after the extension has been looked at.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// An application message; `call` is set when the sender awaits a reply.
    Message {
        id: u32,
        body: Bytes,
        call: Option<u32>,
    },
    /// A reply to one of our calls.
    Response { call: u32, id: u32, body: Bytes },
    /// An error reply to one of our calls.
    Error { call: u32, status: Status },
    /// A heartbeat request.
    Ping,
    /// A heartbeat answer.
    Pong,
    /// The peer closed the session.
    Bye,
}

/// A frame in the reserved range that is not well formed.
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
}

/// Classifies a decoded frame.
pub(crate) fn classify(packet: Packet) -> Result<Incoming, ExtensionError> {
    let Packet { id, mut body } = packet;
    if crate::is_user_id(id) || id == 0 {
        return Ok(Incoming::Message {
            id,
            body,
            call: None,
        });
    }
    let need = |n: usize, body: &Bytes| {
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
            if !crate::is_user_id(inner) {
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
        other => Err(ExtensionError::UnknownId(other)),
    }
}

/// Bytes of a session's reply block.
const REPLY_BLOCK: usize = 8 * 1024;

thread_local! {
    /// The reply block of the session whose handler this thread is running, if any.
    static REPLY_BUF: std::cell::RefCell<Option<BytesMut>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (one poll of a handler) with `block` as the buffer replies are encoded into.
///
/// A session's replies are encoded one after the other into a block of its own, each
/// split off as a `Bytes` of its own: a reply costs no allocation, only a reference
/// count on the block. Only the session's own replies go there, and they are written in
/// order, so a block lives until its last reply is written and a peer that does not
/// read pins no other session's memory. The worker drops its block when it runs out of
/// messages, so an idle session holds none.
pub(crate) fn with_reply_block<R>(block: &mut BytesMut, f: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        block: &'a mut BytesMut,
        outer: Option<BytesMut>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let ours = REPLY_BUF.with(|slot| slot.replace(self.outer.take()));
            *self.block = ours.unwrap_or_default();
        }
    }
    let outer = REPLY_BUF.with(|slot| slot.replace(Some(std::mem::take(block))));
    let _restore = Restore { block, outer };
    f()
}

/// Encodes a handler's reply: into the session's reply block when one is lent (see
/// [`with_reply_block`]), else like any message.
pub(crate) fn encode_reply<M: Message>(
    msg: &M,
    codec: Codec,
    wrap: Wrap,
    max_frame_len: usize,
) -> Result<Bytes, SendError> {
    REPLY_BUF.with(|slot| {
        // Busy only if encoding a body encodes a reply on the same thread.
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return encode_message(msg, codec, wrap, max_frame_len);
        };
        let Some(dst) = slot.as_mut() else {
            return encode_message(msg, codec, wrap, max_frame_len);
        };
        if dst.capacity() < MIN_ROOM {
            *dst = BytesMut::with_capacity(REPLY_BLOCK);
        }
        let result = encode_into(msg, codec, wrap, max_frame_len, dst);
        // On success the frame is the whole of `dst`; on failure nothing is kept.
        let frame = dst.split();
        result.map(|()| frame.freeze())
    })
}

/// Encodes `msg` into one complete frame of its own, wrapped as asked.
pub(crate) fn encode_message<M: Message>(
    msg: &M,
    codec: Codec,
    wrap: Wrap,
    max_frame_len: usize,
) -> Result<Bytes, SendError> {
    let mut dst = BytesMut::with_capacity(64);
    encode_into(msg, codec, wrap, max_frame_len, &mut dst).map(|()| dst.freeze())
}

/// Room below which a reply block is replaced rather than grown (growing it would copy
/// the frame being encoded).
const MIN_ROOM: usize = 512;

/// Appends the frame of `msg` to the empty buffer `dst`.
fn encode_into<M: Message>(
    msg: &M,
    codec: Codec,
    wrap: Wrap,
    max_frame_len: usize,
    dst: &mut BytesMut,
) -> Result<(), SendError> {
    debug_assert!(dst.is_empty());
    let prefix = HEADER_LEN
        + match wrap {
            Wrap::Plain => 0,
            Wrap::Request(_) | Wrap::Response(_) => ENVELOPE_LEN,
        };
    dst.put_bytes(0, prefix);
    msg.encode_body(codec, dst)?;
    let frame_len = dst.len() - 2;
    if frame_len > max_frame_len {
        return Err(SendError::TooLarge {
            id: M::ID,
            name: M::NAME,
            len: dst.len() - prefix,
            max: max_frame_len - (prefix - 2),
        });
    }
    let (id, call) = match wrap {
        Wrap::Plain => (M::ID, None),
        Wrap::Request(call) => (ID_REQUEST, Some(call)),
        Wrap::Response(call) => (ID_RESPONSE, Some(call)),
    };
    let mut header = &mut dst[..prefix];
    header.put_u16_le(frame_len as u16);
    header.put_u32_le(id);
    if let Some(call) = call {
        header.put_u32_le(call);
        header.put_u32_le(M::ID);
    }
    Ok(())
}

/// Encodes a raw body with the given id as a plain frame.
pub(crate) fn encode_raw(id: u32, body: &[u8], max_frame_len: usize) -> Result<Bytes, SendError> {
    if MIN_FRAME_LEN + body.len() > max_frame_len {
        return Err(SendError::TooLarge {
            id,
            name: "raw",
            len: body.len(),
            max: max_frame_len - MIN_FRAME_LEN,
        });
    }
    crate::frame::encode_frame(id, body).map_err(|_| SendError::TooLarge {
        id,
        name: "raw",
        len: body.len(),
        max: max_frame_len - MIN_FRAME_LEN,
    })
}

/// An error reply to call `call`.
pub(crate) fn encode_error(call: u32, status: &Status) -> Bytes {
    // Long messages are cut at a character boundary so the frame always fits.
    let mut message = status.message();
    let room = crate::frame::MAX_BODY_LEN - 6;
    if message.len() > room {
        let mut end = room;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message = &message[..end];
    }
    let mut dst = BytesMut::with_capacity(HEADER_LEN + 6 + message.len());
    crate::frame::put_header(&mut dst, ID_ERROR, 6 + message.len());
    dst.put_u32_le(call);
    dst.put_u16_le(status.code().to_u16());
    dst.extend_from_slice(message.as_bytes());
    dst.freeze()
}

/// A control frame with an empty body (ping, pong, bye).
pub(crate) fn encode_control(id: u32) -> Bytes {
    let mut dst = BytesMut::with_capacity(HEADER_LEN);
    crate::frame::put_header(&mut dst, id, 0);
    dst.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trip() {
        let frame = encode_error(7, &Status::not_found("room"));
        let mut buf = BytesMut::from(&frame[..]);
        let packet =
            tokio_util::codec::Decoder::decode(&mut crate::frame::FrameCodec::default(), &mut buf)
                .unwrap()
                .unwrap();
        match classify(packet).unwrap() {
            Incoming::Error { call, status } => {
                assert_eq!(call, 7);
                assert_eq!(status, Status::not_found("room"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_extension_frames_are_named() {
        let short = classify(Packet::new(ID_REQUEST, vec![1, 2, 3])).unwrap_err();
        assert_eq!(
            short.to_string(),
            "framework message 0xffffff01 has a 3-byte body, shorter than its 8-byte envelope"
        );
        let unknown = classify(Packet::new(0xFFFF_FF99, Bytes::new())).unwrap_err();
        assert!(matches!(unknown, ExtensionError::UnknownId(0xFFFF_FF99)));
        let mut nested = 1u32.to_le_bytes().to_vec();
        nested.extend_from_slice(&ID_PING.to_le_bytes());
        assert!(matches!(
            classify(Packet::new(ID_REQUEST, nested)).unwrap_err(),
            ExtensionError::NestedReserved(ID_PING)
        ));
    }

    #[cfg(feature = "protobuf")]
    #[test]
    fn replies_share_their_session_block_and_nothing_else_does() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Note {
            #[prost(string, tag = "1")]
            text: String,
        }
        crate::message!(Note = 9, prost);
        let note = Note { text: "hi".into() };
        let reply = || encode_reply(&note, Codec::Protobuf, Wrap::Plain, 1024).unwrap();
        let mut block = BytesMut::new();
        let (a, b) = with_reply_block(&mut block, || (reply(), reply()));
        assert_eq!(a, b);
        assert_eq!(&a[..6], &[8, 0, 9, 0, 0, 0]);
        // One block, frames back to back.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        assert!(block.capacity() >= REPLY_BLOCK - 2 * a.len() - MIN_ROOM);
        // Outside a handler's poll a reply is a frame of its own.
        let c = reply();
        assert_eq!(c, a);
        assert_ne!(c.as_ptr(), b.as_ptr().wrapping_add(b.len()));
    }

    #[test]
    fn plain_ids_pass_through_untouched() {
        let got = classify(Packet::new(101, &b"x"[..])).unwrap();
        assert!(matches!(
            got,
            Incoming::Message {
                id: 101,
                call: None,
                ..
            }
        ));
    }
}
