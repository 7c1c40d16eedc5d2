//! [`SessionData`]: per-session key/value data that travels with a session's messages
//! to the nodes that handle them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use gonet::Session;

#[derive(Default)]
struct State {
    map: BTreeMap<String, String>,
    changed: bool,
}

/// Key/value data of one client session, shared by every node that handles its
/// messages: the session's gate holds it, sends it along with each message it relays,
/// and takes back the changes a remote handler made, so later messages (on any node)
/// see them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (session, _outbox) =
///     gonet::Builder::new().detached("127.0.0.1:9".parse().unwrap(), gonet::Transport::Tcp);
/// let data = gonet_cluster::SessionData::of(&session);
/// data.set("room", "lobby");
/// assert_eq!(gonet_cluster::SessionData::of(&session).get("room").as_deref(), Some("lobby"));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct SessionData(Arc<Mutex<State>>);

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.lock().map.iter()).finish()
    }
}

impl SessionData {
    /// The data of `session` (created empty on first use).
    pub fn of(session: &Session) -> SessionData {
        if let Some(data) = session.get::<SessionData>() {
            return data;
        }
        let data = SessionData::default();
        session.insert(data.clone());
        data
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().map.get(key).cloned()
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: impl Into<String>, value: impl Into<String>) {
        let mut state = self.lock();
        state.map.insert(key.into(), value.into());
        state.changed = true;
    }

    /// Removes `key`, returning its value.
    pub fn remove(&self, key: &str) -> Option<String> {
        let mut state = self.lock();
        let old = state.map.remove(key);
        state.changed |= old.is_some();
        old
    }

    /// A copy of every key and value.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.lock().map.clone()
    }

    /// Replaces everything, as not changed.
    pub(crate) fn reset(&self, map: BTreeMap<String, String>) {
        let mut state = self.lock();
        state.map = map;
        state.changed = false;
    }

    /// Everything, if it changed since the last reset.
    pub(crate) fn take_changes(&self) -> Option<BTreeMap<String, String>> {
        let mut state = self.lock();
        std::mem::take(&mut state.changed).then(|| state.map.clone())
    }

    /// Whether there is nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().map.is_empty()
    }
}
