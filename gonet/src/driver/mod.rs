//! The session driver: an inbound part and a writer per connection, two parts of one
//! task (see `joint`).
//!
//! ```text
//!  socket ─► inbound: read, handle in order ─► outbound queue ─► writer ─► socket
//!                   └─► waiting messages (bounded) ─┘
//! ```
//!
//! - The **inbound part** takes packets from the transport, answers heartbeats,
//!   resolves replies to our calls at once (so a handler awaiting a call cannot deadlock
//!   its own session) and hands application messages to their handlers, one at a time,
//!   in arrival order. A handler that finishes when first polled, as most do, is run
//!   right there, while its message is in the read buffer, and its reply is encoded
//!   after the previous one in the session's reply block. A handler that waits holds up
//!   the messages behind it, which queue (up to `inbound_queue` for the whole session,
//!   counted over all its inbound parts: a QUIC channel's too) while reading goes on;
//!   when the queue is full the socket is not read: backpressure instead of loss.
//!   The replies of a batch of messages (what one read brought) are queued for the
//!   writer together, as one buffer.
//! - Different sessions have different tasks, so they run in parallel on the runtime's
//!   threads and a slow handler delays only its own session. The parts of one session
//!   share a thread at any moment, so its messages never cross threads on their way
//!   through.
//! - The **writer** drains the outbound queue in batches, one write call per batch.
//! - **Heartbeats**: when configured, the inbound part pings a peer that has been
//!   silent for the heartbeat interval and closes the session with
//!   [`CloseReason::IdleTimeout`] once it has heard nothing at all for the idle timeout.
//! - **Handshake** (`handshake`): on a server that asks for one, the first packet must
//!   be the client's hello; the application's hook accepts or refuses it before the
//!   connect hook runs and before anything else of the session is handled.
//!
//! The transport is reached only through a [`PacketSource`] and a [`FrameSink`]
//! (module `link`), so every transport shares this ordering, backpressure, outbound
//! queue, hooks and close logic.
//!
//! Once reading has stopped, the inbound part handles the messages already accepted
//! and ends; then the writer flushes what is queued and the session is finished.
//!
//! Replies leave in the order their handlers produced them, with the session's other
//! frames (a push or a broadcast queued by a handler goes after the replies before it).
//! Against frames queued from elsewhere (another session's handler, a spawned task)
//! there is no order, as before; the replies of a batch are queued when the batch ends
//! or a waiting handler finishes, microseconds after their handlers.
//!
//! This folder holds the driver, the `joint` that runs its parts as one task, and the
//! `link` seam (packet source, frame sink) that every transport implements. It uses
//! `session/` (whose stop signals it polls), `service/` (the router it runs), `wire/`,
//! `codec/` and `settings`; only `transport/`, which starts it, uses it.

mod handshake;
mod joint;
pub(crate) mod link;

use std::any::TypeId;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::time::{Instant, Sleep};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::codec::Body;
use crate::service::router::{HandlerSlot, Reply, ReplyKind, ReplyTo, StartError};
use crate::session::calls::Outcome;
use crate::session::error::SessionErrorKind;
use crate::session::limit::{Limiter, RatePolicy};
use crate::session::outbound::{Batch, PushError};
use crate::session::resume::{self, LinkEvent};
use crate::session::signal::{Signal, Wait};
use crate::session::{CloseMode, CloseReason, Session};
use crate::settings::PanicPolicy;
use crate::wire::frame::Packet;
use crate::wire::{self, Code, Incoming, Metadata, ReplyBlock, Status};
use handshake::Verdict;
use link::{FrameSink, PacketSource, ReadEnd};

/// The span every log line of a session's tasks is in.
fn session_span(session: &Session) -> tracing::Span {
    tracing::info_span!(
        "session",
        id = session.id(),
        peer = %session.peer_addr(),
        transport = %session.transport(),
    )
}

/// Starts the tasks of a session over a packet source and a frame sink.
pub(crate) fn spawn<S, K>(session: Session, source: S, sink: K, tracker: Option<&TaskTracker>)
where
    S: PacketSource,
    K: FrameSink,
{
    let span = session_span(&session);
    let fut = run(session, source, sink, None).instrument(span);
    match tracker {
        Some(tracker) => tracker.spawn(fut),
        None => tokio::spawn(fut),
    };
}

/// Starts a client's session that connects again with `redial` when its connection
/// drops, if its builder set a reconnect policy.
#[cfg_attr(
    not(any(feature = "tcp", feature = "ws")),
    allow(dead_code, reason = "used by tcp and ws")
)]
pub(crate) fn spawn_client<S, K>(session: Session, source: S, sink: K, redial: Redial<S, K>)
where
    S: PacketSource,
    K: FrameSink,
{
    let span = session_span(&session);
    let redial = session
        .inner
        .shared
        .settings
        .reconnect
        .is_some()
        .then_some(redial);
    tokio::spawn(run(session, source, sink, redial).instrument(span));
}

/// Starts an extra lane of a session (a QUIC channel): its own inbound part, so that
/// its messages are handled in order with each other and in parallel with the
/// session's other messages. No heartbeat: the session's main reader has it.
#[cfg_attr(not(feature = "quic"), allow(dead_code, reason = "used by quic only"))]
pub(crate) fn spawn_lane<S: PacketSource>(session: Session, source: S) {
    let span = tracing::debug_span!("lane", session = session.id());
    let parts = &session.inner.inbound.extra_parts;
    parts.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(
        async move {
            let kill = session.inner.shared.kill.clone();
            // Outside the runtime's budget, like the session's own parts (see `joint`).
            let lane = tokio::task::unconstrained(guarded("lane", &session, async {
                let mut work = Work::new(&session);
                let mut block = ReplyBlock::default();
                inbound(&session, source, Lane::Extra, &mut work, &mut block, None).await;
            }));
            tokio::select! {
                () = lane => {}
                () = kill.raised() => {}
            }
            session
                .inner
                .inbound
                .extra_parts
                .fetch_sub(1, Ordering::Relaxed);
        }
        .instrument(span),
    );
}

/// Connects a client's session again: a new connection of the same transport, to the
/// address given (a URL a draining server named), else to the first one.
pub(crate) type Redial<S, K> = Box<
    dyn Fn(
            Session,
            Option<String>,
        ) -> std::pin::Pin<
            Box<
                dyn Future<Output = Result<(S, K), Box<dyn std::error::Error + Send + Sync>>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

