//! [`Router`]: message id -> typed handler, plus a catch-all for ids no route claims.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio_util::sync::ReusableBoxFuture;

use crate::codec::{Body, Codec, CodecError};
use crate::service::layer::{self, Checked, Layer, Layered, Layers, Outcome, Request};
use crate::session::Session;
use crate::wire::Status;
use crate::wire::frame::Packet;
use crate::wire::{self, Message, Wrap, is_user_id};

/// Where a handler's reply goes: the codec of the session, and the call number when the
/// sender awaits a reply.
///
/// An [`IntoReply`] implementation receives it. Here, an acknowledgement that only a
/// caller gets; a plain sender gets nothing back:
///
/// ```
/// use gonet::{Builder, IntoReply, Reply, ReplyTo, Router, Session};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Save {
///     #[prost(string, tag = "1")]
///     text: String,
/// }
/// gonet::message!(Save = 1, prost);
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Saved {
///     #[prost(uint32, tag = "1")]
///     len: u32,
/// }
/// gonet::message!(Saved = 2, prost);
///
/// /// An acknowledgement sent only to callers.
/// struct Ack(Saved);
///
/// impl IntoReply for Ack {
///     fn into_reply(self, to: ReplyTo) -> Reply {
///         if to.is_call() { to.encode(&self.0) } else { Reply::none() }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new().route(|_: Session, save: Save| async move {
///     Ack(Saved { len: save.text.len() as u32 })
/// });
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// let saved: Saved = client.call(&Save { text: "hello".into() }).await?;
/// assert_eq!(saved.len, 5);
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ReplyTo {
    pub(crate) session: u64,
    pub(crate) codec: Codec,
    pub(crate) call: Option<u32>,
    pub(crate) max_frame_len: usize,
}

impl ReplyTo {
    /// Where the reply to a message handled outside a session's own connection goes
    /// (see [`Router::dispatch`]): encoded with `codec`, as the reply to call `call`
    /// when the sender awaits one, in frames of at most `max_frame_len` bytes.
    ///
    /// ```
    /// use gonet::{Codec, ReplyTo, frame::MAX_FRAME_LEN};
    ///
    /// let to = ReplyTo::new(Codec::Protobuf, Some(7), MAX_FRAME_LEN);
    /// assert!(to.is_call());
    /// ```
    pub fn new(codec: Codec, call: Option<u32>, max_frame_len: usize) -> Self {
        Self {
            session: 0,
            codec,
            call,
            max_frame_len,
        }
    }

    /// The call number when the sender awaits a reply.
    pub fn call(&self) -> Option<u32> {
        self.call
    }

    /// The largest frame the reply may be.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The codec the reply is encoded with.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Whether the sender awaits a reply (it used [`Session::call`]).
    pub fn is_call(&self) -> bool {
        self.call.is_some()
    }

    /// Encodes a reply: a plain frame for a plain message, a correlated reply for a call.
    ///
    /// Encoding commits the reply: called while the session runs the handler, the frame
    /// goes straight into the buffer of the session's replies, to be written when the
    /// handler's batch of messages is done.
    pub fn encode<M: Message>(&self, msg: &M) -> Reply {
        let wrap = match self.call {
            Some(call) => Wrap::Response(call),
            None => Wrap::Plain,
        };
        match wire::encode_reply(msg, self.codec, wrap, self.max_frame_len, self.session) {
            Ok(Some(frame)) => {
                crate::telemetry::message_out(M::NAME);
                Reply::frame(frame)
            }
            Ok(None) => {
                crate::telemetry::message_out(M::NAME);
                Reply(ReplyKind::Queued)
            }
            Err(e) => Reply::error(Status::internal(format!("reply not sent: {e}"))),
        }
    }
}

/// What a handler produced, ready for the wire.
///
/// Build one with [`Reply::none`], [`Reply::frame`], [`Reply::error`] or
/// [`ReplyTo::encode`], when implementing [`IntoReply`] by hand.
///
/// ```
/// use gonet::{Builder, CallError, Code, IntoReply, Reply, ReplyTo, Router, Session, Status};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Kick {
///     #[prost(string, tag = "1")]
///     by: String,
/// }
/// gonet::message!(Kick = 1, prost);
///
/// /// Whether an admin command was allowed: no answer, or the reason it was not.
/// enum Verdict {
///     Done,
///     Denied(&'static str),
/// }
///
/// impl IntoReply for Verdict {
///     fn into_reply(self, _: ReplyTo) -> Reply {
///         match self {
///             Verdict::Done => Reply::none(),
///             Verdict::Denied(why) => Reply::error(Status::permission_denied(why)),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new().route(|_: Session, kick: Kick| async move {
///     if kick.by == "admin" { Verdict::Done } else { Verdict::Denied("admins only") }
/// });
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// match client.call::<_, Kick>(&Kick { by: "guest".into() }).await {
///     Err(CallError::Status { status, .. }) => assert_eq!(status.code(), Code::PermissionDenied),
///     other => panic!("{other:?}"),
/// }
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Reply(pub(crate) ReplyKind);

///
/// Two words: the common outcome, a reply already encoded into the session's reply
/// block, travels back from the handler's future in registers.
#[derive(Debug)]
pub(crate) enum ReplyKind {
    None,
    /// A frame to queue.
    Frame(Box<Bytes>),
    /// Already encoded into the session's reply block.
    Queued,
    Error(Box<Status>),
}

impl Reply {
    /// No reply.
    pub fn none() -> Self {
        Reply(ReplyKind::None)
    }

    /// A complete frame, sent as it is.
    pub fn frame(frame: Bytes) -> Self {
        Reply(ReplyKind::Frame(Box::new(frame)))
    }

    /// An error for the caller (logged when the sender awaits no reply).
    pub fn error(status: Status) -> Self {
        Reply(ReplyKind::Error(Box::new(status)))
    }

    /// What the reply holds: nothing, a complete frame, or an error status.
    ///
    /// ```
    /// use gonet::{Reply, Replied, Status};
    ///
    /// assert!(matches!(Reply::none().into_replied(), Replied::None));
    /// let err = Reply::error(Status::not_found("no such room")).into_replied();
    /// assert!(matches!(err, Replied::Error(s) if s.message() == "no such room"));
    /// ```
    pub fn into_replied(self) -> Replied {
        match self.0 {
            // Only a handler run by its session's driver encodes into the session's
            // reply block; a reply taken apart here was made outside it.
            ReplyKind::None | ReplyKind::Queued => Replied::None,
            ReplyKind::Frame(frame) => Replied::Frame(*frame),
            ReplyKind::Error(status) => Replied::Error(*status),
        }
    }
}

/// A [`Reply`] taken apart (see [`Reply::into_replied`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Replied {
    /// No reply.
    None,
    /// One complete frame, wrapped for the caller when the message was a call.
    Frame(Bytes),
    /// An error status for the caller.
    Error(Status),
}

