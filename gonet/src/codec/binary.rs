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
    // A bug of the decoder must cost this message, not the task decoding it.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        super::depth::decode(&mut de)
    }));
    let value = match decoded {
        Ok(Ok(value)) => value,
        Ok(Err(Some(e))) => return Err(err(e.into())),
        Ok(Err(None)) => return Err(err(CodecErrorKind::TooDeep { limit: MAX_NESTING })),
        Err(payload) => return Err(err(CodecErrorKind::Panicked(super::panic_text(&*payload)))),
    };
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(err(CodecErrorKind::TrailingBytes(rest.len())))
    }
}
