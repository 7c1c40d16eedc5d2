//! Nodes die, NATS restarts, nodes drain: the cluster notices, fails fast and heals.

use std::process::Stdio;

use gonet::Code;
use gonet_cluster::{ClusterError, ClusterEvent, LeftReason, SessionAddr};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cluster_test;
use crate::fixture::*;
use crate::nats::NatsServer;

/// The environment variables that make this test binary a node of a test cluster.
const ROLE: &str = "GONET_CLUSTER_TEST_ROLE";
const NATS: &str = "GONET_CLUSTER_TEST_NATS";
const READY: &str = "NODE READY ";

/// Runs this test binary again as a node (`role` "room" or "gate") of the cluster on
/// `nats`, and returns once it has joined (a gate: once it knows a room node): the child
/// prints a line with what it serves.
async fn child_node(nats: &NatsServer, role: &str, id: &str) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "failure::node_process",
            "--ignored",
            "--nocapture",
        ])
        .env(ROLE, format!("{role}:{id}"))
        .env(NATS, nats.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the test binary runs again");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let ready = within("the child node to join", async {
        while let Some(line) = lines.next_line().await.expect("child output") {
            if let Some(rest) = line.strip_prefix(READY) {
                return rest.to_owned();
            }
        }
        panic!("the child node ended before joining");
    })
    .await;
    // Keep reading what it prints (the test harness's own lines) so it never writes to
    // a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, ready)
}

/// SIGKILL, and wait for the process to be gone.
async fn kill(mut child: Child) {
    child.start_kill().expect("kill the child node");
    child.wait().await.expect("the child node ends");
}

/// Not a test of its own: the node process of the tests above (started by
/// `child_node`, killed by them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a node process that the failure tests start and kill"]
async fn node_process() {
    let (Ok(role), Ok(url)) = (std::env::var(ROLE), std::env::var(NATS)) else {
        panic!("run by the failure tests only");
    };
    let nats_url = url;
    let (role, id) = role.split_once(':').expect("role:id");
    match role {
        "room-term" => {
            // A room node that drains on SIGTERM, as a deployed one would.
            let node = cluster(id, "room")
                .serve(rooms(id, &RoomCtl::default()))
                .join(&nats_url)
                .await
                .expect("join");
            println!("{READY}{id}");
            gonet::shutdown_signal().expect("signal listener").await;
            node.drain().await;
        }
        "room" => {
            let _node = cluster(id, "room")
                .serve(rooms(id, &RoomCtl::default()))
                .join(&nats_url)
                .await
                .expect("join");
            println!("{READY}{id}");
            std::future::pending::<()>().await;
        }
        _ => {
            let node = cluster(id, "gate").join(&nats_url).await.expect("join");
            // The tests start a room node first: serve once it is known.
            let mut members = node.watch_members();
            members
                .wait_for(|m| m.iter().any(|m| &*m.kind == "room"))
                .await
                .expect("node runs");
            let server = node
                .gate(gonet::Builder::new(), gonet::Router::new())
                .serve("tcp://127.0.0.1:0")
                .await
                .expect("serve");
            println!("{READY}{}", server.url());
            std::future::pending::<()>().await;
        }
    }
}

cluster_test! {
    async fn a_killed_backend_is_noticed_and_its_sessions_move() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let mut events = gate.node.events();
        let (child, _) = child_node(&nats, "room", "room-doomed").await;
        sees(&gate.node, &["room-doomed"]).await;
        let c = client(&gate.tcp.url()).await;
        // Only the doomed node serves rooms: the session sticks to it.
        let (first, _) = enter(&c, "lobby").await;
        assert_eq!(first.node, "room-doomed");
        let _r2 = room(&nats, "room-2", &RoomCtl::default()).await;
        sees(&gate.node, &["room-2"]).await;
        let (again, _) = enter(&c, "lobby").await;
        assert_eq!(again.node, "room-doomed");
        c.session.send(&Seq { n: 7 }).unwrap();
        let dumped: Dumped = c.session.call(&Dump {}).await.unwrap();
        assert_eq!((dumped.node.as_str(), dumped.seq.as_str()), ("room-doomed", "7"));

        kill(child).await;
        // Its heartbeats stop: the gate counts it lost.
        let why = event(&mut events, |e| match e {
            ClusterEvent::NodeLeft { node, why } if &**node == "room-doomed" => Some(*why),
            _ => None,
        })
        .await;
        assert_eq!(why, LeftReason::Silent);
        // The session's room moves to a live node; the data it had there comes along.
        let (moved, _) = enter(&c, "lobby").await;
        assert_eq!(moved.node, "room-2");
        let dumped: Dumped = c.session.call(&Dump {}).await.unwrap();
        assert_eq!((dumped.node.as_str(), dumped.seq.as_str()), ("room-2", "7"));
    }
}

