//! The ordered worker: per-session order, parallel sessions, panic isolation and
//! backpressure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gonet::{Builder, CloseReason, Codec, PanicPolicy, Router, Session};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_one_session_are_handled_in_arrival_order() {
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let record = seen.clone();
    let router = Router::new().route(move |session: Session, seq: Seq| {
        record.lock().unwrap().push((session.id(), seq.n));
        // Yield so that handlers of different sessions interleave.
        async move { tokio::task::yield_now().await }
    });
    let server = json_server(router).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(json_client(&server).await);
    }
    for n in 0..1000 {
        for c in &clients {
            c.send(&Seq {
                n,
                pad: String::new(),
            })
            .unwrap();
        }
    }
    until("all handled", || seen.lock().unwrap().len() == 4000).await;
    let seen = seen.lock().unwrap().clone();
    let mut per_session: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    for (id, n) in seen {
        per_session.entry(id).or_default().push(n);
    }
    assert_eq!(per_session.len(), 4);
    for ns in per_session.values() {
        assert_eq!(*ns, (0..1000).collect::<Vec<_>>());
    }
    server.shutdown().await;
}

/// Session A's handler waits for a signal that is released only after session B's
/// message was handled: if one session could hold up another this would never finish.
#[tokio::test]
async fn a_blocked_session_does_not_delay_another() {
    let b_handled = Arc::new(Notify::new());
    let router = Router::new().route(move |_: Session, say: Say| {
        let b_handled = b_handled.clone();
        async move {
            if say.content == "A" {
                b_handled.notified().await;
            } else {
                b_handled.notify_one();
            }
            SayAck {
                content: say.content,
            }
        }
    });
    let server = json_server(router).await;
    let a = json_client(&server).await;
    let b = json_client(&server).await;
    let a_call = tokio::spawn(async move {
        a.call::<Say, SayAck>(&Say {
            content: "A".into(),
        })
        .await
    });
    // Make sure A's handler is running (and waiting) before B speaks.
    until("A received", || {
        server
            .pool()
            .sessions()
            .iter()
            .any(|s| s.stats().received == 1 && s.stats().handled == 0)
    })
    .await;
    let b_ack: SayAck = within(
        "B's reply",
        b.call(&Say {
            content: "B".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(b_ack.content, "B");
    let a_ack = within("A's reply", a_call).await.unwrap().unwrap();
    assert_eq!(a_ack.content, "A");
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_is_isolated_and_the_policy_applies() {
    for policy in [PanicPolicy::CloseSession, PanicPolicy::Continue] {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let closes = Arc::new(Mutex::new(Vec::new()));
        let (e, c) = (errors.clone(), closes.clone());
        let router = Router::new().route(|_: Session, say: Say| async move {
            if say.content == "boom" {
                panic!("handler exploded on purpose");
            }
            SayAck {
                content: say.content,
            }
        });
        let server = Builder::new()
            .codec(Codec::Json)
            .router(router)
            .panic_policy(policy)
            .on_error(move |_, err| e.lock().unwrap().push(err.to_string()))
            .on_close(move |s, reason| c.lock().unwrap().push((s.id(), reason.clone())))
            .serve("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let victim = json_client(&server).await;
        let bystander = json_client(&server).await;

        let err = within(
            "panic reply",
            victim.call::<Say, SayAck>(&Say {
                content: "boom".into(),
            }),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("handler of chat.Say panicked"),
            "{err}"
        );
        let line = errors.lock().unwrap()[0].clone();
        assert!(line.starts_with("session "), "{line}");
        assert!(
            line.contains(&format!("({})", victim.local_addr())),
            "{line}"
        );
        assert!(
            line.ends_with("message 101 (chat.Say): handler panicked: handler exploded on purpose"),
            "{line}"
        );

        let ok: SayAck = within(
            "bystander",
            bystander.call(&Say {
                content: "ok".into(),
            }),
        )
        .await
        .unwrap();
        assert_eq!(ok.content, "ok");

        match policy {
            PanicPolicy::CloseSession => {
                assert!(matches!(
                    within("victim closed", victim.closed()).await,
                    CloseReason::PeerClosed
                ));
                until("server close hook", || !closes.lock().unwrap().is_empty()).await;
                assert!(matches!(
                    closes.lock().unwrap()[0].1,
                    CloseReason::HandlerPanicked
                ));
            }
            _ => {
                let again: SayAck = victim
                    .call(&Say {
                        content: "again".into(),
                    })
                    .await
                    .unwrap();
                assert_eq!(again.content, "again");
                assert!(closes.lock().unwrap().is_empty());
            }
        }
        server.shutdown().await;
    }
}

/// A blocked handler and a client that keeps writing: the server stops reading that
/// socket once the inbound queue is full, holds a bounded number of messages, and after
/// the release handles every one of them, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_inbound_queue_stops_reading_and_loses_nothing() {
    const QUEUE: usize = 16;
    const TOTAL: u64 = 12_000;
    const PAD: usize = 4000; // 12,000 x 4 KiB = 48 MiB: far more than socket buffers hold.
    let gate = Arc::new(Semaphore::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let (g, expect) = (gate.clone(), next.clone());
    let router = Router::new().route(move |_: Session, seq: Seq| {
        let (gate, expect) = (g.clone(), expect.clone());
        async move {
            if seq.n == 0 {
                gate.acquire().await.unwrap().forget();
            }
            let want = expect.fetch_add(1, Ordering::SeqCst);
            assert_eq!(seq.n, want, "out of order");
        }
    });
    let server = Builder::new()
        .codec(Codec::Json)
        .inbound_queue(QUEUE)
        .router(router)
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let mut sock = raw(server.local_addr()).await;
    let writer = tokio::spawn(async move {
        let pad = "p".repeat(PAD);
        for n in 0..TOTAL {
            let body = serde_json::to_vec(&Seq {
                n,
                pad: pad.clone(),
            })
            .unwrap();
            sock.write_all(&frame(201, &body)).await.unwrap();
        }
        sock
    });
    // The reader stops once the queue is full and the handler holds one message.
    let session = within("session", async {
        loop {
            if let Some(s) = server.pool().sessions().pop() {
                break s;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    until("queue full", || session.stats().received as usize > QUEUE).await;
    // Whatever the timing, the server holds at most the queue, the message in the
    // handler, one being delivered and the frames of one read buffer (64 KiB / 4 KiB).
    let bound = (QUEUE + 2 + 17) as u64;
    for _ in 0..50 {
        tokio::task::yield_now().await;
        assert!(session.stats().received <= bound, "{:?}", session.stats());
    }
    assert!(!writer.is_finished(), "48 MiB cannot fit in socket buffers");
    gate.add_permits(1);
    let sock = within("writer to finish", writer).await.unwrap();
    until("every message handled", || {
        next.load(Ordering::SeqCst) == TOTAL
    })
    .await;
    // The handled count moves just after the handler returns: wait for it too.
    until("the handled count", || session.stats().handled == TOTAL).await;
    drop(sock);
    server.shutdown().await;
}

/// Replies of a batch of messages wait in the session's reply buffer until the batch is
/// done; a push, a broadcast or a waiting handler in between must still leave in the
/// order the handlers made them. 300 messages in one write, so they are one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_pushes_and_broadcasts_leave_in_handler_order() {
    const N: u64 = 300;
    let router = Router::new().route(|session: Session, seq: Seq| async move {
        let n = seq.n;
        match n % 4 {
            1 => session
                .send(&Notice {
                    text: format!("push {n}"),
                })
                .expect("push"),
            2 => {
                session.join("all");
                let pool = session.pool().expect("a server session");
                pool.broadcast_group(
                    "all",
                    &Notice {
                        text: format!("broadcast {n}"),
                    },
                )
                .expect("broadcast");
            }
            // A handler that waits: the messages behind it queue.
            3 => tokio::task::yield_now().await,
            _ => {}
        }
        SayAck {
            content: format!("reply {n}"),
        }
    });
    let server = json_server(router).await;
    let mut stream = raw(server.local_addr()).await;
    stream.write_all(&seq_frames(0..N)).await.unwrap();

    let mut expected = Vec::new();
    for n in 0..N {
        match n % 4 {
            1 => expected.push(format!("push {n}")),
            2 => expected.push(format!("broadcast {n}")),
            _ => {}
        }
        expected.push(format!("reply {n}"));
    }
    let mut got = Vec::new();
    within("every reply and push", async {
        while got.len() < expected.len() {
            let (id, body) = read_frame(&mut stream).await.expect("server alive");
            got.push(match id {
                102 => serde_json::from_slice::<SayAck>(&body).unwrap().content,
                301 => serde_json::from_slice::<Notice>(&body).unwrap().text,
                other => panic!("unexpected id {other}"),
            });
        }
    })
    .await;
    assert_eq!(got, expected);
    server.shutdown().await;
}

/// Message 0's handler waits for the test; 1 and 2 queue behind it, and 2's handler
/// waits again. Once 0 is released, replies 0 and 1 must arrive while 2 still waits:
/// a reply is never held back until every queued message is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_leave_while_later_handlers_still_wait() {
    let gates: Arc<Vec<Notify>> = Arc::new((0..3).map(|_| Notify::new()).collect());
    let wait_on = gates.clone();
    let router = Router::new().route(move |_: Session, seq: Seq| {
        let gates = wait_on.clone();
        async move {
            if seq.n != 1 {
                gates[seq.n as usize].notified().await;
            }
            SayAck {
                content: format!("reply {}", seq.n),
            }
        }
    });
    let server = json_server(router).await;
    let mut stream = raw(server.local_addr()).await;
    stream.write_all(&seq_frames(0..3)).await.unwrap();
    let session = within("the session", async {
        loop {
            if let Some(s) = server.pool().sessions().into_iter().next() {
                if s.stats().received == 3 {
                    return s;
                }
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    gates[0].notify_one();
    for n in 0..2 {
        assert_eq!(read_ack(&mut stream).await, format!("reply {n}"));
    }
    assert_eq!(session.stats().handled, 2, "message 2 still waits");
    gates[2].notify_one();
    assert_eq!(read_ack(&mut stream).await, "reply 2");
    server.shutdown().await;
}

/// While a slow handler keeps the queue full the socket is not read, so the peer's
/// messages are not heard: that is no reason to close the session as idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_not_an_idle_peer() {
    let release = Arc::new(Notify::new());
    let wait_on = release.clone();
    let router = Router::new().route(move |_: Session, seq: Seq| {
        let release = wait_on.clone();
        async move {
            if seq.n == 0 {
                release.notified().await;
            }
            SayAck {
                content: format!("reply {}", seq.n),
            }
        }
    });
    let server = Builder::new()
        .codec(Codec::Json)
        .router(router)
        .inbound_queue(1)
        .idle_timeout(std::time::Duration::from_millis(50))
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let mut stream = raw(server.local_addr()).await;
    stream.write_all(&seq_frames(0..3)).await.unwrap();
    // Many idle timeouts long: the session must still be there, waiting on its queue.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let session = server
        .pool()
        .sessions()
        .into_iter()
        .next()
        .expect("session open");
    assert!(!session.is_closed(), "closed while its queue was full");
    release.notify_one();
    for n in 0..3 {
        assert_eq!(read_ack(&mut stream).await, format!("reply {n}"));
    }
    server.shutdown().await;
}
