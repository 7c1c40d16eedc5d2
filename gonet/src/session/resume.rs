//! Sessions that outlive their connection: what a resumable session keeps between
//! connections ([`Resume`]), the client's [`Reconnect`] policy and the [`LinkEvent`]s
//! the link hook sees.
//!
//! Both ends count the bytes of the frames they receive (all but the link's own
//! frames: heartbeats, handshake, resume, acknowledgements), acknowledge them now and
//! then, and keep what they sent until it is acknowledged (the outbound queue's log).
//! When a connection drops, the server keeps the session detached for a grace period;
//! the client connects again and names the session, its token and its count; each side
//! then sends again what the other has not counted.

use std::any::{Any, TypeId};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::wire::{Status, TOKEN_LEN};

/// What happened to the connection under a resumable session, as the link hook
/// ([`Builder::on_link`](crate::Builder::on_link)) sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum LinkEvent {
    /// The connection dropped; the session waits for the client to come back (a
    /// server, for its grace period) or is connecting again (a client).
    Detached,
    /// A new connection took the session over: nothing sent either way was lost.
    Resumed,
    /// The session was not resumed in time and closes with
    /// [`CloseReason::Expired`](crate::CloseReason::Expired): a server's client did not
    /// come back within the grace period, or a client's reconnect policy gave up.
    Expired,
    /// A client's resume was refused (the server no longer had the session): the
    /// client starts a fresh session on the same handle. What the old one had not
    /// delivered is gone, its pending calls fail, and the server sees a new session.
    Restarted(Status),
}

/// How a client connects again after its connection drops (see
/// [`Builder::reconnect`](crate::Builder::reconnect)).
///
/// Attempts wait an exponential backoff with full jitter (a random wait between zero
/// and the current step, which doubles from `min_backoff` up to `max_backoff`), and
/// stop after `max_attempts` attempts or `max_elapsed` time, whichever comes first; the
/// session then closes with [`CloseReason::Expired`](crate::CloseReason::Expired).
///
/// While the client is connecting again, sends and calls are kept and go out after the
/// resume (a call still waits at most its timeout), unless
/// [`fail_while_disconnected`](Self::fail_while_disconnected) is set: then they fail at
/// once with [`SendError::Disconnected`](crate::SendError::Disconnected).
///
/// ```
/// use std::time::Duration;
///
/// let policy = gonet::Reconnect::new()
///     .backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .max_attempts(20)
///     .max_elapsed(Duration::from_secs(60));
/// let client = gonet::Builder::new().reconnect(policy);
/// ```
#[derive(Clone, Debug)]
pub struct Reconnect {
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) max_elapsed: Duration,
    pub(crate) fail_fast: bool,
    pub(crate) replay_limit: usize,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self::new()
    }
}

impl Reconnect {
    /// Backoff from 100 ms to 5 s, at most 30 attempts within 60 s; sends wait.
    pub fn new() -> Self {
        Self {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_attempts: 30,
            max_elapsed: Duration::from_secs(60),
            fail_fast: false,
            replay_limit: DEFAULT_REPLAY_LIMIT,
        }
    }

    /// The first backoff step and the largest one.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Attempts before giving up.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Time, from the drop, before giving up.
    pub fn max_elapsed(mut self, elapsed: Duration) -> Self {
        self.max_elapsed = elapsed;
        self
    }

    /// Fail sends and calls made while disconnected at once, rather than keeping them.
    pub fn fail_while_disconnected(mut self, fail: bool) -> Self {
        self.fail_fast = fail;
        self
    }

    /// Bytes sent and not yet acknowledged that the client keeps (default 4 MiB); a
    /// send past it fails and closes the session, as a full outbound queue does.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.replay_limit = bytes.max(1);
        self
    }

    /// The wait before attempt `attempt` (from 0): full jitter over the step.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let step = self
            .min_backoff
            .saturating_mul(1 << attempt.min(20))
            .min(self.max_backoff);
        let nanos = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return step;
        }
        Duration::from_nanos(random_u64() % (nanos + 1))
    }
}

/// The default of the replay limits.
pub(crate) const DEFAULT_REPLAY_LIMIT: usize = 4 << 20;

/// A server's resume settings (see [`Builder::resume`](crate::Builder::resume)).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResumeSettings {
    pub(crate) grace: Duration,
    pub(crate) replay_limit: usize,
}

/// Acknowledge what came in at the latest this long after it, when nothing else is
/// written to the peer meanwhile (an acknowledgement rides on the next batch written).
pub(crate) const ACK_DELAY: Duration = Duration::from_millis(20);

/// A connection handed to a detached session: the transport's packet source and frame
/// sink, as the driver of the session's transport knows them.
pub(crate) struct Handover {
    pub(crate) link: Box<dyn Any + Send>,
    /// The addresses of the new connection: the peer's and this side's.
    pub(crate) addrs: (std::net::SocketAddr, std::net::SocketAddr),
    /// What the client had received.
    pub(crate) received: u64,
}

/// What a resumable session keeps between connections.
#[derive(Default)]
pub(crate) struct Resume {
    /// The server's session id and the token that resumes it; set once the server has
    /// welcomed the client with one.
    pub(crate) token: Mutex<Option<(u64, [u8; TOKEN_LEN])>>,
    /// Counted bytes received from the peer (kept by the driver).
    pub(crate) received: AtomicU64,
    /// A server's session handed a new connection.
    pub(crate) handover: Mutex<Option<Handover>>,
    /// Woken when the connection is lost or a new one is handed over.
    pub(crate) wake: Notify,
    /// The session has no connection.
    pub(crate) detached: AtomicBool,
    /// The type of the session's link, so that a new connection from another kind of
    /// listener is refused rather than handed over.
    pub(crate) link_type: OnceLock<TypeId>,
    /// Where a client connects from now on: the address a draining server gave.
    pub(crate) redirect: Mutex<Option<String>>,
    /// A client's session (it connects again itself).
    pub(crate) client: bool,
    /// A client's policy.
    pub(crate) fail_fast: bool,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume")
            .field("received", &self.received)
            .field("detached", &self.detached)
            .finish_non_exhaustive()
    }
}

impl Resume {
    pub(crate) fn is_active(&self) -> bool {
        lock(&self.token).is_some()
    }

    pub(crate) fn token(&self) -> Option<(u64, [u8; TOKEN_LEN])> {
        *lock(&self.token)
    }

    pub(crate) fn set_token(&self, token: Option<(u64, [u8; TOKEN_LEN])>) {
        *lock(&self.token) = token;
    }

    pub(crate) fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Acquire)
    }

    pub(crate) fn take_handover(&self) -> Option<Handover> {
        lock(&self.handover).take()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random 64-bit value: SipHash, keyed with the process's random keys, of a counter.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one(n)
}

/// A fresh resume token: unguessable without the process's hash keys.
pub(crate) fn new_token() -> [u8; TOKEN_LEN] {
    let mut token = [0; TOKEN_LEN];
    token[..8].copy_from_slice(&random_u64().to_le_bytes());
    token[8..].copy_from_slice(&random_u64().to_le_bytes());
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_below_the_step() {
        let policy = Reconnect::new().backoff(Duration::from_millis(10), Duration::from_millis(80));
        for attempt in 0..40 {
            let step = Duration::from_millis(10 * (1 << attempt.min(3)));
            assert!(policy.delay(attempt) <= step, "attempt {attempt}");
        }
    }

    #[test]
    fn tokens_differ() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
    }
}
