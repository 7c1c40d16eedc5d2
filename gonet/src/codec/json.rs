//! The `json` codec: serde_json over the types' serde impls.
//!
//! A key of a body that matches no field is skipped, as Go's `encoding/json` skips it, so
//! a newer peer's fields do not break an older reader; but it is never dropped unseen:
//! each one is logged at debug level with its path and counted in
//! `gonet_codec_ignored_keys_total`.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, CodecErrorKind, CodecOp};

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
    let err = |e: CodecErrorKind| CodecError::new(Codec::Json, CodecOp::Decode, name, e);
    let mut de = serde_json::Deserializer::from_slice(body);
    // serde_json limits nesting itself; the wrapper only counts skipped values.
    let (value, ignored) = match super::depth::decode_limited::<T, _>(&mut de, usize::MAX) {
        Ok(decoded) => decoded,
        Err(Some(e)) => return Err(err(e.into())),
        // serde_json stops at 128 levels, long before this count could run out.
        Err(None) => return Err(err(CodecErrorKind::TooDeep { limit: 128 })),
    };
    de.end().map_err(|e| err(e.into()))?;
    if ignored > 0 {
        report_ignored::<T>(body, name);
    }
    Ok(value)
}

/// Names every key of `body` that matched no field. Rare, so it may decode the body a
/// second time to find the paths, rather than track them on every decode.
#[cold]
fn report_ignored<T: DeserializeOwned>(body: &[u8], name: &'static str) {
    let mut de = serde_json::Deserializer::from_slice(body);
    let _: Result<T, _> = serde_ignored::deserialize(&mut de, |path| {
        let mut key = String::new();
        key_path(&path, &mut key);
        tracing::debug!(
            name,
            key = key.as_str(),
            "JSON key matches no field of the message: ignored"
        );
        crate::telemetry::json_key_ignored(name);
    });
}

/// `path` as dotted keys and indices (`inner.label`, `items.2.name`), without the
/// steps that are no key (options, newtypes).
fn key_path(path: &serde_ignored::Path<'_>, out: &mut String) {
    use serde_ignored::Path;
    let step = match path {
        Path::Root => return,
        Path::Seq { parent, index } => {
            key_path(parent, out);
            index.to_string()
        }
        Path::Map { parent, key } => {
            key_path(parent, out);
            key.clone()
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => {
            return key_path(parent, out);
        }
    };
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(&step);
}
