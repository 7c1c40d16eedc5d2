use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, CodecErrorKind, CodecOp, MAX_NESTING};

/// Writes `msg` as XML, or fails (leaving `dst` as it was) when a text holds a character
/// XML 1.0 has no form for.
///
/// quick-xml escapes `<`, `>`, `&`, `'` and `"`; the other characters a document may not
/// hold (the control characters but tab and line feed, U+FFFE and U+FFFF) cannot be
/// escaped at all in XML 1.0, not even as `&#1;`. A carriage return is allowed but every
/// reader turns it (and `\r\n`) into `\n`, so it would arrive changed; so does
/// quick-xml's reader with U+0085 and U+2028. Each is refused
/// with an error naming it rather than written as a document no reader accepts.
pub(crate) fn encode<T: Serialize>(
    msg: &T,
    name: &'static str,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let start = dst.len();
    let err = |e: quick_xml::SeError| CodecError::new(Codec::Xml, CodecOp::Encode, name, e);
    if let Err(e) = quick_xml::se::to_writer(&mut *dst, msg) {
        dst.truncate(start);
        return Err(err(e));
    }
    if let Some(c) = forbidden(&dst[start..]) {
        dst.truncate(start);
        let text = if c == '\r' {
            "a carriage return (\\r) in text has no XML form: XML readers turn it into \\n"
                .to_owned()
        } else if c == '\u{85}' || c == '\u{2028}' {
            format!(
                "the line break U+{:04X} in text has no XML form here: the XML reader turns it into \\n",
                c as u32
            )
        } else {
            format!("the character U+{:04X} has no XML 1.0 form", c as u32)
        };
        return Err(err(quick_xml::SeError::Custom(text)));
    }
    Ok(())
}

/// The first character of `xml` that XML 1.0 forbids, or a line break other than a
/// line feed (a carriage return; U+0085 and U+2028, which quick-xml's reader turns into
/// a line feed as XML 1.1 does).
fn forbidden(xml: &[u8]) -> Option<char> {
    // Every forbidden character is a control byte or starts with 0xEF (U+FFFE, U+FFFF):
    // one pass over the bytes finds them, and the text is valid UTF-8 as written.
    for (i, &b) in xml.iter().enumerate() {
        match b {
            b'\t' | b'\n' => {}
            0..0x20 => return Some(char::from(b)),
            0xC2 if xml.get(i + 1) == Some(&0x85) => return Some('\u{85}'),
            0xE2 if xml.get(i + 1) == Some(&0x80) && xml.get(i + 2) == Some(&0xA8) => {
                return Some('\u{2028}');
            }
            0xEF if xml.get(i + 1) == Some(&0xBF)
                && matches!(xml.get(i + 2), Some(0xBE | 0xBF)) =>
            {
                return Some(if xml[i + 2] == 0xBE {
                    '\u{FFFE}'
                } else {
                    '\u{FFFF}'
                });
            }
            _ => {}
        }
    }
    None
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
