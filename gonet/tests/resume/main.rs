//! Sessions that survive a dropped connection: a loopback proxy between a real client
//! and a real server cuts the connection mid-stream, several times, while both ends
//! keep sending; nothing may be lost, duplicated or reordered. Run with
//! `cargo test -p gonet --all-features --test resume`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gonet::{
    Builder, CallError, CloseReason, Codec, LinkEvent, Reconnect, Router, SendError, Session,
    Status,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

mod proxy;
mod raw;

use proxy::Proxy;

/// How long any one test may wait for all its events.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Seq {
    n: u64,
}
gonet::message!(Seq = 2001, serde);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Ask {
    n: u64,
}
gonet::message!(Ask = 2002, serde);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for {what}"))
}

/// What the hooks of one side saw.
#[derive(Default, Debug)]
struct Seen {
    connects: usize,
    detached: usize,
    resumed: usize,
    expired: usize,
    restarted: Vec<Status>,
    /// The close reasons of sessions that connected. A connection cut before its
    /// handshake completed (the proxy may cut a reconnect's hello) is a session that
    /// never connected: its close says nothing of the session under test.
    closed: Vec<CloseReason>,
    connected: Vec<u64>,
}

type Shared = Arc<Mutex<Seen>>;

fn hooks(builder: Builder, seen: &Shared) -> Builder {
    let (a, b, c) = (seen.clone(), seen.clone(), seen.clone());
    builder
        .on_connect(move |session| {
            let mut seen = a.lock().unwrap();
            seen.connects += 1;
            seen.connected.push(session.id());
        })
        .on_link(move |_, event| {
            let mut seen = b.lock().unwrap();
            match event {
                LinkEvent::Detached => seen.detached += 1,
                LinkEvent::Resumed => seen.resumed += 1,
                LinkEvent::Expired => seen.expired += 1,
                LinkEvent::Restarted(status) => seen.restarted.push(status.clone()),
                _ => {}
            }
        })
        .on_close(move |session, reason| {
            let mut seen = c.lock().unwrap();
            if seen.connected.contains(&session.id()) {
                seen.closed.push(reason.clone());
            }
        })
}

/// Records the numbers a side receives and publishes how many it has.
fn recorder() -> (Router, mpsc::UnboundedReceiver<u64>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new()
        .route(move |_: Session, seq: Seq| {
            let _ = tx.send(seq.n);
            async {}
        })
        .route(|_: Session, ask: Ask| async move { Ask { n: ask.n * 2 } });
    (router, rx)
}

/// Sends `0..n` as `Seq`, never more than `window` ahead of what the other side has
/// received, so that the stream is still flowing when the proxy cuts it.
async fn send_all(session: Session, n: u64, window: u64, mut peer_got: watch::Receiver<u64>) {
    for i in 0..n {
        session.send(&Seq { n: i }).expect("send");
        if i % 50 == 49 {
            let _ = peer_got.wait_for(|got| got + window > i).await;
        }
    }
}

/// Collects `n` numbers, publishing the count, and returns them.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<u64>,
    n: u64,
    got: watch::Sender<u64>,
) -> Vec<u64> {
    let mut all = Vec::with_capacity(n as usize);
    while (all.len() as u64) < n {
        match rx.recv().await {
            Some(i) => {
                all.push(i);
                got.send_replace(all.len() as u64);
            }
            None => break,
        }
    }
    all
}

fn quick_reconnect() -> Reconnect {
    Reconnect::new()
        .backoff(Duration::from_millis(1), Duration::from_millis(20))
        .max_attempts(1000)
        .max_elapsed(PATIENCE)
}

