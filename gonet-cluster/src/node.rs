//! [`Node`]: one member of a cluster: its NATS link, heartbeats and membership, the
//! remote sessions it runs handlers for, and the operations on sessions, users and
//! groups anywhere in the cluster.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{Client, ConnectOptions, Event, Request, RequestErrorKind, Subscriber};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use gonet::{
    Codec, Dispatched, Message, Outbox, Replied, ReplyTo, Router, Session, Status, Transport,
};
use prost::Message as _;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::envelope::{
    Bodies, Bound, Closed, Control, ControlReply, Forward, Forwarded, GroupCast, Heartbeat, Kick,
    Op, StatusMsg, UserMsg, UserOp,
};
use crate::gate::Local;
use crate::members::{Change, Members};
use crate::subject::Subjects;
use crate::{
    Cluster, ClusterError, ClusterEvent, LeftReason, Member, Remote, Route, SessionAddr,
    SessionData,
};

/// A client session of another node: its gate and its id there.
type RemoteKey = (Arc<str>, u64);
/// Sessions of other nodes heard of, by node: their bound user.
type Known = HashMap<Arc<str>, HashMap<u64, Option<Arc<str>>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under these locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a node keeps the handle of a client of another node that sent it nothing.
const REMOTE_IDLE: Duration = Duration::from_secs(600);

/// A client session of another node that this node runs handlers for.
pub(crate) struct RemoteEntry {
    pub(crate) session: Session,
    outbox: Outbox,
    /// Held while a relayed message is handled: frames the handler sends leave with
    /// its reply, not on their own.
    turn: tokio::sync::Mutex<()>,
    /// The client's gate reported it closed (or was lost): nothing to tell it.
    gate_gone: AtomicBool,
    /// Heartbeat ticks since a relayed message of it was last handled.
    idle_ticks: AtomicU64,
}

pub(crate) struct Inner {
    pub(crate) id: Arc<str>,
    pub(crate) kind: Arc<str>,
    pub(crate) subjects: Subjects,
    pub(crate) client: Client,
    pub(crate) heartbeat: Duration,
    pub(crate) dead_after: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) codecs: Vec<Codec>,
    pub(crate) routes: HashMap<String, Route>,
    router: Router,
    served: Vec<u32>,
    handlers: gonet::Builder,
    pub(crate) members: Mutex<Members>,
    members_tx: watch::Sender<Vec<Member>>,
    events: broadcast::Sender<ClusterEvent>,
    pub(crate) local: Mutex<Local>,
    remotes: Mutex<HashMap<RemoteKey, Arc<RemoteEntry>>>,
    /// Sessions of other nodes this node heard of (bind events): reported closed when
    /// their node is lost.
    known: Mutex<Known>,
    draining: AtomicBool,
    inflight: AtomicUsize,
    idle: Notify,
    linked: AtomicBool,
    pub(crate) stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
    stamp: AtomicU64,
}

/// A member of a cluster; a cheap, cloneable handle.
///
/// A node can be a gate (clients connect to its gonet servers: see
/// [`gate`](Self::gate)), a backend (it serves message ids to the clients of every
/// gate: [`Cluster::serve`]), or both. Any node can reach any session, user or group
/// of the cluster.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

/// The node a session belongs to, kept with the session (weakly: the node holds its
/// sessions).
#[derive(Clone)]
pub(crate) struct NodeRef(std::sync::Weak<Inner>);

/// Counts a relayed message in flight (for draining).
struct InFlight<'a>(&'a Inner);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

fn status_msg(status: &Status) -> StatusMsg {
    StatusMsg {
        code: u32::from(status.code().to_u16()),
        message: status.message().to_owned(),
    }
}

pub(crate) fn status_of(msg: StatusMsg) -> Status {
    let code = u16::try_from(msg.code).unwrap_or(u16::MAX);
    Status::new(gonet::Code::from_u16(code), msg.message)
}

fn transport_of(scheme: &str) -> Transport {
    match scheme {
        "udp" => Transport::Udp,
        "ws" => Transport::Ws,
        "wss" => Transport::Wss,
        "quic" => Transport::Quic,
        "kcp" => Transport::Kcp,
        _ => Transport::Tcp,
    }
}

/// The metadata a message sent from another node came with, if any.
fn metadata_of(bodies: &Bodies) -> Option<gonet::Metadata> {
    (!bodies.metadata.is_empty()).then(|| {
        let mut meta = gonet::Metadata::new();
        for (k, v) in &bodies.metadata {
            meta.insert(k.as_str(), v.as_str());
        }
        meta
    })
}

/// The span of a push or call relayed to a client for another node: it carries the
/// trace id of the message whose handler sent it, so one request can be followed
/// across nodes in the logs.
fn relay_span(
    kind: &'static str,
    bodies: &Bodies,
    meta: Option<&gonet::Metadata>,
) -> tracing::Span {
    let span = tracing::debug_span!("relay", kind, id = bodies.id, name = %bodies.name, trace = tracing::field::Empty);
    if let Some(trace) = meta.and_then(gonet::Metadata::trace_id) {
        span.record("trace", trace);
    }
    span
}

