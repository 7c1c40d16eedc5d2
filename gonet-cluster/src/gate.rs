//! A node as a gate: the clients connected to its gonet servers, their users and
//! groups, and relaying their messages to the nodes that serve them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_nats::Subscriber;
use futures_util::StreamExt;
use gonet::{Builder, CloseReason, Packet, Reply, ReplyTo, Router, Session, Status};
use prost::Message as _;
use tokio::task::AbortHandle;

use crate::envelope::{Bound, Closed, Control, Forward, Forwarded, Kick, Op, UserMsg, UserOp};
use crate::node::{Node, lock, status_of};
use crate::{Member, Route, SessionData};

/// Which session holds a user, and since when.
#[derive(Debug)]
pub(crate) struct Binding {
    session: u64,
    stamp: u64,
    /// The task reading the user's subject.
    sub: Option<AbortHandle>,
}

impl Drop for Binding {
    fn drop(&mut self) {
        if let Some(sub) = &self.sub {
            sub.abort();
        }
    }
}

/// The clients of this node's gonet servers.
#[derive(Debug, Default)]
pub(crate) struct Local {
    pub(crate) sessions: HashMap<u64, Session>,
    users: HashMap<Arc<str>, Binding>,
    groups: HashMap<Arc<str>, HashSet<u64>>,
    joined: HashMap<u64, Vec<Arc<str>>>,
}

impl Local {
    pub(crate) fn group_sessions(&self, group: &str) -> Vec<Session> {
        self.groups
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id).cloned())
            .collect()
    }
}

/// The node a session stays on, per node type ([`Route::Sticky`]).
#[derive(Clone, Default)]
struct Sticky(Arc<Mutex<HashMap<Arc<str>, Arc<str>>>>);

