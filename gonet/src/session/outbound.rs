//! The per-session outbound queue: encoded frames waiting for the writer.
//!
//! Frames are `Bytes`, so a broadcast queues one shared buffer on every session. The
//! queue is bounded in bytes; the writer takes everything queued at once and writes it
//! with as few write calls as it can.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::signal::{Latch, Wait};
use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue no longer takes frames.
    Closed,
    /// The session has no connection and its policy refuses sends meanwhile.
    Disconnected,
    /// Taking the frame would pass the limit.
    Full { queued: usize },
}

/// The frames a resumable session has sent and its peer has not acknowledged yet, to
/// send again on a new connection. Offsets count the bytes of every logged frame since
/// the session started.
#[derive(Debug, Default)]
struct Log {
    frames: VecDeque<Bytes>,
    /// The offset of the first byte of `frames`.
    start: u64,
    /// The offset after the last logged byte.
    end: u64,
    limit: usize,
}

impl Log {
    fn bytes(&self) -> usize {
        // Bounded by `limit`, a usize.
        (self.end - self.start) as usize
    }

    /// Forgets what the peer has received; false when it claims more than was sent.
    fn trim(&mut self, received: u64) -> bool {
        if received > self.end {
            return false;
        }
        while self.start < received {
            let Some(front) = self.frames.front_mut() else {
                break;
            };
            let len = front.len() as u64;
            if self.start + len <= received {
                self.start += len;
                self.frames.pop_front();
            } else {
                // A buffer of several frames, partly received: keep the rest.
                let _ = front.split_to((received - self.start) as usize);
                self.start = received;
            }
        }
        true
    }
}

/// Why a resumable queue cannot send again from an offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The offset the peer asked for.
    pub(crate) from: u64,
    /// What the log still holds.
    pub(crate) start: u64,
    pub(crate) end: u64,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// Set on a resumable session: every frame pushed is kept until acknowledged.
    log: Option<Log>,
    /// Frames pushed go to the log only (the session has no connection, or is resuming
    /// one): they are sent once the peer has said what it has received.
    held: bool,
    /// The connection is lost: the writer stops.
    lost: bool,
    /// A count of received bytes to acknowledge with the next batch written.
    ack: Option<u64>,
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
    /// The connection is lost; the session waits for another (resume).
    Lost,
}

#[derive(Debug)]
pub(crate) struct OutQueue {
    state: Mutex<State>,
    notify: Notify,
    aborted: Latch,
    limit: usize,
}

