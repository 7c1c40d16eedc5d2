//! The session driver: a reader, a worker and a writer per connection, three parts of
//! one task (see `joint`).
//!
//! ```text
//!  socket ─► reader ─► inbound queue (bounded) ─► worker ─► handler ─► outbound queue ─► writer ─► socket
//! ```
//!
//! - The **reader** takes packets from the transport, answers heartbeats, resolves
//!   replies to our calls at once (so a handler awaiting a call cannot deadlock its own
//!   session), and queues application messages. When the queue is full it waits, so the
//!   socket is not read: backpressure instead of loss.
//! - The **worker** handles one message at a time, in arrival order. Different sessions
//!   have different tasks, so they run in parallel on the runtime's threads and a slow
//!   handler delays only its own session. The parts of one session share a thread at
//!   any moment, so its messages never cross threads on their way through.
//! - The **writer** drains the outbound queue in batches, one write call per batch.
//! - **Heartbeats**: when configured, the reader pings a peer that has been silent for
//!   the heartbeat interval and closes the session with [`CloseReason::IdleTimeout`]
//!   once it has heard nothing at all for the idle timeout.
//!
//! The transport is reached only through a [`PacketSource`] and a [`FrameSink`]
//! (module `link`), so every transport shares this ordering, backpressure, outbound
//! queue, hooks and close logic.
//!
//! The worker ends when the reader has ended and the queue is empty; then the writer
//! flushes what is queued and the session is finished.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::builder::PanicPolicy;
use crate::calls::Outcome;
use crate::error::SessionErrorKind;
use crate::frame::Packet;
use crate::inbox;
use crate::joint;
use crate::link::{FrameSink, PacketSource, ReadEnd};
use crate::outbound::Batch;
use crate::router::{Reply, ReplyTo};
use crate::session::{CloseMode, CloseReason, Session};
use crate::status::{Code, Status};
use crate::wire::{self, Incoming};

/// An application message waiting for its handler.
pub(crate) struct Inbound {
    id: u32,
    body: Bytes,
    call: Option<u32>,
}

/// Starts the tasks of a session over a packet source and a frame sink.
pub(crate) fn spawn<S, K>(session: Session, source: S, sink: K, tracker: Option<&TaskTracker>)
where
    S: PacketSource,
    K: FrameSink,
{
    let span = tracing::info_span!(
        "session",
        id = session.id(),
        peer = %session.peer_addr(),
        transport = %session.transport(),
    );
    let fut = run(session, source, sink).instrument(span);
    match tracker {
        Some(tracker) => tracker.spawn(fut),
        None => tokio::spawn(fut),
    };
}

/// Starts an extra lane of a session (a QUIC channel): its own reader and ordered
/// worker, so that its messages are handled in order with each other and in parallel
/// with the session's other messages. No heartbeat: the session's main reader has it.
#[cfg_attr(not(feature = "quic"), allow(dead_code, reason = "used by quic only"))]
pub(crate) fn spawn_lane<S: PacketSource>(session: Session, mut source: S) {
    let span = tracing::debug_span!("lane", session = session.id());
    tokio::spawn(
        async move {
            let (tx, rx) = inbox::channel(session.inner.shared.settings.inbound_queue);
            let stop = session.inner.stop_reading.clone();
            let reader = async {
                let tx = tx;
                loop {
                    let next = tokio::select! {
                        biased;
                        _ = stop.cancelled() => return,
                        next = source.next_packet(&session) => next,
                    };
                    match next {
                        Ok(packet) => {
                            if !deliver(&session, &tx, packet).await {
                                return;
                            }
                        }
                        Err(ReadEnd::Closed(_)) => return,
                        Err(ReadEnd::Failed(kind)) => {
                            session.report(kind);
                            return;
                        }
                    }
                }
            };
            let kill = session.inner.shared.kill.clone();
            // One task, like the session's own parts (see `run`).
            let parts = joint::join([Box::pin(reader), Box::pin(work_loop(&session, rx))]);
            tokio::select! {
                () = parts => {}
                () = kill.cancelled() => {}
            }
        }
        .instrument(span),
    );
}