/// Both ends send `N` numbered messages while the proxy cuts the connection after
/// every `N / 6` received on either side; each side must receive `0..N` exactly.
async fn cut_many_times(scheme: &str) {
    const N: u64 = 6_000;
    let server_seen = Shared::default();
    let client_seen = Shared::default();
    let (server_router, server_rx) = recorder();
    let (client_router, client_rx) = recorder();
    let (server_got_tx, server_got) = watch::channel(0u64);
    let (client_got_tx, client_got) = watch::channel(0u64);

    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    let server = hooks(
        Builder::new()
            .codec(Codec::Json)
            .resume(PATIENCE)
            .router(server_router),
        &server_seen,
    )
    .on_connect(move |session| {
        let _ = opened_tx.send(session.clone());
    })
    .serve(&format!("{scheme}://127.0.0.1:0"))
    .await
    .expect("serve");
    let proxy = Proxy::start(&server).await;
    let client = hooks(
        Builder::new()
            .codec(Codec::Json)
            .reconnect(quick_reconnect())
            .router(client_router),
        &client_seen,
    )
    .dial(&proxy.url())
    .await
    .expect("dial");
    let server_session = within("the server's session", opened.recv()).await.unwrap();
    let (first_client_port, first_server_peer) = (client.local_addr(), server_session.peer_addr());

    let server_sends = tokio::spawn(send_all(server_session.clone(), N, 400, client_got.clone()));
    let client_sends = tokio::spawn(send_all(client.clone(), N, 400, server_got.clone()));
    let server_all = tokio::spawn(collect(server_rx, N, server_got_tx));
    let client_all = tokio::spawn(collect(client_rx, N, client_got_tx));

    // Cut whenever either side has received another sixth.
    let cuts = {
        let proxy = proxy.clone();
        let (mut server_got, mut client_got) = (server_got.clone(), client_got.clone());
        tokio::spawn(async move {
            let mut cuts = 0;
            for step in 1..6u64 {
                let mark = step * N / 6;
                let got = if step % 2 == 0 {
                    &mut server_got
                } else {
                    &mut client_got
                };
                if got.wait_for(|got| *got >= mark).await.is_err() {
                    break;
                }
                if proxy.cut() > 0 {
                    cuts += 1;
                }
            }
            cuts
        })
    };

    let server_all = within("the server to receive everything", server_all)
        .await
        .unwrap();
    let client_all = within("the client to receive everything", client_all)
        .await
        .unwrap();
    within("the senders", async {
        server_sends.await.unwrap();
        client_sends.await.unwrap();
    })
    .await;
    let cuts = within("the cuts", cuts).await.unwrap();

    let expected: Vec<u64> = (0..N).collect();
    assert_eq!(server_all, expected, "the server's messages");
    assert_eq!(client_all, expected, "the client's messages");
    assert!(cuts >= 3, "only {cuts} cuts hit a live connection");
    // Both ends know the addresses of the connection they are on now.
    assert_ne!(client.local_addr(), first_client_port);
    assert_ne!(server_session.peer_addr(), first_server_peer);

    // One session throughout: same id, never restarted, resumed after every drop.
    assert_eq!(server.pool().len(), 1);
    assert!(server.pool().get(server_session.id()).is_some());
    {
        let server_seen = server_seen.lock().unwrap();
        let client_seen = client_seen.lock().unwrap();
        assert_eq!(server_seen.connects, 1, "one session throughout");
        assert!(
            client_seen.restarted.is_empty(),
            "{:?}",
            client_seen.restarted
        );
        assert!(client_seen.resumed >= 1 && server_seen.resumed >= 1);
        assert!(server_seen.closed.is_empty(), "{:?}", server_seen.closed);
    }

    // The session still serves calls, and a deliberate close is not taken for a drop.
    let reply: Ask = within("a call", client.call(&Ask { n: 21 })).await.unwrap();
    assert_eq!(reply.n, 42);
    client.close("done");
    let reason = within("the server's close", server_session.closed()).await;
    assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_survives_cuts_in_both_directions() {
    cut_many_times("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_survives_cuts_in_both_directions() {
    cut_many_times("ws").await;
}

/// A session whose client stays away past the grace period expires; the client,
/// back later, is refused its resume and starts a fresh session on the same handle,
/// and its application is told.
#[tokio::test]
async fn an_expired_session_restarts_fresh_and_the_client_is_told() {
    let server_seen = Shared::default();
    let client_seen = Shared::default();
    let (server_router, _server_rx) = recorder();
    let server = hooks(
        Builder::new()
            .codec(Codec::Json)
            .resume(Duration::from_millis(50))
            .router(server_router),
        &server_seen,
    )
    .serve("tcp://127.0.0.1:0")
    .await
    .expect("serve");
    let proxy = Proxy::start(&server).await;
    let (client_router, _client_rx) = recorder();
    let client = hooks(
        Builder::new()
            .codec(Codec::Json)
            .reconnect(quick_reconnect())
            .router(client_router),
        &client_seen,
    )
    .dial(&proxy.url())
    .await
    .expect("dial");
    let first = server.pool().sessions()[0].clone();

    // Keep the client out until the server has given its session up.
    proxy.block(true);
    proxy.cut();
    let reason = within("the detached session to expire", first.closed()).await;
    assert!(matches!(reason, CloseReason::Expired), "{reason:?}");
    proxy.block(false);

    // The client comes back, is refused, and starts afresh: calls work again.
    let reply: Ask = within("a call on the fresh session", async {
        loop {
            match client.call(&Ask { n: 5 }).await {
                Ok(reply) => break reply,
                Err(CallError::Closed { .. } | CallError::Timeout { .. }) => continue,
                Err(other) => panic!("{other}"),
            }
        }
    })
    .await;
    assert_eq!(reply.n, 10);
    {
        let client_seen = client_seen.lock().unwrap();
        assert_eq!(client_seen.restarted.len(), 1, "{client_seen:?}");
        assert_eq!(client_seen.restarted[0].code(), gonet::Code::NotFound);
        assert!(client_seen.closed.is_empty());
        let server_seen = server_seen.lock().unwrap();
        assert_eq!(server_seen.connects, 2, "the fresh session is a new one");
        assert_eq!(server_seen.expired, 1);
        assert!(server.pool().get(first.id()).is_none());
    }
    server.shutdown().await;
}

/// A call made while the client is away waits and completes after the resume; with
/// `fail_while_disconnected`, sends fail at once with `Disconnected`.
#[tokio::test]
async fn calls_while_disconnected_wait_or_fail_as_the_policy_says() {
    let (server_router, _server_rx) = recorder();
    let server = Builder::new()
        .codec(Codec::Json)
        .resume(PATIENCE)
        .router(server_router)
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    let proxy = Proxy::start(&server).await;
    let (detached_tx, mut detached) = mpsc::unbounded_channel();
    let builder = |fail: bool| {
        let detached_tx = detached_tx.clone();
        Builder::new()
            .codec(Codec::Json)
            .reconnect(quick_reconnect().fail_while_disconnected(fail))
            .on_link(move |session, event| {
                if matches!(event, LinkEvent::Detached) {
                    let _ = detached_tx.send(session.id());
                }
            })
    };
    let waiting = builder(false).dial(&proxy.url()).await.expect("dial");
    let failing = builder(true).dial(&proxy.url()).await.expect("dial");

    proxy.block(true);
    proxy.cut();
    for _ in 0..2 {
        within("both clients to notice the drop", detached.recv()).await;
    }
    let err = failing.send(&Seq { n: 1 }).unwrap_err();
    assert!(matches!(err, SendError::Disconnected { .. }), "{err}");
    let call = tokio::spawn({
        let waiting = waiting.clone();
        async move { waiting.call::<_, Ask>(&Ask { n: 4 }).await }
    });
    proxy.block(false);
    let reply = within("the call made while away", call)
        .await
        .unwrap()
        .expect("call");
    assert_eq!(reply.n, 8);
    server.shutdown().await;
}

/// Resumes that must be refused: a wrong token, an unknown session, a count of bytes
/// never sent. Each gets a REFUSED frame naming the problem.
#[tokio::test]
async fn bad_resumes_are_refused_clearly() {
    let server = Builder::new()
        .codec(Codec::Json)
        .resume(PATIENCE)
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    let addr = server.local_addr();
    let (id, token, _open) = raw::welcome(addr).await;

    let mut wrong = token;
    wrong[0] ^= 1;
    let (code, text) = raw::resume(addr, id, &wrong, 0).await;
    assert_eq!(code, gonet::Code::NotFound.to_u16(), "{text}");
    assert!(
        text.contains(&format!("session {id} cannot be resumed")),
        "{text}"
    );

    let (code, text) = raw::resume(addr, id + 1_000, &token, 0).await;
    assert_eq!(code, gonet::Code::NotFound.to_u16(), "{text}");

    let (code, text) = raw::resume(addr, id, &token, 1 << 40).await;
    assert_eq!(code, gonet::Code::NotFound.to_u16(), "{text}");
    assert!(text.contains("no longer holds"), "{text}");
    server.shutdown().await;
}

/// A draining server sends clients with a reconnect policy to another server: each
/// finishes its calls, starts a fresh session there on the same handle (its
/// application told), and no request the servers accepted is lost or handled twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_moves_reconnecting_clients_to_another_server() {
    use std::collections::HashMap;

    const CLIENTS: u64 = 4;
    const CALLS: u64 = 300;
    let handled: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let counting = |handled: Arc<Mutex<HashMap<u64, u32>>>| {
        Builder::new()
            .codec(Codec::Json)
            .resume(PATIENCE)
            .router(Router::new().route(move |_: Session, ask: Ask| {
                *handled.lock().unwrap().entry(ask.n).or_default() += 1;
                async move { ask }
            }))
    };
    let old = counting(handled.clone())
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let new = counting(handled.clone())
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let (moved_tx, mut moved) = mpsc::unbounded_channel();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let moved_tx = moved_tx.clone();
        let session = Builder::new()
            .codec(Codec::Json)
            .reconnect(quick_reconnect())
            .on_link(move |_, event| {
                if let LinkEvent::Restarted(status) = event {
                    let _ = moved_tx.send(status.clone());
                }
            })
            .dial(&old.url())
            .await
            .unwrap();
        let started = started_tx.clone();
        clients.push(tokio::spawn(async move {
            for i in 0..CALLS {
                let n = c * CALLS + i;
                if i == CALLS / 3 {
                    let _ = started.send(());
                }
                // Calls made while the client moves fail at once, never half-done:
                // make them again.
                loop {
                    match session.call::<_, Ask>(&Ask { n }).await {
                        Ok(reply) => {
                            assert_eq!(reply.n, n);
                            break;
                        }
                        Err(CallError::Closed { .. }) => tokio::task::yield_now().await,
                        Err(other) => panic!("call {n}: {other}"),
                    }
                }
            }
            session
        }));
    }
    for _ in 0..CLIENTS {
        within("the clients to be busy", started.recv()).await;
    }
    within("the drain", old.drain(Some(&new.url()))).await;
    for _ in 0..CLIENTS {
        let status = within("every client to move", moved.recv()).await.unwrap();
        assert!(status.message().contains(&new.url()), "{status}");
    }
    let mut sessions = Vec::new();
    for client in clients {
        sessions.push(within("the calls", client).await.unwrap());
    }
    assert_eq!(
        new.pool().len(),
        CLIENTS as usize,
        "every client is on the new server"
    );
    let handled = std::mem::take(&mut *handled.lock().unwrap());
    for n in 0..CLIENTS * CALLS {
        assert_eq!(handled.get(&n), Some(&1), "request {n}");
    }
    new.shutdown().await;
}

