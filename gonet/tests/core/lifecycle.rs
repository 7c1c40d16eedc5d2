//! Session handles, lifecycle hooks and close reasons, server pushes and slow peers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gonet::{Builder, CloseReason, Codec, Router, SendError, Session, Transport};
use tokio::sync::mpsc;

use crate::support::*;

#[derive(Clone, Debug, PartialEq)]
struct Nick(String);

#[tokio::test]
async fn session_handle_carries_identity_and_typed_data() {
    let router = Router::new().route(|session: Session, say: Say| async move {
        // Per-session state lives on the session.
        if session.get::<Nick>().is_none() {
            session.insert(Nick(say.content.clone()));
            return SayAck {
                content: format!("welcome {}", say.content),
            };
        }
        session.with(|n: &mut Nick| n.0.push('!'));
        SayAck {
            content: session.get::<Nick>().unwrap().0,
        }
    });
    let server = json_server(router).await;
    let a = json_client(&server).await;
    let b = json_client(&server).await;
    assert_ne!(a.id(), b.id());
    assert_eq!(a.transport(), Transport::Tcp);
    assert_eq!(a.peer_addr(), server.local_addr());

    let call = |s: &Session, text: &str| {
        let s = s.clone();
        let text = text.to_owned();
        async move {
            s.call::<Say, SayAck>(&Say { content: text })
                .await
                .unwrap()
                .content
        }
    };
    assert_eq!(call(&a, "ada").await, "welcome ada");
    assert_eq!(call(&b, "bob").await, "welcome bob");
    assert_eq!(call(&a, "x").await, "ada!");
    assert_eq!(call(&b, "x").await, "bob!");

    let on_server = server
        .pool()
        .sessions()
        .into_iter()
        .find(|s| s.peer_addr() == a.local_addr())
        .unwrap();
    assert_eq!(on_server.local_addr(), server.local_addr());
    assert_eq!(on_server.remove::<Nick>(), Some(Nick("ada!".into())));
    assert_eq!(on_server.get::<Nick>(), None);
    server.shutdown().await;
}

#[tokio::test]
async fn hooks_see_connect_and_every_close_reason() {
    let (events_tx, mut events) = mpsc::unbounded_channel::<String>();
    let (c, d) = (events_tx.clone(), events_tx.clone());
    let router = Router::new().route(|session: Session, say: Say| async move {
        if say.content == "kick me" {
            session.send(&Notice { text: "bye".into() }).unwrap();
            session.close("kicked: asked for it");
        }
    });
    let server = Builder::new()
        .codec(Codec::Json)
        .router(router)
        .on_connect(move |s| c.send(format!("connect {}", s.id())).unwrap())
        .on_close(move |s, reason| d.send(format!("close {} {reason}", s.id())).unwrap())
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();

    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = notices.clone();
    let client = Builder::new()
        .codec(Codec::Json)
        .router(Router::new().route(move |_: Session, n: Notice| {
            seen.lock().unwrap().push(n.text);
            async {}
        }));

    // Kicked by the server: the server says why, the client sees the peer close,
    // and what the server queued before closing still arrives.
    let kicked = client.dial(&server.url()).await.unwrap();
    let connect = within("connect hook", events.recv()).await.unwrap();
    let id: u64 = connect.strip_prefix("connect ").unwrap().parse().unwrap();
    kicked
        .send(&Say {
            content: "kick me".into(),
        })
        .unwrap();
    assert_eq!(
        within("close hook", events.recv()).await.unwrap(),
        format!("close {id} closed: kicked: asked for it")
    );
    assert!(matches!(
        within("client closed", kicked.closed()).await,
        CloseReason::PeerClosed
    ));
    assert_eq!(*notices.lock().unwrap(), vec!["bye".to_owned()]);

    // Closed by the client.
    let leaving = client.dial(&server.url()).await.unwrap();
    let connect = within("connect hook", events.recv()).await.unwrap();
    leaving.close("going home");
    assert!(matches!(
        within("client closed", leaving.closed()).await,
        CloseReason::Local(ref r) if &**r == "going home"
    ));
    let id = connect.strip_prefix("connect ").unwrap();
    assert_eq!(
        within("close hook", events.recv()).await.unwrap(),
        format!("close {id} peer closed")
    );

    // Server shutdown.
    let stayer = client.dial(&server.url()).await.unwrap();
    let connect = within("connect hook", events.recv()).await.unwrap();
    server.shutdown().await;
    let id = connect.strip_prefix("connect ").unwrap();
    assert_eq!(
        within("close hook", events.recv()).await.unwrap(),
        format!("close {id} server shutdown")
    );
    assert!(matches!(
        within("client closed", stayer.closed()).await,
        CloseReason::PeerClosed
    ));
    assert!(matches!(
        stayer.send(&Say {
            content: "late".into()
        }),
        Err(SendError::Closed { .. })
    ));
}

