//! Typed messages: a Rust type bound to a numeric id and a name.

use bytes::BytesMut;

use crate::codec::{Body, Codec, CodecError};

/// The first id of the range reserved for the framework's own messages.
///
/// Ids `0xFFFF_FF00..=0xFFFF_FFFF` carry request/response correlation, errors and
/// heartbeats (see `PROTOCOL.md`); id 0 is never valid. User messages use
/// `1..=0xFFFF_FEFF`.
pub const RESERVED_ID_START: u32 = 0xFFFF_FF00;

/// Whether `id` may be used by an application message.
///
/// ```
/// assert!(gonet::is_user_id(101));
/// assert!(!gonet::is_user_id(0));
/// assert!(!gonet::is_user_id(0xFFFF_FF01));
/// ```
pub const fn is_user_id(id: u32) -> bool {
    id != 0 && id < RESERVED_ID_START
}

/// A message type with a wire id, a name and a body format for each codec.
///
/// Implement it with the [`message!`](crate::message!) macro for hand-written types, or let
/// `gonet-build` generate it from `.proto` files. The id must satisfy [`is_user_id`].
///
/// ```
/// use bytes::BytesMut;
/// use gonet::{Body, Codec, Message};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Say {
///     #[prost(string, tag = "1")]
///     content: String,
/// }
/// gonet::message!(Say = 101, prost, name = "chat.Say");
///
/// assert_eq!((Say::ID, Say::NAME), (101, "chat.Say"));
///
/// let mut body = BytesMut::new();
/// Say { content: "hi".into() }.encode_body(Codec::Protobuf, &mut body)?;
/// let body = body.freeze();
/// let back = Say::decode_body(Codec::Protobuf, Body::new(&body))?;
/// assert_eq!(back.content, "hi");
/// # Ok::<(), gonet::CodecError>(())
/// ```
pub trait Message: Sized + Send + Sync + 'static {
    /// The id written in the frame header.
    const ID: u32;
    /// The full name, used in logs and errors (`chat.Say`).
    const NAME: &'static str;

    /// Appends the body of `self`, in the format of `codec`, to `dst`.
    fn encode_body(&self, codec: Codec, dst: &mut BytesMut) -> Result<(), CodecError>;

    /// Decodes a body in the format of `codec`. The body is borrowed from the buffer it
    /// was received in; parts kept as `Bytes` share that buffer (see [`Body`]).
    fn decode_body(codec: Codec, body: Body<'_>) -> Result<Self, CodecError>;
}

/// Gives a hand-written type a message id, so it can be sent, routed and called.
///
/// The body format comes from the traits the type implements:
///
/// - `serde`: the type is `Serialize + DeserializeOwned`; it works with the JSON, XML and
///   binary codecs, and the protobuf codec refuses it with a clear error.
/// - `prost`: the type is a `prost::Message`; it works with the protobuf codec only.
/// - `[prost, serde]`: both; every codec works.
///
/// The name defaults to the type's name; give another with `name = "..."`. Ids outside
/// the user range ([`is_user_id`]) do not compile.
///
/// A serde type's body is what its serde impls make of it. Give it `#[serde(default)]`
/// so that a missing field reads as its default: Go gonet peers leave zero values out of
/// their JSON (`omitempty`), and a body without `"content"` must still decode.
///
/// ```
/// use bytes::Bytes;
/// use gonet::{Body, Codec, Message};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Default)]
/// #[serde(default)]
/// struct Say {
///     content: String,
///     seq: u64,
/// }
/// gonet::message!(Say = 101, serde, name = "chat.Say");
///
/// assert_eq!(Say::ID, 101);
/// assert_eq!(Say::NAME, "chat.Say");
/// # #[cfg(feature = "json")] {
/// // What Go writes for `Say{Seq: 3}`: the empty content is left out.
/// let go = Bytes::from_static(br#"{"seq":3}"#);
/// let say = Say::decode_body(Codec::Json, Body::new(&go)).expect("decodes");
/// assert_eq!((say.content.as_str(), say.seq), ("", 3));
/// # }
/// ```
///
/// A reserved id is refused at compile time:
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Ping;
/// gonet::message!(Ping = 0xFFFF_FF10, serde);
/// ```
#[macro_export]
macro_rules! message {
    ($ty:ty = $id:expr, $format:ident $(, name = $name:expr)? $(,)?) => {
        $crate::message!($ty = $id, [$format] $(, name = $name)?);
    };
    ($ty:ty = $id:expr, [$($format:ident),+] $(, name = $name:expr)? $(,)?) => {
        const _: () = ::core::assert!(
            $crate::is_user_id($id),
            "gonet message ids must be in 1..=0xFFFF_FEFF; 0 and 0xFFFF_FF00.. are reserved"
        );
        impl $crate::Message for $ty {
            const ID: u32 = $id;
            const NAME: &'static str = $crate::message!(@name $ty $(, $name)?);

            fn encode_body(
                &self,
                codec: $crate::Codec,
                dst: &mut $crate::codegen::BytesMut,
            ) -> ::core::result::Result<(), $crate::CodecError> {
                $crate::codegen::encode::<$crate::message!(@formats $($format),+), Self>(
                    self, codec, dst,
                )
            }

            fn decode_body(
                codec: $crate::Codec,
                body: $crate::Body<'_>,
            ) -> ::core::result::Result<Self, $crate::CodecError> {
                $crate::codegen::decode::<$crate::message!(@formats $($format),+), Self>(
                    codec, body,
                )
            }
        }
    };
    (@name $ty:ty) => { ::core::stringify!($ty) };
    (@name $ty:ty, $name:expr) => { $name };
    (@formats serde) => { $crate::codegen::SerdeFormat };
    (@formats prost) => { $crate::codegen::ProstFormat };
    (@formats prost, serde) => { $crate::codegen::AnyFormat };
    (@formats serde, prost) => { $crate::codegen::AnyFormat };
}
