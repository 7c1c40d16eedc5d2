//! Messages relayed from a gate to the node serving them: the client cannot tell.

use gonet::Code;

use crate::cluster_test;
use crate::fixture::*;
use crate::nats::NatsServer;

cluster_test! {
    async fn relayed_calls_look_local_over_tcp_and_websocket() {
        let nats = NatsServer::start().await;
        let ctl = RoomCtl::default();
        let gate = gate(&nats, "gate-1").await;
        let _r1 = room(&nats, "room-1", &ctl).await;
        let _r2 = room(&nats, "room-2", &ctl).await;
        sees(&gate.node, &["room-1", "room-2"]).await;

        for url in [gate.tcp.url(), gate.ws.url()] {
            let c = client(&url).await;
            // The gate's own route.
            let pong: Ping = c.session.call(&Ping { n: 7 }).await.unwrap();
            assert_eq!(pong.n, 7);
            // A relayed call: the handler saw the client's session at its gate.
            let (first, addr) = enter(&c, "lobby").await;
            assert_eq!(first.room, "lobby");
            assert_eq!(&*addr.node, "gate-1");
            // Sticky: every later message of the session goes to the same node.
            for _ in 0..10 {
                let (again, _) = enter(&c, "lobby").await;
                assert_eq!(again.node, first.node);
                assert_eq!(again.session, first.session);
            }
            // Plain messages sent back to back keep their order across the hop, and
            // the data a handler changes is there for the next message.
            for n in 0..100 {
                c.session.send(&Seq { n }).unwrap();
            }
            let dumped: Dumped = within("dump", c.session.call(&Dump {})).await.unwrap();
            let want: Vec<String> = (0..100).map(|n| n.to_string()).collect();
            assert_eq!(dumped.seq, want.join(","));
            assert_eq!(dumped.node, first.node);
        }
    }
}

cluster_test! {
    async fn a_trace_id_crosses_the_hop_to_the_handler() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let _r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&gate.node, &["room-1"]).await;
        let c = client(&gate.tcp.url()).await;
        let meta = gonet::Metadata::new().with(gonet::TRACE_ID, "trace-42");
        let traced: Dumped = within("dump", c.session.call_with(&Dump {}, &meta)).await.unwrap();
        assert_eq!(traced.trace.as_deref(), Some("trace-42"));
        let plain: Dumped = within("dump", c.session.call(&Dump {})).await.unwrap();
        assert_eq!(plain.trace, None, "metadata belongs to its message only");
    }
}

cluster_test! {
    async fn a_trace_id_comes_back_with_what_the_handler_sends_through_other_nodes() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let _r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&gate.node, &["room-1"]).await;
        let mut c = client(&gate.tcp.url()).await;
        let meta = gonet::Metadata::new().with(gonet::TRACE_ID, "trace-7");
        let _: Poked = within("shout", c.session.call_with(&Shout {}, &meta)).await.unwrap();
        let pushed = within("the push", c.pushed.recv()).await.unwrap();
        assert_eq!((pushed.n, pushed.text.as_str()), (42, "shout trace=trace-7"));
        // Without metadata, none comes back.
        let _: Poked = within("shout", c.session.call(&Shout {})).await.unwrap();
        let pushed = within("the push", c.pushed.recv()).await.unwrap();
        assert_eq!(pushed.text, "shout");
    }
}

cluster_test! {
    async fn what_a_remote_handler_sends_arrives_before_its_reply() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let _r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&gate.node, &["room-1"]).await;
        for url in [gate.tcp.url(), gate.ws.url()] {
            let mut c = client(&url).await;
            let _: Poked = within("poke", c.session.call(&Poke {})).await.unwrap();
            // The three pushes were handled before the reply was.
            for n in 1..=3 {
                assert_eq!(c.pushed.try_recv().unwrap().n, n);
            }
        }
    }
}

cluster_test! {
    async fn errors_of_relayed_messages_reach_the_client_as_statuses() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let _r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&gate.node, &["room-1"]).await;
        let c = client(&gate.tcp.url()).await;

        let err = c.session.call::<_, Nobody>(&Nobody {}).await.unwrap_err();
        let status = err.status().expect("a status");
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("no live node serves message 22"), "{status}");

        // A body the room node cannot decode.
        let err = c.session.call_raw(10, &[0xff, 0xff], std::time::Duration::from_secs(10)).await.unwrap_err();
        let status = err.status().expect("a status");
        assert_eq!(status.code(), Code::InvalidArgument, "{status}");
        assert!(status.message().contains("Enter"), "{status}");

        // A handler that panics: the caller gets INTERNAL and the session is closed,
        // as with a local handler under the default panic policy; others go on.
        let other = client(&gate.tcp.url()).await;
        let err = c.session.call::<_, Boom>(&Boom {}).await.unwrap_err();
        assert_eq!(err.status().map(|s| s.code()), Some(Code::Internal), "{err}");
        within("the panicking session to close", c.session.closed()).await;
        let _ = enter(&other, "lobby").await;
    }
}

cluster_test! {
    async fn a_remote_handler_closes_its_client() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let _r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&gate.node, &["room-1"]).await;
        let c = client(&gate.tcp.url()).await;
        let mut closes = gate.node.events();
        c.session.send(&Leave {}).unwrap();
        within("the client to be closed", c.session.closed()).await;
        let reason = event(&mut closes, |e| match e {
            gonet_cluster::ClusterEvent::SessionClosed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert_eq!(reason, "left the game");
    }
}
