//! Draining a server: clients that made a handshake are told to go elsewhere, finish
//! their calls, and no request the server accepted is lost or handled twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gonet::{Builder, CallError, CloseReason, Codec, Router, Server, Session};

use crate::support::*;

/// A server that records which request numbers it handled, and answers each.
async fn counting(handled: Arc<Mutex<HashMap<u64, u32>>>) -> Server {
    let router = Router::new().route(move |_: Session, seq: Seq| {
        *handled.lock().unwrap().entry(seq.n).or_default() += 1;
        async move { seq }
    });
    Builder::new()
        .codec(Codec::Json)
        .router(router)
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap()
}

async fn connect(url: &str) -> Session {
    Builder::new()
        .codec(Codec::Json)
        .hello(
            "1.0",
            "test",
            &Say {
                content: String::new(),
            },
        )
        .dial(url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_request_is_lost_across_a_drain() {
    let handled = Arc::new(Mutex::new(HashMap::new()));
    let old = counting(handled.clone()).await;
    let new = counting(handled.clone()).await;
    let (old_url, new_url) = (old.url(), new.url());
    const CLIENTS: u64 = 4;
    const CALLS: u64 = 300;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let old_url = old_url.clone();
        let started = started_tx.clone();
        clients.push(tokio::spawn(async move {
            let mut session = connect(&old_url).await;
            let mut moved_to = None;
            for i in 0..CALLS {
                let n = c * CALLS + i;
                if i == CALLS / 3 {
                    let _ = started.send(());
                }
                loop {
                    match session
                        .call::<_, Seq>(&Seq {
                            n,
                            pad: String::new(),
                        })
                        .await
                    {
                        Ok(reply) => {
                            assert_eq!(reply.n, n);
                            break;
                        }
                        // Not accepted: make it again on a new connection, where the
                        // server said to go.
                        Err(CallError::Closed { .. } | CallError::Send { .. }) => {
                            let to = match session.closed().await {
                                CloseReason::GoAway(Some(to)) => to.to_string(),
                                other => panic!("closed for {other:?}"),
                            };
                            session = connect(&to).await;
                            moved_to = Some(to);
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            }
            moved_to
        }));
    }
    // Drain once every client is well under way.
    for _ in 0..CLIENTS {
        within("the clients to start", started.recv()).await;
    }
    within("the drain", old.drain(Some(&new_url))).await;
    for client in clients {
        let moved = within("a client", client).await.unwrap();
        assert_eq!(
            moved.as_deref(),
            Some(new_url.as_str()),
            "every client moved"
        );
    }
    let handled = handled.lock().unwrap();
    for n in 0..CLIENTS * CALLS {
        assert_eq!(handled.get(&n), Some(&1), "request {n} handled once");
    }
}

#[tokio::test]
async fn a_plain_peer_is_shut_down_as_before() {
    let server = json_server(Router::new()).await;
    let plain = json_client(&server).await;
    within("the drain", server.drain(None)).await;
    assert!(matches!(plain.closed().await, CloseReason::PeerClosed));
}
