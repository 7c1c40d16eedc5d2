//! One-way signals (stop reading, closed, aborted, stop everything) that are cheap to
//! keep and cheap to poll.
//!
//! Every session keeps several, so a signal is a flag and a [`Notify`] in place: no
//! allocation of its own (a `CancellationToken` is a shared tree node on the heap). The
//! driver polls its signals every time it waits, thousands of times a second per
//! session; a [`Wait`] registers with the signal once and then only reads the flag.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// A signal raised once, for good, and waited on by any number of futures.
#[derive(Debug, Default)]
pub(crate) struct Latch {
    raised: AtomicBool,
    notify: Notify,
}

impl Latch {
    /// Raises the signal: every waiter completes, and every later wait at once.
    pub(crate) fn raise(&self) {
        if !self.raised.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    /// Whether the signal is raised.
    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Completes once the signal is raised.
    pub(crate) fn wait(&self) -> Wait<'_> {
        Wait {
            latch: self,
            // Made before the flag is first read: a raise after that read wakes it.
            notified: self.notify.notified(),
            registered: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Latch::wait`].
    #[derive(Debug)]
    pub(crate) struct Wait<'a> {
        latch: &'a Latch,
        #[pin]
        notified: Notified<'a>,
        // The waker the signal wakes, once registered.
        registered: Option<Waker>,
    }
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.latch.is_raised() {
            return Poll::Ready(());
        }
        if this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        *this.registered = Some(cx.waker().clone());
        // Only a raise notifies; the flag was set before.
        this.notified.poll(cx)
    }
}

/// A signal shared by clones (the server's stop-everything).
#[derive(Clone, Debug, Default)]
pub(crate) struct Signal(Arc<Latch>);

impl Signal {
    /// Raises the signal: every waiter completes.
    pub(crate) fn raise(&self) {
        self.0.raise();
    }

    /// Whether the signal is raised.
    pub(crate) fn is_raised(&self) -> bool {
        self.0.is_raised()
    }

    /// Completes once the signal is raised.
    pub(crate) fn raised(&self) -> Wait<'_> {
        self.0.wait()
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

    #[tokio::test]
    async fn a_wait_made_before_the_raise_and_first_polled_after_completes() {
        let latch = Latch::default();
        let wait = latch.wait();
        latch.raise();
        latch.raise();
        wait.await;
        assert!(latch.is_raised());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_polled_again_before_the_raise_stays_pending_then_is_woken() {
        let latch = Arc::new(Latch::default());
        let mut wait = std::pin::pin!(latch.wait());
        // Polled twice while not raised: pending both times (the second without
        // registering again).
        for _ in 0..2 {
            let polled = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
        }
        tokio::spawn({
            let latch = latch.clone();
            async move { latch.raise() }
        });
        // Only the raise can wake this task; without it the paused clock runs out.
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("the raise wakes the waiter");
    }
}
