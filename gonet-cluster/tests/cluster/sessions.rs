//! Any node reaches any session and user: push, call, kick, unique login, events.

use gonet::CloseReason;
use gonet_cluster::{ClusterError, ClusterEvent, SessionAddr};

use crate::cluster_test;
use crate::fixture::*;
use crate::nats::NatsServer;

cluster_test! {
    async fn any_node_pushes_to_calls_and_kicks_any_session() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&gate.node, &["room-1"]).await;
        for url in [gate.tcp.url(), gate.ws.url()] {
            let mut c = client(&url).await;
            let (_, addr) = enter(&c, "lobby").await;

            // From another node, and from the gate itself.
            for node in [&r1, &gate.node] {
                node.push(&addr, &Pushed { n: 5, text: "hi".into() }).await.unwrap();
                let got = within("a push", c.pushed.recv()).await.unwrap();
                assert_eq!((got.n, got.text.as_str()), (5, "hi"));
                let answer: Ping = node.call(&addr, &Ask { n: 41 }).await.unwrap();
                assert_eq!(answer.n, 42);
            }

            // A session that is not there, on a node that is.
            let missing = SessionAddr::new("gate-1", u64::MAX);
            let err = r1.push(&missing, &Pushed::default()).await.unwrap_err();
            assert!(matches!(err, ClusterError::NoSuchSession { .. }), "{err}");
            // A node that is not there: NATS says no responders at once.
            let nowhere = SessionAddr::new("gate-9", 1);
            let err = r1.kick(&nowhere, "x").await.unwrap_err();
            assert!(matches!(err, ClusterError::NodeGone { ref node } if node == "gate-9"), "{err}");

            r1.kick(&addr, "kicked by test").await.unwrap();
            let reason = within("the kick", c.session.closed()).await;
            assert!(matches!(reason, CloseReason::PeerClosed | CloseReason::Local(_)), "{reason:?}");
        }
    }
}

cluster_test! {
    async fn double_login_closes_the_older_session_on_any_gate_every_time() {
        let nats = NatsServer::start().await;
        let a = gate(&nats, "gate-a").await;
        let b = gate(&nats, "gate-b").await;
        let r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&a.node, &["room-1"]).await;
        sees(&b.node, &["room-1"]).await;
        let mut events = r1.events();

        for round in 0..20 {
            let user = format!("user-{round}");
            // Alternate which gate holds the older login, and use both transports.
            let (first_url, second_url) = match round % 4 {
                0 => (a.tcp.url(), b.tcp.url()),
                1 => (b.tcp.url(), a.ws.url()),
                2 => (a.ws.url(), a.tcp.url()),
                _ => (b.ws.url(), b.tcp.url()),
            };
            let older = client(&first_url).await;
            let newer = client(&second_url).await;
            let _: Login = older.session.call(&Login { user: user.clone() }).await.unwrap();
            // The second login right after the first one answered.
            let _: Login = newer.session.call(&Login { user: user.clone() }).await.unwrap();

            let reason = within("the older login to close", older.session.closed()).await;
            // The gate closed it as replaced; the client sees its peer close.
            assert!(matches!(reason, CloseReason::PeerClosed), "{reason:?}");
            // The newer one lives on and is the user's session.
            let dumped: Dumped = newer.session.call(&Dump {}).await.unwrap();
            assert_eq!(dumped.uid.as_deref(), Some(user.as_str()));
            assert!(!newer.session.is_closed());
            // Backends see the binds.
            let bound = event(&mut events, |e| match e {
                ClusterEvent::SessionBound { uid, .. } if **uid == *user => Some(()),
                _ => None,
            });
            bound.await;
        }
    }
}

cluster_test! {
    async fn simultaneous_logins_leave_exactly_one_session() {
        let nats = NatsServer::start().await;
        let a = gate(&nats, "gate-a").await;
        let b = gate(&nats, "gate-b").await;
        let _r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&a.node, &["room-1"]).await;
        sees(&b.node, &["room-1"]).await;
        for round in 0..20 {
            let user = format!("racer-{round}");
            let one = client(&a.tcp.url()).await;
            let two = client(&b.tcp.url()).await;
            let login = Login { user: user.clone() };
            let (r1, r2) = tokio::join!(
                one.session.call::<_, Login>(&login),
                two.session.call::<_, Login>(&login),
            );
            // A login can lose before its reply is written; then it sees the close.
            let _ = (r1, r2);
            let (loser, winner) = within("one login to be closed", async {
                tokio::select! {
                    _ = one.session.closed() => (&one, &two),
                    _ = two.session.closed() => (&two, &one),
                }
            })
            .await;
            assert!(loser.session.is_closed());
            let dumped: Dumped = within("the winner", winner.session.call(&Dump {})).await.unwrap();
            assert_eq!(dumped.uid.as_deref(), Some(user.as_str()));
            assert!(!winner.session.is_closed());
        }
    }
}

cluster_test! {
    async fn a_node_pushes_to_and_kicks_users_wherever_they_are() {
        let nats = NatsServer::start().await;
        let a = gate(&nats, "gate-a").await;
        let r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&a.node, &["room-1"]).await;
        let mut c = client(&a.ws.url()).await;
        let mut events = r1.events();
        let _: Login = c.session.call(&Login { user: "ada".into() }).await.unwrap();
        event(&mut events, |e| matches!(e, ClusterEvent::SessionBound { uid, .. } if &**uid == "ada").then_some(())).await;
        r1.push_user("ada", &Pushed { n: 1, text: "to ada".into() }).await.unwrap();
        let answer: Ping = r1.call_user("ada", &Ask { n: 1 }).await.unwrap();
        assert_eq!(answer.n, 2);
        let err = r1.call_user::<_, Ping>("nobody", &Ask { n: 1 }).await.unwrap_err();
        assert!(matches!(err, ClusterError::NoSuchUser { ref uid } if uid == "nobody"), "{err}");
        assert_eq!(within("a push to the user", c.pushed.recv()).await.unwrap().text, "to ada");
        // Ada logs in on gate b, then on gate a again: each login closes the one
        // before, and a push to her arrives once, at her last session.
        let b = gate(&nats, "gate-b").await;
        sees(&b.node, &["room-1"]).await;
        let on_b = client(&b.tcp.url()).await;
        let _: Login = on_b.session.call(&Login { user: "ada".into() }).await.unwrap();
        within("the first login to close", c.session.closed()).await;
        let mut again = client(&a.tcp.url()).await;
        let _: Login = again.session.call(&Login { user: "ada".into() }).await.unwrap();
        within("the second login to close", on_b.session.closed()).await;
        r1.push_user("ada", &Pushed { n: 2, text: "once".into() }).await.unwrap();
        assert_eq!(within("the push", again.pushed.recv()).await.unwrap().n, 2);
        let _: Ping = again.session.call(&Ping { n: 0 }).await.unwrap();
        assert!(again.pushed.try_recv().is_err(), "the push arrived twice");
        let c = again;

        r1.kick_user("ada", "banned").await.unwrap();
        within("the kick", c.session.closed()).await;
        let (addr, reason) = event(&mut events, |e| match e {
            ClusterEvent::SessionClosed { addr, uid: Some(uid), reason } if &**uid == "ada" && reason != "replaced by a newer login of the same user" => Some((addr.clone(), reason.clone())),
            _ => None,
        })
        .await;
        assert_eq!(&*addr.node, "gate-a");
        assert_eq!(reason, "banned");
    }
}