/// How [`Router::dispatch`] ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Dispatched {
    /// The handler ran; what it replied.
    Replied(Replied),
    /// No route claims the id and the router has no fallback.
    Unrouted,
    /// The body did not decode as the routed message.
    Decode {
        /// The routed message's name.
        name: &'static str,
        /// Why it did not decode.
        source: CodecError,
    },
    /// The handler panicked; the panic's text.
    Panicked {
        /// The routed message's name.
        name: &'static str,
        /// What the panic said.
        panic: String,
    },
}

/// What a handler may return: nothing, a message (sent back as the reply), a [`Status`]
/// or a `Result`/`Option` of these.
///
/// Implement it for a handler's own outcome type:
///
/// ```
/// use gonet::{Builder, CallError, Code, IntoReply, Reply, ReplyTo, Router, Session, Status};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Get {
///     #[prost(string, tag = "1")]
///     key: String,
/// }
/// gonet::message!(Get = 1, prost);
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Value {
///     #[prost(string, tag = "1")]
///     value: String,
/// }
/// gonet::message!(Value = 2, prost);
///
/// enum Lookup {
///     Found(String),
///     Missing(String),
/// }
///
/// impl IntoReply for Lookup {
///     fn into_reply(self, to: ReplyTo) -> Reply {
///         match self {
///             Lookup::Found(value) => Value { value }.into_reply(to),
///             Lookup::Missing(key) => Status::not_found(format!("no key {key}")).into_reply(to),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new().route(|_: Session, get: Get| async move {
///     match get.key.as_str() {
///         "color" => Lookup::Found("blue".into()),
///         _ => Lookup::Missing(get.key),
///     }
/// });
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
///
/// let found: Value = client.call(&Get { key: "color".into() }).await?;
/// assert_eq!(found.value, "blue");
/// let missing = client.call::<_, Value>(&Get { key: "size".into() }).await.unwrap_err();
/// assert!(matches!(missing, CallError::Status { ref status, .. } if status.code() == Code::NotFound));
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub trait IntoReply: Send {
    /// Turns the value into a reply for `to`.
    fn into_reply(self, to: ReplyTo) -> Reply;
}

impl IntoReply for () {
    fn into_reply(self, _: ReplyTo) -> Reply {
        Reply::none()
    }
}

impl<M: Message> IntoReply for M {
    fn into_reply(self, to: ReplyTo) -> Reply {
        to.encode(&self)
    }
}

impl IntoReply for Status {
    fn into_reply(self, _: ReplyTo) -> Reply {
        Reply::error(self)
    }
}

impl<T: IntoReply> IntoReply for Option<T> {
    fn into_reply(self, to: ReplyTo) -> Reply {
        match self {
            Some(v) => v.into_reply(to),
            None => Reply::none(),
        }
    }
}

impl<T: IntoReply, E: Into<Status> + Send> IntoReply for Result<T, E> {
    fn into_reply(self, to: ReplyTo) -> Reply {
        match self {
            Ok(v) => v.into_reply(to),
            Err(e) => Reply::error(e.into()),
        }
    }
}

/// The future of the handler a session runs. Its allocation is reused from one
/// message to the next while their futures have the same size and alignment, so a
/// message costs no allocation for its handler.
#[derive(Default)]
pub(crate) struct HandlerSlot(Option<ReusableBoxFuture<'static, Reply>>);

impl HandlerSlot {
    fn set<F: Future<Output = Reply> + Send + 'static>(&mut self, fut: F) {
        match &mut self.0 {
            Some(slot) => slot.set(fut),
            None => self.0 = Some(ReusableBoxFuture::new(fut)),
        }
    }

    /// Polls the handler started last.
    ///
    /// # Panics
    ///
    /// If no handler was ever started.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Reply> {
        self.0.as_mut().expect("a handler was started").poll(cx)
    }

    /// Lets the allocation go (between messages only).
    pub(crate) fn release(&mut self) {
        self.0 = None;
    }
}

