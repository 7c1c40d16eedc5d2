use bytes::BytesMut;

use super::{Codec, CodecError, CodecOp};

pub(crate) fn encode<T: prost::Message>(
    msg: &T,
    name: &'static str,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    msg.encode(dst)
        .map_err(|e| CodecError::new(Codec::Protobuf, CodecOp::Encode, name, e))
}

pub(crate) fn decode<T: prost::Message + Default>(
    body: super::Body<'_>,
    name: &'static str,
) -> Result<T, CodecError> {
    T::decode(body).map_err(|e| CodecError::new(Codec::Protobuf, CodecOp::Decode, name, e))
}
