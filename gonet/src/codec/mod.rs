//! Body codecs: protobuf, JSON, XML and binary, each behind its own cargo feature, and
//! the [`Body`] a decoder reads.
//!
//! A [`Codec`] is a value chosen per listener and per client, so one process can speak
//! protobuf on one port and JSON on another with the same handlers.
//!
//! The bottom of the message path: this folder turns a message's fields into body bytes
//! and back, and uses no other part of the crate but telemetry (JSON keys that match no
//! field are counted). Frames, sessions and transports never
//! look inside a body; they carry it.

use std::fmt;
use std::str::FromStr;

#[cfg(feature = "binary")]
pub(crate) mod binary;
mod body;
#[cfg(any(feature = "xml", feature = "binary", feature = "json"))]
mod depth;
pub(crate) mod fields;
#[cfg(feature = "json")]
pub(crate) mod json;
#[cfg(feature = "protobuf")]
pub(crate) mod protobuf;
#[cfg(feature = "xml")]
pub(crate) mod xml;

#[cfg(not(any(
    feature = "protobuf",
    feature = "json",
    feature = "xml",
    feature = "binary"
)))]
compile_error!("gonet needs at least one codec feature: protobuf, json, xml or binary");

pub use body::Body;

/// How deeply the XML and binary (MessagePack) codecs let containers nest in a body:
/// sequences, maps, structs, enums and options each count one level. JSON has the same
/// limit (serde_json's own) and protobuf prost's limit of 100 nested messages.
///
/// A body nested deeper is refused with
/// [`CodecErrorKind::TooDeep`](crate::CodecErrorKind::TooDeep); the session goes on.
pub const MAX_NESTING: usize = 128;

/// The format of message bodies on a listener or client.
///
/// Both ends of a session must use the same codec. A name from configuration parses
/// into one:
///
/// ```
/// use gonet::{Builder, Codec};
///
/// let codec: Codec = "protobuf".parse()?;
/// assert_eq!(codec, Codec::Protobuf);
/// assert_eq!(codec.to_string(), "protobuf");
/// // The default is the first codec compiled in: protobuf, JSON, XML, binary.
/// assert_eq!(Codec::default(), Codec::ALL[0]);
///
/// let builder = Builder::new().codec(codec);
/// # let _ = builder;
/// # Ok::<(), gonet::ParseCodecError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// Protocol Buffers through prost (feature `protobuf`).
    #[cfg(feature = "protobuf")]
    Protobuf,
    /// JSON through serde_json (feature `json`).
    #[cfg(feature = "json")]
    Json,
    /// XML through quick-xml (feature `xml`); the root element is the type's name.
    #[cfg(feature = "xml")]
    Xml,
    /// MessagePack through rmp-serde (feature `binary`), structs as maps keyed by field
    /// name so that fields can be added, skipped or reordered between versions.
    ///
    /// MessagePack is compact, has a published specification and libraries in every
    /// language a game or IoT client is written in, and is self-describing, so every
    /// serde shape works, tagged enums (protobuf oneofs) included. Formats that are not
    /// self-describing (postcard, bincode) cannot decode tagged enums.
    #[cfg(feature = "binary")]
    Binary,
}

impl Codec {
    /// Every codec compiled into this build, in a fixed order.
    pub const ALL: &'static [Codec] = &[
        #[cfg(feature = "protobuf")]
        Codec::Protobuf,
        #[cfg(feature = "json")]
        Codec::Json,
        #[cfg(feature = "xml")]
        Codec::Xml,
        #[cfg(feature = "binary")]
        Codec::Binary,
    ];

    /// The lower-case name used in URLs, configuration and errors.
    pub const fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "protobuf")]
            Codec::Protobuf => "protobuf",
            #[cfg(feature = "json")]
            Codec::Json => "json",
            #[cfg(feature = "xml")]
            Codec::Xml => "xml",
            #[cfg(feature = "binary")]
            Codec::Binary => "binary",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            #[cfg(feature = "protobuf")]
            Codec::Protobuf => 0,
            #[cfg(feature = "json")]
            Codec::Json => 1,
            #[cfg(feature = "xml")]
            Codec::Xml => 2,
            #[cfg(feature = "binary")]
            Codec::Binary => 3,
        }
    }
}

impl Default for Codec {
    /// The first compiled codec of protobuf, JSON, XML, binary.
    fn default() -> Self {
        Codec::ALL[0]
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name that is unknown or not compiled in.
///
/// Its text lists the codecs this build supports, and names the feature to enable when
/// the codec exists but is not compiled in.
///
/// ```
/// use gonet::Codec;
///
/// let err = "yaml".parse::<Codec>().unwrap_err();
/// assert!(err.to_string().starts_with("unknown codec \"yaml\": this build supports protobuf"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("unknown codec {name:?}: this build supports {supported}")]
pub struct ParseCodecError {
    name: String,
    supported: String,
}

impl FromStr for Codec {
    type Err = ParseCodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Codec::ALL
            .iter()
            .copied()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let known: &[(&str, &str)] = &[
                    ("protobuf", "protobuf"),
                    ("json", "json"),
                    ("xml", "xml"),
                    ("binary", "binary"),
                ];
                let hint = known
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(s))
                    .map(|(_, f)| format!(" (enable the `{f}` feature of gonet)"))
                    .unwrap_or_default();
                ParseCodecError {
                    name: s.to_owned(),
                    supported: Codec::ALL
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                        + &hint,
                }
            })
    }
}

