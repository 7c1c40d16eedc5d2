//! [`Builder`]: configuration shared by servers and clients; [`Server`]: a running
//! listener.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::Codec;
use crate::error::{DialError, ServeError, SessionError};
use crate::frame::MAX_FRAME_LEN;
use crate::pool::SessionPool;
use crate::router::Router;
use crate::session::{CloseMode, CloseReason, Session};
use crate::transport;
use crate::url::Url;

/// What happens to a session whose handler panicked. The panic itself is always caught,
/// logged with the session, peer and message, and reported to the error hook; other
/// sessions never notice it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// Close the session with [`CloseReason::HandlerPanicked`] (the default): its state
    /// may be inconsistent after a panic.
    #[default]
    CloseSession,
    /// Skip the message and go on with the next one.
    Continue,
}

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) codec: Codec,
    pub(crate) max_frame_len: usize,
    pub(crate) inbound_queue: usize,
    pub(crate) outbound_limit: usize,
    pub(crate) write_timeout: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) panic_policy: PanicPolicy,
    pub(crate) max_sessions: usize,
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            codec: Codec::default(),
            max_frame_len: MAX_FRAME_LEN,
            inbound_queue: 128,
            outbound_limit: 4 << 20,
            write_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(10),
            panic_policy: PanicPolicy::default(),
            max_sessions: 100_000,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

type SessionHook = Arc<dyn Fn(&Session) + Send + Sync>;
type CloseHook = Arc<dyn Fn(&Session, &CloseReason) + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&Session, &SessionError) + Send + Sync>;

#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_connect: Option<SessionHook>,
    pub(crate) on_close: Option<CloseHook>,
    pub(crate) on_error: Option<ErrorHook>,
}

/// Everything the sessions of one server or client share.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) router: Router,
    pub(crate) hooks: Hooks,
    pub(crate) pool: Option<SessionPool>,
    /// Cancelled when a shutdown runs out of time: every session stops at once, even
    /// inside a handler.
    pub(crate) kill: CancellationToken,
}

