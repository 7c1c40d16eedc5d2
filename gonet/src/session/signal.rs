//! One-way signals (stop reading, stop everything) that are cheap to poll.
//!
//! A [`CancellationToken`] takes a lock on every check. The driver polls its signals
//! every time it waits, thousands of times a second per session, and a server-wide
//! token's lock is shared by every session on every thread. A signal here pairs the
//! token (for the wake-up) with a flag set just before it is cancelled: a waiter polls
//! the token once, to register, and then only reads the flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use tokio_util::sync::CancellationToken;

/// Completes once `token` is cancelled; `raised` must be set before every cancel.
pub(crate) async fn cancelled(token: &CancellationToken, raised: &AtomicBool) {
    let waiter = token.cancelled();
    tokio::pin!(waiter);
    // The waker the token wakes, once registered.
    let mut registered: Option<Waker> = None;
    std::future::poll_fn(|cx| {
        if let Some(waker) = &registered {
            if raised.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        registered = Some(cx.waker().clone());
        waiter.as_mut().poll(cx)
    })
    .await;
}

/// A signal shared by clones (the server's stop-everything).
#[derive(Clone, Debug, Default)]
pub(crate) struct Signal(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    token: CancellationToken,
    raised: AtomicBool,
}

impl Signal {
    /// Raises the signal: every waiter completes.
    pub(crate) fn raise(&self) {
        self.0.raised.store(true, Ordering::Release);
        self.0.token.cancel();
    }

    /// Whether the signal is raised.
    pub(crate) fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::Acquire)
    }

    /// Completes once the signal is raised.
    pub(crate) async fn raised(&self) {
        cancelled(&self.0.token, &self.0.raised).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_registered_before_and_after_the_raise_complete() {
        let signal = Signal::default();
        let early = tokio::spawn({
            let signal = signal.clone();
            async move { signal.raised().await }
        });
        // Let the waiter register and go back to sleep at least once.
        tokio::task::yield_now().await;
        signal.raise();
        early.await.unwrap();
        // A waiter that starts late completes at once.
        signal.raised().await;
    }
}
