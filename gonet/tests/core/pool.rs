//! The session pool: lookup, limit, broadcast and groups.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use gonet::{Builder, Codec, Router, Session};
use tokio::sync::mpsc;

use crate::support::*;

fn joiner() -> Router {
    Router::new().route(|session: Session, say: Say| async move {
        match say.content.split_once(' ') {
            Some(("join", room)) => session.join(room),
            Some(("leave", room)) => session.leave(room),
            _ => {}
        }
        SayAck {
            content: session.groups().join(","),
        }
    })
}

async fn listener(url: &str, tx: mpsc::UnboundedSender<(u64, String)>) -> Session {
    Builder::new()
        .codec(Codec::Json)
        .router(Router::new().route(move |s: Session, n: Notice| {
            tx.send((s.id(), n.text)).unwrap();
            async {}
        }))
        .dial(url)
        .await
        .unwrap()
}

#[tokio::test]
async fn lookup_count_broadcast_and_groups() {
    let server = json_server(joiner()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(listener(&server.url(), tx.clone()).await);
    }
    until("three sessions", || server.pool().len() == 3).await;
    let pool = server.pool();
    for s in pool.sessions() {
        assert_eq!(pool.get(s.id()).unwrap().peer_addr(), s.peer_addr());
    }
    assert!(pool.get(u64::MAX).is_none());

    let report = pool.broadcast(&Notice { text: "all".into() }).unwrap();
    assert_eq!((report.delivered, report.failed), (3, 0));
    let mut got = HashSet::new();
    for _ in 0..3 {
        let (id, text) = within("broadcast", rx.recv()).await.unwrap();
        assert_eq!(text, "all");
        got.insert(id);
    }
    assert_eq!(got, clients.iter().map(|c| c.id()).collect());

    let say = |c: &Session, text: &str| {
        let c = c.clone();
        let text = text.to_owned();
        async move {
            c.call::<Say, SayAck>(&Say { content: text })
                .await
                .unwrap()
                .content
        }
    };
    assert_eq!(say(&clients[0], "join red").await, "red");
    assert_eq!(say(&clients[1], "join red").await, "red");
    assert_eq!(say(&clients[1], "join blue").await, "red,blue");
    assert_eq!(pool.group_len("red"), 2);
    assert_eq!(pool.group_len("blue"), 1);

    let report = pool
        .broadcast_group(
            "red",
            &Notice {
                text: "red only".into(),
            },
        )
        .unwrap();
    assert_eq!(report.delivered, 2);
    let mut got = HashSet::new();
    for _ in 0..2 {
        let (id, text) = within("group broadcast", rx.recv()).await.unwrap();
        assert_eq!(text, "red only");
        got.insert(id);
    }
    assert_eq!(got, HashSet::from([clients[0].id(), clients[1].id()]));

    assert_eq!(say(&clients[1], "leave red").await, "blue");
    assert_eq!(pool.group_len("red"), 1);
    // A closed session leaves every group by itself.
    clients[1].close("done");
    until("blue emptied", || pool.group_len("blue") == 0).await;
    until("two sessions", || pool.len() == 2).await;
    assert_eq!(
        pool.broadcast_group("nobody", &Notice { text: "?".into() })
            .unwrap()
            .delivered,
        0
    );
    // Nothing else was delivered to anyone.
    assert!(rx.try_recv().is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_cleanly() {
    let closes = Arc::new(Mutex::new(0usize));
    let seen = closes.clone();
    let server = Builder::new()
        .codec(Codec::Json)
        .router(joiner())
        .max_sessions(2)
        .on_close(move |_, _| *seen.lock().unwrap() += 1)
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let a = json_client(&server).await;
    let b = json_client(&server).await;
    until("two sessions", || server.pool().len() == 2).await;

    let mut third = raw(server.local_addr()).await;
    assert!(within("refused", read_to_eof(&mut third)).await.is_empty());
    assert_eq!(server.pool().len(), 2);
    assert_eq!(server.pool().limit(), 2);
    for c in [&a, &b] {
        let ack: SayAck = c
            .call(&Say {
                content: "join x".into(),
            })
            .await
            .unwrap();
        assert_eq!(ack.content, "x");
    }
    // A slot frees up when a session leaves.
    a.close("make room");
    until("one session", || server.pool().len() == 1).await;
    let c = json_client(&server).await;
    let ack: SayAck = c
        .call(&Say {
            content: "hello".into(),
        })
        .await
        .unwrap();
    assert_eq!(ack.content, "");
    assert_eq!(
        *closes.lock().unwrap(),
        1,
        "the refused connection was never a session"
    );
    server.shutdown().await;
}

/// Binds the session to the user named by `Say`'s content.
fn login() -> Router {
    Router::new().route(|session: Session, say: Say| async move {
        session.bind(say.content.as_str());
        SayAck {
            content: say.content,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_logins_of_one_user_leave_exactly_the_newest() {
    let binds = Arc::new(Mutex::new(Vec::new()));
    let seen = binds.clone();
    let server = Builder::new()
        .codec(Codec::Json)
        .router(login())
        .on_bind(move |s, uid| seen.lock().unwrap().push((s.id(), uid.to_owned())))
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    for round in 0..50 {
        let user = format!("user-{round}");
        let one = json_client(&server).await;
        let two = json_client(&server).await;
        let say = Say {
            content: user.clone(),
        };
        // Both logins at once, on two server threads.
        let (a, b) = tokio::join!(one.call::<_, SayAck>(&say), two.call::<_, SayAck>(&say));
        let _ = (a, b);
        let closed = within("one login to be closed", async {
            tokio::select! {
                _ = one.closed() => 1,
                _ = two.closed() => 2,
            }
        })
        .await;
        // The pool finds the survivor as the user's session; both logins were bound.
        let survivor = if closed == 1 { &two } else { &one };
        let bound = server.pool().user(&user).expect("the user is bound");
        assert_eq!(bound.peer_addr(), survivor.local_addr());
        assert!(!survivor.is_closed());
        let logins = binds
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, uid)| *uid == user)
            .count();
        assert_eq!(logins, 2);
        let ack: SayAck = survivor.call(&say).await.unwrap();
        assert_eq!(ack.content, user);
        assert_eq!(server.pool().user(&user).unwrap().id(), bound.id());
    }
}

#[tokio::test]
async fn a_replaced_login_closes_with_its_own_reason_and_hooks_add_up() {
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let (first, second) = (reasons.clone(), reasons.clone());
    let server = Builder::new()
        .codec(Codec::Json)
        .router(login())
        .on_close(move |_, r| first.lock().unwrap().push(format!("first: {r}")))
        .on_close(move |_, r| second.lock().unwrap().push(format!("second: {r}")))
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let older = json_client(&server).await;
    let newer = json_client(&server).await;
    let say = Say {
        content: "ada".into(),
    };
    let _: SayAck = older.call(&say).await.unwrap();
    let _: SayAck = newer.call(&say).await.unwrap();
    within("the older login to close", older.closed()).await;
    until("the close hooks", || reasons.lock().unwrap().len() == 2).await;
    assert_eq!(
        *reasons.lock().unwrap(),
        [
            "first: replaced by a newer login of the same user",
            "second: replaced by a newer login of the same user"
        ]
    );
    // A closed session's user is no longer found through it.
    newer.close("bye");
    within("the newer login to close", newer.closed()).await;
    until("the user unbound", || server.pool().user("ada").is_none()).await;
}
