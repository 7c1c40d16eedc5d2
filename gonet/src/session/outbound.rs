//! The per-session outbound queue: encoded frames waiting for the writer.
//!
//! Frames are `Bytes`, so a broadcast queues one shared buffer on every session. The
//! queue is bounded in bytes; the writer takes everything queued at once and writes it
//! with as few write calls as it can.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue no longer takes frames.
    Closed,
    /// Taking the frame would pass the limit.
    Full { queued: usize },
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// No more pushes; the writer drains what is queued, then stops.
    finished: bool,
    /// The writer stops at once; queued frames are dropped.
    aborted: bool,
}

/// What the writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// Write the buffer.
    Write,
    /// Nothing more will come: shut the connection down.
    Done,
}

#[derive(Debug)]
pub(crate) struct OutQueue {
    state: Mutex<State>,
    notify: Notify,
    aborted: CancellationToken,
    limit: usize,
}

impl OutQueue {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            aborted: CancellationToken::new(),
            limit,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The lock is never held across user code, so poisoning cannot leave the state
        // half-updated; recover the guard rather than propagate a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.finished || state.aborted {
            return Err(PushError::Closed);
        }
        if state.bytes + frame.len() > self.limit && state.bytes > 0 {
            return Err(PushError::Full {
                queued: state.bytes,
            });
        }
        let was_empty = state.frames.is_empty();
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Stop taking frames; the writer finishes after writing what is queued.
    pub(crate) fn finish(&self) {
        self.lock().finished = true;
        self.notify.notify_one();
    }

    /// Stop at once, dropping what is queued.
    pub(crate) fn abort(&self) {
        let mut state = self.lock();
        state.aborted = true;
        state.frames.clear();
        state.bytes = 0;
        drop(state);
        self.aborted.cancel();
        self.notify.notify_one();
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.is_cancelled()
    }

    /// Completes once the queue is aborted, so a writer stuck on a peer that does not
    /// read can give up at once.
    pub(crate) fn aborted(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.aborted.cancelled()
    }

    /// The frame at the front of the queue.
    #[cfg(test)]
    pub(crate) fn front(&self) -> Option<Bytes> {
        self.lock().frames.front().cloned()
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Waits for frames and copies as many as fit in `max` bytes (at least one) into
    /// `buf`. Small frames are copied because one write of their concatenation costs far
    /// less than one system call each. Used by writers without vectored writes.
    pub(crate) async fn next_batch(&self, buf: &mut BytesMut, max: usize) -> Batch {
        let already = buf.len();
        self.take(max, already, |frame| buf.extend_from_slice(&frame))
            .await
    }

    /// Waits for frames and moves as many as fit in `max` bytes (at least one) into
    /// `frames`, without copying: a vectored write sends them in one call, a message
    /// transport sends each as one message, and a broadcast frame is never copied per
    /// recipient.
    pub(crate) async fn next_frames(&self, frames: &mut Vec<Bytes>, max: usize) -> Batch {
        self.take(max, 0, |frame| frames.push(frame)).await
    }

    /// Moves every queued frame into `frames` without waiting; false once the queue is
    /// aborted.
    pub(crate) fn try_take(&self, frames: &mut Vec<Bytes>) -> bool {
        let mut state = self.lock();
        if state.aborted {
            return false;
        }
        state.bytes = 0;
        frames.extend(state.frames.drain(..));
        true
    }

    /// Waits until a frame is queued, or the queue is finished or aborted, without
    /// taking anything. For queues with one consumer (a detached session's owner).
    pub(crate) async fn ready(&self) {
        loop {
            {
                let state = self.lock();
                if state.aborted || state.finished || !state.frames.is_empty() {
                    return;
                }
            }
            self.notify.notified().await;
        }
    }

    async fn take(&self, max: usize, already: usize, mut put: impl FnMut(Bytes)) -> Batch {
        loop {
            {
                let mut state = self.lock();
                if state.aborted {
                    return Batch::Done;
                }
                if !state.frames.is_empty() {
                    let mut len = already;
                    let mut first = len == 0;
                    while let Some(frame) = state.frames.front() {
                        if !first && len + frame.len() > max {
                            break;
                        }
                        first = false;
                        let frame = state.frames.pop_front().expect("front exists");
                        state.bytes -= frame.len();
                        len += frame.len();
                        put(frame);
                    }
                    return Batch::Write;
                }
                if state.finished {
                    return Batch::Done;
                }
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_frames_and_enforces_the_limit() {
        let q = OutQueue::new(10);
        q.push(Bytes::from_static(b"abcd")).unwrap();
        q.push(Bytes::from_static(b"efgh")).unwrap();
        assert_eq!(
            q.push(Bytes::from_static(b"ijk")),
            Err(PushError::Full { queued: 8 })
        );
        let mut buf = BytesMut::new();
        assert_eq!(q.next_batch(&mut buf, 1024).await, Batch::Write);
        assert_eq!(&buf[..], b"abcdefgh");
        assert_eq!(q.queued_bytes(), 0);
        q.finish();
        assert_eq!(q.push(Bytes::from_static(b"x")), Err(PushError::Closed));
        assert_eq!(q.next_batch(&mut buf, 1024).await, Batch::Done);
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_limit_passes_when_the_queue_is_empty() {
        let q = OutQueue::new(4);
        q.push(Bytes::from_static(b"0123456789")).unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(q.next_batch(&mut buf, 4).await, Batch::Write);
        assert_eq!(buf.len(), 10);
    }

    #[tokio::test]
    async fn batch_size_is_capped() {
        let q = OutQueue::new(1 << 20);
        for _ in 0..10 {
            q.push(Bytes::from_static(b"0123456789")).unwrap();
        }
        let mut buf = BytesMut::new();
        q.next_batch(&mut buf, 35).await;
        assert_eq!(buf.len(), 30);
        assert_eq!(q.queued_bytes(), 70);
        let mut frames = Vec::new();
        q.next_frames(&mut frames, 25).await;
        assert_eq!(frames.len(), 2);
        assert_eq!(q.queued_bytes(), 50);
        q.abort();
        assert_eq!(q.next_batch(&mut buf, 35).await, Batch::Done);
    }
}
