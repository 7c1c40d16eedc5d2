//! Items used by the [`message!`](crate::message!) macro and by code that `gonet-build`
//! generates. Not a public API: it may change in any release.

pub use bytes::{Bytes, BytesMut};
#[cfg(feature = "protobuf")]
pub use prost;
pub use serde;
pub use std::future::Future;
pub use std::sync::Arc;
pub use std::time::Duration;

#[cfg(feature = "protobuf")]
pub use crate::codec::fields::wkt;
pub use crate::codec::fields::{
    IsZero, base64_bytes, base64_list, base64_option, deserialize_bytes_map, deserialize_map,
    empty, is_zero, serialize_bytes_map, serialize_map,
};
pub use crate::codec::{Codec, CodecError};
pub use crate::service::router::{Router, Service};
#[cfg(feature = "protobuf")]
pub use prost_types;

/// Whether the runtime's metrics are on (see `Builder::metrics`): for the crates of the
/// workspace that record their own (gonet-cluster).
pub fn metrics_on() -> bool {
    crate::telemetry::on()
}
pub use crate::session::Session;
pub use crate::session::error::{CallError, SendError};
pub use crate::wire::Message;
pub use crate::wire::Status;

use std::cell::Cell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Body;

#[allow(unused_imports, reason = "each codec arm uses some of these")]
use crate::codec::{CodecErrorKind, CodecOp};

/// Whether maps are written as lists of `key`/`value` entries (XML: map keys such as
/// `1` or `a b` are not element names). Set while the XML codec runs.
use crate::codec::fields::XML_FORM as MAP_ENTRIES;

/// Runs `f` with `flag` set to `value`, restoring it afterwards (also on panic).
#[allow(dead_code, reason = "used by some codecs only")]
fn with_flag<R>(
    flag: &'static std::thread::LocalKey<Cell<bool>>,
    value: bool,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore(&'static std::thread::LocalKey<Cell<bool>>, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            self.0.with(|s| s.set(self.1));
        }
    }
    let _restore = Restore(flag, flag.with(|s| s.replace(value)));
    f()
}

/// Runs `f` with maps as entry lists (XML).
#[allow(dead_code, reason = "used by the XML codec only")]
fn with_map_entries<R>(f: impl FnOnce() -> R) -> R {
    with_flag(&MAP_ENTRIES, true, f)
}

/// `skip_serializing_if` of generated optional fields: XML cannot tell an absent value
/// from an empty one, so `None` is left out (and `#[serde(default)]` brings it back).
pub fn skip_none<T>(value: &Option<T>) -> bool {
    value.is_none()
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
    value.is_empty_collection()
}

