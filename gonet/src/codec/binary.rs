use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, CodecErrorKind, CodecOp, MAX_NESTING};

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
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    let value = super::depth::decode(&mut de).map_err(|e| match e {
        Some(e) => err(e.into()),
        None => err(CodecErrorKind::TooDeep { limit: MAX_NESTING }),
    })?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(err(CodecErrorKind::TrailingBytes(rest.len())))
    }
}
