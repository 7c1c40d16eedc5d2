//! The bounded queue between a session's reader and its worker.
//!
//! Both ends live in the same task (see `joint`), so the queue needs no more than a
//! short lock and a waker per side; the general-purpose channels of the runtime pay
//! for a semaphore, a lock-free block list and budget accounting on every message.
//! One sender, one receiver; when the queue holds `capacity` messages the sender
//! waits, which is what stops the reader reading its socket.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    queue: VecDeque<T>,
    /// The receiver waits for a message.
    receiver: Option<Waker>,
    /// The sender waits for room.
    sender: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

struct Chan<T> {
    state: Mutex<State<T>>,
    capacity: usize,
}

impl<T> Chan<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics under this lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The reader's end.
pub(crate) struct Sender<T>(Arc<Chan<T>>);

/// The worker's end.
pub(crate) struct Receiver<T>(Arc<Chan<T>>);

/// A queue holding at most `capacity` messages (at least one).
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            receiver: None,
            sender: None,
            sender_gone: false,
            receiver_gone: false,
        }),
        capacity: capacity.max(1),
    });
    (Sender(chan.clone()), Receiver(chan))
}

fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl<T> Sender<T> {
    /// Queues `value`, waiting for room; gives it back if the receiver is gone.
    pub(crate) async fn send(&self, value: T) -> Result<(), T> {
        let mut value = Some(value);
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock();
            let v = value.take().expect("polled after completion");
            if state.receiver_gone {
                return Poll::Ready(Err(v));
            }
            if state.queue.len() >= self.0.capacity {
                value = Some(v);
                park(&mut state.sender, cx);
                return Poll::Pending;
            }
            state.queue.push_back(v);
            let waiting = state.receiver.take();
            drop(state);
            if let Some(waker) = waiting {
                waker.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.sender_gone = true;
        let waiting = state.receiver.take();
        drop(state);
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next message if one is queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let mut state = self.0.lock();
        let v = state.queue.pop_front()?;
        let waiting = state.sender.take();
        drop(state);
        if let Some(waker) = waiting {
            waker.wake();
        }
        Some(v)
    }

    /// The next message; `None` once the sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock();
            match state.queue.pop_front() {
                Some(v) => {
                    let waiting = state.sender.take();
                    drop(state);
                    if let Some(waker) = waiting {
                        waker.wake();
                    }
                    Poll::Ready(Some(v))
                }
                None if state.sender_gone => Poll::Ready(None),
                None => {
                    park(&mut state.receiver, cx);
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_gone = true;
        let dropped = std::mem::take(&mut state.queue);
        let waiting = state.sender.take();
        drop(state);
        drop(dropped);
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_order_and_closes_both_ways() {
        let (tx, mut rx) = channel(2);
        let producer = tokio::spawn(async move {
            for i in 0..100 {
                tx.send(i).await.unwrap();
            }
        });
        for i in 0..100 {
            assert_eq!(rx.recv().await, Some(i));
        }
        producer.await.unwrap();
        assert_eq!(rx.recv().await, None, "sender gone");

        let (tx, rx) = channel(1);
        tx.send(1).await.unwrap();
        drop(rx);
        assert_eq!(tx.send(2).await, Err(2), "receiver gone");
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_sender_wait() {
        let (tx, mut rx) = channel(1);
        tx.send(1).await.unwrap();
        let second = tx.send(2);
        tokio::pin!(second);
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        assert_eq!(rx.recv().await, Some(1));
        second.await.unwrap();
        assert_eq!(rx.recv().await, Some(2));
    }
}