/// Encoding or decoding a body failed.
///
/// It names the codec, the direction and the message type. A session reports it inside
/// [`SendError::Encode`](crate::SendError::Encode),
/// [`CallError::Decode`](crate::CallError::Decode) or
/// [`SessionErrorKind::Decode`](crate::SessionErrorKind::Decode); a [`Message`]'s own
/// methods return it directly:
///
/// ```
/// use bytes::Bytes;
/// use gonet::{Body, Codec, CodecOp, Message};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Ping {
///     #[prost(uint32, tag = "1")]
///     n: u32,
/// }
/// gonet::message!(Ping = 1, prost);
///
/// let garbage = Bytes::from_static(&[0xff, 0xff]);
/// let err = Ping::decode_body(Codec::Protobuf, Body::new(&garbage)).unwrap_err();
/// assert_eq!((err.codec, err.op, err.message), (Codec::Protobuf, CodecOp::Decode, "Ping"));
/// assert!(err.to_string().starts_with("protobuf codec cannot decode Ping: "));
/// ```
///
/// [`Message`]: crate::Message
#[derive(Debug, thiserror::Error)]
#[error("{codec} codec cannot {op} {message}: {kind}")]
pub struct CodecError {
    /// The codec in use.
    pub codec: Codec,
    /// Whether encoding or decoding failed.
    pub op: CodecOp,
    /// The name of the message type.
    pub message: &'static str,
    /// What went wrong.
    pub kind: CodecErrorKind,
}

/// The direction of a codec operation.
///
/// ```
/// use gonet::{CodecError, CodecOp};
///
/// fn describe(err: &CodecError) -> &'static str {
///     match err.op {
///         CodecOp::Encode => "our message did not encode",
///         CodecOp::Decode => "the peer's body did not decode",
///     }
/// }
/// # let _ = describe;
/// assert_eq!(CodecOp::Decode.to_string(), "decode");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecOp {
    /// Turning a value into a body.
    Encode,
    /// Turning a body into a value.
    Decode,
}

impl fmt::Display for CodecOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecOp::Encode => "encode",
            CodecOp::Decode => "decode",
        })
    }
}

/// The cause of a [`CodecError`].
///
/// A type made with `message!(T = id, serde)` has no protobuf body; sending it on a
/// protobuf session fails with [`Unsupported`](Self::Unsupported) rather than with
/// bytes the peer cannot read:
///
/// ```
/// use bytes::BytesMut;
/// use gonet::{Codec, CodecErrorKind, Message};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Chat {
///     text: String,
/// }
/// gonet::message!(Chat = 1, serde);
///
/// let chat = Chat { text: "hi".into() };
/// let err = chat.encode_body(Codec::Protobuf, &mut BytesMut::new()).unwrap_err();
/// match err.kind {
///     CodecErrorKind::Unsupported(codec) => assert_eq!(codec, "protobuf"),
///     other => panic!("{other}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecErrorKind {
    /// The message type has no body format for this codec (for example a serde-only
    /// type on a protobuf listener).
    #[error("the type has no {0} body format")]
    Unsupported(&'static str),
    /// protobuf encoding failed.
    #[cfg(feature = "protobuf")]
    #[error(transparent)]
    ProtobufEncode(#[from] prost::EncodeError),
    /// protobuf decoding failed.
    #[cfg(feature = "protobuf")]
    #[error(transparent)]
    ProtobufDecode(#[from] prost::DecodeError),
    /// JSON failed.
    #[cfg(feature = "json")]
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// XML serialization failed.
    #[cfg(feature = "xml")]
    #[error(transparent)]
    XmlEncode(#[from] quick_xml::SeError),
    /// XML deserialization failed.
    #[cfg(feature = "xml")]
    #[error(transparent)]
    XmlDecode(#[from] quick_xml::DeError),
    /// The body is not UTF-8 (XML only).
    #[error("body is not UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// MessagePack encoding failed.
    #[cfg(feature = "binary")]
    #[error(transparent)]
    BinaryEncode(#[from] rmp_serde::encode::Error),
    /// MessagePack decoding failed.
    #[cfg(feature = "binary")]
    #[error(transparent)]
    BinaryDecode(#[from] rmp_serde::decode::Error),
    /// The body nests containers deeper than [`MAX_NESTING`] (XML, binary).
    #[error("nesting deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The body holds a document type declaration (XML only): message bodies never
    /// need one, and its entities are how XML bodies are made to explode.
    #[error("a document type declaration (<!DOCTYPE>) is not accepted in a message body")]
    DocType,
    /// The decoder failed in a way it does not report as an error (a bug of the
    /// decoding library, caught so that it costs only this message).
    #[error("the decoder failed unexpectedly: {0}")]
    Panicked(String),
    /// The value decoded but bytes were left over.
    #[error("{0} bytes left over after the value")]
    TrailingBytes(usize),
}

impl CodecError {
    pub(crate) fn new(
        codec: Codec,
        op: CodecOp,
        message: &'static str,
        kind: impl Into<CodecErrorKind>,
    ) -> Self {
        Self {
            codec,
            op,
            message,
            kind: kind.into(),
        }
    }
}

/// The text of a caught panic.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
