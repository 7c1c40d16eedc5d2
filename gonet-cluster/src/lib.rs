#![doc = include_str!("lib.md")]
#![warn(missing_docs)]

mod data;
mod envelope;
mod error;
mod gate;
mod members;
mod node;
mod remote;
mod subject;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gonet::{Codec, Router, Session};

pub use data::SessionData;
pub use error::ClusterError;
pub use members::Member;
pub use node::Node;
pub use remote::Remote;

/// A session's address in the whole cluster: the node it is connected to and its id
/// there.
///
/// ```
/// let addr = gonet_cluster::SessionAddr::new("gate-1", 42);
/// assert_eq!(addr.to_string(), "gate-1/42");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionAddr {
    /// The id of the node the client is connected to.
    pub node: Arc<str>,
    /// The session's id on that node.
    pub session: u64,
}

impl SessionAddr {
    /// The session `session` of node `node`.
    pub fn new(node: impl Into<Arc<str>>, session: u64) -> Self {
        Self {
            node: node.into(),
            session,
        }
    }
}

impl fmt::Display for SessionAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.session)
    }
}

/// What a node learns about the cluster, from [`Node::events`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A node joined (or came back after being lost).
    NodeJoined(Member),
    /// A node left or was lost.
    NodeLeft {
        /// Its id.
        node: Arc<str>,
        /// How its leaving was noticed.
        why: LeftReason,
    },
    /// A session was bound to a user ([`Session::bind`]) on some node.
    SessionBound {
        /// The session.
        addr: SessionAddr,
        /// The user id.
        uid: Arc<str>,
    },
    /// A session closed on some node, or was lost with its node.
    SessionClosed {
        /// The session.
        addr: SessionAddr,
        /// The user it was bound to.
        uid: Option<Arc<str>>,
        /// Why, as text (the node's close reason, or "node lost").
        reason: String,
    },
}

/// How a node's leaving was noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeftReason {
    /// It said goodbye (it drained, or stopped cleanly).
    Left,
    /// Its heartbeats stopped for longer than the dead-after interval.
    Silent,
    /// A request to it found nothing listening (NATS "no responders").
    NoResponders,
}

/// A key of a session's message for [`Route::Hash`].
pub type Key = dyn Fn(&Session, u32) -> u64 + Send + Sync;

/// A user's routing function: picks one of `candidates` (live nodes of one type that
/// serve message `id`) for a message of `session`; `None` picks at random.
pub type Pick = dyn Fn(&Session, u32, &[Member]) -> Option<usize> + Send + Sync;

/// How a gate picks the node of a type for a session's message.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Route {
    /// A random node the first time, then the same node for the session as long as it
    /// lives (so state such as a room stays on one node). The default.
    #[default]
    Sticky,
    /// A random node for every message.
    Random,
    /// The node a key of the session picks by rendezvous hashing: every gate picks the
    /// same node for the same key, and only the keys of a node that leaves move.
    Hash(Arc<Key>),
    /// User code.
    Custom(Arc<Pick>),
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Route::Sticky => "Sticky",
            Route::Random => "Random",
            Route::Hash(_) => "Hash",
            Route::Custom(_) => "Custom",
        })
    }
}

/// Configures a node and joins it to a cluster ([`join`](Self::join)).
///
/// ```no_run
/// use gonet::{Router, Session};
/// use gonet_cluster::Cluster;
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Enter {
///     #[prost(string, tag = "1")]
///     room: String,
/// }
/// gonet::message!(Enter = 10, prost);
///
/// # async fn demo() -> Result<(), gonet_cluster::ClusterError> {
/// // A backend node serving Enter to the gates of cluster "game".
/// let rooms = Router::new().route(|_: Session, enter: Enter| async move { enter });
/// let node = Cluster::new("game")
///     .node_id("room-1")
///     .kind("room")
///     .serve(rooms)
///     .join("nats://127.0.0.1:4222")
///     .await?;
/// # drop(node);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Cluster {
    pub(crate) name: String,
    pub(crate) id: Option<String>,
    pub(crate) kind: String,
    pub(crate) heartbeat: Duration,
    pub(crate) dead_after: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) codecs: Vec<Codec>,
    pub(crate) router: Router,
    pub(crate) routes: Vec<(String, Route)>,
    pub(crate) handlers: gonet::Builder,
}

impl Cluster {
    /// A node of cluster `name` (nodes of one cluster share a NATS server and a name).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            id: None,
            kind: "node".into(),
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            codecs: vec![Codec::default()],
            router: Router::new(),
            routes: Vec::new(),
            handlers: gonet::Builder::new(),
        }
    }

    /// The node's id, unique in the cluster (default: its type and a random suffix).
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The node's type, such as `gate` or `room` (default `node`).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// How often the node says it is alive (default 1 s).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// How long a node may stay silent before the others count it lost (default 3 s).
    pub fn dead_after(mut self, after: Duration) -> Self {
        self.dead_after = after;
        self
    }

    /// How long a request to another node may take (default 5 s); a relayed call that
    /// takes longer ends with `DEADLINE_EXCEEDED`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The codecs clients of the cluster use (default: gonet's default codec). A push
    /// or broadcast is encoded once in each, and every node picks the body of its
    /// session's codec.
    pub fn codecs(mut self, codecs: impl IntoIterator<Item = Codec>) -> Self {
        self.codecs = codecs.into_iter().collect();
        self
    }

    /// The services this node serves to the clients of every gate: the routes of
    /// `router` (generated `XServer`s or hand-written), run here for messages a gate
    /// relays.
    pub fn serve(mut self, router: Router) -> Self {
        self.router = self.router.merge(router);
        self
    }

    /// How gates pick among nodes of type `kind` (default [`Route::Sticky`]).
    pub fn route(mut self, kind: impl Into<String>, route: Route) -> Self {
        self.routes.push((kind.into(), route));
        self
    }

    /// Settings for the sessions handlers of this node see for clients of other nodes
    /// (panic policy, frame size): a [`gonet::Builder`] whose router and codec are
    /// ignored.
    pub fn handler_settings(mut self, builder: gonet::Builder) -> Self {
        self.handlers = builder;
        self
    }

    /// Connects to NATS at `url` and joins the cluster: the node starts its heartbeats
    /// and learns the members already there.
    pub async fn join(self, url: &str) -> Result<Node, ClusterError> {
        Node::start(self, url).await
    }
}