/// A session from start to end: handshake, connection after connection, close.
///
/// Not an `async fn`: its arguments would be kept twice in its future, once as they
/// came and once as moved on, for the life of the session. The connection lives in
/// `link` only.
fn run<S: PacketSource, K: FrameSink>(
    session: Session,
    source: S,
    sink: K,
    redial: Option<Redial<S, K>>,
) -> impl Future<Output = ()> + Send + 'static {
    // Boxed until its parts take it: the future keeps a place for what it captures for
    // its whole life, and a connection is large (a TCP one about 220 bytes).
    let mut link = Some(Box::new((source, sink)));
    async move {
        tracing::debug!("session open");
        let shared = session.inner.shared.clone();
        let verdict = match (&shared.hooks.on_handshake, &shared.pool) {
            // A server with a handshake: nothing else before it.
            (Some(hook), Some(_)) => {
                let (source, _) = &mut **link.as_mut().expect("the first connection");
                Box::pin(handshake::serve(
                    &session,
                    source,
                    hook,
                    TypeId::of::<(S, K)>(),
                ))
                .await
            }
            _ => Verdict::Accepted,
        };
        let mut work = Work::new(&session);
        let mut block = ReplyBlock::default();
        match verdict {
            Verdict::Resume { target, received } => {
                let first = link.take().expect("the first connection");
                handshake::hand_over(&session, target, first, received);
                return;
            }
            Verdict::Refused => {}
            Verdict::Accepted => {
                if let Some(resume) = &session.inner.resume {
                    let _ = resume.link_type.set(TypeId::of::<(S, K)>());
                    // A server counts what a resumable client sends after its hello.
                    work.counting = resume.is_active();
                }
                if let Some(hook) = &shared.hooks.on_connect {
                    hook(&session);
                }
            }
        }
        let transport = session.transport();
        crate::telemetry::session_opened(transport);
        loop {
            let mut ended = Ended::Done;
            // Each part is made in its box, the connection moved straight in: a part
            // or a connection kept in a local first would keep its size in this task's
            // future too, for the life of the session.
            let parts: [joint::Part<'_>; 2] = {
                let Some(connection) = link.take() else {
                    break;
                };
                let (source, sink) = *connection;
                // The server's stop-everything is watched by the reader itself, so
                // that the reader is the part's future, not nested in another.
                let reader = inbound(
                    &session,
                    source,
                    Lane::Main,
                    &mut work,
                    &mut block,
                    Some(&shared.kill),
                );
                let ended = &mut ended;
                let inbound: joint::Part<'_> =
                    Box::pin(guarded("reader", &session, reader).map(|end| {
                        *ended = end;
                        if end == Ended::Done {
                            let peer_left =
                                matches!(session.close_reason(), Some(CloseReason::PeerClosed));
                            if !peer_left
                                && session
                                    .inner
                                    .resume
                                    .as_ref()
                                    .is_some_and(|r| r.client || r.is_active())
                            {
                                // A peer that could resume must not take this close for
                                // a drop.
                                session.send_control(wire::encode_control(wire::ID_BYE));
                            }
                            session.inner.out.finish();
                        }
                    }));
                // The inbound part and the writer are two futures of one task, so a
                // session's messages never cross threads: no wake-ups between threads
                // and no contended reference counts on the message path. They still
                // progress independently (the writer writes while a handler waits). The
                // writer ends once the queue is finished and flushed, or the connection
                // is lost.
                let writer: joint::Part<'_> = Box::pin(guarded(
                    "writer",
                    &session,
                    write_loop(session.clone(), sink),
                ));
                [inbound, writer]
            };
            joint::join(parts).await;
            if ended == Ended::Lost {
                session.link_event(LinkEvent::Detached);
                // Boxed, like the handshake: only resumable sessions wait here, and a
                // future kept in place would make every session's task larger.
                link = match &redial {
                    Some(redial) => {
                        Box::pin(reconnect(&session, &mut work, &mut block, redial)).await
                    }
                    None => Box::pin(await_handover(&session, &mut work, &mut block)).await,
                }
                .map(Box::new);
            }
        }

        session.inner.calls.close();
        if let Some(pool) = &shared.pool {
            pool.remove(&session);
        }
        // A session that ended without a reason ended because its peer went away.
        session.close_with(CloseReason::PeerClosed, CloseMode::Graceful);
        session.inner.out.finish();
        let reason = session.close_reason().unwrap_or(CloseReason::PeerClosed);
        crate::telemetry::session_closed(transport, reason.label());
        session.log_suppressed();
        tracing::debug!(%reason, "session closed");
        session.inner.done.raise();
        if let Some(hook) = &shared.hooks.on_close {
            hook(&session, &reason);
        }
    }
}

/// Runs the handlers of a session without a connection until `until` completes: their
/// replies and sends are kept for the next connection.
async fn handle_meanwhile<T>(
    session: &Session,
    work: &mut Work<'_>,
    block: &mut ReplyBlock,
    until: impl Future<Output = T>,
) -> T {
    let mut until = std::pin::pin!(until);
    loop {
        tokio::select! {
            biased;
            done = &mut until => return done,
            () = std::future::poll_fn(|cx| {
                wire::with_reply_block(session.id(), block, || work.progress(cx))
            }), if !work.is_idle() => work.flush(block),
        }
    }
}

/// A server's detached session waits for its client to come back with a new
/// connection, for the grace period; `None` once it is closed (expired, kicked, shut
/// down).
async fn await_handover<S: PacketSource, K: FrameSink>(
    session: &Session,
    work: &mut Work<'_>,
    block: &mut ReplyBlock,
) -> Option<(S, K)> {
    let resume = session.inner.resume.as_ref()?;
    let grace = session
        .inner
        .shared
        .settings
        .resume
        .map_or(Duration::ZERO, |r| r.grace);
    tracing::info!(?grace, "connection lost; the session waits for its client");
    let deadline = Instant::now() + grace;
    let shared = &session.inner.shared;
    loop {
        if session.inner.stop_reading.is_raised() {
            return None;
        }
        if let Some(handover) = resume.take_handover() {
            let Ok(link) = handover.link.downcast::<(S, K)>() else {
                // Checked before the hand-over; a link of another kind is dropped.
                continue;
            };
            let answer = wire::encode_count(wire::ID_RESUMED, work.rx);
            match session
                .inner
                .out
                .resume_from(handover.received, Some(answer))
            {
                Ok(()) => {
                    resume.detached.store(false, Ordering::Release);
                    let (peer, local) = handover.addrs;
                    session.set_addrs(peer, local);
                    tracing::info!(received = handover.received, %peer, "session resumed");
                    session.link_event(LinkEvent::Resumed);
                    return Some(*link);
                }
                Err(gap) => {
                    session.fail_with_error(
                        SessionErrorKind::Resume(format!(
                            "the client asks from byte {}, and bytes {}..{} are kept",
                            gap.from, gap.start, gap.end
                        )),
                        CloseMode::Discard,
                    );
                    return None;
                }
            }
        }
        let woken = handle_meanwhile(session, work, block, async {
            tokio::select! {
                () = resume.wake.notified() => true,
                () = tokio::time::sleep_until(deadline) => false,
                () = session.inner.stop_reading.wait() => true,
                () = shared.kill.raised() => true,
            }
        })
        .await;
        if shared.kill.is_raised() {
            session.close_with(CloseReason::ServerShutdown, CloseMode::Abort);
            return None;
        }
        if !woken {
            tracing::info!(?grace, "the client did not come back: session expired");
            session.link_event(LinkEvent::Expired);
            session.close_with(CloseReason::Expired, CloseMode::Discard);
            return None;
        }
    }
}

