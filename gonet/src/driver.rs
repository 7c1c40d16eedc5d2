//! The session driver: a reader, a worker and a writer per connection, three parts of
//! one task (see `joint`).
//!
//! ```text
//!  socket ─► reader ─► inbound queue (bounded) ─► worker ─► handler ─► outbound queue ─► writer ─► socket
//! ```
//!
//! - The **reader** decodes frames from its own buffer, answers heartbeats, resolves
//!   replies to our calls at once (so a handler awaiting a call cannot deadlock its own
//!   session), and queues application messages. When the queue is full it waits, so the
//!   socket is not read: backpressure instead of loss.
//! - The **worker** handles one message at a time, in arrival order. Different sessions
//!   have different tasks, so they run in parallel on the runtime's threads and a slow
//!   handler delays only its own session. The parts of one session share a thread at
//!   any moment, so its messages never cross threads on their way through.
//! - The **writer** drains the outbound queue in batches, one write call per batch.
//!
//! The worker ends when the reader has ended and the queue is empty; then the writer
//! flushes what is queued and the session is finished.

use std::future::Future;
use std::io::IoSlice;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::Decoder;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::builder::PanicPolicy;
use crate::calls::Outcome;
use crate::error::SessionErrorKind;
use crate::frame::{FrameCodec, Packet};
use crate::inbox;
use crate::joint;
use crate::outbound::Batch;
use crate::router::{Reply, ReplyTo};
use crate::session::{CloseMode, CloseReason, Session};
use crate::status::{Code, Status};
use crate::wire::{self, Incoming};

/// The most bytes one write call carries.
const MAX_BATCH: usize = 64 * 1024;
/// The smallest free space the reader asks the socket to fill.
const READ_CHUNK: usize = 4 * 1024;
/// The most it asks for, when reads keep filling what it offers.
const MAX_READ_CHUNK: usize = 64 * 1024;

/// An application message waiting for its handler.
struct Inbound {
    id: u32,
    body: Bytes,
    call: Option<u32>,
}

/// Starts the tasks of a session over a byte stream.
pub(crate) fn spawn<R, W>(session: Session, reader: R, writer: W, tracker: Option<&TaskTracker>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let span = tracing::info_span!(
        "session",
        id = session.id(),
        peer = %session.peer_addr(),
        transport = %session.transport(),
    );
    let fut = run(session, reader, writer).instrument(span);
    match tracker {
        Some(tracker) => tracker.spawn(fut),
        None => tokio::spawn(fut),
    };
}

async fn run<R, W>(session: Session, reader: R, writer: W)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    tracing::debug!("session open");
    let shared = session.inner.shared.clone();
    if let Some(hook) = &shared.hooks.on_connect {
        hook(&session);
    }
    let (tx, rx) = inbox::channel(shared.settings.inbound_queue);
    let work = async {
        tokio::select! {
            () = work_loop(&session, rx) => {}
            () = shared.kill.cancelled() => {
                session.close_with(CloseReason::ServerShutdown, CloseMode::Abort);
            }
        }
        session.inner.out.finish();
    };
    // The reader, the worker and the writer are three futures of one task, so a
    // session's messages never cross threads: no wake-ups between threads and no
    // contended reference counts on the message path. They still progress
    // independently (the reader resolves call replies while a handler awaits one).
    // The reader ends when the worker is gone or reading stops, the writer once the
    // queue is finished and flushed.
    joint::join([
        Box::pin(guarded(
            "reader",
            &session,
            read_loop(session.clone(), reader, tx),
        )),
        Box::pin(work),
        Box::pin(guarded(
            "writer",
            &session,
            write_loop(session.clone(), writer),
        )),
    ])
    .await;

    session.inner.calls.close();
    if let Some(pool) = &shared.pool {
        pool.remove(&session);
    }
    // A session that ended without a reason ended because its peer went away.
    session.close_with(CloseReason::PeerClosed, CloseMode::Graceful);
    let reason = session.close_reason().unwrap_or(CloseReason::PeerClosed);
    tracing::debug!(%reason, "session closed");
    session.inner.done.cancel();
    if let Some(hook) = &shared.hooks.on_close {
        hook(&session, &reason);
    }
}

