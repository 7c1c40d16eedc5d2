//! The wire as a Go gonet v3 peer sees it, and malformed input over a real socket.

use std::sync::{Arc, Mutex};

use gonet::{Builder, CloseReason, Codec, FrameError, Router, Session, SessionErrorKind};
use tokio::io::AsyncWriteExt;

use crate::support::*;

fn echo_router() -> Router {
    Router::new().route(|_: Session, say: Say| async move {
        SayAck {
            content: say.content,
        }
    })
}

/// Collects the close reasons and errors a server reports.
#[derive(Clone, Default)]
struct Seen {
    closes: Arc<Mutex<Vec<CloseReason>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    fn builder(&self, codec: Codec) -> Builder {
        let closes = self.closes.clone();
        let errors = self.errors.clone();
        Builder::new()
            .codec(codec)
            .on_close(move |_, reason| closes.lock().unwrap().push(reason.clone()))
            .on_error(move |_, err| errors.lock().unwrap().push(err.to_string()))
    }
}

#[tokio::test]
async fn plain_gonet_frame_gets_a_byte_exact_plain_reply() {
    let server = json_server(echo_router()).await;
    let mut go = raw(server.local_addr()).await;
    // Exactly what a Go gonet v3 client writes for chat.Say{content:"hi"} as JSON.
    go.write_all(b"\x14\x00\x65\x00\x00\x00{\"content\":\"hi\"}")
        .await
        .unwrap();
    go.shutdown().await.unwrap();
    let reply = within("reply and close", read_to_eof(&mut go)).await;
    assert_eq!(reply, b"\x14\x00\x66\x00\x00\x00{\"content\":\"hi\"}");
    server.shutdown().await;
}

#[tokio::test]
async fn many_frames_in_one_write_and_one_frame_in_many_writes() {
    let server = json_server(echo_router()).await;
    let mut go = raw(server.local_addr()).await;
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.extend(frame(101, format!(r#"{{"content":"m{i}"}}"#).as_bytes()));
    }
    go.write_all(&batch).await.unwrap();
    // One frame trickled byte by byte.
    for b in frame(101, br#"{"content":"slow"}"#) {
        go.write_all(&[b]).await.unwrap();
    }
    for i in 0..50 {
        let (id, body) = within("reply", read_frame(&mut go)).await.unwrap();
        assert_eq!(id, 102);
        assert_eq!(&body[..], format!(r#"{{"content":"m{i}"}}"#).as_bytes());
    }
    let (_, body) = within("slow reply", read_frame(&mut go)).await.unwrap();
    assert_eq!(&body[..], br#"{"content":"slow"}"#);
    server.shutdown().await;
}

/// A bad length closes only that session, after every frame before it was handled.
#[tokio::test]
async fn bad_lengths_close_only_their_session_and_keep_earlier_frames() {
    let seen = Seen::default();
    let server = seen
        .builder(Codec::Json)
        .router(echo_router())
        .max_frame_len(1024)
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let healthy = json_client(&server).await;

    let cases: [(&[u8], &str); 3] = [
        (&[2, 0, 0, 0], "frame length 2 is below the minimum of 4"),
        (
            &[0x01, 0x04],
            "frame length 1025 exceeds the maximum of 1024 bytes",
        ),
        (
            &[0x10, 0x00, 0x65, 0, 0],
            "stream ended inside a frame: 5 of 18 bytes received",
        ),
    ];
    for (bad, want) in cases {
        let mut go = raw(server.local_addr()).await;
        let mut bytes = frame(101, br#"{"content":"before"}"#);
        bytes.extend_from_slice(bad);
        go.write_all(&bytes).await.unwrap();
        go.shutdown().await.unwrap();
        let got = within("reply then close", read_to_eof(&mut go)).await;
        assert_eq!(got, frame(102, br#"{"content":"before"}"#), "{want}");
        until("error reported", || {
            seen.errors.lock().unwrap().iter().any(|e| e.contains(want))
        })
        .await;
        // The session that sent it is the one named.
        let errors = seen.errors.lock().unwrap().clone();
        let line = errors.iter().find(|e| e.contains(want)).unwrap();
        assert!(line.starts_with("session "), "{line}");
        assert!(line.contains("malformed frame"), "{line}");

        let ack: SayAck = within(
            "healthy session still served",
            healthy.call(&Say {
                content: "still here".into(),
            }),
        )
        .await
        .unwrap();
        assert_eq!(ack.content, "still here");
    }
    let closes = seen.closes.lock().unwrap().clone();
    let frame_errors = closes
        .iter()
        .filter(|r| {
            matches!(r, CloseReason::Error(e) if matches!(e.kind, SessionErrorKind::Frame(
                FrameError::LengthTooSmall { .. } | FrameError::LengthTooLarge { .. } | FrameError::Truncated { .. }
            )))
        })
        .count();
    assert_eq!(frame_errors, 3, "{closes:?}");
    healthy.close("done");
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_framework_message_is_skipped_with_an_error() {
    let seen = Seen::default();
    let server = seen
        .builder(Codec::Json)
        .router(echo_router())
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let mut go = raw(server.local_addr()).await;
    let mut bytes = frame(0xFFFF_FF01, &[1, 2]);
    bytes.extend(frame(0xFFFF_FF77, &[]));
    bytes.extend(frame(101, br#"{"content":"after"}"#));
    go.write_all(&bytes).await.unwrap();
    let (id, body) = within("reply", read_frame(&mut go)).await.unwrap();
    assert_eq!((id, &body[..]), (102, &br#"{"content":"after"}"#[..]));
    let errors = seen.errors.lock().unwrap().clone();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("shorter than its 8-byte envelope")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unknown framework message id 0xffffff77")),
        "{errors:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let server = Builder::new().serve("tcp://127.0.0.1:0").await.unwrap();
    let mut go = raw(server.local_addr()).await;
    go.write_all(&frame(0xFFFF_FF10, &[])).await.unwrap();
    let (id, body) = within("pong", read_frame(&mut go)).await.unwrap();
    assert_eq!(id, 0xFFFF_FF11);
    assert!(body.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn bad_urls_are_clear_errors() {
    let err = Builder::new().serve("127.0.0.1:7000").await.unwrap_err();
    assert!(err.to_string().contains("missing scheme"), "{err}");
    let err = Builder::new()
        .dial("smtp://127.0.0.1:25")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown scheme \"smtp\""), "{err}");
    let err = Builder::new().dial("tcp://127.0.0.1").await.unwrap_err();
    assert!(err.to_string().contains("missing port"), "{err}");

    // A port nobody listens on: take a free one and close it again.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", free.local_addr().unwrap());
    drop(free);
    let err = Builder::new().dial(&url).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to {url}: ")),
        "{err}"
    );

    let taken = Builder::new().serve("tcp://127.0.0.1:0").await.unwrap();
    let err = Builder::new().serve(&taken.url()).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot listen on tcp://127.0.0.1:"),
        "{err}"
    );
}