/// Why a message's handler did not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The body did not decode as the routed message.
    Decode(CodecError),
    /// A layer rejected the message.
    Rejected(Status),
}

/// A type-erased route.
trait ErasedHandler: Send + Sync {
    /// Decodes the body and puts the handler's future in `slot`.
    fn start(
        &self,
        session: Session,
        body: Body<'_>,
        to: ReplyTo,
        slot: &mut HandlerSlot,
    ) -> Result<(), CodecError>;

    /// [`start`](Self::start) under `layers`: their `before` hooks first, their
    /// `after` hooks once the handler is done.
    fn start_layered(
        &self,
        req: Request,
        body: Body<'_>,
        to: ReplyTo,
        slot: &mut HandlerSlot,
        layers: &Layers,
    ) -> Result<(), StartError>;
}

struct FnHandler<M, F> {
    f: Arc<F>,
    _message: PhantomData<fn(M)>,
}

impl<M, F, Fut, R> ErasedHandler for FnHandler<M, F>
where
    M: Message,
    F: Fn(Session, M) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply,
{
    fn start(
        &self,
        session: Session,
        body: Body<'_>,
        to: ReplyTo,
        slot: &mut HandlerSlot,
    ) -> Result<(), CodecError> {
        let msg = M::decode_body(to.codec, body)?;
        slot.set(IntoReplyFuture {
            fut: (self.f)(session, msg),
            to,
        });
        Ok(())
    }

    fn start_layered(
        &self,
        req: Request,
        body: Body<'_>,
        to: ReplyTo,
        slot: &mut HandlerSlot,
        layers: &Layers,
    ) -> Result<(), StartError> {
        match layer::check(layers, 0, &req) {
            Checked::Passed => {
                let msg = M::decode_body(to.codec, body).map_err(|err| {
                    layer::finish(layers, &req, &Outcome::Undecodable);
                    StartError::Decode(err)
                })?;
                slot.set(Layered {
                    fut: IntoReplyFuture {
                        fut: (self.f)(req.session.clone(), msg),
                        to,
                    },
                    layers: layers.clone(),
                    req,
                });
                Ok(())
            }
            Checked::Rejected(status) => Err(StartError::Rejected(status)),
            Checked::Waits(wait, at) => {
                // The rest waits for the check: the body is kept until then.
                let (f, layers, body) = (self.f.clone(), layers.clone(), body.to_bytes());
                slot.set(async move {
                    if let Err(status) = layer::after_wait(wait, at, &layers, &req).await {
                        return Reply::error(status);
                    }
                    let msg = match M::decode_body(to.codec, Body::new(&body)) {
                        Ok(msg) => msg,
                        Err(err) => {
                            layer::finish(&layers, &req, &Outcome::Undecodable);
                            return Reply::error(Status::invalid_argument(format!(
                                "message {} ({}) does not decode: {err}",
                                req.id, req.name
                            )));
                        }
                    };
                    let fut = IntoReplyFuture {
                        fut: f(req.session.clone(), msg),
                        to,
                    };
                    Layered { fut, layers, req }.await
                });
                Ok(())
            }
        }
    }
}

