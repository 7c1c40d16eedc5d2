use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, CodecOp};

pub(crate) fn encode<T: Serialize>(
    msg: &T,
    name: &'static str,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    serde_json::to_writer(dst.writer(), msg)
        .map_err(|e| CodecError::new(Codec::Json, CodecOp::Encode, name, e))
}

pub(crate) fn decode<T: DeserializeOwned>(
    body: &[u8],
    name: &'static str,
) -> Result<T, CodecError> {
    serde_json::from_slice(body).map_err(|e| CodecError::new(Codec::Json, CodecOp::Decode, name, e))
}
