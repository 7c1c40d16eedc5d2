//! The opt-in handshake against raw peers: nothing before it is handled, a peer that
//! does not make one is refused with a clear status, and a client that makes one to a
//! server that asks for none is welcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use gonet::{Builder, Code, Codec, Handshake, Router, Server, Session, Status};
use tokio::io::AsyncWriteExt;

use crate::support::*;

const HELLO: u32 = 0xFFFF_FF20;
const REFUSED: u32 = 0xFFFF_FF22;

/// A server that accepts the token "open" and counts the messages it handled.
async fn guarded(handled: Arc<AtomicUsize>, timeout: Duration) -> Server {
    let router = Router::new().route(move |_: Session, say: Say| {
        handled.fetch_add(1, Ordering::SeqCst);
        async move {
            SayAck {
                content: say.content,
            }
        }
    });
    Builder::new()
        .codec(Codec::Json)
        .router(router)
        .handshake_timeout(timeout)
        .on_handshake(|_: Session, hello: Handshake<Say>| async move {
            if hello.payload.content == "open" {
                Ok(())
            } else {
                Err(Status::unauthenticated("wrong token"))
            }
        })
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap()
}

/// A handshake frame as PROTOCOL.md lays it out.
fn hello(version: u16, token: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u16_le(version);
    body.put_u8(3);
    body.put_slice(b"1.0");
    body.put_u8(4);
    body.put_slice(b"test");
    body.put_u32_le(101);
    body.put_slice(format!("{{\"content\":\"{token}\"}}").as_bytes());
    frame(HELLO, &body)
}

/// The refusal the server sends: its code and message.
async fn refusal(stream: &mut tokio::net::TcpStream) -> (Code, String) {
    let (id, mut body) = within("the refusal", read_frame(stream))
        .await
        .expect("a refusal before the close");
    assert_eq!(id, REFUSED, "expected a refusal");
    let code = Code::from_u16(body.get_u16_le());
    (code, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_message_before_the_handshake_is_refused_and_never_handled() {
    let handled = Arc::new(AtomicUsize::new(0));
    let server = guarded(handled.clone(), Duration::from_secs(10)).await;
    // A plain gonet v3 peer: it sends a message straight away.
    let mut peer = raw(server.local_addr()).await;
    peer.write_all(&frame(101, br#"{"content":"hi"}"#))
        .await
        .unwrap();
    let (code, message) = refusal(&mut peer).await;
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        message,
        "expected a handshake (0xffffff20) first, got message 0x00000065"
    );
    assert!(within("the close", read_frame(&mut peer)).await.is_none());
    assert_eq!(handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_wrong_version_and_a_wrong_token_are_refused_with_their_reasons() {
    let server = guarded(Arc::default(), Duration::from_secs(10)).await;
    let mut peer = raw(server.local_addr()).await;
    peer.write_all(&hello(9, "open")).await.unwrap();
    let (code, message) = refusal(&mut peer).await;
    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(
        message,
        "handshake version 9 is not supported; this server speaks version 1"
    );

    let mut peer = raw(server.local_addr()).await;
    peer.write_all(&hello(1, "guess")).await.unwrap();
    assert_eq!(
        refusal(&mut peer).await,
        (Code::Unauthenticated, "wrong token".into())
    );
}

#[tokio::test]
async fn messages_after_an_accepted_handshake_are_handled_in_order() {
    let handled = Arc::new(AtomicUsize::new(0));
    let server = guarded(handled.clone(), Duration::from_secs(10)).await;
    let mut peer = raw(server.local_addr()).await;
    // The handshake and two messages in one write: the messages wait for the verdict.
    let mut bytes = hello(1, "open");
    bytes.extend(frame(101, br#"{"content":"one"}"#));
    bytes.extend(frame(101, br#"{"content":"two"}"#));
    peer.write_all(&bytes).await.unwrap();
    let (id, mut body) = within("the welcome", read_frame(&mut peer)).await.unwrap();
    assert_eq!(id, 0xFFFF_FF21);
    assert_eq!(body.get_u16_le(), 1);
    assert_eq!(read_ack(&mut peer).await, "one");
    assert_eq!(read_ack(&mut peer).await, "two");
    assert_eq!(handled.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_silent_peer_is_refused_after_the_handshake_timeout_and_gets_no_broadcast() {
    let server = guarded(Arc::default(), Duration::from_millis(200)).await;
    let mut peer = raw(server.local_addr()).await;
    until("the peer in the pool", || server.pool().len() == 1).await;
    // Not connected yet: a broadcast passes it by.
    let report = server
        .pool()
        .broadcast(&Notice { text: "all".into() })
        .unwrap();
    assert_eq!(report.delivered, 0);
    let (code, message) = refusal(&mut peer).await;
    assert_eq!(code, Code::Unauthenticated);
    assert_eq!(message, "no handshake within 200ms");
}

#[tokio::test]
async fn a_client_handshake_to_a_server_that_asks_for_none_is_welcome() {
    let server = json_server(Router::new().route(|_: Session, say: Say| async move {
        SayAck {
            content: say.content,
        }
    }))
    .await;
    let client = Builder::new()
        .codec(Codec::Json)
        .hello(
            "1.0",
            "test",
            &Say {
                content: "token".into(),
            },
        )
        .dial(&server.url())
        .await
        .unwrap();
    let ack: SayAck = client
        .call(&Say {
            content: "hi".into(),
        })
        .await
        .unwrap();
    assert_eq!(ack.content, "hi");
}
