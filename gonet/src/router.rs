//! [`Router`]: message id -> typed handler, plus a catch-all for ids no route claims.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{Codec, CodecError};
use crate::frame::Packet;
use crate::message::{Message, is_user_id};
use crate::session::Session;
use crate::status::Status;
use crate::wire::{self, Wrap};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Where a handler's reply goes: the codec of the session, and the call number when the
/// sender awaits a reply.
#[derive(Clone, Copy, Debug)]
pub struct ReplyTo {
    pub(crate) codec: Codec,
    pub(crate) call: Option<u32>,
    pub(crate) max_frame_len: usize,
}

impl ReplyTo {
    /// The codec the reply is encoded with.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Whether the sender awaits a reply (it used [`Session::call`]).
    pub fn is_call(&self) -> bool {
        self.call.is_some()
    }

    /// Encodes a reply frame: plain for a plain message, a correlated reply for a call.
    pub fn encode<M: Message>(&self, msg: &M) -> Reply {
        let wrap = match self.call {
            Some(call) => Wrap::Response(call),
            None => Wrap::Plain,
        };
        match wire::encode_reply(msg, self.codec, wrap, self.max_frame_len) {
            Ok(frame) => Reply::Frame(frame),
            Err(e) => Reply::Error(Status::internal(format!("reply not sent: {e}"))),
        }
    }
}

/// What a handler produced, ready for the wire.
#[derive(Debug)]
pub enum Reply {
    /// No reply.
    None,
    /// An encoded reply frame.
    Frame(Bytes),
    /// An error for the caller.
    Error(Status),
}

/// What a handler may return: nothing, a message (sent back as the reply), a [`Status`]
/// or a `Result`/`Option` of these.
pub trait IntoReply: Send {
    /// Turns the value into a reply for `to`.
    fn into_reply(self, to: ReplyTo) -> Reply;
}

impl IntoReply for () {
    fn into_reply(self, _: ReplyTo) -> Reply {
        Reply::None
    }
}

impl<M: Message> IntoReply for M {
    fn into_reply(self, to: ReplyTo) -> Reply {
        to.encode(&self)
    }
}

impl IntoReply for Status {
    fn into_reply(self, _: ReplyTo) -> Reply {
        Reply::Error(self)
    }
}

impl<T: IntoReply> IntoReply for Option<T> {
    fn into_reply(self, to: ReplyTo) -> Reply {
        match self {
            Some(v) => v.into_reply(to),
            None => Reply::None,
        }
    }
}

impl<T: IntoReply, E: Into<Status> + Send> IntoReply for Result<T, E> {
    fn into_reply(self, to: ReplyTo) -> Reply {
        match self {
            Ok(v) => v.into_reply(to),
            Err(e) => Reply::Error(e.into()),
        }
    }
}

/// A type-erased route.
trait ErasedHandler: Send + Sync {
    fn call(
        &self,
        session: Session,
        body: Bytes,
        to: ReplyTo,
    ) -> BoxFuture<Result<Reply, CodecError>>;
}

struct FnHandler<M, F> {
    f: F,
    _message: PhantomData<fn(M)>,
}