/// A node's heartbeat as `PROTOCOL.md` describes it, for announcing a node that does
/// not exist.
#[derive(Clone, PartialEq, prost::Message)]
struct Heartbeat {
    #[prost(string, tag = "1")]
    node: String,
    #[prost(string, tag = "2")]
    kind: String,
    #[prost(uint32, repeated, tag = "3")]
    ids: Vec<u32>,
}

cluster_test! {
    async fn a_node_nobody_answers_for_is_dropped_at_once_and_the_message_goes_elsewhere() {
        let nats = NatsServer::start().await;
        // The gate prefers the ghost whenever it is there.
        let prefer_ghost = gonet_cluster::Route::Custom(std::sync::Arc::new(
            |_: &gonet::Session, _, members: &[gonet_cluster::Member]| {
                members.iter().position(|m| &*m.id == "room-ghost")
            },
        ));
        let node = cluster("gate-1", "gate").route("room", prefer_ghost).join(&nats.url()).await.unwrap();
        let server = node
            .gate(gonet::Builder::new(), gonet::Router::new())
            .serve("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let _r2 = room(&nats, "room-2", &RoomCtl::default()).await;
        let mut events = node.events();
        // A heartbeat of a node with nothing behind it: NATS will find no responders.
        let raw = async_nats::connect(nats.url()).await.unwrap();
        let ghost = Heartbeat { node: "room-ghost".into(), kind: "room".into(), ids: vec![10] };
        raw.publish("gonet.test.hb", prost::Message::encode_to_vec(&ghost).into()).await.unwrap();
        raw.flush().await.unwrap();
        sees(&node, &["room-ghost", "room-2"]).await;

        let c = client(&server.url()).await;
        let (entered, _) = enter(&c, "lobby").await;
        assert_eq!(entered.node, "room-2");
        let why = event(&mut events, |e| match e {
            ClusterEvent::NodeLeft { node, why } if &**node == "room-ghost" => Some(*why),
            _ => None,
        })
        .await;
        assert_eq!(why, LeftReason::NoResponders);
    }
}

cluster_test! {
    async fn a_killed_gate_is_noticed_by_silence_and_its_sessions_reported_closed() {
        let nats = NatsServer::start().await;
        let r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        let mut events = r1.events();
        let (child, url) = child_node(&nats, "gate", "gate-doomed").await;
        sees(&r1, &["gate-doomed"]).await;
        let c = client(&url).await;
        let _: Login = c.session.call(&Login { user: "bob".into() }).await.unwrap();
        let (_, addr) = enter(&c, "lobby").await;
        event(&mut events, |e| matches!(e, ClusterEvent::SessionBound { uid, .. } if &**uid == "bob").then_some(())).await;

        kill(child).await;
        within("the client to see its gate die", c.session.closed()).await;
        let why = event(&mut events, |e| match e {
            ClusterEvent::NodeLeft { node, why } if &**node == "gate-doomed" => Some(*why),
            _ => None,
        })
        .await;
        assert_eq!(why, LeftReason::Silent);
        let (closed, uid) = event(&mut events, |e| match e {
            ClusterEvent::SessionClosed { addr, uid, .. } => Some((addr.clone(), uid.clone())),
            _ => None,
        })
        .await;
        assert_eq!(closed, addr);
        assert_eq!(uid.as_deref(), Some("bob"));
        // Requests to it fail fast with a typed error.
        let err = r1.push(&addr, &Pushed::default()).await.unwrap_err();
        assert!(matches!(err, ClusterError::NodeGone { .. }), "{err}");
        let err = r1.kick(&SessionAddr::new("gate-doomed", 1), "x").await.unwrap_err();
        assert!(matches!(err, ClusterError::NodeGone { .. }), "{err}");
    }
}

cluster_test! {
    async fn a_node_drains_and_leaves_on_sigterm() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let mut events = gate.node.events();
        let (mut child, _) = child_node(&nats, "room-term", "room-term").await;
        sees(&gate.node, &["room-term"]).await;
        let c = client(&gate.tcp.url()).await;
        let (entered, _) = enter(&c, "lobby").await;
        assert_eq!(entered.node, "room-term");

        let pid = child.id().expect("the child runs").to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(status.success());
        let exit = within("the node to exit", child.wait()).await.unwrap();
        assert!(exit.success(), "{exit}");
        // It said goodbye: left, not lost.
        let why = event(&mut events, |e| match e {
            ClusterEvent::NodeLeft { node, why } if &**node == "room-term" => Some(*why),
            _ => None,
        })
        .await;
        assert_eq!(why, LeftReason::Left);
        let err = c.session.call::<_, Entered>(&Enter { room: "lobby".into() }).await.unwrap_err();
        assert_eq!(err.status().map(|s| s.code()), Some(Code::Unavailable), "{err}");
    }
}

