use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, CodecErrorKind, CodecOp};

pub(crate) fn encode<T: Serialize>(
    msg: &T,
    name: &'static str,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    postcard::to_io(msg, dst.writer())
        .map(drop)
        .map_err(|e| CodecError::new(Codec::Binary, CodecOp::Encode, name, e))
}

pub(crate) fn decode<T: DeserializeOwned>(
    body: &[u8],
    name: &'static str,
) -> Result<T, CodecError> {
    let err = |kind: CodecErrorKind| CodecError::new(Codec::Binary, CodecOp::Decode, name, kind);
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| err(e.into()))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(err(CodecErrorKind::TrailingBytes(rest.len())))
    }
}