impl<M, F, Fut, R> ErasedHandler for FnHandler<M, F>
where
    M: Message,
    F: Fn(Session, M) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply,
{
    fn call(
        &self,
        session: Session,
        body: Bytes,
        to: ReplyTo,
    ) -> BoxFuture<Result<Reply, CodecError>> {
        match M::decode_body(to.codec, body) {
            Ok(msg) => {
                let fut = (self.f)(session, msg);
                Box::pin(async move { Ok(fut.await.into_reply(to)) })
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}

trait ErasedFallback: Send + Sync {
    fn call(&self, session: Session, packet: Packet, to: ReplyTo) -> BoxFuture<Reply>;
}

struct FnFallback<F>(F);

impl<F, Fut, R> ErasedFallback for FnFallback<F>
where
    F: Fn(Session, Packet) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply,
{
    fn call(&self, session: Session, packet: Packet, to: ReplyTo) -> BoxFuture<Reply> {
        let fut = (self.0)(session, packet);
        Box::pin(async move { fut.await.into_reply(to) })
    }
}

/// A fast hasher for u32 message ids (a multiplicative hash; ids are not attacker-chosen
/// keys of an unbounded map, the route table is fixed at start-up).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Clone)]
struct Route {
    name: &'static str,
    handler: Arc<dyn ErasedHandler>,
}

/// A set of routes registered together, such as a service generated by `gonet-build`
/// (`SayServiceServer::new(svc)`); add it with [`Router::service`].
///
/// ```
/// use gonet::{Router, Service, Session};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Ping { n: u32 }
/// gonet::message!(Ping = 7, serde);
///
/// /// What a generated `XServer` does, by hand.
/// struct PingServer;
///
/// impl Service for PingServer {
///     fn register(self, router: Router) -> Router {
///         router.route(|_: Session, ping: Ping| async move { Ping { n: ping.n + 1 } })
///     }
/// }
///
/// let router = Router::new().service(PingServer);
/// assert_eq!(router.ids(), [7]);
/// ```
pub trait Service {
    /// Adds this service's routes to `router`.
    fn register(self, router: Router) -> Router;
}

/// The name given to messages handled by the fallback.
pub const UNROUTED: &str = "<unrouted>";

/// Maps message ids to handlers.
///
/// A handler is an async function of the [`Session`] and the decoded message; what it
/// returns ([`IntoReply`]) is sent back: as a plain frame to a plain sender, as a
/// correlated reply to a caller. Messages of one session reach handlers in arrival
/// order.
///
/// ```
/// use gonet::{Router, Session, Status};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Say { content: String }
/// #[derive(Serialize, Deserialize)]
/// struct SayAck { content: String }
/// gonet::message!(Say = 101, serde);
/// gonet::message!(SayAck = 102, serde);
///
/// let router = Router::new()
///     .route(|_session: Session, say: Say| async move {
///         if say.content.is_empty() {
///             return Err(Status::invalid_argument("empty message"));
///         }
///         Ok(SayAck { content: say.content })
///     })
///     // Every id no route claims, as gonet's single message handler sees them.
///     .fallback(|session: Session, packet: gonet::Packet| async move {
///         tracing::info!(session = session.id(), id = packet.id, "unrouted message");
///     });
/// assert_eq!(router.name(101), Some("Say"));
/// ```
#[derive(Clone, Default)]
pub struct Router {
    routes: HashMap<u32, Route, BuildHasherDefault<IdHasher>>,
    fallback: Option<Arc<dyn ErasedFallback>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.routes.iter().map(|(id, r)| (*id, r.name)).collect();
        ids.sort_unstable();
        f.debug_struct("Router")
            .field("routes", &ids)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes messages of type `M` to `handler`.
    ///
    /// # Panics
    ///
    /// If `M::ID` is already routed or is not a user id: both are programming errors
    /// that should fail at start-up, not when the first message arrives.
    pub fn route<M, F, Fut, R>(mut self, handler: F) -> Self
    where
        M: Message,
        F: Fn(Session, M) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoReply,
    {
        assert!(
            is_user_id(M::ID),
            "message {} has id {:#x}, which is reserved for the framework",
            M::NAME,
            M::ID
        );
        let route = Route {
            name: M::NAME,
            handler: Arc::new(FnHandler {
                f: handler,
                _message: PhantomData::<fn(M)>,
            }),
        };
        if let Some(old) = self.routes.insert(M::ID, route) {
            panic!(
                "message id {} is routed twice: {} and {}",
                M::ID,
                old.name,
                M::NAME
            );
        }
        self
    }

    /// Adds the routes of a [`Service`], such as a generated `SayServiceServer`.
    ///
    /// # Panics
    ///
    /// If the service routes an id that is already routed.
    pub fn service<S: Service>(self, service: S) -> Self {
        service.register(self)
    }

    /// Handles every id that no route claims. Without a fallback such messages are
    /// reported as [`SessionErrorKind::UnknownMessage`](crate::SessionErrorKind) and
    /// skipped.
    pub fn fallback<F, Fut, R>(mut self, handler: F) -> Self
    where
        F: Fn(Session, Packet) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoReply,
    {
        self.fallback = Some(Arc::new(FnFallback(handler)));
        self
    }

    /// Adds every route of `other` (and its fallback, if this router has none).
    ///
    /// # Panics
    ///
    /// If both routers route the same id.
    pub fn merge(mut self, other: Router) -> Self {
        for (id, route) in other.routes {
            if let Some(old) = self.routes.insert(id, route) {
                panic!("message id {id} is routed twice ({})", old.name);
            }
        }
        if self.fallback.is_none() {
            self.fallback = other.fallback;
        }
        self
    }

    /// The name of the message routed at `id`.
    pub fn name(&self, id: u32) -> Option<&'static str> {
        self.routes.get(&id).map(|r| r.name)
    }

    /// The routed ids, sorted.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.routes.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Starts handling one message: the name it is known by and the handler's future,
    /// or `None` when nothing handles the id.
    pub(crate) fn dispatch(
        &self,
        session: Session,
        id: u32,
        body: Bytes,
        to: ReplyTo,
    ) -> Option<(&'static str, BoxFuture<Result<Reply, CodecError>>)> {
        if let Some(route) = self.routes.get(&id) {
            return Some((route.name, route.handler.call(session, body, to)));
        }
        let fallback = self.fallback.as_ref()?;
        let fut = fallback.call(session, Packet { id, body }, to);
        Some((UNROUTED, Box::pin(async move { Ok(fut.await) })))
    }
}