/// A client connects again after its connection dropped, as its policy says, and
/// resumes its session (or, when the server has none to resume, starts a fresh one);
/// `None` once it gives up (the session is then closed).
async fn reconnect<S: PacketSource, K: FrameSink>(
    session: &Session,
    work: &mut Work<'_>,
    block: &mut ReplyBlock,
    redial: &Redial<S, K>,
) -> Option<(S, K)> {
    let policy = session.inner.shared.settings.reconnect.clone()?;
    let resume = session.inner.resume.as_ref()?;
    let started = *work.since.get_or_insert_with(Instant::now);
    for attempt in work.attempts..policy.max_attempts {
        work.attempts = attempt + 1;
        if session.inner.stop_reading.is_raised() {
            return None;
        }
        let wait = policy.delay(attempt);
        if started.elapsed() + wait > policy.max_elapsed {
            break;
        }
        let dialed = handle_meanwhile(session, work, block, async {
            tokio::select! {
                () = session.inner.stop_reading.wait() => None,
                dialed = async {
                    tokio::time::sleep(wait).await;
                    let to = resume
                        .redirect
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    redial(session.clone(), to).await
                } => Some(dialed),
            }
        })
        .await;
        let (source, sink) = match dialed? {
            Ok(link) => link,
            Err(err) => {
                tracing::debug!(attempt, error = %err, "reconnect failed");
                continue;
            }
        };
        match resume.token() {
            Some((id, token)) => {
                tracing::info!(attempt, server_session = id, "connected again; resuming");
                work.phase = Phase::Resuming;
                session
                    .inner
                    .out
                    .reattach(wire::encode_resume(id, &token, work.rx), false);
            }
            None => {
                let Some(hello) = session.hello_frame() else {
                    session.close_with(
                        CloseReason::Local("the handshake does not encode".into()),
                        CloseMode::Discard,
                    );
                    return None;
                };
                tracing::info!(attempt, "connected again; starting a fresh session");
                work.start_afresh();
                work.phase = Phase::Greeting;
                session.inner.out.reattach(hello, true);
            }
        }
        return Some((source, sink));
    }
    tracing::warn!(
        attempts = policy.max_attempts,
        elapsed = ?started.elapsed(),
        "could not connect again: session closed"
    );
    session.link_event(LinkEvent::Expired);
    session.close_with(CloseReason::Expired, CloseMode::Discard);
    None
}

/// Runs a part of the session driver; a panic in it (a bug of ours, never a handler's:
/// those are caught one by one) is logged and ends the session instead of skipping its
/// cleanup.
///
/// Not an `async fn`: that would keep `fut` twice, as its argument and inside the
/// unwind guard it awaits, and every idle session holds its parts.
fn guarded<'a, T: Default>(
    part: &'static str,
    session: &'a Session,
    fut: impl Future<Output = T> + 'a,
) -> impl Future<Output = T> + 'a {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .map(move |done| match done {
            Ok(value) => value,
            Err(payload) => {
                let panic = crate::codec::panic_text(&*payload);
                tracing::error!(part, panic, "session driver panicked");
                session.close_with(
                    CloseReason::Local(format!("session {part} panicked").into()),
                    CloseMode::Abort,
                );
                T::default()
            }
        })
}

/// The heartbeat state of one reader: when the peer was last heard, when we last
/// pinged. The clock is read once per batch of packets, never per message.
struct Liveness {
    ping: Option<Duration>,
    idle: Option<Duration>,
    last_heard: Instant,
    /// When the last ping went out, if one has since the peer was last heard.
    pinged: Option<Instant>,
}

impl Liveness {
    fn with(ping: Option<Duration>, idle: Option<Duration>, now: Instant) -> Self {
        Liveness {
            ping,
            idle,
            last_heard: now,
            pinged: None,
        }
    }

    fn new(session: &Session) -> Self {
        let (ping, idle) = session.heartbeat();
        Liveness::with(ping, idle, Instant::now())
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.pinged = None;
    }

    /// When the next ping or the timeout is due.
    fn due(&self) -> Option<Instant> {
        let ping = self
            .ping
            .map(|every| self.pinged.unwrap_or(self.last_heard) + every);
        let idle = self.idle.map(|idle| self.last_heard + idle);
        match (ping, idle) {
            (Some(p), Some(i)) => Some(p.min(i)),
            (p, i) => p.or(i),
        }
    }

