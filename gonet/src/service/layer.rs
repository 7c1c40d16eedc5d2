//! Middleware around handlers: a [`Layer`] sees every message its routes handle,
//! before the handler runs (and may answer in its place, or run async code first) and
//! after it finished (with what came of it).
//!
//! Layers are added to a [`Router`](crate::Router) and wrap the handlers routed so far
//! (so a router built for one service, layered, then merged into another, layers that
//! service only), or the handler of one message id. A route without layers costs
//! nothing more than before; a layered one allocates nothing per message unless a
//! layer waits on async code.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::service::router::{Reply, ReplyKind};
use crate::session::Session;
use crate::wire::Status;

/// A boxed future of a layer's async check.
pub type BeforeFuture = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// What a layer decides before a handler runs.
#[non_exhaustive]
pub enum Before {
    /// Run the handler (or the next layer).
    Continue,
    /// Do not run the handler: a caller receives this status; a plain message is
    /// dropped and the status reported to the error hook.
    Reject(Status),
    /// Run this async check first: `Ok` goes on, `Err` rejects. Costs one allocation
    /// for the message that waits.
    Wait(BeforeFuture),
}

impl Before {
    /// Waits on `check` before the handler runs.
    pub fn wait(check: impl Future<Output = Result<(), Status>> + Send + 'static) -> Self {
        Before::Wait(Box::pin(check))
    }
}

impl fmt::Debug for Before {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Before::Continue => f.write_str("Continue"),
            Before::Reject(status) => f.debug_tuple("Reject").field(status).finish(),
            Before::Wait(_) => f.write_str("Wait(..)"),
        }
    }
}

/// One message as a layer sees it.
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) session: Session,
    pub(crate) id: u32,
    pub(crate) name: &'static str,
    pub(crate) call: Option<u32>,
    pub(crate) len: usize,
    pub(crate) started: Instant,
}

impl Request {
    pub(crate) fn new(
        session: Session,
        id: u32,
        name: &'static str,
        call: Option<u32>,
        len: usize,
    ) -> Self {
        Request {
            session,
            id,
            name,
            call,
            len,
            started: Instant::now(),
        }
    }

    /// The session the message came on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The message id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The message's name (its type's, or the fallback's
    /// [`UNROUTED`](crate::UNROUTED)).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the sender awaits a reply.
    pub fn is_call(&self) -> bool {
        self.call.is_some()
    }

    /// The length of the message's body, still encoded.
    pub fn body_len(&self) -> usize {
        self.len
    }

    /// The message's metadata, as its sender set it (see
    /// [`Metadata`](crate::Metadata)).
    pub fn metadata(&self) -> Option<Arc<crate::Metadata>> {
        crate::Metadata::current()
    }

    /// Time since the first layer saw the message.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// What came of a message, as a layer's [`after`](Layer::after) sees it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The handler replied (or sent nothing to a plain message).
    Replied,
    /// The handler answered a caller with an error, or failed on a plain message.
    Failed(&'a Status),
    /// A layer rejected the message with this status; the handler did not run.
    Rejected(&'a Status),
    /// The body did not decode as the routed message; the handler did not run.
    Undecodable,
    /// The handler panicked.
    Panicked,
}

/// Middleware around handlers (see [`Router::layer`](crate::Router::layer)).
///
/// Both hooks have defaults that do nothing, so a layer implements only what it needs.
/// Hooks run on the session's task: keep them short, and put slow checks in a
/// [`Before::Wait`].
///
/// An auth check that reads the session's bound user, and a timing layer:
///
/// ```
/// use gonet::{Before, Builder, Code, Layer, Outcome, Request, Router, Session, Status};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Ping {
///     #[prost(uint32, tag = "1")]
///     n: u32,
/// }
/// gonet::message!(Ping = 1, prost);
///
/// /// Only sessions bound to a user get through.
/// struct LoggedIn;
///
/// impl Layer for LoggedIn {
///     fn before(&self, req: &Request) -> Before {
///         match req.session().uid() {
///             Some(_) => Before::Continue,
///             None => Before::Reject(Status::unauthenticated("log in first")),
///         }
///     }
/// }
///
/// /// Logs how long each handler took.
/// struct Timing;
///
/// impl Layer for Timing {
///     fn after(&self, req: &Request, outcome: &Outcome<'_>) {
///         tracing::info!(message = req.name(), took = ?req.elapsed(), ?outcome, "handled");
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new()
///     .route(|_: Session, ping: Ping| async move { ping })
///     .layer(LoggedIn)
///     .layer(Timing);
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// let err = client.call::<_, Ping>(&Ping { n: 1 }).await.unwrap_err();
/// assert_eq!(err.status().map(|s| s.code()), Some(Code::Unauthenticated));
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub trait Layer: Send + Sync + 'static {
    /// Runs before the handler.
    fn before(&self, req: &Request) -> Before {
        let _ = req;
        Before::Continue
    }

    /// Runs once the message is done with, whatever came of it.
    fn after(&self, req: &Request, outcome: &Outcome<'_>) {
        let _ = (req, outcome);
    }
}

/// A layer on what leaves the sessions of a server or client (see
/// [`Builder::outbound`](crate::Builder::outbound)): every application frame queued for
/// a peer (sends, pushes, broadcasts, calls, replies; not the framework's own frames
/// such as heartbeats) passes through it, whole (header and body), before it is queued.
/// It returns the frame to queue: the same one to observe (auditing, counting), or
/// another whole frame (a transformed body, which the peer must understand).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use bytes::Bytes;
/// use gonet::{Outbound, Session};
///
/// /// Counts the bytes each message id sends.
/// #[derive(Default)]
/// struct Audit(AtomicU64);
///
/// impl Outbound for Audit {
///     fn frame(&self, session: &Session, id: u32, frame: Bytes) -> Bytes {
///         self.0.fetch_add(frame.len() as u64, Ordering::Relaxed);
///         tracing::trace!(session = session.id(), id, len = frame.len(), "out");
///         frame
///     }
/// }
///
/// let server = gonet::Builder::new().outbound(Audit::default());
/// ```
pub trait Outbound: Send + Sync + 'static {
    /// Sees one whole frame with message id `id` (the envelope's id for a call or a
    /// reply) about to be queued for `session`; returns the frame to queue.
    fn frame(&self, session: &Session, id: u32, frame: bytes::Bytes) -> bytes::Bytes;
}

