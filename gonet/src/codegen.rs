//! Items used by the [`message!`](crate::message!) macro and by code that `gonet-build`
//! generates. Not a public API: it may change in any release.

pub use bytes::{Bytes, BytesMut};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[allow(unused_imports, reason = "each codec arm uses some of these")]
use crate::codec::{Codec, CodecError, CodecErrorKind, CodecOp};
use crate::message::Message;

/// How a message type's body is produced for each codec.
pub trait Format<T> {
    /// Appends the body of `msg` in `codec`'s format.
    fn encode(msg: &T, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError>;
    /// Decodes a body in `codec`'s format.
    fn decode(codec: Codec, body: Bytes) -> Result<T, CodecError>;
}

/// Bodies through serde: JSON, XML and binary.
#[derive(Debug)]
pub struct SerdeFormat;
/// Bodies through prost: protobuf.
#[derive(Debug)]
pub struct ProstFormat;
/// Bodies through prost and serde: every codec.
#[derive(Debug)]
pub struct AnyFormat;

#[allow(dead_code, reason = "unused when only the protobuf codec is compiled")]
fn unsupported<T: Message>(codec: Codec, op: CodecOp) -> CodecError {
    CodecError::new(
        codec,
        op,
        T::NAME,
        CodecErrorKind::Unsupported(codec.name()),
    )
}

fn serde_encode<T: Message + Serialize>(
    msg: &T,
    codec: Codec,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let _ = (&msg, &dst);
    match codec {
        #[cfg(feature = "json")]
        Codec::Json => crate::codec::json::encode(msg, T::NAME, dst),
        #[cfg(feature = "xml")]
        Codec::Xml => crate::codec::xml::encode(msg, T::NAME, dst),
        #[cfg(feature = "binary")]
        Codec::Binary => crate::codec::binary::encode(msg, T::NAME, dst),
        #[allow(unreachable_patterns, reason = "reached when protobuf is compiled")]
        _ => Err(unsupported::<T>(codec, CodecOp::Encode)),
    }
}

fn serde_decode<T: Message + DeserializeOwned>(codec: Codec, body: Bytes) -> Result<T, CodecError> {
    let _ = &body;
    match codec {
        #[cfg(feature = "json")]
        Codec::Json => crate::codec::json::decode(&body, T::NAME),
        #[cfg(feature = "xml")]
        Codec::Xml => crate::codec::xml::decode(&body, T::NAME),
        #[cfg(feature = "binary")]
        Codec::Binary => crate::codec::binary::decode(&body, T::NAME),
        #[allow(unreachable_patterns, reason = "reached when protobuf is compiled")]
        _ => Err(unsupported::<T>(codec, CodecOp::Decode)),
    }
}

impl<T: Message + Serialize + DeserializeOwned> Format<T> for SerdeFormat {
    fn encode(msg: &T, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError> {
        serde_encode(msg, codec, dst)
    }
    fn decode(codec: Codec, body: Bytes) -> Result<T, CodecError> {
        serde_decode(codec, body)
    }
}

#[cfg(feature = "protobuf")]
impl<T: Message + prost::Message + Default> Format<T> for ProstFormat {
    fn encode(msg: &T, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError> {
        match codec {
            Codec::Protobuf => crate::codec::protobuf::encode(msg, T::NAME, dst),
            #[allow(
                unreachable_patterns,
                reason = "reached when serde codecs are compiled"
            )]
            _ => Err(unsupported::<T>(codec, CodecOp::Encode)),
        }
    }
    fn decode(codec: Codec, body: Bytes) -> Result<T, CodecError> {
        match codec {
            Codec::Protobuf => crate::codec::protobuf::decode(body, T::NAME),
            #[allow(
                unreachable_patterns,
                reason = "reached when serde codecs are compiled"
            )]
            _ => Err(unsupported::<T>(codec, CodecOp::Decode)),
        }
    }
}

#[cfg(feature = "protobuf")]
impl<T> Format<T> for AnyFormat
where
    T: Message + prost::Message + Default + Serialize + DeserializeOwned,
{
    fn encode(msg: &T, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError> {
        match codec {
            Codec::Protobuf => crate::codec::protobuf::encode(msg, T::NAME, dst),
            #[allow(
                unreachable_patterns,
                reason = "reached when serde codecs are compiled"
            )]
            _ => serde_encode(msg, codec, dst),
        }
    }
    fn decode(codec: Codec, body: Bytes) -> Result<T, CodecError> {
        match codec {
            Codec::Protobuf => crate::codec::protobuf::decode(body, T::NAME),
            #[allow(
                unreachable_patterns,
                reason = "reached when serde codecs are compiled"
            )]
            _ => serde_decode(codec, body),
        }
    }
}

/// Without the protobuf codec, a prost-and-serde type is a serde type.
#[cfg(not(feature = "protobuf"))]
impl<T: Message + Serialize + DeserializeOwned> Format<T> for AnyFormat {
    fn encode(msg: &T, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError> {
        serde_encode(msg, codec, dst)
    }
    fn decode(codec: Codec, body: Bytes) -> Result<T, CodecError> {
        serde_decode(codec, body)
    }
}

/// Encodes `msg` with the body format `F`.
pub fn encode<F: Format<T>, T>(
    msg: &T,
    codec: Codec,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    F::encode(msg, codec, dst)
}

/// Decodes a `T` with the body format `F`.
pub fn decode<F: Format<T>, T>(codec: Codec, body: Bytes) -> Result<T, CodecError> {
    F::decode(codec, body)
}
