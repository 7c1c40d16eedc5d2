//! gonet: a message-oriented network framework for servers and clients that exchange
//! small typed messages at high rates.
//!
//! Messages are Rust types with a numeric id ([`Message`]); a [`Router`] maps ids to
//! async handlers; a [`Builder`] serves a URL or dials one; every connected peer is a
//! [`Session`]. Plain messages are byte-compatible with Go gonet v3:
//!
//! ```text
//! +----------------+--------------------+--------------+
//! | length: u16 LE | message id: u32 LE | body         |
//! +----------------+--------------------+--------------+
//! ```
//!
//! # Example
//!
//! ```
//! use gonet::{Builder, Codec, Router, Session};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Echo { text: String }
//! gonet::message!(Echo = 1001, serde);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let router = Router::new().route(|_: Session, msg: Echo| async move { msg });
//! let server = Builder::new()
//!     .codec(Codec::Json)
//!     .router(router)
//!     .serve("tcp://127.0.0.1:0")
//!     .await?;
//!
//! let client = Builder::new().codec(Codec::Json).dial(&server.url()).await?;
//! let reply: Echo = client.call(&Echo { text: "hi".into() }).await?;
//! assert_eq!(reply.text, "hi");
//!
//! client.close("done");
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! | module | concept |
//! |---|---|
//! | `frame` | the gonet v3 frame codec ([`FrameCodec`]): a pure state machine |
//! | `wire` | the protocol extension: call correlation, error replies, heartbeats |
//! | `codec` | body codecs ([`Codec`]) |
//! | `message` | [`Message`], [`message!`] and the reserved id range |
//! | `router` | [`Router`], [`IntoReply`] |
//! | `session`, `pool` | [`Session`], [`SessionPool`], groups and broadcast |
//! | `outbound` | the bounded per-session outbound queue and write batching |
//! | `driver` | the reader, ordered worker and writer of a session |
//! | `inbox` | the bounded queue from a session's reader to its worker |
//! | `joint` | runs those three as one task without waking it from inside |
//! | `transport` | URL schemes to listeners and connections |
//! | `builder` | [`Builder`], [`Server`] |
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tcp` | yes | the `tcp://` transport |
//! | `protobuf` | yes | [`Codec::Protobuf`] through prost |
//! | `json` | no | [`Codec::Json`] through serde_json |
//! | `xml` | no | [`Codec::Xml`] through quick-xml |
//! | `binary` | no | [`Codec::Binary`]: MessagePack through rmp-serde |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod builder;
mod calls;
mod codec;
#[doc(hidden)]
pub mod codegen;
mod driver;
mod error;
pub mod frame;
mod inbox;
mod joint;
mod message;
mod outbound;
mod pool;
mod router;
mod session;
mod status;
mod transport;
mod url;
mod wire;

pub use builder::{Builder, PanicPolicy, Server};
pub use codec::{Codec, CodecError, CodecErrorKind, CodecOp, ParseCodecError};
pub use error::{CallError, DialError, SendError, ServeError, SessionError, SessionErrorKind};
pub use frame::{FrameCodec, FrameError, Packet};
pub use message::{Message, RESERVED_ID_START, is_user_id};
pub use pool::{Broadcast, SessionPool};
pub use router::{IntoReply, Reply, ReplyTo, Router, Service, UNROUTED};
pub use session::{CloseReason, Session, SessionStats};
pub use status::{Code, Status};
pub use url::{Transport, Url, UrlError, UrlErrorKind};
pub use wire::ExtensionError;

/// Includes the Rust code that `gonet-build` generated in `build.rs`: one module per
/// proto package (`chat`, `game::lobby`, ...), with the messages, their ids and the
/// services' traits, servers and clients.
///
/// It expands to `include!(concat!(env!("OUT_DIR"), "/gonet_protos.rs"))`, the file
/// `gonet_build::compile` writes; give a file name for a `Builder` with another
/// `include_file`.
///
/// ```ignore
/// // build.rs: gonet_build::compile(&["schemas/chat.proto"], &["schemas"]);
/// gonet::include_protos!();
///
/// struct Chat;
/// impl chat::SayService for Chat {
///     async fn say(&self, _: &gonet::Session, req: chat::Say) -> Result<chat::SayAck, gonet::Status> {
///         Ok(chat::SayAck { content: req.content })
///     }
/// }
/// let router = gonet::Router::new().service(chat::SayServiceServer::new(Chat));
/// ```
#[macro_export]
macro_rules! include_protos {
    () => {
        ::core::include!(::core::concat!(::core::env!("OUT_DIR"), "/gonet_protos.rs"));
    };
    ($file:literal) => {
        ::core::include!(::core::concat!(::core::env!("OUT_DIR"), "/", $file));
    };
}
