//! The gonet v3 frame: `u16 LE length | u32 LE message id | body`.
//!
//! ```text
//! +----------------+--------------------+-----------------+
//! | length: u16 LE | message id: u32 LE | body: N bytes   |
//! +----------------+--------------------+-----------------+
//!   length = 4 + N, so 4 <= length <= max_frame_len (at most 65535)
//! ```
//!
//! [`FrameCodec`] is a pure state machine: it never touches a socket. It implements
//! tokio-util's [`Decoder`] and [`Encoder`] so it also works with `FramedRead` and
//! `FramedWrite`, and the session driver calls it directly on its own read buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes of the length field.
pub const LEN_FIELD: usize = 2;
/// Bytes of the header: the length field and the message id.
pub const HEADER_LEN: usize = 6;
/// The smallest valid value of the length field: a message id and an empty body.
pub const MIN_FRAME_LEN: usize = 4;
/// The largest value the u16 length field can hold.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;
/// The largest body a frame can carry.
pub const MAX_BODY_LEN: usize = MAX_FRAME_LEN - MIN_FRAME_LEN;

/// One decoded frame: a message id and its still-encoded body.
///
/// The body is a zero-copy slice of the buffer the frame was read into.
///
/// A router's fallback receives the packets no route claims, still encoded:
///
/// ```
/// use gonet::{Builder, Packet, Router, Session};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Unknown {
///     #[prost(uint32, tag = "1")]
///     id: u32,
/// }
/// gonet::message!(Unknown = 1, prost);
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Later {}
/// gonet::message!(Later = 2, prost);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new()
///     .fallback(|_: Session, packet: Packet| async move { Unknown { id: packet.id } });
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// let answer: Unknown = client.call(&Later {}).await?;
/// assert_eq!(answer.id, 2);
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The message id from the header.
    pub id: u32,
    /// The body, not yet decoded by any codec.
    pub body: Bytes,
}

impl Packet {
    /// A packet with the given id and body.
    pub fn new(id: u32, body: impl Into<Bytes>) -> Self {
        Self {
            id,
            body: body.into(),
        }
    }
}

/// Why a byte stream is not a valid sequence of frames.
///
/// Every variant ends the stream: after a bad length the position of the next frame is
/// unknown, so a session that sees one is closed (the frames before it are kept).
///
/// ```
/// use bytes::BytesMut;
/// use gonet::{FrameCodec, FrameError};
/// use tokio_util::codec::Decoder;
///
/// // A length field of 2: too short to hold the 4-byte message id.
/// let mut buf = BytesMut::from(&[2u8, 0, 0, 0][..]);
/// match FrameCodec::default().decode(&mut buf) {
///     Err(FrameError::LengthTooSmall { len }) => assert_eq!(len, 2),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length field is below 4, so the frame cannot even hold a message id.
    #[error("frame length {len} is below the minimum of {MIN_FRAME_LEN} (a u32 message id)")]
    LengthTooSmall {
        /// The length field as received.
        len: usize,
    },
    /// The length field is above the configured maximum.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    LengthTooLarge {
        /// The length field as received.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {received} of {expected} bytes received")]
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        received: usize,
        /// Bytes the frame should have had (header included).
        expected: usize,
    },
    /// A body too large to fit in one frame was given to the encoder.
    #[error("a body of {len} bytes does not fit in a frame (at most {max} bytes)")]
    BodyTooLarge {
        /// The body length.
        len: usize,
        /// The largest body the frame limit allows.
        max: usize,
    },
    /// A message of a message transport (a datagram, a WebSocket message) is shorter
    /// than a frame header.
    #[error("a {len}-byte message is shorter than the {HEADER_LEN}-byte packet header")]
    ShortMessage {
        /// The message length.
        len: usize,
    },
    /// The length field of a message-transport packet disagrees with the message size:
    /// one message must carry exactly one packet.
    #[error("packet length field says {field} bytes but the message holds {actual} after it")]
    LengthMismatch {
        /// The length field as received.
        field: usize,
        /// Bytes of the message after the length field.
        actual: usize,
    },
    /// The underlying reader or writer failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Decoder and encoder of gonet v3 frames.
