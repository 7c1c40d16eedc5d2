use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, CodecOp};

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
    let text = std::str::from_utf8(body)
        .map_err(|e| CodecError::new(Codec::Xml, CodecOp::Decode, name, e))?;
    quick_xml::de::from_str(text).map_err(|e| CodecError::new(Codec::Xml, CodecOp::Decode, name, e))
}