    /// One check: `Err` with how long the peer has been silent when that is the idle
    /// timeout or more, else whether to ping now.
    fn tick(&mut self, now: Instant) -> Result<bool, Duration> {
        let silent = now - self.last_heard;
        if let Some(idle) = self.idle
            && silent >= idle
        {
            return Err(silent);
        }
        match self.ping {
            Some(every) if now >= self.pinged.unwrap_or(self.last_heard) + every => {
                self.pinged = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Which reader of a session an inbound part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// The session's own: it has the heartbeat, and its end ends the session.
    Main,
    /// An extra lane (a QUIC channel): its end ends only the lane.
    Extra,
}

/// Reads packets and handles messages in order until reading stops and every message
/// accepted has been handled.
///
/// Not an `async fn`, whose future would keep `source` twice (see [`run`]).
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice in its future"
)]
fn inbound<'a, S: PacketSource>(
    session: &'a Session,
    mut source: S,
    lane: Lane,
    work: &'a mut Work<'_>,
    block: &'a mut ReplyBlock,
    kill: Option<&'a Signal>,
) -> impl Future<Output = Ended> + 'a {
    async move {
        let mut live = match lane {
            Lane::Main => Liveness::new(session),
            Lane::Extra => Liveness::with(None, None, Instant::now()),
        };
        // The next heartbeat check; none without heartbeat or idle timeout.
        // Boxed, as the timers below and the resume wake-up: a session without them
        // (most have no heartbeat) keeps only a pointer for each.
        let mut timer: Option<Pin<Box<Sleep>>> = live
            .due()
            .map(|due| Box::pin(tokio::time::sleep_until(due)));
        let ticking = timer.is_some();
        let mut reading = !session.inner.stop_reading.is_raised();
        // One wait for the stop signals, one after the other: the session's stop reading,
        // then (a session's main reader) the server's stop-everything, which stops the
        // session at once, its handlers too. A server stops everything only after
        // closing every session, so the second is only waited for once reading stopped.
        let mut killing = !reading;
        let mut stop: Pin<&mut Option<Wait<'_>>> = std::pin::pin!(if killing {
            kill.map(Signal::raised)
        } else {
            Some(session.inner.stop_reading.wait())
        });
        // A resumable session's main reader also watches for its connection being lost
        // (the writer failed, or a new connection took the session over).
        let resume = match lane {
            Lane::Main => session.inner.resume.as_ref(),
            Lane::Extra => None,
        };
        // Kept across waits: not a waiter registered and removed per wait.
        let mut link_news = resume.map(|r| Box::pin(r.wake.notified()));
        // When what came in must be acknowledged, if nothing more comes.
        let mut ack_due: Option<Instant> = None;
        // Its timer, made on first use and reset after: not a timer registered per wait.
        let mut ack_timer: Option<Pin<Box<Sleep>>> = None;
        // Reading is held up by a full inbound queue (counted once per stall).
        let mut stalled = false;
        work.lost = false;
        // A packet the last wait brought.
        let mut arrived: Option<Packet> = None;
        // The last batch took packets and the part has yielded since: nothing is buffered,
        // so the next step is the wait.
        let mut yielded = false;
        loop {
            // One batch: the handler that was waiting and the messages behind it, then the
            // packet just read and every packet buffered behind it, each handled as it
            // comes while nothing is ahead of it.
            if !std::mem::take(&mut yielded) {
                let mut took = false;
                if let Some(limiter) = &mut work.limiter {
                    limiter.refill();
                }
                work.since_timed = 0;
                std::future::poll_fn(|cx| {
                    wire::with_reply_block(session.id(), block, || {
                        crate::telemetry::batch(|| {
                            // Queued messages go first; a newly arrived one queues behind them.
                            let _ = work.progress(cx);
                            if let Some(packet) = arrived.take() {
                                took = true;
                                reading &= work.accept(packet.id, Body::new(&packet.body), cx);
                            }
                            if reading && work.has_room() {
                                let ended = source.drain(session, &mut |id, body| {
                                    took = true;
                                    reading = work.accept(id, body, cx);
                                    reading && work.has_room()
                                });
                                if let Some(end) = ended {
                                    reading = false;
                                    work.end(end, lane);
                                }
                            }
                        })
                    });
                    Poll::Ready(())
                })
                .await;
                work.flush(block);
                if took && ticking {
                    live.heard(Instant::now());
                }
                if work.lost {
                    return Ended::Lost;
                }
                if !reading && work.is_idle() {
                    return Ended::Done;
                }
                if took {
                    // Let the writer send this batch's replies before reading the next one.
                    yield_part().await;
                    yielded = true;
                    continue;
                }
            }
            // An idle session gives its memory back, unless its reads have been large: a
            // busy session would take it again at once.
            if work.is_idle() && !source.is_busy() {
                work.release();
                block.release();
            }
            if work.ack_waiting && ack_due.is_none() {
                let due = Instant::now() + resume::ACK_DELAY;
                ack_due = Some(due);
                match &mut ack_timer {
                    Some(timer) => timer.as_mut().reset(due),
                    None => ack_timer = Some(Box::pin(tokio::time::sleep_until(due))),
                }
            }
            // Reading waits while the queue is full: the peer is not silent, it is not
            // being read. The queue may be full of another channel's messages: any part
            // taking one off it wakes this one (the wake-up is taken, then the queue looked
            // at again, so that a message leaving in between is not missed).
            let mut full = !work.has_room();
            let inbound = &session.inner.inbound;
            // Boxed: only a part of a session with several waits here, and only while full.
            let mut room = (reading && full && inbound.extra_parts.load(Ordering::Relaxed) > 0)
                .then(|| Box::pin(inbound.room.notified()));
            if room.is_some() {
                full = !work.has_room();
            }
            if full {
                if ticking {
                    live.heard(Instant::now());
                }
                if reading && !std::mem::replace(&mut stalled, true) {
                    crate::telemetry::backpressure("inbound");
                }
            } else {
                stalled = false;
            }
            // The branches' futures are small: each borrows what it polls.
            tokio::select! {
                biased;
                () = poll_some(stop.as_mut().as_pin_mut()), if stop.is_some() => {
                    if !std::mem::replace(&mut killing, true) {
                        reading = false;
                        stop.set(kill.map(Signal::raised));
                    } else {
                        session.close_with(CloseReason::ServerShutdown, CloseMode::Abort);
                        return Ended::Done;
                    }
                }
                // The waiting handler finishing ends the wait, so that its reply is queued
                // and the messages behind it run (the next batch) at once.
                () = std::future::poll_fn(|cx| {
                    wire::with_reply_block(session.id(), block, || work.poll_running(cx))
                }), if work.running.is_some() => {}
                () = poll_some(link_news.as_mut().map(Pin::as_mut)), if resume.is_some() => {
                    link_news = resume.map(|r| Box::pin(r.wake.notified()));
                    if session.inner.out.is_lost() {
                        return Ended::Lost;
                    }
                }
                () = poll_some(ack_timer.as_mut().map(Pin::as_mut)), if ack_due.is_some() => {
                    ack_due = None;
                    work.ack_waiting = false;
                    session.inner.out.ack_now();
                }
                () = poll_some(room.as_mut().map(Pin::as_mut)), if reading && full && room.is_some() => {}
                next = source.next_packet(session), if reading && !full => match next {
                    Ok(packet) => arrived = Some(packet),
                    Err(end) => {
                        reading = false;
                        work.end(end, lane);
                        if work.lost {
                            return Ended::Lost;
                        }
                    }
                },
                () = poll_some(timer.as_mut().map(Pin::as_mut)), if ticking && reading => {
                    let now = Instant::now();
                    if full {
                        // Not read, so not silent: the queue is full.
                        live.heard(now);
                    }
                    let tick = live.tick(now);
                    if let (Some(timer), Some(due)) = (&mut timer, live.due()) {
                        timer.as_mut().reset(due);
                    }
                    match tick {
                        // A plain peer is never pinged (it would not know the frame); the
                        // idle timeout alone tells whether it is gone. A full queue closes
                        // the session itself; nothing more to do.
                        Ok(true) if session.may_extend() => {
                            session.send_control(wire::encode_control(wire::ID_PING));
                        }
                        Ok(_) => {}
                        Err(silent) if lane == Lane::Main && session.link_lost() => {
                            tracing::info!(?silent, "peer silent: connection given up");
                            return Ended::Lost;
                        }
                        Err(silent) => {
                            session.fail(
                                SessionErrorKind::IdleTimeout(silent),
                                CloseReason::IdleTimeout,
                                CloseMode::Graceful,
                            );
                            reading = false;
                        }
                    }
                }
                else => return Ended::Done,
            }
        }
    }
}

