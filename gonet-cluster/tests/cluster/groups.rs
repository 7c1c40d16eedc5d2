//! Cluster groups: one publish per broadcast, every member gets every message once,
//! in order, wherever it is connected.

use std::time::Duration;

use gonet_cluster::Cluster;

use crate::cluster_test;
use crate::fixture::*;
use crate::nats::NatsServer;

cluster_test! {
    async fn a_broadcast_reaches_members_on_every_node_once_in_order_with_one_publish() {
        let nats = NatsServer::start().await;
        let a = gate(&nats, "gate-a").await;
        let b = gate(&nats, "gate-b").await;
        let _r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        // A node that only broadcasts, with heartbeats far apart, so every message it
        // publishes while broadcasting is a broadcast.
        let caster = Cluster::new("test")
            .node_id("caster")
            .kind("caster")
            .heartbeat(Duration::from_secs(3600))
            .dead_after(Duration::from_secs(7200))
            .codecs([gonet::Codec::Protobuf, gonet::Codec::Json])
            .join(&nats.url())
            .await
            .unwrap();
        sees(&a.node, &["room-1", "gate-b"]).await;
        sees(&b.node, &["room-1", "gate-a"]).await;
        sees(&caster, &["room-1", "gate-a", "gate-b"]).await;

        let mut members = Vec::new();
        for url in [a.tcp.url(), a.ws.url(), b.tcp.url(), b.ws.url(), a.tcp.url(), b.tcp.url()] {
            let c = client(&url).await;
            let (_, addr) = enter(&c, "hall").await;
            // Joined from a node other than the member's own.
            caster.join(&addr, "hall").await.unwrap();
            members.push(c);
        }
        // One that left again gets nothing.
        let mut left = client(&a.tcp.url()).await;
        let (_, left_addr) = enter(&left, "hall").await;
        caster.join(&left_addr, "hall").await.unwrap();
        caster.leave(&left_addr, "hall").await.unwrap();

        let stats = caster.nats().statistics();
        let before = stats.out_messages.load(std::sync::atomic::Ordering::Relaxed);
        for n in 0..50 {
            caster.broadcast("hall", &Pushed { n, text: "all".into() }).await.unwrap();
        }
        caster.nats().flush().await.unwrap();
        let after = stats.out_messages.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(after - before, 50, "one NATS publish per broadcast");

        for c in &mut members {
            for n in 0..50 {
                let got = within("a broadcast", c.pushed.recv()).await.unwrap();
                assert_eq!(got.n, n);
            }
        }
        // Nothing more came (once: a round trip through the gate orders it after the
        // broadcasts it relayed).
        for c in &mut members {
            let _: Ping = c.session.call(&Ping { n: 0 }).await.unwrap();
            assert!(c.pushed.try_recv().is_err());
        }
        let _: Ping = left.session.call(&Ping { n: 0 }).await.unwrap();
        assert!(left.pushed.try_recv().is_err());
    }
}

cluster_test! {
    async fn members_of_a_lost_node_leave_their_groups_and_the_others_stay() {
        let nats = NatsServer::start().await;
        let a = gate(&nats, "gate-a").await;
        let b = gate(&nats, "gate-b").await;
        let r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&r1, &["gate-a", "gate-b"]).await;
        let mut on_a = client(&a.tcp.url()).await;
        let mut on_b = client(&b.tcp.url()).await;
        for c in [&on_a, &on_b] {
            let (_, addr) = enter(c, "hall").await;
            r1.join(&addr, "hall").await.unwrap();
        }
        // Gate b goes away (its node drains and leaves; its server stops).
        b.node.drain().await;
        b.tcp.shutdown().await;
        within("b's client to close", on_b.session.closed()).await;
        forgets(&r1, "gate-b").await;
        r1.broadcast("hall", &Pushed { n: 1, text: "still here".into() }).await.unwrap();
        assert_eq!(within("the broadcast", on_a.pushed.recv()).await.unwrap().n, 1);
        assert!(on_b.pushed.try_recv().is_err());
    }
}
