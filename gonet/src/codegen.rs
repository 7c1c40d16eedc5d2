//! Items used by the [`message!`](crate::message!) macro and by code that `gonet-build`
//! generates. Not a public API: it may change in any release.

pub use bytes::{Bytes, BytesMut};
#[cfg(feature = "protobuf")]
pub use prost;
pub use serde;
pub use std::future::Future;
pub use std::sync::Arc;
pub use std::time::Duration;

pub use crate::codec::{Codec, CodecError};
pub use crate::error::{CallError, SendError};
pub use crate::message::Message;
pub use crate::router::{Router, Service};
pub use crate::session::Session;
pub use crate::status::Status;

use std::cell::Cell;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[allow(unused_imports, reason = "each codec arm uses some of these")]
use crate::codec::{CodecErrorKind, CodecOp};

thread_local! {
    /// Whether absent fields (`None`, empty lists and maps) are left out when serializing.
    static SKIP_ABSENT: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with absent fields written out. The binary codec is positional: a skipped
/// field would shift every field after it, so it always writes every field.
#[allow(dead_code, reason = "used by the binary codec only")]
fn with_every_field<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SKIP_ABSENT.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SKIP_ABSENT.with(|s| s.replace(false)));
    f()
}

/// `skip_serializing_if` of generated optional fields: XML cannot tell an absent value
/// from an empty one, so self-describing codecs leave `None` out (and `#[serde(default)]`
/// brings it back); the binary codec writes it.
pub fn skip_none<T>(value: &Option<T>) -> bool {
    value.is_none() && SKIP_ABSENT.with(Cell::get)
}

/// Collections whose emptiness [`skip_empty`] tests.
pub trait IsEmpty {
    /// Whether the collection has no element.
    fn is_empty_collection(&self) -> bool;
}

impl<T> IsEmpty for Vec<T> {
    fn is_empty_collection(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V, S> IsEmpty for std::collections::HashMap<K, V, S> {
    fn is_empty_collection(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V> IsEmpty for std::collections::BTreeMap<K, V> {
    fn is_empty_collection(&self) -> bool {
        self.is_empty()
    }
}

impl IsEmpty for Bytes {
    fn is_empty_collection(&self) -> bool {
        self.is_empty()
    }
}

/// `skip_serializing_if` of generated repeated and map fields, like [`skip_none`].
pub fn skip_empty<T: IsEmpty>(value: &T) -> bool {
    value.is_empty_collection() && SKIP_ABSENT.with(Cell::get)
}

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
        Codec::Binary => with_every_field(|| crate::codec::binary::encode(msg, T::NAME, dst)),
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