trait ErasedFallback: Send + Sync {
    fn start(&self, session: Session, packet: Packet, to: ReplyTo, slot: &mut HandlerSlot);

    /// The handler's future for a packet.
    fn future(&self, session: Session, packet: Packet, to: ReplyTo) -> FallbackFuture;
}

/// The fallback's future under layers, boxed: layered fallbacks are for relays and
/// catch-alls, where one allocation per message is not what costs.
type FallbackFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

struct FnFallback<F>(F);

impl<F, Fut, R> ErasedFallback for FnFallback<F>
where
    F: Fn(Session, Packet) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoReply,
{
    fn start(&self, session: Session, packet: Packet, to: ReplyTo, slot: &mut HandlerSlot) {
        slot.set(IntoReplyFuture {
            fut: (self.0)(session, packet),
            to,
        });
    }

    fn future(&self, session: Session, packet: Packet, to: ReplyTo) -> FallbackFuture {
        Box::pin(IntoReplyFuture {
            fut: (self.0)(session, packet),
            to,
        })
    }
}

struct FnRelay<F>(F);

impl<F, Fut> ErasedFallback for FnRelay<F>
where
    F: Fn(Session, Packet, ReplyTo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    fn start(&self, session: Session, packet: Packet, to: ReplyTo, slot: &mut HandlerSlot) {
        slot.set((self.0)(session, packet, to));
    }

    fn future(&self, session: Session, packet: Packet, to: ReplyTo) -> FallbackFuture {
        Box::pin((self.0)(session, packet, to))
    }
}

impl IntoReply for Reply {
    fn into_reply(self, _: ReplyTo) -> Reply {
        self
    }
}

pin_project_lite::pin_project! {
    /// A handler's future whose output is turned into a [`Reply`] (a hand-written
    /// future: an `async` block would move the handler's future once more before its
    /// first poll).
    struct IntoReplyFuture<Fut> {
        #[pin]
        fut: Fut,
        to: ReplyTo,
    }
}

