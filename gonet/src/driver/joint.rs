//! Runs the parts of a session (its inbound part and its writer) as one future of one
//! task.
//!
//! Like `join!`, but each part has a waker of its own. A part woken by another part
//! while the task is running (the inbound part queuing a batch of replies for the
//! writer, or yielding so the writer sends them) is polled again in the same turn
//! instead of waking the task: a wake-up of a running task makes the runtime reschedule
//! it and rouse an idle worker thread to steal it, a system call and a trip across
//! threads per batch of messages. Only wake-ups from outside (the socket, a handler's
//! timer, another session's broadcast) wake the task.
//!
//! The parts run without the runtime's cooperative budget, which counts every queue
//! operation and would cut each batch of messages short; instead a turn makes at most
//! [`MAX_PASSES`] passes over the parts before it yields.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Passes over the parts in one turn before the task yields to others. A pass handles at
/// most one read buffer and one inbound queue of messages.
const MAX_PASSES: usize = 8;

/// A part of a session.
pub(crate) type Part<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

struct Turn {
    /// The task's waker, for wake-ups from outside a turn.
    task: AtomicWaker,
    /// Whether a turn is running: then a woken part is picked up by the turn itself.
    running: AtomicBool,
}

struct PartWaker {
    ready: AtomicBool,
    turn: Arc<Turn>,
}

impl Wake for PartWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, SeqCst);
        if !self.turn.running.load(SeqCst) {
            self.turn.task.wake();
        }
    }
}

struct Slot<'a> {
    part: Option<Part<'a>>,
    flag: Arc<PartWaker>,
    waker: Waker,
}

/// Runs `parts` to completion, concurrently, in the calling task.
pub(crate) async fn join<'a, const N: usize>(parts: [Part<'a>; N]) {
    let turn = Arc::new(Turn {
        task: AtomicWaker::new(),
        running: AtomicBool::new(false),
    });
    let mut slots = parts.map(|part| {
        let flag = Arc::new(PartWaker {
            ready: AtomicBool::new(true),
            turn: turn.clone(),
        });
        Slot {
            part: Some(part),
            waker: Waker::from(flag.clone()),
            flag,
        }
    });
    let joint = std::future::poll_fn(move |cx| {
        turn.task.register(cx.waker());
        for _ in 0..MAX_PASSES {
            turn.running.store(true, SeqCst);
            for slot in slots.iter_mut() {
                let Some(part) = slot.part.as_mut() else {
                    continue;
                };
                if slot.flag.ready.swap(false, SeqCst)
                    && part
                        .as_mut()
                        .poll(&mut Context::from_waker(&slot.waker))
                        .is_ready()
                {
                    slot.part = None;
                }
            }
            turn.running.store(false, SeqCst);
            if slots.iter().all(|s| s.part.is_none()) {
                return Poll::Ready(());
            }
            // A part woken during the pass, or from another thread since: another pass.
            if !slots
                .iter()
                .any(|s| s.part.is_some() && s.flag.ready.load(SeqCst))
            {
                return Poll::Pending;
            }
        }
        // Still busy: let the other tasks of this thread run, then carry on.
        cx.waker().wake_by_ref();
        Poll::Pending
    });
    tokio::task::unconstrained(joint).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn parts_feed_each_other_and_all_finish() {
        let (tx, mut rx) = mpsc::channel::<u32>(2);
        let (done_tx, mut done_rx) = mpsc::channel::<u32>(1);
        let mut sum = 0;
        join([
            Box::pin(async move {
                for i in 0..1000 {
                    tx.send(i).await.unwrap();
                }
            }) as Part<'_>,
            Box::pin(async {
                while let Some(i) = rx.recv().await {
                    sum += i;
                }
                done_tx.send(sum).await.unwrap();
            }),
        ])
        .await;
        assert_eq!(done_rx.recv().await, Some((0..1000).sum()));
    }

    #[tokio::test]
    async fn a_wake_from_another_task_resumes_a_part() {
        let (tx, mut rx) = mpsc::channel::<u32>(1);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.send(7).await.unwrap();
        });
        let mut got = None;
        join([Box::pin(async {
            got = rx.recv().await;
        }) as Part<'_>])
        .await;
        assert_eq!(got, Some(7));
        sender.await.unwrap();
    }
}