async fn run<S: PacketSource, K: FrameSink>(session: Session, source: S, sink: K) {
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
            read_loop(session.clone(), source, tx),
        )),
        Box::pin(work),
        Box::pin(guarded(
            "writer",
            &session,
            write_loop(session.clone(), sink),
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

/// The heartbeat state of one reader: when the peer was last heard, when we last
/// pinged. The message path only sets a flag; the clock is read once per tick.
struct Liveness {
    ping: Option<Duration>,
    idle: Option<Duration>,
    heard: bool,
    last_heard: Instant,
    last_ping: Instant,
}

impl Liveness {
    fn with(ping: Option<Duration>, idle: Option<Duration>, now: Instant) -> Self {
        Liveness {
            ping,
            idle,
            heard: false,
            last_heard: now,
            last_ping: now,
        }
    }

    fn new(session: &Session) -> (Self, Option<tokio::time::Interval>) {
        let (ping, idle) = session.heartbeat();
        let now = Instant::now();
        let live = Liveness::with(ping, idle, now);
        // Tick often enough that an idle peer is noticed at most a quarter late.
        let tick = match (ping, idle) {
            (None, None) => return (live, None),
            (Some(p), None) => p,
            (None, Some(i)) => i / 4,
            (Some(p), Some(i)) => p.min(i / 4),
        }
        .max(Duration::from_millis(1));
        let mut timer = tokio::time::interval_at(now + tick, tick);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        (live, Some(timer))
    }

    /// One tick: `Err` when the peer has been silent too long, else whether to ping.
    fn tick(&mut self, now: Instant) -> Result<bool, Duration> {
        if std::mem::take(&mut self.heard) {
            self.last_heard = now;
        }
        let silent = now - self.last_heard;
        if let Some(idle) = self.idle {
            if silent >= idle {
                return Err(silent);
            }
        }
        match self.ping {
            Some(ping) if silent >= ping && now - self.last_ping >= ping => {
                self.last_ping = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

async fn read_loop<S: PacketSource>(session: Session, mut source: S, tx: inbox::Sender<Inbound>) {
    let stop = session.inner.stop_reading.clone();
    let (mut live, mut timer) = Liveness::new(&session);
    let ticking = timer.is_some();
    loop {
        if stop.is_cancelled() {
            return;
        }
        // Packets already buffered go first, with no timer or cancellation polled.
        let next = match source.try_next(&session) {
            Some(next) => next,
            None => tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                next = source.next_packet(&session) => next,
                now = async { timer.as_mut().expect("ticking").tick().await }, if ticking => {
                    match live.tick(now) {
                        Ok(true) => {
                            // A full queue closes the session itself; nothing more to do.
                            let _ = session.send_frame(wire::encode_control(wire::ID_PING));
                        }
                        Ok(false) => {}
                        Err(silent) => {
                            session.fail(
                                SessionErrorKind::IdleTimeout(silent),
                                CloseReason::IdleTimeout,
                                CloseMode::Graceful,
                            );
                            return;
                        }
                    }
                    continue;
                }
            },
        };
        match next {
            Ok(packet) => {
                live.heard = true;
                if !deliver(&session, &tx, packet).await {
                    return;
                }
            }
            Err(ReadEnd::Closed(reason)) => {
                session.close_with(reason, CloseMode::Graceful);
                return;
            }
            Err(ReadEnd::Failed(kind)) => {
                session.fail_with_error(kind, CloseMode::Graceful);
                return;
            }
        }
    }
}

/// Routes one packet; false when the worker is gone.
pub(crate) async fn deliver(
    session: &Session,
    tx: &inbox::Sender<Inbound>,
    packet: Packet,
) -> bool {
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
        Ok(Incoming::Bye) => {
            session.close_with(CloseReason::PeerClosed, CloseMode::Graceful);
            false
        }
        Err(err) => {
            session.report(err.into());
            true
        }
    }
}

async fn write_loop<K: FrameSink>(session: Session, mut sink: K) {
    let out = &session.inner.out;
    let timeout = session.inner.shared.settings.write_timeout;
    while sink.take(out).await == Batch::Write {
        let written = tokio::select! {
            written = tokio::time::timeout(timeout, sink.write()) => written,
            () = out.aborted() => return,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                session.fail_with_error(SessionErrorKind::Io(err), CloseMode::Abort);
                return;
            }
            Err(_) => {
                session.fail(
                    SessionErrorKind::SlowPeer(format!(
                        "a write of {} bytes made no progress for {timeout:?}",
                        sink.pending()
                    )),
                    CloseReason::SlowPeer,
                    CloseMode::Abort,
                );
                return;
            }
        }
    }
    if !out.is_aborted() {
        let reason = session.close_reason();
        let _ = tokio::time::timeout(timeout, sink.shutdown(reason.as_ref())).await;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_silent_peer_is_pinged_then_timed_out() {
        let t0 = Instant::now();
        let mut live = Liveness::with(Some(100 * MS), Some(400 * MS), t0);
        assert_eq!(live.tick(t0 + 50 * MS), Ok(false));
        assert_eq!(
            live.tick(t0 + 100 * MS),
            Ok(true),
            "silent for the interval: ping"
        );
        assert_eq!(live.tick(t0 + 150 * MS), Ok(false), "one ping per interval");
        assert_eq!(live.tick(t0 + 200 * MS), Ok(true));
        assert_eq!(live.tick(t0 + 400 * MS), Err(400 * MS));
    }

    #[test]
    fn anything_heard_resets_the_clock() {
        let t0 = Instant::now();
        let mut live = Liveness::with(Some(100 * MS), Some(400 * MS), t0);
        for step in 1..=10 {
            live.heard = true;
            assert_eq!(live.tick(t0 + step * 100 * MS), Ok(false), "step {step}");
        }
        assert_eq!(live.tick(t0 + 1_300 * MS), Ok(true));
        assert_eq!(live.tick(t0 + 1_400 * MS), Err(400 * MS));
    }

    #[test]
    fn idle_timeout_alone_never_pings() {
        let t0 = Instant::now();
        let mut live = Liveness::with(None, Some(100 * MS), t0);
        assert_eq!(live.tick(t0 + 99 * MS), Ok(false));
        assert_eq!(live.tick(t0 + 100 * MS), Err(100 * MS));
    }
}