///
/// ```
/// use bytes::BytesMut;
/// use gonet::{FrameCodec, Packet};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = FrameCodec::default();
/// let mut buf = BytesMut::new();
/// codec.encode(Packet::new(101, &b"hi"[..]), &mut buf)?;
/// assert_eq!(&buf[..], b"\x06\x00\x65\x00\x00\x00hi"); // length 4 + 2, id 101, body
///
/// // Bytes arrive in pieces: `None` until the frame is whole.
/// let rest = buf.split_off(3);
/// assert_eq!(codec.decode(&mut buf)?, None);
/// buf.extend_from_slice(&rest);
/// assert_eq!(codec.decode(&mut buf)?, Some(Packet::new(101, &b"hi"[..])));
/// # Ok::<(), gonet::FrameError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self {
            max_frame_len: MAX_FRAME_LEN,
        }
    }
}

impl FrameCodec {
    /// A codec that accepts frames whose length field is at most `max_frame_len`
    /// (clamped to `4..=65535`).
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            max_frame_len: max_frame_len.clamp(MIN_FRAME_LEN, MAX_FRAME_LEN),
        }
    }

    /// The largest accepted length field.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Checks the header at the front of `src` and returns the whole frame's size in
    /// bytes (header included), or `None` if fewer than two bytes are buffered.
    pub(crate) fn frame_size(&self, src: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(len) = src.get(..LEN_FIELD) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        if len < MIN_FRAME_LEN {
            return Err(FrameError::LengthTooSmall { len });
        }
        if len > self.max_frame_len {
            return Err(FrameError::LengthTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        Ok(Some(LEN_FIELD + len))
    }

    /// Bytes still missing for the frame at the front of `src`; 0 when the header is
    /// incomplete or the frame is complete. Lets a reader size its next read.
    pub fn missing(&self, src: &[u8]) -> usize {
        match self.frame_size(src) {
            Ok(Some(size)) => size.saturating_sub(src.len()),
            _ => 0,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Packet;
    type Error = FrameError;

    /// `Ok(None)` means more bytes are needed; the buffer is left as it was. It is not
    /// grown to the declared length either: a length field is the peer's word, not
    /// bytes that arrived, so a peer that declares a large frame and sends little of it
    /// holds only what it sent. The reader grows the buffer as bytes come.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        let Some(size) = self.frame_size(src)? else {
            return Ok(None);
        };
        if src.len() < size {
            return Ok(None);
        }
        let mut frame = src.split_to(size);
        frame.advance(LEN_FIELD);
        let id = frame.get_u32_le();
        Ok(Some(Packet {
            id,
            body: frame.freeze(),
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        match self.decode(src)? {
            Some(packet) => Ok(Some(packet)),
            None if src.is_empty() => Ok(None),
            None => {
                let expected = self.frame_size(src)?.unwrap_or(HEADER_LEN);
                Err(FrameError::Truncated {
                    received: src.len(),
                    expected,
                })
            }
        }
    }
}

impl Encoder<Packet> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), FrameError> {
        let max = self.max_frame_len - MIN_FRAME_LEN;
        if packet.body.len() > max {
            return Err(FrameError::BodyTooLarge {
                len: packet.body.len(),
                max,
            });
        }
        dst.reserve(HEADER_LEN + packet.body.len());
        put_header(dst, packet.id, packet.body.len());
        dst.extend_from_slice(&packet.body);
        Ok(())
    }
}

/// Splits one message of a message transport (a UDP or QUIC datagram, a WebSocket
/// binary message) into its packet, zero-copy. The message must hold exactly one
/// packet: its length field must equal the bytes that follow it.
#[cfg_attr(
    not(any(feature = "ws", feature = "udp", feature = "quic")),
    allow(dead_code, reason = "message transports only")
)]
pub(crate) fn split_message(mut msg: Bytes, max_frame_len: usize) -> Result<Packet, FrameError> {
    if msg.len() < HEADER_LEN {
        return Err(FrameError::ShortMessage { len: msg.len() });
    }
    if msg.len() - LEN_FIELD > max_frame_len {
        return Err(FrameError::LengthTooLarge {
            len: msg.len() - LEN_FIELD,
            max: max_frame_len,
        });
    }
    let field = usize::from(u16::from_le_bytes([msg[0], msg[1]]));
    if field < MIN_FRAME_LEN {
        return Err(FrameError::LengthTooSmall { len: field });
    }
    if field > max_frame_len {
        return Err(FrameError::LengthTooLarge {
            len: field,
            max: max_frame_len,
        });
    }
    if field != msg.len() - LEN_FIELD {
        return Err(FrameError::LengthMismatch {
            field,
            actual: msg.len() - LEN_FIELD,
        });
    }
    msg.advance(LEN_FIELD);
    let id = msg.get_u32_le();
    Ok(Packet { id, body: msg })
}

