#![doc = include_str!("lib.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod builder;
mod codec;
mod driver;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod layout;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
mod service;
mod session;
mod settings;
#[cfg(feature = "signal")]
mod shutdown;
mod telemetry;
mod transport;
mod url;
mod wire;

pub use builder::{Builder, Server};
#[cfg(feature = "protojson")]
pub use codec::protojson::protojson_ignore_unknown_fields;
pub use codec::{Body, Codec, CodecError, CodecErrorKind, CodecOp, MAX_NESTING, ParseCodecError};
#[doc(hidden)]
pub use service::codegen;
pub use service::layer::{Before, BeforeFuture, Layer, Outbound, Outcome, Request};
pub use service::router::{
    Dispatched, IntoReply, Replied, Reply, ReplyTo, Router, Service, UNROUTED,
};
pub use session::error::{CallError, SendError, SessionError, SessionErrorKind};
pub use session::limit::{IpLimit, RateLimit, RatePolicy};
pub use session::outbox::Outbox;
pub use session::pool::{Broadcast, SessionPool};
pub use session::resume::{LinkEvent, Reconnect};
pub use session::{CloseReason, Session, SessionStats};
pub use settings::{Handshake, PanicPolicy};
#[cfg(feature = "signal")]
#[cfg_attr(docsrs, doc(cfg(feature = "signal")))]
pub use shutdown::{SignalError, shutdown_signal};
pub use transport::error::{DialError, ServeError};
pub use url::{Transport, Url, UrlError, UrlErrorKind};
pub use wire::frame::{self, FrameCodec, FrameError, Packet};
pub use wire::{
    Code, ExtensionError, Message, Metadata, MetadataError, RESERVED_ID_START, Scoped, Status,
    TRACE_ID, is_user_id,
};

#[cfg(feature = "kcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "kcp")))]
pub use transport::kcp::{KcpCrypt, KcpFec, KcpKeyError, KcpMode, KcpSettings, KcpStats};
#[cfg(feature = "quic")]
#[cfg_attr(docsrs, doc(cfg(feature = "quic")))]
pub use transport::quic::{Channel, QuicError};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "wss", feature = "quic"))))]
pub use transport::tls::{ClientTls, ServerTls, TlsError};

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