/// The outbound layers of a server or client, in the order added.
pub(crate) type OutboundLayers = Arc<[Arc<dyn Outbound>]>;

/// The layers of one route, outermost first.
pub(crate) type Layers = Arc<[Arc<dyn Layer>]>;

/// Adds `layer` outside `layers`.
pub(crate) fn wrap(layers: Option<&Layers>, layer: Arc<dyn Layer>) -> Layers {
    let mut all: Vec<Arc<dyn Layer>> = vec![layer];
    if let Some(inner) = layers {
        all.extend(inner.iter().cloned());
    }
    all.into()
}

/// The result of the layers' synchronous checks.
pub(crate) enum Checked {
    /// Every layer let the message through.
    Passed,
    /// Layer `at` rejected it (its `after` and those of the layers outside it have run).
    Rejected(Status),
    /// Layer `at` waits on async code; the layers inside it are still to run.
    Waits(BeforeFuture, usize),
}

/// Runs the `before` hooks from layer `from` on.
pub(crate) fn check(layers: &Layers, from: usize, req: &Request) -> Checked {
    for (at, layer) in layers.iter().enumerate().skip(from) {
        match layer.before(req) {
            Before::Continue => {}
            Before::Reject(status) => {
                finish(&layers[..=at], req, &Outcome::Rejected(&status));
                return Checked::Rejected(status);
            }
            Before::Wait(check) => return Checked::Waits(check, at),
        }
    }
    Checked::Passed
}

/// Waits on the check of layer `at`, then runs the `before` hooks of the layers inside
/// it, waiting where one waits.
pub(crate) async fn after_wait(
    wait: BeforeFuture,
    at: usize,
    layers: &Layers,
    req: &Request,
) -> Result<(), Status> {
    if let Err(status) = wait.await {
        finish(&layers[..=at], req, &Outcome::Rejected(&status));
        return Err(status);
    }
    check_all(layers, at + 1, req).await
}

/// Runs the `before` hooks from layer `from` on, waiting where a layer waits.
async fn check_all(layers: &Layers, mut from: usize, req: &Request) -> Result<(), Status> {
    loop {
        match check(layers, from, req) {
            Checked::Passed => return Ok(()),
            Checked::Rejected(status) => return Err(status),
            Checked::Waits(wait, at) => {
                if let Err(status) = wait.await {
                    finish(&layers[..=at], req, &Outcome::Rejected(&status));
                    return Err(status);
                }
                from = at + 1;
            }
        }
    }
}

/// Runs the `after` hooks of `layers`, innermost first.
pub(crate) fn finish(layers: &[Arc<dyn Layer>], req: &Request, outcome: &Outcome<'_>) {
    for layer in layers.iter().rev() {
        layer.after(req, outcome);
    }
}

/// What a reply says to the `after` hooks.
pub(crate) fn outcome_of(reply: &Reply) -> Outcome<'_> {
    match &reply.0 {
        ReplyKind::Error(status) => Outcome::Failed(status),
        _ => Outcome::Replied,
    }
}

pin_project_lite::pin_project! {
    /// A handler's future under layers: their `after` hooks run when it is done (or
    /// panics).
    pub(crate) struct Layered<Fut> {
        #[pin]
        pub(crate) fut: Fut,
        pub(crate) layers: Layers,
        pub(crate) req: Request,
    }
}

impl<Fut: Future<Output = Reply>> Future for Layered<Fut> {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = self.project();
        let fut = this.fut;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(reply)) => {
                finish(this.layers, this.req, &outcome_of(&reply));
                Poll::Ready(reply)
            }
            Err(payload) => {
                finish(this.layers, this.req, &Outcome::Panicked);
                std::panic::resume_unwind(payload)
            }
        }
    }
}