/// FNV-1a: the same on every node and every build.
fn fnv(key: u64, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.to_le_bytes().iter().chain(node.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Node {
    /// Makes a gonet server of this node a gate of the cluster: messages whose ids
    /// `router` does not route are relayed to the node serving them, and its sessions
    /// become reachable from every node (push, call, kick, users, groups).
    ///
    /// `router` keeps the messages this node handles itself; its fallback, if any, is
    /// replaced by the relay.
    ///
    /// ```no_run
    /// # async fn demo(node: gonet_cluster::Node) -> Result<(), Box<dyn std::error::Error>> {
    /// let server = node
    ///     .gate(gonet::Builder::new(), gonet::Router::new())
    ///     .serve("tcp://127.0.0.1:0")
    ///     .await?;
    /// # drop(server);
    /// # Ok(()) }
    /// ```
    pub fn gate(&self, builder: Builder, router: Router) -> Builder {
        let relay = self.clone();
        let connect = self.clone();
        let close = self.clone();
        let bind = self.clone();
        builder
            .router(
                router.relay(move |session: Session, packet: Packet, to: ReplyTo| {
                    let node = relay.clone();
                    async move { node.relay(session, packet, to).await }
                }),
            )
            .on_connect(move |s| connect.local_connect(s))
            .on_close(move |s, r| close.local_close(s, r))
            .on_bind(move |s, uid| bind.local_bind(s, uid))
    }

    fn local_connect(&self, session: &Session) {
        session.insert(self.node_ref());
        lock(&self.inner.local)
            .sessions
            .insert(session.id(), session.clone());
    }

    fn local_close(&self, session: &Session, reason: &CloseReason) {
        let id = session.id();
        let uid = session.uid();
        {
            let mut local = lock(&self.inner.local);
            local.sessions.remove(&id);
            for group in local.joined.remove(&id).unwrap_or_default() {
                if let Some(members) = local.groups.get_mut(&group) {
                    members.remove(&id);
                    if members.is_empty() {
                        local.groups.remove(&group);
                    }
                }
            }
            if let Some(uid) = &uid
                && local.users.get(uid).is_some_and(|b| b.session == id)
            {
                local.users.remove(uid);
            }
        }
        self.publish_closed(Closed {
            node: self.inner.id.to_string(),
            session: id,
            uid: uid.map(|u| u.to_string()),
            reason: match reason {
                CloseReason::Local(why) => why.to_string(),
                other => other.to_string(),
            },
        });
    }

    fn local_bind(&self, session: &Session, uid: &str) {
        let stamp = self.next_stamp();
        let id = session.id();
        let uid: Arc<str> = uid.into();
        let need_sub = {
            let mut local = lock(&self.inner.local);
            let mut sub = None;
            if let Some(mut old) = local.users.remove(&uid) {
                if old.session != id
                    && let Some(older) = local.sessions.get(&old.session)
                {
                    older.close_replaced();
                }
                sub = old.sub.take();
            }
            let need_sub = sub.is_none();
            local.users.insert(
                uid.clone(),
                Binding {
                    session: id,
                    stamp,
                    sub,
                },
            );
            need_sub
        };
        self.publish_bound(
            Bound {
                uid: uid.to_string(),
                node: self.inner.id.to_string(),
                session: id,
                stamp,
            },
            need_sub,
        );
    }

    /// The user's subscription is in place: keep it with the binding, and read it.
    pub(crate) fn user_subscribed(&self, uid: &str, sub: Subscriber) {
        let node = self.clone();
        let uid_owned: Arc<str> = uid.into();
        let mut local = lock(&self.inner.local);
        let Some(binding) = local.users.get_mut(uid).filter(|b| b.sub.is_none()) else {
            // Unbound meanwhile, or another bind subscribed first: this one is not needed.
            return;
        };
        let task = tokio::spawn(async move { node.user_in(uid_owned, sub).await });
        binding.sub = Some(task.abort_handle());
    }

    async fn user_in(self, uid: Arc<str>, mut sub: Subscriber) {
        while let Some(msg) = sub.next().await {
            let Ok(UserMsg { op: Some(op) }) = UserMsg::decode(msg.payload) else {
                continue;
            };
            let reply_to = msg.reply;
            match op {
                UserOp::Bound(b) => {
                    if !self.other_login(&uid, b).await {
                        // The user is no longer here: stop reading its subject.
                        return;
                    }
                }
                UserOp::Push(bodies) => {
                    let session = self.user_session(&uid);
                    if let Some(session) = session
                        && let Err(status) = self.push_local(&session, &bodies)
                    {
                        tracing::debug!(%uid, %status, "push to user not delivered");
                    }
                }
                UserOp::Kick(reason) => {
                    if let Some(session) = self.user_session(&uid) {
                        session.close(reason);
                    }
                }
                UserOp::Call(bodies) => {
                    let (Some(to), Some(session)) = (reply_to, self.user_session(&uid)) else {
                        continue;
                    };
                    // Answered from a task: the client may take its time.
                    let node = self.clone();
                    self.spawn(async move {
                        let reply = node.call_local(&session, &bodies).await;
                        node.publish(to.to_string(), reply.encode_to_vec()).await;
                    });
                }
            }
        }
    }

    fn user_session(&self, uid: &str) -> Option<Session> {
        let local = lock(&self.inner.local);
        let binding = local.users.get(uid)?;
        local.sessions.get(&binding.session).cloned()
    }

    /// Another node bound a session to a user this node has a session of: the older
    /// login goes, whichever node learns of the other first. False once this node no
    /// longer holds the user.
    async fn other_login(&self, uid: &Arc<str>, b: Bound) -> bool {
        if *b.node == *self.inner.id {
            return true;
        }
        let our_stamp = {
            let mut local = lock(&self.inner.local);
            let Some(ours) = local.users.get(uid) else {
                return false;
            };
            let mine = (ours.stamp, &*self.inner.id, ours.session);
            let theirs = (b.stamp, b.node.as_str(), b.session);
            if mine < theirs {
                if let Some(session) = local.sessions.get(&ours.session) {
                    session.close_replaced();
                }
                // This task ends itself, and the subscription with it, on return
                // rather than being aborted by the binding's drop.
                if let Some(mut binding) = local.users.remove(uid) {
                    binding.sub.take();
                }
                return false;
            }
            ours.stamp
        };
        let msg = Control {
            session: b.session,
            op: Some(Op::Kick(Kick {
                reason: "replaced".into(),
                replaced_by: Some(our_stamp),
            })),
        };
        self.publish(self.inner.subjects.control(&b.node), msg.encode_to_vec())
            .await;
        true
    }

    /// A newer login (bound with `stamp`) replaced the user of `session`.
    pub(crate) fn kick_replaced(&self, session: &Session, stamp: u64) {
        let Some(uid) = session.uid() else { return };
        let mut local = lock(&self.inner.local);
        let older = local
            .users
            .get(&uid)
            .is_some_and(|b| b.session == session.id() && b.stamp < stamp);
        if older {
            session.close_replaced();
            local.users.remove(&uid);
        }
    }

    pub(crate) fn join_local(&self, session: &Session, group: &str) {
        let mut local = lock(&self.inner.local);
        if !local.sessions.contains_key(&session.id()) {
            return;
        }
        let group: Arc<str> = group.into();
        if local
            .groups
            .entry(group.clone())
            .or_default()
            .insert(session.id())
        {
            local.joined.entry(session.id()).or_default().push(group);
        }
    }

    pub(crate) fn leave_local(&self, session: &Session, group: &str) {
        let mut local = lock(&self.inner.local);
        let id = session.id();
        if let Some(members) = local.groups.get_mut(group) {
            members.remove(&id);
            if members.is_empty() {
                local.groups.remove(group);
            }
        }
        if let Some(joined) = local.joined.get_mut(&id) {
            joined.retain(|g| &**g != group);
        }
    }

    /// The node a message `id` of `session` goes to, among the live nodes serving it
    /// and not in `tried`.
    fn pick(&self, session: &Session, id: u32, tried: &[Arc<str>]) -> Option<Arc<str>> {
        let mut candidates: Vec<Member> = lock(&self.inner.members)
            .nodes
            .values()
            .map(|seen| &seen.member)
            .filter(|m| m.serves(id) && !m.draining && !tried.contains(&m.id))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return None;
        }
        candidates.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
        let kind = candidates[0].kind.clone();
        candidates.retain(|m| m.kind == kind);
        let random = |n: usize| rand::random_range(0..n);
        let index = match self.inner.routes.get(&*kind).unwrap_or(&Route::Sticky) {
            Route::Random => random(candidates.len()),
            Route::Hash(key) => {
                let key = key(session, id);
                let scores = candidates.iter().map(|m| fnv(key, &m.id));
                let best = scores.enumerate().max_by_key(|(_, score)| *score);
                best.map_or(0, |(i, _)| i)
            }
            Route::Custom(pick) => pick(session, id, &candidates)
                .filter(|i| *i < candidates.len())
                .unwrap_or_else(|| random(candidates.len())),
            Route::Sticky => {
                let sticky = match session.get::<Sticky>() {
                    Some(sticky) => sticky,
                    None => {
                        let sticky = Sticky::default();
                        session.insert(sticky.clone());
                        sticky
                    }
                };
                let mut chosen = lock(&sticky.0);
                match chosen
                    .get(&kind)
                    .and_then(|node| candidates.iter().position(|m| m.id == *node))
                {
                    Some(i) => i,
                    None => {
                        let i = random(candidates.len());
                        chosen.insert(kind, candidates[i].id.clone());
                        i
                    }
                }
            }
        };
        Some(candidates[index].id.clone())
    }

    /// Relays a message of a client of this gate to the node serving its id, and
    /// hands back that node's reply as if it were local.
    async fn relay(self, session: Session, packet: Packet, to: ReplyTo) -> Reply {
        // The message's metadata goes with it to the node that handles it.
        let meta = gonet::Metadata::current();
        let mut tried: Vec<Arc<str>> = Vec::new();
        loop {
            let Some(target) = self.pick(&session, packet.id, &tried) else {
                let status = if tried.is_empty() {
                    Status::unavailable(format!("no live node serves message {}", packet.id))
                } else {
                    Status::unavailable(format!(
                        "every node serving message {} is gone ({})",
                        packet.id,
                        tried.join(", ")
                    ))
                };
                return Reply::error(status);
            };
            let fwd = Forward {
                session: session.id(),
                gate: self.inner.id.to_string(),
                codec: session.codec().to_string(),
                transport: session.transport().scheme().to_owned(),
                peer: session.peer_addr().to_string(),
                call: to.call(),
                id: packet.id,
                body: packet.body.clone(),
                uid: session.uid().map(|u| u.to_string()),
                data: session
                    .get::<SessionData>()
                    .filter(|d| !d.is_empty())
                    .map(|d| d.snapshot())
                    .unwrap_or_default(),
                max_frame_len: u32::try_from(to.max_frame_len()).unwrap_or(u32::MAX),
                metadata: meta
                    .iter()
                    .flat_map(|m| m.iter())
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            };
            let subject = self.inner.subjects.forward(&target);
            match self
                .request(&target, subject, fwd.encode_to_vec(), "relayed message")
                .await
            {
                Ok(payload) => return self.relayed(&session, &target, payload),
                Err(crate::ClusterError::NodeGone { .. }) => {
                    // Nothing received it: safe to hand it to another node.
                    tried.push(target);
                }
                Err(err) => {
                    return Reply::error(Status::unavailable(format!(
                        "message {} to node {target}: {err}",
                        packet.id
                    )));
                }
            }
        }
    }

    fn relayed(&self, session: &Session, target: &str, payload: bytes::Bytes) -> Reply {
        let out = match Forwarded::decode(payload) {
            Ok(out) => out,
            Err(err) => {
                tracing::warn!(node = target, error = %err, "undecodable answer to a relayed message");
                return Reply::error(Status::internal(format!(
                    "undecodable answer from node {target}: {err}"
                )));
            }
        };
        for frame in out.frames {
            if session.send_frame(frame).is_err() {
                break;
            }
        }
        if out.data_changed {
            SessionData::of(session).reset(out.data);
        }
        if let Some(uid) = out.bind {
            session.bind(uid);
        }
        let reply = match (out.reply, out.error) {
            (Some(frame), _) => Reply::frame(frame),
            (None, Some(status)) => Reply::error(status_of(status)),
            (None, None) => Reply::none(),
        };
        if let Some(reason) = out.close {
            // A closing session still sends the reply of the message being handled.
            session.close(reason);
        }
        reply
    }
}