impl OutQueue {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            aborted: Latch::default(),
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
        self.push_acking(frame, None)
    }

    /// [`push`](Self::push), and acknowledges `ack` received bytes with the next batch
    /// (see [`ack_later`](Self::ack_later)), under one lock.
    pub(crate) fn push_acking(&self, frame: Bytes, ack: Option<u64>) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.finished || state.aborted {
            return Err(PushError::Closed);
        }
        if ack.is_some() {
            state.ack = ack;
        }
        if let Some(log) = &mut state.log {
            if log.bytes() + frame.len() > log.limit && log.bytes() > 0 {
                return Err(PushError::Full {
                    queued: log.bytes(),
                });
            }
            log.end += frame.len() as u64;
            log.frames.push_back(frame.clone());
            if state.held {
                return Ok(());
            }
        }
        Self::enqueue(state, frame, self.limit, &self.notify)
    }

    /// Queues a frame of the connection itself (a heartbeat, a handshake, an
    /// acknowledgement): never kept for a resume, dropped while the session has no
    /// connection.
    pub(crate) fn push_control(&self, frame: Bytes) -> Result<(), PushError> {
        let state = self.lock();
        if state.finished || state.aborted {
            return Err(PushError::Closed);
        }
        if state.lost {
            return Ok(());
        }
        Self::enqueue(state, frame, self.limit, &self.notify)
    }

    fn enqueue(
        mut state: std::sync::MutexGuard<'_, State>,
        frame: Bytes,
        limit: usize,
        notify: &Notify,
    ) -> Result<(), PushError> {
        if state.bytes + frame.len() > limit && state.bytes > 0 {
            return Err(PushError::Full {
                queued: state.bytes,
            });
        }
        let was_empty = state.frames.is_empty();
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        if was_empty {
            notify.notify_one();
        }
        Ok(())
    }

    /// Keeps every frame pushed from now on until the peer acknowledges it, up to
    /// `limit` bytes; `first` (a handshake answer) is queued before, not kept.
    pub(crate) fn start_log(&self, first: Option<Bytes>, limit: usize) {
        let mut state = self.lock();
        if let Some(first) = first {
            state.bytes += first.len();
            state.frames.push_back(first);
        }
        state.log = Some(Log {
            limit,
            ..Log::default()
        });
        drop(state);
        self.notify.notify_one();
    }

    /// Keeps nothing more for a resume.
    pub(crate) fn stop_log(&self) {
        let mut state = self.lock();
        state.log = None;
        state.held = false;
    }

    /// Acknowledges `received` counted bytes with the next batch the writer takes,
    /// rather than in a write of its own.
    pub(crate) fn ack_later(&self, received: u64) {
        self.lock().ack = Some(received);
    }

    /// Sends the acknowledgement still waiting for a batch, on its own.
    pub(crate) fn ack_now(&self) {
        let mut state = self.lock();
        if state.lost || state.finished || state.aborted {
            return;
        }
        if let Some(received) = state.ack.take() {
            let frame = crate::wire::encode_count(crate::wire::ID_ACK, received);
            state.bytes += frame.len();
            state.frames.push_back(frame);
            drop(state);
            self.notify.notify_one();
        }
    }

    /// The peer has received `received` counted bytes: forget them. False when it
    /// claims more than was sent.
    pub(crate) fn ack(&self, received: u64) -> bool {
        match &mut self.lock().log {
            Some(log) => log.trim(received),
            None => true,
        }
    }

    /// The connection is lost: the writer stops, and what is pushed from now on is kept
    /// for the next connection.
    pub(crate) fn detach(&self) {
        let mut state = self.lock();
        state.lost = true;
        state.ack = None;
        state.held = state.log.is_some();
        state.frames.clear();
        state.bytes = 0;
        drop(state);
        self.notify.notify_one();
    }

    /// A new connection, on which `first` (the client's resume, or its handshake) goes
    /// before anything else; the session's own frames wait for the server's answer
    /// ([`resume_from`](Self::resume_from)) unless `release`.
    pub(crate) fn reattach(&self, first: Bytes, release: bool) {
        let mut state = self.lock();
        state.lost = false;
        state.ack = None;
        state.frames.clear();
        state.bytes = first.len();
        state.frames.push_back(first);
        if release {
            state.held = false;
            if let Some(log) = &mut state.log {
                // A fresh session: what the old one kept is gone with it.
                *log = Log {
                    limit: log.limit,
                    ..Log::default()
                };
            }
        }
        drop(state);
        self.notify.notify_one();
    }

    /// Sends again, after `first` (the server's answer to a resume), every kept frame
    /// from the peer's count `from` on, then goes on as before.
    pub(crate) fn resume_from(&self, from: u64, first: Option<Bytes>) -> Result<(), Gap> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(log) = &mut state.log else {
            return Err(Gap {
                from,
                start: 0,
                end: 0,
            });
        };
        if from < log.start || !log.trim(from) {
            return Err(Gap {
                from,
                start: log.start,
                end: log.end,
            });
        }
        state.lost = false;
        state.held = false;
        if first.is_some() {
            state.frames.clear();
            state.bytes = 0;
        }
        state.frames.extend(first);
        state.frames.extend(log.frames.iter().cloned());
        state.bytes = state.frames.iter().map(Bytes::len).sum();
        self.notify.notify_one();
        Ok(())
    }

    /// Whether the connection was lost (since the last one began).
    pub(crate) fn is_lost(&self) -> bool {
        self.lock().lost
    }

    /// Whether the peer may resume from its count `from`.
    pub(crate) fn can_resume_from(&self, from: u64) -> Result<(), Gap> {
        match &self.lock().log {
            Some(log) if (log.start..=log.end).contains(&from) => Ok(()),
            Some(log) => Err(Gap {
                from,
                start: log.start,
                end: log.end,
            }),
            None => Err(Gap {
                from,
                start: 0,
                end: 0,
            }),
        }
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
        self.aborted.raise();
        self.notify.notify_one();
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.is_raised()
    }

    /// Completes once the queue is aborted, so a writer stuck on a peer that does not
    /// read can give up at once.
    pub(crate) fn aborted(&self) -> Wait<'_> {
        self.aborted.wait()
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

    /// Waits until a frame is queued, or the queue is finished, aborted or lost, without
    /// taking anything. For queues with one consumer (a detached session's owner).
    pub(crate) async fn ready(&self) {
        loop {
            {
                let state = self.lock();
                if state.aborted || state.finished || state.lost || !state.frames.is_empty() {
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
                if state.lost {
                    return Batch::Lost;
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
                    if let Some(received) = state.ack.take() {
                        put(crate::wire::encode_count(crate::wire::ID_ACK, received));
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

    fn drain(q: &OutQueue) -> Vec<u8> {
        let mut frames = Vec::new();
        assert!(q.try_take(&mut frames));
        frames.concat()
    }

    #[test]
    fn a_log_keeps_what_is_not_acknowledged_and_replays_it_from_any_offset() {
        let q = OutQueue::new(1 << 20);
        q.start_log(Some(Bytes::from_static(b"W")), 1 << 20);
        q.push(Bytes::from_static(b"abc")).unwrap();
        q.push(Bytes::from_static(b"defg")).unwrap();
        q.push_control(Bytes::from_static(b"P")).unwrap();
        assert_eq!(
            drain(&q),
            b"WabcdefgP",
            "the answer first, control frames unlogged"
        );

        // Acknowledged bytes go, even in the middle of a buffer of several frames.
        assert!(q.ack(5));
        assert!(!q.ack(8), "more than was sent");
        q.detach();
        q.push(Bytes::from_static(b"hi")).unwrap();
        assert_eq!(drain(&q), b"", "held while detached");
        assert_eq!(
            q.resume_from(4, None),
            Err(Gap {
                from: 4,
                start: 5,
                end: 9
            }),
            "forgotten bytes cannot be sent again"
        );
        q.resume_from(6, Some(Bytes::from_static(b"R"))).unwrap();
        assert_eq!(drain(&q), b"Rghi");
        assert_eq!(q.can_resume_from(9), Ok(()));
        assert!(q.can_resume_from(10).is_err());
    }

    #[test]
    fn a_log_over_its_limit_refuses_the_frame() {
        let q = OutQueue::new(1 << 20);
        q.start_log(None, 8);
        q.push(Bytes::from_static(b"12345")).unwrap();
        assert_eq!(
            q.push(Bytes::from_static(b"6789")),
            Err(PushError::Full { queued: 5 })
        );
        assert!(q.ack(5));
        q.push(Bytes::from_static(b"6789")).unwrap();
    }

    #[test]
    fn a_reattached_client_sends_its_resume_first_and_holds_the_rest() {
        let q = OutQueue::new(1 << 20);
        q.start_log(None, 1 << 20);
        q.push(Bytes::from_static(b"ab")).unwrap();
        q.detach();
        q.push(Bytes::from_static(b"cd")).unwrap();
        q.reattach(Bytes::from_static(b"R"), false);
        q.push(Bytes::from_static(b"ef")).unwrap();
        assert_eq!(drain(&q), b"R");
        q.resume_from(1, None).unwrap();
        assert_eq!(drain(&q), b"bcdef");
        // A fresh session forgets what the old one kept.
        q.detach();
        q.reattach(Bytes::from_static(b"H"), true);
        q.push(Bytes::from_static(b"g")).unwrap();
        assert_eq!(drain(&q), b"Hg");
        assert_eq!(q.can_resume_from(1), Ok(()));
        assert!(q.can_resume_from(2).is_err());
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