/// How a message type's body is produced for each codec.
pub trait Format<T> {
    /// Appends the body of `msg` in `codec`'s format.
    fn encode(msg: &T, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError>;
    /// Decodes a body in `codec`'s format.
    fn decode(codec: Codec, body: Body<'_>) -> Result<T, CodecError>;
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
        Codec::Xml => with_map_entries(|| crate::codec::xml::encode(msg, T::NAME, dst)),
        #[cfg(feature = "binary")]
        Codec::Binary => crate::codec::binary::encode(msg, T::NAME, dst),
        #[allow(unreachable_patterns, reason = "reached when protobuf is compiled")]
        _ => Err(unsupported::<T>(codec, CodecOp::Encode)),
    }
}

fn serde_decode<T: Message + DeserializeOwned>(
    codec: Codec,
    body: Body<'_>,
) -> Result<T, CodecError> {
    let _ = &body;
    match codec {
        #[cfg(feature = "json")]
        Codec::Json => crate::codec::json::decode(&body, T::NAME),
        #[cfg(feature = "xml")]
        Codec::Xml => with_map_entries(|| crate::codec::xml::decode(&body, T::NAME)),
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
    fn decode(codec: Codec, body: Body<'_>) -> Result<T, CodecError> {
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
    fn decode(codec: Codec, body: Body<'_>) -> Result<T, CodecError> {
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
    fn decode(codec: Codec, body: Body<'_>) -> Result<T, CodecError> {
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
    fn decode(codec: Codec, body: Body<'_>) -> Result<T, CodecError> {
        serde_decode(codec, body)
    }
}

#[cfg(feature = "protojson")]
pub use crate::codec::protojson::Descriptors;

/// The encoded `FileDescriptorSet` of a schema (without the `protojson` feature, kept
/// unread).
#[cfg(not(feature = "protojson"))]
#[derive(Debug)]
pub struct Descriptors {
    bytes: &'static [u8],
}

#[cfg(not(feature = "protojson"))]
impl Descriptors {
    /// The descriptors encoded in `bytes`.
    pub const fn new(bytes: &'static [u8]) -> Self {
        Descriptors { bytes }
    }

    /// The encoded `FileDescriptorSet`.
    pub fn bytes(&self) -> &'static [u8] {
        self.bytes
    }
}

/// A generated message type's schema: the descriptors of the files it was generated
/// from, which the `protojson` codec reads.
pub trait Described {
    /// The descriptors of the type's package (and everything it imports).
    fn descriptors() -> &'static Descriptors;
}

/// Bodies of types generated by `gonet-build`: like [`AnyFormat`], and it refuses the
/// values a self-describing codec would change on the way: a NaN or infinite number in
/// JSON (serde_json writes `null`, which never reads back; the XML codec refuses a
/// carriage return and the characters XML 1.0 forbids for every type). Generated types never write a JSON
/// `null` otherwise, since absent values are left out.
#[derive(Debug)]
pub struct GeneratedFormat;

#[cfg(feature = "protobuf")]
impl<T> Format<T> for GeneratedFormat
where
    T: Message + prost::Message + Default + Serialize + DeserializeOwned + Described,
{
    fn encode(msg: &T, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError> {
        let start = dst.len();
        let result = match codec {
            #[cfg(feature = "protojson")]
            Codec::ProtoJson => {
                crate::codec::protojson::encode(msg, T::descriptors(), T::NAME, dst)
            }
            #[cfg(feature = "json")]
            Codec::Json => strict_json(msg, dst),
            #[allow(
                unreachable_patterns,
                reason = "reached when other codecs are compiled"
            )]
            _ => <AnyFormat as Format<T>>::encode(msg, codec, dst),
        };
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    fn decode(codec: Codec, body: Body<'_>) -> Result<T, CodecError> {
        match codec {
            #[cfg(feature = "protojson")]
            Codec::ProtoJson => crate::codec::protojson::decode(&body, T::descriptors(), T::NAME),
            #[allow(
                unreachable_patterns,
                reason = "reached when other codecs are compiled"
            )]
            _ => <AnyFormat as Format<T>>::decode(codec, body),
        }
    }
}

/// Without the protobuf codec, generated types are serde types.
#[cfg(not(feature = "protobuf"))]
impl<T: Message + Serialize + DeserializeOwned> Format<T> for GeneratedFormat {
    fn encode(msg: &T, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError> {
        serde_encode(msg, codec, dst)
    }
    fn decode(codec: Codec, body: Body<'_>) -> Result<T, CodecError> {
        serde_decode(codec, body)
    }
}

/// JSON that refuses to write `null` (serde_json's stand-in for NaN and infinities).
#[cfg(all(feature = "json", feature = "protobuf"))]
fn strict_json<T: Message + Serialize>(msg: &T, dst: &mut BytesMut) -> Result<(), CodecError> {
    use bytes::BufMut;

    struct NoNull;
    impl serde_json::ser::Formatter for NoNull {
        fn write_null<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a NaN or infinite number has no JSON form",
            ))
        }
    }
    let mut serializer = serde_json::Serializer::with_formatter(dst.writer(), NoNull);
    msg.serialize(&mut serializer)
        .map_err(|e| CodecError::new(Codec::Json, CodecOp::Encode, T::NAME, e))
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
pub fn decode<F: Format<T>, T>(codec: Codec, body: Body<'_>) -> Result<T, CodecError> {
    F::decode(codec, body)
}