/// Writes a frame header for a body of `body_len` bytes (which the caller has checked).
pub(crate) fn put_header(dst: &mut BytesMut, id: u32, body_len: usize) {
    // The callers bound body_len by MAX_BODY_LEN, so the sum fits in a u16.
    dst.put_u16_le((MIN_FRAME_LEN + body_len) as u16);
    dst.put_u32_le(id);
}

/// Encodes one frame into a fresh buffer. Fails if the body is too large.
pub fn encode_frame(id: u32, body: &[u8]) -> Result<Bytes, FrameError> {
    if body.len() > MAX_BODY_LEN {
        return Err(FrameError::BodyTooLarge {
            len: body.len(),
            max: MAX_BODY_LEN,
        });
    }
    let mut dst = BytesMut::with_capacity(HEADER_LEN + body.len());
    put_header(&mut dst, id, body.len());
    dst.extend_from_slice(body);
    Ok(dst.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_hold_exactly_one_packet() {
        let frame = encode_frame(7, b"hello").unwrap();
        let packet = split_message(frame.clone(), MAX_FRAME_LEN).unwrap();
        assert_eq!(packet, Packet::new(7, &b"hello"[..]));
        let mut two = BytesMut::from(&frame[..]);
        two.extend_from_slice(&frame);
        let err = split_message(two.freeze(), MAX_FRAME_LEN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "packet length field says 9 bytes but the message holds 20 after it"
        );
        assert!(matches!(
            split_message(Bytes::from_static(b"abc"), MAX_FRAME_LEN),
            Err(FrameError::ShortMessage { len: 3 })
        ));
        assert!(matches!(
            split_message(frame, 8),
            Err(FrameError::LengthTooLarge { len: 9, max: 8 })
        ));
        let mut big = BytesMut::from(&encode_frame(7, b"x").unwrap()[..]);
        big.extend_from_slice(&[0; 100]);
        assert!(matches!(
            split_message(big.freeze(), 50),
            Err(FrameError::LengthTooLarge { len: 105, max: 50 })
        ));
    }

    fn decode_all(codec: &mut FrameCodec, buf: &mut BytesMut) -> Vec<Packet> {
        let mut out = Vec::new();
        while let Some(p) = codec.decode(buf).unwrap() {
            out.push(p);
        }
        out
    }

    /// The bytes a Go gonet v3 peer writes for message 101 with a JSON body.
    const GO_FIXTURE: &[u8] = b"\x14\x00\x65\x00\x00\x00{\"content\":\"hi\"}";

    #[test]
    fn encodes_byte_exact_gonet_v3_fixture() {
        let frame = encode_frame(101, br#"{"content":"hi"}"#).unwrap();
        assert_eq!(&frame[..], GO_FIXTURE);
        let mut dst = BytesMut::new();
        FrameCodec::default()
            .encode(Packet::new(101, &br#"{"content":"hi"}"#[..]), &mut dst)
            .unwrap();
        assert_eq!(&dst[..], GO_FIXTURE);
    }

    #[test]
    fn decodes_fixture_and_empty_body() {
        let mut buf = BytesMut::from(GO_FIXTURE);
        buf.extend_from_slice(&[4, 0, 7, 0, 0, 0]);
        let got = decode_all(&mut FrameCodec::default(), &mut buf);
        assert_eq!(
            got,
            vec![
                Packet::new(101, &br#"{"content":"hi"}"#[..]),
                Packet::new(7, Bytes::new())
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn frames_split_at_every_byte() {
        let mut stream = Vec::new();
        for i in 0..20u32 {
            stream.extend_from_slice(&encode_frame(i, &vec![i as u8; i as usize * 3]).unwrap());
        }
        for chunk in 1..=stream.len() {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                got.extend(decode_all(&mut codec, &mut buf));
            }
            assert_eq!(got.len(), 20, "chunk size {chunk}");
            for (i, p) in got.iter().enumerate() {
                assert_eq!(p.id, i as u32);
                assert_eq!(&p.body[..], &vec![i as u8; i * 3][..]);
            }
        }
    }

    #[test]
    fn length_below_four_is_rejected() {
        for len in 0u16..4 {
            let mut buf = BytesMut::from(&len.to_le_bytes()[..]);
            buf.extend_from_slice(&[0; 8]);
            let err = FrameCodec::default().decode(&mut buf).unwrap_err();
            assert!(matches!(err, FrameError::LengthTooSmall { len: l } if l == usize::from(len)));
            assert!(err.to_string().contains("below the minimum"), "{err}");
        }
    }

    #[test]
    fn length_above_maximum_is_rejected_before_the_body_arrives() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&1025u16.to_le_bytes()[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            FrameError::LengthTooLarge {
                len: 1025,
                max: 1024
            }
        ));
        assert_eq!(
            err.to_string(),
            "frame length 1025 exceeds the maximum of 1024 bytes"
        );
    }

    #[test]
    fn eof_inside_a_frame_is_truncated() {
        let frame = encode_frame(9, b"hello").unwrap();
        for cut in 1..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            let err = FrameCodec::default().decode_eof(&mut buf).unwrap_err();
            match err {
                FrameError::Truncated { received, expected } => {
                    assert_eq!(received, cut);
                    assert_eq!(expected, if cut < 2 { HEADER_LEN } else { frame.len() });
                }
                other => panic!("unexpected {other}"),
            }
        }
        let mut empty = BytesMut::new();
        assert!(
            FrameCodec::default()
                .decode_eof(&mut empty)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn encoder_refuses_oversize_body() {
        let mut codec = FrameCodec::new(100);
        let err = codec
            .encode(Packet::new(1, vec![0u8; 97]), &mut BytesMut::new())
            .unwrap_err();
        assert!(matches!(err, FrameError::BodyTooLarge { len: 97, max: 96 }));
        assert!(encode_frame(1, &vec![0u8; MAX_BODY_LEN + 1]).is_err());
        assert_eq!(
            encode_frame(1, &vec![0u8; MAX_BODY_LEN]).unwrap().len(),
            65537
        );
    }

    #[test]
    fn a_declared_length_reserves_nothing() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0xff, 0xff, 1, 0, 0, 0]);
        let before = buf.capacity();
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(
            buf.capacity(),
            before,
            "the buffer grew to the declared length"
        );
        assert_eq!(buf.len(), 6);
    }

    #[test]
    fn missing_reports_bytes_to_complete_a_frame() {
        let codec = FrameCodec::default();
        let frame = encode_frame(1, &[0; 10]).unwrap();
        assert_eq!(codec.missing(&frame[..1]), 0);
        assert_eq!(codec.missing(&frame[..4]), 12);
        assert_eq!(codec.missing(&frame[..]), 0);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A message of a message transport: arbitrary bytes, or a well-formed packet
        /// with one byte changed, so that both the checks and what passes them are
        /// exercised.
        fn message() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..80),
                (
                    any::<u32>(),
                    proptest::collection::vec(any::<u8>(), 0..80),
                    any::<prop::sample::Index>(),
                    any::<u8>(),
                    any::<bool>(),
                )
                    .prop_map(|(id, body, at, byte, change)| {
                        let mut msg = encode_frame(id, &body).unwrap().to_vec();
                        if change {
                            let at = at.index(msg.len());
                            msg[at] = byte;
                        }
                        msg
                    }),
            ]
        }

        proptest! {
            #![proptest_config(crate::fuzz::config(2_000))]

            /// `split_message` never panics, accepts exactly a message that holds one
            /// packet within the limit, and agrees with the stream decoder on it.
            #[test]
            fn split_message_accepts_exactly_one_packet(
                msg in message(),
                max in 0usize..70_000,
            ) {
                let result = split_message(Bytes::from(msg.clone()), max);
                let field = msg.get(..2).map(|f| usize::from(u16::from_le_bytes([f[0], f[1]])));
                let well_formed = msg.len() >= HEADER_LEN
                    && field == Some(msg.len() - LEN_FIELD)
                    && field.is_some_and(|f| f <= max);
                match result {
                    Ok(packet) => {
                        prop_assert!(well_formed);
                        prop_assert_eq!(packet.id, u32::from_le_bytes([msg[2], msg[3], msg[4], msg[5]]));
                        prop_assert_eq!(&packet.body[..], &msg[HEADER_LEN..]);
                        if max >= MIN_FRAME_LEN {
                            let mut buf = BytesMut::from(&msg[..]);
                            let streamed = FrameCodec::new(max).decode(&mut buf).unwrap();
                            prop_assert_eq!(streamed, Some(packet));
                            prop_assert!(buf.is_empty());
                        }
                    }
                    Err(err) => {
                        prop_assert!(!well_formed, "refused a well-formed message: {}", err);
                        prop_assert!(!err.to_string().is_empty());
                    }
                }
            }
        }
    }
}
