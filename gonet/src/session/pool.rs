//! [`SessionPool`]: every live session of a server, and named groups of them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::codec::Codec;
use crate::session::Session;
use crate::session::error::SendError;
use crate::session::limit::{IpLimit, IpTable, Refusal};
use crate::session::outbound::PushError;
use crate::wire::{self, Message, Wrap};

type Members = HashMap<u64, Session>;

#[derive(Default)]
struct Inner {
    sessions: RwLock<Members>,
    /// User id -> the session bound to it (see `Session::bind`).
    users: RwLock<HashMap<Arc<str>, Session>>,
    groups: RwLock<HashMap<Arc<str>, Members>>,
    limit: usize,
    /// Limits per remote address.
    ip: Option<IpTable>,
    /// Connections refused at the limit, logged once per interval.
    refused: crate::session::throttle::LogEvery,
}

/// The registry of a server's live sessions.
///
/// Sessions enter when they connect and leave when they close. Broadcasts encode the
/// message once per codec in use and queue the same buffer on every recipient.
///
/// ```
/// use gonet::{Builder, Router, Session};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Join {
///     #[prost(string, tag = "1")]
///     room: String,
/// }
/// gonet::message!(Join = 1, prost);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let router = Router::new().route(|session: Session, join: Join| async move {
///     session.join(&join.room);
///     join
/// });
/// let server = Builder::new().router(router).serve("tcp://127.0.0.1:0").await?;
/// let client = Builder::new().dial(&server.url()).await?;
/// let _: Join = client.call(&Join { room: "lobby".into() }).await?;
///
/// let pool = server.pool();
/// assert_eq!(pool.len(), 1);
/// let member = &pool.group("lobby")[0];
/// assert_eq!(member.peer_addr(), client.local_addr());
/// assert!(pool.get(member.id()).is_some());
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SessionPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionPool")
            .field("len", &self.len())
            .field("limit", &self.inner.limit)
            .finish()
    }
}

/// The outcome of a broadcast.
///
/// ```
/// use gonet::{Broadcast, Builder, Router, Session};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Notice {
///     #[prost(string, tag = "1")]
///     text: String,
/// }
/// gonet::message!(Notice = 1, prost);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Builder::new()
///     .router(Router::new().route(|_: Session, notice: Notice| async move { notice }))
///     .serve("tcp://127.0.0.1:0")
///     .await?;
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let client = Builder::new()
///     .router(Router::new().route(move |_: Session, notice: Notice| {
///         let tx = tx.clone();
///         async move {
///             let _ = tx.send(notice.text);
///         }
///     }))
///     .dial(&server.url())
///     .await?;
/// // Once a call is answered, the server holds the session.
/// let _: Notice = client.call(&Notice { text: "hello".into() }).await?;
///
/// let outcome: Broadcast = server.pool().broadcast(&Notice { text: "restart at noon".into() })?;
/// assert_eq!((outcome.delivered, outcome.failed), (1, 0));
/// assert_eq!(rx.recv().await.as_deref(), Some("restart at noon"));
/// # server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Broadcast {
    /// Sessions the message was queued on.
    pub delivered: usize,
    /// Sessions that were closing, or whose queue was full (those are closed as slow).
    pub failed: usize,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // No user code runs under these locks; a poisoned one still holds consistent data.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// One encoding per codec, made on first use.
struct Encoded<'a, M> {
    msg: &'a M,
    frames: [Option<Bytes>; Codec::COUNT],
}

impl<M: Message> Encoded<'_, M> {
    fn frame(&mut self, session: &Session) -> Result<Bytes, SendError> {
        let codec: Codec = session.codec();
        let slot = &mut self.frames[codec.index()];
        if let Some(frame) = slot {
            return Ok(frame.clone());
        }
        let frame = wire::encode_message(self.msg, codec, Wrap::Plain, session.max_frame_len())?;
        *slot = Some(frame.clone());
        Ok(frame)
    }
}