/// Both ends are peers: the server pushes, the client's router handles it.
#[tokio::test]
async fn server_pushes_reach_client_handlers() {
    let router = Router::new().route(|session: Session, say: Say| async move {
        for i in 0..3 {
            session
                .send(&Notice {
                    text: format!("{} #{i}", say.content),
                })
                .unwrap();
        }
    });
    let server = Builder::new()
        .codec(Codec::Binary)
        .router(router)
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = Builder::new()
        .codec(Codec::Binary)
        .router(Router::new().route(move |session: Session, n: Notice| {
            tx.send((session.id(), n.text)).unwrap();
            async {}
        }))
        .dial(&server.url())
        .await
        .unwrap();
    client
        .send(&Say {
            content: "news".into(),
        })
        .unwrap();
    for i in 0..3 {
        let (id, text) = within("push", rx.recv()).await.unwrap();
        assert_eq!(id, client.id());
        assert_eq!(text, format!("news #{i}"));
    }
    server.shutdown().await;
}

/// A peer that stops reading is closed as slow once its queue passes the limit, and the
/// server keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_is_closed_and_others_are_served() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let seen = closes.clone();
    let (result_tx, mut result_rx) = mpsc::unbounded_channel();
    let router = Router::new().route(move |session: Session, say: Say| {
        let result_tx = result_tx.clone();
        async move {
            if say.content != "flood" {
                return Some(SayAck {
                    content: say.content,
                });
            }
            // Push until the queue refuses: bounded, since the peer never reads.
            let blob = Notice {
                text: "x".repeat(60_000),
            };
            let mut sent = 0u64;
            let err = loop {
                match session.send(&blob) {
                    Ok(()) => sent += 1,
                    Err(e) => break e,
                }
                assert!(sent < 100_000, "the queue never filled");
                tokio::task::yield_now().await;
            };
            result_tx.send((sent, err)).unwrap();
            None
        }
    });
    let server = Builder::new()
        .codec(Codec::Json)
        .router(router)
        .outbound_limit(256 * 1024)
        .write_timeout(Duration::from_secs(30))
        .on_close(move |_, reason| seen.lock().unwrap().push(reason.clone()))
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let mut silent = raw(server.local_addr()).await;
    let body = serde_json::to_vec(&Say {
        content: "flood".into(),
    })
    .unwrap();
    use tokio::io::AsyncWriteExt;
    silent.write_all(&frame(101, &body)).await.unwrap();

    let (sent, err) = within("queue to fill", result_rx.recv()).await.unwrap();
    assert!(sent > 0);
    assert!(
        matches!(err, SendError::QueueFull { limit: 262_144, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("the peer is not reading"), "{err}");
    until("slow peer closed", || {
        closes
            .lock()
            .unwrap()
            .iter()
            .any(|r| matches!(r, CloseReason::SlowPeer))
    })
    .await;

    let healthy = json_client(&server).await;
    let ack: SayAck = within(
        "healthy call",
        healthy.call(&Say {
            content: "hi".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(ack.content, "hi");
    drop(silent);
    server.shutdown().await;
}