/// A peer acknowledging more than it was sent breaks the protocol: its session is
/// closed with an error naming the acknowledgement.
#[tokio::test]
async fn an_acknowledgement_of_unsent_bytes_closes_the_session() {
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let server = Builder::new()
        .codec(Codec::Json)
        .resume(PATIENCE)
        .on_close(move |_, reason| {
            let _ = closed_tx.send(reason.clone());
        })
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    let (_, _, mut stream) = raw::welcome(server.local_addr()).await;
    raw::ack(&mut stream, 1 << 40).await;
    let reason = within("the close", closed.recv()).await.unwrap();
    let text = reason.to_string();
    assert!(matches!(reason, CloseReason::Error(_)), "{text}");
    assert!(
        text.contains("acknowledgement of more than was sent"),
        "{text}"
    );
    server.shutdown().await;
}

/// A client that reads everything but never acknowledges cannot make the server
/// keep more than its replay limit: the session closes as a slow peer.
#[tokio::test]
async fn the_replay_log_is_bounded() {
    let (outcome_tx, mut outcome) = mpsc::unbounded_channel();
    let server = Builder::new()
        .codec(Codec::Json)
        .resume(PATIENCE)
        .replay_limit(64 * 1024)
        .on_connect(move |session| {
            let (session, outcome_tx) = (session.clone(), outcome_tx.clone());
            tokio::spawn(async move {
                let pad = "x".repeat(1000);
                for n in 0.. {
                    if let Err(err) = session.send(&Padded {
                        n,
                        pad: pad.clone(),
                    }) {
                        let reason = session.closed().await;
                        let _ = outcome_tx.send((n, err, reason));
                        return;
                    }
                    if n % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            });
        })
        .serve("tcp://127.0.0.1:0")
        .await
        .expect("serve");
    let (_, _, mut stream) = raw::welcome(server.local_addr()).await;
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; 64 * 1024];
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let (sent, err, reason) = within("the session to give up", outcome.recv())
        .await
        .unwrap();
    assert!(matches!(err, SendError::QueueFull { .. }), "{err}");
    assert!(matches!(reason, CloseReason::SlowPeer), "{reason:?}");
    assert!((60..=70).contains(&sent), "{sent} messages of 1 KiB kept");
    within("the reader", reader).await.unwrap();
    server.shutdown().await;
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Padded {
    n: u64,
    pad: String,
}
gonet::message!(Padded = 2003, serde);
