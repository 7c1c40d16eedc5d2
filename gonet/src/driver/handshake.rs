//! The server's side of the opt-in handshake: the first packet of a session must be the
//! client's hello; the application's hook accepts or refuses it before anything else of
//! the session is handled.

use std::any::TypeId;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;

use super::link::{PacketSource, ReadEnd};
use crate::codec::Body;
use crate::session::resume::Handover;
use crate::session::{CloseMode, CloseReason, Session};
use crate::settings::{HandshakeHook, HelloParts};
use crate::wire::{self, Code, Incoming, Status};

/// How a session's handshake ended.
pub(super) enum Verdict {
    /// The application accepted the client.
    Accepted,
    /// Refused: the refusal is queued and the session is closing.
    Refused,
    /// The client resumes `target`, a detached session, on this connection.
    Resume { target: Session, received: u64 },
}

/// Runs the handshake. `link` is the type of this connection's link, which a session
/// resumed on it must have too.
pub(super) async fn serve<S: PacketSource>(
    session: &Session,
    source: &mut S,
    hook: &HandshakeHook,
    link: TypeId,
) -> Verdict {
    let timeout = session.inner.shared.settings.handshake_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let hello = loop {
        let packet = match tokio::time::timeout_at(deadline, source.next_packet(session)).await {
            Err(_) => {
                return refuse(
                    session,
                    Status::new(
                        Code::Unauthenticated,
                        format!("no handshake within {timeout:?}"),
                    ),
                );
            }
            Ok(Err(ReadEnd::Closed(reason))) => {
                session.close_with(reason, CloseMode::Graceful);
                return Verdict::Refused;
            }
            Ok(Err(ReadEnd::Failed(kind))) => {
                session.fail_with_error(kind, CloseMode::Graceful);
                return Verdict::Refused;
            }
            Ok(Ok(packet)) => packet,
        };
        match wire::classify(packet.id, Body::new(&packet.body)) {
            Ok(Incoming::Hello(hello)) => {
                break HelloParts {
                    version: hello.version,
                    client_version: hello.client_version,
                    platform: hello.platform,
                    payload_id: hello.payload_id,
                    payload: hello.payload.to_bytes(),
                };
            }
            Ok(Incoming::Resume {
                version,
                session: id,
                token,
                received,
            }) => return resume(session, version, id, &token, received, link),
            // Heartbeats may come first (QUIC and KCP clients open their link with a
            // pong).
            Ok(Incoming::Pong) => {}
            Ok(Incoming::Ping) => {
                session.send_control(wire::encode_control(wire::ID_PONG));
            }
            Ok(_) => {
                return refuse(
                    session,
                    Status::invalid_argument(format!(
                        "expected a handshake ({:#010x}) first, got message {:#010x}",
                        wire::ID_HELLO,
                        packet.id
                    )),
                );
            }
            Err(err) => return refuse(session, Status::invalid_argument(err.to_string())),
        }
    };
    if hello.version != wire::PROTOCOL_VERSION {
        return refuse(
            session,
            Status::failed_precondition(format!(
                "handshake version {} is not supported; this server speaks version {}",
                hello.version,
                wire::PROTOCOL_VERSION
            )),
        );
    }
    let verdict = AssertUnwindSafe(hook(session.clone(), hello))
        .catch_unwind()
        .await;
    match verdict {
        Ok(Ok(())) => {
            session.inner.greeted.store(true, Ordering::Relaxed);
            session.peer_extends();
            match (&session.inner.resume, session.inner.shared.settings.resume) {
                (Some(resume), Some(settings)) => {
                    // Everything sent from the welcome on is kept until acknowledged.
                    let token = crate::session::resume::new_token();
                    resume.set_token(Some((session.id(), token)));
                    let welcome = wire::encode_welcome(session.id(), Some(&token));
                    session
                        .inner
                        .out
                        .start_log(Some(welcome), settings.replay_limit);
                }
                _ => session.send_control(wire::encode_welcome(session.id(), None)),
            }
            session.inner.unwelcome.store(false, Ordering::Relaxed);
            Verdict::Accepted
        }
        Ok(Err(status)) => refuse(session, status),
        Err(payload) => {
            let panic = crate::codec::panic_text(&*payload);
            tracing::error!(panic, "handshake hook panicked");
            refuse(session, Status::internal("handshake hook panicked"))
        }
    }
}

fn refuse(session: &Session, status: Status) -> Verdict {
    tracing::info!(%status, "handshake refused");
    crate::telemetry::handshake_refused();
    session.send_control(wire::encode_refused(&status));
    session.close_with(CloseReason::Refused(status), CloseMode::Discard);
    Verdict::Refused
}

/// A client asks to resume session `id`: it must be a resumable session of this pool,
/// with this token, on a link of this kind, and still hold what the client missed.
fn resume(
    session: &Session,
    version: u16,
    id: u64,
    token: &[u8; wire::TOKEN_LEN],
    received: u64,
    link: TypeId,
) -> Verdict {
    if version != wire::PROTOCOL_VERSION {
        return refuse(
            session,
            Status::failed_precondition(format!(
                "resume version {version} is not supported; this server speaks version {}",
                wire::PROTOCOL_VERSION
            )),
        );
    }
    let gone = || {
        Status::new(
            Code::NotFound,
            format!("session {id} cannot be resumed: unknown, expired or closed"),
        )
    };
    let Some(target) = session.pool().and_then(|pool| pool.get(id)) else {
        return refuse(session, gone());
    };
    let Some(state) = &target.inner.resume else {
        return refuse(session, gone());
    };
    // The same answer for a wrong token as for no session: nothing to probe.
    if state.token().is_none_or(|(_, own)| own != *token) || target.is_closed() {
        return refuse(session, gone());
    }
    if state.link_type.get() != Some(&link) {
        return refuse(
            session,
            Status::failed_precondition(format!(
                "session {id} runs on another kind of listener; resume it where it started"
            )),
        );
    }
    if let Err(gap) = target.inner.out.can_resume_from(received) {
        return refuse(
            session,
            Status::new(
                Code::NotFound,
                format!(
                    "session {id} no longer holds what the client missed (it asks from byte {}, bytes {}..{} are kept)",
                    gap.from, gap.start, gap.end
                ),
            ),
        );
    }
    Verdict::Resume { target, received }
}

/// Hands a new connection to the detached session `target` and lets the session the
/// connection came with go, unseen by the hooks.
pub(super) fn hand_over(
    session: &Session,
    target: Session,
    link: Box<dyn std::any::Any + Send>,
    received: u64,
) {
    if let Some(pool) = session.pool() {
        pool.remove(session);
    }
    session.close_with(
        CloseReason::Local("resumed another session".into()),
        CloseMode::Abort,
    );
    session.inner.done.raise();
    if let Some(state) = &target.inner.resume {
        *state.handover.lock().unwrap_or_else(|e| e.into_inner()) = Some(Handover {
            link,
            received,
            addrs: (session.peer_addr(), session.local_addr()),
        });
        // Detaches it first if it had not noticed its old connection drop.
        if !target.link_lost() {
            state.take_handover();
        }
    }
}
