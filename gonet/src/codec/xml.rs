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
    // A document type has no place in a message, and is where XML's entity tricks
    // (and a decoder panic of quick-xml, when one splits a text) come from.
    if has_doctype(body) {
        return Err(err(CodecErrorKind::DocType));
    }
    // A bug of the XML decoder must cost this message, not the task decoding it (on a
    // client, the caller awaiting a reply).
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut de = quick_xml::de::Deserializer::from_str(text);
        super::depth::decode(&mut de)
    }));
    match decoded {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(Some(e))) => Err(err(e.into())),
        Ok(Err(None)) => Err(err(CodecErrorKind::TooDeep { limit: MAX_NESTING })),
        Err(payload) => Err(err(CodecErrorKind::Panicked(super::panic_text(&*payload)))),
    }
}

/// Whether `body` holds a `<!DOCTYPE` (in any case, as quick-xml reads it).
fn has_doctype(body: &[u8]) -> bool {
    body.windows(9)
        .any(|w| w.starts_with(b"<!") && w[2..].eq_ignore_ascii_case(b"DOCTYPE"))
}
