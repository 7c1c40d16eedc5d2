//! [`Outbox`]: what a detached session (one with no connection of its own) sends,
//! collected for its owner to carry to the peer.

use std::fmt;

use bytes::Bytes;

use crate::session::outbound::Batch;
use crate::session::{CloseMode, CloseReason, Session};

/// The frames a detached session sends (see
/// [`Builder::detached`](crate::Builder::detached)), in order.
///
/// Dropping the outbox ends the session: it counts as closed from then on (its
/// [`closed`](Session::closed) returns and the close hook runs).
pub struct Outbox {
    session: Session,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("session", &self.session.id())
            .finish()
    }
}

impl Outbox {
    pub(crate) fn new(session: Session) -> Self {
        Self { session }
    }

    /// The session whose frames these are.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Moves the frames queued so far into `frames`, without waiting.
    pub fn try_take(&self, frames: &mut Vec<Bytes>) {
        self.session.inner.out.try_take(frames);
    }

    /// Waits until the session sends something or closes, without taking anything;
    /// false once the session is closing. Lets the owner decide when to
    /// [`try_take`](Self::try_take) (for example not while a handler it runs for the
    /// session is still going, so the frames leave with the handler's reply).
    pub async fn ready(&self) -> bool {
        let inner = &self.session.inner;
        if inner.stop_reading.is_raised() {
            return false;
        }
        tokio::select! {
            () = inner.out.ready() => !inner.stop_reading.is_raised(),
            () = inner.stop_reading.wait() => false,
        }
    }

    /// Waits until the session sends something or closes, and moves what it sent into
    /// `frames`. Returns false once the session is closing: `frames` then holds what it
    /// sent before, and nothing more will come.
    pub async fn next(&mut self, frames: &mut Vec<Bytes>) -> bool {
        let inner = &self.session.inner;
        if inner.stop_reading.is_raised() {
            inner.out.try_take(frames);
            return false;
        }
        tokio::select! {
            batch = inner.out.next_frames(frames, usize::MAX) => batch == Batch::Write,
            () = inner.stop_reading.wait() => {
                inner.out.try_take(frames);
                false
            }
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let session = &self.session;
        session.inner.calls.close();
        session.close_with(CloseReason::PeerClosed, CloseMode::Discard);
        session.inner.out.finish();
        let reason = session.close_reason().unwrap_or(CloseReason::PeerClosed);
        session.inner.done.raise();
        if let Some(hook) = &session.inner.shared.hooks.on_close {
            hook(session, &reason);
        }
    }
}