/// How a session's inbound part ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Ended {
    /// Reading stopped and every message accepted was handled.
    #[default]
    Done,
    /// The connection was lost under a resumable session: messages accepted may still
    /// wait, for the next connection's inbound part.
    Lost,
}

/// Polls `future` if there is one: a select branch's future that borrows its future
/// rather than holding an `async` block around it (disabled branches are made too).
fn poll_some<F: Future<Output = ()>>(mut future: Option<Pin<&mut F>>) -> impl Future<Output = ()> {
    std::future::poll_fn(move |cx| match &mut future {
        Some(future) => future.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

/// Returns `Pending` once, having woken itself: the other parts of the task run, then
/// this one goes on.
async fn yield_part() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// An application message waiting behind a handler that has not finished.
struct Waiting {
    id: u32,
    body: Bytes,
    call: Option<u32>,
    meta: Option<Arc<Metadata>>,
}

/// The handler a session is waiting for.
struct Running {
    id: u32,
    name: &'static str,
    call: Option<u32>,
    span: tracing::Span,
    /// When the handler started, while metrics are on.
    started: Option<std::time::Instant>,
    /// The message's metadata, current while the handler runs.
    meta: Option<Arc<Metadata>>,
}

/// The message handling of one inbound part: the handler running, the messages
/// waiting behind it, and counts not yet added to the session's counters.
struct Work<'s> {
    session: &'s Session,
    /// Where replies go (the call number is set per message).
    to: ReplyTo,
    waiting: VecDeque<Waiting>,
    capacity: usize,
    running: Option<Running>,
    slot: HandlerSlot,
    received: u64,
    handled: u64,
    /// Counting received bytes for a resume (the main part of a resumable session,
    /// once the handshake is done).
    counting: bool,
    /// Counted bytes received.
    rx: u64,
    /// The count last acknowledged to the peer.
    acked: u64,
    /// An acknowledgement was handed to the writer since the timer last sent one.
    ack_waiting: bool,
    /// The connection was lost under a resumable session.
    lost: bool,
    /// Where a client's resume stands.
    phase: Phase,
    /// A client's attempts to connect again since its connection dropped, and when it
    /// dropped; reset once a connection is resumed or a fresh session is open.
    attempts: u32,
    since: Option<Instant>,
    /// The session's rate limit, if it has one.
    limiter: Option<Limiter>,
    /// Bytes read since the last flush, while metrics are on.
    bytes_in: u64,
    /// Messages started in this batch since one was timed (metrics on).
    since_timed: u32,
    /// The metadata of the next message, just read.
    meta: Option<Arc<Metadata>>,
}

/// Where a client's connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Open: nothing pending.
    Open,
    /// A resume was sent on a new connection; the answer is awaited.
    Resuming,
    /// A fresh handshake was sent on a new connection (the old session is gone).
    Greeting,
}

impl<'s> Work<'s> {
    fn new(session: &'s Session) -> Self {
        Work {
            session,
            to: ReplyTo {
                session: session.id(),
                codec: session.codec(),
                call: None,
                max_frame_len: session.max_frame_len(),
            },
            waiting: VecDeque::new(),
            capacity: session.inner.shared.settings.inbound_queue.max(1),
            running: None,
            slot: HandlerSlot::default(),
            received: 0,
            handled: 0,
            counting: false,
            rx: 0,
            acked: 0,
            ack_waiting: false,
            lost: false,
            phase: Phase::Open,
            attempts: 0,
            since: None,
            limiter: session
                .inner
                .shared
                .settings
                .rate_limit
                .as_ref()
                .filter(|_| session.pool().is_some())
                .map(Limiter::new),
            bytes_in: 0,
            since_timed: 0,
            meta: None,
        }
    }

    /// The server accepted our handshake (a client's session).
    fn welcomed(
        &mut self,
        version: u16,
        server_session: u64,
        token: Option<[u8; wire::TOKEN_LEN]>,
    ) {
        let session = self.session;
        let phase = std::mem::replace(&mut self.phase, Phase::Open);
        if let Some(resume) = &session.inner.resume {
            match token {
                Some(token) => {
                    resume.set_token(Some((server_session, token)));
                    self.counting = true;
                }
                None => {
                    // Nothing to resume: what is sent need not be kept.
                    resume.set_token(None);
                    session.inner.out.stop_log();
                }
            }
            if phase == Phase::Greeting {
                resume.detached.store(false, Ordering::Release);
                session.inner.calls.reopen();
                (self.attempts, self.since) = (0, None);
                tracing::info!(server_session, "fresh session open");
                return;
            }
        }
        session.welcome(crate::session::Welcome::Accepted { version });
    }

    /// The server refused our handshake or resume.
    fn refused(&mut self, status: Status) {
        let session = self.session;
        match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Open => session.welcome(crate::session::Welcome::Refused(status)),
            Phase::Greeting => {
                tracing::warn!(%status, "handshake refused on reconnect");
                session.close_with(CloseReason::Refused(status), CloseMode::Discard);
            }
            Phase::Resuming => {
                // The server has no session to resume: start a fresh one, on the next
                // connection.
                tracing::info!(%status, "resume refused; starting a fresh session");
                if let Some(resume) = &session.inner.resume {
                    resume.set_token(None);
                }
                self.start_afresh();
                session.link_event(LinkEvent::Restarted(status));
                if session.link_lost() {
                    self.lost = true;
                }
            }
        }
    }

    /// Forgets the old session's counts and calls: a fresh session follows.
    fn start_afresh(&mut self) {
        self.counting = false;
        self.rx = 0;
        self.acked = 0;
        self.ack_waiting = false;
        self.session.inner.calls.fail_pending();
    }

    /// The server resumed our session, having received `received` counted bytes.
    fn resumed(&mut self, received: u64) {
        let session = self.session;
        if self.phase != Phase::Resuming {
            session.report(SessionErrorKind::Extension(
                wire::ExtensionError::Malformed {
                    id: wire::ID_RESUMED,
                    what: "a resume answer nobody asked for",
                },
            ));
            return;
        }
        self.phase = Phase::Open;
        match session.inner.out.resume_from(received, None) {
            Ok(()) => {
                if let Some(resume) = &session.inner.resume {
                    resume.detached.store(false, Ordering::Release);
                }
                (self.attempts, self.since) = (0, None);
                tracing::info!(received, "session resumed");
                session.link_event(LinkEvent::Resumed);
            }
            Err(gap) => session.fail_with_error(
                SessionErrorKind::Resume(format!(
                    "the server asks from byte {}, and bytes {}..{} are kept",
                    gap.from, gap.start, gap.end
                )),
                CloseMode::Discard,
            ),
        }
    }

    /// Acts on a message past the session's rate limit; false when the session closes
    /// for it.
    fn limited(&mut self, id: u32, call: Option<u32>) -> bool {
        let session = self.session;
        self.handled += 1;
        let Some(limiter) = &self.limiter else {
            return true;
        };
        let (policy, violations) = (limiter.policy, limiter.violations);
        let name = session
            .inner
            .shared
            .router
            .name(id)
            .unwrap_or(crate::service::router::UNROUTED);
        crate::telemetry::rate_limited(name);
        session.report(SessionErrorKind::RateLimited {
            id,
            name,
            violations,
        });
        if policy != RatePolicy::Drop {
            self.reply_error(
                call,
                Status::new(
                    Code::ResourceExhausted,
                    format!("rate limit: message {id} ({name}) refused"),
                ),
            );
        }
        if let RatePolicy::CloseAfter(max) = policy
            && violations >= max
        {
            session.fail_with_error(
                SessionErrorKind::RateLimited {
                    id,
                    name,
                    violations,
                },
                CloseMode::Discard,
            );
            return false;
        }
        true
    }

    /// The count of received bytes to acknowledge with the next frames written, when
    /// there is something new to acknowledge.
    fn acknowledge(&mut self) -> Option<u64> {
        if self.counting && self.rx > self.acked {
            self.acked = self.rx;
            return Some(self.rx);
        }
        None
    }

    /// Whether nothing is running or waiting.
    fn is_idle(&self) -> bool {
        self.running.is_none() && self.waiting.is_empty()
    }

    /// Whether another message may be accepted: one that would run at once always is;
    /// one that would wait only while the session's messages waiting (on every channel)
    /// are fewer than its inbound queue.
    fn has_room(&self) -> bool {
        self.is_idle() || self.session.inner.inbound.waiting.load(Ordering::Relaxed) < self.capacity
    }

    /// Whether to time the handler of the message starting now (while metrics are on):
    /// the first of a batch, and one in [`TIME_ONE_IN`](crate::telemetry::TIME_ONE_IN)
    /// after it.
    fn time_next(&mut self) -> bool {
        let n = self.since_timed;
        self.since_timed = (n + 1) % crate::telemetry::TIME_ONE_IN;
        n == 0
    }

    /// Queues a message behind the running handler.
    fn queue(&mut self, waiting: Waiting) {
        crate::telemetry::inbound_waiting(1.0);
        self.waiting.push_back(waiting);
        self.session
            .inner
            .inbound
            .waiting
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The next message waiting, if any; a part waiting for room is woken when it
    /// leaves a full queue.
    fn dequeue(&mut self) -> Option<Waiting> {
        let next = self.waiting.pop_front()?;
        crate::telemetry::inbound_waiting(-1.0);
        let inbound = &self.session.inner.inbound;
        if inbound.waiting.fetch_sub(1, Ordering::Relaxed) >= self.capacity
            && inbound.extra_parts.load(Ordering::Relaxed) > 0
        {
            inbound.room.notify_waiters();
        }
        Some(next)
    }

    /// Lets the memory of an idle part go: an idle session holds no handler future and
    /// no queue.
    fn release(&mut self) {
        self.slot.release();
        if self.waiting.capacity() > 0 {
            self.waiting = VecDeque::new();
        }
    }

    /// Queues the replies of the batch and adds its counts to the session's counters.
    fn flush(&mut self, block: &mut ReplyBlock) {
        let session = self.session;
        // What came in is acknowledged with the next batch the writer sends (these
        // replies, if any); the inbound part's timer sends it alone if nothing else
        // goes out.
        let mut ack = None;
        if self.counting {
            if let Some(resume) = &session.inner.resume {
                resume.received.store(self.rx, Ordering::Release);
            }
            ack = self.acknowledge();
            self.ack_waiting |= ack.is_some();
        }
        if let Some((replies, count)) = block.take() {
            match session.queue_replies(replies, count, ack) {
                Ok(()) | Err(PushError::Closed | PushError::Disconnected) => {}
                Err(PushError::Full { queued }) => session.queue_full(queued),
            }
        } else if let Some(received) = ack {
            session.inner.out.ack_later(received);
        }
        if self.bytes_in > 0 {
            crate::telemetry::bytes_in(session.transport(), std::mem::take(&mut self.bytes_in));
        }
        let counters = &session.inner.counters;
        if self.received > 0 {
            counters
                .received
                .fetch_add(std::mem::take(&mut self.received), Ordering::Relaxed);
        }
        if self.handled > 0 {
            counters
                .handled
                .fetch_add(std::mem::take(&mut self.handled), Ordering::Relaxed);
        }
    }

    /// Acts on the end of the source.
    fn end(&mut self, end: ReadEnd, lane: Lane) {
        // A resumable session outlives its connection, unless the peer broke the
        // protocol.
        let dropped = matches!(
            &end,
            ReadEnd::Closed(CloseReason::PeerClosed) | ReadEnd::Failed(SessionErrorKind::Io(_))
        );
        if lane == Lane::Main && dropped && self.session.link_lost() {
            tracing::debug!("connection lost");
            self.lost = true;
            return;
        }
        match (end, lane) {
            (ReadEnd::Closed(reason), Lane::Main) => {
                self.session.close_with(reason, CloseMode::Graceful);
            }
            (ReadEnd::Failed(kind), Lane::Main) => {
                self.session.fail_with_error(kind, CloseMode::Graceful);
            }
            (ReadEnd::Closed(_), Lane::Extra) => {}
            (ReadEnd::Failed(kind), Lane::Extra) => {
                self.session.report(kind);
            }
        }
    }

    /// Takes one packet: a framework frame is acted on at once; a message is handled at
    /// once when nothing is ahead of it, else queued. False when the peer said goodbye.
    fn accept(&mut self, id: u32, body: Body<'_>, cx: &mut Context<'_>) -> bool {
        let session = self.session;
        if self.counting && wire::is_counted(id) {
            self.rx += (wire::frame::HEADER_LEN + body.len()) as u64;
        }
        if crate::telemetry::on() {
            self.bytes_in += (wire::frame::HEADER_LEN + body.len()) as u64;
        }
        if id >= wire::RESERVED_ID_START {
            session.peer_extends();
        }
        match wire::classify(id, body) {
            Ok(Incoming::Message { id, body, call }) => {
                self.received += 1;
                if let Some(limiter) = &mut self.limiter
                    && !limiter.admit(wire::frame::HEADER_LEN + body.len())
                {
                    return self.limited(id, call);
                }
                let meta = self.meta.take();
                if self.is_idle() {
                    self.start(id, body, call, meta, cx);
                } else {
                    self.queue(Waiting {
                        id,
                        body: body.to_bytes(),
                        call,
                        meta,
                    });
                }
            }
            Ok(Incoming::Response { call, id, body }) => {
                let body = body.to_bytes();
                if !session
                    .inner
                    .calls
                    .resolve(call, Outcome::Reply { id, body })
                {
                    session.report(SessionErrorKind::StrayReply { call });
                }
            }
            Ok(Incoming::Error { call, status }) => {
                if !session.inner.calls.resolve(call, Outcome::Error(status)) {
                    session.report(SessionErrorKind::StrayReply { call });
                }
            }
            Ok(Incoming::Ping) => {
                // A full queue closes the session itself; nothing more to do here.
                session.send_control(wire::encode_control(wire::ID_PONG));
            }
            Ok(Incoming::Pong) => {}
            Ok(Incoming::Hello(_)) => {
                if session.inner.shared.hooks.on_handshake.is_some() {
                    session.report(SessionErrorKind::Extension(
                        wire::ExtensionError::Malformed {
                            id: wire::ID_HELLO,
                            what: "a second handshake",
                        },
                    ));
                } else {
                    // No handshake asked of clients: a client that sends one anyway is
                    // welcome.
                    session.inner.greeted.store(true, Ordering::Relaxed);
                    session.send_control(wire::encode_welcome(session.id(), None));
                }
            }
            Ok(Incoming::Welcome {
                version,
                session: id,
                token,
            }) => {
                tracing::debug!(version, server_session = id, "handshake accepted");
                self.welcomed(version, id, token);
            }
            Ok(Incoming::Refused(status)) => self.refused(status),
            Ok(Incoming::Resumed { received }) => self.resumed(received),
            Ok(Incoming::Ack { received }) => {
                if !session.inner.out.ack(received) {
                    session.fail_with_error(
                        SessionErrorKind::Extension(wire::ExtensionError::Malformed {
                            id: wire::ID_ACK,
                            what: "an acknowledgement of more than was sent",
                        }),
                        CloseMode::Discard,
                    );
                    return false;
                }
            }
            Ok(Incoming::Resume { .. }) => {
                session.report(SessionErrorKind::Extension(
                    wire::ExtensionError::Malformed {
                        id: wire::ID_RESUME,
                        what: "a resume on a session already open",
                    },
                ));
            }
            Ok(Incoming::GoAway(to)) => session.go_away(to),
            Ok(Incoming::Meta(meta)) => self.meta = Some(Arc::new(meta)),
            Ok(Incoming::Bye) => {
                session.close_with(CloseReason::PeerClosed, CloseMode::Graceful);
                return false;
            }
            Err(err) => {
                session.report(err.into());
            }
        }
        true
    }

    /// Runs the waiting handler, then the queued messages, as far as they go without
    /// waiting. Ready when nothing is running any more.
    fn progress(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.running.is_some() {
                std::task::ready!(self.poll_running(cx));
            }
            let Some(Waiting {
                id,
                body,
                call,
                meta,
            }) = self.dequeue()
            else {
                return Poll::Ready(());
            };
            self.start(id, Body::new(&body), call, meta, cx);
        }
    }

    /// Starts the handler of a message and polls it once: most handlers finish there.
    fn start(
        &mut self,
        id: u32,
        body: Body<'_>,
        call: Option<u32>,
        meta: Option<Arc<Metadata>>,
        cx: &mut Context<'_>,
    ) {
        let session = self.session;
        if session.discarding() {
            return;
        }
        let to = ReplyTo { call, ..self.to };
        let router = &session.inner.shared.router;
        let timed = (crate::telemetry::on() && self.time_next()).then(std::time::Instant::now);
        let slot = &mut self.slot;
        // Anything but a reply already encoded goes through here, so that the common
        // case returns a single word from the unwind guard.
        let mut other = None;
        let mut routed = crate::service::router::UNROUTED;
        // One unwind guard for decoding, starting and the first poll.
        let first = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Metadata::enter(&meta, || {
                let (name, started) = router.start(session.clone(), id, body, to, slot)?;
                if started.is_ok() && crate::telemetry::on() {
                    routed = name;
                    crate::telemetry::message_in(name);
                }
                let outcome = started.map(|()| {
                    let span =
                        tracing::debug_span!("message", id, name, trace = tracing::field::Empty);
                    if let Some(trace) = meta.as_deref().and_then(Metadata::trace_id) {
                        span.record("trace", trace);
                    }
                    #[cfg(feature = "otel")]
                    if let Some(meta) = meta.as_deref() {
                        crate::otel::continue_trace(&span, meta);
                    }
                    let polled = span.in_scope(|| slot.poll(cx));
                    (span, polled)
                });
                if let Ok((_, Poll::Ready(Reply(ReplyKind::Queued)))) = outcome {
                    return Some(true);
                }
                other = Some((name, outcome));
                Some(false)
            })
        }));
        let first = match first {
            Ok(Some(true)) => {
                self.handled += 1;
                if let Some(t0) = timed {
                    crate::telemetry::handler_time(routed, t0.elapsed().as_secs_f64());
                }
                return;
            }
            Ok(Some(false)) => Ok(Some(other.expect("set with false"))),
            Ok(None) => Ok(None),
            Err(payload) => Err(payload),
        };
        match first {
            Ok(Some((name, Ok((span, Poll::Ready(reply)))))) => {
                if let Some(t0) = timed {
                    crate::telemetry::handler_time(name, t0.elapsed().as_secs_f64());
                }
                self.finished(id, name, call, &span, Ok(reply));
            }
            Ok(Some((name, Ok((span, Poll::Pending))))) => {
                self.running = Some(Running {
                    id,
                    name,
                    call,
                    span,
                    started: timed,
                    meta,
                });
            }
            Ok(Some((name, Err(StartError::Decode(source))))) => {
                let span = tracing::debug_span!("message", id, name);
                let _entered = span.enter();
                let err = session.report(SessionErrorKind::Decode { id, name, source });
                self.reply_error(call, Status::invalid_argument(err.kind.to_string()));
                self.handled += 1;
            }
            Ok(Some((name, Err(StartError::Rejected(status))))) => {
                let span = tracing::debug_span!("message", id, name);
                let _entered = span.enter();
                match call {
                    Some(_) => self.reply_error(call, status),
                    None => {
                        session.report(SessionErrorKind::Handler { id, name, status });
                    }
                }
                self.handled += 1;
            }
            Ok(None) => {
                session.report(SessionErrorKind::UnknownMessage { id });
                self.reply_error(
                    call,
                    Status::unimplemented(format!("no handler for message id {id}")),
                );
                self.handled += 1;
            }
            Err(payload) => {
                let name = router.name(id).unwrap_or(crate::service::router::UNROUTED);
                let span = tracing::debug_span!("message", id, name);
                self.finished(id, name, call, &span, Err(payload));
            }
        }
    }

    /// Polls the handler that was waiting; acts on its reply when it is done.
    fn poll_running(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(running) = &self.running else {
            return Poll::Ready(());
        };
        let slot = &mut self.slot;
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Metadata::enter(&running.meta, || running.span.in_scope(|| slot.poll(cx)))
        }));
        let reply = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(reply)) => Ok(reply),
            Err(payload) => Err(payload),
        };
        let Running {
            id,
            name,
            call,
            span,
            started,
            meta: _,
        } = self.running.take().expect("running");
        if let Some(t0) = started {
            crate::telemetry::handler_time(name, t0.elapsed().as_secs_f64());
        }
        self.finished(id, name, call, &span, reply);
        Poll::Ready(())
    }

    /// Acts on what a handler produced (or on its panic).
    fn finished(
        &mut self,
        id: u32,
        name: &'static str,
        call: Option<u32>,
        span: &tracing::Span,
        reply: std::thread::Result<Reply>,
    ) {
        self.handled += 1;
        let _entered = span.enter();
        let session = self.session;
        match reply {
            Ok(reply) => match reply.0 {
                ReplyKind::Queued => {}
                ReplyKind::Frame(frame) => {
                    if let Err(source) = session.send_frame(*frame) {
                        session.report(SessionErrorKind::Reply { id, name, source });
                    }
                }
                ReplyKind::None => self.reply_error(
                    call,
                    Status::new(Code::NoReply, format!("handler of {name} sent no reply")),
                ),
                ReplyKind::Error(status) => match call {
                    Some(_) => self.reply_error(call, *status),
                    None => {
                        let status = *status;
                        session.report(SessionErrorKind::Handler { id, name, status });
                    }
                },
            },
            Err(payload) => self.panicked(id, name, call, &*payload),
        }
    }

    /// Acts on a panic of a handler.
    fn panicked(
        &self,
        id: u32,
        name: &'static str,
        call: Option<u32>,
        payload: &(dyn std::any::Any + Send),
    ) {
        let session = self.session;
        let panic = crate::codec::panic_text(payload);
        crate::telemetry::panicked(name);
        session.report(SessionErrorKind::Panic { id, name, panic });
        self.reply_error(
            call,
            Status::internal(format!("handler of {name} panicked")),
        );
        if session.inner.shared.settings.panic_policy == PanicPolicy::CloseSession {
            session.close_with(CloseReason::HandlerPanicked, CloseMode::Discard);
        }
    }

    /// Sends `status` to a caller; nothing for a plain message.
    fn reply_error(&self, call: Option<u32>, status: Status) {
        if let Some(call) = call {
            let _ = self.session.send_frame(wire::encode_error(call, &status));
        }
    }
}