/// The body of `bodies` in `codec`.
pub(crate) fn body_for(bodies: &Bodies, codec: Codec) -> Option<&Bytes> {
    let name = codec.to_string();
    bodies
        .codecs
        .iter()
        .position(|c| *c == name)
        .and_then(|i| bodies.bodies.get(i))
}

impl Node {
    pub(crate) async fn start(cfg: Cluster, url: &str) -> Result<Node, ClusterError> {
        let id: Arc<str> = match cfg.id {
            Some(id) => id.into(),
            None => format!("{}-{:08x}", cfg.kind, rand::random::<u32>()).into(),
        };
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let client = ConnectOptions::new()
            .name(format!("gonet {} {}", cfg.name, id))
            .request_timeout(Some(cfg.request_timeout))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((25u64 << attempt.min(6)).min(1000))
            })
            .event_callback(move |event| {
                let tx = link_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(url)
            .await
            .map_err(|source| ClusterError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let subjects = Subjects::new(&cfg.name);
        let subscribe = |subject: String| {
            let client = client.clone();
            async move {
                client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|source| ClusterError::Subscribe { subject, source })
            }
        };
        let hb = subscribe(subjects.heartbeat()).await?;
        let fwd = subscribe(subjects.forward(&id)).await?;
        let control = subscribe(subjects.control(&id)).await?;
        let groups = subscribe(subjects.groups()).await?;
        let events = subscribe(subjects.events()).await?;
        let served = cfg.router.ids();
        let inner = Arc::new(Inner {
            kind: cfg.kind.as_str().into(),
            id,
            subjects,
            client,
            heartbeat: cfg.heartbeat,
            dead_after: cfg.dead_after,
            request_timeout: cfg.request_timeout,
            codecs: cfg.codecs,
            routes: cfg.routes.into_iter().collect(),
            router: cfg.router,
            served,
            handlers: cfg.handlers,
            members: Mutex::new(Members::default()),
            members_tx: watch::Sender::new(Vec::new()),
            events: broadcast::Sender::new(1024),
            local: Mutex::new(Local::default()),
            remotes: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            linked: AtomicBool::new(true),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            stamp: AtomicU64::new(0),
        });
        let node = Node { inner };
        node.spawn(Self::heartbeats_in(node.clone(), hb));
        node.spawn(Self::ticks(node.clone()));
        node.spawn(Self::forwards_in(node.clone(), fwd));
        node.spawn(Self::controls_in(node.clone(), control));
        node.spawn(Self::groups_in(node.clone(), groups));
        node.spawn(Self::events_in(node.clone(), events));
        node.spawn(Self::link_events(node.clone(), link_rx));
        node.send_heartbeat(true, false).await;
        tracing::info!(node = %node.inner.id, kind = %node.inner.kind, "joined the cluster");
        Ok(node)
    }

    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let stop = self.inner.stop.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = fut => {}
            }
        });
    }

    /// The node of `session`: the gate a client is connected to, or the node running a
    /// handler for a client of another node. Lets a handler reach the cluster.
    ///
    /// ```
    /// use gonet::{Session, Status};
    /// use gonet_cluster::Node;
    ///
    /// async fn shout(session: Session) -> Result<(), Status> {
    ///     let node = Node::of(&session).ok_or_else(|| Status::internal("not in a cluster"))?;
    ///     let _ = node.id();
    ///     Ok(())
    /// }
    /// # drop(shout);
    /// ```
    pub fn of(session: &Session) -> Option<Node> {
        let NodeRef(weak) = session.get::<NodeRef>()?;
        weak.upgrade().map(|inner| Node { inner })
    }

    pub(crate) fn node_ref(&self) -> NodeRef {
        NodeRef(Arc::downgrade(&self.inner))
    }

    /// The node's id.
    pub fn id(&self) -> &Arc<str> {
        &self.inner.id
    }

    /// The node's type.
    pub fn kind(&self) -> &Arc<str> {
        &self.inner.kind
    }

    /// The other live nodes of the cluster, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        lock(&self.inner.members).list()
    }

    /// The other live nodes, watched: the receiver sees every change (for waiting
    /// until a node joined or left).
    ///
    /// ```
    /// # async fn demo(node: gonet_cluster::Node) {
    /// let mut members = node.watch_members();
    /// // Wait until a room node is there.
    /// members.wait_for(|m| m.iter().any(|m| &*m.kind == "room")).await.unwrap();
    /// # }
    /// ```
    pub fn watch_members(&self) -> watch::Receiver<Vec<Member>> {
        self.inner.members_tx.subscribe()
    }

    /// What happens in the cluster from now on: nodes joining and leaving, sessions
    /// bound and closed anywhere.
    pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        self.inner.events.subscribe()
    }

    /// The NATS client the node uses (for the application's own subjects).
    pub fn nats(&self) -> &Client {
        &self.inner.client
    }

    /// The cluster-wide address of `session`: a client of this node's gate, or the
    /// client behind a session a relayed message was handled with.
    pub fn addr(&self, session: &Session) -> SessionAddr {
        match Remote::of(session) {
            Some(remote) => remote.addr,
            None => SessionAddr::new(self.inner.id.clone(), session.id()),
        }
    }

    fn publish_members(&self) {
        let list = lock(&self.inner.members).list();
        self.inner.members_tx.send_replace(list);
    }

    fn emit(&self, event: ClusterEvent) {
        // No receiver is not an error.
        let _ = self.inner.events.send(event);
    }

    pub(crate) async fn publish(&self, subject: String, payload: Vec<u8>) {
        if let Err(err) = self
            .inner
            .client
            .publish(subject.clone(), payload.into())
            .await
        {
            tracing::warn!(%subject, error = %err, "cluster publish failed");
        }
    }

    async fn send_heartbeat(&self, hello: bool, leaving: bool) {
        let hb = Heartbeat {
            node: self.inner.id.to_string(),
            kind: self.inner.kind.to_string(),
            ids: self.inner.served.clone(),
            draining: self.inner.draining.load(Ordering::Relaxed),
            leaving,
            hello,
        };
        self.publish(self.inner.subjects.heartbeat(), hb.encode_to_vec())
            .await;
    }

    async fn heartbeats_in(self, mut sub: Subscriber) {
        while let Some(msg) = sub.next().await {
            let Ok(hb) = Heartbeat::decode(msg.payload) else {
                tracing::warn!("undecodable heartbeat ignored");
                continue;
            };
            if hb.node.is_empty() {
                tracing::warn!("heartbeat without a node id ignored");
                continue;
            }
            if *hb.node == *self.inner.id {
                continue;
            }
            if hb.leaving {
                self.node_lost(&hb.node, LeftReason::Left);
                continue;
            }
            let member = Member::from_heartbeat(&hb);
            let change = lock(&self.inner.members).heard(member.clone(), Instant::now());
            if change != Change::Same {
                self.publish_members();
            }
            if change == Change::Joined {
                tracing::info!(node = %member.id, kind = %member.kind, "node joined");
                self.emit(ClusterEvent::NodeJoined(member));
            }
            if hb.hello || change == Change::Joined {
                // Let a newcomer (or a node back from a NATS outage) know us at once.
                self.send_heartbeat(false, false).await;
            }
        }
    }

    async fn ticks(self) {
        let mut tick = tokio::time::interval(self.inner.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.inner.linked.load(Ordering::Acquire) {
                // Others are not silent: this node cannot hear anyone.
                continue;
            }
            self.send_heartbeat(false, false).await;
            let Some(deadline) = Instant::now().checked_sub(self.inner.dead_after) else {
                continue;
            };
            let gone = lock(&self.inner.members).sweep(deadline);
            for node in gone {
                self.lost(&node, LeftReason::Silent);
            }
            self.forget_idle_remotes();
        }
    }

    async fn link_events(self, mut rx: mpsc::UnboundedReceiver<Event>) {
        while let Some(event) = rx.recv().await {
            match event {
                Event::Disconnected => {
                    tracing::warn!(node = %self.inner.id, "NATS link lost; reconnecting");
                    self.inner.linked.store(false, Ordering::Release);
                }
                Event::Connected => {
                    tracing::info!(node = %self.inner.id, "NATS link up");
                    lock(&self.inner.members).refresh(Instant::now());
                    self.inner.linked.store(true, Ordering::Release);
                    self.send_heartbeat(true, false).await;
                }
                other => tracing::debug!(event = %other, "NATS event"),
            }
        }
    }

    /// Forgets a node that left or was lost.
    pub(crate) fn node_lost(&self, node: &str, why: LeftReason) {
        let removed = lock(&self.inner.members).nodes.remove(node).is_some();
        if removed {
            self.lost(node, why);
        }
    }

    /// A node (already removed from the members) is gone: close the sessions of its
    /// clients this node runs handlers for and report its sessions closed.
    fn lost(&self, node: &str, why: LeftReason) {
        tracing::info!(node, ?why, "node left");
        self.publish_members();
        let node: Arc<str> = node.into();
        self.emit(ClusterEvent::NodeLeft {
            node: node.clone(),
            why,
        });
        let mut closed: HashMap<u64, Option<Arc<str>>> =
            lock(&self.inner.known).remove(&node).unwrap_or_default();
        let entries: Vec<Arc<RemoteEntry>> = {
            let mut remotes = lock(&self.inner.remotes);
            let keys: Vec<_> = remotes.keys().filter(|k| k.0 == node).cloned().collect();
            keys.iter().filter_map(|k| remotes.remove(k)).collect()
        };
        for entry in entries {
            entry.gate_gone.store(true, Ordering::Release);
            closed
                .entry(Remote::of(&entry.session).map_or(0, |r| r.addr.session))
                .or_insert_with(|| entry.session.uid());
            entry.session.close("its node was lost");
        }
        if why == LeftReason::Left {
            // A node that drained closed its sessions itself and said so.
            return;
        }
        for (session, uid) in closed {
            self.emit(ClusterEvent::SessionClosed {
                addr: SessionAddr::new(node.clone(), session),
                uid,
                reason: "node lost".into(),
            });
        }
    }

    /// Lets go of the handles of remote clients that sent nothing for the remote idle
    /// time: normally their gate reports them closed, but a report lost in a NATS outage
    /// must not keep them forever. A later message of such a client starts afresh (its
    /// [`SessionData`] lives at its gate and comes with the message).
    fn forget_idle_remotes(&self) {
        let limit = (REMOTE_IDLE.as_millis() / self.inner.heartbeat.as_millis().max(1)) as u64;
        let idle: Vec<Arc<RemoteEntry>> = {
            let mut remotes = lock(&self.inner.remotes);
            let keys: Vec<RemoteKey> = remotes
                .iter()
                .filter(|(_, e)| e.idle_ticks.fetch_add(1, Ordering::Relaxed) + 1 >= limit.max(1))
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| remotes.remove(k)).collect()
        };
        for entry in idle {
            entry.gate_gone.store(true, Ordering::Release);
            entry.session.close("idle on this node");
        }
    }

    async fn events_in(self, mut sub: Subscriber) {
        while let Some(msg) = sub.next().await {
            if msg.subject.ends_with(".bind") {
                let Ok(b) = Bound::decode(msg.payload) else {
                    tracing::warn!("undecodable bind event ignored");
                    continue;
                };
                if b.node.is_empty() || b.uid.is_empty() {
                    tracing::warn!("bind event without a node or user ignored");
                    continue;
                }
                let node: Arc<str> = b.node.as_str().into();
                let uid: Arc<str> = b.uid.as_str().into();
                if node != self.inner.id {
                    lock(&self.inner.known)
                        .entry(node.clone())
                        .or_default()
                        .insert(b.session, Some(uid.clone()));
                }
                self.emit(ClusterEvent::SessionBound {
                    addr: SessionAddr::new(node, b.session),
                    uid,
                });
            } else {
                let Ok(c) = Closed::decode(msg.payload) else {
                    tracing::warn!("undecodable close event ignored");
                    continue;
                };
                if c.node.is_empty() {
                    tracing::warn!("close event without a node ignored");
                    continue;
                }
                let node: Arc<str> = c.node.as_str().into();
                if let Some(sessions) = lock(&self.inner.known).get_mut(&node) {
                    sessions.remove(&c.session);
                }
                let entry = lock(&self.inner.remotes).remove(&(node.clone(), c.session));
                if let Some(entry) = entry {
                    entry.gate_gone.store(true, Ordering::Release);
                    entry.session.close(c.reason.clone());
                }
                self.emit(ClusterEvent::SessionClosed {
                    addr: SessionAddr::new(node, c.session),
                    uid: c.uid.map(Into::into),
                    reason: c.reason,
                });
            }
        }
    }

    async fn forwards_in(self, mut sub: Subscriber) {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply else { continue };
            self.inner.inflight.fetch_add(1, Ordering::AcqRel);
            let node = self.clone();
            let mut handling = Box::pin(async move {
                let _inflight = InFlight(&node.inner);
                let out = match Forward::decode(msg.payload) {
                    Ok(fwd) => node.handle_forward(fwd).await,
                    Err(err) => Forwarded {
                        error: Some(status_msg(&Status::invalid_argument(format!(
                            "undecodable relayed message: {err}"
                        )))),
                        ..Forwarded::default()
                    },
                };
                node.publish(reply.to_string(), out.encode_to_vec()).await;
            });
            // A handler that finishes at once is answered from here, without a task of
            // its own (a hand-off between threads is most of a relayed call's cost
            // here); one that waits goes on in a task, so other sessions' messages do
            // not wait behind it.
            let done = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(handling.as_mut().poll(cx).is_ready())
            })
            .await;
            if !done {
                self.inner.tasks.spawn(handling);
            }
        }
    }

    fn remote_entry(&self, fwd: &Forward) -> Arc<RemoteEntry> {
        let key: RemoteKey = (fwd.gate.as_str().into(), fwd.session);
        let mut remotes = lock(&self.inner.remotes);
        if let Some(entry) = remotes.get(&key) {
            return entry.clone();
        }
        let codec = fwd.codec.parse::<Codec>().unwrap_or_default();
        let peer: SocketAddr = fwd
            .peer
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (session, outbox) = self
            .inner
            .handlers
            .clone()
            .codec(codec)
            .detached(peer, transport_of(&fwd.transport));
        session.insert(Remote {
            addr: SessionAddr::new(key.0.clone(), key.1),
        });
        session.insert(self.node_ref());
        let entry = Arc::new(RemoteEntry {
            session,
            outbox,
            turn: tokio::sync::Mutex::new(()),
            gate_gone: AtomicBool::new(false),
            idle_ticks: AtomicU64::new(0),
        });
        remotes.insert(key.clone(), entry.clone());
        drop(remotes);
        self.spawn(self.clone().remote_out(key, entry.clone()));
        entry
    }

    /// Carries what a remote session sends outside a relayed message's handling (from
    /// a task of the application, a timer, ...) to the client's gate, and its close.
    async fn remote_out(self, key: RemoteKey, entry: Arc<RemoteEntry>) {
        let control = self.inner.subjects.control(&key.0);
        loop {
            let open = entry.outbox.ready().await;
            let turn = entry.turn.lock().await;
            let mut frames = Vec::new();
            entry.outbox.try_take(&mut frames);
            drop(turn);
            if !frames.is_empty() && !entry.gate_gone.load(Ordering::Acquire) {
                let msg = Control {
                    session: key.1,
                    op: Some(Op::Frames(crate::envelope::Frames { frames })),
                };
                self.publish(control.clone(), msg.encode_to_vec()).await;
            }
            if !open {
                break;
            }
        }
        if !entry.gate_gone.load(Ordering::Acquire) {
            let reason = entry
                .session
                .close_reason()
                .map(|r| match r {
                    gonet::CloseReason::Local(why) => why.to_string(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            let msg = Control {
                session: key.1,
                op: Some(Op::Kick(Kick {
                    reason,
                    replaced_by: None,
                })),
            };
            self.publish(control, msg.encode_to_vec()).await;
        }
        let mut remotes = lock(&self.inner.remotes);
        if remotes.get(&key).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
            remotes.remove(&key);
        }
    }

    async fn handle_forward(&self, fwd: Forward) -> Forwarded {
        let entry = self.remote_entry(&fwd);
        let _turn = entry.turn.lock().await;
        entry.idle_ticks.store(0, Ordering::Relaxed);
        let session = entry.session.clone();
        let data = SessionData::of(&session);
        data.reset(fwd.data);
        if let Some(uid) = fwd.uid.as_deref()
            && session.uid().as_deref() != Some(uid)
        {
            session.bind(uid);
        }
        let uid_before = session.uid();
        let to = ReplyTo::new(session.codec(), fwd.call, fwd.max_frame_len as usize);
        let id = fwd.id;
        let meta = (!fwd.metadata.is_empty()).then(|| {
            let mut meta = gonet::Metadata::new();
            for (k, v) in &fwd.metadata {
                meta.insert(k.as_str(), v.as_str());
            }
            Arc::new(meta)
        });
        let span = tracing::debug_span!(
            "relayed",
            id,
            gate = %fwd.gate,
            session = fwd.session,
            trace = tracing::field::Empty
        );
        if let Some(trace) = meta.as_deref().and_then(gonet::Metadata::trace_id) {
            span.record("trace", trace);
        }
        #[cfg(feature = "otel")]
        if let Some(meta) = meta.as_deref() {
            gonet::otel::continue_trace(&span, meta);
        }
        let dispatch = self
            .inner
            .router
            .dispatch(session.clone(), id, fwd.body, to);
        let outcome =
            tracing::Instrument::instrument(gonet::Metadata::scope(meta, dispatch), span).await;
        let mut out = Forwarded::default();
        entry.outbox.try_take(&mut out.frames);
        match outcome {
            Dispatched::Replied(Replied::Frame(frame)) => out.reply = Some(frame),
            Dispatched::Replied(Replied::Error(status)) => out.error = Some(status_msg(&status)),
            Dispatched::Replied(_) => {}
            Dispatched::Unrouted => {
                out.error = Some(status_msg(&Status::unimplemented(format!(
                    "node {} does not serve message {id}",
                    self.inner.id
                ))));
            }
            Dispatched::Decode { name, source } => {
                out.error = Some(status_msg(&Status::invalid_argument(format!(
                    "message {name} did not decode: {source}"
                ))));
            }
            Dispatched::Panicked { name, panic } => {
                tracing::error!(
                    node = %self.inner.id, session = %fwd.gate, id, name, panic,
                    "handler of a relayed message panicked"
                );
                out.error = Some(status_msg(&Status::internal(format!(
                    "handler of {name} panicked"
                ))));
                session.close("handler panicked");
            }
            _ => {}
        }
        if let Some(map) = data.take_changes() {
            out.data = map;
            out.data_changed = true;
        }
        let uid_after = session.uid();
        if uid_after != uid_before {
            out.bind = uid_after.map(|u| u.to_string());
        }
        if let Some(reason) = session.close_reason() {
            out.close = Some(match reason {
                gonet::CloseReason::Local(why) => why.to_string(),
                other => other.to_string(),
            });
        }
        out
    }

    async fn controls_in(self, mut sub: Subscriber) {
        while let Some(msg) = sub.next().await {
            let node = self.clone();
            self.inner.tasks.spawn(async move {
                let reply = match Control::decode(msg.payload) {
                    Ok(ctl) => node.handle_control(ctl).await,
                    Err(err) => ControlReply {
                        error: Some(status_msg(&Status::invalid_argument(format!(
                            "undecodable control message: {err}"
                        )))),
                        ..ControlReply::default()
                    },
                };
                if let Some(to) = msg.reply {
                    node.publish(to.to_string(), reply.encode_to_vec()).await;
                }
            });
        }
    }

    async fn handle_control(&self, ctl: Control) -> ControlReply {
        let fail = |status: Status| ControlReply {
            error: Some(status_msg(&status)),
            ..ControlReply::default()
        };
        let Some(session) = lock(&self.inner.local).sessions.get(&ctl.session).cloned() else {
            return fail(Status::not_found(format!(
                "no session {} on node {}",
                ctl.session, self.inner.id
            )));
        };
        match ctl.op {
            None => fail(Status::invalid_argument(
                "control message without an operation",
            )),
            Some(Op::Push(bodies)) => match self.push_local(&session, &bodies) {
                Ok(()) => ControlReply::default(),
                Err(status) => fail(status),
            },
            Some(Op::Frames(frames)) => {
                for frame in frames.frames {
                    if session.send_frame(frame).is_err() {
                        break;
                    }
                }
                ControlReply::default()
            }
            Some(Op::Call(bodies)) => self.call_local(&session, &bodies).await,
            Some(Op::Kick(kick)) => {
                match kick.replaced_by {
                    Some(stamp) => self.kick_replaced(&session, stamp),
                    None => session.close(kick.reason),
                }
                ControlReply::default()
            }
            Some(Op::Join(group)) => {
                self.join_local(&session, &group);
                ControlReply::default()
            }
            Some(Op::Leave(group)) => {
                self.leave_local(&session, &group);
                ControlReply::default()
            }
        }
    }

    /// Calls a client of this node for another node, and makes the answer.
    pub(crate) async fn call_local(&self, session: &Session, bodies: &Bodies) -> ControlReply {
        let fail = |status: Status| ControlReply {
            error: Some(status_msg(&status)),
            ..ControlReply::default()
        };
        let codec = session.codec();
        let Some(body) = body_for(bodies, codec) else {
            return fail(Status::failed_precondition(format!(
                "session {} uses codec {codec}, which the call was not encoded in",
                session.id()
            )));
        };
        let meta = metadata_of(bodies);
        let span = relay_span("call", bodies, meta.as_ref());
        let call = async {
            match &meta {
                Some(meta) => {
                    session
                        .call_raw_with(bodies.id, body, self.inner.request_timeout, meta)
                        .await
                }
                None => {
                    session
                        .call_raw(bodies.id, body, self.inner.request_timeout)
                        .await
                }
            }
        };
        match tracing::Instrument::instrument(call, span).await {
            Ok(reply) => ControlReply {
                error: None,
                id: reply.id,
                body: reply.body,
                codec: codec.to_string(),
            },
            Err(gonet::CallError::Status { status, .. }) => fail(status),
            Err(err) => fail(Status::unavailable(err.to_string())),
        }
    }

    pub(crate) fn push_local(&self, session: &Session, bodies: &Bodies) -> Result<(), Status> {
        let codec = session.codec();
        let Some(body) = body_for(bodies, codec) else {
            return Err(Status::failed_precondition(format!(
                "session {} uses codec {codec}, which {} was not encoded in",
                session.id(),
                bodies.name
            )));
        };
        let meta = metadata_of(bodies);
        let _span = relay_span("push", bodies, meta.as_ref()).entered();
        match &meta {
            Some(meta) => session.send_raw_with(bodies.id, body, meta),
            None => session.send_raw(bodies.id, body),
        }
        .map_err(|e| Status::unavailable(e.to_string()))
    }

    async fn groups_in(self, mut sub: Subscriber) {
        while let Some(msg) = sub.next().await {
            let Ok(cast) = GroupCast::decode(msg.payload) else {
                tracing::warn!("undecodable group broadcast ignored");
                continue;
            };
            let Some(bodies) = cast.bodies else { continue };
            let members = lock(&self.inner.local).group_sessions(&cast.group);
            // One frame per codec, shared by every member using it.
            let mut frames: Vec<(Codec, Bytes)> = Vec::new();
            for session in members {
                let codec = session.codec();
                let frame = match frames.iter().find(|(c, _)| *c == codec) {
                    Some((_, frame)) => frame.clone(),
                    None => {
                        let Some(body) = body_for(&bodies, codec) else {
                            continue;
                        };
                        let Ok(frame) = gonet::frame::encode_frame(bodies.id, body) else {
                            continue;
                        };
                        frames.push((codec, frame.clone()));
                        frame
                    }
                };
                let _ = session.send_frame(frame);
            }
        }
    }

    pub(crate) fn next_stamp(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut prev = self.inner.stamp.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self.inner.stamp.compare_exchange_weak(
                prev,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }

    fn encode_bodies<M: Message>(&self, msg: &M) -> Result<Bodies, ClusterError> {
        let mut bodies = Bodies {
            id: M::ID,
            name: M::NAME.to_owned(),
            ..Bodies::default()
        };
        // Sent while handling a message: what it came with goes on (its trace id).
        if let Some(meta) = gonet::Metadata::current() {
            bodies.metadata = meta
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        }
        for codec in &self.inner.codecs {
            let mut buf = BytesMut::new();
            msg.encode_body(*codec, &mut buf)
                .map_err(|source| ClusterError::Codec {
                    name: M::NAME,
                    source,
                })?;
            bodies.codecs.push(codec.to_string());
            bodies.bodies.push(buf.freeze());
        }
        Ok(bodies)
    }

    fn local_session(&self, addr: &SessionAddr) -> Result<Session, ClusterError> {
        lock(&self.inner.local)
            .sessions
            .get(&addr.session)
            .cloned()
            .ok_or_else(|| ClusterError::NoSuchSession { addr: addr.clone() })
    }

    /// A request to another node, with the node's timeout and typed failures.
    pub(crate) async fn request(
        &self,
        node: &str,
        subject: String,
        payload: Vec<u8>,
        name: &'static str,
    ) -> Result<Bytes, ClusterError> {
        let request = Request::new()
            .payload(payload.into())
            .timeout(Some(self.inner.request_timeout));
        #[cfg(feature = "metrics")]
        let started = gonet::codegen::metrics_on().then(std::time::Instant::now);
        let answer = self.inner.client.send_request(subject, request).await;
        #[cfg(feature = "metrics")]
        if let Some(started) = started {
            let outcome = match &answer {
                Ok(_) => "ok",
                Err(err) => match err.kind() {
                    RequestErrorKind::NoResponders => "no_responders",
                    RequestErrorKind::TimedOut => "timeout",
                    _ => "error",
                },
            };
            metrics::counter!("gonet_cluster_requests_total", "kind" => name, "outcome" => outcome)
                .increment(1);
            metrics::histogram!("gonet_cluster_request_seconds", "kind" => name)
                .record(started.elapsed().as_secs_f64());
        }
        match answer {
            Ok(msg) => Ok(msg.payload),
            Err(err) => Err(match err.kind() {
                RequestErrorKind::NoResponders => {
                    self.node_lost(node, LeftReason::NoResponders);
                    ClusterError::NodeGone {
                        node: node.to_owned(),
                    }
                }
                RequestErrorKind::TimedOut => ClusterError::Timeout {
                    node: node.to_owned(),
                    after: self.inner.request_timeout,
                },
                RequestErrorKind::MaxPayloadExceeded => ClusterError::TooLarge {
                    name,
                    detail: err.to_string(),
                },
                _ => ClusterError::Link(err.to_string()),
            }),
        }
    }

    async fn control(
        &self,
        addr: &SessionAddr,
        op: Op,
        name: &'static str,
    ) -> Result<ControlReply, ClusterError> {
        let msg = Control {
            session: addr.session,
            op: Some(op),
        };
        let subject = self.inner.subjects.control(&addr.node);
        let payload = self
            .request(&addr.node, subject, msg.encode_to_vec(), name)
            .await?;
        let reply = ControlReply::decode(payload).map_err(|e| ClusterError::BadAnswer {
            node: addr.node.to_string(),
            detail: e.to_string(),
        })?;
        match reply.error {
            None => Ok(reply),
            Some(status) if status.code == u32::from(gonet::Code::NotFound.to_u16()) => {
                Err(ClusterError::NoSuchSession { addr: addr.clone() })
            }
            Some(status) => Err(ClusterError::Status {
                status: status_of(status),
            }),
        }
    }

    /// Sends `msg` to the session at `addr`, on whatever node it is connected to.
    /// Returns once its node has queued it.
    pub async fn push<M: Message>(&self, addr: &SessionAddr, msg: &M) -> Result<(), ClusterError> {
        if addr.node == self.inner.id {
            let session = self.local_session(addr)?;
            return session.send(msg).map_err(|e| ClusterError::Status {
                status: Status::unavailable(e.to_string()),
            });
        }
        let bodies = self.encode_bodies(msg)?;
        self.control(addr, Op::Push(bodies), M::NAME)
            .await
            .map(drop)
    }

    /// Calls the client of the session at `addr` and waits for its typed reply.
    pub async fn call<Req: Message, Resp: Message>(
        &self,
        addr: &SessionAddr,
        req: &Req,
    ) -> Result<Resp, ClusterError> {
        if addr.node == self.inner.id {
            let session = self.local_session(addr)?;
            return session
                .call_timeout(req, self.inner.request_timeout)
                .await
                .map_err(|e| match e {
                    gonet::CallError::Status { status, .. } => ClusterError::Status { status },
                    other => ClusterError::Status {
                        status: Status::unavailable(other.to_string()),
                    },
                });
        }
        let bodies = self.encode_bodies(req)?;
        let reply = self.control(addr, Op::Call(bodies), Req::NAME).await?;
        Self::call_answer::<Req, Resp>(&addr.node, reply)
    }

    /// The typed reply of a call answered by node `node`.
    fn call_answer<Req: Message, Resp: Message>(
        node: &str,
        reply: ControlReply,
    ) -> Result<Resp, ClusterError> {
        if reply.id != Resp::ID {
            return Err(ClusterError::BadAnswer {
                node: node.to_owned(),
                detail: format!(
                    "{} was answered with message {}, not {} ({})",
                    Req::NAME,
                    reply.id,
                    Resp::ID,
                    Resp::NAME
                ),
            });
        }
        let codec = reply.codec.parse::<Codec>().unwrap_or_default();
        Resp::decode_body(codec, gonet::Body::new(&reply.body)).map_err(|source| {
            ClusterError::Codec {
                name: Resp::NAME,
                source,
            }
        })
    }

    /// Calls the session bound to user `uid` ([`Session::bind`]), wherever it is
    /// connected, and waits for its typed reply.
    pub async fn call_user<Req: Message, Resp: Message>(
        &self,
        uid: &str,
        req: &Req,
    ) -> Result<Resp, ClusterError> {
        let user = UserMsg {
            op: Some(UserOp::Call(self.encode_bodies(req)?)),
        };
        let subject = self.inner.subjects.user(uid);
        let request = Request::new()
            .payload(user.encode_to_vec().into())
            .timeout(Some(self.inner.request_timeout));
        let payload = match self.inner.client.send_request(subject, request).await {
            Ok(msg) => msg.payload,
            Err(err) => {
                return Err(match err.kind() {
                    RequestErrorKind::NoResponders => ClusterError::NoSuchUser {
                        uid: uid.to_owned(),
                    },
                    RequestErrorKind::TimedOut => ClusterError::Timeout {
                        node: format!("of user {uid}"),
                        after: self.inner.request_timeout,
                    },
                    RequestErrorKind::MaxPayloadExceeded => ClusterError::TooLarge {
                        name: Req::NAME,
                        detail: err.to_string(),
                    },
                    _ => ClusterError::Link(err.to_string()),
                });
            }
        };
        let reply = ControlReply::decode(payload).map_err(|e| ClusterError::BadAnswer {
            node: format!("of user {uid}"),
            detail: e.to_string(),
        })?;
        if let Some(status) = reply.error {
            return Err(ClusterError::Status {
                status: status_of(status),
            });
        }
        Self::call_answer::<Req, Resp>(&format!("of user {uid}"), reply)
    }

    /// Closes the session at `addr` with `reason` (its close reason is
    /// [`CloseReason::Local`](gonet::CloseReason::Local)).
    pub async fn kick(&self, addr: &SessionAddr, reason: &str) -> Result<(), ClusterError> {
        if addr.node == self.inner.id {
            self.local_session(addr)?.close(reason);
            return Ok(());
        }
        let op = Op::Kick(Kick {
            reason: reason.to_owned(),
            replaced_by: None,
        });
        self.control(addr, op, "kick").await.map(drop)
    }

    /// Adds the session at `addr` to `group`, on its node.
    pub async fn join(&self, addr: &SessionAddr, group: &str) -> Result<(), ClusterError> {
        if addr.node == self.inner.id {
            let session = self.local_session(addr)?;
            self.join_local(&session, group);
            return Ok(());
        }
        self.control(addr, Op::Join(group.to_owned()), "join")
            .await
            .map(drop)
    }

    /// Takes the session at `addr` out of `group`.
    pub async fn leave(&self, addr: &SessionAddr, group: &str) -> Result<(), ClusterError> {
        if addr.node == self.inner.id {
            let session = self.local_session(addr)?;
            self.leave_local(&session, group);
            return Ok(());
        }
        self.control(addr, Op::Leave(group.to_owned()), "leave")
            .await
            .map(drop)
    }

    /// Sends `msg` to every member of `group`, wherever they are connected: one NATS
    /// publish, and each node encodes the frame once per codec for its members.
    pub async fn broadcast<M: Message>(&self, group: &str, msg: &M) -> Result<(), ClusterError> {
        let cast = GroupCast {
            group: group.to_owned(),
            bodies: Some(self.encode_bodies(msg)?),
        };
        self.inner
            .client
            .publish(
                self.inner.subjects.group(group),
                cast.encode_to_vec().into(),
            )
            .await
            .map_err(|e| ClusterError::Link(e.to_string()))
    }

    /// Sends `msg` to the session bound to user `uid` ([`Session::bind`]), wherever it
    /// is connected. Nothing happens when the user has no session.
    pub async fn push_user<M: Message>(&self, uid: &str, msg: &M) -> Result<(), ClusterError> {
        let user = UserMsg {
            op: Some(UserOp::Push(self.encode_bodies(msg)?)),
        };
        self.inner
            .client
            .publish(self.inner.subjects.user(uid), user.encode_to_vec().into())
            .await
            .map_err(|e| ClusterError::Link(e.to_string()))
    }

    /// Closes the session bound to user `uid`, wherever it is connected.
    pub async fn kick_user(&self, uid: &str, reason: &str) -> Result<(), ClusterError> {
        let user = UserMsg {
            op: Some(UserOp::Kick(reason.to_owned())),
        };
        self.inner
            .client
            .publish(self.inner.subjects.user(uid), user.encode_to_vec().into())
            .await
            .map_err(|e| ClusterError::Link(e.to_string()))
    }

    /// Whether the node is draining (see [`drain`](Self::drain)).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Leaves the cluster gracefully: the node tells the others it drains (gates stop
    /// relaying new messages to it), finishes the relayed messages it is handling,
    /// says goodbye and closes its NATS link. Stop the node's gonet servers
    /// ([`gonet::Server::shutdown`]) beside it for its own clients.
    pub async fn drain(&self) {
        self.inner.draining.store(true, Ordering::Release);
        self.send_heartbeat(false, false).await;
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.inflight.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        self.send_heartbeat(false, true).await;
        let _ = self.inner.client.flush().await;
        self.inner.stop.cancel();
        self.inner.tasks.close();
        let _ = self.inner.client.drain().await;
        tracing::info!(node = %self.inner.id, "left the cluster");
    }

    pub(crate) fn publish_bound(&self, bound: Bound, need_sub: bool) {
        let node = self.clone();
        self.spawn(async move {
            let uid = bound.uid.clone();
            if need_sub {
                match node
                    .inner
                    .client
                    .subscribe(node.inner.subjects.user(&uid))
                    .await
                {
                    Ok(sub) => node.user_subscribed(&uid, sub),
                    Err(err) => tracing::warn!(uid, error = %err, "user subscription failed"),
                }
            }
            let user = UserMsg {
                op: Some(UserOp::Bound(bound.clone())),
            };
            node.publish(node.inner.subjects.user(&uid), user.encode_to_vec())
                .await;
            node.publish(node.inner.subjects.bind_event(), bound.encode_to_vec())
                .await;
        });
    }

    pub(crate) fn publish_closed(&self, closed: Closed) {
        let node = self.clone();
        self.spawn(async move {
            node.publish(node.inner.subjects.close_event(), closed.encode_to_vec())
                .await;
        });
    }
}