impl SessionPool {
    pub(crate) fn new(limit: usize, ip: Option<IpLimit>) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                ip: ip.map(IpTable::new),
                ..Inner::default()
            }),
        }
    }

    /// The session with this id, if it is live.
    pub fn get(&self, id: u64) -> Option<Session> {
        read(&self.inner.sessions).get(&id).cloned()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        read(&self.inner.sessions).len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most sessions the pool admits.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// A snapshot of the live sessions.
    pub fn sessions(&self) -> Vec<Session> {
        read(&self.inner.sessions).values().cloned().collect()
    }

    /// Adds a session unless the pool is full or its address is over its limits.
    pub(crate) fn try_insert(&self, session: &Session) -> Result<(), Refusal> {
        let mut sessions = write(&self.inner.sessions);
        if sessions.len() >= self.inner.limit {
            return Err(Refusal::Full);
        }
        if let Some(ip) = &self.inner.ip {
            let addr = session.peer_addr().ip();
            ip.admit(addr)?;
            let _ = session.inner.admitted.set(addr);
        }
        sessions.insert(session.id(), session.clone());
        Ok(())
    }

    /// Binds `uid` to `session`; returns the session bound to it before, if another.
    pub(crate) fn bind(&self, uid: Arc<str>, session: &Session) -> Option<Session> {
        let old = write(&self.inner.users).insert(uid, session.clone());
        old.filter(|old| old.id() != session.id())
    }

    /// Forgets that `uid` is bound to `session` (and only to it).
    pub(crate) fn unbind(&self, uid: &str, session: &Session) {
        let mut users = write(&self.inner.users);
        if users.get(uid).is_some_and(|s| s.id() == session.id()) {
            users.remove(uid);
        }
    }

    /// The live session bound to user `uid` (see [`Session::bind`]).
    pub fn user(&self, uid: &str) -> Option<Session> {
        read(&self.inner.users).get(uid).cloned()
    }

    /// Logs a connection (or a UDP peer's first datagram) refused because the pool is
    /// full or its address is over its limits: the first at once, then one line per
    /// interval with the count.
    pub(crate) fn refused(&self, peer: std::net::SocketAddr, why: Refusal) {
        crate::telemetry::connection_refused(why.label());
        if let Some(due) = self.inner.refused.hit() {
            tracing::warn!(
                %peer,
                limit = self.inner.limit,
                refused = due.count,
                "{}: refused {} connection(s){} (the last from {peer})",
                why.as_str(),
                due.count,
                due.window(),
            );
        }
    }

    /// Removes a closed session from the pool and its groups.
    pub(crate) fn remove(&self, session: &Session) {
        if write(&self.inner.sessions).remove(&session.id()).is_some()
            && let (Some(ip), Some(addr)) = (&self.inner.ip, session.inner.admitted.get())
        {
            ip.release(*addr);
        }
        if let Some(uid) = session.uid() {
            self.unbind(&uid, session);
        }
        let joined = std::mem::take(
            &mut *session
                .inner
                .groups
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if joined.is_empty() {
            return;
        }
        let mut groups = write(&self.inner.groups);
        for name in joined {
            if let Some(members) = groups.get_mut(&name) {
                members.remove(&session.id());
                if members.is_empty() {
                    groups.remove(&name);
                }
            }
        }
    }

    /// Adds `session` to `group`. A closed session is not added.
    pub fn join(&self, group: &str, session: &Session) {
        if session.is_closed() {
            return;
        }
        let mut groups = write(&self.inner.groups);
        let (name, members) = match groups.get_key_value(group) {
            Some((name, _)) => {
                let name = name.clone();
                let members = groups.get_mut(group).expect("present");
                (name, members)
            }
            None => {
                let name: Arc<str> = group.into();
                (name.clone(), groups.entry(name).or_default())
            }
        };
        if members.insert(session.id(), session.clone()).is_none() {
            session
                .inner
                .groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name);
        }
    }

    /// Removes `session` from `group`.
    pub fn leave(&self, group: &str, session: &Session) {
        let mut groups = write(&self.inner.groups);
        if let Some(members) = groups.get_mut(group) {
            members.remove(&session.id());
            if members.is_empty() {
                groups.remove(group);
            }
        }
        drop(groups);
        session
            .inner
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|g| &**g != group);
    }

    /// Members of `group`.
    pub fn group(&self, group: &str) -> Vec<Session> {
        read(&self.inner.groups)
            .get(group)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many sessions are in `group`.
    pub fn group_len(&self, group: &str) -> usize {
        read(&self.inner.groups).get(group).map_or(0, |m| m.len())
    }

    /// Queues `msg` on every live session. The message is encoded once per codec in use.
    ///
    /// Fails only if the message cannot be encoded; per-session failures are counted.
    pub fn broadcast<M: Message>(&self, msg: &M) -> Result<Broadcast, SendError> {
        let mut run = BroadcastRun::new(msg);
        {
            let sessions = read(&self.inner.sessions);
            for session in sessions.values() {
                run.queue(session)?;
            }
        }
        let done = run.finish();
        crate::telemetry::broadcast(M::NAME, done.delivered);
        Ok(done)
    }

    /// Queues `msg` on every member of `group`, encoded once per codec in use.
    pub fn broadcast_group<M: Message>(
        &self,
        group: &str,
        msg: &M,
    ) -> Result<Broadcast, SendError> {
        let mut run = BroadcastRun::new(msg);
        {
            let groups = read(&self.inner.groups);
            for session in groups.get(group).into_iter().flat_map(|m| m.values()) {
                run.queue(session)?;
            }
        }
        let done = run.finish();
        crate::telemetry::broadcast(M::NAME, done.delivered);
        Ok(done)
    }
}

