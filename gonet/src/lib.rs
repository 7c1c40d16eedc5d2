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
//! # Transports
//!
//! Switching transports is changing the URL; handlers, sessions, ordering,
//! backpressure, codecs, hooks and close reasons stay the same.
//!
//! | URL | feature | carries a packet as | delivery | peer gone is seen by | default heartbeat |
//! |---|---|---|---|---|---|
//! | `tcp://host:port` | `tcp` | frames in a byte stream | reliable, ordered | FIN / reset | off |
//! | `udp://host:port` | `udp` | one datagram | **lossy, may reorder** | bye packet, else idle timeout | ping 5 s, idle 15 s |
//! | `ws://host:port/path` | `ws` | one binary message | reliable, ordered | close frame / FIN | off |
//! | `wss://host:port/path` | `wss` | one binary message over TLS | reliable, ordered | close frame / FIN | off |
//! | `quic://host:port` | `quic` | frames in one QUIC stream (+ channels, datagrams) | reliable, ordered per stream | connection close, QUIC idle timeout (30 s) | QUIC keep-alive 5 s |
//! | `kcp://host:port` | `kcp` | frames in a KCP stream over UDP | reliable, ordered | bye packet, else idle timeout | ping 5 s, idle 15 s |
//!
//! [`Builder::heartbeat`] and [`Builder::idle_timeout`] change the defaults on any
//! transport; a silent peer's session closes with [`CloseReason::IdleTimeout`].
//! `wss://` and `quic://` servers generate a development certificate unless given one
//! (`Builder::server_tls`); their clients say whom they trust (`Builder::client_tls`).
//!
//! # Layout
//!
//! | module | concept |
//! |---|---|
//! | `frame` | the gonet v3 frame codec ([`FrameCodec`]): a pure state machine |
//! | `wire` | the protocol extension (call correlation, error replies, heartbeats); reply blocks |
//! | `codec` | body codecs ([`Codec`]) |
//! | `message` | [`Message`], [`message!`] and the reserved id range |
//! | `body` | [`Body`]: a received body, borrowed from the read buffer while it is decoded |
//! | `router` | [`Router`], [`IntoReply`] |
//! | `session`, `pool` | [`Session`], [`SessionPool`], groups and broadcast |
//! | `outbound` | the bounded per-session outbound queue and write batching |
//! | `driver` | a session's inbound part (reading, ordered handling, heartbeats) and writer, run as one task |
//! | `joint` | runs those parts as one task without waking it from inside |
//! | `signal` | stop signals that sessions poll without taking a lock |
//! | `link` | the packet source and frame sink a transport hands the driver |
//! | `transport` | URL schemes to listeners and connections: `tcp`, `udp`, `ws`, `quic`, `kcp` |
//! | `tls` | certificates for `wss://` and `quic://` (`ServerTls`, `ClientTls`) |
//! | `builder` | [`Builder`], [`Server`] |
//! | `shutdown` | [`shutdown_signal`]: the operating system asking the process to stop (feature `signal`) |
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tcp` | yes | the `tcp://` transport |
//! | `udp` | no | the `udp://` transport: one packet per datagram, lossy |
//! | `ws` | no | the `ws://` transport through tokio-tungstenite |
//! | `wss` | no | `wss://`: `ws` with TLS through rustls (ring) |
//! | `quic` | no | the `quic://` transport through quinn (rustls, ring): channels, datagrams |
//! | `kcp` | no | the `kcp://` transport through tokio_kcp |
//! | `protobuf` | yes | [`Codec::Protobuf`] through prost |
//! | `json` | no | [`Codec::Json`] through serde_json |
//! | `xml` | no | [`Codec::Xml`] through quick-xml |
//! | `binary` | no | [`Codec::Binary`]: MessagePack through rmp-serde |
//! | `signal` | no | [`shutdown_signal`]: SIGTERM or Ctrl-C, to drain a server before the process exits |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod body;
mod builder;
mod calls;
mod codec;
#[doc(hidden)]
pub mod codegen;
mod driver;
mod error;
pub mod frame;
#[cfg(test)]
mod fuzz;
mod joint;
mod link;
mod message;
mod outbound;
mod pool;
mod router;
mod session;
#[cfg(feature = "signal")]
mod shutdown;
mod signal;
mod status;
#[cfg(feature = "tls")]
mod tls;
mod transport;
mod url;
mod wire;

pub use body::Body;
pub use builder::{Builder, PanicPolicy, Server};
pub use codec::{Codec, CodecError, CodecErrorKind, CodecOp, ParseCodecError};
pub use error::{CallError, DialError, SendError, ServeError, SessionError, SessionErrorKind};
pub use frame::{FrameCodec, FrameError, Packet};
pub use message::{Message, RESERVED_ID_START, is_user_id};
pub use pool::{Broadcast, SessionPool};
pub use router::{IntoReply, Reply, ReplyTo, Router, Service, UNROUTED};
pub use session::{CloseReason, Session, SessionStats};
#[cfg(feature = "signal")]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub use shutdown::{SignalError, shutdown_signal};
pub use status::{Code, Status};
pub use url::{Transport, Url, UrlError, UrlErrorKind};
pub use wire::ExtensionError;

#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "wss", feature = "quic"))))]
pub use tls::{ClientTls, ServerTls, TlsError};
#[cfg(feature = "kcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "kcp")))]
pub use transport::kcp::KcpSettings;
#[cfg(feature = "quic")]
#[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
pub use transport::quic::{Channel, QuicError};

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

/// The README's Rust examples compile as doc tests.
#[cfg(all(doctest, feature = "json"))]
#[doc = include_str!("../../README.md")]
mod readme {}