/// Runs a part of the session driver; a panic in it (a bug of ours, never a handler's:
/// those are caught one by one) is logged and ends the session instead of skipping its
/// cleanup.
async fn guarded(part: &'static str, session: &Session, fut: impl Future<Output = ()>) {
    if let Err(payload) = AssertUnwindSafe(fut).catch_unwind().await {
        let panic = panic_message(&*payload);
        tracing::error!(part, panic, "session driver panicked");
        session.close_with(
            CloseReason::Local(format!("session {part} panicked").into()),
            CloseMode::Abort,
        );
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    session: Session,
    mut reader: R,
    tx: inbox::Sender<Inbound>,
) {
    let mut codec = FrameCodec::new(session.max_frame_len());
    let mut buf = BytesMut::new();
    let mut chunk = READ_CHUNK;
    let stop = session.inner.stop_reading.clone();
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(packet)) => {
                    if !deliver(&session, &tx, packet).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    session.fail_with_error(err.into(), CloseMode::Graceful);
                    return;
                }
            }
        }
        let missing = codec.missing(&buf);
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            read = std::future::poll_fn(|cx| poll_read_some(&mut reader, &mut buf, missing, chunk, cx)) => read,
        };
        match read {
            Ok((0, _)) => {
                match codec.decode_eof(&mut buf) {
                    Ok(_) => session.close_with(CloseReason::PeerClosed, CloseMode::Graceful),
                    Err(err) => session.fail_with_error(err.into(), CloseMode::Graceful),
                }
                return;
            }
            // A full buffer means more was waiting: read more at once next time.
            Ok((_, true)) => chunk = (chunk * 2).min(MAX_READ_CHUNK),
            Ok((n, false)) if n < chunk / 16 => chunk = (chunk / 2).max(READ_CHUNK),
            Ok(_) => {}
            Err(err) => {
                session.fail_with_error(SessionErrorKind::Io(err), CloseMode::Graceful);
                return;
            }
        }
    }
}

/// Reads what the socket has into `buf`, with room for at least `missing` more bytes
/// (the rest of a partly read frame) and for `chunk` in all. Returns the bytes read and
/// whether they filled the room offered.
///
/// A quiet peer costs no read buffer: when a read would wait, nothing partial is
/// buffered and reads have been small, the buffer is given back and a new one taken
/// when the reader is woken again. Idle sessions hold no read buffer at all (a session
/// that went quiet right after large reads keeps one until its reads are small again).
fn poll_read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    missing: usize,
    chunk: usize,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<(usize, bool)>> {
    if buf.capacity() - buf.len() < missing.max(READ_CHUNK) {
        buf.reserve(missing.max(chunk));
    }
    let room = buf.capacity() - buf.len();
    let read = std::pin::pin!(reader.read_buf(buf)).poll(cx);
    // A session whose reads have been large keeps its buffer: giving back and taking
    // tens of kilobytes at every batch makes the allocator return memory to the system
    // and fault it in again.
    if read.is_pending() && buf.is_empty() && chunk <= READ_CHUNK {
        *buf = BytesMut::new();
    }
    read.map_ok(|n| (n, n >= room))
}

