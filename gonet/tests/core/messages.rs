//! Routing, the catch-all handler, calls and their errors, and what a bad message
//! reports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gonet::{Builder, CallError, Code, Codec, Packet, Router, SendError, Session, Status};
use tokio::io::AsyncWriteExt;

use crate::support::*;

#[tokio::test]
async fn fallback_sees_every_unrouted_id_and_can_reply() {
    let router = Router::new()
        .route(|_: Session, say: Say| async move {
            SayAck {
                content: say.content,
            }
        })
        .fallback(|session: Session, packet: Packet| async move {
            // gonet-style: one handler for everything, raw bodies, explicit sends.
            session
                .send_raw(packet.id + 1, &packet.body)
                .expect("queue reply");
        });
    let server = json_server(router).await;
    let mut go = raw(server.local_addr()).await;
    go.write_all(&frame(7000, b"raw bytes")).await.unwrap();
    go.write_all(&frame(101, br#"{"content":"routed"}"#))
        .await
        .unwrap();
    assert_eq!(
        within("fallback reply", read_frame(&mut go)).await.unwrap(),
        (7001, bytes::Bytes::from_static(b"raw bytes"))
    );
    assert_eq!(
        within("routed reply", read_frame(&mut go)).await.unwrap().0,
        102
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_id_and_bad_body_are_reported_and_skipped() {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let server = Builder::new()
        .codec(Codec::Json)
        .router(Router::new().route(|_: Session, say: Say| async move {
            SayAck {
                content: say.content,
            }
        }))
        .on_error(move |_, err| seen.lock().unwrap().push(err.to_string()))
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let client = json_client(&server).await;
    let mut go = raw(server.local_addr()).await;
    go.write_all(&frame(9999, b"?")).await.unwrap();
    go.write_all(&frame(101, b"{not json")).await.unwrap();
    go.write_all(&frame(101, br#"{"content":"fine"}"#))
        .await
        .unwrap();
    let (id, _) = within("reply to the good frame", read_frame(&mut go))
        .await
        .unwrap();
    assert_eq!(id, 102);
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors[0].ends_with("unknown message id 9999: no route handles it"),
        "{errors:?}"
    );
    // The decode failure names the session, the message id and name, and the codec.
    let decode = &errors[1];
    assert!(decode.starts_with("session "), "{decode}");
    assert!(
        decode.contains("message 101 (chat.Say): json codec cannot decode chat.Say: "),
        "{decode}"
    );

    // A caller gets the same failures as typed statuses.
    let err = client
        .call::<Notice, SayAck>(&Notice { text: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.status().unwrap().code(), Code::Unimplemented, "{err}");
    assert!(
        err.to_string().contains("no handler for message id 301"),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn call_errors_are_typed() {
    let router = Router::new()
        .route(|_: Session, say: Say| async move {
            match say.content.as_str() {
                "" => Err(Status::invalid_argument("empty message")),
                "quiet" => Ok(None),
                text => Ok(Some(SayAck {
                    content: text.to_uppercase(),
                })),
            }
        })
        .route(|_: Session, _: Seq| std::future::pending::<()>());
    let server = Builder::new()
        .codec(Codec::Json)
        // The handler above never ends; shutdown cancels it after this long.
        .shutdown_timeout(Duration::from_millis(100))
        .router(router)
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let client = Builder::new()
        .codec(Codec::Json)
        .call_timeout(Duration::from_millis(200))
        .dial(&server.url())
        .await
        .unwrap();

    let ack: SayAck = client
        .call(&Say {
            content: "hi".into(),
        })
        .await
        .unwrap();
    assert_eq!(ack.content, "HI");

    let err = client
        .call::<Say, SayAck>(&Say { content: "".into() })
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "call chat.Say failed: InvalidArgument: empty message"
    );

    let err = client
        .call::<Say, SayAck>(&Say {
            content: "quiet".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.status().unwrap().code(), Code::NoReply, "{err}");

    let err = client
        .call::<Say, Notice>(&Say {
            content: "a".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::UnexpectedReply {
                expected: 301,
                got: 102,
                ..
            }
        ),
        "{err}"
    );

    // A handler that never answers: the caller's timeout fires, the session lives on.
    let err = client
        .call::<Seq, SayAck>(&Seq {
            n: 1,
            pad: String::new(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out after 200ms"), "{err}");

    client.close("bye");
    let err = client
        .call::<Say, SayAck>(&Say {
            content: "late".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Send {
                source: SendError::Closed { .. },
                ..
            } | CallError::Closed { .. }
        ),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pending_call_fails_when_the_session_closes() {
    let router = Router::new().route(|session: Session, _: Say| async move {
        session.close("no answer for you");
    });
    let server = json_server(router).await;
    let client = json_client(&server).await;
    let err = within(
        "call to fail",
        client.call::<Say, SayAck>(&Say {
            content: "?".into(),
        }),
    )
    .await
    .unwrap_err();
    // The handler's own close wins over its missing reply: the session is gone.
    assert!(
        matches!(err, CallError::Closed { .. } | CallError::Status { .. }),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn reserved_ids_are_refused_for_user_messages() {
    let server = Builder::new().serve("tcp://127.0.0.1:0").await.unwrap();
    let client = Builder::new().dial(&server.url()).await.unwrap();
    for id in [0, 0xFFFF_FF00, 0xFFFF_FF10, u32::MAX] {
        let err = client.send_raw(id, b"").unwrap_err();
        assert!(matches!(err, SendError::ReservedId(got) if got == id));
        assert!(
            err.to_string().contains("reserved for the framework"),
            "{err}"
        );
    }
    client.send_raw(0xFFFF_FEFF, b"").unwrap();
    server.shutdown().await;
}

struct Handmade;
impl gonet::Message for Handmade {
    const ID: u32 = 0xFFFF_FF05;
    const NAME: &'static str = "Handmade";
    fn encode_body(&self, _: Codec, _: &mut bytes::BytesMut) -> Result<(), gonet::CodecError> {
        Ok(())
    }
    fn decode_body(_: Codec, _: gonet::Body<'_>) -> Result<Self, gonet::CodecError> {
        Ok(Handmade)
    }
}

#[test]
#[should_panic(
    expected = "message Handmade has id 0xffffff05, which is reserved for the framework"
)]
fn routing_a_reserved_id_panics_at_start_up() {
    let _ = Router::new().route(|_: Session, _: Handmade| async {});
}

#[test]
#[should_panic(expected = "message id 101 is routed twice: chat.Say and chat.Say")]
fn routing_an_id_twice_panics_at_start_up() {
    let _ = Router::new()
        .route(|_: Session, _: Say| async {})
        .route(|_: Session, _: Say| async {});
}

#[tokio::test]
async fn oversize_message_is_refused_before_it_is_queued() {
    let server = Builder::new()
        .codec(Codec::Json)
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let client = Builder::new()
        .codec(Codec::Json)
        .max_frame_len(100)
        .dial(&server.url())
        .await
        .unwrap();
    let err = client
        .send(&Say {
            content: "x".repeat(200),
        })
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "message 101 (chat.Say) body of 214 bytes exceeds the frame limit of 96 bytes"
        ),
        "{err}"
    );
    assert!(!client.is_closed());
    server.shutdown().await;
}

/// Log lines carry the session and the message, so an error points at both.
#[tokio::test]
async fn error_logs_carry_session_and_message_spans() {
    let logs = crate::support::logs();
    let router = Router::new()
        .route(|_: Session, _: Say| async move { Err::<(), _>(Status::not_found("no such room")) });
    let server = json_server(router).await;
    let mut go = raw(server.local_addr()).await;
    let me = go.local_addr().unwrap().to_string();
    go.write_all(&frame(101, br#"{"content":"x"}"#))
        .await
        .unwrap();
    go.write_all(&frame(101, b"garbage")).await.unwrap();
    go.shutdown().await.unwrap();
    within("close", read_to_eof(&mut go)).await;
    server.shutdown().await;

    let logs = logs.text();
    let mine: Vec<&str> = logs.lines().filter(|l| l.contains(&me)).collect();
    let handler = mine
        .iter()
        .find(|l| l.contains("handler failed: NotFound: no such room"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(handler.contains("session{id="), "{handler}");
    assert!(handler.contains(&format!("peer={me}")), "{handler}");
    assert!(
        handler.contains("message{id=101 name=\"chat.Say\"}"),
        "{handler}"
    );
    let decode = mine
        .iter()
        .find(|l| l.contains("json codec cannot decode chat.Say"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(decode.contains("session{id="), "{decode}");
    assert!(decode.contains("message{id=101"), "{decode}");
}