impl<Fut> Future for IntoReplyFuture<Fut>
where
    Fut: Future,
    Fut::Output: IntoReply,
{
    type Output = Reply;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = self.project();
        let to = *this.to;
        this.fut.poll(cx).map(|out| out.into_reply(to))
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
    layers: Option<Layers>,
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
    fallback_layers: Option<Layers>,
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
                f: Arc::new(handler),
                _message: PhantomData::<fn(M)>,
            }),
            layers: None,
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

    /// Handles every id that no route claims, like [`fallback`](Self::fallback), and
    /// also tells the handler where the reply goes: whether the sender awaits one, its
    /// call number and codec. Made for relays that hand a message to another process
    /// and bring back its reply.
    ///
    /// ```
    /// use gonet::{Builder, Packet, Reply, ReplyTo, Router, Session, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let router = Router::new().relay(|_: Session, packet: Packet, to: ReplyTo| async move {
    ///     if to.is_call() {
    ///         Reply::error(Status::unavailable(format!("nothing serves {}", packet.id)))
    ///     } else {
    ///         Reply::none()
    ///     }
    /// });
    /// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn relay<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Session, Packet, ReplyTo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        self.fallback = Some(Arc::new(FnRelay(handler)));
        self
    }

    /// Runs the handler of one message for `session` and returns its reply instead of
    /// queueing it: for a message that reached this process some other way than the
    /// session's own connection (a cluster node handling a message its gate relayed).
    /// A panic in the handler is caught and returned.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use gonet::{Builder, Codec, Dispatched, Replied, ReplyTo, Router, Session, Transport};
    ///
    /// #[derive(Clone, PartialEq, prost::Message)]
    /// struct Ping {
    ///     #[prost(uint32, tag = "1")]
    ///     n: u32,
    /// }
    /// gonet::message!(Ping = 1, prost);
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let router = Router::new().route(|_: Session, ping: Ping| async move { Ping { n: ping.n + 1 } });
    /// let (session, _outbox) = Builder::new().detached("127.0.0.1:9".parse().unwrap(), Transport::Tcp);
    /// let to = ReplyTo::new(Codec::Protobuf, None, gonet::frame::MAX_FRAME_LEN);
    /// let body = Bytes::from_static(&[0x08, 0x01]); // Ping { n: 1 }
    /// match router.dispatch(session, 1, body, to).await {
    ///     Dispatched::Replied(Replied::Frame(frame)) => assert_eq!(&frame[6..], [0x08, 0x02]),
    ///     other => panic!("{other:?}"),
    /// }
    /// # }
    /// ```
    pub async fn dispatch(
        &self,
        session: Session,
        id: u32,
        body: Bytes,
        to: ReplyTo,
    ) -> Dispatched {
        use futures_util::FutureExt;
        let mut slot = HandlerSlot::default();
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.start(session, id, Body::new(&body), to, &mut slot)
        }));
        let name = match started {
            Err(payload) => {
                return Dispatched::Panicked {
                    name: self.name(id).unwrap_or(UNROUTED),
                    panic: crate::codec::panic_text(&*payload),
                };
            }
            Ok(None) => return Dispatched::Unrouted,
            Ok(Some((name, Err(StartError::Decode(source))))) => {
                return Dispatched::Decode { name, source };
            }
            Ok(Some((_, Err(StartError::Rejected(status))))) => {
                return Dispatched::Replied(Replied::Error(status));
            }
            Ok(Some((name, Ok(())))) => name,
        };
        let run = std::future::poll_fn(|cx| slot.poll(cx));
        match std::panic::AssertUnwindSafe(run).catch_unwind().await {
            Ok(reply) => Dispatched::Replied(reply.into_replied()),
            Err(payload) => Dispatched::Panicked {
                name,
                panic: crate::codec::panic_text(&*payload),
            },
        }
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
            self.fallback_layers = other.fallback_layers;
        }
        self
    }

    /// Wraps every handler routed so far, and the fallback, in `layer` (see
    /// [`Layer`]): its `before` hook runs before those of the layers added earlier, its
    /// `after` hook after theirs. To layer one service only, build its router apart,
    /// layer it, and [`merge`](Self::merge) it into the others.
    pub fn layer(mut self, layer: impl Layer) -> Self {
        let layer: Arc<dyn Layer> = Arc::new(layer);
        for route in self.routes.values_mut() {
            route.layers = Some(layer::wrap(route.layers.as_ref(), layer.clone()));
        }
        if self.fallback.is_some() {
            self.fallback_layers = Some(layer::wrap(self.fallback_layers.as_ref(), layer));
        }
        self
    }

    /// Wraps the handler of message `M` in `layer` (see [`layer`](Self::layer)).
    ///
    /// # Panics
    ///
    /// If `M` is not routed (yet): a programming error, found at start-up.
    pub fn layer_on<M: Message>(mut self, layer: impl Layer) -> Self {
        let Some(route) = self.routes.get_mut(&M::ID) else {
            panic!(
                "message {} ({}) is not routed: route it before layering it",
                M::ID,
                M::NAME
            );
        };
        route.layers = Some(layer::wrap(route.layers.as_ref(), Arc::new(layer)));
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

    /// Starts handling one message: decodes it and puts its handler's future in `slot`.
    /// Returns the name the message is known by and whether it decoded, or `None` when
    /// nothing handles the id.
    pub(crate) fn start(
        &self,
        session: Session,
        id: u32,
        body: Body<'_>,
        to: ReplyTo,
        slot: &mut HandlerSlot,
    ) -> Option<(&'static str, Result<(), StartError>)> {
        if let Some(route) = self.routes.get(&id) {
            let started = match &route.layers {
                None => route
                    .handler
                    .start(session, body, to, slot)
                    .map_err(StartError::Decode),
                Some(layers) => {
                    let req = Request::new(session, id, route.name, to.call, body.len());
                    route.handler.start_layered(req, body, to, slot, layers)
                }
            };
            return Some((route.name, started));
        }
        let fallback = self.fallback.as_ref()?;
        let packet = Packet {
            id,
            body: body.to_bytes(),
        };
        let Some(layers) = &self.fallback_layers else {
            fallback.start(session, packet, to, slot);
            return Some((UNROUTED, Ok(())));
        };
        let req = Request::new(session, id, UNROUTED, to.call, packet.body.len());
        match layer::check(layers, 0, &req) {
            Checked::Passed => {
                let fut = fallback.future(req.session.clone(), packet, to);
                slot.set(Layered {
                    fut,
                    layers: layers.clone(),
                    req,
                });
            }
            Checked::Rejected(status) => {
                return Some((UNROUTED, Err(StartError::Rejected(status))));
            }
            Checked::Waits(wait, at) => {
                let (fallback, layers) = (fallback.clone(), layers.clone());
                slot.set(async move {
                    if let Err(status) = layer::after_wait(wait, at, &layers, &req).await {
                        return Reply::error(status);
                    }
                    let fut = fallback.future(req.session.clone(), packet, to);
                    Layered { fut, layers, req }.await
                });
            }
        }
        Some((UNROUTED, Ok(())))
    }
}