/// Configures and starts servers ([`serve`](Self::serve)) and clients
/// ([`dial`](Self::dial)). Both ends are peers: a client's router handles what the
/// server pushes.
///
/// ```no_run
/// use gonet::{Builder, Codec, Router};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Builder::new()
///     .codec(Codec::Protobuf)
///     .router(Router::new())
///     .on_connect(|s| tracing::info!(session = s.id(), "connected"))
///     .serve("tcp://127.0.0.1:7000")
///     .await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// client.close("done");
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Builder {
    settings: Settings,
    router: Router,
    hooks: Hooks,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("settings", &self.settings)
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder with the defaults: the first compiled codec, 64 KiB frames, an inbound
    /// queue of 128 messages, a 4 MiB outbound limit, a 30 s write timeout, a 10 s call
    /// timeout, 100,000 sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// The codec of message bodies.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.settings.codec = codec;
        self
    }

    /// The handlers.
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// The largest frame length field accepted and sent (4 to 65535). A longer frame
    /// from the peer closes the session with a frame error.
    pub fn max_frame_len(mut self, len: usize) -> Self {
        self.settings.max_frame_len = len.clamp(crate::frame::MIN_FRAME_LEN, MAX_FRAME_LEN);
        self
    }

    /// Messages read but not yet handled, per session. When the queue is full the
    /// session stops reading its socket until the handler catches up (backpressure);
    /// nothing is dropped.
    pub fn inbound_queue(mut self, messages: usize) -> Self {
        self.settings.inbound_queue = messages.max(1);
        self
    }

    /// Bytes queued for one peer before it counts as not reading. A send that would pass
    /// the limit fails with [`SendError::QueueFull`](crate::SendError::QueueFull) and
    /// closes the session with [`CloseReason::SlowPeer`]. A single frame larger than the
    /// limit is still taken when the queue is empty.
    pub fn outbound_limit(mut self, bytes: usize) -> Self {
        self.settings.outbound_limit = bytes;
        self
    }

    /// How long one batched write (at most 64 KiB) may take. A peer that takes nothing
    /// for this long is closed with [`CloseReason::SlowPeer`].
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.settings.write_timeout = timeout;
        self
    }

    /// The default timeout of [`Session::call`].
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.settings.call_timeout = timeout;
        self
    }

    /// What happens to a session whose handler panicked.
    pub fn panic_policy(mut self, policy: PanicPolicy) -> Self {
        self.settings.panic_policy = policy;
        self
    }

    /// The most sessions a server holds; a connection over the limit is closed at once
    /// and logged. Ignored by [`dial`](Self::dial).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.settings.max_sessions = max;
        self
    }

    /// How long [`Server::shutdown`] waits for handlers to finish and replies to be
    /// written before it stops the remaining sessions at once (handlers still running
    /// are cancelled).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// Called when a session connects, before its first message is handled.
    pub fn on_connect(mut self, hook: impl Fn(&Session) + Send + Sync + 'static) -> Self {
        self.hooks.on_connect = Some(Arc::new(hook));
        self
    }

    /// Called once a session has closed, with the reason.
    pub fn on_close(
        mut self,
        hook: impl Fn(&Session, &CloseReason) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_close = Some(Arc::new(hook));
        self
    }

    /// Called for every error of a session (also logged through `tracing`).
    pub fn on_error(
        mut self,
        hook: impl Fn(&Session, &SessionError) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_error = Some(Arc::new(hook));
        self
    }

    fn shared(&self, pool: Option<SessionPool>) -> Arc<Shared> {
        Arc::new(Shared {
            settings: self.settings.clone(),
            router: self.router.clone(),
            hooks: self.hooks.clone(),
            pool,
            kill: CancellationToken::new(),
        })
    }

    /// Listens on `url` (`tcp://127.0.0.1:0` picks a free port) and serves sessions
    /// until [`Server::shutdown`] or until the `Server` is dropped.
    pub async fn serve(&self, url: &str) -> Result<Server, ServeError> {
        let parsed: Url = url.parse()?;
        let pool = SessionPool::new(self.settings.max_sessions);
        let shared = self.shared(Some(pool.clone()));
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let kill = shared.kill.clone();
        let listener =
            transport::listen(&parsed, url, shared, stop.clone(), tracker.clone()).await?;
        Ok(Server {
            kill,
            shutdown_timeout: self.settings.shutdown_timeout,
            url: parsed,
            local_addr: listener.local_addr,
            pool,
            stop,
            tracker,
            accept: Some(listener.task),
        })
    }

    /// Connects to `url` and returns the session. The builder's router handles what the
    /// server sends that is not a reply to a call.
    pub async fn dial(&self, url: &str) -> Result<Session, DialError> {
        let parsed: Url = url.parse()?;
        transport::dial(&parsed, url, self.shared(None)).await
    }
}

/// A running server. Dropping it stops accepting new connections; call
/// [`shutdown`](Self::shutdown) to also finish and close the live sessions.
pub struct Server {
    url: Url,
    local_addr: SocketAddr,
    pool: SessionPool,
    stop: CancellationToken,
    kill: CancellationToken,
    shutdown_timeout: Duration,
    tracker: TaskTracker,
    accept: Option<JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url())
            .field("sessions", &self.pool.len())
            .finish()
    }
}

impl Server {
    /// The bound address (with the real port when the URL asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients dial: the served URL with the bound address.
    pub fn url(&self) -> String {
        let mut url = format!("{}://{}", self.url.transport(), self.local_addr);
        if self.url.path() != "/" {
            url.push_str(self.url.path());
        }
        url
    }

    /// The live sessions.
    pub fn pool(&self) -> &SessionPool {
        &self.pool
    }

    /// Shuts down gracefully: stops accepting, stops reading from every session, lets
    /// every message already read be handled and every reply be written, then closes
    /// each session with [`CloseReason::ServerShutdown`]. Returns when all are closed.
    ///
    /// Sessions still busy after the shutdown timeout
    /// ([`Builder::shutdown_timeout`]) are stopped at once: running handlers are
    /// cancelled and unwritten replies dropped.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            // The accept loop ends at the cancellation; a panic there was already logged.
            let _ = accept.await;
        }
        for session in self.pool.sessions() {
            session.close_with(CloseReason::ServerShutdown, CloseMode::Graceful);
        }
        self.tracker.close();
        if tokio::time::timeout(self.shutdown_timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                sessions = self.pool.len(),
                timeout = ?self.shutdown_timeout,
                "shutdown timed out; stopping the remaining sessions"
            );
            self.kill.cancel();
            self.tracker.wait().await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