/// Routes one frame; false when the worker is gone.
async fn deliver(session: &Session, tx: &inbox::Sender<Inbound>, packet: Packet) -> bool {
    match wire::classify(packet) {
        Ok(Incoming::Message { id, body, call }) => {
            session
                .inner
                .counters
                .received
                .fetch_add(1, Ordering::Relaxed);
            tx.send(Inbound { id, body, call }).await.is_ok()
        }
        Ok(Incoming::Response { call, id, body }) => {
            if !session
                .inner
                .calls
                .resolve(call, Outcome::Reply { id, body })
            {
                session.report(SessionErrorKind::StrayReply { call });
            }
            true
        }
        Ok(Incoming::Error { call, status }) => {
            if !session.inner.calls.resolve(call, Outcome::Error(status)) {
                session.report(SessionErrorKind::StrayReply { call });
            }
            true
        }
        Ok(Incoming::Ping) => {
            // A full queue closes the session itself; nothing more to do here.
            let _ = session.send_frame(wire::encode_control(wire::ID_PONG));
            true
        }
        Ok(Incoming::Pong) => true,
        Err(err) => {
            session.report(err.into());
            true
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(session: Session, mut writer: W) {
    let out = &session.inner.out;
    let timeout = session.inner.shared.settings.write_timeout;
    // Frames go out as they are (a broadcast's one buffer is never copied per
    // recipient) when the writer takes vectored writes, else copied into one buffer.
    let vectored = writer.is_write_vectored();
    let mut frames = Vec::new();
    let mut buf = BytesMut::new();
    loop {
        let batch = if vectored {
            out.next_frames(&mut frames, MAX_BATCH).await
        } else {
            out.next_batch(&mut buf, MAX_BATCH).await
        };
        if batch != Batch::Write {
            break;
        }
        let write = async {
            if vectored {
                write_frames(&mut writer, &frames).await
            } else {
                writer.write_all(&buf).await
            }
        };
        let written = tokio::select! {
            written = tokio::time::timeout(timeout, write) => written,
            () = out.aborted() => return,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                session.fail_with_error(SessionErrorKind::Io(err), CloseMode::Abort);
                return;
            }
            Err(_) => {
                let len = buf.len() + frames.iter().map(Bytes::len).sum::<usize>();
                session.fail(
                    SessionErrorKind::SlowPeer(format!(
                        "a write of {len} bytes made no progress for {timeout:?}"
                    )),
                    CloseReason::SlowPeer,
                    CloseMode::Abort,
                );
                return;
            }
        }
        frames.clear();
        buf.clear();
        if buf.capacity() > MAX_BATCH * 2 {
            buf = BytesMut::new();
        }
    }
    if !out.is_aborted() {
        // Tell the peer we are done (TCP FIN). It may already be gone; that is fine.
        let _ = tokio::time::timeout(timeout, writer.shutdown()).await;
    }
}

/// Writes `frames` with as few vectored writes as the writer allows.
async fn write_frames<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frames: &[Bytes],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = writer.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

async fn work_loop(session: &Session, mut rx: inbox::Receiver<Inbound>) {
    // The block replies are encoded into (see `wire::with_reply_block`).
    let mut replies = BytesMut::new();
    loop {
        let inbound = match rx.try_recv() {
            Some(inbound) => inbound,
            None => {
                // Out of messages: let the block go with the replies still to be written.
                replies = BytesMut::new();
                match rx.recv().await {
                    Some(inbound) => inbound,
                    None => return,
                }
            }
        };
        if session.discarding() {
            continue;
        }
        handle(session, inbound, &mut replies).await;
        session
            .inner
            .counters
            .handled
            .fetch_add(1, Ordering::Relaxed);
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

async fn handle(session: &Session, Inbound { id, body, call }: Inbound, replies: &mut BytesMut) {
    let to = ReplyTo {
        codec: session.codec(),
        call,
        max_frame_len: session.max_frame_len(),
    };
    let reply_error = |status: Status| {
        if let Some(call) = call {
            let _ = session.send_frame(wire::encode_error(call, &status));
        }
    };
    let router = &session.inner.shared.router;
    let Some((name, fut)) = router.dispatch(session.clone(), id, body, to) else {
        session.report(SessionErrorKind::UnknownMessage { id });
        reply_error(Status::unimplemented(format!(
            "no handler for message id {id}"
        )));
        return;
    };
    let span = tracing::debug_span!("message", id, name);
    let mut fut = fut;
    let fut = std::future::poll_fn(|cx| wire::with_reply_block(replies, || fut.as_mut().poll(cx)));
    let result = AssertUnwindSafe(fut)
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    match result {
        Ok(Ok(Reply::Frame(frame))) => {
            if let Err(source) = session.send_frame(frame) {
                session.report(SessionErrorKind::Reply { id, name, source });
            }
        }
        Ok(Ok(Reply::None)) => reply_error(Status::new(
            Code::NoReply,
            format!("handler of {name} sent no reply"),
        )),
        Ok(Ok(Reply::Error(status))) => match call {
            Some(_) => reply_error(status),
            None => {
                session.report(SessionErrorKind::Handler { id, name, status });
            }
        },
        Ok(Err(source)) => {
            let err = session.report(SessionErrorKind::Decode { id, name, source });
            reply_error(Status::invalid_argument(err.kind.to_string()));
        }
        Err(payload) => {
            let panic = panic_message(&*payload);
            session.report(SessionErrorKind::Panic { id, name, panic });
            reply_error(Status::internal(format!("handler of {name} panicked")));
            if session.inner.shared.settings.panic_policy == PanicPolicy::CloseSession {
                session.close_with(CloseReason::HandlerPanicked, CloseMode::Discard);
            }
        }
    }
}
