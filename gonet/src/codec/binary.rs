use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, CodecErrorKind, CodecOp};

pub(crate) fn encode<T: Serialize>(
    msg: &T,
    name: &'static str,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    rmp_serde::encode::write_named(&mut dst.writer(), msg)
        .map_err(|e| CodecError::new(Codec::Binary, CodecOp::Encode, name, e))
}

pub(crate) fn decode<T: DeserializeOwned>(
    body: &[u8],
    name: &'static str,
) -> Result<T, CodecError> {
    let err = |kind: CodecErrorKind| CodecError::new(Codec::Binary, CodecOp::Decode, name, kind);
    let mut rest = body;
    let value = rmp_serde::decode::from_read(&mut rest).map_err(|e| err(e.into()))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(err(CodecErrorKind::TrailingBytes(rest.len())))
    }
}
