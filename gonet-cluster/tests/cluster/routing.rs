//! How a gate picks among the nodes serving a message: sticky (the default), random,
//! by a key, or by user code.

use std::collections::HashSet;
use std::sync::Arc;

use gonet::Session;
use gonet_cluster::{Member, Route};

use crate::cluster_test;
use crate::fixture::*;
use crate::nats::NatsServer;

/// A gate whose room routing is `route`, beside three room nodes; returns the gate.
async fn three_rooms(nats: &NatsServer, route: Route) -> (Gate, Vec<gonet_cluster::Node>) {
    let node = cluster("gate-1", "gate")
        .route("room", route)
        .join(&nats.url())
        .await
        .unwrap();
    let tcp = node
        .gate(gonet::Builder::new(), gonet::Router::new())
        .serve("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let ws = node
        .gate(
            gonet::Builder::new().codec(gonet::Codec::Json),
            gonet::Router::new(),
        )
        .serve("ws://127.0.0.1:0")
        .await
        .unwrap();
    let ctl = RoomCtl::default();
    let mut rooms = Vec::new();
    for id in ["room-1", "room-2", "room-3"] {
        rooms.push(room(nats, id, &ctl).await);
    }
    sees(&node, &["room-1", "room-2", "room-3"]).await;
    (Gate { node, tcp, ws }, rooms)
}

/// The nodes that handled `n` Enters of one new client.
async fn nodes_of_one_client(gate: &Gate, n: usize) -> Vec<String> {
    let c = client(&gate.tcp.url()).await;
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(enter(&c, "lobby").await.0.node);
    }
    nodes
}

cluster_test! {
    async fn sticky_routing_keeps_a_session_on_one_node_and_spreads_sessions() {
        let nats = NatsServer::start().await;
        let (gate, _rooms) = three_rooms(&nats, Route::Sticky).await;
        let mut firsts = HashSet::new();
        // 30 sessions: the chance that a random first pick never leaves one node is 3^-29.
        for _ in 0..30 {
            let nodes = nodes_of_one_client(&gate, 5).await;
            assert!(nodes.iter().all(|n| *n == nodes[0]), "{nodes:?}");
            firsts.insert(nodes[0].clone());
        }
        assert!(firsts.len() > 1, "every session went to {firsts:?}");
    }
}

cluster_test! {
    async fn random_routing_spreads_one_session_over_the_nodes() {
        let nats = NatsServer::start().await;
        let (gate, _rooms) = three_rooms(&nats, Route::Random).await;
        let nodes: HashSet<String> = nodes_of_one_client(&gate, 60).await.into_iter().collect();
        assert!(nodes.len() > 1, "60 random picks all went to {nodes:?}");
    }
}

cluster_test! {
    async fn hash_routing_sends_equal_keys_to_one_node() {
        let nats = NatsServer::start().await;
        // The key: the client's port modulo 2, so sessions come in two key classes.
        let key = Route::Hash(Arc::new(|s: &Session, _| u64::from(s.peer_addr().port() % 2)));
        let (gate, _rooms) = three_rooms(&nats, key).await;
        let mut by_key: [HashSet<String>; 2] = Default::default();
        for _ in 0..12 {
            let c = client(&gate.tcp.url()).await;
            let key = usize::from(c.session.local_addr().port() % 2);
            let node = enter(&c, "lobby").await.0.node;
            by_key[key].insert(node);
        }
        for nodes in &by_key {
            assert!(nodes.len() <= 1, "one key went to {nodes:?}");
        }
    }
}

cluster_test! {
    async fn user_routing_code_picks_the_node() {
        let nats = NatsServer::start().await;
        let pick = Route::Custom(Arc::new(|_: &Session, id, members: &[Member]| {
            assert_eq!(id, 10);
            members.iter().position(|m| &*m.id == "room-3")
        }));
        let (gate, _rooms) = three_rooms(&nats, pick).await;
        for _ in 0..3 {
            let nodes = nodes_of_one_client(&gate, 3).await;
            assert_eq!(nodes, ["room-3", "room-3", "room-3"]);
        }
        let ws = client(&gate.ws.url()).await;
        assert_eq!(enter(&ws, "lobby").await.0.node, "room-3");
    }
}
