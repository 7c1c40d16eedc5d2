//! The server's side of the opt-in handshake: the first packet of a session must be the
//! client's hello; the application's hook accepts or refuses it before anything else of
//! the session is handled.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;

use super::link::{PacketSource, ReadEnd};
use crate::codec::Body;
use crate::session::{CloseMode, CloseReason, Session};
use crate::settings::{HandshakeHook, HelloParts};
use crate::wire::{self, Code, Incoming, Status};

/// Runs the handshake; true when the session was accepted. A refused session has its
/// refusal queued and is closing.
pub(super) async fn serve<S: PacketSource>(
    session: &Session,
    source: &mut S,
    hook: &HandshakeHook,
) -> bool {
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
                return false;
            }
            Ok(Err(ReadEnd::Failed(kind))) => {
                session.fail_with_error(kind, CloseMode::Graceful);
                return false;
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
            // Heartbeats may come first (QUIC and KCP clients open their link with a
            // pong).
            Ok(Incoming::Pong) => {}
            Ok(Incoming::Ping) => {
                let _ = session.send_frame(wire::encode_control(wire::ID_PONG));
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
            session.inner.unwelcome.store(false, Ordering::Relaxed);
            session.inner.greeted.store(true, Ordering::Relaxed);
            let _ = session.send_frame(wire::encode_welcome(session.id()));
            true
        }
        Ok(Err(status)) => refuse(session, status),
        Err(payload) => {
            let panic = crate::codec::panic_text(&*payload);
            tracing::error!(panic, "handshake hook panicked");
            refuse(session, Status::internal("handshake hook panicked"))
        }
    }
}

fn refuse(session: &Session, status: Status) -> bool {
    tracing::info!(%status, "handshake refused");
    let _ = session.send_frame(wire::encode_refused(&status));
    session.close_with(CloseReason::Refused(status), CloseMode::Discard);
    false
}