impl Drop for Work<'_> {
    /// A part stopped with messages still waiting (the session was killed) gives their
    /// places back.
    fn drop(&mut self) {
        let left = self.waiting.len();
        if left > 0 {
            crate::telemetry::inbound_waiting(-(left as f64));
            let inbound = &self.session.inner.inbound;
            inbound.waiting.fetch_sub(left, Ordering::Relaxed);
            inbound.room.notify_waiters();
        }
    }
}

/// Not an `async fn`, whose future would keep `sink` twice (see [`run`]).
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice in its future"
)]
fn write_loop<K: FrameSink>(session: Session, mut sink: K) -> impl Future<Output = ()> {
    async move {
        let out = &session.inner.out;
        let timeout = session.inner.shared.settings.write_timeout;
        loop {
            match sink.take(out).await {
                Batch::Write => {}
                Batch::Done => break,
                // The connection goes; the session waits for another.
                Batch::Lost => return,
            }
            if crate::telemetry::on() {
                crate::telemetry::bytes_out(session.transport(), sink.pending());
            }
            let written = {
                let write = sink.write();
                tokio::pin!(write);
                // Most writes complete at once: no timer and no abort watch for those.
                match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                    Poll::Ready(written) => Ok(written),
                    Poll::Pending => tokio::select! {
                        written = tokio::time::timeout(timeout, write.as_mut()) => written,
                        () = out.aborted() => return,
                    },
                }
            };
            match written {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    if session.link_lost() {
                        tracing::debug!(error = %err, "connection lost on write");
                    } else {
                        session.fail_with_error(SessionErrorKind::Io(err), CloseMode::Abort);
                    }
                    return;
                }
                Err(_) if session.link_lost() => {
                    tracing::info!(?timeout, "connection gave up: a write made no progress");
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
            // The peer closed or vanished: nobody to tell.
            let bye = session.may_extend()
                && !matches!(
                    reason,
                    Some(CloseReason::PeerClosed | CloseReason::IdleTimeout)
                );
            let _ = tokio::time::timeout(timeout, sink.shutdown(reason.as_ref(), bye)).await;
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
        assert_eq!(
            live.due(),
            Some(t0 + 100 * MS),
            "first ping after the interval"
        );
        assert_eq!(live.tick(t0 + 99 * MS), Ok(false));
        assert_eq!(
            live.tick(t0 + 100 * MS),
            Ok(true),
            "silent for the interval: ping"
        );
        assert_eq!(live.due(), Some(t0 + 200 * MS));
        assert_eq!(live.tick(t0 + 150 * MS), Ok(false), "one ping per interval");
        assert_eq!(live.tick(t0 + 200 * MS), Ok(true));
        assert_eq!(live.tick(t0 + 300 * MS), Ok(true));
        assert_eq!(live.due(), Some(t0 + 400 * MS), "the timeout is next");
        assert_eq!(live.tick(t0 + 399 * MS), Ok(false));
        assert_eq!(live.tick(t0 + 400 * MS), Err(400 * MS));
    }

    #[test]
    fn anything_heard_resets_the_clock() {
        let t0 = Instant::now();
        let mut live = Liveness::with(Some(100 * MS), Some(400 * MS), t0);
        for step in 1..=10 {
            live.heard(t0 + step * 90 * MS);
            assert_eq!(
                live.tick(t0 + step * 90 * MS + 99 * MS),
                Ok(false),
                "step {step}"
            );
        }
        let last = t0 + 900 * MS;
        assert_eq!(live.due(), Some(last + 100 * MS));
        assert_eq!(live.tick(last + 100 * MS), Ok(true));
        live.heard(last + 150 * MS);
        assert_eq!(
            live.due(),
            Some(last + 250 * MS),
            "a ping answered starts over"
        );
        assert_eq!(live.tick(last + 550 * MS), Err(400 * MS));
    }

    #[test]
    fn idle_timeout_alone_never_pings() {
        let t0 = Instant::now();
        let mut live = Liveness::with(None, Some(100 * MS), t0);
        assert_eq!(live.due(), Some(t0 + 100 * MS));
        assert_eq!(live.tick(t0 + 99 * MS), Ok(false));
        assert_eq!(live.tick(t0 + 100 * MS), Err(100 * MS));
    }

    #[test]
    fn nothing_to_watch_has_no_timer() {
        let live = Liveness::with(None, None, Instant::now());
        assert_eq!(live.due(), None);
    }
}
