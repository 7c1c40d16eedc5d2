use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, CodecErrorKind, CodecOp, MAX_NESTING};

pub(crate) fn encode<T: Serialize>(
    msg: &T,
    name: &'static str,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    quick_xml::se::to_writer(dst, msg)
        .map(drop)
        .map_err(|e| CodecError::new(Codec::Xml, CodecOp::Encode, name, e))
}

pub(crate) fn decode<T: DeserializeOwned>(
    body: &[u8],
    name: &'static str,
) -> Result<T, CodecError> {
    let err = |kind: CodecErrorKind| CodecError::new(Codec::Xml, CodecOp::Decode, name, kind);
    let text = std::str::from_utf8(body).map_err(|e| err(e.into()))?;
    let mut de = quick_xml::de::Deserializer::from_str(text);
    super::depth::decode(&mut de).map_err(|e| match e {
        Some(e) => err(e.into()),
        None => err(CodecErrorKind::TooDeep { limit: MAX_NESTING }),
    })
}