/// One broadcast in progress. Sessions whose queue is full are closed only after the
/// pool lock is released, because closing runs the user's error hook.
struct BroadcastRun<'a, M> {
    encoded: Encoded<'a, M>,
    report: Broadcast,
    full: Vec<(Session, usize)>,
}

impl<'a, M: Message> BroadcastRun<'a, M> {
    fn new(msg: &'a M) -> Self {
        Self {
            encoded: Encoded {
                msg,
                frames: Default::default(),
            },
            report: Broadcast::default(),
            full: Vec::new(),
        }
    }

    fn queue(&mut self, session: &Session) -> Result<(), SendError> {
        if session
            .inner
            .unwelcome
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            // Still in its handshake: not connected yet.
            return Ok(());
        }
        let frame = self.encoded.frame(session)?;
        match session.queue_frame(frame) {
            Ok(()) => self.report.delivered += 1,
            Err(PushError::Closed | PushError::Disconnected) => self.report.failed += 1,
            Err(PushError::Full { queued }) => {
                self.report.failed += 1;
                self.full.push((session.clone(), queued));
            }
        }
        Ok(())
    }

    fn finish(self) -> Broadcast {
        for (session, queued) in self.full {
            session.queue_full(queued);
        }
        self.report
    }
}

#[cfg(all(test, feature = "json", feature = "binary"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::settings::{Settings, Shared};
    use crate::url::Transport;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Notice {
        text: String,
    }
    crate::message!(Notice = 7, serde);

    fn session(pool: &SessionPool, codec: Codec) -> Session {
        let shared = Arc::new(Shared {
            settings: Settings {
                codec,
                ..Settings::default()
            },
            router: crate::service::router::Router::new(),
            hooks: Default::default(),
            pool: Some(pool.clone()),
            kill: Default::default(),
        });
        let addr = "127.0.0.1:1".parse().unwrap();
        let s = Session::new(shared, addr, addr, Transport::Tcp);
        assert!(pool.try_insert(&s).is_ok());
        s
    }

    #[test]
    fn broadcast_encodes_once_per_codec_and_shares_the_buffer() {
        let pool = SessionPool::new(100, None);
        let json: Vec<_> = (0..50).map(|_| session(&pool, Codec::Json)).collect();
        let binary: Vec<_> = (0..50).map(|_| session(&pool, Codec::Binary)).collect();
        let report = pool
            .broadcast(&Notice {
                text: "hello".into(),
            })
            .unwrap();
        assert_eq!(report.delivered, 100);
        for group in [&json, &binary] {
            let first = group[0].inner.out.front().unwrap();
            for s in group.iter() {
                let frame = s.inner.out.front().unwrap();
                // The same allocation, not an equal copy.
                assert_eq!(frame.as_ptr(), first.as_ptr());
            }
        }
        let (j, b) = (
            json[0].inner.out.front().unwrap(),
            binary[0].inner.out.front().unwrap(),
        );
        assert_ne!(j, b);
        assert_eq!(&j[6..], br#"{"text":"hello"}"#);
    }
}
