//! The `protojson` codec: the canonical proto3 JSON mapping, through prost-reflect's
//! serde support over the schema's descriptors (which `gonet-build` embeds).
//!
//! A message is transcoded between its prost struct and a `DynamicMessage` of its
//! descriptor, which knows every rule of the mapping: lowerCamel names (both spellings
//! read), enum names (numbers read too), 64-bit integers as strings, base64 bytes,
//! oneof members flattened and the well-known types in their special forms.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{BufMut, BytesMut};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};

use super::{Codec, CodecError, CodecErrorKind, CodecOp};

/// Whether unknown keys are skipped (not the default).
static IGNORE_UNKNOWN: AtomicBool = AtomicBool::new(false);

/// Whether the `protojson` codec skips the keys of a body that match no field, for the
/// whole process.
///
/// Off by default: as the proto3 JSON specification asks, such a key makes decoding
/// fail with an error naming it. Turn it on to read bodies of a newer schema whose
/// fields this one does not have.
///
/// ```
/// gonet::protojson_ignore_unknown_fields(true);
/// # gonet::protojson_ignore_unknown_fields(false);
/// ```
pub fn protojson_ignore_unknown_fields(ignore: bool) {
    IGNORE_UNKNOWN.store(ignore, Ordering::Relaxed);
}

/// The encoded `FileDescriptorSet` of a schema, and its pool once built.
///
/// `gonet-build` puts one in every generated package; not a public API.
#[derive(Debug)]
pub struct Descriptors {
    bytes: &'static [u8],
    pool: OnceLock<Result<DescriptorPool, String>>,
}

impl Descriptors {
    /// The descriptors encoded in `bytes`.
    pub const fn new(bytes: &'static [u8]) -> Self {
        Descriptors {
            bytes,
            pool: OnceLock::new(),
        }
    }

    /// The encoded `FileDescriptorSet`.
    pub fn bytes(&self) -> &'static [u8] {
        self.bytes
    }

    /// The descriptor of message `name` (`pkg.Msg`).
    fn message(&self, name: &str) -> Result<MessageDescriptor, CodecErrorKind> {
        let pool = self
            .pool
            .get_or_init(|| DescriptorPool::decode(self.bytes).map_err(|e| e.to_string()));
        match pool {
            Ok(pool) => pool.get_message_by_name(name).ok_or_else(|| {
                CodecErrorKind::Descriptor(format!("no descriptor for message {name}"))
            }),
            Err(e) => Err(CodecErrorKind::Descriptor(e.clone())),
        }
    }
}

pub(crate) fn encode<T: prost::Message>(
    msg: &T,
    descriptors: &Descriptors,
    name: &'static str,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let err = |kind: CodecErrorKind| CodecError::new(Codec::ProtoJson, CodecOp::Encode, name, kind);
    let mut dynamic = DynamicMessage::new(descriptors.message(name).map_err(err)?);
    dynamic
        .transcode_from(msg)
        .map_err(|e| err(CodecErrorKind::ProtobufDecode(e)))?;
    let mut serializer = serde_json::Serializer::new(dst.writer());
    dynamic
        .serialize_with_options(&mut serializer, &SerializeOptions::new())
        .map_err(|e| err(e.into()))
}

pub(crate) fn decode<T: prost::Message + Default>(
    body: &[u8],
    descriptors: &Descriptors,
    name: &'static str,
) -> Result<T, CodecError> {
    let err = |kind: CodecErrorKind| CodecError::new(Codec::ProtoJson, CodecOp::Decode, name, kind);
    let desc = descriptors.message(name).map_err(err)?;
    let options =
        DeserializeOptions::new().deny_unknown_fields(!IGNORE_UNKNOWN.load(Ordering::Relaxed));
    let mut de = serde_json::Deserializer::from_slice(body);
    let dynamic = DynamicMessage::deserialize_with_options(desc, &mut de, &options)
        .map_err(|e| err(e.into()))?;
    de.end().map_err(|e| err(e.into()))?;
    dynamic
        .transcode_to()
        .map_err(|e| err(CodecErrorKind::ProtobufDecode(e)))
}