cluster_test! {
    async fn the_cluster_heals_after_nats_restarts() {
        let mut nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let r1 = room(&nats, "room-1", &RoomCtl::default()).await;
        sees(&gate.node, &["room-1"]).await;
        let mut c = client(&gate.tcp.url()).await;
        let (_, addr) = enter(&c, "lobby").await;
        r1.join(&addr, "lobby").await.unwrap();

        nats.restart().await;
        // Each node reconnects by itself and says hello; subscriptions come back.
        // A relayed call made meanwhile fails with a status, never hangs; keep calling
        // until one is served (every try is a real request, bounded by the request
        // timeout).
        within("a relayed call after the restart", async {
            loop {
                match c.session.call::<_, Entered>(&Enter { room: "lobby".into() }).await {
                    Ok(entered) => break entered,
                    Err(err) => assert_eq!(err.status().map(|s| s.code()), Some(Code::Unavailable), "{err}"),
                }
            }
        })
        .await;
        // Broadcasts and pushes flow again.
        within("a broadcast after the restart", async {
            loop {
                r1.broadcast("lobby", &Pushed { n: 9, text: "back".into() }).await.unwrap();
                let _: Ping = c.session.call(&Ping { n: 0 }).await.unwrap();
                if let Ok(p) = c.pushed.try_recv() {
                    break p;
                }
            }
        })
        .await;
        r1.push(&addr, &Pushed { n: 10, text: "direct".into() }).await.unwrap();
        loop {
            let p = within("the push", c.pushed.recv()).await.unwrap();
            if p.n == 10 {
                break;
            }
        }
        // Nobody was counted lost for good.
        sees(&gate.node, &["room-1"]).await;
        sees(&r1, &["gate-1"]).await;
    }
}

cluster_test! {
    async fn a_draining_node_finishes_what_it_has_then_hands_over() {
        let nats = NatsServer::start().await;
        let gate = gate(&nats, "gate-1").await;
        let ctl = RoomCtl::default();
        let r1 = room(&nats, "room-1", &ctl).await;
        sees(&gate.node, &["room-1"]).await;
        let c = client(&gate.tcp.url()).await;
        let (first, _) = enter(&c, "lobby").await;
        assert_eq!(first.node, "room-1");
        let r2 = room(&nats, "room-2", &ctl).await;
        sees(&gate.node, &["room-2"]).await;
        let mut events = gate.node.events();

        // A request in flight on room-1 when it starts draining.
        let slow = {
            let session = c.session.clone();
            tokio::spawn(async move { session.call::<_, Slow>(&Slow {}).await })
        };
        within("the slow request to start", ctl.slow_started.notified()).await;
        let drain = {
            let r1 = r1.clone();
            tokio::spawn(async move { r1.drain().await })
        };
        let mut members = gate.node.watch_members();
        within("room-1 to drain", members.wait_for(|m| m.iter().any(|m| &*m.id == "room-1" && m.draining))).await.unwrap();
        ctl.go.notify_waiters();
        within("the slow reply", slow).await.unwrap().expect("the in-flight request is answered");
        within("the drain", drain).await.unwrap();
        let why = event(&mut events, |e| match e {
            ClusterEvent::NodeLeft { node, why } if &**node == "room-1" => Some(*why),
            _ => None,
        })
        .await;
        assert_eq!(why, LeftReason::Left);
        let (moved, _) = enter(&c, "lobby").await;
        assert_eq!(moved.node, "room-2");
        drop(r2);
    }
}
