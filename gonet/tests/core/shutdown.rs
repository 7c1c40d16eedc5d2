//! Graceful shutdown: no accepted request goes unanswered.

use std::sync::Arc;

use gonet::{Builder, CloseReason, Codec, Router, Session};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_accepted_request_then_closes() {
    const N: u64 = 200;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let router = Router::new().route(move |_: Session, seq: Seq| {
        let gate = g.clone();
        async move {
            if seq.n == 0 {
                gate.acquire().await.unwrap().forget();
            }
            Seq {
                n: seq.n,
                pad: "done".into(),
            }
        }
    });
    let (close_tx, mut closes) = mpsc::unbounded_channel();
    let server = Builder::new()
        .codec(Codec::Json)
        .inbound_queue(512)
        .router(router)
        .on_close(move |_, reason| close_tx.send(reason.clone()).unwrap())
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut s = raw(addr).await;
        s.write_all(&seq_frames(0..N)).await.unwrap();
        sockets.push(s);
    }
    // Every request has been read (accepted); the first of each session is in flight.
    until("all requests read", || {
        let sessions = server.pool().sessions();
        sessions.len() == 3 && sessions.iter().all(|s| s.stats().received == N)
    })
    .await;

    let shutdown = tokio::spawn(server.shutdown());
    // New connections are no longer accepted once shutdown has begun... and the
    // in-flight handlers are released only now.
    gate.add_permits(3);
    within("shutdown", shutdown).await.unwrap();

    for mut s in sockets {
        for n in 0..N {
            let (id, body) = within("reply", read_frame(&mut s))
                .await
                .expect("reply before close");
            assert_eq!(id, 201);
            let seq: Seq = serde_json::from_slice(&body).unwrap();
            assert_eq!((seq.n, seq.pad.as_str()), (n, "done"));
        }
        assert!(
            read_frame(&mut s).await.is_none(),
            "closed after the replies"
        );
    }
    for _ in 0..3 {
        assert!(matches!(
            closes.recv().await.unwrap(),
            CloseReason::ServerShutdown
        ));
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is gone"
    );
}
